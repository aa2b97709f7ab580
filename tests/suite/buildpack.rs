//! The buildpack as Heroku runs it: `bin/detect`, `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`
//! and `bin/release` under `env -i` with only PATH, HOME and STACK, artifacts from a `file://`
//! release location (`etc/release-artifacts` on this build's launcher and `etc/build-pgpool`'s
//! pgpool), then the compiled app's `bin/start-pgpool` with its `.profile.d`
//! sourced, `/usr/sbin` off PATH, in a moved slug, against the real cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cluster;
use crate::support::launcher::*;
use crate::support::release::{
    REPORTING_APP, ROOT, ReleaseServer, assert_reports_pgpool, custom_download_error,
    launcher_file, pgpool_file, release_dir, stack, tampered_release_dir,
};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A buildpack script under `env -i` with only PATH, HOME and STACK, as Heroku runs it.
fn buildpack(script: &str, args: &[&Path], home: &Path) -> Output {
    Command::new(Path::new(ROOT).join("bin").join(script))
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", home)
        .env("STACK", stack())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cache: PathBuf,
    env: PathBuf,
}

fn dirs(release: &Path) -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (cache, env) = (root.join("cache"), root.join("env"));
    for d in [&cache, &env, &root.join("home")] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(
        env.join("START_PGPOOL_RELEASE_URL"),
        format!("file://{}/{{file}}", release.display()),
    )
    .unwrap();
    Dirs {
        _tmp: tmp,
        root,
        cache,
        env,
    }
}

impl Dirs {
    fn compile(&self, build: &str) -> (PathBuf, Output) {
        let b = self.root.join(build);
        std::fs::create_dir(&b).unwrap();
        let out = buildpack(
            "compile",
            &[&b, &self.cache, &self.env],
            &self.root.join("home"),
        );
        (b, out)
    }
}

#[test]
fn detect_and_release_follow_the_classic_api() {
    let tmp = tempfile::tempdir().unwrap();
    let out = buildpack("detect", &[tmp.path()], tmp.path());
    assert_ok(&out);
    assert_eq!(stdout(&out), "start-pgpool\n");
    let out = buildpack("release", &[tmp.path()], tmp.path());
    assert_ok(&out);
    assert!(stdout(&out).starts_with("---"), "{}", show(&out));
}

#[test]
fn compile_installs_from_the_release_then_from_the_cache_and_the_slug_runs_the_vendored_pgpool() {
    let release = release_dir();
    let d = dirs(release.path());

    let (build, out) = d.compile("build1");
    assert_ok(&out);
    let log = stdout(&out);
    assert!(
        log.contains(&format!(
            "-----> start-pgpool: downloading {}",
            pgpool_file()
        )),
        "{log}"
    );
    assert!(!log.contains("using cached"), "{log}");
    for f in [
        "bin/start-pgpool",
        ".pgpool/bin/pgpool",
        ".pgpool/bin/pcp_node_info",
    ] {
        let p = build.join(f);
        assert!(p.is_file(), "{f} missing:\n{log}");
    }
    let profile = std::fs::read_to_string(build.join(".profile.d/start-pgpool.sh")).unwrap();
    assert!(profile.contains("PGPOOL_BIN"), "{profile}");

    // The second build finds everything in the cache: the release location is gone.
    drop(release);
    let (build2, out) = d.compile("build2");
    assert_ok(&out);
    let log = stdout(&out);
    assert!(
        log.contains(&format!(
            "-----> start-pgpool: using cached {}",
            pgpool_file()
        )),
        "{log}"
    );
    assert!(!log.contains("downloading"), "{log}");

    // Heroku builds in one directory and runs the slug from another (/app): move it.
    let app = d.root.join("app");
    std::fs::rename(&build2, &app).unwrap();
    let c = cluster::shared();
    let port = free_port();
    let out = Command::new("bash")
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", &app)
        .env("PGPOOL_PORT", port.to_string())
        .env("PGPOOL_RUNTIME_DIR", &app)
        .env("PGPOOL_NUM_INIT_CHILDREN", "4")
        .env("DATABASE_URL", c.primary_url())
        .env("FOLLOWER1_URL", c.follower_url(1))
        .env("PGPOOL_URLS", "DATABASE_URL FOLLOWER1_URL")
        .current_dir(&app)
        .arg("-c")
        .arg(format!(
            r#"set -e
for f in .profile.d/*.sh; do . "$f"; done
case ":$PATH:" in *:/usr/sbin:*) echo "/usr/sbin on PATH"; exit 9;; esac
echo "PGPOOL_BIN=$PGPOOL_BIN"
exec bin/start-pgpool {REPORTING_APP}"#
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_reports_pgpool(&out, &app.join(".pgpool/bin/pgpool"));
    let _ = build;
}

#[test]
fn a_tampered_artifact_installs_nothing() {
    let release = tampered_release_dir();
    let d = dirs(release.path());
    let (build, out) = d.compile("build");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!(
            "{} does not match its published sha256; nothing was installed",
            pgpool_file()
        )),
        "{}",
        show(&out)
    );
    assert!(!build.join(".pgpool").exists() && !build.join("bin/start-pgpool").exists());
    // Nothing unverified stays in the cache for the next build to trust.
    let cached: Vec<_> = std::fs::read_dir(d.cache.join("start-pgpool"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !cached.iter().any(|n| n.starts_with("pgpool-")),
        "{cached:?}"
    );
}

#[test]
fn an_aptfile_with_pgpool2_keeps_the_old_way() {
    let release = release_dir();
    let d = dirs(release.path());
    let build = d.root.join("build");
    std::fs::create_dir(&build).unwrap();
    std::fs::write(build.join("Aptfile"), "libfoo\npgpool2\n").unwrap();
    let out = buildpack("compile", &[&build, &d.cache, &d.env], &d.root.join("home"));
    assert_ok(&out);
    assert!(
        stdout(&out).contains("your Aptfile installs pgpool2"),
        "{}",
        show(&out)
    );
    let profile = std::fs::read_to_string(build.join(".profile.d/start-pgpool.sh")).unwrap();
    assert!(!profile.contains("export PGPOOL_BIN"), "{profile}");
}

#[test]
fn compile_names_the_release_it_looked_for_and_never_a_credential() {
    let empty = tempfile::tempdir().unwrap();
    let server = ReleaseServer::serve(empty.path());
    let d = dirs(empty.path());
    std::fs::write(
        d.env.join("START_PGPOOL_RELEASE_URL"),
        format!(
            "http://builder:s3cret-token@127.0.0.1:{}/{{file}}",
            server.port
        ),
    )
    .unwrap();
    let (build, out) = d.compile("build");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // One line, the CNB's words (tests/suite/cnb.rs).
    let want = format!(
        " !     start-pgpool: {}",
        custom_download_error(
            &format!("{}.sha256", launcher_file()),
            "HTTP 404",
            &format!("http://127.0.0.1:{}/", server.port)
        )
    );
    assert_eq!(
        stderr(&out).lines().collect::<Vec<_>>(),
        [want.as_str()],
        "{}",
        show(&out)
    );
    assert!(!show(&out).contains("s3cret"), "{}", show(&out));
    assert!(!build.join("bin/start-pgpool").exists());
}

#[test]
fn compile_refuses_a_release_url_it_cannot_use_by_name() {
    let empty = tempfile::tempdir().unwrap();
    for (url, why) in [
        (
            "https://mirror.example/s3cret/{file}?sig=s3cret",
            "START_PGPOOL_RELEASE_URL: must end with {file}",
        ),
        (
            "https://mirror.example/s3cret/pgpool.tar.gz",
            "START_PGPOOL_RELEASE_URL: has no {file}",
        ),
    ] {
        let d = dirs(empty.path());
        std::fs::write(d.env.join("START_PGPOOL_RELEASE_URL"), url).unwrap();
        let (_, out) = d.compile("build");
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(
            stderr(&out).starts_with(&format!(" !     start-pgpool: {why}")),
            "{}",
            show(&out)
        );
        assert!(!show(&out).contains("s3cret"), "{}", show(&out));
    }
}
