//! BENCHMARKS.md: the medians as a table, tunnelscope's ratios against nginx and
//! HAProxy with the goals from the issue, the load generator's own CPU use, the
//! machine, and every round's raw values.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::plan::{Figures, RunInfo, ECHO, HANDSHAKE_WORKERS, IDLE_SAMPLE, LARGE};
use crate::targets::Kind;

mod goals;

use self::goals::goal_lines;

/// The rows of the main table: key, label, decimals.
const MAIN_ROWS: &[(&str, &str, usize)] = &[
    ("echo.msgs", "echo: messages/s", 0),
    ("echo.p50", "echo: round trip p50 (ms)", 2),
    ("echo.p99", "echo: round trip p99 (ms)", 2),
    ("echo.cpu_us", "echo: proxy CPU per message (µs)", 2),
    ("large.mbs", "1 MiB messages: MB/s", 1),
    ("large.cpu_ms", "1 MiB messages: proxy CPU per MB (ms)", 3),
    ("hs.rate", "handshakes/s, plain", 0),
    ("hs.cpu_us", "proxy CPU per handshake, plain (µs)", 1),
    ("hs_tls.rate", "handshakes/s, TLS", 0),
    ("hs_tls.cpu_us", "proxy CPU per handshake, TLS (µs)", 1),
    ("idle.kib", "memory per idle tunnel, plain (KiB)", 2),
    ("idle.opened", "idle tunnels opened, plain", 0),
    (
        "idle.echo_ok_pct",
        "idle tunnels still echoing afterwards, plain (% of sample)",
        0,
    ),
    ("idle_tls.kib", "memory per idle tunnel, TLS (KiB)", 2),
    ("idle_tls.opened", "idle tunnels opened, TLS", 0),
    (
        "idle_tls.echo_ok_pct",
        "idle tunnels still echoing afterwards, TLS (% of sample)",
        0,
    ),
];

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn med(figs: &Figures, kind: Kind, key: &str) -> Option<f64> {
    figs.iter()
        .find(|((k, f), _)| *k == kind && *f == key)
        .and_then(|(_, v)| median(v))
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}"),
        None => "—".to_string(),
    }
}

fn shell(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) => {
            let s = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            s.lines().next().unwrap_or("").trim().to_string()
        }
        Err(_) => "(not found)".to_string(),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The heading of the section `loadgen soak --benchmarks` writes.
pub const SOAK_HEADING: &str = "## Reload under load (soak)";
/// Written by hand from `bench/spike.sh`'s figures (issue 16's engine prototypes).
pub const ENGINES_HEADING: &str = "## Relay engine prototypes";

/// The section of `doc` under `heading`, up to the next `## ` heading or the end.
pub fn section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let start = doc.find(heading)?;
    let rest = &doc[start..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| heading.len() + i + 1);
    Some(&rest[..end])
}

/// Puts `text` (a whole section, heading first) in place of the section under
/// `heading` in the file at `path`, or at its end.
pub fn replace_section(path: &Path, heading: &str, text: &str) -> Result<()> {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let new = match section(&doc, heading) {
        // A blank line before whatever section follows.
        Some(old) => doc.replacen(old, &format!("{}\n\n", text.trim_end()), 1),
        None => format!("{}\n{text}", doc.trim_end_matches('\n').to_owned() + "\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}

pub fn write(out: &Path, figs: &Figures, info: &RunInfo) -> Result<()> {
    let a = &info.args;
    let mut kinds = vec![Kind::Direct, Kind::Nginx, Kind::Haproxy, Kind::Tunnelscope];
    for extra in [
        Kind::TunnelscopeDashboard,
        Kind::TunnelscopeOneLoop,
        Kind::NginxTwoWorkers,
    ] {
        if figs.keys().any(|(k, _)| *k == extra) {
            kinds.push(extra);
        }
    }
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let mut s = String::new();
    let w = &mut s;
    writeln!(w, "# Benchmarks\n")?;
    writeln!(
        w,
        "tunnelscope against nginx and HAProxy, all on 127.0.0.1 in front of the same two Rust echo \
         backends, driven by the same load generator (`bench/loadgen`, tokio-tungstenite). \
         Generated by `{}` on {date}; every figure is the median of {} rounds, the targets \
         alternating within each round. The whole run took {:.0} s.\n",
        a.rerun,
        a.rounds,
        info.elapsed.as_secs_f64()
    )?;
    writeln!(w, "## Machine\n")?;
    writeln!(w, "- CPUs (nproc): {}", shell("nproc", &[]))?;
    writeln!(w, "- CPU model: {}", cpu_model())?;
    writeln!(w, "- kernel: {}", shell("uname", &["-sr"]))?;
    writeln!(w, "- nginx: {}", shell("nginx", &["-v"]))?;
    writeln!(w, "- HAProxy: {}", shell("haproxy", &["-v"]))?;
    writeln!(
        w,
        "- tunnelscope: {}",
        shell(&a.tunnelscope.to_string_lossy(), &["--version"])
    )?;
    writeln!(w, "- rustc: {}", shell("rustc", &["--version"]))?;
    let first = info.load_seen.first().cloned().unwrap_or_default();
    let last = info.load_seen.last().cloned().unwrap_or_default();
    let peak = info
        .load_seen
        .iter()
        .filter_map(|l| {
            l.rsplit(": ")
                .next()?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .fold(0.0f64, f64::max);
    writeln!(
        w,
        "- load average (1, 5, 15 min) at the {first}; at the {last}; highest 1-minute value seen between tests: {peak:.2}"
    )?;
    let mut other: Vec<f64> = figs
        .iter()
        .filter(|((_, key), _)| key.ends_with("other_pct"))
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    other.sort_by(|a, b| a.total_cmp(b));
    if let (Some(m), Some(hi)) = (median(&other), other.last()) {
        let noisy = other.iter().filter(|&&x| x > 25.0).count();
        writeln!(
            w,
            "- CPU used by other processes during the measured windows: median {m:.0} %, highest \
             {hi:.0} % of one core; {noisy} of {} windows above 25 %{}",
            other.len(),
            if noisy > 0 {
                " (**noisy**: the machine was shared; rates in those windows are low, the proxies' own CPU per unit is less affected)"
            } else {
                ""
            }
        )?;
    }
    writeln!(w)?;

    writeln!(w, "## Results\n")?;
    write!(w, "| figure |")?;
    for k in &kinds {
        write!(w, " {k} |")?;
    }
    writeln!(w)?;
    write!(w, "|---|")?;
    for _ in &kinds {
        write!(w, "---:|")?;
    }
    writeln!(w)?;
    for (key, label, dec) in MAIN_ROWS {
        write!(w, "| {label} |")?;
        for k in &kinds {
            write!(w, " {} |", fmt(med(figs, *k, key), *dec))?;
        }
        writeln!(w)?;
    }
    writeln!(
        w,
        "\n\"direct\" is the load generator talking to the backends without a proxy (TLS: the \
         backends terminate it): the physical limit of this machine and load generator. It has \
         no proxy CPU or memory to report. \"—\": not measured.\n"
    )?;

    writeln!(w, "## Goals\n")?;
    writeln!(
        w,
        "| goal | tunnelscope | reference | ratio | target | met |"
    )?;
    writeln!(w, "|---|---:|---:|---:|---|---|")?;
    for l in goal_lines(figs, &info.dashboard) {
        writeln!(w, "| {} |", l.join(" | "))?;
    }
    write!(w, "\nDashboard: {}.", info.dashboard)?;
    let (h, d) = (
        med(figs, Kind::Tunnelscope, "echo.cpu_us"),
        med(figs, Kind::TunnelscopeDashboard, "echo.cpu_us"),
    );
    if let (Some(h), Some(d)) = (h, d) {
        write!(
            w,
            " With it attached, tunnelscope's CPU per echoed message is {d:.2} µs against {h:.2} µs \
             headless ({:+.1} %); round trip p99 {} ms against {} ms.",
            100.0 * (d - h) / h,
            fmt(med(figs, Kind::TunnelscopeDashboard, "echo.p99"), 2),
            fmt(med(figs, Kind::Tunnelscope, "echo.p99"), 2),
        )?;
    }
    let (h, d) = (
        med(figs, Kind::Tunnelscope, "echo.main_share"),
        med(figs, Kind::TunnelscopeDashboard, "echo.main_share"),
    );
    if let (Some(h), Some(d)) = (h, d) {
        write!(
            w,
            " The dashboard's own work, measured apart from the noise of the machine: \
             tunnelscope's main thread, where it draws, used {d:.1} % of tunnelscope's CPU \
             with the dashboard attached ({h:.1} % headless); the tmux server drawing the \
             pane is in \"other\" below."
        )?;
    }
    writeln!(w, "\n")?;

    writeln!(w, "## Ratios: tunnelscope ÷ nginx and ÷ HAProxy\n")?;
    writeln!(w, "| figure | ÷ nginx | ÷ HAProxy | better is |")?;
    writeln!(w, "|---|---:|---:|---|")?;
    for (key, label, _) in MAIN_ROWS {
        if key.ends_with("opened") || key.ends_with("echo_ok_pct") {
            continue;
        }
        let t = med(figs, Kind::Tunnelscope, key);
        let r = |k| match (t, med(figs, k, key)) {
            (Some(t), Some(r)) if r > 0.0 => format!("{:.2}", t / r),
            _ => "—".to_string(),
        };
        let better = if key.contains("cpu") || key.contains(".p") || key.ends_with("kib") {
            "lower"
        } else {
            "higher"
        };
        writeln!(
            w,
            "| {label} | {} | {} | {better} |",
            r(Kind::Nginx),
            r(Kind::Haproxy)
        )?;
    }

    writeln!(w, "\n## Is the load generator the bottleneck?\n")?;
    let cores = shell("nproc", &[]).parse::<u32>().unwrap_or(1);
    writeln!(
        w,
        "Two checks. First, without a proxy in the path, how much more the same load \
         generator and backends do than through the best proxy (above 1: the load generator \
         produces more than any proxy relays here):\n"
    )?;
    writeln!(
        w,
        "| test | direct | best proxied | direct ÷ best proxied |"
    )?;
    writeln!(w, "|---|---:|---:|---:|")?;
    for (key, name) in [
        ("echo.msgs", "echo messages/s"),
        ("large.mbs", "1 MiB messages MB/s"),
        ("hs.rate", "handshakes/s, plain"),
        ("hs_tls.rate", "handshakes/s, TLS"),
    ] {
        let d = med(figs, Kind::Direct, key);
        let best = [Kind::Nginx, Kind::Haproxy, Kind::Tunnelscope]
            .iter()
            .filter_map(|k| med(figs, *k, key))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let ratio = match (d, best) {
            (Some(d), Some(b)) if b > 0.0 => format!("{:.2}", d / b),
            _ => "—".to_string(),
        };
        writeln!(w, "| {name} | {} | {} | {ratio} |", fmt(d, 0), fmt(best, 0))?;
    }
    writeln!(
        w,
        "\nSecond, the CPU each party used during the measured windows, in % of one core (this \
         machine has {cores} cores: {}% is all of it). The load generator is one process (a \
         tokio runtime with one thread per core); the two backends are one thread each. When \
         the total is near {}%, the machine is saturated: all parties share the same cores, so a \
         proxy that needs more CPU per message leaves less to the load generator and backends, \
         and the proxied rates measure the whole machine's work per message. The proxy's own \
         share is the \"proxy CPU per …\" rows, which do not depend on that. \"other \
         processes\" is the rest of the machine's busy time during the window (`/proc/stat`): \
         other users of a shared machine, and tmux drawing the dashboard; when it is large, \
         the rates above are noisy.\n",
        cores * 100,
        cores * 100
    )?;
    writeln!(
        w,
        "| test | target | proxy | load generator | backends | total | other processes |"
    )?;
    writeln!(w, "|---|---|---:|---:|---:|---:|---:|")?;
    for (pre, name) in [
        ("echo", "echo"),
        ("large", "1 MiB"),
        ("hs", "handshakes"),
        ("hs_tls", "handshakes TLS"),
    ] {
        for k in &kinds {
            let p = med(figs, *k, &format!("{pre}.proxy_pct"));
            let l = med(figs, *k, &format!("{pre}.loadgen_pct"));
            let b = med(figs, *k, &format!("{pre}.backends_pct"));
            let (Some(l), Some(b)) = (l, b) else {
                continue;
            };
            let p = if *k == Kind::Direct { None } else { p };
            let total = p.unwrap_or(0.0) + l + b;
            let other = med(figs, *k, &format!("{pre}.other_pct"));
            writeln!(
                w,
                "| {name} | {k} | {} | {l:.0} | {b:.0} | {total:.0} | {} |",
                fmt(p, 0),
                fmt(other, 0)
            )?;
        }
    }

    writeln!(w, "\n## Method\n")?;
    writeln!(
        w,
        "- **echo**: {} tunnels, {} binary messages of {} bytes in flight on each; every echo is \
         answered with a new message (the client batches the writes it can make at once). \
         messages/s counts echoes received in a {} s window after {} s of warm-up; the round \
         trip is measured from a timestamp in each message. CPU per message is the proxy's \
         user+system time (from `/proc/PID/stat`, nginx's master and worker together) over the \
         window divided by the echoes; each echo crosses the proxy twice.",
        ECHO.tunnels, ECHO.in_flight, ECHO.size, a.echo_secs, a.warm_secs
    )?;
    writeln!(
        w,
        "- **1 MiB messages**: {} tunnels, {} messages of 1 MiB in flight on each, {} s window. \
         MB/s = echoed payload (10^6 bytes) per second, each MB crossing the proxy once each way; \
         CPU per MB likewise.",
        LARGE.tunnels, LARGE.in_flight, a.large_secs
    )?;
    writeln!(
        w,
        "- **handshakes**: {HANDSHAKE_WORKERS} workers each connect, upgrade, send a Close and wait \
         for the connection to end, in a loop, for {} s. TLS: a fresh full handshake every time \
         (the client never resumes a session), ECDSA P-256 certificate made with rcgen for this \
         run and used by every TLS terminator; TLS ends at the proxy, the backends are plain.",
        a.handshake_secs
    )?;
    writeln!(
        w,
        "- **idle memory**: {} tunnels opened (64 handshakes at a time) and left idle; the \
         proxy's VmRSS (`/proc/PID/status`, nginx master + worker) {} s after the last one opened \
         (idle tunnels, once every allocator has given back what the burst of handshakes \
         left), minus before the first, divided by the tunnels. Then one message on {IDLE_SAMPLE} \
         tunnels spread over them must come back. Open files: 20,000 per process.",
        a.idle_tunnels,
        crate::plan::IDLE_SETTLE.as_secs()
    )?;
    writeln!(
        w,
        "- Each target is started fresh for each test, checked with one echo, measured, and \
         stopped. The backends are two processes of `loadgen backend` (tokio-tungstenite, one \
         thread each). nginx: the classic WebSocket configuration (map $http_upgrade \
         $connection_upgrade, upstream with least_conn, proxy_http_version 1.1, \
         Upgrade/Connection/Host headers, proxy_read_timeout 3600s), 1 worker, \
         worker_connections 20000, access_log off; nginx, 2 workers: the same with \
         `worker_processes 2`, against tunnelscope at its defaults (echo only). HAProxy: \
         mode http, nbthread 1, balance \
         leastconn, timeout tunnel 3600s, maxconn 9000. tunnelscope: `--headless --log warn`, \
         two listeners, pool with least_conn, idle = \"1h\", everything else default: one \
         event loop per CPU, each a thread with its own SO_REUSEPORT socket. tunnelscope, \
         threads = 1: the same with `[proxy] threads = 1`, one event loop as nginx has one \
         worker and HAProxy one thread (echo and handshakes only). tunnelscope + dashboard: the same file without `--headless`, \
         drawing on the tty of a detached 160×48 tmux pane (tmux's CPU counts as other \
         processes). It is the load generator's child, like every target, not the pane's \
         command: a pane's command gets a session of its own, which under the kernel's \
         autogroup scheduling is a CPU share of its own and cost even headless tunnelscope \
         a quarter of its echo rate. Every target runs in the load generator's session. \
         The exact files are written by `bench/loadgen/src/targets/confs.rs`."
    )?;

    writeln!(w, "\n## Rerun\n")?;
    writeln!(w, "```sh\n{}\n```\n", a.rerun)?;
    writeln!(
        w,
        "It installs nginx and HAProxy from Debian if missing (and leaves no service of theirs \
         running), builds tunnelscope and the load generator in release mode, runs everything \
         above and rewrites this file. Options: `bench/run.sh --rounds 5`, `--dashboard on|off`, \
         `--quick` (short windows, 1 round: a smoke test). Keep the machine otherwise idle: every \
         figure here is sensitive to other load."
    )?;

    if !info.notes.is_empty() {
        writeln!(w, "\n## Failures during the run\n")?;
        for n in &info.notes {
            writeln!(w, "- {}", n.replace('\n', " "))?;
        }
    }

    writeln!(w, "\n## Every round\n")?;
    writeln!(
        w,
        "<details><summary>Values per round, in run order</summary>\n"
    )?;
    writeln!(w, "| target | figure | rounds |")?;
    writeln!(w, "|---|---|---|")?;
    for ((k, key), v) in figs {
        let vals: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
        writeln!(w, "| {k} | {key} | {} |", vals.join(", "))?;
    }
    writeln!(w, "\nLoad average before each test:\n")?;
    for l in &info.load_seen {
        writeln!(w, "- {l}")?;
    }
    writeln!(w, "\n</details>")?;
    // The soak's and the capture's sections (`bench/soak.sh`, `bench/capture.sh`
    // write them) and the engine prototypes' are kept as they were.
    let old = std::fs::read_to_string(out).unwrap_or_default();
    for heading in [SOAK_HEADING, crate::capture::HEADING, ENGINES_HEADING] {
        if let Some(kept) = section(&old, heading) {
            s.push('\n');
            s.push_str(kept);
        }
    }
    std::fs::write(out, s)?;

    println!(
        "\n{:<46} {:>14} {:>22} {:>8}  {:<14} met",
        "goal", "tunnelscope", "reference", "ratio", "target"
    );
    for l in goal_lines(figs, &info.dashboard) {
        println!(
            "{:<46} {:>14} {:>22} {:>8}  {:<14} {}",
            l[0],
            l[1],
            l[2],
            l[3],
            l[4],
            l[5].replace('*', "")
        );
    }
    Ok(())
}
