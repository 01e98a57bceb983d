//! Payload previews and the ring of recent frame samples.

use super::*;

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
