//! A `tracing` layer that feeds the log pane. While the dashboard owns the terminal
//! nothing may print to it, so log lines travel on a bounded channel to the run loop,
//! which pushes them into [`super::state::State::push_log`] on its tick.
//!
//! The layer never blocks the thread that logs: when the dashboard falls behind, lines
//! are dropped and counted, and the count is reported in the pane.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One formatted log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    pub line: String,
}

/// The receiving end handed to [`super::run`], with a count of lines dropped because
/// the channel was full.
#[derive(Debug)]
pub struct LogReceiver {
    pub rx: mpsc::Receiver<LogRecord>,
    pub dropped: Arc<AtomicU64>,
}

/// Sends every event it sees, formatted as `message key=value …`, to the dashboard.
#[derive(Debug, Clone)]
pub struct LogLayer {
    tx: mpsc::Sender<LogRecord>,
    dropped: Arc<AtomicU64>,
}

/// A layer and its receiver; `capacity` bounds the lines waiting for the next tick.
pub fn log_channel(capacity: usize) -> (LogLayer, LogReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        LogLayer {
            tx,
            dropped: dropped.clone(),
        },
        LogReceiver { rx, dropped },
    )
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let mut line = v.message;
        if !meta.target().starts_with("tunnelscope") {
            line = format!("{}: {line}", meta.target());
        }
        line.push_str(&v.fields);
        let record = LogRecord {
            level: *meta.level(),
            line,
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_arrive_formatted_and_overflow_is_counted() {
        let (layer, mut logs) = log_channel(2);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(tunnel = 7, status = 503, "upgrade refused");
            tracing::info!("second");
            tracing::info!("dropped");
        });
        let first = logs.rx.try_recv().unwrap();
        assert_eq!(first.level, Level::WARN);
        assert!(
            first.line.contains("upgrade refused tunnel=7 status=503"),
            "{}",
            first.line
        );
        assert!(logs.rx.try_recv().is_ok());
        assert!(logs.rx.try_recv().is_err());
        assert_eq!(logs.dropped.load(Ordering::Relaxed), 1);
    }
}
