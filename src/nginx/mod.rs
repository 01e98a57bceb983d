//! `tunnelscope import-nginx`: an nginx configuration of the kind the WebSocket
//! guides give (`map`, `upstream` with its balancing and server flags, `server`,
//! `listen … ssl`, `ssl_certificate`, `location`, `proxy_pass`, `proxy_set_header`,
//! the proxy timeouts, `proxy_next_upstream`) read and written as tunnelscope TOML.
//! Whatever has no equivalent is named, with its nginx line, in a comment at the
//! top; what tunnelscope does by itself (the Upgrade/Connection boilerplate,
//! X-Forwarded-*) is listed as built in.

mod emit;
mod location;
pub mod parse;

use self::parse::Directive;

/// What the nginx file becomes.
#[derive(Debug, Default)]
struct Import {
    pools: Vec<Pool>,
    listeners: Vec<Listener>,
    routes: Vec<Route>,
    idle: Option<String>,
    connect: Option<String>,
    /// What could not be carried over, with its line.
    dropped: Vec<String>,
    /// What tunnelscope does without being told.
    built_in: Vec<String>,
    /// `ssl_certificate` and `ssl_certificate_key` given in `http`, which every
    /// `server` inherits.
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Default)]
struct Pool {
    name: String,
    balance: Option<&'static str>,
    hash_key: Option<String>,
    servers: Vec<Server>,
    max_fails: Option<String>,
    fail_timeout: Option<String>,
    tries: Option<String>,
    keepalive: Option<String>,
    tls: bool,
    host_header: Option<String>,
}

#[derive(Debug)]
struct Server {
    addr: String,
    weight: Option<String>,
    backup: bool,
}

#[derive(Debug)]
struct Listener {
    bind: String,
    /// The default certificate, then per-name ones.
    tls: Option<(String, String)>,
    sni: Vec<(Vec<String>, String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Route {
    host: Option<String>,
    path: String,
    pool: String,
}

/// Why the file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Syntax(#[from] parse::SyntaxError),
    #[error("nothing to import: no `server` block proxies anywhere (proxy_pass)")]
    NothingProxied,
}

/// The tunnelscope TOML for an nginx configuration.
pub fn import(text: &str, source: &str) -> Result<String, ImportError> {
    let tree = parse::parse(text)?;
    let mut im = Import::default();
    // Upstreams first: proxy_pass names them.
    walk(&tree, &mut |d| {
        if d.name == "upstream" {
            upstream(d, &mut im);
        }
    });
    // nginx gives requests no server_name matches to the `default_server` of the
    // port, else the first server block.
    let default = find_default(&tree);
    walk(&tree, &mut |d| match d.name.as_str() {
        "server" if d.block.is_some() => server(d, Some(d.line) == default, &mut im),
        // Inherited by every server block below.
        "ssl_certificate" => im.cert = Some(d.arg().to_string()),
        "ssl_certificate_key" => im.key = Some(d.arg().to_string()),
        "proxy_read_timeout" | "proxy_send_timeout" | "proxy_connect_timeout" => {
            timeout(d, &mut im)
        }
        "map" if d.args.first().is_some_and(|a| a == "$http_upgrade") => im.built_in.push(format!(
            "line {}: map $http_upgrade (Upgrade and Connection are rebuilt per request)",
            d.line
        )),
        "include" => im.dropped.push(format!(
            "line {}: include {} (not followed: import that file too)",
            d.line,
            d.arg()
        )),
        _ => {}
    });
    if im.routes.is_empty() {
        return Err(ImportError::NothingProxied);
    }
    // A host's named routes are redundant when the host-less ones are exactly the
    // same (its server is the default one) and no wildcard covers the host.
    let set = |host: Option<&str>| {
        let mut v: Vec<(String, String)> = im
            .routes
            .iter()
            .filter(|r| r.host.as_deref() == host)
            .map(|r| (r.path.clone(), r.pool.clone()))
            .collect();
        v.sort();
        v
    };
    let hostless = set(None);
    let wildcards: Vec<String> = im
        .routes
        .iter()
        .filter_map(|r| r.host.as_deref()?.strip_prefix('*').map(str::to_string))
        .collect();
    let redundant: Vec<String> = im
        .routes
        .iter()
        .filter_map(|r| r.host.clone())
        .filter(|h| !h.starts_with('*'))
        .filter(|h| set(Some(h)) == hostless && !wildcards.iter().any(|w| h.ends_with(w.as_str())))
        .collect();
    im.routes
        .retain(|r| r.host.as_ref().is_none_or(|h| !redundant.contains(h)));
    // Both 0.0.0.0:P and [::]:P: Linux's [::] takes IPv4 too (bindv6only=0), and the
    // two would clash: keep the one.
    let v6: Vec<String> = im
        .listeners
        .iter()
        .filter_map(|l| l.bind.strip_prefix("[::]:").map(str::to_string))
        .collect();
    im.listeners.retain(|l| {
        !l.bind
            .strip_prefix("0.0.0.0:")
            .is_some_and(|port| v6.iter().any(|p| p == port))
    });
    im.pools
        .retain(|p| im.routes.iter().any(|r| r.pool == p.name));
    Ok(emit::toml(&im, source))
}

/// The line of the `server` block nginx gives requests no `server_name` matches:
/// the one whose `listen` says `default_server`, else the first.
fn find_default(list: &[Directive]) -> Option<usize> {
    let (mut first, mut marked) = (None, None);
    walk(list, &mut |d| {
        if d.name != "server" || d.block.is_none() {
            return;
        }
        first = first.or(Some(d.line));
        let says = d.children().iter().any(|c| {
            c.name == "listen"
                && c.args
                    .iter()
                    .any(|a| a == "default_server" || a == "default")
        });
        if says && marked.is_none() {
            marked = Some(d.line);
        }
    });
    marked.or(first)
}

/// Every directive in `list`, depth first; `server` blocks inside `upstream` are
/// not visited as virtual servers.
fn walk(list: &[Directive], f: &mut dyn FnMut(&Directive)) {
    for d in list {
        f(d);
        if d.name != "upstream" && d.name != "server" && d.name != "location" {
            walk(d.children(), f);
        }
    }
}

/// A count as tunnelscope takes it (a u32), else None.
fn number(s: &str) -> Option<u32> {
    s.parse().ok()
}

/// An nginx time (`60`, `3600s`, `1h`, `500ms`) if tunnelscope reads it the same.
fn time(value: &str) -> Option<String> {
    let v = if value.bytes().all(|b| b.is_ascii_digit()) {
        format!("{value}s")
    } else {
        value.to_string()
    };
    crate::config::duration::parse(&v).ok().map(|_| v)
}

fn upstream(d: &Directive, im: &mut Import) {
    let mut pool = Pool {
        name: d.arg().to_string(),
        ..Pool::default()
    };
    let mut fails: Vec<(Option<String>, Option<String>)> = Vec::new();
    for c in d.children() {
        match (c.name.as_str(), c.args.as_slice()) {
            ("least_conn", _) => pool.balance = Some("least_conn"),
            ("ip_hash", _) => pool.balance = Some("ip_hash"),
            ("hash", [key, ..]) => {
                // nginx spells a header's dashes as underscores in $http_NAME.
                let mapped = if let Some(n) = key.strip_prefix("$http_") {
                    Some(format!("header:{}", n.replace('_', "-")))
                } else if let Some(n) = key.strip_prefix("$cookie_") {
                    Some(format!("cookie:{n}"))
                } else {
                    key.strip_prefix("$arg_").map(|n| format!("query:{n}"))
                };
                match mapped {
                    Some(k) => {
                        pool.balance = Some("hash");
                        pool.hash_key = Some(k);
                        if c.args.get(1).map(String::as_str) != Some("consistent") {
                            im.built_in.push(format!(
                                "line {}: hash {key} without `consistent`: tunnelscope's hash is always consistent",
                                c.line
                            ));
                        }
                    }
                    None => im.dropped.push(format!(
                        "line {}: hash {key} (only $cookie_, $http_ and $arg_ keys map to hash_key)",
                        c.line
                    )),
                }
            }
            ("keepalive", [n, ..]) if number(n).is_some() => pool.keepalive = Some(n.clone()),
            ("server", [addr, flags @ ..]) => {
                let mut s = Server {
                    addr: addr.clone(),
                    weight: None,
                    backup: false,
                };
                let (mut mf, mut ft) = (None, None);
                for f in flags {
                    match f.split_once('=') {
                        Some(("weight", w)) if number(w).is_some_and(|w| w > 0) => {
                            s.weight = Some(w.to_string())
                        }
                        Some(("max_fails", n)) if number(n).is_some() => mf = Some(n.to_string()),
                        Some(("fail_timeout", t)) => ft = time(t),
                        None if f == "backup" => s.backup = true,
                        None if f == "down" => im.dropped.push(format!(
                            "line {}: server {addr} down (kept as a server: drain or disable it at run time)",
                            c.line
                        )),
                        None if f == "resolve" => {}
                        _ => im.dropped.push(format!("line {}: server flag {f}", c.line)),
                    }
                }
                fails.push((mf, ft));
                if addr.starts_with("unix:") {
                    im.dropped.push(format!(
                        "line {}: server {addr} (unix sockets are not supported)",
                        c.line
                    ));
                    continue;
                }
                if !addr.contains(':') || addr.ends_with(']') {
                    s.addr = format!("{addr}:80");
                }
                pool.servers.push(s);
            }
            _ => im.dropped.push(format!(
                "line {}: {} in upstream {}",
                c.line, c.name, pool.name
            )),
        }
    }
    // tunnelscope sets max_fails and fail_timeout per pool: the first server's, and
    // say so when the servers differ.
    if let Some((mf, ft)) = fails.first().cloned() {
        if fails.iter().any(|f| *f != (mf.clone(), ft.clone())) {
            im.dropped.push(format!(
                "line {}: per-server max_fails/fail_timeout differ in upstream {}; the first server's apply to the pool",
                d.line, pool.name
            ));
        }
        pool.max_fails = mf;
        pool.fail_timeout = ft;
    }
    im.pools.push(pool);
}

/// `listen` arguments as a bind address and whether they say `ssl`.
fn listen(args: &[String]) -> Option<(String, bool)> {
    let first = args.first()?;
    if first.starts_with("unix:") || args.iter().any(|a| a == "quic") {
        return None;
    }
    let bind = if first.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{first}")
    } else if let Some(port) = first.strip_prefix("*:") {
        format!("0.0.0.0:{port}")
    } else if first.ends_with(']') {
        format!("{first}:80")
    } else if let Some(port) = first.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else if first == "localhost" {
        "127.0.0.1:80".to_string()
    } else if first.contains(':') {
        first.clone()
    } else {
        format!("{first}:80")
    };
    // A host name (not an address) cannot be bound as written.
    let host = bind.rsplit_once(':').map_or("", |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().ok()?;
    Some((bind, args.iter().any(|a| a == "ssl")))
}

/// A `server` block; `default`: the first, which nginx also gives the requests no
/// `server_name` matches (its locations become host-less routes too).
fn server(d: &Directive, default: bool, im: &mut Import) {
    let mut binds = Vec::new();
    let mut hosts = Vec::new();
    let (mut cert, mut key) = (im.cert.clone(), im.key.clone());
    let mut ssl_on = false;
    // The names first: a location may come before server_name.
    for c in d.children().iter().filter(|c| c.name == "server_name") {
        for n in &c.args {
            match n.as_str() {
                "_" | "" => {}
                n if n.starts_with('~') => im.dropped.push(format!(
                    "line {}: server_name {n} (regular expressions are not supported)",
                    c.line
                )),
                // `.example.com`: the name and every name under it.
                n if n.starts_with('.') => {
                    hosts.push(n[1..].to_string());
                    hosts.push(format!("*{n}"));
                }
                n => hosts.push(n.to_string()),
            }
        }
    }
    for c in d.children() {
        match c.name.as_str() {
            "server_name" => {}
            "listen" => match listen(&c.args) {
                Some(b) => binds.push(b),
                None => im.dropped.push(format!(
                    "line {}: listen {} (unix sockets, QUIC and host names are not carried over)",
                    c.line,
                    c.args.join(" ")
                )),
            },
            "ssl_certificate" => cert = Some(c.arg().to_string()),
            "ssl_certificate_key" => key = Some(c.arg().to_string()),
            "ssl" => ssl_on = c.arg() == "on",
            "location" => location::location(c, &hosts, default, im),
            "proxy_read_timeout" | "proxy_send_timeout" | "proxy_connect_timeout" => timeout(c, im),
            "ssl_protocols"
            | "ssl_ciphers"
            | "ssl_prefer_server_ciphers"
            | "ssl_session_cache"
            | "ssl_session_timeout" => im.built_in.push(format!(
                "line {}: {} (TLS 1.2 and 1.3 with rustls's safe defaults)",
                c.line, c.name
            )),
            other => im
                .dropped
                .push(format!("line {}: {other} in server", c.line)),
        }
    }
    if binds.is_empty() {
        binds.push(("0.0.0.0:80".to_string(), false));
    }
    for (bind, ssl) in binds {
        let tls = if ssl || ssl_on {
            match (&cert, &key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => {
                    im.dropped.push(format!(
                        "line {}: listen {bind} ssl without ssl_certificate and ssl_certificate_key (left plain)",
                        d.line
                    ));
                    None
                }
            }
        } else {
            None
        };
        match im.listeners.iter_mut().find(|l| l.bind == bind) {
            Some(l) => match (&l.tls, tls) {
                // A plain listen first, an ssl one for the same address after: TLS.
                (None, Some(t)) => l.tls = Some(t),
                (Some(have), Some(t)) if *have != t && !hosts.is_empty() => {
                    l.sni.push((hosts.clone(), t.0, t.1))
                }
                _ => {}
            },
            None => im.listeners.push(Listener {
                bind,
                tls,
                sni: Vec::new(),
            }),
        }
    }
}

fn timeout(c: &Directive, im: &mut Import) {
    let Some(t) = time(c.arg()) else {
        im.dropped.push(format!(
            "line {}: {} {} (not a time tunnelscope reads)",
            c.line,
            c.name,
            c.arg()
        ));
        return;
    };
    let longer = |old: &Option<String>| {
        old.as_ref()
            .and_then(|o| crate::config::duration::parse(o).ok())
            .is_none_or(|o| crate::config::duration::parse(&t).is_ok_and(|n| n > o))
    };
    match c.name.as_str() {
        "proxy_connect_timeout" => im.connect = Some(t),
        // An idle open tunnel: nginx cut it after proxy_read_timeout of silence.
        _ if longer(&im.idle) => im.idle = Some(t),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
