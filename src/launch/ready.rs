//! Readiness: pgpool counts as ready when a real query through it with the app's credentials
//! succeeds and `SHOW POOL_NODES` reports exactly one primary that is up. The port opens long
//! before that, even when the primary is unreachable (docs/pgpool.md, "Readiness"), so a TCP
//! check proves nothing.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use crate::config::Backend;
use crate::log::{self, event};
use crate::pgpool::node::Node;
use crate::pgpool::sql;
use crate::servers::reach;

/// Runs `SHOW POOL_NODES` through pgpool as the app would connect.
async fn pool_nodes(port: u16, primary: &Backend) -> Result<Vec<Node>> {
    sql::with_session(sql::tcp_config(port, primary), |c| async move {
        sql::show_pool_nodes(&c).await
    })
    .await
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

/// Every follower must be a standby: a server that is not in recovery (a logical copy, or a
/// second primary) would be taken for the primary by pgpool, which finds the primary by asking
/// `pg_is_in_recovery()` (measured: it sent the writes to a logical copy from the start). The
/// check reads `pg_role`, pgpool's own fresh answer from each server, so it needs pgpool 4.3 or
/// later; before that it cannot be told and is skipped.
pub fn followers_in_recovery(nodes: &[Node], backends: &[Backend]) -> Result<()> {
    for n in nodes.iter().filter(|n| n.id > 0) {
        if n.pg_role.as_deref() == Some("primary")
            && let Some(b) = backends.get(n.id)
        {
            bail!(
                "{}: is not in recovery, so it is no streaming follower but a logical copy or a second primary, which pgpool would take for the primary; for logical copies set PGPOOL_MODE=logical, else remove it from PGPOOL_URLS",
                b.var
            );
        }
    }
    Ok(())
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
                let db = e.downcast_ref::<tokio_postgres::Error>();
                if db.is_some_and(|e| e.as_db_error().is_some()) {
                    answered
                } else {
                    refused
                }
            }
        };
        event!(log::events::NOT_READY, why = last.as_str());
        tokio::time::sleep(pause).await;
    }
    if last.starts_with("pgpool") {
        // pgpool only says it could not reach "a backend"; find out which one ourselves.
        if let Some(why) = reach::unreachable(backends).await {
            bail!("{why}");
        }
    }
    bail!("{last}")
}

/// The server's own message when there is one (`failed to create a backend connection`), else
/// the kind of failure; tokio-postgres never puts the password in either.
fn probe_error(e: &anyhow::Error) -> String {
    match e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
    {
        Some(db) => format!("pgpool answered: {}", db.message()),
        None => format!("pgpool did not answer a query ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::config::backends::parse;

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
    fn a_follower_out_of_recovery_is_refused_by_name() {
        let mut nodes = vec![
            n(0, "up", "standby"),
            n(1, "up", "standby"),
            n(2, "up", "primary"),
        ];
        for (node, role) in nodes.iter_mut().zip(["primary", "standby", "primary"]) {
            node.pg_role = Some(role.to_string());
        }
        let e = followers_in_recovery(&nodes, &backends_3())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("COPY_URL: is not in recovery"), "{e}");
        assert!(e.contains("PGPOOL_MODE=logical"), "{e}");
        nodes[2].pg_role = Some("standby".into());
        followers_in_recovery(&nodes, &backends_3()).unwrap();
        // Before 4.3 pgpool does not say.
        nodes[2].pg_role = None;
        followers_in_recovery(&nodes, &backends_3()).unwrap();
    }

    fn backends_3() -> Vec<Backend> {
        vec![
            parse("DATABASE_URL", Role::Primary, "postgres://u:p@h0:5000/d").unwrap(),
            parse("FOLLOWER_URL", Role::Follower, "postgres://u:p@h1:5001/d").unwrap(),
            parse("COPY_URL", Role::Follower, "postgres://u:p@h2:5002/d").unwrap(),
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
