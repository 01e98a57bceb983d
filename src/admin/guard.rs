//! Keeps web pages out of the admin API. Loopback without a token is allowed for
//! development, so a page the operator visits must not be able to reach it:
//!
//! - a request carrying an `Origin` (browsers send one on cross-origin requests and
//!   on every POST) is refused unless that origin is the API's own, for every method;
//! - `Sec-Fetch-Site: cross-site` or `same-site` (a browser saying another site made
//!   the request) is refused likewise;
//! - a `Host` that is a DNS name other than `localhost` or one listed in `[admin]
//!   hosts` is refused: DNS rebinding points an attacker's name at 127.0.0.1, but the
//!   browser still sends the attacker's name as `Host`. IP literals are always
//!   accepted (rebinding needs a name).
//!
//! curl and scripts send no `Origin` and a literal or `localhost` host, and are not
//! affected. Pure functions over headers, unit-tested below.

use http::header::{HeaderMap, HOST, ORIGIN};

/// Why a request was refused, for the 403 body.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An `Origin` that is not the API's own.
    ForeignOrigin(String),
    /// A browser said the request came from another site.
    CrossSite,
    /// A `Host` that is neither an IP literal, `localhost`, nor configured.
    ForeignHost(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForeignOrigin(o) => write!(
                f,
                "requests from web pages are refused (Origin {o:?} is not this API's own)"
            ),
            Self::CrossSite => f.write_str("requests from other sites are refused"),
            Self::ForeignHost(h) => write!(
                f,
                "Host {h:?} is not this admin API's address; list it under [admin] hosts to allow it"
            ),
        }
    }
}

/// Checks one request's headers. `hosts`: extra host names allowed (lowercase, with
/// or without a port).
pub fn check(headers: &HeaderMap, hosts: &[String]) -> Result<(), Refusal> {
    let host = headers
        .get(HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()));
    if let Some(host) = &host {
        if !host_allowed(host, hosts) {
            return Err(Refusal::ForeignHost(host.to_string()));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if site.eq_ignore_ascii_case(b"cross-site") || site.eq_ignore_ascii_case(b"same-site") {
            return Err(Refusal::CrossSite);
        }
    }
    for origin in headers.get_all(ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let own = host.as_deref().is_some_and(|h| same_origin(&origin, h));
        if !own {
            return Err(Refusal::ForeignOrigin(origin.into_owned()));
        }
    }
    Ok(())
}

/// Is `origin` (`scheme://host[:port]`) the API's own, given the request's `Host`?
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false; // "null", file:, extensions...
    };
    rest.eq_ignore_ascii_case(host)
}

/// The host part of `host[:port]`, brackets kept off an IPv6 literal.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn host_allowed(host: &str, hosts: &[String]) -> bool {
    let name = host_name(host.trim());
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host.trim()) || h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn scripts_without_origin_pass_on_literals_and_localhost() {
        for host in [
            "127.0.0.1:9090",
            "localhost:9090",
            "[::1]:9090",
            "10.1.2.3",
            "LOCALHOST",
        ] {
            assert_eq!(check(&hm(&[("host", host)]), &[]), Ok(()), "{host}");
        }
        assert_eq!(check(&HeaderMap::new(), &[]), Ok(()));
    }

    #[test]
    fn the_apis_own_origin_passes_and_any_other_is_refused() {
        let own = hm(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090"),
        ]);
        assert_eq!(check(&own, &[]), Ok(()));
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:9091",
            "null",
            "http://127.0.0.1:9090.evil.example",
        ] {
            let h = hm(&[("host", "127.0.0.1:9090"), ("origin", origin)]);
            assert!(
                matches!(check(&h, &[]), Err(Refusal::ForeignOrigin(_))),
                "{origin}"
            );
        }
        let no_host = hm(&[("origin", "http://127.0.0.1:9090")]);
        assert!(check(&no_host, &[]).is_err());
    }

    #[test]
    fn rebound_names_are_refused_unless_configured() {
        let h = hm(&[("host", "attacker.example:9090")]);
        assert!(matches!(check(&h, &[]), Err(Refusal::ForeignHost(_))));
        assert_eq!(check(&h, &["attacker.example".into()]), Ok(()));
        assert_eq!(check(&h, &["attacker.example:9090".into()]), Ok(()));
        assert!(check(&h, &["attacker.example:1".into()]).is_err());
    }

    #[test]
    fn a_browser_saying_cross_site_is_refused() {
        for site in ["cross-site", "same-site"] {
            let h = hm(&[("host", "127.0.0.1:9090"), ("sec-fetch-site", site)]);
            assert_eq!(check(&h, &[]), Err(Refusal::CrossSite), "{site}");
        }
        for site in ["same-origin", "none"] {
            let h = hm(&[("host", "127.0.0.1:9090"), ("sec-fetch-site", site)]);
            assert_eq!(check(&h, &[]), Ok(()), "{site}");
        }
    }
}
