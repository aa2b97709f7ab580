//! Both buildpacks as a platform runs them, from a release location of this build:
//!
//! * [`release_dir`]: the artifacts `etc/release-artifacts` makes (what the release workflow
//!   publishes), from this test run's launcher and `etc/build-pgpool`'s pgpool, named for
//!   [`stack`]; or, with `START_PGPOOL_TEST_RELEASE_DIR`, a copy of the artifacts a release
//!   is about to publish (the release workflow sets it, so those are what its suite installs).
//! * [`ReleaseServer`]: that directory over HTTP on loopback, every request it served counted.
//! * [`cnb_dir`]: the Cloud Native Buildpack as `etc/package-cnb` lays it out, from the cnb
//!   crate built for this test run (or the binary `START_PGPOOL_TEST_CNB_BIN` names: the
//!   release's static one); [`launch_env`]: what the CNB lifecycle's launcher makes of
//!   the launch layers (PATH and the `env.launch/` files), applied to an environment.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use super::launcher::{BIN, assert_ok, ensure_built_pgpool, pgpool_build_dir, show, stdout};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The stack the test releases are named for: `STACK` when set (the release workflow runs the
/// suite on each stack's build image), else heroku-24 (the pgpool inside is then this
/// machine's build, named for that stack).
pub fn stack() -> String {
    std::env::var("STACK")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "heroku-24".into())
}

/// `KEY=value` from etc/pgpool-version.
pub fn pinned(key: &str) -> String {
    value_in("etc/pgpool-version", key)
}

/// `KEY=value` from a file in the repository that the shell sources.
fn value_in(file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {file}"))
        .trim()
        .to_string()
}

/// The line both buildpacks print when `file` cannot be downloaded from `location` (`why`)
/// while START_PGPOOL_RELEASE_URL is set: etc/download-error's `custom` line, written out here
/// word for word, so that a test compares the words and not the file with itself.
pub fn custom_download_error(file: &str, why: &str, location: &str) -> String {
    format!(
        "cannot download {file} ({why}) from {location}: the build looks for release v{v} for \
         stack {s} where START_PGPOOL_RELEASE_URL points ({{version}} and {{file}} are filled \
         in); point it at a location that has it, or unset it for release v{v} of github.com/{r} \
         (stack {s})",
        v = version(),
        s = stack(),
        r = value_in("etc/release-location", "START_PGPOOL_REPOSITORY"),
    )
}

pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn launcher_file() -> String {
    format!("start-pgpool-{}-{}.tar.gz", version(), stack())
}

pub fn pgpool_file() -> String {
    format!(
        "pgpool-{}-{}-{}.tar.gz",
        pinned("PGPOOL_VERSION"),
        pinned("PGPOOL_BUILD"),
        stack()
    )
}

/// A release location holding both artifacts for this version and [`stack`], each with its
/// `.sha256`, made by the same script as a real release (a test may change it: it is a copy).
pub fn release_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if let Some(given) = std::env::var_os("START_PGPOOL_TEST_RELEASE_DIR") {
        for f in [launcher_file(), pgpool_file()] {
            for name in [f.clone(), format!("{f}.sha256")] {
                std::fs::copy(Path::new(&given).join(&name), dir.path().join(&name))
                    .unwrap_or_else(|e| panic!("START_PGPOOL_TEST_RELEASE_DIR has no {name}: {e}"));
            }
        }
        return dir;
    }
    ensure_built_pgpool();
    // etc/build-pgpool names its tarball for $STACK, or for this machine's OS.
    let prefix = format!(
        "pgpool-{}-{}-",
        pinned("PGPOOL_VERSION"),
        pinned("PGPOOL_BUILD")
    );
    let mut built: Vec<PathBuf> = std::fs::read_dir(pgpool_build_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&prefix) && n.ends_with(".tar.gz")
            })
        })
        .collect();
    assert_eq!(
        built.len(),
        1,
        "one {prefix}*.tar.gz from etc/build-pgpool: {built:?}"
    );
    let out = Command::new(Path::new(ROOT).join("etc/release-artifacts"))
        .arg(dir.path())
        .env("STACK", stack())
        .env("START_PGPOOL_BIN", BIN)
        .env("PGPOOL_TARBALL", built.pop().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&out);
    dir
}

/// [`release_dir`] with the pgpool artifact's last byte changed: it no longer matches the
/// `.sha256` published beside it.
pub fn tampered_release_dir() -> tempfile::TempDir {
    let release = release_dir();
    let f = release.path().join(pgpool_file());
    let mut bytes = std::fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&f, bytes).unwrap();
    release
}

/// The app a built slug or image runs behind its `start-pgpool` (`exec start-pgpool
/// {REPORTING_APP}`): it reports the pgpool it went through, the binary behind pgpool's pid,
/// and the library path the app was given.
pub const REPORTING_APP: &str = r#"sh -c '
  echo "version $(psql "$DATABASE_URL" -XAtc "show pool_version")"
  pid=$(head -n1 "$PGPOOL_RUNTIME_DIR"/start-pgpool-*/pgpool.pid)
  echo "exe $(readlink /proc/$pid/exe)"
  echo "ld ${LD_LIBRARY_PATH:-unset}"'"#;

/// That app's report: it went through the pinned pgpool release, the binary at `exe`, and was
/// given no library path (the vendored libraries stay pgpool's own).
pub fn assert_reports_pgpool(out: &Output, exe: &Path) {
    assert_ok(out);
    let text = stdout(out);
    let version = pinned("PGPOOL_VERSION");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("version {version} "))),
        "{}",
        show(out)
    );
    assert!(
        text.lines().any(|l| l == format!("exe {}", exe.display())),
        "the running pgpool is not {}:\n{}",
        exe.display(),
        show(out)
    );
    assert!(text.lines().any(|l| l == "ld unset"), "{}", show(out));
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

    /// The `GET` lines served so far. The server logs a request after answering it, so this
    /// waits until the count has held for 300 ms (at most 5 s).
    pub fn requests(&self) -> Vec<String> {
        let step = std::time::Duration::from_millis(100);
        let (mut last, mut held) = (usize::MAX, 0);
        for _ in 0..50 {
            let n = self.requests.lock().unwrap().len();
            held = if n == last { held + 1 } else { 0 };
            if held >= 3 {
                break;
            }
            last = n;
            std::thread::sleep(step);
        }
        self.requests.lock().unwrap().clone()
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
/// the main one. `START_PGPOOL_TEST_CNB_BIN` names a binary to package instead.
pub fn cnb_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("start-pgpool-cnb");
        let package = |bin: &Path| {
            let out = Command::new(Path::new(ROOT).join("etc/package-cnb"))
                .arg(&dir)
                .arg(bin)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_ok(&out);
        };
        if let Some(bin) = std::env::var_os("START_PGPOOL_TEST_CNB_BIN") {
            package(Path::new(&bin));
            return (tmp, dir);
        }
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
        package(&target.join("debug/start-pgpool-cnb"));
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
