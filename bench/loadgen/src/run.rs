//! The whole benchmark in one run: starts the backends, then round after round runs
//! every test against every target (a fresh target process per test, the order of
//! targets rotated each round), keeps each figure of each round, and hands the
//! medians to the report.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::load::{self, StreamSpec};
use crate::net;
pub use crate::plan::{Args, ECHO, HANDSHAKE_WORKERS, IDLE_SAMPLE, IDLE_SETTLE, LARGE};
use crate::plan::{Figures, RunInfo, FIGURE_KEYS};
use crate::procfs::{self, Meter};
use crate::report;
use crate::targets::{self, Env, Kind, Running};

/// The tests of one round, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Echo,
    Large,
    Handshake { tls: bool },
    Idle { tls: bool },
}

impl Test {
    pub fn name(self) -> &'static str {
        match self {
            Test::Echo => "echo",
            Test::Large => "large",
            Test::Handshake { tls: false } => "handshake",
            Test::Handshake { tls: true } => "handshake-tls",
            Test::Idle { tls: false } => "idle",
            Test::Idle { tls: true } => "idle-tls",
        }
    }
}

pub fn main(mut args: Args) -> Result<()> {
    raise_nofile();
    // tmux runs it from the work directory.
    args.tunnelscope = std::fs::canonicalize(&args.tunnelscope).with_context(|| {
        format!(
            "{}: no such binary (cargo build --release?)",
            args.tunnelscope.display()
        )
    })?;
    std::fs::create_dir_all(args.workdir.join("nginx-tmp"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut env = Env::start(args.workdir.clone(), args.tunnelscope.clone())?;
    let r = rt.block_on(run(&args, &env));
    env.stop();
    let (figs, info) = r?;
    report::write(&args.out, &figs, &info)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

/// The descriptor limit up to the hard limit (8,000 tunnels need 16,000 here).
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

async fn run(args: &Args, env: &Env) -> Result<(Figures, RunInfo)> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let mut load_seen = vec![format!("start: {}", procfs::loadavg())];
    let dashboard = match args.dashboard.as_str() {
        "off" => "off (--dashboard off)".to_string(),
        "on" => "on (--dashboard on)".to_string(),
        _ => {
            let b = env.backends_plain;
            if targets::dashboard_available(&env.dir, &env.tunnelscope, b)? {
                "detected".to_string()
            } else {
                println!("dashboard: not available yet");
                "not available yet".to_string()
            }
        }
    };
    let with_dashboard = dashboard == "detected" || args.dashboard == "on";
    let all = [
        Test::Echo,
        Test::Large,
        Test::Handshake { tls: false },
        Test::Handshake { tls: true },
        Test::Idle { tls: false },
        Test::Idle { tls: true },
    ];
    let tests: Vec<Test> = all
        .into_iter()
        .filter(|t| args.tests.is_empty() || args.tests.iter().any(|n| n == t.name()))
        .collect();
    let mut figs = Figures::new();
    for round in 0..args.rounds {
        println!(
            "== round {} of {} (load {})",
            round + 1,
            args.rounds,
            procfs::loadavg()
        );
        for &test in &tests {
            let mut kinds = vec![Kind::Direct, Kind::Nginx, Kind::Haproxy, Kind::Tunnelscope];
            if matches!(test, Test::Idle { .. }) {
                // No proxy, no proxy memory to measure.
                kinds.retain(|&k| k != Kind::Direct);
            }
            if test == Test::Echo && with_dashboard {
                kinds.push(Kind::TunnelscopeDashboard);
            }
            if matches!(test, Test::Echo | Test::Handshake { .. }) {
                kinds.push(Kind::TunnelscopeOneLoop);
            }
            if test == Test::Echo {
                kinds.push(Kind::NginxTwoWorkers);
            }
            let n = kinds.len();
            kinds.rotate_left(round % n);
            for kind in kinds {
                load_seen.push(format!(
                    "round {} {} {kind}: {}",
                    round + 1,
                    test.name(),
                    procfs::loadavg()
                ));
                match one(args, env, kind, test, &mut figs).await {
                    Ok(line) => println!("  {:<13} {:<24} {line}", test.name(), kind.to_string()),
                    Err(e) => {
                        let msg = format!("round {} {} {kind}: {e:#}", round + 1, test.name());
                        eprintln!("  FAILED {msg}");
                        notes.push(msg);
                    }
                }
                // Let the backends finish closing the last test's connections.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    load_seen.push(format!("end: {}", procfs::loadavg()));
    let info = RunInfo {
        args: args.clone(),
        dashboard,
        load_seen,
        elapsed: started.elapsed(),
        notes,
    };
    Ok((figs, info))
}

fn push(figs: &mut Figures, kind: Kind, key: &'static str, v: f64) {
    figs.entry((kind, key)).or_default().push(v);
}

/// Runs one test against a fresh instance of one target; returns a one-line summary.
async fn one(args: &Args, env: &Env, kind: Kind, test: Test, figs: &mut Figures) -> Result<String> {
    let target = env.start_target(kind)?;
    let r = measure(args, env, &target, test, figs).await;
    target.stop(&env.dir);
    r
}

async fn measure(
    args: &Args,
    env: &Env,
    target: &Running,
    test: Test,
    figs: &mut Figures,
) -> Result<String> {
    let kind = target.kind;
    let meter = Meter {
        proxy: target.pid,
        backends: env.backend_pids.clone(),
    };
    let warm = Duration::from_secs_f64(args.warm_secs);
    let tls = matches!(
        test,
        Test::Handshake { tls: true } | Test::Idle { tls: true }
    );
    let ep = if tls { &target.tls } else { &target.plain };
    // One tunnel end to end first: the target works, and lazy set-up is done.
    check_one(ep).await?;
    let proxied = kind != Kind::Direct;
    match test {
        Test::Echo | Test::Large => {
            let echo = test == Test::Echo;
            let secs = if echo {
                args.echo_secs
            } else {
                args.large_secs
            };
            let spec = StreamSpec {
                warm,
                measure: Duration::from_secs_f64(secs),
                ..if echo { ECHO } else { LARGE }
            };
            let run = load::stream(ep, spec, &meter).await?;
            if run.broken > 0 {
                anyhow::bail!("{} of {} tunnels broke", run.broken, spec.tunnels);
            }
            let w = run.window;
            let (p, l, b) = (
                w.pct(w.proxy_cpu),
                w.pct(w.loadgen_cpu),
                w.pct(w.backends_cpu),
            );
            let pre = if echo { "echo" } else { "large" };
            push(figs, kind, key(pre, "proxy_pct"), p);
            push(figs, kind, key(pre, "loadgen_pct"), l);
            push(figs, kind, key(pre, "backends_pct"), b);
            push(figs, kind, key(pre, "other_pct"), w.pct(w.other_cpu));
            if echo {
                let rate = run.per_sec();
                let (p50, p99) = (run.rtt_quantile_ms(0.5), run.rtt_quantile_ms(0.99));
                push(figs, kind, "echo.msgs", rate);
                push(figs, kind, "echo.p50", p50);
                push(figs, kind, "echo.p99", p99);
                let cpu_us = 1e6 * w.proxy_cpu / run.messages.max(1) as f64;
                if proxied {
                    push(figs, kind, "echo.cpu_us", cpu_us);
                }
                if matches!(kind, Kind::Tunnelscope | Kind::TunnelscopeDashboard) {
                    // Where the dashboard draws: its own share of the proxy's CPU.
                    let share = 100.0 * w.proxy_main_cpu / w.proxy_cpu.max(1e-9);
                    push(figs, kind, "echo.main_share", share);
                }
                Ok(format!(
                    "{rate:>9.0} msg/s  p50 {p50:.2} ms  p99 {p99:.2} ms  {cpu_us:.2} µs CPU/msg  cpu%: proxy {p:.0} loadgen {l:.0} backends {b:.0} other {:.0}",
                    w.pct(w.other_cpu)
                ))
            } else {
                let mb = run.messages as f64 * spec.size as f64 / 1e6;
                let rate = mb / w.secs;
                let cpu_ms = 1e3 * w.proxy_cpu / mb.max(1e-9);
                push(figs, kind, "large.mbs", rate);
                if proxied {
                    push(figs, kind, "large.cpu_ms", cpu_ms);
                }
                Ok(format!(
                    "{rate:>9.1} MB/s  {cpu_ms:.3} ms CPU/MB  cpu%: proxy {p:.0} loadgen {l:.0} backends {b:.0} other {:.0}",
                    w.pct(w.other_cpu)
                ))
            }
        }
        Test::Handshake { tls } => {
            let secs = Duration::from_secs_f64(args.handshake_secs);
            let run = load::handshakes(ep, HANDSHAKE_WORKERS, warm / 2, secs, &meter).await?;
            let w = run.window;
            let rate = run.done as f64 / w.secs;
            let cpu_us = 1e6 * w.proxy_cpu / run.done.max(1) as f64;
            let pre = if tls { "hs_tls" } else { "hs" };
            push(figs, kind, key(pre, "rate"), rate);
            if proxied {
                push(figs, kind, key(pre, "cpu_us"), cpu_us);
            }
            push(figs, kind, key(pre, "failed"), run.failed as f64);
            let (p, l, b) = (
                w.pct(w.proxy_cpu),
                w.pct(w.loadgen_cpu),
                w.pct(w.backends_cpu),
            );
            push(figs, kind, key(pre, "proxy_pct"), p);
            push(figs, kind, key(pre, "loadgen_pct"), l);
            push(figs, kind, key(pre, "backends_pct"), b);
            push(figs, kind, key(pre, "other_pct"), w.pct(w.other_cpu));
            Ok(format!(
                "{rate:>9.0} hs/s  {cpu_us:.1} µs CPU/hs  failed {}  cpu%: proxy {p:.0} loadgen {l:.0} backends {b:.0} other {:.0}",
                run.failed,
                w.pct(w.other_cpu)
            ))
        }
        Test::Idle { tls } => {
            let run = load::idle(ep, args.idle_tunnels, IDLE_SAMPLE, IDLE_SETTLE, &meter).await?;
            let pre = if tls { "idle_tls" } else { "idle" };
            let kib = run.kib_per_tunnel();
            push(figs, kind, key(pre, "kib"), kib);
            push(figs, kind, key(pre, "opened"), run.opened as f64);
            push(
                figs,
                kind,
                key(pre, "echo_ok_pct"),
                100.0 * run.echoed as f64 / run.sampled.max(1) as f64,
            );
            Ok(format!(
                "{kib:>7.2} KiB/tunnel  opened {}/{} in {:.1}s  rss {} -> {} KiB  sample echoed {}/{}",
                run.opened, run.wanted, run.open_secs, run.rss_before_kib, run.rss_after_kib, run.echoed, run.sampled
            ))
        }
    }
}

/// Figure keys are `'static` so the table stays a plain map; the few combinations
/// are spelled out here.
fn key(prefix: &str, name: &str) -> &'static str {
    let k = format!("{prefix}.{name}");
    FIGURE_KEYS
        .iter()
        .copied()
        .find(|&s| s == k)
        .unwrap_or_else(|| panic!("unknown figure key {k}"))
}

/// Opens one tunnel, echoes one message, closes.
async fn check_one(ep: &net::Endpoint) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = net::connect(ep, 0, net::ws_config(4096)).await?;
    tokio::time::timeout(Duration::from_secs(5), async {
        ws.send(Message::Binary(bytes::Bytes::from_static(b"ping")))
            .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => anyhow::bail!("closed before the echo"),
            }
        }
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
        Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("no echo within 5s through {}", ep.describe()))?
}
