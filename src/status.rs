//! `start-pgpool status`: run inside a dyno (`heroku run:inside`, `docker exec`), it finds the
//! running launcher's private runtime directory for `PGPOOL_PORT` and prints its nodes. It
//! needs no URL: the directory holds what it needs (readable only by the same user).

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::pgpool::runtime_dir;
use crate::pgpool::sql::{self, Node};

/// The table `status` prints.
pub fn table(nodes: &[Node], names: &[(String, String)]) -> String {
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
        rows.push([
            n.id.to_string(),
            var,
            addr,
            n.role.clone(),
            if n.is_up() {
                "up".into()
            } else {
                n.status.clone()
            },
            n.lag_bytes.to_string(),
            n.select_count.to_string(),
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
    let nodes = rt
        .block_on(sql::with_session(cfg, |c| async move {
            sql::show_pool_nodes(&c).await
        }))
        .context("pgpool did not answer SHOW POOL_NODES")?;
    print!("{}", table(&nodes, &record.nodes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let nodes = vec![Node {
            select_count: 12,
            ..Node::at(0, "waiting", "primary")
        }];
        let t = table(&nodes, &[("DATABASE_URL".into(), "h:5432".into())]);
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
}
