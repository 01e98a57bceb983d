//! The built-in demo, end to end over real sockets: its clients spread over all three
//! backends with every kind of frame, its page is served through the proxy, its chat
//! room spans the backends, and killing a backend moves its clients to the others.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tunnelscope::control::{Command, Outcome, CLOSE_SERVICE_RESTART};
use tunnelscope::demo::Demo;
use tunnelscope::event::{BackendId, Event, OpKind, Snapshot};

/// Bound for each phase; a hang fails the test instead of blocking CI.
const WAIT: Duration = Duration::from_secs(8);

/// Calls `check` now and after every event until it returns `Some`.
async fn wait_for<T>(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut check: impl FnMut(Option<&Event>) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    if let Some(t) = check(None) {
        return t;
    }
    loop {
        let event = match timeout_at(deadline, events.recv()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Ok(e)) => Some(e),
            // Missed events are fine: the snapshot is checked again.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => None,
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event bus closed"),
        };
        if let Some(t) = check(event.as_ref()) {
            return t;
        }
    }
}

fn active(snap: &Snapshot, id: &BackendId) -> u64 {
    snap.backends
        .iter()
        .find(|b| &b.id == id)
        .map_or(0, |b| b.active_tunnels)
}

async fn ws(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
        .await
        .unwrap();
    ws
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("GET timed out")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_spreads_traffic_serves_the_page_and_survives_a_kill() {
    let demo = Demo::start_on("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = demo.proxy.local_addrs()[0];
    assert_eq!(demo.url, format!("http://{addr}/"));
    let ids = demo.backend_ids();
    assert_eq!(ids.len(), 3);
    let mut events = demo.proxy.subscribe();

    // Phase 1: tunnels on every backend, data both ways, a fragmented message and
    // pings, as the dashboard would see them.
    let (mut both_ways, mut continuation, mut pings, mut fragment_sample) =
        (false, false, false, false);
    wait_for(&mut events, "traffic on all three backends", |event| {
        match event {
            Some(Event::FrameStats { stats, .. }) => {
                let (up, down) = (&stats.client_to_backend, &stats.backend_to_client);
                both_ways |= up.messages > 0 && down.messages > 0;
                continuation |= up.op(OpKind::Continuation).frames > 0 && up.messages > 0;
                pings |= up.op(OpKind::Ping).frames > 0 && down.op(OpKind::Pong).frames > 0;
            }
            Some(Event::FrameSamples { samples, .. }) => {
                fragment_sample |= samples.iter().any(|s| s.opcode == 0x0);
            }
            _ => {}
        }
        let snap = demo.proxy.snapshot();
        let everywhere = ids.iter().all(|id| active(&snap, id) > 0);
        (everywhere && both_ways && continuation && pings && fragment_sample).then_some(())
    })
    .await;

    // The page, served by a backend through the plain HTTP proxy.
    let page = get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page:.200}");
    assert!(page.contains("<html"), "no page in {page:.300}");
    assert!(get(addr, "/health").await.ends_with("ok\n"));

    // The chat room: one client sees another's message (the bots talk too).
    let mut reader = ws(addr, "/chat?name=test-reader").await;
    let mut writer = ws(addr, "/chat?name=test-writer").await;
    writer
        .send(Message::text("hello from the test"))
        .await
        .unwrap();
    let seen = timeout(WAIT, async {
        while let Some(Ok(msg)) = reader.next().await {
            if let Message::Text(t) = msg {
                if t.contains(r#""from":"test-writer""#) && t.contains("hello from the test") {
                    return t.to_string();
                }
            }
        }
        panic!("chat reader closed");
    })
    .await
    .expect("the broadcast never reached the reader");
    assert!(seen.contains(r#""type":"msg""#) && seen.contains(r#""backend":"app-"#));
    // Finish the close handshakes and hang up, so these tunnels are gone before the
    // kill below counts tunnels.
    for mut ws in [reader, writer] {
        ws.close(None).await.unwrap();
        timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} })
            .await
            .expect("close handshake timed out");
    }

    // Kill the busiest backend: its tunnels end with 1012 and the clients come back
    // on the other two.
    let snap = demo.proxy.snapshot();
    let victim = ids
        .iter()
        .max_by_key(|id| active(&snap, id))
        .unwrap()
        .clone();
    let others: Vec<_> = ids.iter().filter(|id| **id != victim).cloned().collect();
    let before: u64 = others.iter().map(|id| active(&snap, id)).sum();
    let outcome = demo
        .proxy
        .control()
        .send(Command::Kill {
            backend: victim.clone(),
            code: CLOSE_SERVICE_RESTART,
            reason: "demo test".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Closing(n) if n > 0),
        "{outcome:?}"
    );
    let mut closed_1012 = 0;
    let (left, after) = wait_for(
        &mut events,
        "clients to move off the killed backend",
        |event| {
            if let Some(Event::TunnelClosed {
                code: Some(1012), ..
            }) = event
            {
                closed_1012 += 1;
            }
            let snap = demo.proxy.snapshot();
            let left = active(&snap, &victim);
            let after: u64 = others.iter().map(|id| active(&snap, id)).sum();
            (left == 0 && after > before && closed_1012 > 0).then_some((left, after))
        },
    )
    .await;
    assert_eq!(left, 0);
    assert!(after > before);

    timeout(Duration::from_secs(10), demo.stop())
        .await
        .expect("stop() hung");
}
