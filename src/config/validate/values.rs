//! Checks of single values: host patterns, server addresses, origins, loopback and
//! clashing binds, empty paths.

use std::net::SocketAddr;
use std::path::Path;

/// Only this host can reach it (IPv4-mapped loopback counts).
pub(super) fn is_loopback(addr: SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        ip => ip.is_loopback(),
    }
}

/// Two listeners that cannot both bind. Port 0 (any free port) never clashes.
/// `[::]:P` takes IPv4 too (listeners are dual-stack, as Linux binds them by
/// default), so it clashes with any IPv4 address on the same port.
pub(super) fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let dual = |x: SocketAddr, y: SocketAddr| x.is_ipv6() && x.ip().is_unspecified() && y.is_ipv4();
    a.port() != 0
        && a.port() == b.port()
        && (dual(a, b)
            || dual(b, a)
            || a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()))
}

pub(super) fn empty_path(p: &Path) -> bool {
    p.as_os_str().is_empty()
}

/// An exact host name or `*.suffix`.
pub(super) fn host_pattern(pattern: &str) -> Result<(), String> {
    let exact = pattern.strip_prefix("*.").unwrap_or(pattern);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let wildcard = exact.len() != pattern.len();
    let ip6_literal = !wildcard
        && exact
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    if ip6_literal || exact.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            r#"{pattern:?} must be an exact host name or "*.suffix", without port, path or other wildcards"#
        ))
    }
}

/// A backend address: `host:port`.
pub(super) fn server_addr(addr: &str) -> Result<(), String> {
    if let Some((scheme, _)) = addr.split_once("://") {
        return Err(format!(
            r#"{addr:?} must be host:port without "{scheme}://" (set tls = true on the pool for TLS)"#
        ));
    }
    if addr.contains(['/', ' ']) {
        return Err(format!(
            "{addr:?} must be host:port, without path or spaces"
        ));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!(r#"{addr:?} needs a port, as in "{addr}:8080""#));
    };
    if !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(format!("{addr:?} has no valid port (1 to 65535)"));
    }
    if host.is_empty() {
        return Err(format!(
            r#"{addr:?} needs a host before the port, as in "127.0.0.1{addr}""#
        ));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            r#"{addr:?}: an IPv6 address goes in brackets, as in "[::1]:8080""#
        ));
    }
    Ok(())
}

/// RFC 9110 token characters (header names), which also covers cookie names.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An `allowed_origins` entry: `null`, or `scheme://host[:port]` (host may be
/// `*.suffix`), with nothing after the authority: browsers send exactly that.
pub(super) fn origin_pattern(o: &str) -> Result<(), String> {
    if o == "null" {
        return Ok(());
    }
    let example = "e.g. \"https://app.example.com\", \"https://*.example.com\" or \"null\"";
    let Some((scheme, rest)) = o.split_once("://") else {
        return Err(format!("{o:?} is not an origin ({example})"));
    };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        || host.is_empty()
        || host.contains(['/', '?', '#', ' ', '*'])
    {
        return Err(format!("{o:?} is not an origin ({example}; no path)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn host_patterns() {
        for ok in [
            "example.com",
            "*.example.com",
            "localhost",
            "10.0.0.1",
            "[::1]",
            "a-b.c_d",
        ] {
            assert!(host_pattern(ok).is_ok(), "{ok}");
        }
        for no in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*example.com",
            "example.com:80",
            "a/b",
            "a..b",
            "*.[::1]",
            "[zz]",
        ] {
            assert!(host_pattern(no).is_err(), "{no}");
        }
    }

    #[test]
    fn server_addrs() {
        for ok in ["10.0.0.1:80", "backend:8080", "[::1]:8080"] {
            assert!(server_addr(ok).is_ok(), "{ok}");
        }
        for no in [
            "10.0.0.1",
            "ws://a:80",
            "a:0",
            ":80",
            "::1:80",
            "a:80/x",
            "a:99999",
        ] {
            assert!(server_addr(no).is_err(), "{no}");
        }
    }

    #[test]
    fn loopback_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        for ok in [
            "127.0.0.1:9090",
            "127.1.2.3:1",
            "[::1]:9090",
            "[::ffff:127.0.0.1]:9090",
        ] {
            assert!(is_loopback(a(ok)), "{ok}");
        }
        for no in [
            "0.0.0.0:9090",
            "10.0.0.1:9090",
            "[::]:9090",
            "[::ffff:10.0.0.1]:9090",
        ] {
            assert!(!is_loopback(a(no)), "{no}");
        }
    }

    #[test]
    fn bind_clashes() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(binds_clash(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(binds_clash(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(!binds_clash(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(!binds_clash(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!binds_clash(a("127.0.0.1:80"), a("[::1]:80")));
        // [::] is dual-stack: it takes IPv4 on its port too.
        assert!(binds_clash(a("0.0.0.0:443"), a("[::]:443")));
        assert!(binds_clash(a("[::]:443"), a("127.0.0.1:443")));
        assert!(!binds_clash(a("[::]:443"), a("0.0.0.0:80")));
    }
}
