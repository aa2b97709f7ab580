//! Hostile input through the real binary: every bad configuration is refused with one line
//! naming the variable and the part, leaks no password, and leaves nothing running or on disk.
//! Then the other side: awkward but legal input works end to end against the real cluster,
//! and the password only ever lands in pool_passwd and the app's DATABASE_URL.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::api::events;
use crate::support::cluster;
use crate::support::conf_lexer;
use crate::support::l2met::at;
use crate::support::launcher::*;
use crate::support::proc::{
    cmdline, comm, descendants, processes_mentioning, socket_inodes, tcp_listeners,
};

/// The password of the fake URLs: every character that needs escaping somewhere.
const PW: &str = "Sekr3t:pw'\"#% \\@/x";
const PW_ENC: &str = "Sekr3t%3Apw%27%22%23%25%20%5C%40%2Fx";

fn url(user: &str, host: &str, db: &str) -> String {
    format!("postgres://{user}:{PW_ENC}@{host}/{db}?sslmode=require")
}

/// What each case changes in the base environment.
enum V {
    Set(&'static str),
    Owned(String),
    Bytes(Vec<u8>),
    Unset,
}

struct Case {
    name: &'static str,
    env: Vec<(&'static str, V)>,
    args: Vec<&'static str>,
    /// The error line must start with `start-pgpool: error: ` + this.
    prefix: &'static str,
    /// ... and contain this (the part at fault, or the reason).
    says: &'static str,
}

fn case(
    name: &'static str,
    env: Vec<(&'static str, V)>,
    prefix: &'static str,
    says: &'static str,
) -> Case {
    Case {
        name,
        env,
        args: vec!["sh", "-c", "echo APP-RAN"],
        prefix,
        says,
    }
}

fn db(name: &'static str, url: String, says: &'static str) -> Case {
    case(
        name,
        vec![("DATABASE_URL", V::Owned(url))],
        "DATABASE_URL: ",
        says,
    )
}

fn tunable(var: &'static str, value: &'static str, says: &'static str) -> Case {
    let name: &'static str = Box::leak(format!("{var}={value:?}").into_boxed_str());
    let prefix: &'static str = Box::leak(format!("{var}: ").into_boxed_str());
    case(name, vec![(var, V::Set(value))], prefix, says)
}

/// Files some cases point at.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &[u8], mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("not-executable", b"#!/bin/sh\nexit 0\n", 0o644);
        write("not-pgpool", b"#!/bin/sh\necho hello\n", 0o755);
        write(
            "pgpool-9",
            b"#!/bin/sh\necho 'pgpool-II version 9.9.9 (future)'\n",
            0o755,
        );
        write("bad-syntax.tera", b"port = {{ port\n", 0o644);
        write("unknown-var.tera", b"port = {{ no_such_thing }}\n", 0o644);
        write("not-utf8.tera", b"port = \xff\xfe\n", 0o644);
        write("a-file", b"", 0o644);
        std::fs::create_dir(dir.path().join("a-dir")).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn cases(fx: &Fixture) -> Vec<Case> {
    let f = |n: &str| V::Owned(fx.path(n));
    let follower = |u: String| vec![("FOLLOWER_URL", V::Owned(u))];
    let mut v = vec![
        // PGPOOL_URLS
        case(
            "urls empty",
            vec![("PGPOOL_URLS", V::Set(""))],
            "PGPOOL_URLS: ",
            "is empty",
        ),
        case(
            "urls whitespace",
            vec![("PGPOOL_URLS", V::Set(" \t\n "))],
            "PGPOOL_URLS: ",
            "is empty",
        ),
        case(
            "urls name unset var",
            vec![("PGPOOL_URLS", V::Set("DATABASE_URL NOPE_URL"))],
            "NOPE_URL: ",
            "is not set",
        ),
        case(
            "urls name empty var",
            vec![
                ("PGPOOL_URLS", V::Set("DATABASE_URL EMPTY_URL")),
                ("EMPTY_URL", V::Set("")),
            ],
            "EMPTY_URL: ",
            "is empty",
        ),
        case(
            "urls name blank var",
            vec![
                ("PGPOOL_URLS", V::Set("DATABASE_URL EMPTY_URL")),
                ("EMPTY_URL", V::Set("  ")),
            ],
            "EMPTY_URL: ",
            "is empty",
        ),
        case(
            "urls bad name digit",
            vec![("PGPOOL_URLS", V::Set("DATABASE_URL 1URL"))],
            "PGPOOL_URLS: ",
            "entry 2 is not a variable name",
        ),
        case(
            "urls bad name dash",
            vec![("PGPOOL_URLS", V::Set("DATABASE-URL"))],
            "PGPOOL_URLS: ",
            "entry 1 is not a variable name",
        ),
        case(
            "urls bad name comma list",
            vec![("PGPOOL_URLS", V::Set("DATABASE_URL,FOLLOWER_URL"))],
            "PGPOOL_URLS: ",
            "entry 1 is not a variable name",
        ),
        case(
            "urls same var twice",
            vec![(
                "PGPOOL_URLS",
                V::Set("DATABASE_URL FOLLOWER_URL DATABASE_URL"),
            )],
            "PGPOOL_URLS: ",
            "listed twice",
        ),
        case(
            "urls 200 followers",
            vec![(
                "PGPOOL_URLS",
                V::Owned(
                    std::iter::once("DATABASE_URL".to_string())
                        .chain((0..200).map(|i| format!("F{i}_URL")))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            )],
            "PGPOOL_URLS: ",
            "at most 128",
        ),
        case(
            "urls not utf8",
            vec![("PGPOOL_URLS", V::Bytes(b"DATABASE_URL \xff".to_vec()))],
            "PGPOOL_URLS: ",
            "not valid UTF-8",
        ),
        case(
            "no urls and no DATABASE_URL",
            vec![("PGPOOL_URLS", V::Unset), ("DATABASE_URL", V::Unset)],
            "DATABASE_URL: ",
            "is not set",
        ),
        // URLs
        db("not a url", "not a url".into(), "is not a URL"),
        db(
            "wrong scheme",
            format!("mysql://app:{PW_ENC}@127.0.0.1/appdb"),
            "scheme must be postgres",
        ),
        db(
            "http scheme",
            format!("http://app:{PW_ENC}@127.0.0.1/appdb"),
            "scheme must be postgres",
        ),
        db(
            "empty host",
            format!("postgres://app:{PW_ENC}@/appdb"),
            "has no host",
        ),
        db("no authority", "postgres:///appdb".into(), "has no host"),
        db(
            "unix socket host",
            url("app", "%2Fvar%2Frun%2Fpostgresql", "appdb"),
            "host is a Unix socket path",
        ),
        db(
            "unix socket in query",
            format!("postgres://app:{PW_ENC}@127.0.0.1/appdb?host=/var/run/postgresql"),
            "query parameter host is not supported",
        ),
        db("port 0", url("app", "127.0.0.1:0", "appdb"), "port must be"),
        db(
            "port 70000",
            url("app", "127.0.0.1:70000", "appdb"),
            "port must be",
        ),
        db(
            "port abc",
            url("app", "127.0.0.1:abc", "appdb"),
            "port must be",
        ),
        db(
            "port negative",
            url("app", "127.0.0.1:-1", "appdb"),
            "port must be",
        ),
        db(
            "no user",
            format!("postgres://:{PW_ENC}@127.0.0.1/appdb"),
            "has no user",
        ),
        db(
            "no userinfo",
            "postgres://127.0.0.1/appdb".into(),
            "has no user",
        ),
        db(
            "no password",
            "postgres://app@127.0.0.1/appdb".into(),
            "has no password",
        ),
        db(
            "empty password",
            "postgres://app:@127.0.0.1/appdb".into(),
            "has no password",
        ),
        db(
            "port below 1024",
            url("app", "127.0.0.1:543", "appdb"),
            "port must be from 1024 to 65535",
        ),
        db(
            "no database",
            format!("postgres://app:{PW_ENC}@127.0.0.1"),
            "has no database",
        ),
        db(
            "empty database",
            format!("postgres://app:{PW_ENC}@127.0.0.1/?sslmode=require"),
            "has no database",
        ),
        db(
            "database quote",
            url("app", "127.0.0.1", "app'db"),
            "database contains a quote",
        ),
        db(
            "database backslash",
            url("app", "127.0.0.1", "app%5Cdb"),
            "database contains",
        ),
        db(
            "database newline",
            url("app", "127.0.0.1", "app%0Adb"),
            "database contains",
        ),
        db(
            "database CR",
            url("app", "127.0.0.1", "app%0Ddb"),
            "database contains",
        ),
        db(
            "database NUL",
            url("app", "127.0.0.1", "app%00db"),
            "database contains",
        ),
        db(
            "database ESC",
            url("app", "127.0.0.1", "app%1Bdb"),
            "database contains",
        ),
        db(
            "database DEL",
            url("app", "127.0.0.1", "app%7Fdb"),
            "database contains",
        ),
        db(
            "database C1 NEL",
            url("app", "127.0.0.1", "app%C2%85db"),
            "database contains",
        ),
        db(
            "database injection",
            url("app", "127.0.0.1", "x%27%20port%20%3D%206433%20%23"),
            "database contains a quote",
        ),
        db(
            "database raw injection",
            url("app", "127.0.0.1", "x' port = 6433 #"),
            "database",
        ),
        db(
            "database too long",
            url("app", "127.0.0.1", &"d".repeat(64)),
            "database is longer than 63 bytes",
        ),
        db(
            "database bad percent",
            url("app", "127.0.0.1", "app%zzdb"),
            "database has invalid percent-encoding",
        ),
        db(
            "database not utf8",
            url("app", "127.0.0.1", "app%FFdb"),
            "database is not valid UTF-8",
        ),
        db(
            "user quote",
            url("a'pp", "127.0.0.1", "appdb"),
            "user contains a quote",
        ),
        db(
            "user backslash",
            url("a%5Cpp", "127.0.0.1", "appdb"),
            "user contains",
        ),
        db(
            "user newline",
            url("a%0App", "127.0.0.1", "appdb"),
            "user contains",
        ),
        db(
            "user tab",
            url("a%09pp", "127.0.0.1", "appdb"),
            "user contains",
        ),
        db(
            "user injection",
            url("x%27%20port%20%3D%206433%20%23", "127.0.0.1", "appdb"),
            "user contains a quote",
        ),
        db(
            "user bad percent",
            url("a%2", "127.0.0.1", "appdb"),
            "user has invalid percent-encoding",
        ),
        db(
            "host quote",
            url("app", "ho%27st", "appdb"),
            "host is not a valid host name",
        ),
        db("host raw quote", url("app", "ho'st", "appdb"), "host"),
        db("host backslash", url("app", "ho%5Cst", "appdb"), "host"),
        db("host newline", url("app", "ho%0Ast", "appdb"), "host"),
        db("host space", url("app", "ho%20st", "appdb"), "host"),
        db(
            "host injection",
            url("app", "x%27%20port%20%3D%206433%20%23", "appdb"),
            "host",
        ),
        db(
            "ipv6 without brackets",
            url("app", "::1", "appdb"),
            "IPv6 hosts in brackets",
        ),
        db(
            "ipv6 without brackets, port",
            url("app", "::1:5432", "appdb"),
            "IPv6 hosts in brackets",
        ),
        db(
            "ipv6 unclosed bracket",
            url("app", "[::1", "appdb"),
            "host is not a valid IPv6 address",
        ),
        db(
            "ipv6 garbage in brackets",
            url("app", "[::g]", "appdb"),
            "host is not a valid IPv6 address",
        ),
        db(
            "password bad percent",
            "postgres://app:pw%2@127.0.0.1/appdb".to_string(),
            "password has invalid percent-encoding",
        ),
        db(
            "query bad percent",
            format!("{}&x=%zz", url("app", "127.0.0.1", "appdb")),
            "query has invalid percent-encoding",
        ),
        db(
            "query password",
            format!("{}&password=x", url("app", "127.0.0.1", "appdb")),
            "query parameter password is not supported",
        ),
        case(
            "url not utf8",
            vec![(
                "DATABASE_URL",
                V::Bytes(b"postgres://app:\xff@h/appdb".to_vec()),
            )],
            "DATABASE_URL: ",
            "not valid UTF-8",
        ),
        case(
            "follower bad port",
            follower(url("app", "127.0.0.2:0", "appdb")),
            "FOLLOWER_URL: ",
            "port",
        ),
        case(
            "follower same server",
            follower(url("app", "127.0.0.1:65001", "appdb")),
            "FOLLOWER_URL: ",
            "same as DATABASE_URL's",
        ),
        // Credentials
        case(
            "follower other user",
            follower(url("other", "127.0.0.2", "appdb")),
            "FOLLOWER_URL: ",
            "user differs",
        ),
        case(
            "follower other password",
            follower("postgres://app:0ther-Secret-pw@127.0.0.2/appdb".into()),
            "FOLLOWER_URL: ",
            "password differs",
        ),
        case(
            "follower other database",
            follower(url("app", "127.0.0.2", "otherdb")),
            "FOLLOWER_URL: ",
            "database differs",
        ),
        db(
            "password newline",
            "postgres://app:Sekr3t%0Apw@127.0.0.1/appdb".into(),
            "password contains a line break",
        ),
        db(
            "password CR",
            "postgres://app:Sekr3t%0Dpw@127.0.0.1/appdb".into(),
            "password contains a line break",
        ),
        db(
            "password NUL",
            "postgres://app:Sekr3t%00pw@127.0.0.1/appdb".into(),
            "password contains a line break or NUL",
        ),
        db(
            "password too long",
            format!("postgres://app:{}@127.0.0.1/appdb", "Sekr3tpw".repeat(16)),
            "password is longer than 124 bytes",
        ),
        // Environment
        case("no command", vec![], "COMMAND: ", "no command given"),
        case(
            "print-config while disabled",
            vec![("PGPOOL_ENABLED", V::Set("0"))],
            "PGPOOL_ENABLED: ",
            "no pgpool.conf to print",
        ),
        case(
            "bin missing",
            vec![("PGPOOL_BIN", V::Set("/nonexistent/pgpool"))],
            "PGPOOL_BIN: ",
            "not an executable file",
        ),
        case(
            "bin not executable",
            vec![("PGPOOL_BIN", f("not-executable"))],
            "PGPOOL_BIN: ",
            "not an executable file",
        ),
        case(
            "bin is a directory",
            vec![("PGPOOL_BIN", f("a-dir"))],
            "PGPOOL_BIN: ",
            "not an executable file",
        ),
        case(
            "bin empty",
            vec![("PGPOOL_BIN", V::Set(""))],
            "PGPOOL_BIN: ",
            "empty",
        ),
        case(
            "bin not pgpool",
            vec![("PGPOOL_BIN", f("not-pgpool"))],
            "PGPOOL_BIN: ",
            "did not print a pgpool version",
        ),
        case(
            "bin unknown family",
            vec![("PGPOOL_BIN", f("pgpool-9"))],
            "PGPOOL_BIN: ",
            "family start-pgpool does not know",
        ),
        case(
            "runtime dir missing",
            vec![("PGPOOL_RUNTIME_DIR", V::Owned(fx.path("no-such-dir")))],
            "PGPOOL_RUNTIME_DIR: ",
            "cannot create a private directory",
        ),
        case(
            "runtime dir is a file",
            vec![("PGPOOL_RUNTIME_DIR", f("a-file"))],
            "PGPOOL_RUNTIME_DIR: ",
            "cannot create a private directory",
        ),
        case(
            "runtime dir unwritable",
            vec![("PGPOOL_RUNTIME_DIR", V::Set("/proc"))],
            "PGPOOL_RUNTIME_DIR: ",
            "cannot create a private directory",
        ),
        case(
            "runtime dir relative",
            vec![("PGPOOL_RUNTIME_DIR", V::Set("tmp"))],
            "PGPOOL_RUNTIME_DIR: ",
            "absolute",
        ),
        case(
            "runtime dir empty",
            vec![("PGPOOL_RUNTIME_DIR", V::Set(""))],
            "PGPOOL_RUNTIME_DIR: ",
            "empty",
        ),
        case(
            "runtime dir quote",
            vec![("PGPOOL_RUNTIME_DIR", V::Set("/tmp/x' port = 6433 #"))],
            "PGPOOL_RUNTIME_DIR: ",
            "quote",
        ),
        case(
            "runtime dir newline",
            vec![("PGPOOL_RUNTIME_DIR", V::Set("/tmp/x\nport = 6433"))],
            "PGPOOL_RUNTIME_DIR: ",
            "control character",
        ),
        case(
            "runtime dir too long",
            vec![(
                "PGPOOL_RUNTIME_DIR",
                V::Owned(format!("/tmp/{}", "r".repeat(80))),
            )],
            "PGPOOL_RUNTIME_DIR: ",
            "too long",
        ),
        case(
            "runtime dir not utf8",
            vec![("PGPOOL_RUNTIME_DIR", V::Bytes(b"/tmp/\xff".to_vec()))],
            "PGPOOL_RUNTIME_DIR: ",
            "not valid UTF-8",
        ),
        case(
            "TMPDIR relative",
            vec![("PGPOOL_RUNTIME_DIR", V::Unset), ("TMPDIR", V::Set("tmp"))],
            "TMPDIR: ",
            "absolute",
        ),
        case(
            "template missing",
            vec![("PGPOOL_CONF_TEMPLATE", V::Owned(fx.path("none.tera")))],
            "PGPOOL_CONF_TEMPLATE: ",
            "cannot read",
        ),
        case(
            "template is a directory",
            vec![("PGPOOL_CONF_TEMPLATE", f("a-dir"))],
            "PGPOOL_CONF_TEMPLATE: ",
            "cannot read",
        ),
        case(
            "template not utf8",
            vec![("PGPOOL_CONF_TEMPLATE", f("not-utf8.tera"))],
            "PGPOOL_CONF_TEMPLATE: ",
            "cannot read",
        ),
        case(
            "template empty path",
            vec![("PGPOOL_CONF_TEMPLATE", V::Set(""))],
            "PGPOOL_CONF_TEMPLATE: ",
            "empty",
        ),
        case(
            "template bad syntax",
            vec![("PGPOOL_CONF_TEMPLATE", f("bad-syntax.tera"))],
            "PGPOOL_CONF_TEMPLATE: ",
            "cannot render",
        ),
        case(
            "template unknown variable",
            vec![("PGPOOL_CONF_TEMPLATE", f("unknown-var.tera"))],
            "PGPOOL_CONF_TEMPLATE: ",
            "cannot render",
        ),
    ];
    // The two environment cases that change the arguments.
    for c in v.iter_mut() {
        if c.name == "no command" || c.name == "print-config while disabled" {
            c.args = if c.name == "no command" {
                vec![]
            } else {
                vec!["--print-config"]
            };
        }
    }
    // Tunables: wrong type, out of range, garbage for each.
    for (var, bad, says) in [
        ("PGPOOL_ENABLED", "1.0", "must be one of"),
        ("PGPOOL_ENABLED", "2", "must be one of"),
        ("PGPOOL_ENABLED", "maybe", "must be one of"),
        ("PGPOOL_ENABLED", "", "must be one of"),
        ("PGPOOL_ENABLED", "yes please", "must be one of"),
        ("PGPOOL_PORT", "abc", "port number from 1024 to 65535"),
        ("PGPOOL_PORT", "5432.0", "port number"),
        ("PGPOOL_PORT", "80", "port number"),
        ("PGPOOL_PORT", "0", "port number"),
        ("PGPOOL_PORT", "70000", "port number"),
        ("PGPOOL_PORT", "-1", "port number"),
        ("PGPOOL_PORT", "6432 6433", "port number"),
        ("PGPOOL_PORT", "", "port number"),
        ("PGPOOL_READY_TIMEOUT", "10s", "seconds from 0.1 to 3600"),
        ("PGPOOL_READY_TIMEOUT", "0", "seconds"),
        ("PGPOOL_READY_TIMEOUT", "3601", "seconds"),
        ("PGPOOL_READY_TIMEOUT", "NaN", "seconds"),
        ("PGPOOL_READY_TIMEOUT", "inf", "seconds"),
        ("PGPOOL_STOP_TIMEOUT", "five", "seconds"),
        ("PGPOOL_STOP_TIMEOUT", "0.01", "seconds"),
        ("PGPOOL_STOP_TIMEOUT", "-1", "seconds"),
        ("PGPOOL_APP_STOP_TIMEOUT", "1m", "seconds"),
        ("PGPOOL_APP_STOP_TIMEOUT", "1e9", "seconds"),
        ("PGPOOL_APP_STOP_TIMEOUT", "%%", "seconds"),
        (
            "PGPOOL_NUM_INIT_CHILDREN",
            "1.5",
            "whole number from 1 to 1000",
        ),
        ("PGPOOL_NUM_INIT_CHILDREN", "0", "whole number"),
        ("PGPOOL_NUM_INIT_CHILDREN", "1001", "whole number"),
        ("PGPOOL_NUM_INIT_CHILDREN", "lots", "whole number"),
        ("PGPOOL_MAX_POOL", "2.0", "whole number from 1 to 32"),
        ("PGPOOL_MAX_POOL", "0", "whole number"),
        ("PGPOOL_MAX_POOL", "33", "whole number"),
        ("PGPOOL_MAX_POOL", "-1", "whole number"),
        (
            "PGPOOL_LOG_LEVEL",
            "3",
            "must be one of error, warn, info, debug",
        ),
        ("PGPOOL_LOG_LEVEL", "trace", "must be one of"),
        ("PGPOOL_LOG_LEVEL", "loud", "must be one of"),
        ("PGPOOL_MAX_LAG", "1.5MB", "number of bytes"),
        ("PGPOOL_MAX_LAG", "0", "number of bytes"),
        ("PGPOOL_MAX_LAG", "5GB", "number of bytes"),
        ("PGPOOL_MAX_LAG", "10TB", "number of bytes"),
        ("PGPOOL_MAX_LAG", "lots", "number of bytes"),
        (
            "PGPOOL_METRICS_INTERVAL",
            "1.5",
            "whole number of seconds from 0 (off) to 86400",
        ),
        (
            "PGPOOL_METRICS_INTERVAL",
            "86401",
            "whole number of seconds",
        ),
        ("PGPOOL_METRICS_INTERVAL", "-1", "whole number of seconds"),
        (
            "PGPOOL_METRICS_INTERVAL",
            "often",
            "whole number of seconds",
        ),
        (
            "PGPOOL_MAX_CONNECTIONS_SHARE",
            "50%",
            "fraction above 0 and at most 1",
        ),
        ("PGPOOL_MAX_CONNECTIONS_SHARE", "0", "fraction"),
        ("PGPOOL_MAX_CONNECTIONS_SHARE", "1.5", "fraction"),
        ("PGPOOL_MAX_CONNECTIONS_SHARE", "NaN", "fraction"),
        ("PGPOOL_MAX_CONNECTIONS_SHARE", "half", "fraction"),
        (
            "PGPOOL_MODE",
            "logical_replication",
            "must be streaming or logical",
        ),
        ("PGPOOL_MODE", "", "must be streaming or logical"),
        ("PGPOOL_PRIMARY_TABLES", "", "is empty"),
        (
            "PGPOOL_PRIMARY_TABLES",
            "carts;drop table x",
            "entry 1 is not a table name",
        ),
        (
            "PGPOOL_PRIMARY_TABLES",
            "carts,a.b.c",
            "entry 2 is not a table name",
        ),
        (
            "PGPOOL_PRIMARY_TABLES",
            "\"Carts\"",
            "entry 1 is not a table name",
        ),
        (
            "PGPOOL_PRIMARY_TABLES",
            "carts,,x",
            "entry 2 is not a table name",
        ),
        (
            "PGPOOL_PRIMARY_TABLES",
            "it's",
            "entry 1 is not a table name",
        ),
    ] {
        v.push(tunable(var, bad, says));
    }
    for var in [
        "PGPOOL_ENABLED",
        "PGPOOL_PORT",
        "PGPOOL_BIN",
        "PGPOOL_CONF_TEMPLATE",
        "PGPOOL_READY_TIMEOUT",
        "PGPOOL_NUM_INIT_CHILDREN",
        "PGPOOL_LOG_LEVEL",
        "PGPOOL_MAX_LAG",
        "PGPOOL_METRICS_INTERVAL",
        "PGPOOL_MAX_CONNECTIONS_SHARE",
        "PGPOOL_PRIMARY_TABLES",
    ] {
        let name: &'static str = Box::leak(format!("{var} not utf8").into_boxed_str());
        let prefix: &'static str = Box::leak(format!("{var}: ").into_boxed_str());
        v.push(case(
            name,
            vec![(var, V::Bytes(b"6\xff".to_vec()))],
            prefix,
            "not valid UTF-8",
        ));
    }
    // TLS: what a URL asks of it that cannot be honoured (docs/tls.md). The servers behind
    // these URLs are closed ports: each refusal comes before any server is asked.
    let q = |query: &str| format!("postgres://app:{PW_ENC}@127.0.0.1:65001/appdb?{query}");
    for (name, query, says) in [
        (
            "sslmode unknown",
            "sslmode=strict".to_string(),
            "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
        (
            "sslmode wrong case",
            "sslmode=Require".to_string(),
            "sslmode must be one of",
        ),
        (
            "sslcert",
            "sslmode=require&sslcert=/app/client.crt".to_string(),
            "sslcert is given, but client certificates are not supported",
        ),
        (
            "sslkey",
            "sslkey=/app/client.key".to_string(),
            "sslkey is given, but client certificates are not supported",
        ),
        (
            "sslcrl",
            "sslmode=verify-ca&sslcrl=/app/crl.pem".to_string(),
            "sslcrl is given, but certificate revocation lists are not supported",
        ),
        (
            "sslrootcert system under require",
            "sslmode=require&sslrootcert=system".to_string(),
            "sslrootcert=system needs sslmode=verify-full",
        ),
        (
            "verify-full without a CA",
            "sslmode=verify-full".to_string(),
            "sslmode=verify-full needs a CA",
        ),
        (
            "verify-ca without a CA",
            "sslmode=verify-ca".to_string(),
            "sslmode=verify-ca needs a CA",
        ),
        (
            "sslrootcert missing",
            "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem".to_string(),
            "sslrootcert /nonexistent/ca.pem cannot be read",
        ),
        (
            "sslrootcert a directory",
            format!("sslmode=verify-full&sslrootcert={}", fx.path("a-dir")),
            "cannot be read",
        ),
        (
            "sslrootcert not a certificate",
            format!("sslmode=verify-full&sslrootcert={}", fx.path("a-file")),
            "holds no PEM certificate",
        ),
        (
            "sslrootcert with a quote",
            "sslmode=verify-full&sslrootcert=/app/it's.pem".to_string(),
            "without quotes",
        ),
        (
            "requiressl",
            "requiressl=1".to_string(),
            "requiressl is given, but it is libpq's old spelling",
        ),
        (
            "TLS 1.3 minimum",
            "ssl_min_protocol_version=TLSv1.3".to_string(),
            "a minimum TLS version above TLSv1.2",
        ),
        (
            "direct TLS negotiation",
            "sslnegotiation=direct".to_string(),
            "sslnegotiation=direct is not supported",
        ),
    ] {
        let name: &'static str = Box::leak(format!("tls: {name}").into_boxed_str());
        let says: &'static str = Box::leak(says.to_string().into_boxed_str());
        v.push(db(name, q(&query), says));
    }
    v.push(case(
        "tls: PGSSLCERT set",
        vec![("PGSSLCERT", V::Set("/app/client.crt"))],
        "PGSSLCERT: ",
        "is set, but client certificates are not supported",
    ));
    v.push(case(
        "tls: PGSSLMODE unknown",
        vec![
            ("DATABASE_URL", V::Owned(q("application_name=x"))),
            ("PGPOOL_URLS", V::Set("DATABASE_URL")),
            ("PGSSLMODE", V::Set("on")),
        ],
        "PGSSLMODE: ",
        "sslmode must be one of",
    ));
    v.push(case(
        "logical mode with PGPOOL_MAX_LAG",
        vec![
            ("PGPOOL_MODE", V::Set("logical")),
            ("PGPOOL_MAX_LAG", V::Set("1MB")),
        ],
        "PGPOOL_MAX_LAG: ",
        "cannot be used with PGPOOL_MODE=logical",
    ));
    v
}

/// Under a stock pgpool (Debian's 4.3.5), what it cannot hold is refused by name: a pgpool
/// without patch 0007 has one ssl switch, and one without 0008 would let a copy take the writes.
fn stock_cases() -> Vec<Case> {
    let mut v = Vec::new();
    let q = |query: &str| format!("postgres://app:{PW_ENC}@127.0.0.1:65001/appdb?{query}");
    let stock = debian_pgpool().to_str().unwrap();
    v.push(case(
        "tls: require under a stock pgpool",
        vec![("PGPOOL_BIN", V::Set(stock))],
        "DATABASE_URL: ",
        "sslmode=require needs the buildpack's own pgpool",
    ));
    v.push(case(
        "tls: mixed modes under a stock pgpool",
        vec![
            ("PGPOOL_BIN", V::Set(stock)),
            ("DATABASE_URL", V::Owned(q("sslmode=prefer"))),
            (
                "FOLLOWER_URL",
                V::Owned(url("app", "127.0.0.2:65001", "appdb").replace("require", "disable")),
            ),
        ],
        "FOLLOWER_URL: ",
        "differs from DATABASE_URL's sslmode=prefer",
    ));
    // Without patch 0008 a copy would take the writes while the primary is down.
    v.push(case(
        "logical mode under a stock pgpool",
        vec![
            ("PGPOOL_BIN", V::Set(stock)),
            ("PGPOOL_MODE", V::Set("logical")),
            ("DATABASE_URL", V::Owned(q("sslmode=prefer"))),
            (
                "FOLLOWER_URL",
                V::Owned(url("app", "127.0.0.2:65001", "appdb").replace("require", "prefer")),
            ),
        ],
        "PGPOOL_MODE: ",
        "logical needs the buildpack's own pgpool",
    ));
    v
}

/// Every form of every password in `env`, as it could leak: raw, as written in the URL, and
/// escaped for pool_passwd.
fn secrets(l: &Launcher) -> Vec<String> {
    let mut out = vec![PW.to_string(), PW_ENC.to_string()];
    for v in l.env.values() {
        let Some(v) = v.to_str() else { continue };
        if let Ok(u) = url::Url::parse(v)
            && let Some(p) = u.password()
        {
            out.push(p.to_string());
            if let Ok(d) = percent_encoding::percent_decode_str(p).decode_utf8() {
                out.push(d.into_owned());
            }
        }
    }
    out.retain(|s| s.len() >= 6);
    out.sort();
    out.dedup();
    out
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the launcher in the harness's bare environment (its own runtime parent and a free
/// PGPOOL_PORT) with a primary and a follower on closed loopback ports, plus the case's changes.
fn run_case(c: &Case) -> (Outcome, Launcher) {
    let mut l = Launcher::bare();
    // If a case were wrongly accepted, it would fail against these closed ports soon.
    l.set("PGPOOL_READY_TIMEOUT", "3")
        .set("PGPOOL_URLS", "DATABASE_URL FOLLOWER_URL")
        .set("DATABASE_URL", url("app", "127.0.0.1:65001", "appdb"))
        .set("FOLLOWER_URL", url("app", "127.0.0.2:65001", "appdb"));
    for (k, v) in &c.env {
        match v {
            V::Set(s) => l.set(k, s),
            V::Owned(s) => l.set(k, s),
            V::Bytes(b) => l.set(k, OsString::from_vec(b.clone())),
            V::Unset => l.unset(k),
        };
    }
    let started = Instant::now();
    let out = l.command(&c.args).output().expect("run start-pgpool");
    (
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        },
        l,
    )
}

/// Everything a refused launch must satisfy; returns what is wrong.
fn check_refused(c: &Case, r: &Outcome, l: &Launcher) -> Vec<String> {
    let parent = l.runtime_parent.path();
    let mut bad = Vec::new();
    if matches!(r.code, Some(0) | None) {
        bad.push(format!("exit code {:?}, expected a non-zero code", r.code));
    }
    if !r.stdout.is_empty() {
        bad.push("stdout is not empty (did the app run?)".into());
    }
    let lines: Vec<&str> = r.stderr.lines().collect();
    let want = format!("start-pgpool: error: {}", c.prefix);
    if lines.len() != 1 {
        bad.push(format!("{} lines on stderr, expected 1", lines.len()));
    }
    match lines.first() {
        Some(l) if l.starts_with(&want) && l.contains(c.says) => {}
        _ => bad.push(format!(
            "stderr should start with {want:?} and say {:?}",
            c.says
        )),
    }
    for s in secrets(l) {
        if r.stderr.contains(&s) || r.stdout.contains(&s) {
            bad.push(format!("a password leaked: {s:?}"));
        }
    }
    if r.elapsed > Duration::from_secs(10) {
        bad.push(format!("took {:?}", r.elapsed));
    }
    let left: Vec<_> = std::fs::read_dir(parent)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !left.is_empty() {
        bad.push(format!("runtime parent not empty: {left:?}"));
    }
    let procs = processes_mentioning(&parent.display().to_string());
    if !procs.is_empty() {
        bad.push(format!("processes left: {procs:?}"));
    }
    bad
}

/// Runs every case; the failures, each with what the launcher said.
fn refuse_all(all: &[Case]) {
    let mut failures = Vec::new();
    for c in all {
        let (r, l) = run_case(c);
        let bad = check_refused(c, &r, &l);
        if !bad.is_empty() {
            failures.push(format!(
                "{}: {}\n  code {:?}\n  stdout {:?}\n  stderr {:?}",
                c.name,
                bad.join("; "),
                r.code,
                r.stdout,
                r.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn every_bad_input_is_refused_in_one_line_and_leaves_nothing() {
    let fx = Fixture::new();
    let all = cases(&fx);
    assert!(all.len() >= 40, "{} cases", all.len());
    refuse_all(&all);
    // The places some cases pointed at were not touched either.
    assert!(!Path::new(&fx.path("no-such-dir")).exists());
    assert_eq!(std::fs::read_dir(fx.path("a-dir")).unwrap().count(), 0);
    eprintln!("{} bad-input cases passed", all.len());
}

/// Apart from the rest, so that a machine without Debian's pgpool fails this test alone.
#[test]
fn a_stock_pgpool_is_refused_what_it_cannot_hold() {
    let all = stock_cases();
    assert_eq!(all.len(), 3);
    refuse_all(&all);
}

/// A busy PGPOOL_PORT is said at once, not after PGPOOL_READY_TIMEOUT.
#[test]
fn a_busy_port_is_refused_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fx = Fixture::new();
    let port_s: &'static str = Box::leak(port.to_string().into_boxed_str());
    let c = case(
        "port in use",
        vec![
            ("PGPOOL_PORT", V::Set(port_s)),
            ("PGPOOL_READY_TIMEOUT", V::Set("60")),
        ],
        "PGPOOL_PORT: ",
        "already in use",
    );
    let (r, l) = run_case(&c);
    let bad = check_refused(&c, &r, &l);
    assert!(bad.is_empty(), "{bad:?}\n{}", r.stderr);
    assert!(r.elapsed < Duration::from_secs(5), "took {:?}", r.elapsed);
    assert!(r.stderr.contains(&port.to_string()));
    drop(fx);
}

// ---------------------------------------------------------------------------------------------
// Awkward but legal input, end to end against the real cluster.

/// A role and a database whose names hold `#`, `%`, `@`, `:`, `/`, `"` and spaces, with the
/// cluster's awkward password; created once per test binary with a unique suffix.
fn awkward_role(c: &cluster::Cluster) -> (String, String) {
    static ONCE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let tag = std::process::id();
        let user = format!("u #%@:/\" {tag}");
        let db = format!("d #%@ {tag}");
        let q = |s: &str| s.replace('"', "\"\"");
        let pw = c.password().replace('\'', "''");
        c.psql(
            0,
            &format!(
                "create role \"{}\" login password '{pw}'; grant pg_monitor to \"{}\"",
                q(&user),
                q(&user)
            ),
        );
        c.psql(
            0,
            &format!("create database \"{}\" owner \"{}\"", q(&db), q(&user)),
        );
        // The followers replay both; wait until the role can log in to each.
        for node in 1..=c.followers() {
            c.wait_for(
                node,
                &format!(
                    "select count(*) from pg_database where datname = '{}'",
                    db.replace('\'', "''")
                ),
                "1",
                Duration::from_secs(30),
            );
        }
        (user, db)
    })
    .clone()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[test]
fn awkward_names_and_password_work_end_to_end() {
    let c = cluster::shared();
    let (user, db) = awkward_role(c);
    let mut l = Launcher::new(c);
    let u = |node: usize| {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}?sslmode=require&application_name=a%20b%23c",
            enc(&user),
            enc(c.password()),
            c.port(node),
            enc(&db)
        )
    };
    l.set("DATABASE_URL", u(0));
    for i in 1..=c.followers() {
        l.set(&format!("FOLLOWER{i}_URL"), u(i));
    }
    let out = l.run_sh(
        r#"psql "$DATABASE_URL" -XAtc 'select current_user, current_database(), current_setting($$application_name$$)' -F '|' &&
           psql "$DATABASE_URL" -XAtc 'select pg_is_in_recovery()'"#,
    );
    assert_ok(&out);
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], format!("{user}|{db}|a b#c"), "{}", show(&out));
    assert!(lines[1] == "t" || lines[1] == "f", "{}", show(&out));
    assert!(!stderr(&out).contains(c.password()));
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

#[test]
fn awkward_names_render_verbatim_in_print_config() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    let user = "us er#%@:/\"x";
    let db = "d b#%@/\"";
    l.set(
        "DATABASE_URL",
        format!(
            "postgres://{}:{}@db.example.com:6000/{}",
            enc(user),
            enc(c.password()),
            enc(db)
        ),
    )
    .set("PGPOOL_URLS", "DATABASE_URL")
    .set("PGPOOL_RUNTIME_DIR", "/tmp/a b#c%d@e");
    let out = l.command(&["--print-config"]).output().unwrap();
    assert_ok(&out);
    let conf = stdout(&out);
    let entries = conf_lexer::parse(&conf).unwrap();
    let get = |k: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| e.key == k)
            .map(|e| e.value.as_str())
            .collect()
    };
    assert_eq!(get("sr_check_user"), vec![user]);
    assert_eq!(get("health_check_database"), vec![db]);
    assert_eq!(get("backend_hostname0"), vec!["db.example.com"]);
    assert_eq!(get("backend_port0"), vec!["6000"]);
    // 4.4+ (the buildpack's own pgpool, the tests' default) names it unix_socket_directories.
    let socket = [get("socket_dir"), get("unix_socket_directories")].concat();
    assert!(socket[0].starts_with("/tmp/a b#c%d@e/start-pgpool-"));
    assert!(!conf.contains(c.password()) && !conf.contains(&enc(c.password())));
    // IPv6 in brackets is legal and reaches pgpool without them.
    l.set(
        "DATABASE_URL",
        format!("postgres://app:{}@[::1]:6001/appdb", enc(c.password())),
    );
    let out = l.command(&["--print-config"]).output().unwrap();
    assert_ok(&out);
    let entries = conf_lexer::parse(&stdout(&out)).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.key == "backend_hostname0" && e.value == "::1")
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets while pgpool runs.

#[test]
fn passwords_stay_in_pool_passwd_and_the_apps_url() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    l.set("PGPOOL_LOG_LEVEL", "debug");
    let pw = c.password().to_string();
    let forms = [
        pw.clone(),
        enc(&pw),
        // As pool_passwd escapes it, and as URLs commonly spell it.
        pw.replace('\\', "\\\\").replace(':', "\\:"),
        "p%40ss%3Aw%2Frd%27%22%23%25%20%5Cx".to_string(),
    ];
    let mut child = l
        .command(&[
            "sh",
            "-c",
            // Tell the test where we are, make pgpool log in to the backends and serve a
            // session, then wait to be released.
            r#"psql "$DATABASE_URL" -XAtc 'select 1' >/dev/null || exit 9
               echo "url $DATABASE_URL"; echo ready; read x; echo bye"#,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let launcher_pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut app_url = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("url ") {
            app_url = u.to_string();
        }
        if line == "ready" {
            break;
        }
    }
    assert!(
        app_url.contains(&enc(&pw)),
        "the app's DATABASE_URL holds the password"
    );

    // argv of every process of the launcher's tree, and pgpool's environment.
    // Every process whose argv or environment could be read by someone else.
    let tree = descendants(launcher_pid);
    assert!(
        tree.len() > 3,
        "launcher, pgpool and its children, the app: {tree:?}"
    );
    let pgpool_pids: Vec<u32> = tree
        .iter()
        .copied()
        .filter(|&p| comm(p) == "pgpool")
        .collect();
    assert!(!pgpool_pids.is_empty());
    for pid in &tree {
        let argv = cmdline(*pid);
        for f in &forms {
            assert!(
                !argv.contains(f.as_str()),
                "password in argv of {pid}: {argv}"
            );
        }
    }
    // pgpool needs no URL: its environment must not hand one to its children either.
    for pid in &pgpool_pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        for f in &forms {
            assert!(
                !environ.contains(f.as_str()),
                "password in the environment of pgpool {pid}"
            );
        }
    }
    // Every pgpool on the machine, this one's children out of its tree too (pgpool retitles
    // them, its name stays). Not every process mentioning pgpool: other tests' apps run
    // `psql "$DATABASE_URL" -c "pgpool show ..."`, the URL with its password in their argv.
    for (pid, _) in processes_mentioning("pgpool")
        .into_iter()
        .filter(|&(p, _)| comm(p) == "pgpool")
    {
        let argv = cmdline(pid);
        assert!(!argv.contains(&pw) && !argv.contains(&enc(&pw)), "{argv}");
    }

    // Files: the directory is 0700; only pool_passwd (0600) holds the password.
    let rundir = l
        .runtime_dir()
        .expect("the runtime directory exists while the app runs");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&rundir), 0o700);
    let mut holders = Vec::new();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&rundir).unwrap().flatten() {
        let p = e.path();
        names.push(e.file_name().to_string_lossy().into_owned());
        let ft = e.file_type().unwrap();
        if ft.is_file() {
            assert_eq!(mode(&p) & 0o077, 0, "{} is readable by others", p.display());
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            if forms.iter().any(|f| text.contains(f.as_str())) {
                holders.push((e.file_name().to_string_lossy().into_owned(), mode(&p)));
            }
        }
    }
    assert_eq!(
        holders,
        vec![("pool_passwd".to_string(), 0o600)],
        "files: {names:?}"
    );

    // pcp: no TCP listener in pgpool's tree except the app port; one pcp user, the launcher's
    // own, whose random password pcp.conf holds only as an MD5.
    let listeners = tcp_listeners();
    let mut ports: Vec<u16> = Vec::new();
    for pid in &pgpool_pids {
        let inodes = socket_inodes(*pid);
        ports.extend(
            listeners
                .iter()
                .filter(|(_, i)| inodes.contains(i))
                .map(|(p, _)| *p),
        );
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports, vec![l.port], "pgpool's TCP listeners");
    let pcp_conf = std::fs::read_to_string(rundir.join("pcp.conf")).unwrap();
    let users: Vec<&str> = pcp_conf
        .lines()
        .filter(|l| !(l.trim().is_empty() || l.trim_start().starts_with('#')))
        .collect();
    assert_eq!(users.len(), 1, "pcp.conf: {pcp_conf:?}");
    let (user, hash) = users[0].split_once(':').unwrap();
    assert_eq!(user, "start-pgpool");
    assert!(
        hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "pcp.conf holds a hash: {pcp_conf:?}"
    );
    assert!(!pcp_conf.contains(&pw), "pcp.conf holds the app's password");
    // Even the app's own password does not open pcp on its private socket, under either user
    // name (asked with the pcp tool of the pgpool under test).
    let pcp_node_count = pgpool_bin().with_file_name("pcp_node_count");
    assert!(
        pcp_node_count.is_file(),
        "no {}: run etc/build-pgpool",
        pcp_node_count.display()
    );
    let escaped = pw.replace('\\', "\\\\").replace(':', "\\:");
    let pass = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        pass.path(),
        format!("*:*:app:{escaped}\n*:*:start-pgpool:{escaped}\n"),
    )
    .unwrap();
    std::fs::set_permissions(pass.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    for user in ["app", "start-pgpool"] {
        let out = Command::new(&pcp_node_count)
            .args([
                "-h",
                rundir.to_str().unwrap(),
                "-p",
                "9898",
                "-U",
                user,
                "-w",
            ])
            .env("PCPPASSFILE", pass.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "pcp accepted the app's password for {user}: {}",
            show(&out)
        );
        assert!(
            stderr(&out).contains("authentication failed"),
            "pcp refused {user} for the right reason: {}",
            show(&out)
        );
    }
    let tcp = Command::new(&pcp_node_count)
        .args(["-h", "127.0.0.1", "-p", "9898", "-U", "app", "-w"])
        .env("PCPPASSFILE", pass.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!tcp.status.success(), "pcp over TCP: {}", show(&tcp));
    assert!(
        stderr(&tcp).contains("Connection refused"),
        "{}",
        show(&tcp)
    );

    // Release the app, then check every log line (debug level, pgpool's relayed output too).
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(rest, vec!["bye"]);
    let log = stderr(&out);
    assert!(
        log.contains(&format!("{}level=debug ", at(events::PGPOOL))),
        "pgpool's output is relayed at debug: {log}"
    );
    for f in &forms {
        assert!(
            !log.contains(f.as_str()),
            "password in the log: {f:?}\n{log}"
        );
    }
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}

/// A wrong password reaches pgpool's error path; its messages are relayed, the password not.
#[test]
fn a_wrong_password_fails_without_echoing_it() {
    let c = cluster::shared();
    let mut l = Launcher::new(c);
    let wrong = "Wr0ng:pw'\"#% \\secret";
    let u = |node: usize| {
        format!(
            "postgres://app:{}@127.0.0.1:{}/appdb?sslmode=require",
            enc(wrong),
            c.port(node)
        )
    };
    l.set("DATABASE_URL", u(0))
        .set("PGPOOL_LOG_LEVEL", "debug")
        .set("PGPOOL_READY_TIMEOUT", "4");
    for i in 1..=c.followers() {
        l.set(&format!("FOLLOWER{i}_URL"), u(i));
    }
    let out = l.run_sh("echo APP-RAN");
    assert!(!out.status.success(), "{}", show(&out));
    assert!(!stdout(&out).contains("APP-RAN"));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for f in [
        wrong.to_string(),
        enc(wrong),
        wrong.replace('\\', "\\\\").replace(':', "\\:"),
    ] {
        assert!(!all.contains(&f), "password leaked: {}", show(&out));
    }
    let err_text = stderr(&out);
    let errors: Vec<&str> = err_text
        .lines()
        .filter(|l| l.starts_with("start-pgpool: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", show(&out));
    assert!(l.runtime_dir_is_gone() && l.port_is_free());
}
