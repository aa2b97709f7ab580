//! Both buildpacks as a platform runs them, from a release location of this build:
//!
//! * [`release_dir`]: the artifacts `etc/release-artifacts` makes (what the release workflow
//!   publishes), from this test run's launcher and `etc/build-pgpool`'s pgpool, named for
//!   [`STACK`].
//! * [`ReleaseServer`]: that directory over HTTP on loopback, every request it served counted.
//! * [`cnb_dir`]: the Cloud Native Buildpack as `etc/package-cnb` lays it out, from the cnb
//!   crate built for this test run; [`launch_env`]: what the CNB lifecycle's launcher makes of
//!   the launch layers (PATH and the `env.launch/` files), applied to an environment.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use super::launcher::{BIN, assert_ok, ensure_built_pgpool, pgpool_build_dir};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The stack the test releases are named for (the pgpool inside is this machine's build).
pub const STACK: &str = "heroku-24";

/// `KEY=value` from etc/pgpool-version.
pub fn pinned(key: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("etc/pgpool-version")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in etc/pgpool-version"))
        .trim()
        .to_string()
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn launcher_file() -> String {
    format!("start-pgpool-{}-{STACK}.tar.gz", version())
}

pub fn pgpool_file() -> String {
    format!(
        "pgpool-{}-{}-{STACK}.tar.gz",
        pinned("PGPOOL_VERSION"),
        pinned("PGPOOL_BUILD")
    )
}

/// A release location holding both artifacts for this version and [`STACK`], each with its
/// `.sha256`, made by the same script as a real release.
pub fn release_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ensure_built_pgpool();
    let tarball = std::fs::read_dir(pgpool_build_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pgpool-"))
                && p.extension().is_some_and(|x| x == "gz")
        })
        .expect("etc/build-pgpool left a tarball");
    let out = Command::new(Path::new(ROOT).join("etc/release-artifacts"))
        .arg(dir.path())
        .env("STACK", STACK)
        .env("START_PGPOOL_BIN", BIN)
        .env("PGPOOL_TARBALL", &tarball)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&out);
    dir
}

/// `python3 -m http.server` on a loopback port of its choosing, serving one directory; stopped
/// (by PID) when dropped.
pub struct ReleaseServer {
    child: Child,
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl ReleaseServer {
    pub fn serve(dir: &Path) -> ReleaseServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("http.server said {first:?}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = BufReader::new(child.stderr.take().unwrap());
        let seen = requests.clone();
        std::thread::spawn(move || {
            for line in log.lines().map_while(Result::ok) {
                if line.contains("\"GET ") {
                    seen.lock().unwrap().push(line);
                }
            }
        });
        ReleaseServer {
            child,
            port,
            requests,
        }
    }

    /// The `GET` lines served so far (its log reaches us a moment after the response).
    pub fn requests(&self) -> Vec<String> {
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.requests.lock().unwrap().clone()
    }

    pub fn template(&self) -> String {
        format!("http://127.0.0.1:{}/{{file}}", self.port)
    }
}

impl Drop for ReleaseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CNB as etc/package-cnb lays it out, from the cnb crate built once per test process. It
/// is built by cargo here, into a target directory of its own: the suite's `cargo test` holds
/// the main one.
pub fn cnb_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let target = Path::new(ROOT).join("target/cnb-tests");
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "build",
                "--locked",
                "--quiet",
                "-p",
                "start-pgpool-cnb",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(ROOT)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ok(&out);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("start-pgpool-cnb");
        let out = Command::new(Path::new(ROOT).join("etc/package-cnb"))
            .arg(&dir)
            .arg(target.join("debug/start-pgpool-cnb"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ok(&out);
        (tmp, dir)
    })
    .1
}

/// What the lifecycle's launcher does with one buildpack's launch layers before the app's
/// process starts (buildpack spec, "Layer Paths" and "Environment Variable Modification
/// Rules"): each launch layer in name order puts its `bin/` before PATH and its `lib/` before
/// LD_LIBRARY_PATH, then applies its `env/` and `env.launch/` files: `NAME.override` sets,
/// `NAME.default` sets only when unset, `NAME.append`/`.prepend` join with `NAME.delim`.
pub fn launch_env(layers: &Path, mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut names: Vec<_> = std::fs::read_dir(layers)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let toml = std::fs::read_to_string(layers.join(format!("{name}.toml"))).unwrap_or_default();
        if !toml.lines().any(|l| l.replace(' ', "") == "launch=true") {
            continue;
        }
        let dir = layers.join(&name);
        for (var, sub) in [("PATH", "bin"), ("LD_LIBRARY_PATH", "lib")] {
            if dir.join(sub).is_dir() {
                let p = dir.join(sub).display().to_string();
                let joined = match env.get(var) {
                    Some(old) if !old.is_empty() => format!("{p}:{old}"),
                    _ => p,
                };
                env.insert(var.to_string(), joined);
            }
        }
        for sub in ["env", "env.launch"] {
            let Ok(files) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            let mut files: Vec<_> = files.flatten().map(|e| e.path()).collect();
            files.sort();
            let read = |p: &Path| std::fs::read_to_string(p).unwrap();
            for f in &files {
                let file = f.file_name().unwrap().to_string_lossy().into_owned();
                let (var, how) = file.rsplit_once('.').unwrap_or((&file, "override"));
                let value = read(f);
                let delim = std::fs::read_to_string(dir.join(sub).join(format!("{var}.delim")))
                    .unwrap_or_default();
                match how {
                    "override" => {
                        env.insert(var.into(), value);
                    }
                    "default" => {
                        env.entry(var.into()).or_insert(value);
                    }
                    "append" | "prepend" => {
                        let joined = match env.get(var) {
                            Some(old) if how == "append" => format!("{old}{delim}{value}"),
                            Some(old) => format!("{value}{delim}{old}"),
                            None => value,
                        };
                        env.insert(var.into(), joined);
                    }
                    "delim" => {}
                    other => panic!("{}: unknown modification {other}", f.display()),
                }
            }
        }
    }
    env
}
