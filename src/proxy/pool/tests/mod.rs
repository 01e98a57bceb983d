//! Unit tests of the pools, one module per area; the fixtures they share are here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::select::fnv1a64;
use super::*;
use crate::config::{self, Balance, HostHeader};
use crate::event::{AdminState, BackendId, BackendInfo, Event, Health};

const A: &str = "10.0.0.1:80";
const B: &str = "10.0.0.2:80";
const C: &str = "10.0.0.3:80";
const D: &str = "10.0.0.4:80";

/// A pool configuration: servers as (addr, weight, backup).
fn cfg(balance: Balance, servers: &[(&str, u32, bool)]) -> config::Pool {
    config::Pool {
        balance,
        hash_key: None,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        tries: 3,
        host_header: HostHeader::Keep,
        tls: false,
        ca: None,
        server_name: None,
        drain_deadline: Duration::ZERO,
        close_rate: 50,
        resolve_interval: Duration::from_secs(30),
        keepalive: 32,
        keepalive_timeout: Duration::from_secs(60),
        health: None,
        servers: servers
            .iter()
            .map(|&(addr, weight, backup)| config::Server {
                addr: addr.to_string(),
                weight,
                backup,
                via: None,
            })
            .collect(),
    }
}

fn pool_with(config: config::Pool) -> (Pool, broadcast::Receiver<Event>) {
    let (tx, rx) = broadcast::channel(4096);
    (Pool::new("p", config, tx), rx)
}

fn pool(balance: Balance, servers: &[(&str, u32, bool)]) -> Pool {
    pool_with(cfg(balance, servers)).0
}

fn backend<'a>(pool: &'a Pool, addr: &str) -> &'a Arc<Backend> {
    pool.backends().iter().find(|b| b.addr == addr).unwrap()
}

fn id(addr: &str) -> BackendId {
    BackendId::new("p", addr)
}

/// Address of the pick, "-" for none.
fn pick_addr(pool: &Pool, key: Option<&str>) -> String {
    pool.pick(key, &[]).map_or("-".into(), |b| b.addr.clone())
}

/// How many of `n` picks each address got, leases held or not.
fn count_picks(pool: &Pool, n: usize, hold: bool) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let b = pool.pick(None, &[]).unwrap();
        *counts.entry(b.addr.clone()).or_insert(0) += 1;
        if hold {
            held.push(b.lease());
        }
    }
    counts
}

/// The state events published so far, in order.
fn states(rx: &mut broadcast::Receiver<Event>) -> Vec<BackendInfo> {
    let mut out = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let Event::BackendState(info) = event {
            out.push(info);
        }
    }
    out
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

fn assignment(pool: &Pool, keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| pick_addr(pool, Some(k))).collect()
}

mod admin;
mod balancing;
mod health;
mod leases;
