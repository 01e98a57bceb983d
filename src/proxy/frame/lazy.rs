//! A direction's scanner, made when the direction's first byte comes: a tunnel
//! that has carried nothing (most of an idle crowd) holds its settings and a
//! pointer, not a whole [`Scanner`] (about 370 bytes) for each way.
//!
//! Until then it reads as a scanner that has seen nothing: zero counters, at a
//! frame boundary, no samples, nothing captured.

use crate::event::{Dir, DirStats, OpCount};

use super::Scanner;

/// What a scanner that has seen nothing counts.
static NOTHING: DirStats = DirStats {
    by_opcode: [OpCount {
        frames: 0,
        payload_bytes: 0,
        wire_bytes: 0,
    }; 7],
    messages: 0,
    bytes: 0,
    last_frame: None,
    close: None,
    violations: 0,
};

/// One direction's [`Scanner`], made by [`LazyScanner::made`] on first use.
#[derive(Debug)]
pub struct LazyScanner {
    made: Option<Box<Scanner>>,
    /// Message limits to apply when it is made: (largest message, messages a
    /// second), as [`Scanner::set_limits`] takes them.
    limits: Option<(u64, u32)>,
    ring: u16,
    preview: u16,
    allowed_rsv: u8,
    dir: Dir,
}

impl LazyScanner {
    /// The settings of [`Scanner::new`] and [`Scanner::set_allowed_rsv`]; nothing
    /// is allocated until [`made`](Self::made).
    pub fn new(dir: Dir, ring: usize, preview_bytes: usize, allowed_rsv: u8) -> Self {
        Self {
            made: None,
            limits: None,
            ring: u16::try_from(ring).unwrap_or(u16::MAX),
            preview: u16::try_from(preview_bytes).unwrap_or(u16::MAX),
            allowed_rsv,
            dir,
        }
    }

    /// Limits what this direction may send (see [`Scanner::set_limits`]).
    pub fn set_limits(&mut self, max_bytes: u64, rate: u32) {
        self.limits = (max_bytes > 0 || rate > 0).then_some((max_bytes, rate));
        if let Some(s) = &mut self.made {
            s.set_limits(max_bytes, rate);
        }
    }

    /// The scanner, made now if this is its first use.
    pub fn made(&mut self) -> &mut Scanner {
        let (dir, ring, preview, rsv, limits) = (
            self.dir,
            self.ring,
            self.preview,
            self.allowed_rsv,
            self.limits,
        );
        self.made.get_or_insert_with(|| {
            let mut s = Scanner::new(dir, ring.into(), preview.into());
            s.set_allowed_rsv(rsv);
            if let Some((max_bytes, rate)) = limits {
                s.set_limits(max_bytes, rate);
            }
            Box::new(s)
        })
    }

    /// The scanner, if anything has made it yet.
    pub fn get(&self) -> Option<&Scanner> {
        self.made.as_deref()
    }

    /// See [`Scanner::stats`].
    pub fn stats(&self) -> &DirStats {
        self.get().map_or(&NOTHING, Scanner::stats)
    }

    /// See [`Scanner::at_boundary`].
    pub fn at_boundary(&self) -> bool {
        self.get().is_none_or(Scanner::at_boundary)
    }

    /// See [`Scanner::between_messages`].
    pub fn between_messages(&self) -> bool {
        self.get().is_none_or(Scanner::between_messages)
    }

    /// See [`Scanner::next_seq`].
    pub fn next_seq(&self) -> u64 {
        self.get().map_or(0, Scanner::next_seq)
    }

    /// See [`Scanner::has_limits`].
    pub fn has_limits(&self) -> bool {
        self.limits.is_some()
    }

    /// See [`Scanner::samples_since`].
    pub fn samples_since(&self, from: u64) -> impl Iterator<Item = crate::event::FrameSample> + '_ {
        self.get()
            .into_iter()
            .flat_map(move |s| s.samples_since(from))
    }

    /// See [`Scanner::captured`].
    pub fn captured(&self, out: &mut Vec<crate::event::CapturedMessage>) {
        if let Some(s) = self.get() {
            s.captured(out);
        }
    }

    /// See [`Scanner::captured_next`].
    pub fn captured_next(&self) -> u64 {
        self.get().map_or(0, Scanner::captured_next)
    }

    /// See [`Scanner::captured_since`].
    pub fn captured_since(&self, from: u64, out: &mut Vec<crate::event::CapturedMessage>) {
        if let Some(s) = self.get() {
            s.captured_since(from, out);
        }
    }

    /// See [`Scanner::search`].
    pub fn search(
        &self,
        id: crate::event::TunnelId,
        needle: &[u8],
        out: &mut Vec<crate::event::SearchHit>,
    ) {
        if let Some(s) = self.get() {
            s.search(id, needle, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn text_frame(payload: &[u8]) -> Vec<u8> {
        crate::ws::frame(crate::ws::opcode::TEXT, payload, Some([1, 2, 3, 4]))
    }

    #[test]
    fn nothing_is_made_until_the_first_byte_and_it_reads_as_a_scanner_that_saw_nothing() {
        let lazy = LazyScanner::new(Dir::ClientToBackend, 16, 64, 0);
        assert!(lazy.get().is_none());
        let fresh = Scanner::new(Dir::ClientToBackend, 16, 64);
        assert_eq!(lazy.stats(), fresh.stats());
        assert_eq!(lazy.at_boundary(), fresh.at_boundary());
        assert_eq!(lazy.between_messages(), fresh.between_messages());
        assert_eq!(lazy.next_seq(), fresh.next_seq());
        assert_eq!(lazy.samples_since(0).count(), 0);
        assert_eq!(lazy.captured_next(), fresh.captured_next());
        assert!(std::mem::size_of::<LazyScanner>() * 4 <= std::mem::size_of::<Scanner>());
    }

    #[test]
    fn the_scanner_made_at_first_use_has_the_settings_given_before() {
        let mut lazy = LazyScanner::new(Dir::ClientToBackend, 16, 4, 0b100);
        lazy.set_limits(10, 0);
        assert!(lazy.has_limits());
        // RSV1 is allowed (no violation); the 6-byte message passes and is
        // previewed in 4 bytes; the 11-byte one is over the limit.
        let mut first = text_frame(b"hello!");
        first[0] |= 0x40;
        let mut violations = Vec::new();
        let now = SystemTime::now();
        let s = lazy.made();
        let passed = s.feed_checked(&first, now, false, &mut |v| violations.push(v));
        assert!(passed.is_none());
        let stop = s.feed_checked(&text_frame(b"hello world"), now, false, &mut |v| {
            violations.push(v)
        });
        assert!(violations.is_empty(), "{violations:?}");
        assert!(
            stop.is_some(),
            "the limit set before the scanner was made applies"
        );
        assert_eq!(lazy.stats().frames(), 2);
        let sample = lazy.samples_since(0).next().expect("a sample is kept");
        assert_eq!(
            sample.preview, b"hell",
            "the preview size given before applies"
        );
    }
}
