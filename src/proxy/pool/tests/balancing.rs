//! Which backend each policy picks: least_conn, round_robin, hash, backups, exclusions.

use super::*;

#[test]
fn least_conn_picks_the_least_loaded() {
    let p = pool(
        Balance::LeastConn,
        &[(A, 1, false), (B, 1, false), (C, 1, false)],
    );
    let _a1 = backend(&p, A).lease();
    let _a2 = backend(&p, A).lease();
    let _b1 = backend(&p, B).lease();
    for _ in 0..5 {
        assert_eq!(pick_addr(&p, None), C);
    }
}

#[test]
fn least_conn_spreads_evenly_with_held_leases() {
    let p = pool(
        Balance::LeastConn,
        &[(A, 1, false), (B, 1, false), (C, 1, false), (D, 1, false)],
    );
    let counts = count_picks(&p, 40, true);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![10; 4]);
}

#[test]
fn least_conn_rotates_ties_when_tunnels_end_at_once() {
    let p = pool(Balance::LeastConn, &[(A, 1, false), (B, 1, false)]);
    let counts = count_picks(&p, 100, false);
    assert_eq!(counts[A], 50);
    assert_eq!(counts[B], 50);
}

#[test]
fn least_conn_respects_weights_with_held_leases() {
    let p = pool(Balance::LeastConn, &[(A, 3, false), (B, 1, false)]);
    let counts = count_picks(&p, 400, true);
    assert!((297..=303).contains(&counts[A]), "{counts:?}");
    assert_eq!(counts[A] + counts[B], 400);
}

#[test]
fn round_robin_respects_weights_exactly() {
    let p = pool(Balance::RoundRobin, &[(A, 3, false), (B, 1, false)]);
    let counts = count_picks(&p, 400, false);
    assert_eq!(counts[A], 300);
    assert_eq!(counts[B], 100);
}

#[test]
fn round_robin_is_smooth_like_nginx() {
    let p = pool(
        Balance::RoundRobin,
        &[(A, 5, false), (B, 1, false), (C, 1, false)],
    );
    let seq: Vec<String> = (0..14).map(|_| pick_addr(&p, None)).collect();
    let cycle = [A, A, B, A, C, A, A];
    let expected: Vec<&str> = cycle.iter().chain(cycle.iter()).copied().collect();
    assert_eq!(seq, expected);
}

#[test]
fn round_robin_skips_ineligible_backends() {
    let p = pool(
        Balance::RoundRobin,
        &[(A, 1, false), (B, 1, false), (C, 1, false)],
    );
    backend(&p, B).disable();
    let seq: Vec<String> = (0..4).map(|_| pick_addr(&p, None)).collect();
    assert_eq!(seq, [A, C, A, C]);
}

#[test]
fn fnv1a_matches_reference_vectors() {
    assert_eq!(fnv1a64(&[b""]), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(&[b"foo", b"bar"]), 0x8594_4171_f739_67e8);
}

#[test]
fn hash_is_stable_for_a_key_and_across_restarts() {
    let servers = [(A, 1, false), (B, 1, false), (C, 1, false)];
    let first = pool(Balance::Hash, &servers);
    let restarted = pool(Balance::Hash, &servers);
    for key in keys(50) {
        let addr = pick_addr(&first, Some(&key));
        for _ in 0..3 {
            assert_eq!(pick_addr(&first, Some(&key)), addr);
        }
        assert_eq!(pick_addr(&restarted, Some(&key)), addr);
    }
}

#[test]
fn hash_spreads_many_keys_over_all_backends() {
    let p = pool(
        Balance::IpHash,
        &[(A, 1, false), (B, 1, false), (C, 1, false), (D, 1, false)],
    );
    let ips: Vec<String> = (0..1000)
        .map(|i| format!("192.168.{}.{}", i / 256, i % 256))
        .collect();
    let mut counts = BTreeMap::new();
    for addr in assignment(&p, &ips) {
        *counts.entry(addr).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 4);
    for (addr, n) in &counts {
        assert!(
            (170..=330).contains(n),
            "{addr} got {n} of 1000: {counts:?}"
        );
    }
}

#[test]
fn hash_respects_weights() {
    let p = pool(Balance::Hash, &[(A, 3, false), (B, 1, false)]);
    let on_a = assignment(&p, &keys(2000))
        .iter()
        .filter(|a| *a == A)
        .count();
    assert!(
        (1400..=1600).contains(&on_a),
        "{on_a} of 2000 on the weight-3 backend"
    );
}

#[test]
fn hash_draining_a_backend_moves_only_its_keys() {
    let p = pool(
        Balance::Hash,
        &[(A, 1, false), (B, 1, false), (C, 1, false), (D, 1, false)],
    );
    let keys = keys(1000);
    let before = assignment(&p, &keys);
    backend(&p, B).drain();
    let after = assignment(&p, &keys);
    let mut moved = 0;
    for (was, now) in before.iter().zip(&after) {
        if was == B {
            assert_ne!(now, B);
            moved += 1;
        } else {
            assert_eq!(was, now);
        }
    }
    assert!(moved > 100, "only {moved} keys were on B");
    backend(&p, B).undrain();
    assert_eq!(assignment(&p, &keys), before);
}

#[test]
fn hash_removing_a_backend_from_config_moves_only_its_keys() {
    let all = pool(
        Balance::Hash,
        &[(A, 1, false), (B, 2, false), (C, 1, false)],
    );
    let fewer = pool(Balance::Hash, &[(A, 1, false), (C, 1, false)]);
    let keys = keys(1000);
    for (was, now) in assignment(&all, &keys)
        .iter()
        .zip(assignment(&fewer, &keys))
    {
        if was != B {
            assert_eq!(*was, now);
        }
    }
}

#[test]
fn hash_without_key_falls_back_to_round_robin() {
    let p = pool(Balance::IpHash, &[(A, 1, false), (B, 1, false)]);
    let seq: Vec<String> = (0..4).map(|_| pick_addr(&p, None)).collect();
    assert_eq!(seq, [A, B, A, B]);
}

#[test]
fn backup_is_used_only_when_no_primary_is_eligible() {
    let p = pool(
        Balance::RoundRobin,
        &[(A, 1, false), (B, 1, false), (C, 5, true)],
    );
    for _ in 0..10 {
        assert_ne!(pick_addr(&p, None), C);
    }
    backend(&p, A).disable();
    backend(&p, B).drain();
    assert_eq!(pick_addr(&p, None), C);
    backend(&p, A).enable();
    assert_eq!(pick_addr(&p, None), A);
}

#[test]
fn backup_is_used_when_all_primaries_were_tried() {
    let p = pool(Balance::LeastConn, &[(A, 1, false), (B, 1, true)]);
    assert_eq!(p.pick(None, &[id(A)]).unwrap().addr, B);
}

#[test]
fn exclude_list_is_respected() {
    for balance in [
        Balance::LeastConn,
        Balance::RoundRobin,
        Balance::IpHash,
        Balance::Hash,
    ] {
        let p = pool(balance, &[(A, 1, false), (B, 1, false), (C, 1, false)]);
        for i in 0..20 {
            let key = format!("k{i}");
            let b = p.pick(Some(&key), &[id(A), id(C)]).unwrap();
            assert_eq!(b.addr, B, "{balance:?}");
        }
        assert!(p.pick(Some("k"), &[id(A), id(B), id(C)]).is_none());
    }
}

#[test]
fn pick_returns_none_when_nothing_is_eligible() {
    let p = pool(Balance::LeastConn, &[(A, 1, false), (B, 1, true)]);
    backend(&p, A).disable();
    backend(&p, B).drain();
    assert!(p.pick(None, &[]).is_none());
    let now = Instant::now();
    backend(&p, B).undrain();
    backend(&p, B).record_failure("refused", now);
    assert!(p.pick_at(None, &[], now).is_none());
}
