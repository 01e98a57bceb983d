//! Tunnels are spread over a pool's backends by the configured algorithm, backups
//! stand in only when no primary can, and failed backends are retried elsewhere,
//! marked down, and tried again after `fail_timeout`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use crate::common::{clients::*, pools::*};
use tokio_tungstenite::MaybeTlsStream;
use tunnelscope::control::{Command, Outcome};
use tunnelscope::event::{AdminState, Event, Health};

/// Opens `n` tunnels one after the other and keeps them open; returns each with the
/// name of the backend it reached.
async fn open_held(addr: SocketAddr, n: usize) -> Vec<(Client, String)> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut ws = connect(addr, "/").await;
        let name = whoami(&mut ws).await;
        held.push((ws, name));
    }
    held
}

/// How many of `held` reached each backend.
fn split(held: &[(Client, String)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, name) in held {
        *counts.entry(name.clone()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[tokio::test]
async fn least_conn_sends_new_tunnels_to_the_backend_with_fewest() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "")).await;
    let addr = proxy.local_addrs()[0];

    let mut held = open_held(addr, 10).await;
    assert_eq!(split(&held), counts(&[("a", 5), ("b", 5)]));

    // Three of a's tunnels end: a now has 2, b 5, so the next three all go to a.
    let mut events = proxy.subscribe();
    for _ in 0..3 {
        let i = held.iter().position(|(_, n)| n == "a").unwrap();
        hang_up(held.swap_remove(i).0).await;
    }
    wait_backend(&mut events, a.addr, |b| b.active_tunnels == 2).await;
    let more = open_held(addr, 3).await;
    assert_eq!(split(&more), counts(&[("a", 3)]));
    assert_eq!(backend_info(&proxy, a.addr).active_tunnels, 5);
    assert_eq!(backend_info(&proxy, b.addr).active_tunnels, 5);
}

#[tokio::test]
async fn least_conn_with_weights_two_to_one_holds_twenty_and_ten_of_thirty() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let toml = pool_config("", "", &[(a.addr, "weight = 2"), (b.addr, "weight = 1")]);
    let proxy = proxy(&toml).await;
    let held = open_held(proxy.local_addrs()[0], 30).await;
    assert_eq!(split(&held), counts(&[("a", 20), ("b", 10)]));
    let (ia, ib) = (backend_info(&proxy, a.addr), backend_info(&proxy, b.addr));
    assert_eq!((ia.active_tunnels, ib.active_tunnels), (20, 10));
    assert_eq!((ia.weight, ib.weight), (2, 1));
}

/// Each tunnel is closed before the next opens: both backends are then always idle,
/// so least_conn would alternate 20:20. Only the rotation can make it 30:10.
#[tokio::test]
async fn round_robin_with_weights_three_to_one_gives_exactly_thirty_and_ten_of_forty() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let toml = pool_config(
        "",
        "balance = \"round_robin\"",
        &[(a.addr, "weight = 3"), (b.addr, "weight = 1")],
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let mut order = Vec::new();
    for _ in 0..40 {
        let mut ws = connect(addr, "/").await;
        order.push(whoami(&mut ws).await);
        hang_up(ws).await;
    }
    let a_count = order.iter().filter(|n| *n == "a").count();
    assert_eq!((a_count, order.len() - a_count), (30, 10), "{order:?}");
    // Smooth: every cycle of four has b exactly once, never a burst of b.
    for cycle in order.chunks(4) {
        assert_eq!(cycle.iter().filter(|n| *n == "b").count(), 1, "{order:?}");
    }
}

#[tokio::test]
async fn ip_hash_keeps_every_tunnel_from_one_client_ip_on_one_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "balance = \"ip_hash\"")).await;
    // Held open: a load-based or rotating balancer would spread them.
    let held = open_held(proxy.local_addrs()[0], 12).await;
    let split = split(&held);
    assert_eq!(split.len(), 1, "one client IP, one backend: {split:?}");
    assert_eq!(split.values().sum::<usize>(), 12);
}

/// Connects from a chosen loopback address (all of 127.0.0.0/8 is local on Linux).
async fn connect_from(ip: Ipv4Addr, proxy: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let tcp = socket.connect(proxy).await.unwrap();
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(
            ws_url(proxy, "/"),
            MaybeTlsStream::Plain(tcp),
            Some(ws_config()),
        ),
    )
    .await
    .expect("upgrade in time")
    .expect("upgrade succeeds");
    ws
}

#[tokio::test]
async fn ip_hash_spreads_client_ips_and_keeps_each_on_its_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "balance = \"ip_hash\"")).await;
    let addr = proxy.local_addrs()[0];
    let mut first: HashMap<Ipv4Addr, String> = HashMap::new();
    let mut held = Vec::new();
    for round in 0..2 {
        for host in 2..42u8 {
            let ip = Ipv4Addr::new(127, 0, 0, host);
            let mut ws = connect_from(ip, addr).await;
            let name = whoami(&mut ws).await;
            if round == 0 {
                first.insert(ip, name);
            } else {
                assert_eq!(first[&ip], name, "{ip} moved to another backend");
            }
            held.push(ws);
        }
    }
    let on_a = first.values().filter(|n| *n == "a").count();
    assert!(
        (1..40).contains(&on_a),
        "40 client IPs should land on both backends, a got {on_a}"
    );
}

#[tokio::test]
async fn ip_hash_behind_a_trusted_proxy_hashes_the_forwarded_client_not_the_proxy() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = format!(
        "[proxy]\ntrusted_proxies = [\"127.0.0.1\"]\n\n{}",
        simple_config(&[&a, &b], "balance = \"ip_hash\"")
    );
    let proxy = proxy(&config).await;
    let addr = proxy.local_addrs()[0];
    // Every tunnel comes from 127.0.0.1 (the trusted proxy), for 40 clients.
    let mut first: HashMap<String, String> = HashMap::new();
    let mut held = Vec::new();
    for round in 0..2 {
        for host in 2..42u8 {
            let client = format!("198.51.100.{host}");
            let xff = format!("{client}, 127.0.0.1");
            let mut ws = connect_with(addr, "/", &[("X-Forwarded-For", &xff)]).await;
            let name = whoami(&mut ws).await;
            if round == 0 {
                first.insert(client, name);
            } else {
                assert_eq!(first[&client], name, "{client} moved to another backend");
            }
            held.push(ws);
        }
    }
    let on_a = first.values().filter(|n| *n == "a").count();
    assert!(
        (1..40).contains(&on_a),
        "40 forwarded clients behind one proxy should land on both backends, a got {on_a}"
    );
}

/// Two backends behind `balance = "hash"` with `hash_key`; each of 40 keys is sent
/// twice (all tunnels held open) through a client made by `headers_for(key)` and
/// `path_for(key)`.
async fn hash_key_is_sticky_and_spreads(
    hash_key: &str,
    path_for: impl Fn(&str) -> String,
    headers_for: impl Fn(&str) -> Vec<(&'static str, String)>,
) {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = format!("balance = \"hash\"\nhash_key = \"{hash_key}\"");
    let proxy = proxy(&simple_config(&[&a, &b], &extra)).await;
    let addr = proxy.local_addrs()[0];
    let mut first: HashMap<String, String> = HashMap::new();
    let mut held = Vec::new();
    for round in 0..2 {
        for i in 0..40 {
            let key = format!("user-{i}");
            let headers = headers_for(&key);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, &**v)).collect();
            let mut ws = connect_with(addr, &path_for(&key), &headers).await;
            let name = whoami(&mut ws).await;
            if round == 0 {
                first.insert(key, name);
            } else {
                assert_eq!(
                    first[&key], name,
                    "{hash_key}={key} moved to another backend"
                );
            }
            held.push(ws);
        }
    }
    let on_a = first.values().filter(|n| *n == "a").count();
    assert!(
        (1..40).contains(&on_a),
        "40 keys should land on both backends, a got {on_a}"
    );
}

#[tokio::test]
async fn hash_on_a_cookie_keeps_each_session_on_one_backend_and_spreads_sessions() {
    hash_key_is_sticky_and_spreads(
        "cookie:session",
        |_| "/".to_string(),
        |key| vec![("cookie", format!("theme=dark; session={key}; lang=en"))],
    )
    .await;
}

#[tokio::test]
async fn hash_on_a_header_keeps_each_user_on_one_backend_and_spreads_users() {
    hash_key_is_sticky_and_spreads(
        "header:x-user",
        |_| "/".to_string(),
        |key| vec![("X-User", key.to_string())],
    )
    .await;
}

#[tokio::test]
async fn hash_on_a_query_parameter_keeps_each_room_on_one_backend_and_spreads_rooms() {
    hash_key_is_sticky_and_spreads(
        "query:room",
        |key| format!("/chat?lang=en&room={key}&x=1"),
        |_| Vec::new(),
    )
    .await;
}

#[tokio::test]
async fn hash_without_the_key_in_the_request_falls_back_to_round_robin() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let extra = "balance = \"hash\"\nhash_key = \"cookie:session\"";
    let proxy = proxy(&simple_config(&[&a, &b], extra)).await;
    let addr = proxy.local_addrs()[0];
    let mut order = Vec::new();
    for _ in 0..10 {
        let mut ws = connect(addr, "/").await;
        order.push(whoami(&mut ws).await);
        hang_up(ws).await;
    }
    assert_eq!(
        order,
        ["a", "b"].repeat(5),
        "keyless requests rotate evenly"
    );
}

#[tokio::test]
async fn backup_gets_nothing_while_a_primary_is_eligible_and_everything_once_all_are_disabled() {
    let (p1, p2, k) = (
        Backend::start("p1").await,
        Backend::start("p2").await,
        Backend::start("backup").await,
    );
    let toml = pool_config(
        "",
        "",
        &[(p1.addr, ""), (p2.addr, ""), (k.addr, "backup = true")],
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let control = proxy.control();

    // Held open, so least_conn would use the idle backup if it could.
    let mut held = open_held(addr, 6).await;
    assert_eq!(split(&held), counts(&[("p1", 3), ("p2", 3)]));

    // One primary left: it takes everything, however loaded.
    let disable = Command::Disable(backend_id(p1.addr));
    assert_eq!(control.send(disable).await.unwrap(), Outcome::Done);
    held.extend(open_held(addr, 3).await);
    assert_eq!(split(&held[6..]), counts(&[("p2", 3)]));

    // No primary left: the backup takes over.
    let disable = Command::Disable(backend_id(p2.addr));
    assert_eq!(control.send(disable).await.unwrap(), Outcome::Done);
    let on_backup = open_held(addr, 4).await;
    assert_eq!(split(&on_backup), counts(&[("backup", 4)]));
    assert_eq!(backend_info(&proxy, p1.addr).admin, AdminState::Disabled);

    // Disabling leaves existing tunnels alone.
    for (ws, name) in held.iter_mut() {
        assert_eq!(&whoami(ws).await, name);
    }

    // A primary is back: the backup gets nothing new, even though p1 is busier.
    let enable = Command::Enable(backend_id(p1.addr));
    assert_eq!(control.send(enable).await.unwrap(), Outcome::Done);
    let back = open_held(addr, 3).await;
    assert_eq!(split(&back), counts(&[("p1", 3)]));
    assert_eq!(backend_info(&proxy, k.addr).active_tunnels, 4);
}

#[tokio::test]
async fn backup_takes_the_tunnels_when_the_primary_is_down() {
    let dead = dead_addr().await;
    let k = Backend::start("backup").await;
    let toml = pool_config("", "", &[(dead, ""), (k.addr, "backup = true")]);
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let held = open_held(proxy.local_addrs()[0], 5).await;
    assert_eq!(split(&held), counts(&[("backup", 5)]));
    wait_backend(&mut events, dead, |b| b.health == Health::Down).await;
    assert_eq!(backend_info(&proxy, dead).health, Health::Down);
}

#[tokio::test]
async fn refused_connects_are_retried_on_another_backend_which_is_marked_down() {
    let dead = dead_addr().await;
    let live = Backend::start("live").await;
    // The dead one first: least_conn's first pick among equals is the first server.
    let toml = pool_config("", "", &[(dead, ""), (live.addr, "")]);
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let addr = proxy.local_addrs()[0];
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(addr, "/").await;
        assert_eq!(whoami(&mut ws).await, "live");
        held.push(ws);
    }
    let down = wait_backend(&mut events, dead, |b| b.health == Health::Down).await;
    assert!(down.last_error.is_some());

    let info = backend_info(&proxy, dead);
    assert_eq!(info.health, Health::Down);
    assert_eq!(info.admin, AdminState::Active, "health is not admin state");
    // Down for fail_timeout (10 s by default): tried once, not once per tunnel.
    assert_eq!(info.failures, 1);
    let err = info.last_error.expect("the connect error is kept");
    assert!(!err.is_empty());
    assert_eq!(info.active_tunnels, 0);
    let live_info = backend_info(&proxy, live.addr);
    assert_eq!(
        (
            live_info.health,
            live_info.active_tunnels,
            live_info.failures
        ),
        (Health::Up, 20, 0)
    );
}

#[tokio::test]
async fn a_down_backend_is_tried_again_after_fail_timeout_and_comes_back_up() {
    let fail_timeout = Duration::from_millis(300);
    let revived_addr = dead_addr().await;
    let live = Backend::start("live").await;
    let toml = pool_config(
        "",
        "max_fails = 1\nfail_timeout = \"300ms\"",
        &[(revived_addr, ""), (live.addr, "")],
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();

    let before_failure = tokio::time::Instant::now();
    // Held open: from now on least_conn prefers the other backend whenever eligible.
    let mut first = connect(addr, "/").await;
    assert_eq!(whoami(&mut first).await, "live");
    wait_backend(&mut events, revived_addr, |b| b.health == Health::Down).await;
    let down_by = tokio::time::Instant::now();

    // Alive again, but still inside fail_timeout: not tried yet.
    let revived = Backend::serve("revived", rebind(revived_addr));
    let mut early = connect(addr, "/").await;
    let early_name = whoami(&mut early).await;
    if before_failure.elapsed() < fail_timeout {
        assert_eq!(
            early_name, "live",
            "a down backend was used within fail_timeout"
        );
    }
    hang_up(early).await;

    // Time must pass for this behaviour: the trial comes fail_timeout after the
    // failure, which happened before `down_by`.
    tokio::time::sleep_until(down_by + fail_timeout).await;
    let mut trial = connect(addr, "/").await;
    assert_eq!(whoami(&mut trial).await, "revived");
    let up = wait_backend(&mut events, revived_addr, |b| b.health == Health::Up).await;
    assert_eq!(
        up.failures, 1,
        "failures are history, not reset by recovery"
    );
    assert_eq!(backend_info(&proxy, revived_addr).health, Health::Up);
    assert_eq!(revived.seen().len(), 1);
}

#[tokio::test]
async fn all_backends_dead_gives_502_then_503_while_they_are_down() {
    let (d1, d2) = (dead_addr().await, dead_addr().await);
    let toml = pool_config("", "", &[(d1, ""), (d2, "")]);
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();

    assert_eq!(try_connect(addr, "/", &[]).await.err(), Some(502));
    let refused = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
    let Event::Refused { refusal, .. } = refused else {
        unreachable!()
    };
    assert_eq!(refusal.status, 502);
    for dead in [d1, d2] {
        let info = backend_info(&proxy, dead);
        assert_eq!((info.health, info.failures), (Health::Down, 1));
    }

    // Both are down now: nothing is eligible, which is a 503, not another attempt.
    assert_eq!(try_connect(addr, "/", &[]).await.err(), Some(503));
    assert_eq!(backend_info(&proxy, d1).failures, 1);
    assert_eq!(backend_info(&proxy, d2).failures, 1);
}

#[tokio::test]
async fn tries_one_gives_502_when_the_first_pick_is_dead_even_with_another_alive() {
    let dead = dead_addr().await;
    let live = Backend::start("live").await;
    let toml = pool_config("", "tries = 1", &[(dead, ""), (live.addr, "")]);
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    // least_conn's first pick among idle equals is the first server: the dead one.
    assert_eq!(try_connect(addr, "/", &[]).await.err(), Some(502));
    assert_eq!(backend_info(&proxy, dead).health, Health::Down);
    assert!(
        live.seen().is_empty(),
        "tries = 1 must not try a second backend"
    );
    // The next request no longer picks the down one.
    let mut ws = connect(addr, "/").await;
    assert_eq!(whoami(&mut ws).await, "live");
}

/// Hash stickiness holds across instances with no shared state: two separate
/// processes (the real binary, each its own config file listing the same three
/// backends in a different order) send each of 40 users to the same backend,
/// because every instance computes the same ring from the backends' addresses.
#[tokio::test]
async fn two_separate_instances_send_each_hashed_user_to_the_same_backend() {
    use crate::common::binary::Proc;
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let dir = tempfile::TempDir::new().unwrap();
    let mut addrs = Vec::new();
    let mut procs = Vec::new();
    for (n, order) in [[0, 1, 2], [2, 0, 1]].into_iter().enumerate() {
        let servers: String = order
            .iter()
            .map(|&i| format!("[[pool.app.server]]\naddr = \"{}\"\n", backends[i].addr))
            .collect();
        let file = dir.path().join(format!("{n}.toml"));
        std::fs::write(
            &file,
            format!(
                "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\nbalance = \"hash\"\n\
                 hash_key = \"header:x-user\"\n{servers}"
            ),
        )
        .unwrap();
        let mut p = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
        addrs.push(p.listening().await);
        procs.push(p);
    }
    let mut spread = HashMap::new();
    for i in 0..40 {
        let user = format!("user-{i}");
        let mut names = Vec::new();
        for addr in &addrs {
            let mut ws = connect_with(*addr, "/", &[("X-User", &user)]).await;
            names.push(whoami(&mut ws).await);
        }
        assert_eq!(names[0], names[1], "{user} went to different backends");
        *spread.entry(names[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(spread.len(), 3, "40 users over three backends: {spread:?}");
}
