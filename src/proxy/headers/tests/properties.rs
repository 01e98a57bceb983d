//! Properties (proptest) of the whole request and response policy.

use super::*;

// --- properties (proptest) -----------------------------------------------
//
// Random header maps mixing end-to-end headers (arbitrary bytes, non-UTF-8 and
// empty values included), every hop-by-hop header, `Connection` lists naming
// other headers, duplicates, mixed-case names, forwarding chains (valid and
// junk) and zero, one or several `Host` lines. The expectations are written from
// the documented policy, with the header lists spelled out again here so that a
// change to the module's own lists shows up as a failure.

use proptest::prelude::*;

/// RFC 9110 §7.6.1 plus the legacy ones, as documented on `backend_request_headers`.
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

/// End-to-end names, some repeated often enough to collide and be named in `Connection`.
const END_TO_END: [&str; 12] = [
    "x-a",
    "x-b",
    "x-c",
    "content-length",
    "cookie",
    "set-cookie",
    "origin",
    "authorization",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-accept",
];

/// Tokens a `Connection` list may carry: header names (present or not), the
/// usual connection options, and things that are not header names at all.
const CONNECTION_TOKENS: [&str; 27] = [
    "upgrade",
    "keep-alive",
    "close",
    "x-a",
    "x-b",
    "x-absent",
    "content-length",
    "cookie",
    "set-cookie",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "te",
    "trailer",
    "transfer-encoding",
    "proxy-authorization",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "connection",
    "bad token",
    "\"x-a\"",
    "x-\u{e9}",
    "",
    " ",
];

const SEPARATORS: [&str; 5] = [",", ", ", " ,", ",,", " , \t"];

/// `s` with the letters whose bit is set in `mask` upper-cased.
fn with_case(s: &str, mask: u32) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 32) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// `s` with a random subset of its letters upper-cased.
fn mixed_case(s: &'static str) -> impl Strategy<Value = String> {
    any::<u32>().prop_map(move |mask| with_case(s, mask))
}

fn one_of_mixed_case(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(pool), any::<u32>()).prop_map(|(s, mask)| with_case(s, mask))
}

/// Any bytes `HeaderValue::from_bytes` accepts: tab, visible ASCII, space and
/// obs-text (0x80..=0xFF, so non-UTF-8); often empty.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(|mut v| {
        for b in &mut v {
            // Control characters other than tab become printable; a quarter
            // of the rest is folded into ASCII so both kinds stay common.
            *b = match *b {
                b'\t' => b'\t',
                0..0x20 => *b + 0x20,
                0x7f => b'~',
                0xc0.. => (*b & 0x3f) + 0x20,
                _ => *b,
            };
        }
        v
    })
}

/// A list of tokens from `pool`, mixed case, with assorted separators.
fn token_list(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (
            one_of_mixed_case(pool),
            prop::sample::select(&SEPARATORS[..]),
        ),
        0..5,
    )
    .prop_map(|items| {
        let mut out = String::new();
        for (i, (token, sep)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            out.push_str(token);
        }
        out.into_bytes()
    })
}

/// An `X-Forwarded-*` / `Forwarded` / `Host` value: a well-formed IP chain or junk.
fn forwarding_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<IpAddr>(), 0..4).prop_map(|ips| {
            ips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
                .into_bytes()
        }),
        Just(b"app.example:443".to_vec()),
        Just(b"https".to_vec()),
        Just(b" \t ".to_vec()),
        value_bytes(),
    ]
}

/// Any header name the http crate accepts, any case.
fn any_token_name() -> impl Strategy<Value = String> {
    const TCHAR: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    prop::collection::vec(prop::sample::select(TCHAR), 1..12)
        .prop_map(|t| String::from_utf8(t).expect("tchar is ASCII"))
}

/// One header line of a request or response head.
fn line() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        4 => (one_of_mixed_case(&END_TO_END), value_bytes()),
        1 => (any_token_name(), value_bytes()),
        3 => (one_of_mixed_case(&HOP), value_bytes()),
        3 => (mixed_case("connection"), token_list(&CONNECTION_TOKENS)),
        1 => (mixed_case("upgrade"), token_list(&["websocket", "h2c", "websockets"])),
        3 => (one_of_mixed_case(&PROXY_WRITTEN), forwarding_value()),
    ]
}

/// Appends the lines in order, so repeated names stay repeated.
fn head_from(lines: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in lines {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).expect("generated names are tokens"),
            HeaderValue::from_bytes(v).expect("generated values are valid"),
        );
    }
    h
}

fn head() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec(line(), 0..24).prop_map(|lines| head_from(&lines))
}

/// Every line in `HeaderMap` order, as (lowercase name, raw value).
fn lines_of(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn raw_values(h: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    h.get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// Optional whitespace around list elements (RFC 9110 §5.6.1): space and tab.
fn ows_trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// The lowercase tokens of every `Connection` line.
fn connection_tokens(h: &HeaderMap) -> Vec<Vec<u8>> {
    h.get_all("connection")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b','))
        .map(|t| ows_trim(t).to_ascii_lowercase())
        .collect()
}

fn named_in(tokens: &[Vec<u8>], name: &str) -> bool {
    tokens.iter().any(|t| t == name.as_bytes())
}

/// The IP as nginx's `$remote_addr` writes it: IPv4-mapped IPv6 as IPv4.
fn written_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Is it a valid field value (RFC 9110 §5.5: no control characters but tab)?
fn valid_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Everything that decides the request to the backend besides the headers.
#[derive(Debug, Clone)]
struct Forward {
    ip: IpAddr,
    trusted: bool,
    tls: bool,
    backend: &'static str,
    host: HostHeader,
    upgrade: bool,
    /// The request target is absolute-form (`http://abs.example:8080/chat`).
    absolute: bool,
}

const ABSOLUTE_AUTHORITY: &str = "abs.example:8080";

fn client_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(IpAddr::V4),
        any::<Ipv6Addr>().prop_map(IpAddr::V6),
        any::<Ipv4Addr>().prop_map(|v4| IpAddr::V6(v4.to_ipv6_mapped())),
    ]
}

fn forward_setup() -> impl Strategy<Value = Forward> {
    let host = prop_oneof![
        Just(HostHeader::Keep),
        Just(HostHeader::Backend),
        prop::sample::select(&["internal", "", "bad\r\nvalue", "\u{fc}ber.example"][..])
            .prop_map(|s| HostHeader::Set(s.into())),
    ];
    (
        client_ip(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(&["10.0.0.5:8080", "[2001:db8::1]:443", "", "bad\nauthority"][..]),
        host,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ip, trusted, tls, backend, host, upgrade, absolute)| Forward {
                ip,
                trusted,
                tls,
                backend,
                host,
                upgrade,
                absolute,
            },
        )
}

/// Runs the request policy the way the proxy does, on a whole request head.
fn run_forward(client: &HeaderMap, f: &Forward) -> HeaderMap {
    let target = if f.absolute {
        "http://abs.example:8080/chat"
    } else {
        "/chat"
    };
    let (mut parts, ()) = http::Request::get(target)
        .body(())
        .expect("static request")
        .into_parts();
    parts.headers = client.clone();
    let ctx = ForwardContext {
        client_ip: f.ip,
        trusted: f.trusted,
        tls: f.tls,
        backend_authority: f.backend,
    };
    backend_request_headers_from_parts(&parts, &ctx, &f.host, f.upgrade)
}

/// The client's own Host for `HostHeader::Keep`: the first line when it is not
/// blank, else the absolute-form authority.
fn expected_client_host(client: &HeaderMap, f: &Forward) -> Option<Vec<u8>> {
    client
        .get("host")
        .map(|v| v.as_bytes())
        .filter(|v| !ows_trim(v).is_empty())
        .map(<[u8]>::to_vec)
        .or_else(|| f.absolute.then(|| ABSOLUTE_AUTHORITY.as_bytes().to_vec()))
}

fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        3 => Just(StatusCode::SWITCHING_PROTOCOLS),
        2 => prop::sample::select(&[200u16, 204, 301, 400, 404, 426, 500, 502][..])
            .prop_map(|s| StatusCode::from_u16(s).unwrap()),
        1 => (100u16..1000).prop_map(|s| StatusCode::from_u16(s).unwrap()),
    ]
}

/// Canonical padded base64 (RFC 4648 §4), written out so the key check has an
/// independent source of valid keys.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One way to spoil an otherwise valid handshake, and the status it must get.
#[derive(Debug, Clone)]
enum Defect {
    None,
    Post,
    Http10,
    NoUpgradeHeader,
    NoUpgradeToken,
    NoKey,
    TwoKeys,
    /// A character of the key replaced by one outside the base64 alphabet.
    KeyAlphabet(usize, char),
    /// The base64 of 15 or 17 bytes instead of 16.
    KeyLength(bool),
    /// The last significant character carries non-zero padding bits.
    KeyTrailingBits(char),
    NoVersion,
    TwoVersions,
    OtherVersion(Vec<u8>),
}

fn defect() -> impl Strategy<Value = Defect> {
    prop_oneof![
        4 => Just(Defect::None),
        1 => Just(Defect::Post),
        1 => Just(Defect::Http10),
        1 => Just(Defect::NoUpgradeHeader),
        1 => Just(Defect::NoUpgradeToken),
        1 => Just(Defect::NoKey),
        1 => Just(Defect::TwoKeys),
        1 => (0usize..24, prop::sample::select(&['!', '-', '_', '.', ' ', '*'][..]))
            .prop_map(|(i, c)| Defect::KeyAlphabet(i, c)),
        1 => any::<bool>().prop_map(Defect::KeyLength),
        1 => prop::sample::select(&['B', 'C', 'H', 'P', 'R', 'f', 'v', '/'][..])
            .prop_map(Defect::KeyTrailingBits),
        1 => Just(Defect::NoVersion),
        1 => Just(Defect::TwoVersions),
        1 => value_bytes()
            .prop_filter("not 13", |v| v != b"13")
            .prop_map(Defect::OtherVersion),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn backend_request_carries_no_hop_by_hop_or_connection_named_header_but_its_own(
        client in head(),
        f in forward_setup(),
    ) {
        let out = run_forward(&client, &f);
        let (connection, upgrade): (&[u8], Option<&[u8]>) = if f.upgrade {
            (b"upgrade", Some(b"websocket"))
        } else {
            (b"keep-alive", None)
        };
        for name in HOP {
            let want: Vec<Vec<u8>> = match name {
                "connection" => vec![connection.to_vec()],
                "upgrade" => upgrade.into_iter().map(<[u8]>::to_vec).collect(),
                _ => Vec::new(),
            };
            prop_assert_eq!(raw_values(&out, name), want, "{}", name);
        }
        // A header the client named in Connection only reaches the backend as
        // one the proxy writes itself (checked value by value above and in the
        // forwarding properties).
        let tokens = connection_tokens(&client);
        for (name, _) in lines_of(&client) {
            let own = HOP.contains(&name.as_str()) || PROXY_WRITTEN.contains(&name.as_str());
            if named_in(&tokens, &name) && !own {
                prop_assert!(!out.contains_key(name.as_str()), "{} leaked", name);
            }
        }
        prop_assert_eq!(is_websocket_upgrade(&out), f.upgrade);
        prop_assert_eq!(wants_upgrade(&out), f.upgrade);
    }

    #[test]
    fn backend_request_passes_every_end_to_end_header_unchanged_and_in_order(
        client in head(),
        f in forward_setup(),
    ) {
        let out = run_forward(&client, &f);
        let tokens = connection_tokens(&client);
        let chunked = client.contains_key("transfer-encoding");
        let want: Vec<_> = lines_of(&client)
            .into_iter()
            .filter(|(n, _)| {
                let dropped = HOP.contains(&n.as_str())
                    || PROXY_WRITTEN.contains(&n.as_str())
                    || named_in(&tokens, n)
                    || (chunked && n == "content-length");
                !dropped
            })
            .collect();
        let got: Vec<_> = lines_of(&out)
            .into_iter()
            .filter(|(n, _)| !HOP.contains(&n.as_str()) && !PROXY_WRITTEN.contains(&n.as_str()))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn backend_request_has_one_host_chosen_by_the_host_setting(
        client in head(),
        f in forward_setup(),
    ) {
        let out = run_forward(&client, &f);
        let configured = match &f.host {
            HostHeader::Keep => None,
            HostHeader::Backend => Some(f.backend),
            HostHeader::Set(v) => Some(v.as_str()),
        };
        let want = configured
            .filter(|v| valid_field_value(v))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| expected_client_host(&client, &f));
        prop_assert_eq!(raw_values(&out, "host"), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn x_forwarded_for_ends_with_the_client_and_keeps_the_chain_only_from_a_trusted_peer(
        client in head(),
        f in forward_setup(),
    ) {
        let out = run_forward(&client, &f);
        let ip = written_ip(f.ip);
        let xff = raw_values(&out, "x-forwarded-for");
        prop_assert_eq!(xff.len(), 1);
        let last = xff[0].rsplit(|&c| c == b',').next().map(ows_trim).unwrap_or_default();
        prop_assert_eq!(last, ip.as_bytes());
        prop_assert_eq!(last.parse_ip(), Some(f.ip.to_canonical()));

        let tokens = connection_tokens(&client);
        let chain: Vec<&[u8]> = if f.trusted && !named_in(&tokens, "x-forwarded-for") {
            client
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| ows_trim(v.as_bytes()))
                .filter(|v| !v.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        let mut want = Vec::new();
        for link in chain {
            want.extend_from_slice(link);
            want.extend_from_slice(b", ");
        }
        want.extend_from_slice(ip.as_bytes());
        prop_assert_eq!(&xff[0], &want);
    }

    #[test]
    fn other_forwarding_headers_are_the_proxys_own_unless_a_trusted_peer_set_them(
        client in head(),
        f in forward_setup(),
    ) {
        let out = run_forward(&client, &f);
        let tokens = connection_tokens(&client);
        // "Present": sent by a trusted peer, non-blank, not named in Connection.
        let present = |name: &str| -> Vec<Vec<u8>> {
            if !f.trusted || named_in(&tokens, name) {
                return Vec::new();
            }
            raw_values(&client, name)
                .into_iter()
                .filter(|v| !ows_trim(v).is_empty())
                .collect()
        };
        let or_own = |kept: Vec<Vec<u8>>, own: Option<Vec<u8>>| {
            if kept.is_empty() { own.into_iter().collect() } else { kept }
        };
        let scheme = if f.tls { "https" } else { "http" };
        prop_assert_eq!(
            raw_values(&out, "x-forwarded-proto"),
            or_own(present("x-forwarded-proto"), Some(scheme.into()))
        );
        prop_assert_eq!(
            raw_values(&out, "x-forwarded-host"),
            or_own(present("x-forwarded-host"), expected_client_host(&client, &f))
        );
        prop_assert_eq!(
            raw_values(&out, "x-real-ip"),
            or_own(present("x-real-ip"), Some(written_ip(f.ip).into_bytes()))
        );
        prop_assert_eq!(raw_values(&out, "forwarded"), present("forwarded"));
    }

    #[test]
    fn backend_request_from_headers_alone_matches_an_origin_form_request_head(
        client in head(),
        mut f in forward_setup(),
    ) {
        f.absolute = false;
        let ctx = ForwardContext {
            client_ip: f.ip,
            trusted: f.trusted,
            tls: f.tls,
            backend_authority: f.backend,
        };
        let alone = backend_request_headers(&client, &ctx, &f.host, f.upgrade);
        prop_assert_eq!(lines_of(&alone), lines_of(&run_forward(&client, &f)));
    }

    #[test]
    fn response_to_client_carries_no_hop_by_hop_header_except_the_101_handshake(
        backend in head(),
        status in status(),
    ) {
        let out = client_response_headers(status, &backend);
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        for name in HOP {
            let want = if switching && (name == "upgrade" || name == "connection") {
                raw_values(&backend, name)
            } else {
                Vec::new()
            };
            prop_assert_eq!(raw_values(&out, name), want, "{}", name);
        }
        let tokens = connection_tokens(&backend);
        for (name, _) in lines_of(&backend) {
            if named_in(&tokens, &name) && !(switching && HOP.contains(&name.as_str())) {
                prop_assert!(!out.contains_key(name.as_str()), "{} leaked", name);
            }
        }
    }

    #[test]
    fn response_to_client_passes_every_end_to_end_header_unchanged_and_in_order(
        backend in head(),
        status in status(),
    ) {
        let out = client_response_headers(status, &backend);
        let tokens = connection_tokens(&backend);
        let chunked = backend.contains_key("transfer-encoding");
        let want: Vec<_> = lines_of(&backend)
            .into_iter()
            .filter(|(n, _)| {
                let dropped = HOP.contains(&n.as_str())
                    || named_in(&tokens, n)
                    || (chunked && n == "content-length");
                !dropped
            })
            .collect();
        let got: Vec<_> = lines_of(&out)
            .into_iter()
            .filter(|(n, _)| !HOP.contains(&n.as_str()))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn upgrade_is_recognised_by_whole_tokens_in_any_case_position_and_line(
        upgrade_lines in prop::collection::vec(
            token_list(&["websocket", "websockets", "h2c", "web socket", "tls/1.0"]), 0..3),
        connection_lines in prop::collection::vec(
            token_list(&["upgrade", "upgraded", "keep-alive", "close", "x-upgrade"]), 0..3),
        noise in prop::collection::vec((one_of_mixed_case(&END_TO_END), value_bytes()), 0..4),
    ) {
        let mut lines = noise;
        lines.extend(upgrade_lines.iter().map(|v| ("Upgrade".to_owned(), v.clone())));
        lines.extend(connection_lines.iter().map(|v| ("Connection".to_owned(), v.clone())));
        let h = head_from(&lines);
        let has = |lines: &[Vec<u8>], token: &str| {
            lines.iter().any(|l| {
                l.split(|&c| c == b',').any(|t| ows_trim(t).eq_ignore_ascii_case(token.as_bytes()))
            })
        };
        let websocket = has(&upgrade_lines, "websocket");
        let upgrade = has(&connection_lines, "upgrade");
        prop_assert_eq!(is_websocket_upgrade(&h), websocket && upgrade);
        prop_assert_eq!(wants_upgrade(&h), !upgrade_lines.is_empty() || upgrade);
    }

    #[test]
    fn handshake_check_accepts_a_complete_request_and_refuses_each_defect(
        nonce in any::<[u8; 17]>(),
        upgrade_value in mixed_case("websocket"),
        connection in token_list(&["keep-alive", "close", "x-a"]),
        upgrade_token in mixed_case("upgrade"),
        noise in prop::collection::vec(
            (one_of_mixed_case(&["x-a", "cookie", "origin", "host", "sec-websocket-protocol"]),
             value_bytes()),
            0..4),
        defect in defect(),
    ) {
        let mut key = base64(&nonce[..16]);
        match &defect {
            Defect::KeyAlphabet(i, c) => key.replace_range(*i..*i + 1, &c.to_string()),
            Defect::KeyLength(longer) => {
                key = base64(if *longer { &nonce[..] } else { &nonce[..15] });
            }
            Defect::KeyTrailingBits(c) => key.replace_range(21..22, &c.to_string()),
            _ => {}
        }
        let mut connection = String::from_utf8(connection).unwrap();
        if !matches!(defect, Defect::NoUpgradeToken) {
            connection.push_str(", ");
            connection.push_str(&upgrade_token);
        }
        let mut lines = noise;
        if !matches!(defect, Defect::NoUpgradeHeader) {
            lines.push(("upgrade".into(), upgrade_value.into_bytes()));
        }
        lines.push(("connection".into(), connection.into_bytes()));
        if !matches!(defect, Defect::NoKey) {
            lines.push(("sec-websocket-key".into(), key.clone().into_bytes()));
        }
        if matches!(defect, Defect::TwoKeys) {
            lines.push(("sec-websocket-key".into(), key.into_bytes()));
        }
        match &defect {
            Defect::NoVersion => {}
            Defect::OtherVersion(v) => lines.push(("sec-websocket-version".into(), v.clone())),
            _ => lines.push(("sec-websocket-version".into(), b"13".to_vec())),
        }
        if matches!(defect, Defect::TwoVersions) {
            lines.push(("sec-websocket-version".into(), b"13".to_vec()));
        }
        let h = head_from(&lines);
        let method = if matches!(defect, Defect::Post) { Method::POST } else { Method::GET };
        let version = if matches!(defect, Defect::Http10) { Version::HTTP_10 } else { Version::HTTP_11 };
        let got = check_websocket_request(&method, version, &h).map_err(|r| r.status);
        let want = match defect {
            Defect::None => Ok(()),
            Defect::OtherVersion(_) => Err(StatusCode::UPGRADE_REQUIRED),
            _ => Err(StatusCode::BAD_REQUEST),
        };
        prop_assert_eq!(got, want);
    }

    #[test]
    fn accept_matches_only_the_exact_derived_accept(
        key in value_bytes(),
        other in value_bytes(),
    ) {
        use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
        let key = HeaderValue::from_bytes(&key).unwrap();
        let right = derive_accept_key(key.as_bytes());
        prop_assert!(accept_matches(&key, Some(&HeaderValue::from_str(&right).unwrap())));
        prop_assert!(!accept_matches(&key, None));
        // Padded, case-folded or otherwise different bytes are a mismatch.
        let padded = HeaderValue::from_str(&format!(" {right}")).unwrap();
        prop_assert!(!accept_matches(&key, Some(&padded)));
        if right.to_ascii_lowercase() != right {
            let folded = HeaderValue::from_str(&right.to_ascii_lowercase()).unwrap();
            prop_assert!(!accept_matches(&key, Some(&folded)));
        }
        let other = HeaderValue::from_bytes(&other).unwrap();
        prop_assert_eq!(accept_matches(&key, Some(&other)), other.as_bytes() == right.as_bytes());
    }

    #[test]
    fn negotiated_reports_deflate_only_for_a_permessage_deflate_extension(
        extension_lines in prop::collection::vec(
            prop::collection::vec(
                (
                    one_of_mixed_case(&[
                        "permessage-deflate",
                        "permessage-deflate-ish",
                        "x-webkit-deflate-frame",
                        "deflate",
                    ]),
                    prop::sample::select(&["", "; client_max_window_bits", " ;server_no_context_takeover", ";x=1"][..]),
                ),
                0..3,
            ),
            0..3,
        ),
        protocol in prop::option::of(one_of_mixed_case(&["chat", "superchat", "mqtt"])),
    ) {
        let mut lines = Vec::new();
        let mut deflate = false;
        for exts in &extension_lines {
            let mut line = Vec::new();
            for (name, params) in exts {
                deflate |= name.eq_ignore_ascii_case("permessage-deflate");
                line.push(format!("{name}{params}"));
            }
            lines.push(("sec-websocket-extensions".to_owned(), line.join(", ").into_bytes()));
        }
        if let Some(p) = &protocol {
            lines.push(("sec-websocket-protocol".to_owned(), p.clone().into_bytes()));
        }
        let joined: Vec<String> = extension_lines
            .iter()
            .filter(|exts| !exts.is_empty())
            .map(|exts| exts.iter().map(|(n, p)| format!("{n}{p}")).collect::<Vec<_>>().join(", "))
            .collect();
        let (p, e, d) = negotiated(&head_from(&lines));
        prop_assert_eq!(p, protocol);
        prop_assert_eq!(e, (!joined.is_empty()).then(|| joined.join(", ")));
        prop_assert_eq!(d, deflate);
    }

    #[test]
    fn event_header_list_is_the_display_list_for_any_head(h in head()) {
        let list = to_list(&h);
        prop_assert_eq!(list.len(), h.len());
        prop_assert_eq!(to_headers(&h).to_vec(), list);
    }

    #[test]
    fn v4_mapped_client_is_trusted_exactly_as_its_v4_address(
        ip in any::<Ipv4Addr>(),
        v4_nets in prop::collection::vec((any::<Ipv4Addr>(), 0u8..=32), 0..4),
        v6_nets in prop::collection::vec((any::<Ipv6Addr>(), 0u8..=128), 0..2),
    ) {
        let mut nets: Vec<ipnet::IpNet> = v4_nets
            .iter()
            .map(|&(a, len)| ipnet::Ipv4Net::new(a, len).unwrap().into())
            .collect();
        // Plain IPv6 networks (not in the mapped range) never hold an IPv4 client.
        nets.extend(
            v6_nets
                .iter()
                .filter(|(a, _)| a.to_ipv4_mapped().is_none())
                .map(|&(a, len)| ipnet::IpNet::from(ipnet::Ipv6Net::new(a, len.max(97)).unwrap())),
        );
        let inside = v4_nets.iter().any(|&(a, len)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(ip) & mask
        });
        prop_assert_eq!(is_trusted(IpAddr::V4(ip), &nets), inside);
        prop_assert_eq!(is_trusted(IpAddr::V6(ip.to_ipv6_mapped()), &nets), inside);
    }

    #[test]
    fn policy_functions_do_not_panic_on_arbitrary_heads(
        lines in prop::collection::vec(
            prop_oneof![3 => line(), 1 => (any_token_name(), value_bytes())],
            0..32),
        f in forward_setup(),
        status in status(),
        method in "[A-Z]{1,7}",
        key_name in any_token_name(),
        query in "[a-z0-9=&;%\"]{0,24}",
        long_connection in prop::option::weighted(0.1, 1000usize..2000),
    ) {
        let mut h = head_from(&lines);
        if let Some(n) = long_connection {
            let list = vec!["x-a"; n].join(",");
            h.append("connection", HeaderValue::from_str(&list).unwrap());
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for version in [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2] {
            let _ = check_websocket_request(&method, version, &h);
        }
        let _ = (is_websocket_upgrade(&h), wants_upgrade(&h));
        let out = run_forward(&h, &f);
        let _ = client_response_headers(status, &out);
        let _ = client_response_headers(status, &h);
        let _ = negotiated(&h);
        let _ = (to_list(&h), to_headers(&h));
        if let Some(key) = h.get("sec-websocket-key") {
            let _ = accept_matches(key, h.get("sec-websocket-accept"));
        }
        let uri: Uri = format!("/p?{query}").parse().unwrap_or_else(|_| Uri::from_static("/"));
        for k in [
            HashKey::Header(key_name.to_ascii_lowercase()),
            HashKey::Header(key_name.clone()),
            HashKey::Cookie(key_name.clone()),
            HashKey::Query(key_name),
        ] {
            let _ = hash_key_value(&k, &h, &uri);
        }
        let _ = is_trusted(f.ip, &[]);
    }
}

/// Parses the last element of a forwarding chain as an address.
trait ParseIp {
    fn parse_ip(&self) -> Option<IpAddr>;
}

impl ParseIp for &[u8] {
    fn parse_ip(&self) -> Option<IpAddr> {
        std::str::from_utf8(self).ok()?.parse().ok()
    }
}

#[test]
fn original_client_walks_x_forwarded_for_past_trusted_hops_only() {
    let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let xff = hm(&[
        ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
        ("x-forwarded-for", "10.0.0.3"),
    ]);
    // From a trusted peer: the first untrusted address from the right.
    assert_eq!(
        original_client(ip("10.0.0.1"), &xff, &nets),
        ip("198.51.100.7")
    );
    // From an untrusted peer the header is not believed.
    assert_eq!(
        original_client(ip("203.0.113.9"), &xff, &nets),
        ip("203.0.113.9")
    );
    // A spoofed entry left of an untrusted hop is never reached.
    let spoofed = hm(&[("x-forwarded-for", "1.1.1.1, 203.0.113.5")]);
    assert_eq!(
        original_client(ip("10.0.0.1"), &spoofed, &nets),
        ip("203.0.113.5")
    );
    // Garbage stops the walk at the hop that added it; no header: the peer.
    let junk = hm(&[("x-forwarded-for", "198.51.100.7, not-an-ip, 10.0.0.2")]);
    assert_eq!(
        original_client(ip("10.0.0.1"), &junk, &nets),
        ip("10.0.0.2")
    );
    assert_eq!(
        original_client(ip("10.0.0.1"), &HeaderMap::new(), &nets),
        ip("10.0.0.1")
    );
    // Only trusted hops: the leftmost.
    let inner = hm(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
    assert_eq!(
        original_client(ip("10.0.0.1"), &inner, &nets),
        ip("10.9.9.9")
    );
}
