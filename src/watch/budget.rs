//! The connection budget, logged once at start: how many connections this pgpool may hold on
//! each node, against the primary's `max_connections`.

use crate::config::{Backend, Settings};
use crate::pgpool::sql;

/// Backend connections this pgpool may hold on each node: every child keeps one to every node,
/// the primary included (docs/pgpool.md, "Connections per node").
pub fn connections_per_node(settings: &Settings) -> u32 {
    settings.num_init_children * settings.max_pool
}

/// Logs the budget, and warns when it is more than the allowed share of the primary's
/// `max_connections` (SHOW goes to the primary).
pub async fn log(port: u16, backends: &[Backend], settings: &Settings) {
    let per_node = connections_per_node(settings);
    let max = sql::with_session(sql::tcp_config(port, &backends[0]), |c| async move {
        sql::first_value(&c, "SHOW max_connections").await
    })
    .await
    .ok()
    .flatten()
    .and_then(|v| v.parse::<u32>().ok());
    match max {
        Some(max) if f64::from(per_node) > settings.max_connections_share * f64::from(max) => {
            tracing::warn!(
                per_node,
                max_connections = max,
                share = settings.max_connections_share,
                "connection-budget-high"
            )
        }
        Some(max) => tracing::info!(per_node, max_connections = max, "connection-budget"),
        None => tracing::info!(per_node, "connection-budget"),
    }
}
