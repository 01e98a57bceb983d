//! Close codes and reasons, and each protocol violation the scanner reports.

use super::*;

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
