//! Backend names: a server given as `name:port` is resolved with a DNS server we
//! control (`[proxy] resolver`), each address it has is a backend of its own, and
//! re-resolution adds the addresses that appear and drains the ones that vanish;
//! a failing lookup keeps the last good set and says so.

use std::net::{Ipv4Addr, SocketAddr};

use crate::common::dns::DnsServer;
use crate::common::*;
use tunnelscope::event::{AdminState, BackendId, Event};

/// Three backends on one port of three loopback addresses, named b2, b3, b4.
async fn backends() -> (u16, Vec<Backend>) {
    let first = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let mut out = vec![Backend::serve("b2", first)];
    for last in [3u8, 4] {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port))
            .await
            .unwrap();
        out.push(Backend::serve(&format!("b{last}"), l));
    }
    (port, out)
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn id(last: u8, port: u16) -> BackendId {
    BackendId::new("app", &format!("127.0.0.{last}:{port}"))
}

#[tokio::test]
async fn a_backend_name_becomes_one_backend_per_address_and_follows_the_records() {
    let (port, _backends) = backends().await;
    let dns = DnsServer::start(&[ip(2), ip(3)]).await;
    let name = format!("svc.test:{port}");
    let toml = format!(
        "[proxy]\nresolver = \"{}\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [pool.app]\nresolve_interval = \"100ms\"\n[[pool.app.server]]\naddr = \"{name}\"\n",
        dns.addr
    );
    let proxy = proxy(&toml).await;
    let listen = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();

    // Resolved at start: one backend per address, each saying where it came from.
    let snapshot = proxy.snapshot();
    let ids: Vec<_> = snapshot.backends.iter().map(|b| b.id.clone()).collect();
    assert_eq!(ids, [id(2, port), id(3, port)]);
    assert!(snapshot
        .backends
        .iter()
        .all(|b| b.via.as_deref() == Some(name.as_str())));
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut ws = connect(listen, "/").await;
        let who = whoami(&mut ws).await;
        held.push((ws, who));
    }
    let mut seen: Vec<_> = held.iter().map(|(_, w)| w.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["b2", "b3"]);

    // 127.0.0.3 vanishes, 127.0.0.4 appears: it joins, b3 drains with its tunnels.
    dns.answer(&[ip(2), ip(4)]);
    let want: Vec<SocketAddr> = vec![
        SocketAddr::from((ip(2), port)),
        SocketAddr::from((ip(4), port)),
    ];
    wait_event(
        &mut events,
        |e| matches!(e, Event::Resolved(r) if r.addrs == want && r.error.is_none()),
    )
    .await;
    let snapshot = proxy.snapshot();
    let b3 = snapshot
        .backends
        .iter()
        .find(|b| b.id == id(3, port))
        .unwrap();
    assert_eq!((b3.admin, b3.active_tunnels), (AdminState::Draining, 2));
    let mut names = Vec::new();
    for _ in 0..4 {
        let mut ws = connect(listen, "/new").await;
        names.push(whoami(&mut ws).await);
    }
    assert!(names.iter().all(|n| n == "b2" || n == "b4"), "{names:?}");
    assert!(names.iter().any(|n| n == "b4"), "{names:?}");
    for (ws, who) in &mut held {
        assert_eq!(
            &whoami(ws).await,
            who,
            "a tunnel was dropped by re-resolution"
        );
    }

    // The DNS server fails: the last good set stays, and the failure is reported.
    dns.fail();
    let failed = wait_event(
        &mut events,
        |e| matches!(e, Event::Resolved(r) if r.error.is_some()),
    )
    .await;
    let Event::Resolved(r) = failed else {
        unreachable!()
    };
    assert_eq!(r.addrs, want, "the last good set is kept");
    let mut ws = connect(listen, "/during-failure").await;
    let who = whoami(&mut ws).await;
    assert!(who == "b2" || who == "b4", "{who}");
    let resolutions = proxy.snapshot().resolutions;
    assert_eq!(resolutions.len(), 1);
    assert!(resolutions[0].error.is_some(), "{resolutions:?}");

    // It recovers.
    dns.answer(&[ip(3)]);
    wait_event(
        &mut events,
        |e| matches!(e, Event::Resolved(r) if r.addrs == [SocketAddr::from((ip(3), port))]),
    )
    .await;
    let mut ws = connect(listen, "/back").await;
    assert_eq!(whoami(&mut ws).await, "b3");
}

/// A name that does not resolve at start leaves its pool without backends (the
/// client gets 502, not a hang) until it does; then it serves.
#[tokio::test]
async fn a_name_that_fails_at_start_serves_once_it_resolves() {
    let (port, _backends) = backends().await;
    let dns = DnsServer::start(&[]).await;
    dns.fail();
    let toml = format!(
        "[proxy]\nresolver = \"{}\"\n\n[timeouts]\nconnect = \"500ms\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [pool.app]\nresolve_interval = \"100ms\"\n[[pool.app.server]]\naddr = \"svc.test:{port}\"\n",
        dns.addr
    );
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    assert!(proxy.snapshot().backends.is_empty());
    let status = crate::common::clients::try_connect(proxy.local_addrs()[0], "/", &[])
        .await
        .err();
    assert!(
        status.is_some_and(|s| (500..600).contains(&s)),
        "{status:?}"
    );
    dns.answer(&[ip(4)]);
    wait_event(
        &mut events,
        |e| matches!(e, Event::Resolved(r) if r.error.is_none()),
    )
    .await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "b4");
}
