//! The request headers the backend gets: hop-by-hop stripped, forwarding headers, Host.

use super::*;

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
fn dropping_content_length_keeps_the_order_of_the_other_headers() {
    // Found by the ordering property: removing Content-Length after the copy
    // swap-removes it, moving the last header into its slot.
    let h = hm(&[
        ("content-length", "5"),
        ("transfer-encoding", "chunked"),
        ("x-first", "1"),
        ("x-last", "2"),
    ]);
    let names = |out: &HeaderMap| -> Vec<String> {
        to_list(out)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n == "x-first" || n == "x-last")
            .collect()
    };
    assert_eq!(names(&forward(&h, false)), ["x-first", "x-last"]);
    let out = client_response_headers(StatusCode::OK, &h);
    assert_eq!(names(&out), ["x-first", "x-last"]);
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
