//! Which pgpool: its release, and the family whose keys that release reads. Families differ in
//! their keys, and pgpool ignores a key it does not know without a word (docs/pgpool.md,
//! "Unknown keys are ignored silently"), so each family carries its own keys and the template
//! asks the family, never a version number. A release outside every family is refused.
//!
//! To add a family: a variant here; the compiler then walks you through `of`, `name` and
//! `keys`; then a golden file in tests/golden/ (tests/suite/families.rs says which).

use std::fmt;
use std::str::FromStr;

use anyhow::{Context as _, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 4.1 (Ubuntu 22.04's package).
    V4_1,
    /// 4.2: `backend_clustering_mode` and `follow_primary_command` replace the master words.
    V4_2,
    /// 4.3 (Debian 12 and Ubuntu 24.04 packages): adds `failover_on_backend_shutdown`.
    V4_3,
    /// 4.4 to 4.6: `unix_socket_directories` replaces `socket_dir` (renamed in 4.4.0; the old
    /// key is ignored and the socket lands in /tmp).
    V4_6,
    /// 4.7 (the buildpack's own build): `work_dir` replaces `logdir` (the old key still works
    /// but costs a WARNING from pgpool's main process at every start).
    V4_7,
}

/// The keys whose names or presence differ between families, as the template reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Keys {
    /// `backend_clustering_mode` exists; before it, `master_slave_mode` and its sub mode.
    pub backend_clustering_mode: bool,
    /// The key naming the directory of pgpool's Unix socket.
    pub socket_dir: &'static str,
    /// The key of the command run on the followers after a failover.
    pub follow_primary_command: &'static str,
    /// `failover_on_backend_shutdown` exists (without it pgpool always fails over on a
    /// server's shutdown notice).
    pub failover_on_backend_shutdown: bool,
    /// The key naming the directory of pgpool_status and its lock files.
    pub work_dir: &'static str,
    /// The key of the regexes whose queries always go to the primary (4.1 named it
    /// `black_query_pattern_list`).
    pub primary_routing_query_pattern_list: &'static str,
}

impl Family {
    /// Oldest first.
    pub const ALL: [Family; 5] = [
        Family::V4_1,
        Family::V4_2,
        Family::V4_3,
        Family::V4_6,
        Family::V4_7,
    ];

    /// The family whose keys `v` reads, if any.
    pub fn of(v: Version) -> Option<Family> {
        match (v.major, v.minor) {
            (4, 1) => Some(Family::V4_1),
            (4, 2) => Some(Family::V4_2),
            (4, 3) => Some(Family::V4_3),
            (4, 4..=6) => Some(Family::V4_6),
            (4, 7) => Some(Family::V4_7),
            _ => None,
        }
    }

    /// The release that names the family.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4_1 => "4.1",
            Family::V4_2 => "4.2",
            Family::V4_3 => "4.3",
            Family::V4_6 => "4.6",
            Family::V4_7 => "4.7",
        }
    }

    pub fn keys(self) -> Keys {
        let v4_7 = Keys {
            backend_clustering_mode: true,
            socket_dir: "unix_socket_directories",
            follow_primary_command: "follow_primary_command",
            failover_on_backend_shutdown: true,
            work_dir: "work_dir",
            primary_routing_query_pattern_list: "primary_routing_query_pattern_list",
        };
        let v4_6 = Keys {
            work_dir: "logdir",
            ..v4_7
        };
        let v4_3 = Keys {
            socket_dir: "socket_dir",
            ..v4_6
        };
        let v4_2 = Keys {
            failover_on_backend_shutdown: false,
            ..v4_3
        };
        match self {
            Family::V4_1 => Keys {
                backend_clustering_mode: false,
                follow_primary_command: "follow_master_command",
                primary_routing_query_pattern_list: "black_query_pattern_list",
                ..v4_2
            },
            Family::V4_2 => v4_2,
            Family::V4_3 => v4_3,
            Family::V4_6 => v4_6,
            Family::V4_7 => v4_7,
        }
    }

    /// pcp answers health-check stats (`H`: every node's status and role from pgpool's shared
    /// memory), which the monitor's events come from: added in 4.2.
    pub fn pcp_node_states(self) -> bool {
        self != Family::V4_1
    }

    /// The releases some family covers, for messages: `4.1 to 4.6`.
    pub fn known() -> String {
        let all = Family::ALL;
        format!("{} to {}", all[0], all[all.len() - 1])
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pgpool release, from `pgpool --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// `40305` for 4.3.5: what an expert's own template may compare against.
    pub fn number(self) -> u32 {
        self.major * 10000 + self.minor * 100 + self.patch
    }

    pub fn family(self) -> Option<Family> {
        Family::of(self)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = anyhow::Error;

    /// Takes `4.3.5` or the whole `pgpool-II version 4.3.5 (tamahomeboshi)` line.
    fn from_str(s: &str) -> Result<Version> {
        let word = s
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .context("no version number")?;
        let mut nums = word
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(str::parse::<u32>);
        let mut next = || nums.next().transpose().ok().flatten();
        let (major, minor) = (next().context("no major")?, next().context("no minor")?);
        Ok(Version {
            major,
            minor,
            patch: next().unwrap_or(0),
        })
    }
}

/// A release start-pgpool knows: its version, the family whose keys it reads, and what our
/// patches give it that the launcher relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: Version,
    pub family: Family,
    /// It holds a TLS mode per server (patch 0007).
    pub backend_tls: bool,
    /// In logical replication mode it keeps the writes off the copies while the primary is
    /// down (patch 0008).
    pub logical_primary_kept: bool,
    /// Its checks keep their connections, and pcp's node info answers from them with the
    /// select count and the checks' logins (patch 0011): the launcher watches through pcp alone.
    pub checks_keep_connections: bool,
}

/// The lines patches 0007, 0008 and 0011 add to `pgpool --version`.
pub const BACKEND_TLS_LINE: &str = "backend_sslmode: yes";
pub const LOGICAL_PRIMARY_LINE: &str = "logical_primary_kept: yes";
pub const CHECKS_KEEP_LINE: &str = "checks_keep_connections: yes";

impl Release {
    pub fn new(version: Version) -> Option<Release> {
        Some(Release {
            version,
            family: Family::of(version)?,
            backend_tls: false,
            logical_primary_kept: false,
            checks_keep_connections: false,
        })
    }
}

impl FromStr for Release {
    type Err = anyhow::Error;

    /// `4.6.1`, or a `pgpool --version` line, of a release some family covers.
    fn from_str(s: &str) -> Result<Release> {
        let v: Version = s.parse()?;
        Release::new(v).with_context(|| format!("pgpool {v} is of no known family"))
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.version.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_the_version_line() {
        let v: Version = "pgpool-II version 4.3.5 (tamahomeboshi)".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.number()), (4, 3, 5, 40305));
        assert_eq!("4.6".parse::<Version>().unwrap().number(), 40600);
        assert!("pgpool-II version".parse::<Version>().is_err());
        assert!("pgpool-II version 4".parse::<Version>().is_err());
        let v: Version = "pgpool-II version 4.6.1 (chirikoboshi)".parse().unwrap();
        assert_eq!(v.to_string(), "4.6.1");
        assert_eq!("4.4.0-1.pgdg+1".parse::<Version>().unwrap().number(), 40400);
    }

    #[test]
    fn releases_map_to_their_families() {
        let family = |s: &str| s.parse::<Version>().unwrap().family();
        for (v, f) in [
            ("4.1.4", Some(Family::V4_1)),
            ("4.2.0", Some(Family::V4_2)),
            ("4.3.5", Some(Family::V4_3)),
            ("4.4.0", Some(Family::V4_6)),
            ("4.5.7", Some(Family::V4_6)),
            ("4.6.1", Some(Family::V4_6)),
            ("4.0.9", None),
            ("4.7.2", Some(Family::V4_7)),
            ("4.8.0", None),
            ("3.7.2", None),
            ("5.1.0", None),
        ] {
            assert_eq!(family(v), f, "{v}");
        }
        assert_eq!(Family::V4_6.to_string(), "4.6");
        assert_eq!(Family::known(), "4.1 to 4.7");
        for f in Family::ALL {
            let v: Version = f.name().parse().unwrap();
            assert_eq!(
                Family::of(v),
                Some(f),
                "a family's name is one of its releases"
            );
        }
    }

    #[test]
    fn keys_follow_the_renames() {
        let k = |f: Family| f.keys();
        assert!(!k(Family::V4_1).backend_clustering_mode);
        assert_eq!(
            k(Family::V4_1).follow_primary_command,
            "follow_master_command"
        );
        assert!(k(Family::V4_2).backend_clustering_mode);
        assert!(!k(Family::V4_2).failover_on_backend_shutdown);
        assert!(k(Family::V4_3).failover_on_backend_shutdown);
        assert_eq!(k(Family::V4_3).socket_dir, "socket_dir");
        assert_eq!(k(Family::V4_6).socket_dir, "unix_socket_directories");
        assert_eq!(k(Family::V4_6).work_dir, "logdir");
        assert_eq!(k(Family::V4_7).work_dir, "work_dir");
    }
}
