//! Recognising and validating a WebSocket upgrade (RFC 6455 §4): the request a
//! client sends, the 101 a backend answers, and what the two agreed on.

use std::borrow::Cow;
use std::fmt;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::{has_token, list_elements, trim};

/// Why a request was refused before it reached a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer with: 400, or 426 when the WebSocket version is not 13
    /// (the caller then adds `Sec-WebSocket-Version: 13`, RFC 6455 §4.4).
    pub status: StatusCode,
    /// Short human-readable reason, suitable for a response body or an event.
    pub reason: &'static str,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for Rejection {}

/// Is this an upgrade to WebSocket? `Upgrade` has the token `websocket`
/// (case-insensitive, comma lists allowed) AND `Connection` contains the token
/// `upgrade` (case-insensitive, any list position, possibly across several
/// `Connection` lines).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
}

/// Does the request name `websocket` in `Upgrade`, whether or not the rest of the
/// handshake is right? Such a request is answered by the proxy (400/426 from
/// [`check_websocket_request`]) when it is not a valid upgrade, instead of being
/// forwarded as plain HTTP to a WebSocket backend that would hang up on it.
pub fn names_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Is `key` the canonical base64 (RFC 4648 §4, padded) of exactly 16 bytes? The
/// standard engine refuses non-canonical padding and trailing bits, so only what a
/// real encoder emits passes.
pub(super) fn is_websocket_key(key: &[u8]) -> bool {
    use base64::Engine;
    // 24 characters decode to at most 18 bytes.
    let mut out = [0u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut out)
            .is_ok_and(|n| n == 16)
}

/// Checks an upgrade request before it is forwarded, so nothing ambiguous
/// reaches a backend: method `GET`, HTTP/1.1, a WebSocket upgrade
/// ([`is_websocket_upgrade`]), `Sec-WebSocket-Key` present once and the base64 of
/// exactly 16 bytes, `Sec-WebSocket-Version` present once and equal to `13`.
///
/// `Err` carries 400, or 426 when a single version other than 13 was requested
/// (the caller adds `Sec-WebSocket-Version: 13`). A missing or repeated version
/// header is a malformed handshake, hence 400.
pub fn check_websocket_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    let bad = |reason| {
        Err(Rejection {
            status: StatusCode::BAD_REQUEST,
            reason,
        })
    };
    if method != Method::GET {
        return bad("WebSocket handshake must use GET");
    }
    if version != Version::HTTP_11 {
        return bad("WebSocket handshake must use HTTP/1.1");
    }
    if !is_websocket_upgrade(headers) {
        return bad("not a WebSocket upgrade (need Upgrade: websocket and Connection: upgrade)");
    }

    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).into_iter();
    match (keys.next(), keys.next()) {
        (None, _) => return bad("missing Sec-WebSocket-Key"),
        (Some(_), Some(_)) => return bad("repeated Sec-WebSocket-Key"),
        (Some(k), None) if !is_websocket_key(k.as_bytes()) => {
            return bad("Sec-WebSocket-Key is not base64 of 16 bytes")
        }
        (Some(_), None) => {}
    }

    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).into_iter();
    match (versions.next(), versions.next()) {
        (None, _) => bad("missing Sec-WebSocket-Version"),
        (Some(_), Some(_)) => bad("repeated Sec-WebSocket-Version"),
        (Some(v), None) if v.as_bytes() != b"13" => Err(Rejection {
            status: StatusCode::UPGRADE_REQUIRED,
            reason: "unsupported Sec-WebSocket-Version (only 13)",
        }),
        (Some(_), None) => Ok(()),
    }
}

/// Does the backend's `Sec-WebSocket-Accept` match the client's key (RFC 6455
/// §4.2.2)? Pass the response's first value (`HeaderMap::get`); `None` is a
/// mismatch. The comparison is exact: no trimming, no case folding.
pub fn accept_matches(key: &HeaderValue, accept: Option<&HeaderValue>) -> bool {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    accept.is_some_and(|a| a.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes())
}

/// What a 101 says was negotiated, for display: the subprotocol
/// (`Sec-WebSocket-Protocol`), the extensions (`Sec-WebSocket-Extensions`, all
/// lines joined with `, `), and whether `permessage-deflate` is among them
/// (then RSV1 is legal on data frames, RFC 7692).
pub fn negotiated(response: &HeaderMap) -> (Option<String>, Option<String>, bool) {
    let joined = |name: HeaderName| {
        let parts: Vec<Cow<'_, str>> = response
            .get_all(name)
            .into_iter()
            .map(|v| trim(v.as_bytes()))
            .filter(|v| !v.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    let deflate = list_elements(response, header::SEC_WEBSOCKET_EXTENSIONS).any(|ext| {
        let name = ext.split(|&b| b == b';').next().unwrap_or_default();
        trim(name).eq_ignore_ascii_case(b"permessage-deflate")
    });
    (
        joined(header::SEC_WEBSOCKET_PROTOCOL),
        joined(header::SEC_WEBSOCKET_EXTENSIONS),
        deflate,
    )
}
