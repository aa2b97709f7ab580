//! Which pgpool: where its executable is, and which family it belongs to. Families differ in
//! their keys (4.1 `master_slave_mode`, 4.2+ `backend_clustering_mode`, 4.6+
//! `unix_socket_directories`), and pgpool ignores keys it does not know without a word, so the
//! templates render per family and an unknown family is refused.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use anyhow::{Context as _, Result, bail};

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

    /// The families whose keys the templates know (4.1's `master_slave_mode`, 4.2+'s
    /// `backend_clustering_mode`, 4.6+'s `unix_socket_directories`).
    pub fn is_known_family(self) -> bool {
        self.major == 4 && (1..=7).contains(&self.minor)
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

/// Finds the pgpool executable: `PGPOOL_BIN`, then the apt buildpack's `$HOME/.apt`, then the
/// copy this buildpack vendors beside the launcher, then `PATH`, then Debian's `/usr/sbin`.
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
pub fn version(bin: &Path) -> Result<Version> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("PGPOOL_BIN: cannot run {}", bin.display()))?;
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
    if !v.is_known_family() {
        bail!(
            "PGPOOL_BIN: pgpool {v} is a family start-pgpool does not know (it knows 4.1 to 4.7)"
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
        assert!("4.6.1".parse::<Version>().unwrap().is_known_family());
        assert!(!"3.7.2".parse::<Version>().unwrap().is_known_family());
        assert!(!"4.8.0".parse::<Version>().unwrap().is_known_family());
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
