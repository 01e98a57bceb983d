//! The imported configuration written as tunnelscope TOML, commented.

use std::fmt::Write;

use super::{Import, Route};

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

pub(super) fn toml(im: &Import, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {source} by `tunnelscope import-nginx`."
    );
    let _ = writeln!(
        out,
        "# Check it with `tunnelscope check FILE`; see README \"Coming from nginx\"."
    );
    if !im.dropped.is_empty() {
        let _ = writeln!(out, "#\n# Not carried over (nginx line: directive):");
        for d in &im.dropped {
            let _ = writeln!(out, "#   {}", comment(d));
        }
    }
    if !im.built_in.is_empty() {
        let _ = writeln!(out, "#\n# Built in, nothing to write:");
        for d in &im.built_in {
            let _ = writeln!(out, "#   {}", comment(d));
        }
    }
    if im.idle.is_some() || im.connect.is_some() {
        let _ = writeln!(out, "\n[timeouts]");
        if let Some(idle) = &im.idle {
            let _ = writeln!(
                out,
                "# nginx's proxy_read_timeout: silence after which a tunnel is closed."
            );
            let _ = writeln!(out, "idle = {}", q(idle));
        }
        if let Some(c) = &im.connect {
            let _ = writeln!(out, "connect = {}", q(c));
        }
    }
    for l in &im.listeners {
        let _ = writeln!(out, "\n[[listener]]\nbind = {}", q(&l.bind));
        if let Some((cert, key)) = &l.tls {
            let _ = writeln!(out, "[listener.tls]\ncert = {}\nkey = {}", q(cert), q(key));
            for (names, cert, key) in &l.sni {
                let names: Vec<String> = names.iter().map(|n| q(n)).collect();
                let _ = writeln!(
                    out,
                    "[[listener.tls.sni]]\nnames = [{}]\ncert = {}\nkey = {}",
                    names.join(", "),
                    q(cert),
                    q(key)
                );
            }
        }
    }
    // tunnelscope takes the first route that matches, nginx the server by name and
    // then the longest prefix: named hosts first, longer paths first.
    let mut routes: Vec<&Route> = im.routes.iter().collect();
    let rank = |h: &Option<String>| match h {
        Some(h) if h.starts_with("*.") => 1,
        Some(_) => 0,
        None => 2,
    };
    routes.sort_by_key(|r| (rank(&r.host), std::cmp::Reverse(r.path.len())));
    let only_default =
        im.pools.len() == 1 && routes.iter().all(|r| r.host.is_none() && r.path == "/");
    if !only_default {
        for r in routes {
            let _ = writeln!(out, "\n[[route]]");
            if let Some(h) = &r.host {
                let _ = writeln!(out, "host = {}", q(h));
            }
            let _ = writeln!(out, "path = {}\npool = {}", q(&r.path), q(&r.pool));
        }
    }
    for p in &im.pools {
        let _ = writeln!(out, "\n[pool.{}]", pool_key(&p.name));
        let _ = writeln!(out, "balance = {}", q(p.balance.unwrap_or("round_robin")));
        if let Some(k) = &p.hash_key {
            let _ = writeln!(out, "hash_key = {}", q(k));
        }
        if let Some(n) = &p.max_fails {
            let _ = writeln!(out, "max_fails = {n}");
        }
        if let Some(t) = &p.fail_timeout {
            let _ = writeln!(out, "fail_timeout = {}", q(t));
        }
        if let Some(n) = &p.tries {
            let _ = writeln!(out, "tries = {n}");
        }
        if let Some(n) = &p.keepalive {
            let _ = writeln!(out, "keepalive = {n}");
        }
        if p.tls {
            let _ = writeln!(out, "tls = true");
        }
        if let Some(h) = &p.host_header {
            let _ = writeln!(out, "host_header = {}", q(h));
        }
        for s in &p.servers {
            let _ = writeln!(
                out,
                "[[pool.{}.server]]\naddr = {}",
                pool_key(&p.name),
                q(&s.addr)
            );
            if let Some(w) = &s.weight {
                let _ = writeln!(out, "weight = {w}");
            }
            if s.backup {
                let _ = writeln!(out, "backup = true");
            }
        }
    }
    out
}

/// Text for a comment line: nothing in it can end the comment.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A pool name as a TOML key (quoted unless bare).
fn pool_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_string()
    } else {
        q(name)
    }
}
