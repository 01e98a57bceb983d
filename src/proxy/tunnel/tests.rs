//! The relay against real loopback sockets, driven on one thread so the test decides
//! exactly which bytes the relay reads before and after a close on purpose begins.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::event::{BackendId, Handshake};
use crate::proxy::stream::Stream;
use crate::ws;
use bytes::Bytes;

/// Longer than any test may take: a close that waits for it has failed.
const LONG_GRACE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(5);

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

fn shared() -> Arc<TunnelShared> {
    Arc::new(TunnelShared::new(
        7,
        SystemTime::now(),
        "127.0.0.1:1".parse().unwrap(),
        "test".into(),
        "/".into(),
        "/".into(),
        BackendId::new("app", "127.0.0.1:2"),
        Handshake {
            request_in: Default::default(),
            request_out: Default::default(),
            response: Default::default(),
            subprotocol: None,
            extensions: None,
            h2: false,
        },
        16,
        64,
        0,
    ))
}

fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(bit | n as u8),
        n => {
            f.push(bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    match mask {
        None => f.extend_from_slice(payload),
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
    }
    f
}

/// Reads one frame (headers up to 16-bit lengths), unmasking it.
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0; 2];
    s.read_exact(&mut h).await.unwrap();
    let mut len = (h[1] & 0x7F) as usize;
    if len == 126 {
        let mut l = [0; 2];
        s.read_exact(&mut l).await.unwrap();
        len = u16::from_be_bytes(l) as usize;
    }
    let mut key = [0; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut key).await.unwrap();
    }
    let mut p = vec![0; len];
    s.read_exact(&mut p).await.unwrap();
    p.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
    (h[0] & 0x0F, p)
}

struct Running {
    client: TcpStream,
    backend: TcpStream,
    shared: Arc<TunnelShared>,
    events: broadcast::Receiver<Event>,
    relay: tokio::task::JoinHandle<Ending>,
}

async fn relay(strict: bool) -> Running {
    relay_with(RelaySettings {
        idle: Duration::ZERO,
        close_grace: LONG_GRACE,
        strict,
        close_on_backend_loss: true,
        ping: None,
        capture: CaptureSettings::off(),
        park_after: None,
    })
    .await
}

/// The relay between two plain streams, nothing read ahead on either.
fn plain_run<'a>(
    shared: &'a TunnelShared,
    client_side: TcpStream,
    backend_side: TcpStream,
    settings: RelaySettings,
    bus: &'a broadcast::Sender<Event>,
) -> impl std::future::Future<Output = Ending> + 'a {
    let start = Start::Fresh {
        client: Stream::Plain(client_side),
        client_pre: Bytes::new(),
        backend: Stream::Plain(backend_side),
        backend_pre: Bytes::new(),
    };
    async move {
        match run(shared, start, settings, bus).await {
            Outcome::Ended(ending) => ending,
            Outcome::Parked { .. } => panic!("parked, with park_after off"),
        }
    }
}

async fn relay_with(settings: RelaySettings) -> Running {
    let (client, client_side) = tcp_pair().await;
    let (backend_side, backend) = tcp_pair().await;
    let shared = shared();
    let (bus, events) = broadcast::channel(64);
    let s = shared.clone();
    let relay =
        tokio::spawn(async move { plain_run(&s, client_side, backend_side, settings, &bus).await });
    Running {
        client,
        backend,
        shared,
        events,
        relay,
    }
}

fn violations(events: &mut broadcast::Receiver<Event>) -> usize {
    let mut n = 0;
    while let Ok(e) = events.try_recv() {
        n += usize::from(matches!(e, Event::Violation { .. }));
    }
    n
}

/// A kill arrives mid-frame; the client's next read carries the end of that frame and
/// the start of another. The rest of that chunk is scanned (not forwarded), so the
/// client's Close reply is recognised: the tunnel ends as soon as both peers answer,
/// not after the 30 s grace, and no violation is invented.
#[tokio::test]
async fn a_killed_tunnel_whose_peers_answer_the_close_ends_at_once_without_false_violations() {
    let mut t = relay(false).await;
    let key = Some([1, 2, 3, 4]);
    let a = frame(0x2, &[0xAA; 200], key);
    let b = frame(0x2, &[0xBB; 200], key);

    t.client.write_all(&a[..100]).await.unwrap();
    let mut got = vec![0; 100];
    t.backend.read_exact(&mut got).await.unwrap();
    assert_eq!(got, a[..100]);

    t.shared.request_close(1012, "restart");
    // On this one thread, the relay now takes the request and waits for the frame's end.
    tokio::task::yield_now().await;
    t.client
        .write_all(&[&a[100..], &b[..20]].concat())
        .await
        .unwrap();

    // The backend gets the rest of the frame, then the proxy's masked Close; never b.
    let mut rest = vec![0; a.len() - 100];
    t.backend.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, a[100..]);
    let (op, payload) = read_frame(&mut t.backend).await;
    assert_eq!((op, &payload[..2]), (0x8, &1012u16.to_be_bytes()[..]));
    let (op, payload) = read_frame(&mut t.client).await;
    assert_eq!((op, &payload[..2]), (0x8, &1012u16.to_be_bytes()[..]));

    // Both answer: the client after finishing its frame b, as a client may.
    t.client
        .write_all(&[&b[20..], &frame(0x8, &1012u16.to_be_bytes(), key)[..]].concat())
        .await
        .unwrap();
    t.backend
        .write_all(&frame(0x8, &1012u16.to_be_bytes(), None))
        .await
        .unwrap();

    let ending = tokio::time::timeout(WAIT, t.relay)
        .await
        .expect("ends once both peers answered, not after the grace")
        .unwrap();
    assert_eq!((ending.code, ending.side), (Some(1012), Side::Proxy));
    assert_eq!(violations(&mut t.events), 0, "no violation was sent");
    let stats = t.shared.stats();
    assert_eq!(
        stats
            .client_to_backend
            .op(crate::event::OpKind::Binary)
            .frames,
        2
    );
}

/// Strict mode: whole frames that came before the offending one in the same read
/// still reach the backend; the offending one does not.
#[tokio::test]
async fn strict_mode_forwards_the_valid_frames_read_together_with_a_violation() {
    let mut t = relay(true).await;
    let key = Some([9, 8, 7, 6]);
    let good = [frame(0x1, b"one", key), frame(0x1, b"two", key)].concat();
    let bad = frame(0x1, b"unmasked", None);
    t.client
        .write_all(&[&good[..], &bad[..]].concat())
        .await
        .unwrap();

    let mut got = vec![0; good.len()];
    t.backend.read_exact(&mut got).await.unwrap();
    assert_eq!(got, good, "the two valid frames are forwarded");
    let (op, payload) = read_frame(&mut t.backend).await;
    assert_eq!((op, &payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));
    let (op, payload) = read_frame(&mut t.client).await;
    assert_eq!((op, &payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));

    t.client
        .write_all(&frame(0x8, &1002u16.to_be_bytes(), key))
        .await
        .unwrap();
    t.backend
        .write_all(&frame(0x8, &1002u16.to_be_bytes(), None))
        .await
        .unwrap();
    let ending = tokio::time::timeout(WAIT, t.relay).await.unwrap().unwrap();
    assert_eq!(ending.code, Some(1002));
    assert_eq!(violations(&mut t.events), 1);
}

/// A close on purpose whose peers never answer is over by the deadline it was
/// given (shutdown's), not after the close grace.
#[tokio::test]
async fn a_close_with_a_deadline_is_over_by_then_even_if_no_peer_answers() {
    let t = relay(false).await;
    let by = Instant::now() + Duration::from_millis(300);
    t.shared.request_close_by(1001, "going away", Some(by));
    let ending = tokio::time::timeout(WAIT, t.relay)
        .await
        .expect("over by the deadline, not after the 30 s grace")
        .unwrap();
    assert_eq!(ending.code, Some(1001));
    assert!(
        Instant::now() >= by,
        "the peers were given until the deadline"
    );
    drop((t.client, t.backend));
}

// ---------------------------------------------------------------------------------
// Proxy-originated pings

const PING_EVERY: Duration = Duration::from_millis(100);

async fn pinging(client: bool, backend: bool, timeout: Duration) -> Running {
    relay_with(RelaySettings {
        idle: Duration::ZERO,
        close_grace: WAIT,
        strict: false,
        close_on_backend_loss: true,
        capture: CaptureSettings::off(),
        park_after: None,
        ping: Some(PingSettings {
            interval: PING_EVERY,
            timeout,
            client,
            backend,
        }),
    })
    .await
}

async fn read_frame_in_time(s: &mut TcpStream) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, read_frame(s))
        .await
        .expect("a frame in time")
}

/// A silent client gets the proxy's Ping; its Pong is swallowed, so the backend
/// next sees the text frame the client sends after it, and nothing before.
#[tokio::test]
async fn a_silent_client_is_pinged_and_its_pong_never_reaches_the_backend() {
    let mut r = pinging(true, false, WAIT).await;
    let (op, ping) = read_frame_in_time(&mut r.client).await;
    assert_eq!(op, ws::opcode::PING);
    assert!(ping.starts_with(b"tunnelscope "), "{ping:?}");
    let mut answer = frame(ws::opcode::PONG, &ping, Some([1, 2, 3, 4]));
    // The Pong and a message in one write: only the message goes on.
    answer.extend(frame(ws::opcode::TEXT, b"after", Some([5, 6, 7, 8])));
    r.client.write_all(&answer).await.unwrap();
    let (op, payload) = read_frame_in_time(&mut r.backend).await;
    assert_eq!((op, payload.as_slice()), (ws::opcode::TEXT, &b"after"[..]));
    // The next ping comes one interval later, and the tunnel lives on.
    let (op, second) = read_frame_in_time(&mut r.client).await;
    assert_eq!(op, ws::opcode::PING);
    assert_ne!(second, ping, "each ping has its own payload");
    r.client
        .write_all(&frame(ws::opcode::PONG, &second, Some([9, 9, 9, 9])))
        .await
        .unwrap();
    r.client
        .write_all(&frame(ws::opcode::TEXT, b"still", Some([1, 1, 1, 1])))
        .await
        .unwrap();
    let (op, payload) = read_frame_in_time(&mut r.backend).await;
    assert_eq!((op, payload.as_slice()), (ws::opcode::TEXT, &b"still"[..]));
    assert!(!r.relay.is_finished());
}

/// Pings and Pongs the endpoints send each other pass untouched, even while the
/// proxy waits for its own Pong; a Pong with another payload is not ours.
#[tokio::test]
async fn the_endpoints_own_pings_and_pongs_pass_untouched() {
    let mut r = pinging(true, false, WAIT).await;
    let (_, ours) = read_frame_in_time(&mut r.client).await;
    r.client
        .write_all(&frame(ws::opcode::PING, b"mine", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    r.client
        .write_all(&frame(ws::opcode::PONG, b"unsolicited", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    assert_eq!(
        read_frame_in_time(&mut r.backend).await,
        (ws::opcode::PING, b"mine".to_vec())
    );
    assert_eq!(
        read_frame_in_time(&mut r.backend).await,
        (ws::opcode::PONG, b"unsolicited".to_vec())
    );
    r.client
        .write_all(&frame(ws::opcode::PONG, &ours, Some([4, 3, 2, 1])))
        .await
        .unwrap();
    r.client
        .write_all(&frame(ws::opcode::TEXT, b"x", Some([4, 3, 2, 1])))
        .await
        .unwrap();
    assert_eq!(
        read_frame_in_time(&mut r.backend).await,
        (ws::opcode::TEXT, b"x".to_vec())
    );
}

/// A client that never answers is taken for dead after `ping_timeout`: the backend
/// gets Close 1001 `client missed ping`, the client nothing more, and the ending
/// blames the client.
#[tokio::test]
async fn a_client_that_misses_its_ping_is_cut_and_the_backend_told_why() {
    let mut r = pinging(true, false, Duration::from_millis(200)).await;
    let (op, _) = read_frame_in_time(&mut r.client).await;
    assert_eq!(op, ws::opcode::PING);
    let (op, close) = read_frame_in_time(&mut r.backend).await;
    assert_eq!(op, ws::opcode::CLOSE);
    assert_eq!(&close[..2], &1001u16.to_be_bytes());
    assert_eq!(&close[2..], b"client missed ping");
    r.backend
        .write_all(&frame(ws::opcode::CLOSE, &1001u16.to_be_bytes(), None))
        .await
        .unwrap();
    let ending = tokio::time::timeout(WAIT, r.relay).await.unwrap().unwrap();
    assert_eq!(ending.side, Side::Client);
    assert_eq!(
        (ending.code, ending.reason.as_str()),
        (Some(1001), "client missed ping")
    );
    // The client got no Close: after the Ping its stream just ends.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, r.client.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{rest:?}");
}

/// The backend gets masked pings (the proxy is its client); one that answers with
/// anything at all counts as alive.
#[tokio::test]
async fn a_backend_is_pinged_masked_and_any_answer_keeps_the_tunnel() {
    let mut r = pinging(false, true, Duration::from_millis(300)).await;
    let mut h = [0u8; 2];
    tokio::time::timeout(WAIT, r.backend.read_exact(&mut h))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(h[0], 0x80 | ws::opcode::PING);
    assert!(h[1] & 0x80 != 0, "masked toward the backend");
    let mut rest = vec![0u8; 4 + usize::from(h[1] & 0x7F)];
    r.backend.read_exact(&mut rest).await.unwrap();
    // Answer with data instead of a Pong, three times over the timeout.
    for i in 0..3 {
        r.backend
            .write_all(&frame(ws::opcode::TEXT, format!("{i}").as_bytes(), None))
            .await
            .unwrap();
        let (op, _) = read_frame_in_time(&mut r.client).await;
        assert_eq!(op, ws::opcode::TEXT);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(!r.relay.is_finished(), "a backend that speaks is alive");
}

/// Every tunnel holds its shared state for as long as it lives, and its relay task
/// while it is not parked: 8,000 tunnels hold 8,000 of each. Rarely used state
/// (timers beyond one, the close sequences' futures, hold and close mailboxes, the
/// ending) is boxed on first use instead of being room in every tunnel. Bounds with
/// a margin over the sizes measured (1,416 and 488 bytes), so that growth is a
/// decision.
#[tokio::test]
async fn an_idle_tunnel_holds_a_small_task_and_state() {
    let (_client, client_side) = tcp_pair().await;
    let (backend_side, _backend) = tcp_pair().await;
    let s = shared();
    let (bus, _events) = broadcast::channel(64);
    let settings = RelaySettings {
        idle: Duration::ZERO,
        close_grace: LONG_GRACE,
        strict: false,
        close_on_backend_loss: true,
        ping: None,
        capture: CaptureSettings::off(),
        park_after: None,
    };
    let start = Start::Fresh {
        client: Stream::Plain(client_side),
        client_pre: Bytes::new(),
        backend: Stream::Plain(backend_side),
        backend_pre: Bytes::new(),
    };
    let task = run(&s, start, settings, &bus);
    let task_bytes = std::mem::size_of_val(&task);
    assert!(task_bytes <= 1500, "the relay task is {task_bytes} bytes");
    let shared_bytes = std::mem::size_of::<TunnelShared>();
    // In its Arc (two counts more), it must fit the allocator's 512-byte class:
    // the next one up is 640.
    assert!(
        shared_bytes + 16 <= 512,
        "a tunnel's shared state is {shared_bytes} bytes"
    );
}

/// The frame scanners are most of a tunnel's shared state: each direction makes
/// its own at its first byte, so a tunnel that never carried anything holds none,
/// and one that carried only one way holds one.
#[tokio::test]
async fn each_direction_makes_its_scanner_at_its_first_byte() {
    let mut r = relay(false).await;
    let made = |s: &TunnelShared| (lock(&s.c2b).get().is_some(), lock(&s.b2c).get().is_some());
    assert_eq!(made(&r.shared), (false, false));
    assert_eq!(r.shared.stats(), crate::event::TunnelStats::default());
    r.client
        .write_all(&frame(ws::opcode::TEXT, b"up", Some([9, 8, 7, 6])))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut r.backend).await,
        (ws::opcode::TEXT, b"up".to_vec())
    );
    assert_eq!(made(&r.shared), (true, false));
    r.backend
        .write_all(&frame(ws::opcode::TEXT, b"down", None))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut r.client).await,
        (ws::opcode::TEXT, b"down".to_vec())
    );
    assert_eq!(made(&r.shared), (true, true));
    let stats = r.shared.stats();
    assert_eq!(
        (
            stats.client_to_backend.messages,
            stats.backend_to_client.messages
        ),
        (1, 1)
    );
}
