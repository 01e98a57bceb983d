//! Sans-IO header policy: which HTTP headers cross the proxy, in which direction,
//! and how a WebSocket upgrade is recognised and validated.
//!
//! Everything here is a pure function over [`http::HeaderMap`] (no sockets, no
//! async, no hyper types), so the whole policy can be unit-tested and reasoned
//! about on its own. The proxy core calls these functions at three points:
//!
//! 1. On a client request: [`names_websocket`] / [`is_websocket_upgrade`] classify it,
//!    [`check_websocket_request`] rejects malformed handshakes before any backend
//!    sees them, and [`is_trusted`] decides whether the peer's forwarding headers
//!    are believed.
//! 2. Towards the backend: [`backend_request_headers`] strips hop-by-hop headers
//!    and writes `Host`, `X-Forwarded-*`, `X-Real-IP` and the upgrade headers.
//! 3. Back to the client: [`client_response_headers`] filters the backend's
//!    response, [`accept_matches`] verifies a 101, and [`negotiated`] reports what
//!    the two ends agreed on.
//!
//! All functions work on raw header bytes where possible, so non-UTF-8 values,
//! empty values and very long lists are handled without panicking.
//!
//! - `websocket`: the upgrade request's checks, the 101's, what was negotiated.
//! - `forward`: the headers the backend receives and whose forwarding headers count.
//! - here: the hop-by-hop list, header-list parsing, the response filter, hash keys.

use std::borrow::Cow;
use std::collections::HashSet;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};

mod forward;
mod websocket;

pub use self::forward::*;
pub use self::websocket::*;
use crate::config::HashKey;

/// The standard hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones every
/// proxy strips). They describe one connection, never the end-to-end message.
///
/// `Proxy-Authorization` is on the list even though nginx forwards it: it carries
/// credentials addressed to a proxy, tunnelscope does not consume them, and
/// passing them on would hand them to a backend they were never meant for.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers the proxy writes itself on the way to the backend; the client's copies
/// are never forwarded verbatim (trusted peers' values are re-inserted on purpose).
const MANAGED: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Trims ASCII whitespace from both ends of a byte slice (header list elements
/// are separated by optional whitespace, RFC 9110 §5.6.1).
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Every non-empty element of a comma-separated header, across all of its lines.
fn list_elements<'h>(
    headers: &'h HeaderMap,
    name: HeaderName,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// Does any line of the list header `name` contain `token` (case-insensitive)?
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    list_elements(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Names listed in `Connection` that are actually present in `headers`.
///
/// Only present names are kept, so the set is bounded by the header count no
/// matter how long a hostile `Connection` list is.
fn connection_named(headers: &HeaderMap) -> HashSet<HeaderName> {
    list_elements(headers, header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .filter(|n| headers.contains_key(n))
        .collect()
}

/// Copies every header of `src` that `keep` accepts, preserving order and
/// repeated values.
fn copy_filtered(src: &HeaderMap, mut keep: impl FnMut(&HeaderName) -> bool) -> HeaderMap {
    // RFC 9112 §6.3: with Transfer-Encoding present, Content-Length is
    // meaningless and must not travel on next to a re-framed body, or the next
    // hop could read a different message boundary than we did (smuggling).
    // Skipped while copying rather than removed afterwards: `HeaderMap::remove`
    // swap-removes, moving the last header into its place and breaking the order.
    let reframed = src.contains_key(header::TRANSFER_ENCODING);
    let mut out = HeaderMap::with_capacity(src.keys_len() + 8);
    for (name, value) in src {
        if keep(name) && !(reframed && name == header::CONTENT_LENGTH) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The non-empty values of `name` in `src`, unless `name` was listed in
/// `Connection` (then it belonged to the previous hop only and counts as absent).
fn present_values<'h>(
    src: &'h HeaderMap,
    named: &HashSet<HeaderName>,
    name: HeaderName,
) -> Vec<&'h HeaderValue> {
    if named.contains(&name) {
        return Vec::new();
    }
    src.get_all(name)
        .into_iter()
        .filter(|v| !trim(v.as_bytes()).is_empty())
        .collect()
}

/// Headers of a backend response going back to the client.
///
/// Non-101 responses lose the hop-by-hop set and every header named in
/// `Connection` (and `Content-Length` when `Transfer-Encoding` was present; hyper
/// re-frames the body). A `101 Switching Protocols` keeps `Upgrade` and
/// `Connection`, because they are the handshake, but loses the rest of the set.
/// `Sec-WebSocket-Accept/-Protocol/-Extensions` and repeated `Set-Cookie` pass.
pub fn client_response_headers(status: StatusCode, backend: &HeaderMap) -> HeaderMap {
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let named = connection_named(backend);
    copy_filtered(backend, |name| {
        if switching && (name == header::UPGRADE || name == header::CONNECTION) {
            return true;
        }
        !HOP_BY_HOP.contains(&name.as_str()) && !named.contains(name)
    })
}

/// Header list for display and events, in the compact form events and tunnels keep:
/// `HeaderMap` order (first appearance of each name; repeated values of one name
/// together, in order), values decoded lossily so non-UTF-8 bytes show as U+FFFD.
pub fn to_headers(headers: &HeaderMap) -> crate::event::Headers {
    crate::event::Headers::from_pairs(
        headers
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes()))),
    )
}

/// Bytes to text for a hash key: borrowed when valid UTF-8; `None` when empty,
/// because hashing every keyless client onto one backend is worse than letting
/// the balancer fall back.
fn key_text(bytes: &[u8]) -> Option<Cow<'_, str>> {
    let bytes = trim(bytes);
    if bytes.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(bytes))
}

/// The key the `hash` balancer uses.
///
/// - [`HashKey::Header`]: the first line of that header.
/// - [`HashKey::Cookie`]: the first cookie of that (case-sensitive) name across
///   all `Cookie` lines (`a=1; b=2`); surrounding double quotes are removed.
/// - [`HashKey::Query`]: the first `name=value` of that name in `uri.query()`
///   (`a=1&b=2`); no percent-decoding, `a` alone has an empty value.
///
/// An absent or empty value is `None`. Non-UTF-8 bytes are decoded lossily.
pub fn hash_key_value<'a>(
    key: &HashKey,
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Option<Cow<'a, str>> {
    match key {
        HashKey::Header(name) => {
            // `get` with an invalid name is a miss, not a panic.
            key_text(headers.get(name.as_str())?.as_bytes())
        }
        HashKey::Cookie(name) => {
            let value = headers
                .get_all(header::COOKIE)
                .into_iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
                .find_map(|pair| {
                    let pair = trim(pair);
                    let eq = pair.iter().position(|&b| b == b'=')?;
                    (trim(&pair[..eq]) == name.as_bytes()).then(|| trim(&pair[eq + 1..]))
                })?;
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            key_text(value)
        }
        HashKey::Query(name) => {
            let value = uri.query()?.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then_some(v)
            })?;
            key_text(value.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests;
