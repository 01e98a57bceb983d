//! The `tunnelscope` command: loads the configuration, starts the proxy (and the
//! admin API when `[admin] bind` is set), and runs the dashboard (or waits for a
//! signal when headless). Wiring only; everything
//! else lives in the library.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

mod cli;
mod logging;
mod signals;
mod top;
mod upgrade;

use clap::Parser;
use cli::{Cli, Cmd};
use signals::{Sig, Signals};
use tunnelscope::admin;
use tunnelscope::config::Config;
use tunnelscope::dashboard::{self, input::KillClose, Exit, LogReceiver};
use tunnelscope::proxy::ProxyHandle;
use upgrade::{retire, Upgrader};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Cmd::Check { file }) => return check(file),
        Some(Cmd::Demo { run }) => {
            let mut logging =
                match logging::init(&run.log, run.log_format, run.headless, &run.log_file) {
                    Ok(logging) => logging,
                    Err(e) => return fail(e),
                };
            return_memory_in_background();
            // The writer is flushed once everything has run.
            return block_on(demo(logging.pane.take()));
        }
        Some(Cmd::Backend { listen, name }) => return block_on(backend(*listen, name.clone())),
        Some(Cmd::Upgrade { pid }) => return signal_upgrade(*pid),
        Some(Cmd::Completions { shell }) => return cli::completions(*shell),
        Some(Cmd::Man) => return cli::man(),
        Some(Cmd::ImportNginx { file, output }) => {
            return cli::import_nginx(file, output.as_deref())
        }
        Some(Cmd::Top {
            connect,
            token,
            token_file,
            ca,
            log_file,
        }) => {
            let options = top::Options {
                connect,
                token: token.clone(),
                token_file: token_file.as_deref(),
                ca: ca.as_deref(),
                log_file,
            };
            return top::run(options);
        }
        Some(Cmd::Replay {
            file,
            to,
            timing,
            wait,
        }) => return tunnelscope::replay::command(file, to, *timing, *wait),
        None => {}
    }
    // First, while this is the only thread: sockets handed over by the process this
    // one replaces (a binary upgrade).
    let handed = match upgrade::handed() {
        Ok(h) => h,
        Err(e) => return fail(e.context("taking over the sockets of the old process")),
    };
    let config = match (&cli.config, cli.listen) {
        (Some(path), _) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(listen)) => {
            let config = Config::quick(listen, &cli.upstream);
            if let Err(e) = config.validate("--upstream") {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            config
        }
        (None, None) => {
            eprintln!(
                "error: give --config FILE, or --listen ADDR --upstream HOST:PORT for a quick start,\n\
                 or run `tunnelscope demo` (see `tunnelscope --help` and assets/tunnelscope.toml)"
            );
            return ExitCode::from(2);
        }
    };
    let mut config = config;
    if let Some(dir) = &cli.record {
        config.inspect.record = Some(dir.clone());
    }
    let mut logging = match logging::init(
        &cli.run.log,
        cli.run.log_format,
        cli.run.headless,
        &cli.run.log_file,
    ) {
        Ok(logging) => logging,
        Err(e) => return fail(e),
    };
    return_memory_in_background();
    block_on(run(config, logging.pane.take(), handed))
}

/// Has jemalloc give freed memory back to the system from a thread of its own
/// (pages unused for about 10 s): after a burst of tunnels has closed, the event
/// loops may sit idle and never call into the allocator again, so without it the
/// memory would stay with the process. Starts a thread, so not before the sockets
/// of a binary upgrade are taken over.
fn return_memory_in_background() {
    // One such thread is plenty for a proxy (jemalloc would start one per CPU).
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::max_background_threads::write(1)
        .and_then(|_| tikv_jemalloc_ctl::background_thread::write(true))
    {
        tracing::warn!(error = %e, "the allocator cannot give memory back in the background");
    }
}

/// `tunnelscope upgrade --pid PID`: asks that process for a binary upgrade.
fn signal_upgrade(pid: u32) -> ExitCode {
    match std::process::Command::new("kill")
        .args(["-USR2", &pid.to_string()])
        .status()
    {
        Ok(s) if s.success() => {
            println!("asked process {pid} to upgrade (its log says how it went)");
            ExitCode::SUCCESS
        }
        Ok(s) => {
            eprintln!("error: could not signal process {pid} ({s})");
            ExitCode::FAILURE
        }
        Err(e) => fail(anyhow::anyhow!("cannot run kill: {e}")),
    }
}

fn check(file: &Path) -> ExitCode {
    match Config::load(file) {
        Ok(config) => {
            // A closed pipe (`| head -1`) is not worth a panic.
            use std::io::Write;
            let report = format!("{}: ok\n{}", file.display(), config.check_report());
            let _ = std::io::stdout().write_all(report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

fn block_on(job: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn run(
    config: Config,
    logs: Option<LogReceiver>,
    mut handed: upgrade::Handed,
) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    // The path the binary was started from: an upgrade starts what is there then.
    let exe = std::env::current_exe()?;
    let upgrade_deadline = config.timeouts.upgrade_deadline;
    let kill = KillClose(
        config.proxy.kill_close_code,
        config.proxy.kill_close_reason.clone(),
    );
    let admin_name = config.admin.name.clone();
    let admin_tls = match &config.admin.tls {
        Some(tls) => Some(
            tunnelscope::proxy::tls::server_config(tls)
                .map_err(|e| anyhow::anyhow!("[admin] tls: {e}"))?,
        ),
        None => None,
    };
    let (admin_hosts, redact, reveal) = (
        config.admin.hosts.clone(),
        config.inspect.redact.clone(),
        config.inspect.reveal_secrets,
    );
    // Bound first, so a taken admin port fails before any client is served.
    let admin = bind_admin(&config, handed.admin.take()).await?;
    let proxy =
        tunnelscope::proxy::start_with(config, std::mem::take(&mut handed.listeners)).await?;
    signals.reload_through(proxy.control());
    // Upgrades run headless: the dashboard owns its terminal, the new process could
    // not take it over.
    let (upgrade_tx, mut upgrades) = tokio::sync::mpsc::channel(1);
    let headless = logs.is_none();
    let admin_socket = admin.as_ref().map(|a| a.2.try_clone()).transpose()?;
    let admin = admin.map(|(listener, token, _)| {
        let api = admin::Api::new(
            proxy.snapshot_source(),
            proxy.counters_source(),
            proxy.subscribe_source(),
            proxy.control(),
        )
        .with_messages(proxy.messages_source())
        .with_search(proxy.search_source())
        .with_readiness(proxy.readiness_source())
        .with_name(admin_name)
        .with_tls(admin_tls)
        .with_kill_close(kill.0, kill.1.clone())
        .with_token(token)
        .with_hosts(&admin_hosts)
        .with_redaction(&redact, reveal);
        let api = if headless {
            api.with_upgrade(upgrade_tx.clone())
        } else {
            api
        };
        admin::spawn(listener, api)
    });
    handed.ready();
    let upgrade = Upgrader {
        exe: &exe,
        admin: admin_socket.as_ref(),
        requests: &mut upgrades,
    };
    let screen = Screen {
        banner: None,
        kill_close: kill,
        redact: tunnelscope::inspect::redact::Redact::new(&redact, reveal),
    };
    match attend(&proxy, logs, screen, &mut signals, Some(upgrade)).await? {
        Next::Stop => {
            proxy.shutdown();
            finish(proxy.wait(), &mut signals).await;
        }
        Next::Stopped => {}
        Next::Retire(pid) => {
            proxy.stop_accepting();
            if let Some(admin) = admin {
                admin.stop().await;
            }
            retire(&proxy, pid, upgrade_deadline, &mut signals).await;
            proxy.shutdown();
            finish(proxy.wait(), &mut signals).await;
            return Ok(());
        }
    }
    if let Some(admin) = admin {
        admin.stop().await;
    }
    Ok(())
}

/// The admin API's listener, its token, and a copy of its socket (for a binary
/// upgrade), when `[admin] bind` is set; `handed` is its socket taken over from the
/// process this one replaces.
async fn bind_admin(
    config: &Config,
    handed: Option<std::net::TcpListener>,
) -> anyhow::Result<
    Option<(
        tokio::net::TcpListener,
        Option<String>,
        std::net::TcpListener,
    )>,
> {
    let Some(addr) = config.admin.bind else {
        return Ok(None);
    };
    // The socket handed over is taken only if the config still names its address.
    let handed = handed.filter(|s| s.local_addr().is_ok_and(|a| a == addr || addr.port() == 0));
    let socket = match handed {
        Some(s) => s,
        None => std::net::TcpListener::bind(addr).map_err(|e| {
            anyhow::anyhow!(
                "admin API address {addr} could not be bound: {e} (is another process using it?)"
            )
        })?,
    };
    socket.set_nonblocking(true)?;
    let copy = socket.try_clone()?;
    let listener = tokio::net::TcpListener::from_std(socket)?;
    let scheme = if config.admin.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        "admin API listening on {scheme}://{}",
        listener.local_addr()?
    );
    Ok(Some((listener, config.admin.token.clone(), copy)))
}

/// `tunnelscope backend`: one demo backend in this process, until a signal.
async fn backend(listen: SocketAddr, name: String) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let backends = tunnelscope::demo::backends::Backends::start_at(&[(&name, listen)]).await?;
    // Tests and scripts wait for this line to learn the port.
    println!("listening on {}", backends.addrs()[0]);
    use std::io::Write;
    std::io::stdout().flush()?;
    let signal = signals.stop().await;
    eprintln!("tunnelscope backend: {signal} received, stopping");
    backends.stop_all();
    Ok(())
}

async fn demo(logs: Option<LogReceiver>) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let demo = tunnelscope::demo::Demo::start().await?;
    signals.reload_through(demo.proxy.control());
    if logs.is_none() {
        eprintln!("{}", demo.summary());
    }
    let banner = format!(
        "demo: open {} in a browser to join the chat · d drain · x kill · ? help",
        demo.url
    );
    let screen = Screen {
        banner: Some(banner),
        kill_close: KillClose::default(),
        redact: Default::default(),
    };
    let stop = attend(&demo.proxy, logs, screen, &mut signals, None).await?;
    if matches!(stop, Next::Stop) {
        finish(demo.stop(), &mut signals).await;
    }
    Ok(())
}

/// What comes after [`attend`].
enum Next {
    /// Shut down gracefully.
    Stop,
    /// The proxy already stopped by itself.
    Stopped,
    /// A binary upgrade handed the sockets to this new process: retire.
    Retire(u32),
}

/// What the dashboard is told about how to show things.
struct Screen {
    banner: Option<String>,
    kill_close: KillClose,
    /// Header values shown redacted (`[inspect] redact`, `reveal_secrets`).
    redact: tunnelscope::inspect::redact::Redact,
}

/// Runs until it is time to stop: the dashboard quits, a signal arrives (headless or
/// not), a shutdown was requested (the admin API), or, headless, an upgrade (SIGUSR2
/// or the admin API) has handed everything to a new process.
async fn attend(
    proxy: &ProxyHandle,
    logs: Option<LogReceiver>,
    screen: Screen,
    signals: &mut Signals,
    upgrader: Option<Upgrader<'_>>,
) -> anyhow::Result<Next> {
    let Some(logs) = logs else {
        let mut upgrader = upgrader;
        loop {
            let request = async {
                match upgrader.as_mut() {
                    Some(u) => u.requests.recv().await,
                    None => std::future::pending().await,
                }
            };
            let reply = tokio::select! {
                sig = signals.next() => match sig {
                    Sig::Stop(first) => {
                        tracing::info!("{first} received: closing tunnels (send it again to exit at once)");
                        return Ok(Next::Stop);
                    }
                    Sig::Upgrade => None,
                },
                _ = proxy.stopping() => {
                    tracing::info!("shutdown requested: closing tunnels");
                    return Ok(Next::Stop);
                }
                Some(reply) = request => Some(reply),
            };
            let Some(u) = upgrader.as_ref() else {
                tracing::warn!("SIGUSR2: this process cannot upgrade itself");
                continue;
            };
            let outcome = u.run(proxy).await;
            if let Some(reply) = reply {
                let _ = reply.send(outcome.clone());
            }
            if let Ok(pid) = outcome {
                return Ok(Next::Retire(pid));
            }
        }
    };
    // Subscribe before the first snapshot so nothing falls between them.
    let events = proxy.subscribe();
    let options = dashboard::Options {
        logs: Some(logs),
        banner: screen.banner,
        kill_close: screen.kill_close,
        redact: screen.redact,
        messages: Some(std::sync::Arc::new(proxy.messages_source())),
        search: Some({
            let search = proxy.search_source();
            std::sync::Arc::new(move |q: &str| Some(search(q)))
        }),
        ..Default::default()
    };
    tokio::select! {
        exit = dashboard::run_terminal(events, || proxy.snapshot(), proxy.control(), options) => {
            match exit? {
                Exit::ProxyStopped => Ok(Next::Stopped),
                Exit::Quit | Exit::InputClosed => Ok(Next::Stop),
            }
        }
        // The terminal is restored when the dashboard future is dropped here.
        first = signals.stop() => {
            tracing::info!("{first} received: closing tunnels");
            Ok(Next::Stop)
        }
        _ = proxy.stopping() => {
            tracing::info!("shutdown requested: closing tunnels");
            Ok(Next::Stop)
        }
    }
}

/// Waits for a graceful stop; a second signal exits at once.
async fn finish(stop: impl Future<Output = ()>, signals: &mut Signals) {
    // On a terminal (after the dashboard closed) tell the person at it; otherwise
    // stderr is the log, which must never be written to directly: it may be a pipe
    // nobody reads.
    if std::io::stderr().is_terminal() {
        eprintln!("tunnelscope: closing tunnels (Ctrl-C again to exit at once)");
    } else {
        tracing::info!("closing tunnels; a second signal exits at once");
    }
    tokio::select! {
        _ = stop => {}
        second = signals.stop() => {
            tracing::warn!("second {second}: exiting now");
            std::process::exit(130);
        }
    }
}
