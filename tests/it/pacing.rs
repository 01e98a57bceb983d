//! Paced closes that operators start: a drain with a deadline through the API, and a
//! rebalance that closes just enough tunnels on the busiest backends that their
//! reconnects even the spread. Both close with 1012 a few a second and publish their
//! progress with the backend's state.

use std::time::{Duration, Instant};

use crate::admin::client::Admin;
use crate::common::clients::{assert_paced, closes_in_order};
use crate::common::pools::{backend_id, backend_info, wait_backend};
use crate::common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{AdminState, PaceCause};

/// `POST /api/backends/P/A/drain?deadline=200ms&rate=10`: the tunnels run on until
/// the deadline, then close with 1012 one every 100 ms; meanwhile the API shows the
/// paced close (cause, rate, tunnels left), and nothing once it is over.
#[tokio::test]
async fn a_drain_with_a_deadline_from_the_api_closes_at_its_rate_and_shows_progress() {
    const N: usize = 4;
    let a = Backend::start("a").await;
    let proxy = proxy(&simple_config(&[&a], "")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut events = proxy.subscribe();
    let mut held = Vec::new();
    for _ in 0..N {
        let mut ws = connect(proxy.local_addrs()[0], "/").await;
        whoami(&mut ws).await;
        held.push(ws);
    }
    let path = format!("/api/backends/app/{}/drain?deadline=200ms&rate=10", a.addr);
    let asked = Instant::now();
    let reply = admin.post(&path).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let listed = admin.get_json("/api/backends").await;
    let closing = &listed["backends"][0]["closing"];
    assert_eq!(closing["cause"], "drain", "{listed}");
    assert_eq!(closing["rate"], 10);
    assert_eq!(closing["left"], N as u64);
    assert_eq!(closing["closed"], 0);

    let closes = closes_in_order(held).await;
    assert!(closes[0].0 - asked >= Duration::from_millis(200));
    // At 10/s, with some slack for timer granularity.
    assert_paced(
        &closes,
        (1012, "backend drained"),
        Duration::from_millis(80),
    );
    wait_backend(&mut events, a.addr, |b| b.closing.is_some()).await;
    let done = wait_backend(&mut events, a.addr, |b| b.closing.is_none()).await;
    assert_ne!(done.admin, AdminState::Active);
    let listed = admin.get_json("/api/backends").await;
    assert!(listed["backends"][0].get("closing").is_none(), "{listed}");
}

/// Bad drain parameters are refused before anything changes.
#[tokio::test]
async fn a_drain_with_a_bad_deadline_is_refused_and_changes_nothing() {
    let a = Backend::start("a").await;
    let proxy = proxy(&simple_config(&[&a], "")).await;
    let admin = Admin::start(&proxy, None).await;
    for query in ["deadline=soon", "rate=5", "deadline=1s&rate=0"] {
        let reply = admin
            .post(&format!("/api/backends/app/{}/drain?{query}", a.addr))
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
    }
    assert_eq!(backend_info(&proxy, a.addr).admin, AdminState::Active);
}

/// Six tunnels on `a`, none on `b` (it was drained while they opened): a rebalance
/// closes three of `a`'s, with 1012, and leaves the other three alone; the clients
/// that reconnect land on `b`, three and three.
#[tokio::test]
async fn rebalance_closes_just_enough_tunnels_that_reconnects_even_the_spread() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "close_rate = 20")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut events = proxy.subscribe();
    let listen = proxy.local_addrs()[0];
    assert_eq!(
        admin
            .post(&format!("/api/backends/app/{}/drain", b.addr))
            .await
            .status,
        200
    );
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut ws = connect(listen, "/").await;
        assert_eq!(whoami(&mut ws).await, "a");
        held.push(ws);
    }
    admin
        .post(&format!("/api/backends/app/{}/undrain", b.addr))
        .await;

    let reply = admin.post("/api/pools/app/rebalance").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let plan = reply.json();
    assert_eq!(plan["outcome"], "rebalancing");
    assert_eq!(plan["tunnels"], 3);
    assert_eq!(
        plan["backends"][backend_id(a.addr).to_string()],
        3,
        "{plan}"
    );

    let running = wait_backend(&mut events, a.addr, |b| b.closing.is_some()).await;
    assert_eq!(running.closing.unwrap().cause, PaceCause::Rebalance);
    wait_backend(&mut events, a.addr, |b| b.closing.is_none()).await;
    // Each client speaks once: the three closed ones get their Close, the others
    // an echo.
    let (mut closed, mut open) = (0, Vec::new());
    for mut ws in held {
        ws.send(Message::text("still there?")).await.unwrap();
        match next_data(&mut ws).await {
            Message::Close(Some(c)) => {
                assert_eq!(
                    (u16::from(c.code), c.reason.as_str()),
                    (1012, "rebalancing")
                );
                closed += 1;
            }
            Message::Text(t) => {
                assert_eq!(t.as_str(), "still there?");
                open.push(ws);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((closed, open.len()), (3, 3));
    wait_backend(&mut events, a.addr, |b| b.active_tunnels == 3).await;
    for _ in 0..3 {
        let mut ws = connect(listen, "/").await;
        assert_eq!(
            whoami(&mut ws).await,
            "b",
            "reconnects go where there is room"
        );
        open.push(ws);
    }
    assert_eq!(backend_info(&proxy, a.addr).active_tunnels, 3);
    assert_eq!(backend_info(&proxy, b.addr).active_tunnels, 3);
}

/// A hash pool cannot be rebalanced (a reconnect would land on the same backend):
/// 409 with why; an unknown pool is a 404. Nothing is closed.
#[tokio::test]
async fn rebalance_refuses_hash_pools_and_unknown_pools() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "balance = \"ip_hash\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    whoami(&mut ws).await;
    let reply = admin.post("/api/pools/app/rebalance").await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert!(reply.body.contains("hash"), "{}", reply.body);
    let reply = admin.post("/api/pools/nope/rebalance").await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    ws.send(Message::text("alive")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("alive"));
}
