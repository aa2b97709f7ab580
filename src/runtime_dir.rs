//! The private runtime directory: 0700, files 0600, removed when the launcher ends. It holds
//! the rendered files, pgpool's sockets, pid file and status file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::render::Rendered;

pub struct RuntimeDir {
    dir: tempfile::TempDir,
}

impl RuntimeDir {
    /// `start-pgpool-PORT-XXXXXX` under `parent`, so `start-pgpool status` can find the one
    /// serving a port. tempfile creates it 0700 with a random suffix.
    pub fn create(parent: &Path, port: u16) -> Result<RuntimeDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("start-pgpool-{port}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "PGPOOL_RUNTIME_DIR: cannot create a private directory in {}",
                    parent.display()
                )
            })?;
        Ok(RuntimeDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_all(&self, r: &Rendered) -> Result<()> {
        self.write("pgpool.conf", &r.pgpool_conf)?;
        self.write("pool_hba.conf", &r.pool_hba)?;
        self.write("pool_passwd", r.pool_passwd.expose())
    }

    pub fn write(&self, name: &str, content: &str) -> Result<()> {
        let path = self.path().join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("PGPOOL_RUNTIME_DIR: cannot write {}", path.display()))?;
        f.write_all(content.as_bytes())
            .with_context(|| format!("PGPOOL_RUNTIME_DIR: cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn private_dir_and_files_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::create(parent.path(), 6432).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(rt.path()), 0o700);
        let name = rt.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("start-pgpool-6432-"), "{name}");
        rt.write_all(&Rendered {
            pgpool_conf: "a".into(),
            pool_hba: "b".into(),
            pool_passwd: Secret::new("c"),
        })
        .unwrap();
        rt.write("pcp.conf", "d").unwrap();
        for f in ["pgpool.conf", "pool_hba.conf", "pool_passwd", "pcp.conf"] {
            assert_eq!(mode(&rt.path().join(f)), 0o600, "{f}");
        }
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
}
