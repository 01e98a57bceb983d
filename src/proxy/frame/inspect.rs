//! What the inspector asks of the scanner beyond counting: where the frame in
//! progress ends (to find a Pong in a chunk, or to inject a frame after it), and
//! whole-message capture switched on and off while the tunnel runs.

use super::capture::Capture;
use std::time::SystemTime;

use super::{header_len, Scanner};
use crate::event::Violation;

/// What [`Scanner::set_capture`] keeps: each message up to `cap` bytes, `budget`
/// bytes for this direction, counted against `global` too; `inflate` as
/// [`Capture::new`] takes it.
pub struct CaptureSpec {
    pub cap: usize,
    pub budget: usize,
    pub inflate: Option<bool>,
    pub global: std::sync::Arc<super::capture::Budget>,
}

impl Scanner {
    /// How many bytes at the start of `data` complete the frame in progress: 0 at a
    /// boundary, `None` when it does not end within `data`. Scans nothing; the relay
    /// uses it to find the frames that begin in a chunk (a proxy Pong to swallow).
    pub fn frame_rest(&self, data: &[u8]) -> Option<usize> {
        if self.remaining > 0 {
            return usize::try_from(self.remaining)
                .ok()
                .filter(|&r| r <= data.len());
        }
        if self.hdr_len == 0 {
            return Some(0);
        }
        // A header split across chunks: finish it from `data`.
        let mut hdr = self.hdr;
        let have = self.hdr_len as usize;
        let mut used = 0;
        loop {
            let cur = have + used;
            let need = if cur < 2 { 2 } else { header_len(hdr[1]) };
            if cur >= need {
                break;
            }
            hdr[cur] = *data.get(used)?;
            used += 1;
        }
        let rest = (used as u64).checked_add(crate::ws::payload_len(&hdr))?;
        usize::try_from(rest).ok().filter(|&r| r <= data.len())
    }

    /// Scans only as much of `data` as is needed to finish the frame in progress and
    /// returns how many bytes that was: 0 if the scanner is already at a frame
    /// boundary, `data.len()` if the frame does not end within `data`.
    ///
    /// The relay forwards exactly that many bytes before injecting a frame of its own
    /// (a Close), so the injected frame never lands inside another one.
    pub fn feed_to_boundary(
        &mut self,
        data: &[u8],
        now: SystemTime,
        on_violation: &mut dyn FnMut(Violation),
    ) -> usize {
        if self.at_boundary() {
            return 0;
        }
        if let Some(c) = self.capture.as_deref_mut() {
            c.expect(data.len(), now);
        }
        let mut used = 0;
        while used < data.len() {
            let (n, ended) = self.step(&data[used..], now, on_violation);
            used += n;
            if ended {
                break;
            }
        }
        self.stats.bytes += used as u64;
        used
    }

    /// Starts keeping whole messages (each up to `cap` payload bytes, `budget` bytes
    /// in all, inflated when `inflate` says permessage-deflate is on: `Some(reset)`,
    /// `reset` when each message has a fresh context), or stops and frees them
    /// (`None`). Already capturing: unchanged.
    pub fn set_capture(&mut self, keep: Option<CaptureSpec>) {
        match keep {
            Some(spec) if self.capture.is_none() => {
                // With context takeover, inflating needs every message from the first.
                let fresh = self.stats.messages == 0 && !self.in_message;
                let capture = Capture::new(self.dir, spec.cap, spec.budget, spec.inflate, fresh)
                    .with_global(spec.global);
                self.capture = Some(Box::new(capture));
            }
            None => self.capture = None,
            Some(_) => {}
        }
    }

    /// Whether whole messages are being kept.
    pub fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// The whole messages kept, oldest first.
    pub fn captured(&self, out: &mut Vec<crate::event::CapturedMessage>) {
        if let Some(c) = &self.capture {
            out.extend(c.messages().map(|k| k.message()));
        }
    }

    /// The number the next captured message will get (0 when not capturing).
    pub fn captured_next(&self) -> u64 {
        self.capture.as_ref().map_or(0, |c| c.next_seq())
    }

    /// The kept messages numbered `from` on (copied; the older ones are not).
    pub fn captured_since(&self, from: u64, out: &mut Vec<crate::event::CapturedMessage>) {
        if let Some(c) = &self.capture {
            out.extend(c.messages_from(from).map(|k| k.message()));
        }
    }

    /// The kept messages containing `needle` (ASCII-lowercased), searched in place.
    pub fn search(
        &self,
        tunnel: crate::event::TunnelId,
        needle: &[u8],
        out: &mut Vec<crate::event::SearchHit>,
    ) {
        if let Some(c) = &self.capture {
            let hits: Vec<_> = c
                .messages()
                .filter_map(|k| {
                    let snippet = crate::inspect::search::find(&k.payload(), needle)?;
                    Some(crate::event::SearchHit {
                        tunnel,
                        dir: k.dir,
                        seq: k.seq,
                        at: k.meta.at,
                        kind: k.meta.kind,
                        snippet,
                    })
                })
                .collect();
            // The newest first, and no more than a search returns.
            out.extend(
                hits.into_iter()
                    .rev()
                    .take(crate::inspect::search::MAX_HITS),
            );
        }
    }
}
