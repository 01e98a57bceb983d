//! Operators steer the running proxy through commands (drain, kill, close a tunnel,
//! enable, disable) and watch it through events and snapshots; observers never slow
//! a tunnel down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use crate::common::{clients::*, pools::*, recorder::*, wire::*};
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::control::{Command, Outcome};
use tunnelscope::event::{
    AdminState, BackendId, Dir, Event, Health, OpKind, Side, TunnelId, TunnelStats, Violation,
};
use tunnelscope::proxy::ProxyHandle;

/// Opens `n` tunnels one after the other (held open), each with its backend's name.
async fn open_held(addr: SocketAddr, n: usize) -> Vec<(Client, String)> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(addr, "/").await;
        let name = whoami(&mut ws).await;
        held.push((ws, name));
    }
    held
}

/// Splits held tunnels by backend name.
fn by_backend(held: Vec<(Client, String)>) -> BTreeMap<String, Vec<Client>> {
    let mut map: BTreeMap<String, Vec<Client>> = BTreeMap::new();
    for (ws, name) in held {
        map.entry(name).or_default().push(ws);
    }
    map
}

/// The id of the live tunnel whose client is `ws`.
fn tunnel_id(proxy: &ProxyHandle, ws: &Client) -> TunnelId {
    let client = local_addr(ws);
    proxy
        .snapshot()
        .tunnels
        .iter()
        .find(|t| t.client == client)
        .map(|t| t.id)
        .expect("the tunnel is in the snapshot")
}

async fn echo(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_data(ws).await, Message::text(text));
}

// ---------------------------------------------------------------------------------
// Drain

#[tokio::test]
async fn drained_backend_gets_no_new_tunnels_and_keeps_its_own_until_they_end() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "")).await;
    let addr = proxy.local_addrs()[0];
    let control = proxy.control();
    let mut events = proxy.subscribe();
    let mut held = by_backend(open_held(addr, 2).await);
    let mut on_a = held.get_mut("a").unwrap().pop().unwrap();

    let drain = Command::Drain(backend_id(a.addr));
    assert_eq!(control.send(drain).await.unwrap(), Outcome::Done);
    wait_backend(&mut events, a.addr, |i| i.admin == AdminState::Draining).await;
    let info = backend_info(&proxy, a.addr);
    assert_eq!((info.admin, info.active_tunnels), (AdminState::Draining, 1));

    // a is idler (1 tunnel vs 1..21) yet gets none of them.
    let newcomers = open_held(addr, 20).await;
    assert!(newcomers.iter().all(|(_, n)| n == "b"));

    // Its own tunnel runs on after the drain.
    echo(&mut on_a, "still here").await;
    assert_eq!(whoami(&mut on_a).await, "a");

    hang_up(on_a).await;
    let drained = wait_backend(&mut events, a.addr, |i| i.admin == AdminState::Drained).await;
    assert_eq!(drained.active_tunnels, 0);
    assert_eq!(drained.health, Health::Up);

    let undrain = Command::Undrain(backend_id(a.addr));
    assert_eq!(control.send(undrain).await.unwrap(), Outcome::Done);
    assert_eq!(backend_info(&proxy, a.addr).admin, AdminState::Active);
    let mut back = connect(addr, "/").await;
    assert_eq!(whoami(&mut back).await, "a");
    drop(newcomers);
}

#[tokio::test]
async fn draining_a_backend_without_tunnels_makes_it_drained_at_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "")).await;
    let control = proxy.control();
    let drain = Command::Drain(backend_id(b.addr));
    assert_eq!(control.send(drain).await.unwrap(), Outcome::Done);
    assert_eq!(backend_info(&proxy, b.addr).admin, AdminState::Drained);
    let held = open_held(proxy.local_addrs()[0], 4).await;
    assert!(held.iter().all(|(_, n)| n == "a"));
}

// ---------------------------------------------------------------------------------
// Kill

#[tokio::test]
async fn kill_closes_the_backends_tunnels_with_1012_and_leaves_the_others_running() {
    let mut a = Recorder::start("a", false).await;
    let mut b = Recorder::start("b", false).await;
    let proxy = proxy(&pool_config("", "", &[(a.addr, ""), (b.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let control = proxy.control();
    let mut events = proxy.subscribe();
    let mut held = by_backend(open_held(addr, 4).await);
    let killed_ids: Vec<TunnelId> = held["a"].iter().map(|w| tunnel_id(&proxy, w)).collect();

    let kill = Command::Kill {
        backend: backend_id(a.addr),
        code: 1012,
        reason: "service restart".into(),
    };
    assert_eq!(control.send(kill).await.unwrap(), Outcome::Closing(2));

    for ws in held.get_mut("a").unwrap() {
        let close = expect_close(ws).await;
        assert_eq!(u16::from(close.code), 1012);
        assert_eq!(close.reason.as_str(), "service restart");
    }
    // The backend got a proper (masked: tungstenite insists) Close on each tunnel.
    for _ in 0..2 {
        let ending = a.next_ending().await;
        assert_eq!(ending, Ending::Close(Some(1012), "service restart".into()));
    }
    let mut closed = Vec::new();
    while closed.len() < 2 {
        let ev = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
        let Event::TunnelClosed { id, code, side, .. } = ev else {
            unreachable!()
        };
        assert_eq!((code, side), (Some(1012), Side::Proxy));
        closed.push(id);
    }
    closed.sort_unstable();
    let mut expected = killed_ids.clone();
    expected.sort_unstable();
    assert_eq!(closed, expected);

    // The other backend's tunnels are untouched.
    for ws in held.get_mut("b").unwrap() {
        echo(ws, "unaffected").await;
        assert_eq!(whoami(ws).await, "b");
    }
    assert_eq!(b.ended(), None, "no tunnel of b ended");

    // Killed means disabled: nothing new until enabled.
    let info = backend_info(&proxy, a.addr);
    assert_eq!((info.admin, info.active_tunnels), (AdminState::Disabled, 0));
    let newcomers = open_held(addr, 5).await;
    assert!(newcomers.iter().all(|(_, n)| n == "b"));

    let enable = Command::Enable(backend_id(a.addr));
    assert_eq!(control.send(enable).await.unwrap(), Outcome::Done);
    assert_eq!(backend_info(&proxy, a.addr).admin, AdminState::Active);
    let mut back = connect(addr, "/").await;
    assert_eq!(whoami(&mut back).await, "a");
}

/// Config for tests that watch frame statistics closely.
const FAST_STATS: &str = "[inspect]\nstats_interval = \"10ms\"";

#[tokio::test]
async fn kill_lets_a_backend_message_in_flight_finish_before_the_close_frame() {
    const SIZE: usize = 4 << 20;
    let mut r = Recorder::start("big", false).await;
    let proxy = proxy(&pool_config(FAST_STATS, "", &[(r.addr, "")])).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "big");

    // The backend sends the frame header and half the payload, then stalls.
    ws.send(Message::text(format!("split:{SIZE}")))
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let msg = next_data(&mut ws).await;
        let close = expect_close(&mut ws).await;
        (msg, close)
    });
    wait_event(&mut events, |e| {
        matches!(e, Event::FrameStats { stats, .. }
            if stats.backend_to_client.op(OpKind::Binary).payload_bytes >= (SIZE / 2) as u64)
    })
    .await;
    let stats = &proxy.snapshot().tunnels[0].stats.backend_to_client;
    assert_eq!(stats.op(OpKind::Binary).frames, 1);
    assert!(
        stats.op(OpKind::Binary).payload_bytes < SIZE as u64,
        "the frame is mid-flight"
    );

    let kill = Command::Kill {
        backend: backend_id(r.addr),
        code: 1012,
        reason: "service restart".into(),
    };
    assert_eq!(
        proxy.control().send(kill).await.unwrap(),
        Outcome::Closing(1)
    );
    r.release();

    let (msg, close) = reader.await.unwrap();
    match msg {
        Message::Binary(got) => {
            assert_eq!(got.len(), SIZE);
            assert!(got[..] == pattern(SIZE)[..], "payload changed in transit");
        }
        other => panic!("expected the whole binary message first, got {other:?}"),
    }
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1012, "service restart")
    );
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(1012), "service restart".into())
    );
}

#[tokio::test]
async fn kill_lets_a_client_message_in_flight_reach_the_backend_whole_before_the_close() {
    const SIZE: usize = 4 << 20;
    let mut r = Recorder::start("sink", false).await;
    let proxy = proxy(&pool_config(FAST_STATS, "", &[(r.addr, "")])).await;
    let mut events = proxy.subscribe();
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;

    let payload = pattern(SIZE);
    let wire = frame(0x2, &payload, Some([0x12, 0x34, 0x56, 0x78]));
    let half = wire.len() / 2;
    tcp.write_all(&wire[..half]).await.unwrap();
    wait_event(&mut events, |e| {
        matches!(e, Event::FrameStats { stats, .. }
            if stats.client_to_backend.bytes >= half as u64)
    })
    .await;
    let kill = Command::Kill {
        backend: backend_id(r.addr),
        code: 1012,
        reason: "service restart".into(),
    };
    assert_eq!(
        proxy.control().send(kill).await.unwrap(),
        Outcome::Closing(1)
    );
    tcp.write_all(&wire[half..]).await.unwrap();

    // The backend reads the whole message, then a well-formed masked Close.
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(1012), "service restart".into())
    );
    let got = r.binaries.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(got[0] == payload, "the backend got a damaged message");

    // The client gets only whole frames: maybe the echo, then the Close.
    let mut frames = Vec::new();
    while let Some(f) = read_frame(&mut tcp).await {
        let is_close = f.0 == 0x8;
        frames.push(f);
        if is_close {
            break;
        }
    }
    let (op, close) = frames.pop().expect("a Close frame");
    assert_eq!(op, 0x8);
    assert_eq!(close[..2], 1012u16.to_be_bytes());
    assert_eq!(&close[2..], b"service restart");
    for (op, data) in frames {
        assert_eq!(op, 0x2);
        assert!(data == payload, "only the whole echo may precede the Close");
    }
}

/// A tunnel whose handshake is under way when its backend is killed must not live on
/// on the killed backend: the client gets either an error status or, once upgraded,
/// the kill's Close frame at once.
#[tokio::test]
async fn kill_during_a_backend_handshake_does_not_leave_a_tunnel_on_the_killed_backend() {
    let mut r = Recorder::start_holding_handshakes("slow").await;
    let proxy = proxy(&pool_config("", "", &[(r.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let client = tokio::spawn(async move { try_connect(addr, "/", &[]).await });
    wait_event(&mut events, |e| matches!(e, Event::BackendChosen { .. })).await;

    let kill = Command::Kill {
        backend: backend_id(r.addr),
        code: 1012,
        reason: "service restart".into(),
    };
    let outcome = proxy.control().send(kill).await.unwrap();
    assert!(matches!(outcome, Outcome::Closing(_)), "{outcome:?}");
    r.release_handshake();

    match client.await.unwrap() {
        Err(status) => assert!((500..600).contains(&status), "refused with {status}"),
        Ok(mut ws) => {
            // Not the full WAIT: a tunnel that is not closed promptly has survived.
            let close = tokio::time::timeout(Duration::from_secs(3), expect_close(&mut ws))
                .await
                .expect("the tunnel to the killed backend is closed at once");
            assert_eq!(u16::from(close.code), 1012);
            match r.next_ending().await {
                Ending::Close(code, _) => assert_eq!(code, Some(1012)),
                Ending::Eof => {}
                other => panic!("backend connection ended badly: {other:?}"),
            }
            // The tunnel is over once both peers have answered (or the grace is up).
            wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
        }
    }
    let info = backend_info(&proxy, r.addr);
    assert_eq!(info.admin, AdminState::Disabled);
    let tunnels = proxy.snapshot().tunnels;
    assert!(
        tunnels.is_empty(),
        "a tunnel survived the kill: {tunnels:?}"
    );
}

// ---------------------------------------------------------------------------------
// Close one tunnel, unknown targets

#[tokio::test]
async fn close_tunnel_closes_only_that_tunnel_with_its_code() {
    let mut r = Recorder::start("r", false).await;
    let proxy = proxy(&pool_config("", "", &[(r.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut first = connect(addr, "/first").await;
    let opened = wait_event(&mut events, |e| matches!(e, Event::TunnelOpened { .. })).await;
    let Event::TunnelOpened { id, path, .. } = opened else {
        unreachable!()
    };
    assert_eq!(path, "/first");
    assert_eq!(whoami(&mut first).await, "r");
    assert_eq!(tunnel_id(&proxy, &first), id);
    let mut second = connect(addr, "/second").await;
    assert_eq!(whoami(&mut second).await, "r");

    let close = Command::CloseTunnel {
        id,
        code: 4000,
        reason: "bye".into(),
    };
    assert_eq!(
        proxy.control().send(close).await.unwrap(),
        Outcome::Closing(1)
    );
    let frame = expect_close(&mut first).await;
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4000, "bye")
    );
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(4000), "bye".into())
    );
    let ev = wait_event(
        &mut events,
        |e| matches!(e, Event::TunnelClosed { id: closed, .. } if *closed == id),
    )
    .await;
    let Event::TunnelClosed {
        code, side, reason, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        (code, side, reason.as_str()),
        (Some(4000), Side::Proxy, "bye")
    );

    echo(&mut second, "the other one runs on").await;
    let snap = proxy.snapshot();
    assert_eq!(snap.tunnels.len(), 1);
    assert_eq!(snap.tunnels[0].path, "/second");
    // Gone now: closing it again names it unknown.
    let again = Command::CloseTunnel {
        id,
        code: 4000,
        reason: "bye".into(),
    };
    assert_eq!(
        proxy.control().send(again).await.unwrap(),
        Outcome::UnknownTunnel(id)
    );
}

#[tokio::test]
async fn commands_naming_unknown_backends_or_tunnels_say_so() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let control = proxy.control();
    let ghost = BackendId::new(POOL, "127.0.0.1:1");
    let other_pool = BackendId::new("nope", &b.addr.to_string());
    for id in [ghost, other_pool] {
        for cmd in [
            Command::Drain(id.clone()),
            Command::Undrain(id.clone()),
            Command::Enable(id.clone()),
            Command::Disable(id.clone()),
            Command::Kill {
                backend: id.clone(),
                code: 1012,
                reason: "x".into(),
            },
        ] {
            assert_eq!(
                control.send(cmd.clone()).await.unwrap(),
                Outcome::UnknownBackend(id.clone()),
                "{cmd:?}"
            );
        }
    }
    let close = Command::CloseTunnel {
        id: 987_654,
        code: 4000,
        reason: "x".into(),
    };
    assert_eq!(
        control.send(close).await.unwrap(),
        Outcome::UnknownTunnel(987_654)
    );
    // Nothing changed for the real backend.
    let info = backend_info(&proxy, b.addr);
    assert_eq!((info.admin, info.health), (AdminState::Active, Health::Up));
}

// ---------------------------------------------------------------------------------
// Events

/// Receives events into `log` until one matches `stop`; a lag fails the test.
async fn record_until(
    rx: &mut broadcast::Receiver<Event>,
    log: &mut Vec<Event>,
    mut stop: impl FnMut(&Event) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            let ev = rx.recv().await.expect("no lag, no closed bus");
            let done = stop(&ev);
            log.push(ev);
            if done {
                return;
            }
        }
    })
    .await
    .expect("event in time")
}

fn text_frames(stats: &TunnelStats) -> (u64, u64) {
    (
        stats.client_to_backend.op(OpKind::Text).frames,
        stats.backend_to_client.op(OpKind::Text).frames,
    )
}

#[tokio::test]
async fn a_tunnels_life_is_published_with_batched_stats_samples_and_exact_totals() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut rx = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/events?x=1").await;
    let sent: Vec<String> = (0..500).map(|i| format!("msg {i}")).collect();
    for m in &sent {
        ws.feed(Message::text(m.as_str())).await.unwrap();
    }
    ws.flush().await.unwrap();
    for m in &sent {
        assert_eq!(next_data(&mut ws).await, Message::text(m.as_str()));
    }
    let mut log = Vec::new();
    record_until(
        &mut rx,
        &mut log,
        |e| matches!(e, Event::FrameStats { stats, .. } if text_frames(stats) == (500, 500)),
    )
    .await;
    hang_up(ws).await;
    record_until(&mut rx, &mut log, |e| {
        matches!(e, Event::TunnelClosed { .. })
    })
    .await;

    let Some(Event::TunnelOpened { id, path, .. }) = log.first() else {
        panic!("the first event is TunnelOpened: {:?}", log.first())
    };
    let id = *id;
    assert_eq!(path, "/events?x=1");
    let of_tunnel = |e: &Event| match e {
        Event::TunnelOpened { id: i, .. }
        | Event::BackendChosen { id: i, .. }
        | Event::Handshake { id: i, .. }
        | Event::Parked { id: i, .. }
        | Event::Hold { id: i, .. }
        | Event::FrameStats { id: i, .. }
        | Event::FrameSamples { id: i, .. }
        | Event::Violation { id: i, .. }
        | Event::TunnelClosed { id: i, .. }
        | Event::Refused { id: i, .. } => *i == id,
        _ => false,
    };
    assert!(log
        .iter()
        .filter(|e| !matches!(e, Event::BackendState(_)))
        .all(of_tunnel));
    let pos = |pred: &dyn Fn(&Event) -> bool| log.iter().position(pred).unwrap();
    let chosen = pos(
        &|e| matches!(e, Event::BackendChosen { backend, .. } if backend.addr.as_ref() == b.addr.to_string()),
    );
    let handshake = pos(&|e| matches!(e, Event::Handshake { .. }));
    let first_stats = pos(&|e| matches!(e, Event::FrameStats { .. }));
    assert!(0 < chosen && chosen < handshake && handshake < first_stats);
    assert!(matches!(log.last(), Some(Event::TunnelClosed { .. })));

    // Batched: a handful of stats events for 1,000 frames, never one per frame.
    let stats: Vec<&TunnelStats> = log
        .iter()
        .filter_map(|e| match e {
            Event::FrameStats { stats, .. } => Some(stats),
            _ => None,
        })
        .collect();
    assert!(
        !stats.is_empty() && stats.len() < 50,
        "{} FrameStats events for 500 messages each way",
        stats.len()
    );
    for pair in stats.windows(2) {
        let (a, b) = (text_frames(pair[0]), text_frames(pair[1]));
        assert!(a.0 <= b.0 && a.1 <= b.1, "counters never go back");
    }

    // Samples: previews of what was sent, unmasked, in sequence per direction.
    let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
    let mut sampled = (0, 0);
    for e in &log {
        let Event::FrameSamples { samples, .. } = e else {
            continue;
        };
        for s in samples {
            let (dir, masked) = match s.dir {
                Dir::ClientToBackend => ("up", true),
                Dir::BackendToClient => ("down", false),
            };
            if let Some(prev) = last_seq.insert(dir, s.seq) {
                assert!(s.seq > prev, "sample seq goes up within {dir}");
            }
            if s.opcode == 0x8 {
                continue;
            }
            assert_eq!((s.opcode, s.masked, s.fin), (0x1, masked, true));
            let text = String::from_utf8(s.preview.clone()).expect("an unmasked preview");
            assert!(sent.contains(&text), "preview {text:?} was never sent");
            assert_eq!(s.len, text.len() as u64);
            match s.dir {
                Dir::ClientToBackend => sampled.0 += 1,
                Dir::BackendToClient => sampled.1 += 1,
            }
        }
    }
    assert!(
        sampled.0 > 0 && sampled.1 > 0,
        "samples both ways: {sampled:?}"
    );

    let Some(Event::TunnelClosed {
        side, code, stats, ..
    }) = log.last()
    else {
        unreachable!()
    };
    assert_eq!((*side, *code), (Side::Client, None));
    let payload: u64 = sent.iter().map(|m| m.len() as u64).sum();
    for dir in [&stats.client_to_backend, &stats.backend_to_client] {
        assert_eq!(dir.op(OpKind::Text).frames, 500);
        assert_eq!(dir.op(OpKind::Text).payload_bytes, payload);
        assert_eq!(dir.messages, 500);
        assert_eq!(dir.op(OpKind::Close).frames, 1);
        assert_eq!(dir.op(OpKind::Binary).frames, 0);
        assert_eq!(dir.violations, 0);
    }
}

#[tokio::test]
async fn an_unmasked_client_frame_is_reported_and_relayed_by_default() {
    let r = Recorder::start("lenient", true).await;
    let proxy = proxy(&pool_config("", "", &[(r.addr, "")])).await;
    let mut rx = proxy.subscribe();
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;

    tcp.write_all(&frame(0x1, b"hi", None)).await.unwrap();
    let ev = wait_event(&mut rx, |e| matches!(e, Event::Violation { .. })).await;
    let Event::Violation { dir, violation, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        (dir, violation),
        (Dir::ClientToBackend, Violation::UnmaskedClientFrame)
    );
    assert_eq!(read_frame(&mut tcp).await, Some((0x1, b"hi".to_vec())));

    // The tunnel keeps working.
    tcp.write_all(&frame(0x1, b"again", Some([9, 8, 7, 6])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut tcp).await, Some((0x1, b"again".to_vec())));
    assert_eq!(*r.texts.lock().unwrap(), ["hi", "again"]);
    let snap = proxy.snapshot();
    assert_eq!(snap.tunnels.len(), 1);
    assert_eq!(snap.tunnels[0].stats.client_to_backend.violations, 1);
}

/// In strict mode the client gets a Close frame with 1002 (then the proxy hangs up
/// once the client answers it); the offending frame never reaches the backend.
#[tokio::test]
async fn strict_mode_closes_a_tunnel_with_1002_on_an_unmasked_client_frame() {
    let mut r = Recorder::start("lenient", true).await;
    let proxy = proxy(&pool_config("[proxy]\nstrict = true", "", &[(r.addr, "")])).await;
    let mut rx = proxy.subscribe();
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;

    tcp.write_all(&frame(0x1, b"masked", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut tcp).await, Some((0x1, b"masked".to_vec())));

    tcp.write_all(&frame(0x1, b"hi", None)).await.unwrap();
    let ev = wait_event(&mut rx, |e| matches!(e, Event::Violation { .. })).await;
    assert!(matches!(
        ev,
        Event::Violation {
            violation: Violation::UnmaskedClientFrame,
            ..
        }
    ));
    let (op, payload) = read_frame(&mut tcp).await.expect("a Close frame, not EOF");
    assert_eq!(op, 0x8);
    assert_eq!(payload[..2], 1002u16.to_be_bytes());
    tcp.write_all(&frame(0x8, &1002u16.to_be_bytes(), Some([5, 6, 7, 8])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut tcp).await, None, "then the proxy hangs up");

    let ev = wait_event(&mut rx, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed { code, side, .. } = ev else {
        unreachable!()
    };
    assert_eq!((code, side), (Some(1002), Side::Proxy));
    match r.next_ending().await {
        Ending::Close(code, _) => assert_eq!(code, Some(1002)),
        other => panic!("the backend should get a Close 1002, got {other:?}"),
    }
    assert_eq!(*r.texts.lock().unwrap(), ["masked"], "hi was not forwarded");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_hold_tunnels_back() {
    let b = Backend::start("b").await;
    // A tiny bus so the idle subscriber lags for sure.
    let top = "[inspect]\nevent_capacity = 4\nstats_interval = \"10ms\"";
    let proxy = proxy(&pool_config(top, "", &[(b.addr, "")])).await;
    let mut lagging = proxy.subscribe();
    let mut watcher = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;

    tokio::time::timeout(WAIT, async {
        for batch in 0..10 {
            for i in 0..500 {
                ws.feed(Message::text(format!("{batch}/{i}")))
                    .await
                    .unwrap();
            }
            ws.flush().await.unwrap();
            for i in 0..500 {
                let expected = format!("{batch}/{i}");
                assert_eq!(next_data(&mut ws).await, Message::text(expected));
            }
        }
    })
    .await
    .expect("5,000 messages go through while a subscriber lags");
    wait_event(
        &mut watcher,
        |e| matches!(e, Event::FrameStats { stats, .. } if text_frames(stats) == (5000, 5000)),
    )
    .await;

    match lagging.try_recv() {
        Err(broadcast::error::TryRecvError::Lagged(n)) => assert!(n > 0),
        other => panic!("the idle subscriber should have lagged, got {other:?}"),
    }
    // It resyncs from the snapshot: the live tunnel with exact counts.
    let snap = proxy.snapshot();
    assert_eq!(snap.tunnels.len(), 1);
    assert_eq!(text_frames(&snap.tunnels[0].stats), (5000, 5000));
    assert_eq!(snap.tunnels[0].stats.client_to_backend.messages, 5000);
    echo(&mut ws, "still fine").await;
}

// ---------------------------------------------------------------------------------
// Snapshot

#[tokio::test]
async fn snapshot_lists_listeners_backends_with_counts_and_live_tunnels() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let toml = format!(
        "[[listener]]\nname = \"front\"\nbind = \"127.0.0.1:0\"\n\n[pool.{POOL}]\n\
         [[pool.{POOL}.server]]\naddr = \"{}\"\nweight = 3\n\
         [[pool.{POOL}.server]]\naddr = \"{}\"\n",
        a.addr, b.addr
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let mut rx = proxy.subscribe();
    let mut clients = Vec::new();
    for room in 0..4 {
        let mut ws = connect(addr, &format!("/room/{room}")).await;
        whoami(&mut ws).await;
        clients.push(ws);
    }

    let snap = proxy.snapshot();
    assert_eq!(snap.listeners.len(), 1);
    let l = &snap.listeners[0];
    assert_eq!((&*l.name, l.addr, l.tls), ("front", addr, false));
    assert!(snap.started.is_some());
    assert_eq!(snap.total_tunnels, 4);

    let (ia, ib) = (backend_info(&proxy, a.addr), backend_info(&proxy, b.addr));
    // Weight 3:1 under least_conn: 3 and 1.
    assert_eq!((ia.active_tunnels, ia.total_tunnels, ia.weight), (3, 3, 3));
    assert_eq!((ib.active_tunnels, ib.total_tunnels, ib.weight), (1, 1, 1));
    for i in [&ia, &ib] {
        assert_eq!(
            (i.admin, i.health, i.backup),
            (AdminState::Active, Health::Up, false)
        );
        assert_eq!((i.failures, i.last_error.as_deref()), (0, None));
    }

    assert_eq!(snap.tunnels.len(), 4);
    for (room, (t, ws)) in snap.tunnels.iter().zip(&clients).enumerate() {
        assert_eq!(t.client, local_addr(ws));
        assert_eq!(t.path, format!("/room/{room}"));
        assert_eq!(&*t.listener, "front");
        assert!(t.backend.is_some());
        assert_eq!(text_frames(&t.stats), (1, 1), "whoami and its answer");
        let hs = t.handshake.as_ref().expect("the handshake is kept");
        let has = |list: &tunnelscope::event::Headers, name: &str| list.get(name).is_some();
        assert!(has(&hs.request_in, "sec-websocket-key"));
        assert!(has(&hs.request_out, "x-forwarded-for"));
        assert!(has(&hs.response, "sec-websocket-accept"));
        assert!(t.samples.iter().any(|s| s.preview == b"whoami"));
    }
    let on_b = snap
        .tunnels
        .iter()
        .filter(|t| t.backend.as_ref() == Some(&backend_id(b.addr)))
        .count();
    assert_eq!(on_b, 1);

    // One tunnel of a ends: active drops, totals stay.
    let i = snap
        .tunnels
        .iter()
        .position(|t| t.backend.as_ref() == Some(&backend_id(a.addr)))
        .unwrap();
    hang_up(clients.remove(i)).await;
    // (Events from the openings are still queued: one of them had 2 active too,
    // but not yet 3 served.)
    wait_backend(&mut rx, a.addr, |b| {
        b.active_tunnels == 2 && b.total_tunnels == 3
    })
    .await;
    let snap = proxy.snapshot();
    assert_eq!(snap.tunnels.len(), 3);
    assert_eq!(snap.total_tunnels, 4);
    let ia = backend_info(&proxy, a.addr);
    assert_eq!((ia.active_tunnels, ia.total_tunnels), (2, 3));
}

/// Shutdown's closes fit inside `shutdown_grace` even when `close_grace` is longer
/// and a client never answers the Close: the tunnel is closed and reported by the
/// proxy, not dropped with its event loop when the grace runs out.
#[tokio::test]
async fn shutdown_closes_fit_inside_the_shutdown_grace_when_a_client_never_answers() {
    let r = Recorder::start("b", false).await;
    let top = "[timeouts]\nclose_grace = \"30s\"\nshutdown_grace = \"1s\"";
    let proxy = proxy(&pool_config(top, "", &[(r.addr, "")])).await;
    let mut events = proxy.subscribe();
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;
    wait_event(&mut events, |e| matches!(e, Event::TunnelOpened { .. })).await;

    proxy.shutdown();
    let (op, payload) = read_frame(&mut tcp).await.expect("a Close frame");
    assert_eq!((op, &payload[..2]), (0x8, &1001u16.to_be_bytes()[..]));
    // The client stays silent. The close is over, and reported, within the grace.
    let ev = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed { code, side, .. } = ev else {
        unreachable!()
    };
    assert_eq!((code, side), (Some(1001), Side::Proxy));
    tokio::time::timeout(WAIT, proxy.wait())
        .await
        .expect("shutdown completes");
    drop(tcp);
}

/// With a pool `drain_deadline`, a drained backend's tunnels run on until the
/// deadline, then are closed with 1012 one after another at no more than
/// `close_rate` a second, so their clients come back as a trickle.
#[tokio::test]
async fn a_drain_deadline_closes_the_remaining_tunnels_at_the_close_rate() {
    const N: usize = 5;
    const DEADLINE: Duration = Duration::from_millis(300);
    const GAP: Duration = Duration::from_millis(100); // close_rate = 10
    let a = Backend::start("a").await;
    let extra = "drain_deadline = \"300ms\"\nclose_rate = 10";
    let proxy = proxy(&simple_config(&[&a], extra)).await;
    let mut events = proxy.subscribe();
    let mut held = Vec::new();
    for _ in 0..N {
        let mut ws = connect(proxy.local_addrs()[0], "/held").await;
        assert_eq!(whoami(&mut ws).await, "a");
        held.push(ws);
    }
    let drained = std::time::Instant::now();
    let drain = Command::Drain(backend_id(a.addr));
    assert_eq!(proxy.control().send(drain).await.unwrap(), Outcome::Done);
    // Before the deadline every tunnel runs on.
    for ws in &mut held {
        echo(ws, "still here").await;
    }
    let closes = closes_in_order(held).await;
    assert!(
        closes[0].0 - drained >= DEADLINE,
        "closed before the deadline"
    );
    // A close every GAP at most; some slack for timer granularity.
    assert_paced(&closes, (1012, "backend drained"), GAP * 8 / 10);
    wait_backend(&mut events, a.addr, |b| b.admin == AdminState::Drained).await;
}

/// `n` tunnels to `proxy`, held open.
async fn held(proxy: &ProxyHandle, n: usize) -> Vec<Client> {
    let held = open_held(proxy.local_addrs()[0], n).await;
    held.into_iter().map(|(ws, _)| ws).collect()
}

/// Shutdown closes tunnels with 1001 at the pool's close_rate, not all at once.
#[tokio::test]
async fn shutdown_paces_its_closes_at_the_pools_close_rate() {
    let a = Backend::start("a").await;
    let top = "[timeouts]\nshutdown_grace = \"10s\"\n";
    let proxy = proxy(&format!("{top}{}", simple_config(&[&a], "close_rate = 10"))).await;
    let held = held(&proxy, 4).await;
    proxy.shutdown();
    let closes = closes_in_order(held).await;
    // At 10/s, with some slack for timer granularity.
    assert_paced(&closes, (1001, "going away"), Duration::from_millis(80));
    tokio::time::timeout(WAIT, proxy.wait()).await.unwrap();
}

/// When the pool's rate would not fit, shutdown paces faster: every tunnel still
/// gets its 1001 within `shutdown_grace`, none is dropped unclosed.
#[tokio::test]
async fn shutdown_pacing_fits_inside_the_grace() {
    let a = Backend::start("a").await;
    let top = "[timeouts]\nshutdown_grace = \"1s\"\n";
    let proxy = proxy(&format!("{top}{}", simple_config(&[&a], "close_rate = 1"))).await;
    let held = held(&proxy, 20).await;
    let begun = std::time::Instant::now();
    proxy.shutdown();
    for (at, code, _) in closes_in_order(held).await {
        assert_eq!(code, 1001);
        assert!(
            at - begun < Duration::from_secs(1),
            "a close came after the grace"
        );
    }
    tokio::time::timeout(WAIT, proxy.wait()).await.unwrap();
}
