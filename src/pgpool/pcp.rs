//! pcp, pgpool's admin protocol, spoken by the launcher itself: the monitor reads every node's
//! status and role from it once a second (health-check stats, which come from pgpool's shared
//! memory and never wait on a server), the repairs use it to detach a follower that stopped
//! replicating from the primary and to hand pgpool a primary it gave up looking for
//! (src/watch/repair/ says when), and `status` falls back to it when `SHOW POOL_NODES` stalls.
//!
//! pcp listens only on its Unix socket in the private 0700 runtime directory. Its one user is
//! made up per launch with a random password; pcp.conf holds only the password's MD5, in a 0600
//! file, and the MD5 is all a client needs (pcp's login hashes it again with a salt), so the
//! launcher keeps only that and `status` reads it from pcp.conf. The protocol (pgpool's
//! src/libs/pcp/pcp.c): each message is a tag byte and a big-endian length that counts itself;
//! authentication is MD5 over a 4-byte salt the server sends. A few messages are all we need,
//! so they are written here rather than shelling out to `pcp_*` tools the user's pgpool may not
//! have.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use md5::{Digest as _, Md5};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

use super::node::Node;
use super::runtime_dir::Files;
use crate::secret::Secret;
/// No pcp exchange of ours takes long; a pgpool busy with a failover answers after it.
const TIMEOUT: Duration = Duration::from_secs(15);
const USER: &str = "start-pgpool";

/// The per-launch pcp user: its name and the MD5 of its password, as pcp.conf holds them.
#[derive(Clone, Debug)]
pub struct Credentials {
    user: String,
    /// md5(password), hex: what pcp.conf holds, and all a login needs.
    stored: Secret,
}

impl Credentials {
    /// A fresh random password (24 bytes from the OS, hex), kept only as its MD5.
    pub fn generate() -> Result<Credentials> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for pcp: {e}"))?;
        Ok(Credentials {
            user: USER.to_string(),
            stored: Secret::new(md5_hex(hex(&bytes).as_bytes())),
        })
    }

    /// pcp.conf: `user:md5(password)`.
    pub fn pcp_conf(&self) -> String {
        format!(
            "# start-pgpool's own pcp user, made up for this launch.\n{}:{}\n",
            self.user,
            self.stored.expose()
        )
    }

    /// The user [`Credentials::pcp_conf`] wrote (`status` reads it back from the runtime
    /// directory).
    pub fn from_pcp_conf(text: &str) -> Result<Credentials> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.split_once(':'))
            .filter(|(user, stored)| !user.is_empty() && stored.len() == 32)
            .map(|(user, stored)| Credentials {
                user: user.to_string(),
                stored: Secret::new(stored),
            })
            .context("pcp.conf holds no user of ours")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// What the client sends for `salt`: md5(md5(stored + user) + salt), as hex, where `stored`
/// is md5(password) as pcp.conf holds it.
pub fn auth_hash(user: &str, stored: &str, salt: &[u8]) -> String {
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

/// One node as pgpool's shared memory has it, from pcp's health-check stats (`H`, pgpool 4.2
/// and later). Status and role are the same strings as `SHOW POOL_NODES`'s (pgpool fills both
/// from the same `backend_status_to_str` and primary id) but, unlike it, pgpool answers
/// without asking any server (pool_process_reporting.c, `get_health_check_stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub id: usize,
    /// `up`, `waiting` (up, not used yet), `down`, `quarantine`, `unused`.
    pub status: String,
    /// `primary` or `standby` (pgpool's idea, not the server's).
    pub role: String,
}

impl NodeState {
    pub fn is_up(&self) -> bool {
        super::node::status_is_up(&self.status)
    }
}

/// The request for node `id`'s health-check stats: its id as a string, NUL.
pub fn health_check_stats_request(id: usize) -> Vec<u8> {
    message(b'H', &cstrings(&[&id.to_string()]))
}

/// The body of an `h` reply: `CommandComplete`, then NUL-terminated fields in the order of
/// pgpool's `POOL_HEALTH_CHECK_STATS`: node id, host, port, status, role, last status change,
/// then the health-check counters and times (ignored here; pgpool 4.3 and 4.7 send the same 20).
pub fn parse_health_check_stats(body: &[u8]) -> Result<NodeState> {
    let mut fields = body.split(|&c| c == 0).map(String::from_utf8_lossy);
    if fields.next().as_deref() != Some("CommandComplete") {
        bail!("pcp answered health-check stats without CommandComplete");
    }
    // None of the first five is ever empty; an empty one is the end of a short body.
    let mut next = |what: &str| {
        fields
            .next()
            .filter(|f| !f.is_empty())
            .map(|f| f.into_owned())
            .with_context(|| format!("pcp's health-check stats have no {what}"))
    };
    let id = next("node id")?;
    let id = id
        .parse()
        .with_context(|| format!("pcp sent node id {id:?}"))?;
    let (_host, _port) = (next("host")?, next("port")?);
    let status = next("status")?;
    let role = next("role")?;
    Ok(NodeState { id, status, role })
}

/// The request for every node's info (`I`, node id `-1`).
pub fn node_info_request() -> Vec<u8> {
    message(b'I', &cstrings(&["-1"]))
}

/// pgpool's `BACKEND_STATUS` number as `SHOW POOL_NODES` words it (`backend_status_to_str`).
fn status_word(number: &str, quarantine: bool) -> &'static str {
    match number {
        "0" => "unused",
        "1" => "waiting",
        "2" => "up",
        "3" if quarantine => "quarantine",
        "3" => "down",
        _ => "unknown",
    }
}

/// pgpool's `SERVER_ROLE` number as `SHOW POOL_NODES` words it.
fn role_word(number: &str) -> &'static str {
    match number {
        "0" => "main",
        "1" => "replica",
        "2" => "primary",
        "3" => "standby",
        _ => "unknown",
    }
}

/// The body of one `i` reply to a node-info request, node `id`: `NodeInfo`, then NUL-terminated
/// fields in pcp_worker.c's order: host, port, status (a number), quarantine, pg_status, weight,
/// role (a number), pg_role, delay by time, delay, replication state, sync state, last change;
/// then, from our build only (patch 0011), the select count and the logins of the health check
/// and of the streaming check. Without those three (a stock pgpool) the node has no select count
/// and no login count.
pub fn parse_node_info(id: usize, body: &[u8]) -> Result<Node> {
    let fields: Vec<String> = body
        .split(|&c| c == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    if fields.first().map(String::as_str) != Some("NodeInfo") {
        bail!("pcp answered node info without NodeInfo");
    }
    let field = |i: usize| fields.get(i).map(String::as_str);
    let (Some(status), Some(quarantine), Some(pg_status), Some(role), Some(pg_role)) =
        (field(3), field(4), field(5), field(7), field(8))
    else {
        bail!("pcp's node info for node {id} is short");
    };
    let number = |i: usize| field(i).and_then(|v| v.parse::<u64>().ok());
    let delay_by_time = field(9) == Some("1");
    Ok(Node {
        id,
        status: status_word(status, quarantine == "1").to_string(),
        role: role_word(role).to_string(),
        select_count: number(14).unwrap_or(0),
        lag_bytes: if delay_by_time {
            0
        } else {
            number(10).unwrap_or(0)
        },
        replication_state: field(11).unwrap_or("").to_string(),
        pg_status: Some(pg_status.to_string()),
        pg_role: Some(pg_role.to_string()),
        check_logins: number(15).zip(number(16)).map(|(h, s)| h + s),
    })
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

    /// A client of the pcp socket at `socket` (`status`, which has no [`Files`] of its own
    /// making).
    pub fn at(socket: PathBuf, creds: Credentials) -> Pcp {
        Pcp { socket, creds }
    }

    /// Connects, authenticates, runs `cmd`, and hangs up.
    pub async fn run(&self, cmd: Command) -> Result<()> {
        tokio::time::timeout(TIMEOUT, self.exchange(cmd))
            .await
            .context("pcp did not answer")?
    }

    /// Status and role of nodes `0..count`, from pgpool's shared memory: a new connection (a
    /// pcp session that had run a detach still answered `up` for that node, 4.7.2), one `H` per
    /// node. Within `timeout` or an error.
    pub async fn node_states(&self, count: usize, timeout: Duration) -> Result<Vec<NodeState>> {
        tokio::time::timeout(timeout, async {
            let mut s = self.login().await?;
            let mut out = Vec::with_capacity(count);
            for id in 0..count {
                s.write_all(&health_check_stats_request(id)).await?;
                let node = parse_health_check_stats(&expect(&mut s, b'h').await?)?;
                if node.id != id {
                    bail!("pcp answered for node {} where {id} was asked", node.id);
                }
                out.push(node);
            }
            let _ = s.write_all(&message(b'X', &[])).await;
            Ok(out)
        })
        .await
        .context("pcp did not answer")?
    }

    /// Every node as pgpool's shared memory has it, from one node-info request (`I`). With our
    /// build nothing in it asks a server while the node is up (patch 0011); stock pgpool pings
    /// every node and logs in to each to read its role.
    pub async fn node_info(&self, count: usize, timeout: Duration) -> Result<Vec<Node>> {
        tokio::time::timeout(timeout, async {
            let mut s = self.login().await?;
            s.write_all(&node_info_request()).await?;
            let size = expect(&mut s, b'i').await?;
            if !size.starts_with(b"ArraySize\0") {
                bail!("pcp answered node info without ArraySize");
            }
            let mut out = Vec::with_capacity(count);
            for id in 0..count {
                out.push(parse_node_info(id, &expect(&mut s, b'i').await?)?);
            }
            let _ = s.write_all(&message(b'X', &[])).await;
            Ok(out)
        })
        .await
        .context("pcp did not answer")?
    }

    /// A connection past pcp's login.
    async fn login(&self) -> Result<UnixStream> {
        let mut s = UnixStream::connect(&self.socket)
            .await
            .context("cannot reach pgpool's pcp socket")?;
        s.write_all(&message(b'M', &[])).await?;
        let salt = expect(&mut s, b'm').await?;
        if salt.len() < 4 {
            bail!("pcp sent a short salt");
        }
        let hash = auth_hash(&self.creds.user, self.creds.stored.expose(), &salt[..4]);
        s.write_all(&message(b'R', &cstrings(&[&self.creds.user, &hash])))
            .await?;
        let ok = expect(&mut s, b'r').await?;
        if nul_terminated(&ok) != "AuthenticationOK" {
            bail!("pcp refused our user: {}", nul_terminated(&ok));
        }
        Ok(s)
    }

    async fn exchange(&self, cmd: Command) -> Result<()> {
        let mut s = self.login().await?;
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

    fn node_info_body(fields: &[&str]) -> Vec<u8> {
        cstrings(&[&["NodeInfo"], fields].concat())
    }

    #[test]
    fn node_info_from_our_build_has_the_counts() {
        let body = node_info_body(&[
            "127.0.0.1",
            "5433",
            "2",
            "0",
            "up",
            "0.5",
            "3",
            "standby",
            "0",
            "4096",
            "streaming",
            "async",
            "1765000000",
            "17",
            "2",
            "1",
        ]);
        let n = parse_node_info(1, &body).unwrap();
        assert_eq!(
            (n.id, n.status.as_str(), n.role.as_str()),
            (1, "up", "standby")
        );
        assert_eq!(
            (n.pg_status.as_deref(), n.pg_role.as_deref()),
            (Some("up"), Some("standby"))
        );
        assert_eq!((n.select_count, n.lag_bytes), (17, 4096));
        assert_eq!(n.replication_state, "streaming");
        assert_eq!(n.check_logins, Some(3));
    }

    #[test]
    fn node_info_from_stock_pgpool_has_no_counts_and_words_the_numbers() {
        let body = node_info_body(&[
            "h", "5432", "3", "1", "down", "0", "2", "unknown", "1", "5000", "", "", "0",
        ]);
        let n = parse_node_info(0, &body).unwrap();
        assert_eq!(
            (n.status.as_str(), n.role.as_str()),
            ("quarantine", "primary")
        );
        assert_eq!((n.select_count, n.lag_bytes, n.check_logins), (0, 0, None));
        assert!(!n.is_up());
        assert!(parse_node_info(0, &node_info_body(&["h", "5432", "2"])).is_err());
        assert!(parse_node_info(0, &cstrings(&["CommandComplete"])).is_err());
    }

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
        assert_eq!(auth_hash("u", &stored, b"salt"), expected);
        assert_ne!(
            auth_hash("u", &stored, b"salt"),
            auth_hash("u", &stored, b"tlas")
        );
    }

    #[test]
    fn pcp_conf_holds_a_fresh_hash_and_reads_back() {
        let c = Credentials::generate().unwrap();
        let conf = c.pcp_conf();
        let line = conf.lines().nth(1).unwrap();
        let (user, stored) = line.split_once(':').unwrap();
        assert_eq!(user, "start-pgpool");
        assert_eq!(stored.len(), 32);
        assert!(stored.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            c.stored.expose(),
            Credentials::generate().unwrap().stored.expose()
        );
        let back = Credentials::from_pcp_conf(&conf).unwrap();
        assert_eq!(
            (back.user.as_str(), back.stored.expose()),
            (user, c.stored.expose())
        );
        assert!(Credentials::from_pcp_conf("# nothing\n").is_err());
        assert!(Credentials::from_pcp_conf("u:short\n").is_err());
    }

    /// Replies captured from pgpool 4.7.2 (our build) and Debian's 4.3.5, three nodes, all up;
    /// the down one from 4.7.2 after `pcp_detach_node` of a follower.
    const H_PRIMARY_47: &[u8] = b"h\x00\x00\x00\x97CommandComplete\x000\x00127.0.0.1\x0033393\x00up\x00primary\x002026-12-01 11:49:10\x0013\x0013\x000\x000\x000\x000.000000\x000\x00119\x0016\x0035.153846\x002026-12-01 11:49:22\x002026-12-01 11:49:22\x00\x00\x00";
    const H_STANDBY_43: &[u8] = b"h\x00\x00\x00\x96CommandComplete\x001\x00127.0.0.1\x0039001\x00up\x00standby\x002026-12-01 11:49:10\x0013\x0012\x000\x000\x000\x000.000000\x000\x0063\x0022\x0031.384615\x002026-12-01 11:49:22\x002026-12-01 11:49:21\x00\x00\x00";
    const H_DOWN_47: &[u8] = b"h\x00\x00\x00\xb1CommandComplete\x002\x00127.0.0.1\x0034771\x00down\x00standby\x002026-12-01 11:52:26\x00125\x00122\x000\x003\x000\x000.000000\x000\x0039865\x0011\x00589.401639\x002026-12-01 11:52:25\x002026-12-01 11:52:25\x002026-12-01 11:51:31\x00\x00";
    const H_NO_NODE_43: &[u8] = b"E\x00\x00\x00zSERROR\x00CXX000\x00Minforming health check stats info failed\x00Dstats data for node ID 3 does not exist\x00Fpcp_worker.c\x00L1017\x00\x00";

    /// The body of a captured message, its length word checked.
    fn body(m: &[u8]) -> &[u8] {
        let len = u32::from_be_bytes(m[1..5].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            m.len() - 1,
            "the length word counts itself and the body"
        );
        &m[5..]
    }

    #[test]
    fn health_check_stats_request_is_the_node_id_string() {
        assert_eq!(health_check_stats_request(0), b"H\0\0\0\x060\0".to_vec());
        assert_eq!(health_check_stats_request(12), b"H\0\0\0\x0712\0".to_vec());
    }

    #[test]
    fn health_check_stats_reply_gives_status_and_role() {
        let node = |id: usize, status: &str, role: &str| NodeState {
            id,
            status: status.into(),
            role: role.into(),
        };
        assert_eq!(H_PRIMARY_47[0], b'h');
        assert_eq!(
            parse_health_check_stats(body(H_PRIMARY_47)).unwrap(),
            node(0, "up", "primary")
        );
        assert_eq!(
            parse_health_check_stats(body(H_STANDBY_43)).unwrap(),
            node(1, "up", "standby")
        );
        assert_eq!(
            parse_health_check_stats(body(H_DOWN_47)).unwrap(),
            node(2, "down", "standby")
        );
        assert!(!parse_health_check_stats(body(H_DOWN_47)).unwrap().is_up());
        assert_eq!(H_NO_NODE_43[0], b'E');
        assert_eq!(
            error_text(body(H_NO_NODE_43)),
            "informing health check stats info failed: stats data for node ID 3 does not exist"
        );
        assert!(parse_health_check_stats(b"CommandComplete\0").is_err());
        assert!(parse_health_check_stats(b"CommandComplete\0x\0h\0p\0up\0primary\0").is_err());
        assert!(parse_health_check_stats(b"Error\0").is_err());
        // Cut short after the port: the status is missing, not empty.
        assert!(
            parse_health_check_stats(b"CommandComplete\x002\x00127.0.0.1\x0034771\x00").is_err()
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
