//! `start-pgpool status`: run inside a dyno (`heroku run:inside`, `docker exec`), it finds the
//! running launcher's private runtime directory for `PGPOOL_PORT` and prints its nodes. It
//! needs no URL: the directory holds what it needs (readable only by the same user).
//!
//! It asks `SHOW POOL_NODES`, which waits on every server; when that does not answer within
//! [`SQL_WAIT`] (a node hangs or is cut off), each node's status and role come from pcp
//! instead, which pgpool answers from its shared memory, and the counters are shown as `-`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::pgpool::node::Node;
use crate::pgpool::pcp::{Credentials, NodeState, Pcp};
use crate::pgpool::runtime_dir;
use crate::pgpool::sql;

/// How long `SHOW POOL_NODES` may take before pcp is asked instead: it answers in well under a
/// second when every server does.
const SQL_WAIT: Duration = Duration::from_secs(3);
const PCP_WAIT: Duration = Duration::from_secs(5);

/// One row of the table: what `SHOW POOL_NODES` says, or pcp without the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: usize,
    pub role: String,
    pub status: String,
    pub up: bool,
    /// `lag_bytes`, `selects`; `None` when only pcp answered.
    pub counters: Option<(u64, u64)>,
}

impl From<&Node> for Row {
    fn from(n: &Node) -> Row {
        Row {
            id: n.id,
            role: n.role.clone(),
            status: n.status.clone(),
            up: n.is_up(),
            counters: Some((n.lag_bytes, n.select_count)),
        }
    }
}

impl From<&NodeState> for Row {
    fn from(n: &NodeState) -> Row {
        Row {
            id: n.id,
            role: n.role.clone(),
            status: n.status.clone(),
            up: n.is_up(),
            counters: None,
        }
    }
}

/// The table `status` prints.
pub fn table(nodes: &[Row], names: &[(String, String)]) -> String {
    let mut rows = vec![[
        "node".to_string(),
        "source".into(),
        "address".into(),
        "role".into(),
        "status".into(),
        "lag_bytes".into(),
        "selects".into(),
    ]];
    for n in nodes {
        let (var, addr) = names.get(n.id).cloned().unwrap_or_default();
        let (lag, selects) = match n.counters {
            Some((l, s)) => (l.to_string(), s.to_string()),
            None => ("-".into(), "-".into()),
        };
        rows.push([
            n.id.to_string(),
            var,
            addr,
            n.role.clone(),
            if n.up { "up".into() } else { n.status.clone() },
            lag,
            selects,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}

pub fn run(parent: &Path, port: u16) -> Result<()> {
    let files = runtime_dir::find(parent, port)?;
    let record = files.read_status()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // pgpool's own Unix socket in the private directory: no network, no password needed.
    let cfg = sql::socket_config(files.dir(), port, &record.user, &record.dbname);
    let asked = rt.block_on(async {
        let show = sql::with_session(cfg, |c| async move { sql::show_pool_nodes(&c).await });
        tokio::time::timeout(SQL_WAIT, show).await
    });
    let why = match asked {
        Ok(Ok(nodes)) => {
            let rows: Vec<Row> = nodes.iter().map(Row::from).collect();
            print!("{}", table(&rows, &record.nodes));
            return Ok(());
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("no answer within {} s", SQL_WAIT.as_secs()),
    };
    let sql_failed = || format!("pgpool did not answer SHOW POOL_NODES ({why})");
    let creds = Credentials::from_pcp_conf(&files.read_pcp_conf().with_context(sql_failed)?)
        .with_context(sql_failed)?;
    let pcp = Pcp::at(files.pcp_socket(), creds);
    let states = rt
        .block_on(pcp.node_states(record.nodes.len(), PCP_WAIT))
        .with_context(|| format!("{}, nor pcp", sql_failed()))?;
    let rows: Vec<Row> = states.iter().map(Row::from).collect();
    print!("{}", table(&rows, &record.nodes));
    eprintln!("start-pgpool: {}: status and role from pcp", sql_failed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let nodes = [Node {
            select_count: 12,
            ..Node::at(0, "waiting", "primary")
        }];
        let rows: Vec<Row> = nodes.iter().map(Row::from).collect();
        let t = table(&rows, &[("DATABASE_URL".into(), "h:5432".into())]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "node  source        address  role     status  lag_bytes  selects"
        );
        assert_eq!(
            lines[1],
            "0     DATABASE_URL  h:5432   primary  up      0          12"
        );
    }

    #[test]
    fn pcp_rows_have_no_counters() {
        let state = NodeState {
            id: 1,
            status: "down".into(),
            role: "standby".into(),
        };
        let t = table(
            &[Row::from(&state)],
            &[
                ("DATABASE_URL".into(), "h:5432".into()),
                ("FOLLOWER_URL".into(), "f:5432".into()),
            ],
        );
        assert_eq!(
            t.lines().nth(1).unwrap(),
            "1     FOLLOWER_URL  f:5432   standby  down    -          -"
        );
    }
}
