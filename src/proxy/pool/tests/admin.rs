//! Draining and enabling backends, and the state events they publish.

use super::*;

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
