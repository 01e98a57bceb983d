//! Fake but plausible proxy state for the screenshots.

use super::*;

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

pub(crate) fn headers(pairs: &[(&str, &str)]) -> tunnelscope::event::Headers {
    tunnelscope::event::Headers::from_pairs(pairs.iter().copied())
}

pub(crate) fn handshake(client: &str, host: &str, proto: Option<&str>, deflate: bool) -> Handshake {
    let ext = deflate.then_some("permessage-deflate; client_max_window_bits");
    let mut req = vec![
        ("host", host),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        ),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
        ("origin", "https://app.example.com"),
    ];
    if let Some(p) = proto {
        req.push(("sec-websocket-protocol", p));
    }
    if let Some(e) = ext {
        req.push(("sec-websocket-extensions", e));
    }
    let mut out = req.clone();
    out.push(("x-forwarded-for", client));
    out.push(("x-forwarded-proto", "https"));
    out.push(("x-forwarded-host", host));
    let mut resp = vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    if let Some(p) = proto {
        resp.push(("sec-websocket-protocol", p));
    }
    if let Some(e) = ext {
        resp.push(("sec-websocket-extensions", e));
    }
    Handshake {
        request_in: headers(&req),
        request_out: headers(&out),
        response: headers(&resp),
        subprotocol: proto.map(str::to_owned),
        extensions: ext.map(str::to_owned),
        h2: false,
    }
}

/// Counters after `secs` seconds of traffic at `rate` messages/s of `size` bytes.
pub(crate) fn stats(secs: f64, rate: f64, size: u64, last: SystemTime) -> TunnelStats {
    let dir = |rate: f64, size: u64| {
        let msgs = (secs * rate) as u64;
        let mut d = DirStats::default();
        d.by_opcode[OpKind::Text as usize] = OpCount {
            frames: msgs,
            payload_bytes: msgs * size,
            wire_bytes: msgs * (size + 6),
        };
        let pings = (secs / 30.0) as u64;
        d.by_opcode[OpKind::Ping as usize] = OpCount {
            frames: pings,
            payload_bytes: 0,
            wire_bytes: pings * 6,
        };
        d.messages = msgs;
        d.bytes = msgs * (size + 6) + pings * 6;
        d.last_frame = (msgs > 0).then_some(last);
        d
    };
    TunnelStats {
        client_to_backend: dir(rate * 0.3, size / 3),
        backend_to_client: dir(rate, size),
    }
}

pub(crate) fn backend(
    pool: &str,
    a: &str,
    admin: AdminState,
    active: u64,
    total: u64,
) -> BackendInfo {
    BackendInfo {
        id: BackendId::new(pool, a),
        weight: 1,
        backup: false,
        via: None,
        admin,
        health: Health::Up,
        active_tunnels: active,
        total_tunnels: total,
        failures: 0,
        last_error: None,
        check: None,
        closing: None,
        version: 1,
    }
}

pub(crate) struct Fake {
    id: u64,
    client: &'static str,
    path: &'static str,
    pool: &'static str,
    backend: &'static str,
    proto: Option<&'static str>,
    deflate: bool,
    age: u64,
    rate: f64,
    size: u64,
}

#[rustfmt::skip]
pub(crate) const TUNNELS: [Fake; 12] = [
    Fake { id: 1041, client: "203.0.113.7:51544", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 3725, rate: 14.0, size: 180 },
    Fake { id: 1052, client: "198.51.100.23:40112", path: "/chat?room=ops", pool: "chat", backend: "10.0.0.12:9001", proto: Some("chat.v2"), deflate: true, age: 1260, rate: 3.5, size: 240 },
    Fake { id: 1077, client: "192.0.2.140:62001", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.13:9001", proto: Some("chat.v2"), deflate: false, age: 845, rate: 9.0, size: 120 },
    Fake { id: 1090, client: "203.0.113.90:50003", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 610, rate: 120.0, size: 96 },
    Fake { id: 1101, client: "198.51.100.4:41870", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 402, rate: 118.0, size: 96 },
    Fake { id: 1113, client: "192.0.2.77:33210", path: "/chat?room=dev", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 377, rate: 1.2, size: 300 },
    Fake { id: 1120, client: "203.0.113.51:49152", path: "/game/7f3a", pool: "chat", backend: "10.0.0.12:9001", proto: Some("game.bin"), deflate: false, age: 298, rate: 30.0, size: 64 },
    Fake { id: 1134, client: "198.51.100.61:52211", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.13:9001", proto: Some("chat.v2"), deflate: true, age: 201, rate: 6.0, size: 150 },
    Fake { id: 1142, client: "192.0.2.9:45678", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 95, rate: 121.0, size: 96 },
    Fake { id: 1150, client: "203.0.113.200:60100", path: "/chat?room=ops", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 44, rate: 2.0, size: 200 },
    Fake { id: 1157, client: "198.51.100.88:39000", path: "/collab/doc-42", pool: "chat", backend: "10.0.0.11:9001", proto: Some("yjs"), deflate: false, age: 17, rate: 22.0, size: 512 },
    Fake { id: 1163, client: "192.0.2.33:51000", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.12:9001", proto: Some("chat.v2"), deflate: true, age: 3, rate: 0.0, size: 0 },
];

pub(crate) fn fake_state(now: SystemTime) -> State {
    let start = now - Duration::from_secs(2 * 3600 + 14 * 60 + 9);
    let ago = |s: u64| now - Duration::from_secs(s);
    let mut draining = backend("chat", "10.0.0.12:9001", AdminState::Draining, 3, 1_877);
    draining.failures = 1;
    let mut feed = backend("feed", "10.0.1.7:7000", AdminState::Active, 3, 611);
    feed.failures = 4;
    feed.last_error = Some("connect: connection refused (os error 111)".into());
    let snapshot = Snapshot {
        listeners: vec![
            ListenerInfo {
                name: "public".into(),
                addr: addr("0.0.0.0:8080"),
                tls: false,
            },
            ListenerInfo {
                name: "secure".into(),
                addr: addr("0.0.0.0:8443"),
                tls: true,
            },
        ],
        backends: vec![
            backend("chat", "10.0.0.11:9001", AdminState::Active, 4, 2_413),
            draining,
            backend("chat", "10.0.0.13:9001", AdminState::Active, 2, 2_390),
            feed,
        ],
        tunnels: Vec::new(),
        total_tunnels: 7_291,
        started: Some(start),
        resolutions: Vec::new(),
        fleet: None,
    };
    let mut state = State::from_snapshot(snapshot, ago(61));
    // A minute of traffic, four stat batches a second, swelling and ebbing so the
    // sparklines have a shape. Tunnels open when their time comes. `done` is the
    // effective seconds of traffic per tunnel: it never shrinks, as real counters.
    let mut opened = [false; TUNNELS.len()];
    let mut done: Vec<f64> = TUNNELS
        .iter()
        .map(|f| (f.age as f64 - 60.0).max(0.0))
        .collect();
    for step in 0..=240u64 {
        let t = ago(60) + Duration::from_millis(step * 250);
        let swell = 0.3
            + 1.4
                * ((step as f64) / 240.0 * std::f64::consts::PI * 3.0)
                    .sin()
                    .abs();
        for (i, f) in TUNNELS.iter().enumerate() {
            if t < ago(f.age) {
                continue;
            }
            if !opened[i] {
                opened[i] = true;
                open(&mut state, f, ago(f.age), t);
            }
            if f.rate > 0.0 {
                done[i] += 0.25 * swell;
                // Quiet tunnels last sent a frame a little while ago.
                let last = t - Duration::from_millis((f.id % 7) * 900);
                let s = stats(done[i], f.rate, f.size, last);
                state.apply(&Event::FrameStats { id: f.id, stats: s }, t);
            }
        }
        state.tick(t);
    }
    samples(&mut state, 1041, now, true);
    samples(&mut state, 1090, now, true);
    closed_and_refused(&mut state, now);
    state.tick(now);
    state.banner =
        Some("demo: open http://127.0.0.1:8080/ in a browser to chat through the proxy".into());
    state
}

pub(crate) fn open(state: &mut State, f: &Fake, at: SystemTime, now: SystemTime) {
    state.apply(
        &Event::TunnelOpened {
            id: f.id,
            at,
            client: addr(f.client),
            listener: "secure".into(),
            route: f.pool.into(),
            path: f.path.into(),
            idle_timeout: Some(Duration::from_secs(3600)),
            instance: None,
        },
        now,
    );
    state.apply(
        &Event::BackendChosen {
            id: f.id,
            backend: BackendId::new(f.pool, f.backend),
        },
        now,
    );
    let host = if f.pool == "feed" {
        "feed.example.com"
    } else {
        "app.example.com"
    };
    let hs = handshake(
        f.client.split(':').next().unwrap_or(""),
        host,
        f.proto,
        f.deflate,
    );
    state.apply(
        &Event::Handshake {
            id: f.id,
            handshake: hs,
        },
        now,
    );
}

pub(crate) fn samples(state: &mut State, id: u64, now: SystemTime, deflate: bool) {
    let msgs = [
        (
            false,
            1,
            r#"{"type":"typing","user":"ana"}"#.as_bytes().to_vec(),
        ),
        (
            true,
            1,
            r#"{"type":"message","user":"bo","text":"deploy is done, draining 10.0.0.12 now"}"#
                .as_bytes()
                .to_vec(),
        ),
        (false, 1, r#"{"type":"ack","id":88812}"#.as_bytes().to_vec()),
        (true, 9, Vec::new()),
        (false, 10, Vec::new()),
        (
            true,
            2,
            vec![
                0x82, 0x1f, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef, 0x10, 0x20, 0x30,
            ],
        ),
        (
            true,
            1,
            r#"{"type":"presence","online":["ana","bo","cy"]}"#.as_bytes().to_vec(),
        ),
    ];
    let mut out = Vec::new();
    for i in 0..60u64 {
        let (to_client, op, body) = &msgs[(i % msgs.len() as u64) as usize];
        let compressed = deflate && *op == 1 && i % 3 == 0;
        let preview = if compressed {
            vec![0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2]
        } else {
            body.clone()
        };
        out.push(FrameSample {
            injected: false,
            seq: i,
            at: now - Duration::from_millis((60 - i) * 430),
            dir: if *to_client {
                tunnelscope::event::Dir::BackendToClient
            } else {
                tunnelscope::event::Dir::ClientToBackend
            },
            fin: true,
            rsv: if compressed { 0b100 } else { 0 },
            opcode: *op,
            masked: !*to_client,
            len: body.len() as u64,
            preview,
        });
    }
    state.apply(&Event::FrameSamples { id, samples: out }, now);
}

pub(crate) fn closed_and_refused(state: &mut State, now: SystemTime) {
    let ended = [
        (
            1139,
            "192.0.2.150:41000",
            "/chat?room=ops",
            Some(1000),
            Side::Client,
            41,
        ),
        (
            1146,
            "203.0.113.19:52400",
            "/game/11b0",
            Some(1012),
            Side::Proxy,
            23,
        ),
        (
            1151,
            "198.51.100.5:47001",
            "/live/prices",
            Some(1006),
            Side::Backend,
            9,
        ),
    ];
    for (id, client, path, code, side, secs_ago) in ended {
        let at = now - Duration::from_secs(secs_ago);
        state.apply(
            &Event::TunnelOpened {
                id,
                at: at - Duration::from_secs(180),
                client: addr(client),
                listener: "public".into(),
                route: "chat".into(),
                path: path.into(),
                idle_timeout: Some(Duration::from_secs(3600)),
                instance: None,
            },
            at,
        );
        state.apply(
            &Event::BackendChosen {
                id,
                backend: BackendId::new("chat", "10.0.0.12:9001"),
            },
            at,
        );
        state.apply(
            &Event::Handshake {
                id,
                handshake: handshake(client, "app.example.com", Some("chat.v2"), true),
            },
            at,
        );
        let stats = stats(180.0, 2.0, 140, at);
        state.apply(
            &Event::TunnelClosed {
                id,
                code,
                reason: String::new(),
                side,
                duration: Duration::from_secs(180),
                stats,
                error: None,
            },
            at,
        );
    }
    let at = now - Duration::from_secs(5);
    state.apply(
        &Event::TunnelOpened {
            id: 1160,
            at,
            client: addr("192.0.2.201:50500"),
            listener: "public".into(),
            route: "feed".into(),
            path: "/live/bonds".into(),
            idle_timeout: Some(Duration::from_secs(3600)),
            instance: None,
        },
        at,
    );
    state.apply(
        &Event::Refused {
            id: 1160,
            refusal: Refusal {
                status: 502,
                reason: "backend unreachable".into(),
            },
        },
        at,
    );
}
