//! Unit tests of `frame.rs`.

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
fn close_code_and_reason_come_from_the_first_close_only() {
    let mut bytes = frame(true, 0, 0x8, Some(RFC_KEY), b"\x03\xe9going away");
    bytes.extend(frame(true, 0, 0x8, Some(RFC_KEY), b"\x03\xe8later"));
    let (s, v) = scan(C2B, &bytes);
    assert_eq!(v, []);
    assert_eq!(s.stats().op(OpKind::Close).frames, 2);
    let close = s.stats().close.clone().unwrap();
    assert_eq!(close.code, Some(1001));
    assert_eq!(close.reason, "going away");
}

#[test]
fn empty_close_has_no_code_and_is_valid() {
    let (s, v) = scan(B2C, &frame(true, 0, 0x8, None, b""));
    assert_eq!(v, []);
    let close = s.stats().close.clone().unwrap();
    assert_eq!(close.code, None);
    assert_eq!(close.reason, "");
}

#[test]
fn close_reason_split_inside_a_utf8_sequence_is_reassembled() {
    let mut payload = vec![0x0f, 0xa0];
    payload.extend("héllo wörld".as_bytes());
    let bytes = frame(true, 0, 0x8, Some([0xde, 0xad, 0xbe, 0xef]), &payload);
    let (s, v) = scan_chunks(C2B, 0, 0, bytes.chunks(1));
    assert_eq!(v, []);
    let close = s.stats().close.clone().unwrap();
    assert_eq!(close.code, Some(4000));
    assert_eq!(close.reason, "héllo wörld");
}

#[test]
fn close_reason_with_invalid_utf8_is_decoded_lossily() {
    let (s, v) = scan(B2C, &frame(true, 0, 0x8, None, b"\x03\xe8\xffok"));
    assert_eq!(v, []);
    assert_eq!(s.stats().close.clone().unwrap().reason, "\u{fffd}ok");
}

#[test]
fn close_codes_that_may_not_be_sent_are_violations() {
    let valid = [
        1000, 1001, 1002, 1003, 1007, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999,
    ];
    let invalid = [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ];
    for (code, ok) in valid
        .iter()
        .map(|c| (*c, true))
        .chain(invalid.iter().map(|c| (*c, false)))
    {
        let (s, v) = scan(B2C, &frame(true, 0, 0x8, None, &u16::to_be_bytes(code)));
        let expected: &[Violation] = if ok {
            &[]
        } else {
            &[Violation::BadClosePayload]
        };
        assert_eq!(v, expected, "code {code}");
        assert_eq!(s.stats().violations, expected.len() as u64, "code {code}");
        assert_eq!(s.stats().close.clone().unwrap().code, Some(code));
    }
}

#[test]
fn oversize_close_keeps_at_most_123_reason_bytes() {
    let mut payload = vec![0x03, 0xe8];
    payload.extend([b'r'; 198]);
    let (s, v) = scan(B2C, &frame(true, 0, 0x8, None, &payload));
    assert_eq!(v, [Violation::OversizeControlFrame(200)]);
    let close = s.stats().close.clone().unwrap();
    assert_eq!(close.code, Some(1000));
    assert_eq!(close.reason.len(), 123);
    assert_eq!(s.stats().op(OpKind::Close).payload_bytes, 200);
}

#[test]
fn each_violation_is_reported_once_and_scanning_goes_on() {
    use Violation::*;
    let k = Some([9, 8, 7, 6]);
    let cases: Vec<(&str, Dir, Vec<u8>, Vec<Violation>)> = vec![
        (
            "reserved data opcode",
            C2B,
            frame(true, 0, 0x3, k, b"x"),
            vec![ReservedOpcode(0x3)],
        ),
        (
            "reserved data opcode 7",
            C2B,
            frame(true, 0, 0x7, k, b""),
            vec![ReservedOpcode(0x7)],
        ),
        (
            "reserved control opcode",
            B2C,
            frame(true, 0, 0xB, None, b"yy"),
            vec![ReservedOpcode(0xB)],
        ),
        (
            "reserved control opcode F",
            B2C,
            frame(false, 0, 0xF, None, b""),
            vec![ReservedOpcode(0xF)],
        ),
        (
            "unmasked client frame",
            C2B,
            frame(true, 0, 0x1, None, b"hi"),
            vec![UnmaskedClientFrame],
        ),
        (
            "masked server frame",
            B2C,
            frame(true, 0, 0x1, k, b"hi"),
            vec![MaskedServerFrame],
        ),
        (
            "oversize ping",
            B2C,
            frame(true, 0, 0x9, None, &[0; 126]),
            vec![OversizeControlFrame(126)],
        ),
        (
            "oversize pong",
            C2B,
            frame(true, 0, 0xA, k, &[1; 70000]),
            vec![OversizeControlFrame(70000)],
        ),
        (
            "fragmented ping",
            B2C,
            frame(false, 0, 0x9, None, b"p"),
            vec![FragmentedControlFrame],
        ),
        (
            "stray continuation",
            B2C,
            frame(true, 0, 0x0, None, b"x"),
            vec![BadContinuation],
        ),
        (
            "binary inside a fragmented message",
            B2C,
            [
                frame(false, 0, 0x1, None, b"a"),
                frame(true, 0, 0x2, None, b"b"),
            ]
            .concat(),
            vec![BadContinuation],
        ),
        (
            "rsv1 without extension",
            B2C,
            frame(true, 0b100, 0x1, None, b"x"),
            vec![ReservedBits(0b100)],
        ),
        (
            "rsv3 without extension",
            C2B,
            frame(true, 0b001, 0x2, k, b"x"),
            vec![ReservedBits(0b001)],
        ),
        (
            "one-byte close",
            B2C,
            frame(true, 0, 0x8, None, &[3]),
            vec![BadClosePayload],
        ),
        (
            "close code 1005",
            C2B,
            frame(true, 0, 0x8, k, &[0x03, 0xed]),
            vec![BadClosePayload],
        ),
        (
            "several at once",
            B2C,
            frame(false, 0b010, 0x9, k, &[0; 130]),
            vec![
                ReservedBits(0b010),
                MaskedServerFrame,
                OversizeControlFrame(130),
                FragmentedControlFrame,
            ],
        ),
    ];
    for (name, dir, bytes, expected) in cases {
        let mut s = Scanner::new(dir, 4, 4);
        let mut seen = Vec::new();
        s.feed(&bytes, now(), &mut |v| seen.push(v));
        assert_eq!(seen, expected, "{name}");
        assert_eq!(s.stats().violations, expected.len() as u64, "{name}");
        assert!(s.at_boundary(), "{name}");
        // The next (valid) frame is found where the declared length said.
        let key = (dir == C2B).then_some([1, 1, 1, 1]);
        let frames_before = s.stats().frames();
        s.feed(&frame(true, 0, 0x2, key, b"ok"), now(), &mut |v| {
            seen.push(v)
        });
        assert_eq!(seen.len(), expected.len(), "{name}: no new violation");
        assert_eq!(s.stats().frames(), frames_before + 1, "{name}");
        let last = s.samples().last().unwrap();
        assert_eq!(
            (last.opcode, last.len, &last.preview[..]),
            (2, 2, &b"ok"[..]),
            "{name}"
        );
        assert_eq!(
            s.stats().bytes,
            (bytes.len() + 4 + 2 * usize::from(key.is_some()) * 2) as u64,
            "{name}"
        );
    }
}

#[test]
fn length_with_top_bit_set_is_reported_and_scanned_as_declared() {
    let header = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1];
    let mut s = Scanner::new(B2C, 2, 4);
    let mut seen = Vec::new();
    s.feed(&header, now(), &mut |v| seen.push(v));
    assert_eq!(seen, [Violation::LengthTopBitSet]);
    assert_eq!(s.stats().violations, 1);
    assert_eq!(samples(&s)[0].len, 0x8000_0000_0000_0001);
    // Everything after is payload of that frame, whatever it looks like.
    let rest = frame(true, 0, 0x1, None, b"not a frame");
    s.feed(&rest, now(), &mut |v| seen.push(v));
    assert_eq!(
        s.feed_to_boundary(&rest, now(), &mut |v| seen.push(v)),
        rest.len()
    );
    assert_eq!(seen.len(), 1);
    assert!(!s.at_boundary());
    assert_eq!(s.stats().frames(), 1);
    assert_eq!(
        s.stats().op(OpKind::Binary).payload_bytes,
        2 * rest.len() as u64
    );
    assert_eq!(s.stats().bytes, (header.len() + 2 * rest.len()) as u64);
    assert_eq!(samples(&s)[0].preview, &rest[..4]);
}

#[test]
fn maximal_length_does_not_overflow() {
    let header = [0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    let mut s = Scanner::new(B2C, 1, 1);
    let mut n = 0;
    s.feed(&header, now(), &mut |_| n += 1);
    s.feed(&[0xAB; 1000], now(), &mut |_| n += 1);
    assert_eq!(n, 1);
    assert_eq!(samples(&s)[0].len, u64::MAX);
    assert_eq!(s.stats().op(OpKind::Binary).wire_bytes, 1010);
}

#[test]
fn allowed_rsv_bits_are_not_violations_but_others_are() {
    let mut s = Scanner::new(B2C, 0, 0);
    s.set_allowed_rsv(0b100);
    let mut seen = Vec::new();
    s.feed(&frame(true, 0b100, 0x1, None, b"z"), now(), &mut |v| {
        seen.push(v)
    });
    assert_eq!(seen, []);
    s.feed(&frame(true, 0b110, 0x1, None, b"z"), now(), &mut |v| {
        seen.push(v)
    });
    assert_eq!(seen, [Violation::ReservedBits(0b010)]);
    assert_eq!(s.stats().violations, 1);
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
fn preview_is_unmasked_across_every_split() {
    let payload = b"The quick brown fox";
    let bytes = frame(true, 0, 0x1, Some([0xde, 0xad, 0xbe, 0xef]), payload);
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            let parts = [&bytes[..a], &bytes[a..b], &bytes[b..]];
            let (s, _) = scan_chunks(C2B, 1, 11, parts);
            assert_eq!(samples(&s)[0].preview, &payload[..11], "cuts {a}, {b}");
        }
    }
}

#[test]
fn preview_is_the_whole_payload_when_shorter_than_preview_bytes() {
    let (s, _) = scan_chunks(B2C, 1, 64, [&frame(true, 0, 0x1, None, b"tiny")[..]]);
    assert_eq!(samples(&s)[0].preview, b"tiny");
    let (s, _) = scan_chunks(B2C, 1, 0, [&frame(true, 0, 0x1, None, b"tiny")[..]]);
    assert_eq!(samples(&s)[0].preview, b"");
}

#[test]
fn sample_of_a_large_frame_exists_before_the_frame_ends() {
    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let bytes = frame(true, 0, 0x2, None, &payload);
    let mut s = Scanner::new(B2C, 2, 16);
    s.feed(&bytes[..10 + 10], now(), &mut |_| {});
    let smp = samples(&s);
    assert_eq!(smp.len(), 1);
    assert_eq!(smp[0].len, 100_000);
    assert_eq!(smp[0].preview, &payload[..10]);
    assert_eq!(s.stats().messages, 0);
    assert_eq!(s.stats().op(OpKind::Binary).payload_bytes, 10);
    s.feed(&bytes[20..30], now(), &mut |_| {});
    assert_eq!(samples(&s)[0].preview, &payload[..16]);
    s.feed(&bytes[30..], now(), &mut |_| {});
    assert_eq!(s.stats().messages, 1);
    assert!(s.at_boundary());
}

#[test]
fn ring_keeps_the_newest_samples_oldest_first_with_increasing_seq() {
    let mut s = Scanner::new(C2B, 3, 4);
    let feed = |s: &mut Scanner, i: u8| {
        // Later frames are shorter, so a reused slot must not keep stale bytes.
        let payload = vec![i; 7 - i as usize];
        s.feed(
            &frame(true, 0, 0x2, Some([i, 0, 0, 0]), &payload),
            now(),
            &mut |_| {},
        );
    };
    feed(&mut s, 0);
    feed(&mut s, 1);
    assert_eq!(s.samples().map(|x| x.seq).collect::<Vec<_>>(), [0, 1]);
    for i in 2..7 {
        feed(&mut s, i);
    }
    let smp = samples(&s);
    assert_eq!(smp.iter().map(|x| x.seq).collect::<Vec<_>>(), [4, 5, 6]);
    for x in &smp {
        let i = x.seq as u8;
        assert_eq!(x.len, u64::from(7 - i));
        assert_eq!(x.preview, vec![i; (7 - i as usize).min(4)], "seq {}", x.seq);
    }
    assert_eq!(s.next_seq(), 7);
}

#[test]
fn ring_of_zero_keeps_no_samples_but_still_numbers_frames() {
    let bytes = mixed_stream();
    let (s, _) = scan_chunks(C2B, 0, 16, [&bytes[..]]);
    assert_eq!(s.samples().count(), 0);
    assert_eq!(s.next_seq(), 8);
    assert_eq!(s.ring.capacity(), 0);
}

/// Feeds `n` binary frames, the `i`th with `i % 20` bytes of `i`.
fn feed_frames(s: &mut Scanner, n: u32) {
    for i in 0..n {
        let f = frame(true, 0, 0x2, None, &vec![i as u8; (i % 20) as usize]);
        s.feed(&f, now(), &mut |_| {});
    }
}

#[test]
fn ring_slots_and_previews_grow_with_the_first_frames_then_are_reused() {
    let mut s = Scanner::new(B2C, 16, 8);
    // A tunnel that carried one frame holds room for four, not for the whole tail
    // (an idle tunnel that once spoke is what most tunnels are).
    feed_frames(&mut s, 1);
    assert_eq!((s.ring.capacity(), s.previews.len()), (4, 4 * 8));
    feed_frames(&mut s, 4);
    assert_eq!((s.ring.capacity(), s.previews.len()), (8, 8 * 8));
    feed_frames(&mut s, 11);
    assert_eq!((s.ring.capacity(), s.previews.len()), (16, 16 * 8));
    // Full: from here on only reused.
    let ring_ptr = s.ring.as_ptr();
    let previews_ptr = s.previews.as_ptr();
    feed_frames(&mut s, 84);
    assert_eq!(s.ring.as_ptr(), ring_ptr);
    assert_eq!(s.ring.capacity(), 16);
    assert_eq!(s.previews.as_ptr(), previews_ptr);
    assert_eq!(s.samples().count(), 16);
}

#[test]
fn ring_slots_and_previews_are_reused_not_reallocated() {
    let mut s = Scanner::new(B2C, 4, 8);
    feed_frames(&mut s, 1);
    // A ring of four is allocated whole at the first frame...
    let ring_ptr = s.ring.as_ptr();
    let previews_ptr = s.previews.as_ptr();
    assert_eq!(s.ring.capacity(), 4);
    assert_eq!(s.previews.len(), 4 * 8);
    // ...and only reused after it.
    feed_frames(&mut s, 100);
    assert_eq!(s.ring.as_ptr(), ring_ptr);
    assert_eq!(s.ring.capacity(), 4);
    assert_eq!(s.previews.as_ptr(), previews_ptr);
    // The newest four frames: seq 97..=100 were the second batch's i = seq - 1, with
    // payloads of i % 20 bytes of i, previewed up to 8 bytes.
    let kept: Vec<_> = s.samples().map(|x| (x.seq, x.preview)).collect();
    let want: Vec<_> = (97..101u64)
        .map(|seq| {
            let i = seq - 1;
            (seq, vec![i as u8; ((i % 20) as usize).min(8)])
        })
        .collect();
    assert_eq!(kept, want);
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

// ---- property test: random valid-or-mis-masked streams, chopped anywhere ----

/// One step of a generated stream; turned into frames by `encode`.
#[derive(Debug, Clone)]
enum Gen {
    /// A data fragment: starts a message, or continues the open one.
    Data {
        binary: bool,
        len: usize,
        more: bool,
    },
    /// A ping (0), pong (1) or close (2), possibly between fragments.
    Control { which: u8, len: usize, code: u16 },
}

/// What was encoded, frame by frame.
#[derive(Debug)]
struct Truth {
    stream: Vec<u8>,
    /// (opcode, fin, masked, len, plaintext preview)
    frames: Vec<(u8, bool, bool, u64, Vec<u8>)>,
    starts: Vec<usize>,
    ends: Vec<usize>,
    wire: [u64; 7],
    payload: [u64; 7],
    messages: u64,
    violations: u64,
    close: Option<CloseInfo>,
}

const PREVIEW: usize = 16;
const VALID_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 3000, 4999];

fn data_len() -> impl Strategy<Value = usize> {
    // All three length encodings.
    prop_oneof![0usize..=125, 126usize..=65535, 65536usize..70000]
}

fn gen_step() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => (any::<bool>(), data_len(), any::<bool>())
            .prop_map(|(binary, len, more)| Gen::Data { binary, len, more }),
        1 => (0u8..3, 0usize..=125, prop::sample::select(&VALID_CODES[..]))
            .prop_map(|(which, len, code)| Gen::Control { which, len, code }),
    ]
}

fn encode(dir: Dir, steps: &[(Gen, bool, [u8; 4])], seed: u64) -> Truth {
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: payload bytes need not be good, only varied.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as u8
    };
    let mut t = Truth {
        stream: Vec::new(),
        frames: Vec::new(),
        starts: Vec::new(),
        ends: Vec::new(),
        wire: [0; 7],
        payload: [0; 7],
        messages: 0,
        violations: 0,
        close: None,
    };
    let mut in_message = false;
    let mut text_open = false;
    // Text payload comes from a run of random characters that carries on across the
    // fragments of a message, so sequences are split between frames; some fragments
    // get one byte spoilt. The whole text of each message is checked with std.
    let mut chars: Vec<u8> = Vec::new();
    let mut text: Option<Vec<u8>> = None;
    let mut text_byte = |next: &mut dyn FnMut() -> u8| {
        if chars.is_empty() {
            let c = match next() % 4 {
                0 => char::from(b'a' + next() % 26),
                1 => ['é', 'ß', 'ж'][usize::from(next() % 3)],
                2 => ['€', '中', '\u{FFFD}'][usize::from(next() % 3)],
                _ => ['😀', '𝄞', '\u{10FFFF}'][usize::from(next() % 3)],
            };
            let mut buf = [0; 4];
            chars.extend(c.encode_utf8(&mut buf).bytes().rev());
        }
        chars.pop().unwrap()
    };
    let mut push =
        |t: &mut Truth, fin: bool, opcode: u8, masked: bool, key: [u8; 4], payload: Vec<u8>| {
            let bytes = frame(fin, 0, opcode, masked.then_some(key), &payload);
            let kind = OpKind::from_opcode(opcode) as usize;
            t.wire[kind] += bytes.len() as u64;
            t.payload[kind] += payload.len() as u64;
            if fin && opcode <= 2 {
                t.messages += 1;
            }
            match opcode {
                0x1 => text = Some(payload.clone()),
                0x2 => text = None,
                0x0 => {
                    if let Some(text) = &mut text {
                        text.extend_from_slice(&payload);
                    }
                }
                _ => {}
            }
            if fin
                && opcode <= 2
                && text
                    .take()
                    .is_some_and(|m| std::str::from_utf8(&m).is_err())
            {
                t.violations += 1;
            }
            if masked != (dir == C2B) {
                t.violations += 1;
            }
            let preview = payload[..payload.len().min(PREVIEW)].to_vec();
            t.frames
                .push((opcode, fin, masked, payload.len() as u64, preview));
            t.starts.push(t.stream.len());
            t.stream.extend(bytes);
            t.ends.push(t.stream.len());
        };
    for (step, masked, key) in steps {
        match *step {
            Gen::Data { binary, len, more } => {
                let opcode = if in_message {
                    0
                } else if binary {
                    2
                } else {
                    1
                };
                let is_text = if in_message { text_open } else { !binary };
                text_open = is_text && more;
                in_message = more;
                let mut payload: Vec<u8> = if is_text {
                    (0..len).map(|_| text_byte(&mut next)).collect()
                } else {
                    (0..len).map(|_| next()).collect()
                };
                if is_text && len > 0 && next() % 4 == 0 {
                    let at = usize::from(next()) % len;
                    payload[at] = 0xFF;
                }
                push(&mut t, !more, opcode, *masked, *key, payload);
            }
            Gen::Control { which, len, code } => {
                let (opcode, payload) = match which {
                    0 => (0x9, (0..len).map(|_| next()).collect()),
                    1 => (0xA, (0..len).map(|_| next()).collect()),
                    _ if len == 0 => (0x8, Vec::new()),
                    _ => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend((2..len.max(2)).map(|_| b'a' + next() % 26));
                        if t.close.is_none() {
                            let reason = String::from_utf8(p[2..].to_vec()).unwrap();
                            t.close = Some(CloseInfo {
                                code: Some(code),
                                reason,
                            });
                        }
                        (0x8, p)
                    }
                };
                if opcode == 0x8 && payload.is_empty() && t.close.is_none() {
                    t.close = Some(CloseInfo {
                        code: None,
                        reason: String::new(),
                    });
                }
                push(&mut t, true, opcode, *masked, *key, payload);
            }
        }
    }
    if in_message {
        push(&mut t, true, 0, dir == C2B, [7, 7, 7, 7], Vec::new());
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_streams_chopped_anywhere_match_the_encoded_truth(
        client in any::<bool>(),
        steps in prop::collection::vec((gen_step(), any::<bool>(), any::<[u8; 4]>()), 0..24),
        seed in any::<u64>(),
        near_headers in prop::collection::vec((any::<prop::sample::Index>(), 0usize..16), 0..24),
        anywhere in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        to_boundary in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let dir = if client { C2B } else { B2C };
        let t = encode(dir, &steps, seed);
        let total = t.stream.len();

        // Cut points both anywhere and close to frame starts (inside headers).
        let mut cuts = vec![0, total];
        if !t.starts.is_empty() {
            cuts.extend(near_headers.iter().map(|(i, off)| (t.starts[i.index(t.starts.len())] + off).min(total)));
        }
        cuts.extend(anywhere.iter().map(|i| i.index(total + 1)));
        cuts.sort_unstable();
        cuts.dedup();

        let mut s = Scanner::new(dir, 8, PREVIEW);
        let mut seen = 0u64;
        for (i, w) in cuts.windows(2).enumerate() {
            let chunk = &t.stream[w[0]..w[1]];
            let mut used = 0;
            if to_boundary[i % to_boundary.len()] {
                let was_at_boundary = s.at_boundary();
                used = s.feed_to_boundary(chunk, now(), &mut |_| seen += 1);
                // Exactly up to the end of the frame in progress, if within the chunk.
                let expected = if was_at_boundary {
                    0
                } else {
                    let end = t.ends.iter().find(|&&e| e > w[0]).copied().unwrap_or(total);
                    end.min(w[1]) - w[0]
                };
                prop_assert_eq!(used, expected);
                prop_assert_eq!(s.at_boundary(), t.ends.binary_search(&(w[0] + used)).is_ok() || w[0] + used == 0);
            }
            s.feed(&chunk[used..], now(), &mut |_| seen += 1);
        }

        let st = s.stats();
        for kind in OpKind::ALL {
            let k = kind as usize;
            let frames = t.frames.iter().filter(|f| OpKind::from_opcode(f.0) == kind).count() as u64;
            prop_assert_eq!(
                *st.op(kind),
                OpCount { frames, payload_bytes: t.payload[k], wire_bytes: t.wire[k] },
                "{:?}", kind
            );
        }
        prop_assert_eq!(st.frames(), t.frames.len() as u64);
        prop_assert_eq!(s.next_seq(), t.frames.len() as u64);
        prop_assert_eq!(st.messages, t.messages);
        prop_assert_eq!(st.bytes, total as u64);
        prop_assert_eq!(st.violations, t.violations);
        prop_assert_eq!(seen, t.violations);
        prop_assert_eq!(&st.close, &t.close);
        prop_assert!(s.at_boundary());

        let kept: Vec<_> = s.samples().collect();
        let first = t.frames.len().saturating_sub(8);
        prop_assert_eq!(kept.len(), t.frames.len() - first);
        for (sample, (seq, f)) in kept.iter().zip(t.frames.iter().enumerate().skip(first)) {
            prop_assert_eq!(sample.seq, seq as u64);
            prop_assert_eq!((sample.opcode, sample.fin, sample.masked, sample.len), (f.0, f.1, f.2, f.3));
            prop_assert_eq!(&sample.preview, &f.4);
        }
    }
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

// ---- UTF-8 of text messages ----

/// A text message sent as fragments of `sizes` bytes (the last takes the rest),
/// masked as a client would, with a ping between the first two fragments.
fn fragmented_text(text: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text;
    for (i, &n) in sizes.iter().enumerate() {
        let (part, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        let op = if i == 0 { 0x1 } else { 0x0 };
        out.extend(frame(false, 0, op, Some(RFC_KEY), part));
        if i == 0 {
            out.extend(frame(true, 0, 0x9, Some(RFC_KEY), b"\xff"));
        }
    }
    let op = if sizes.is_empty() { 0x1 } else { 0x0 };
    out.extend(frame(true, 0, op, Some(RFC_KEY), rest));
    out
}

fn utf8_violations(bytes: &[u8], splits: &[usize]) -> usize {
    let mut cuts = vec![0];
    cuts.extend(splits.iter().copied().filter(|&c| c < bytes.len()));
    cuts.push(bytes.len());
    let (_, v) = scan_chunks(C2B, 4, 4, cuts.windows(2).map(|w| &bytes[w[0]..w[1]]));
    v.iter().filter(|v| **v == Violation::InvalidUtf8).count()
}

#[test]
fn valid_utf8_split_anywhere_across_fragments_and_chunks_is_no_violation() {
    let text = "aé€😀𝄞\u{10FFFF}ж中z".as_bytes();
    for a in 0..=text.len() {
        for b in a..=text.len() {
            let bytes = fragmented_text(text, &[a, b - a]);
            for cut in 0..bytes.len() {
                assert_eq!(
                    utf8_violations(&bytes, &[cut]),
                    0,
                    "fragments {a},{b} cut {cut}"
                );
            }
        }
    }
}

#[test]
fn each_kind_of_bad_utf8_is_one_violation_wherever_it_is_split() {
    let bad: [(&str, &[u8]); 8] = [
        ("lone continuation byte", b"ab\x80cd"),
        ("overlong slash", b"a\xc0\xafb"),
        ("overlong three-byte", b"\xe0\x80\xafz"),
        ("UTF-16 surrogate", b"x\xed\xa0\x80y"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("0xFF", b"ok\xff"),
        ("ends inside a sequence", b"price: \xe2\x82"),
        ("lead byte then ASCII", b"\xc3("),
    ];
    for (name, text) in bad {
        for a in 0..=text.len() {
            let bytes = fragmented_text(text, &[a]);
            for cut in 0..bytes.len() {
                assert_eq!(
                    utf8_violations(&bytes, &[cut]),
                    1,
                    "{name}: fragment {a} cut {cut}"
                );
            }
        }
        // Unmasked and in one frame, as a server sends it.
        let (_, v) = scan(B2C, &frame(true, 0, 0x1, None, text));
        assert_eq!(v, [Violation::InvalidUtf8], "{name}");
    }
}

#[test]
fn bad_utf8_is_reported_once_per_message_and_the_next_message_is_checked_afresh() {
    let mut bytes = frame(true, 0, 0x1, None, b"\xff\xfe\xff");
    bytes.extend(frame(true, 0, 0x1, None, "fine ✓".as_bytes()));
    // A message cut off inside a sequence does not spoil the next one.
    bytes.extend(frame(true, 0, 0x1, None, b"\xe2\x9c"));
    bytes.extend(frame(true, 0, 0x1, None, b"\x93 new"));
    let (s, v) = scan(B2C, &bytes);
    assert_eq!(v, [Violation::InvalidUtf8; 3]);
    assert_eq!(s.stats().violations, 3);
    assert_eq!(s.stats().messages, 4);
}

#[test]
fn binary_and_compressed_text_are_not_checked_as_utf8() {
    let mut s = Scanner::new(B2C, 4, 4);
    s.set_allowed_rsv(0b100);
    let mut bytes = frame(true, 0, 0x2, None, b"\xff\xfe");
    // permessage-deflate: RSV1 on the first frame, payload is compressed.
    bytes.extend(frame(false, 0b100, 0x1, None, b"\xff\x00"));
    bytes.extend(frame(true, 0, 0x0, None, b"\xc0"));
    let mut seen = Vec::new();
    s.feed(&bytes, now(), &mut |v| seen.push(v));
    assert_eq!(seen, []);
    assert_eq!(s.stats().messages, 2);
}
