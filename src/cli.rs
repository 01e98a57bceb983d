//! The command line: its arguments and subcommands (clap derive), and the shell
//! completions and man page generated from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::logging;

/// WebSocket-aware reverse proxy and load balancer with a live terminal inspector.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// TOML configuration file.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["listen", "upstream"])]
    pub config: Option<PathBuf>,
    /// Quick start without a file: address to listen on (plain ws:// and http://).
    #[arg(long, value_name = "ADDR", requires = "upstream")]
    pub listen: Option<SocketAddr>,
    /// Quick start: a backend `host:port`; repeat for several (balanced least_conn).
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    pub upstream: Vec<String>,
    /// Write a JSON Lines recording of each tunnel into this directory as it happens
    /// (as `[inspect] record`; bounded and rotated by `record_file_bytes` and
    /// `record_total_bytes`).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How to run: with or without the dashboard, and where logs go.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// No dashboard: logs go to stderr. Implied when stdout is not a terminal.
    #[arg(long)]
    pub headless: bool,
    /// Log filter, e.g. `info`, `debug`, `tunnelscope=debug` (RUST_LOG also works).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
    /// How log lines are written: `text`, or `json` (one object per line, each field
    /// a key) for log pipelines.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = logging::Format::Text)]
    pub log_format: logging::Format,
    /// With the dashboard, logs are appended to this file (and shown in its log pane).
    #[arg(long, value_name = "FILE", default_value = "tunnelscope.log")]
    pub log_file: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Validate a configuration file: exit 0 when usable, 2 when not.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Run the built-in demo: three backends and synthetic clients behind the proxy
    /// on 127.0.0.1:8080 (or a free port), plus a chat page for your browser.
    Demo {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Ask a running tunnelscope (headless) to replace itself with the binary now at
    /// its path, handing over its listening sockets: no tunnel is dropped (the same
    /// as `kill -USR2 PID` or `POST /api/upgrade`).
    Upgrade {
        /// The running process.
        #[arg(long)]
        pid: u32,
    },
    /// Play the client side of a recording (`GET /api/tunnels/{id}/recording`)
    /// against a backend and report where its answers differ: exit 0 when every
    /// answer came as recorded, 1 when not, 2 when it could not replay.
    Replay {
        /// The recording (JSON Lines).
        file: PathBuf,
        /// The backend to play against, e.g. ws://127.0.0.1:9001/chat.
        #[arg(long, value_name = "URL")]
        to: String,
        /// `answers`: each client message waits for the answers recorded before it;
        /// `original`: the recorded pace.
        #[arg(long, value_enum, default_value = "answers")]
        timing: tunnelscope::replay::Timing,
        /// How long an expected answer is waited for (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s", value_parser = tunnelscope::config::duration::parse)]
        wait: std::time::Duration,
    },
    /// Run one of the demo's backends on its own, to put behind the proxy: WebSocket
    /// /echo, /chat and /ticker, and the chat page at /. Prints `listening on ADDR`,
    /// then runs until SIGINT or SIGTERM. Kill it to see its clients move elsewhere.
    Backend {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9001")]
        listen: SocketAddr,
        /// Name it reports (the chat's "backend" field, the X-Served-By header).
        #[arg(long, default_value = "app")]
        name: String,
    },
    /// Print a shell completion script, e.g. `tunnelscope completions bash >
    /// /usr/share/bash-completion/completions/tunnelscope`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Open the dashboard on running (headless) instances through their admin API:
    /// their backends merged, their tunnels labelled, and drain, kill, enable,
    /// reload and rebalance sent to every one of them.
    Top {
        /// An instance's admin API, `[NAME=]http://HOST:PORT` (or `https://`); repeat
        /// for several.
        #[arg(long = "connect", value_name = "[NAME=]URL", required = true)]
        connect: Vec<String>,
        /// The admin token ([admin] token) the instances want.
        #[arg(long, env = "TUNNELSCOPE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Read the token from this file (its first line).
        #[arg(long, value_name = "FILE", conflicts_with = "token")]
        token_file: Option<PathBuf>,
        /// CA certificates (PEM) to trust for `https://` instances (default: the
        /// system's).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Where top's own log goes (also shown in its log pane, `l`).
        #[arg(long, value_name = "FILE", default_value = "tunnelscope-top.log")]
        log_file: PathBuf,
    },
    /// Read an nginx configuration (the WebSocket guides' kind: map, upstream,
    /// server, listen … ssl, location, proxy_pass, proxy_set_header, timeouts) and
    /// print the equivalent tunnelscope TOML, with a comment on anything it could not
    /// carry over. Exit 2 when the file cannot be read.
    ImportNginx {
        /// The nginx configuration file.
        file: PathBuf,
        /// Write the TOML here instead of to stdout (an existing file is refused).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the man page (roff), e.g. `tunnelscope man > /usr/share/man/man1/tunnelscope.1`.
    Man,
}

/// `tunnelscope completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "tunnelscope", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `tunnelscope man`: the page for section 1 on stdout, with a page per subcommand
/// folded in as its SUBCOMMANDS section lists them.
pub fn man() -> ExitCode {
    let page = clap_mangen::Man::new(Cli::command());
    match page.render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the man page: {e}");
            ExitCode::from(1)
        }
    }
}

/// `tunnelscope import-nginx FILE [-o OUT]`.
pub fn import_nginx(file: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let toml = match tunnelscope::nginx::import(&text, &file.display().to_string()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let written = match output {
        None => {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(toml.as_bytes());
            Ok(())
        }
        Some(path) => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, toml.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display())),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
