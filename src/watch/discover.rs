//! Discovery, once pgpool is ready: each follower's replication `application_name`.
//!
//! pgpool re-attaches a follower that came back (`auto_failback`) only when the primary's
//! `pg_stat_replication` shows it streaming, and it finds the follower's row there by
//! `backend_application_nameN` (docs/pgpool.md, "Follower names and auto_failback": without it,
//! a follower that blipped once stays detached until pgpool restarts). Providers do not tell the app those names, so we ask.
//!
//! How a row is matched to a follower, without talking TLS to the backends ourselves: through
//! pgpool, a session's reads go to one node, its load-balance node, which that session's
//! `SHOW POOL_NODES` marks (`load_balance_node = true`). So each probe session asks pgpool which
//! node it reads from, then asks that node for its own WAL receiver's `application_name`. The
//! name is used only if exactly one row on the primary carries it (a name two followers share
//! would let one follower's state re-attach the other). What this assumes of a provider: the
//! follower streams from the primary (no WAL-archive-only followers, no cascades), and the
//! user in the URLs has `pg_monitor` (else PostgreSQL hides the WAL receiver's settings and the
//! replication state from it, and pgpool could not use the names anyway).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::{Backend, Settings};
use crate::log::{self, event};
use crate::pgpool::sql::{rows, socket_config, with_session};
use crate::pgpool::{File, Files, Release, render};

/// Probe sessions per round: each lands on a random follower, so this many find every one of
/// up to 10 followers with high probability (a missing one is looked for again next round).
const PROBES_PER_ROUND: usize = 60;
/// Rounds while a follower's name is still unknown (it was down, or not streaming yet).
const ROUNDS: usize = 30;
const ROUND_PAUSE: Duration = Duration::from_secs(10);

/// The `application_name` a libpq conninfo string (`k=v k='v w'`, as `pg_stat_wal_receiver`
/// shows it) sets, if any.
pub fn conninfo_application_name(conninfo: &str) -> Option<String> {
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        chars.peek()?;
        let key: String = chars
            .by_ref()
            .take_while(|&c| c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    value.extend(chars.next());
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        if key == "application_name" {
            return Some(value);
        }
    }
}

/// The name a follower's WAL receiver connects with: `application_name` from its
/// `primary_conninfo`, else its `cluster_name`, else PostgreSQL's `walreceiver`.
pub fn walreceiver_name(conninfo: &str, cluster_name: &str) -> String {
    match conninfo_application_name(conninfo) {
        Some(n) if !n.is_empty() => n,
        _ if !cluster_name.is_empty() => cluster_name.to_string(),
        _ => "walreceiver".to_string(),
    }
}

/// Keeps only the names that name exactly one row of the primary's `pg_stat_replication`.
pub fn unique_on_primary(names: &[Option<String>], on_primary: &[String]) -> Vec<Option<String>> {
    names
        .iter()
        .map(|n| {
            n.clone()
                .filter(|n| on_primary.iter().filter(|p| *p == n).count() == 1)
        })
        .collect()
}

/// What one probe session saw.
#[derive(Debug)]
enum Probe {
    /// Node `0` served it, with this WAL receiver name.
    Follower(usize, String),
    /// The user may not read a follower's settings or the replication state (it lacks
    /// `pg_read_all_settings` or `pg_read_all_stats`, both part of `pg_monitor`).
    Hidden,
    /// The primary, a follower without a WAL receiver, or a session without a marked node.
    Nothing,
}

async fn probe(socket_dir: &Path, port: u16, primary: &Backend) -> Result<Probe> {
    let cfg = socket_config(socket_dir, port, &primary.user, &primary.dbname);
    with_session(cfg, |c| async move {
        let nodes = c.simple_query("SHOW POOL_NODES").await?;
        let lb = rows(&nodes)
            .find(|r| r.get("load_balance_node") == Some("true"))
            .and_then(|r| r.get("node_id")?.parse::<usize>().ok());
        let Some(lb) = lb.filter(|&n| n > 0) else {
            return Ok(Probe::Nothing);
        };
        let me = c
            .simple_query(
                // pgpool sends a SELECT to the primary when it calls a volatile function (such
                // as pg_is_in_recovery) or names a system catalog or view (such as
                // pg_stat_wal_receiver), so only stable functions here. primary_conninfo may
                // hold a password: only its application_name is kept, and it is never logged.
                "SELECT CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') \
                 THEN current_setting('primary_conninfo') END, \
                 current_setting('cluster_name'), \
                 (pg_has_role('pg_read_all_settings', 'USAGE') \
                  AND pg_has_role('pg_read_all_stats', 'USAGE'))::text",
            )
            .await?;
        let Some(r) = rows(&me).next() else {
            return Ok(Probe::Nothing);
        };
        Ok(match (r.get(0), r.get(2)) {
            (_, Some("false")) => Probe::Hidden,
            (Some(conninfo), _) if !conninfo.is_empty() => {
                Probe::Follower(lb, walreceiver_name(conninfo, r.get(1).unwrap_or("")))
            }
            _ => Probe::Nothing,
        })
    })
    .await
}

async fn primary_names(socket_dir: &Path, port: u16, primary: &Backend) -> Result<Vec<String>> {
    let cfg = socket_config(socket_dir, port, &primary.user, &primary.dbname);
    with_session(cfg, |c| async move {
        let msgs = c
            .simple_query("/*NO LOAD BALANCE*/ SELECT application_name FROM pg_stat_replication")
            .await?;
        Ok(rows(&msgs)
            .filter_map(|r| r.get(0).map(str::to_string))
            .collect())
    })
    .await
}

/// One round: the names found for every backend (index = node id; the primary's is `None`),
/// and whether the user was refused the WAL receiver's settings.
async fn round(
    socket_dir: &Path,
    port: u16,
    backends: &[Backend],
    known: &[Option<String>],
) -> (Vec<Option<String>>, bool) {
    let mut names = known.to_vec();
    let mut hidden = false;
    for _ in 0..PROBES_PER_ROUND {
        if names.iter().skip(1).all(Option::is_some) {
            break;
        }
        match tokio::time::timeout(
            Duration::from_secs(2),
            probe(socket_dir, port, &backends[0]),
        )
        .await
        {
            Ok(Ok(Probe::Follower(n, name))) if n < names.len() => names[n] = Some(name),
            Ok(Ok(Probe::Hidden)) => {
                hidden = true;
                break;
            }
            _ => {}
        }
    }
    let on_primary = match tokio::time::timeout(
        Duration::from_secs(2),
        primary_names(socket_dir, port, &backends[0]),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => return (known.to_vec(), hidden),
    };
    (unique_on_primary(&names, &on_primary), hidden)
}

/// What re-rendering pgpool.conf needs, kept from the launch.
pub struct Rerender {
    pub backends: Vec<Backend>,
    pub settings: Settings,
    pub files: Files,
    pub release: Release,
    pub template: Option<String>,
}

impl Rerender {
    /// Writes pgpool.conf with `names` (by rename: pgpool never reads half a file) and has
    /// pgpool reload it; `backend_application_name` is a reloadable setting.
    fn apply(&self, names: &[Option<String>], pgpool: Pid) -> Result<()> {
        let r = render::render_with_names(
            &self.backends,
            names,
            &self.settings,
            &self.files,
            self.release,
            self.template.as_deref(),
        )?;
        self.files.replace(File::PgpoolConf, &r.pgpool_conf)?;
        kill(pgpool, Signal::SIGHUP).context("asking pgpool to reload pgpool.conf")?;
        Ok(())
    }
}

/// Finds the followers' names, renders them into pgpool.conf and reloads pgpool; looks again
/// every few seconds while a follower is still unknown (it may have been down at start). Runs
/// beside the app until done or dropped. Says once when the user lacks `pg_monitor`.
pub async fn run(rr: Rerender, pgpool: Pid) {
    let port = rr.settings.port;
    let mut known: Vec<Option<String>> = vec![None; rr.backends.len()];
    for i in 0..ROUNDS {
        if i > 0 {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        let (names, hidden) = round(rr.files.dir(), port, &rr.backends, &known).await;
        if hidden {
            event!(
                log::events::REPLICATION_STATE_HIDDEN,
                source = rr.backends[0].var.as_str(),
                user = rr.backends[0].user.as_str(),
                grant = format!("GRANT pg_monitor TO {}", rr.backends[0].user).as_str()
            );
            return;
        }
        if names != known {
            for (b, n) in rr.backends.iter().zip(&names).skip(1) {
                if let Some(n) = n {
                    event!(
                        log::events::FOLLOWER_NAME,
                        source = b.var.as_str(),
                        application_name = n.as_str()
                    );
                }
            }
            if let Err(e) = rr.apply(&names, pgpool) {
                event!(log::events::FOLLOWER_NAMES_NOT_APPLIED, error = %e);
                return;
            }
            known = names;
        }
        if known.iter().skip(1).all(Option::is_some) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_name_is_read_from_conninfo() {
        let c = "user=app password=******** channel_binding=prefer dbname=replication \
                 host=127.0.0.1 port=5432 application_name=node1 fallback_application_name=walreceiver sslmode=require";
        assert_eq!(conninfo_application_name(c).as_deref(), Some("node1"));
        assert_eq!(
            conninfo_application_name("host=h application_name='a b\\'c' port=1").as_deref(),
            Some("a b'c")
        );
        assert_eq!(
            conninfo_application_name("host = h  application_name = x").as_deref(),
            Some("x")
        );
        assert_eq!(conninfo_application_name("host=h port=1"), None);
        assert_eq!(conninfo_application_name(""), None);
    }

    #[test]
    fn walreceiver_falls_back_like_postgres() {
        assert_eq!(walreceiver_name("application_name=n1", "c"), "n1");
        assert_eq!(walreceiver_name("host=h", "clu"), "clu");
        assert_eq!(walreceiver_name("host=h", ""), "walreceiver");
    }

    #[test]
    fn only_names_unique_on_the_primary_are_kept() {
        let names = vec![
            None,
            Some("a".to_string()),
            Some("walreceiver".to_string()),
            Some("gone".to_string()),
        ];
        let on_primary = ["a", "walreceiver", "walreceiver"].map(String::from);
        assert_eq!(
            unique_on_primary(&names, &on_primary),
            vec![None, Some("a".to_string()), None, None]
        );
    }
}
