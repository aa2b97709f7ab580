//! The Cloud Native Buildpack as the CNB lifecycle runs it (buildpack API 0.10): `bin/detect`
//! and `bin/build` from the packaged buildpack directory, in the app's directory, with the
//! `CNB_*` variables and positional arguments the lifecycle passes, a layers directory, and a
//! platform directory whose `env/` holds the app's config vars. The artifacts come over HTTP
//! from a loopback server (`etc/release-artifacts` output); then the built app's `start-pgpool`
//! runs with the launch layers' PATH and env applied, against the real cluster.
//!
//! `pack build` and a container engine are not used here (README, "Heroku Fir / CNB", says how
//! to run one where they exist).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::cluster;
use crate::support::launcher::*;
use crate::support::release::{
    REPORTING_APP, ReleaseServer, assert_reports_pgpool, cnb_dir, custom_download_error,
    launch_env, launcher_file, pgpool_file, release_dir, stack, tampered_release_dir, version,
};

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const BUILDPACK_ID: &str = "start-pgpool/start-pgpool";

/// One app's build, as the lifecycle lays it out: `app/`, `layers/<buildpack id>/`,
/// `platform/env/`, the plan files.
struct Lifecycle {
    tmp: tempfile::TempDir,
}

impl Lifecycle {
    fn new(release_url: Option<&str>) -> Lifecycle {
        let tmp = tempfile::tempdir().unwrap();
        let l = Lifecycle { tmp };
        for d in [l.app(), l.layers(), l.platform().join("env")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(l.app().join("Procfile"), "web: start-pgpool ./web\n").unwrap();
        if let Some(url) = release_url {
            std::fs::write(l.platform().join("env/START_PGPOOL_RELEASE_URL"), url).unwrap();
        }
        l
    }

    fn app(&self) -> PathBuf {
        self.tmp.path().join("workspace")
    }

    /// The lifecycle gives each buildpack `<layers>/<id with / as _>`.
    fn layers(&self) -> PathBuf {
        self.tmp
            .path()
            .join("layers")
            .join(BUILDPACK_ID.replace('/', "_"))
    }

    fn platform(&self) -> PathBuf {
        self.tmp.path().join("platform")
    }

    /// `bin/<phase>` with the lifecycle's environment for a linux/amd64 target of the stack's
    /// Ubuntu (heroku-24: 24.04, as heroku/builder:24 has it): the variables of buildpack API
    /// 0.10, nothing else but PATH and HOME.
    fn run(&self, phase: &str, args: &[&Path]) -> Output {
        let plan = self.tmp.path().join("plan.toml");
        std::fs::write(&plan, "").unwrap();
        let mut cmd = Command::new(cnb_dir().join("bin").join(phase));
        cmd.env_clear()
            .env("PATH", PATH)
            .env("HOME", self.tmp.path())
            .env("CNB_BUILDPACK_DIR", cnb_dir())
            .env("CNB_PLATFORM_DIR", self.platform())
            .env("CNB_TARGET_OS", "linux")
            .env("CNB_TARGET_ARCH", "amd64")
            .env("CNB_TARGET_DISTRO_NAME", "ubuntu")
            .env("CNB_TARGET_DISTRO_VERSION", ubuntu_of(&stack()))
            .current_dir(self.app())
            .args(args)
            .stdin(Stdio::null());
        if phase == "detect" {
            cmd.env("CNB_BUILD_PLAN_PATH", &plan);
        } else {
            cmd.env("CNB_LAYERS_DIR", self.layers())
                .env("CNB_BP_PLAN_PATH", &plan);
        }
        cmd.output().unwrap()
    }

    fn detect(&self) -> Output {
        let plan = self.tmp.path().join("plan.toml");
        self.run("detect", &[&self.platform(), &plan])
    }

    fn build(&self) -> Output {
        let plan = self.tmp.path().join("plan.toml");
        self.run("build", &[&self.layers(), &self.platform(), &plan])
    }
}

/// heroku-NN runs on Ubuntu NN.04.
fn ubuntu_of(stack: &str) -> String {
    let nn = stack.strip_prefix("heroku-").expect("a heroku-NN stack");
    format!("{nn}.04")
}

/// What the lifecycle's restorer leaves of a cached layer's `<layer>.toml` on a rebuild: the
/// metadata, without the `[types]` table (the buildpack sets the types again).
fn as_restored(layers: &Path) {
    for layer in ["start-pgpool", "pgpool"] {
        let path = layers.join(format!("{layer}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut kept = Vec::new();
        let mut in_types = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_types = line.trim() == "[types]";
            }
            if !in_types {
                kept.push(line);
            }
        }
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    }
}

/// The seconds and layer sizes the build's last line reports, for the figures.
fn done_line(out: &Output) -> String {
    stdout(out)
        .lines()
        .find(|l| l.contains("start-pgpool: done in"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn cnb_detect_passes_for_any_app() {
    let l = Lifecycle::new(None);
    std::fs::remove_file(l.app().join("Procfile")).unwrap();
    let out = l.detect();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let toml = std::fs::read_to_string(cnb_dir().join("buildpack.toml")).unwrap();
    assert!(toml.contains("api = \"0.10\""), "{toml}");
    assert!(
        toml.contains(&format!("version = \"{}\"", version())),
        "{toml}"
    );
}

#[test]
fn cnb_build_installs_launch_layers_then_reuses_them_and_the_app_runs_the_layers_pgpool() {
    let release = release_dir();
    let server = ReleaseServer::serve(release.path());
    // A mirror's URL with a token in it: the build uses it, and shows or keeps it nowhere.
    let url = format!(
        "http://builder:s3cret-token@127.0.0.1:{}/{{file}}",
        server.port
    );
    let l = Lifecycle::new(Some(&url));

    let out = l.build();
    assert_ok(&out);
    let log = stdout(&out);
    eprintln!("cold build: {}", done_line(&out));
    for f in [launcher_file(), pgpool_file()] {
        assert!(
            log.contains(&format!("-----> start-pgpool: downloading {f}")),
            "{log}"
        );
    }
    let got = server.requests();
    assert_eq!(got.len(), 4, "two artifacts and their .sha256: {got:#?}");

    let layers = l.layers();
    for layer in ["start-pgpool", "pgpool"] {
        let toml = std::fs::read_to_string(layers.join(format!("{layer}.toml"))).unwrap();
        let flags: String = toml.replace(' ', "");
        for want in ["launch=true", "cache=true"] {
            assert!(flags.contains(want), "{layer}.toml lacks {want}:\n{toml}");
        }
        assert!(!flags.contains("build=true"), "{toml}");
        assert!(
            !toml.contains("s3cret"),
            "{layer}.toml keeps the token:\n{toml}"
        );
    }
    assert!(!show(&out).contains("s3cret"), "{}", show(&out));
    let launcher = layers.join("start-pgpool/bin/start-pgpool");
    let pgpool = layers.join("pgpool/pgpool/bin/pgpool");
    assert!(launcher.is_file() && pgpool.is_file(), "{}", show(&out));
    // pgpool's libraries stay out of the lifecycle's reach (a launch layer's lib/ would go on
    // the app's LD_LIBRARY_PATH) and come through pgpool's own RPATH.
    assert!(!layers.join("pgpool/lib").exists());
    assert!(layers.join("pgpool/pgpool/lib").is_dir());
    assert!(!layers.join("pgpool/.download").exists());

    // The rebuild finds both layers restored with the same artifacts: no request at all.
    as_restored(&layers);
    let out = l.build();
    assert_ok(&out);
    eprintln!("cached build: {}", done_line(&out));
    let log = stdout(&out);
    for f in [launcher_file(), pgpool_file()] {
        assert!(
            log.contains(&format!("-----> start-pgpool: using cached {f}")),
            "{log}"
        );
    }
    assert!(!log.contains("downloading"), "{log}");
    assert_eq!(server.requests().len(), 4, "the cached build downloaded");
    let toml = std::fs::read_to_string(layers.join("pgpool.toml")).unwrap();
    assert!(toml.replace(' ', "").contains("launch=true"), "{toml}");

    // A layer restored with another artifact's metadata (an older release) is downloaded again;
    // the other is kept.
    as_restored(&layers);
    let meta = layers.join("pgpool.toml");
    let toml = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        toml.replace(&pgpool_file(), "pgpool-4.6.1-1-heroku-24.tar.gz"),
    )
    .unwrap();
    let out = l.build();
    assert_ok(&out);
    let log = stdout(&out);
    assert!(
        log.contains(&format!("downloading {}", pgpool_file())),
        "{log}"
    );
    assert!(
        log.contains(&format!("using cached {}", launcher_file())),
        "{log}"
    );
    assert_eq!(server.requests().len(), 6);

    // A layer restored without its program (a cache that lost it) is downloaded again too.
    as_restored(&layers);
    std::fs::remove_file(&pgpool).unwrap();
    let out = l.build();
    assert_ok(&out);
    assert!(
        stdout(&out).contains(&format!("downloading {}", pgpool_file())),
        "{}",
        show(&out)
    );
    assert!(pgpool.is_file());
    assert_eq!(server.requests().len(), 8);
    drop(server);

    // The app's process as the lifecycle's launcher starts it, the launch layers applied to a
    // bare environment: /usr/sbin (Debian's pgpool) is not on PATH.
    let c = cluster::shared();
    let port = free_port();
    let mut base: BTreeMap<String, String> = [
        ("PATH", PATH.to_string()),
        ("HOME", l.app().display().to_string()),
        ("PGPOOL_PORT", port.to_string()),
        ("PGPOOL_RUNTIME_DIR", l.app().display().to_string()),
        ("PGPOOL_NUM_INIT_CHILDREN", "4".to_string()),
        ("DATABASE_URL", c.primary_url()),
        ("FOLLOWER1_URL", c.follower_url(1)),
        ("PGPOOL_URLS", "DATABASE_URL FOLLOWER1_URL".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let env = launch_env(&layers, base.clone());
    assert_eq!(env["PGPOOL_BIN"], pgpool.display().to_string());
    // A config var of the app's wins over the layer's default.
    base.insert("PGPOOL_BIN".into(), "/app/mine/pgpool".into());
    assert_eq!(launch_env(&layers, base)["PGPOOL_BIN"], "/app/mine/pgpool");

    let out = Command::new("bash")
        .env_clear()
        .envs(&env)
        .current_dir(l.app())
        .arg("-c")
        .arg(format!(
            r#"set -e
echo "launcher $(command -v start-pgpool)"
echo "pcp $(command -v pcp_node_info)"
exec start-pgpool {REPORTING_APP}"#
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_reports_pgpool(&out, &pgpool);
    let text = stdout(&out);
    let has = |line: String| text.lines().any(|l| l == line);
    assert!(
        has(format!("launcher {}", launcher.display())),
        "{}",
        show(&out)
    );
    assert!(
        has(format!(
            "pcp {}",
            layers.join("pgpool/pgpool/bin/pcp_node_info").display()
        )),
        "{}",
        show(&out)
    );
}

#[test]
fn cnb_build_names_the_release_it_looked_for_and_never_a_credential() {
    let empty = tempfile::tempdir().unwrap();
    let server = ReleaseServer::serve(empty.path());
    let url = format!(
        "http://builder:s3cret-token@127.0.0.1:{}/{{file}}",
        server.port
    );
    let l = Lifecycle::new(Some(&url));
    let out = l.build();
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{}", show(&out));
    // bin/compile's words (tests/suite/buildpack.rs).
    let want = format!(
        "start-pgpool: error: {}",
        custom_download_error(
            &format!("{}.sha256", launcher_file()),
            "HTTP 404",
            &format!("http://127.0.0.1:{}/", server.port)
        )
    );
    assert_eq!(lines[0], want, "{}", show(&out));
    assert!(!show(&out).contains("s3cret"), "{}", show(&out));
    assert!(!l.layers().join("start-pgpool/bin").exists());
}

#[test]
fn cnb_build_refuses_a_release_url_it_cannot_use_by_name() {
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
        let l = Lifecycle::new(Some(url));
        let out = l.build();
        assert_ne!(out.status.code(), Some(0), "{}", show(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("start-pgpool: error: {why}")) && err.lines().count() == 1,
            "{}",
            show(&out)
        );
        assert!(!show(&out).contains("s3cret"), "{}", show(&out));
    }
}

#[test]
fn cnb_build_of_a_tampered_artifact_installs_nothing() {
    let release = tampered_release_dir();
    let url = format!("file://{}/{{file}}", release.path().display());
    let l = Lifecycle::new(Some(&url));
    let out = l.build();
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!(
            "start-pgpool: error: {} from file://{}/ does not match its published sha256; nothing was installed",
            pgpool_file(),
            release.path().display()
        )),
        "{}",
        show(&out)
    );
    let layer = l.layers().join("pgpool");
    assert!(!layer.join("pgpool").exists() && !layer.join(".download").exists());
}
