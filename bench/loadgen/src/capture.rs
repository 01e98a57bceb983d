//! `loadgen capture`: what whole-message capture costs per relayed message. The
//! same 64-byte echo load (100 tunnels, 8 in flight each, one event loop) runs
//! through the release tunnelscope with `[inspect] capture` off, `watched` with
//! no one watching (the default), and `all` (as when the dashboard is open), a
//! fresh process per run, modes interleaved round after round; the proxy's CPU per
//! message is compared with capture off measured in the same rounds. Writes the
//! "Capture cost" section of BENCHMARKS.md (`bench/capture.sh`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::load;
use crate::procfs::Meter;
use crate::targets::{self, Env};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    pub tunnelscope: PathBuf,
    #[arg(long)]
    pub workdir: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 4.0)]
    pub secs: f64,
}

/// The heading of the section this writes (the main report keeps it).
pub const HEADING: &str = "## Capture cost";

/// (capture mode, compressed load): the plain load with capture off, watched and
/// all, then the permessage-deflate load with capture off and all (inflating).
/// The loads: 0 the 64-byte echo, 1 deflated JSON without context takeover, 2
/// deflated JSON with it.
const MODES: [(&str, u8); 7] = [
    ("off", 0),
    ("watched", 0),
    ("all", 0),
    ("off", 1),
    ("all", 1),
    ("off", 2),
    ("all", 2),
];

pub fn main(args: Args) -> Result<()> {
    crate::run::raise_nofile();
    let bin = std::fs::canonicalize(&args.tunnelscope)
        .with_context(|| format!("{}: no such binary", args.tunnelscope.display()))?;
    std::fs::create_dir_all(&args.workdir)?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut env = Env::start(args.workdir.clone(), bin.clone())?;
    let result = rt.block_on(measure(&args, &env, &bin));
    env.stop();
    let (per_mode, inflate) = result?;
    let text = report(&args, &per_mode, &inflate);
    crate::report::replace_section(&args.out, HEADING, &text)?;
    print!("{text}");
    Ok(())
}

/// Standalone inflate figures: messages per measurement, over as many contexts
/// as the load has tunnel directions.
const INFLATE_MESSAGES: usize = 100_000;
const INFLATE_CONTEXTS: usize = 200;

/// µs of proxy CPU per message, per mode, one figure per round; then, one per
/// round, µs to inflate one message of the takeover stream alone.
async fn measure(
    args: &Args,
    env: &Env,
    bin: &std::path::Path,
) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let mut per_mode = vec![Vec::new(); MODES.len()];
    let mut inflate = Vec::new();
    // Two compressing echo backends run here, beside the load (the config has two).
    let mut deflate_addrs = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        deflate_addrs.push(listener.local_addr()?);
        tokio::spawn(crate::deflate::serve(listener));
    }
    for round in 0..args.rounds {
        let alone = crate::deflate::inflate_alone(INFLATE_MESSAGES, INFLATE_CONTEXTS);
        println!("round {} inflating alone: {alone:.3} µs/msg", round + 1);
        inflate.push(alone);
        // Rotate the order so no mode always runs first on a warming machine.
        for k in 0..MODES.len() {
            let m = (k + round) % MODES.len();
            let (mode, deflated) = MODES[m];
            let plain = targets::free_port()?;
            let tls = targets::free_port()?;
            let d = &env.dir;
            let conf = d.join(format!("capture-{mode}-{deflated}.toml"));
            let text = format!(
                "[proxy]\nthreads = 1\n\n[inspect]\ncapture = \"{mode}\"\n\n{}",
                targets::confs::tunnelscope_conf(
                    plain,
                    tls,
                    if deflated > 0 {
                        [deflate_addrs[0], deflate_addrs[1]]
                    } else {
                        env.backends_plain
                    },
                    &d.join("cert.pem"),
                    &d.join("key.pem")
                )
            );
            std::fs::write(&conf, text)?;
            let log = format!("capture-{mode}.log");
            let mut child = targets::spawn_tunnelscope(d, &log, bin, &conf)?;
            let pid = child.id();
            targets::wait_listening(&[plain, tls], "tunnelscope", &d.join(&log))?;
            let ep = crate::net::Endpoint {
                addrs: vec![plain],
                tls: None,
            };
            let meter = Meter {
                proxy: Some(pid),
                backends: env.backend_pids.clone(),
            };
            let spec = load::StreamSpec {
                warm: Duration::from_secs(1),
                measure: Duration::from_secs_f64(args.secs),
                ..crate::run::ECHO
            };
            let outcome = if deflated > 0 {
                let r = crate::deflate::load(
                    plain,
                    spec.tunnels,
                    spec.in_flight,
                    spec.warm,
                    spec.measure,
                    &meter,
                    deflated == 2,
                )
                .await;
                r.map(|r| (r.messages, r.window, 0))
            } else {
                load::stream(&ep, spec, &meter)
                    .await
                    .map(|r| (r.messages, r.window, r.broken))
            };
            targets::terminate(d, pid, Some(&mut child), Duration::from_secs(5));
            let (messages, window, broken) = outcome?;
            let us = 1e6 * window.proxy_cpu / messages.max(1) as f64;
            println!(
                "round {} capture={mode:<8}{} {:>8.0} msg/s  {us:.2} µs/msg  broken {broken}",
                round + 1,
                [" plain   ", " deflate ", " takeover"][deflated as usize],
                messages as f64 / window.secs,
            );
            per_mode[m].push(us);
        }
    }
    Ok((per_mode, inflate))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn report(args: &Args, per_mode: &[Vec<f64>], inflate: &[f64]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Written by `bench/capture.sh` on {}: 100 tunnels, 8 messages in flight each, through the release binary with one event loop; {} rounds of {} s per row, a fresh process per run, rows rotated each round. The plain load is the benchmark's 64-byte echo; the compressed loads are a 212-byte JSON text deflated (zlib-rs at the default level, whose stream is zlib's, as browsers, Node's `ws` and Python's `websockets` compress; before 2026-12-05 miniz_oxide's, whose stream cost more to inflate, so earlier takeover figures do not compare) by peers that negotiate permessage-deflate without context takeover (each message about 170 bytes on its own: capture keeps it whole and inflates it only when read) and with it (one context per direction: capture must inflate every message as it passes to stay in step). The proxy's CPU per relayed message, median of the rounds; ÷ off is the median of each round's ratio against capture off under the same load in the same round, so the machine's drift between rounds cancels. Targets: `all` (every tunnel captured, as while the dashboard is open) at most 1.10x; `watched` with no one watching (the default) 1.00x.\n",
        chrono_now(),
        args.rounds,
        args.secs
    );
    let _ = writeln!(
        s,
        "| load | capture | µs/msg (median) | ÷ off | target | met | rounds |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---|---|");
    for (i, (mode, deflated)) in MODES.iter().enumerate() {
        // Each round's figure against capture off in the same round, then the
        // median: a shared machine drifts between rounds more than capture costs.
        let base = MODES
            .iter()
            .position(|(m, d)| *m == "off" && d == deflated)
            .map(|b| &per_mode[b]);
        let med = median(&per_mode[i]);
        let ratios: Vec<f64> = base.map_or_else(Vec::new, |b| {
            per_mode[i]
                .iter()
                .zip(b)
                .filter(|(_, off)| **off > 0.0)
                .map(|(v, off)| v / off)
                .collect()
        });
        let ratio = median(&ratios);
        let (target, met) = match *mode {
            "off" => ("-", "-".to_string()),
            "watched" => ("≤ 1.00x (noise ±3%)", yes(ratio <= 1.03)),
            _ => ("≤ 1.10x", yes(ratio <= 1.10)),
        };
        let rounds: Vec<String> = per_mode[i].iter().map(|v| format!("{v:.2}")).collect();
        let load = [
            "64 B echo",
            "deflated JSON",
            "deflated JSON, context takeover",
        ][*deflated as usize];
        let _ = writeln!(
            s,
            "| {load} | {mode} | {med:.2} | {ratio:.2}x | {target} | {met} | {} |",
            rounds.join(" ")
        );
    }
    // Each echoed message crosses the proxy twice, and each direction inflates it
    // in its own context: the least a capture showing the text can add.
    let takeover_off = MODES.iter().position(|&(m, d)| m == "off" && d == 2);
    let floors: Vec<f64> = takeover_off.map_or_else(Vec::new, |b| {
        per_mode[b]
            .iter()
            .zip(inflate)
            .filter(|(off, _)| **off > 0.0)
            .map(|(off, alone)| (off + 2.0 * alone) / off)
            .collect()
    });
    let _ = writeln!(
        s,
        "\nInflating alone: the load generator inflates the same context-takeover stream with the proxy's inflater (zlib-rs), {INFLATE_MESSAGES} messages once per round in {INFLATE_CONTEXTS} contexts taken in turn (one per direction of the load's 100 tunnels, so each is as cold as the proxy finds it), with nothing else: {:.3} µs per message (median; rounds {}). Every echoed message is inflated twice, once per direction, so no capture that keeps the inflated text can cost less than {:.2}x capture off on this load (median of the rounds' (off + 2 × inflate) ÷ off): {}",
        median(inflate),
        inflate.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" "),
        median(&floors),
        if median(&floors) > 1.10 {
            "the 1.10x target is out of reach for context takeover by the inflating alone, whatever the capture does besides."
        } else {
            "the inflating alone leaves room under the 1.10x target."
        },
    );
    let _ = writeln!(s, "\nWhere the cost goes (2026-12-05; perf, and paired runs of prototypes): capture is memory, not work. With capture on and no record written (the same per-frame code, the store's writes skipped), the proxy costs what it does with capture off (1.01x); writing each message's record into a ring that fits in cache (a 4 KiB budget per direction) costs 1.04-1.05x, and into the 64 MiB the default budgets allow, 1.10-1.17x: each record goes to lines last written 64 MiB ago, so the stores wait on memory. What is done about it: a record header is 24 bytes for a message in one frame (48 for the rest), the capture's hot state is one cache line, and before a read is scanned the lines its records will take are asked for (without it only a read's first record found its lines waiting). Prototypes set aside, each in paired runs against capture off: one record per read holding the raw frames as they came (one copy per read, no per-frame work, unmasked only when read), 1.07-1.11x, and in 7 paired rounds against the store as it is now, the same (1.55 and 1.55 µs, capture off 1.42): the store is at what writing the messages into that much memory costs on this machine; the same prototype with non-temporal stores, 1.08x without the fence that publishing to readers needs and 1.10x with it; writing a record in one go when its frame is whole in the read, no change. The plain target therefore sits at this machine's floor: a ring that fits in cache (1.04-1.05x) plus what writing to cold memory costs (about 5%), run to run 1.09-1.13x.");
    s
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn chrono_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    out.unwrap_or_default()
}
