//! Where reads go, through the real binary on the shared cluster: SQL comments never stop load
//! balancing, pgpool's `/*NO LOAD BALANCE*/` hint still sends a read to the primary, and
//! `PGPOOL_PRIMARY_TABLES` pins the reads that name those tables. Each query kind runs on new
//! sessions, in the simple protocol (psql) and the extended one with prepared statements
//! (psycopg 3), and the test counts which server answered.

use std::collections::BTreeMap;

use crate::support::cluster;
use crate::support::launcher::*;

/// Sessions per query kind and protocol: enough that a kind served by one follower only
/// would show (2 in 2^16 runs).
const SESSIONS: usize = 16;

/// Each query kind, and whether its reads must go to the primary.
const KINDS: &[(&str, &str, bool)] = &[
    (
        "plain",
        "select inet_server_port() from items limit 1",
        false,
    ),
    (
        "leading block comment",
        "/*application:Shop,controller:orders,action:index*/ select inet_server_port() from items limit 1",
        false,
    ),
    (
        "leading line comment",
        "-- tagged\nselect inet_server_port() from items limit 1",
        false,
    ),
    (
        "trailing comment",
        "select inet_server_port() from items limit 1 /*controller:orders*/",
        false,
    ),
    (
        "hint",
        "/*NO LOAD BALANCE*/ select inet_server_port() from items limit 1",
        true,
    ),
    (
        "a primary table",
        "select inet_server_port() from routing_carts right join (select 1) x on true",
        true,
    ),
    (
        "a primary table, schema-qualified",
        "select inet_server_port() from public.routing_sessions right join (select 1) x on true",
        true,
    ),
    (
        "a primary table, quoted, after a comment",
        "/*app:Shop*/ select inet_server_port() from \"routing_carts\" right join (select 1) x on true",
        true,
    ),
    (
        "a name that only starts like one",
        "select inet_server_port(), 1 as routing_cartsx from items limit 1",
        false,
    ),
];

/// psql, then psycopg 3 with `prepare=True`, each query kind on `SESSIONS` new sessions;
/// prints `KIND<TAB>PROTOCOL<TAB>PORT` per session.
const APP: &str = r#"
set -e
while IFS= read -r line; do
  kind=${line%%	*}; sql=$(printf '%b' "${line#*	}")
  for i in $(seq "$SESSIONS"); do
    printf '%s\tsimple\t%s\n' "$kind" "$("$PSQL" "$DATABASE_URL" -XAtc "$sql" | head -n 1 | cut -d'|' -f1)"
  done
done < "$KINDS_FILE"
/usr/bin/python3 - <<'PY'
import os, psycopg
for line in open(os.environ["KINDS_FILE"]):
    kind, sql = line.rstrip("\n").split("\t", 1)
    sql = sql.encode().decode("unicode_escape")
    for _ in range(int(os.environ["SESSIONS"])):
        with psycopg.connect(os.environ["DATABASE_URL"]) as c:
            port = c.execute(sql, prepare=True).fetchone()[0]
            print(f"{kind}\tprepared\t{port}", flush=True)
PY
"#;

#[test]
fn comments_spread_and_the_hint_and_primary_tables_go_to_the_primary() {
    let c = cluster::shared();
    for t in ["routing_carts", "routing_sessions"] {
        c.psql(
            0,
            &format!("create table if not exists {t}(id int); grant select on {t} to app"),
        );
    }
    // Replayed on both followers before anything reads them there.
    for n in [1, 2] {
        c.wait_for(
            n,
            "select count(*) from pg_class where relname in ('routing_carts', 'routing_sessions')",
            "2",
            std::time::Duration::from_secs(30),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let kinds_file = dir.path().join("kinds");
    let text: String = KINDS
        .iter()
        .map(|(k, sql, _)| format!("{k}\t{}\n", sql.replace('\n', "\\n")))
        .collect();
    std::fs::write(&kinds_file, text).unwrap();
    let mut l = Launcher::new(c);
    l.set(
        "PGPOOL_PRIMARY_TABLES",
        "routing_carts,public.routing_sessions",
    )
    .set("PSQL", c.pg_bin().join("psql"))
    .set("KINDS_FILE", &kinds_file)
    .set("SESSIONS", SESSIONS.to_string());
    let out = l.run_sh(APP);
    assert!(out.status.success(), "{}", show(&out));
    let primary = c.port(0).to_string();
    let followers = [c.port(1).to_string(), c.port(2).to_string()];
    // (kind, protocol) -> port -> sessions
    let mut seen: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for line in stdout(&out).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [kind, protocol, port] = f[..] {
            *seen
                .entry((kind.into(), protocol.into()))
                .or_default()
                .entry(port.into())
                .or_default() += 1;
        }
    }
    let mut report = Vec::new();
    let mut bad = Vec::new();
    for (kind, _, to_primary) in KINDS {
        for protocol in ["simple", "prepared"] {
            let ports = seen
                .get(&(kind.to_string(), protocol.to_string()))
                .cloned()
                .unwrap_or_default();
            let count = |p: &str| ports.get(p).copied().unwrap_or(0);
            let total: usize = ports.values().sum();
            report.push(format!(
                "FIGURES routing {kind:?} {protocol}: primary={} follower1={} follower2={}",
                count(&primary),
                count(&followers[0]),
                count(&followers[1])
            ));
            let ok = total == SESSIONS
                && if *to_primary {
                    count(&primary) == SESSIONS
                } else {
                    count(&primary) == 0 && followers.iter().all(|f| count(f) > 0)
                };
            if !ok {
                bad.push(format!("{kind:?} {protocol}: {ports:?}"));
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        bad.is_empty(),
        "wrong routing (primary {primary}, followers {followers:?}):\n{}\n{}",
        bad.join("\n"),
        show(&out)
    );
}
