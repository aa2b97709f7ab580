//! The launcher's one SQL client to pgpool: how a session is configured (over TCP with the app's
//! credentials, or over pgpool's Unix socket in the runtime directory), the one way a session is
//! run, and `SHOW POOL_NODES` read into [`Node`]s. Readiness, the watchers and `status` all use
//! it.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, SimpleQueryMessage, SimpleQueryRow};

use crate::config::Backend;

/// One row of `SHOW POOL_NODES`, the columns we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: usize,
    pub status: String,
    pub role: String,
    /// SELECTs pgpool sent to this node since it started.
    pub select_count: u64,
    /// Replication delay in bytes of WAL as pgpool's streaming check last saw it.
    pub lag_bytes: u64,
    /// The follower's `state` in the primary's `pg_stat_replication` (`streaming`), as
    /// pgpool's streaming check last saw it; empty when pgpool cannot tell.
    pub replication_state: String,
    /// What the server itself says, asked afresh for this row: `up`/`down`, and
    /// `primary`/`standby`/`unknown`. `None` before pgpool 4.3.
    pub pg_status: Option<String>,
    pub pg_role: Option<String>,
}

impl Node {
    /// A node as a unit test describes it.
    #[cfg(test)]
    pub fn at(id: usize, status: &str, role: &str) -> Node {
        Node {
            id,
            status: status.into(),
            role: role.into(),
            select_count: 0,
            lag_bytes: 0,
            replication_state: String::new(),
            pg_status: None,
            pg_role: None,
        }
    }

    /// `waiting` means up but not yet used by any session.
    pub fn is_up(&self) -> bool {
        super::pcp::status_is_up(&self.status)
    }

    /// The server itself answered, as `role`.
    pub fn answers_as(&self, role: &str) -> bool {
        self.pg_status.as_deref() == Some("up") && self.pg_role.as_deref() == Some(role)
    }
}

/// A session through pgpool on loopback TCP, as the app connects: its credentials, no TLS.
pub fn tcp_config(port: u16, primary: &Backend) -> Config {
    let mut cfg = Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(&primary.user)
        .password(primary.password.expose())
        .dbname(&primary.dbname)
        .application_name("start-pgpool")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(2));
    cfg
}

/// A session over pgpool's Unix socket in the runtime directory; `local` is trusted there,
/// since only our user can reach the 0700 directory, so no password is needed.
pub fn socket_config(socket_dir: &Path, port: u16, user: &str, dbname: &str) -> Config {
    let mut cfg = Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user(user)
        .dbname(dbname)
        .application_name("start-pgpool monitor")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(2));
    cfg
}

/// Runs `work` on a new session, driving the session here rather than on a task of its own:
/// when a caller's timeout drops this future, the session goes with it, instead of holding a
/// pgpool child until pgpool answers. `work` owns the client, so the session ends with it.
/// Errors from the server or the connection stay `tokio_postgres::Error`s inside the
/// `anyhow::Error` (callers downcast to tell a server's answer from a broken connection).
pub async fn with_session<T, F>(cfg: Config, work: impl FnOnce(Client) -> F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    let mut conn = Box::pin(conn);
    let mut work = std::pin::pin!(work(c));
    tokio::select! {
        biased;
        out = &mut work => {
            let out = out?;
            let _ = conn.await;
            Ok(out)
        }
        ended = &mut conn => {
            // The session ended before the work: a server that sends an error and closes
            // (pgpool refusing a query) ends both at once. What it said was already handed to
            // the work's query; dropping the connection lets the work return it, rather than
            // the connection's bare "closed".
            drop(conn);
            let out = work.await?;
            ended?;
            Ok(out)
        }
    }
}

pub fn rows(msgs: &[SimpleQueryMessage]) -> impl Iterator<Item = &SimpleQueryRow> {
    msgs.iter().filter_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

/// The first column of the first row of a simple query, if there is one.
pub async fn first_value(c: &Client, sql: &str) -> anyhow::Result<Option<String>> {
    let msgs = c.simple_query(sql).await?;
    Ok(rows(&msgs)
        .next()
        .and_then(|r| r.get(0))
        .map(str::to_string))
}

pub async fn show_pool_nodes(c: &Client) -> anyhow::Result<Vec<Node>> {
    Ok(parse_pool_nodes(&c.simple_query("SHOW POOL_NODES").await?))
}

fn parse_pool_nodes(msgs: &[SimpleQueryMessage]) -> Vec<Node> {
    rows(msgs)
        .map(|r| Node {
            id: r
                .get("node_id")
                .and_then(|v| v.parse().ok())
                .unwrap_or(usize::MAX),
            status: r.get("status").unwrap_or("").to_string(),
            role: r.get("role").unwrap_or("").to_string(),
            select_count: r
                .get("select_cnt")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            lag_bytes: r
                .get("replication_delay")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            replication_state: optional(r, "replication_state").unwrap_or_default(),
            pg_status: optional(r, "pg_status"),
            pg_role: optional(r, "pg_role"),
        })
        .collect()
}

/// A column older pgpools do not have (`get` would panic on a missing name).
fn optional(r: &SimpleQueryRow, column: &str) -> Option<String> {
    r.try_get(column).ok().flatten().map(str::to_string)
}
