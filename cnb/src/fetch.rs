//! The build's effects on the network and the disk: download an artifact and its `.sha256`,
//! check one against the other, unpack it. `http(s)://` and `file://`, as bin/compile (curl).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// What went wrong, in words for the build log; never the URL (the caller shows it redacted).
pub type Why = String;

const ATTEMPTS: u32 = 3;

/// Downloads `url` to `dest` (written whole or not at all). A failed connection, a body cut
/// short, a server error, 408 or 429 is tried again, 3 attempts in all, as `curl --retry 3`
/// would. Certificates are checked against the build image's own trust store (as curl's are),
/// so a private mirror with an in-house CA works as it does for bin/compile.
pub fn download(url: &str, dest: &Path) -> Result<(), Why> {
    let part = dest.with_extension("part");
    let result = (|| {
        if let Some(path) = file_path(url)? {
            std::fs::copy(&path, &part).map_err(|e| e.to_string())?;
            return Ok(());
        }
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(300)))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build()
            .new_agent();
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match fetch_once(&agent, url, &part) {
                Ok(()) => return Ok(()),
                Err(Attempt::Final(why)) => return Err(why),
                Err(Attempt::Again(why)) => last = why,
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(Duration::from_secs(u64::from(attempt)));
            }
        }
        Err(last)
    })();
    match result {
        Ok(()) => std::fs::rename(&part, dest).map_err(|e| e.to_string()),
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

enum Attempt {
    /// Worth another try (connection, body, 5xx, 408, 429).
    Again(Why),
    /// Another try would get the same answer (404, 403, a local file error).
    Final(Why),
}

fn fetch_once(agent: &ureq::Agent, url: &str, part: &Path) -> Result<(), Attempt> {
    let mut response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(code)) if code >= 500 || code == 408 || code == 429 => {
            return Err(Attempt::Again(format!("HTTP {code}")));
        }
        Err(ureq::Error::StatusCode(code)) => return Err(Attempt::Final(format!("HTTP {code}"))),
        Err(e) => return Err(Attempt::Again(e.to_string())),
    };
    let mut out = File::create(part).map_err(|e| Attempt::Final(e.to_string()))?;
    io::copy(&mut response.body_mut().as_reader(), &mut out)
        .map_err(|e| Attempt::Again(format!("the download broke off: {e}")))?;
    out.sync_all().map_err(|e| Attempt::Final(e.to_string()))
}

/// The local path of a `file://` URL; `None` for any other scheme ureq handles.
fn file_path(url: &str) -> Result<Option<std::path::PathBuf>, Why> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "file" => u
            .to_file_path()
            .map(Some)
            .map_err(|()| "not a local file path".to_string()),
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(None),
        Ok(u) => Err(format!(
            "unsupported scheme {} (use https, http or file)",
            u.scheme()
        )),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

/// The sha256 a `.sha256` file publishes (sha256sum's format: the hex digest, then the name).
pub fn published_sha256(text: &str) -> Option<String> {
    let want = text.split_whitespace().next()?.to_ascii_lowercase();
    (want.len() == 64 && want.bytes().all(|b| b.is_ascii_hexdigit())).then_some(want)
}

pub fn sha256_of(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Unpacks a `.tar.gz` into `dir`. tar's own checks keep every entry inside `dir`.
pub fn unpack(archive: &Path, dir: &Path) -> io::Result<()> {
    let gz = flate2::read::GzDecoder::new(File::open(archive)?);
    let mut tar = tar::Archive::new(gz);
    tar.set_preserve_permissions(true);
    tar.unpack(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_sha256_is_64_hex_digits() {
        let d = "a".repeat(64);
        assert_eq!(
            published_sha256(&format!("{d}  f.tar.gz\n")),
            Some(d.clone())
        );
        assert_eq!(published_sha256(&d.to_uppercase()), Some(d));
        assert_eq!(published_sha256("abc  f"), None);
        assert_eq!(published_sha256(&format!("{}  f", "g".repeat(64))), None);
        assert_eq!(published_sha256(""), None);
    }

    #[test]
    fn sha256_matches_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_of(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_urls_are_copied_and_a_missing_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a b");
        std::fs::write(&src, b"data").unwrap();
        let dest = dir.path().join("out");
        let url = url::Url::from_file_path(&src).unwrap().to_string();
        download(&url, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        let missing = dir.path().join("gone");
        let dest2 = dir.path().join("out2");
        let err =
            download(url::Url::from_file_path(&missing).unwrap().as_ref(), &dest2).unwrap_err();
        assert!(err.contains("No such file"), "{err}");
        assert!(!dest2.exists() && !dest2.with_extension("part").exists());
        assert!(
            download("ftp://h/f", &dest2)
                .unwrap_err()
                .contains("unsupported scheme")
        );
    }
}
