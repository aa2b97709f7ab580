//! A node as pgpool reports it, whichever way the launcher asked (sql.rs's `SHOW POOL_NODES`,
//! pcp.rs's node info and health-check stats).

/// One node as pgpool reports it: a row of `SHOW POOL_NODES`, or pcp's node info (our build).
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
    /// What the server itself says: `up`/`down`, and `primary`/`standby`/`unknown`. Stock
    /// pgpool asks the server afresh for each row; ours answers from its checks while the node
    /// is up (patch 0011). `None` before pgpool 4.3.
    pub pg_status: Option<String>,
    pub pg_role: Option<String>,
    /// Logins pgpool's health check and streaming check have made to this server since pgpool
    /// started: only pcp's node info from our build says (patch 0011).
    pub check_logins: Option<u64>,
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
            check_logins: None,
        }
    }

    /// `waiting` means up but not yet used by any session.
    pub fn is_up(&self) -> bool {
        status_is_up(&self.status)
    }

    /// The server itself answered, as `role`.
    pub fn answers_as(&self, role: &str) -> bool {
        self.pg_status.as_deref() == Some("up") && self.pg_role.as_deref() == Some(role)
    }
}

/// `waiting` means up but not yet used by any session.
pub fn status_is_up(status: &str) -> bool {
    matches!(status, "up" | "waiting")
}
