//! Paced closes: a drain's deadline, a backend that checks found down (with
//! `close_on_down`), and a rebalance all close a backend's tunnels with 1012 at a
//! frame boundary, `close_rate` a second, so their clients reconnect elsewhere as a
//! trickle rather than a storm. Progress is published with the backend's state.

use crate::sync::lock;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::pool::Backend;
use super::registry::Registry;
use crate::config::Balance;
use crate::control::CLOSE_SERVICE_RESTART;
use crate::event::{AdminState, BackendId, PaceCause};

/// One paced close of one backend's tunnels.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub cause: PaceCause,
    /// Wait this long before the first close (a drain's deadline).
    pub after: Duration,
    /// Closes per second (at least 1).
    pub rate: u32,
    /// Close at most this many (a rebalance's share); all of them when None.
    pub quota: Option<u64>,
}

/// Runs a plan to its end: all closed, quota met, the cause gone (undrained,
/// back up, no longer active), or superseded by a newer plan for the backend.
pub(super) async fn run(core: Arc<Registry>, backend: Arc<Backend>, plan: Plan) {
    let id = &backend.id;
    let rate = plan.rate.max(1);
    let pending = |core: &Registry| open_tunnels(core, id);
    let left = |closed: u64| match plan.quota {
        Some(q) => q.saturating_sub(closed),
        None => pending(&core) as u64,
    };
    let starts = SystemTime::now()
        .checked_add(plan.after)
        .unwrap_or_else(SystemTime::now);
    let token = backend.begin_pace(plan.cause, starts, rate, left(0));
    tracing::info!(backend = %id, cause = plan.cause.name(), after = ?plan.after, rate, quota = ?plan.quota, "paced close planned");
    tokio::time::sleep(plan.after).await;
    let gap = Duration::from_secs(1) / rate;
    let mut closed = 0u64;
    while holds(&backend, plan.cause) && left(closed) > 0 {
        let next = lock(&core.tunnels)
            .values()
            .filter(|t| &t.backend == id && !t.is_closing())
            .min_by_key(|t| t.id)
            .cloned();
        let Some(tunnel) = next else {
            break;
        };
        // A newer plan for this backend (or its end) replaced this one meanwhile.
        if !backend.pace_current(token) {
            tracing::info!(backend = %id, closed, "paced close superseded");
            return;
        }
        tunnel.request_close(CLOSE_SERVICE_RESTART, plan.cause.reason());
        closed += 1;
        if !backend.pace_step(token, closed, left(closed)) {
            tracing::info!(backend = %id, closed, "paced close superseded");
            return;
        }
        tokio::time::sleep(gap).await;
    }
    backend.end_pace(token);
    tracing::info!(backend = %id, cause = plan.cause.name(), closed, "paced close over");
}

/// Whether the reason for closing still holds.
fn holds(backend: &Backend, cause: PaceCause) -> bool {
    match cause {
        PaceCause::Drain => backend.admin() == AdminState::Draining,
        PaceCause::Down => backend.check_down() && backend.admin() != AdminState::Disabled,
        PaceCause::Rebalance => backend.admin() == AdminState::Active,
    }
}

/// Tunnels on the backend not yet asked to close.
fn open_tunnels(core: &Registry, id: &BackendId) -> usize {
    lock(&core.tunnels)
        .values()
        .filter(|t| &t.backend == id && !t.is_closing())
        .count()
}

/// Why a pool cannot be rebalanced.
#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    #[error("no pool named {0:?}")]
    UnknownPool(String),
    #[error("pool {0:?} balances by hash: each key belongs on its backend, and a reconnect would land there again")]
    Hashed(String),
}

/// How many tunnels each backend of the pool holds beyond its weighted share of
/// the tunnels on the backends now in service; closing that many evens the spread
/// once their clients reconnect. Only primaries in service take part.
pub(super) fn rebalance_plan(
    core: &Registry,
    pool: &str,
) -> Result<Vec<(Arc<Backend>, u64)>, RebalanceError> {
    let p = core
        .pools
        .get(pool)
        .ok_or_else(|| RebalanceError::UnknownPool(pool.to_string()))?;
    if matches!(p.config.balance, Balance::IpHash | Balance::Hash) {
        return Err(RebalanceError::Hashed(pool.to_string()));
    }
    let now = Instant::now();
    let serving: Vec<(&Arc<Backend>, u64)> = p
        .backends()
        .iter()
        .filter(|b| !b.backup && b.eligible(now))
        .map(|b| (b, open_tunnels(core, &b.id) as u64))
        .collect();
    if serving.len() < 2 {
        return Ok(Vec::new());
    }
    let total: u64 = serving.iter().map(|(_, n)| n).sum();
    let weights: u64 = serving.iter().map(|(b, _)| u64::from(b.weight)).sum();
    Ok(serving
        .into_iter()
        .filter_map(|(b, n)| {
            let share = (total * u64::from(b.weight)).div_ceil(weights);
            (n > share).then(|| (b.clone(), n - share))
        })
        .collect())
}
