//! Every `at=` name the launcher logs, each defined once with its level and what it means.
//! Operators grep and alert on these names: a call site logs one of these through
//! [`crate::log::event!`], which takes the level from here, so the two cannot disagree. README's
//! "Log events" table lists the same names and levels in the same order (a unit test below
//! compares them).

/// The level an event is logged at (`level=` in the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    /// At the level of the pgpool line it relays (see `pgpool/relay.rs`).
    Relayed,
}

impl Level {
    /// As README's table writes it: the `level=` word, or `relayed`.
    pub const fn word(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Relayed => "relayed",
        }
    }
}

/// One log event: its `at=` name, its level, and a one-line meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub level: Level,
    pub doc: &'static str,
}

/// One line per event: `CONST "at-name" Level "meaning";`, in README's order.
macro_rules! catalogue {
    ($($id:ident $name:literal $level:ident $doc:literal;)*) => {
        $(
            #[doc = $doc]
            pub const $id: Event = Event { name: $name, level: Level::$level, doc: $doc };
        )*
        /// Every event, in README's order.
        pub const ALL: &[Event] = &[$($id),*];
    };
}

catalogue! {
    NOT_READY "not-ready" Debug "pgpool does not answer yet; `why=` says what the last try saw";
    PGPOOL_READY "pgpool-ready" Info "pgpool answers on `port=`: `nodes=` known, `up=` of them up, `ms=` after start";
    FOLLOWER_DOWN "follower-down" Warn "a follower (`source=`) was down when pgpool became ready";
    STOPPED_BEFORE_READY "stopped-before-ready" Info "a stop `signal=` came before pgpool was ready; pgpool is stopped, the app never started";
    CONNECTION_BUDGET "connection-budget" Info "connections this pgpool may hold on each node (`per_node=`), what it holds there idle (`idle_per_node=`), and the primary's `max_connections=`";
    CONNECTION_BUDGET_HIGH "connection-budget-high" Warn "`per_node=` is more than `share=` of the primary's `max_connections=` (`idle_per_node=` as above)";
    FOLLOWER_NAME "follower-name" Info "a follower's `application_name=`, found on the primary and given to pgpool";
    FOLLOWER_NAMES_NOT_APPLIED "follower-names-not-applied" Warn "the followers' names could not be given to pgpool (`error=`)";
    REPLICATION_STATE_HIDDEN "replication-state-hidden" Warn "the primary hides its replication state from `user=`; `grant=` is the fix";
    METRICS "metrics" Info "one node's counters (`sample#pgpool.node.*`) and the logins made to it since the last line by pgpool's checks and by the launcher's sessions (`count#pgpool.node.*`), every `PGPOOL_METRICS_INTERVAL`";
    NODE_DOWN "node-down" Warn "pgpool detached node `node=` (`source=`)";
    NODE_UP "node-up" Info "node `node=` (`source=`) is back in pgpool";
    NODE_ROLE "node-role" Warn "node `node=` (`source=`) changed `role=`";
    SERVER_TLS_REFUSED "server-tls-refused" Warn "a node that went down no longer gives the TLS its URL asks for: `why=`";
    SERVER_TLS_DETACHED "server-tls-detached" Warn "a follower (`source=`, `node=`) whose server no longer gives the TLS its URL asks for was detached";
    SERVER_TLS_DETACHED_FAILED "server-tls-detached-failed" Warn "detaching a follower (`source=`, `node=`) whose server no longer gives the TLS its URL asks for failed (`error=`)";
    FOLLOWER_STALE_DETACHED "follower-stale-detached" Warn "repair: a follower (`source=`, `node=`) still streaming from a former primary was detached";
    FOLLOWER_STALE_DETACHED_FAILED "follower-stale-detached-failed" Warn "repair: detaching a stale follower (`source=`, `node=`) failed (`error=`)";
    PRIMARY_ADOPTED "primary-adopted" Warn "repair: a server that answers as the primary (`source=`, `node=`) was promoted in pgpool";
    PRIMARY_ADOPTED_FAILED "primary-adopted-failed" Warn "repair: adopting a new primary (`source=`, `node=`) failed (`error=`)";
    PRIMARY_REATTACHED "primary-reattached" Warn "repair: the primary (`source=`, `node=`) answers again and was attached back";
    PRIMARY_REATTACHED_FAILED "primary-reattached-failed" Warn "repair: attaching the primary (`source=`, `node=`) back failed (`error=`)";
    COPY_REATTACHED "copy-reattached" Warn "repair (logical mode): a copy (`source=`, `node=`) that answers again was attached back";
    COPY_REATTACHED_FAILED "copy-reattached-failed" Warn "repair (logical mode): attaching a copy (`source=`, `node=`) back failed (`error=`)";
    PGPOOL_CHILD_STUCK "pgpool-child-stuck" Warn "a pgpool child stuck for `after_s=` was SIGKILLed (`pid=`, `shape=`, `killed=`; on a detached node also `blocked=`, `source=`, `node=`)";
    STUCK_WATCHDOG_BLIND "stuck-watchdog-blind" Warn "the system hides pgpool's children's system calls: the stuck-child watchdog sees nothing (`reason=`)";
    STUCK_WATCHDOG_UNRESOLVED "stuck-watchdog-unresolved" Debug "a node's host did not resolve at start: the watchdog cannot match its sockets";
    FORWARD "forward" Debug "a `signal=` forwarded to the app";
    FORWARD_FAILED "forward-failed" Warn "a `signal=` could not be forwarded to the app (`error=`)";
    APP_EXITED "app-exited" Info "the app exited with `status=`";
    APP_STOP_TIMEOUT "app-stop-timeout" Warn "the app outlived its `grace_s=`; its group is SIGKILLed";
    APP_KILL_FAILED "app-kill-failed" Warn "SIGKILL to the app's group failed (`error=`)";
    PGPOOL_EXITED_WHILE_STOPPING "pgpool-exited-while-stopping" Info "pgpool exited (`status=`) after a stop signal, before the app";
    PGPOOL_STOP_TIMEOUT "pgpool-stop-timeout" Warn "pgpool outlived `timeout_s=` after SIGINT; its group is SIGKILLed";
    PGPOOL_CHILDREN_LEFT "pgpool-children-left" Warn "pgpool's main process is gone but children of group `pgid=` are not; SIGKILLed";
    PGPOOL_GROUP_NOT_EMPTY "pgpool-group-not-empty" Warn "processes of pgpool's group `pgid=` outlived the SIGKILL";
    PGPOOL_SIGNAL_FAILED "pgpool-signal-failed" Warn "a signal (`signal=`) to pgpool or its group failed (`error=`)";
    PGPOOL_STOPPED "pgpool-stopped" Info "pgpool and its whole group are gone";
    PGPOOL_GUARD_SKIPPED "pgpool-guard-skipped" Warn "the guard that cleans up after a killed launcher could not start";
    PGPOOL_GUARD_STILL_RUNNING "pgpool-guard-still-running" Warn "the guard (`pid=`) did not exit when the launcher did";
    PGPOOL "pgpool" Relayed "one line of pgpool's own output (`line=`), password scrubbed, at its severity";
    POOL_NODES "pool-nodes" Debug "every look at the nodes (pcp's node info, or `SHOW POOL_NODES`), as one `nodes=` field";
    PCP_NODES_UNANSWERED "pcp-nodes-unanswered" Debug "pcp did not give the nodes' states this second (`error=`)";
    SERVER_TLS "server-tls" Debug "a server gives the TLS its URL asks for (`sslmode=`, `ms=`)";
    SERVER_TLS_UNCHECKED "server-tls-unchecked" Debug "a server's TLS could not be checked before start: `why=`";
}

/// Logs an event at its catalogued level: `event!(events::NODE_DOWN, source = s, node = id)`;
/// the name becomes `at=`, the fields follow in tracing's syntax. [`Level::Relayed`] events
/// are logged by `log::pgpool_line`, which knows the relayed level.
macro_rules! event {
    ($event:expr $(, $($field:tt)*)?) => {{
        let e: $crate::log::events::Event = $event;
        match e.level {
            $crate::log::events::Level::Error => {
                ::tracing::error!(message = e.name $(, $($field)*)?)
            }
            $crate::log::events::Level::Warn => {
                ::tracing::warn!(message = e.name $(, $($field)*)?)
            }
            $crate::log::events::Level::Info => {
                ::tracing::info!(message = e.name $(, $($field)*)?)
            }
            $crate::log::events::Level::Debug | $crate::log::events::Level::Relayed => {
                ::tracing::debug!(message = e.name $(, $($field)*)?)
            }
        }
    }};
}
pub(crate) use event;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lowercase_words() {
        for (i, e) in ALL.iter().enumerate() {
            assert!(
                e.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.name
            );
            assert!(!e.doc.is_empty(), "{}", e.name);
            assert!(
                ALL[..i].iter().all(|o| o.name != e.name),
                "{} twice",
                e.name
            );
        }
    }

    /// README's "Log events" table: `| `name` | level | meaning |` rows, in order, each as
    /// defined here.
    #[test]
    fn readme_lists_every_event_as_defined() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n### Log events\n")
            .nth(1)
            .expect("README has a \"### Log events\" section");
        let rows: Vec<(String, String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let cell = |i: usize| cells.get(i).copied().unwrap_or_default().to_string();
                (cell(1).trim_matches('`').to_string(), cell(2), cell(3))
            })
            .collect();
        let want: Vec<(String, String, String)> = ALL
            .iter()
            .map(|e| {
                let (name, level) = (e.name.to_string(), e.level.word().to_string());
                (name, level, e.doc.to_string())
            })
            .collect();
        assert_eq!(rows, want);
    }
}
