//! `/healthz` and `/readyz` on the admin listener, as a kubelet or a layer-4
//! balancer calls them: without the token; ready only while some pool has a backend
//! that takes new tunnels and the proxy is not shutting down, with the reason when
//! not.

use http::Method;

use crate::admin::client::{request, Admin};
use crate::common::*;

fn drain_path(b: &Backend, action: &str) -> String {
    format!("/api/backends/app/{}/{action}", b.addr)
}

#[tokio::test]
async fn probes_answer_without_the_token_and_say_why_the_proxy_is_not_ready() {
    let a = Backend::start("a").await;
    let proxy = proxy(&simple_config(&[&a], "")).await;
    let admin = Admin::start(&proxy, Some("s3cret")).await;

    let live = request(admin.addr, Method::GET, "/healthz", None).await;
    assert_eq!(live.status, 200, "{}", live.body);
    assert_eq!(live.json()["status"], "ok");
    let ready = request(admin.addr, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(
        ready.json(),
        serde_json::json!({"ready": true, "eligible": 1})
    );
    // The exemption is the probes' alone, and for GET only.
    request(admin.addr, Method::GET, "/api/state", None)
        .await
        .error(401);
    request(admin.addr, Method::POST, "/readyz", None)
        .await
        .error(401);
    request(admin.addr, Method::POST, "/readyz", Some("s3cret"))
        .await
        .error(405);

    // Its only backend drained: no pool can take a new tunnel.
    assert_eq!(admin.post(&drain_path(&a, "drain")).await.status, 200);
    let not = request(admin.addr, Method::GET, "/readyz", None).await;
    assert_eq!(not.status, 503, "{}", not.body);
    let reason = not.json()["reason"].as_str().unwrap().to_string();
    // With no tunnel on it, draining is at once drained.
    assert!(reason.contains("pool app: 1 drain"), "{reason}");
    assert_eq!(admin.post(&drain_path(&a, "undrain")).await.status, 200);
    let back = request(admin.addr, Method::GET, "/readyz", None).await;
    assert_eq!(back.status, 200, "{}", back.body);

    // Shutting down (a tunnel still open keeps the proxy in its grace): not ready,
    // while liveness still answers.
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "a");
    proxy.shutdown();
    let down = request(admin.addr, Method::GET, "/readyz", None).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.json()["reason"], "shutting down");
    let live = request(admin.addr, Method::GET, "/healthz", None).await;
    assert_eq!(live.status, 200);
}

#[tokio::test]
async fn a_backend_marked_down_by_its_failures_makes_the_proxy_unready() {
    // Nothing listens there: the first tunnel's connect fails, and with
    // max_fails = 1 the backend is down.
    let dead = crate::common::pools::dead_addr().await;
    let config = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\nmax_fails = 1\n\
         fail_timeout = \"1h\"\n[[pool.app.server]]\naddr = \"{dead}\"\n"
    );
    let proxy = proxy(&config).await;
    let admin = Admin::start(&proxy, None).await;
    assert_eq!(admin.get("/readyz").await.status, 200);
    let refused = crate::common::clients::try_connect(proxy.local_addrs()[0], "/", &[]).await;
    assert!(matches!(refused, Err(502)), "the backend refused");
    let not = admin.get("/readyz").await;
    assert_eq!(not.status, 503, "{}", not.body);
    assert_eq!(
        not.json()["reason"],
        "no pool has an eligible backend (pool app: 1 down)"
    );
}
