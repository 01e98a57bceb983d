//! What the backend is told: the request headers it receives (hop-by-hop headers
//! stripped, `Host` as configured, `X-Forwarded-*` and `X-Real-IP` written), and
//! whose forwarding headers are believed.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{
    connection_named, copy_filtered, list_elements, present_values, trim, HOP_BY_HOP, MANAGED,
};
use crate::config::HostHeader;

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

/// The client's Host (first line), or the request authority when it sent none.
pub(super) fn client_host(client: &HeaderMap, authority: Option<&str>) -> Option<HeaderValue> {
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

pub(super) fn build_backend_headers(
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

pub(super) fn append_all(out: &mut HeaderMap, name: HeaderName, values: Vec<&HeaderValue>) {
    for v in values {
        out.append(name.clone(), v.clone());
    }
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
