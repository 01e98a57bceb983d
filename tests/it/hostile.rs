//! Hostile and broken input, as one table (issue 4 §3). Every row of [`CASES`] is
//! sent, one after another, to a lenient proxy or to a `strict = true` one, while a
//! canary tunnel on each proxy keeps exchanging sequence-checked messages; at the end
//! both canaries must have seen every echo, in order, with their tunnels never
//! closed. Each row's outcome (status, closed or not, what the backend saw, which
//! violation was published, what crossed the tunnel) is asserted.
//!
//! Rows covered by other test files (not repeated here):
//!
//! | case                                         | test                                                                          |
//! |----------------------------------------------|-------------------------------------------------------------------------------|
//! | client that sends nothing (408 at deadline)  | limits::stalled_and_silent_clients_get_408_at_the_request_head_deadline_while_tunnels_run |
//! | client dripping its head                     | limits::a_client_dripping_its_request_head_is_cut_at_the_deadline_not_kept_alive |
//! | head one byte over max_header_bytes → 431    | limits::request_head_of_max_header_bytes_is_served_and_one_byte_more_gets_431 |
//! | head that never ends → 431                   | limits::request_head_that_never_ends_gets_431_once_it_passes_max_header_bytes |
//! | one header over max_headers → 431            | limits::request_with_max_headers_is_served_and_one_header_more_gets_431       |
//! | TLS port: silence, garbage, plain HTTP       | limits::tls_clients_that_stall_or_send_garbage_or_plain_http_are_closed_while_wss_runs |
//! | connections over max_connections / per IP    | limits::fourth_tunnel_is_refused_while_three_are_open_and_admitted_once_one_ends |
//! | per-IP limit dodged through a trusted proxy  | limits::per_ip_limit_behind_a_trusted_proxy_counts_each_forwarded_client     |
//! | cross-site handshake (Origin not allowed) → 403 | ws_limits::a_handshake_from_an_origin_not_allowed_gets_403_and_never_reaches_a_backend |
//! | message over max_message_bytes (client / backend) | ws_limits::a_client_message_over_the_size_limit_gets_1009_and_the_backend_1001, ws_limits::a_backend_message_over_the_size_limit_gets_the_backend_1009_and_the_client_1001 |
//! | message flood over max_message_rate          | ws_limits::a_client_over_the_message_rate_gets_1008_after_its_burst          |
//! | valid frames read together with a violation (strict) | proxy::tunnel::relay_tests::strict_mode_forwards_the_valid_frames_read_together_with_a_violation |
//! | upgrade without Sec-WebSocket-Key → 400      | handshake::upgrade_without_a_key_gets_400                                     |
//! | key of the wrong length → 400                | handshake::upgrade_with_a_key_of_the_wrong_length_gets_400                    |
//! | Sec-WebSocket-Version 8 → 426                | handshake::upgrade_with_version_8_gets_426_naming_version_13                  |
//! | POST with Upgrade → 400                      | handshake::post_with_upgrade_gets_400                                         |
//! | HTTP/1.0 upgrade → 400                       | handshake::http_1_0_upgrade_gets_400                                          |
//! | h2c upgrade                                  | handshake::h2c_upgrade_is_proxied_as_a_plain_request_without_upgrade_headers  |
//! | backend 101 with a wrong accept → 502        | handshake::backend_101_with_a_wrong_accept_gives_502                          |
//! | backend closing mid-handshake → 502          | handshake::backend_closing_mid_handshake_gives_502                            |
//! | Content-Length + Transfer-Encoding → 400     | plain_http::request_with_content_length_and_chunked_is_refused_before_any_backend_is_contacted |
//! | client-fault bodies: bad chunk, cut short, stalled (408), over max_body_bytes (413), CL+TE either order, client reset mid-upload; half a WebSocket upgrade → 400; none counts against a backend | blame::client_faults_get_4xx_and_the_same_backends_serve_the_next_client |
//! | slow but steady upload longer than backend_response | blame::backend_timer_starts_once_a_slow_upload_has_been_sent |
//! | unmasked client frame (default / strict)     | control::an_unmasked_client_frame_is_reported_and_relayed_by_default, control::strict_mode_closes_a_tunnel_with_1002_on_an_unmasked_client_frame |
//! | client reset mid-frame                       | faults::client_reset_mid_frame_ends_its_tunnel_and_backend_connection_and_spares_others |
//! | backend reset mid-frame                      | faults::backend_reset_mid_frame_ends_the_client_stream_without_hanging_and_spares_others |
//! | client half-close                            | faults::client_half_close_reaches_the_backend_as_eof_while_the_backend_keeps_talking |
//! | 100 tunnels dropped without Close            | faults::a_hundred_tunnels_dropped_without_close_all_end_and_backends_return_to_zero |
//!
//! Choices where the RFCs leave room (what hyper 1 gives is what we assert):
//! - a bare-LF request is accepted (RFC 9112 §2.2 allows it) and forwarded with CRLF;
//! - a request target too long for `max_header_bytes` gets 431 (the whole head is
//!   over the limit), not 414;
//! - two identical `Content-Length` headers are either refused (400) or forwarded
//!   once: the backend never sees two;
//! - non-UTF-8 text (uncompressed) is a violation like the others: relayed and
//!   reported by default, refused under `strict = true`, but with Close 1007 (invalid
//!   frame payload data, RFC 6455 §7.4.1) instead of 1002.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::http_fixtures::HttpBackend;
use crate::common::wire::{frame, raw_upgrade, read_frame};
use crate::common::wire::{read_outcome, upgrade_request, Outcome, RawBackend};
use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{Dir, Event, Violation};
use tunnelscope::proxy::ProxyHandle;

/// Which proxy a row is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Lenient,
    Strict,
}

/// What a row does.
#[derive(Clone, Copy)]
enum Action {
    /// Connect, send these bytes, read what comes back (the client stays silent but
    /// keeps its side open).
    Send(fn() -> Vec<u8>),
    /// The same, then the client shuts down its sending side (EOF).
    SendEof(fn() -> Vec<u8>),
    /// Upgrade a raw tunnel to the raw backend, then one side writes these bytes.
    Frame(Dir, fn() -> Vec<u8>),
    /// Open and close this many connections, 50 at a time, in assorted ways.
    Churn(usize),
}

/// What the backends must have seen after a [`Action::Send`].
#[derive(Clone, Copy, Debug)]
enum Sees {
    /// No backend saw anything.
    Nothing,
    /// The HTTP backend got one request, with none of these headers, each of
    /// Content-Length and Transfer-Encoding at most once, and this body.
    Plain {
        without: &'static [&'static str],
        body: &'static str,
    },
    /// Either nothing, or one request as in `Plain` (for rows where refusing and a
    /// single clean forward are both right).
    NothingOrPlain { body: &'static str },
    /// The WebSocket echo backend got one more upgrade request.
    Upgrade,
}

/// The outcome a row must have.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An HTTP answer with one of these statuses; `closed`: whether the proxy must
    /// end the connection after it (None: either).
    Http {
        status: &'static [u16],
        closed: Option<bool>,
        sees: Sees,
    },
    /// The proxy ends the connection without any HTTP answer.
    ClosedSilently,
    /// Default mode: the violation is published and the bytes cross unchanged.
    /// Strict mode: the violation is published, the bytes do not cross, and the
    /// client gets a Close 1002 (1007 for bad UTF-8).
    Violation(Violation),
    /// The bytes cross unchanged and no violation is counted.
    Relayed,
    /// After the churn, the proxy holds only the canary tunnel and still upgrades.
    StillServing,
}

struct Case {
    name: &'static str,
    mode: Mode,
    action: Action,
    expect: Expect,
}

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const fn http(status: &'static [u16], closed: Option<bool>, sees: Sees) -> Expect {
    Expect::Http {
        status,
        closed,
        sees,
    }
}

const BAD: Expect = http(&[400], Some(true), Sees::Nothing);

fn get_http(extra: &str) -> Vec<u8> {
    format!("GET /http HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// An upgrade request with `extra` header lines added before the blank line.
fn upgrade_with(extra: &str) -> Vec<u8> {
    let base = upgrade_request("/ws");
    format!("{}{extra}\r\n", base.strip_suffix("\r\n").unwrap()).into_bytes()
}

/// The first flight of a real TLS client (a ClientHello), from rustls.
fn client_hello() -> Vec<u8> {
    let pki = crate::common::certs::TestPki::new();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16, "a TLS handshake record");
    out
}

const CASES: &[Case] = &[
    // ---- HTTP heads the parser must refuse -------------------------------------
    Case {
        name: "garbage request line",
        mode: Mode::Lenient,
        action: Action::Send(|| b"\x01\x02\x03 ~~garbage~~ \xff\r\n\r\n".to_vec()),
        expect: BAD,
    },
    Case {
        name: "request line with an invalid method token",
        mode: Mode::Lenient,
        action: Action::Send(|| b"G@T /http HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        expect: BAD,
    },
    Case {
        name: "binary junk without any line end, then EOF",
        mode: Mode::Lenient,
        action: Action::SendEof(|| (0..=255u8).cycle().take(600).collect()),
        expect: BAD,
    },
    Case {
        name: "obs-fold header continuation line",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http("X-Folded: first\r\n second\r\n")),
        expect: BAD,
    },
    Case {
        name: "bare CR line endings",
        mode: Mode::Lenient,
        action: Action::Send(|| b"GET /http HTTP/1.1\rHost: localhost\r\r".to_vec()),
        expect: BAD,
    },
    Case {
        name: "header name with a space before the colon",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http("X-Spaced : value\r\n")),
        expect: BAD,
    },
    Case {
        name: "header line without a colon",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http("NoColonHere\r\n")),
        expect: BAD,
    },
    Case {
        name: "NUL byte in a header value",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http("X-Nul: a\0b\r\n")),
        expect: BAD,
    },
    Case {
        name: "NUL byte in a header value of an upgrade",
        mode: Mode::Lenient,
        action: Action::Send(|| upgrade_with("X-Nul: a\0b\r\n")),
        expect: BAD,
    },
    Case {
        name: "NUL byte in the request target",
        mode: Mode::Lenient,
        action: Action::Send(|| b"GET /http\0x HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        expect: BAD,
    },
    Case {
        name: "two different Content-Length headers",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
              Content-Length: 6\r\nConnection: close\r\n\r\nhello!"
                .to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "two identical Content-Length headers",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\nhello"
                .to_vec()
        }),
        expect: http(
            &[400, 200],
            Some(true),
            Sees::NothingOrPlain { body: "hello" },
        ),
    },
    Case {
        name: "Content-Length list \"5, 5\" in one header",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 5\r\n\
              Connection: close\r\n\r\nhello"
                .to_vec()
        }),
        expect: http(
            &[400, 200],
            Some(true),
            Sees::NothingOrPlain { body: "hello" },
        ),
    },
    Case {
        name: "non-numeric Content-Length",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\nhello".to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "negative Content-Length",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\nhello".to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "Content-Length with a plus sign",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello".to_vec()
        }),
        expect: BAD,
    },
    // ---- client faults in the body: the client's, never the backend's -------------
    Case {
        name: "chunked body with a bad chunk size",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                .to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "Content-Length body cut short by EOF",
        mode: Mode::Lenient,
        action: Action::SendEof(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50\r\n\r\nshort".to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "Content-Length and Transfer-Encoding",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"POST /http HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\
              Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"
                .to_vec()
        }),
        expect: BAD,
    },
    Case {
        name: "Transfer-Encoding and Content-Length on an upgrade",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            upgrade_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")
        }),
        expect: BAD,
    },
    Case {
        name: "repeated Sec-WebSocket-Key",
        mode: Mode::Lenient,
        action: Action::Send(|| upgrade_with("Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n")),
        expect: http(&[400], None, Sees::Nothing),
    },
    Case {
        name: "repeated Sec-WebSocket-Version",
        mode: Mode::Lenient,
        action: Action::Send(|| upgrade_with("Sec-WebSocket-Version: 13\r\n")),
        expect: http(&[400], None, Sees::Nothing),
    },
    Case {
        name: "header value of 1 MiB",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http(&format!("X-Huge: {}\r\n", "a".repeat(1 << 20)))),
        expect: http(&[431], Some(true), Sees::Nothing),
    },
    Case {
        name: "request target of 64 KiB",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            format!(
                "GET /http/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "t".repeat(64 << 10)
            )
            .into_bytes()
        }),
        expect: http(&[431], Some(true), Sees::Nothing),
    },
    Case {
        name: "HTTP/2 connection preface on the HTTP/1.1 port",
        mode: Mode::Lenient,
        // hyper (HTTP/1 only) hangs up on the preface without an HTTP/1.1 answer,
        // which an h2 client could not read anyway.
        action: Action::Send(|| {
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec()
        }),
        expect: Expect::ClosedSilently,
    },
    Case {
        name: "unknown HTTP version",
        mode: Mode::Lenient,
        action: Action::Send(|| b"GET /http HTTP/9.9\r\nHost: localhost\r\n\r\n".to_vec()),
        expect: BAD,
    },
    Case {
        name: "TLS ClientHello on the plain port, then silence",
        mode: Mode::Lenient,
        action: Action::Send(client_hello),
        expect: BAD,
    },
    // ---- heads that are odd but acceptable ---------------------------------------
    Case {
        name: "bare LF line endings on an upgrade",
        mode: Mode::Lenient,
        action: Action::Send(|| upgrade_request("/ws").replace("\r\n", "\n").into_bytes()),
        expect: http(&[101], Some(false), Sees::Upgrade),
    },
    Case {
        name: "Upgrade: websocket without Connection: upgrade",
        mode: Mode::Lenient,
        action: Action::Send(|| get_http("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")),
        // Answered by the proxy: forwarded as plain HTTP, a WebSocket-only backend
        // would hang up on it and be blamed.
        expect: http(&[400], None, Sees::Nothing),
    },
    Case {
        name: "Connection: upgrade without Upgrade",
        mode: Mode::Lenient,
        action: Action::Send(|| {
            b"GET /http HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade, close\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n"
                .to_vec()
        }),
        expect: http(
            &[200],
            Some(true),
            Sees::Plain {
                without: &["upgrade"],
                body: "",
            },
        ),
    },
    Case {
        name: "half a request head, then EOF",
        mode: Mode::Lenient,
        action: Action::SendEof(|| b"GET /http HTTP/1.1\r\nHost: loc".to_vec()),
        expect: Expect::ClosedSilently,
    },
    // ---- frames after the upgrade, default mode: reported and relayed -------------
    Case {
        name: "reserved data opcode 0x3",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || frame(0x3, b"odd", Some(MASK))),
        expect: Expect::Violation(Violation::ReservedOpcode(0x3)),
    },
    Case {
        name: "reserved control opcode 0xB",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || frame(0xB, b"odd", Some(MASK))),
        expect: Expect::Violation(Violation::ReservedOpcode(0xB)),
    },
    Case {
        name: "reserved opcode 0xF from the backend",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::BackendToClient, || frame(0xF, b"odd", None)),
        expect: Expect::Violation(Violation::ReservedOpcode(0xF)),
    },
    Case {
        name: "64-bit length with the top bit set",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, top_bit_frame),
        expect: Expect::Violation(Violation::LengthTopBitSet),
    },
    Case {
        name: "ping of 126 bytes (control frame > 125)",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x9, &[b'p'; 126], Some(MASK))
        }),
        expect: Expect::Violation(Violation::OversizeControlFrame(126)),
    },
    Case {
        name: "masked server frame",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::BackendToClient, || frame(0x1, b"masked", Some(MASK))),
        expect: Expect::Violation(Violation::MaskedServerFrame),
    },
    Case {
        name: "close frame carrying code 1005 on the wire",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x8, &1005u16.to_be_bytes(), Some(MASK))
        }),
        expect: Expect::Violation(Violation::BadClosePayload),
    },
    Case {
        name: "close frame with a one-byte payload",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::BackendToClient, || frame(0x8, &[3], None)),
        expect: Expect::Violation(Violation::BadClosePayload),
    },
    Case {
        name: "RSV1 set with no extension negotiated",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            let mut f = frame(0x1, b"rsv", Some(MASK));
            f[0] |= 0x40;
            f
        }),
        expect: Expect::Violation(Violation::ReservedBits(0b100)),
    },
    Case {
        name: "fragmented ping (control frame without FIN)",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            let mut f = frame(0x9, b"frag", Some(MASK));
            f[0] &= 0x7F;
            f
        }),
        expect: Expect::Violation(Violation::FragmentedControlFrame),
    },
    Case {
        name: "continuation frame with no message started",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::BackendToClient, || frame(0x0, b"orphan", None)),
        expect: Expect::Violation(Violation::BadContinuation),
    },
    Case {
        name: "non-UTF-8 text frame",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x1, b"\xff\xfe\xc0\xaf", Some(MASK))
        }),
        expect: Expect::Violation(Violation::InvalidUtf8),
    },
    Case {
        name: "text message ending inside a UTF-8 sequence, over two fragments",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::BackendToClient, || {
            let mut f = frame(0x1, b"euro \xe2", None);
            f[0] &= 0x7F;
            f.extend(frame(0x0, b"\x82", None));
            f
        }),
        expect: Expect::Violation(Violation::InvalidUtf8),
    },
    Case {
        name: "UTF-8 sequence split across two fragments is fine",
        mode: Mode::Lenient,
        action: Action::Frame(Dir::ClientToBackend, || {
            let mut f = frame(0x1, b"euro \xe2\x82", Some(MASK));
            f[0] &= 0x7F;
            f.extend(frame(0x0, b"\xac!", Some(MASK)));
            f
        }),
        expect: Expect::Relayed,
    },
    // ---- the same in strict mode: refused with Close 1002 ---------------------------
    Case {
        name: "strict: reserved data opcode 0x3",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, || frame(0x3, b"odd", Some(MASK))),
        expect: Expect::Violation(Violation::ReservedOpcode(0x3)),
    },
    Case {
        name: "strict: 64-bit length with the top bit set",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, top_bit_frame),
        expect: Expect::Violation(Violation::LengthTopBitSet),
    },
    Case {
        name: "strict: ping of 126 bytes",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x9, &[b'p'; 126], Some(MASK))
        }),
        expect: Expect::Violation(Violation::OversizeControlFrame(126)),
    },
    Case {
        name: "strict: masked server frame",
        mode: Mode::Strict,
        action: Action::Frame(Dir::BackendToClient, || frame(0x1, b"masked", Some(MASK))),
        expect: Expect::Violation(Violation::MaskedServerFrame),
    },
    Case {
        name: "strict: close frame carrying code 1005",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x8, &1005u16.to_be_bytes(), Some(MASK))
        }),
        expect: Expect::Violation(Violation::BadClosePayload),
    },
    Case {
        name: "strict: RSV2 set with no extension negotiated",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, || {
            let mut f = frame(0x2, b"rsv", Some(MASK));
            f[0] |= 0x20;
            f
        }),
        expect: Expect::Violation(Violation::ReservedBits(0b010)),
    },
    Case {
        name: "strict: non-UTF-8 text frame from the backend",
        mode: Mode::Strict,
        action: Action::Frame(Dir::BackendToClient, || frame(0x1, b"\xc3\x28", None)),
        expect: Expect::Violation(Violation::InvalidUtf8),
    },
    Case {
        name: "strict: surrogate in a client text frame",
        mode: Mode::Strict,
        action: Action::Frame(Dir::ClientToBackend, || {
            frame(0x1, b"\xed\xa0\x80", Some(MASK))
        }),
        expect: Expect::Violation(Violation::InvalidUtf8),
    },
    // ---- volume -----------------------------------------------------------------
    Case {
        name: "1000 connections opened and closed rapidly",
        mode: Mode::Lenient,
        action: Action::Churn(1000),
        expect: Expect::StillServing,
    },
    Case {
        name: "strict: 1000 connections opened and closed rapidly",
        mode: Mode::Strict,
        action: Action::Churn(1000),
        expect: Expect::StillServing,
    },
];

/// A masked binary frame header announcing 2^63 + 5 bytes, then five payload bytes.
fn top_bit_frame() -> Vec<u8> {
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(0x8000_0000_0000_0005u64).to_be_bytes());
    f.extend_from_slice(&MASK);
    f.extend_from_slice(b"12345");
    f
}

/// One proxy under test with its canary.
struct Target {
    proxy: ProxyHandle,
    addr: SocketAddr,
    canary: Canary,
}

/// A tunnel exchanging numbered messages in a background task, each echo checked in
/// order, until stopped.
struct Canary {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(u64, Client), String>>,
}

impl Canary {
    async fn start(addr: SocketAddr) -> Canary {
        let mut ws = connect(addr, "/canary").await;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tokio::select! {
                    _ = stopped.changed() => return Ok((n, ws)),
                    _ = tick.tick() => {}
                }
                let text = format!("canary {n}");
                ws.send(Message::text(text.clone()))
                    .await
                    .map_err(|e| format!("send of #{n} failed: {e}"))?;
                let got = tokio::time::timeout(WAIT, async {
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            other => return other,
                        }
                    }
                })
                .await
                .map_err(|_| format!("no echo of #{n} within {WAIT:?}"))?;
                match got {
                    Some(Ok(Message::Text(t))) if t.as_str() == text => n += 1,
                    other => return Err(format!("expected the echo of {text:?}, got {other:?}")),
                }
            }
        });
        Canary { stop, task }
    }

    /// Stops the canary; returns how many echoes it checked and its still-open client.
    async fn finish(self) -> (u64, Client) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("canary stops in time")
            .expect("canary task did not panic")
            .unwrap_or_else(|e| panic!("the canary noticed: {e}"))
    }
}

struct Backends {
    echo: Backend,
    http: HttpBackend,
    raw: RawBackend,
}

fn config(top: &str, b: &Backends) -> String {
    format!(
        "{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/raw\"\npool = \"raw\"\n\n\
         [[route]]\npath = \"/http\"\npool = \"http\"\n\n\
         [[route]]\npath = \"/\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n\n\
         [pool.raw]\n[[pool.raw.server]]\naddr = \"{}\"\n\n\
         [pool.http]\n[[pool.http.server]]\naddr = \"{}\"\n",
        b.echo.addr, b.raw.addr, b.http.addr
    )
}

async fn target(top: &str, b: &Backends) -> Target {
    let proxy = proxy(&config(top, b)).await;
    let addr = proxy.local_addrs()[0];
    let canary = Canary::start(addr).await;
    Target {
        proxy,
        addr,
        canary,
    }
}

/// Sends `bytes` while reading concurrently (so a proxy that answers and closes
/// before the last byte is written cannot make the answer vanish in a reset).
async fn send_reading(addr: SocketAddr, bytes: &[u8], eof: bool) -> Outcome {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        if eof {
            let _ = wr.shutdown().await;
        }
        wr // otherwise kept open: the client goes silent, it does not hang up
    });
    let out = read_outcome(&mut rd).await;
    drop(writer);
    out
}

async fn run_send(case: &Case, t: &Target, b: &Backends, bytes: Vec<u8>, eof: bool) {
    let name = case.name;
    let (http_before, ws_before) = (b.http.requests().len(), b.echo.seen().len());
    let started = Instant::now();
    let out = send_reading(t.addr, &bytes, eof).await;
    let elapsed = started.elapsed();
    let http_new: Vec<_> = b.http.requests().into_iter().skip(http_before).collect();
    let ws_new = b.echo.seen().len() - ws_before;
    match case.expect {
        Expect::ClosedSilently => {
            assert!(out.ended, "{name}: not closed");
            assert!(out.bytes.is_empty(), "{name}: answered {:?}", out.text());
            assert!(
                elapsed < Duration::from_secs(5),
                "{name}: closed only after {elapsed:?}"
            );
            assert!(
                http_new.is_empty() && ws_new == 0,
                "{name}: reached a backend"
            );
        }
        Expect::Http {
            status,
            closed,
            sees,
        } => {
            let got = out.status();
            assert!(
                got.is_some_and(|s| status.contains(&s)),
                "{name}: expected status {status:?}, got {:?}",
                out.text()
            );
            if let Some(closed) = closed {
                assert_eq!(out.ended, closed, "{name}: closed after the answer?");
            }
            // An answer to junk comes at once, not at a deadline.
            assert!(
                elapsed < Duration::from_secs(5),
                "{name}: answered after {elapsed:?}"
            );
            let plain_ok = |without: &[&str], body: &str| {
                assert_eq!(http_new.len(), 1, "{name}: backend requests {http_new:?}");
                let r = &http_new[0];
                for h in without {
                    assert!(!r.headers.has(h), "{name}: backend saw {h}: {r:?}");
                }
                let conn = r.headers.all("connection").join(",").to_ascii_lowercase();
                assert!(!conn.contains("upgrade"), "{name}: backend saw {r:?}");
                for h in ["content-length", "transfer-encoding"] {
                    assert!(
                        r.headers.all(h).len() <= 1,
                        "{name}: backend saw an ambiguous {h}: {r:?}"
                    );
                }
                assert_eq!(r.body, body.as_bytes(), "{name}: body");
                assert_eq!(ws_new, 0, "{name}: reached the WebSocket backend");
            };
            match sees {
                Sees::Nothing => {
                    assert!(http_new.is_empty(), "{name}: HTTP backend saw {http_new:?}");
                    assert_eq!(ws_new, 0, "{name}: reached the WebSocket backend");
                }
                Sees::Plain { without, body } => plain_ok(without, body),
                Sees::NothingOrPlain { body } => {
                    if got == Some(400) {
                        assert!(http_new.is_empty(), "{name}: refused yet forwarded");
                    } else {
                        plain_ok(&[], body);
                    }
                }
                Sees::Upgrade => {
                    assert_eq!(ws_new, 1, "{name}: the upgrade did not reach the backend");
                    assert!(http_new.is_empty());
                }
            }
        }
        ref other => panic!("{name}: {other:?} is not an outcome of sending bytes"),
    }
    eprintln!("ok: {name}: {:?}", out.status());
}

/// The tunnel's client address as the proxy sees it: our raw client's local address.
fn violations_of(proxy: &ProxyHandle, client: SocketAddr) -> u64 {
    let snap = proxy.snapshot();
    let t = snap
        .tunnels
        .iter()
        .find(|t| t.client == client)
        .expect("the raw tunnel is listed");
    t.stats.client_to_backend.violations + t.stats.backend_to_client.violations
}

async fn read_exactly(tcp: &mut TcpStream, len: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0; len];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: bytes in time"))
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    buf
}

async fn run_frame(case: &Case, t: &Target, b: &mut Backends, dir: Dir, bytes: Vec<u8>) {
    let name = case.name;
    let mut events = t.proxy.subscribe();
    let mut client = raw_upgrade(t.addr).await;
    let client_addr = client.local_addr().unwrap();
    let mut backend = b.raw.accept().await.tcp;
    let (from, to) = match dir {
        Dir::ClientToBackend => (&mut client, &mut backend),
        Dir::BackendToClient => (&mut backend, &mut client),
    };
    from.write_all(&bytes).await.unwrap();
    match (case.expect, case.mode) {
        (Expect::Violation(v), mode) => {
            let ev = wait_event(
                &mut events,
                |e| matches!(e, Event::Violation { violation, .. } if *violation == v),
            )
            .await;
            let Event::Violation { dir: seen_dir, .. } = ev else {
                unreachable!()
            };
            assert_eq!(seen_dir, dir, "{name}: direction");
            if mode == Mode::Lenient {
                let got = read_exactly(to, bytes.len(), name).await;
                assert_eq!(got, bytes, "{name}: not relayed unchanged");
                assert!(violations_of(&t.proxy, client_addr) >= 1, "{name}: counted");
            } else {
                // The client is told 1002 (1007 for bad UTF-8); the offending bytes
                // never reach the peer.
                let want = match v {
                    Violation::InvalidUtf8 => 1007u16,
                    _ => 1002,
                };
                let (op, payload) = read_frame(&mut client).await.expect("a Close, not EOF");
                assert_eq!(op, 0x8, "{name}: expected a Close frame");
                assert_eq!(payload[..2], want.to_be_bytes(), "{name}: close code");
                if dir == Dir::ClientToBackend {
                    // The backend gets a masked Close 1002 (even when the withheld
                    // bytes left the scanner mid-frame, as with the 2^63 length),
                    // never the offending frame.
                    let mut head = [0u8; 2];
                    tokio::time::timeout(WAIT, backend.read_exact(&mut head))
                        .await
                        .unwrap_or_else(|_| panic!("{name}: the backend connection lingers"))
                        .unwrap_or_else(|e| panic!("{name}: the backend got no Close: {e}"));
                    assert_eq!(head[0], 0x88, "{name}: the backend got more than a Close");
                    assert_eq!(head[1] & 0x80, 0x80, "{name}: the Close is masked");
                    let mut rest = vec![0u8; 4 + (head[1] & 0x7f) as usize];
                    backend.read_exact(&mut rest).await.unwrap();
                    let code = [rest[4] ^ rest[0], rest[5] ^ rest[1]];
                    assert_eq!(code, want.to_be_bytes(), "{name}: backend close code");
                }
            }
        }
        (Expect::Relayed, _) => {
            let got = read_exactly(to, bytes.len(), name).await;
            assert_eq!(got, bytes, "{name}: not relayed unchanged");
            // A well-formed frame behind it proves the tunnel still relays.
            let follow = match dir {
                Dir::ClientToBackend => frame(0x1, b"after", Some(MASK)),
                Dir::BackendToClient => frame(0x1, b"after", None),
            };
            from.write_all(&follow).await.unwrap();
            assert_eq!(read_exactly(to, follow.len(), name).await, follow);
            assert_eq!(violations_of(&t.proxy, client_addr), 0, "{name}: reported");
        }
        (other, _) => panic!("{name}: {other:?} is not an outcome of a frame"),
    }
    eprintln!("ok: {name}");
}

/// One churned connection, in one of several rude ways.
async fn rude_connection(addr: SocketAddr, i: usize) {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        panic!("connection #{i} refused");
    };
    match i % 4 {
        0 => {}
        1 => {
            let _ = tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: lo").await;
        }
        2 => {
            let _ = tcp.write_all(upgrade_request("/ws").as_bytes()).await;
            let mut buf = [0u8; 12];
            let _ = tokio::time::timeout(WAIT, tcp.read_exact(&mut buf)).await;
        }
        _ => {
            let _ = tcp.set_zero_linger();
            let _ = tcp.write_all(b"\x16\x03\x01junk").await;
        }
    }
}

async fn run_churn(case: &Case, t: &Target, n: usize) {
    let name = case.name;
    let addr = t.addr;
    tokio::time::timeout(
        WAIT * 3,
        futures_util::stream::iter(0..n)
            .map(|i| rude_connection(addr, i))
            .buffer_unordered(50)
            .collect::<Vec<()>>(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name}: churn did not finish in time"));
    // Every churned tunnel ends; only the canary stays.
    let deadline = Instant::now() + WAIT;
    loop {
        let tunnels = t.proxy.snapshot().tunnels;
        if tunnels.len() == 1 && tunnels[0].path == "/canary" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} tunnels still listed",
            tunnels.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ws = connect(addr, "/after-churn").await;
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("still here"));
    eprintln!("ok: {name}");
}

#[tokio::test]
async fn hostile_table_gets_its_expected_outcomes_while_canaries_never_notice() {
    assert!(CASES.len() >= 40, "the table has {} rows", CASES.len());
    let mut b = Backends {
        echo: Backend::start("echo").await,
        http: HttpBackend::start("http").await,
        raw: RawBackend::start().await,
    };
    let lenient = target("", &b).await;
    let strict = target("[proxy]\nstrict = true", &b).await;

    for case in CASES {
        let t = match case.mode {
            Mode::Lenient => &lenient,
            Mode::Strict => &strict,
        };
        match case.action {
            Action::Send(bytes) => run_send(case, t, &b, bytes(), false).await,
            Action::SendEof(bytes) => run_send(case, t, &b, bytes(), true).await,
            Action::Frame(dir, bytes) => run_frame(case, t, &mut b, dir, bytes()).await,
            Action::Churn(n) => run_churn(case, t, n).await,
        }
    }

    for (which, t) in [("lenient", lenient), ("strict", strict)] {
        let (echoes, mut ws) = t.canary.finish().await;
        assert!(
            echoes >= 20,
            "{which}: the canary only exchanged {echoes} messages"
        );
        let listed = t.proxy.snapshot().tunnels;
        assert!(
            listed.iter().any(|tn| tn.path == "/canary"),
            "{which}: the canary tunnel is gone"
        );
        // And it still answers, in order, after everything.
        ws.send(Message::text("last")).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text("last"));
        eprintln!("{which}: canary checked {echoes} echoes in order");
    }
}
