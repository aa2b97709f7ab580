//! Every `PGPOOL_*` setting, each defined once, in the table below (after ripgrep's flag
//! definitions): its name, its default as a real value, a one-line doc, and its parser with the
//! range it enforces. From that one entry come its `Def` const, its place in [`ALL`] (which
//! `--help` lists and a test holds README.md's settings table to), its field in `Settings` and
//! its read in `Settings::from_env`. The table's settings are read in its order, then the
//! hand-written steps below; when several are bad, the first read is named. README and `--help` show a default as it would be written in the
//! variable (`5` for five seconds); only a default that is no value ("unset", "none", "search")
//! is given in words, and a test ties each such word to what happens. Pure: the env is a map
//! handed in.
//!
//! Written by hand after the table, for what is not one variable's own value: `PGPOOL_ENABLED`
//! is read alone by [`enabled`], before anything else; `Settings::runtime_parent` comes from
//! `PGPOOL_RUNTIME_DIR` (else `TMPDIR`, else `/tmp`) checked against the port
//! (`runtime_parent_from_env`); `Settings::from_env` refuses `PGPOOL_MAX_LAG` with
//! `PGPOOL_MODE=logical`.
//!
//! To add a setting: one entry in the table (with `=> field` when `Settings` carries it), its
//! row in README.md's settings table (a test compares name, order and default), and its use
//! where it matters.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use super::Env;
use super::conf_value::conf_safe;
pub use crate::log::LogLevel;

/// What `--help` and README.md say about a setting.
#[derive(Debug)]
pub struct About {
    pub name: &'static str,
    pub doc: &'static str,
    /// The default as it would be written in the variable; `None` when the default is no value.
    written: fn() -> Option<String>,
    /// The words README.md shows for a default that is no value.
    in_words: Option<&'static str>,
}

impl About {
    /// The default as README.md's table shows it: the value in backticks, or the words for a
    /// default that is no value.
    pub fn shown_default(&self) -> String {
        match self.in_words {
            Some(words) => words.to_string(),
            None => format!("`{}`", (self.written)().unwrap_or_default()),
        }
    }
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

/// The table's grammar, one entry per setting:
///
/// ```text
/// table {
///     CONST: Type [=> settings_field] {
///         name: "PGPOOL_…", default: value, [in_words: "…",] doc: "…", parse: parser,
///     }
///     …
/// }
/// derived { settings_field: Type = fn(&Env) -> Result<Type>, … }
/// ```
///
/// `derived` lists the fields that come from more than one variable, each with the hand-written
/// function that reads it. A `macro_rules!` rather than a proc-macro (a crate of its own and syn
/// to build, for one table) or clap's `env` (clap reads the process environment, not our `Env`
/// map, and puts the rejected value in its errors).
macro_rules! settings {
    (
        table {$(
            $(#[$attr:meta])*
            $def:ident: $ty:ty $(=> $field:ident)? {
                name: $name:literal,
                default: $default:expr,
                $(in_words: $words:literal,)?
                doc: $doc:literal,
                parse: $parse:expr $(,)?
            }
        )*}
        derived {
            $(
                $(#[$dattr:meta])*
                $dfield:ident: $dty:ty = $dfn:path,
            )*
        }
    ) => {
        $(
            $(#[$attr])*
            pub const $def: Def<$ty> = Def {
                about: About {
                    name: $name,
                    doc: $doc,
                    written: || {
                        let default: $ty = $default;
                        AsWritten::as_written(&default)
                    },
                    in_words: [$(Some($words),)? None][0],
                },
                unset: || $default,
                parse: $parse,
            };
        )*

        /// Every setting, in README.md's order.
        pub const ALL: &[&About] = &[$(&$def.about),*];

        /// Everything the launcher was told, already validated.
        #[derive(Debug, Clone)]
        pub struct Settings {
            $($(
                #[doc = concat!("`", $name, "`: ", $doc, ".")]
                pub $field: $ty,
            )?)*
            $(
                $(#[$dattr])*
                pub $dfield: $dty,
            )*
        }

        impl Settings {
            /// Each field in the table's order, then the derived ones.
            fn read_table(env: &Env) -> Result<Settings> {
                Ok(Settings {
                    $($($field: $def.read(env)?,)?)*
                    $($dfield: $dfn(env)?,)*
                })
            }
        }

        /// Each setting's written default, read back by its own parser, is its default.
        #[cfg(test)]
        fn written_defaults_parse_back() {
            $(written_default_parses_back(&$def);)*
        }
    };
}

pub const DEFAULT_PORT: u16 = 5432;

settings! {
    table {
        /// Not a field: [`enabled`] reads it alone, because when it is off nothing else is read.
        ENABLED: bool {
            name: "PGPOOL_ENABLED",
            default: true,
            doc: "1/true/on/yes or 0/false/off/no; off runs COMMAND untouched (exec, no pgpool)",
            parse: parse_bool,
        }
        URLS: Vec<String> => url_vars {
            name: "PGPOOL_URLS",
            default: vec!["DATABASE_URL".to_string()],
            doc: "names of the variables holding postgres URLs: the primary first, then followers",
            parse: url_vars,
        }
        PORT: u16 => port {
            name: "PGPOOL_PORT",
            default: DEFAULT_PORT,
            doc: "the port pgpool listens on, on 127.0.0.1 (1024-65535)",
            parse: parse_port,
        }
        /// Unset, `pgpool::locate` searches.
        BIN: Option<PathBuf> => bin {
            name: "PGPOOL_BIN",
            default: None,
            in_words: "search",
            doc: "the pgpool executable (else $HOME/.apt, the buildpack's own, PATH, /usr/sbin)",
            parse: |var, v| path(var, v).map(Some),
        }
        READY_TIMEOUT: Duration => ready_timeout {
            name: "PGPOOL_READY_TIMEOUT",
            default: Duration::from_secs(10),
            doc: "seconds pgpool gets to serve its first real query (0.1-3600)",
            parse: seconds,
        }
        STOP_TIMEOUT: Duration => stop_timeout {
            name: "PGPOOL_STOP_TIMEOUT",
            default: Duration::from_secs(5),
            doc: "seconds pgpool gets to exit after SIGINT before its group is SIGKILLed (0.1-3600)",
            parse: seconds,
        }
        APP_STOP_TIMEOUT: Duration => app_stop_timeout {
            name: "PGPOOL_APP_STOP_TIMEOUT",
            default: Duration::from_secs(20),
            doc: "seconds the app gets after SIGTERM when the launcher must stop it (0.1-3600)",
            parse: seconds,
        }
        NUM_INIT_CHILDREN: u32 => num_init_children {
            name: "PGPOOL_NUM_INIT_CHILDREN",
            default: 32,
            doc: "pgpool's num_init_children: concurrent sessions, each on every node (1-1000)",
            parse: |var, v| whole_number(var, v, 1..=1000),
        }
        MAX_POOL: u32 => max_pool {
            name: "PGPOOL_MAX_POOL",
            default: 1,
            doc: "pgpool's max_pool (1-32)",
            parse: |var, v| whole_number(var, v, 1..=32),
        }
        MAX_LAG: Option<u64> => max_lag_bytes {
            name: "PGPOOL_MAX_LAG",
            default: None,
            in_words: "unset",
            doc: "bytes of WAL (kB/MB/GB) a follower may lag before it gets no reads",
            parse: |var, v| parse_bytes(var, v).map(Some),
        }
        /// `None` = off.
        METRICS_INTERVAL: Option<Duration> => metrics_interval {
            name: "PGPOOL_METRICS_INTERVAL",
            default: Some(Duration::from_secs(60)),
            doc: "seconds between metrics lines; 0 turns them off (0-86400)",
            parse: |var, v| seconds_or_off(var, v, 86_400),
        }
        /// `None` = off.
        STUCK_TIMEOUT: Option<Duration> => stuck_timeout {
            name: "PGPOOL_STUCK_TIMEOUT",
            default: Some(Duration::from_secs(5)),
            doc: "seconds before a pgpool child stuck reading a server is SIGKILLed; 0 = off (0-3600)",
            parse: |var, v| seconds_or_off(var, v, 3600),
        }
        /// `None` = never (pgpool's `connection_life_time = 0`).
        IDLE_TIMEOUT: Option<Duration> => idle_timeout {
            name: "PGPOOL_IDLE_TIMEOUT",
            default: Some(Duration::from_secs(60)),
            doc: "seconds pgpool keeps a server connection cached for a client that left; 0 keeps it as long as the child lives (0-86400)",
            parse: |var, v| seconds_or_off(var, v, 86_400),
        }
        MAX_CONNECTIONS_SHARE: f64 => max_connections_share {
            name: "PGPOOL_MAX_CONNECTIONS_SHARE",
            default: 0.5,
            doc: "warn when pgpool may hold more than this share of a node's max_connections",
            parse: |var, v| match v.trim().parse::<f64>() {
                Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
                _ => bail!("{var}: must be a fraction above 0 and at most 1, like 0.5"),
            },
        }
        MODE: Mode => mode {
            name: "PGPOOL_MODE",
            default: Mode::Streaming,
            doc: "streaming (followers stream from the primary) or logical (followers are logical copies)",
            parse: |var, v| match v.trim() {
                "streaming" => Ok(Mode::Streaming),
                "logical" => Ok(Mode::Logical),
                _ => bail!("{var}: must be streaming or logical"),
            },
        }
        /// Reads naming one of these go to the primary.
        PRIMARY_TABLES: Vec<Table> => primary_tables {
            name: "PGPOOL_PRIMARY_TABLES",
            default: Vec::new(),
            in_words: "none",
            doc: "tables whose reads always go to the primary: names, comma-separated (carts,public.sessions)",
            parse: primary_tables,
        }
        LOG_LEVEL: LogLevel => log_level {
            name: "PGPOOL_LOG_LEVEL",
            default: LogLevel::Info,
            doc: "error, warn, info or debug (debug includes every line pgpool prints)",
            parse: log_level,
        }
        /// Not a field: `runtime_parent` derives from it.
        RUNTIME_DIR: Option<PathBuf> {
            name: "PGPOOL_RUNTIME_DIR",
            default: None,
            in_words: "`$TMPDIR` or `/tmp`",
            doc: "where the private runtime directory is created (absolute, at most about 68 bytes)",
            parse: |var, v| path(var, v).map(Some),
        }
        CONF_TEMPLATE: Option<PathBuf> => conf_template {
            name: "PGPOOL_CONF_TEMPLATE",
            default: None,
            in_words: "built in",
            doc: "for experts: a tera template file replacing the built-in pgpool.conf one",
            parse: |var, v| path(var, v).map(Some),
        }
    }
    derived {
        /// Where the private runtime directory is created (`PGPOOL_RUNTIME_DIR`, else `TMPDIR`).
        runtime_parent: PathBuf = runtime_parent_from_env,
    }
}

/// A default as it would be written in its variable, so that README.md and `--help` show the
/// real value; `None` for a default that is no value (nothing set, nothing listed).
trait AsWritten {
    fn as_written(&self) -> Option<String>;
}

impl AsWritten for bool {
    fn as_written(&self) -> Option<String> {
        Some(if *self { "on" } else { "off" }.to_string())
    }
}

macro_rules! as_written_by_display {
    ($($t:ty),*) => {$(
        impl AsWritten for $t {
            fn as_written(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
as_written_by_display!(u16, u32, u64, f64);

/// In seconds, as every duration setting is written.
impl AsWritten for Duration {
    fn as_written(&self) -> Option<String> {
        Some(self.as_secs_f64().to_string())
    }
}

impl AsWritten for PathBuf {
    fn as_written(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl<T: AsWritten> AsWritten for Option<T> {
    fn as_written(&self) -> Option<String> {
        self.as_ref().and_then(T::as_written)
    }
}

impl AsWritten for Vec<String> {
    fn as_written(&self) -> Option<String> {
        (!self.is_empty()).then(|| self.join(" "))
    }
}

impl AsWritten for Vec<Table> {
    fn as_written(&self) -> Option<String> {
        let names = self.iter().map(|t| t.name.as_str());
        (!self.is_empty()).then(|| names.collect::<Vec<_>>().join(","))
    }
}

impl AsWritten for Mode {
    fn as_written(&self) -> Option<String> {
        Some(match self {
            Mode::Streaming => "streaming".to_string(),
            Mode::Logical => "logical".to_string(),
        })
    }
}

impl AsWritten for LogLevel {
    fn as_written(&self) -> Option<String> {
        let word = match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        };
        Some(word.to_string())
    }
}

#[cfg(test)]
fn written_default_parses_back<T: PartialEq + std::fmt::Debug>(def: &Def<T>) {
    if let Some(written) = (def.about.written)() {
        let read = (def.parse)(def.about.name, &written);
        assert_eq!(
            read.ok(),
            Some((def.unset)()),
            "{}={written}",
            def.about.name
        );
    }
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

/// A table of `PGPOOL_PRIMARY_TABLES`: an unquoted SQL identifier. A `schema.` before it is
/// checked and dropped: pgpool matches words in the SQL text, so it cannot tell schemas apart
/// (README.md, "Routing").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
}

/// `PGPOOL_ENABLED`: read before anything else, because when it is off nothing else is.
pub fn enabled(env: &Env) -> Result<bool> {
    ENABLED.read(env)
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Settings> {
        let s = Settings::read_table(env)?;
        if s.mode == Mode::Logical && s.max_lag_bytes.is_some() {
            bail!(
                "{}: cannot be used with {}=logical: pgpool reads a follower's lag from the primary's pg_stat_replication, which has no row for a logical copy",
                MAX_LAG.about.name,
                MODE.about.name
            );
        }
        Ok(s)
    }
}

/// `PGPOOL_RUNTIME_DIR`, else `TMPDIR`, else `/tmp`. The port is read again here (the table
/// has read it already, so this cannot fail on it) because the socket names hold it.
fn runtime_parent_from_env(env: &Env) -> Result<PathBuf> {
    let port = PORT.read(env)?;
    match RUNTIME_DIR.read(env)? {
        Some(p) => runtime_parent(RUNTIME_DIR.about.name, p, port),
        None => match env.get("TMPDIR")? {
            Some(v) => runtime_parent("TMPDIR", path("TMPDIR", v)?, port),
            None => Ok(PathBuf::from("/tmp")),
        },
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
        let name = parts[parts.len() - 1];
        tables.push(Table {
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
        let t = |name: &str| Table {
            name: name.to_string(),
        };
        assert_eq!(
            s.primary_tables,
            vec![t("carts"), t("sessions"), t("job$status")]
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
    fn every_setting_is_read() {
        // Set but empty, each listed setting is an error naming it: so each is parsed by
        // `enabled` (read alone) or by `from_env`.
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
    fn a_written_default_reads_back_as_the_default() {
        written_defaults_parse_back();
    }

    #[test]
    fn defaults_are_shown_as_written_or_in_words_for_no_value() {
        let shown: Vec<(&str, String)> = ALL.iter().map(|a| (a.name, a.shown_default())).collect();
        let get = |name: &str| shown.iter().find(|(n, _)| *n == name).unwrap().1.as_str();
        assert_eq!(get("PGPOOL_STOP_TIMEOUT"), "`5`");
        assert_eq!(get("PGPOOL_MAX_CONNECTIONS_SHARE"), "`0.5`");
        assert_eq!(get("PGPOOL_URLS"), "`DATABASE_URL`");
        assert_eq!(get("PGPOOL_ENABLED"), "`on`");
        let unset = Settings::from_env(&env(&[])).unwrap();
        for about in ALL {
            let Some(words) = about.in_words else {
                assert!((about.written)().is_some(), "{}", about.name);
                continue;
            };
            // Words only for a default that is no value, and each word says what happens.
            assert_eq!((about.written)(), None, "{}", about.name);
            match (about.name, words) {
                ("PGPOOL_BIN", "search") => assert_eq!(unset.bin, None),
                ("PGPOOL_MAX_LAG", "unset") => assert_eq!(unset.max_lag_bytes, None),
                ("PGPOOL_PRIMARY_TABLES", "none") => assert!(unset.primary_tables.is_empty()),
                ("PGPOOL_CONF_TEMPLATE", "built in") => assert_eq!(unset.conf_template, None),
                ("PGPOOL_RUNTIME_DIR", "`$TMPDIR` or `/tmp`") => {
                    assert_eq!(unset.runtime_parent, PathBuf::from("/tmp"));
                    let s = Settings::from_env(&env(&[("TMPDIR", "/var/tmp")])).unwrap();
                    assert_eq!(s.runtime_parent, PathBuf::from("/var/tmp"));
                }
                other => panic!("{other:?}: say in this test what these words mean"),
            }
        }
    }

    #[test]
    fn readme_settings_table_matches_the_definitions() {
        // README.md is data here: its settings table, in order, with each default as the
        // definitions show it. Its third column is fuller prose than `--help`'s one-line doc, so
        // it is not compared.
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
            .map(|a| (a.name.to_string(), a.shown_default()))
            .collect();
        assert_eq!(rows, defs, "README.md's settings table (name, default)");
    }
}
