//! What the tests read from /proc: one `/proc/PID/stat` reader, process trees, argv, open
//! sockets.

use std::path::Path;

/// `state ppid pgrp session tty_nr tpgid ... starttime` of a process, from /proc/PID/stat.
pub struct Stat {
    pub state: String,
    pub ppid: u32,
    pub pgrp: i32,
    pub tpgid: i32,
    /// Clock ticks after boot; tells a reused pid from the original.
    pub start: u64,
}

/// The one /proc/PID/stat reader. The command name in parentheses may hold spaces and `)`, so
/// the fields are counted from the last `)`.
pub fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.to_string(),
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        tpgid: f.get(5)?.parse().ok()?,
        // Field 22 of stat; `rest` starts at field 3.
        start: f.get(19)?.parse().ok()?,
    })
}

/// Pids of every process now running.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .collect()
}

/// Every process descended from `root`, `root` included.
pub fn descendants(root: u32) -> Vec<u32> {
    let parent_of: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?.ppid)))
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// The direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    descendants(pid)
        .into_iter()
        .filter(|&c| stat(c).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// argv of `pid`, NULs as spaces; empty when it is gone.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The kernel's name of `pid`'s program (`pgpool` however it retitles itself).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// `ps`-like list of live processes whose argv mentions `needle` (zombies excluded).
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for pid in pids() {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Processes whose working directory is inside `dir` (every postgres process of a node).
pub fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// One process seen during a run. The start time tells a reused pid from the original.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
    pub cmd: String,
}

impl Proc {
    /// `pid` as it runs now, or None when it is gone.
    pub fn now(pid: u32) -> Option<Proc> {
        Some(Proc {
            pid,
            start: stat(pid)?.start,
            cmd: cmdline(pid),
        })
    }

    /// Alive = same process (same start time) and not a zombie.
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != "Z")
    }
}

/// TCP sockets in LISTEN state, as (local port, inode), from /proc/net/tcp and tcp6.
pub fn tcp_listeners() -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in text.lines().skip(1) {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, cols[9].parse::<u64>()) {
                out.push((port, inode));
            }
        }
    }
    out
}

/// Inodes of the sockets `pid` holds open.
pub fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// A field of /proc/PID/smaps_rollup in KiB: `Pss` (proportional set size: private memory plus
/// a share of what is shared, so a tree's PSS adds up to what the tree costs), `Pss_Anon`,
/// `Pss_Shmem`...
pub fn smaps_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
