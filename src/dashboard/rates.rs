//! Rates computed from counter deltas: the proxy-wide per-second history behind the
//! header's sparklines, and the per-tunnel messages/s.
//!
//! The core publishes cumulative counters a few times a second, never one event per
//! frame, so rates here are differences of counters over wall-clock time.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds of history kept for sparklines.
pub const HISTORY_SECS: usize = 60;

/// Messages and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub msgs: u64,
    pub bytes: u64,
}

impl Flow {
    fn add(&mut self, other: Flow) {
        self.msgs += other.msgs;
        self.bytes += other.bytes;
    }
}

/// What crossed the proxy in one second, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    pub c2b: Flow,
    pub b2c: Flow,
}

/// Proxy-wide traffic in one-second buckets, the last [`HISTORY_SECS`] of them.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    /// Unix second the open bucket belongs to (0 before the first roll).
    second: u64,
    current: Second,
    /// Completed seconds, oldest first.
    history: VecDeque<Second>,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Rates {
    /// Adds traffic counted at `now`.
    pub fn add(&mut self, now: SystemTime, c2b: Flow, b2c: Flow) {
        self.roll(now);
        self.current.c2b.add(c2b);
        self.current.b2c.add(b2c);
    }

    /// Closes the open bucket when `now` is in a later second, recording idle seconds
    /// as zeros so the sparkline's time axis stays true.
    pub fn roll(&mut self, now: SystemTime) {
        let sec = unix_secs(now);
        if self.second == 0 {
            self.second = sec;
            return;
        }
        // A clock stepping backwards keeps filling the open bucket.
        if sec <= self.second {
            return;
        }
        let gap = (sec - self.second) as usize;
        let done = std::mem::take(&mut self.current);
        self.push(done);
        for _ in 1..gap.min(HISTORY_SECS + 1) {
            self.push(Second::default());
        }
        self.second = sec;
    }

    fn push(&mut self, s: Second) {
        if self.history.len() == HISTORY_SECS {
            self.history.pop_front();
        }
        self.history.push_back(s);
    }

    /// The last completed second: what the header shows as "per second".
    pub fn last(&self) -> Second {
        self.history.back().copied().unwrap_or_default()
    }

    /// Completed seconds, oldest first, at most [`HISTORY_SECS`].
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &Second> + ExactSizeIterator {
        self.history.iter()
    }

    /// One value per second for a sparkline, left-padded with zeros to the full minute
    /// so a young process does not draw a stretched graph.
    pub fn series(&self, f: impl Fn(&Second) -> u64) -> Vec<u64> {
        let pad = HISTORY_SECS - self.history.len();
        std::iter::repeat_n(0, pad)
            .chain(self.history.iter().map(f))
            .collect()
    }
}

/// How far back a tunnel's messages/s looks. Long enough to smooth the ~4 Hz batches
/// of the core, short enough to fall to zero soon after traffic stops.
pub const WINDOW: Duration = Duration::from_secs(2);

/// Messages/s of one tunnel, from `(time, cumulative messages)` points.
#[derive(Debug, Clone, Default)]
pub struct MsgRate {
    points: VecDeque<(SystemTime, u64)>,
}

impl MsgRate {
    /// A rate that starts counting from `opened` with nothing sent yet.
    pub fn starting(opened: SystemTime, msgs: u64) -> Self {
        let mut points = VecDeque::with_capacity(16);
        points.push_back((opened, msgs));
        Self { points }
    }

    /// Records the cumulative message count seen at `at`.
    pub fn record(&mut self, at: SystemTime, msgs: u64) {
        self.points.push_back((at, msgs));
        // Keep one point older than the window as the baseline; drop the rest.
        while self.points.len() > 2 {
            let second = self.points[1].0;
            if since(at, second) >= WINDOW {
                self.points.pop_front();
            } else {
                break;
            }
        }
        // Bursty event streams cannot grow this without bound.
        while self.points.len() > 64 {
            self.points.pop_front();
        }
    }

    /// Messages per second over the last [`WINDOW`] as of `now`. Quiet tunnels decay to
    /// zero because no new points arrive while the baseline ages.
    pub fn per_sec(&self, now: SystemTime) -> f64 {
        let Some(&(_, last)) = self.points.back() else {
            return 0.0;
        };
        let cutoff = now.checked_sub(WINDOW).unwrap_or(now);
        // The newest point at or before the window start, else the oldest we have.
        let base = self
            .points
            .iter()
            .rev()
            .find(|(t, _)| *t <= cutoff)
            .or(self.points.front())
            .copied();
        let Some((t0, m0)) = base else {
            return 0.0;
        };
        let dt = since(now, t0).as_secs_f64();
        if dt < 0.2 {
            // Too short a span to be a meaningful rate.
            return 0.0;
        }
        last.saturating_sub(m0) as f64 / dt
    }
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
    }

    fn flow(msgs: u64, bytes: u64) -> Flow {
        Flow { msgs, bytes }
    }

    #[test]
    fn seconds_roll_into_history_with_idle_gaps_as_zero() {
        let mut r = Rates::default();
        r.roll(at(0));
        r.add(at(100), flow(10, 100), flow(1, 10));
        r.add(at(600), flow(5, 50), flow(0, 0));
        r.roll(at(1_050));
        assert_eq!(r.last().c2b, flow(15, 150));
        assert_eq!(r.last().b2c, flow(1, 10));
        r.roll(at(4_000));
        assert_eq!(r.history().len(), 4);
        assert_eq!(r.last(), Second::default());
        let s = r.series(|s| s.c2b.msgs);
        assert_eq!(s.len(), HISTORY_SECS);
        assert_eq!(s[HISTORY_SECS - 4], 15);
    }

    #[test]
    fn history_is_bounded_to_a_minute() {
        let mut r = Rates::default();
        r.roll(at(0));
        for i in 1..500 {
            r.add(at(i * 1000), flow(i, 0), Flow::default());
        }
        assert_eq!(r.history().len(), HISTORY_SECS);
        r.roll(at(10_000_000));
        assert_eq!(r.history().len(), HISTORY_SECS);
        assert!(r.history().all(|s| *s == Second::default()));
    }

    #[test]
    fn tunnel_rate_follows_traffic_and_decays_when_quiet() {
        let mut m = MsgRate::starting(at(0), 0);
        for i in 1..=20 {
            m.record(at(i * 250), i * 25); // 100 msgs/s
        }
        let r = m.per_sec(at(5_000));
        assert!((r - 100.0).abs() < 1.0, "{r}");
        assert_eq!(m.per_sec(at(8_000)), 0.0);
    }
}
