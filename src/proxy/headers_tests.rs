//! Unit tests of `headers.rs`.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A HeaderMap built line by line, so repeated names stay repeated.
fn hm(lines: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in lines {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn ws_request() -> HeaderMap {
    hm(&[
        ("host", "example.com"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", KEY),
        ("sec-websocket-version", "13"),
    ])
}

fn ctx(trusted: bool, tls: bool) -> ForwardContext<'static> {
    ForwardContext {
        client_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        trusted,
        tls,
        backend_authority: "10.0.0.5:8080",
    }
}

fn forward(client: &HeaderMap, trusted: bool) -> HeaderMap {
    backend_request_headers(client, &ctx(trusted, false), &HostHeader::Keep, false)
}

// --- upgrade detection -------------------------------------------------

#[test]
fn upgrade_token_found_in_any_position_and_case() {
    for conn in [
        "upgrade",
        "UPGRADE",
        "keep-alive, Upgrade",
        "Upgrade ,keep-alive",
        "a,,upgrade",
    ] {
        let h = hm(&[("upgrade", "WebSocket"), ("connection", conn)]);
        assert!(is_websocket_upgrade(&h), "Connection: {conn}");
    }
}

#[test]
fn upgrade_token_found_across_two_connection_lines() {
    let h = hm(&[
        ("connection", "keep-alive"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
    ]);
    assert!(is_websocket_upgrade(&h));
}

#[test]
fn websocket_found_in_upgrade_list() {
    let h = hm(&[("upgrade", "h2c, websocket"), ("connection", "upgrade")]);
    assert!(is_websocket_upgrade(&h));
}

#[test]
fn missing_upgrade_websocket_is_not_a_websocket_upgrade() {
    assert!(!is_websocket_upgrade(&hm(&[("connection", "upgrade")])));
    assert!(!is_websocket_upgrade(&hm(&[
        ("upgrade", "h2c"),
        ("connection", "upgrade")
    ])));
    // "websocket" must be a whole token, not a substring.
    assert!(!is_websocket_upgrade(&hm(&[
        ("upgrade", "websockets"),
        ("connection", "upgrade")
    ])));
}

#[test]
fn upgrade_without_connection_token_is_not_a_websocket_upgrade() {
    assert!(!is_websocket_upgrade(&hm(&[("upgrade", "websocket")])));
    assert!(!is_websocket_upgrade(&hm(&[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, upgraded")
    ])));
}

#[test]
fn wants_upgrade_sees_h2c_and_half_upgrades() {
    assert!(wants_upgrade(&hm(&[
        ("upgrade", "h2c"),
        ("connection", "Upgrade, HTTP2-Settings")
    ])));
    assert!(wants_upgrade(&hm(&[("upgrade", "h2c")])));
    assert!(wants_upgrade(&hm(&[("connection", "upgrade")])));
    assert!(!wants_upgrade(&hm(&[("connection", "keep-alive")])));
    assert!(!wants_upgrade(&HeaderMap::new()));
}

// --- handshake validation ---------------------------------------------

fn check(h: &HeaderMap) -> Result<(), Rejection> {
    check_websocket_request(&Method::GET, Version::HTTP_11, h)
}

#[test]
fn valid_handshake_passes() {
    assert_eq!(check(&ws_request()), Ok(()));
}

#[test]
fn handshake_without_key_is_400() {
    let mut h = ws_request();
    h.remove("sec-websocket-key");
    assert_eq!(check(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
}

#[test]
fn handshake_with_short_or_long_key_is_400() {
    for key in [
        "dGhlIHNhbXBsZQ==",
        "dGhlIHNhbXBsZSBub25jZSE=",
        "",
        "dGhlIHNhbXBsZSBub25jZQ",
    ] {
        let mut h = ws_request();
        h.insert("sec-websocket-key", HeaderValue::from_str(key).unwrap());
        assert_eq!(
            check(&h).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{key:?}"
        );
    }
}

#[test]
fn handshake_with_non_base64_key_is_400() {
    // Right length, wrong alphabet / padding / non-zero trailing bits.
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ!=",
        "dGhlIHNhbXBsZSBub25j-_==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub25jZR==",
    ] {
        let mut h = ws_request();
        h.insert("sec-websocket-key", HeaderValue::from_str(key).unwrap());
        assert_eq!(
            check(&h).unwrap_err().status,
            StatusCode::BAD_REQUEST,
            "{key:?}"
        );
    }
    let mut h = ws_request();
    h.insert(
        "sec-websocket-key",
        HeaderValue::from_bytes(b"dGhlIHNhbXBsZSBub25j\xff\xfe==").unwrap(),
    );
    assert_eq!(check(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
}

#[test]
fn handshake_with_two_keys_is_400() {
    let mut h = ws_request();
    h.append("sec-websocket-key", HeaderValue::from_static(KEY));
    let r = check(&h).unwrap_err();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.reason.contains("repeated"));
}

#[test]
fn handshake_with_version_8_is_426() {
    let mut h = ws_request();
    h.insert("sec-websocket-version", HeaderValue::from_static("8"));
    assert_eq!(check(&h).unwrap_err().status, StatusCode::UPGRADE_REQUIRED);
}

#[test]
fn handshake_with_missing_or_repeated_version_is_400() {
    let mut h = ws_request();
    h.remove("sec-websocket-version");
    assert_eq!(check(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
    let mut h = ws_request();
    h.append("sec-websocket-version", HeaderValue::from_static("13"));
    assert_eq!(check(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
}

#[test]
fn handshake_with_post_is_400() {
    let r = check_websocket_request(&Method::POST, Version::HTTP_11, &ws_request());
    assert_eq!(r.unwrap_err().status, StatusCode::BAD_REQUEST);
}

#[test]
fn handshake_over_http_1_0_or_2_is_400() {
    for v in [Version::HTTP_10, Version::HTTP_2] {
        let r = check_websocket_request(&Method::GET, v, &ws_request());
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_REQUEST, "{v:?}");
    }
}

#[test]
fn handshake_without_upgrade_headers_is_400() {
    let mut h = ws_request();
    h.remove("upgrade");
    assert_eq!(check(&h).unwrap_err().status, StatusCode::BAD_REQUEST);
}

#[test]
fn accept_matches_rfc6455_example() {
    let key = HeaderValue::from_static(KEY);
    let good = HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let bad = HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOp=");
    assert!(accept_matches(&key, Some(&good)));
    assert!(!accept_matches(&key, Some(&bad)));
    assert!(!accept_matches(&key, None));
    let other = HeaderValue::from_static("AQIDBAUGBwgJCgsMDQ4PEA==");
    assert!(!accept_matches(&other, Some(&good)));
}

// --- request headers to the backend -------------------------------------

#[test]
fn headers_named_in_connection_are_stripped() {
    let h = hm(&[
        ("connection", "upgrade, x-secret"),
        ("connection", "X-Other"),
        ("x-secret", "1"),
        ("x-other", "2"),
        ("x-kept", "3"),
    ]);
    let out = forward(&h, false);
    assert!(!out.contains_key("x-secret"));
    assert!(!out.contains_key("x-other"));
    assert_eq!(values(&out, "x-kept"), ["3"]);
}

#[test]
fn every_hop_by_hop_header_is_stripped_from_requests() {
    // Spelled out rather than taken from HOP_BY_HOP, so shrinking that
    // list makes this test fail.
    let hop = [
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    ];
    let mut lines: Vec<(&str, &str)> = hop.iter().map(|n| (*n, "x")).collect();
    lines.push(("connection", "close"));
    lines.push(("x-end-to-end", "y"));
    let out = forward(&hm(&lines), false);
    for name in hop {
        assert!(!out.contains_key(name), "{name} leaked");
    }
    assert_eq!(values(&out, "connection"), ["keep-alive"]);
    assert_eq!(values(&out, "x-end-to-end"), ["y"]);
}

#[test]
fn content_length_dropped_next_to_transfer_encoding() {
    let h = hm(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
    let out = forward(&h, false);
    assert!(!out.contains_key("content-length"));
    assert!(!out.contains_key("transfer-encoding"));
    let out = forward(&hm(&[("content-length", "5")]), false);
    assert_eq!(values(&out, "content-length"), ["5"]);
}

#[test]
fn upgrade_request_gets_websocket_upgrade_headers() {
    let mut h = ws_request();
    h.append("connection", HeaderValue::from_static("keep-alive"));
    let out = backend_request_headers(&h, &ctx(false, false), &HostHeader::Keep, true);
    assert_eq!(values(&out, "upgrade"), ["websocket"]);
    assert_eq!(values(&out, "connection"), ["upgrade"]);
    assert!(is_websocket_upgrade(&out));
}

#[test]
fn plain_request_gets_keep_alive_and_loses_upgrade() {
    let out = forward(&ws_request(), false);
    assert_eq!(values(&out, "connection"), ["keep-alive"]);
    assert!(!out.contains_key("upgrade"));
}

#[test]
fn websocket_and_end_to_end_headers_pass_with_duplicates_in_order() {
    let h = hm(&[
        ("host", "example.com"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", KEY),
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat"),
        ("sec-websocket-protocol", "superchat"),
        (
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        ),
        ("origin", "https://example.com"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("authorization", "Bearer t"),
        ("x-custom", "one"),
        ("x-custom", "two"),
    ]);
    let out = backend_request_headers(&h, &ctx(false, true), &HostHeader::Keep, true);
    assert_eq!(values(&out, "sec-websocket-key"), [KEY]);
    assert_eq!(values(&out, "sec-websocket-version"), ["13"]);
    assert_eq!(
        values(&out, "sec-websocket-protocol"),
        ["chat", "superchat"]
    );
    assert_eq!(
        values(&out, "sec-websocket-extensions"),
        ["permessage-deflate; client_max_window_bits"]
    );
    assert_eq!(values(&out, "origin"), ["https://example.com"]);
    assert_eq!(values(&out, "cookie"), ["a=1", "b=2"]);
    assert_eq!(values(&out, "authorization"), ["Bearer t"]);
    assert_eq!(values(&out, "x-custom"), ["one", "two"]);
    // Relative order of pass-through names is the client's.
    let names: Vec<String> = to_list(&out).into_iter().map(|(n, _)| n).collect();
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("sec-websocket-key") < pos("origin"));
    assert!(pos("origin") < pos("cookie"));
    assert!(pos("cookie") < pos("x-custom"));
}

#[test]
fn xff_appended_for_trusted_peer() {
    let h = hm(&[
        ("x-forwarded-for", "198.51.100.1"),
        ("x-forwarded-for", "10.1.1.1 "),
    ]);
    let out = forward(&h, true);
    assert_eq!(
        values(&out, "x-forwarded-for"),
        ["198.51.100.1, 10.1.1.1, 203.0.113.7"]
    );
}

#[test]
fn xff_replaced_for_untrusted_peer() {
    let h = hm(&[("x-forwarded-for", "1.2.3.4")]);
    let out = forward(&h, false);
    assert_eq!(values(&out, "x-forwarded-for"), ["203.0.113.7"]);
    // Trusted but nothing to append to: just the client.
    let out = forward(&HeaderMap::new(), true);
    assert_eq!(values(&out, "x-forwarded-for"), ["203.0.113.7"]);
}

#[test]
fn xff_named_in_connection_counts_as_absent() {
    let h = hm(&[
        ("connection", "x-forwarded-for"),
        ("x-forwarded-for", "6.6.6.6"),
    ]);
    let out = forward(&h, true);
    assert_eq!(values(&out, "x-forwarded-for"), ["203.0.113.7"]);
}

#[test]
fn v4_mapped_client_ip_written_as_v4() {
    let mut c = ctx(false, false);
    c.client_ip = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
    let out = backend_request_headers(&HeaderMap::new(), &c, &HostHeader::Keep, false);
    assert_eq!(values(&out, "x-forwarded-for"), ["192.0.2.9"]);
    assert_eq!(values(&out, "x-real-ip"), ["192.0.2.9"]);
    c.client_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let out = backend_request_headers(&HeaderMap::new(), &c, &HostHeader::Keep, false);
    assert_eq!(values(&out, "x-forwarded-for"), ["2001:db8::1"]);
}

#[test]
fn proto_is_http_or_https_unless_trusted_peer_set_it() {
    let h = hm(&[("x-forwarded-proto", "https")]);
    let plain = backend_request_headers(&h, &ctx(false, false), &HostHeader::Keep, false);
    assert_eq!(values(&plain, "x-forwarded-proto"), ["http"]);
    let tls = backend_request_headers(
        &HeaderMap::new(),
        &ctx(false, true),
        &HostHeader::Keep,
        false,
    );
    assert_eq!(values(&tls, "x-forwarded-proto"), ["https"]);
    let kept = backend_request_headers(&h, &ctx(true, false), &HostHeader::Keep, false);
    assert_eq!(values(&kept, "x-forwarded-proto"), ["https"]);
    let absent = backend_request_headers(
        &HeaderMap::new(),
        &ctx(true, false),
        &HostHeader::Keep,
        false,
    );
    assert_eq!(values(&absent, "x-forwarded-proto"), ["http"]);
}

#[test]
fn forwarded_host_is_client_host_unless_trusted_peer_set_it() {
    let h = hm(&[
        ("host", "app.example"),
        ("x-forwarded-host", "spoof.example"),
    ]);
    assert_eq!(
        values(&forward(&h, false), "x-forwarded-host"),
        ["app.example"]
    );
    assert_eq!(
        values(&forward(&h, true), "x-forwarded-host"),
        ["spoof.example"]
    );
    let h = hm(&[("host", "app.example")]);
    assert_eq!(
        values(&forward(&h, true), "x-forwarded-host"),
        ["app.example"]
    );
}

#[test]
fn real_ip_is_client_unless_trusted_peer_set_it() {
    let h = hm(&[("x-real-ip", "1.1.1.1")]);
    assert_eq!(values(&forward(&h, false), "x-real-ip"), ["203.0.113.7"]);
    assert_eq!(values(&forward(&h, true), "x-real-ip"), ["1.1.1.1"]);
    let empty = hm(&[("x-real-ip", " ")]);
    assert_eq!(values(&forward(&empty, true), "x-real-ip"), ["203.0.113.7"]);
}

#[test]
fn forwarded_header_only_from_trusted_peer() {
    let h = hm(&[("forwarded", "for=1.2.3.4;proto=https")]);
    assert!(!forward(&h, false).contains_key("forwarded"));
    assert_eq!(
        values(&forward(&h, true), "forwarded"),
        ["for=1.2.3.4;proto=https"]
    );
}

#[test]
fn host_keep_backend_and_set() {
    let h = hm(&[("host", "app.example:443")]);
    let c = ctx(false, true);
    let keep = backend_request_headers(&h, &c, &HostHeader::Keep, false);
    assert_eq!(values(&keep, "host"), ["app.example:443"]);
    let backend = backend_request_headers(&h, &c, &HostHeader::Backend, false);
    assert_eq!(values(&backend, "host"), ["10.0.0.5:8080"]);
    assert_eq!(values(&backend, "x-forwarded-host"), ["app.example:443"]);
    let set = backend_request_headers(&h, &c, &HostHeader::Set("internal".into()), false);
    assert_eq!(values(&set, "host"), ["internal"]);
}

#[test]
fn host_is_single_even_when_client_sent_two() {
    let h = hm(&[("host", "a.example"), ("host", "b.example")]);
    assert_eq!(values(&forward(&h, false), "host"), ["a.example"]);
}

#[test]
fn host_cannot_be_erased_through_connection() {
    let h = hm(&[("connection", "host"), ("host", "app.example")]);
    assert_eq!(values(&forward(&h, false), "host"), ["app.example"]);
}

#[test]
fn invalid_set_host_falls_back_to_client_host() {
    let h = hm(&[("host", "app.example")]);
    let bad = HostHeader::Set("bad\nvalue".into());
    let out = backend_request_headers(&h, &ctx(false, false), &bad, false);
    assert_eq!(values(&out, "host"), ["app.example"]);
}

#[test]
fn host_keep_falls_back_to_request_authority() {
    let (mut parts, ()) = http::Request::get("http://abs.example:8080/chat")
        .body(())
        .unwrap()
        .into_parts();
    let out =
        backend_request_headers_from_parts(&parts, &ctx(false, false), &HostHeader::Keep, false);
    assert_eq!(values(&out, "host"), ["abs.example:8080"]);
    assert_eq!(values(&out, "x-forwarded-host"), ["abs.example:8080"]);
    // Without the parts there is nothing to fall back to.
    let out = backend_request_headers(&parts.headers, &ctx(false, false), &HostHeader::Keep, false);
    assert!(!out.contains_key("host"));
    // A Host header wins over the authority.
    parts
        .headers
        .insert("host", HeaderValue::from_static("h.example"));
    let out =
        backend_request_headers_from_parts(&parts, &ctx(false, false), &HostHeader::Keep, false);
    assert_eq!(values(&out, "host"), ["h.example"]);
}

#[test]
fn hostile_request_headers_do_not_panic() {
    let mut h = HeaderMap::new();
    let junk = HeaderValue::from_bytes(b"\xff\xfe, \x80upgrade").unwrap();
    for name in [
        "connection",
        "upgrade",
        "host",
        "x-forwarded-for",
        "cookie",
        "x-real-ip",
    ] {
        h.append(name, junk.clone());
        h.append(name, HeaderValue::from_static(""));
    }
    let long = vec!["x-a"; 50_000].join(", ");
    h.append("connection", HeaderValue::from_str(&long).unwrap());
    h.append("x-a", HeaderValue::from_static("gone"));
    for trusted in [false, true] {
        for upgrade in [false, true] {
            let out = backend_request_headers(&h, &ctx(trusted, false), &HostHeader::Keep, upgrade);
            assert!(!out.contains_key("x-a"));
            assert_eq!(out.get_all("host").iter().count(), 1);
        }
    }
    assert!(!is_websocket_upgrade(&h));
    assert!(check(&h).is_err());
    assert_eq!(to_list(&h)[0].1, "\u{fffd}\u{fffd}, \u{fffd}upgrade");
}

// --- response headers to the client -------------------------------------

fn backend_response() -> HeaderMap {
    hm(&[
        ("upgrade", "websocket"),
        ("connection", "Upgrade, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("trailer", "x-t"),
        ("proxy-authenticate", "Basic"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("sec-websocket-protocol", "chat"),
        ("sec-websocket-extensions", "permessage-deflate"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ])
}

fn assert_end_to_end_pass(out: &HeaderMap) {
    assert_eq!(
        values(out, "sec-websocket-accept"),
        ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
    );
    assert_eq!(values(out, "sec-websocket-protocol"), ["chat"]);
    assert_eq!(
        values(out, "sec-websocket-extensions"),
        ["permessage-deflate"]
    );
    assert_eq!(values(out, "set-cookie"), ["a=1", "b=2"]);
    for gone in [
        "x-hop",
        "keep-alive",
        "transfer-encoding",
        "trailer",
        "proxy-authenticate",
        "proxy-connection",
        "te",
    ] {
        assert!(!out.contains_key(gone), "{gone} leaked");
    }
}

#[test]
fn switching_protocols_keeps_upgrade_and_connection_only() {
    let out = client_response_headers(StatusCode::SWITCHING_PROTOCOLS, &backend_response());
    assert_eq!(values(&out, "upgrade"), ["websocket"]);
    assert_eq!(values(&out, "connection"), ["Upgrade, x-hop"]);
    assert_end_to_end_pass(&out);
}

#[test]
fn ok_response_loses_all_hop_by_hop() {
    let out = client_response_headers(StatusCode::OK, &backend_response());
    assert!(!out.contains_key("upgrade"));
    assert!(!out.contains_key("connection"));
    assert_end_to_end_pass(&out);
}

#[test]
fn response_content_length_dropped_only_next_to_transfer_encoding() {
    let h = hm(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
    assert!(!client_response_headers(StatusCode::OK, &h).contains_key("content-length"));
    let h = hm(&[("content-length", "3")]);
    assert_eq!(
        values(
            &client_response_headers(StatusCode::OK, &h),
            "content-length"
        ),
        ["3"]
    );
}

#[test]
fn negotiated_reports_protocol_extensions_and_deflate() {
    let h = hm(&[
        ("sec-websocket-protocol", "chat"),
        ("sec-websocket-extensions", "x-foo"),
        (
            "sec-websocket-extensions",
            "Permessage-Deflate ; server_no_context_takeover",
        ),
    ]);
    let (p, e, deflate) = negotiated(&h);
    assert_eq!(p.as_deref(), Some("chat"));
    assert_eq!(
        e.as_deref(),
        Some("x-foo, Permessage-Deflate ; server_no_context_takeover")
    );
    assert!(deflate);
    let (p, e, deflate) = negotiated(&hm(&[(
        "sec-websocket-extensions",
        "permessage-deflate-ish",
    )]));
    assert_eq!(
        (p, e.as_deref(), deflate),
        (None, Some("permessage-deflate-ish"), false)
    );
    assert_eq!(negotiated(&HeaderMap::new()), (None, None, false));
}

#[test]
fn to_list_keeps_repeated_values_in_order() {
    let h = hm(&[("a", "1"), ("b", "2"), ("a", "3")]);
    let list = to_list(&h);
    let a: Vec<&str> = list
        .iter()
        .filter(|(n, _)| n == "a")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(a, ["1", "3"]);
    assert_eq!(list.len(), 3);
}

// --- trust and hashing --------------------------------------------------

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

#[test]
fn is_trusted_matches_v4_networks() {
    let n = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
    assert!(is_trusted("10.200.3.4".parse().unwrap(), &n));
    assert!(is_trusted("192.168.1.1".parse().unwrap(), &n));
    assert!(!is_trusted("192.168.1.2".parse().unwrap(), &n));
    assert!(!is_trusted("11.0.0.1".parse().unwrap(), &n));
    assert!(!is_trusted("10.0.0.1".parse().unwrap(), &[]));
}

#[test]
fn is_trusted_matches_v6_networks() {
    let n = nets(&["2001:db8::/32", "::1/128"]);
    assert!(is_trusted("2001:db8:1::5".parse().unwrap(), &n));
    assert!(is_trusted("::1".parse().unwrap(), &n));
    assert!(!is_trusted("2001:db9::1".parse().unwrap(), &n));
    assert!(!is_trusted("10.0.0.1".parse().unwrap(), &n));
}

#[test]
fn is_trusted_treats_v4_mapped_as_v4() {
    let n = nets(&["10.0.0.0/8"]);
    assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &n));
    assert!(!is_trusted("::ffff:11.1.2.3".parse().unwrap(), &n));
    // A network written in mapped form still matches the mapped address.
    let mapped = nets(&["::ffff:10.0.0.0/104"]);
    assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &mapped));
}

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

#[test]
fn hash_key_from_header() {
    let h = hm(&[("x-user", "alice"), ("x-user", "bob"), ("x-empty", "")]);
    let u = uri("/");
    let k = |n: &str| hash_key_value(&HashKey::Header(n.into()), &h, &u);
    assert_eq!(k("x-user").as_deref(), Some("alice"));
    assert_eq!(k("X-User").as_deref(), Some("alice"));
    assert_eq!(k("x-missing"), None);
    assert_eq!(k("x-empty"), None);
    assert_eq!(k("bad name\n"), None);
}

#[test]
fn hash_key_from_cookie() {
    let h = hm(&[
        ("cookie", "a=1; sid=abc ;b=2"),
        ("cookie", "c=3; sid=later; q=\"quoted\"; e="),
    ]);
    let u = uri("/");
    let k = |n: &str| hash_key_value(&HashKey::Cookie(n.into()), &h, &u);
    assert_eq!(k("sid").as_deref(), Some("abc"));
    assert_eq!(k("b").as_deref(), Some("2"));
    assert_eq!(k("c").as_deref(), Some("3"));
    assert_eq!(k("q").as_deref(), Some("quoted"));
    assert_eq!(k("SID"), None);
    assert_eq!(k("e"), None);
    assert_eq!(k("missing"), None);
    assert_eq!(
        hash_key_value(&HashKey::Cookie("a".into()), &HeaderMap::new(), &u),
        None
    );
}

#[test]
fn hash_key_from_query() {
    let h = HeaderMap::new();
    let u = uri("/chat?room=7&flag&user=x&room=9&empty=");
    let k = |n: &str| hash_key_value(&HashKey::Query(n.into()), &h, &u);
    assert_eq!(k("room").as_deref(), Some("7"));
    assert_eq!(k("user").as_deref(), Some("x"));
    assert_eq!(k("flag"), None);
    assert_eq!(k("empty"), None);
    assert_eq!(k("missing"), None);
    let none = uri("/chat");
    assert_eq!(
        hash_key_value(&HashKey::Query("room".into()), &h, &none),
        None
    );
}

#[test]
fn hash_key_borrows_valid_utf8_and_decodes_the_rest() {
    let mut h = HeaderMap::new();
    h.insert("x-k", HeaderValue::from_bytes(b"v\xff").unwrap());
    h.insert("x-ok", HeaderValue::from_static("fine"));
    let u = uri("/");
    let bad = hash_key_value(&HashKey::Header("x-k".into()), &h, &u).unwrap();
    assert_eq!(bad, "v\u{fffd}");
    let ok = hash_key_value(&HashKey::Header("x-ok".into()), &h, &u).unwrap();
    assert!(matches!(ok, Cow::Borrowed("fine")));
}
