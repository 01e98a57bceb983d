//! Active health checks: a backend is probed on its own, with no client traffic, and
//! one that fails the check gets no new tunnels until it passes again.

use crate::admin::client::Admin;
use crate::common::clients::{assert_paced, closes_in_order};
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

/// The latest check of each backend (when, how long, why it failed) is in the
/// snapshot, `/api/backends` and the metrics.
#[tokio::test]
async fn the_latest_check_shows_its_latency_and_error_in_the_api_and_metrics() {
    let bad = RawBackend::start(Script::Answer(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ))
    .await;
    let good = Backend::start("good").await;
    let proxy = proxy(&config(&[bad.addr, good.addr], "check = \"ws\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut events = proxy.subscribe();
    let down = wait_backend(&mut events, bad.addr, |b| b.health == Health::Down).await;
    let check = down.check.expect("a check result");
    assert!(check.error.unwrap().contains("answered 503, expected 101"));
    wait_backend(&mut events, good.addr, |b| b.check.is_some()).await;

    let listed = admin.get_json("/api/backends").await;
    let find = |addr: std::net::SocketAddr| {
        listed["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["addr"] == addr.to_string().as_str())
            .unwrap()
            .clone()
    };
    let (b, g) = (find(bad.addr), find(good.addr));
    assert_eq!(b["check"]["ok"], false, "{b}");
    assert!(b["check"]["error"].as_str().unwrap().contains("503"));
    assert_eq!(g["check"]["ok"], true, "{g}");
    assert!(g["check"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(g["check"]["at"].as_str().unwrap().ends_with('Z'));

    let metrics = admin.get("/metrics").await.body;
    let line = |name: &str, addr: std::net::SocketAddr| {
        let prefix = format!("{name}{{pool=\"app\",addr=\"{addr}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert_eq!(line("tunnelscope_backend_check_up", bad.addr), "0");
    assert_eq!(line("tunnelscope_backend_check_up", good.addr), "1");
    assert!(
        line("tunnelscope_backend_check_duration_seconds", good.addr)
            .parse::<f64>()
            .is_ok_and(|s| s > 0.0)
    );
}

/// With `close_on_down`, the tunnels of a backend that stops answering its checks
/// (its listener is gone, its open connections still work) are closed with 1012
/// `backend down`, a few a second; without it they run on.
#[tokio::test]
async fn close_on_down_closes_a_down_backends_tunnels_at_the_close_rate() {
    let a = Backend::start("a").await;
    let addr = a.addr;
    let toml = config(&[addr], "check = \"tcp\"\nclose_on_down = true")
        .replace("[pool.app]\n", "[pool.app]\nclose_rate = 10\n");
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(proxy.local_addrs()[0], "/").await;
        assert_eq!(whoami(&mut ws).await, "a");
        held.push(ws);
    }
    drop(a); // stops accepting; the three tunnels' connections live on
    let closes = closes_in_order(held).await;
    // At 10/s, with some slack for timer granularity.
    assert_paced(
        &closes,
        (1012, "backend down"),
        std::time::Duration::from_millis(80),
    );
    let info = wait_backend(&mut events, addr, |b| b.active_tunnels == 0).await;
    assert_eq!(info.health, Health::Down);
}

/// Without `close_on_down`, a backend going down keeps its open tunnels.
#[tokio::test]
async fn a_backend_that_goes_down_keeps_its_open_tunnels_by_default() {
    let a = Backend::start("a").await;
    let addr = a.addr;
    let proxy = proxy(&config(&[addr], "check = \"tcp\"")).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "a");
    drop(a);
    wait_backend(&mut events, addr, |b| b.health == Health::Down).await;
    assert_eq!(whoami(&mut ws).await, "a", "the tunnel runs on");
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
