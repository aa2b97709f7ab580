//! Where the pgpool executable is, and which release it is.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};

use super::family::{
    BACKEND_TLS_LINE, CHECKS_KEEP_LINE, Family, LOGICAL_PRIMARY_LINE, Release, Version,
};

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

/// Asks the binary which release it is; an unknown family is refused because its keys would
/// be silently ignored.
pub fn release(bin: &Path) -> Result<Release> {
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
    let Some(mut release) = Release::new(v) else {
        bail!(
            "PGPOOL_BIN: {} is pgpool {v}, a family start-pgpool does not know (it knows {}); use the buildpack's own pgpool or set PGPOOL_BIN to one of those",
            bin.display(),
            Family::known()
        );
    };
    let says = |line: &str| text.lines().any(|l| l.trim() == line);
    release.backend_tls = says(BACKEND_TLS_LINE);
    release.logical_primary_kept = says(LOGICAL_PRIMARY_LINE);
    release.checks_keep_connections = says(CHECKS_KEEP_LINE);
    Ok(release)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::pgpool::family::Family;

    #[test]
    fn an_unknown_family_is_one_error_naming_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, line: &str| {
            let bin = dir.path().join(name);
            std::fs::write(&bin, format!("#!/bin/sh\necho '{line}'\n")).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Another test thread forking right then can hold the file open for writing
            // until its exec (ETXTBSY); a few tries outlast that window.
            let mut r = release(&bin);
            for _ in 0..50 {
                match &r {
                    Err(e) if format!("{e:#}").contains("busy") => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        r = release(&bin);
                    }
                    _ => break,
                }
            }
            r
        };
        let e = fake("a", "pgpool-II version 4.8.0 (someboshi)")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PGPOOL_BIN: "), "{e}");
        assert!(
            e.contains(
                "is pgpool 4.8.0, a family start-pgpool does not know (it knows 4.1 to 4.7)"
            ),
            "{e}"
        );
        let v = fake("b", "pgpool-II version 4.3.5 (tamahomeboshi)").unwrap();
        assert_eq!(v.family, Family::V4_3);
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
