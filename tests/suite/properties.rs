//! Arbitrary strings in every part of the URLs: the launcher either refuses them with one line
//! naming the variable (and no password), or the pgpool.conf it renders, read back with
//! pgpool's own lexer rules (`conf_lexer`), holds exactly the intended keys and values, and
//! pool_passwd and the app's DATABASE_URL give back exactly the credentials.

use std::path::Path;

use proptest::prelude::*;

use crate::support::api::backends::{self, Backend};
use crate::support::api::family::Release;
use crate::support::api::settings::{Env, Settings};
use crate::support::api::{app_env, error, family, render};
use crate::support::conf_lexer::{self, Entry, Kind};
use crate::support::launcher::{Launcher, pgpool_bin};
use crate::support::pool_passwd;

/// Strings users paste, and strings attackers write.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9_.-]{1,12}",
        3 => "[ -~]{0,16}",
        3 => "[a-z'\\\\\n\r\t #%@:/=?&\"\u{0}\u{7f}\u{85}\u{2028}é]{0,10}",
        1 => any::<String>().prop_map(|s| s.chars().take(16).collect()),
        1 => Just("x' port = 6433 #".to_string()),
        1 => Just("x'\ninclude = '/etc/passwd".to_string()),
    ]
}

fn encoded(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A part as written into the URL: mostly awkward but legal and percent-encoded the way
/// providers do it (so that enough inputs get through to the rendering checks), otherwise
/// anything, raw or encoded.
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9 #%@:/\"?&=é_.~-]{1,12}".prop_map(|s| encoded(&s)),
        1 => text(),
        1 => text().prop_map(|s| encoded(&s)),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9][a-z0-9.-]{0,15}",
        1 => "\\[(::)?[0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,3}(::)?\\]",
        1 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        2 => part(),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => (1024u16..=65535).prop_map(|p| p.to_string()),
        1 => "[0-9]{1,6}",
        1 => text(),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        2 => Just("sslmode=require".to_string()),
        1 => (text(), part()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => part(),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    user: String,
    password: String,
    host: String,
    port: String,
    db: String,
    query: String,
    follower: Option<(String, String)>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        part(),
        part(),
        host(),
        port(),
        part(),
        query(),
        proptest::option::of((host(), port())),
    )
        .prop_map(|(user, password, host, port, db, query, follower)| Input {
            user,
            password,
            host,
            port,
            db,
            query,
            follower,
        })
}

fn url(i: &Input, host: &str, port: &str) -> String {
    let port = if port.is_empty() {
        String::new()
    } else {
        format!(":{port}")
    };
    let q = if i.query.is_empty() {
        String::new()
    } else {
        format!("?{}", i.query)
    };
    format!(
        "postgres://{}:{}@{host}{port}/{}{q}",
        i.user, i.password, i.db
    )
}

fn env_of(i: &Input) -> Env {
    let mut pairs = vec![("DATABASE_URL".to_string(), url(i, &i.host, &i.port))];
    let mut names = "DATABASE_URL".to_string();
    if let Some((h, p)) = &i.follower {
        pairs.push(("FOLLOWER_URL".to_string(), url(i, h, p)));
        names.push_str(" FOLLOWER_URL");
    }
    pairs.push(("PGPOOL_URLS".to_string(), names));
    pairs.into_iter().collect()
}

/// The password as the user meant it, when the URL spells one we can recognise.
fn meant_password(i: &Input) -> String {
    percent_encoding::percent_decode_str(&i.password)
        .decode_utf8_lossy()
        .into_owned()
}

/// What a refusal must look like.
fn check_refusal(i: &Input, err: &anyhow::Error) -> Result<(), TestCaseError> {
    let line = error::line(err);
    prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    prop_assert!(
        line.starts_with("start-pgpool: error: DATABASE_URL: ")
            || line.starts_with("start-pgpool: error: FOLLOWER_URL: "),
        "names the variable: {line:?}"
    );
    const PARTS: &[&str] = &[
        "host", "port", "user", "password", "database", "query", "URL", "scheme", "UTF-8",
    ];
    prop_assert!(
        PARTS.iter().any(|p| line.contains(p)),
        "names the part: {line:?}"
    );
    for secret in [i.password.clone(), meant_password(i)] {
        // Short strings occur in any sentence; long random ones do not.
        if secret.chars().count() >= 8 {
            prop_assert!(!line.contains(&secret), "password in {line:?}");
        }
    }
    Ok(())
}

/// The keys whose values come from the URLs, and what each must read back as.
fn from_urls(key: &str, bs: &[Backend]) -> Option<String> {
    let p = &bs[0];
    match key {
        "sr_check_user" | "health_check_user" => Some(p.user.clone()),
        "sr_check_database" | "health_check_database" => Some(p.dbname.clone()),
        _ => {
            for (n, b) in bs.iter().enumerate() {
                if key == format!("backend_hostname{n}") {
                    return Some(b.host.clone());
                }
                if key == format!("backend_port{n}") {
                    return Some(b.port.to_string());
                }
            }
            None
        }
    }
}

/// The same shape with plain values: what every key and value kind must be.
fn benign(bs: &[Backend]) -> Vec<Backend> {
    bs.iter()
        .enumerate()
        .map(|(n, b)| Backend {
            host: format!("h{n}"),
            port: 5432,
            user: "u".into(),
            dbname: "d".into(),
            ..b.clone()
        })
        .collect()
}

/// Release `version` as the buildpack's own build of it would be: one that holds a TLS mode
/// per server renders every URL's mode (one without refuses the stronger modes; tls.rs).
fn ours(version: &str) -> Release {
    let mut release: Release = version.parse().unwrap();
    release.backend_tls = true;
    release
}

fn entries(bs: &[Backend], settings: &Settings, release: Release) -> Vec<Entry> {
    let r = render::render(
        bs,
        settings,
        &render::Files::at(Path::new("/tmp/rt")),
        release,
        None,
    )
    .expect("accepted backends always render");
    conf_lexer::parse(&r.pgpool_conf).expect("pgpool can parse what we render")
}

fn check_accepted(i: &Input, bs: &[Backend], settings: &Settings) -> Result<(), TestCaseError> {
    for version in ["4.1.4", "4.3.5", "4.6.1"] {
        let release = ours(version);
        let got = entries(bs, settings, release);
        let want = entries(&benign(bs), settings, release);
        let keys = |v: &[Entry]| v.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
        prop_assert_eq!(
            keys(&got),
            keys(&want),
            "exactly the intended keys ({})",
            version
        );
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.kind, w.kind, "{} keeps its kind", &g.key);
            match from_urls(&g.key, bs) {
                Some(v) => prop_assert_eq!(&g.value, &v, "{} reads back verbatim", &g.key),
                None => prop_assert_eq!(&g.value, &w.value, "{} untouched", &g.key),
            }
            if g.kind == Kind::String {
                prop_assert!(!g.value.contains('\''));
            }
        }
    }
    let r = render::render(
        bs,
        settings,
        &render::Files::at(Path::new("/tmp/rt")),
        ours("4.3.5"),
        None,
    )
    .unwrap();
    let pw = bs[0].password.expose();
    if pw.chars().count() >= 8 {
        prop_assert!(!r.pgpool_conf.contains(pw), "no password in pgpool.conf");
    }
    prop_assert_eq!(
        pool_passwd::read(r.pool_passwd.expose()),
        Some((bs[0].user.clone(), pw.to_string())),
        "pool_passwd gives back the credentials"
    );
    // The app's URL gives back the same credentials and database.
    let app = app_env::database_url(&bs[0], 6432);
    let back = backends::parse("DATABASE_URL", backends::Role::Primary, &app)
        .map_err(|e| TestCaseError::fail(format!("app URL does not parse: {e:#}")))?;
    prop_assert_eq!(&back.user, &bs[0].user);
    prop_assert_eq!(&back.password, &bs[0].password);
    prop_assert_eq!(&back.dbname, &bs[0].dbname);
    let _ = i;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn every_url_is_refused_clearly_or_rendered_exactly(i in input()) {
        let env = env_of(&i);
        let settings = Settings::from_env(&env).unwrap();
        match backends::resolve(&settings.url_vars, &env, &Default::default()) {
            Err(e) => check_refusal(&i, &e)?,
            Ok(bs) => check_accepted(&i, &bs, &settings)?,
        }
    }
}

/// The library and the binary agree: a handful of inputs through `start-pgpool --print-config`.
#[test]
fn print_config_agrees_with_the_library() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config::default());
    let (mut refused, mut accepted) = (0, 0);
    let version = family::release(&pgpool_bin()).unwrap();
    let fixed = [
        Input {
            user: "us%20er%23".into(),
            password: "p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx".into(),
            host: "db.example.com".into(),
            port: "6000".into(),
            db: "d%20b%23%25%40".into(),
            query: "sslmode=require".into(),
            follower: Some(("[::1]".into(), "6001".into())),
        },
        Input {
            user: "app".into(),
            password: "pw".into(),
            host: "h".into(),
            port: String::new(),
            db: "x%27%20port%20%3D%206433%20%23".into(),
            query: String::new(),
            follower: None,
        },
    ];
    // An environment variable cannot hold a NUL byte.
    let random: Vec<Input> =
        std::iter::repeat_with(|| input().new_tree(&mut runner).unwrap().current())
            .filter(|i| !env_pairs(i).iter().any(|(_, v)| v.contains('\0')))
            .take(10)
            .collect();
    for i in fixed.iter().chain(&random) {
        let env = env_of(i);
        let mut l = Launcher::empty();
        for (k, v) in env_pairs(i) {
            l.set(&k, v);
        }
        l.set("PGPOOL_BIN", pgpool_bin())
            .set("PGPOOL_RUNTIME_DIR", "/tmp/rt")
            .set("PATH", std::env::var_os("PATH").unwrap_or_default());
        let out = l.command(&["--print-config"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let settings = Settings::from_env(&env).unwrap();
        match backends::resolve(&settings.url_vars, &env, &Default::default()) {
            Err(e) => {
                refused += 1;
                assert!(!out.status.success(), "{i:?}");
                assert!(stdout.is_empty());
                assert_eq!(stderr, format!("{}\n", error::line(&e)));
            }
            Ok(bs) => {
                accepted += 1;
                assert!(out.status.success(), "{i:?}: {stderr}");
                let dir = Path::new("/tmp/rt").join("start-pgpool-5432-XXXXXX");
                let r = render::render(&bs, &settings, &render::Files::at(&dir), version, None)
                    .unwrap();
                assert_eq!(stdout, r.pgpool_conf);
                let got = conf_lexer::parse(&stdout).unwrap();
                let want = entries(&benign(&bs), &settings, version);
                assert_eq!(got.len(), want.len());
            }
        }
    }
    assert!(
        accepted >= 1 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
}

fn env_pairs(i: &Input) -> Vec<(String, String)> {
    let mut v = vec![("DATABASE_URL".to_string(), url(i, &i.host, &i.port))];
    let mut names = "DATABASE_URL".to_string();
    if let Some((h, p)) = &i.follower {
        v.push(("FOLLOWER_URL".to_string(), url(i, h, p)));
        names.push_str(" FOLLOWER_URL");
    }
    v.push(("PGPOOL_URLS".to_string(), names));
    v
}

/// The property above means little if nearly everything is refused: check the mix.
#[test]
fn the_generator_produces_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config::default());
    let n = 2000;
    let accepted = (0..n)
        .filter(|_| {
            let i = input().new_tree(&mut runner).unwrap().current();
            let env = env_of(&i);
            let s = Settings::from_env(&env).unwrap();
            backends::resolve(&s.url_vars, &env, &Default::default()).is_ok()
        })
        .count();
    eprintln!("{accepted} of {n} generated inputs accepted");
    assert!(
        accepted * 10 >= n,
        "at least 10% accepted: {accepted} of {n}"
    );
    assert!(
        accepted * 10 <= n * 9,
        "at least 10% refused: {accepted} of {n}"
    );
}
