//! The response headers the client gets.

use super::*;

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
