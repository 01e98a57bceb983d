//! Plain HTTP keep-alive to backends: requests reuse idle backend connections; a
//! reused connection the backend has closed is retried once on a new one for a
//! bodyless idempotent request, and not for one with a body.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::http_fixtures::{raw_request, read_head, HttpBackend};
use crate::common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// One event loop: idle connections are kept per loop, and the kernel would spread
/// the client connections over several.
fn config(backend: SocketAddr, pool_extra: &str) -> String {
    format!(
        "[proxy]\nthreads = 1\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n{pool_extra}\n\
         [[pool.app.server]]\naddr = \"{backend}\"\n"
    )
}

async fn get(proxy: SocketAddr, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n");
    raw_request(proxy, req.as_bytes()).await.0.status
}

/// Five requests, each from a client connection of its own, reach the backend over
/// one connection; with `keepalive = 0` each gets its own.
#[tokio::test]
async fn plain_requests_reuse_an_idle_backend_connection() {
    let backend = HttpBackend::start("b").await;
    let proxy = proxy(&config(backend.addr, "")).await;
    for i in 0..5 {
        assert_eq!(get(proxy.local_addrs()[0], &format!("/{i}")).await, 200);
    }
    assert_eq!(
        backend.connections(),
        1,
        "one backend connection for all five"
    );
    assert_eq!(backend.requests().len(), 5);

    // Responses with no body (204) hand their connection back too.
    for _ in 0..3 {
        assert_eq!(get(proxy.local_addrs()[0], "/status/204").await, 204);
    }
    assert_eq!(backend.connections(), 1, "bodyless responses reuse it too");

    let other = HttpBackend::start("c").await;
    let proxy = self::proxy(&config(other.addr, "keepalive = 0")).await;
    for i in 0..3 {
        assert_eq!(get(proxy.local_addrs()[0], &format!("/{i}")).await, 200);
    }
    assert_eq!(other.connections(), 3);
    assert!(other
        .requests()
        .iter()
        .all(|r| r.headers.get("connection").as_deref() == Some("close")));
}

/// A backend that answers the first request of each connection (keeping it open)
/// and hangs up on the second one without a word, as one whose keep-alive timer
/// fired just then. Counts connections.
async fn one_request_per_connection() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let head = read_head(&mut tcp).await;
                if head.is_empty() {
                    return;
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // The next request is read, then the connection just closes.
                let _ = read_head(&mut tcp).await;
            });
        }
    });
    (addr, count, task)
}

/// The second GET goes out on the idle connection, which the backend closes
/// without answering: it is sent again on a new connection, and the client sees
/// only the 200. A POST with a body in the same spot is not sent twice: 502.
#[tokio::test]
async fn a_closed_idle_connection_is_retried_once_for_a_get_but_not_for_a_post() {
    let (addr, connections, _task) = one_request_per_connection().await;
    let proxy = proxy(&config(addr, "")).await;
    let listen = proxy.local_addrs()[0];
    assert_eq!(get(listen, "/first").await, 200);
    assert_eq!(
        get(listen, "/second").await,
        200,
        "retried on a new connection"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let backend = proxy.snapshot().backends[0].clone();
    assert_eq!(
        backend.failures, 0,
        "a closed idle connection is not a failure"
    );

    let post =
        b"POST /third HTTP/1.1\r\nhost: app\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
    assert_eq!(
        raw_request(listen, post).await.0.status,
        502,
        "not sent twice"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
