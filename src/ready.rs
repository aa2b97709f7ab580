//! Readiness: pgpool counts as ready when a real query through it with the app's credentials
//! succeeds and `SHOW POOL_NODES` reports exactly one primary that is up. The port opens long
//! before that, even when the primary is unreachable (NOTES Q6), so a TCP check proves nothing.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;
use tokio_postgres::config::SslMode;

use crate::backends::Backend;

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
        matches!(self.status.as_str(), "up" | "waiting")
    }
}

/// Runs `SHOW POOL_NODES` through pgpool as the app would connect.
pub async fn pool_nodes(port: u16, primary: &Backend) -> Result<Vec<Node>, tokio_postgres::Error> {
    let (client, conn) = connect(port, primary).await?;
    let conn = tokio::spawn(conn);
    let rows = show_pool_nodes(&client).await;
    drop(client);
    let _ = conn.await;
    rows
}

pub async fn show_pool_nodes(
    client: &tokio_postgres::Client,
) -> Result<Vec<Node>, tokio_postgres::Error> {
    Ok(parse_pool_nodes(
        &client.simple_query("SHOW POOL_NODES").await?,
    ))
}

/// A session through pgpool on loopback with the app's credentials.
pub async fn connect(
    port: u16,
    primary: &Backend,
) -> Result<
    (
        tokio_postgres::Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
    tokio_postgres::Error,
> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host("127.0.0.1")
        .port(port)
        .user(&primary.user)
        .password(primary.password.expose())
        .dbname(&primary.dbname)
        .application_name("start-pgpool")
        .ssl_mode(SslMode::Disable)
        .connect_timeout(Duration::from_secs(2));
    cfg.connect(tokio_postgres::NoTls).await
}

fn parse_pool_nodes(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Node> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(Node {
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
            }),
            _ => None,
        })
        .collect()
}

/// A column older pgpools do not have (`get` would panic on a missing name).
fn optional(r: &tokio_postgres::SimpleQueryRow, column: &str) -> Option<String> {
    r.try_get(column).ok().flatten().map(str::to_string)
}

/// What one probe saw: the reason pgpool is not ready yet, naming backends by variable.
pub fn verdict(nodes: &[Node], backends: &[Backend]) -> Result<()> {
    let name = |id: usize| {
        backends
            .get(id)
            .map(|b| format!("{} ({}:{})", b.var, b.host, b.port))
            .unwrap_or_else(|| format!("node {id}"))
    };
    let primaries: Vec<&Node> = nodes.iter().filter(|n| n.role == "primary").collect();
    match primaries.as_slice() {
        [p] if p.is_up() => Ok(()),
        [p] => bail!("the primary {} is down", name(p.id)),
        [] => {
            let down: Vec<String> = nodes
                .iter()
                .filter(|n| !n.is_up())
                .map(|n| name(n.id))
                .collect();
            if nodes.first().is_some_and(|n| !n.is_up()) {
                bail!("the primary {} is down", name(0))
            } else if !down.is_empty() {
                bail!("no primary found; down: {}", down.join(", "))
            } else {
                bail!("no node is a primary yet; is {} the primary?", name(0))
            }
        }
        _ => bail!("pgpool sees {} primaries", primaries.len()),
    }
}

/// Probes until ready or `deadline`. The error says what the last probe saw.
pub async fn wait(port: u16, backends: &[Backend], deadline: Instant) -> Result<Vec<Node>> {
    let mut last = String::from("pgpool did not answer");
    // Short pauses while pgpool is not listening yet (a refused connect costs nothing, and it
    // is typically ready ~0.2 s after spawn) or is still looking for the primary; longer once
    // it answers with an error, since each such probe makes a pgpool child try every backend.
    let (refused, searching, answered) = (
        Duration::from_millis(10),
        Duration::from_millis(20),
        Duration::from_millis(100),
    );
    // Bounded by the deadline; the counter is a second guard against a clock that stalls.
    for _ in 0..100_000 {
        if Instant::now() >= deadline {
            break;
        }
        let pause = match tokio::time::timeout_at(deadline, pool_nodes(port, &backends[0])).await {
            Err(_) => break,
            Ok(Ok(nodes)) => match verdict(&nodes, backends) {
                Ok(()) => return Ok(nodes),
                Err(e) => {
                    last = e.to_string();
                    searching
                }
            },
            Ok(Err(e)) => {
                last = probe_error(&e);
                if e.as_db_error().is_some() {
                    answered
                } else {
                    refused
                }
            }
        };
        tracing::debug!(why = last.as_str(), "not-ready");
        tokio::time::sleep(pause).await;
    }
    if last.starts_with("pgpool") {
        // pgpool only says it could not reach "a backend"; find out which one ourselves.
        if let Some(why) = unreachable(backends).await {
            bail!("{why}");
        }
    }
    bail!("{last}")
}

/// The first backend, primary first, that does not accept a TCP connection within a second.
async fn unreachable(backends: &[Backend]) -> Option<String> {
    // All at once under one second, so the diagnosis adds at most 1 s to the deadline.
    let mut set = tokio::task::JoinSet::new();
    for (i, b) in backends.iter().enumerate() {
        let (host, port) = (b.host.clone(), b.port);
        set.spawn(async move {
            let connect = tokio::net::TcpStream::connect((host.as_str(), port));
            let why = match tokio::time::timeout(Duration::from_secs(1), connect).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer within 1s".to_string()),
            };
            (i, why)
        });
    }
    let mut down: Vec<(usize, String)> = Vec::new();
    while let Some(Ok((i, why))) = set.join_next().await {
        down.extend(why.map(|w| (i, w)));
    }
    // The primary first: it is the one that blocks readiness.
    let (i, why) = down.into_iter().min_by_key(|(i, _)| *i)?;
    let b = &backends[i];
    let role = if b.role == crate::backends::Role::Primary {
        "primary"
    } else {
        "follower"
    };
    Some(format!(
        "the {role} {} ({}:{}) is unreachable: {why}",
        b.var, b.host, b.port
    ))
}

/// The server's own message when there is one (`failed to create a backend connection`), else
/// the kind of failure; tokio-postgres never puts the password in either.
fn probe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("pgpool answered: {}", db.message()),
        None => format!("pgpool did not answer a query ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{Role, parse};

    fn n(id: usize, status: &str, role: &str) -> Node {
        Node::at(id, status, role)
    }

    fn backends() -> Vec<Backend> {
        vec![
            parse("DATABASE_URL", Role::Primary, "postgres://u:p@h0:5000/d").unwrap(),
            parse("FOLLOWER_URL", Role::Follower, "postgres://u:p@h1:5001/d").unwrap(),
        ]
    }

    #[test]
    fn ready_means_exactly_one_primary_up() {
        let b = backends();
        assert!(verdict(&[n(0, "up", "primary"), n(1, "down", "standby")], &b).is_ok());
        assert!(verdict(&[n(0, "waiting", "primary"), n(1, "up", "standby")], &b).is_ok());
        let e = verdict(&[n(0, "down", "standby"), n(1, "up", "standby")], &b).unwrap_err();
        assert_eq!(e.to_string(), "the primary DATABASE_URL (h0:5000) is down");
        let e = verdict(&[n(0, "up", "standby"), n(1, "up", "standby")], &b).unwrap_err();
        assert!(
            e.to_string()
                .contains("is DATABASE_URL (h0:5000) the primary?"),
            "{e}"
        );
        let e = verdict(&[n(0, "up", "primary"), n(1, "up", "primary")], &b).unwrap_err();
        assert!(e.to_string().contains("2 primaries"));
    }
}
