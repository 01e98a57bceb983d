//! Validating the client's handshake: what is refused, and with which status.

use super::*;

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
