//! Passive health: failures down a backend, a trial brings it back.

use super::*;

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
