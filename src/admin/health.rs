//! `GET /healthz` (the process answers) and `GET /readyz` (it should be sent
//! clients: not while it shuts down, nor while no pool has a backend that takes
//! new tunnels). Both answer without the token: probes (a kubelet, a layer-4
//! balancer) seldom carry one, and neither says more than ready or not, and why.

use http::{Response, StatusCode};
use serde::Serialize;

use crate::event::{AdminState, BackendInfo, Health, Readiness};

use super::reply::{self, Body};

#[derive(Serialize)]
struct Live {
    status: &'static str,
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
    /// Backends that take new tunnels now.
    eligible: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Liveness: answering at all is the answer.
pub fn live() -> Response<Body> {
    reply::json(StatusCode::OK, &Live { status: "ok" })
}

/// Readiness: 200 when ready, else 503 with the reason.
pub fn ready(r: &Readiness) -> Response<Body> {
    let eligible = r.backends.iter().filter(|b| eligible(b)).count();
    match verdict(r) {
        Ok(()) => reply::json(
            StatusCode::OK,
            &Ready {
                ready: true,
                eligible,
                reason: None,
            },
        ),
        Err(why) => reply::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Ready {
                ready: false,
                eligible,
                reason: Some(why),
            },
        ),
    }
}

/// A backend a new tunnel could go to.
fn eligible(b: &BackendInfo) -> bool {
    b.admin == AdminState::Active && b.health == Health::Up
}

/// Why the proxy is not ready, if it is not.
pub fn verdict(r: &Readiness) -> Result<(), String> {
    if r.shutting_down {
        return Err("shutting down".into());
    }
    if r.backends.iter().any(eligible) {
        return Ok(());
    }
    if r.backends.is_empty() {
        return Err("no backend is configured".into());
    }
    // Say, per pool, what keeps each backend out.
    let mut pools: Vec<(&str, Vec<String>)> = Vec::new();
    for b in &r.backends {
        let why = if b.admin != AdminState::Active {
            b.admin.to_string()
        } else {
            "down".to_string()
        };
        let pool = &*b.id.pool;
        match pools.iter_mut().find(|(p, _)| *p == pool) {
            Some((_, v)) => v.push(why),
            None => pools.push((pool, vec![why])),
        }
    }
    let parts: Vec<String> = pools
        .into_iter()
        .map(|(pool, whys)| {
            let mut counted: Vec<(String, usize)> = Vec::new();
            for w in whys {
                match counted.iter_mut().find(|(x, _)| *x == w) {
                    Some((_, n)) => *n += 1,
                    None => counted.push((w, 1)),
                }
            }
            let list: Vec<String> = counted.iter().map(|(w, n)| format!("{n} {w}")).collect();
            format!("pool {pool}: {}", list.join(", "))
        })
        .collect();
    Err(format!(
        "no pool has an eligible backend ({})",
        parts.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BackendId;

    fn backend(pool: &str, port: u16, admin: AdminState, health: Health) -> BackendInfo {
        BackendInfo {
            id: BackendId::new(pool, &format!("127.0.0.1:{port}")),
            weight: 1,
            backup: false,
            via: None,
            admin,
            health,
            active_tunnels: 0,
            total_tunnels: 0,
            failures: 0,
            last_error: None,
            check: None,
            closing: None,
            version: 0,
        }
    }

    #[test]
    fn one_eligible_backend_in_any_pool_is_enough() {
        let r = Readiness {
            shutting_down: false,
            backends: vec![
                backend("a", 1, AdminState::Draining, Health::Up),
                backend("b", 2, AdminState::Active, Health::Up),
            ],
        };
        assert_eq!(verdict(&r), Ok(()));
    }

    #[test]
    fn not_ready_says_what_keeps_each_pools_backends_out() {
        let r = Readiness {
            shutting_down: false,
            backends: vec![
                backend("a", 1, AdminState::Draining, Health::Up),
                backend("a", 2, AdminState::Active, Health::Down),
                backend("a", 3, AdminState::Active, Health::Down),
                backend("b", 4, AdminState::Disabled, Health::Up),
            ],
        };
        let why = verdict(&r).unwrap_err();
        assert_eq!(
            why,
            "no pool has an eligible backend (pool a: 1 draining, 2 down; pool b: 1 disabled)"
        );
    }

    #[test]
    fn shutting_down_is_never_ready() {
        let r = Readiness {
            shutting_down: true,
            backends: vec![backend("a", 1, AdminState::Active, Health::Up)],
        };
        assert_eq!(verdict(&r), Err("shutting down".into()));
    }
}
