//! One launch, step by step: env -> settings -> backends -> rendered files -> pgpool -> ready
//! -> app -> exit, with the side tasks started beside the app. Each step lives in its own
//! module; this file only orders them and owns the cleanup.

pub mod app_env;
mod ready;
mod supervise;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cli::{Cli, Sub};
use crate::config::{Backend, Env, Settings, backends, settings, tls};
use crate::exit::Code;
use crate::log::{self, event};
use crate::os::group::reap_strays;
use crate::os::memory;
use crate::os::signals::{Signals, is_terminating};
use crate::pgpool::pcp::{Credentials, Pcp};
use crate::pgpool::runtime_dir::StatusRecord;
use crate::pgpool::{File, Pgpool, Release, RuntimeDir, locate, render};
use crate::servers;
use crate::status;
use crate::watch::{self, SideTasks};
use supervise::App;

pub fn run(cli: Cli) -> Result<Code> {
    memory::one_arena();
    let env = Env::from_process();
    if let Some(Sub::Status) = cli.sub {
        let settings = Settings::from_env(&env)?;
        status::run(&settings.runtime_parent, settings.port)?;
        return Ok(Code(0));
    }
    if !settings::enabled(&env)? {
        if cli.command.is_empty() {
            bail!("PGPOOL_ENABLED: is off, so there is no pgpool.conf to print");
        }
        return Ok(exec_untouched(&cli.command));
    }
    let settings = Settings::from_env(&env)?;
    crate::log::init(settings.log_level);
    let cwd = std::env::current_dir().ok();
    let tls = tls::Defaults::read(&env, cwd.as_deref(), Path::is_file)?;
    let backends = backends::resolve(&settings.url_vars, &env, &tls)?;
    let template = match &settings.conf_template {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("PGPOOL_CONF_TEMPLATE: cannot read {}", p.display()))?,
        ),
    };
    // Before anything runs (even `pgpool --version`): a busy port is the user's to fix, and
    // pgpool would only fail to bind after we had waited for it.
    if !cli.print_config {
        check_port_free(settings.port)?;
    }
    let bin = locate::locate(settings.bin.as_deref(), env.get("HOME")?, env.get("PATH")?)?;
    let release = locate::release(&bin)?;
    if cli.print_config {
        let files = RuntimeDir::placeholder(&settings.runtime_parent, settings.port);
        let r = render::render(&backends, &settings, &files, release, template.as_deref())?;
        print!("{}", r.pgpool_conf);
        return Ok(Code(0));
    }
    // Before the runtime directory exists: a server that falls short of its URL is refused
    // with nothing to clean up.
    servers::tls::check(&backends)?;
    // Its threads are gone; what they freed goes back before the guard's fork shares it.
    memory::trim();
    // Signal handlers before the private directory exists: a SIGTERM from here on is queued
    // for `serve` (which stops cleanly), instead of killing us with pool_passwd left in /tmp.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signals = {
        let _ctx = runtime.enter();
        Signals::install()?
    };
    let dir = RuntimeDir::create(&settings.runtime_parent, settings.port)?;
    let rendered = render::render(
        &backends,
        &settings,
        dir.files(),
        release,
        template.as_deref(),
    )?;
    let pcp_user = Credentials::generate()?;
    let files = dir.files();
    files.write_new(File::PgpoolConf, &rendered.pgpool_conf)?;
    files.write_new(File::PoolHba, &rendered.pool_hba)?;
    files.write_new(File::PoolPasswd, rendered.pool_passwd.expose())?;
    files.write_new(File::PcpConf, &pcp_user.pcp_conf())?;
    files.write_status(&StatusRecord::from_backends(&backends))?;
    let launch = Launch {
        command: &cli.command,
        env: &env,
        settings: &settings,
        backends: &backends,
        bin,
        dir: &dir,
        release,
        template,
        pcp: Pcp::new(files, pcp_user),
    };
    let code = runtime.block_on(serve(launch, signals));
    // The runtime directory goes when `dir` drops, after pgpool is gone.
    drop(runtime);
    code
}

/// `PGPOOL_ENABLED=0`: become the command (same pid, same environment), or fail as a shell would.
fn exec_untouched(command: &[std::ffi::OsString]) -> Code {
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    crate::error::print(&anyhow!("{}: {err}", command[0].to_string_lossy()));
    Code::from_spawn_error(&err)
}

/// pgpool would otherwise start, fail to bind, and leave us waiting for the deadline. std sets
/// SO_REUSEADDR, as pgpool does, so a port in TIME_WAIT is not mistaken for a busy one.
fn check_port_free(port: u16) -> Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            bail!("PGPOOL_PORT: port {port} on 127.0.0.1 is already in use")
        }
        Err(e) => bail!("PGPOOL_PORT: cannot listen on 127.0.0.1:{port}: {e}"),
    }
}

/// What `run` prepared for `serve`: every value already checked, the files already written.
struct Launch<'a> {
    command: &'a [std::ffi::OsString],
    env: &'a Env,
    settings: &'a Settings,
    backends: &'a [Backend],
    bin: PathBuf,
    dir: &'a RuntimeDir,
    release: Release,
    template: Option<String>,
    pcp: Pcp,
}

async fn serve(launch: Launch<'_>, mut signals: Signals) -> Result<Code> {
    let Launch {
        command,
        env,
        settings,
        backends,
        bin,
        dir,
        release,
        template,
        pcp,
    } = launch;
    let started = Instant::now();
    let mut pgpool = Pgpool::spawn(&bin, dir, &backends[0].password, settings.stop_timeout)?;
    let deadline = tokio::time::Instant::now() + settings.ready_timeout;
    let pgpool_pid = pgpool.pid();
    let readiness = tokio::select! {
        r = ready::wait(settings.port, backends, deadline) => r.map_err(|e| {
            anyhow!("pgpool was not ready within {}s: {e}", settings.ready_timeout.as_secs_f64())
        }),
        status = pgpool.wait() => {
            let why = pgpool.last_error().await.map(|l| format!(": {l}")).unwrap_or_default();
            Err(anyhow!("pgpool exited during start ({status}){why}"))
        }
        sig = until_terminating(&mut signals, pgpool_pid) => {
            event!(log::events::STOPPED_BEFORE_READY, signal = %sig);
            pgpool.stop(settings.stop_timeout).await;
            return Ok(Code::from_signal(sig as i32));
        }
    };
    // Logical copies are not in recovery by nature.
    let streaming = settings.mode == settings::Mode::Streaming;
    let nodes = match readiness.and_then(|n| {
        if streaming {
            ready::followers_in_recovery(&n, backends).map(|()| n)
        } else {
            Ok(n)
        }
    }) {
        Ok(n) => n,
        Err(e) => {
            pgpool.stop(settings.stop_timeout).await;
            return Err(e);
        }
    };
    let up = nodes.iter().filter(|n| n.is_up()).count();
    event!(
        log::events::PGPOOL_READY,
        port = settings.port,
        nodes = nodes.len(),
        up,
        ms = started.elapsed().as_millis() as u64
    );
    for n in nodes.iter().filter(|n| !n.is_up()) {
        if let Some(b) = backends.get(n.id) {
            event!(log::events::FOLLOWER_DOWN, source = b.var.as_str());
        }
    }
    // Beside the app: the app need not wait for a log line.
    let side = SideTasks::start(watch::Start {
        settings: settings.clone(),
        backends: backends.to_vec(),
        files: dir.files().clone(),
        release,
        template,
        pgpool: pgpool_pid,
        nodes,
        pcp,
    });
    let vars = app_env::app_env(env, &backends[0], settings.port);
    let mut app = match App::spawn(command, &vars) {
        Ok(a) => a,
        Err(e) => {
            side.stop();
            pgpool.stop(settings.stop_timeout).await;
            crate::error::print(&anyhow!("{}: {e}", command[0].to_string_lossy()));
            return Ok(Code::from_spawn_error(&e));
        }
    };
    supervise::run(
        &mut app,
        &mut pgpool,
        &mut signals,
        &side,
        settings.stop_timeout,
        settings.app_stop_timeout,
    )
    .await
}

/// Waits for a signal that should end a launch still starting up; others are dealt with.
async fn until_terminating(signals: &mut Signals, pgpool: Pid) -> Signal {
    loop {
        let sig = signals.recv().await;
        if is_terminating(sig) {
            return sig;
        }
        reap_strays(&[pgpool]);
    }
}
