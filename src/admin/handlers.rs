//! The handler of each endpoint, behind the bearer token check. Every refusal is a
//! JSON error (see `reply`); a control endpoint's answer is the core's outcome.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::control::{Command, Outcome, CLOSE_SERVICE_RESTART};
use crate::event::TunnelId;

use super::reply::{self, Body};
use super::routes::{close_params, drain_params, reload_params, route, Action, Endpoint};
use super::{json, metrics, stream, Api, Ctx};

/// How long a control command may wait for the core.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// The reason sent with a tunnel closed through the API, as the dashboard does.
const CLOSE_REASON: &str = "closed by operator";

/// `Authorization: Bearer TOKEN`, compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    let (given, want) = (given.trim().as_bytes(), token.as_bytes());
    // subtle's comparison is kept branch-free from the optimiser; only the length
    // (not secret in practice: tokens are long and random) can tell early.
    scheme.eq_ignore_ascii_case("bearer") && bool::from(given.ct_eq(want))
}

/// Answers one request; never fails (errors are responses).
pub(crate) async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
) -> Result<Response<Body>, Infallible> {
    let api = &ctx.shared.api;
    if let Err(refusal) = super::guard::check(req.headers(), &api.hosts) {
        // A hostile page can send these as fast as it likes: one line a second.
        let mut throttle = crate::sync::lock(&ctx.shared.refusal_log);
        if let Some(suppressed) = throttle.allow(std::time::Instant::now()) {
            tracing::warn!(peer = %ctx.peer, suppressed, "admin request refused: {refusal}");
        }
        drop(throttle);
        return Ok(reply::error(StatusCode::FORBIDDEN, refusal.to_string()));
    }
    let routed = route(req.method(), req.uri().path());
    // Probes carry no token; they learn only whether the proxy is ready, and why.
    let probe = matches!(routed, Ok(Endpoint::Healthz | Endpoint::Readyz));
    if let (Some(token), false) = (&api.token, probe) {
        if !authorized(req.headers(), token) {
            return Ok(reply::unauthorized(
                "this admin API needs \"Authorization: Bearer TOKEN\" with the [admin] token",
            ));
        }
    }
    let endpoint = match routed {
        Ok(e) => e,
        Err(miss) => return Ok(miss.reply()),
    };
    let query = req.uri().query().map(str::to_owned);
    let query = query.as_deref();
    Ok(match endpoint {
        Endpoint::Healthz => super::health::live(),
        Endpoint::Readyz => super::health::ready(&(api.readiness)()),
        Endpoint::Search => {
            let q = query
                .unwrap_or("")
                .split('&')
                .filter_map(|p| p.strip_prefix("q="))
                .next()
                .and_then(|q| super::routes::percent_decode(&q.replace('+', " ")));
            match q.filter(|q| !q.trim().is_empty()) {
                Some(q) => {
                    // A search reads every capture: off the API's event loop.
                    let search = api.search.clone();
                    let query = q.clone();
                    let hits = tokio::task::spawn_blocking(move || search(&query))
                        .await
                        .unwrap_or_default();
                    let matches: Vec<_> = hits.iter().map(json::message::Hit::new).collect();
                    reply::json(StatusCode::OK, &Found { query: &q, matches })
                }
                None => reply::error(
                    StatusCode::BAD_REQUEST,
                    "say what to look for: /api/search?q=TEXT",
                ),
            }
        }
        Endpoint::Send(id) => super::inject::send(req.into_body(), query, api, id).await,
        Endpoint::Hold(id, on) => super::inject::hold(query, api, id, on).await,
        Endpoint::State => {
            let snapshot = (api.snapshot)();
            let totals = ctx.shared.totals();
            let state = json::State::new(&snapshot, totals, SystemTime::now(), api.name.as_deref());
            reply::json(StatusCode::OK, &state)
        }
        Endpoint::Backends => {
            let snapshot = (api.snapshot)();
            let backends: Vec<_> = snapshot.backends.iter().map(json::Backend::new).collect();
            reply::json(StatusCode::OK, &Backends { backends })
        }
        Endpoint::Tunnels => {
            let snapshot = (api.snapshot)();
            let tunnels: Vec<_> = snapshot.tunnels.iter().map(json::Tunnel::new).collect();
            reply::json(StatusCode::OK, &Tunnels { tunnels })
        }
        Endpoint::Tunnel(id) => {
            let snapshot = (api.snapshot)();
            match snapshot.tunnels.iter().find(|t| t.id == id) {
                Some(t) => reply::json(StatusCode::OK, &json::TunnelDetail::new(t, &api.redact)),
                None => unknown_tunnel(id),
            }
        }
        Endpoint::Messages(id) => match (api.messages)(id) {
            Some(messages) => {
                let messages: Vec<_> = messages.iter().map(json::Message::new).collect();
                reply::json(StatusCode::OK, &Messages { messages })
            }
            None => unknown_tunnel(id),
        },
        Endpoint::Har(id) => {
            let snapshot = (api.snapshot)();
            match snapshot.tunnels.iter().find(|t| t.id == id) {
                Some(t) => {
                    let tls = snapshot
                        .listeners
                        .iter()
                        .any(|l| l.name == t.listener && l.tls);
                    let messages = (api.messages)(id).unwrap_or_default();
                    let doc = crate::inspect::har::har(t, &messages, tls, &api.redact);
                    reply::json(StatusCode::OK, &doc)
                }
                None => unknown_tunnel(id),
            }
        }
        Endpoint::Recording(id) => {
            let snapshot = (api.snapshot)();
            match snapshot.tunnels.iter().find(|t| t.id == id) {
                Some(t) => {
                    let messages = (api.messages)(id).unwrap_or_default();
                    let text = crate::inspect::recording::write(t, &messages, None, &api.redact);
                    reply::with_type(StatusCode::OK, "application/jsonl", text)
                }
                None => unknown_tunnel(id),
            }
        }
        Endpoint::CloseTunnel(id) => {
            match close_params(query, (CLOSE_SERVICE_RESTART, CLOSE_REASON)) {
                Ok((code, reason)) => control(api, Command::CloseTunnel { id, code, reason }).await,
                Err(miss) => miss.reply(),
            }
        }
        Endpoint::Backend { backend, action } => {
            let command = match action {
                Action::Drain => match drain_params(query) {
                    Ok(None) => Command::Drain(backend),
                    Ok(Some((deadline, close_rate))) => Command::DrainWithin {
                        backend,
                        deadline,
                        close_rate,
                    },
                    Err(miss) => return Ok(miss.reply()),
                },
                Action::Undrain => Command::Undrain(backend),
                Action::Enable => Command::Enable(backend),
                Action::Disable => Command::Disable(backend),
                Action::Kill => {
                    let (code, reason) = &api.kill_close;
                    match close_params(query, (*code, reason)) {
                        Ok((code, reason)) => Command::Kill {
                            backend,
                            code,
                            reason,
                        },
                        Err(miss) => return Ok(miss.reply()),
                    }
                }
            };
            control(api, command).await
        }
        Endpoint::Reload => match reload_params(query) {
            Ok(true) => control(api, Command::PreviewReload).await,
            Ok(false) => control(api, Command::Reload).await,
            Err(miss) => miss.reply(),
        },
        Endpoint::Rebalance(pool) => control(api, Command::Rebalance(pool)).await,
        Endpoint::Upgrade => upgrade(api).await,
        Endpoint::Shutdown => match control(api, Command::Shutdown).await {
            r if r.status() == StatusCode::OK => reply::json(
                StatusCode::ACCEPTED,
                &Done {
                    outcome: "shutting_down",
                    tunnels: None,
                },
            ),
            r => r,
        },
        Endpoint::Events => stream::upgrade(req, ctx.clone()),
        Endpoint::Metrics => {
            // Counters only: a scrape copies no tunnel's frame samples.
            let counters = (api.counters)();
            let lagged = ctx.shared.lagged.load(Ordering::Relaxed);
            let text = metrics::render(&counters, lagged, SystemTime::now());
            reply::with_type(StatusCode::OK, metrics::CONTENT_TYPE, text)
        }
    })
}

/// `{"query": ..., "matches": [...]}`, newest first.
#[derive(Serialize)]
struct Found<'a> {
    query: &'a str,
    matches: Vec<json::message::Hit>,
}

#[derive(Serialize)]
struct Backends<'a> {
    backends: Vec<json::Backend<'a>>,
}

/// `{"messages": [...]}`, oldest first.
#[derive(Serialize)]
struct Messages<'a> {
    messages: Vec<json::Message<'a>>,
}

#[derive(Serialize)]
struct Tunnels<'a> {
    tunnels: Vec<json::Tunnel<'a>>,
}

/// `{"outcome": "done" | "closing", "tunnels": n}`.
#[derive(Serialize)]
struct Done {
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnels: Option<usize>,
}

/// `{"outcome": "reloaded", "changes": {...}}`.
#[derive(Serialize)]
struct Reloaded {
    outcome: &'static str,
    changes: json::Diff,
}

/// `{"outcome": "rebalancing", "tunnels": n, "backends": {"pool/addr": n, ...}}`:
/// the tunnels each busy backend will close.
#[derive(Serialize)]
struct Rebalancing {
    outcome: &'static str,
    tunnels: u64,
    backends: std::collections::BTreeMap<String, u64>,
}

fn unknown_tunnel(id: TunnelId) -> Response<Body> {
    reply::error(
        StatusCode::NOT_FOUND,
        format!("no live tunnel {id}; GET /api/tunnels lists them"),
    )
}

/// Asks the process for a binary upgrade and waits for the new process to be
/// ready (or to fail): 200 `{"outcome": "upgraded", "pid": N}`, else 500 with why.
async fn upgrade(api: &Api) -> Response<Body> {
    let Some(tx) = &api.upgrade else {
        return reply::error(
            StatusCode::CONFLICT,
            "this process cannot upgrade itself: binary upgrades run headless (tunnelscope --headless)",
        );
    };
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    if tx.send(reply_tx).await.is_err() {
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, "the process is stopping");
    }
    match reply_rx.await {
        Ok(Ok(pid)) => reply::json(
            StatusCode::OK,
            &Upgraded {
                outcome: "upgraded",
                pid,
            },
        ),
        Ok(Err(why)) => reply::error(StatusCode::INTERNAL_SERVER_ERROR, why),
        Err(_) => reply::error(StatusCode::SERVICE_UNAVAILABLE, "the process is stopping"),
    }
}

/// `{"outcome": "upgraded", "pid": N}`: the new process serves from now on.
#[derive(Serialize)]
struct Upgraded {
    outcome: &'static str,
    pid: u32,
}

/// Sends a command to the core and turns its outcome into the answer.
pub(super) async fn control(api: &Api, command: Command) -> Response<Body> {
    let outcome = tokio::time::timeout(CONTROL_TIMEOUT, api.control.send(command)).await;
    let done = |outcome, tunnels| {
        reply::json(
            StatusCode::OK,
            &Done {
                outcome,
                tunnels: Some(tunnels),
            },
        )
    };
    match outcome {
        Ok(Ok(Outcome::Done)) => done("done", 0),
        Ok(Ok(Outcome::Closing(n))) => done("closing", n),
        Ok(Ok(Outcome::UnknownBackend(id))) => reply::error(
            StatusCode::NOT_FOUND,
            format!("no backend {id}; GET /api/backends lists them"),
        ),
        Ok(Ok(Outcome::UnknownTunnel(id))) => unknown_tunnel(id),
        Ok(Ok(Outcome::UnknownPool(pool))) => reply::error(
            StatusCode::NOT_FOUND,
            format!("no pool {pool:?}; GET /api/backends lists pools and backends"),
        ),
        Ok(Ok(Outcome::Rebalancing(plan))) => reply::json(
            StatusCode::OK,
            &Rebalancing {
                outcome: "rebalancing",
                tunnels: plan.iter().map(|(_, n)| n).sum(),
                backends: plan.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
            },
        ),
        Ok(Ok(Outcome::Refused(why))) => reply::error(StatusCode::CONFLICT, why),
        Ok(Ok(Outcome::Reloaded(diff))) => reply::json(
            StatusCode::OK,
            &Reloaded {
                outcome: "reloaded",
                changes: json::Diff::new(&diff),
            },
        ),
        Ok(Ok(Outcome::WouldReload(diff))) => reply::json(
            StatusCode::OK,
            &Reloaded {
                outcome: "would_reload",
                changes: json::Diff::new(&diff),
            },
        ),
        Ok(Ok(Outcome::ReloadRefused(why))) => reply::error(StatusCode::BAD_REQUEST, why),
        Ok(Err(gone)) => reply::error(StatusCode::SERVICE_UNAVAILABLE, gone.to_string()),
        Err(_) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the proxy core did not answer within {CONTROL_TIMEOUT:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bearer_tokens() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(authorized(&with("Bearer s3cret"), "s3cret"));
        assert!(authorized(&with("bearer  s3cret "), "s3cret"));
        assert!(!authorized(&with("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&with("Bearer s3creT"), "s3cret"));
        assert!(!authorized(&with("Basic s3cret"), "s3cret"));
        assert!(!authorized(&with("s3cret"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }
}
