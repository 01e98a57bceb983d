//! Parked tunnels: a plain tunnel silent for `park_after` gives up its relay task
//! and waits in its event loop's lot. Nothing about it changes for its peers: every
//! byte, deadline and command still reaches it, in order, at once.

use std::time::{Duration, Instant};

use crate::common::clients::expect_close;
use crate::common::wire::{frame, raw_upgrade, RawBackend, RawConn};
use crate::common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::control::{Command, InjectKind, Outcome};
use tunnelscope::event::{Side, TunnelId};
use tunnelscope::proxy::ProxyHandle;

/// Parks after 50 ms of silence; `timeouts` adds to the `[timeouts]` table.
fn parking_config(backend: std::net::SocketAddr, timeouts: &str) -> String {
    format!(
        "[timeouts]\npark_after = \"50ms\"\n{timeouts}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{backend}\"\n"
    )
}

/// Waits until exactly `n` tunnels are parked (the gauge `/metrics` exports),
/// woken by each `Parked` event.
async fn parked(proxy: &ProxyHandle, n: u64) {
    let mut events = proxy.subscribe();
    let counters = proxy.counters_source();
    tokio::time::timeout(WAIT, async {
        // Subscribed before looking: a park after the look is an event here.
        while counters().tunnels_parked != n {
            match events.recv().await {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("the event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} parked, not {n}", counters().tunnels_parked));
}

/// One tunnel through a proxy that parks after 50 ms, to a hand-made backend,
/// parked: the backend (kept listening), the proxy, the client, the backend's side.
async fn parked_tunnel() -> (RawBackend, ProxyHandle, Client, RawConn) {
    let mut backend = RawBackend::start().await;
    let proxy = proxy(&parking_config(backend.addr, "")).await;
    let client = connect(proxy.local_addrs()[0], "/").await;
    let conn = backend.accept().await;
    parked(&proxy, 1).await;
    (backend, proxy, client, conn)
}

fn only_tunnel(proxy: &ProxyHandle) -> TunnelId {
    let tunnels = proxy.snapshot().tunnels;
    assert_eq!(tunnels.len(), 1);
    tunnels[0].id
}

/// Reads one masked frame (as the backend gets it from the proxy): (opcode, payload).
async fn read_masked(conn: &mut RawConn) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        let mut h = [0u8; 2];
        conn.tcp.read_exact(&mut h).await.unwrap();
        assert_eq!(h[1] & 0x80, 0x80, "frames toward the backend are masked");
        let len = match h[1] & 0x7F {
            126 => usize::from(conn.tcp.read_u16().await.unwrap()),
            n => usize::from(n),
        };
        let mut key = [0u8; 4];
        conn.tcp.read_exact(&mut key).await.unwrap();
        let mut p = vec![0u8; len];
        conn.tcp.read_exact(&mut p).await.unwrap();
        p.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        (h[0] & 0x0F, p)
    })
    .await
    .expect("a frame in time")
}

#[tokio::test]
async fn a_silent_tunnel_parks_and_resumes_when_either_side_speaks() {
    let (_backend, proxy, mut client, mut conn) = parked_tunnel().await;
    for i in 0..3 {
        // The client speaks first...
        let up = format!("up {i}");
        client.send(Message::text(up.clone())).await.unwrap();
        assert_eq!(read_masked(&mut conn).await, (0x1, up.into_bytes()));
        parked(&proxy, 1).await;
        // ...then the backend.
        let down = format!("down {i}");
        conn.tcp
            .write_all(&frame(0x1, down.as_bytes(), None))
            .await
            .unwrap();
        assert_eq!(next_data(&mut client).await, Message::text(down));
        parked(&proxy, 1).await;
    }
    let stats = &proxy.snapshot().tunnels[0].stats;
    assert_eq!(stats.client_to_backend.messages, 3);
    assert_eq!(stats.backend_to_client.messages, 3);
}

/// The scanner's place in a frame survives the park: the rest of a frame cut off
/// before it is relayed and counted as one frame after.
#[tokio::test]
async fn a_frame_cut_off_before_a_park_is_finished_after_it() {
    let mut backend = RawBackend::start().await;
    let proxy = proxy(&parking_config(backend.addr, "")).await;
    let mut client = raw_upgrade(proxy.local_addrs()[0]).await;
    let mut conn = backend.accept().await;
    let whole = frame(0x1, b"split across a park", Some([1, 2, 3, 4]));
    client.write_all(&whole[..9]).await.unwrap();
    parked(&proxy, 1).await;
    client.write_all(&whole[9..]).await.unwrap();
    assert_eq!(
        read_masked(&mut conn).await,
        (0x1, b"split across a park".to_vec())
    );
    parked(&proxy, 1).await;
    let up = &proxy.snapshot().tunnels[0].stats.client_to_backend;
    assert_eq!((up.frames(), up.messages, up.violations), (1, 1, 0));
}

#[tokio::test]
async fn a_parked_tunnel_is_closed_at_its_idle_timeout_not_before() {
    let mut backend = RawBackend::start().await;
    let proxy = proxy(&parking_config(backend.addr, "idle = \"600ms\"")).await;
    let mut client = connect(proxy.local_addrs()[0], "/").await;
    let _conn = backend.accept().await;
    let opened = Instant::now();
    parked(&proxy, 1).await;
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason, "idle timeout");
    assert!(opened.elapsed() >= Duration::from_millis(600));
    parked(&proxy, 0).await;
}

/// Pings go on while the tunnel is parked between them; a client that answers
/// keeps its tunnel, one that stops answering is cut.
#[tokio::test]
async fn a_parked_tunnel_is_pinged_and_cut_when_its_client_stops_answering() {
    let mut backend = RawBackend::start().await;
    let timeouts = "ping_interval = \"300ms\"\nping_timeout = \"1s\"\nping = \"client\"";
    let proxy = proxy(&parking_config(backend.addr, timeouts)).await;
    let mut client = raw_upgrade(proxy.local_addrs()[0]).await;
    let _conn = backend.accept().await;
    for _ in 0..3 {
        parked(&proxy, 1).await;
        let (op, payload) = crate::common::wire::read_frame(&mut client)
            .await
            .expect("a ping");
        assert_eq!(op, 0x9);
        client
            .write_all(&frame(0xA, &payload, Some([7, 7, 7, 7])))
            .await
            .unwrap();
    }
    // No answer to the next one: the client is taken for dead and dropped.
    parked(&proxy, 1).await;
    let (op, _) = crate::common::wire::read_frame(&mut client)
        .await
        .expect("a ping");
    assert_eq!(op, 0x9);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, client.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the silent client's connection ends");
    parked(&proxy, 0).await;
}

#[tokio::test]
async fn commands_reach_a_parked_tunnel_at_once() {
    let (_backend, proxy, mut client, mut conn) = parked_tunnel().await;
    let control = proxy.control();
    let id = only_tunnel(&proxy);

    let inject = |to, text: &str| Command::Inject {
        id,
        to,
        kind: InjectKind::Text,
        payload: text.as_bytes().to_vec(),
    };
    let sent = control.send(inject(Side::Client, "to client")).await;
    assert_eq!(sent.unwrap(), Outcome::Done);
    assert_eq!(next_data(&mut client).await, Message::text("to client"));
    parked(&proxy, 1).await;
    let sent = control.send(inject(Side::Backend, "to backend")).await;
    assert_eq!(sent.unwrap(), Outcome::Done);
    assert_eq!(read_masked(&mut conn).await, (0x1, b"to backend".to_vec()));
    parked(&proxy, 1).await;

    // Held, the backend's message waits; the hold keeps the tunnel from parking
    // (it looks at what waits), and the release lets it through.
    let hold = |on| Command::Hold {
        id,
        from: Side::Backend,
        on,
    };
    assert_eq!(control.send(hold(true)).await.unwrap(), Outcome::Done);
    conn.tcp
        .write_all(&frame(0x1, b"held", None))
        .await
        .unwrap();
    parked(&proxy, 0).await;
    assert_eq!(control.send(hold(false)).await.unwrap(), Outcome::Done);
    assert_eq!(next_data(&mut client).await, Message::text("held"));
    parked(&proxy, 1).await;

    let close = Command::CloseTunnel {
        id,
        code: 4000,
        reason: "operator".into(),
    };
    // Nothing else would wake it within the hour (idle at its default, no pings).
    control.send(close).await.unwrap();
    let frame = expect_close(&mut client).await;
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4000, "operator")
    );
}

#[tokio::test]
async fn a_backend_that_vanishes_while_parked_gets_its_client_a_1011() {
    let (_backend, proxy, mut client, conn) = parked_tunnel().await;
    drop(conn);
    let close = expect_close(&mut client).await;
    assert_eq!(u16::from(close.code), 1011);
    parked(&proxy, 0).await;
}

/// A client that vanishes while parked ends its tunnel; the other parked tunnels
/// stay parked and answer when spoken to.
#[tokio::test]
async fn a_client_that_vanishes_while_parked_ends_only_its_own_tunnel() {
    let mut backend = RawBackend::start().await;
    let proxy = proxy(&parking_config(backend.addr, "")).await;
    let addr = proxy.local_addrs()[0];
    let gone = raw_upgrade(addr).await;
    let mut gone_conn = backend.accept().await;
    let mut stays = connect(addr, "/").await;
    let mut stays_conn = backend.accept().await;
    parked(&proxy, 2).await;
    drop(gone);
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, gone_conn.tcp.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the backend of the vanished client is let go");
    parked(&proxy, 1).await;
    stays.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        read_masked(&mut stays_conn).await,
        (0x1, b"still here".to_vec())
    );
}

#[tokio::test]
async fn observers_are_told_when_a_tunnel_parks_and_resumes_and_see_it_listed() {
    let mut backend = RawBackend::start().await;
    let proxy = proxy(&parking_config(backend.addr, "")).await;
    let mut events = proxy.subscribe();
    let mut client = connect(proxy.local_addrs()[0], "/").await;
    let mut conn = backend.accept().await;
    let id = only_tunnel(&proxy);
    // Parked, then resumed by a message, then parked again: said in that order.
    let mut said = Vec::new();
    tokio::time::timeout(WAIT, async {
        while said.len() < 3 {
            if let tunnelscope::event::Event::Parked { id: of, parked } =
                events.recv().await.unwrap()
            {
                assert_eq!(of, id);
                said.push(parked);
                if said == [true] {
                    assert!(proxy.snapshot().tunnels[0].parked, "listed as parked");
                    client.send(Message::text("wake")).await.unwrap();
                    assert_eq!(read_masked(&mut conn).await, (0x1, b"wake".to_vec()));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("told only {said:?}"));
    assert_eq!(said, [true, false, true]);
    assert!(proxy.snapshot().tunnels[0].parked);
}
