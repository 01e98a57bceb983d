//! Active health checks: a backend is probed on its own, with no client traffic, and
//! one that fails the check gets no new tunnels until it passes again.

use crate::common::http_fixtures::{RawBackend, Script};
use crate::common::pools::{backend_id, wait_backend};
use crate::common::*;
use tunnelscope::event::{AdminState, Health};

fn config(servers: &[std::net::SocketAddr], check: &str) -> String {
    let servers: String = servers
        .iter()
        .map(|a| format!("[[pool.app.server]]\naddr = \"{a}\"\n"))
        .collect();
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n{servers}\n\
         [pool.app.health]\n{check}\ninterval = \"50ms\"\ntimeout = \"1s\"\nrise = 2\nfall = 2\n"
    )
}

/// A `ws` check does a real WebSocket handshake: a backend that answers 500 is
/// marked down without any client, and new tunnels go to the healthy one; a healthy
/// one stays up and sees the check's handshake, then a Close.
#[tokio::test]
async fn a_ws_check_marks_a_backend_answering_500_down_with_no_client_traffic() {
    let bad = RawBackend::start(Script::Answer(
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ))
    .await;
    let good = Backend::start("good").await;
    let proxy = proxy(&config(
        &[bad.addr, good.addr],
        "check = \"ws\"\npath = \"/healthz\"",
    ))
    .await;
    let mut events = proxy.subscribe();
    let down = wait_backend(&mut events, bad.addr, |b| b.health == Health::Down).await;
    assert_eq!(
        down.admin,
        AdminState::Active,
        "health is kept apart from admin state"
    );
    assert!(
        down.last_error
            .as_deref()
            .is_some_and(|e| e.contains("answered 500, expected 101")),
        "{down:?}"
    );
    assert!(
        bad.heads().iter().all(|h| h.starts_with("GET /healthz ")),
        "{:?}",
        bad.heads()
    );
    let snapshot = proxy.snapshot();
    let good_info = snapshot
        .backends
        .iter()
        .find(|b| b.id == backend_id(good.addr))
        .unwrap();
    assert_eq!(good_info.health, Health::Up);
    assert!(
        good.seen().iter().any(|s| s.path == "/healthz"),
        "the good one was checked too"
    );

    for _ in 0..6 {
        let mut ws = connect(proxy.local_addrs()[0], "/").await;
        assert_eq!(whoami(&mut ws).await, "good");
    }
}

/// An `http` check expects the configured status; `rise` passes bring a backend
/// back (here: the backend that refused connections starts listening).
#[tokio::test]
async fn an_http_check_takes_a_backend_out_and_rise_passes_bring_it_back() {
    let port_holder = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    let proxy = proxy(&config(&[addr], "check = \"http\"\npath = \"/up\"")).await;
    let mut events = proxy.subscribe();
    wait_backend(&mut events, addr, |b| b.health == Health::Down).await;
    let back = crate::common::http_fixtures::HttpBackend::serve_on(addr, "back").await;
    wait_backend(&mut events, addr, |b| b.health == Health::Up).await;
    assert!(back.requests().iter().any(|r| r.target == "/up"));
}
