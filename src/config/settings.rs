//! Every `PGPOOL_*` setting, each defined once: its name, the default as README.md shows it, a
//! one-line doc, and its parser with the range it enforces (after ripgrep's flag definitions).
//! `Settings::from_env` reads them; `--help` lists them from [`ALL`]; a test holds README.md's
//! settings table to the same list. Pure: the env is a map handed in.
//!
//! To add a setting: define it below, add it to [`ALL`] and to `Settings`, read it in
//! `Settings::from_env`, and add its row to README.md's table (the tests say when one is
//! missing).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use super::Env;
use super::conf_value::conf_safe;
pub use crate::log::LogLevel;

/// What `--help` and README.md say about a setting.
#[derive(Debug, PartialEq, Eq)]
pub struct About {
    pub name: &'static str,
    /// The default as README.md's table shows it (code in backticks).
    pub default: &'static str,
    pub doc: &'static str,
}

/// One setting: what is said about it, its value when unset, and its parser (which names the
/// variable in every error and never echoes the value).
pub struct Def<T: 'static> {
    pub about: About,
    unset: fn() -> T,
    parse: fn(&'static str, &str) -> Result<T>,
}

impl<T> Def<T> {
    pub fn read(&self, env: &Env) -> Result<T> {
        match env.get(self.about.name)? {
            None => Ok((self.unset)()),
            Some(v) => (self.parse)(self.about.name, v),
        }
    }
}

pub const DEFAULT_PORT: u16 = 5432;

pub const ENABLED: Def<bool> = Def {
    about: About {
        name: "PGPOOL_ENABLED",
        default: "on",
        doc: "1/true/on/yes or 0/false/off/no; off runs COMMAND untouched (exec, no pgpool)",
    },
    unset: || true,
    parse: parse_bool,
};

pub const URLS: Def<Vec<String>> = Def {
    about: About {
        name: "PGPOOL_URLS",
        default: "`DATABASE_URL`",
        doc: "names of the variables holding postgres URLs: the primary first, then followers",
    },
    unset: || vec!["DATABASE_URL".to_string()],
    parse: url_vars,
};

pub const PORT: Def<u16> = Def {
    about: About {
        name: "PGPOOL_PORT",
        default: "`5432`",
        doc: "the port pgpool listens on, on 127.0.0.1 (1024-65535)",
    },
    unset: || DEFAULT_PORT,
    parse: parse_port,
};

pub const BIN: Def<Option<PathBuf>> = Def {
    about: About {
        name: "PGPOOL_BIN",
        default: "search",
        doc: "the pgpool executable (else $HOME/.apt, the buildpack's own, PATH, /usr/sbin)",
    },
    unset: || None,
    parse: |var, v| path(var, v).map(Some),
};

pub const READY_TIMEOUT: Def<Duration> = Def {
    about: About {
        name: "PGPOOL_READY_TIMEOUT",
        default: "`10`",
        doc: "seconds pgpool gets to serve its first real query (0.1-3600)",
    },
    unset: || Duration::from_secs(10),
    parse: seconds,
};

pub const STOP_TIMEOUT: Def<Duration> = Def {
    about: About {
        name: "PGPOOL_STOP_TIMEOUT",
        default: "`5`",
        doc: "seconds pgpool gets to exit after SIGINT before its group is SIGKILLed (0.1-3600)",
    },
    unset: || Duration::from_secs(5),
    parse: seconds,
};

pub const APP_STOP_TIMEOUT: Def<Duration> = Def {
    about: About {
        name: "PGPOOL_APP_STOP_TIMEOUT",
        default: "`20`",
        doc: "seconds the app gets after SIGTERM when the launcher must stop it (0.1-3600)",
    },
    unset: || Duration::from_secs(20),
    parse: seconds,
};

pub const NUM_INIT_CHILDREN: Def<u32> = Def {
    about: About {
        name: "PGPOOL_NUM_INIT_CHILDREN",
        default: "`32`",
        doc: "pgpool's num_init_children: concurrent sessions, each on every node (1-1000)",
    },
    unset: || 32,
    parse: |var, v| whole_number(var, v, 1..=1000),
};

pub const MAX_POOL: Def<u32> = Def {
    about: About {
        name: "PGPOOL_MAX_POOL",
        default: "`1`",
        doc: "pgpool's max_pool (1-32)",
    },
    unset: || 1,
    parse: |var, v| whole_number(var, v, 1..=32),
};

pub const MAX_LAG: Def<Option<u64>> = Def {
    about: About {
        name: "PGPOOL_MAX_LAG",
        default: "unset",
        doc: "bytes of WAL (kB/MB/GB) a follower may lag before it gets no reads",
    },
    unset: || None,
    parse: |var, v| parse_bytes(var, v).map(Some),
};

pub const METRICS_INTERVAL: Def<Option<Duration>> = Def {
    about: About {
        name: "PGPOOL_METRICS_INTERVAL",
        default: "`60`",
        doc: "seconds between metrics lines; 0 turns them off (0-86400)",
    },
    unset: || Some(Duration::from_secs(60)),
    parse: |var, v| seconds_or_off(var, v, 86_400),
};

pub const STUCK_TIMEOUT: Def<Option<Duration>> = Def {
    about: About {
        name: "PGPOOL_STUCK_TIMEOUT",
        default: "`5`",
        doc: "seconds before a pgpool child stuck reading a server is SIGKILLed; 0 = off (0-3600)",
    },
    unset: || Some(Duration::from_secs(5)),
    parse: |var, v| seconds_or_off(var, v, 3600),
};

pub const MAX_CONNECTIONS_SHARE: Def<f64> = Def {
    about: About {
        name: "PGPOOL_MAX_CONNECTIONS_SHARE",
        default: "`0.5`",
        doc: "warn when pgpool may hold more than this share of a node's max_connections",
    },
    unset: || 0.5,
    parse: |var, v| match v.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        _ => bail!("{var}: must be a fraction above 0 and at most 1, like 0.5"),
    },
};

pub const MODE: Def<Mode> = Def {
    about: About {
        name: "PGPOOL_MODE",
        default: "`streaming`",
        doc: "streaming (followers stream from the primary) or logical (followers are logical copies)",
    },
    unset: || Mode::Streaming,
    parse: |var, v| match v.trim() {
        "streaming" => Ok(Mode::Streaming),
        "logical" => Ok(Mode::Logical),
        _ => bail!("{var}: must be streaming or logical"),
    },
};

pub const PRIMARY_TABLES: Def<Vec<Table>> = Def {
    about: About {
        name: "PGPOOL_PRIMARY_TABLES",
        default: "none",
        doc: "tables whose reads always go to the primary: names, comma-separated (carts,public.sessions)",
    },
    unset: Vec::new,
    parse: primary_tables,
};

pub const LOG_LEVEL: Def<LogLevel> = Def {
    about: About {
        name: "PGPOOL_LOG_LEVEL",
        default: "`info`",
        doc: "error, warn, info or debug (debug includes every line pgpool prints)",
    },
    unset: || LogLevel::Info,
    parse: log_level,
};

pub const RUNTIME_DIR: Def<Option<PathBuf>> = Def {
    about: About {
        name: "PGPOOL_RUNTIME_DIR",
        default: "`$TMPDIR` or `/tmp`",
        doc: "where the private runtime directory is created (absolute, at most about 68 bytes)",
    },
    unset: || None,
    parse: |var, v| path(var, v).map(Some),
};

pub const CONF_TEMPLATE: Def<Option<PathBuf>> = Def {
    about: About {
        name: "PGPOOL_CONF_TEMPLATE",
        default: "built in",
        doc: "for experts: a tera template file replacing the built-in pgpool.conf one",
    },
    unset: || None,
    parse: |var, v| path(var, v).map(Some),
};

/// Every setting, in README.md's order.
pub const ALL: &[&About] = &[
    &ENABLED.about,
    &URLS.about,
    &PORT.about,
    &BIN.about,
    &READY_TIMEOUT.about,
    &STOP_TIMEOUT.about,
    &APP_STOP_TIMEOUT.about,
    &NUM_INIT_CHILDREN.about,
    &MAX_POOL.about,
    &MAX_LAG.about,
    &METRICS_INTERVAL.about,
    &STUCK_TIMEOUT.about,
    &MAX_CONNECTIONS_SHARE.about,
    &MODE.about,
    &PRIMARY_TABLES.about,
    &LOG_LEVEL.about,
    &RUNTIME_DIR.about,
    &CONF_TEMPLATE.about,
];

/// Everything the launcher was told, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names of the variables holding the backend URLs; the first is the primary.
    pub url_vars: Vec<String>,
    pub port: u16,
    /// When unset, `pgpool::locate` searches.
    pub bin: Option<PathBuf>,
    pub conf_template: Option<PathBuf>,
    /// Where the private runtime directory is created (`PGPOOL_RUNTIME_DIR`, else `TMPDIR`).
    pub runtime_parent: PathBuf,
    pub ready_timeout: Duration,
    pub stop_timeout: Duration,
    pub app_stop_timeout: Duration,
    pub num_init_children: u32,
    pub max_pool: u32,
    pub log_level: LogLevel,
    pub max_lag_bytes: Option<u64>,
    /// `None` = off.
    pub metrics_interval: Option<Duration>,
    /// `None` = off.
    pub stuck_timeout: Option<Duration>,
    pub max_connections_share: f64,
    pub mode: Mode,
    /// Reads naming one of these go to the primary.
    pub primary_tables: Vec<Table>,
}

/// How the followers get the primary's data, which decides how pgpool finds the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Streaming replication: followers are standbys in recovery; pgpool finds the primary
    /// by asking each server.
    Streaming,
    /// Logical copies (publication and subscription): not in recovery, so the first URL is
    /// the primary by definition, and is never replaced.
    Logical,
}

/// A table of `PGPOOL_PRIMARY_TABLES`: an unquoted SQL identifier, optionally after its
/// schema's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub schema: Option<String>,
    pub name: String,
}

/// `PGPOOL_ENABLED`: read before anything else, because when it is off nothing else is.
pub fn enabled(env: &Env) -> Result<bool> {
    ENABLED.read(env)
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Settings> {
        let url_vars = URLS.read(env)?;
        let port = PORT.read(env)?;
        let bin = BIN.read(env)?;
        let conf_template = CONF_TEMPLATE.read(env)?;
        let runtime_parent = match RUNTIME_DIR.read(env)? {
            Some(p) => runtime_parent(RUNTIME_DIR.about.name, p, port)?,
            None => match env.get("TMPDIR")? {
                Some(v) => runtime_parent("TMPDIR", path("TMPDIR", v)?, port)?,
                None => PathBuf::from("/tmp"),
            },
        };
        let mode = MODE.read(env)?;
        let max_lag_bytes = MAX_LAG.read(env)?;
        if mode == Mode::Logical && max_lag_bytes.is_some() {
            bail!(
                "{}: cannot be used with {}=logical: pgpool reads a follower's lag from the primary's pg_stat_replication, which has no row for a logical copy",
                MAX_LAG.about.name,
                MODE.about.name
            );
        }
        Ok(Settings {
            url_vars,
            port,
            bin,
            conf_template,
            runtime_parent,
            ready_timeout: READY_TIMEOUT.read(env)?,
            stop_timeout: STOP_TIMEOUT.read(env)?,
            app_stop_timeout: APP_STOP_TIMEOUT.read(env)?,
            num_init_children: NUM_INIT_CHILDREN.read(env)?,
            max_pool: MAX_POOL.read(env)?,
            log_level: LOG_LEVEL.read(env)?,
            max_lag_bytes,
            metrics_interval: METRICS_INTERVAL.read(env)?,
            stuck_timeout: STUCK_TIMEOUT.read(env)?,
            max_connections_share: MAX_CONNECTIONS_SHARE.read(env)?,
            mode,
            primary_tables: PRIMARY_TABLES.read(env)?,
        })
    }
}

/// PostgreSQL truncates identifiers at NAMEDATALEN-1 bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

fn primary_tables(var: &str, raw: &str) -> Result<Vec<Table>> {
    if raw.trim().is_empty() {
        bail!("{var}: is empty; unset it, or list tables like carts,public.sessions");
    }
    let mut tables = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).enumerate() {
        let parts: Vec<&str> = entry.split('.').collect();
        let ok = matches!(parts.len(), 1 | 2) && parts.iter().all(|p| is_identifier(p));
        if !ok {
            bail!(
                "{var}: entry {} is not a table name (an unquoted SQL identifier of letters, digits, _ and $, optionally schema.table)",
                i + 1
            );
        }
        let (schema, name) = match parts[..] {
            [name] => (None, name),
            [schema, name] => (Some(schema.to_string()), name),
            _ => unreachable!("checked above"),
        };
        tables.push(Table {
            schema,
            name: name.to_string(),
        });
    }
    Ok(tables)
}

/// An unquoted SQL identifier, as pgpool's patterns can match it as a word: ASCII letters and
/// `_` first, then letters, digits, `_` and `$`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_IDENTIFIER_BYTES
        && matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == '$' || c.is_ascii_alphanumeric())
}

fn url_vars(var: &str, raw: &str) -> Result<Vec<String>> {
    let names: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
    if names.is_empty() {
        bail!("{var}: is empty; list the names of the variables holding the URLs, primary first");
    }
    for (i, name) in names.iter().enumerate() {
        if !is_env_name(name) {
            bail!(
                "{var}: entry {} is not a variable name (letters, digits and _, not starting with a digit)",
                i + 1
            );
        }
        if names[..i].contains(name) {
            bail!("{var}: {name} is listed twice");
        }
    }
    // Each follower is a backend pgpool keeps a connection to from every child (docs/pgpool.md,
    // "Connections per node"); pgpool itself caps backends at 128.
    if names.len() > 128 {
        bail!(
            "{var}: lists {} variables; pgpool supports at most 128 backends",
            names.len()
        );
    }
    Ok(names)
}

pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Only these words: pgpool takes any unknown boolean as "on" (docs/pgpool.md, "Booleans"), so
/// we never guess.
pub fn parse_bool(var: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => bail!("{var}: must be one of 1/true/on/yes or 0/false/off/no"),
    }
}

/// pgpool refuses ports below 1024 (docs/pgpool.md, "Ports and privileged ranges").
pub fn parse_port(var: &str, value: &str) -> Result<u16> {
    match value.trim().parse::<u32>() {
        Ok(p) if (1024..=65535).contains(&p) => Ok(p as u16),
        _ => bail!("{var}: must be a port number from 1024 to 65535"),
    }
}

/// Bytes with an optional kB/MB/GB suffix (powers of 1024, as PostgreSQL reads them), like
/// `16MB` or `1048576`.
pub fn parse_bytes(var: &str, value: &str) -> Result<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        _ => bail!("{var}: must be a number of bytes with an optional kB, MB or GB suffix"),
    };
    match num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)) {
        Some(n) if n > 0 && n <= u64::from(u32::MAX) => Ok(n),
        _ => bail!(
            "{var}: must be a number of bytes from 1 to 4GB, with an optional kB, MB or GB suffix"
        ),
    }
}

fn path(var: &str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        bail!("{var}: is set but empty");
    }
    Ok(PathBuf::from(value))
}

/// Unix socket paths hold at most 107 bytes (`sun_path`), and pgpool puts its sockets
/// (`.s.PGSQL.<port>`, `.s.PGSQL.9898` for pcp) in the runtime directory, which is
/// `<parent>/start-pgpool-<port>-XXXXXX`. A longer parent would fail only once pgpool binds.
const SUN_PATH_MAX: usize = 107;

/// The runtime directory's parent goes into pgpool.conf verbatim, and pgpool resolves relative
/// paths against its own working directory, so only absolute, plain, short paths are taken.
/// Checked here so that nothing is created before the error.
fn runtime_parent(var: &str, path: PathBuf, port: u16) -> Result<PathBuf> {
    let Some(text) = path.to_str() else {
        bail!("{var}: is not valid UTF-8");
    };
    if !path.is_absolute() {
        bail!("{var}: must be an absolute path");
    }
    if !conf_safe(text) {
        bail!(
            "{var}: contains a quote, backslash or control character, which pgpool.conf cannot hold"
        );
    }
    let port_digits = port.to_string().len().max(4);
    let dir = text.trim_end_matches('/').len() + "/start-pgpool--XXXXXX".len() + port_digits;
    let socket = dir + "/.s.PGSQL.".len() + port_digits;
    if socket > SUN_PATH_MAX {
        bail!(
            "{var}: path is too long for pgpool's Unix sockets; use one of at most {} bytes",
            text.len() - (socket - SUN_PATH_MAX)
        );
    }
    Ok(path)
}

/// Whole seconds up to `max`, 0 meaning off.
fn seconds_or_off(var: &str, value: &str, max: u32) -> Result<Option<Duration>> {
    match value.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok((n > 0).then(|| Duration::from_secs(n.into()))),
        _ => bail!("{var}: must be a whole number of seconds from 0 (off) to {max}"),
    }
}

/// Seconds, fractions allowed (`2.5`), from 0.1 s to one hour.
fn seconds(var: &str, value: &str) -> Result<Duration> {
    match value.trim().parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => bail!("{var}: must be a number of seconds from 0.1 to 3600"),
    }
}

fn whole_number(var: &str, value: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32> {
    match value.trim().parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => bail!(
            "{var}: must be a whole number from {} to {}",
            range.start(),
            range.end()
        ),
    }
}

fn log_level(var: &str, value: &str) -> Result<LogLevel> {
    match value.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        _ => bail!("{var}: must be one of error, warn, info, debug"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        format!("{:#}", Settings::from_env(&env(pairs)).unwrap_err())
    }

    #[test]
    fn mode_is_streaming_or_logical_and_logical_refuses_max_lag() {
        assert_eq!(Settings::from_env(&env(&[])).unwrap().mode, Mode::Streaming);
        let s = Settings::from_env(&env(&[("PGPOOL_MODE", "logical")])).unwrap();
        assert_eq!(s.mode, Mode::Logical);
        assert_eq!(
            err(&[("PGPOOL_MODE", "Logical")]),
            "PGPOOL_MODE: must be streaming or logical"
        );
        let e = err(&[("PGPOOL_MODE", "logical"), ("PGPOOL_MAX_LAG", "1MB")]);
        assert!(
            e.starts_with("PGPOOL_MAX_LAG: cannot be used with PGPOOL_MODE=logical"),
            "{e}"
        );
    }

    #[test]
    fn primary_tables_are_identifiers_optionally_schema_qualified() {
        let s = Settings::from_env(&env(&[(
            "PGPOOL_PRIMARY_TABLES",
            " carts, public.sessions ,job$status",
        )]))
        .unwrap();
        let t = |schema: Option<&str>, name: &str| Table {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        };
        assert_eq!(
            s.primary_tables,
            vec![
                t(None, "carts"),
                t(Some("public"), "sessions"),
                t(None, "job$status")
            ]
        );
        assert!(err(&[("PGPOOL_PRIMARY_TABLES", " ")]).contains("is empty"));
        for (bad, entry) in [
            ("carts;drop", 1),
            ("a.b.c", 1),
            ("\"Carts\"", 1),
            ("1abc", 1),
            ("carts,,x", 2),
            ("carts,", 2),
            ("sch.", 1),
            ("caf\u{e9}", 1),
        ] {
            assert_eq!(
                err(&[("PGPOOL_PRIMARY_TABLES", bad)]),
                format!(
                    "PGPOOL_PRIMARY_TABLES: entry {entry} is not a table name (an unquoted SQL identifier of letters, digits, _ and $, optionally schema.table)"
                ),
                "{bad}"
            );
        }
        let long = "t".repeat(64);
        assert!(err(&[("PGPOOL_PRIMARY_TABLES", &long)]).contains("entry 1"));
    }

    #[test]
    fn defaults() {
        let s = Settings::from_env(&env(&[])).unwrap();
        assert_eq!(s.url_vars, vec!["DATABASE_URL"]);
        assert_eq!(s.port, 5432);
        assert_eq!(s.ready_timeout, Duration::from_secs(10));
        assert_eq!(s.num_init_children, 32);
        assert_eq!(s.runtime_parent, PathBuf::from("/tmp"));
    }

    #[test]
    fn enabled_accepts_exactly_the_documented_words() {
        for on in ["1", "true", "ON", "yes"] {
            assert!(enabled(&env(&[("PGPOOL_ENABLED", on)])).unwrap());
        }
        for off in ["0", "false", "off", "No"] {
            assert!(!enabled(&env(&[("PGPOOL_ENABLED", off)])).unwrap());
        }
        assert!(enabled(&env(&[])).unwrap());
        for bad in ["", "2", "maybe", "enabled"] {
            let e = enabled(&env(&[("PGPOOL_ENABLED", bad)])).unwrap_err();
            assert!(e.to_string().starts_with("PGPOOL_ENABLED:"), "{e}");
        }
    }

    #[test]
    fn urls_split_on_any_whitespace() {
        let s = Settings::from_env(&env(&[("PGPOOL_URLS", " A_URL\tB_URL\nC ")])).unwrap();
        assert_eq!(s.url_vars, vec!["A_URL", "B_URL", "C"]);
    }

    #[test]
    fn urls_refuse_bad_lists() {
        assert!(err(&[("PGPOOL_URLS", "  ")]).contains("PGPOOL_URLS: is empty"));
        assert!(err(&[("PGPOOL_URLS", "A 1B")]).contains("entry 2 is not a variable name"));
        assert!(err(&[("PGPOOL_URLS", "A-B")]).contains("entry 1"));
        assert!(err(&[("PGPOOL_URLS", "A B A")]).contains("A is listed twice"));
        let many: Vec<String> = (0..200).map(|i| format!("U{i}")).collect();
        assert!(err(&[("PGPOOL_URLS", &many.join(" "))]).contains("at most 128"));
    }

    #[test]
    fn ports_are_checked() {
        assert_eq!(
            Settings::from_env(&env(&[("PGPOOL_PORT", "6432")]))
                .unwrap()
                .port,
            6432
        );
        for bad in ["0", "80", "65536", "abc", "", "-1", "5432x"] {
            assert!(
                err(&[("PGPOOL_PORT", bad)]).starts_with("PGPOOL_PORT:"),
                "{bad}"
            );
        }
    }

    #[test]
    fn tunables_are_checked() {
        for (var, bad) in [
            ("PGPOOL_READY_TIMEOUT", "0"),
            ("PGPOOL_READY_TIMEOUT", "abc"),
            ("PGPOOL_READY_TIMEOUT", "1e9"),
            ("PGPOOL_STOP_TIMEOUT", "-1"),
            ("PGPOOL_APP_STOP_TIMEOUT", "NaN"),
            ("PGPOOL_NUM_INIT_CHILDREN", "0"),
            ("PGPOOL_NUM_INIT_CHILDREN", "1.5"),
            ("PGPOOL_MAX_POOL", "99"),
            ("PGPOOL_LOG_LEVEL", "loud"),
            ("PGPOOL_BIN", ""),
            ("PGPOOL_MAX_LAG", "0"),
            ("PGPOOL_MAX_LAG", "10TB"),
            ("PGPOOL_MAX_LAG", "5GB"),
            ("PGPOOL_MAX_LAG", "-1MB"),
            ("PGPOOL_METRICS_INTERVAL", "1.5"),
            ("PGPOOL_METRICS_INTERVAL", "x"),
            ("PGPOOL_STUCK_TIMEOUT", "3601"),
            ("PGPOOL_STUCK_TIMEOUT", "off"),
            ("PGPOOL_MAX_CONNECTIONS_SHARE", "0"),
            ("PGPOOL_MAX_CONNECTIONS_SHARE", "1.5"),
        ] {
            assert!(err(&[(var, bad)]).starts_with(var), "{var}={bad}");
        }
        let s = Settings::from_env(&env(&[("PGPOOL_READY_TIMEOUT", "2.5")])).unwrap();
        assert_eq!(s.ready_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn runtime_parent_must_fit_pgpool_conf_and_sockets() {
        let ok = |v: &str| Settings::from_env(&env(&[("PGPOOL_RUNTIME_DIR", v)])).unwrap();
        assert_eq!(
            ok("/var/tmp/a b#%@").runtime_parent,
            PathBuf::from("/var/tmp/a b#%@")
        );
        ok(&format!("/{}", "x".repeat(67)));
        for (bad, why) in [
            ("relative/dir", "absolute"),
            ("/tmp/x' port = 1 #", "quote"),
            ("/tmp/a\\b", "backslash"),
            ("/tmp/a\nb", "control"),
            ("", "empty"),
        ] {
            let e = err(&[("PGPOOL_RUNTIME_DIR", bad)]);
            assert!(
                e.starts_with("PGPOOL_RUNTIME_DIR: ") && e.contains(why),
                "{bad:?}: {e}"
            );
        }
        let e = err(&[("PGPOOL_RUNTIME_DIR", &format!("/{}", "x".repeat(68)))]);
        assert!(
            e.contains("too long") && e.contains("at most 68 bytes"),
            "{e}"
        );
        let e = err(&[("TMPDIR", "tmp")]);
        assert!(e.starts_with("TMPDIR: must be an absolute path"), "{e}");
        let s =
            Settings::from_env(&env(&[("PGPOOL_RUNTIME_DIR", "/ok"), ("TMPDIR", "tmp")])).unwrap();
        assert_eq!(
            s.runtime_parent,
            PathBuf::from("/ok"),
            "TMPDIR unused is not checked"
        );
    }

    #[test]
    fn byte_sizes_take_postgres_suffixes() {
        assert_eq!(parse_bytes("V", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("V", "16MB").unwrap(), 16 << 20);
        assert_eq!(parse_bytes("V", "64 kB").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("V", "1GB").unwrap(), 1 << 30);
        let s = Settings::from_env(&env(&[("PGPOOL_METRICS_INTERVAL", "0")])).unwrap();
        assert_eq!(s.metrics_interval, None);
        let s = Settings::from_env(&env(&[("PGPOOL_STUCK_TIMEOUT", "0")])).unwrap();
        assert_eq!(s.stuck_timeout, None);
        let s = Settings::from_env(&env(&[])).unwrap();
        assert_eq!(s.stuck_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn every_definition_is_listed_and_read() {
        let source = include_str!("settings.rs");
        let split = source.find("#[cfg(test)]").unwrap();
        let defined = source[..split].matches("        name: \"PGPOOL_").count();
        assert_eq!(defined, ALL.len(), "a setting is defined but not in ALL");
        // Each listed setting is parsed: set but empty, it is an error naming it.
        for about in ALL {
            let bad = env(&[(about.name, "")]);
            let e = match about.name {
                "PGPOOL_ENABLED" => enabled(&bad).map(|_| ()),
                _ => Settings::from_env(&bad).map(|_| ()),
            };
            let msg = format!("{:#}", e.expect_err(about.name));
            assert!(msg.starts_with(about.name), "{msg}");
        }
    }

    #[test]
    fn readme_settings_table_matches_the_definitions() {
        let readme = include_str!("../../README.md");
        let rows: Vec<(String, String)> = readme
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix("`PGPOOL_")?.strip_suffix('`')?;
                Some((format!("PGPOOL_{name}"), cells.get(2)?.to_string()))
            })
            .collect();
        let defs: Vec<(String, String)> = ALL
            .iter()
            .map(|a| (a.name.to_string(), a.default.to_string()))
            .collect();
        assert_eq!(rows, defs, "README.md's settings table (name, default)");
    }
}
