//! Tests of the pool module: algorithms, admin transitions, passive health, events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::select::fnv1a64;
use super::*;
use crate::config::{self, Balance, HostHeader};
use crate::event::{AdminState, BackendId, BackendInfo, Event, Health};

const A: &str = "10.0.0.1:80";
const B: &str = "10.0.0.2:80";
const C: &str = "10.0.0.3:80";
const D: &str = "10.0.0.4:80";

/// A pool configuration: servers as (addr, weight, backup).
fn cfg(balance: Balance, servers: &[(&str, u32, bool)]) -> config::Pool {
    config::Pool {
        balance,
        hash_key: None,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        tries: 3,
        host_header: HostHeader::Keep,
        tls: false,
        ca: None,
        server_name: None,
        drain_deadline: Duration::ZERO,
        close_rate: 50,
        resolve_interval: Duration::from_secs(30),
        keepalive: 32,
        keepalive_timeout: Duration::from_secs(60),
        health: None,
        servers: servers
            .iter()
            .map(|&(addr, weight, backup)| config::Server {
                addr: addr.to_string(),
                weight,
                backup,
                via: None,
            })
            .collect(),
    }
}

fn pool_with(config: config::Pool) -> (Pool, broadcast::Receiver<Event>) {
    let (tx, rx) = broadcast::channel(4096);
    (Pool::new("p", config, tx), rx)
}

fn pool(balance: Balance, servers: &[(&str, u32, bool)]) -> Pool {
    pool_with(cfg(balance, servers)).0
}

fn backend<'a>(pool: &'a Pool, addr: &str) -> &'a Arc<Backend> {
    pool.backends().iter().find(|b| b.addr == addr).unwrap()
}

fn id(addr: &str) -> BackendId {
    BackendId::new("p", addr)
}

/// Address of the pick, "-" for none.
fn pick_addr(pool: &Pool, key: Option<&str>) -> String {
    pool.pick(key, &[]).map_or("-".into(), |b| b.addr.clone())
}

/// How many of `n` picks each address got, leases held or not.
fn count_picks(pool: &Pool, n: usize, hold: bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let b = pool.pick(None, &[]).unwrap();
        *counts.entry(b.addr.clone()).or_insert(0) += 1;
        if hold {
            held.push(b.lease());
        }
    }
    counts
}

/// The state events published so far, in order.
fn states(rx: &mut broadcast::Receiver<Event>) -> Vec<BackendInfo> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let Event::BackendState(info) = event {
            out.push(info);
        }
    }
    out
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

fn assignment(pool: &Pool, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| pick_addr(pool, Some(k))).collect()
}

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

#[test]
fn draining_backend_gets_no_picks_and_is_drained_after_its_last_lease() {
    let (p, mut rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false), (B, 1, false)]));
    let a = Arc::clone(backend(&p, A));
    let first = a.lease();
    let second = a.lease();
    a.drain();
    assert_eq!(a.admin(), AdminState::Draining);
    for _ in 0..10 {
        assert_eq!(pick_addr(&p, None), B);
    }
    drop(first);
    assert_eq!(a.admin(), AdminState::Draining);
    drop(second);
    assert_eq!(a.admin(), AdminState::Drained);
    assert!(!a.eligible(Instant::now()));

    let seen: Vec<(AdminState, u64)> = states(&mut rx)
        .into_iter()
        .filter(|i| i.id == id(A))
        .map(|i| (i.admin, i.active_tunnels))
        .collect();
    assert_eq!(
        seen,
        [
            (AdminState::Active, 1),
            (AdminState::Active, 2),
            (AdminState::Draining, 2),
            (AdminState::Draining, 1),
            (AdminState::Drained, 0),
        ]
    );
}

#[test]
fn drain_without_tunnels_goes_straight_to_drained() {
    let (p, mut rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false)]));
    backend(&p, A).drain();
    assert_eq!(backend(&p, A).admin(), AdminState::Drained);
    let seen: Vec<AdminState> = states(&mut rx).iter().map(|i| i.admin).collect();
    assert_eq!(seen, [AdminState::Drained]);
}

#[test]
fn lease_on_a_drained_backend_makes_it_draining_again() {
    let p = pool(Balance::LeastConn, &[(A, 1, false)]);
    let a = backend(&p, A);
    a.drain();
    let lease = a.lease();
    assert_eq!(a.admin(), AdminState::Draining);
    drop(lease);
    assert_eq!(a.admin(), AdminState::Drained);
}

#[test]
fn admin_transitions_publish_each_change_only() {
    let (p, mut rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false)]));
    let a = backend(&p, A);
    a.enable(); // already active: nothing
    a.disable();
    a.drain(); // a disabled backend stays disabled
    a.disable(); // no change
    a.enable();
    a.drain();
    a.undrain();
    a.disable();
    a.undrain();
    a.undrain(); // no change
    assert_eq!(a.admin(), AdminState::Active);
    let seen: Vec<AdminState> = states(&mut rx).iter().map(|i| i.admin).collect();
    use AdminState::*;
    assert_eq!(seen, [Disabled, Active, Drained, Active, Disabled, Active]);
}

#[test]
fn enable_does_not_undo_a_drain() {
    let p = pool(Balance::LeastConn, &[(A, 1, false)]);
    let a = backend(&p, A);
    let _lease = a.lease();
    a.drain();
    a.enable();
    assert_eq!(a.admin(), AdminState::Draining);
}

#[test]
fn passive_health_downs_then_gives_one_trial_then_recovers() {
    let mut config = cfg(Balance::LeastConn, &[(A, 1, false), (B, 1, false)]);
    config.max_fails = 2;
    let (p, mut rx) = pool_with(config);
    let a = Arc::clone(backend(&p, A));
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);

    a.record_failure("connection refused", at(0));
    assert_eq!(a.health(at(0)), Health::Up);
    assert!(a.eligible(at(0)));
    a.record_failure("connection refused", at(3));
    assert_eq!(a.health(at(3)), Health::Down);
    assert!(!a.eligible(at(3)));
    for s in [3, 8, 12] {
        let picked = p.pick_at(None, &[], at(s)).unwrap();
        assert_eq!(picked.addr, B, "at {s}s");
    }

    // fail_timeout (10s) after going down: exactly one trial, then none until the
    // trial's outcome or another fail_timeout.
    let _b = backend(&p, B).lease();
    assert!(a.eligible(at(13)));
    assert_eq!(p.pick_at(None, &[], at(13)).unwrap().addr, A);
    assert_eq!(p.pick_at(None, &[], at(14)).unwrap().addr, B);
    assert_eq!(a.health(at(14)), Health::Down);

    a.record_success();
    assert_eq!(a.health(at(14)), Health::Up);
    assert!(a.eligible(at(14)));

    let seen: Vec<(Health, u64)> = states(&mut rx)
        .into_iter()
        .filter(|i| i.id == id(A))
        .map(|i| (i.health, i.failures))
        .collect();
    assert_eq!(seen, [(Health::Up, 1), (Health::Down, 2), (Health::Up, 2)]);
    let info = a.info();
    assert_eq!(info.last_error.as_deref(), Some("connection refused"));
}

#[test]
fn failed_trial_keeps_the_backend_down_for_another_fail_timeout() {
    let (p, _rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false)]));
    let a = backend(&p, A);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    a.record_failure("timeout", at(0));
    assert!(p.pick_at(None, &[], at(5)).is_none());
    assert!(p.pick_at(None, &[], at(10)).is_some());
    a.record_failure("timeout", at(11));
    assert_eq!(a.health(at(11)), Health::Down);
    assert!(p.pick_at(None, &[], at(20)).is_none());
    assert!(p.pick_at(None, &[], at(21)).is_some());
}

#[test]
fn failures_spread_beyond_fail_timeout_do_not_down() {
    let mut config = cfg(Balance::LeastConn, &[(A, 1, false)]);
    config.max_fails = 2;
    let (p, _rx) = pool_with(config);
    let a = backend(&p, A);
    let t0 = Instant::now();
    a.record_failure("refused", t0);
    a.record_failure("refused", t0 + Duration::from_secs(11));
    assert_eq!(a.health(t0 + Duration::from_secs(11)), Health::Up);
    a.record_failure("refused", t0 + Duration::from_secs(12));
    assert_eq!(a.health(t0 + Duration::from_secs(12)), Health::Down);
}

#[test]
fn success_resets_the_failure_window() {
    let mut config = cfg(Balance::LeastConn, &[(A, 1, false)]);
    config.max_fails = 2;
    let (p, _rx) = pool_with(config);
    let a = backend(&p, A);
    let t0 = Instant::now();
    a.record_failure("refused", t0);
    a.record_success();
    a.record_failure("refused", t0 + Duration::from_secs(1));
    assert_eq!(a.health(t0 + Duration::from_secs(1)), Health::Up);
    assert_eq!(a.info().failures, 2);
}

#[test]
fn max_fails_zero_never_downs() {
    let mut config = cfg(Balance::LeastConn, &[(A, 1, false)]);
    config.max_fails = 0;
    let (p, _rx) = pool_with(config);
    let a = backend(&p, A);
    let now = Instant::now();
    for _ in 0..100 {
        a.record_failure("refused", now);
    }
    assert_eq!(a.health(now), Health::Up);
    assert_eq!(a.info().failures, 100);
    assert!(p.pick_at(None, &[], now).is_some());
}

#[test]
fn health_and_admin_are_independent() {
    let (p, _rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false)]));
    let a = backend(&p, A);
    let now = Instant::now();
    a.disable();
    a.record_failure("refused", now);
    a.record_success();
    assert_eq!(a.admin(), AdminState::Disabled);
    assert!(!a.eligible(now));
    a.enable();
    a.record_failure("refused", now);
    assert_eq!(a.admin(), AdminState::Active);
    assert!(!a.eligible(now));
}

#[test]
fn lease_counts_tunnels() {
    let p = pool(Balance::LeastConn, &[(A, 1, false)]);
    let a = backend(&p, A);
    let one = a.lease();
    let two = a.lease();
    one.established();
    two.established();
    assert_eq!(a.active(), 2);
    assert!(Arc::ptr_eq(one.backend(), a));
    drop(one);
    drop(two);
    let three = a.lease();
    let info = a.info();
    // A lease that never got established (a failed connect) is not served.
    assert_eq!((info.active_tunnels, info.total_tunnels), (1, 2));
    three.established();
    assert_eq!(a.info().total_tunnels, 3);
}

#[test]
fn pools_are_listed_in_name_then_server_order() {
    let mut configs = BTreeMap::new();
    configs.insert(
        "web".to_string(),
        cfg(Balance::LeastConn, &[(B, 1, false), (A, 1, false)]),
    );
    configs.insert(
        "api".to_string(),
        cfg(Balance::RoundRobin, &[(C, 1, false)]),
    );
    let (tx, _rx) = broadcast::channel(16);
    let pools = Pools::new(&configs, tx);

    let order: Vec<String> = pools.backends().iter().map(|b| b.id.to_string()).collect();
    assert_eq!(
        order,
        ["api/10.0.0.3:80", "web/10.0.0.2:80", "web/10.0.0.1:80"]
    );
    let infos: Vec<BackendId> = pools.infos().into_iter().map(|i| i.id).collect();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1], BackendId::new("web", B));

    assert_eq!(
        pools.get("api").unwrap().config.balance,
        Balance::RoundRobin
    );
    assert!(pools.get("nope").is_none());
    let found = pools.backend(&BackendId::new("web", A)).unwrap();
    assert_eq!(found.addr, A);
    assert!(pools.backend(&BackendId::new("api", A)).is_none());
    assert!(pools.backend(&BackendId::new("nope", A)).is_none());
}

#[test]
fn pools_share_one_event_channel() {
    let mut configs = BTreeMap::new();
    configs.insert("x".to_string(), cfg(Balance::LeastConn, &[(A, 1, false)]));
    let (tx, mut rx) = broadcast::channel(16);
    let pools = Pools::new(&configs, tx);
    pools.backend(&BackendId::new("x", A)).unwrap().disable();
    let seen = states(&mut rx);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, BackendId::new("x", A));
    assert_eq!(seen[0].admin, AdminState::Disabled);
}

#[test]
fn concurrent_leases_on_a_draining_backend_end_drained() {
    let p = pool(Balance::LeastConn, &[(A, 1, false)]);
    let a = Arc::clone(backend(&p, A));
    let _held = a.lease();
    _held.established();
    a.drain();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    a.lease().established();
                }
            })
        })
        .collect();
    drop(_held);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(a.active(), 0);
    assert_eq!(a.total(), 8001);
    assert_eq!(a.admin(), AdminState::Drained);
}

/// Every state event carries a newer version than the one before, whichever
/// thread built it; a snapshot carries the version of the last event.
#[test]
fn state_events_from_two_threads_carry_increasing_versions() {
    let (p, mut rx) = pool_with(cfg(Balance::LeastConn, &[(A, 1, false)]));
    let a = Arc::clone(backend(&p, A));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let a = &a;
            s.spawn(move || {
                for _ in 0..100 {
                    let lease = a.lease();
                    lease.established();
                }
            });
        }
    });
    let mut versions: Vec<u64> = states(&mut rx).iter().map(|i| i.version).collect();
    assert_eq!(
        versions.len(),
        600,
        "lease, established, end: one event each"
    );
    let last = a.info().version;
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 600, "no two events share a version");
    assert_eq!(versions.last(), Some(&last));
}

/// A reload swaps the whole set at once; a tunnel's lease on a backend the new set
/// no longer has keeps that backend (and its counts) alive until the tunnel ends.
#[test]
fn a_backend_removed_by_a_replace_lives_on_in_its_leases() {
    let (tx, _rx) = broadcast::channel(64);
    let one = BTreeMap::from([("p".to_string(), cfg(Balance::LeastConn, &[(A, 1, false)]))]);
    let pools = Pools::new(&one, tx.clone());
    let old = pools.get("p").unwrap().pick(None, &[]).unwrap();
    let lease = old.lease();
    lease.established();

    let other = BTreeMap::from([("p".to_string(), cfg(Balance::LeastConn, &[(B, 1, false)]))]);
    pools.replace(&other, tx);
    let ids: Vec<String> = pools.backends().iter().map(|b| b.id.to_string()).collect();
    assert_eq!(ids, [format!("p/{B}")]);
    assert!(pools.backend(&old.id).is_none());
    assert_eq!((lease.backend().active(), lease.backend().total()), (1, 1));
    drop(lease);
    assert_eq!(old.active(), 0);
}

/// Active checks are spread: the first falls somewhere in the first interval, each
/// next one 90-110% of an interval after the last, and none starts while one runs.
#[test]
fn health_checks_come_with_jitter_and_never_overlap() {
    let p = pool(Balance::LeastConn, &[(A, 1, false)]);
    let a = backend(&p, A);
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    assert!(
        !a.check_due(t0, second),
        "the first check waits for its random offset"
    );
    let first = (0..=100)
        .map(|ms| t0 + Duration::from_millis(ms * 10))
        .find(|&t| a.check_due(t, second))
        .expect("the first check comes within one interval");
    assert!(!a.check_due(first + 2 * second, second), "one at a time");
    let passed = crate::event::CheckResult {
        at: std::time::SystemTime::now(),
        latency: Duration::from_millis(1),
        error: None,
    };
    a.record_check(passed, 2, 3);
    assert!(!a.check_due(first + second * 89 / 100, second));
    assert!(a.check_due(first + second * 111 / 100, second));
}
