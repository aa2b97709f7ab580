//! `Settings`: every `PGPOOL_*` variable, parsed and range-checked, from an env snapshot.
//! Pure: the env is a map handed in, so every rule here is unit-tested without touching
//! the process environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

/// A snapshot of the environment. Values that are not UTF-8 are kept so that reading one
/// gives an error naming the variable instead of pretending it is unset.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<OsString, OsString>);

impl Env {
    pub fn from_process() -> Self {
        Env(std::env::vars_os().collect())
    }

    pub fn get(&self, name: &str) -> Result<Option<&str>> {
        match self.0.get(std::ffi::OsStr::new(name)) {
            None => Ok(None),
            Some(v) => match v.to_str() {
                Some(s) => Ok(Some(s)),
                None => bail!("{name}: is not valid UTF-8"),
            },
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(std::ffi::OsStr::new(name))
    }
}

impl<K: Into<OsString>, V: Into<OsString>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Env(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Everything the launcher was told, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Names of the variables holding the backend URLs; the first is the primary.
    pub url_vars: Vec<String>,
    /// Where pgpool listens, on 127.0.0.1.
    pub port: u16,
    /// `PGPOOL_BIN`, when set; otherwise the search order in `pgpool::locate` applies.
    pub bin: Option<PathBuf>,
    /// `PGPOOL_CONF_TEMPLATE`: a tera template replacing the embedded pgpool.conf one.
    pub conf_template: Option<PathBuf>,
    /// Where the private runtime directory is created (`PGPOOL_RUNTIME_DIR`, else `TMPDIR`).
    pub runtime_parent: PathBuf,
    /// How long pgpool gets to serve its first real query.
    pub ready_timeout: Duration,
    /// How long pgpool gets to exit after SIGINT before its process group is SIGKILLed.
    pub stop_timeout: Duration,
    /// How long the app gets to exit after SIGTERM when the launcher has to stop it.
    pub app_stop_timeout: Duration,
    pub num_init_children: u32,
    pub max_pool: u32,
    pub log_level: LogLevel,
    /// `PGPOOL_MAX_LAG`: a follower further behind than this many bytes of WAL gets no reads.
    pub max_lag_bytes: Option<u64>,
    /// `PGPOOL_METRICS_INTERVAL`: how often node metrics are logged; `None` = off.
    pub metrics_interval: Option<Duration>,
    /// `PGPOOL_STUCK_TIMEOUT`: a pgpool child blocked this long in a read from a backend while
    /// its session is idle is SIGKILLed (stuck.rs); `None` = off.
    pub stuck_timeout: Option<Duration>,
    /// `PGPOOL_MAX_CONNECTIONS_SHARE`: warn when this dyno's pgpool may hold more than this share
    /// of a node's `max_connections`.
    pub max_connections_share: f64,
}

pub const DEFAULT_PORT: u16 = 5432;

/// `PGPOOL_ENABLED`: read before anything else, because when it is off nothing else is.
pub fn enabled(env: &Env) -> Result<bool> {
    match env.get("PGPOOL_ENABLED")? {
        None => Ok(true),
        Some(v) => parse_bool("PGPOOL_ENABLED", v),
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Settings> {
        let url_vars = url_vars(env)?;
        let port = match env.get("PGPOOL_PORT")? {
            None => DEFAULT_PORT,
            Some(v) => parse_port("PGPOOL_PORT", v)?,
        };
        let bin = path_var(env, "PGPOOL_BIN")?;
        let conf_template = path_var(env, "PGPOOL_CONF_TEMPLATE")?;
        let runtime_parent = match path_var(env, "PGPOOL_RUNTIME_DIR")? {
            Some(p) => runtime_parent("PGPOOL_RUNTIME_DIR", p, port)?,
            None => match path_var(env, "TMPDIR")? {
                Some(p) => runtime_parent("TMPDIR", p, port)?,
                None => PathBuf::from("/tmp"),
            },
        };
        Ok(Settings {
            url_vars,
            port,
            bin,
            conf_template,
            runtime_parent,
            ready_timeout: duration_var(env, "PGPOOL_READY_TIMEOUT", 10.0)?,
            stop_timeout: duration_var(env, "PGPOOL_STOP_TIMEOUT", 5.0)?,
            app_stop_timeout: duration_var(env, "PGPOOL_APP_STOP_TIMEOUT", 20.0)?,
            num_init_children: int_var(env, "PGPOOL_NUM_INIT_CHILDREN", 32, 1..=1000)?,
            max_pool: int_var(env, "PGPOOL_MAX_POOL", 1, 1..=32)?,
            log_level: log_level(env)?,
            max_lag_bytes: match env.get("PGPOOL_MAX_LAG")? {
                None => None,
                Some(v) => Some(parse_bytes("PGPOOL_MAX_LAG", v)?),
            },
            metrics_interval: seconds_or_off(env, "PGPOOL_METRICS_INTERVAL", 60, 86_400)?,
            stuck_timeout: seconds_or_off(env, "PGPOOL_STUCK_TIMEOUT", 5, 3600)?,
            max_connections_share: match env.get("PGPOOL_MAX_CONNECTIONS_SHARE")? {
                None => 0.5,
                Some(v) => match v.trim().parse::<f64>() {
                    Ok(x) if x > 0.0 && x <= 1.0 => x,
                    _ => bail!(
                        "PGPOOL_MAX_CONNECTIONS_SHARE: must be a fraction above 0 and at most 1, like 0.5"
                    ),
                },
            },
        })
    }
}

fn url_vars(env: &Env) -> Result<Vec<String>> {
    let Some(raw) = env.get("PGPOOL_URLS")? else {
        return Ok(vec!["DATABASE_URL".to_string()]);
    };
    let names: Vec<String> = raw.split_whitespace().map(str::to_string).collect();
    if names.is_empty() {
        bail!(
            "PGPOOL_URLS: is empty; list the names of the variables holding the URLs, primary first"
        );
    }
    for (i, name) in names.iter().enumerate() {
        if !is_env_name(name) {
            bail!(
                "PGPOOL_URLS: entry {} is not a variable name (letters, digits and _, not starting with a digit)",
                i + 1
            );
        }
        if names[..i].contains(name) {
            bail!("PGPOOL_URLS: {name} is listed twice");
        }
    }
    // Each follower is a backend pgpool keeps a connection to from every child (NOTES gotcha
    // 12); pgpool itself caps backends at 128.
    if names.len() > 128 {
        bail!(
            "PGPOOL_URLS: lists {} variables; pgpool supports at most 128 backends",
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

/// Only these words: pgpool takes any unknown boolean as "on" (NOTES gotcha 5), so we never
/// guess.
pub fn parse_bool(var: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => bail!("{var}: must be one of 1/true/on/yes or 0/false/off/no"),
    }
}

/// pgpool refuses ports below 1024 (NOTES Q1).
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

fn path_var(env: &Env, var: &str) -> Result<Option<PathBuf>> {
    match env.get(var)? {
        None => Ok(None),
        Some("") => bail!("{var}: is set but empty"),
        Some(v) => Ok(Some(PathBuf::from(v))),
    }
}

/// Unix socket paths hold at most 107 bytes (`sun_path`), and pgpool puts its sockets
/// (`.s.PGSQL.<port>`, `.s.PGSQL.9898` for pcp) in the runtime directory, which is
/// `<parent>/start-pgpool-<port>-XXXXXX`. A longer parent would fail only once pgpool binds.
const SUN_PATH_MAX: usize = 107;

/// The runtime directory's parent goes into pgpool.conf verbatim (NOTES Q4: no escaping), and
/// pgpool resolves relative paths against its own working directory, so only absolute, plain,
/// short paths are taken. Checked here so that nothing is created before the error.
fn runtime_parent(var: &str, path: PathBuf, port: u16) -> Result<PathBuf> {
    let Some(text) = path.to_str() else {
        bail!("{var}: is not valid UTF-8");
    };
    if !path.is_absolute() {
        bail!("{var}: must be an absolute path");
    }
    if !crate::render::conf_safe(text) {
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

/// Seconds, fractions allowed (`2.5`), from 0.1 s to one hour.
/// Whole seconds, 0 meaning off.
fn seconds_or_off(env: &Env, var: &str, default: u32, max: u32) -> Result<Option<Duration>> {
    let n = match env.get(var)? {
        None => default,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n <= max => n,
            _ => bail!("{var}: must be a whole number of seconds from 0 (off) to {max}"),
        },
    };
    Ok((n > 0).then(|| Duration::from_secs(n.into())))
}

fn duration_var(env: &Env, var: &str, default: f64) -> Result<Duration> {
    let secs = match env.get(var)? {
        None => default,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(s) if (0.1..=3600.0).contains(&s) => s,
            _ => bail!("{var}: must be a number of seconds from 0.1 to 3600"),
        },
    };
    Ok(Duration::from_secs_f64(secs))
}

fn int_var(
    env: &Env,
    var: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32> {
    match env.get(var)? {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => bail!(
                "{var}: must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        },
    }
}

fn log_level(env: &Env) -> Result<LogLevel> {
    match env
        .get("PGPOOL_LOG_LEVEL")?
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => Ok(LogLevel::Info),
        Some(v) => match v.as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            _ => bail!("PGPOOL_LOG_LEVEL: must be one of error, warn, info, debug"),
        },
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
}
