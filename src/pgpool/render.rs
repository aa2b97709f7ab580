//! Rendering: backends and settings -> the text of pgpool.conf, pool_hba.conf and pool_passwd
//! (pcp.conf comes from pcp.rs). Pure: nothing here touches the disk.
//!
//! pgpool.conf has no escaping at all, so every string must pass `conf_safe` before it is
//! rendered; nothing is escaped, it is refused. Keys that differ between pgpool families come
//! from the family ([`Keys`]), never from comparing version numbers in the template.

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::family::{Keys, Release};
use super::runtime_dir::{File, Files, PCP_PORT};
use crate::config::conf_value::conf_safe;
use crate::config::settings::{Mode, Table};
use crate::config::tls::SslMode;
use crate::config::{Backend, Role, Settings};
use crate::secret::Secret;

pub const PGPOOL_CONF_TEMPLATE: &str = include_str!("../../templates/pgpool.conf.tera");
pub const POOL_HBA_TEMPLATE: &str = include_str!("../../templates/pool_hba.conf.tera");

#[derive(Debug)]
pub struct Rendered {
    pub pgpool_conf: String,
    pub pool_hba: String,
    pub pool_passwd: Secret,
}

#[derive(Serialize)]
struct BackendCtx<'a> {
    host: &'a str,
    port: u16,
    weight: u32,
    application_name: Option<&'a str>,
    flag: &'static str,
    /// `backend_sslmodeN` and `backend_sslrootcertN`: set only for a pgpool that reads them.
    sslmode: Option<&'static str>,
    sslrootcert: Option<String>,
}

#[derive(Serialize)]
struct ConfCtx<'a> {
    /// For an expert's own template (`PGPOOL_CONF_TEMPLATE`), which may still compare it; the
    /// built-in one asks `keys`.
    pgpool_version: u32,
    pgpool_version_text: String,
    keys: Keys,
    port: u16,
    pcp_port: u16,
    rundir: &'a str,
    pid_file: String,
    pool_passwd: String,
    user: &'a str,
    dbname: &'a str,
    num_init_children: u32,
    max_pool: u32,
    delay_threshold: u64,
    /// `connection_life_time`: `PGPOOL_IDLE_TIMEOUT` in seconds, 0 = never.
    connection_life_time: u64,
    /// `child_life_time`: the same timeout, else pgpool's 300 s.
    child_life_time: u64,
    /// `backend_clustering_mode` (4.2 and later).
    clustering_mode: &'static str,
    /// pgpool's one switch, for a pgpool without per-server modes (and the frontend side).
    ssl: &'static str,
    /// `primary_routing_query_pattern_list`: the queries that always go to the primary.
    primary_routing: String,
    backends: Vec<BackendCtx<'a>>,
}

/// Renders everything pgpool needs. `template` replaces the embedded pgpool.conf template.
pub fn render(
    backends: &[Backend],
    settings: &Settings,
    files: &Files,
    release: Release,
    template: Option<&str>,
) -> Result<Rendered> {
    render_with_names(backends, &[], settings, files, release, template)
}

/// [`render`], with each follower's replication `application_name` where it is known
/// (`names[i]` for backend `i`; see discover.rs). Names that pgpool.conf cannot hold are left out.
pub fn render_with_names(
    backends: &[Backend],
    names: &[Option<String>],
    settings: &Settings,
    files: &Files,
    release: Release,
    template: Option<&str>,
) -> Result<Rendered> {
    let primary = backends.first().context("no backends to render")?;
    let rundir = files
        .dir()
        .to_str()
        .filter(|s| conf_safe(s))
        .context("PGPOOL_RUNTIME_DIR: the runtime directory path holds a quote, backslash, control character or non-UTF-8 byte; set PGPOOL_RUNTIME_DIR to a plain path")?;
    let has_followers = backends.len() > 1;
    let ssl = ssl_switch(backends, release)?;
    let logical = settings.mode == Mode::Logical;
    if logical && !release.family.keys().backend_clustering_mode {
        bail!(
            "PGPOOL_MODE: logical needs pgpool 4.2 or later; pgpool {} here",
            release.version
        );
    }
    if logical && !release.logical_primary_kept {
        bail!(
            "PGPOOL_MODE: logical needs the buildpack's own pgpool; pgpool {} here would send the writes to a copy while the primary is down",
            release.version
        );
    }
    let per_server = release.backend_tls;
    let ctx = ConfCtx {
        pgpool_version: release.version.number(),
        pgpool_version_text: release.version.to_string(),
        keys: release.family.keys(),
        port: settings.port,
        pcp_port: PCP_PORT,
        rundir,
        pid_file: format!("{rundir}/{}", File::PidFile.name()),
        pool_passwd: format!("{rundir}/{}", File::PoolPasswd.name()),
        user: &primary.user,
        dbname: &primary.dbname,
        num_init_children: settings.num_init_children,
        max_pool: settings.max_pool,
        delay_threshold: settings.max_lag_bytes.unwrap_or(0),
        connection_life_time: settings.idle_timeout.map_or(0, |d| d.as_secs()),
        child_life_time: settings
            .idle_timeout
            .map(|d| d.as_secs())
            .filter(|&s| s > 0)
            .unwrap_or(300),
        clustering_mode: if logical {
            "logical_replication"
        } else {
            "streaming_replication"
        },
        ssl: if ssl { "on" } else { "off" },
        primary_routing: primary_routing(&settings.primary_tables),
        backends: backends
            .iter()
            .enumerate()
            .map(|(i, b)| BackendCtx {
                host: &b.host,
                port: b.port,
                // Reads go to the followers only; the primary keeps them when it is alone.
                weight: u32::from(b.role == Role::Follower || !has_followers),
                application_name: names
                    .get(i)
                    .and_then(|n| n.as_deref())
                    .filter(|n| conf_safe(n)),
                // The copies are not in recovery: pgpool must not look for the primary among
                // them (docs/pgpool.md, "Logical copies").
                flag: if logical && b.role == Role::Primary {
                    "ALLOW_TO_FAILOVER|ALWAYS_PRIMARY"
                } else {
                    "ALLOW_TO_FAILOVER"
                },
                sslmode: per_server.then(|| b.tls.mode.name()),
                sslrootcert: b
                    .tls
                    .root
                    .as_ref()
                    .filter(|_| per_server)
                    .map(|r| r.conf_value()),
            })
            .collect(),
    };
    // Belt and braces for the values that came from outside: backends checks them with better
    // messages, this guards any path that forgets to.
    for (what, v) in [("user", ctx.user), ("database", ctx.dbname)]
        .into_iter()
        .chain(ctx.backends.iter().map(|b| ("host", b.host)))
        .chain(
            ctx.backends
                .iter()
                .filter_map(|b| b.sslrootcert.as_deref().map(|r| ("sslrootcert", r))),
        )
    {
        if !conf_safe(v) {
            bail!("{what} cannot be written to pgpool.conf safely");
        }
    }
    let tctx = tera::Context::from_serialize(&ctx).context("building the template context")?;
    let pgpool_conf = tera::Tera::one_off(template.unwrap_or(PGPOOL_CONF_TEMPLATE), &tctx, false)
        .map_err(|e| {
        anyhow::anyhow!("PGPOOL_CONF_TEMPLATE: cannot render: {}", tera_reason(&e))
    })?;
    let mut hba_ctx = tera::Context::new();
    // md5 over loopback: the client must still know the password, but pgpool skips the
    // PBKDF2 work SCRAM costs on every connect (docs/pgpool.md, "Client authentication").
    // Backends still get SCRAM over TLS.
    hba_ctx.insert("auth_method", "md5");
    let pool_hba = tera::Tera::one_off(POOL_HBA_TEMPLATE, &hba_ctx, false)
        .context("rendering pool_hba.conf")?;
    Ok(Rendered {
        pgpool_conf,
        pool_hba,
        pool_passwd: pool_passwd(&primary.user, &primary.password),
    })
}

/// Bytes a table name cannot be in an unquoted identifier: what ends the name as a word.
const NOT_IN_NAME: &str = "[^a-z0-9_$]";

/// The regexes (POSIX extended, matched case-blind against the whole query text; pgpool adds
/// `^` and `$`) of the reads that must go to the primary: those starting with pgpool's
/// `/*NO LOAD BALANCE*/` hint, which `allow_sql_comments` would otherwise disable, and those
/// naming one of `tables` as a word, with or without its schema (docs/pgpool.md, "Routing").
/// Brackets, not backslashes: pgpool.conf holds no escapes.
pub fn primary_routing(tables: &[Table]) -> String {
    let mut patterns = vec!["[[:space:]]*/[*]NO LOAD BALANCE[*]/.*".to_string()];
    for t in tables {
        // `"carts"` is a word too: pgpool strips double quotes before it matches.
        patterns.push(format!(
            ".*{NOT_IN_NAME}{}({NOT_IN_NAME}.*)?",
            t.name.replace('$', "[$]")
        ));
    }
    patterns.join(";")
}

/// pgpool's `ssl` switch. A pgpool without our patch 0007 has only that one switch for every
/// server, and it means "TLS when the server offers it": URLs that ask for more, or that
/// differ, cannot be honoured by it, and are refused rather than weakened.
fn ssl_switch(backends: &[Backend], release: Release) -> Result<bool> {
    let wants_tls = |b: &Backend| b.tls.mode != SslMode::Disable;
    if release.backend_tls {
        return Ok(backends.iter().any(wants_tls));
    }
    let Some(primary) = backends.first() else {
        return Ok(true);
    };
    for b in backends {
        if b.tls.mode >= SslMode::Require {
            bail!(
                "{}: sslmode={} needs the buildpack's own pgpool, which holds a TLS mode per server; pgpool {} here has one ssl switch for all servers and cannot refuse plaintext",
                b.var,
                b.tls.mode,
                release.version
            );
        }
        if wants_tls(b) != wants_tls(primary) {
            bail!(
                "{}: sslmode={} differs from {}'s sslmode={}, and pgpool {} here has one ssl switch for all servers (the buildpack's own pgpool holds one per server)",
                b.var,
                b.tls.mode,
                primary.var,
                primary.tls.mode,
                release.version
            );
        }
    }
    Ok(wants_tls(primary))
}

/// The innermost tera error says what went wrong in the template (unknown variable, syntax).
fn tera_reason(e: &tera::Error) -> String {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// One `user:TEXTpassword` line, escaped as pgpool's `getNextToken` reads it: `\` and `:` get a
/// backslash (docs/pgpool.md, "pool_passwd escaping": without it, passwords with `:` fail with
/// a misleading auth error).
pub fn pool_passwd(user: &str, password: &Secret) -> Secret {
    Secret::new(format!(
        "{}:TEXT{}\n",
        passwd_escape(user),
        passwd_escape(password.expose())
    ))
}

fn passwd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn routing_patterns_hold_the_hint_and_each_table_as_a_word() {
        assert_eq!(
            primary_routing(&[]),
            "[[:space:]]*/[*]NO LOAD BALANCE[*]/.*"
        );
        let tables = [
            Table {
                name: "carts".into(),
            },
            Table {
                name: "job$status".into(),
            },
        ];
        let p = primary_routing(&tables);
        assert_eq!(
            p,
            "[[:space:]]*/[*]NO LOAD BALANCE[*]/.*;\
             .*[^a-z0-9_$]carts([^a-z0-9_$].*)?;\
             .*[^a-z0-9_$]job[$]status([^a-z0-9_$].*)?"
        );
        assert!(conf_safe(&p), "pgpool.conf holds it verbatim");
    }
    use crate::config::Env;
    use crate::config::backends::parse;

    fn backends(urls: &[&str]) -> Vec<Backend> {
        urls.iter()
            .enumerate()
            .map(|(i, u)| {
                let role = if i == 0 {
                    Role::Primary
                } else {
                    Role::Follower
                };
                parse(&format!("U{i}"), role, u).unwrap()
            })
            .collect()
    }

    fn settings() -> Settings {
        Settings::from_env(&Env::default()).unwrap()
    }

    fn conf(urls: &[&str], version: &str) -> String {
        render(
            &backends(urls),
            &settings(),
            &Files::at(Path::new("/tmp/rt")),
            version.parse().unwrap(),
            None,
        )
        .unwrap()
        .pgpool_conf
    }

    fn has_line(conf: &str, line: &str) -> bool {
        conf.lines().any(|l| l.trim() == line)
    }

    #[test]
    fn weights_send_reads_to_followers() {
        let c = conf(
            &[
                "postgres://app:pw@10.0.0.1:5432/appdb",
                "postgres://app:pw@[::1]:6000/appdb",
            ],
            "4.3.5",
        );
        for l in [
            "backend_hostname0 = '10.0.0.1'",
            "backend_weight0 = 0",
            "backend_hostname1 = '::1'",
            "backend_port1 = 6000",
            "backend_weight1 = 1",
            "sr_check_user = 'app'",
            "health_check_database = 'appdb'",
            "failover_on_backend_shutdown = on",
            "memqcache_total_size = 1MB",
            "socket_dir = '/tmp/rt'",
            "pcp_listen_addresses = ''",
            "port = 5432",
        ] {
            assert!(has_line(&c, l), "missing {l:?} in\n{c}");
        }
        assert!(!c.contains("pw"), "no password in pgpool.conf");
    }

    #[test]
    fn idle_children_and_connections_go_after_the_idle_timeout() {
        let render_with = |timeout: &str| {
            let env: Env = [("PGPOOL_IDLE_TIMEOUT", timeout)].into_iter().collect();
            let s = Settings::from_env(&env).unwrap();
            render(
                &backends(&["postgres://app:pw@h/appdb"]),
                &s,
                &Files::at(Path::new("/tmp/rt")),
                "4.7.2".parse().unwrap(),
                None,
            )
            .unwrap()
            .pgpool_conf
        };
        let c = render_with("5");
        assert!(has_line(&c, "connection_life_time = 5"), "{c}");
        assert!(has_line(&c, "child_life_time = 5"), "{c}");
        // 0 keeps connections while the child lives, and children live as pgpool's default.
        let c = render_with("0");
        assert!(has_line(&c, "connection_life_time = 0"), "{c}");
        assert!(has_line(&c, "child_life_time = 300"), "{c}");
    }

    #[test]
    fn a_lone_primary_takes_the_reads() {
        let c = conf(&["postgres://app:pw@h/appdb"], "4.3.5");
        assert!(has_line(&c, "backend_weight0 = 1"));
        assert!(!c.contains("backend_hostname1"));
    }

    #[test]
    fn families_get_their_own_keys() {
        let u = ["postgres://app:pw@h/appdb"];
        let c46 = conf(&u, "4.6.1");
        assert!(has_line(&c46, "unix_socket_directories = '/tmp/rt'"));
        assert!(!c46.lines().any(|l| l.starts_with("socket_dir")));
        let c41 = conf(&u, "4.1.4");
        assert!(has_line(&c41, "master_slave_mode = on"));
        assert!(!c41.contains("backend_clustering_mode"));
        assert!(has_line(
            &conf(&u, "4.3.5"),
            "backend_clustering_mode = 'streaming_replication'"
        ));
    }

    #[test]
    fn unsafe_runtime_paths_are_refused() {
        let r = render(
            &backends(&["postgres://app:pw@h/appdb"]),
            &settings(),
            &Files::at(Path::new("/tmp/x' port = 1 #")),
            "4.3.5".parse().unwrap(),
            None,
        );
        let e = r.unwrap_err().to_string();
        assert!(e.starts_with("PGPOOL_RUNTIME_DIR: "), "{e}");
    }

    #[test]
    fn pool_passwd_escapes_backslash_and_colon() {
        let p = pool_passwd("app", &Secret::new("p@ss:w/rd'\"#% \\x"));
        assert_eq!(p.expose(), "app:TEXTp@ss\\:w/rd'\"#% \\\\x\n");
        assert_eq!(
            pool_passwd("a:b", &Secret::new("x")).expose(),
            "a\\:b:TEXTx\n"
        );
    }

    #[test]
    fn an_expert_template_is_used_and_its_errors_are_named() {
        let b = backends(&["postgres://app:pw@h/appdb"]);
        let r = render(
            &b,
            &settings(),
            &Files::at(Path::new("/r")),
            "4.3.5".parse().unwrap(),
            Some("port = {{ port }}\n"),
        )
        .unwrap();
        assert_eq!(r.pgpool_conf, "port = 5432\n");
        let e = render(
            &b,
            &settings(),
            &Files::at(Path::new("/r")),
            "4.3.5".parse().unwrap(),
            Some("{{ nope }}"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("PGPOOL_CONF_TEMPLATE: cannot render"), "{e}");
    }
}
