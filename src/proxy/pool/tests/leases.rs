//! Leases, the pool list, and state changes from several threads.

use super::*;

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
