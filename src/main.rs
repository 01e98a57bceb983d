//! The `tunnelscope` command: loads the configuration, starts the proxy, and waits
//! for a signal. Wiring only; everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tunnelscope::config::Config;

/// WebSocket-aware reverse proxy and load balancer with a live terminal inspector.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["listen", "upstream"])]
    config: Option<PathBuf>,
    /// Quick start without a file: address to listen on (plain ws:// and http://).
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    listen: Option<SocketAddr>,
    /// Quick start: a backend `host:port`; repeat for several (balanced least_conn).
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    upstream: Vec<String>,
    /// Run without the dashboard (logs go to stderr).
    #[arg(long)]
    headless: bool,
    /// Log filter, e.g. `info`, `debug`, `tunnelscope=debug` (RUST_LOG also works).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a configuration file: exit 0 when usable, 2 when not.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Run the built-in demo: three backends and synthetic clients behind the proxy
    /// on 127.0.0.1:8080 (or a free port), plus a chat page for your browser.
    Demo {
        /// Run without the dashboard.
        #[arg(long)]
        headless: bool,
        /// Log filter.
        #[arg(long, value_name = "FILTER", default_value = "info")]
        log: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::Check { file }) = &cli.command {
        return match Config::load(file) {
            Ok(config) => {
                println!("{}: ok", file.display());
                print!("{}", config.check_report());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Cmd::Demo { headless: _, log }) = &cli.command {
        init_logging(log);
        return block_on(demo());
    }
    let config = match (&cli.config, cli.listen) {
        (Some(path), _) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(listen)) => Config::quick(listen, &cli.upstream),
        (None, None) => {
            eprintln!(
                "error: give --config FILE, or --listen ADDR --upstream HOST:PORT for a quick start\n\
                 (see `tunnelscope --help` and assets/tunnelscope.toml)"
            );
            return ExitCode::from(2);
        }
    };
    init_logging(&cli.log);
    block_on(run(config))
}

fn block_on(job: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let demo = tunnelscope::demo::Demo::start().await?;
    eprintln!("{}", demo.summary());
    let first = signals.next().await;
    tracing::info!("{first} received: stopping the demo");
    tokio::select! {
        _ = demo.stop() => {}
        second = signals.next() => {
            tracing::warn!("second {second}: exiting now");
            std::process::exit(130);
        }
    }
    Ok(())
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let proxy = tunnelscope::proxy::start(config).await?;
    let first = signals.next().await;
    tracing::info!("{first} received: closing tunnels (send it again to exit at once)");
    proxy.shutdown();
    tokio::select! {
        _ = proxy.wait() => {}
        second = signals.next() => {
            tracing::warn!("second {second}: exiting now");
            std::process::exit(130);
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM, listened for from before the proxy starts so that no signal
/// in the first moments kills the process without a graceful shutdown.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM, naming which.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
