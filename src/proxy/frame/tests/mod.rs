//! Unit tests of the frame scanner: the RFC's examples, frames split anywhere,
//! feeding to a boundary; the helpers the other parts use.

use super::*;
use crate::event::FrameSample;
use crate::event::OpCount;
use proptest::prelude::*;
use std::time::Duration;

const C2B: Dir = Dir::ClientToBackend;
const B2C: Dir = Dir::BackendToClient;
/// The masking key of the RFC 6455 §5.7 examples.
const RFC_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Encodes one frame with the shortest length form, masking the payload with
/// `mask` if given. Independent of the scanner, so it can check it.
fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Scans `chunks` in order; returns the scanner and the violations reported.
fn scan_chunks<'a>(
    dir: Dir,
    ring: usize,
    preview: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Scanner, Vec<Violation>) {
    let mut s = Scanner::new(dir, ring, preview);
    let mut seen = Vec::new();
    for c in chunks {
        s.feed(c, now(), &mut |v| seen.push(v));
    }
    (s, seen)
}

fn scan(dir: Dir, bytes: &[u8]) -> (Scanner, Vec<Violation>) {
    scan_chunks(dir, 16, 16, [bytes])
}

fn samples(s: &Scanner) -> Vec<FrameSample> {
    s.samples().collect()
}

fn count(frames: u64, payload_bytes: u64, wire_bytes: u64) -> OpCount {
    OpCount {
        frames,
        payload_bytes,
        wire_bytes,
    }
}

#[test]
fn rfc_unmasked_hello_is_one_text_message() {
    let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (s, v) = scan(B2C, &bytes);
    assert_eq!(v, []);
    let st = s.stats();
    assert_eq!(*st.op(OpKind::Text), count(1, 5, 7));
    assert_eq!(st.frames(), 1);
    assert_eq!(st.messages, 1);
    assert_eq!(st.bytes, 7);
    assert_eq!(st.violations, 0);
    assert_eq!(st.last_frame, Some(now()));
    assert!(s.at_boundary());
    let expected = FrameSample {
        seq: 0,
        at: now(),
        dir: B2C,
        fin: true,
        rsv: 0,
        opcode: 1,
        masked: false,
        len: 5,
        preview: b"Hello".to_vec(),
        injected: false,
    };
    assert_eq!(samples(&s), [expected]);
}

#[test]
fn an_injected_frame_is_kept_as_a_marked_sample_between_the_peers_frames() {
    let mut s = Scanner::new(B2C, 4, 8);
    let mut v = |_| {};
    s.feed(&[0x81, 2, b'h', b'i'], now(), &mut v);
    s.note_injected(now(), 0x1, b"operator says hi", false);
    s.feed(&[0x81, 3, b'b', b'y', b'e'], now(), &mut v);
    let got: Vec<_> = samples(&s)
        .into_iter()
        .map(|x| (x.seq, x.injected, x.preview))
        .collect();
    assert_eq!(
        got,
        [
            (0, false, b"hi".to_vec()),
            (1, true, b"operator".to_vec()),
            (2, false, b"bye".to_vec()),
        ]
    );
    assert_eq!(s.stats().frames(), 2, "the peer's frames alone are counted");
}

#[test]
fn rfc_masked_hello_is_unmasked_in_the_preview() {
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (s, v) = scan(C2B, &bytes);
    assert_eq!(v, []);
    assert_eq!(*s.stats().op(OpKind::Text), count(1, 5, 11));
    assert_eq!(s.stats().messages, 1);
    let smp = samples(&s);
    assert_eq!(smp.len(), 1);
    assert!(smp[0].masked);
    assert_eq!(smp[0].dir, C2B);
    assert_eq!(smp[0].preview, b"Hello");
}

#[test]
fn rfc_fragmented_hello_is_one_message_of_two_frames() {
    let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
    let last = [0x80, 0x02, 0x6c, 0x6f];
    let mut s = Scanner::new(B2C, 4, 8);
    let mut v = Vec::new();
    s.feed(&first, now(), &mut |x| v.push(x));
    assert_eq!(s.stats().messages, 0, "no message before the FIN fragment");
    s.feed(&last, now(), &mut |x| v.push(x));
    assert_eq!(v, []);
    let st = s.stats();
    assert_eq!(*st.op(OpKind::Text), count(1, 3, 5));
    assert_eq!(*st.op(OpKind::Continuation), count(1, 2, 4));
    assert_eq!(st.messages, 1);
    let smp = samples(&s);
    assert_eq!(
        (smp[0].fin, smp[0].opcode, &smp[0].preview[..]),
        (false, 1, &b"Hel"[..])
    );
    assert_eq!(
        (smp[1].fin, smp[1].opcode, &smp[1].preview[..]),
        (true, 0, &b"lo"[..])
    );
}

#[test]
fn rfc_ping_and_masked_pong_are_control_frames_not_messages() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (s, v) = scan(B2C, &ping);
    assert_eq!(v, []);
    assert_eq!(*s.stats().op(OpKind::Ping), count(1, 5, 7));
    assert_eq!(s.stats().messages, 0);
    assert_eq!(samples(&s)[0].preview, b"Hello");

    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (s, v) = scan(C2B, &pong);
    assert_eq!(v, []);
    assert_eq!(*s.stats().op(OpKind::Pong), count(1, 5, 11));
    assert_eq!(s.stats().messages, 0);
    assert_eq!(samples(&s)[0].preview, b"Hello");
}

#[test]
fn rfc_256_byte_binary_uses_the_16_bit_length() {
    let mut bytes = vec![0x82, 0x7E, 0x01, 0x00];
    bytes.extend(0..=255u8);
    let (s, v) = scan(B2C, &bytes);
    assert_eq!(v, []);
    assert_eq!(*s.stats().op(OpKind::Binary), count(1, 256, 260));
    assert_eq!(s.stats().messages, 1);
    let smp = samples(&s);
    assert_eq!(smp[0].len, 256);
    assert_eq!(smp[0].preview, (0..16).collect::<Vec<u8>>());
}

#[test]
fn rfc_64kib_binary_uses_the_64_bit_length() {
    let mut bytes = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
    bytes.extend((0..65536u32).map(|i| (i % 251) as u8));
    let (s, v) = scan(B2C, &bytes);
    assert_eq!(v, []);
    assert_eq!(*s.stats().op(OpKind::Binary), count(1, 65536, 65546));
    assert_eq!(s.stats().bytes, 65546);
    assert_eq!(samples(&s)[0].len, 65536);
    assert!(s.at_boundary());
}

/// A client stream with every length form, fragmentation with an interleaved
/// control frame, a close, and one violation (an unmasked frame).
fn mixed_stream() -> Vec<u8> {
    let k = Some(RFC_KEY);
    let binary: Vec<u8> = (0..=255).collect();
    let mut s = Vec::new();
    s.extend(frame(false, 0, 0x1, k, b"Hel"));
    s.extend(frame(true, 0, 0x9, k, b"ping!"));
    s.extend(frame(true, 0, 0x0, k, b"lo"));
    s.extend(frame(true, 0, 0x2, Some([1, 2, 3, 4]), &binary));
    s.extend(frame(true, 0, 0xA, k, b""));
    s.extend(frame(true, 0, 0x2, None, b"unmasked"));
    // A non-minimal 64-bit length: tolerated (not one of the reported violations),
    // and a cheap way to split a 64-bit length field everywhere.
    s.extend([0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 3, 9, 9, 9, 9]);
    s.extend(b"abc".map(|b| b ^ 9));
    s.extend(frame(true, 0, 0x8, k, b"\x03\xe8bye"));
    s
}

/// Sanity of the reference the split tests compare against.
fn check_mixed_reference(s: &Scanner, v: &[Violation]) {
    let st = s.stats();
    assert_eq!(v, [Violation::UnmaskedClientFrame]);
    assert_eq!(st.op(OpKind::Text).frames, 1);
    assert_eq!(st.op(OpKind::Continuation).frames, 1);
    assert_eq!(st.op(OpKind::Binary).frames, 3);
    assert_eq!(st.op(OpKind::Binary).payload_bytes, 256 + 8 + 3);
    assert_eq!(st.op(OpKind::Ping).frames, 1);
    assert_eq!(st.op(OpKind::Pong).frames, 1);
    assert_eq!(st.op(OpKind::Close).frames, 1);
    assert_eq!(st.messages, 4);
    assert_eq!(st.bytes, mixed_stream().len() as u64);
    let wire: u64 = st.by_opcode.iter().map(|c| c.wire_bytes).sum();
    assert_eq!(wire, st.bytes);
    assert_eq!(
        st.close,
        Some(CloseInfo {
            code: Some(1000),
            reason: "bye".into()
        })
    );
    assert_eq!(s.next_seq(), 8);
    let smp = samples(s);
    assert_eq!(smp[6].preview, b"abc");
    assert_eq!(smp[3].preview, (0..16).collect::<Vec<u8>>());
    assert!(s.at_boundary());
}

#[test]
fn frames_split_at_every_offset_are_counted_once() {
    let bytes = mixed_stream();
    let (whole, v) = scan(C2B, &bytes);
    check_mixed_reference(&whole, &v);
    for cut in 0..=bytes.len() {
        let (s, sv) = scan_chunks(C2B, 16, 16, [&bytes[..cut], &bytes[cut..]]);
        assert_eq!(s.stats(), whole.stats(), "cut at {cut}");
        assert_eq!(samples(&s), samples(&whole), "cut at {cut}");
        assert_eq!(sv, v, "cut at {cut}");
    }
}

#[test]
fn frames_split_at_every_pair_of_offsets_are_counted_once() {
    let bytes = mixed_stream();
    let (whole, v) = scan(C2B, &bytes);
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            let parts = [&bytes[..a], &bytes[a..b], &bytes[b..]];
            let (s, sv) = scan_chunks(C2B, 16, 16, parts);
            assert_eq!(s.stats(), whole.stats(), "cuts at {a}, {b}");
            assert_eq!(samples(&s), samples(&whole), "cuts at {a}, {b}");
            assert_eq!(sv, v, "cuts at {a}, {b}");
        }
    }
}

#[test]
fn frames_fed_one_byte_at_a_time_are_counted_once() {
    let bytes = mixed_stream();
    let (whole, _) = scan(C2B, &bytes);
    let (s, v) = scan_chunks(C2B, 16, 16, bytes.chunks(1));
    check_mixed_reference(&s, &v);
    assert_eq!(s.stats(), whole.stats());
    assert_eq!(samples(&s), samples(&whole));
}

#[test]
fn many_frames_in_one_feed_are_all_counted() {
    let mut bytes = Vec::new();
    let mut payload_total = 0;
    for i in 0..1000u32 {
        let payload = vec![i as u8; (i % 300) as usize];
        payload_total += payload.len() as u64;
        bytes.extend(frame(true, 0, 0x2, Some(i.to_be_bytes()), &payload));
    }
    let (s, v) = scan_chunks(C2B, 8, 4, [&bytes[..]]);
    assert_eq!(v, []);
    let st = s.stats();
    assert_eq!(st.op(OpKind::Binary).frames, 1000);
    assert_eq!(st.op(OpKind::Binary).payload_bytes, payload_total);
    assert_eq!(st.op(OpKind::Binary).wire_bytes, bytes.len() as u64);
    assert_eq!(st.messages, 1000);
    assert_eq!(s.next_seq(), 1000);
    let smp = samples(&s);
    assert_eq!(
        smp.iter().map(|x| x.seq).collect::<Vec<_>>(),
        (992..1000).collect::<Vec<_>>()
    );
    for x in &smp {
        let expect_len = (x.seq % 300).min(4) as usize;
        assert_eq!(x.preview, vec![x.seq as u8; expect_len], "seq {}", x.seq);
    }
}

#[test]
fn feed_to_boundary_at_a_boundary_consumes_nothing() {
    let f = frame(true, 0, 0x1, None, b"abc");
    let mut s = Scanner::new(B2C, 1, 1);
    let mut seen = Vec::new();
    assert_eq!(s.feed_to_boundary(&f, now(), &mut |v| seen.push(v)), 0);
    assert_eq!(s.stats().bytes, 0);
    s.feed(&f, now(), &mut |v| seen.push(v));
    assert_eq!(s.feed_to_boundary(&f, now(), &mut |v| seen.push(v)), 0);
    assert_eq!(s.stats().bytes, f.len() as u64);
    assert_eq!(s.stats().frames(), 1);
}

#[test]
fn feed_to_boundary_mid_header_or_payload_stops_exactly_at_frame_end() {
    // 8-byte header (16-bit length, masked), 300-byte payload.
    let a = frame(true, 0, 0x2, Some([5, 6, 7, 8]), &[0x55; 300]);
    let b = frame(true, 0, 0x1, Some([1, 2, 3, 4]), b"next");
    for cut in 1..a.len() {
        let mut s = Scanner::new(C2B, 2, 8);
        let mut seen = Vec::new();
        s.feed(&a[..cut], now(), &mut |v| seen.push(v));
        assert!(!s.at_boundary(), "cut {cut}");
        let rest = [&a[cut..], &b[..]].concat();
        let n = s.feed_to_boundary(&rest, now(), &mut |v| seen.push(v));
        assert_eq!(n, a.len() - cut, "cut {cut}");
        assert!(s.at_boundary(), "cut {cut}");
        assert_eq!(s.stats().bytes, a.len() as u64, "cut {cut}");
        assert_eq!(s.stats().messages, 1, "cut {cut}");
        assert_eq!(s.next_seq(), 1, "cut {cut}");
        s.feed(&rest[n..], now(), &mut |v| seen.push(v));
        assert_eq!(s.stats().op(OpKind::Text).frames, 1, "cut {cut}");
        assert_eq!(samples(&s)[1].preview, b"next", "cut {cut}");
        assert_eq!(seen, [], "cut {cut}");
    }
}

#[test]
fn feed_to_boundary_takes_all_of_data_when_the_frame_does_not_end_in_it() {
    let a = frame(true, 0, 0x2, None, &[7; 1000]);
    let mut s = Scanner::new(B2C, 0, 0);
    let mut seen = Vec::new();
    s.feed(&a[..1], now(), &mut |v| seen.push(v));
    // Still inside the header.
    assert_eq!(
        s.feed_to_boundary(&a[1..3], now(), &mut |v| seen.push(v)),
        2
    );
    assert!(!s.at_boundary());
    assert_eq!(s.next_seq(), 0);
    // Header completes, payload does not.
    assert_eq!(
        s.feed_to_boundary(&a[3..500], now(), &mut |v| seen.push(v)),
        497
    );
    assert!(!s.at_boundary());
    assert_eq!(s.next_seq(), 1);
    assert_eq!(s.stats().bytes, 500);
    assert_eq!(
        s.feed_to_boundary(&a[500..], now(), &mut |v| seen.push(v)),
        504
    );
    assert!(s.at_boundary());
    assert_eq!(s.stats().messages, 1);
}

#[test]
fn feed_to_boundary_finishes_an_empty_frame_with_its_header() {
    let pong = frame(true, 0, 0xA, Some(RFC_KEY), b"");
    assert_eq!(pong.len(), 6);
    let mut s = Scanner::new(C2B, 1, 1);
    let mut seen = Vec::new();
    s.feed(&pong[..3], now(), &mut |v| seen.push(v));
    let data = [&pong[3..], &pong[..]].concat();
    assert_eq!(s.feed_to_boundary(&data, now(), &mut |v| seen.push(v)), 3);
    assert!(s.at_boundary());
    assert_eq!(s.stats().op(OpKind::Pong).frames, 1);
}

#[test]
fn at_boundary_only_between_frames() {
    let f = frame(true, 0, 0x1, None, b"abc");
    let mut s = Scanner::new(B2C, 0, 0);
    assert!(s.at_boundary());
    for (i, b) in f.iter().enumerate() {
        s.feed(&[*b], now(), &mut |_| {});
        assert_eq!(s.at_boundary(), i == f.len() - 1, "after byte {i}");
    }
}

#[test]
fn idle_scanner_is_small() {
    let size = std::mem::size_of::<Scanner>();
    println!("size_of::<Scanner>() = {size}");
    // DirStats alone is about 240 bytes; the scanner's own state should stay small
    // (368 until the message limits' pointer, 8 bytes, was added, and the capture's,
    // 8 more).
    assert!(size <= 384, "Scanner grew to {size} bytes");
}

#[test]
fn unmasking_into_matches_bytewise_unmasking_at_every_offset_and_length() {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let data: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(29)).collect();
    for key in [mask, [0; 4]] {
        for pos in 0..8u64 {
            for len in 0..data.len() {
                let expected: Vec<u8> = super::unmasked(key, pos, &data[..len]).collect();
                let mut got = vec![0xAA; len];
                super::unmask_into(&mut got, &data[..len], key, pos);
                assert_eq!(got, expected, "key {key:?} pos {pos} len {len}");
            }
        }
    }
}

mod closes_and_violations;
mod property;
mod samples;
mod utf8;
