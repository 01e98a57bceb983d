//! `loadgen`: tunnelscope's benchmark against nginx and HAProxy.
//!
//! - `loadgen run`: the whole benchmark (started by `bench/run.sh`), writes BENCHMARKS.md.
//! - `loadgen backend`: one echo backend.
//! - `loadgen echo|large|handshake|idle`: one workload against an address you give,
//!   for poking at a single target by hand (`--pid` to report its CPU and memory).
//! - `loadgen soak`: the soak test (started by `bench/soak.sh`): 8,000 tunnels for a
//!   minute, checked messages both ways, the proxy's memory and descriptors.
//! - `loadgen capture`: the proxy's CPU per message with capture off, watched and
//!   all (started by `bench/capture.sh`).

mod backend;
mod capture;
mod deflate;
mod load;
mod net;
mod plan;
mod procfs;
mod report;
mod run;
mod soak;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "Load generator and echo backends for tunnelscope's benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The whole benchmark: every target, every test, several rounds; writes the report.
    Run(run::Args),
    /// An echo backend (plain, and TLS if asked).
    Backend(backend::Args),
    /// 64-byte echo: 100 tunnels, 8 in flight each.
    Echo(One),
    /// 1 MiB messages: 8 tunnels, 2 in flight each.
    Large(One),
    /// Connect, upgrade, close, 32 at a time.
    Handshake(One),
    /// Hold idle tunnels, report the proxy's memory growth per tunnel.
    Idle(One),
    /// Soak: thousands of tunnels for a minute, sequence-numbered and checksummed
    /// messages both ways; checks nothing is lost and the proxy's memory and
    /// descriptors (started by `bench/soak.sh`).
    Soak(soak::Args),
    /// What whole-message capture costs per message: capture off, watched with no
    /// one watching, all (started by `bench/capture.sh`).
    Capture(capture::Args),
}

/// One workload against one address.
#[derive(clap::Args, Debug)]
struct One {
    /// Address to connect to (repeat to spread connections over several).
    #[arg(long, required = true)]
    addr: Vec<SocketAddr>,
    /// Use TLS, trusting this PEM certificate (made for "localhost").
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The proxy's PID (CPU and memory are read for it and its descendants).
    #[arg(long)]
    pid: Option<u32>,
    /// Measured seconds.
    #[arg(long, default_value_t = 4.0)]
    secs: f64,
    /// Warm-up seconds (idle: how long the tunnels sit idle before the memory is read).
    #[arg(long, default_value_t = 1.0)]
    warm: f64,
    /// Idle tunnels to hold (idle only).
    #[arg(long, default_value_t = 8000)]
    tunnels: usize,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Backend(a) => backend::main(a),
        Cmd::Echo(o) => one(o, "echo"),
        Cmd::Large(o) => one(o, "large"),
        Cmd::Handshake(o) => one(o, "handshake"),
        Cmd::Idle(o) => one(o, "idle"),
        Cmd::Soak(a) => soak::main(a),
        Cmd::Capture(a) => capture::main(a),
    }
}

fn one(o: One, what: &str) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let ep = net::Endpoint {
            addrs: o.addr.clone(),
            tls: match &o.tls_cert {
                Some(c) => Some(net::tls_connector(c)?),
                None => None,
            },
        };
        let meter = procfs::Meter {
            proxy: o.pid,
            backends: Vec::new(),
        };
        let (warm, measure) = (Duration::from_secs_f64(o.warm), Duration::from_secs_f64(o.secs));
        match what {
            "echo" | "large" => {
                let base = if what == "echo" { run::ECHO } else { run::LARGE };
                let spec = load::StreamSpec { warm, measure, ..base };
                let r = load::stream(&ep, spec, &meter).await?;
                let w = r.window;
                println!(
                    "{:.0} msg/s ({:.1} MB/s)  p50 {:.2} ms  p99 {:.2} ms  proxy CPU {:.2} µs/msg  cpu%: proxy {:.0} loadgen {:.0}  broken {}",
                    r.per_sec(),
                    r.per_sec() * spec.size as f64 / 1e6,
                    r.rtt_quantile_ms(0.5),
                    r.rtt_quantile_ms(0.99),
                    1e6 * w.proxy_cpu / r.messages.max(1) as f64,
                    w.pct(w.proxy_cpu),
                    w.pct(w.loadgen_cpu),
                    r.broken
                );
            }
            "handshake" => {
                let r = load::handshakes(&ep, run::HANDSHAKE_WORKERS, warm, measure, &meter).await?;
                let w = r.window;
                println!(
                    "{:.0} handshakes/s  proxy CPU {:.1} µs/handshake  failed {}  cpu%: proxy {:.0} loadgen {:.0}",
                    r.done as f64 / w.secs,
                    1e6 * w.proxy_cpu / r.done.max(1) as f64,
                    r.failed,
                    w.pct(w.proxy_cpu),
                    w.pct(w.loadgen_cpu)
                );
            }
            _ => {
                let r = load::idle(&ep, o.tunnels, run::IDLE_SAMPLE, warm, &meter).await?;
                println!(
                    "opened {}/{} in {:.1}s  rss {} -> {} KiB = {:.2} KiB/tunnel  sample echoed {}/{}",
                    r.opened,
                    r.wanted,
                    r.open_secs,
                    r.rss_before_kib,
                    r.rss_after_kib,
                    r.kib_per_tunnel(),
                    r.echoed,
                    r.sampled
                );
            }
        }
        anyhow::Ok(())
    })
}
