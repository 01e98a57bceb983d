//! Fuzzes the sans-IO frame scanner with arbitrary bytes.
//!
//! The first input byte is a control byte: bit 0 picks the direction, bit 1 allows
//! RSV1 (as permessage-deflate would), the other six bits pick where the rest of the
//! input is split (in 63rds of its length). The stream is scanned whole and split
//! (with `feed_to_boundary` on the second part); both must agree, and the counters
//! must be consistent with the bytes fed. Any panic is a bug.
#![no_main]

use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use tunnelscope::event::{Dir, Violation};
use tunnelscope::proxy::frame::Scanner;

const RING: usize = 4;
const PREVIEW: usize = 8;
/// Longest frame header; at most that many bytes can be fed but not yet counted.
const MAX_HEADER: u64 = 14;

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let dir = if control & 1 == 0 {
        Dir::ClientToBackend
    } else {
        Dir::BackendToClient
    };
    let allowed_rsv = if control & 2 != 0 { 0b100 } else { 0 };
    let split = stream.len() * usize::from(control >> 2) / 63;
    let now = SystemTime::UNIX_EPOCH;
    let new_scanner = || {
        let mut s = Scanner::new(dir, RING, PREVIEW);
        s.set_allowed_rsv(allowed_rsv);
        s
    };

    let mut whole = new_scanner();
    let mut whole_violations = Vec::new();
    whole.feed(stream, now, &mut |v| whole_violations.push(v));
    check(&whole, &whole_violations, stream.len());

    let (a, b) = stream.split_at(split);
    let mut parts = new_scanner();
    let mut parts_violations = Vec::new();
    parts.feed(a, now, &mut |v| parts_violations.push(v));
    let n = parts.feed_to_boundary(b, now, &mut |v| parts_violations.push(v));
    assert!(n <= b.len());
    assert!(
        n == b.len() || parts.at_boundary(),
        "stopped before a boundary"
    );
    check(&parts, &parts_violations, a.len() + n);
    parts.feed(&b[n..], now, &mut |v| parts_violations.push(v));
    check(&parts, &parts_violations, stream.len());

    // Where the stream is split must not change what is seen.
    assert_eq!(whole.stats(), parts.stats());
    assert_eq!(whole_violations, parts_violations);
    assert!(whole.samples().eq(parts.samples()));
    assert_eq!(whole.at_boundary(), parts.at_boundary());
});

/// Invariants after `fed` bytes.
fn check(s: &Scanner, violations: &[Violation], fed: usize) {
    let st = s.stats();
    assert_eq!(st.bytes, fed as u64);
    assert_eq!(st.violations, violations.len() as u64);
    assert_eq!(st.frames(), s.next_seq());
    let wire: u64 = st.by_opcode.iter().map(|c| c.wire_bytes).sum();
    let payload: u64 = st.by_opcode.iter().map(|c| c.payload_bytes).sum();
    assert!(payload <= wire && wire <= st.bytes);
    // Only a partly received header is fed but not yet counted.
    assert!(st.bytes - wire < MAX_HEADER);
    if s.at_boundary() {
        assert_eq!(wire, st.bytes);
    }
    assert!(st.messages <= s.next_seq());
    let kept = s.samples().count() as u64;
    assert_eq!(kept, s.next_seq().min(RING as u64));
    for (expected_seq, sample) in (s.next_seq() - kept..).zip(s.samples()) {
        assert_eq!(sample.seq, expected_seq);
        assert_eq!(sample.dir, s.dir());
        assert!(sample.preview.len() <= PREVIEW);
        assert!(sample.preview.len() as u64 <= sample.len);
    }
}
