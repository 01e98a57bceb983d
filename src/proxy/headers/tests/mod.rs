//! Unit tests of the header policy, one module per area; the fixtures they share
//! are here.

use super::*;
use crate::config::HostHeader;
use http::{Method, Version};
use std::net::IpAddr;

/// Does a header map ask for any protocol upgrade at all? (What a forwarded plain
/// request must never do.)
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) || has_token(headers, header::CONNECTION, "upgrade")
}

/// The header list as `(name, value)` pairs, values decoded lossily.
fn to_list(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
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

/// The handshake check on `h` as a GET over HTTP/1.1.
fn check(h: &HeaderMap) -> Result<(), Rejection> {
    check_websocket_request(&Method::GET, Version::HTTP_11, h)
}

mod handshake;
mod properties;
mod request;
mod response;
mod trust_and_hashing;
mod upgrade;
