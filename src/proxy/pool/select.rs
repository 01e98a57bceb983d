//! The balancing algorithms behind one trait: least_conn (fewest tunnels per
//! weight), round_robin (smooth weighted, nginx's), and rendezvous hashing for
//! ip_hash and hash, so a key keeps its backend while the others come and go.

use crate::sync::lock;
use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Backend;
use crate::config::Balance;

/// A backend eligible for the pick at hand, with its position in the pool (which
/// keys the round-robin state).
pub(super) struct Candidate<'a> {
    pub(super) index: usize,
    pub(super) backend: &'a Arc<Backend>,
}

/// A balancing algorithm, with its state. It only ever sees eligible candidates of
/// one tier (primaries or backups), never none, so each is plain arithmetic.
pub(super) trait Select: Send + Sync + std::fmt::Debug {
    /// The position in `candidates` of the one to use. `key` is the hash input of
    /// ip_hash and hash (None: fall back to round robin).
    fn choose(&self, candidates: &[Candidate<'_>], key: Option<&str>) -> usize;
}

/// The algorithm a pool's `balance` names.
pub(super) fn for_balance(balance: Balance, backends: usize) -> Box<dyn Select> {
    match balance {
        Balance::LeastConn => Box::new(LeastConn {
            turn: AtomicUsize::new(0),
        }),
        Balance::RoundRobin => Box::new(RoundRobin::new(backends)),
        Balance::IpHash | Balance::Hash => Box::new(Hash {
            fallback: RoundRobin::new(backends),
        }),
    }
}

/// Fewest tunnels per weight, with a rotating counter that breaks ties.
#[derive(Debug)]
struct LeastConn {
    turn: AtomicUsize,
}

impl Select for LeastConn {
    fn choose(&self, candidates: &[Candidate<'_>], _key: Option<&str>) -> usize {
        least_conn(candidates, self.turn.fetch_add(1, Ordering::Relaxed))
    }
}

/// Smooth weighted round robin; current weights by backend index.
#[derive(Debug)]
struct RoundRobin {
    current: Mutex<Vec<i64>>,
}

impl RoundRobin {
    fn new(backends: usize) -> Self {
        RoundRobin {
            current: Mutex::new(vec![0; backends]),
        }
    }
}

impl Select for RoundRobin {
    fn choose(&self, candidates: &[Candidate<'_>], _key: Option<&str>) -> usize {
        smooth_wrr(&mut lock(&self.current), candidates)
    }
}

/// Rendezvous hashing (ip_hash and hash); round robin for requests without a key.
#[derive(Debug)]
struct Hash {
    fallback: RoundRobin,
}

impl Select for Hash {
    fn choose(&self, candidates: &[Candidate<'_>], key: Option<&str>) -> usize {
        match key {
            Some(key) => rendezvous(key, candidates),
            None => self.fallback.choose(candidates, None),
        }
    }
}

/// Fewest active tunnels per unit of weight; ties go round robin by `turn` so equal
/// backends share evenly even when tunnels are short.
fn least_conn(candidates: &[Candidate<'_>], turn: usize) -> usize {
    // Read each counter once: they move under our feet.
    let loads: Vec<(u64, u32)> = candidates
        .iter()
        .map(|c| (c.backend.active(), c.backend.weight))
        .collect();
    // active_a / weight_a < active_b / weight_b, cross-multiplied to stay in integers
    // (u128 cannot overflow: u64 * u32).
    let cmp = |(aa, wa): (u64, u32), (ab, wb): (u64, u32)| {
        (u128::from(aa) * u128::from(wb)).cmp(&(u128::from(ab) * u128::from(wa)))
    };
    let mut best: Vec<usize> = vec![0];
    for (i, &load) in loads.iter().enumerate().skip(1) {
        match cmp(load, loads[best[0]]) {
            CmpOrdering::Less => {
                best.clear();
                best.push(i);
            }
            CmpOrdering::Equal => best.push(i),
            CmpOrdering::Greater => {}
        }
    }
    best[turn % best.len()]
}

/// nginx's smooth weighted round robin: every candidate's current weight grows by its
/// weight, the largest wins (the first on ties) and pays back the total. Over a cycle
/// each backend gets exactly its share, interleaved rather than in bursts.
fn smooth_wrr(current: &mut [i64], candidates: &[Candidate<'_>]) -> usize {
    let mut total = 0i64;
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate() {
        let weight = i64::from(c.backend.weight);
        current[c.index] += weight;
        total += weight;
        if current[c.index] > current[candidates[best].index] {
            best = i;
        }
    }
    current[candidates[best].index] -= total;
    best
}

/// Weighted rendezvous (highest random weight) hashing: each candidate scores the key
/// independently, so removing one only moves the keys it held.
fn rendezvous(key: &str, candidates: &[Candidate<'_>]) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, c) in candidates.iter().enumerate() {
        let score = rendezvous_score(key, &c.backend.addr, c.backend.weight);
        if score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

/// `weight / -ln(u)` with `u` uniform in (0, 1) from a stable hash of key and address:
/// the maximum over backends lands on each with probability proportional to its
/// weight (the logarithmic method of weighted rendezvous hashing).
fn rendezvous_score(key: &str, addr: &str, weight: u32) -> f64 {
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    let h = fmix64(fnv1a64(&[key.as_bytes(), &[0xff], addr.as_bytes()]));
    // The top 52 bits, centred: exactly representable and never 0 or 1.
    let u = ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
    f64::from(weight) / -u.ln()
}

/// FNV-1a, 64 bits, over the concatenation of `parts`. Chosen over std's hasher
/// because keys must map to the same backend across process restarts.
pub(super) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's finaliser: FNV's high bits barely change between similar keys
/// ("10.0.0.1" vs "10.0.0.2"); this spreads every input bit over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
