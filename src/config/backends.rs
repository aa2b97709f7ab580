//! Backends: the URLs named by `PGPOOL_URLS`, parsed with the `url` crate and checked against
//! what pgpool.conf and pool_passwd can hold. Pure: takes an `Env`, returns values.
//!
//! Errors name the variable and the part at fault, never the value: a URL holds a password.

use anyhow::{Result, bail};
use url::{Host, Url};

use super::Env;
use super::conf_value::conf_safe;
use super::settings::URLS;
use super::tls::{Defaults, Tls};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Follower,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The variable the URL came from: how every message refers to this node.
    pub var: String,
    pub role: Role,
    /// As pgpool wants it: a name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub dbname: String,
    /// Query parameters in their original order, decoded.
    pub params: Vec<(String, String)>,
    /// What the URL asks of TLS to this server.
    pub tls: Tls,
}

/// pool_passwd keeps passwords in a 128-byte token that includes the `TEXT` prefix (pgpool's
/// `getNextToken`, MAX_TOKEN_LEN); a longer one would be cut short and fail to log in.
pub const MAX_PASSWORD_BYTES: usize = 124;

/// PostgreSQL truncates identifiers at NAMEDATALEN-1 bytes.
const MAX_NAME_BYTES: usize = 63;

/// Connection parameters that would send the app, or pgpool, somewhere else than the URL says.
const REFUSED_PARAMS: &[&str] = &["host", "hostaddr", "port", "user", "password", "dbname"];

/// Resolves every variable named in `vars` (the first is the primary) and checks they agree on
/// the credentials: pgpool logs in to every node with the same user, password and database.
/// `tls` is what libpq would take from outside the URLs.
pub fn resolve(vars: &[String], env: &Env, tls: &Defaults) -> Result<Vec<Backend>> {
    let defaults = tls;
    let mut backends: Vec<Backend> = Vec::with_capacity(vars.len());
    for (i, var) in vars.iter().enumerate() {
        let value = match env.get(var)? {
            None if env.contains(URLS.about.name) => {
                bail!("{var}: is not set ({} names it)", URLS.about.name)
            }
            None => bail!(
                "{var}: is not set; set it or list URL variables in {}",
                URLS.about.name
            ),
            Some(v) if v.trim().is_empty() => bail!("{var}: is empty"),
            Some(v) => v,
        };
        let role = if i == 0 {
            Role::Primary
        } else {
            Role::Follower
        };
        let b = parse_with(var, role, value, defaults)?;
        if let Some(primary) = backends.first() {
            check_same_credentials(primary, &b)?;
        }
        if let Some(same) = backends
            .iter()
            .find(|o| o.host.eq_ignore_ascii_case(&b.host) && o.port == b.port)
        {
            bail!(
                "{var}: host and port are the same as {}'s; each variable must name a different server",
                same.var
            );
        }
        backends.push(b);
    }
    Ok(backends)
}

fn check_same_credentials(primary: &Backend, b: &Backend) -> Result<()> {
    let differs = if b.user != primary.user {
        "user"
    } else if b.password != primary.password {
        "password"
    } else if b.dbname != primary.dbname {
        "database"
    } else {
        return Ok(());
    };
    bail!(
        "{}: {differs} differs from the primary's ({}); pgpool logs in to every node with the same user, password and database",
        b.var,
        primary.var
    )
}

/// One URL, without libpq's defaults from the environment. `var` is only used in messages.
pub fn parse(var: &str, role: Role, value: &str) -> Result<Backend> {
    parse_with(var, role, value, &Defaults::default())
}

fn parse_with(var: &str, role: Role, value: &str, defaults: &Defaults) -> Result<Backend> {
    let value = value.trim();
    let url = match Url::parse(value) {
        Ok(u) => u,
        Err(e) => return Err(url_error(var, e, value)),
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!("{var}: scheme must be postgres:// or postgresql://");
    }
    let host = host(var, &url)?;
    // pgpool refuses backend ports below 1024 (FATAL "outside the valid range for parameter
    // backend_port0 (1024 .. 65535)"), after it has started; say it first.
    let port = match url.port() {
        None => 5432,
        Some(p) if p < 1024 => bail!("{var}: port must be from 1024 to 65535 (pgpool's range)"),
        Some(p) => p,
    };
    let user = decode(var, "user", url.username())?;
    if user.is_empty() {
        bail!("{var}: has no user");
    }
    check_name(var, "user", &user)?;
    let password = match url.password() {
        None => bail!("{var}: has no password; pgpool needs it to log in to the servers"),
        Some(p) => decode(var, "password", p)?,
    };
    check_password(var, &password)?;
    let path = url.path();
    let dbname = decode(var, "database", path.strip_prefix('/').unwrap_or(path))?;
    if dbname.is_empty() {
        bail!("{var}: has no database name (the path after the host)");
    }
    check_name(var, "database", &dbname)?;
    let mut params = Vec::new();
    if let Some(query) = url.query() {
        check_percent_encoding(var, "query", query)?;
        // Split and percent-decode as libpq does: `+` is a plus, not a space (the url crate's
        // query_pairs is form decoding).
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(var, "query", k)?, decode(var, "query", v)?);
            if REFUSED_PARAMS.contains(&k.as_str()) {
                bail!("{var}: query parameter {k} is not supported; put it in the URL itself");
            }
            params.push((k, v));
        }
    }
    let tls = Tls::from_params(var, &params, defaults)?;
    Ok(Backend {
        var: var.to_string(),
        role,
        host,
        port,
        user,
        password: Secret::new(password),
        dbname,
        params,
        tls,
    })
}

/// Names the part the url crate choked on; its own messages never quote the input, but
/// they do not say which part is wrong either.
fn url_error(var: &str, e: url::ParseError, value: &str) -> anyhow::Error {
    use url::ParseError as P;
    match e {
        // `postgres://u:p@::1/d`: the host ends at the first `:`, so it looks empty.
        P::EmptyHost if value.contains("@:") || value.contains("//:") => {
            anyhow::anyhow!("{var}: has no host (write IPv6 hosts in brackets: [::1])")
        }
        P::EmptyHost => anyhow::anyhow!("{var}: has no host"),
        P::InvalidPort => anyhow::anyhow!("{var}: port must be a number from 1024 to 65535"),
        P::InvalidIpv6Address => anyhow::anyhow!(
            "{var}: host is not a valid IPv6 address (write IPv6 hosts in brackets: [::1])"
        ),
        P::InvalidIpv4Address | P::InvalidDomainCharacter | P::IdnaError => {
            anyhow::anyhow!("{var}: host is not a valid host name ({e})")
        }
        P::RelativeUrlWithoutBase => anyhow::anyhow!(
            "{var}: is not a URL; expected postgres://user:password@host:port/database"
        ),
        e => anyhow::anyhow!("{var}: is not a valid postgres URL ({e})"),
    }
}

fn host(var: &str, url: &Url) -> Result<String> {
    let host = match url.host() {
        None => bail!("{var}: has no host"),
        Some(Host::Ipv4(ip)) => return Ok(ip.to_string()),
        Some(Host::Ipv6(ip)) => return Ok(ip.to_string()),
        Some(Host::Domain(d)) => decode(var, "host", d)?,
    };
    if host.is_empty() {
        bail!("{var}: has no host");
    }
    if host.starts_with('/') {
        bail!("{var}: host is a Unix socket path; pgpool needs a TCP host");
    }
    // A DNS name, nothing more: pgpool.conf takes it verbatim, and only these characters
    // appear in the hostnames providers hand out.
    let ok = host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok {
        bail!("{var}: host is not a valid host name");
    }
    Ok(host)
}

fn check_name(var: &str, part: &str, value: &str) -> Result<()> {
    if !conf_safe(value) {
        bail!(
            "{var}: {part} contains a quote, backslash or control character, which pgpool.conf cannot hold"
        );
    }
    if value.len() > MAX_NAME_BYTES {
        bail!("{var}: {part} is longer than {MAX_NAME_BYTES} bytes");
    }
    Ok(())
}

fn check_password(var: &str, password: &str) -> Result<()> {
    if password.is_empty() {
        bail!("{var}: password is empty; pgpool needs it to log in to the servers");
    }
    if password
        .chars()
        .any(|c| c == '\n' || c == '\r' || c == '\0')
    {
        bail!("{var}: password contains a line break or NUL, which pool_passwd cannot hold");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!(
            "{var}: password is longer than {MAX_PASSWORD_BYTES} bytes, which pool_passwd cannot hold"
        );
    }
    Ok(())
}

/// Percent-decodes one URL part; `%zz` or bytes that are not UTF-8 are an error, not literal
/// text as the url crate would leave them.
fn decode(var: &str, part: &str, raw: &str) -> Result<String> {
    check_percent_encoding(var, part, raw)?;
    match percent_encoding::percent_decode_str(raw).decode_utf8() {
        Ok(s) => Ok(s.into_owned()),
        Err(_) => bail!("{var}: {part} is not valid UTF-8 once percent-decoded"),
    }
}

fn check_percent_encoding(var: &str, part: &str, raw: &str) -> Result<()> {
    let b = raw.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%'
            && !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
        {
            bail!(
                "{var}: {part} has invalid percent-encoding (a % not followed by two hex digits)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWKWARD: &str =
        "postgres://app:p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx@127.0.0.1:6540/appdb?sslmode=require";

    fn ok(url: &str) -> Backend {
        parse("DATABASE_URL", Role::Primary, url).unwrap()
    }

    fn err(url: &str) -> String {
        let e = parse("DATABASE_URL", Role::Primary, url)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("DATABASE_URL: "), "{e}");
        e
    }

    #[test]
    fn parses_a_provider_url_with_an_awkward_password() {
        let b = ok(AWKWARD);
        assert_eq!(b.host, "127.0.0.1");
        assert_eq!(b.port, 6540);
        assert_eq!(b.user, "app");
        assert_eq!(b.password.expose(), "p@ss:w/rd'\"#% \\x");
        assert_eq!(b.dbname, "appdb");
        assert_eq!(b.params, vec![("sslmode".into(), "require".into())]);
    }

    #[test]
    fn defaults_and_variants() {
        let b = ok("postgresql://u:p@db.example.com/d");
        assert_eq!((b.host.as_str(), b.port), ("db.example.com", 5432));
        let b = ok("postgres://u:p@[::1]:6000/d?application_name=x&connect_timeout=5");
        assert_eq!(b.host, "::1");
        assert_eq!(b.port, 6000);
        assert_eq!(b.dbname, "d", "query never glued onto the database");
        assert_eq!(b.params.len(), 2);
        let b = ok("postgres://u:p@h/d?options=-c%20a%3Db+c&application_name=a+b");
        assert_eq!(
            b.params,
            vec![
                ("options".into(), "-c a=b+c".into()),
                ("application_name".into(), "a+b".into())
            ],
            "+ stays a plus, as libpq reads it"
        );
        let b = ok("postgres://u%20x:p@h/my%20db");
        assert_eq!((b.user.as_str(), b.dbname.as_str()), ("u x", "my db"));
    }

    #[test]
    fn refuses_what_cannot_be_represented() {
        assert!(err("not a url").contains("is not a URL"));
        assert!(err("postgres://u:p@::1/d").contains("has no host (write IPv6 hosts in brackets"));
        assert!(err("postgres://u:p@[::1/d").contains("host is not a valid IPv6"));
        assert!(err("postgres://u:p@/d").contains("has no host"));
        assert!(err("mysql://u:p@h/d").contains("scheme"));
        assert!(err("postgres:///d").contains("no host") || err("postgres:///d").contains("valid"));
        assert!(err("postgres://u:p@%2Fvar%2Frun/d").contains("Unix socket"));
        assert!(err("postgres://u:p@h:0/d").contains("port must be from 1024"));
        assert!(err("postgres://u:p@h:1023/d").contains("port must be from 1024"));
        assert_eq!(ok("postgres://u:p@h:1024/d").port, 1024);
        assert!(err("postgres://u:p@h:70000/d").contains("port"));
        assert!(err("postgres://u:p@h:abc/d").contains("port must be a number"));
        assert!(err("postgres://:p@h/d").contains("no user"));
        assert!(err("postgres://u@h/d").contains("no password"));
        assert!(err("postgres://u:p@h").contains("no database"));
        assert!(err("postgres://u:p@h/").contains("no database"));
        assert!(err("postgres://u:p@h/a'b").contains("database contains a quote"));
        assert!(err("postgres://u:p@h/a%27%20port%20%3D%206433%20%23").contains("database"));
        assert!(err("postgres://u%5C:p@h/d").contains("user contains"));
        assert!(err("postgres://u:p@h/a%0Ab").contains("database contains"));
        assert!(err("postgres://u:p@h/a%0Db").contains("database contains"));
        assert!(err("postgres://u:p@h/a%01b").contains("database contains"));
        assert!(err("postgres://u:p@h/a%zzb").contains("percent-encoding"));
        assert!(err("postgres://u:p%2@h/d").contains("password has invalid percent"));
        assert!(err("postgres://u:p%0Aq@h/d").contains("line break"));
        assert!(err("postgres://u:p%FF@h/d").contains("UTF-8"));
        assert!(err("postgres://u:p@h/d?host=/tmp").contains("host is not supported"));
        assert!(err("postgres://u:p@::1:5432/d").contains("DATABASE_URL"));
        assert!(err("postgres://u:p@ho%27st/d").contains("host is not a valid host name"));
        let long = format!("postgres://u:{}@h/d", "x".repeat(MAX_PASSWORD_BYTES + 1));
        assert!(err(&long).contains("longer than"));
        ok(&format!(
            "postgres://u:{}@h/d",
            "x".repeat(MAX_PASSWORD_BYTES)
        ));
    }

    #[test]
    fn errors_never_contain_the_password() {
        for url in [
            "postgres://u:s3cr3tpw@h:99999/d",
            "postgres://u:s3cr3tpw@h/a'b",
            "postgres://u:s3cr3tpw@/d",
            "mysql://u:s3cr3tpw@h/d",
        ] {
            assert!(!err(url).contains("s3cr3tpw"), "{url}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolve_assigns_roles_and_checks_credentials() {
        let e = env(&[
            ("PGPOOL_URLS", "P F"),
            ("P", "postgres://u:p@h1/d"),
            ("F", "postgres://u:p@h2/d"),
        ]);
        let b = resolve(&names(&["P", "F"]), &e, &Defaults::default()).unwrap();
        assert_eq!(b[0].role, Role::Primary);
        assert_eq!(b[1].role, Role::Follower);

        for (f, what) in [
            ("postgres://v:p@h2/d", "user differs"),
            ("postgres://u:q@h2/d", "password differs"),
            ("postgres://u:p@h2/e", "database differs"),
            ("postgres://u:p@H1:5432/d", "same as P's"),
        ] {
            let e = env(&[
                ("PGPOOL_URLS", "P F"),
                ("P", "postgres://u:p@h1/d"),
                ("F", f),
            ]);
            let msg = resolve(&names(&["P", "F"]), &e, &Defaults::default())
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with("F: ") && msg.contains(what), "{msg}");
        }
        let e = env(&[("PGPOOL_URLS", "P F"), ("P", "postgres://u:p@h1/d")]);
        let msg = resolve(&names(&["P", "F"]), &e, &Defaults::default())
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "F: is not set (PGPOOL_URLS names it)");
        let e = env(&[("P", " ")]);
        assert_eq!(
            resolve(&names(&["P"]), &e, &Defaults::default())
                .unwrap_err()
                .to_string(),
            "P: is empty"
        );
    }
}
