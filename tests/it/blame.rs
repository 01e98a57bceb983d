//! Blame goes where it belongs (issue 11): a client that sends a malformed,
//! truncated, oversized or stalled body, both `Content-Length` and
//! `Transfer-Encoding`, or half a WebSocket upgrade gets a 4xx (or a silent close)
//! and costs the backends nothing: no failure counted, no last error, no 503 for the
//! next client. A backend that really fails is still blamed. And the backend's
//! response timer starts once the body has been sent, not while the client uploads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::http_fixtures::{HttpBackend, RawBackend, Script};
use crate::common::wire::{read_outcome, Outcome};
use crate::common::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{BackendInfo, Event};

const REQUEST_BODY: Duration = Duration::from_millis(600);
const BACKEND_RESPONSE: Duration = Duration::from_millis(400);

/// Two pools: `/http` to a plain HTTP backend, everything else to a WebSocket echo
/// backend; `max_fails = 1` (the default), so a single wrongly blamed failure shows.
/// The web pool opens a connection per request (`keepalive = 0`): the tests read
/// the backend's connection count to know when the proxy has reached it.
fn config(ws: SocketAddr, web: SocketAddr, max_body: u64) -> String {
    format!(
        "[limits]\nmax_body_bytes = {max_body}\n\n\
         [timeouts]\nrequest_body = \"{}ms\"\nbackend_response = \"{}ms\"\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/http\"\npool = \"web\"\n\n\
         [[route]]\npath = \"/\"\npool = \"ws\"\n\n\
         [pool.ws]\n[[pool.ws.server]]\naddr = \"{ws}\"\n\n\
         [pool.web]\nkeepalive = 0\n[[pool.web.server]]\naddr = \"{web}\"\n",
        REQUEST_BODY.as_millis(),
        BACKEND_RESPONSE.as_millis(),
    )
}

/// What the client does after writing its bytes.
#[derive(Clone, Copy, Debug)]
enum Then {
    /// Keeps its side open and silent.
    Hold,
    /// Shuts down its sending side (EOF).
    Eof,
}

/// Sends `bytes` while reading concurrently; returns what the proxy did.
async fn send(addr: SocketAddr, bytes: &[u8], then: Then) -> Outcome {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        if let Then::Eof = then {
            let _ = wr.shutdown().await;
        }
        wr
    });
    let out = read_outcome(&mut rd).await;
    drop(writer);
    out
}

/// (name, bytes, then, acceptable statuses, whether a silent close is fine too,
/// whether the HTTP backend may be contacted at all)
type FaultCase = (&'static str, Vec<u8>, Then, &'static [u16], bool, bool);

/// A plain request through the proxy, answered by the HTTP backend.
async fn settle(addr: SocketAddr) {
    let out = send(
        addr,
        b"GET /http/settle HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Then::Hold,
    )
    .await;
    assert_eq!(out.status(), Some(200), "{}", out.text());
}

fn post(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}").into_bytes()
}

/// The backend at `addr`, whichever pool it is in.
fn backend_info(proxy: &tunnelscope::proxy::ProxyHandle, addr: SocketAddr) -> BackendInfo {
    let addr = addr.to_string();
    proxy
        .snapshot()
        .backends
        .into_iter()
        .find(|b| *b.id.addr == *addr)
        .unwrap_or_else(|| panic!("{addr} is in the snapshot"))
}

fn assert_unblamed(proxy: &tunnelscope::proxy::ProxyHandle, addrs: &[SocketAddr], after: &str) {
    for addr in addrs {
        let info = backend_info(proxy, *addr);
        assert_eq!(info.failures, 0, "after {after}: {info:?}");
        assert_eq!(info.last_error, None, "after {after}: {info:?}");
    }
}

#[tokio::test]
async fn client_faults_get_4xx_and_the_same_backends_serve_the_next_client() {
    let ws = Backend::start("ws").await;
    let web = HttpBackend::start("web").await;
    let proxy = proxy(&config(ws.addr, web.addr, 64)).await;
    let addr = proxy.local_addrs()[0];
    let backends = [ws.addr, web.addr];

    let cases: Vec<FaultCase> = vec![
        (
            "chunked body with a bad chunk size",
            post("/http/a", "Transfer-Encoding: chunked\r\n", "zz\r\n"),
            Then::Hold,
            &[400],
            false,
            true,
        ),
        (
            "chunk cut short, then EOF",
            post("/http/b", "Transfer-Encoding: chunked\r\n", "10\r\nonly-"),
            Then::Eof,
            &[400],
            true,
            true,
        ),
        (
            "Content-Length body cut short, then EOF",
            post("/http/c", "Content-Length: 50\r\n", "short"),
            Then::Eof,
            &[400],
            true,
            true,
        ),
        (
            "Content-Length and Transfer-Encoding",
            post(
                "/http/d",
                "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
                "4\r\nbody\r\n0\r\n\r\n",
            ),
            Then::Hold,
            &[400],
            false,
            false,
        ),
        (
            "Transfer-Encoding before Content-Length",
            post(
                "/http/e",
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                "4\r\nbody\r\n0\r\n\r\n",
            ),
            Then::Hold,
            &[400],
            false,
            false,
        ),
        (
            "upload that stalls",
            post("/http/f", "Content-Length: 10\r\n", "12345"),
            Then::Hold,
            &[408],
            false,
            true,
        ),
        (
            "Content-Length over max_body_bytes",
            post("/http/g", "Content-Length: 65\r\n", &"x".repeat(65)),
            Then::Hold,
            &[413],
            false,
            false,
        ),
        (
            "chunked body over max_body_bytes",
            post(
                "/http/h",
                "Transfer-Encoding: chunked\r\n",
                &format!("{0}\r\n{1}\r\n{0}\r\n{1}\r\n", "28", "y".repeat(40)),
            ),
            Then::Hold,
            &[413],
            false,
            true,
        ),
        (
            "Upgrade: websocket without Connection: upgrade",
            b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .to_vec(),
            Then::Hold,
            &[400],
            false,
            false,
        ),
        (
            "Upgrade: websocket with a body and no key",
            post(
                "/chat",
                "Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 2\r\n",
                "hi",
            ),
            Then::Hold,
            &[400],
            false,
            false,
        ),
    ];
    for (name, bytes, then, statuses, silent_ok, may_contact) in cases {
        // The backend accepts connections in order: once a fresh request through the
        // proxy has been answered, every earlier connection has been counted.
        settle(addr).await;
        let (web_conns, ws_seen) = (web.connections(), ws.seen().len());
        let started = Instant::now();
        let out = send(addr, &bytes, then).await;
        let status = out.status();
        let ok = match status {
            Some(s) => statuses.contains(&s),
            None => silent_ok && out.ended,
        };
        assert!(ok, "{name}: expected {statuses:?}, got {:?}", out.text());
        assert!(
            started.elapsed() < REQUEST_BODY * 4,
            "{name}: answered after {:?}",
            started.elapsed()
        );
        if !may_contact {
            assert_eq!(
                web.connections(),
                web_conns,
                "{name}: the backend was contacted"
            );
        }
        assert_eq!(
            ws.seen().len(),
            ws_seen,
            "{name}: reached the WebSocket backend"
        );
        assert_unblamed(&proxy, &backends, name);
        eprintln!("ok: {name}: {status:?}");
    }

    // A client that vanishes mid-upload (reset): the request ends as its fault.
    let mut events = proxy.subscribe();
    let conns_before = web.connections();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&post("/http/vanish", "Content-Length: 50\r\n", "partial"))
        .await
        .unwrap();
    // Wait until the proxy has connected to the backend before vanishing.
    let conns = conns_before;
    let deadline = Instant::now() + WAIT;
    while web.connections() == conns {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the backend"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tcp.set_zero_linger().unwrap();
    drop(tcp);
    let ev = wait_event(
        &mut events,
        |e| matches!(e, Event::HttpRequest { path, .. } if path == "/http/vanish"),
    )
    .await;
    let Event::HttpRequest { status, .. } = ev else {
        unreachable!()
    };
    assert_eq!(status, 400, "a vanished client's request ends as its fault");
    assert_unblamed(&proxy, &backends, "a client vanishing mid-upload");

    // The next clients are served by the same backends.
    let mut client = connect(addr, "/after").await;
    client.send(Message::text("still served")).await.unwrap();
    assert_eq!(next_data(&mut client).await, Message::text("still served"));
    let out = send(
        addr,
        &post(
            "/http/ok",
            "Content-Length: 2\r\nConnection: close\r\n",
            "ok",
        ),
        Then::Hold,
    )
    .await;
    assert_eq!(out.status(), Some(200), "{}", out.text());
    assert_unblamed(&proxy, &backends, "everything");
}

#[tokio::test]
async fn backend_timer_starts_once_a_slow_upload_has_been_sent() {
    let ws = Backend::start("ws").await;
    let web = HttpBackend::start("web").await;
    let proxy = proxy(&config(ws.addr, web.addr, 0)).await;
    let addr = proxy.local_addrs()[0];

    // Four pieces, each well inside request_body, all together twice
    // backend_response: the upload is slow but alive, and the backend answers at once
    // after the last byte.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let started = Instant::now();
    wr.write_all(b"POST /http/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let gap = BACKEND_RESPONSE / 2;
    for piece in ["ab", "cd", "ef", "gh"] {
        tokio::time::sleep(gap).await;
        wr.write_all(piece.as_bytes()).await.unwrap();
    }
    let out = read_outcome(&mut rd).await;
    assert!(
        started.elapsed() > BACKEND_RESPONSE,
        "the upload took its time"
    );
    assert_eq!(out.status(), Some(200), "{}", out.text());
    assert!(out.text().ends_with("abcdefgh"), "{}", out.text());
    assert_eq!(backend_info(&proxy, web.addr).failures, 0);
}

#[tokio::test]
async fn a_backend_that_fails_after_the_body_is_sent_is_still_blamed() {
    let ws = Backend::start("ws").await;
    // One backend hangs up before any response head, the other never answers.
    let closing = RawBackend::start(Script::Answer(Vec::new())).await;
    let silent = RawBackend::start(Script::Silent).await;
    for (backend, status) in [(closing.addr, 502), (silent.addr, 504)] {
        let proxy = proxy(&config(ws.addr, backend, 0)).await;
        let addr = proxy.local_addrs()[0];
        let out = send(
            addr,
            b"GET /http/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            Then::Hold,
        )
        .await;
        assert_eq!(out.status(), Some(status), "{}", out.text());
        let info = backend_info(&proxy, backend);
        assert_eq!(info.failures, 1, "{info:?}");
        assert!(info.last_error.is_some(), "{info:?}");
        assert_eq!(backend_info(&proxy, ws.addr).failures, 0);
    }
}

#[tokio::test]
async fn request_with_content_length_and_transfer_encoding_is_refused_on_a_kept_alive_connection_too(
) {
    let ws = Backend::start("ws").await;
    let web = HttpBackend::start("web").await;
    let proxy = proxy(&config(ws.addr, web.addr, 0)).await;
    let addr = proxy.local_addrs()[0];
    // A good request first, on the same connection: the check follows each head.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    // Written one request at a time, so the second head is read after the first
    // response (not pipelined).
    wr.write_all(&post("/http/first", "Content-Length: 2\r\n", "ok"))
        .await
        .unwrap();
    let first = crate::common::http_fixtures::read_response(&mut rd).await;
    assert_eq!(first.status, 200, "{first:?}");
    wr.write_all(&post(
        "/http/second",
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        "4\r\nbody\r\n0\r\n\r\n",
    ))
    .await
    .unwrap();
    let out = read_outcome(&mut rd).await;
    assert_eq!(out.status(), Some(400), "{}", out.text());
    assert!(out.text().contains("Content-Length and Transfer-Encoding"));
    let targets: Vec<String> = web.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        ["/http/first"],
        "the second request reached the backend"
    );
}
