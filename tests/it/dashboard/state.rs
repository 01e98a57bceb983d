//! The dashboard model: event sequences in, counts, shares, history and rates out.

use std::time::Duration;

use tracing::Level;
use tunnelscope::dashboard::rates::HISTORY_SECS;
use tunnelscope::dashboard::state::{Ending, State, CLOSED_MAX, LOG_CAP, TAIL_CAP};
use tunnelscope::event::{
    AdminState, Dir, Event, Health, Refusal, Side, Snapshot, TunnelInfo, TunnelStats,
};

use super::{at, backend, bid, busy_state, handshake, open, open_events, sample, snapshot, stats};

fn close(state: &mut State, id: u64, code: Option<u16>, side: Side, when: f64) {
    state.apply(
        &Event::TunnelClosed {
            id,
            code,
            reason: String::new(),
            side,
            duration: Duration::from_secs(5),
            stats: TunnelStats::default(),
            error: None,
        },
        at(when),
    );
}

#[test]
fn snapshot_gives_backends_listeners_uptime_and_live_tunnels() {
    let mut snap = snapshot();
    snap.total_tunnels = 42;
    snap.tunnels.push(TunnelInfo {
        id: 3,
        opened: at(-10.0),
        client: super::addr("10.0.0.1:1234"),
        listener: "public".into(),
        route: "chat".into(),
        path: "/ws".into(),
        backend: Some(bid("127.0.0.1:9001")),
        handshake: Some(handshake(false)),
        stats: stats((1, 10), (2, 20), -1.0),
        samples: vec![sample(0, Dir::ClientToBackend, 1, 0, b"hi", -1.0)],
        idle_timeout: None,
        held: Vec::new(),
        parked: false,
        instance: None,
    });
    let s = State::from_snapshot(snap, at(0.0));
    assert_eq!(s.backends.len(), 3);
    assert_eq!(s.listeners.len(), 1);
    assert_eq!(s.totals.tunnels, 42);
    assert_eq!(s.uptime(), Some(Duration::from_secs(100)));
    assert_eq!(s.live_count(), 1);
    assert_eq!(s.tunnels[&3].tail.len(), 1);
}

#[test]
fn an_upgraded_tunnel_is_live_and_counted_once() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    open(&mut s, 1, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0);
    // The same events again (seen in the snapshot and on the bus) change nothing.
    open(&mut s, 1, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0);
    assert_eq!(s.live_count(), 1);
    assert_eq!(s.totals.tunnels, 1);
    let t = &s.tunnels[&1];
    assert_eq!(t.backend, Some(bid("127.0.0.1:9001")));
    assert_eq!(t.subprotocol(), Some("chat.v2"));
}

#[test]
fn a_handshake_in_progress_is_listed_but_not_counted_live() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    let first = open_events(1, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0).remove(0);
    s.apply(&first, at(1.0));
    assert_eq!(s.tunnels.len(), 1);
    assert_eq!(s.live_count(), 0);
}

#[test]
fn backend_events_set_admin_state_counts_and_shares() {
    let mut s = busy_state();
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9001", AdminState::Draining, 3, 9)),
        at(4.0),
    );
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9002", AdminState::Active, 1, 3)),
        at(4.0),
    );
    let mut down = backend("127.0.0.1:9003", AdminState::Disabled, 0, 7);
    down.health = Health::Down;
    s.apply(&Event::BackendState(down), at(4.0));
    // A backend added by a reload is appended.
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9004", AdminState::Active, 0, 0)),
        at(4.0),
    );
    assert_eq!(s.backends.len(), 4);
    assert_eq!(s.backends[0].admin, AdminState::Draining);
    assert_eq!(s.backends[0].active_tunnels, 3);
    assert_eq!(s.backends[2].health, Health::Down);
    assert_eq!(s.shares(), vec![0.75, 0.25, 0.0, 0.0]);
}

#[test]
fn closed_tunnels_keep_code_and_side_for_a_minute() {
    let mut s = busy_state();
    close(&mut s, 7, Some(1000), Side::Client, 10.0);
    assert!(!s.tunnels.contains_key(&7));
    let c = &s.closed[0];
    assert_eq!(c.tunnel.id, 7);
    assert_eq!(
        c.ending,
        Ending::Closed {
            code: Some(1000),
            reason: String::new(),
            side: Side::Client,
            duration: Duration::from_secs(5),
            error: None,
        }
    );
    assert!(
        s.find(7).unwrap().1.is_some(),
        "closed tunnels stay findable"
    );
    s.tick(at(69.0));
    assert_eq!(s.closed.len(), 1, "kept within the minute");
    s.tick(at(71.0));
    assert!(s.closed.is_empty(), "gone after a minute");
}

#[test]
fn closed_history_keeps_only_the_newest_200() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    for id in 0..(CLOSED_MAX as u64 + 50) {
        open(&mut s, id, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0);
        close(&mut s, id, Some(1001), Side::Backend, 2.0);
    }
    assert_eq!(s.closed.len(), CLOSED_MAX);
    assert_eq!(s.closed.front().unwrap().tunnel.id, 50);
}

#[test]
fn a_refused_handshake_is_history_not_a_tunnel() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    let opened = open_events(5, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0).remove(0);
    s.apply(&opened, at(1.0));
    let refusal = Refusal {
        status: 503,
        reason: "no backend available".into(),
    };
    s.apply(
        &Event::Refused {
            id: 5,
            refusal: refusal.clone(),
        },
        at(1.5),
    );
    assert!(s.tunnels.is_empty());
    assert_eq!(s.totals.refused, 1);
    assert_eq!(s.closed[0].ending, Ending::Refused(refusal));
}

#[test]
fn rates_come_from_counter_deltas_per_second() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    open(&mut s, 1, "10.0.0.1:1000", "/a", "127.0.0.1:9001", 0.0);
    open(&mut s, 2, "10.0.0.2:1000", "/b", "127.0.0.1:9002", 0.0);
    let fs = |id, c2b, b2c| Event::FrameStats {
        id,
        stats: stats(c2b, b2c, 0.5),
    };
    s.apply(&fs(1, (10, 1000), (20, 2000)), at(1.1));
    s.apply(&fs(2, (5, 500), (0, 0)), at(1.2));
    s.apply(&fs(1, (30, 3000), (25, 2500)), at(1.6));
    s.tick(at(2.05));
    let last = s.rates.last();
    assert_eq!((last.c2b.msgs, last.c2b.bytes), (35, 3500));
    assert_eq!((last.b2c.msgs, last.b2c.bytes), (25, 2500));
    // Quiet seconds count as zero, and the sparkline series is always a minute long.
    s.tick(at(5.0));
    assert_eq!(s.rates.last().c2b.msgs, 0);
    let series = s.rates.series(|sec| sec.c2b.msgs);
    assert_eq!(series.len(), HISTORY_SECS);
    assert_eq!(series[HISTORY_SECS - 4], 35);
}

#[test]
fn a_tunnels_message_rate_follows_traffic_and_falls_to_zero_when_idle() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    open(&mut s, 1, "10.0.0.1:1000", "/a", "127.0.0.1:9001", 0.0);
    for i in 1..=20u64 {
        let t = i as f64 * 0.25;
        let ev = Event::FrameStats {
            id: 1,
            stats: stats((i * 5, i * 50), (i * 5, i * 50), t),
        };
        s.apply(&ev, at(t));
    }
    let rate = s.tunnels[&1].msgs_per_sec(at(5.0));
    assert!((rate - 40.0).abs() < 1.0, "{rate}");
    assert_eq!(s.tunnels[&1].msgs_per_sec(at(9.0)), 0.0);
}

#[test]
fn the_frame_tail_is_bounded_and_ignores_repeats() {
    let mut s = busy_state();
    let batch: Vec<_> = (0..(TAIL_CAP as u64 + 100))
        .map(|i| sample(i, Dir::BackendToClient, 1, 0, b"tick", 3.0))
        .collect();
    s.apply(
        &Event::FrameSamples {
            id: 7,
            samples: batch.clone(),
        },
        at(3.0),
    );
    s.apply(
        &Event::FrameSamples {
            id: 7,
            samples: batch[550..].to_vec(),
        },
        at(3.1),
    );
    let t = &s.tunnels[&7];
    assert_eq!(t.tail.len(), TAIL_CAP);
    assert_eq!(t.samples_seen, TAIL_CAP as u64 + 100);
    assert_eq!(t.tail.back().unwrap().seq, TAIL_CAP as u64 + 99);
}

#[test]
fn resync_after_lag_keeps_history_and_retires_vanished_tunnels() {
    let mut s = busy_state();
    open(&mut s, 9, "10.0.0.9:1000", "/old", "127.0.0.1:9003", 3.0);
    close(&mut s, 9, Some(1000), Side::Client, 4.0);
    s.on_lagged();
    assert!(s.needs_resync());
    // While we lagged: tunnel 7 closed, 8 moved on, 11 opened.
    let info = |id, path: &str, st| TunnelInfo {
        id,
        opened: at(5.0),
        client: super::addr("10.0.0.11:1000"),
        listener: "public".into(),
        route: "chat".into(),
        path: path.into(),
        backend: Some(bid("127.0.0.1:9002")),
        handshake: Some(handshake(false)),
        stats: st,
        samples: Vec::new(),
        idle_timeout: None,
        held: Vec::new(),
        parked: false,
        instance: None,
    };
    let snap = Snapshot {
        tunnels: vec![
            info(8, "/feed", stats((100, 10_000), (0, 0), 6.0)),
            info(11, "/new", TunnelStats::default()),
        ],
        total_tunnels: 3,
        ..snapshot()
    };
    s.resync(snap, at(6.0));
    assert!(!s.needs_resync());
    assert_eq!(s.resyncs, 1);
    assert_eq!(s.tunnels.keys().copied().collect::<Vec<_>>(), vec![8, 11]);
    assert_eq!(s.tunnels[&8].stats.client_to_backend.messages, 100);
    let ended: Vec<_> = s
        .closed
        .iter()
        .map(|c| (c.tunnel.id, c.ending.clone()))
        .collect();
    assert_eq!(ended[0].0, 9, "closed history survives the resync");
    assert_eq!(ended[1], (7, Ending::Lost));
    assert_eq!(s.totals.tunnels, 3);
}

#[test]
fn handshakes_in_progress_survive_a_resync_until_stale() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    let opened = open_events(4, "10.0.0.1:1000", "/ws", "127.0.0.1:9001", 1.0).remove(0);
    s.apply(&opened, at(1.0));
    s.on_lagged();
    s.resync(snapshot(), at(2.0));
    assert!(s.tunnels.contains_key(&4));
    s.tick(at(70.0));
    assert!(s.tunnels.is_empty());
    assert_eq!(s.closed[0].ending, Ending::Lost);
}

#[test]
fn the_log_buffer_is_bounded() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    for i in 0..(LOG_CAP + 10) {
        s.push_log(Level::INFO, format!("line {i}"));
    }
    assert_eq!(s.logs.len(), LOG_CAP);
    assert_eq!(s.logs.front().unwrap().text, "line 10");
}

/// Two event loops can publish a backend's states out of order ("draining, 1 left"
/// built first, sent last): the dashboard keeps the newest version, so it does not
/// show a finished drain as still draining forever.
#[test]
fn a_backend_state_older_than_the_one_shown_is_ignored() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    let older = backend("127.0.0.1:9001", AdminState::Draining, 1, 5);
    let newer = backend("127.0.0.1:9001", AdminState::Drained, 0, 5);
    assert!(newer.version > older.version);
    s.apply(&Event::BackendState(newer), at(1.0));
    s.apply(&Event::BackendState(older), at(1.0));
    let b = s
        .backends
        .iter()
        .find(|b| b.id == bid("127.0.0.1:9001"))
        .unwrap();
    assert_eq!((b.admin, b.active_tunnels), (AdminState::Drained, 0));
}
