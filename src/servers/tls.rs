//! Before pgpool starts: does each server give what its URL's `sslmode` asks? pgpool enforces
//! the mode on every connection it makes (patch 0007), but all it can say is that a node
//! failed; this check names the variable and what failed, so a wrong CA or host name is one
//! line at deploy instead of a follower that never takes reads.
//!
//! Only a server that answers and falls short is refused here. One that cannot be reached is
//! left to pgpool and the readiness wait, which already say so by name.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509, X509VerifyResult};

use crate::config::Backend;
use crate::config::tls::{RootCert, SslMode, Tls};
use crate::log::{self, event};

/// Per step (connect, each read and write): a server that takes longer is left to pgpool.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// PostgreSQL's SSLRequest: length 8, code 1234.5679.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Checks every server whose mode can be failed (`require` and stronger), all at once; the
/// first failure in `backends` order (the primary first) is the error.
pub fn check(backends: &[Backend]) -> Result<()> {
    let outcomes: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = backends
            .iter()
            .filter(|b| b.tls.mode >= SslMode::Require)
            .map(|b| s.spawn(move || check_one(b)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("the TLS check panicked")))
            .collect()
    });
    outcomes.into_iter().collect()
}

fn check_one(b: &Backend) -> Result<()> {
    match refusal(b) {
        Some(why) => bail!("{}: {why}", b.var),
        None => Ok(()),
    }
}

/// Why server `b` falls short of its URL's TLS, if it answers and does; `None` when it
/// satisfies it or cannot be asked. Blocks up to a few [`STEP_TIMEOUT`]s.
pub fn refusal(b: &Backend) -> Option<String> {
    let started = Instant::now();
    if let Some(RootCert::File(path)) = &b.tls.root {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(e) => {
                return Some(format!(
                    "sslrootcert {} cannot be read: {e}",
                    path.display()
                ));
            }
        };
        if X509::stack_from_pem(&pem).map_or(true, |certs| certs.is_empty()) {
            return Some(format!(
                "sslrootcert {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    match negotiate(&b.host, b.port, &b.tls) {
        Ok(Verdict::Satisfied) => {
            event!(
                log::events::SERVER_TLS,
                source = b.var.as_str(),
                sslmode = b.tls.mode.name(),
                ms = started.elapsed().as_millis() as u64
            );
            None
        }
        Ok(Verdict::Unknown(why)) => {
            event!(
                log::events::SERVER_TLS_UNCHECKED,
                source = b.var.as_str(),
                why = why.as_str()
            );
            None
        }
        Ok(Verdict::Refused(why)) => Some(why),
        Err(e) => Some(format!("checking the server's TLS: {e}")),
    }
}

enum Verdict {
    Satisfied,
    /// The server did not answer well enough to judge it (unreachable, timed out, closed).
    Unknown(String),
    /// It answered, and not as the URL asks.
    Refused(String),
}

fn negotiate(host: &str, port: u16, tls: &Tls) -> Result<Verdict> {
    let Some(mut stream) = connect(host, port) else {
        return Ok(Verdict::Unknown("no TCP connection".into()));
    };
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    stream.set_write_timeout(Some(STEP_TIMEOUT))?;
    let mut answer = [0u8; 1];
    if stream.write_all(&SSL_REQUEST).is_err() || stream.read_exact(&mut answer).is_err() {
        return Ok(Verdict::Unknown("no answer to SSLRequest".into()));
    }
    match answer[0] {
        b'S' => {}
        b'N' => {
            return Ok(Verdict::Refused(format!(
                "the server does not offer TLS, and the URL says sslmode={}",
                tls.mode
            )));
        }
        // libpq fails the connection here, and so does our pgpool (patch 0007).
        other => {
            return Ok(Verdict::Refused(format!(
                "the server answered the TLS request with byte {other}, neither yes nor no, and the URL says sslmode={}",
                tls.mode
            )));
        }
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    // The chain is verified all the same; its result is read below, so that the message can
    // say what failed instead of "handshake failure".
    builder.set_verify(SslVerifyMode::NONE);
    match &tls.root {
        Some(RootCert::File(path)) => builder.set_ca_file(path)?,
        Some(RootCert::System) => builder.set_default_verify_paths()?,
        None => {}
    }
    let mut config = builder.build().configure()?;
    config.set_verify_hostname(false);
    config.set_use_server_name_indication(host.parse::<IpAddr>().is_err());
    let ssl = match config.connect(host, stream) {
        Ok(s) => s,
        Err(openssl::ssl::HandshakeError::Failure(m)) => {
            return Ok(Verdict::Refused(format!(
                "the TLS handshake with the server failed: {}",
                m.error()
            )));
        }
        Err(e) => return Ok(Verdict::Unknown(format!("TLS handshake: {e}"))),
    };
    if !tls.mode.verifies() {
        return Ok(Verdict::Satisfied);
    }
    let verified = ssl.ssl().verify_result();
    if verified != X509VerifyResult::OK {
        let by = match &tls.root {
            Some(RootCert::System) => "a CA in the system store (sslrootcert=system)".to_string(),
            Some(RootCert::File(p)) => format!("the CA in sslrootcert {}", p.display()),
            None => "a CA".to_string(),
        };
        return Ok(Verdict::Refused(format!(
            "the server's certificate is not signed by {by}: {}",
            verified.error_string()
        )));
    }
    if tls.mode == SslMode::VerifyFull {
        let Some(cert) = ssl.ssl().peer_certificate() else {
            return Ok(Verdict::Refused("the server sent no certificate".into()));
        };
        let names = CertNames::of(&cert);
        if !names.name(host) {
            return Ok(Verdict::Refused(format!(
                "host name {host} is not in the server's certificate ({}), and the URL says sslmode=verify-full",
                names.describe()
            )));
        }
    }
    Ok(Verdict::Satisfied)
}

fn connect(host: &str, port: u16) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, STEP_TIMEOUT).ok())
}

/// The names a certificate gives its server: subjectAltName DNS and IP address entries, and
/// the first Common Name of its subject (the one libpq reads).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    pub dns: Vec<String>,
    pub ips: Vec<Vec<u8>>,
    pub cn: Option<String>,
}

impl CertNames {
    fn of(cert: &X509) -> CertNames {
        let mut names = CertNames::default();
        if let Some(sans) = cert.subject_alt_names() {
            for san in &sans {
                if let Some(d) = san.dnsname() {
                    names.dns.push(d.to_string());
                } else if let Some(ip) = san.ipaddress() {
                    names.ips.push(ip.to_vec());
                }
            }
        }
        names.cn = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok());
        names
    }

    /// libpq's verify-full rule: any DNS entry (compared as a name, even against an
    /// address) or IP entry may match; the Common Name counts only when the certificate has
    /// no entry of the host's own kind (DNS for a name, IP for an address).
    pub fn name(&self, host: &str) -> bool {
        let ip: Option<Vec<u8>> = match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Some(a.octets().to_vec()),
            Ok(IpAddr::V6(a)) => Some(a.octets().to_vec()),
            Err(_) => None,
        };
        if self.dns.iter().any(|d| name_matches(d, host)) {
            return true;
        }
        if let Some(ip) = &ip
            && self.ips.iter().any(|i| i == ip)
        {
            return true;
        }
        let own_kind = match ip {
            Some(_) => !self.ips.is_empty(),
            None => !self.dns.is_empty(),
        };
        !own_kind && self.cn.as_deref().is_some_and(|cn| name_matches(cn, host))
    }

    /// For the error line: what the certificate does name.
    fn describe(&self) -> String {
        let mut all: Vec<String> = self.dns.clone();
        all.extend(self.ips.iter().filter_map(|b| match b.len() {
            4 => Some(IpAddr::from(<[u8; 4]>::try_from(b.as_slice()).ok()?).to_string()),
            16 => Some(IpAddr::from(<[u8; 16]>::try_from(b.as_slice()).ok()?).to_string()),
            _ => None,
        }));
        if all.is_empty() {
            return match &self.cn {
                Some(cn) => format!("it names only CN={cn}"),
                None => "it names no host".to_string(),
            };
        }
        format!("it names {}", all.join(", "))
    }
}

/// One certificate name against the host, as libpq compares them: case does not matter, a
/// leading `*.` stands for the host's whole first label (not empty), a name with a NUL never
/// matches.
fn name_matches(name: &str, host: &str) -> bool {
    if name.contains('\0') {
        return false;
    }
    match name.strip_prefix('*') {
        Some(rest) if rest.len() > 1 && rest.starts_with('.') => host
            .find('.')
            .is_some_and(|i| i > 0 && host[i..].eq_ignore_ascii_case(rest)),
        _ => name.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dns: &[&str], ips: &[&str], cn: Option<&str>) -> CertNames {
        CertNames {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips
                .iter()
                .map(|s| match s.parse::<IpAddr>().unwrap() {
                    IpAddr::V4(a) => a.octets().to_vec(),
                    IpAddr::V6(a) => a.octets().to_vec(),
                })
                .collect(),
            cn: cn.map(str::to_string),
        }
    }

    #[test]
    fn san_entries_match_names_and_addresses() {
        let n = names(&["localhost"], &["127.0.0.1"], Some("ignored"));
        assert!(n.name("localhost"));
        assert!(n.name("LOCALHOST"));
        assert!(n.name("127.0.0.1"));
        assert!(!n.name("127.0.0.2"));
        assert!(!n.name("ignored"), "a DNS SAN hides the CN");
        assert!(!n.name("::1"));
    }

    #[test]
    fn the_cn_counts_only_without_an_entry_of_the_host_s_kind() {
        // IP SANs only: a name falls back to the CN, an address does not.
        let n = names(&[], &["10.0.0.1"], Some("db.example.com"));
        assert!(n.name("db.example.com"));
        assert!(n.name("10.0.0.1"));
        assert!(!n.name("10.0.0.2"));
        // DNS SANs only: an address falls back to the CN (libpq's exception).
        let n = names(&["db.example.com"], &[], Some("10.0.0.1"));
        assert!(n.name("10.0.0.1"));
        assert!(!n.name("other.example.com"));
        // No SAN at all.
        let n = names(&[], &[], Some("127.0.0.1"));
        assert!(n.name("127.0.0.1"));
        assert!(!n.name("localhost"));
        assert!(!names(&[], &[], None).name("localhost"));
    }

    #[test]
    fn a_dns_entry_is_compared_as_text_even_against_an_address() {
        assert!(names(&["127.0.0.1"], &[], None).name("127.0.0.1"));
    }

    #[test]
    fn wildcards_cover_one_whole_first_label() {
        let n = names(&["*.db.example.com"], &[], None);
        assert!(n.name("eu1.db.example.com"));
        assert!(n.name("EU1.DB.example.com"));
        assert!(!n.name("a.eu1.db.example.com"));
        assert!(!n.name("db.example.com"));
        assert!(!n.name(".db.example.com"), "the first label is not empty");
        assert!(!names(&["db*.example.com"], &[], None).name("db1.example.com"));
        assert!(!names(&["*."], &[], None).name("a."));
    }

    #[test]
    fn a_name_with_a_nul_never_matches() {
        assert!(!names(&["localhost\0.evil.com"], &[], None).name("localhost"));
    }

    #[test]
    fn ipv6_entries_compare_as_addresses() {
        let n = names(&[], &["::1"], None);
        assert!(n.name("::1"));
        assert!(n.name("0:0:0:0:0:0:0:1"));
        assert!(!n.name("127.0.0.1"));
    }

    #[test]
    fn the_error_names_what_the_certificate_names() {
        assert_eq!(
            names(&["db.example.test"], &["10.0.0.1"], None).describe(),
            "it names db.example.test, 10.0.0.1"
        );
        assert_eq!(
            names(&[], &[], Some("localhost")).describe(),
            "it names only CN=localhost"
        );
    }
}
