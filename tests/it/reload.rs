//! Reload in place: the config file re-read under live traffic. Backends added join,
//! removed ones drain with their tunnels running on, routes and settings apply to
//! new requests, a broken file is refused whole, and no tunnel is dropped.

use std::path::{Path, PathBuf};

use crate::common::*;
use tunnelscope::config::Config;
use tunnelscope::control::{Command, Outcome};
use tunnelscope::event::{AdminState, BackendId, Event};
use tunnelscope::proxy::ProxyHandle;

/// A config file with one plain listener and pool `app` over these backends.
fn write_config(dir: &Path, backends: &[&Backend]) -> PathBuf {
    let path = dir.join("tunnelscope.toml");
    std::fs::write(&path, simple_config(backends, "")).unwrap();
    path
}

async fn start(path: &Path) -> ProxyHandle {
    let config = Config::load(path).expect("test config loads");
    tunnelscope::proxy::start(config)
        .await
        .expect("proxy starts")
}

fn id(b: &Backend) -> BackendId {
    BackendId::new("app", &b.addr.to_string())
}

/// Twenty held tunnels live through a reload that swaps one backend for another:
/// none is dropped, the removed backend drains (listed until its last tunnel ends),
/// new tunnels reach only the backends of the new file.
#[tokio::test]
async fn a_reload_swapping_backends_drops_no_tunnel_and_new_ones_reach_the_new_set() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let dir = tempfile::TempDir::new().unwrap();
    let path = write_config(dir.path(), &[&a, &b]);
    let proxy = start(&path).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(addr, "/held").await;
        let name = whoami(&mut ws).await;
        held.push((ws, name));
    }
    assert!(held.iter().any(|(_, n)| n == "a"));

    write_config(dir.path(), &[&b, &c]);
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::Reloaded(diff) = outcome else {
        panic!("expected a reload, got {outcome:?}");
    };
    assert_eq!(diff.backends_added, [id(&c)]);
    assert_eq!(diff.backends_removed, [id(&a)]);
    assert!(diff.backends_changed.is_empty() && diff.not_applied.is_empty());
    let ev = wait_event(&mut events, |e| matches!(e, Event::ConfigReloaded(_))).await;
    assert!(matches!(ev, Event::ConfigReloaded(d) if d == *diff));

    // Every held tunnel runs on, on the backend it had.
    for (ws, name) in &mut held {
        assert_eq!(&whoami(ws).await, name);
    }
    // The removed backend is listed, draining, while it has tunnels.
    let a_info = |p: &ProxyHandle| p.snapshot().backends.into_iter().find(|x| x.id == id(&a));
    let on_a = held.iter().filter(|(_, n)| n == "a").count() as u64;
    let info = a_info(&proxy).expect("a is listed while it has tunnels");
    assert_eq!(
        (info.admin, info.active_tunnels),
        (AdminState::Draining, on_a)
    );
    // New tunnels go to b and c only, and c gets some.
    let mut names = Vec::new();
    for _ in 0..12 {
        let mut ws = connect(addr, "/new").await;
        names.push(whoami(&mut ws).await);
    }
    assert!(names.iter().all(|n| n == "b" || n == "c"), "{names:?}");
    assert!(names.iter().any(|n| n == "c"), "{names:?}");

    // Once a's last tunnel ends, it is gone from the list.
    for (ws, name) in held.drain(..) {
        if name == "a" {
            crate::common::clients::hang_up(ws).await;
        }
    }
    wait_event(
        &mut events,
        |e| matches!(e, Event::BackendState(i) if i.id == id(&a) && i.active_tunnels == 0),
    )
    .await;
    assert!(a_info(&proxy).is_none());
}

/// A file that does not parse or validate is refused whole, naming file, line,
/// column and key; the running config keeps serving.
#[tokio::test]
async fn a_broken_file_is_refused_and_the_running_config_keeps_serving() {
    let a = Backend::start("a").await;
    let dir = tempfile::TempDir::new().unwrap();
    let path = write_config(dir.path(), &[&a]);
    let proxy = start(&path).await;
    let addr = proxy.local_addrs()[0];
    let mut held = connect(addr, "/held").await;

    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("[pool.app]", "[pool.app]\nbalance = \"fastest\""),
    )
    .unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::ReloadRefused(why) = outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert!(why.contains("tunnelscope.toml:"), "{why}");
    assert!(why.contains("key pool.app.balance"), "{why}");

    assert_eq!(whoami(&mut held).await, "a");
    let mut fresh = connect(addr, "/fresh").await;
    assert_eq!(whoami(&mut fresh).await, "a");
}

/// A proxy not started from a file has nothing to re-read, and says so.
#[tokio::test]
async fn a_reload_without_a_file_is_refused_plainly() {
    let a = Backend::start("a").await;
    let proxy = proxy(&simple_config(&[&a], "")).await;
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::ReloadRefused(why) if why.contains("not started from a config file")),
        "{outcome:?}"
    );
}

/// A certificate renewed on disk is served to the next TLS client after a reload,
/// while a wss tunnel made before carries on; a broken key file refuses the reload
/// and the renewed certificate stays served.
#[tokio::test]
async fn a_certificate_renewed_on_disk_is_served_after_a_reload() {
    use crate::common::certs::TestPki;
    use crate::common::clients::{connect_wss, echo_on};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let a = Backend::start("a").await;
    let pki = TestPki::new();
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let install = |(c, k): (PathBuf, PathBuf)| {
        std::fs::copy(&c, &cert).unwrap();
        std::fs::copy(&k, &key).unwrap();
        CertificateDer::pem_file_iter(&c)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    };
    let old_leaf = install(pki.leaf(&["localhost"]));
    let path = dir.path().join("tunnelscope.toml");
    std::fs::write(
        &path,
        format!(
            "[[listener]]\nname = \"wss\"\nbind = \"127.0.0.1:0\"\n[listener.tls]\n\
             cert = \"cert.pem\"\nkey = \"key.pem\"\n\n[pool.app]\n\
             [[pool.app.server]]\naddr = \"{}\"\n",
            a.addr
        ),
    )
    .unwrap();
    let proxy = start(&path).await;
    let addr = proxy.local_addrs()[0];
    let served = |tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    assert_eq!(served(&pki.connect(addr, "localhost").await), old_leaf);
    let mut held = connect_wss(&pki, addr, "/held").await;
    echo_on(&mut held, "before").await;

    let new_leaf = install(pki.leaf(&["localhost"]));
    assert_ne!(new_leaf, old_leaf);
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::Reloaded(diff) = outcome else {
        panic!("expected a reload, got {outcome:?}");
    };
    assert_eq!(diff.certificates_reloaded, ["wss"]);
    assert_eq!(served(&pki.connect(addr, "localhost").await), new_leaf);
    echo_on(&mut held, "after").await;

    std::fs::write(&key, "not a key").unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::ReloadRefused(why) if why.contains("listener wss")),
        "{outcome:?}"
    );
    assert_eq!(served(&pki.connect(addr, "localhost").await), new_leaf);
}

/// A config with pool `app` over `a` and these listeners (`name = bind`).
fn listeners_config(a: &Backend, listeners: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, bind) in listeners {
        out.push_str(&format!(
            "[[listener]]\nname = \"{name}\"\nbind = \"{bind}\"\n\n"
        ));
    }
    out.push_str(&format!(
        "[pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        a.addr
    ));
    out
}

/// A reload starts the listeners the file adds (the diff gives the address each
/// got) and stops the ones it drops: they take no new connection, while the tunnel
/// a removed listener accepted runs on. The kept one is untouched.
#[tokio::test]
async fn listeners_added_start_accepting_and_removed_ones_stop_while_their_tunnels_run_on() {
    use crate::common::binary::{free_port_on, private_loopback};
    let a = Backend::start("a").await;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("tunnelscope.toml");
    let ip = private_loopback();
    let (old_port, new_port) = (free_port_on(&ip), free_port_on(&ip));
    let kept = ("kept", "127.0.0.1:0".to_string());
    std::fs::write(
        &path,
        listeners_config(&a, &[kept.clone(), ("old", format!("{ip}:{old_port}"))]),
    )
    .unwrap();
    let proxy = start(&path).await;
    let kept_addr = proxy.local_addrs()[0];
    let old_addr = proxy.local_addrs()[1];
    let mut via_old = connect(old_addr, "/held").await;
    assert_eq!(whoami(&mut via_old).await, "a");

    std::fs::write(
        &path,
        listeners_config(&a, &[kept, ("new", format!("{ip}:{new_port}"))]),
    )
    .unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::Reloaded(diff) = outcome else {
        panic!("expected a reload, got {outcome:?}");
    };
    let names = |v: &[tunnelscope::event::ListenerInfo]| {
        v.iter()
            .map(|l| (l.name.to_string(), l.addr))
            .collect::<Vec<_>>()
    };
    let new_addr: std::net::SocketAddr = format!("{ip}:{new_port}").parse().unwrap();
    assert_eq!(
        names(&diff.listeners_added),
        [("new".to_string(), new_addr)]
    );
    assert_eq!(
        names(&diff.listeners_removed),
        [("old".to_string(), old_addr)]
    );
    assert!(diff.not_applied.is_empty(), "{:?}", diff.not_applied);
    assert!(
        diff.summary().contains("started listener new"),
        "{}",
        diff.summary()
    );

    let mut via_new = connect(new_addr, "/new").await;
    assert_eq!(whoami(&mut via_new).await, "a");
    let mut via_kept = connect(kept_addr, "/kept").await;
    assert_eq!(whoami(&mut via_kept).await, "a");
    assert_eq!(
        whoami(&mut via_old).await,
        "a",
        "the old listener's tunnel runs on"
    );
    // The removed listener's sockets close as each event loop takes the stop (they
    // do so on their own threads): connecting is soon refused.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(old_addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused, "the removed listener still accepts after 2 s");
    let listed = names(&proxy.snapshot().listeners);
    assert_eq!(
        listed,
        [
            ("kept".to_string(), kept_addr),
            ("new".to_string(), new_addr)
        ]
    );
}

/// A listener the new file adds on an address another socket holds refuses the
/// whole reload, saying which address; nothing else in the file is applied.
#[tokio::test]
async fn a_listener_that_cannot_bind_refuses_the_reload_whole() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::TempDir::new().unwrap();
    let path = write_config(dir.path(), &[&a]);
    let proxy = start(&path).await;
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    std::fs::write(
        &path,
        format!(
            "{}\n[[listener]]\nname = \"busy\"\nbind = \"{taken}\"\n",
            simple_config(&[&a, &b], "")
        ),
    )
    .unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::ReloadRefused(why) = &outcome else {
        panic!("expected a refusal, got {outcome:?}");
    };
    assert!(why.contains(&taken.to_string()), "{why}");
    let snapshot = proxy.snapshot();
    assert_eq!(snapshot.listeners.len(), 1);
    assert!(
        snapshot.backends.iter().all(|x| x.id != id(&b)),
        "b joined from a refused file"
    );
}

/// A listener's name, or TLS switched on or off on the same address, needs a
/// restart: the reload applies the rest and says so.
#[tokio::test]
async fn a_renamed_listener_is_reported_as_not_applied() {
    let a = Backend::start("a").await;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("tunnelscope.toml");
    std::fs::write(
        &path,
        listeners_config(&a, &[("one", "127.0.0.1:0".into())]),
    )
    .unwrap();
    let proxy = start(&path).await;
    std::fs::write(
        &path,
        listeners_config(&a, &[("two", "127.0.0.1:0".into())]),
    )
    .unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    let Outcome::Reloaded(diff) = outcome else {
        panic!("expected a reload, got {outcome:?}");
    };
    assert_eq!(diff.not_applied, ["listener one: renamed to two"]);
    assert!(diff.listeners_added.is_empty() && diff.listeners_removed.is_empty());
}

/// Two hundred held tunnels and a steady echo load live through ten reloads, each
/// swapping one backend of the pool for another: no tunnel is dropped, no echo
/// fails, and after each reload a new tunnel reaches the backend just added (it
/// has the fewest tunnels, and the pool balances by least connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tunnels_and_an_echo_load_live_through_ten_reloads() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    const HELD: usize = 200;
    const RELOADS: usize = 10;
    let mut backends = Vec::new();
    for i in 0..4 {
        backends.push(Backend::start(&format!("b{i}")).await);
    }
    // Reload k serves backends k and k+1 (mod 4): each one drops one, adds one.
    let set = |k: usize| [&backends[k % 4], &backends[(k + 1) % 4]];
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("tunnelscope.toml");
    std::fs::write(&path, simple_config(&set(0), "")).unwrap();
    let proxy = start(&path).await;
    let addr = proxy.local_addrs()[0];
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut ws = connect(addr, "/held").await;
        let name = whoami(&mut ws).await;
        held.push((ws, name));
    }
    // The load: four clients echoing without pause until told to stop, each
    // bounded in count; any failure is counted.
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut load = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        let mut ws = connect(addr, "/load").await;
        load.push(tokio::spawn(async move {
            let (mut sent, mut failed) = (0u32, 0u32);
            let stopped = stop.notified();
            tokio::pin!(stopped);
            while sent < 100_000 {
                let text = format!("load {c} {sent}");
                let round = async {
                    ws.send(Message::text(text.clone())).await.ok()?;
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.as_str() == text => Some(()),
                        _ => None,
                    }
                };
                tokio::select! {
                    _ = &mut stopped => break,
                    ok = round => {
                        sent += 1;
                        if ok.is_none() {
                            failed += 1;
                            break;
                        }
                    }
                }
            }
            (sent, failed)
        }));
    }
    for k in 1..=RELOADS {
        std::fs::write(&path, simple_config(&set(k), "")).unwrap();
        let outcome = proxy.control().send(Command::Reload).await.unwrap();
        let Outcome::Reloaded(diff) = outcome else {
            panic!("reload {k}: {outcome:?}");
        };
        let added = &backends[(k + 1) % 4];
        assert_eq!(diff.backends_added, [id(added)], "reload {k}");
        let mut ws = connect(addr, "/new").await;
        assert_eq!(whoami(&mut ws).await, added.name, "reload {k}");
        held.push((ws, added.name.clone()));
    }
    stop.notify_waiters();
    for (i, task) in load.into_iter().enumerate() {
        let (sent, failed) = task.await.unwrap();
        assert_eq!(failed, 0, "load client {i} failed after {sent} echoes");
        assert!(sent > 0, "load client {i} sent nothing");
    }
    for (ws, name) in &mut held {
        assert_eq!(&whoami(ws).await, name, "a held tunnel moved or died");
    }
    // Every held tunnel is still listed (the load's own may be closing).
    assert!(proxy.snapshot().tunnels.len() >= HELD + RELOADS);
}
