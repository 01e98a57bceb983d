//! The HTTP admin API against a real proxy, real backends and real clients: JSON
//! state, control endpoints (drain, kill, close, shutdown), the bearer token,
//! Prometheus metrics that count closed tunnels, the `/api/events` WebSocket, JSON
//! errors for bad requests, and the real binary serving it from `[admin] bind`.

pub(crate) mod client;

use std::time::Duration;

use crate::common::clients::{expect_close, hang_up, local_addr};
use crate::common::*;
use client::*;
use futures_util::SinkExt;
use http::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::admin::Api;
use tunnelscope::event::Event;

/// A proxy in front of `backends` (pool `app`), and its admin API.
async fn setup(
    backends: &[&Backend],
    token: Option<&str>,
) -> (tunnelscope::proxy::ProxyHandle, Admin) {
    let proxy = proxy(&simple_config(backends, "")).await;
    let admin = Admin::start(&proxy, token).await;
    (proxy, admin)
}

fn control_path(backend: &Backend, action: &str) -> String {
    format!("/api/backends/app/{}/{action}", backend.addr)
}

/// The listed tunnel whose client is `ws`.
fn tunnel_of<'a>(tunnels: &'a Value, ws: &Client) -> &'a Value {
    let client = local_addr(ws).to_string();
    tunnels
        .as_array()
        .expect("a list of tunnels")
        .iter()
        .find(|t| t["client"] == client.as_str())
        .unwrap_or_else(|| panic!("no tunnel from {client} in {tunnels}"))
}

fn backend_of<'a>(backends: &'a Value, b: &Backend) -> &'a Value {
    let addr = b.addr.to_string();
    backends
        .as_array()
        .expect("a list of backends")
        .iter()
        .find(|x| x["addr"] == addr.as_str())
        .unwrap_or_else(|| panic!("no backend {addr} in {backends}"))
}

async fn echo(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_data(ws).await, Message::text(text));
}

// ---------------------------------------------------------------------------------
// State

#[tokio::test]
async fn state_lists_backends_and_a_live_tunnel_with_its_counts() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (proxy, admin) = setup(&[&a, &b], None).await;
    let mut ws = connect(proxy.local_addrs()[0], "/chat?room=1").await;
    let name = whoami(&mut ws).await;
    echo(&mut ws, "hello there").await;
    let serving = if name == "a" { &a } else { &b };

    let state = admin.get_json("/api/state").await;
    assert_eq!(
        state["listeners"][0]["addr"],
        proxy.local_addrs()[0].to_string()
    );
    assert_eq!(state["listeners"][0]["tls"], false);
    assert!(state["uptime_seconds"].as_f64().unwrap() >= 0.0);
    chrono::DateTime::parse_from_rfc3339(state["started"].as_str().unwrap()).unwrap();
    assert_eq!(state["backends"].as_array().unwrap().len(), 2);
    let listed = backend_of(&state["backends"], serving);
    assert_eq!(listed["id"], format!("app/{}", serving.addr));
    assert_eq!(listed["pool"], "app");
    assert_eq!(
        (
            &listed["admin"],
            &listed["health"],
            &listed["weight"],
            &listed["backup"]
        ),
        (
            &Value::from("active"),
            &Value::from("up"),
            &Value::from(1),
            &Value::from(false)
        )
    );
    assert_eq!(
        (&listed["active"], &listed["total"]),
        (&Value::from(1), &Value::from(1))
    );
    assert_eq!(
        (&listed["failures"], &listed["last_error"]),
        (&Value::from(0), &Value::Null)
    );

    let t = tunnel_of(&state["tunnels"], &ws);
    assert_eq!(t["path"], "/chat?room=1");
    assert_eq!(t["route"], "/");
    assert_eq!(t["backend"], format!("app/{}", serving.addr));
    chrono::DateTime::parse_from_rfc3339(t["opened"].as_str().unwrap()).unwrap();
    // Two messages each way so far: "whoami" and the echo.
    for dir in ["client_to_backend", "backend_to_client"] {
        let d = &t[dir];
        assert!(d["frames"].as_u64().unwrap() >= 2, "{dir}: {d}");
        assert!(d["messages"].as_u64().unwrap() >= 2, "{dir}: {d}");
        // At least "hello there" and a frame header.
        assert!(d["bytes"].as_u64().unwrap() >= 13, "{dir}: {d}");
        chrono::DateTime::parse_from_rfc3339(d["last_frame"].as_str().unwrap()).unwrap();
        assert_eq!(d["close"], Value::Null);
    }
    assert_eq!(state["totals"]["tunnels_active"], 1);
    assert_eq!(state["totals"]["tunnels_total"], 1);

    // The listings and one tunnel in detail.
    let backends = admin.get_json("/api/backends").await;
    assert_eq!(backends["backends"].as_array().unwrap().len(), 2);
    let tunnels = admin.get_json("/api/tunnels").await;
    let id = tunnel_of(&tunnels["tunnels"], &ws)["id"].as_u64().unwrap();
    let detail = admin.get_json(&format!("/api/tunnels/{id}")).await;
    assert_eq!(detail["id"], id);
    let request_in = detail["handshake"]["request_in"].as_array().unwrap();
    assert!(
        request_in
            .iter()
            .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("upgrade") && h[1] == "websocket"),
        "{request_in:?}"
    );
    assert!(!detail["handshake"]["response"]
        .as_array()
        .unwrap()
        .is_empty());
    let text = &detail["client_to_backend"]["by_opcode"]["text"];
    assert!(text["frames"].as_u64().unwrap() >= 2, "{text}");
    let samples = detail["samples"].as_array().unwrap();
    let hello = samples
        .iter()
        .find(|s| s["dir"] == "client_to_backend" && s["preview"]["data"] == "hello there")
        .unwrap_or_else(|| panic!("the echoed frame among {samples:?}"));
    assert_eq!(
        (
            &hello["kind"],
            &hello["masked"],
            &hello["len"],
            &hello["preview"]["encoding"]
        ),
        (
            &Value::from("text"),
            &Value::from(true),
            &Value::from(11),
            &Value::from("text")
        )
    );
    hang_up(ws).await;
}

// ---------------------------------------------------------------------------------
// Control

#[tokio::test]
async fn drained_backend_gets_no_new_tunnels_until_undrained() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (proxy, admin) = setup(&[&a, &b], None).await;
    let addr = proxy.local_addrs()[0];

    let reply = admin.post(&control_path(&a, "drain")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"outcome": "done", "tunnels": 0})
    );
    let listed = admin.get_json("/api/backends").await;
    let state = backend_of(&listed["backends"], &a)["admin"].clone();
    assert!(state == "draining" || state == "drained", "{state}");

    let mut held = Vec::new();
    for _ in 0..6 {
        let mut ws = connect(addr, "/").await;
        assert_eq!(whoami(&mut ws).await, "b");
        held.push(ws);
    }

    let reply = admin.post(&control_path(&a, "undrain")).await;
    assert_eq!(reply.json()["outcome"], "done");
    // b holds six tunnels, a none: least_conn now picks a.
    let mut ws = connect(addr, "/").await;
    assert_eq!(whoami(&mut ws).await, "a");
    held.push(ws);
    for ws in held {
        hang_up(ws).await;
    }
}

#[tokio::test]
async fn kill_closes_the_backends_tunnels_with_1012_or_the_code_asked_for() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (proxy, admin) = setup(&[&a, &b], None).await;
    let addr = proxy.local_addrs()[0];
    let (mut first, mut second) = (connect(addr, "/").await, connect(addr, "/").await);
    let (n1, n2) = (whoami(&mut first).await, whoami(&mut second).await);
    assert_ne!(n1, n2, "least_conn spreads two tunnels over two backends");
    let (mut on_a, mut on_b) = if n1 == "a" {
        (first, second)
    } else {
        (second, first)
    };

    let reply = admin.post(&control_path(&a, "kill")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"outcome": "closing", "tunnels": 1})
    );
    let close = expect_close(&mut on_a).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1012, "service restart")
    );
    echo(&mut on_b, "still here").await;
    let listed = admin.get_json("/api/backends").await;
    assert_eq!(backend_of(&listed["backends"], &a)["admin"], "disabled");

    let reply = admin
        .post(&format!(
            "{}?code=4001&reason=moving+on",
            control_path(&b, "kill")
        ))
        .await;
    assert_eq!(reply.json()["tunnels"], 1);
    let close = expect_close(&mut on_b).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4001, "moving on")
    );

    // A bad code is refused before anything happens.
    admin
        .post(&format!("{}?code=1006", control_path(&a, "kill")))
        .await
        .error(400);
    let reply = admin.post(&control_path(&a, "enable")).await;
    assert_eq!(reply.json()["outcome"], "done");
    let mut ws = connect(addr, "/").await;
    assert_eq!(whoami(&mut ws).await, "a");
    hang_up(ws).await;
}

#[tokio::test]
async fn close_tunnel_by_id_then_it_is_gone() {
    let a = Backend::start("a").await;
    let (proxy, admin) = setup(&[&a], None).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let tunnels = admin.get_json("/api/tunnels").await;
    let id = tunnel_of(&tunnels["tunnels"], &ws)["id"].as_u64().unwrap();

    let reply = admin.post(&format!("/api/tunnels/{id}/close")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        serde_json::json!({"outcome": "closing", "tunnels": 1})
    );
    let close = expect_close(&mut ws).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1012, "closed by operator")
    );
    wait_event(
        &mut events,
        |e| matches!(e, Event::TunnelClosed { id: i, .. } if *i == id),
    )
    .await;

    admin
        .post(&format!("/api/tunnels/{id}/close"))
        .await
        .error(404);
    admin.get(&format!("/api/tunnels/{id}")).await.error(404);
}

#[tokio::test]
async fn shutdown_is_accepted_and_closes_tunnels_with_1001() {
    let a = Backend::start("a").await;
    let (proxy, admin) = setup(&[&a], None).await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let reply = admin.post("/api/shutdown").await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()["outcome"], "shutting_down");
    tokio::time::timeout(WAIT, proxy.stopping())
        .await
        .expect("the proxy begins its shutdown");
    assert_eq!(u16::from(expect_close(&mut ws).await.code), 1001);
}

// ---------------------------------------------------------------------------------
// Token

#[tokio::test]
async fn token_is_required_when_set() {
    let a = Backend::start("a").await;
    let (_proxy, admin) = setup(&[&a], Some("s3cret")).await;
    for path in ["/api/state", "/metrics", "/api/backends"] {
        let reply = request(admin.addr, Method::GET, path, None).await;
        assert!(reply.error(401).contains("Bearer"), "{path}");
        assert_eq!(
            reply.headers["www-authenticate"],
            r#"Bearer realm="tunnelscope""#
        );
        request(admin.addr, Method::GET, path, Some("wrong"))
            .await
            .error(401);
        let ok = request(admin.addr, Method::GET, path, Some("s3cret")).await;
        assert_eq!(ok.status, 200, "{path}: {}", ok.body);
    }
    // Control too: refused without the token, before the core hears of it.
    let drain = control_path(&a, "drain");
    request(admin.addr, Method::POST, &drain, None)
        .await
        .error(401);
    let listed = admin.get_json("/api/backends").await;
    assert_eq!(backend_of(&listed["backends"], &a)["admin"], "active");

    // The event stream: refused without, served with.
    let url = format!("ws://{}/api/events", admin.addr);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let mut events = admin.events().await;
    assert_eq!(next_json(&mut events).await["type"], "snapshot");
}

// ---------------------------------------------------------------------------------
// Metrics

#[tokio::test]
async fn metrics_count_what_closed_tunnels_relayed() {
    const N: usize = 25;
    let a = Backend::start("a").await;
    let (proxy, admin) = setup(&[&a], None).await;
    let before = admin.metrics().await;
    assert_eq!(before.get("tunnelscope_tunnels_active"), 0.0);
    assert_eq!(before.types["tunnelscope_relayed_frames_total"], "counter");
    assert_eq!(before.types["tunnelscope_backend_up"], "gauge");

    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let payload = "x".repeat(100);
    for _ in 0..N {
        echo(&mut ws, &payload).await;
    }
    let live = admin.metrics().await;
    assert_eq!(live.get("tunnelscope_tunnels_active"), 1.0);
    assert_eq!(
        live.backend("tunnelscope_backend_tunnels_active", a.addr),
        1.0
    );
    hang_up(ws).await;
    wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;

    // Counted by the proxy itself: exact as soon as the tunnel has closed.
    let after = admin.metrics().await;
    assert_eq!(after.get("tunnelscope_tunnels_active"), 0.0);
    assert_eq!(after.get("tunnelscope_tunnels_total"), 1.0);
    for dir in ["client_to_backend", "backend_to_client"] {
        // N echoes plus the closing handshake.
        assert!(after.relayed("frames", dir) >= N as f64, "{dir}");
        assert!(after.relayed("messages", dir) >= N as f64, "{dir}");
        assert!(after.relayed("bytes", dir) >= (N * 100) as f64, "{dir}");
    }
    assert_eq!(
        after.backend("tunnelscope_backend_tunnels_total", a.addr),
        1.0
    );
    assert_eq!(
        after.backend("tunnelscope_backend_tunnels_active", a.addr),
        0.0
    );
    assert_eq!(
        after.backend("tunnelscope_backend_failures_total", a.addr),
        0.0
    );
    assert_eq!(after.backend("tunnelscope_backend_up", a.addr), 1.0);
    for (state, want) in [
        ("active", 1.0),
        ("draining", 0.0),
        ("drained", 0.0),
        ("disabled", 0.0),
    ] {
        let series = format!(
            "tunnelscope_backend_admin_state{{pool=\"app\",addr=\"{}\",state=\"{state}\"}}",
            a.addr
        );
        assert_eq!(after.get(&series), want, "{series}");
    }
    assert_eq!(after.get("tunnelscope_admin_events_lagged_total"), 0.0);

    // State totals agree with the metrics.
    let totals = admin.get_json("/api/state").await["totals"].clone();
    assert!(
        totals["backend_to_client"]["frames"].as_f64().unwrap()
            >= after.relayed("frames", "backend_to_client")
    );
}

/// Traffic counters come from the proxy, not from the lossy event bus: with a bus of
/// 4 events and a subscriber that never reads, `/metrics` and `/api/state` still count
/// every frame, message and byte of every tunnel, closed or live.
#[tokio::test]
async fn metrics_stay_exact_while_a_subscriber_lags() {
    const TUNNELS: u64 = 20;
    const ECHOES: u64 = 5;
    let a = Backend::start("a").await;
    let config = format!(
        "[inspect]\nevent_capacity = 4\n{}",
        simple_config(&[&a], "")
    );
    let proxy = proxy(&config).await;
    let admin = Admin::start(&proxy, None).await;
    let mut lagging = proxy.subscribe();
    let payload = "x".repeat(100);
    for _ in 0..TUNNELS {
        let mut ws = connect(proxy.local_addrs()[0], "/").await;
        for _ in 0..ECHOES {
            echo(&mut ws, &payload).await;
        }
        hang_up(ws).await;
    }
    assert!(
        matches!(
            lagging.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
        ),
        "the subscriber fell behind"
    );
    let m = admin.metrics().await;
    assert_eq!(m.get("tunnelscope_tunnels_total"), TUNNELS as f64);
    // Each way: the echoes, then one Close frame (empty: close(None) and its echo).
    for (dir, frame_overhead, close_bytes) in
        [("client_to_backend", 6, 6), ("backend_to_client", 2, 2)]
    {
        assert_eq!(
            m.relayed("frames", dir),
            (TUNNELS * (ECHOES + 1)) as f64,
            "{dir}"
        );
        assert_eq!(
            m.relayed("messages", dir),
            (TUNNELS * ECHOES) as f64,
            "{dir}"
        );
        let bytes = TUNNELS * (ECHOES * (100 + frame_overhead) + close_bytes);
        assert_eq!(m.relayed("bytes", dir), bytes as f64, "{dir}");
    }
    let totals = admin.get_json("/api/state").await["totals"].clone();
    assert_eq!(
        totals["backend_to_client"]["frames"].as_f64(),
        Some(m.relayed("frames", "backend_to_client"))
    );
}

// ---------------------------------------------------------------------------------
// Event stream

#[tokio::test]
async fn event_stream_starts_with_a_snapshot_then_follows_a_new_tunnel() {
    let a = Backend::start("a").await;
    let (proxy, admin) = setup(&[&a], None).await;
    let mut events = admin.events().await;
    let snapshot = next_json(&mut events).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["backends"][0]["addr"], a.addr.to_string());
    assert_eq!(snapshot["tunnels"], serde_json::json!([]));

    let mut ws = connect(proxy.local_addrs()[0], "/live").await;
    let opened = next_of(&mut events, "tunnel_opened", |v| v["path"] == "/live").await;
    let id = opened["id"].as_u64().unwrap();
    assert_eq!(opened["client"], local_addr(&ws).to_string());
    let chosen = next_of(&mut events, "backend_chosen", |v| v["id"] == id).await;
    assert_eq!(chosen["backend"], format!("app/{}", a.addr));
    echo(&mut ws, "ping me").await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let closed = next_of(&mut events, "tunnel_closed", |v| v["id"] == id).await;
    assert_eq!(
        (&closed["side"], &closed["code"], &closed["reason"]),
        (
            &Value::from("client"),
            &Value::from(1000),
            &Value::from("bye")
        )
    );
    assert!(closed["client_to_backend"]["messages"].as_u64().unwrap() >= 1);
    assert!(closed["duration_seconds"].as_f64().unwrap() >= 0.0);
}

/// A stream that falls behind the bus is told how many events it missed and gets a
/// fresh snapshot; the proxy never waits for it. The bus here is a bare channel of
/// capacity 2 and the test runs on one thread, so five events sent without yielding
/// make every receiver lag by exactly three.
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_event_stream_is_told_what_it_missed_and_resynced() {
    let (bus, _) = tokio::sync::broadcast::channel::<Event>(2);
    let (control, _commands) = tokio::sync::mpsc::channel(1);
    let subscriber = bus.clone();
    let api = Api::new(
        tunnelscope::event::Snapshot::default,
        tunnelscope::event::Counters::default,
        move || subscriber.subscribe(),
        tunnelscope::control::ControlHandle::new(control),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let running = tunnelscope::admin::spawn(listener, api);
    let mut events = Admin::at(addr).events().await;
    assert_eq!(next_json(&mut events).await["type"], "snapshot");

    for n in 0..5 {
        let sent = bus.send(Event::HttpRequest {
            client: "127.0.0.1:1".parse().unwrap(),
            method: "GET".into(),
            path: format!("/{n}"),
            status: 200,
            backend: None,
            duration: Duration::from_millis(n),
        });
        assert!(sent.is_ok());
    }
    assert_eq!(
        next_json(&mut events).await,
        serde_json::json!({"type": "lagged", "missed": 3})
    );
    assert_eq!(next_json(&mut events).await["type"], "snapshot");
    for path in ["/3", "/4"] {
        let v = next_json(&mut events).await;
        assert_eq!(
            (&v["type"], &v["path"]),
            (&Value::from("http_request"), &Value::from(path))
        );
    }
    let metrics = Admin::at(addr).metrics().await;
    assert_eq!(metrics.get("tunnelscope_admin_events_lagged_total"), 3.0);

    // Stopping the admin API ends the stream with 1001 going away.
    running.stop().await;
    assert_eq!(u16::from(expect_close(&mut events).await.code), 1001);
}

// ---------------------------------------------------------------------------------
// Bad input

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let a = Backend::start("a").await;
    let (_proxy, admin) = setup(&[&a], None).await;
    let msg = admin
        .post("/api/backends/app/10.9.9.9:1/drain")
        .await
        .error(404);
    assert!(msg.contains("app/10.9.9.9:1"), "{msg}");
    admin.post("/api/backends/nopool/x:1/kill").await.error(404);
    let msg = admin.post(&control_path(&a, "explode")).await.error(404);
    assert!(msg.contains("drain"), "{msg}");

    let reply = admin.get(&control_path(&a, "drain")).await;
    reply.error(405);
    assert_eq!(reply.headers["allow"], "POST");
    let reply = admin.call(Method::DELETE, "/api/state").await;
    reply.error(405);
    assert_eq!(reply.headers["allow"], "GET");
    admin.get("/api/shutdown").await.error(405);

    admin.get("/nope").await.error(404);
    admin.get("/api/tunnels/abc").await.error(400);
    admin.post("/api/tunnels/1x/close").await.error(400);
    admin.get("/api/tunnels/424242").await.error(404);
    admin.post("/api/tunnels/424242/close").await.error(404);
    admin
        .post("/api/tunnels/1/close?colour=red")
        .await
        .error(400);
    admin.get("/api/events").await.error(426);

    // Still serving after all that.
    assert_eq!(admin.get("/api/state").await.status, 200);
}

// ---------------------------------------------------------------------------------
// The real binary

#[tokio::test]
async fn the_binary_serves_the_admin_api_from_its_config_and_stops_on_request() {
    let a = Backend::start("a").await;
    let (mut proc, admin_addr, proxy_addr, _dir) =
        spawn_binary(a.addr, "", "token = \"t0ken\"").await;

    let mut ws = connect(proxy_addr, "/").await;
    assert_eq!(whoami(&mut ws).await, "a");
    request(admin_addr, Method::GET, "/api/state", None)
        .await
        .error(401);
    let state = request(admin_addr, Method::GET, "/api/state", Some("t0ken")).await;
    assert_eq!(state.status, 200, "{}", state.body);
    let state = state.json();
    assert_eq!(state["backends"][0]["addr"], a.addr.to_string());
    assert_eq!(state["tunnels"][0]["client"], local_addr(&ws).to_string());

    let reply = request(admin_addr, Method::POST, "/api/shutdown", Some("t0ken")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(u16::from(expect_close(&mut ws).await.code), 1001);
    let status = proc.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}\n{}", proc.seen.join("\n"));
}

/// `POST /api/reload` re-reads the config file: 200 with what changed, or 400 with
/// the file's error and nothing changed.
#[tokio::test]
async fn reload_applies_the_file_or_answers_400_with_its_error() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("tunnelscope.toml");
    std::fs::write(&path, simple_config(&[&a], "")).unwrap();
    let config = tunnelscope::config::Config::load(&path).unwrap();
    let proxy = tunnelscope::proxy::start(config).await.unwrap();
    let admin = Admin::start(&proxy, None).await;

    std::fs::write(&path, simple_config(&[&a, &b], "")).unwrap();
    // A dry run says what would change and changes nothing.
    let reply = admin.post("/api/reload?dry_run=true").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["outcome"], "would_reload");
    assert_eq!(
        v["changes"]["backends_added"],
        serde_json::json!([format!("app/{}", b.addr)])
    );
    let listed = admin.get_json("/api/backends").await["backends"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 1);

    let reply = admin.post("/api/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["outcome"], "reloaded");
    assert_eq!(
        v["changes"]["backends_added"],
        serde_json::json!([format!("app/{}", b.addr)])
    );
    let listed = admin.get_json("/api/backends").await["backends"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 2);

    std::fs::write(&path, "[[listener]]\nbind = 8080\n").unwrap();
    let why = admin.post("/api/reload").await.error(400);
    assert!(why.contains("tunnelscope.toml:2:"), "{why}");
    let listed = admin.get_json("/api/backends").await["backends"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 2, "the running config stays");
}
