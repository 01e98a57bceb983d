//! The paced close a backend may have under way (drain deadline, down, rebalance):
//! one at a time, each run by a task holding a token; a newer one supersedes it.
//! Every step is published with the backend's state, so observers show progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::Backend;
use crate::event::{PaceCause, PacedClose};

/// Tokens are unique across backends, so a stale task can never match a new one.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

impl Backend {
    /// Starts a paced close (replacing any under way) and returns its token.
    pub fn begin_pace(&self, cause: PaceCause, starts: SystemTime, rate: u32, left: u64) -> u64 {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        let pace = PacedClose {
            cause,
            starts,
            rate,
            closed: 0,
            left,
        };
        let info = {
            let mut state = self.state();
            state.pace = Some((token, pace));
            self.next_info(&mut state)
        };
        self.publish(info);
        token
    }

    /// Records progress; false when the pace was superseded or ended (the task
    /// running it then stops).
    pub fn pace_step(&self, token: u64, closed: u64, left: u64) -> bool {
        let info = {
            let mut state = self.state();
            match &mut state.pace {
                Some((t, pace)) if *t == token => {
                    if (pace.closed, pace.left) == (closed, left) {
                        return true;
                    }
                    (pace.closed, pace.left) = (closed, left);
                }
                _ => return false,
            }
            self.next_info(&mut state)
        };
        self.publish(info);
        true
    }

    /// Ends the pace with this token, if it is still the current one.
    pub fn end_pace(&self, token: u64) {
        let info = {
            let mut state = self.state();
            if !matches!(&state.pace, Some((t, _)) if *t == token) {
                return;
            }
            state.pace = None;
            self.next_info(&mut state)
        };
        self.publish(info);
    }

    /// Whether the pace with this token is still the one under way.
    pub fn pace_current(&self, token: u64) -> bool {
        matches!(&self.state().pace, Some((t, _)) if *t == token)
    }

    /// Whether a check has the backend out of service now.
    pub fn check_down(&self) -> bool {
        self.state().check_down
    }
}
