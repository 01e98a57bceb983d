//! A peer that vanishes — mid-frame, with a reset, half-closing, or a hundred at
//! once — never hangs a tunnel, never leaks one, and never disturbs other tunnels.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::pools::pool_config;
use crate::common::recorder::{pattern, Ending, Recorder};
use crate::common::wire::{frame, frame_header, raw_upgrade, read_frame};
use crate::common::*;
use crate::common::{clients::*, pools::*, wire::*};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tunnelscope::event::{Event, Side, TunnelId, TunnelStats};

/// Frame statistics every 20 ms, so a test sees bytes arrive while a tunnel lives.
const FAST_STATS: &str = "[inspect]\nstats_interval = \"20ms\"";

/// The id of the tunnel opened for `path`.
async fn opened(events: &mut broadcast::Receiver<Event>, path: &str) -> TunnelId {
    match wait_event(
        events,
        |e| matches!(e, Event::TunnelOpened { path: p, .. } if p == path),
    )
    .await
    {
        Event::TunnelOpened { id, .. } => id,
        _ => unreachable!(),
    }
}

/// Waits until the proxy has counted exactly `bytes` relayed one way on tunnel `id`.
async fn relayed(
    events: &mut broadcast::Receiver<Event>,
    id: TunnelId,
    up: bool,
    bytes: u64,
) -> TunnelStats {
    match wait_event(events, |e| match e {
        Event::FrameStats { id: i, stats } if *i == id => {
            let dir = if up {
                &stats.client_to_backend
            } else {
                &stats.backend_to_client
            };
            dir.bytes == bytes
        }
        _ => false,
    })
    .await
    {
        Event::FrameStats { stats, .. } => stats,
        _ => unreachable!(),
    }
}

/// How tunnel `id` ended: (code, side, stats).
async fn closed(
    events: &mut broadcast::Receiver<Event>,
    id: TunnelId,
) -> (Option<u16>, Side, TunnelStats) {
    match wait_event(
        events,
        |e| matches!(e, Event::TunnelClosed { id: i, .. } if *i == id),
    )
    .await
    {
        Event::TunnelClosed {
            code, side, stats, ..
        } => (code, side, stats),
        _ => unreachable!(),
    }
}

fn listed(proxy: &tunnelscope::proxy::ProxyHandle, id: TunnelId) -> bool {
    proxy.snapshot().tunnels.iter().any(|t| t.id == id)
}

#[tokio::test]
async fn client_reset_mid_frame_ends_its_tunnel_and_backend_connection_and_spares_others() {
    let mut rec = Recorder::start("rec", false).await;
    let proxy = proxy(&pool_config(FAST_STATS, "", &[(rec.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut canary = connect(addr, "/canary").await;
    echo_on(&mut canary, "before").await;

    let mut raw = raw_upgrade(addr).await;
    let id = opened(&mut events, "/raw").await;
    // A masked text frame announcing 100 bytes, of which only 10 are sent.
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut half = frame_header(0x1, 100, true);
    half.extend_from_slice(&mask);
    half.extend(
        b"0123456789"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4]),
    );
    raw.write_all(&half).await.unwrap();
    relayed(&mut events, id, true, half.len() as u64).await;
    raw.set_zero_linger().unwrap();
    drop(raw);

    let (code, side, _) = closed(&mut events, id).await;
    assert_eq!(code, None, "no Close frame was ever sent");
    assert_eq!(side, Side::Client);
    assert!(!listed(&proxy, id), "the ended tunnel is still listed");
    let ending = rec.next_ending().await;
    assert!(
        !matches!(ending, Ending::Close(..)),
        "the backend's connection should end without a Close, got {ending:?}"
    );
    echo_on(&mut canary, "after").await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1, "only the canary is left");
}

#[tokio::test]
async fn backend_reset_mid_frame_ends_the_client_stream_without_hanging_and_spares_others() {
    let app = Backend::start("app").await;
    let mut raw = RawBackend::start().await;
    let proxy = proxy(&two_pool_config(FAST_STATS, app.addr, raw.addr)).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut canary = connect(addr, "/").await;
    echo_on(&mut canary, "before").await;

    let mut client = connect(addr, "/raw").await;
    let mut conn = raw.accept().await;
    let id = opened(&mut events, "/raw").await;
    // A binary frame announcing 100 bytes, of which only 10 are sent.
    let mut half = frame_header(0x2, 100, false);
    half.extend_from_slice(&pattern(10));
    conn.tcp.write_all(&half).await.unwrap();
    relayed(&mut events, id, false, half.len() as u64).await;
    conn.tcp.set_zero_linger().unwrap();
    drop(conn);

    let end = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the client's stream ends instead of hanging");
    assert!(
        matches!(end, None | Some(Err(_))),
        "expected the stream to end, got {end:?}"
    );
    let (code, side, _) = closed(&mut events, id).await;
    assert_eq!(code, None);
    assert_eq!(side, Side::Backend, "the backend is the side that vanished");
    assert!(!listed(&proxy, id));
    echo_on(&mut canary, "after").await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1, "only the canary is left");
}

#[tokio::test]
async fn client_half_close_reaches_the_backend_as_eof_while_the_backend_keeps_talking() {
    let mut raw = RawBackend::start().await;
    let proxy = proxy(&pool_config("", "", &[(raw.addr, "")])).await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();
    let mut client = raw_upgrade(addr).await;
    let mut conn = raw.accept().await;
    let id = opened(&mut events, "/raw").await;

    let last = frame(0x1, b"last words", Some([9, 8, 7, 6]));
    client.write_all(&last).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(
        read_to_eof(&mut conn.tcp).await,
        last,
        "the backend gets the client's last frame, then EOF"
    );

    // The other direction is still open: what the backend says now still arrives.
    for i in 0..3 {
        let f = frame(0x1, format!("after eof {i}").as_bytes(), None);
        conn.tcp.write_all(&f).await.unwrap();
        assert_eq!(
            read_frame(&mut client).await,
            Some((0x1, format!("after eof {i}").into_bytes()))
        );
    }
    assert!(listed(&proxy, id), "a half-closed tunnel is still running");

    conn.tcp.shutdown().await.unwrap();
    drop(conn);
    assert_eq!(
        read_frame(&mut client).await,
        None,
        "EOF reaches the client"
    );
    let (code, _, stats) = closed(&mut events, id).await;
    assert_eq!(code, None);
    assert_eq!(stats.client_to_backend.messages, 1);
    assert_eq!(stats.backend_to_client.messages, 3);
    assert!(proxy.snapshot().tunnels.is_empty());
}

#[tokio::test]
async fn a_hundred_tunnels_dropped_without_close_all_end_and_backends_return_to_zero() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = proxy(&simple_config(&[&a, &b], "")).await;
    let addr = proxy.local_addrs()[0];
    let mut clients = Vec::new();
    let mut names = HashSet::new();
    for _ in 0..100 {
        let mut ws = connect(addr, "/").await;
        names.insert(whoami(&mut ws).await);
        clients.push(ws);
    }
    assert_eq!(names.len(), 2, "both backends carry tunnels");
    assert_eq!(proxy.snapshot().tunnels.len(), 100);

    let mut events = proxy.subscribe();
    // Half vanish with a reset, half with a bare FIN; none sends a Close.
    for (i, ws) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            reset_on_drop(&ws);
        }
        drop(ws);
    }

    let mut ended = HashSet::new();
    let mut resets = 0;
    let mut active: HashMap<String, u64> = HashMap::new();
    tokio::time::timeout(WAIT, async {
        while ended.len() < 100 || active.len() < 2 || active.values().any(|n| *n != 0) {
            match events.recv().await {
                Ok(Event::TunnelClosed {
                    id, error, side, ..
                }) => {
                    ended.insert(id);
                    // The cause is there for whoever reads it: the reset, on the
                    // client's side.
                    if let Some(e) = error {
                        assert!(e.contains("reset"), "{e}");
                        assert_eq!(side, tunnelscope::event::Side::Client);
                        resets += 1;
                    }
                }
                Ok(Event::BackendState(info)) => {
                    active.insert(info.id.to_string(), info.active_tunnels);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} of 100 tunnels ended; active counts {active:?}",
            ended.len()
        )
    });

    assert_eq!(resets, 50, "each reset is reported as the cause");
    let snap = proxy.snapshot();
    assert!(
        snap.tunnels.is_empty(),
        "{} tunnels left",
        snap.tunnels.len()
    );
    for backend in &snap.backends {
        assert_eq!(backend.active_tunnels, 0, "{}", backend.id);
    }
    assert_eq!(snap.total_tunnels, 100);
    // The proxy still serves.
    let mut ws = connect(addr, "/").await;
    echo_on(&mut ws, "after the storm").await;
}

/// `tunnelscope backend` as a separate process: a demo backend (WebSocket `/echo`)
/// that can be killed with SIGKILL like any crashed server. Killed when dropped.
struct BackendProcess {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl BackendProcess {
    async fn start(name: &str, listen: &str) -> BackendProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
            .args(["backend", "--listen", listen, "--name", name])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start `tunnelscope backend`");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the backend says where it listens in time")
            .unwrap()
            .expect("a line from the backend");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        BackendProcess { child, addr }
    }

    /// SIGKILL, by PID, and reap it.
    async fn kill(mut self) -> std::net::SocketAddr {
        self.child.kill().await.expect("kill the backend process");
        self.addr
    }
}

/// Connects to `/echo`; returns the client, the backend address it landed on and
/// the tunnel's id.
async fn echo_tunnel(
    addr: std::net::SocketAddr,
    events: &mut broadcast::Receiver<Event>,
) -> (Client, String, TunnelId) {
    let mut ws = connect(addr, "/echo").await;
    let Event::BackendChosen { backend, id } =
        wait_event(events, |e| matches!(e, Event::BackendChosen { .. })).await
    else {
        unreachable!()
    };
    echo_on(&mut ws, "hello").await;
    (ws, backend.addr.to_string(), id)
}

/// Issue 4 §4: kill a backend process mid-stream. Its clients get a Close 1011 (not a
/// bare TCP close), nobody else notices, the next tunnels go to the other backend
/// while the dead one is marked down, and once it is back it gets tunnels again.
#[tokio::test]
async fn a_killed_backend_process_gives_its_clients_close_1011_and_the_others_carry_on() {
    use tokio_tungstenite::tungstenite::Message;
    let one = BackendProcess::start("one", "127.0.0.1:0").await;
    let two = BackendProcess::start("two", "127.0.0.1:0").await;
    let (one_addr, two_addr) = (one.addr.to_string(), two.addr.to_string());
    let proxy = proxy(&pool_config(
        "",
        "balance = \"least_conn\"\nmax_fails = 1\nfail_timeout = \"1s\"",
        &[(one.addr, ""), (two.addr, "")],
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let mut events = proxy.subscribe();

    // Four tunnels, two on each backend (least_conn).
    let mut on: HashMap<String, Vec<(Client, TunnelId)>> = HashMap::new();
    for _ in 0..4 {
        let (ws, backend, id) = echo_tunnel(addr, &mut events).await;
        on.entry(backend).or_default().push((ws, id));
    }
    assert_eq!(on[&one_addr].len(), 2, "least_conn spreads the tunnels");
    assert_eq!(on[&two_addr].len(), 2);

    one.kill().await;

    // Each of the dead backend's clients reads a Close 1011, then the end.
    for (ws, _) in on.get_mut(&one_addr).unwrap() {
        let got = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the client hears about it in time");
        match got {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1011, "close code");
                assert_eq!(frame.reason.as_str(), "backend went away");
            }
            other => panic!("expected a Close 1011, got {other:?}"),
        }
    }
    // The proxy reports them ended by the backend, with the code the clients got.
    let mut dead: HashSet<TunnelId> = on[&one_addr].iter().map(|(_, id)| *id).collect();
    while !dead.is_empty() {
        if let Event::TunnelClosed { id, code, side, .. } =
            wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await
        {
            assert!(dead.remove(&id), "tunnel {id} on the live backend closed");
            assert_eq!((code, side), (Some(1011), Side::Backend));
        }
    }

    // The other backend's tunnels never noticed.
    for (ws, _) in on.get_mut(&two_addr).unwrap() {
        echo_on(ws, "still here").await;
    }

    // New tunnels all go to the live backend; trying the dead one marks it down.
    for _ in 0..3 {
        let (ws, backend, _) = echo_tunnel(addr, &mut events).await;
        assert_eq!(backend, two_addr, "a new tunnel went to the killed backend");
        drop(ws);
    }
    let dead = proxy
        .snapshot()
        .backends
        .into_iter()
        .find(|b| &*b.id.addr == one_addr.as_str())
        .unwrap();
    assert_eq!(dead.health, tunnelscope::event::Health::Down, "{dead:?}");

    // It comes back on its old port; after fail_timeout it is tried again and used.
    let _back = BackendProcess::start("one", &one_addr).await;
    let came_back = tokio::time::timeout(WAIT, async {
        loop {
            let (ws, backend, _) = echo_tunnel(addr, &mut events).await;
            drop(ws);
            if backend == one_addr {
                return;
            }
            // Pacing while fail_timeout runs out, not synchronisation.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        came_back.is_ok(),
        "the restarted backend never got a tunnel"
    );
}

/// With `close_on_backend_loss = false` the proxy stays byte-for-byte transparent:
/// the killed backend's client sees the connection end with no Close frame, as it
/// would connected directly.
#[tokio::test]
async fn with_close_on_backend_loss_off_a_killed_backend_is_a_bare_tcp_close() {
    use tokio_tungstenite::tungstenite::Message;
    let one = BackendProcess::start("one", "127.0.0.1:0").await;
    let proxy = proxy(&pool_config(
        "[proxy]\nclose_on_backend_loss = false",
        "",
        &[(one.addr, "")],
    ))
    .await;
    let mut events = proxy.subscribe();
    let (mut ws, _, id) = echo_tunnel(proxy.local_addrs()[0], &mut events).await;
    one.kill().await;
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the stream ends in time");
    assert!(
        !matches!(end, Some(Ok(Message::Close(_)))),
        "expected no Close frame, got {end:?}"
    );
    // Half-closed like a direct connection would be: it ends when the client hangs up.
    drop(ws);
    let (code, side, _) = closed(&mut events, id).await;
    assert_eq!((code, side), (None, Side::Backend));
}

/// The proxy's socket in this process whose two ends are `local` and `peer`.
fn proxy_socket(local: SocketAddr, peer: SocketAddr) -> Option<std::os::fd::RawFd> {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        {
            continue;
        }
        // SAFETY: the fd is open for the whole check (the tunnel is held open) and is
        // only read through getsockname/getpeername/getsockopt, never closed.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd_ref);
        let ends = (
            sock.local_addr().ok()?.as_socket(),
            sock.peer_addr().map(|a| a.as_socket()),
        );
        if let (Some(l), Ok(Some(p))) = ends {
            if l == local && p == peer {
                return Some(fd);
            }
        }
    }
    None
}

/// The keepalive settings of a socket: (on, idle, interval, probes).
fn keepalive_of(fd: std::os::fd::RawFd) -> (bool, Duration, Duration, u32) {
    with_socket(fd, |sock| {
        (
            sock.keepalive().unwrap(),
            sock.tcp_keepalive_time().unwrap(),
            sock.tcp_keepalive_interval().unwrap(),
            sock.tcp_keepalive_retries().unwrap(),
        )
    })
}

/// Reads the options of the socket behind `fd` (one of the proxy's, found by
/// [`proxy_socket`]).
fn with_socket<T>(fd: std::os::fd::RawFd, read: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
    // SAFETY: as in proxy_socket.
    let fd_ref = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    read(socket2::SockRef::from(&fd_ref))
}

/// Both sides of a tunnel get TCP keepalive as `[timeouts]` says, so the kernel
/// finds a peer that vanished without a word; `keepalive_idle = 0` turns it off.
#[tokio::test]
async fn both_sides_of_a_tunnel_get_tcp_keepalive_as_configured() {
    let b = Backend::start("b").await;
    let top =
        "[timeouts]\nkeepalive_idle = \"45s\"\nkeepalive_interval = \"7s\"\nkeepalive_count = 4\n";
    let proxy = proxy(&format!("{top}{}", simple_config(&[&b], ""))).await;
    let addr = proxy.local_addrs()[0];
    let mut ws = connect(addr, "/").await;
    assert_eq!(whoami(&mut ws).await, "b");
    let client = local_addr(&ws);
    let want = (true, Duration::from_secs(45), Duration::from_secs(7), 4);
    let client_side = proxy_socket(addr, client).expect("the proxy's socket to the client");
    assert_eq!(keepalive_of(client_side), want);
    let backend_side = proxy_socket_to(b.addr, addr).expect("the proxy's socket to the backend");
    assert_eq!(keepalive_of(backend_side), want);

    let off = proxy_with_keepalive_off(&b).await;
    let mut ws = connect(off.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "b");
    let fd = proxy_socket(off.local_addrs()[0], local_addr(&ws)).unwrap();
    assert!(!keepalive_of(fd).0);
}

/// Whether a socket sends without Nagle's delay.
fn nodelay_of(fd: std::os::fd::RawFd) -> bool {
    with_socket(fd, |sock| sock.tcp_nodelay().unwrap())
}

/// A proxy in front of `b` started from a file, whose `[timeouts]` section a test
/// rewrites and reloads.
struct FromFile<'a> {
    proxy: tunnelscope::proxy::ProxyHandle,
    path: std::path::PathBuf,
    b: &'a Backend,
    _dir: tempfile::TempDir,
}

impl<'a> FromFile<'a> {
    /// `timeouts`: the lines of the `[timeouts]` section.
    async fn start(b: &'a Backend, timeouts: &str) -> FromFile<'a> {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("tunnelscope.toml");
        Self::write(&path, b, timeouts);
        let config = tunnelscope::config::Config::load(&path).unwrap();
        let proxy = tunnelscope::proxy::start(config).await.unwrap();
        FromFile {
            proxy,
            path,
            b,
            _dir: dir,
        }
    }

    fn write(path: &std::path::Path, b: &Backend, timeouts: &str) {
        let text = format!("[timeouts]\n{timeouts}\n{}", simple_config(&[b], ""));
        std::fs::write(path, text).unwrap();
    }

    /// Rewrites the `[timeouts]` section and reloads; the reload must apply.
    async fn reload(&self, timeouts: &str) {
        use tunnelscope::control::{Command, Outcome};
        Self::write(&self.path, self.b, timeouts);
        let outcome = self.proxy.control().send(Command::Reload).await.unwrap();
        assert!(matches!(outcome, Outcome::Reloaded(_)), "{outcome:?}");
    }
}

/// The client side's socket options come from the listening socket, which Linux
/// copies to every socket it accepts (sparing each handshake five system calls): a
/// reload that changes keepalive reaches the connections accepted after it, leaves
/// those before it as they were, and turning keepalive off turns it off.
#[tokio::test]
async fn keepalive_changed_by_a_reload_reaches_the_connections_accepted_after_it() {
    let b = Backend::start("b").await;
    let timeouts = |idle: &str| {
        format!("keepalive_idle = \"{idle}\"\nkeepalive_interval = \"7s\"\nkeepalive_count = 4")
    };
    let file = FromFile::start(&b, &timeouts("45s")).await;
    let addr = file.proxy.local_addrs()[0];
    let mut held = Vec::new();
    let next = async |held: &mut Vec<_>| {
        let mut ws = connect(addr, "/").await;
        assert_eq!(whoami(&mut ws).await, "b");
        let fd = proxy_socket(addr, local_addr(&ws)).expect("the proxy's socket to the client");
        held.push(ws);
        assert!(nodelay_of(fd), "the client side sends without delay");
        keepalive_of(fd)
    };
    let secs = Duration::from_secs;
    let first = (true, secs(45), secs(7), 4);
    // Whether tuned on its own or by the listener, each gets what the file says.
    assert_eq!(next(&mut held).await, first);
    assert_eq!(next(&mut held).await, first);
    file.reload(&timeouts("20s")).await;
    let second = (true, secs(20), secs(7), 4);
    assert_eq!(next(&mut held).await, second);
    assert_eq!(next(&mut held).await, second);
    file.reload(&timeouts("0s")).await;
    assert!(!next(&mut held).await.0);
    assert!(!next(&mut held).await.0);
    // Those accepted before a reload keep what they were given.
    let oldest = proxy_socket(addr, local_addr(&held[0])).unwrap();
    assert_eq!(keepalive_of(oldest), first);
}

/// Connections that arrive together wait in the listening socket's queue, made
/// with the options it had then: those queued before the listener was tuned (at
/// the first accept, or after a reload changed keepalive) still get keepalive.
#[tokio::test]
async fn connections_queued_before_the_listener_is_tuned_still_get_keepalive() {
    let b = Backend::start("b").await;
    let file = FromFile::start(&b, "keepalive_idle = \"45s\"").await;
    let addr = file.proxy.local_addrs()[0];
    // Opened all at once; returns each one's keepalive idle time (zero: off).
    let burst = async || {
        let all = futures_util::future::join_all((0..40).map(|_| connect(addr, "/"))).await;
        all.iter()
            .map(|ws| {
                let fd = proxy_socket(addr, local_addr(ws)).expect("the proxy's socket");
                let (on, idle, _, _) = keepalive_of(fd);
                if on {
                    idle
                } else {
                    Duration::ZERO
                }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .zip(all)
    };
    let mut held = Vec::new();
    for (idle, ws) in burst().await {
        assert_eq!(idle, Duration::from_secs(45));
        held.push(ws);
    }
    file.reload("keepalive_idle = \"20s\"").await;
    for (idle, ws) in burst().await {
        assert_eq!(idle, Duration::from_secs(20));
        held.push(ws);
    }
}

/// The proxy's socket connected to `backend` (not the backend's own accepted one,
/// whose local end is the backend's address; nor the client's).
fn proxy_socket_to(backend: SocketAddr, proxy_addr: SocketAddr) -> Option<std::os::fd::RawFd> {
    use std::os::fd::BorrowedFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: as in proxy_socket.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd_ref);
        let (Ok(l), Ok(p)) = (sock.local_addr(), sock.peer_addr()) else {
            continue;
        };
        if p.as_socket() == Some(backend) && l.as_socket() != Some(proxy_addr) {
            return Some(fd);
        }
    }
    None
}

async fn proxy_with_keepalive_off(b: &Backend) -> tunnelscope::proxy::ProxyHandle {
    proxy(&format!(
        "[timeouts]\nkeepalive_idle = \"0s\"\n{}",
        simple_config(&[b], "")
    ))
    .await
}
