//! `start-pgpool status`: run inside a dyno (`heroku run:inside`, `docker exec`), it finds the
//! running launcher's private runtime directory for `PGPOOL_PORT` and prints its nodes. It
//! needs no URL: the directory holds what it needs (readable only by the same user).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::backends::Backend;
use crate::ready::{self, Node};

/// The file in the runtime directory that names each node: `id<TAB>variable<TAB>host<TAB>port`.
pub const NODES_FILE: &str = "nodes";

pub fn nodes_file(backends: &[Backend]) -> String {
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i}\t{}\t{}\t{}\n", b.var, b.host, b.port))
        .collect()
}

/// The runtime directory of the live launcher serving `port` under `parent`.
pub fn find_runtime_dir(parent: &Path, port: u16) -> Result<PathBuf> {
    let prefix = format!("start-pgpool-{port}-");
    let entries = std::fs::read_dir(parent)
        .with_context(|| format!("PGPOOL_RUNTIME_DIR: cannot read {}", parent.display()))?;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let pid = std::fs::read_to_string(e.path().join("pgpool.pid")).unwrap_or_default();
        // pgpool writes the pid with a trailing NUL.
        if let Ok(pid) = pid
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .parse::<i32>()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        {
            return Ok(e.path());
        }
    }
    bail!(
        "PGPOOL_PORT: no running start-pgpool serves port {port} (looked in {}; set PGPOOL_RUNTIME_DIR or PGPOOL_PORT as the launcher had them)",
        parent.display()
    )
}

/// Reads back a pool_passwd line as `render::pool_passwd` wrote it (tests check the escaping
/// with it).
#[cfg(test)]
fn parse_pool_passwd(line: &str) -> Option<(String, String)> {
    let mut user = String::new();
    let mut chars = line.trim_end_matches('\n').chars();
    loop {
        match chars.next()? {
            '\\' => user.push(chars.next()?),
            ':' => break,
            c => user.push(c),
        }
    }
    let rest: String = chars.collect();
    let mut pw = String::new();
    let mut it = rest.strip_prefix("TEXT")?.chars();
    while let Some(c) = it.next() {
        pw.push(if c == '\\' { it.next()? } else { c });
    }
    Some((user, pw))
}

fn conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('\'').to_string())
    })
}

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
    let dir = find_runtime_dir(parent, port)?;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    let conf = read("pgpool.conf")?;
    // The names are in pgpool.conf; pool_passwd (the secret) is not needed: `local` is trusted.
    let user = conf_value(&conf, "sr_check_user").context("pgpool.conf names no user")?;
    let dbname = conf_value(&conf, "sr_check_database").context("pgpool.conf names no database")?;
    let names: Vec<(String, String)> = read(NODES_FILE)?
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f.get(1).unwrap_or(&"").to_string(),
                format!("{}:{}", f.get(2).unwrap_or(&""), f.get(3).unwrap_or(&"")),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let nodes = rt.block_on(async {
        // pgpool's own Unix socket in the private directory: no network, no password needed.
        let cfg = crate::monitor::socket_config(&dir, port, &user, &dbname);
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .context("pgpool did not answer")?;
        tokio::spawn(conn);
        ready::show_pool_nodes(&client)
            .await
            .context("SHOW POOL_NODES failed")
    })?;
    print!("{}", table(&nodes, &names));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::pool_passwd;
    use crate::secret::Secret;

    #[test]
    fn pool_passwd_reads_back() {
        let pw = "p@ss:w/rd'\"#% \\x";
        let line = pool_passwd("a:b", &Secret::new(pw));
        assert_eq!(
            parse_pool_passwd(line.expose()),
            Some(("a:b".into(), pw.into()))
        );
    }

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
