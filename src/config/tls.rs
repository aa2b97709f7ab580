//! TLS to one server, as its URL asks for it with libpq's `sslmode` and `sslrootcert` (or
//! libpq's `PGSSLMODE` and `PGSSLROOTCERT` when the URL has none). Pure: what the URL says
//! becomes a [`Tls`]; whether libpq's default files exist is asked of the caller
//! ([`Defaults::read`]). Whatever else libpq would apply to TLS is refused by name, never
//! dropped.
//!
//! docs/tls.md has the rules and why each is as it is.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::Env;
use super::conf_value::conf_safe;

/// libpq's modes, weakest first: `mode >= SslMode::Require` reads "TLS or no connection".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// libpq's spelling, which is also what `backend_sslmodeN` takes.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.name() == s)
    }

    /// The server's certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the CAs a server's certificate must chain to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// OpenSSL's default store (`sslrootcert=system`, libpq 16).
    System,
}

impl RootCert {
    /// What pgpool's `backend_sslrootcertN` takes.
    pub fn conf_value(&self) -> String {
        match self {
            RootCert::File(p) => p.display().to_string(),
            RootCert::System => "system".to_string(),
        }
    }
}

/// TLS to one server: the mode, and the CA its certificate must chain to (set exactly when
/// the mode verifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    pub root: Option<RootCert>,
}

/// What libpq would take from outside the URL: `PGSSLMODE`, `PGSSLROOTCERT`, the default CA
/// file `~/.postgresql/root.crt` when it exists, and the directory a relative `sslrootcert`
/// is read from.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub default_root: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
}

impl Defaults {
    /// `exists` is asked about `$HOME/.postgresql/root.crt` only.
    pub fn read(env: &Env, cwd: Option<&Path>, exists: impl Fn(&Path) -> bool) -> Result<Defaults> {
        for (name, why) in UNSUPPORTED_ENV {
            if env.get(name)?.is_some() {
                bail!("{name}: is set, but {why}; unset it");
            }
        }
        check_protocol(
            "PGSSLMINPROTOCOLVERSION",
            env.get("PGSSLMINPROTOCOLVERSION")?,
            None,
        )?;
        check_protocol("PGSSLNEGOTIATION", None, env.get("PGSSLNEGOTIATION")?)?;
        let dir = env.get("HOME")?.map(|h| Path::new(h).join(".postgresql"));
        if let Some(crl) = dir
            .as_ref()
            .map(|d| d.join("root.crl"))
            .filter(|p| exists(p))
        {
            bail!(
                "HOME: {} exists, which libpq would check certificates against, but certificate revocation lists are not supported",
                crl.display()
            );
        }
        let default_root = dir.map(|d| d.join("root.crt")).filter(|p| exists(p));
        Ok(Defaults {
            sslmode: env.get("PGSSLMODE")?.map(str::to_string),
            sslrootcert: env.get("PGSSLROOTCERT")?.map(str::to_string),
            default_root,
            cwd: cwd.map(Path::to_path_buf),
        })
    }
}

/// pgpool's `backend_sslrootcertN` holds at most this many bytes (MAX_PATH_LENGTH - 1).
const MAX_ROOTCERT_BYTES: usize = 255;

/// URL parameters about client certificates and revocation: start-pgpool cannot pass them
/// on, and dropping one would connect with less than the URL asked for.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sslcert", "client certificates are not supported"),
    ("sslkey", "client certificates are not supported"),
    ("sslpassword", "client certificates are not supported"),
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    (
        "ssl_max_protocol_version",
        "a maximum TLS version is not supported",
    ),
    (
        "requiressl",
        "it is libpq's old spelling; write sslmode=require",
    ),
];

/// The same, from libpq's environment variables.
const UNSUPPORTED_ENV: &[(&str, &str)] = &[
    ("PGSSLCERT", "client certificates are not supported"),
    ("PGSSLKEY", "client certificates are not supported"),
    ("PGSSLCRL", "certificate revocation lists are not supported"),
    (
        "PGSSLCRLDIR",
        "certificate revocation lists are not supported",
    ),
    (
        "PGSSLMAXPROTOCOLVERSION",
        "a maximum TLS version is not supported",
    ),
    (
        "PGREQUIRESSL",
        "it is libpq's old spelling; set PGSSLMODE=require",
    ),
];

/// Minimum TLS versions no stronger than what pgpool's OpenSSL negotiates at least (TLS 1.2,
/// libpq's default too): asking for one of these is already met.
const MET_MIN_VERSIONS: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2"];

/// `ssl_min_protocol_version` and `sslnegotiation`: what is already met passes, the rest is
/// refused; `what` names the URL or the variable.
fn check_protocol(what: &str, min_version: Option<&str>, negotiation: Option<&str>) -> Result<()> {
    if let Some(v) = min_version
        && !MET_MIN_VERSIONS.contains(&v)
    {
        bail!("{what}: a minimum TLS version above TLSv1.2 ({v}) is not supported; remove it");
    }
    if let Some(n) = negotiation
        && n != "postgres"
    {
        bail!(
            "{what}: sslnegotiation={n} is not supported (pgpool negotiates TLS the postgres way)"
        );
    }
    Ok(())
}

/// A CA file's path as pgpool.conf can hold it.
fn holdable(src: &str, path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    if !conf_safe(&text) || text.len() > MAX_ROOTCERT_BYTES {
        bail!(
            "{src}: sslrootcert must be a path of at most {MAX_ROOTCERT_BYTES} bytes without quotes, backslashes or control characters (pgpool.conf holds it)"
        );
    }
    Ok(path.to_path_buf())
}

impl Tls {
    /// From one URL's query parameters; `var` names the URL in errors.
    pub fn from_params(var: &str, params: &[(String, String)], d: &Defaults) -> Result<Tls> {
        let param = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        for (name, why) in UNSUPPORTED {
            if param(name).is_some() {
                bail!("{var}: {name} is given, but {why}; remove it from the URL");
            }
        }
        check_protocol(
            var,
            param("ssl_min_protocol_version"),
            param("sslnegotiation"),
        )?;
        let (root_src, root) = match param("sslrootcert") {
            Some(v) => (var, Some(v)),
            None => ("PGSSLROOTCERT", d.sslrootcert.as_deref()),
        };
        let root = match root {
            None => None,
            Some("") => bail!("{root_src}: sslrootcert is empty"),
            Some("system") => Some(RootCert::System),
            Some(p) => {
                let path = match &d.cwd {
                    _ if Path::new(p).is_absolute() => PathBuf::from(p),
                    Some(cwd) => cwd.join(p),
                    None => bail!("{root_src}: sslrootcert must be an absolute path, or system"),
                };
                Some(RootCert::File(holdable(root_src, &path)?))
            }
        };
        let (mode_src, mode) = match param("sslmode") {
            Some(v) => (var, Some(v)),
            None => ("PGSSLMODE", d.sslmode.as_deref()),
        };
        let mode = match mode {
            None if root == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some(m) => match SslMode::parse(m) {
                Some(m) => m,
                None => bail!(
                    "{mode_src}: sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full"
                ),
            },
        };
        // libpq 16 refuses this too: the system store trusts every public CA, so only the
        // host name check makes it mean anything.
        if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
            bail!("{var}: sslrootcert=system needs sslmode=verify-full (libpq's rule), not {mode}");
        }
        // libpq's rules: a verifying mode needs a CA (the given one, else the default file),
        // and `require` with a CA file at hand checks the chain as `verify-ca` does.
        let root = match (root, &d.default_root) {
            (Some(r), _) => Some(r),
            (None, Some(p)) => Some(RootCert::File(holdable("HOME", p)?)),
            (None, None) => None,
        };
        let mode = match (mode, &root) {
            (SslMode::Require, Some(RootCert::File(_))) => SslMode::VerifyCa,
            (m, None) if m.verifies() => bail!(
                "{var}: sslmode={m} needs a CA to check the server's certificate: add sslrootcert (a CA file, or system) to the URL"
            ),
            (m, _) => m,
        };
        let root = if mode.verifies() { root } else { None };
        Ok(Tls { mode, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(query: &[(&str, &str)], d: &Defaults) -> Result<Tls> {
        let params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tls::from_params("DATABASE_URL", &params, d)
    }

    fn eff(query: &[(&str, &str)], d: &Defaults, default_exists: bool) -> Result<Tls> {
        let d = Defaults {
            default_root: Some(PathBuf::from("/app/.postgresql/root.crt"))
                .filter(|_| default_exists),
            ..d.clone()
        };
        tls(query, &d)
    }

    fn home() -> Defaults {
        Defaults::default()
    }

    #[test]
    fn the_default_ca_file_is_home_s_and_counts_only_when_it_exists() {
        let env: Env = [("HOME", "/app")].into_iter().collect();
        let d =
            Defaults::read(&env, None, |p| p == Path::new("/app/.postgresql/root.crt")).unwrap();
        assert_eq!(
            d.default_root,
            Some(PathBuf::from("/app/.postgresql/root.crt"))
        );
        let d = Defaults::read(&env, None, |_| false).unwrap();
        assert_eq!(d.default_root, None);
    }

    #[test]
    fn no_sslmode_is_prefer_as_in_libpq() {
        let e = eff(&[], &home(), false).unwrap();
        assert_eq!(e.mode, SslMode::Prefer);
        assert_eq!(e.root, None);
    }

    #[test]
    fn every_libpq_mode_parses_and_nothing_else() {
        for m in SslMode::ALL {
            // With the default CA file there, as a verifying mode needs; libpq then reads
            // `require` as `verify-ca`.
            let t = eff(&[("sslmode", m.name())], &home(), true).unwrap();
            let want = if m == SslMode::Require {
                SslMode::VerifyCa
            } else {
                m
            };
            assert_eq!(t.mode, want);
        }
        for bad in ["", "Require", "verify_full", "on"] {
            let e = tls(&[("sslmode", bad)], &home()).unwrap_err().to_string();
            assert_eq!(
                e,
                "DATABASE_URL: sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full"
            );
        }
    }

    #[test]
    fn the_url_wins_over_pgsslmode_and_a_bad_pgsslmode_is_named() {
        let d = Defaults {
            sslmode: Some("require".into()),
            ..home()
        };
        assert_eq!(tls(&[], &d).unwrap().mode, SslMode::Require);
        assert_eq!(
            tls(&[("sslmode", "disable")], &d).unwrap().mode,
            SslMode::Disable
        );
        let d = Defaults {
            sslmode: Some("strict".into()),
            ..home()
        };
        assert!(
            tls(&[], &d)
                .unwrap_err()
                .to_string()
                .starts_with("PGSSLMODE: sslmode must be one of")
        );
    }

    #[test]
    fn verifying_modes_need_a_ca_the_default_file_counts_when_it_exists() {
        for m in ["verify-ca", "verify-full"] {
            let e = eff(&[("sslmode", m)], &home(), false)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "DATABASE_URL: sslmode={m} needs a CA to check the server's certificate"
                )),
                "{e}"
            );
            let ok = eff(&[("sslmode", m)], &home(), true).unwrap();
            assert_eq!(
                ok.root,
                Some(RootCert::File("/app/.postgresql/root.crt".into()))
            );
        }
    }

    #[test]
    fn require_with_a_ca_file_verifies_the_chain_as_libpq_does() {
        let e = eff(
            &[("sslmode", "require"), ("sslrootcert", "/etc/ca.pem")],
            &home(),
            false,
        )
        .unwrap();
        assert_eq!(e.mode, SslMode::VerifyCa);
        assert_eq!(e.root, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(
            eff(&[("sslmode", "require")], &home(), true).unwrap().mode,
            SslMode::VerifyCa
        );
        assert_eq!(
            eff(&[("sslmode", "require")], &home(), false).unwrap().mode,
            SslMode::Require
        );
    }

    #[test]
    fn weaker_modes_never_carry_a_ca() {
        for m in ["disable", "allow", "prefer"] {
            let e = eff(
                &[("sslmode", m), ("sslrootcert", "/etc/ca.pem")],
                &home(),
                true,
            )
            .unwrap();
            assert_eq!(e.root, None, "{m}");
        }
    }

    #[test]
    fn system_means_verify_full_and_refuses_weaker_modes() {
        let e = eff(&[("sslrootcert", "system")], &home(), false).unwrap();
        assert_eq!(e.mode, SslMode::VerifyFull);
        assert_eq!(e.root, Some(RootCert::System));
        for m in ["require", "verify-ca", "prefer"] {
            let e = tls(&[("sslmode", m), ("sslrootcert", "system")], &home())
                .unwrap_err()
                .to_string();
            assert_eq!(
                e,
                format!(
                    "DATABASE_URL: sslrootcert=system needs sslmode=verify-full (libpq's rule), not {m}"
                )
            );
        }
    }

    #[test]
    fn protocol_versions_and_negotiation_pass_only_when_met() {
        for ok in [
            ("ssl_min_protocol_version", "TLSv1.2"),
            ("ssl_min_protocol_version", "TLSv1"),
            ("sslnegotiation", "postgres"),
        ] {
            tls(&[ok], &home()).unwrap();
        }
        let e = tls(&[("ssl_min_protocol_version", "TLSv1.3")], &home())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("DATABASE_URL: a minimum TLS version above TLSv1.2"),
            "{e}"
        );
        let e = tls(&[("sslnegotiation", "direct")], &home())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("DATABASE_URL: sslnegotiation=direct is not supported"),
            "{e}"
        );
    }

    #[test]
    fn libpq_s_other_tls_variables_and_the_default_crl_are_refused_by_name() {
        let read = |pairs: &[(&str, &str)], crl: bool| {
            let env: Env = pairs.iter().map(|(k, v)| (*k, *v)).collect();
            Defaults::read(&env, None, |p| crl && p.ends_with("root.crl"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        for var in [
            "PGSSLCERT",
            "PGSSLKEY",
            "PGSSLCRL",
            "PGREQUIRESSL",
            "PGSSLMAXPROTOCOLVERSION",
        ] {
            let e = read(&[(var, "x")], false).unwrap_err();
            assert!(e.starts_with(&format!("{var}: is set, but ")), "{e}");
        }
        assert!(read(&[("PGSSLMINPROTOCOLVERSION", "TLSv1.3")], false).is_err());
        read(&[("PGSSLMINPROTOCOLVERSION", "TLSv1.2")], false).unwrap();
        let e = read(&[("HOME", "/app")], true).unwrap_err();
        assert!(
            e.starts_with("HOME: /app/.postgresql/root.crl exists"),
            "{e}"
        );
        read(&[("HOME", "/app")], false).unwrap();
    }

    #[test]
    fn client_certificates_and_crls_are_refused_by_name() {
        for p in [
            "sslcert",
            "sslkey",
            "sslpassword",
            "sslcrl",
            "sslcrldir",
            "ssl_max_protocol_version",
            "requiressl",
        ] {
            let e = tls(&[(p, "/x")], &home()).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("DATABASE_URL: {p} is given, but ")),
                "{e}"
            );
            assert!(e.ends_with("remove it from the URL"), "{e}");
        }
    }

    #[test]
    fn a_relative_sslrootcert_is_read_from_the_working_directory() {
        let d = Defaults {
            cwd: Some("/app".into()),
            ..home()
        };
        let t = tls(
            &[("sslmode", "verify-ca"), ("sslrootcert", "certs/ca.pem")],
            &d,
        )
        .unwrap();
        assert_eq!(t.root, Some(RootCert::File("/app/certs/ca.pem".into())));
        let e = tls(&[("sslrootcert", "ca.pem")], &home())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "DATABASE_URL: sslrootcert must be an absolute path, or system"
        );
        let d = Defaults {
            sslrootcert: Some("rel/ca.pem".into()),
            ..home()
        };
        assert!(
            tls(&[], &d)
                .unwrap_err()
                .to_string()
                .starts_with("PGSSLROOTCERT: ")
        );
        let e = tls(&[("sslrootcert", "/etc/it's.pem")], &home())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without quotes"), "{e}");
    }
}
