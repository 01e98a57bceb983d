//! Logging that never blocks relaying. Every line goes through a bounded queue to a
//! writer thread of its own (`tracing-appender`), so a slow or blocked stderr or log
//! file (a full pipe, a stalled disk) costs the event loops nothing: when the queue
//! is full, lines are dropped and counted, and once the writer catches up a warning
//! says how many were lost.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tunnelscope::dashboard::{self, LogReceiver};

/// Lines queued for the writer before new ones are dropped.
const QUEUE_LINES: usize = 4096;
/// How often dropped lines are reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Keeps the writer running; dropping it flushes what is queued.
pub struct Logging {
    /// With the dashboard: its log pane.
    pub pane: Option<LogReceiver>,
    _guard: WorkerGuard,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// `key=value` lines for people.
    #[default]
    Text,
    /// One JSON object per line, every field (the access line's too) a key of its
    /// own, the spans (connection, tunnel id) listed, for log pipelines.
    Json,
}

/// A formatting layer writing to `writer` in `format`.
fn layer<W>(
    format: Format,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        Format::Text => Box::new(fmt.with_ansi(ansi)),
        Format::Json => Box::new(fmt.json().flatten_event(true).with_ansi(false)),
    }
}

/// Headless: logs to stderr. With the dashboard: to `log_file` and the dashboard's
/// log pane, never onto the screen.
pub fn init(
    filter: &str,
    format: Format,
    headless: bool,
    log_file: &Path,
) -> anyhow::Result<Logging> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter))
    };
    let builder = || {
        NonBlockingBuilder::default()
            .buffered_lines_limit(QUEUE_LINES)
            .lossy(true)
            .thread_name("tunnelscope-log")
    };
    if headless || !std::io::stdout().is_terminal() {
        let (writer, guard) = builder().finish(std::io::stderr());
        report_drops(writer.error_counter());
        tracing_subscriber::registry()
            .with(layer(format, writer, std::io::stderr().is_terminal()))
            .with(filter())
            .init();
        return Ok(Logging {
            pane: None,
            _guard: guard,
        });
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(|e| anyhow::anyhow!("log file {}: {e}", log_file.display()))?;
    let (writer, guard) = builder().finish(file);
    report_drops(writer.error_counter());
    let (pane, logs) = dashboard::log_channel(1024);
    tracing_subscriber::registry()
        .with(layer(format, writer, false))
        .with(filter())
        .with(pane)
        .init();
    Ok(Logging {
        pane: Some(logs),
        _guard: guard,
    })
}

/// A thread that logs, at most once per [`REPORT_EVERY`], how many lines the full
/// queue dropped. Its own warning is queued like any line: if the writer is still
/// stuck it is dropped too, and the count is carried to the next report.
fn report_drops(dropped: ErrorCounter) {
    let spawned = std::thread::Builder::new()
        .name("tunnelscope-log-drops".into())
        .spawn(move || {
            let mut reported = 0;
            loop {
                std::thread::sleep(REPORT_EVERY);
                let now = dropped.dropped_lines();
                if now > reported {
                    tracing::warn!(
                        dropped = now - reported,
                        total = now,
                        "log lines dropped: the log writer is not keeping up"
                    );
                    reported = now;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for dropped log lines");
    }
}
