//! The checks the schema cannot express. Each problem names the key it is about.

use std::time::Duration;

mod values;

use self::values::{
    binds_clash, empty_path, host_pattern, is_loopback, is_token_byte, origin_pattern, server_addr,
};
use super::locate::{KeyPath, Seg};
use super::{Balance, Config, HashKey, HostHeader, Pool};

/// One thing wrong, and the key it is about.
#[derive(Debug)]
pub(crate) struct Problem {
    pub path: KeyPath,
    pub message: String,
}

/// Bounds, kept here so the messages and the reference agree.
pub(crate) const MAX_RING: usize = 1024;
pub(crate) const MAX_PREVIEW_BYTES: usize = 4096;
pub(crate) const MAX_EVENT_CAPACITY: usize = 1 << 20;
pub(crate) const MIN_HEADER_BYTES: usize = 1024;
pub(crate) const MAX_HEADERS: usize = 1000;
pub(crate) const MIN_STATS_INTERVAL: Duration = Duration::from_millis(10);
pub(crate) use crate::ws::MAX_CLOSE_REASON;
/// Event loop threads; more than this is a typo, not a machine.
pub(crate) const MAX_THREADS: usize = 1024;

/// Every problem found, in no particular order.
pub(crate) fn problems(c: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |path: KeyPath, message: String| out.push(Problem { path, message });
    macro_rules! path { ($($seg:expr),+ $(,)?) => { KeyPath::new([$(Seg::from($seg)),+]) } }

    // [proxy]
    if let Err(m) = crate::ws::check_close_code(c.proxy.kill_close_code) {
        bad(path!("proxy", "kill_close_code"), m);
    }
    let reason = c.proxy.kill_close_reason.len();
    if reason > MAX_CLOSE_REASON {
        bad(
            path!("proxy", "kill_close_reason"),
            format!("is {reason} bytes; a close reason fits in {MAX_CLOSE_REASON}"),
        );
    }

    if c.proxy.threads > MAX_THREADS {
        bad(
            path!("proxy", "threads"),
            format!("must be 0 (one per CPU) to {MAX_THREADS}"),
        );
    }

    // [limits]
    for (n, o) in c.limits.allowed_origins.iter().enumerate() {
        if let Err(m) = origin_pattern(o) {
            bad(path!("limits", "allowed_origins", n), m);
        }
    }
    if c.limits.max_header_bytes < MIN_HEADER_BYTES {
        bad(
            path!("limits", "max_header_bytes"),
            format!("must be at least {MIN_HEADER_BYTES} (a browser's WebSocket handshake alone is ~500 bytes)"),
        );
    }
    if !(1..=MAX_HEADERS).contains(&c.limits.max_headers) {
        bad(
            path!("limits", "max_headers"),
            format!("must be 1 to {MAX_HEADERS}"),
        );
    }

    // [timeouts]
    let t = &c.timeouts;
    for (key, d) in [
        ("tls_handshake", t.tls_handshake),
        ("request_head", t.request_head),
        ("connect", t.connect),
        ("request_body", t.request_body),
        ("backend_response", t.backend_response),
        ("close_grace", t.close_grace),
    ] {
        if d.is_zero() {
            bad(
                path!("timeouts", key),
                "must be more than 0 (only idle takes 0, meaning never)".into(),
            );
        }
    }
    if !t.ping_interval.is_zero() && t.ping_timeout.is_zero() {
        bad(
            path!("timeouts", "ping_timeout"),
            "must be more than 0 when ping_interval is set".into(),
        );
    }
    if !t.keepalive_idle.is_zero() {
        // The kernel counts keepalive times in whole seconds.
        for (key, d) in [
            ("keepalive_idle", t.keepalive_idle),
            ("keepalive_interval", t.keepalive_interval),
        ] {
            if d < std::time::Duration::from_secs(1) {
                bad(
                    path!("timeouts", key),
                    "must be at least 1s (keepalive_idle = 0 turns keepalive off)".into(),
                );
            }
        }
        if t.keepalive_count == 0 {
            bad(
                path!("timeouts", "keepalive_count"),
                "must be at least 1 (keepalive_idle = 0 turns keepalive off)".into(),
            );
        }
    }

    // [inspect]
    let i = &c.inspect;
    for (key, value, max) in [
        ("ring", i.ring, MAX_RING),
        ("preview_bytes", i.preview_bytes, MAX_PREVIEW_BYTES),
    ] {
        if value > max {
            bad(
                path!("inspect", key),
                format!("{value} is more than {max}; it is kept per tunnel, so it is bounded"),
            );
        }
    }
    if !(1..=MAX_EVENT_CAPACITY).contains(&i.event_capacity) {
        bad(
            path!("inspect", "event_capacity"),
            format!("must be 1 to {MAX_EVENT_CAPACITY}"),
        );
    }
    if i.stats_interval < MIN_STATS_INTERVAL {
        bad(
            path!("inspect", "stats_interval"),
            "must be at least 10ms".into(),
        );
    }
    if i.record_file_bytes < 4096 {
        bad(
            path!("inspect", "record_file_bytes"),
            "must be at least 4096 (a recording file holds the handshake at least)".into(),
        );
    }
    if i.record_total_bytes < i.record_file_bytes {
        bad(
            path!("inspect", "record_total_bytes"),
            "must be at least record_file_bytes".into(),
        );
    }

    // [admin]
    check_admin(c, &mut bad);

    // [[listener]]
    if c.listeners.is_empty() {
        bad(
            path!("listener"),
            r#"at least one [[listener]] is needed, e.g. [[listener]] bind = "127.0.0.1:8080""#
                .into(),
        );
    }
    for (n, l) in c.listeners.iter().enumerate() {
        match l.name.as_deref() {
            Some(name) if name.trim().is_empty() => {
                bad(path!("listener", n, "name"), "must not be empty".into())
            }
            Some(name) => {
                if let Some(j) = c.listeners[..n]
                    .iter()
                    .position(|o| o.name.as_deref() == Some(name))
                {
                    bad(
                        path!("listener", n, "name"),
                        format!("{name:?} is already the name of listener[{j}]"),
                    );
                }
            }
            None => {}
        }
        if let Some(j) = c.listeners[..n]
            .iter()
            .position(|o| binds_clash(o.bind, l.bind))
        {
            let other = c.listeners[j].bind;
            bad(
                path!("listener", n, "bind"),
                format!("{} clashes with {other} of listener[{j}]", l.bind),
            );
        }
        let Some(tls) = &l.tls else { continue };
        for (key, p) in [("cert", &tls.cert), ("key", &tls.key)] {
            if empty_path(p) {
                bad(
                    path!("listener", n, "tls", key),
                    "must be a path to a PEM file".into(),
                );
            }
        }
        for (s, sni) in tls.sni.iter().enumerate() {
            if sni.names.is_empty() {
                bad(
                    path!("listener", n, "tls", "sni", s, "names"),
                    r#"needs at least one server name, e.g. ["chat.example.com"]"#.into(),
                );
            }
            for name in &sni.names {
                if let Err(m) = host_pattern(name) {
                    bad(path!("listener", n, "tls", "sni", s, "names"), m);
                }
            }
            for (key, p) in [("cert", &sni.cert), ("key", &sni.key)] {
                if empty_path(p) {
                    bad(
                        path!("listener", n, "tls", "sni", s, key),
                        "must be a path to a PEM file".into(),
                    );
                }
            }
        }
    }

    // [[route]]
    for (n, r) in c.routes.iter().enumerate() {
        for (i, o) in r.allowed_origins.iter().flatten().enumerate() {
            if let Err(m) = origin_pattern(o) {
                bad(path!("route", n, "allowed_origins", i), m);
            }
        }
        if let Some(host) = &r.host {
            if let Err(m) = host_pattern(host) {
                bad(path!("route", n, "host"), m);
            }
        }
        if !r.path.starts_with('/') {
            bad(
                path!("route", n, "path"),
                format!("{:?} must start with /", r.path),
            );
        } else if r.path.contains(['?', '#', ' ']) {
            bad(
                path!("route", n, "path"),
                format!(
                    "{:?} must be a plain path prefix, without query or spaces",
                    r.path
                ),
            );
        }
        if !c.pools.contains_key(&r.pool) {
            let known: Vec<&str> = c.pools.keys().map(String::as_str).collect();
            bad(
                path!("route", n, "pool"),
                format!(
                    "no [pool.{}] is defined (pools: {})",
                    r.pool,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let covers = |e: &super::Route| {
            (e.host.is_none() || e.host == r.host) && (e.path == "/" || e.path == r.path)
        };
        if let Some(j) = c.routes[..n].iter().position(covers) {
            bad(
                path!("route", n),
                format!("never matches: route[{j}] comes first and takes all its requests"),
            );
        }
    }
    if c.pools.is_empty() {
        bad(
            path!("pool"),
            r#"at least one [pool.NAME] with a [[pool.NAME.server]] is needed"#.into(),
        );
    } else if c.routes.is_empty() && c.pools.len() > 1 {
        bad(
            path!("route"),
            "with several pools, [[route]] entries must say which requests go to which".into(),
        );
    }

    // [pool.NAME]
    for (name, pool) in &c.pools {
        if name.is_empty() || name.contains('/') {
            bad(
                path!("pool", name),
                format!("pool name {name:?} must be non-empty and without '/'"),
            );
        }
        check_pool(name, pool, &mut bad);
    }
    out
}

fn check_pool(name: &str, pool: &Pool, bad: &mut impl FnMut(KeyPath, String)) {
    let key = |k: &str| KeyPath::new(["pool".into(), name.into(), k.into()]);
    match (pool.balance, &pool.hash_key) {
        (Balance::Hash, None) => bad(
            key("hash_key"),
            r#"balance = "hash" needs hash_key = "header:NAME" (or "cookie:NAME", "query:NAME")"#
                .into(),
        ),
        (Balance::Hash, Some(HashKey::Header(n) | HashKey::Cookie(n) | HashKey::Query(n)))
            if !n.bytes().all(is_token_byte) =>
        {
            bad(
                key("hash_key"),
                format!("{n:?} is not a valid header, cookie or parameter name"),
            )
        }
        (other, Some(_)) if other != Balance::Hash => bad(
            key("hash_key"),
            format!(
                r#"would be ignored: balance is "{}"; set balance = "hash" or remove hash_key"#,
                other.as_str()
            ),
        ),
        _ => {}
    }
    if let Some(h) = &pool.health {
        if h.interval.is_zero() || h.timeout.is_zero() {
            bad(
                key("health"),
                "interval and timeout must be more than 0".into(),
            );
        }
        if h.rise == 0 || h.fall == 0 {
            bad(key("health"), "rise and fall must be at least 1".into());
        }
        if !h.path.starts_with('/') {
            bad(
                key("health"),
                format!("path {:?} must start with /", h.path),
            );
        }
    }
    if pool.close_rate == 0 {
        bad(
            key("close_rate"),
            "must be at least 1 (tunnels closed per second)".into(),
        );
    }
    if pool.tries == 0 {
        bad(key("tries"), "must be at least 1".into());
    }
    if pool.max_fails > 0 && pool.fail_timeout.is_zero() {
        bad(
            key("fail_timeout"),
            "must be more than 0 while max_fails is not 0 (set max_fails = 0 to never mark servers down)".into(),
        );
    }
    if let HostHeader::Set(h) = &pool.host_header {
        if h.is_empty() || h.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            bad(
                key("host_header"),
                format!(r#"{h:?} must be "keep", "backend" or a host name"#),
            );
        }
    }
    if !pool.tls {
        for (k, set) in [
            ("ca", pool.ca.is_some()),
            ("server_name", pool.server_name.is_some()),
        ] {
            if set {
                bad(
                    key(k),
                    "would be ignored: tls is false for this pool".into(),
                );
            }
        }
    }
    if pool.ca.as_deref().is_some_and(empty_path) {
        bad(key("ca"), "must be a path to a PEM file".into());
    }
    if pool
        .server_name
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        bad(key("server_name"), "must not be empty".into());
    }
    if pool.servers.is_empty() {
        bad(
            key("server"),
            "a pool needs at least one [[pool.NAME.server]]".into(),
        );
    }
    for (i, s) in pool.servers.iter().enumerate() {
        let at = |k: &str| {
            KeyPath::new([
                "pool".into(),
                name.into(),
                "server".into(),
                i.into(),
                k.into(),
            ])
        };
        if let Err(m) = server_addr(&s.addr) {
            bad(at("addr"), m);
        } else if let Some(j) = pool.servers[..i].iter().position(|o| o.addr == s.addr) {
            bad(
                at("addr"),
                format!("{:?} is already server[{j}] of this pool", s.addr),
            );
        }
        if s.weight == 0 {
            bad(
                at("weight"),
                "must be at least 1 (use backup = true, or drain it, to keep a server idle)".into(),
            );
        }
    }
}

fn check_admin(c: &Config, bad: &mut impl FnMut(KeyPath, String)) {
    let key = |k: &str| KeyPath::new(["admin".into(), k.into()]);
    let a = &c.admin;
    match &a.token {
        Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) => bad(
            key("token"),
            "must be printable ASCII without spaces (it is sent as \"Authorization: Bearer TOKEN\")"
                .into(),
        ),
        Some(_) if a.bind.is_none() => bad(
            key("token"),
            r#"would be ignored: there is no admin API without bind = "IP:port""#.into(),
        ),
        _ => {}
    }
    let Some(bind) = a.bind else { return };
    if a.token.is_none() && !is_loopback(bind) {
        bad(
            key("bind"),
            format!(
                r#"admin API on a public address needs a token: set token = "..." or bind 127.0.0.1:{}"#,
                bind.port()
            ),
        );
    }
    if let Some(j) = c.listeners.iter().position(|l| binds_clash(l.bind, bind)) {
        bad(
            key("bind"),
            format!(
                "{bind} clashes with {} of listener[{j}]",
                c.listeners[j].bind
            ),
        );
    }
}
