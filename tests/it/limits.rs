//! Every peer-controlled size and time is bounded: connections in total and per
//! client IP, request head bytes and header count, the time to send a request head
//! or finish a TLS handshake, and idle tunnels. A client over a limit gets a clear
//! answer (or is closed) while everyone else keeps working.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::certs::TestPki;
use crate::common::clients::{expect_close, hang_up};
use crate::common::*;
use crate::common::{clients::*, wire::*};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnelscope::event::{Event, Side};

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn echo(ws: &mut Client, text: &str) {
    echo_on(ws, text).await;
}

#[tokio::test]
async fn fourth_tunnel_is_refused_while_three_are_open_and_admitted_once_one_ends() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[limits]\nmax_connections = 3\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(addr, "/").await);
    }
    for (i, ws) in held.iter_mut().enumerate() {
        echo(ws, &format!("before {i}")).await;
    }

    assert_refused(addr, LOCAL).await;

    for (i, ws) in held.iter_mut().enumerate() {
        echo(ws, &format!("after {i}")).await;
    }
    hang_up(held.pop().unwrap()).await;
    wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let mut fourth = connect_once_admitted(LOCAL, addr).await;
    echo(&mut fourth, "admitted").await;
    for ws in &mut held {
        echo(ws, "still here").await;
    }
}

#[tokio::test]
async fn connections_still_waiting_for_their_request_head_count_against_max_connections() {
    let b = Backend::start("b").await;
    // One event loop, so one accept queue: connections are admitted in the order they
    // were made, and the fourth is the one refused.
    let proxy = proxy(&format!(
        "[proxy]\nthreads = 1\n[limits]\nmax_connections = 3\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    // Accepted in order by one accept loop: these three take the places.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(TcpStream::connect(addr).await.unwrap());
    }

    assert_refused(addr, LOCAL).await;

    // The three are served when they finally send their requests...
    for tcp in &mut waiting[1..] {
        tcp.write_all(upgrade_request("/").as_bytes())
            .await
            .unwrap();
        let out = read_outcome(tcp).await;
        assert_eq!(out.status(), Some(101), "{}", out.text());
    }
    // ...and one leaving frees a place (the proxy notices the EOF).
    drop(waiting.remove(0));
    let mut ws = connect_once_admitted(LOCAL, addr).await;
    echo(&mut ws, "admitted").await;
}

#[tokio::test]
async fn max_connections_holds_across_event_loops() {
    let b = Backend::start("b").await;
    // Four loops, each with its own accept queue: which connection is refused
    // depends on which loop gets to it first, but never more than the limit is served.
    let proxy = proxy(&format!(
        "[proxy]\nthreads = 4\n[limits]\nmax_connections = 3\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut served = 0;
    let mut refused = 0;
    for tcp in &mut conns {
        let _ = tcp.write_all(upgrade_request("/").as_bytes()).await;
        let out = read_outcome(tcp).await;
        match out.status() {
            Some(101) => served += 1,
            None if out.ended && out.bytes.is_empty() => refused += 1,
            _ => panic!("unexpected answer: {}", out.text()),
        }
    }
    assert_eq!((served, refused), (3, 3));
}

#[tokio::test]
async fn third_tunnel_from_one_ip_is_refused_while_another_loopback_ip_is_admitted() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[limits]\nmax_connections_per_ip = 2\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let mut mine = vec![
        connect_from(LOCAL, addr).await,
        connect_from(LOCAL, addr).await,
    ];
    for ws in &mut mine {
        echo(ws, "hello").await;
    }

    assert_refused(addr, LOCAL).await;

    let mut theirs = vec![
        connect_from(OTHER, addr).await,
        connect_from(OTHER, addr).await,
    ];
    for ws in &mut theirs {
        echo(ws, "from 127.0.0.2").await;
    }
    assert_refused(addr, OTHER).await;
    for ws in mine.iter_mut().chain(theirs.iter_mut()) {
        echo(ws, "still here").await;
    }
}

/// A request for `/` padded with an `X-Pad` header so the head is exactly `len`
/// bytes, request line and final blank line included.
fn upgrade_request_of_len(len: usize) -> String {
    let base = upgrade_request("/");
    let stem = "X-Pad: \r\n";
    let pad = len
        .checked_sub(base.len() + stem.len())
        .expect("len fits the upgrade request");
    let head = base.strip_suffix("\r\n").unwrap();
    let out = format!("{head}X-Pad: {}\r\n\r\n", "a".repeat(pad));
    assert_eq!(out.len(), len);
    out
}

#[tokio::test]
async fn request_head_of_max_header_bytes_is_served_and_one_byte_more_gets_431() {
    // 2048 is well under hyper's 8192-byte read buffer floor: the limit is still
    // exact, because hyper's max_header_size checks the parsed head length.
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[limits]\nmax_header_bytes = 2048\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];

    let fits = send_and_read(addr, upgrade_request_of_len(2048).as_bytes()).await;
    assert_eq!(fits.status(), Some(101), "{}", fits.text());

    let over = send_and_read(addr, upgrade_request_of_len(2049).as_bytes()).await;
    assert_eq!(over.status(), Some(431), "{}", over.text());
    assert!(over.ended, "the connection is closed after the 431");
    assert_eq!(
        b.seen().len(),
        1,
        "only the head that fits reached the backend"
    );
}

#[tokio::test]
async fn request_head_that_never_ends_gets_431_once_it_passes_max_header_bytes() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[limits]\nmax_header_bytes = 2048\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    // 4 KiB of head without its blank line: no request is ever complete.
    let mut head = upgrade_request("/").trim_end().to_string();
    head.push_str(&format!("\r\nX-Pad: {}", "a".repeat(4096)));
    let out = send_and_read(proxy.local_addrs()[0], head.as_bytes()).await;
    assert_eq!(out.status(), Some(431), "{}", out.text());
    assert!(out.ended);
    assert!(b.seen().is_empty());
}

/// The upgrade request with `extra` more `X-Extra-N` headers (it has 5 of its own).
fn upgrade_request_with_headers(extra: usize) -> String {
    let base = upgrade_request("/");
    let head = base.strip_suffix("\r\n").unwrap();
    let extra: String = (0..extra)
        .map(|i| format!("X-Extra-{i}: {i}\r\n"))
        .collect();
    format!("{head}{extra}\r\n")
}

#[tokio::test]
async fn request_with_max_headers_is_served_and_one_header_more_gets_431() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[limits]\nmax_headers = 8\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];

    let fits = send_and_read(addr, upgrade_request_with_headers(3).as_bytes()).await;
    assert_eq!(fits.status(), Some(101), "{}", fits.text());

    let over = send_and_read(addr, upgrade_request_with_headers(4).as_bytes()).await;
    assert_eq!(over.status(), Some(431), "{}", over.text());
    assert!(over.ended);
    assert_eq!(b.seen().len(), 1);
}

/// Keeps a canary tunnel busy (an echo every 50 ms) until `work` is done; returns
/// what `work` returned and how many echoes crossed meanwhile.
async fn with_canary<T>(
    canary: &mut Client,
    work: impl std::future::Future<Output = T>,
) -> (T, usize) {
    tokio::pin!(work);
    let mut echoes = 0;
    loop {
        tokio::select! {
            out = &mut work => return (out, echoes),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                echo(canary, &format!("canary {echoes}")).await;
                echoes += 1;
            }
        }
    }
}

#[tokio::test]
async fn stalled_and_silent_clients_get_408_at_the_request_head_deadline_while_tunnels_run() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[timeouts]\nrequest_head = \"300ms\"\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let mut canary = connect(addr, "/").await;
    echo(&mut canary, "first").await;

    let started = Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"GET /chat HT").await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let ((stalled, silent), echoes) = with_canary(&mut canary, async {
        tokio::join!(
            async {
                let out = read_outcome(&mut stalled).await;
                (out, started.elapsed())
            },
            async {
                let out = read_outcome(&mut silent).await;
                (out, started.elapsed())
            },
        )
    })
    .await;

    for (who, (out, after)) in [("half a request line", stalled), ("nothing", silent)] {
        assert_eq!(out.status(), Some(408), "{who}: {}", out.text());
        assert!(out.ended, "{who}: the connection is closed after the 408");
        assert!(
            after >= Duration::from_millis(250),
            "{who}: cut after {after:?}, before the deadline"
        );
    }
    assert!(echoes >= 3, "the canary kept talking ({echoes} echoes)");
    // The canary outlived the head deadline many times over: tunnels have none.
    echo(&mut canary, "last").await;
}

#[tokio::test]
async fn a_client_dripping_its_request_head_is_cut_at_the_deadline_not_kept_alive() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[timeouts]\nrequest_head = \"300ms\"\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let started = Instant::now();
    let mut tcp = TcpStream::connect(proxy.local_addrs()[0]).await.unwrap();
    let request = upgrade_request("/");
    let mut drip = request.as_bytes().iter();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // One byte every 100 ms (the whole head would take seconds) until the proxy
    // answers; then read to the end.
    let ended = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                r = tcp.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick(), if got.is_empty() => {
                    if let Some(byte) = drip.next() {
                        let _ = tcp.write_all(std::slice::from_ref(byte)).await;
                    }
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the dripping client was never cut off");
    let after = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        after >= Duration::from_millis(250) && after < Duration::from_millis(1500),
        "cut after {after:?}: the deadline is for the whole head"
    );
    assert!(b.seen().is_empty());
}

fn tls_config(pki: &TestPki, backend: &Backend, timeouts: &str) -> String {
    format!(
        "[timeouts]\n{timeouts}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
         [listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        pki.cert_pem.display(),
        pki.key_pem.display(),
        backend.addr
    )
}

/// No HTTP ever comes back from a TLS port to a client that did not finish a
/// handshake: at most a TLS alert record (content type 21).
fn assert_closed_without_http(who: &str, out: &Outcome) {
    assert!(out.ended, "{who}: not closed");
    assert!(
        out.bytes.is_empty() || out.bytes[0] == 0x15,
        "{who}: expected nothing or a TLS alert, got {:?}",
        out.text()
    );
}

#[tokio::test]
async fn tls_clients_that_stall_or_send_garbage_or_plain_http_are_closed_while_wss_runs() {
    let pki = TestPki::new();
    let b = Backend::start("b").await;
    let proxy = proxy(&tls_config(&pki, &b, "tls_handshake = \"300ms\"")).await;
    let addr = proxy.local_addrs()[0];
    let mut canary = connect_wss(&pki, addr, "/").await;
    echo_on(&mut canary, "first").await;

    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"\x00\x01\x02\x03 this is not TLS at all \xff\xfe\r\n\r\n")
        .await
        .unwrap();
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(upgrade_request("/").as_bytes())
        .await
        .unwrap();

    let work = async {
        tokio::join!(
            async {
                let out = read_outcome(&mut silent).await;
                (out, started.elapsed())
            },
            async {
                let out = read_outcome(&mut garbage);
                (out.await, started.elapsed())
            },
            async {
                let out = read_outcome(&mut plain);
                (out.await, started.elapsed())
            },
        )
    };
    tokio::pin!(work);
    let mut echoes = 0;
    let ((silent, silent_after), garbage, plain) = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                echo_on(&mut canary, &format!("canary {echoes}")).await;
                echoes += 1;
            }
        }
    };

    assert_closed_without_http("silent client", &silent);
    assert!(
        silent_after >= Duration::from_millis(250),
        "the silent client was cut after {silent_after:?}, before the handshake deadline"
    );
    // Bytes that cannot be TLS are refused at once, not held until the deadline.
    for (who, (out, after)) in [("garbage", garbage), ("plain HTTP on the TLS port", plain)] {
        assert_closed_without_http(who, &out);
        assert!(
            after < Duration::from_millis(250),
            "{who}: closed only after {after:?}"
        );
    }
    assert!(echoes >= 3, "the wss canary kept talking ({echoes} echoes)");
    echo_on(&mut canary, "last").await;
    assert_eq!(b.seen().len(), 1, "only the canary reached the backend");
}

/// A crowd of TLS clients each sending part of a record and then nothing: 150 with a
/// ClientHello cut short, 10 that finish the handshake and cut their request's record
/// short. Each is closed at its deadline (the handshake's, the request head's), none
/// earlier, while a wss tunnel made before keeps echoing; none reaches the backend.
#[tokio::test]
async fn a_crowd_of_tls_clients_stalled_mid_record_is_cut_at_the_deadlines_while_wss_runs() {
    let pki = TestPki::new();
    let b = Backend::start("b").await;
    let timeouts = "tls_handshake = \"400ms\"\nrequest_head = \"400ms\"";
    let proxy = proxy(&tls_config(&pki, &b, timeouts)).await;
    let addr = proxy.local_addrs()[0];
    let mut canary = connect_wss(&pki, addr, "/").await;
    echo_on(&mut canary, "first").await;

    let started = Instant::now();
    let mut hellos = Vec::new();
    for _ in 0..150 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // A handshake record announcing 512 bytes, and 5 of them.
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
            .await
            .unwrap();
        hellos.push(tcp);
    }
    let mut requests = Vec::new();
    for _ in 0..10 {
        let mut tls = pki.connect(addr, "localhost").await;
        let (tcp, conn) = tls.get_mut();
        std::io::Write::write_all(&mut conn.writer(), upgrade_request("/").as_bytes()).unwrap();
        let mut record = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut record).unwrap();
        }
        tcp.write_all(&record[..record.len() / 2]).await.unwrap();
        requests.push(tls);
    }

    let ends = async {
        let hellos = futures_util::future::join_all(hellos.iter_mut().map(|tcp| async {
            let out = read_outcome(tcp).await;
            (out, started.elapsed())
        }));
        let requests = futures_util::future::join_all(requests.iter_mut().map(|tls| async {
            let out = read_outcome(tls.get_mut().0).await;
            (out, started.elapsed())
        }));
        tokio::join!(hellos, requests)
    };
    tokio::pin!(ends);
    let mut echoes = 0;
    let (hellos, requests) = loop {
        tokio::select! {
            out = &mut ends => break out,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                echo_on(&mut canary, &format!("canary {echoes}")).await;
                echoes += 1;
            }
        }
    };
    for (who, outs) in [
        ("cut ClientHello", &hellos),
        ("cut request record", &requests),
    ] {
        for (out, after) in outs {
            assert!(out.ended, "{who}: not closed");
            assert!(
                *after >= Duration::from_millis(350),
                "{who}: closed after {after:?}, before its deadline"
            );
        }
    }
    assert!(echoes >= 3, "the wss canary kept talking ({echoes} echoes)");
    echo_on(&mut canary, "last").await;
    assert_eq!(b.seen().len(), 1, "only the canary reached the backend");
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_with_1001_idle_timeout_after_the_idle_time() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[timeouts]\nidle = \"300ms\"\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    echo(&mut ws, "then silence").await;
    let quiet_from = Instant::now();
    let close = expect_close(&mut ws).await;
    let after = quiet_from.elapsed();
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "idle timeout");
    assert!(
        after >= Duration::from_millis(250),
        "closed after {after:?} of silence"
    );
    match wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await {
        Event::TunnelClosed { code, side, .. } => {
            assert_eq!(code, Some(1001));
            assert_eq!(side, Side::Proxy);
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_tunnel_talking_every_100ms_outlives_an_idle_timeout_of_300ms() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[timeouts]\nidle = \"300ms\"\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(1200) {
        echo(&mut ws, &format!("tick {i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    echo(&mut ws, "still open").await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1);
}

#[tokio::test]
async fn idle_zero_never_closes_a_silent_tunnel() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[timeouts]\nidle = 0\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    echo(&mut ws, "then silence").await;
    // A second of silence: nothing may arrive, the tunnel must not end.
    let quiet = tokio::time::timeout(Duration::from_millis(1000), ws.next()).await;
    assert!(quiet.is_err(), "the silent tunnel got {quiet:?}");
    echo(&mut ws, "still open").await;
}

/// An upgrade request from `from` saying it was forwarded for `client`.
async fn forwarded_upgrade(addr: std::net::SocketAddr, from: Ipv4Addr, client: &str) -> Outcome {
    let mut tcp = tcp_from(from, addr).await;
    let req =
        upgrade_request("/").replacen("\r\n", &format!("\r\nX-Forwarded-For: {client}\r\n"), 1);
    tcp.write_all(req.as_bytes()).await.unwrap();
    read_outcome(&mut tcp).await
}

/// Behind a trusted proxy the per-IP limit counts the clients it forwards for, not
/// the proxy: tunnels for two clients through one proxy address are admitted, one
/// more for a client at its limit gets 429, and an untrusted peer is still limited
/// by its own address whatever it claims.
#[tokio::test]
async fn per_ip_limit_behind_a_trusted_proxy_counts_each_forwarded_client() {
    let b = Backend::start("b").await;
    let proxy = proxy(&format!(
        "[proxy]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections_per_ip = 1\n{}",
        simple_config(&[&b], "")
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    use crate::common::clients::connect_with;
    let mut first = connect_with(addr, "/", &[("X-Forwarded-For", "203.0.113.1")]).await;
    let mut second = connect_with(addr, "/", &[("X-Forwarded-For", "203.0.113.2")]).await;
    echo(&mut first, "for .1").await;
    echo(&mut second, "for .2").await;

    let out = forwarded_upgrade(addr, LOCAL, "203.0.113.1").await;
    assert_eq!(out.status(), Some(429), "{}", out.text());
    assert!(
        out.text().contains("too many connections"),
        "{}",
        out.text()
    );

    let _theirs = connect_from(OTHER, addr).await;
    let out = forwarded_upgrade(addr, OTHER, "198.51.100.7").await;
    assert!(out.ended && out.bytes.is_empty(), "{}", out.text());

    // The client's place comes back with its tunnel's end.
    let mut events = proxy.subscribe();
    hang_up(first).await;
    wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let mut again = connect_with(addr, "/", &[("X-Forwarded-For", "203.0.113.1")]).await;
    echo(&mut again, "for .1 again").await;
    echo(&mut second, "still here").await;
}
