//! pgpool families: each renders its own keys, and every key rendered is one the running pgpool
//! knows. pgpool ignores an unknown key without a word (4.4 renamed `socket_dir` to
//! `unix_socket_directories`; the old key left the socket in /tmp), so each family that can run
//! here reads every rendered key back with `PGPOOL SHOW` through the pgpool it was rendered for:
//! the buildpack's own build (the release etc/pgpool-version pins) and 4.3 (Debian 12's 4.3.5).
//! The other families have golden files; 4.1 cannot be had here at all (no 4.1 source or binary
//! in Debian's archive any more).
//!
//! Golden files: `tests/golden/pgpool-<family>.conf`, what `--print-config` renders for a fixed
//! environment. After a deliberate template change, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test suite families::` and review the diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::cluster;
use crate::support::launcher::*;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// A stand-in `pgpool` that only answers `--version`, for rendering without the release.
/// Written by a child process, so no thread of this test process ever holds it open for
/// writing when another test forks (which would make executing it fail with ETXTBSY).
fn version_printer(dir: &Path, version_line: &str) -> PathBuf {
    let bin = dir.join("pgpool");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"printf '#!/bin/sh\necho "%s"\n' "$2" > "$1" && chmod 755 "$1""#)
        .arg("sh")
        .arg(&bin)
        .arg(version_line)
        .status()
        .unwrap();
    assert!(status.success());
    bin
}

/// `start-pgpool --print-config` for a fixed app: a primary and two followers, no cluster.
fn print_config(pgpool: &Path) -> String {
    let mut l = Launcher::empty();
    l.set("PATH", "/usr/bin:/bin")
        .set("PGPOOL_BIN", pgpool)
        .set("PGPOOL_URLS", "DATABASE_URL FOLLOWER1_URL FOLLOWER2_URL")
        .set("DATABASE_URL", "postgres://app:secret@10.0.0.1:5432/appdb")
        .set("FOLLOWER1_URL", "postgres://app:secret@10.0.0.2:5433/appdb")
        .set("FOLLOWER2_URL", "postgres://app:secret@[fd00::3]/appdb")
        .set("PGPOOL_PORT", "6432")
        .set("PGPOOL_RUNTIME_DIR", "/tmp");
    let out = l.command(&["--print-config"]).output().unwrap();
    assert_ok(&out);
    stdout(&out)
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(GOLDEN).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(GOLDEN).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 cargo test --test suite families:: writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "rendered pgpool.conf differs from {} (after a deliberate change: UPDATE_GOLDEN=1 cargo test --test suite families::)",
        path.display()
    );
}

/// `key = value` settings of a pgpool.conf, values unquoted, comments dropped.
fn settings(conf: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in conf.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line:?}"));
        let rest = rest.trim_start();
        let value = match rest.strip_prefix('\'') {
            Some(q) => q.split_once('\'').expect("closing quote").0,
            None => rest.split(['#', ' ', '\t']).next().unwrap(),
        };
        let dup = out.insert(key.trim().to_string(), value.to_string());
        assert!(dup.is_none(), "{key} rendered twice");
    }
    out
}

fn keys(conf: &str) -> Vec<String> {
    settings(conf).into_keys().collect()
}

#[test]
fn family_4_1_renders_master_slave_keys() {
    let dir = tempfile::tempdir().unwrap();
    let conf = print_config(&version_printer(
        dir.path(),
        "pgpool-II version 4.1.4 (karasukiboshi)",
    ));
    check_golden("pgpool-4.1.conf", &conf);
    let k = keys(&conf);
    for want in [
        "master_slave_mode",
        "master_slave_sub_mode",
        "socket_dir",
        "follow_master_command",
    ] {
        assert!(k.iter().any(|x| x == want), "4.1 needs {want}:\n{conf}");
    }
    // 4.2+ keys that 4.1 would ignore without a word.
    for unknown in [
        "backend_clustering_mode",
        "follow_primary_command",
        "failover_on_backend_shutdown",
        "unix_socket_directories",
    ] {
        assert!(!k.iter().any(|x| x == unknown), "4.1 has no {unknown}");
    }
}

#[test]
fn family_4_3_4_6_and_4_7_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    for (line, name, socket_key, work_dir_key) in [
        (
            "pgpool-II version 4.3.5 (tamahomeboshi)",
            "pgpool-4.3.conf",
            "socket_dir",
            "logdir",
        ),
        (
            "pgpool-II version 4.6.1 (chirikoboshi)",
            "pgpool-4.6.conf",
            "unix_socket_directories",
            "logdir",
        ),
        (
            "pgpool-II version 4.7.2 (tasukiboshi)",
            "pgpool-4.7.conf",
            "unix_socket_directories",
            "work_dir",
        ),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).unwrap();
        let conf = print_config(&version_printer(&sub, line));
        check_golden(name, &conf);
        let s = settings(&conf);
        for key in [socket_key, work_dir_key] {
            assert_eq!(
                s.get(key).map(String::as_str),
                Some("/tmp/start-pgpool-6432-XXXXXX"),
                "{name}: {key}"
            );
        }
    }
}

#[test]
fn a_release_outside_the_known_families_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bin = version_printer(dir.path(), "pgpool-II version 4.8.0 (someboshi)");
    let mut l = Launcher::empty();
    l.set("PATH", "/usr/bin:/bin")
        .set("PGPOOL_BIN", &bin)
        .set("DATABASE_URL", "postgres://app:secret@10.0.0.1/appdb");
    let out = l.command(&["--print-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("pgpool 4.8.0, a family start-pgpool does not know (it knows 4.1 to 4.7)"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

/// Runs pgpool `bin` in front of the shared cluster and reads back every key the launcher
/// rendered for it; returns (running version, mismatches).
fn read_back_every_key(bin: &Path) -> (String, Vec<String>) {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.use_pgpool(bin);
    let out = l.run_sh(
        r#"set -e
conf=$(echo "$PGPOOL_RUNTIME_DIR"/start-pgpool-*/pgpool.conf)
test -f "$conf"
if test -S "$(dirname "$conf")/.s.PGSQL.$PGPOOL_PORT"; then echo SOCKET in-runtime-dir; fi
echo "VERSION $(psql "$DATABASE_URL" -XAtc 'show pool_version')"
echo CONF; cat "$conf"; echo ENDCONF
sed -n 's/^\([a-z_0-9]*\) *=.*/\1/p' "$conf" | while read -r k; do
  echo "KEY $k"
  psql "$DATABASE_URL" -XAt -F'|' -c "pgpool show $k" 2>&1 || true
done"#,
    );
    assert_ok(&out);
    let text = stdout(&out);
    let conf = text
        .split_once("\nCONF\n")
        .and_then(|(_, rest)| rest.split_once("ENDCONF\n"))
        .expect("conf markers")
        .0;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("VERSION "))
        .expect("version line")
        .to_string();
    assert!(
        text.lines().any(|l| l == "SOCKET in-runtime-dir"),
        "pgpool's client socket is not in the runtime directory: the socket key was ignored\n{}",
        show(&out)
    );
    let mut shown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.split_once("ENDCONF\n").unwrap().1.lines() {
        if let Some(k) = line.strip_prefix("KEY ") {
            current = Some(k.to_string());
            shown.insert(k.to_string(), Vec::new());
        } else if let Some(k) = &current {
            shown.get_mut(k).unwrap().push(line.to_string());
        }
    }
    let rendered = settings(conf);
    assert!(rendered.len() > 40, "too few keys rendered:\n{conf}");
    let mut bad = Vec::new();
    for (key, value) in &rendered {
        let lines = shown.get(key).cloned().unwrap_or_default();
        // A grouped key (health_check_timeout) answers one `name|value|description` row per
        // variant; a plain key answers its value alone.
        let got = lines
            .iter()
            .find_map(|l| {
                let mut f = l.split('|');
                (f.next() == Some(key.as_str())).then(|| f.next().unwrap_or("").to_string())
            })
            .or_else(|| (lines.len() == 1).then(|| lines[0].clone()));
        let ok = match &got {
            None => false,
            Some(g) if g.contains("ERROR") => false,
            // pgpool masks password settings (pool_passwd too) whatever they hold.
            Some(g) if key.contains("passw") => g == "*****" || g == value,
            Some(g) => g == value || same_duration(key, value, g),
        };
        if !ok {
            bad.push(format!("{key}: rendered {value:?}, pgpool shows {lines:?}"));
        }
    }
    (version, bad)
}

/// The unit pgpool reads a duration key in, in milliseconds: from the `GUC_UNIT_*` flag of
/// each key in pgpool's src/config/pool_config_variables.c (4.7.2; the 4.3 keys we render have the
/// same units). A key not listed has no unit, and its value must come back as rendered.
fn unit_ms(key: &str) -> Option<u64> {
    match key {
        "connect_timeout" | "delay_threshold_by_time" => Some(1),
        "log_rotation_age" => Some(60_000),
        "relcache_expire"
        | "health_check_timeout"
        | "health_check_period"
        | "health_check_retry_delay"
        | "child_life_time"
        | "client_idle_limit"
        | "connection_life_time"
        | "authentication_timeout"
        | "sr_check_period"
        | "recovery_timeout"
        | "client_idle_limit_in_recovery"
        | "search_primary_node_timeout"
        | "wd_interval"
        | "wd_lost_node_removal_timeout"
        | "wd_no_show_node_removal_timeout"
        | "wd_heartbeat_keepalive"
        | "wd_heartbeat_deadtime"
        | "memqcache_expire"
        | "auto_failback_interval" => Some(1000),
        _ => None,
    }
}

/// pgpool shows a duration key's value with a unit, in the largest unit that divides it
/// (`300` seconds as `5min`): the same duration as rendered, in the key's own unit.
fn same_duration(key: &str, rendered: &str, shown: &str) -> bool {
    let (Some(unit), Ok(n)) = (unit_ms(key), rendered.parse::<u64>()) else {
        return false;
    };
    let digits = shown.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let Ok(m) = digits.parse::<u64>() else {
        return false;
    };
    let ms = match &shown[digits.len()..] {
        "ms" => m,
        "s" => m * 1000,
        "min" => m * 60_000,
        "h" => m * 3_600_000,
        "d" => m * 86_400_000,
        _ => return false,
    };
    ms == n * unit
}

#[test]
fn durations_compare_in_the_keys_own_unit() {
    assert!(same_duration("child_life_time", "300", "5min"));
    assert!(same_duration("health_check_period", "1", "1s"));
    assert!(same_duration("connect_timeout", "500", "500ms"));
    assert!(same_duration("connect_timeout", "1000", "1s"));
    // A key in seconds rendered as 500 is not 500ms, nor one in ms 1 s.
    assert!(!same_duration("health_check_timeout", "500", "500ms"));
    assert!(!same_duration("connect_timeout", "1", "1s"));
    assert!(!same_duration("child_life_time", "300", "4min"));
    assert!(!same_duration("child_life_time", "on", "1s"));
    assert!(!same_duration("child_life_time", "1", "1"));
    assert!(!same_duration("num_init_children", "1", "1s"));
}

/// The release `etc/pgpool-version` pins: what `etc/build-pgpool` builds.
fn pinned_version() -> String {
    let pins = include_str!("../../etc/pgpool-version");
    pins.lines()
        .find_map(|l| l.strip_prefix("PGPOOL_VERSION="))
        .expect("PGPOOL_VERSION in etc/pgpool-version")
        .to_string()
}

#[test]
fn the_buildpacks_pgpool_reads_every_rendered_key() {
    let bin = ensure_built_pgpool();
    let (version, bad) = read_back_every_key(&bin);
    assert!(
        version.starts_with(&format!("{} ", pinned_version())),
        "running {version}"
    );
    assert!(
        bad.is_empty(),
        "pgpool {version} did not take:\n{}",
        bad.join("\n")
    );
}

#[test]
fn debians_pgpool_4_3_reads_every_rendered_key() {
    let (version, bad) = read_back_every_key(debian_pgpool());
    assert!(version.starts_with("4.3."), "running {version}");
    assert!(
        bad.is_empty(),
        "pgpool {version} did not take:\n{}",
        bad.join("\n")
    );
}
