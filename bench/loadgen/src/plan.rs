//! What the benchmark measures and with which settings: the command-line
//! arguments of `loadgen run`, the stream shapes of the echo and large-message
//! tests, every figure key, and what a run hands the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::load::StreamSpec;
use crate::targets::Kind;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Work directory for configs, certificates and logs (created if missing).
    #[arg(long)]
    pub workdir: PathBuf,
    /// The tunnelscope binary (release build).
    #[arg(long)]
    pub tunnelscope: PathBuf,
    /// Where to write the report.
    #[arg(long)]
    pub out: PathBuf,
    /// Rounds; every figure is the median over them.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Warm-up before each measured window, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warm_secs: f64,
    /// Measured window of the echo test, seconds.
    #[arg(long, default_value_t = 4.0)]
    pub echo_secs: f64,
    /// Measured window of the large-message test, seconds.
    #[arg(long, default_value_t = 4.0)]
    pub large_secs: f64,
    /// Measured window of each handshake test, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub handshake_secs: f64,
    /// Idle tunnels held for the memory test.
    #[arg(long, default_value_t = 8000)]
    pub idle_tunnels: usize,
    /// Run tunnelscope's echo test with the dashboard in tmux too: auto, on or off.
    #[arg(long, default_value = "auto")]
    pub dashboard: String,
    /// Only these tests (comma-separated: echo,large,handshake,handshake-tls,idle,idle-tls).
    #[arg(long, value_delimiter = ',')]
    pub tests: Vec<String>,
    /// The command that reruns this benchmark, quoted in the report.
    #[arg(long, default_value = "bench/run.sh")]
    pub rerun: String,
}

pub const ECHO: StreamSpec = StreamSpec {
    tunnels: 100,
    in_flight: 8,
    size: 64,
    warm: Duration::ZERO,
    measure: Duration::ZERO,
};
pub const LARGE: StreamSpec = StreamSpec {
    tunnels: 8,
    in_flight: 2,
    size: 1 << 20,
    warm: Duration::ZERO,
    measure: Duration::ZERO,
};
pub const HANDSHAKE_WORKERS: usize = 32;
pub const IDLE_SAMPLE: usize = 200;
/// How long the idle tunnels sit before the memory is read: long enough for every
/// proxy's allocator to have given back what the burst of handshakes left (jemalloc
/// decays freed pages over about 10 s, then again; tunnelscope parks a tunnel
/// silent for 1 s and frees its relay task).
pub const IDLE_SETTLE: Duration = Duration::from_secs(25);

/// Every figure of every round: (target, figure key) → one value per round.
pub type Figures = BTreeMap<(Kind, &'static str), Vec<f64>>;

/// What the report needs besides the figures.
pub struct RunInfo {
    pub args: Args,
    pub dashboard: String,
    pub load_seen: Vec<String>,
    pub elapsed: Duration,
    pub notes: Vec<String>,
}

/// Every figure key the runner may record.
pub const FIGURE_KEYS: &[&str] = &[
    "echo.msgs",
    "echo.p50",
    "echo.p99",
    "echo.cpu_us",
    "echo.proxy_pct",
    "echo.loadgen_pct",
    "echo.backends_pct",
    "echo.other_pct",
    "echo.main_share",
    "large.mbs",
    "large.cpu_ms",
    "large.proxy_pct",
    "large.loadgen_pct",
    "large.backends_pct",
    "large.other_pct",
    "hs.rate",
    "hs.cpu_us",
    "hs.failed",
    "hs.proxy_pct",
    "hs.loadgen_pct",
    "hs.backends_pct",
    "hs.other_pct",
    "hs_tls.rate",
    "hs_tls.cpu_us",
    "hs_tls.failed",
    "hs_tls.proxy_pct",
    "hs_tls.loadgen_pct",
    "hs_tls.backends_pct",
    "hs_tls.other_pct",
    "idle.kib",
    "idle.opened",
    "idle.echo_ok_pct",
    "idle_tls.kib",
    "idle_tls.opened",
    "idle_tls.echo_ok_pct",
];
