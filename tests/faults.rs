//! A peer that vanishes — mid-frame, with a reset, half-closing, or a hundred at
//! once — never hangs a tunnel, never leaks one, and never disturbs other tunnels.

mod common;

use std::collections::{HashMap, HashSet};

use common::pool_control::{
    frame, frame_header, pattern, pool_config, raw_upgrade, read_frame, Ending, Recorder,
};
use common::resilience::*;
use common::*;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tunnelscope::event::{Event, Side, TunnelId, TunnelStats};

/// Frame statistics every 20 ms, so a test sees bytes arrive while a tunnel lives.
const FAST_STATS: &str = "[inspect]\nstats_interval = \"20ms\"";

/// The id of the tunnel opened for `path`.
async fn opened(events: &mut broadcast::Receiver<Event>, path: &str) -> TunnelId {
    match wait_event(
        events,
        |e| matches!(e, Event::TunnelOpened { path: p, .. } if p == path),
    )
    .await
    {
        Event::TunnelOpened { id, .. } => id,
        _ => unreachable!(),
    }
}

/// Waits until the proxy has counted exactly `bytes` relayed one way on tunnel `id`.
async fn relayed(
    events: &mut broadcast::Receiver<Event>,
    id: TunnelId,
    up: bool,
    bytes: u64,
) -> TunnelStats {
    match wait_event(events, |e| match e {
        Event::FrameStats { id: i, stats } if *i == id => {
            let dir = if up {
                &stats.client_to_backend
            } else {
                &stats.backend_to_client
            };
            dir.bytes == bytes
        }
        _ => false,
    })
    .await
    {
        Event::FrameStats { stats, .. } => stats,
        _ => unreachable!(),
    }
}

/// How tunnel `id` ended: (code, side, stats).
async fn closed(
    events: &mut broadcast::Receiver<Event>,
    id: TunnelId,
) -> (Option<u16>, Side, TunnelStats) {
    match wait_event(
        events,
        |e| matches!(e, Event::TunnelClosed { id: i, .. } if *i == id),
    )
    .await
    {
        Event::TunnelClosed {
            code, side, stats, ..
        } => (code, side, stats),
        _ => unreachable!(),
    }
}

fn listed(proxy: &tunnelscope::proxy::ProxyHandle, id: TunnelId) -> bool {
    proxy.snapshot().tunnels.iter().any(|t| t.id == id)
}

#[tokio::test]
async fn client_reset_mid_frame_ends_its_tunnel_and_backend_connection_and_spares_others() {
    let mut rec = Recorder::start("rec", false).await;
    let proxy = proxy(&pool_config(FAST_STATS, "", &[(rec.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut canary = connect(addr, "/canary").await;
    echo_on(&mut canary, "before").await;

    let mut raw = raw_upgrade(addr).await;
    let id = opened(&mut events, "/raw").await;
    // A masked text frame announcing 100 bytes, of which only 10 are sent.
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut half = frame_header(0x1, 100, true);
    half.extend_from_slice(&mask);
    half.extend(
        b"0123456789"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    raw.write_all(&half).await.unwrap();
    relayed(&mut events, id, true, half.len() as u64).await;
    raw.set_zero_linger().unwrap();
    drop(raw);

    let (code, side, _) = closed(&mut events, id).await;
    assert_eq!(code, None, "no Close frame was ever sent");
    assert_eq!(side, Side::Client);
    assert!(!listed(&proxy, id), "the ended tunnel is still listed");
    let ending = rec.next_ending().await;
    assert!(
        !matches!(ending, Ending::Close(..)),
        "the backend's connection should end without a Close, got {ending:?}"
    );
    echo_on(&mut canary, "after").await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1, "only the canary is left");
}

#[tokio::test]
async fn backend_reset_mid_frame_ends_the_client_stream_without_hanging_and_spares_others() {
    let app = Backend::start("app").await;
    let mut raw = RawBackend::start().await;
    let proxy = proxy(&two_pool_config(FAST_STATS, app.addr, raw.addr)).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut canary = connect(addr, "/").await;
    echo_on(&mut canary, "before").await;

    let mut client = connect(addr, "/raw").await;
    let mut conn = raw.accept().await;
    let id = opened(&mut events, "/raw").await;
    // A binary frame announcing 100 bytes, of which only 10 are sent.
    let mut half = frame_header(0x2, 100, false);
    half.extend_from_slice(&pattern(10));
    conn.tcp.write_all(&half).await.unwrap();
    relayed(&mut events, id, false, half.len() as u64).await;
    conn.tcp.set_zero_linger().unwrap();
    drop(conn);

    let end = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the client's stream ends instead of hanging");
    assert!(
        matches!(end, None | Some(Err(_))),
        "expected the stream to end, got {end:?}"
    );
    let (code, side, _) = closed(&mut events, id).await;
    assert_eq!(code, None);
    assert_eq!(side, Side::Backend, "the backend is the side that vanished");
    assert!(!listed(&proxy, id));
    echo_on(&mut canary, "after").await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1, "only the canary is left");
}

#[tokio::test]
async fn client_half_close_reaches_the_backend_as_eof_while_the_backend_keeps_talking() {
    let mut raw = RawBackend::start().await;
    let proxy = proxy(&pool_config("", "", &[(raw.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut client = raw_upgrade(addr).await;
    let mut conn = raw.accept().await;
    let id = opened(&mut events, "/raw").await;

    let last = frame(0x1, b"last words", Some([9, 8, 7, 6]));
    client.write_all(&last).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(
        read_to_eof(&mut conn.tcp).await,
        last,
        "the backend gets the client's last frame, then EOF"
    );

    // The other direction is still open: what the backend says now still arrives.
    for i in 0..3 {
        let f = frame(0x1, format!("after eof {i}").as_bytes(), None);
        conn.tcp.write_all(&f).await.unwrap();
        assert_eq!(
            read_frame(&mut client).await,
            Some((0x1, format!("after eof {i}").into_bytes()))
        );
    }
    assert!(listed(&proxy, id), "a half-closed tunnel is still running");

    conn.tcp.shutdown().await.unwrap();
    drop(conn);
    assert_eq!(
        read_frame(&mut client).await,
        None,
        "EOF reaches the client"
    );
    let (code, _, stats) = closed(&mut events, id).await;
    assert_eq!(code, None);
    assert_eq!(stats.client_to_backend.messages, 1);
    assert_eq!(stats.backend_to_client.messages, 3);
    assert!(proxy.snapshot().tunnels.is_empty());
}

#[tokio::test]
async fn a_hundred_tunnels_dropped_without_close_all_end_and_backends_return_to_zero() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "")).await;
    let addr = proxy.local_addrs()[0];
    let mut clients = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..100 {
        let mut ws = connect(addr, "/").await;
        names.insert(whoami(&mut ws).await);
        clients.push(ws);
    }
    assert_eq!(names.len(), 2, "both backends carry tunnels");
    assert_eq!(proxy.snapshot().tunnels.len(), 100);

    let mut events = proxy.subscribe();
    // Half vanish with a reset, half with a bare FIN; none sends a Close.
    for (i, ws) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            reset_on_drop(&ws);
        }
        drop(ws);
    }

    let mut ended = HashSet::new();
    let mut active: HashMap<String, u64> = HashMap::new();
    tokio::time::timeout(WAIT, async {
        while ended.len() < 100 || active.len() < 2 || active.values().any(|n| *n != 0) {
            match events.recv().await {
                Ok(Event::TunnelClosed { id, .. }) => {
                    ended.insert(id);
                }
                Ok(Event::BackendState(info)) => {
                    active.insert(info.id.to_string(), info.active_tunnels);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} of 100 tunnels ended; active counts {active:?}",
            ended.len()
        )
    });

    let snap = proxy.snapshot();
    assert!(
        snap.tunnels.is_empty(),
        "{} tunnels left",
        snap.tunnels.len()
    );
    for backend in &snap.backends {
        assert_eq!(backend.active_tunnels, 0, "{}", backend.id);
    }
    assert_eq!(snap.total_tunnels, 100);
    // The proxy still serves.
    let mut ws = connect(addr, "/").await;
    echo_on(&mut ws, "after the storm").await;
}
