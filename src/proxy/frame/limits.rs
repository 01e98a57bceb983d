//! Limits on what one side may send (message size, message rate), and checked
//! feeding: scanning that stops at the first frame a limit (or, in strict mode, a
//! violation) forbids, saying how much before it is whole frames.

use std::time::SystemTime;

use super::Scanner;
use crate::event::{Limit, OpKind, Violation};

/// Where [`Scanner::feed_checked`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrictStop {
    /// The Close code the violation calls for (for a limit, the one its sender gets).
    pub code: u16,
    /// The limit gone over, if that is why (else it was a violation).
    pub limit: Option<Limit>,
    /// Bytes of the chunk before the offending frame, and whether a Close frame was
    /// seen before it; `None` if that frame began in an earlier chunk.
    pub frame_start: Option<(usize, bool)>,
    /// Bytes of the chunk scanned, up to where the violation was found.
    pub scanned: usize,
}

/// The state of [`Scanner::set_limits`].
#[derive(Debug)]
pub(super) struct MessageLimits {
    /// Most bytes in one message (0: no limit).
    pub(super) max_bytes: u64,
    /// Payload bytes of the message in progress.
    pub(super) msg_bytes: u64,
    /// Messages per second, with a burst of as many (0: no limit).
    pub(super) rate: u32,
    /// Messages that may start now; refilled at `rate` per second up to `rate`.
    pub(super) tokens: f64,
    pub(super) refilled: Option<SystemTime>,
    /// The first limit the sender went over.
    pub(super) hit: Option<Limit>,
}

impl MessageLimits {
    /// A data frame's header: the limit it goes over, if any. A new message takes
    /// a token; every frame of a message adds to its size.
    pub(super) fn check(&mut self, kind: OpKind, len: u64, now: SystemTime) -> Option<Limit> {
        let mut hit = None;
        match kind {
            OpKind::Text | OpKind::Binary => {
                self.msg_bytes = 0;
                if self.rate > 0 {
                    let rate = f64::from(self.rate);
                    let elapsed = self
                        .refilled
                        .and_then(|t| now.duration_since(t).ok())
                        .map_or(0.0, |d| d.as_secs_f64());
                    self.tokens = (self.tokens + elapsed * rate).min(rate);
                    self.refilled = Some(now);
                    if self.tokens >= 1.0 {
                        self.tokens -= 1.0;
                    } else {
                        hit = Some(Limit::MessageRate);
                    }
                }
            }
            OpKind::Continuation => {}
            _ => return None,
        }
        self.msg_bytes = self.msg_bytes.saturating_add(len);
        if self.max_bytes > 0 && self.msg_bytes > self.max_bytes {
            hit.get_or_insert(Limit::MessageSize);
        }
        hit
    }
}

impl Scanner {
    /// Limits what the sender of this direction may send: `max_bytes` per message
    /// (payload bytes on the wire, so compressed ones count compressed) and `rate`
    /// data messages per second with a burst of `rate`; 0 turns each off. The first
    /// frame that goes over is reported by [`Scanner::feed_checked`].
    pub fn set_limits(&mut self, max_bytes: u64, rate: u32) {
        self.limits = (max_bytes > 0 || rate > 0).then(|| {
            Box::new(MessageLimits {
                max_bytes,
                msg_bytes: 0,
                rate,
                tokens: f64::from(rate),
                refilled: None,
                hit: None,
            })
        });
    }

    /// Whether [`Scanner::set_limits`] set any limit.
    pub fn has_limits(&self) -> bool {
        self.limits.is_some()
    }

    /// The first limit the sender went over, if any.
    pub fn limit_hit(&self) -> Option<Limit> {
        self.limits.as_ref().and_then(|l| l.hit)
    }

    /// Scans `data` as [`feed`](Self::feed) does, but stops at the first frame that
    /// goes over a limit ([`Scanner::set_limits`]) or, when `strict`, at the first
    /// violation: nothing is forwarded from that frame on. Returns `None` if there
    /// was none; otherwise why, and, if that frame began within `data`, how many
    /// bytes precede it (whole frames, safe to forward) and whether a Close frame
    /// was among what came before it.
    pub fn feed_checked(
        &mut self,
        data: &[u8],
        now: SystemTime,
        strict: bool,
        on_violation: &mut dyn FnMut(Violation),
    ) -> Option<StrictStop> {
        let mut used = 0;
        let mut start = None;
        let mut code = None;
        let limit_before = self.limit_hit();
        if let Some(c) = self.capture.as_deref_mut() {
            c.expect(data.len(), now);
        }
        let mut limit = None;
        while used < data.len() && code.is_none() && limit.is_none() {
            if self.at_boundary() {
                start = Some((used, self.stats.close.is_some()));
            }
            let mut seen = |v: Violation| {
                if strict {
                    code.get_or_insert(v.close_code());
                }
                on_violation(v);
            };
            let (n, _) = self.step(&data[used..], now, &mut seen);
            used += n;
            if limit_before.is_none() {
                limit = self.limit_hit();
            }
        }
        self.stats.bytes += used as u64;
        let (code, limit) = match (code, limit) {
            (_, Some(l)) => (l.close_code(), Some(l)),
            (Some(c), None) => (c, None),
            (None, None) => return None,
        };
        Some(StrictStop {
            code,
            limit,
            frame_start: start,
            scanned: used,
        })
    }
}
