//! Telling a WebSocket upgrade (and any upgrade) from the request headers.

use super::*;

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
fn names_websocket_sees_a_half_websocket_upgrade_but_not_h2c() {
    assert!(names_websocket(&hm(&[("upgrade", "websocket")])));
    assert!(names_websocket(&hm(&[("upgrade", "h2c, WebSocket")])));
    assert!(!names_websocket(&hm(&[("upgrade", "h2c")])));
    assert!(!names_websocket(&hm(&[("connection", "upgrade")])));
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
