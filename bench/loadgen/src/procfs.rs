//! What a process costs, read from /proc: CPU time (user + system, from
//! `/proc/PID/stat`) and resident memory (`VmRSS` from `/proc/PID/status`), summed
//! over the process and all its descendants (nginx: the master and its workers).

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

/// Clock ticks per second, the unit of `utime` and `stime`.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (ppid, utime + stime in ticks) of one process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    stat_file(&format!("/proc/{pid}/stat"))
}

/// (ppid, utime + stime in ticks) from a `stat` file of /proc: a process's, or one
/// thread's (`/proc/PID/task/TID/stat`, which has the same fields).
fn stat_file(path: &str) -> Option<(u32, u64)> {
    let s = fs::read_to_string(path).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU seconds used so far by one thread of `pid`: its main thread when `tid == pid`.
/// tunnelscope draws its dashboard on its main thread (the relay runs on others).
pub fn thread_cpu_seconds(pid: u32, tid: u32) -> f64 {
    stat_file(&format!("/proc/{pid}/task/{tid}/stat")).map_or(0.0, |s| s.1 as f64 / clk_tck())
}

/// The process and every descendant alive now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = stat(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied());
        }
        i += 1;
    }
    out
}

/// CPU seconds (user + system) used so far by the process and its descendants.
pub fn cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root)
        .into_iter()
        .filter_map(|p| stat(p).map(|s| s.1))
        .sum();
    ticks as f64 / clk_tck()
}

/// Resident memory in KiB of the process and its descendants.
pub fn rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|p| {
            let s = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Busy CPU seconds of the whole machine so far, all cores (from `/proc/stat`):
/// what every process, ours or not, has used.
pub fn machine_busy_seconds() -> f64 {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / clk_tck()
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The processes whose cost a measurement reports.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    /// The proxy's root process; `None` for the direct target.
    pub proxy: Option<u32>,
    /// The echo backends.
    pub backends: Vec<u32>,
}

/// CPU seconds of each party at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub proxy: f64,
    /// The proxy's main thread alone.
    pub proxy_main: f64,
    pub backends: f64,
    pub loadgen: f64,
    pub machine: f64,
}

impl Meter {
    pub fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            proxy: self.proxy.map_or(0.0, cpu_seconds),
            proxy_main: self.proxy.map_or(0.0, |p| thread_cpu_seconds(p, p)),
            backends: self.backends.iter().map(|&p| cpu_seconds(p)).sum(),
            // Only this process: the backends and the targets are its children.
            loadgen: stat(std::process::id()).map_or(0.0, |s| s.1 as f64 / clk_tck()),
            machine: machine_busy_seconds(),
        }
    }

    pub fn proxy_rss_kib(&self) -> u64 {
        self.proxy.map_or(0, rss_kib)
    }
}

/// What happened between two samples.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub secs: f64,
    pub proxy_cpu: f64,
    /// Of `proxy_cpu`, what the proxy's main thread used.
    pub proxy_main_cpu: f64,
    pub backends_cpu: f64,
    pub loadgen_cpu: f64,
    /// Everything else that ran on the machine meanwhile (other users, tmux, ...).
    pub other_cpu: f64,
}

impl Window {
    pub fn between(a: Sample, b: Sample) -> Window {
        Window {
            secs: (b.at - a.at).as_secs_f64(),
            proxy_cpu: b.proxy - a.proxy,
            proxy_main_cpu: b.proxy_main - a.proxy_main,
            backends_cpu: b.backends - a.backends,
            loadgen_cpu: b.loadgen - a.loadgen,
            other_cpu: ((b.machine - a.machine)
                - (b.proxy - a.proxy)
                - (b.backends - a.backends)
                - (b.loadgen - a.loadgen))
                .max(0.0),
        }
    }

    /// Share of one core, in percent.
    pub fn pct(&self, cpu: f64) -> f64 {
        100.0 * cpu / self.secs.max(1e-9)
    }
}
