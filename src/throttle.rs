//! A log throttle: one line per interval with a count of the ones held back, for
//! errors that can repeat hundreds of times a second (accept failures when out of
//! file descriptors).

use std::time::{Duration, Instant};

/// Lets one log line through per `every`, counting the ones it held back.
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)`: log now, mentioning the `n` held back since the last line;
    /// `None`: hold this one back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let start = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.allow(start), Some(0));
        for i in 1..=500u64 {
            assert_eq!(t.allow(start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.allow(start + Duration::from_millis(1000)), Some(500));
        assert_eq!(t.allow(start + Duration::from_millis(1500)), None);
        assert_eq!(t.allow(start + Duration::from_millis(2000)), Some(1));
    }
}
