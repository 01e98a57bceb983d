//! WebSocket over HTTP/2 (RFC 8441): the client opens a stream with an extended
//! CONNECT (`:protocol = websocket`) and gets a 200; the frames then flow as the
//! stream's data. The backend needs no HTTP/2: the proxy turns the CONNECT into an
//! HTTP/1.1 Upgrade (with a `Sec-WebSocket-Key` of its own, whose accept it checks)
//! and the backend's 101 into the client's 200. The frames are the same either way,
//! so the scanner, limits and inspector work unchanged.

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{text, Body};
use crate::proxy::headers;

/// An extended CONNECT asking for a WebSocket.
pub(super) fn is_websocket_connect(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The proxy's own answer to an extended CONNECT that is not a valid WebSocket
/// opening (RFC 8441 4: version 13 is required, as in RFC 6455).
pub(super) fn malformed(req: &Request<Incoming>) -> Option<Response<Body>> {
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.is_some_and(|v| v.as_bytes() == b"13") {
        return None;
    }
    let mut resp = text(
        StatusCode::BAD_REQUEST,
        "a WebSocket over HTTP/2 needs sec-websocket-version: 13",
    );
    resp.headers_mut().insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    Some(resp)
}

/// Gives the request the headers of the HTTP/1.1 handshake the backend gets:
/// `Upgrade`, `Connection` and a fresh `Sec-WebSocket-Key` (`Host` from
/// `:authority` was set for every HTTP/2 request on its way in).
pub(super) fn as_upgrade(req: &mut Request<Incoming>) {
    let h = req.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::SEC_WEBSOCKET_KEY, new_key());
}

/// A random `Sec-WebSocket-Key` (16 bytes, base64).
fn new_key() -> HeaderValue {
    use base64::Engine;
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        nonce = fastrand::u128(..).to_ne_bytes();
    }
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&key).expect("base64 is a valid header value")
}

/// The client's 200 from the backend's 101: its headers without the HTTP/1.1
/// connection ones (HTTP/2 forbids them) and without the accept, which was ours.
pub(super) fn answer_headers(backend: &HeaderMap) -> HeaderMap {
    let mut out = headers::client_response_headers(StatusCode::OK, backend);
    out.remove(header::SEC_WEBSOCKET_ACCEPT);
    out.remove(header::UPGRADE);
    out.remove(header::CONNECTION);
    out
}
