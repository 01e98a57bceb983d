//! Fuzzes the header policy (`tunnelscope::proxy::headers`) with arbitrary
//! request and response heads.
//!
//! Input layout:
//!
//! - byte 0, control: bit 0 the peer is trusted, bit 1 the client connection is
//!   TLS, bit 2 forward as a WebSocket upgrade, bit 3 absolute-form request target,
//!   bits 4-5 the `host_header` setting (keep, backend, a valid fixed value, an
//!   invalid fixed value), bits 6-7 the client address family (IPv4, IPv6,
//!   IPv4-mapped IPv6, IPv4);
//! - bytes 1..17: the client address (IPv4 uses the first four);
//! - bytes 17..19: the response status (a multiple of 4 means 101, otherwise
//!   100 + n % 900);
//! - the rest: header lines separated by `\n`, each `name:value`. A one-byte name
//!   below 0x20 picks a name from `NAMES`, so the interesting headers are cheap
//!   to reach. Lines whose name or value the http crate rejects are skipped.
//!
//! Every public policy function runs on the head; the documented policy is
//! checked with assertions, so a violation is a crash like any panic.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use libfuzzer_sys::fuzz_target;
use tunnelscope::config::{HashKey, HostHeader};
use tunnelscope::proxy::headers::{
    accept_matches, backend_request_headers, backend_request_headers_from_parts,
    check_websocket_request, client_response_headers, hash_key_value, is_trusted,
    is_websocket_upgrade, negotiated, to_headers, names_websocket, ForwardContext,
};

/// Hop-by-hop headers, as documented on `backend_request_headers`.
const HOP: [&str; 9] = [
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

/// Headers the proxy writes itself towards the backend.
const PROXY_WRITTEN: [&str; 6] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
];

/// Names reachable with a one-byte name (index = byte).
const NAMES: [&str; 26] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "content-length",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "cookie",
    "set-cookie",
    "origin",
    "x-a",
    "Connection",
];

const BACKEND: &str = "10.0.0.5:8080";
const ABSOLUTE_AUTHORITY: &str = "abs.example:8080";

struct Input {
    trusted: bool,
    tls: bool,
    upgrade: bool,
    absolute: bool,
    host: HostHeader,
    ip: IpAddr,
    status: StatusCode,
    head: HeaderMap,
}

fn decode(data: &[u8]) -> Option<Input> {
    let (&control, rest) = data.split_first()?;
    if rest.len() < 18 {
        return None;
    }
    let (addr, rest) = rest.split_at(16);
    let (status, lines) = rest.split_at(2);
    let v4 = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
    let ip = match control >> 6 {
        1 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
        2 => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => IpAddr::V4(v4),
    };
    let host = match (control >> 4) & 3 {
        0 => HostHeader::Keep,
        1 => HostHeader::Backend,
        2 => HostHeader::Set("internal.example".into()),
        _ => HostHeader::Set("bad\r\nvalue".into()),
    };
    let n = u16::from_le_bytes([status[0], status[1]]);
    let status = if n % 4 == 0 {
        StatusCode::SWITCHING_PROTOCOLS
    } else {
        StatusCode::from_u16(100 + n % 900).ok()?
    };
    let mut head = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let name = match name {
            [b] if *b < 0x20 => {
                HeaderName::from_bytes(NAMES[usize::from(*b) % NAMES.len()].as_bytes())
            }
            _ => HeaderName::from_bytes(name),
        };
        let (Ok(name), Ok(value)) = (name, HeaderValue::from_bytes(value)) else {
            continue;
        };
        head.append(name, value);
    }
    Some(Input {
        trusted: control & 1 != 0,
        tls: control & 2 != 0,
        upgrade: control & 4 != 0,
        absolute: control & 8 != 0,
        host,
        ip,
        status,
        head,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = decode(data) else {
        return;
    };
    check_classification(&input.head);
    check_backend_request(&input);
    check_response(input.status, &input.head);
    check_display(&input.head);
    check_trust(input.ip);
    exercise_hash_keys(&input.head);
});

// --- helpers, written from the documented policy -----------------------------

fn lines_of(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn values(h: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    h.get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// Removes optional whitespace (space, tab) from both ends.
fn ows_trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// The lowercase elements of every `Connection` line.
fn connection_tokens(h: &HeaderMap) -> Vec<Vec<u8>> {
    h.get_all("connection")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b','))
        .map(|t| ows_trim(t).to_ascii_lowercase())
        .collect()
}

fn named(tokens: &[Vec<u8>], name: &str) -> bool {
    tokens.iter().any(|t| t == name.as_bytes())
}

fn has_token(h: &HeaderMap, name: &str, token: &str) -> bool {
    h.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&c| c == b',')
            .any(|t| ows_trim(t).eq_ignore_ascii_case(token.as_bytes()))
    })
}

fn written_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key.ends_with(b"==") && key[..22].iter().all(alphabet)
}

// --- checks ------------------------------------------------------------------

fn check_classification(h: &HeaderMap) {
    let websocket = is_websocket_upgrade(h);
    assert_eq!(
        websocket,
        has_token(h, "upgrade", "websocket") && has_token(h, "connection", "upgrade")
    );
    assert_eq!(names_websocket(h), has_token(h, "upgrade", "websocket"));
    assert!(!websocket || names_websocket(h));

    let methods = [Method::GET, Method::POST, Method::CONNECT];
    let versions = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2];
    for method in &methods {
        for version in versions {
            let verdict = check_websocket_request(method, version, h);
            if verdict.is_ok() {
                assert_eq!(method, Method::GET);
                assert_eq!(version, Version::HTTP_11);
                assert!(websocket);
                let keys = values(h, "sec-websocket-key");
                assert_eq!(keys.len(), 1);
                assert!(is_base64_of_16_bytes(&keys[0]), "{keys:?}");
                assert_eq!(values(h, "sec-websocket-version"), [b"13".to_vec()]);
            }
            if let Err(r) = verdict {
                assert!(
                    r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::UPGRADE_REQUIRED
                );
                if r.status == StatusCode::UPGRADE_REQUIRED {
                    let v = values(h, "sec-websocket-version");
                    assert!(v.len() == 1 && v[0] != b"13");
                }
            }
        }
    }

    if let Some(key) = h.get("sec-websocket-key") {
        use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
        let right = HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap();
        assert!(accept_matches(key, Some(&right)));
        assert!(!accept_matches(key, None));
        if let Some(accept) = h.get("sec-websocket-accept") {
            assert_eq!(accept_matches(key, Some(accept)), accept == right);
        }
    }

    let (_, extensions, deflate) = negotiated(h);
    assert!(!deflate || extensions.is_some());
    assert_eq!(
        deflate,
        h.get_all("sec-websocket-extensions").iter().any(|v| {
            v.as_bytes().split(|&c| c == b',').any(|ext| {
                let name = ext.split(|&c| c == b';').next().unwrap_or_default();
                ows_trim(name).eq_ignore_ascii_case(b"permessage-deflate")
            })
        })
    );
}

fn check_backend_request(input: &Input) {
    let client = &input.head;
    let ctx = ForwardContext {
        client_ip: input.ip,
        trusted: input.trusted,
        tls: input.tls,
        backend_authority: BACKEND,
    };
    let target = if input.absolute {
        "http://abs.example:8080/chat"
    } else {
        "/chat"
    };
    let (mut parts, ()) = http::Request::get(target).body(()).unwrap().into_parts();
    parts.headers = client.clone();
    let out = backend_request_headers_from_parts(&parts, &ctx, &input.host, input.upgrade);
    if !input.absolute {
        let alone = backend_request_headers(client, &ctx, &input.host, input.upgrade);
        assert_eq!(lines_of(&alone), lines_of(&out));
    }

    // Hop-by-hop: only what the proxy sets itself.
    for name in HOP {
        let want: Vec<Vec<u8>> = match (name, input.upgrade) {
            ("connection", true) => vec![b"upgrade".to_vec()],
            ("connection", false) => vec![b"keep-alive".to_vec()],
            ("upgrade", true) => vec![b"websocket".to_vec()],
            _ => Vec::new(),
        };
        assert_eq!(values(&out, name), want, "{name}");
    }
    assert_eq!(is_websocket_upgrade(&out), input.upgrade);
    assert_eq!(
        out.contains_key("upgrade") || has_token(&out, "connection", "upgrade"),
        input.upgrade
    );

    // End-to-end: everything else, unchanged, in order.
    let tokens = connection_tokens(client);
    let chunked = client.contains_key("transfer-encoding");
    let ours = |n: &str| HOP.contains(&n) || PROXY_WRITTEN.contains(&n);
    let want: Vec<_> = lines_of(client)
        .into_iter()
        .filter(|(n, _)| {
            let dropped = ours(n) || named(&tokens, n) || (chunked && n == "content-length");
            !dropped
        })
        .collect();
    let got: Vec<_> = lines_of(&out)
        .into_iter()
        .filter(|(n, _)| !ours(n))
        .collect();
    assert_eq!(got, want);

    // Host: at most one, chosen by the setting.
    let client_host = client
        .get("host")
        .map(|v| v.as_bytes())
        .filter(|v| !ows_trim(v).is_empty())
        .map(<[u8]>::to_vec)
        .or_else(|| {
            input
                .absolute
                .then(|| ABSOLUTE_AUTHORITY.as_bytes().to_vec())
        });
    let host = match &input.host {
        HostHeader::Keep => client_host.clone(),
        HostHeader::Backend => Some(BACKEND.as_bytes().to_vec()),
        HostHeader::Set(v) if !v.contains(['\r', '\n']) => Some(v.as_bytes().to_vec()),
        HostHeader::Set(_) => client_host.clone(),
    };
    assert_eq!(values(&out, "host"), host.into_iter().collect::<Vec<_>>());

    // Forwarding headers.
    let present = |name: &str| -> Vec<Vec<u8>> {
        if !input.trusted || named(&tokens, name) {
            return Vec::new();
        }
        values(client, name)
            .into_iter()
            .filter(|v| !ows_trim(v).is_empty())
            .collect()
    };
    let ip = written_ip(input.ip);
    let mut xff = Vec::new();
    for link in present("x-forwarded-for") {
        xff.extend_from_slice(ows_trim(&link));
        xff.extend_from_slice(b", ");
    }
    xff.extend_from_slice(ip.as_bytes());
    assert_eq!(values(&out, "x-forwarded-for"), [xff]);
    let or_own = |kept: Vec<Vec<u8>>, own: Option<Vec<u8>>| {
        if kept.is_empty() {
            own.into_iter().collect()
        } else {
            kept
        }
    };
    let scheme: &[u8] = if input.tls { b"https" } else { b"http" };
    assert_eq!(
        values(&out, "x-forwarded-proto"),
        or_own(present("x-forwarded-proto"), Some(scheme.to_vec()))
    );
    assert_eq!(
        values(&out, "x-forwarded-host"),
        or_own(present("x-forwarded-host"), client_host)
    );
    assert_eq!(
        values(&out, "x-real-ip"),
        or_own(present("x-real-ip"), Some(ip.into_bytes()))
    );
    assert_eq!(values(&out, "forwarded"), present("forwarded"));
}

fn check_response(status: StatusCode, backend: &HeaderMap) {
    let out = client_response_headers(status, backend);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let tokens = connection_tokens(backend);
    let chunked = backend.contains_key("transfer-encoding");
    let want: Vec<_> = lines_of(backend)
        .into_iter()
        .filter(|(n, _)| {
            if switching && (n == "upgrade" || n == "connection") {
                return true;
            }
            let dropped = HOP.contains(&n.as_str())
                || named(&tokens, n)
                || (chunked && n == "content-length");
            !dropped
        })
        .collect();
    assert_eq!(lines_of(&out), want);
}

fn check_display(h: &HeaderMap) {
    let list: Vec<(String, String)> = h
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    assert_eq!(list.len(), h.len());
    assert_eq!(to_headers(h).to_vec(), list);
}

fn check_trust(ip: IpAddr) {
    let nets: Vec<ipnet::IpNet> = match ip {
        IpAddr::V4(v4) => vec![ipnet::Ipv4Net::new(v4, 24).unwrap().into()],
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => vec![ipnet::Ipv4Net::new(v4, 24).unwrap().into()],
            None => vec![ipnet::Ipv6Net::new(v6, 64).unwrap().into()],
        },
    };
    assert!(is_trusted(ip, &nets));
    assert!(!is_trusted(ip, &[]));
    if let IpAddr::V4(v4) = ip {
        assert!(is_trusted(IpAddr::V6(v4.to_ipv6_mapped()), &nets));
    }
}

fn exercise_hash_keys(h: &HeaderMap) {
    let names: Vec<String> = h.keys().map(|n| n.as_str().to_owned()).collect();
    let cookie = h
        .get("cookie")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let query = h
        .get("x-a")
        .and_then(|v| Uri::try_from(format!("/p?{}", String::from_utf8_lossy(v.as_bytes()))).ok())
        .unwrap_or_else(|| Uri::from_static("/p?a=1&b"));
    for name in names.iter().map(String::as_str).chain(["", "a", "b"]) {
        let _ = hash_key_value(&HashKey::Header(name.to_owned()), h, &query);
        let _ = hash_key_value(&HashKey::Query(name.to_owned()), h, &query);
    }
    for pair in cookie.split(';') {
        let name = pair.split('=').next().unwrap_or_default().trim();
        let _ = hash_key_value(&HashKey::Cookie(name.to_owned()), h, &query);
    }
}
