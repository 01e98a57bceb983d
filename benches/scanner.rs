//! The frame scanner on the relay's hot path: what it costs per frame to count,
//! check and sample the echo benchmark's traffic (8 masked 64-byte binary frames per
//! read, the dashboard's 16-frame ring with 64-byte previews).
//!
//! `cargo bench --bench scanner` prints nanoseconds per frame (median of 9 runs).
//! Timings move with the machine; instruction counts do not:
//!
//! ```sh
//! cargo bench --bench scanner --no-run     # prints the executable's path
//! valgrind --tool=callgrind <that path> --frames 800000
//! ```
//!
//! and divide callgrind's "Collected" by the frame count.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use tunnelscope::event::Dir;
use tunnelscope::proxy::frame::Scanner;

/// The bytes of one read: `frames` masked binary frames of `len` payload bytes.
fn chunk(frames: u8, len: u8) -> Vec<u8> {
    assert!(len < 126, "7-bit lengths only");
    let mut out = Vec::new();
    for i in 0..frames {
        out.extend_from_slice(&[0x82, 0x80 | len, 0x11, 0x22, 0x33, i]);
        out.extend((0..len).map(|b| b ^ i));
    }
    out
}

/// Feeds `reads` copies of `data` to a fresh scanner; returns the frames it counted.
fn run(data: &[u8], reads: usize) -> u64 {
    let mut scanner = Scanner::new(Dir::ClientToBackend, 16, 64);
    let mut violations = 0u64;
    for _ in 0..reads {
        scanner.feed(black_box(data), SystemTime::UNIX_EPOCH, &mut |_| {
            violations += 1
        });
    }
    assert_eq!(violations, 0, "the benchmark's frames are well-formed");
    scanner.stats().frames()
}

fn main() {
    // `cargo bench` passes `--bench`; `--frames N` sets the work for a callgrind run.
    let args: Vec<String> = std::env::args().collect();
    let frames = args
        .iter()
        .position(|a| a == "--frames")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok());
    let data = chunk(8, 64);
    if let Some(frames) = frames {
        let counted = run(&data, frames.div_ceil(8));
        println!("scanned {counted} frames");
        return;
    }
    let reads = 250_000;
    let mut ns: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            let counted = run(&data, reads);
            start.elapsed().as_nanos() as f64 / counted as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    println!(
        "scanner: {:.1} ns per masked 64-byte frame (median of 9 runs of {} frames; min {:.1}, max {:.1})",
        ns[4],
        reads * 8,
        ns[0],
        ns[8]
    );
}
