//! Certificates for the TLS tests, made with the `openssl` command in a cluster's directory
//! and owned by the user its servers run as (a server refuses a key others can read).
//! `etc/test-cluster` leaves its own CA there (`ca.crt`, `ca.key`): certificates signed by
//! it chain to the cluster's `CA_FILE`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub fn new(dir: &Path) -> Certs {
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn crt(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// A self-signed CA `name`, signing nothing yet.
    pub fn ca(&self, name: &str) -> PathBuf {
        openssl(&[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path(&self.key(name)),
            "-out",
            path(&self.crt(name)),
        ]);
        self.own(name);
        self.crt(name)
    }

    /// A server certificate `name` for `cn`, with `san` (`DNS:x,IP:y`) or none, signed by CA
    /// `ca`. Returns (certificate, key).
    pub fn server(&self, name: &str, ca: &str, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
        let csr = self.dir.join(format!("{name}.csr"));
        openssl(&[
            "req",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            path(&self.key(name)),
            "-out",
            path(&csr),
        ]);
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(
            &ext,
            san.map(|s| format!("subjectAltName={s}\n"))
                .unwrap_or_default(),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&self.crt(ca)),
            "-CAkey",
            path(&self.key(ca)),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path(&ext),
            "-out",
            path(&self.crt(name)),
        ]);
        self.own(name);
        (self.crt(name), self.key(name))
    }

    fn own(&self, name: &str) {
        let meta = std::fs::metadata(&self.dir).unwrap();
        for p in [self.crt(name), self.key(name)] {
            std::os::unix::fs::chown(&p, Some(meta.uid()), Some(meta.gid())).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.key(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
