//! The one reader of `/proc`: process states and parents, children, descriptors, the system call
//! a process is blocked in, and the kernel's TCP socket tables. Each format has a pure parser
//! beside the function that reads the file, so the parsing is unit-tested on literal text.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// What `/proc/PID/stat` says about a process, the fields used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may hold spaces or
/// parentheses itself, so the fields resume after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let mut f = text[text.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgrp })
}

/// A process's stat, or `None` once it is gone (or never was).
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every pid in `/proc` right now.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The direct children of a single-threaded process: the kernel's list when it keeps one
/// (`CONFIG_PROC_CHILDREN`), otherwise a scan of every process's parent.
pub fn children(pid: i32) -> Vec<i32> {
    if let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return list
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    pids()
        .into_iter()
        .filter(|&c| stat(c).is_some_and(|s| s.ppid == pid))
        .collect()
}

/// True while a process of group `pgrp` is alive. Zombies do not count: an orphaned zombie
/// stays until init reaps it (seconds, on some hosts), and `kill(-pgrp, 0)` would count it.
/// `None` when `/proc` cannot be read at all.
pub fn group_has_live_members(pgrp: i32) -> Option<bool> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(dir.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
            .is_some_and(|s| !s.is_zombie() && s.pgrp == pgrp)
    }))
}

/// The process's title and arguments, NUL-separated.
pub fn cmdline(pid: i32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// `/proc/PID/syscall`; a permission error means a ptrace policy hides it.
pub fn syscall(pid: i32) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
}

/// The descriptor of a `read(2)` the process is blocked in, from `/proc/PID/syscall`
/// (`NR arg0 arg1 ...`, hex arguments; `running` or `-1 ...` when not in a system call).
pub fn blocked_read(syscall: &str, sys_read: i64) -> Option<i32> {
    let mut f = syscall.split_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr != sys_read {
        return None;
    }
    let fd = f.next()?.strip_prefix("0x")?;
    i32::from_str_radix(fd, 16).ok()
}

/// The socket inode behind a descriptor of a process, if it is a socket.
pub fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    inode_of(&std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?)
}

/// The inodes of every socket a process holds.
pub fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| inode_of(&std::fs::read_link(e.ok()?.path()).ok()?))
        .collect()
}

fn inode_of(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// This process's open descriptors.
pub fn own_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// How many threads this process has.
pub fn own_threads() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// One row of `/proc/net/tcp`, the columns used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    pub local_port: u16,
    /// The peer's address and port (`0.0.0.0:0` for a listener). An IPv4-mapped IPv6 peer of a
    /// `tcp6` socket is given as the IPv4 address it maps.
    pub remote: SocketAddr,
    pub state: u8,
    pub rx_queue: u64,
}

pub const TCP_SYN_SENT: u8 = 0x02;
pub const TCP_CLOSE_WAIT: u8 = 0x08;
pub const TCP_LISTEN: u8 = 0x0A;

/// TCP sockets by inode, from the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn parse_tcp(table: &str) -> HashMap<u64, Tcp> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = f.get(1)?.rsplit(':').next()?;
            let (_, rx) = f.get(4)?.split_once(':')?;
            let tcp = Tcp {
                local_port: u16::from_str_radix(port, 16).ok()?,
                remote: parse_tcp_addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            };
            Some((f.get(9)?.parse().ok()?, tcp))
        })
        .collect()
}

/// An address column of `/proc/net/tcp{,6}`: `ADDR:PORT` in hex, the port a plain number, the
/// address the kernel's bytes in network order printed as 32-bit words in the host's order (so
/// `0100007F` is 127.0.0.1 on a little-endian machine): one word for IPv4, four for IPv6.
pub fn parse_tcp_addr(col: &str) -> Option<SocketAddr> {
    let (addr, port) = col.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = addr.get(8 * i..8 * i + 8)?;
        Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every TCP socket of this network namespace, IPv4 and IPv6, by inode.
pub fn tcp_sockets() -> HashMap<u64, Tcp> {
    let mut m = HashMap::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(t) {
            m.extend(parse_tcp(&text));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_follow_the_last_parenthesis() {
        let s = parse_stat("42 (a (b) c) S 7 42 42 0 -1").unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'S',
                ppid: 7,
                pgrp: 42
            }
        );
        assert!(parse_stat("42 (x) Z 1 2 2").unwrap().is_zombie());
        assert_eq!(parse_stat("42 (x"), None);
        let me = stat(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(me.state.is_ascii_uppercase());
        assert_eq!(stat(-1), None);
    }

    #[test]
    fn blocked_reads_give_their_descriptor() {
        assert_eq!(
            blocked_read("0 0x7 0x55d0 0x5 0x0 0x0 0x0 0x7ffc 0x7f12\n", 0),
            Some(7)
        );
        assert_eq!(
            blocked_read("23 0x8 0x55d0 0x0 0x0 0x0 0x0 0x7ffc 0x7f\n", 0),
            None
        );
        assert_eq!(blocked_read("running\n", 0), None);
        assert_eq!(blocked_read("-1 0x7ffc 0x7f12\n", 0), None);
        assert_eq!(
            blocked_read("63 0xc 0x0 0x0 0x0 0x0 0x0 0x0 0x0", 63),
            Some(12)
        );
    }

    #[test]
    fn tcp_table_by_inode() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n\
           1: 0100007F:1538 0100007F:9E8A 08 00000000:0000001F 00:00000000 00000000   105        0 42 1 0000000000000000 20 4 30 10 -1\n";
        let m = parse_tcp(t);
        assert_eq!(
            m.get(&31337),
            Some(&Tcp {
                local_port: 5432,
                remote: "0.0.0.0:0".parse().unwrap(),
                state: TCP_LISTEN,
                rx_queue: 0,
            })
        );
        assert_eq!(
            m.get(&42),
            Some(&Tcp {
                local_port: 5432,
                remote: parse_tcp_addr("0100007F:9E8A").unwrap(),
                state: TCP_CLOSE_WAIT,
                rx_queue: 31,
            })
        );
        assert_eq!(m.len(), 2);
    }

    /// The words are in the host's byte order: these literals are what a little-endian
    /// machine prints, so the test builds them from the bytes on any machine.
    fn word(b: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(b))
    }

    #[test]
    fn tcp_addresses_v4_and_v6() {
        let v4 = format!("{}:1538", word([10, 1, 2, 3]));
        assert_eq!(parse_tcp_addr(&v4), "10.1.2.3:5432".parse().ok());
        let v6: String = [
            [0x20, 0x01, 0x0d, 0xb8],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 1],
        ]
        .map(word)
        .concat();
        assert_eq!(
            parse_tcp_addr(&format!("{v6}:1538")),
            "[2001:db8::1]:5432".parse().ok()
        );
        let mapped: String = [
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0xff, 0xff],
            [10, 1, 2, 3],
        ]
        .map(word)
        .concat();
        assert_eq!(
            parse_tcp_addr(&format!("{mapped}:1538")),
            "10.1.2.3:5432".parse().ok()
        );
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_tcp_addr("0100007F:9E8A"),
                "127.0.0.1:40586".parse().ok()
            );
        }
        assert_eq!(parse_tcp_addr("0100007F"), None);
        assert_eq!(parse_tcp_addr("0100:1538"), None);
        assert_eq!(parse_tcp_addr("0100007G:1538"), None);
    }
}
