//! The admin API is safe to leave on loopback without a token (issue 11): a web page
//! the operator visits cannot drive it (cross-origin requests, a browser's
//! `Sec-Fetch-Site`, DNS rebinding's foreign `Host` all get 403 and change nothing),
//! while curl-style requests keep working; credentials in handshake headers are
//! served redacted unless `reveal_secrets` is set.

use std::net::SocketAddr;

use crate::admin::client::*;
use crate::common::clients::{connect_with, expect_close, local_addr};
use crate::common::http_fixtures::raw_request;
use crate::common::*;
use futures_util::SinkExt;
use http::Method;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Sends a raw request with exactly these header lines; returns (status, body).
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let (resp, _) = raw_request(addr, text.as_bytes()).await;
    (resp.status, resp.body_text())
}

/// (method, path, header lines)
type Hostile<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

async fn echo(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_data(ws).await, Message::text(text));
}

#[tokio::test]
async fn a_web_page_cannot_drive_the_admin_api_but_curl_still_can() {
    let a = Backend::start("a").await;
    // The real binary with `[admin]` on loopback and no token: what a developer runs.
    let (mut proc, admin, listen, _dir) =
        spawn_binary(a.addr, "", "hosts = [\"proxy.internal\"]").await;
    let mut ws = connect(listen, "/held").await;
    echo(&mut ws, "before").await;
    let host = admin.to_string();
    let drain = format!("/api/backends/app/{}/drain", a.addr);
    let state = request(admin, Method::GET, "/api/state", None).await.json();
    let id = state["tunnels"][0]["id"].as_u64().unwrap();
    let tunnel = format!("/api/tunnels/{id}");
    // The inspector's endpoints: talking into a tunnel, holding it, reading it.
    let send = format!("/api/tunnels/{id}/send?to=client");
    let hold = format!("/api/tunnels/{id}/hold?from=client");
    let recording = format!("/api/tunnels/{id}/recording");

    // What a page can make a browser send: a form POST (Origin set), a fetch with
    // Sec-Fetch-Site, and a page on a rebound name (its own Host, no Origin needed
    // for a same-origin GET).
    let hostile: Vec<Hostile> = vec![
        (
            "POST",
            "/api/shutdown",
            vec![
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        ),
        (
            "POST",
            &drain,
            vec![
                ("Host", &host),
                ("Origin", "null"),
                ("Content-Type", "text/plain"),
            ],
        ),
        (
            "GET",
            &tunnel,
            vec![("Host", &host), ("Origin", "https://evil.example")],
        ),
        (
            "POST",
            &drain,
            vec![("Host", &host), ("Sec-Fetch-Site", "cross-site")],
        ),
        ("GET", &tunnel, vec![("Host", "evil.example")]),
        (
            "POST",
            &send,
            vec![
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
        ),
        (
            "POST",
            &hold,
            vec![("Host", &host), ("Sec-Fetch-Site", "cross-site")],
        ),
        ("GET", &recording, vec![("Host", "rebound.evil.example")]),
        (
            "GET",
            "/api/search?q=order",
            vec![("Host", &host), ("Origin", "https://evil.example")],
        ),
        (
            "POST",
            "/api/shutdown",
            vec![("Host", "rebound.evil.example:80")],
        ),
    ];
    for (method, path, headers) in &hostile {
        let (status, body) = raw(admin, method, path, headers).await;
        assert_eq!(status, 403, "{method} {path} {headers:?}: {body}");
        assert!(!body.contains("Cookie"), "{body}");
    }

    // Nothing changed: the proxy runs, the backend is active, the tunnel relays.
    assert!(proc.running(), "a web page stopped the proxy");
    let state = request(admin, Method::GET, "/api/state", None).await.json();
    assert_eq!(state["backends"][0]["admin"], "active", "{state}");
    assert_eq!(
        state["tunnels"][0]["held"],
        serde_json::json!([]),
        "{state}"
    );
    echo(&mut ws, "after").await;

    // curl (no Origin, the address as Host), the API's own page, and a configured
    // name keep working.
    let (status, body) = raw(admin, "GET", &tunnel, &[("Host", &host)]).await;
    assert_eq!(status, 200, "{body}");
    let own = format!("http://{host}");
    let (status, body) = raw(
        admin,
        "GET",
        "/api/state",
        &[("Host", &host), ("Origin", &own)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw(
        admin,
        "GET",
        "/api/state",
        &[("Host", "proxy.internal:9090")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply = request(admin, Method::POST, &drain, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = request(admin, Method::POST, "/api/shutdown", None).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(u16::from(expect_close(&mut ws).await.code), 1001);
    let status = proc.exit_within(WAIT).await;
    assert!(status.success(), "{status:?}");
}

/// The handshake's header list `which` of a tunnel detail, as (name, value) pairs.
fn header(detail: &Value, which: &str, name: &str) -> Vec<String> {
    detail["handshake"][which]
        .as_array()
        .unwrap_or_else(|| panic!("no {which} in {detail}"))
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn credentials_are_redacted_by_default_and_served_with_reveal_secrets() {
    let a = Backend::start("a").await;
    for (extra, reveal) in [
        ("[inspect]\nredact = [\"x-api-key\"]", false),
        ("[inspect]\nreveal_secrets = true", true),
    ] {
        let (mut proc, admin, listen, _dir) = spawn_binary(a.addr, extra, "").await;
        let api = Admin::at(admin);
        let mut events = api.events().await;
        let ws = connect_with(
            listen,
            "/secret",
            &[
                ("Cookie", "session=s3cr3t-cookie"),
                ("Authorization", "Bearer s3cr3t-token"),
                ("X-Api-Key", "s3cr3t-key"),
                ("X-Visible", "plain"),
            ],
        )
        .await;
        let state = api.get_json("/api/tunnels").await;
        let id = state["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["client"] == local_addr(&ws).to_string())
            .unwrap()["id"]
            .as_u64()
            .unwrap();
        let detail = api.get_json(&format!("/api/tunnels/{id}")).await;
        let handshake = next_of(&mut events, "handshake", |v| v["id"] == id).await;
        for doc in [&detail, &handshake] {
            let cookie = header(doc, "request_in", "cookie");
            let auth = header(doc, "request_in", "authorization");
            let key = header(doc, "request_in", "x-api-key");
            let set_cookie = header(doc, "response", "set-cookie");
            assert_eq!(header(doc, "request_in", "x-visible"), ["plain"]);
            if reveal {
                assert_eq!(cookie, ["session=s3cr3t-cookie"]);
                assert_eq!(auth, ["Bearer s3cr3t-token"]);
                assert_eq!(key, ["s3cr3t-key"]);
            } else {
                assert_eq!(cookie, ["«redacted, 21 bytes»"]);
                assert_eq!(auth, ["«redacted, 19 bytes»"]);
                assert_eq!(key, ["«redacted, 10 bytes»"]);
                assert_eq!(set_cookie, ["«redacted, 20 bytes»"]);
                assert!(!doc.to_string().contains("s3cr3t"), "{doc}");
            }
        }
        drop(ws);
        proc.signal("TERM");
        assert!(proc.exit_within(WAIT).await.success());
    }
}
