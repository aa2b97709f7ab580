//! The private runtime directory: 0700, files 0600, removed when the launcher ends. It holds
//! the rendered files, pgpool's sockets and pid file, and the record `start-pgpool status`
//! reads. This module names every file in it and is the only writer of the launcher's files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::config::Backend;

/// pcp has no TCP listener here, so its port only names its socket, `.s.PGSQL.<port>`.
pub const PCP_PORT: u16 = 9898;

/// The files of a runtime directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    PgpoolConf,
    PoolHba,
    /// The one file that holds the password (the primary's, for pgpool's logins).
    PoolPasswd,
    /// The launcher's own pcp user (a hash of a per-launch random password).
    PcpConf,
    /// What `start-pgpool status` needs: the user, database and each node's variable.
    Status,
    /// Written by pgpool.
    PidFile,
}

impl File {
    pub fn name(self) -> &'static str {
        match self {
            File::PgpoolConf => "pgpool.conf",
            File::PoolHba => "pool_hba.conf",
            File::PoolPasswd => "pool_passwd",
            File::PcpConf => "pcp.conf",
            File::Status => "status",
            File::PidFile => "pgpool.pid",
        }
    }
}

/// The paths of a runtime directory, and the writes the launcher makes to them. Cheap to clone
/// for the side tasks; it does not own the directory (see [`RuntimeDir`]).
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// The paths of a runtime directory at `dir`, which need not exist (`--print-config`).
    pub fn at(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, f: File) -> PathBuf {
        self.dir.join(f.name())
    }

    pub fn pcp_socket(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{PCP_PORT}"))
    }

    /// Writes a file that must not exist yet, 0600.
    pub fn write_new(&self, f: File, content: &str) -> Result<()> {
        let path = self.path(f);
        write_0600(&path, &path.display().to_string(), content, true)
    }

    /// Replaces a file by rename, so a reader (pgpool on SIGHUP) never sees half of it.
    pub fn replace(&self, f: File, content: &str) -> Result<()> {
        let tmp = self.dir.join(format!("{}.new", f.name()));
        write_0600(&tmp, f.name(), content, false)?;
        std::fs::rename(&tmp, self.path(f))
            .with_context(|| format!("PGPOOL_RUNTIME_DIR: cannot replace {}", f.name()))
    }

    pub fn write_status(&self, record: &StatusRecord) -> Result<()> {
        self.write_new(File::Status, &record.to_text())
    }

    /// pcp.conf as the launcher wrote it (`status` logs in to pcp with it).
    pub fn read_pcp_conf(&self) -> Result<String> {
        let path = self.path(File::PcpConf);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    pub fn read_status(&self) -> Result<StatusRecord> {
        let path = self.path(File::Status);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        StatusRecord::parse(&text).with_context(|| format!("{} is not ours", path.display()))
    }
}

/// `what` names the file in errors.
fn write_0600(path: &Path, what: &str, content: &str, create_new: bool) -> Result<()> {
    let cannot = || format!("PGPOOL_RUNTIME_DIR: cannot write {what}");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(create_new)
        .create(!create_new)
        .truncate(!create_new)
        .mode(0o600)
        .open(path)
        .with_context(cannot)?;
    file.write_all(content.as_bytes()).with_context(cannot)
}

/// The runtime directory itself; removed when dropped.
pub struct RuntimeDir {
    _dir: tempfile::TempDir,
    files: Files,
}

fn prefix(port: u16) -> String {
    format!("start-pgpool-{port}-")
}

impl RuntimeDir {
    /// `start-pgpool-PORT-XXXXXX` under `parent`, so `start-pgpool status` can find the one
    /// serving a port. tempfile creates it 0700 with a random suffix.
    pub fn create(parent: &Path, port: u16) -> Result<RuntimeDir> {
        let dir = tempfile::Builder::new()
            .prefix(&prefix(port))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "PGPOOL_RUNTIME_DIR: cannot create a private directory in {}",
                    parent.display()
                )
            })?;
        let files = Files::at(dir.path());
        Ok(RuntimeDir { _dir: dir, files })
    }

    /// What a runtime directory for `port` under `parent` looks like, without creating it.
    pub fn placeholder(parent: &Path, port: u16) -> Files {
        Files::at(&parent.join(format!("{}XXXXXX", prefix(port))))
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    pub fn path(&self) -> &Path {
        self.files.dir()
    }
}

/// The runtime directory of the live launcher serving `port` under `parent`: one whose pgpool
/// (by its pid file) is still running.
pub fn find(parent: &Path, port: u16) -> Result<Files> {
    let prefix = prefix(port);
    let entries = std::fs::read_dir(parent)
        .with_context(|| format!("PGPOOL_RUNTIME_DIR: cannot read {}", parent.display()))?;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let files = Files::at(&e.path());
        let pid = std::fs::read_to_string(files.path(File::PidFile)).unwrap_or_default();
        // pgpool writes the pid with a trailing NUL.
        if let Ok(pid) = pid
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .parse::<i32>()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        {
            return Ok(files);
        }
    }
    bail!(
        "PGPOOL_PORT: no running start-pgpool serves port {port} (looked in {}; set PGPOOL_RUNTIME_DIR or PGPOOL_PORT as the launcher had them)",
        parent.display()
    )
}

/// What `start-pgpool status` needs to ask pgpool and label its answer; no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    pub user: String,
    pub dbname: String,
    /// Each node's variable and `host:port`, by node id.
    pub nodes: Vec<(String, String)>,
}

impl StatusRecord {
    pub fn from_backends(backends: &[Backend]) -> StatusRecord {
        let primary = &backends[0];
        StatusRecord {
            user: primary.user.clone(),
            dbname: primary.dbname.clone(),
            nodes: backends
                .iter()
                .map(|b| (b.var.clone(), format!("{}:{}", b.host, b.port)))
                .collect(),
        }
    }

    /// Tab-separated lines; no field can hold a tab or newline (config refuses control
    /// characters in names, and hosts are plain).
    fn to_text(&self) -> String {
        let mut s = format!("user\t{}\ndatabase\t{}\n", self.user, self.dbname);
        for (var, addr) in &self.nodes {
            s.push_str(&format!("node\t{var}\t{addr}\n"));
        }
        s
    }

    fn parse(text: &str) -> Result<StatusRecord> {
        let (mut user, mut dbname, mut nodes) = (None, None, Vec::new());
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["user", u] => user = Some(u.to_string()),
                ["database", d] => dbname = Some(d.to_string()),
                ["node", var, addr] => nodes.push((var.to_string(), addr.to_string())),
                _ => bail!("unexpected line"),
            }
        }
        Ok(StatusRecord {
            user: user.context("no user")?,
            dbname: dbname.context("no database")?,
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_and_files_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::create(parent.path(), 6432).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(rt.path()), 0o700);
        let name = rt.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("start-pgpool-6432-"), "{name}");
        let f = rt.files();
        for file in [
            File::PgpoolConf,
            File::PoolHba,
            File::PoolPasswd,
            File::PcpConf,
        ] {
            f.write_new(file, "a").unwrap();
            assert_eq!(mode(&f.path(file)), 0o600, "{file:?}");
        }
        assert!(
            f.write_new(File::PgpoolConf, "b").is_err(),
            "never overwritten"
        );
        f.replace(File::PgpoolConf, "c").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.path(File::PgpoolConf)).unwrap(),
            "c"
        );
        assert_eq!(mode(&f.path(File::PgpoolConf)), 0o600);
        let path = rt.path().to_path_buf();
        drop(rt);
        assert!(!path.exists());
    }

    #[test]
    fn unwritable_parent_names_the_variable() {
        let e = RuntimeDir::create(Path::new("/proc/no-such-dir"), 1)
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("PGPOOL_RUNTIME_DIR: "));
    }

    #[test]
    fn the_status_record_reads_back() {
        let r = StatusRecord {
            user: "app user".into(),
            dbname: "my db".into(),
            nodes: vec![
                ("DATABASE_URL".into(), "h:5432".into()),
                ("F".into(), "::1:6000".into()),
            ],
        };
        assert_eq!(StatusRecord::parse(&r.to_text()).unwrap(), r);
        assert!(StatusRecord::parse("user\tu\n").is_err());
    }
}
