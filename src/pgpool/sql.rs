//! The launcher's one SQL client to pgpool: how a session is configured (over TCP with the app's
//! credentials, or over pgpool's Unix socket in the runtime directory), the one way a session is
//! run, and `SHOW POOL_NODES` read into [`Node`]s. Readiness, the watchers and `status` all use
//! it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, SimpleQueryMessage, SimpleQueryRow};

use super::node::Node;
use crate::config::Backend;

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

/// Sessions the launcher has opened (or tried to) through pgpool: the metrics report them,
/// since each makes pgpool's child log in to every node it has no cached connection to.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

pub fn sessions_opened() -> u64 {
    SESSIONS.load(Ordering::Relaxed)
}

/// Runs `work` on a new session, driving the session here rather than on a task of its own:
/// when a caller's timeout drops this future, the session goes with it, instead of holding a
/// pgpool child until pgpool answers. `work` owns the client, so the session ends with it.
///
/// The session ends by closing the socket, without a Terminate message: pgpool then closes the
/// server connections the session's child opened, where after a Terminate it would keep them
/// cached for the next client (child.c, `connection_cache`). The launcher's sessions are one-offs
/// (readiness, the budget, discovery's probes), and an idle dyno should hold nothing on the
/// servers but pgpool's two checks (docs/pgpool.md, "What an idle dyno costs the servers").
/// pgpool logs such a close only at debug level.
/// Errors from the server or the connection stay `tokio_postgres::Error`s inside the
/// `anyhow::Error` (callers downcast to tell a server's answer from a broken connection).
pub async fn with_session<T, F>(cfg: Config, work: impl FnOnce(Client) -> F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    SESSIONS.fetch_add(1, Ordering::Relaxed);
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    let mut conn = Box::pin(conn);
    let mut work = std::pin::pin!(work(c));
    tokio::select! {
        biased;
        out = &mut work => {
            // Never polled again, the connection sends no Terminate; dropping it closes the
            // socket.
            drop(conn);
            Ok(out?)
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
            check_logins: None,
        })
        .collect()
}

/// A column older pgpools do not have (`get` would panic on a missing name).
fn optional(r: &SimpleQueryRow, column: &str) -> Option<String> {
    r.try_get(column).ok().flatten().map(str::to_string)
}
