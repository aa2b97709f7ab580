//! The app's view: `DATABASE_URL` pointing at pgpool on loopback, the original kept beside it.
//! Pure: returns the variables to set.

use url::Url;

use crate::config::{Backend, Env};

/// TLS settings of the original URL: the app now talks plain TCP to loopback, and a
/// `sslmode=require` left in would make it fail (pgpool has no frontend certificate).
const DROPPED_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcompression",
];

/// `postgres://USER:PASS@127.0.0.1:PORT/DB?sslmode=disable&<the primary's other params>`.
pub fn database_url(primary: &Backend, port: u16) -> String {
    let mut url = Url::parse("postgres://127.0.0.1").expect("a constant URL parses");
    // These setters only fail for URLs that cannot have credentials; this one can.
    let _ = url.set_port(Some(port));
    let _ = url.set_username(&encode(&primary.user));
    let _ = url.set_password(Some(&encode(primary.password.expose())));
    url.path_segments_mut()
        .expect("a postgres URL with a host has path segments")
        .push(&primary.dbname);
    // Percent-encoded by hand: `query_pairs_mut` form-encodes a space as `+`, which libpq
    // does not decode (application_name `a b` arrived as `a+b`).
    let mut query = vec!["sslmode=disable".to_string()];
    for (k, v) in &primary.params {
        if !DROPPED_PARAMS.contains(&k.as_str()) {
            query.push(format!("{}={}", encode(k), encode(v)));
        }
    }
    url.set_query(Some(&query.join("&")));
    url.to_string()
}

/// The url crate leaves `:` and `@`-like characters of userinfo partly unencoded for
/// non-special schemes; encoding everything but unreserved characters is what every driver
/// decodes back correctly.
fn encode(s: &str) -> String {
    const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, USERINFO).to_string()
}

/// Variables to set in the app's environment.
pub fn app_env(env: &Env, primary: &Backend, port: u16) -> Vec<(String, String)> {
    let url = database_url(primary, port);
    let mut vars = vec![
        ("DATABASE_URL".to_string(), url.clone()),
        ("PGPOOL_URL".to_string(), url),
    ];
    if let Ok(Some(original)) = env.get("DATABASE_URL") {
        vars.push((
            "PGPOOL_ORIGINAL_DATABASE_URL".to_string(),
            original.to_string(),
        ));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::config::backends::parse;

    const AWKWARD: &str = "postgres://app:p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx@db.example.com:6540/my%20db?sslmode=require&application_name=web%201&sslrootcert=/x&connect_timeout=5";

    #[test]
    fn points_at_loopback_and_round_trips_the_credentials() {
        let p = parse("DATABASE_URL", Role::Primary, AWKWARD).unwrap();
        let s = database_url(&p, 6432);
        assert!(
            s.contains("application_name=web%201"),
            "libpq does not read + as a space: {s}"
        );
        let back = parse("X", Role::Primary, &s).unwrap();
        assert_eq!(back.host, "127.0.0.1");
        assert_eq!(back.port, 6432);
        assert_eq!(back.user, "app");
        assert_eq!(back.password, p.password);
        assert_eq!(back.dbname, "my db");
        assert_eq!(
            back.params,
            vec![
                ("sslmode".into(), "disable".into()),
                ("application_name".into(), "web 1".into()),
                ("connect_timeout".into(), "5".into()),
            ]
        );
    }

    #[test]
    fn keeps_the_original_when_there_was_one() {
        let p = parse("DATABASE_URL", Role::Primary, AWKWARD).unwrap();
        let env: Env = [("DATABASE_URL", AWKWARD)].into_iter().collect();
        let vars = app_env(&env, &p, 5432);
        assert_eq!(vars[0].0, "DATABASE_URL");
        assert_eq!(vars[0].1, vars[1].1);
        assert_eq!(
            vars[2],
            ("PGPOOL_ORIGINAL_DATABASE_URL".into(), AWKWARD.into())
        );
        assert_eq!(app_env(&Env::default(), &p, 5432).len(), 2);
    }
}
