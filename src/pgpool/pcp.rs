//! pcp, pgpool's admin protocol, spoken by the launcher itself: the repairs use it to detach a
//! follower that stopped replicating from the primary, and to hand pgpool a primary it gave up
//! looking for (src/watch/repair/ says when).
//!
//! pcp listens only on its Unix socket in the private 0700 runtime directory. Its one user is
//! made up per launch with a random password that lives in the launcher's memory; pcp.conf holds
//! only the password's MD5, in a 0600 file. The protocol (pgpool's src/libs/pcp/pcp.c): each
//! message is a tag byte and a big-endian length that counts itself; authentication is MD5 over
//! a 4-byte salt the server sends. A few messages are all we need, so they are written here
//! rather than shelling out to `pcp_*` tools the user's pgpool may not have.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::runtime_dir::Files;
use crate::secret::Secret;
/// No pcp exchange of ours takes long; a pgpool busy with a failover answers after it.
const TIMEOUT: Duration = Duration::from_secs(15);
const USER: &str = "start-pgpool";

/// The per-launch pcp user.
#[derive(Clone, Debug)]
pub struct Credentials {
    user: String,
    password: Secret,
}

impl Credentials {
    /// A fresh random password (24 bytes from the OS, hex).
    pub fn generate() -> Result<Credentials> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for pcp: {e}"))?;
        Ok(Credentials {
            user: USER.to_string(),
            password: Secret::new(hex(&bytes)),
        })
    }

    /// pcp.conf: `user:md5(password)`.
    pub fn pcp_conf(&self) -> String {
        format!(
            "# start-pgpool's own pcp user, made up for this launch.\n{}:{}\n",
            self.user,
            md5_hex(self.password.expose().as_bytes())
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// What the client sends for `salt`: md5(md5(md5(password) + user) + salt), as hex.
pub fn auth_hash(user: &str, password: &str, salt: &[u8]) -> String {
    let stored = md5_hex(password.as_bytes());
    let with_user = md5_hex(format!("{stored}{user}").as_bytes());
    let mut salted = with_user.into_bytes();
    salted.extend_from_slice(salt);
    md5_hex(&salted)
}

/// One message: tag, length (4 + body), body.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + body.len());
    m.push(tag);
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Strings in pcp bodies end in NUL.
fn cstrings(parts: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(p.as_bytes());
        b.push(0);
    }
    b
}

/// A node command: detach (`D`), attach (`C`), or promote (`J`, which pgpool 4.3+ reads as
/// "`<id> `", NUL, then `n`: pgpool's idea of the primary only, the server is not touched).
/// A promote also detaches every other node ("follow degeneration", pgpool_main.c
/// `exec_follow_primary_command`, even with no follow_primary_command); `auto_failback` brings
/// back those that stream from the new primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Detach(usize),
    Attach(usize),
    Promote(usize),
}

impl Command {
    pub fn encode(self) -> Vec<u8> {
        match self {
            Command::Detach(n) => message(b'D', &cstrings(&[&n.to_string()])),
            Command::Attach(n) => message(b'C', &cstrings(&[&n.to_string()])),
            Command::Promote(n) => {
                let mut body = cstrings(&[&format!("{n} ")]);
                body.push(b'n');
                message(b'J', &body)
            }
        }
    }

    /// The tag of the server's answer.
    fn reply_tag(self) -> u8 {
        match self {
            Command::Detach(_) | Command::Promote(_) => b'd',
            Command::Attach(_) => b'c',
        }
    }
}

/// The launcher's pcp client.
#[derive(Clone, Debug)]
pub struct Pcp {
    socket: PathBuf,
    creds: Credentials,
}

impl Pcp {
    pub fn new(files: &Files, creds: Credentials) -> Pcp {
        Pcp {
            socket: files.pcp_socket(),
            creds,
        }
    }

    /// Connects, authenticates, runs `cmd`, and hangs up.
    pub async fn run(&self, cmd: Command) -> Result<()> {
        tokio::time::timeout(TIMEOUT, self.exchange(cmd))
            .await
            .context("pcp did not answer")?
    }

    async fn exchange(&self, cmd: Command) -> Result<()> {
        let mut s = UnixStream::connect(&self.socket)
            .await
            .context("cannot reach pgpool's pcp socket")?;
        s.write_all(&message(b'M', &[])).await?;
        let salt = expect(&mut s, b'm').await?;
        if salt.len() < 4 {
            bail!("pcp sent a short salt");
        }
        let hash = auth_hash(&self.creds.user, self.creds.password.expose(), &salt[..4]);
        s.write_all(&message(b'R', &cstrings(&[&self.creds.user, &hash])))
            .await?;
        let ok = expect(&mut s, b'r').await?;
        if nul_terminated(&ok) != "AuthenticationOK" {
            bail!("pcp refused our user: {}", nul_terminated(&ok));
        }
        s.write_all(&cmd.encode()).await?;
        let done = expect(&mut s, cmd.reply_tag()).await?;
        if nul_terminated(&done) != "CommandComplete" {
            bail!("pcp answered {}", nul_terminated(&done));
        }
        let _ = s.write_all(&message(b'X', &[])).await;
        Ok(())
    }
}

fn nul_terminated(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The text of an `E` reply: fields are a type byte and a string each; `M` is the message
/// and `D` its detail, where pgpool often puts the reason.
pub fn error_text(body: &[u8]) -> String {
    let field = |t: &[u8]| {
        body.split(|&c| c == 0)
            .find_map(|f| f.strip_prefix(t))
            .map(|m| String::from_utf8_lossy(m).into_owned())
    };
    match (field(b"M"), field(b"D")) {
        (Some(m), Some(d)) => format!("{m}: {d}"),
        (Some(m), None) => m,
        (None, Some(d)) => d,
        (None, None) => "an error without a message".to_string(),
    }
}

/// Reads replies until one tagged `tag`; notices (`N`) are skipped, errors (`E`) returned.
async fn expect(s: &mut UnixStream, tag: u8) -> Result<Vec<u8>> {
    // Bounded: pcp sends at most a notice or two before its answer.
    for _ in 0..16 {
        let t = s.read_u8().await.context("pcp closed the connection")?;
        let len = s.read_u32().await? as usize;
        if !(4..=1 << 20).contains(&len) {
            bail!("pcp sent a message of length {len}");
        }
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await?;
        match t {
            b'N' => continue,
            b'E' => bail!("pcp: {}", error_text(&body)),
            t if t == tag => return Ok(body),
            t => bail!(
                "pcp answered {:?} where {:?} was due",
                t as char,
                tag as char
            ),
        }
    }
    bail!("pcp sent only notices")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_count_their_length_word() {
        assert_eq!(message(b'M', &[]), vec![b'M', 0, 0, 0, 4]);
        assert_eq!(Command::Detach(2).encode(), b"D\0\0\0\x062\0".to_vec());
        assert_eq!(Command::Attach(12).encode(), b"C\0\0\0\x0712\0".to_vec());
        // pcp.c: node id with a trailing space, its NUL, then the option byte.
        assert_eq!(Command::Promote(1).encode(), b"J\0\0\0\x081 \0n".to_vec());
    }

    #[test]
    fn auth_hash_is_md5_of_md5_with_user_then_salt() {
        let stored = md5_hex(b"pw");
        assert_eq!(stored, "8fe4c11451281c094a6578e6ddbf5eed");
        let expected = md5_hex(
            &[
                md5_hex(format!("{stored}u").as_bytes()).as_bytes(),
                b"salt".as_slice(),
            ]
            .concat(),
        );
        assert_eq!(auth_hash("u", "pw", b"salt"), expected);
        assert_ne!(auth_hash("u", "pw", b"salt"), auth_hash("u", "pw", b"tlas"));
    }

    #[test]
    fn pcp_conf_holds_the_hash_not_the_password() {
        let c = Credentials::generate().unwrap();
        let conf = c.pcp_conf();
        assert!(!conf.contains(c.password.expose()));
        assert!(conf.contains(&format!(
            "start-pgpool:{}\n",
            md5_hex(c.password.expose().as_bytes())
        )));
        assert_ne!(
            c.password.expose(),
            Credentials::generate().unwrap().password.expose()
        );
    }

    #[test]
    fn error_text_is_message_and_detail() {
        assert_eq!(
            error_text(b"SERROR\0Mcould not process promote request\0Dnode id 7 is not valid\0\0"),
            "could not process promote request: node id 7 is not valid"
        );
        assert_eq!(error_text(b"SERROR\0Mno detail\0\0"), "no detail");
        assert_eq!(error_text(b"\0"), "an error without a message");
    }
}
