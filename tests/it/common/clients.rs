//! WebSocket clients through the proxy: from a chosen loopback address, with extra
//! headers, over TLS; echo checks, waiting for the Close, hanging up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{certs::TestPki, ws_config, ws_url, Client, WAIT};

/// A TCP connection to `addr` from a chosen loopback address (all of 127.0.0.0/8
/// is local on Linux).
pub async fn tcp_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect")
}

/// A WebSocket client through the proxy from a chosen loopback address, or the
/// error that prevented it.
pub async fn try_connect_from(
    ip: Ipv4Addr,
    addr: SocketAddr,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let tcp = tcp_from(ip, addr).await;
    tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(
            ws_url(addr, "/"),
            MaybeTlsStream::Plain(tcp),
            Some(ws_config()),
        ),
    )
    .await
    .expect("upgrade answered or refused in time")
    .map(|(ws, _)| ws)
}

pub async fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> Client {
    try_connect_from(ip, addr)
        .await
        .unwrap_or_else(|e| panic!("upgrade from {ip} failed: {e}"))
}

/// Retries an upgrade until the proxy admits it: a limit is released by the
/// connection task a moment after the tunnel's end is published. Bounded by WAIT.
pub async fn connect_once_admitted(ip: Ipv4Addr, addr: SocketAddr) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_connect_from(ip, addr).await {
            Ok(ws) => return ws,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("still refused after {WAIT:?}: {e}"),
        }
    }
}

/// Sends a text message and expects it echoed, on any WebSocket stream.
pub async fn echo_on<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("echo in time");
    match got {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// A wss:// client through a TLS listener, trusting only the test CA.
pub async fn connect_wss(
    pki: &TestPki,
    addr: SocketAddr,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = pki.connect(addr, "localhost").await;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, resp) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config())),
    )
    .await
    .expect("wss upgrade in time")
    .expect("wss upgrade succeeds");
    assert_eq!(resp.status(), 101);
    ws
}

/// Resets a client's connection (SO_LINGER 0) as it is dropped: the peer sees RST.
pub fn reset_on_drop(ws: &Client) {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().expect("SO_LINGER 0"),
        _ => panic!("plain clients only"),
    }
}

/// Tries an upgrade through the proxy: the client, or the HTTP status it got instead.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, u16> {
    let mut req = ws_url(addr, path).into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let res = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), false),
    )
    .await
    .expect("upgrade answered in time");
    match res {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// A client through the proxy with extra request headers.
pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    match try_connect(addr, path, headers).await {
        Ok(ws) => ws,
        Err(status) => panic!("upgrade refused with {status}"),
    }
}

/// The client's own address: what the proxy sees as the tunnel's client.
pub fn local_addr(ws: &Client) -> SocketAddr {
    match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => panic!("plain clients only"),
    }
}

/// Reads until the proxy's Close frame and the end of the stream (letting the client
/// answer the Close, as real clients do). Any data message on the way fails.
pub async fn expect_close(ws: &mut Client) -> CloseFrame {
    tokio::time::timeout(WAIT, async {
        let mut close: Option<Option<CloseFrame>> = None;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => close = Some(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("expected a Close, got data {other:?}"),
                // After the Close the proxy may hang up without ceremony.
                Some(Err(_)) if close.is_some() => break,
                Some(Err(e)) => panic!("stream failed before any Close: {e}"),
                None => break,
            }
        }
        close
            .expect("a Close frame before the end of the stream")
            .expect("the Close frame carries a code")
    })
    .await
    .expect("Close and end of stream in time")
}

/// Closes a client normally and reads until the end.
pub async fn hang_up(mut ws: Client) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
}

/// A Close a held client received: when, its code and its reason.
pub type Closed = (Instant, u16, String);

/// Waits, all at once, for the Close each of these clients gets; the closes in the
/// order they arrived.
pub async fn closes_in_order(held: Vec<Client>) -> Vec<Closed> {
    let waits: Vec<_> = held
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let close = expect_close(&mut ws).await;
                (
                    Instant::now(),
                    u16::from(close.code),
                    close.reason.to_string(),
                )
            })
        })
        .collect();
    let mut closes = Vec::new();
    for w in waits {
        closes.push(w.await.unwrap());
    }
    closes.sort_by_key(|c| c.0);
    closes
}

/// Asserts that each close came with `(code, reason)`, and at least `gap` after the
/// one before (a paced close).
pub fn assert_paced(closes: &[Closed], (code, reason): (u16, &str), gap: Duration) {
    for (_, c, r) in closes {
        assert_eq!((*c, r.as_str()), (code, reason));
    }
    for pair in closes.windows(2) {
        let apart = pair[1].0 - pair[0].0;
        assert!(
            apart >= gap,
            "two closes {apart:?} apart, at least {gap:?} expected"
        );
    }
}
