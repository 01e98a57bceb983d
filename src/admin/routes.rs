//! Method and path → endpoint: [`route`], pure and unit-tested, with the parsing of
//! ids, backend names and close parameters. A malformed id or parameter is a 400, an
//! unknown path or backend action a 404, a wrong method a 405.

use std::time::Duration;

use http::{Method, Response};

use crate::event::{BackendId, TunnelId};

use super::reply::{self, Body};
use crate::ws::MAX_CLOSE_REASON;

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint {
    State,
    Backends,
    Tunnels,
    Tunnel(TunnelId),
    Messages(TunnelId),
    Har(TunnelId),
    Recording(TunnelId),
    CloseTunnel(TunnelId),
    /// Inject a message (or close with a code).
    Send(TunnelId),
    /// Hold (`true`) or release what one side sends.
    Hold(TunnelId, bool),
    Backend {
        backend: BackendId,
        action: Action,
    },
    Shutdown,
    Reload,
    Upgrade,
    Rebalance(String),
    Events,
    Metrics,
    Search,
    /// Liveness and readiness probes (answered without the token).
    Healthz,
    Readyz,
}

/// What can be done to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drain,
    Undrain,
    Enable,
    Disable,
    Kill,
}

/// Why a request reaches no endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound(String),
    /// The methods the path takes.
    MethodNotAllowed(&'static str),
    BadRequest(String),
}

impl Miss {
    pub fn reply(self) -> Response<Body> {
        match self {
            Miss::NotFound(m) => reply::error(http::StatusCode::NOT_FOUND, m),
            Miss::MethodNotAllowed(allow) => reply::method_not_allowed(allow),
            Miss::BadRequest(m) => reply::error(http::StatusCode::BAD_REQUEST, m),
        }
    }
}

/// The endpoint `method` and `path` name. A malformed id or unknown action is
/// reported before a wrong method.
pub fn route(method: &Method, path: &str) -> Result<Endpoint, Miss> {
    use Endpoint::*;
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let (endpoint, allow) = match segments.as_slice() {
        ["metrics"] => (Ok(Metrics), Method::GET),
        ["healthz"] => (Ok(Healthz), Method::GET),
        ["readyz"] => (Ok(Readyz), Method::GET),
        ["api", "state"] => (Ok(State), Method::GET),
        ["api", "backends"] => (Ok(Backends), Method::GET),
        ["api", "tunnels"] => (Ok(Tunnels), Method::GET),
        ["api", "events"] => (Ok(Events), Method::GET),
        ["api", "search"] => (Ok(Search), Method::GET),
        ["api", "shutdown"] => (Ok(Shutdown), Method::POST),
        ["api", "reload"] => (Ok(Reload), Method::POST),
        ["api", "upgrade"] => (Ok(Upgrade), Method::POST),
        ["api", "tunnels", id] => (tunnel_id(id).map(Tunnel), Method::GET),
        ["api", "tunnels", id, "close"] => (tunnel_id(id).map(CloseTunnel), Method::POST),
        ["api", "tunnels", id, "send"] => (tunnel_id(id).map(Send), Method::POST),
        ["api", "tunnels", id, "hold"] => (tunnel_id(id).map(|id| Hold(id, true)), Method::POST),
        ["api", "tunnels", id, "release"] => {
            (tunnel_id(id).map(|id| Hold(id, false)), Method::POST)
        }
        ["api", "tunnels", id, "messages"] => (tunnel_id(id).map(Messages), Method::GET),
        ["api", "tunnels", id, "har"] => (tunnel_id(id).map(Har), Method::GET),
        ["api", "tunnels", id, "recording"] => (tunnel_id(id).map(Recording), Method::GET),
        ["api", "backends", pool, addr, action] => (backend(pool, addr, action), Method::POST),
        ["api", "pools", pool, "rebalance"] => (
            percent_decode(pool)
                .filter(|p| !p.is_empty())
                .map(Rebalance)
                .ok_or_else(|| Miss::BadRequest(format!("{pool:?} is not a valid pool name"))),
            Method::POST,
        ),
        _ => {
            return Err(Miss::NotFound(format!(
                "no endpoint {path}; see /api/state, /api/backends, /api/tunnels, /api/events, /metrics, /healthz, /readyz"
            )))
        }
    };
    let endpoint = endpoint?;
    if *method != allow {
        return Err(Miss::MethodNotAllowed(if allow == Method::GET {
            "GET"
        } else {
            "POST"
        }));
    }
    Ok(endpoint)
}

fn tunnel_id(s: &str) -> Result<TunnelId, Miss> {
    let bad = || Miss::BadRequest(format!("tunnel id {s:?} is not a number"));
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

fn backend(pool: &str, addr: &str, action: &str) -> Result<Endpoint, Miss> {
    let action = match action {
        "drain" => Action::Drain,
        "undrain" => Action::Undrain,
        "enable" => Action::Enable,
        "disable" => Action::Disable,
        "kill" => Action::Kill,
        other => {
            return Err(Miss::NotFound(format!(
                "unknown action {other:?}; use drain, undrain, enable, disable or kill"
            )))
        }
    };
    let decode = |s: &str| {
        percent_decode(s)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| Miss::BadRequest(format!("{s:?} is not a valid pool or address")))
    };
    Ok(Endpoint::Backend {
        backend: BackendId::new(&decode(pool)?, &decode(addr)?),
        action,
    })
}

/// `%XX` escapes decoded (so `[::1]:80` may be written `%5B%3A%3A1%5D%3A80`); `None`
/// for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The optional `dry_run` of a reload: `true`/`1` to see what would change.
pub fn reload_params(query: Option<&str>) -> Result<bool, Miss> {
    let mut dry_run = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| Miss::BadRequest(format!("{key}: malformed %-escape")))?;
        match (key, value.as_str()) {
            ("dry_run", "true" | "1") => dry_run = true,
            ("dry_run", "false" | "0") => dry_run = false,
            ("dry_run", other) => {
                return Err(Miss::BadRequest(format!(
                    "dry_run {other:?}: use true or false"
                )))
            }
            (other, _) => {
                return Err(Miss::BadRequest(format!(
                    "unknown parameter {other:?}; use dry_run"
                )))
            }
        }
    }
    Ok(dry_run)
}

/// The optional `deadline` (`30s`, `2m`, `0s` for at once) and `rate` (closes a
/// second) of a drain: tunnels still on the backend at the deadline are closed.
pub fn drain_params(query: Option<&str>) -> Result<Option<(Duration, Option<u32>)>, Miss> {
    let (mut deadline, mut rate) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)
            .ok_or_else(|| Miss::BadRequest(format!("{key}: malformed %-escape")))?;
        match key {
            "deadline" => {
                let d = crate::config::duration::parse(&value)
                    .map_err(|e| Miss::BadRequest(format!("deadline {value:?}: {e}")))?;
                deadline = Some(d);
            }
            "rate" => {
                let r = value
                    .parse()
                    .ok()
                    .filter(|&r: &u32| r >= 1)
                    .ok_or_else(|| {
                        Miss::BadRequest(format!("rate {value:?}: closes a second, at least 1"))
                    })?;
                rate = Some(r);
            }
            other => {
                return Err(Miss::BadRequest(format!(
                    "unknown parameter {other:?}; use deadline and rate"
                )))
            }
        }
    }
    match (deadline, rate) {
        (None, Some(_)) => Err(Miss::BadRequest(
            "rate needs a deadline: it paces the closes after it".into(),
        )),
        (d, r) => Ok(d.map(|d| (d, r))),
    }
}

/// A `code` parameter: a close code that may be sent.
pub fn close_code(value: &str) -> Result<u16, Miss> {
    value
        .parse()
        .ok()
        .filter(|&c| crate::ws::close_code_may_be_sent(c))
        .ok_or_else(|| {
            Miss::BadRequest(format!(
                "code {value:?} is not a close code that may be sent (1000-1003, 1007-1014, 3000-4999)"
            ))
        })
}

/// The optional `code` and `reason` of a kill or close (`+` is a space in a query).
pub fn close_params(query: Option<&str>, default: (u16, &str)) -> Result<(u16, String), Miss> {
    let (mut code, mut reason) = (default.0, default.1.to_string());
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(&value.replace('+', " "))
            .ok_or_else(|| Miss::BadRequest(format!("{key}: malformed %-escape")))?;
        match key {
            "code" => code = close_code(&value)?,
            "reason" if value.len() > MAX_CLOSE_REASON => {
                return Err(Miss::BadRequest(format!(
                    "reason is {} bytes; a close reason fits in {MAX_CLOSE_REASON}",
                    value.len()
                )))
            }
            "reason" => reason = value,
            other => {
                return Err(Miss::BadRequest(format!(
                    "unknown parameter {other:?}; use code and reason"
                )))
            }
        }
    }
    Ok((code, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Endpoint, Miss> {
        route(&Method::GET, path)
    }

    fn post(path: &str) -> Result<Endpoint, Miss> {
        route(&Method::POST, path)
    }

    #[test]
    fn paths_name_endpoints() {
        assert_eq!(get("/api/state"), Ok(Endpoint::State));
        assert_eq!(get("/metrics"), Ok(Endpoint::Metrics));
        assert_eq!(get("/api/tunnels/42"), Ok(Endpoint::Tunnel(42)));
        assert_eq!(post("/api/tunnels/42/close"), Ok(Endpoint::CloseTunnel(42)));
        assert_eq!(post("/api/shutdown"), Ok(Endpoint::Shutdown));
        assert_eq!(post("/api/reload"), Ok(Endpoint::Reload));
        assert_eq!(
            post("/api/pools/chat%20eu/rebalance"),
            Ok(Endpoint::Rebalance("chat eu".into()))
        );
        assert_eq!(
            post("/api/backends/chat/10.0.0.1:8010/drain"),
            Ok(Endpoint::Backend {
                backend: BackendId::new("chat", "10.0.0.1:8010"),
                action: Action::Drain
            })
        );
        assert_eq!(
            post("/api/backends/chat/%5B%3A%3A1%5D%3A80/kill"),
            Ok(Endpoint::Backend {
                backend: BackendId::new("chat", "[::1]:80"),
                action: Action::Kill
            })
        );
    }

    #[test]
    fn bad_requests_are_told_apart() {
        assert!(matches!(get("/nope"), Err(Miss::NotFound(_))));
        assert!(matches!(get("/api/state/"), Err(Miss::NotFound(_))));
        assert!(matches!(get("/api/tunnels/x1"), Err(Miss::BadRequest(_))));
        assert!(matches!(get("/api/tunnels/+1"), Err(Miss::BadRequest(_))));
        assert!(matches!(
            get("/api/tunnels/99999999999999999999999"),
            Err(Miss::BadRequest(_))
        ));
        assert_eq!(post("/api/state"), Err(Miss::MethodNotAllowed("GET")));
        assert_eq!(get("/api/shutdown"), Err(Miss::MethodNotAllowed("POST")));
        assert_eq!(
            get("/api/backends/a/b:1/drain"),
            Err(Miss::MethodNotAllowed("POST"))
        );
        assert!(matches!(
            post("/api/backends/a/b:1/explode"),
            Err(Miss::NotFound(m)) if m.contains("drain, undrain")
        ));
        assert!(matches!(
            post("/api/backends/a/%zz/drain"),
            Err(Miss::BadRequest(_))
        ));
    }

    #[test]
    fn close_parameters_have_defaults_and_bounds() {
        let d = (1012, "service restart");
        assert_eq!(close_params(None, d), Ok((1012, "service restart".into())));
        assert_eq!(
            close_params(Some("code=4000&reason=see+you%21"), d),
            Ok((4000, "see you!".into()))
        );
        for bad in [
            "code=1006",
            "code=x",
            "code=70000",
            "colour=red",
            "reason=%4",
        ] {
            assert!(
                matches!(close_params(Some(bad), d), Err(Miss::BadRequest(_))),
                "{bad}"
            );
        }
        let long = format!("reason={}", "x".repeat(124));
        assert!(close_params(Some(&long), d).is_err());
    }

    #[test]
    fn drain_parameters_take_a_deadline_and_a_rate_after_it() {
        assert_eq!(drain_params(None), Ok(None));
        assert_eq!(
            drain_params(Some("deadline=30s")),
            Ok(Some((Duration::from_secs(30), None)))
        );
        assert_eq!(
            drain_params(Some("deadline=0s&rate=5")),
            Ok(Some((Duration::ZERO, Some(5))))
        );
        for bad in ["rate=5", "deadline=soon", "deadline=1s&rate=0", "until=1s"] {
            assert!(
                matches!(drain_params(Some(bad)), Err(Miss::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn reload_parameters_say_dry_run_or_not() {
        assert_eq!(reload_params(None), Ok(false));
        assert_eq!(reload_params(Some("dry_run=true")), Ok(true));
        assert_eq!(reload_params(Some("dry_run=1")), Ok(true));
        assert_eq!(reload_params(Some("dry_run=false")), Ok(false));
        for bad in ["dry_run=yes", "dryrun=true", "dry_run=%zz"] {
            assert!(
                matches!(reload_params(Some(bad)), Err(Miss::BadRequest(_))),
                "{bad}"
            );
        }
    }
}
