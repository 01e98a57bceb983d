//! A `location` block: the route it becomes, the pool its `proxy_pass` names (or
//! makes, for a server named directly), and its proxy directives.

use super::parse::Directive;
use super::{timeout, Import, Pool, Route, Server};

pub(super) fn location(d: &Directive, hosts: &[String], default: bool, im: &mut Import) {
    let (modifier, path) = match d.args.as_slice() {
        [p] => ("", p.as_str()),
        [m, p, ..] => (m.as_str(), p.as_str()),
        [] => return,
    };
    if modifier.starts_with('~') || modifier == "@" || path.starts_with('@') {
        im.dropped.push(format!(
            "line {}: location {modifier} {path} (only prefix locations map to routes)",
            d.line
        ));
        return;
    }
    if modifier == "=" {
        im.dropped.push(format!(
            "line {}: location = {path} (routed as a prefix)",
            d.line
        ));
    }
    let mut target = None;
    let mut host_header = None;
    for c in d.children() {
        match (c.name.as_str(), c.args.as_slice()) {
            ("proxy_pass", [url]) => target = Some((url.clone(), c.line)),
            ("proxy_http_version", _) | ("proxy_buffering", _) | ("proxy_cache_bypass", _) => im
                .built_in
                .push(format!("line {}: {} {}", c.line, c.name, c.args.join(" "))),
            ("proxy_set_header", [name, value]) => match name.to_ascii_lowercase().as_str() {
                "upgrade" | "connection" | "x-forwarded-for" | "x-forwarded-proto"
                | "x-forwarded-host" | "x-real-ip" => im
                    .built_in
                    .push(format!("line {}: proxy_set_header {name} {value}", c.line)),
                "host" => {
                    host_header = match value.as_str() {
                        "$host" | "$http_host" => None,
                        "$proxy_host" => Some("backend".to_string()),
                        v if !v.contains('$') => Some(v.to_string()),
                        v => {
                            im.dropped
                                .push(format!("line {}: proxy_set_header Host {v}", c.line));
                            None
                        }
                    }
                }
                _ => im.dropped.push(format!(
                    "line {}: proxy_set_header {name} {value} (tunnelscope sets no other headers)",
                    c.line
                )),
            },
            ("proxy_read_timeout" | "proxy_send_timeout" | "proxy_connect_timeout", _) => {
                timeout(c, im)
            }
            ("proxy_next_upstream", args) => {
                if args.iter().any(|a| a == "off") {
                    target_tries(im, &target, "1");
                } else {
                    im.built_in.push(format!(
                        "line {}: proxy_next_upstream {}",
                        c.line,
                        args.join(" ")
                    ));
                }
            }
            ("proxy_next_upstream_tries", [n]) if super::number(n).is_some_and(|n| n > 0) => {
                target_tries(im, &target, n)
            }
            _ => im
                .dropped
                .push(format!("line {}: {} in location {path}", c.line, c.name)),
        }
    }
    let Some((url, line)) = target else {
        im.dropped.push(format!(
            "line {}: location {path} proxies nowhere (no proxy_pass): not routed",
            d.line
        ));
        return;
    };
    let Some(pool) = proxy_pass(&url, line, path, im) else {
        return;
    };
    if let Some(h) = host_header {
        if let Some(p) = im.pools.iter_mut().find(|p| p.name == pool) {
            p.host_header = Some(h);
        }
    }
    let mut add = |host: Option<String>| {
        let r = Route {
            host,
            path: path.to_string(),
            pool: pool.clone(),
        };
        if !im.routes.contains(&r) {
            im.routes.push(r);
        }
    };
    if hosts.is_empty() || default {
        add(None);
    }
    for h in hosts {
        add(Some(h.clone()));
    }
}

/// `proxy_next_upstream_tries` belongs to the pool the location proxies to.
fn target_tries(im: &mut Import, target: &Option<(String, usize)>, n: &str) {
    if let Some((url, _)) = target {
        let name = pool_name(url);
        if let Some(p) = im.pools.iter_mut().find(|p| p.name == name) {
            p.tries = Some(n.to_string());
        }
    }
}

/// The upstream name or `host:port` a `proxy_pass` URL names.
fn pool_name(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The pool `proxy_pass URL` sends to, made when it names no upstream.
fn proxy_pass(url: &str, line: usize, path: &str, im: &mut Import) -> Option<String> {
    let tls = url.starts_with("https://");
    if !tls && !url.starts_with("http://") {
        im.dropped.push(format!(
            "line {line}: proxy_pass {url} (only http:// and https:// upstreams)"
        ));
        return None;
    }
    let authority = pool_name(url);
    let uri = &url[url.find(&authority).unwrap_or(0) + authority.len()..];
    if authority.contains('$') {
        im.dropped.push(format!(
            "line {line}: proxy_pass {url} (variables are not supported)"
        ));
        return None;
    }
    if !uri.is_empty() && uri != path {
        im.dropped.push(format!(
            "line {line}: proxy_pass {url}: nginx replaces {path} with {uri}; tunnelscope forwards the path as it came"
        ));
    }
    if let Some(p) = im.pools.iter_mut().find(|p| p.name == authority) {
        p.tls |= tls;
        return Some(p.name.clone());
    }
    // A server named directly: a pool of one, named after it.
    let addr = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let name: String = addr
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !im.pools.iter().any(|p| p.name == name) {
        im.pools.push(Pool {
            name: name.clone(),
            servers: vec![Server {
                addr,
                weight: None,
                backup: false,
            }],
            tls,
            ..Pool::default()
        });
    }
    Some(name)
}
