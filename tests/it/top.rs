//! `tunnelscope top`: the dashboard on real headless proxies through their admin
//! API (tokens, names), drawn into a `TestBackend` with the real run loop and real
//! keys. Both instances' backends and tunnels appear; a drain reaches every
//! instance; an instance that goes away is shown down with why and comes back; a
//! wrong token is explained and does not stop the other instance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};
use futures_util::SinkExt;
use ratatui::Terminal;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tunnelscope::admin::{self, Api, Running};
use tunnelscope::dashboard::{run, Options};
use tunnelscope::event::AdminState;
use tunnelscope::proxy::ProxyHandle;
use tunnelscope::remote::{Auth, Target, Top};

use crate::common::pools::{backend_info, rebind};
use crate::common::screen::{wait_for, Shared};
use crate::common::*;
use crate::dashboard::{ch, key};

/// An instance's admin API named `name`, needing `token` when given.
fn serve_admin(
    proxy: &ProxyHandle,
    listener: TcpListener,
    name: &str,
    token: Option<&str>,
) -> Running {
    let api = Api::new(
        proxy.snapshot_source(),
        proxy.counters_source(),
        proxy.subscribe_source(),
        proxy.control(),
    )
    .with_readiness(proxy.readiness_source())
    .with_messages(proxy.messages_source())
    .with_search(proxy.search_source())
    .with_name(Some(name.to_string()))
    .with_token(token.map(String::from));
    admin::spawn(listener, api)
}

struct Instance {
    proxy: ProxyHandle,
    admin: Option<Running>,
    addr: SocketAddr,
}

async fn instance(backends: &[&Backend], name: &str, token: Option<&str>) -> Instance {
    let proxy = proxy(&simple_config(backends, "")).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Some(serve_admin(&proxy, listener, name, token));
    Instance { proxy, admin, addr }
}

/// `top` on `addrs` (with `token`), its dashboard running into a shared screen.
struct Rig {
    screen: Shared,
    keys: mpsc::Sender<KeyEvent>,
    _task: tokio::task::JoinHandle<()>,
}

fn top(addrs: &[SocketAddr], token: Option<&str>) -> Rig {
    let targets = addrs
        .iter()
        .map(|a| Target::parse(&format!("http://{a}")).unwrap())
        .collect();
    let top = Arc::new(Top::start(
        targets,
        Auth {
            token: token.map(String::from),
            tls: None,
        },
    ));
    let screen = Shared::new(160, 40);
    let mut terminal = Terminal::new(screen.clone()).unwrap();
    let (keys, key_rx) = mpsc::channel(16);
    let events = top.subscribe();
    let task = tokio::spawn(async move {
        let snap = top.clone();
        let options = Options {
            tick: Duration::from_millis(20),
            search: Some(Arc::new(top.search_source())),
            ..Options::default()
        };
        let _ = run(
            &mut terminal,
            events,
            move || snap.snapshot(),
            top.control(),
            key_rx,
            options,
        )
        .await;
    });
    Rig {
        screen,
        keys,
        _task: task,
    }
}

/// `top` (without its dashboard) following the instance at `admin`, once its link
/// is up.
async fn following(admin: SocketAddr) -> Top {
    let top = Top::start(
        vec![Target::parse(&format!("http://{admin}")).unwrap()],
        Auth::default(),
    );
    let started = std::time::Instant::now();
    while top
        .snapshot()
        .fleet
        .is_none_or(|f| f.instances[0].link != tunnelscope::event::Link::Up)
    {
        assert!(started.elapsed() < WAIT, "top never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    top
}

#[tokio::test]
async fn top_shows_both_instances_and_a_drain_reaches_every_one() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let one = instance(&[&a, &b], "edge-1", Some("s3cret")).await;
    let two = instance(&[&a, &b], "edge-2", Some("s3cret")).await;
    let mut held = Vec::new();
    for (inst, n) in [(&one, 1), (&two, 2)] {
        for _ in 0..n {
            let mut ws = connect(inst.proxy.local_addrs()[0], "/").await;
            whoami(&mut ws).await;
            held.push(ws);
        }
    }
    let rig = top(&[one.addr, two.addr], Some("s3cret"));
    wait_for(&rig.screen, "both instances up with their tunnels", |s| {
        s.contains("fleet 2/2 up")
            && s.contains("edge-1 ● up 1 live")
            && s.contains("edge-2 ● up 2 live")
            && s.contains("3 live")
            && s.matches("edge-1 127.0.0.1:").count() == 1
            && s.matches("edge-2 127.0.0.1:").count() == 2
    })
    .await;

    // Tab to the backends, d drains the first (a) on every instance.
    rig.keys.send(key(KeyCode::Tab)).await.unwrap();
    rig.keys.send(ch('d')).await.unwrap();
    wait_for(&rig.screen, "each instance's answer", |s| {
        s.contains(&format!(
            "drain app/{} — edge-1: done · edge-2: done",
            a.addr
        ))
    })
    .await;
    for inst in [&one, &two] {
        let state = backend_info(&inst.proxy, a.addr).admin;
        assert!(
            matches!(state, AdminState::Draining | AdminState::Drained),
            "{state:?}"
        );
        assert_eq!(backend_info(&inst.proxy, b.addr).admin, AdminState::Active);
    }
    wait_for(&rig.screen, "the per-instance breakdown", |s| {
        s.contains("edge-1") && s.contains(" draining · edge-2")
    })
    .await;
}

#[tokio::test]
async fn an_instance_that_goes_away_is_shown_down_and_comes_back() {
    let a = Backend::start("a").await;
    let one = instance(&[&a], "edge-1", None).await;
    let mut two = instance(&[&a], "edge-2", None).await;
    let rig = top(&[one.addr, two.addr], None);
    wait_for(&rig.screen, "both up", |s| s.contains("fleet 2/2 up")).await;

    // Its admin API stops (as when the process dies): the stream ends, the next
    // attempts are refused.
    two.admin.take().unwrap().stop().await;
    wait_for(
        &rig.screen,
        "edge-2 down, with why and when it is retried",
        |s| {
            s.contains("fleet 1/2 up") && s.contains("edge-2 ✕ down: ") && s.contains("retrying in")
        },
    )
    .await;
    assert!(
        rig.screen.text().contains("edge-1 ● up"),
        "the other stays up"
    );

    two.admin = Some(serve_admin(&two.proxy, rebind(two.addr), "edge-2", None));
    wait_for(&rig.screen, "edge-2 back", |s| s.contains("fleet 2/2 up")).await;
}

#[tokio::test]
async fn a_wrong_token_is_explained_and_the_other_instance_is_still_shown() {
    let a = Backend::start("a").await;
    let open = instance(&[&a], "open", None).await;
    let locked = instance(&[&a], "locked", Some("right")).await;
    let rig = top(&[open.addr, locked.addr], Some("wrong"));
    wait_for(&rig.screen, "the refusal explained", |s| {
        s.contains("open ● up") && s.contains("✕ down: wrong or missing token (401)")
    })
    .await;
}

/// The real binaries: two headless instances from config files with `[admin]`
/// names and a token, `tunnelscope top --connect …` in a real terminal (tmux) with
/// the token from a file. A person's keys drain a backend on both; `q` quits top
/// and leaves the instances running.
#[tokio::test]
async fn the_top_binary_in_a_terminal_drains_on_both_instances_and_quits_alone() {
    use crate::common::binary::{free_addr, Proc};
    use crate::common::tui::{require_tmux, Tmux};
    if !require_tmux() {
        return;
    }
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dir = tempfile::TempDir::new().unwrap();
    let mut procs = Vec::new();
    let mut admins = Vec::new();
    for name in ["east", "west"] {
        let admin = free_addr();
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "[admin]\nbind = \"{admin}\"\ntoken = \"s3cret\"\nname = \"{name}\"\n\n\
                 [[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n\
                 [[pool.app.server]]\naddr = \"{}\"\n[[pool.app.server]]\naddr = \"{}\"\n",
                a.addr, b.addr
            ),
        )
        .unwrap();
        let mut p = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
        let addr = p.listening().await;
        let mut ws = connect(addr, "/").await;
        whoami(&mut ws).await;
        procs.push((p, ws));
        admins.push(admin);
    }
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let log = dir.path().join("top.log");
    let mut args = vec!["top".to_string()];
    for admin in &admins {
        args.extend(["--connect".into(), format!("http://{admin}")]);
    }
    args.extend([
        "--token-file".into(),
        token.to_str().unwrap().into(),
        "--log-file".into(),
        log.to_str().unwrap().into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tui = Tmux::start(
        dir.path(),
        160,
        48,
        &[],
        std::path::Path::new(env!("CARGO_BIN_EXE_tunnelscope")),
        &args,
    );
    tui.wait_for(
        "both instances up",
        |_| {},
        |s| {
            s.contains("fleet 2/2 up")
                && s.contains("east ● up 1 live")
                && s.contains("west ● up 1 live")
        },
    )
    .await;
    tui.send(&["Tab", "d"]);
    tui.wait_for(
        "the drain's answer from each",
        |_| {},
        |s| s.contains(&format!("drain app/{} — east: done · west: done", a.addr)),
    )
    .await;
    for admin in &admins {
        let addr: SocketAddr = admin.parse().unwrap();
        let reply =
            crate::admin::client::request(addr, http::Method::GET, "/api/backends", Some("s3cret"))
                .await;
        let v = reply.json();
        let first = v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["addr"] == a.addr.to_string().as_str())
            .unwrap();
        assert!(
            first["admin"] == "draining" || first["admin"] == "drained",
            "{admin}: {first}"
        );
    }
    // West is killed mid-session (SIGKILL: no goodbye): shown down, east stays up;
    // started again from its file, it is followed again.
    let files: Vec<std::path::PathBuf> = ["east", "west"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.toml")))
        .collect();
    let (west, west_client) = procs.pop().unwrap();
    drop(west_client);
    west.signal("KILL");
    tui.wait_for(
        "west down, east up",
        |_| {},
        |s| s.contains("fleet 1/2 up") && s.contains("west ✕ down: ") && s.contains("east ● up"),
    )
    .await;
    let mut west = Proc::spawn(&["--config", files[1].to_str().unwrap(), "--headless"]);
    west.listening().await;
    tui.wait_for(
        "west back",
        |_| {},
        |s| s.contains("fleet 2/2 up") && s.contains("west ● up"),
    )
    .await;
    tui.send(&["q"]);
    let status = tui.wait_exit().await;
    assert_eq!(status, Some(0), "top quits with 0");
    for (p, _) in &mut procs {
        assert!(p.running(), "an instance stopped with top");
    }
    assert!(west.running(), "an instance stopped with top");
}

/// The detail's whole messages come from the tunnel's own instance through its API
/// (capture runs there while top follows it): a 300-byte message arrives whole,
/// not as the 64-byte preview the event stream carries.
#[tokio::test]
async fn an_open_details_whole_messages_are_fetched_from_its_instance() {
    let a = Backend::start("a").await;
    let one = instance(&[&a], "edge-1", None).await;
    // Following the instance makes it capture (the default `watched`).
    let top = following(one.addr).await;
    let started = std::time::Instant::now();
    let mut ws = connect(one.proxy.local_addrs()[0], "/").await;
    let long = format!("{}END", "x".repeat(297));
    ws.send(tokio_tungstenite::tungstenite::Message::text(long.clone()))
        .await
        .unwrap();
    next_data(&mut ws).await;
    let source = top.messages_source();
    let found = loop {
        assert!(started.elapsed() < WAIT, "the message never came");
        if let Some(t) = top.snapshot().tunnels.first() {
            if let Some(list) = source(t.id) {
                if let Some(m) = list.iter().find(|m| m.data.len() == 300) {
                    break m.clone();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found.data, long.as_bytes());
    assert_eq!(found.kind, tunnelscope::event::OpKind::Text);
}

/// An admin API served over TLS (`[admin] tls`): `top --connect https://…` with the
/// CA given (`--ca`) follows it; without the CA, the instance is shown down with
/// the certificate refusal, not followed in the clear.
#[tokio::test]
async fn top_follows_an_https_admin_api_with_the_ca_given_and_refuses_it_without() {
    use crate::common::certs::TestPki;
    let pki = TestPki::new();
    let a = Backend::start("a").await;
    let proxy = proxy(&simple_config(&[&a], "")).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = tunnelscope::proxy::tls::server_config(&tunnelscope::config::ListenerTls {
        cert: pki.cert_pem.clone(),
        key: pki.key_pem.clone(),
        sni: Vec::new(),
        h2: true,
    })
    .unwrap();
    let api = Api::new(
        proxy.snapshot_source(),
        proxy.counters_source(),
        proxy.subscribe_source(),
        proxy.control(),
    )
    .with_name(Some("secure".into()))
    .with_tls(Some(tls));
    let _admin = admin::spawn(listener, api);
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    whoami(&mut ws).await;

    let url = format!("https://localhost:{port}");
    let trusted = Top::start(
        vec![Target::parse(&url).unwrap()],
        Auth {
            token: None,
            tls: Some(tunnelscope::remote::tls_config(Some(&pki.ca_pem)).unwrap()),
        },
    );
    let untrusted = Top::start(
        vec![Target::parse(&url).unwrap()],
        Auth {
            token: None,
            tls: Some(tunnelscope::remote::tls_config(None).unwrap()),
        },
    );
    let started = std::time::Instant::now();
    loop {
        let up = trusted.snapshot();
        let down = untrusted.snapshot();
        let link = |s: &tunnelscope::event::Snapshot| {
            s.fleet.as_ref().map(|f| f.instances[0].link.clone())
        };
        let refused = matches!(link(&down), Some(tunnelscope::event::Link::Down { ref why, .. }) if why.contains("TLS") && why.contains("certificate"));
        if link(&up) == Some(tunnelscope::event::Link::Up) && up.tunnels.len() == 1 && refused {
            assert_eq!(up.fleet.unwrap().instances[0].name.as_ref(), "secure");
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "trusted: {:?}; untrusted: {:?}",
            link(&up),
            link(&down)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hostile "instance" at the other end of top's link: an event stream that sends
/// garbage, events for tunnels it never opened (with made-up ids), absurd numbers,
/// then a snapshot of a contract version top does not read. Top neither crashes nor
/// lets it cost the real instance anything: the liar is shown down with why.
#[tokio::test]
async fn a_lying_instance_is_shown_down_and_costs_the_real_one_nothing() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let a = Backend::start("a").await;
    let real = instance(&[&a], "real", None).await;
    let liar = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_addr = liar.local_addr().unwrap();
    tokio::spawn(async move {
        // Every connection: a readable snapshot, junk, then an unreadable one.
        while let Ok((tcp, _)) = liar.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let good = r#"{"type":"snapshot","version":1,"instance":"liar","started":null,"listeners":[],"backends":[],"tunnels":[],"totals":{},"dns":[]}"#;
                let junk = [
                    good,
                    "not json at all",
                    r#"{"type":"frame_stats","id":999999,"client_to_backend":{},"backend_to_client":{}}"#,
                    r#"{"type":"tunnel_opened","id":1,"at":"2026-12-04T10:00:00.000Z","client":"1.2.3.4:5","listener":"l","route":"r","path":"/","idle_timeout_s":1e308}"#,
                    r#"{"type":"backend_state","pool":"app","addr":"x","weight":-1}"#,
                    r#"{"type":"something_new","id":1}"#,
                    r#"{"type":"snapshot","version":2}"#,
                ];
                for text in junk {
                    if ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                while ws.next().await.is_some() {}
            });
        }
    });
    let mut client = connect(real.proxy.local_addrs()[0], "/").await;
    whoami(&mut client).await;
    let rig = top(&[real.addr, liar_addr], None);
    wait_for(
        &rig.screen,
        "the liar down with why, the real one up",
        |s| s.contains("real ● up 1 live") && s.contains("✕ down: event stream version 2"),
    )
    .await;
    // The real instance's tunnel still works, and top still answers keys.
    client
        .send(tokio_tungstenite::tungstenite::Message::text("still here"))
        .await
        .unwrap();
    next_data(&mut client).await;
    rig.keys.send(ch('?')).await.unwrap();
    wait_for(&rig.screen, "the help overlay", |s| s.contains(" Keys ")).await;
}

/// An instance whose event stream falls behind (a one-event bus under a burst of
/// tunnels) sends `lagged` and a fresh snapshot: top rebuilds that instance from it
/// and ends with exactly the tunnels that are live, none lost or doubled.
#[tokio::test]
async fn after_its_stream_lags_an_instance_is_rebuilt_from_the_fresh_snapshot() {
    let a = Backend::start("a").await;
    let config = format!(
        "[inspect]\nevent_capacity = 1\n\n{}",
        simple_config(&[&a], "")
    );
    let proxy = proxy(&config).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _admin = serve_admin(&proxy, listener, "busy", None);
    let top = following(addr).await;
    let started = std::time::Instant::now();
    let opens = (0..60).map(|_| connect(proxy.local_addrs()[0], "/"));
    let mut held = futures_util::future::join_all(opens).await;
    for ws in held.iter_mut().take(5) {
        whoami(ws).await;
    }
    let metrics = crate::admin::client::request(addr, http::Method::GET, "/metrics", None).await;
    let lagged: u64 = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("tunnelscope_admin_events_lagged_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        lagged > 0,
        "the stream never lagged: the test proves nothing"
    );
    loop {
        let live = top.snapshot().tunnels.len();
        if live == 60 {
            break;
        }
        assert!(started.elapsed() < WAIT, "top shows {live} tunnels, not 60");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `f` in `top` searches every instance's captured messages: the order id sent
/// through the second instance is found there, listed with its tunnel, and Enter
/// opens that tunnel on the message.
#[tokio::test]
async fn find_in_top_searches_every_instance_and_jumps_to_the_match() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let one = instance(&[&a], "edge-1", None).await;
    let two = instance(&[&b], "edge-2", None).await;
    let rig = top(&[one.addr, two.addr], None);
    // Following the instances makes them capture (the default `watched`).
    wait_for(&rig.screen, "both instances up", |s| {
        s.contains("fleet 2/2 up")
    })
    .await;
    let mut quiet = connect(one.proxy.local_addrs()[0], "/quiet").await;
    let mut orders = connect(two.proxy.local_addrs()[0], "/orders").await;
    for (ws, text) in [
        (&mut quiet, "nothing to see"),
        (&mut orders, "where is order Z-4711?"),
    ] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        next_data(ws).await;
    }
    wait_for(&rig.screen, "both tunnels listed", |s| {
        s.contains("edge-2 127.0.0.1:") && s.contains("edge-1 127.0.0.1:")
    })
    .await;

    rig.keys.send(ch('f')).await.unwrap();
    for c in "z-4711".chars() {
        rig.keys.send(ch(c)).await.unwrap();
    }
    rig.keys.send(key(KeyCode::Enter)).await.unwrap();
    wait_for(&rig.screen, "the matches from edge-2", |s| {
        s.contains("messages containing \"z-4711\"")
            && s.contains("where is order Z-4711?")
            && !s.contains("searching for")
    })
    .await;
    rig.keys.send(key(KeyCode::Enter)).await.unwrap();
    wait_for(&rig.screen, "the tunnel opened on its message", |s| {
        s.contains("path /orders") && s.contains("Messages") && !s.contains("/quiet")
    })
    .await;

    // The same search made again finds what came since, not the old answer.
    rig.keys.send(key(KeyCode::Esc)).await.unwrap();
    orders
        .send(tokio_tungstenite::tungstenite::Message::text(
            "Z-4711 arrived, thanks",
        ))
        .await
        .unwrap();
    next_data(&mut orders).await;
    rig.keys.send(ch('f')).await.unwrap();
    for c in "z-4711".chars() {
        rig.keys.send(ch(c)).await.unwrap();
    }
    rig.keys.send(key(KeyCode::Enter)).await.unwrap();
    wait_for(&rig.screen, "the newer matches too", |s| {
        s.contains("4 messages containing \"z-4711\"") && s.contains("Z-4711 arrived, thanks")
    })
    .await;
}

/// A reload on an instance that swaps one backend for another is mirrored in `top`:
/// the removed backend leaves the fleet's list and the added one joins it (the
/// instance's stream sends its state after `config_reloaded`), and the reload is
/// logged under the instance's name.
#[tokio::test]
async fn a_reload_on_an_instance_swaps_its_backends_in_top() {
    use tunnelscope::control::{Command, Outcome};
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("tunnelscope.toml");
    std::fs::write(&path, simple_config(&[&a, &b], "")).unwrap();
    let config = tunnelscope::config::Config::load(&path).unwrap();
    let proxy = tunnelscope::proxy::start(config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _admin = serve_admin(&proxy, listener, "east", None);
    let top = following(addr).await;
    let addrs = |top: &Top| {
        let mut v: Vec<String> = top
            .snapshot()
            .backends
            .iter()
            .map(|b| b.id.to_string())
            .collect();
        v.sort();
        v
    };
    let id = |b: &Backend| format!("app/{}", b.addr);
    let mut want = vec![id(&a), id(&b)];
    want.sort();
    assert_eq!(addrs(&top), want);

    std::fs::write(&path, simple_config(&[&b, &c], "")).unwrap();
    let outcome = proxy.control().send(Command::Reload).await.unwrap();
    assert!(matches!(outcome, Outcome::Reloaded(_)), "{outcome:?}");
    let mut want = vec![id(&b), id(&c)];
    want.sort();
    let started = std::time::Instant::now();
    while addrs(&top) != want {
        assert!(
            started.elapsed() < WAIT,
            "top still shows {:?} after the reload",
            addrs(&top)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
