//! A load generator for failure tests, connecting the way the app would: through the
//! `DATABASE_URL` the launcher gave it. Six persistent readers (`select inet_server_port()`
//! every 20 ms), one connect-per-query reader (every 50 ms) and one writer (an UPDATE then a
//! read every 200 ms). Every query has a client-side timeout, so a hang is recorded as one,
//! not waited out; a session that fails reconnects and goes on.
//!
//! Both protocols apps speak run side by side: the even readers and the connector use the
//! simple query protocol (psycopg2, `psql`); the odd readers and the writer prepare named
//! statements once per session and execute them with Parse/Bind/Execute/Sync (Rails, JDBC,
//! psycopg 3 with `prepare=True`), so a failure always meets sessions that hold prepared
//! statements.
//!
//! Each outcome carries the port of the PostgreSQL node that answered (`inet_server_port()`),
//! so a test can tell sessions on a failed node from healthy ones.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A query (or a connect) that takes longer than this counts as hung.
pub const HANG: Duration = Duration::from_secs(10);
pub const READERS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by the node listening on this port.
    Ok(u16),
    Err(String),
    Hung,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Reader(usize),
    Connector,
    Writer,
}

/// How a session talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One Query message per statement.
    Simple,
    /// Named prepared statements, prepared once per session, then Bind/Execute/Sync.
    Prepared,
}

impl Who {
    /// The protocol this session speaks under the mixed load ([`Load::start`]).
    pub fn protocol(self) -> Protocol {
        match self {
            Who::Reader(i) if i % 2 == 1 => Protocol::Prepared,
            Who::Writer => Protocol::Prepared,
            _ => Protocol::Simple,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    /// When the outcome came, since the load started.
    pub at: Duration,
    /// How long the query (or the connect) took: `at - took` is when it was sent.
    pub took: Duration,
    pub who: Who,
    pub outcome: Outcome,
}

pub struct Load {
    t0: Instant,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts the load against `database_url` (postgres://...?sslmode=disable), both protocols.
    pub fn start(database_url: &str) -> Load {
        Load::start_with(database_url, true)
    }

    /// The same load in the simple protocol only, as it was before the extended protocol joined
    /// it: for figures that must stay comparable with runs measured that way.
    pub fn start_simple(database_url: &str) -> Load {
        Load::start_with(database_url, false)
    }

    fn start_with(database_url: &str, mixed: bool) -> Load {
        let cfg = tokio_postgres::Config::from_str(database_url).expect("DATABASE_URL parses");
        let t0 = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(Mutex::new(Vec::new()));
        let (s, e) = (stop.clone(), events.clone());
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..READERS {
                    tasks.push(tokio::spawn(session(
                        cfg.clone(),
                        mixed,
                        Who::Reader(i),
                        Duration::from_millis(20),
                        t0,
                        s.clone(),
                        e.clone(),
                    )));
                }
                tasks.push(tokio::spawn(session(
                    cfg.clone(),
                    mixed,
                    Who::Writer,
                    Duration::from_millis(200),
                    t0,
                    s.clone(),
                    e.clone(),
                )));
                tasks.push(tokio::spawn(connector(cfg, t0, s.clone(), e)));
                // Bounded: every loop checks `stop`, and every await in them has a timeout.
                while !s.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                for t in tasks {
                    let _ = tokio::time::timeout(HANG + Duration::from_secs(2), t).await;
                }
            });
            // Dropping the runtime cancels whatever is still stuck (a hung connection task).
        });
        Load {
            t0,
            stop,
            events,
            thread: Some(thread),
        }
    }

    /// Time since the load started, the clock every event uses.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Stops every session (waiting out queries still in flight, at most [`HANG`] + 2 s) and
    /// returns everything recorded.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("load thread");
        }
        Report {
            events: self.events(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn record(events: &Mutex<Vec<Event>>, t0: Instant, sent: Instant, who: Who, outcome: Outcome) {
    events.lock().unwrap().push(Event {
        at: t0.elapsed(),
        took: sent.elapsed(),
        who,
        outcome,
    });
}

type Client = tokio_postgres::Client;

/// A server's error by its SQLSTATE and message (tokio-postgres alone says only "db error").
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

async fn connect(cfg: &tokio_postgres::Config) -> Result<Client, Outcome> {
    match tokio::time::timeout(HANG, cfg.connect(tokio_postgres::NoTls)).await {
        Err(_) => Err(Outcome::Hung),
        Ok(Err(e)) => Err(Outcome::Err(error_text(&e))),
        Ok(Ok((c, conn))) => {
            tokio::spawn(conn);
            Ok(c)
        }
    }
}

/// A session and, in the extended protocol, its named statements.
struct Session {
    client: Client,
    protocol: Protocol,
    /// `select inet_server_port()` and the writer's UPDATE, once prepared.
    prepared: Option<(tokio_postgres::Statement, tokio_postgres::Statement)>,
}

async fn port_of(s: &mut Session, who: Who) -> Result<u16, Outcome> {
    let write = who == Who::Writer;
    let c = &s.client;
    let run = async {
        if s.protocol == Protocol::Simple {
            if write {
                c.simple_query("update items set v = now()::text where id = 1")
                    .await?;
            }
            let msgs = c.simple_query("select inet_server_port()").await?;
            return Ok(msgs.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            }));
        }
        if s.prepared.is_none() {
            let read = c.prepare("select inet_server_port()").await?;
            let update = c
                .prepare("update items set v = now()::text where id = 1")
                .await?;
            s.prepared = Some((read, update));
        }
        let (read, update) = s.prepared.as_ref().expect("prepared above");
        if write {
            c.execute(update, &[]).await?;
        }
        let row = c.query_one(read, &[]).await?;
        Ok(row
            .get::<_, Option<i32>>(0)
            .and_then(|p| u16::try_from(p).ok()))
    };
    let answer: Result<Option<u16>, tokio_postgres::Error> =
        match tokio::time::timeout(HANG, run).await {
            Err(_) => return Err(Outcome::Hung),
            Ok(r) => r,
        };
    match answer {
        Err(e) => Err(Outcome::Err(error_text(&e))),
        Ok(p) => p.ok_or_else(|| Outcome::Err("no row".into())),
    }
}

async fn session(
    cfg: tokio_postgres::Config,
    mixed: bool,
    who: Who,
    every: Duration,
    t0: Instant,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
) {
    let mut session: Option<Session> = None;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let mut s = match session.take() {
            Some(s) => s,
            None => match connect(&cfg).await {
                Ok(client) => Session {
                    client,
                    protocol: if mixed {
                        who.protocol()
                    } else {
                        Protocol::Simple
                    },
                    prepared: None,
                },
                Err(o) => {
                    record(&events, t0, sent, who, o);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A reconnect's query is timed from the connect: the app waits for both.
        match port_of(&mut s, who).await {
            Ok(p) => {
                record(&events, t0, sent, who, Outcome::Ok(p));
                session = Some(s);
            }
            Err(o) => record(&events, t0, sent, who, o),
        }
        tokio::time::sleep(every).await;
    }
}

/// A single-threaded runtime, for a load's own thread.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One new session asking `select inet_server_port()` once in the simple protocol, as the
/// connector does: the node that answered, or what went wrong.
async fn one_session(cfg: &tokio_postgres::Config) -> Outcome {
    match connect(cfg).await {
        Ok(client) => {
            let mut s = Session {
                client,
                protocol: Protocol::Simple,
                prepared: None,
            };
            match port_of(&mut s, Who::Connector).await {
                Ok(p) => Outcome::Ok(p),
                Err(o) => o,
            }
        }
        Err(o) => o,
    }
}

async fn connector(
    cfg: tokio_postgres::Config,
    t0: Instant,
    stop: Arc<AtomicBool>,
    events: Arc<Mutex<Vec<Event>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let outcome = one_session(&cfg).await;
        record(&events, t0, sent, Who::Connector, outcome);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` new sessions opened at once, each asking `select inet_server_port()` once in the simple
/// protocol: what each saw, and how long it waited, connect included (at most [`HANG`] for the
/// connect and as long again for the query).
pub fn burst(database_url: &str, n: usize) -> Vec<(Duration, Outcome)> {
    let cfg = tokio_postgres::Config::from_str(database_url).expect("DATABASE_URL parses");
    let rt = runtime();
    rt.block_on(async move {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let cfg = cfg.clone();
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let outcome = one_session(&cfg).await;
                    (sent.elapsed(), outcome)
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.expect("a burst session panicked"));
        }
        seen
    })
}

/// `n` sessions held open until [`Held::close`] closes them all at once, as an app's exit does.
pub struct Held {
    close: std::sync::mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Held {
    /// Opens the sessions, each answering one query first; panics if one fails.
    pub fn open(database_url: &str, n: usize) -> Held {
        let cfg = tokio_postgres::Config::from_str(database_url).expect("DATABASE_URL parses");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (close, close_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            let opened = rt.block_on(async {
                let mut sessions = Vec::new();
                for _ in 0..n {
                    let client = connect(&cfg).await.map_err(|o| format!("{o:?}"))?;
                    let mut s = Session {
                        client,
                        protocol: Protocol::Simple,
                        prepared: None,
                    };
                    port_of(&mut s, Who::Connector)
                        .await
                        .map_err(|o| format!("{o:?}"))?;
                    sessions.push(s);
                }
                Ok::<_, String>(sessions)
            });
            match opened {
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
                Ok(sessions) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = close_rx.recv_timeout(Duration::from_secs(120));
                    // The runtime goes with the sessions: every socket is closed at once.
                    drop(sessions);
                    drop(rt);
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Held { close, thread },
            Ok(Err(e)) => panic!("a held session failed to open: {e}"),
            Err(_) => panic!("the held sessions did not open within 60 s"),
        }
    }

    /// Closes every session, and returns once their sockets are closed.
    pub fn close(self) {
        let _ = self.close.send(());
        self.thread
            .join()
            .expect("the held sessions' thread panicked");
    }
}

/// Everything the load saw, and the figures the failure tests report.
pub struct Report {
    pub events: Vec<Event>,
}

impl Report {
    pub fn hung_events(&self) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.outcome == Outcome::Hung)
            .cloned()
            .collect()
    }

    pub fn hung(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.outcome == Outcome::Hung)
            .count()
    }

    /// Failures (errors or hangs) of persistent sessions whose last answer before the failure
    /// came from a node not in `failed`: healthy sessions that broke. For the writer that is
    /// the node its reads went to.
    pub fn broken_healthy(&self, failed: &[u16], after: Duration) -> Vec<Event> {
        let mut last: std::collections::HashMap<String, u16> = Default::default();
        let mut out = Vec::new();
        for e in &self.events {
            if e.who == Who::Connector {
                continue;
            }
            let key = format!("{:?}", e.who);
            match &e.outcome {
                Outcome::Ok(p) => {
                    last.insert(key, *p);
                }
                _ => {
                    if e.at >= after
                        && let Some(p) = last.remove(&key)
                        && !failed.contains(&p)
                    {
                        out.push(e.clone());
                    }
                }
            }
        }
        out
    }

    /// Failed outcomes of `who` (any reader when `Reader(usize::MAX)`) in `[from, to)`.
    pub fn failures(&self, who: Who, from: Duration, to: Duration) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| same(e.who, who) && e.at >= from && e.at < to)
            .filter(|e| !matches!(e.outcome, Outcome::Ok(_)))
            .cloned()
            .collect()
    }

    /// Answers from the node on `port` in `[from, to)`, by anyone.
    pub fn served_by(&self, port: u16, from: Duration, to: Duration) -> usize {
        self.events
            .iter()
            .filter(|e| e.at >= from && e.at < to && e.outcome == Outcome::Ok(port))
            .count()
    }

    /// The first answer after `from` by `who` from `port` (any port when None).
    pub fn first_ok(&self, who: Who, port: Option<u16>, from: Duration) -> Option<Duration> {
        self.events
            .iter()
            .filter(|e| same(e.who, who) && e.at >= from)
            .find(|e| matches!(e.outcome, Outcome::Ok(p) if port.is_none_or(|w| w == p)))
            .map(|e| e.at)
    }

    /// When `who` last failed after `from`: it has answered every time since.
    pub fn last_failure(&self, who: Who, from: Duration) -> Option<Duration> {
        self.events
            .iter()
            .filter(|e| same(e.who, who) && e.at >= from)
            .filter(|e| !matches!(e.outcome, Outcome::Ok(_)))
            .map(|e| e.at)
            .next_back()
    }

    pub fn oks(&self, who: Who) -> usize {
        self.events
            .iter()
            .filter(|e| same(e.who, who) && matches!(e.outcome, Outcome::Ok(_)))
            .count()
    }

    /// A few failures, for assertion messages.
    pub fn describe(events: &[Event]) -> String {
        events
            .iter()
            .take(12)
            .map(|e| format!("{:.2}s {:?} {:?}", e.at.as_secs_f64(), e.who, e.outcome))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn same(a: Who, b: Who) -> bool {
    a == b || matches!((a, b), (Who::Reader(_), Who::Reader(usize::MAX)))
}
