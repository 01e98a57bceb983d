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

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::config::{HashKey, HostHeader};

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

/// Who the client is and how it reached us.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The TCP peer's address (IPv4-mapped IPv6 is written out as IPv4).
    pub client_ip: IpAddr,
    /// The peer is in `trusted_proxies`, so its forwarding headers are believed.
    pub trusted: bool,
    /// The client connection to us is TLS.
    pub tls: bool,
    /// `host:port` of the chosen backend.
    pub backend_authority: &'a str,
}

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
fn is_websocket_key(key: &[u8]) -> bool {
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

/// The client's Host (first line), or the request authority when it sent none.
fn client_host(client: &HeaderMap, authority: Option<&str>) -> Option<HeaderValue> {
    client
        .get(header::HOST)
        .filter(|v| !trim(v.as_bytes()).is_empty())
        .cloned()
        .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok()))
}

/// Headers for the request to the backend.
///
/// Strips every header named in `Connection` and the standard hop-by-hop set
/// (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
/// `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate`, `Proxy-Authorization`;
/// the last is dropped, unlike nginx, because its credentials are addressed to a
/// proxy and tunnelscope does not use them). `Content-Length` is dropped when
/// `Transfer-Encoding` was present. Then:
///
/// - `upgrade == true`: `Upgrade: websocket`, `Connection: upgrade` (what nginx's
///   `map $http_upgrade $connection_upgrade` produces);
/// - `upgrade == false`: `Connection: keep-alive` (the caller may override).
///
/// `Host` follows `host`: [`HostHeader::Keep`] = the client's first `Host`
/// (never erased by naming it in `Connection`); with no `Host` this function
/// leaves it out — use [`backend_request_headers_from_parts`] to fall back to the
/// request authority. [`HostHeader::Backend`] = `backend_authority`;
/// [`HostHeader::Set`] = that value. A configured value that is not a valid
/// header value falls back to the `Keep` behaviour rather than panicking.
///
/// Forwarding headers (`ctx.trusted` = the peer is a trusted proxy; "present"
/// means a non-empty value not named in `Connection`):
/// - `X-Forwarded-For`: trusted ? `<existing>, <client_ip>` : `<client_ip>`;
/// - `X-Forwarded-Proto`: trusted && present ? kept : `https` / `http`;
/// - `X-Forwarded-Host`: trusted && present ? kept : the client's Host;
/// - `X-Real-IP`: trusted && present ? kept : `client_ip`;
/// - `Forwarded`: passed through only from a trusted peer, never appended to.
///
/// Everything else (`Sec-WebSocket-*`, `Origin`, `Cookie`, `Authorization`,
/// custom and repeated headers) passes through in `HeaderMap` order.
pub fn backend_request_headers(
    client: &HeaderMap,
    ctx: &ForwardContext,
    host: &HostHeader,
    upgrade: bool,
) -> HeaderMap {
    build_backend_headers(client, None, ctx, host, upgrade)
}

/// [`backend_request_headers`] for a whole request head: identical, except that
/// with [`HostHeader::Keep`] and no `Host` header the request URI's authority
/// (absolute-form request target) is used for `Host` and `X-Forwarded-Host`.
pub fn backend_request_headers_from_parts(
    parts: &http::request::Parts,
    ctx: &ForwardContext,
    host: &HostHeader,
    upgrade: bool,
) -> HeaderMap {
    let authority = parts.uri.authority().map(|a| a.as_str());
    build_backend_headers(&parts.headers, authority, ctx, host, upgrade)
}

fn build_backend_headers(
    client: &HeaderMap,
    authority: Option<&str>,
    ctx: &ForwardContext,
    host: &HostHeader,
    upgrade: bool,
) -> HeaderMap {
    let named = connection_named(client);
    let mut out = copy_filtered(client, |name| {
        let n = name.as_str();
        !HOP_BY_HOP.contains(&n) && !MANAGED.contains(&n) && !named.contains(name)
    });

    if upgrade {
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        out.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }

    let original_host = client_host(client, authority);
    let configured = match host {
        HostHeader::Keep => None,
        HostHeader::Backend => HeaderValue::from_str(ctx.backend_authority).ok(),
        HostHeader::Set(v) => HeaderValue::from_str(v).ok(),
    };
    if let Some(h) = configured.or_else(|| original_host.clone()) {
        out.insert(header::HOST, h);
    }

    // Write the IP the way nginx's $remote_addr does: a dual-stack listener
    // reports IPv4 clients as ::ffff:a.b.c.d, which nobody downstream expects.
    let ip = ctx.client_ip.to_canonical().to_string();
    let ip_value = HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown"));
    let from_peer = |name: HeaderName| {
        if ctx.trusted {
            present_values(client, &named, name)
        } else {
            Vec::new()
        }
    };

    let xff = header::HeaderName::from_static("x-forwarded-for");
    let prior = from_peer(xff.clone());
    let xff_value = if prior.is_empty() {
        ip_value.clone()
    } else {
        // Joining several lines into one keeps the chain's order explicit for
        // backends that only read the first line.
        let mut joined = Vec::new();
        for v in &prior {
            joined.extend_from_slice(trim(v.as_bytes()));
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(ip.as_bytes());
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ip_value.clone())
    };
    out.insert(xff, xff_value);

    let proto = HeaderName::from_static("x-forwarded-proto");
    let kept = from_peer(proto.clone());
    if kept.is_empty() {
        let scheme = if ctx.tls { "https" } else { "http" };
        out.insert(proto, HeaderValue::from_static(scheme));
    } else {
        append_all(&mut out, proto, kept);
    }

    let fhost = HeaderName::from_static("x-forwarded-host");
    let kept = from_peer(fhost.clone());
    if !kept.is_empty() {
        append_all(&mut out, fhost, kept);
    } else if let Some(h) = original_host {
        out.insert(fhost, h);
    }

    let real_ip = HeaderName::from_static("x-real-ip");
    let kept = from_peer(real_ip.clone());
    if kept.is_empty() {
        out.insert(real_ip, ip_value);
    } else {
        append_all(&mut out, real_ip, kept);
    }

    append_all(&mut out, header::FORWARDED, from_peer(header::FORWARDED));
    out
}

fn append_all(out: &mut HeaderMap, name: HeaderName, values: Vec<&HeaderValue>) {
    for v in values {
        out.append(name.clone(), v.clone());
    }
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

/// Does the backend's `Sec-WebSocket-Accept` match the client's key (RFC 6455
/// §4.2.2)? Pass the response's first value (`HeaderMap::get`); `None` is a
/// mismatch. The comparison is exact: no trimming, no case folding.
pub fn accept_matches(key: &HeaderValue, accept: Option<&HeaderValue>) -> bool {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    accept.is_some_and(|a| a.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes())
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

/// Is `ip` inside any of the networks? IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`, what a dual-stack listener reports) are treated as IPv4;
/// a network written in mapped form still matches the raw address.
pub fn is_trusted(ip: IpAddr, nets: &[ipnet::IpNet]) -> bool {
    let canonical = ip.to_canonical();
    nets.iter()
        .any(|n| n.contains(&canonical) || n.contains(&ip))
}

/// The address of the client behind a chain of trusted proxies, for `ip_hash`: the
/// TCP peer unless it is trusted; then `X-Forwarded-For` read from the right, past
/// every trusted hop, to the first untrusted address (nginx's `real_ip_recursive`).
/// An entry that is not an address stops the walk at the hop that added it; a chain
/// of nothing but trusted hops gives its leftmost address.
pub fn original_client(peer: IpAddr, headers: &HeaderMap, nets: &[ipnet::IpNet]) -> IpAddr {
    if !is_trusted(peer, nets) {
        return peer;
    }
    let entries: Vec<&[u8]> =
        list_elements(headers, header::HeaderName::from_static("x-forwarded-for")).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = std::str::from_utf8(entry)
            .ok()
            .and_then(|t| t.parse::<IpAddr>().ok())
        else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(ip, nets) {
            return client;
        }
    }
    client
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

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
