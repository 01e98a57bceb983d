//! UTF-8 of text messages, checked across fragments and chunks.

use super::*;

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
