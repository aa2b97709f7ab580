//! Which pgpool: where its executable is, and which family it belongs to. Families differ in
//! their keys, and pgpool ignores keys it does not know without a word, so the template renders
//! per family and a release outside the known families is refused rather than guessed at.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use anyhow::{Context as _, Result, bail};

/// The key sets the template knows, each checked against the release's own
/// `pool_config_variables.c` or release notes. The template branches on [`Version::number`];
/// a family says which releases those branches cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 4.1 (Ubuntu 22.04's package): `master_slave_mode`, `socket_dir`, `follow_master_command`,
    /// no `failover_on_backend_shutdown` (it always fails over).
    V4_1,
    /// 4.2 and 4.3 (Debian 12 and Ubuntu 24.04 packages): `backend_clustering_mode`,
    /// `follow_primary_command`, still `socket_dir`; 4.3 adds `failover_on_backend_shutdown`.
    V4_3,
    /// 4.4 to 4.6 (the buildpack's own build): `unix_socket_directories` replaces `socket_dir`
    /// (renamed in 4.4.0; the old key is silently ignored and the socket lands in /tmp).
    V4_6,
}

impl Family {
    /// The release that names the family.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4_1 => "4.1",
            Family::V4_3 => "4.3",
            Family::V4_6 => "4.6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The releases some family covers, for messages.
pub const KNOWN: &str = "4.1 to 4.6";

/// A pgpool release, from `pgpool --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// `40305` for 4.3.5: what templates compare against.
    pub fn number(self) -> u32 {
        self.major * 10000 + self.minor * 100 + self.patch
    }

    /// The family whose keys this release reads, if the template knows it. 4.7 is not known:
    /// no 4.7 source could be checked here, and a renamed key would be ignored without a word.
    pub fn family(self) -> Option<Family> {
        match (self.major, self.minor) {
            (4, 1) => Some(Family::V4_1),
            (4, 2..=3) => Some(Family::V4_3),
            (4, 4..=6) => Some(Family::V4_6),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = anyhow::Error;

    /// Takes `4.3.5` or the whole `pgpool-II version 4.3.5 (tamahomeboshi)` line.
    fn from_str(s: &str) -> Result<Version> {
        let word = s
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .context("no version number")?;
        let mut nums = word
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(str::parse::<u32>);
        let mut next = || nums.next().transpose().ok().flatten();
        let (major, minor) = (next().context("no major")?, next().context("no minor")?);
        Ok(Version {
            major,
            minor,
            patch: next().unwrap_or(0),
        })
    }
}

/// Finds the pgpool executable: `PGPOOL_BIN`, then the apt buildpack's `$HOME/.apt` (an app
/// that lists `pgpool2` in its Aptfile asked for that one), then the copy this buildpack
/// vendors (`$HOME/.pgpool`, or `.pgpool` beside the launcher's `bin/`), then `PATH`, then
/// Debian's `/usr/sbin`.
pub fn locate(
    pgpool_bin: Option<&Path>,
    home: Option<&str>,
    path: Option<&str>,
) -> Result<PathBuf> {
    if let Some(bin) = pgpool_bin {
        if !is_executable(bin) {
            bail!("PGPOOL_BIN: {} is not an executable file", bin.display());
        }
        return Ok(bin.to_path_buf());
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(home) = home {
        candidates.push(Path::new(home).join(".apt/usr/sbin/pgpool"));
        candidates.push(Path::new(home).join(".pgpool/bin/pgpool"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join("../.pgpool/bin/pgpool"));
    }
    if let Some(path) = path {
        candidates.extend(std::env::split_paths(path).map(|d| d.join("pgpool")));
    }
    candidates.push(PathBuf::from("/usr/sbin/pgpool"));
    candidates
        .into_iter()
        .find(|c| is_executable(c))
        .context("PGPOOL_BIN: is not set and no pgpool was found in $HOME/.apt/usr/sbin, $HOME/.pgpool/bin, PATH or /usr/sbin; add the buildpack's pgpool or set PGPOOL_BIN")
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Asks the binary which release it is; an unknown family is refused because its keys would
/// be silently ignored (NOTES Q1).
/// `pgpool --version`, with a deadline: a `PGPOOL_BIN` that never exits (a wrong binary, a
/// wrapper that waits) must not hang the launch before anything has started.
fn version_output(bin: &Path) -> Result<std::process::Output> {
    let mut child = std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("PGPOOL_BIN: cannot run {}", bin.display()))?;
    for _ in 0..2500 {
        if child.try_wait().ok().flatten().is_some() {
            return child
                .wait_with_output()
                .with_context(|| format!("PGPOOL_BIN: cannot run {}", bin.display()));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "PGPOOL_BIN: {} --version did not finish within 5 s",
        bin.display()
    )
}

pub fn version(bin: &Path) -> Result<Version> {
    let out = version_output(bin)?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("version"))
        .unwrap_or("")
        .trim();
    let v: Version = line.parse().with_context(|| {
        format!(
            "PGPOOL_BIN: {} did not print a pgpool version",
            bin.display()
        )
    })?;
    if v.family().is_none() {
        bail!(
            "PGPOOL_BIN: {} is pgpool {v}, a family start-pgpool does not know (it knows {KNOWN}); use the buildpack's own pgpool or set PGPOOL_BIN to one of those",
            bin.display()
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_the_version_line() {
        let v: Version = "pgpool-II version 4.3.5 (tamahomeboshi)".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.number()), (4, 3, 5, 40305));
        assert_eq!("4.6".parse::<Version>().unwrap().number(), 40600);
        assert!("pgpool-II version".parse::<Version>().is_err());
        assert!("pgpool-II version 4".parse::<Version>().is_err());
        let v: Version = "pgpool-II version 4.6.1 (chirikoboshi)".parse().unwrap();
        assert_eq!(v.to_string(), "4.6.1");
        assert_eq!("4.4.0-1.pgdg+1".parse::<Version>().unwrap().number(), 40400);
    }

    #[test]
    fn releases_map_to_their_families() {
        let family = |s: &str| s.parse::<Version>().unwrap().family();
        for (v, f) in [
            ("4.1.4", Some(Family::V4_1)),
            ("4.2.0", Some(Family::V4_3)),
            ("4.3.5", Some(Family::V4_3)),
            ("4.4.0", Some(Family::V4_6)),
            ("4.5.7", Some(Family::V4_6)),
            ("4.6.1", Some(Family::V4_6)),
            ("4.0.9", None),
            ("4.7.3", None),
            ("3.7.2", None),
            ("5.1.0", None),
        ] {
            assert_eq!(family(v), f, "{v}");
        }
        assert_eq!(Family::V4_6.to_string(), "4.6");
    }

    #[test]
    fn an_unknown_family_is_one_error_naming_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, line: &str| {
            let bin = dir.path().join(name);
            std::fs::write(&bin, format!("#!/bin/sh\necho '{line}'\n")).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Another test thread forking right then can hold the file open for writing
            // until its exec (ETXTBSY); a few tries outlast that window.
            let mut r = version(&bin);
            for _ in 0..50 {
                match &r {
                    Err(e) if format!("{e:#}").contains("busy") => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        r = version(&bin);
                    }
                    _ => break,
                }
            }
            r
        };
        let e = fake("a", "pgpool-II version 4.7.3 (ikaruboshi)")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PGPOOL_BIN: "), "{e}");
        assert!(
            e.contains(
                "is pgpool 4.7.3, a family start-pgpool does not know (it knows 4.1 to 4.6)"
            ),
            "{e}"
        );
        let v = fake("b", "pgpool-II version 4.3.5 (tamahomeboshi)").unwrap();
        assert_eq!(v.family(), Some(Family::V4_3));
        assert!(fake("c", "no version here").is_err());
    }

    #[test]
    fn pgpool_bin_must_be_executable() {
        let e = locate(Some(Path::new("/nonexistent/pgpool")), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "PGPOOL_BIN: /nonexistent/pgpool is not an executable file"
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = locate(Some(f.path()), None, None).unwrap_err();
        assert!(e.to_string().starts_with("PGPOOL_BIN: "));
    }
}
