//! `tunnelscope import-nginx`, run as the real binary: each sample configuration in
//! `assets/nginx/` (the classic guide's, a Socket.IO app, cookie-sticky with two
//! certificates, a directly proxied app) becomes a file `check` accepts, naming
//! what it could not carry over; each sample with its addresses made real (loopback
//! backends, free ports, a certificate made here), and a generated one, once
//! imported, proxy their traffic to the backends nginx would; malformed input is
//! refused with its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::binary::{free_port_on, private_loopback, Proc};
use crate::common::certs::TestPki;
use crate::common::clients::connect_wss;
use crate::common::*;

fn tunnelscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
        .args(args)
        .output()
        .expect("run tunnelscope")
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/nginx")
        .join(name)
}

/// Imports `conf` into `dir`; the TOML's path and text.
fn import(conf: &Path, dir: &Path) -> (PathBuf, String) {
    let out_path = dir.join(format!(
        "{}.toml",
        conf.file_stem().unwrap().to_string_lossy()
    ));
    let out = tunnelscope(&[
        "import-nginx",
        conf.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import-nginx {}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_path).unwrap();
    (out_path, text)
}

#[test]
fn every_sample_imports_into_a_file_check_accepts_and_names_what_it_dropped() {
    let dir = tempfile::TempDir::new().unwrap();
    let expect: [(&str, &[&str]); 4] = [
        (
            "classic.conf",
            &["map $http_upgrade", "idle = \"3600s\"", "[listener.tls]"],
        ),
        (
            "socketio.conf",
            &[
                "root in location /static/",
                "balance = \"ip_hash\"",
                "backup = true",
            ],
        ),
        (
            "sticky.conf",
            &[
                "hash_key = \"cookie:session\"",
                "[[listener.tls.sni]]",
                "tries = 1",
                "weight = 3",
            ],
        ),
        (
            "direct.conf",
            &[
                "nginx replaces /api/ with /",
                "host_header = \"backend\"",
                "location ~*",
            ],
        ),
    ];
    for (name, wants) in expect {
        let (path, text) = import(&sample(name), dir.path());
        let check = tunnelscope(&["check", path.to_str().unwrap()]);
        assert!(
            check.status.success(),
            "{name}: check refused the import: {}\n{text}",
            String::from_utf8_lossy(&check.stderr)
        );
        for want in wants {
            assert!(text.contains(want), "{name}: no {want:?} in\n{text}");
        }
    }
}

#[test]
fn malformed_nginx_is_refused_with_its_line_and_an_existing_output_is_kept() {
    let dir = tempfile::TempDir::new().unwrap();
    // Imports `text` as `name`: refused with exit code 2; returns what it said.
    let refused = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let out = tunnelscope(&["import-nginx", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(
        "bad.conf",
        "server {\n  listen 80;\n  location / {\n    proxy_pass http://x\n  }\n}\n",
    );
    assert!(
        err.contains("line 4") && err.contains("proxy_pass"),
        "{err}"
    );
    let err = refused(
        "none.conf",
        "events {}\nhttp { server { listen 80; root /srv; } }\n",
    );
    assert!(err.contains("proxy_pass"), "{err}");

    let kept = dir.path().join("kept.toml");
    std::fs::write(&kept, "# mine\n").unwrap();
    let out = tunnelscope(&[
        "import-nginx",
        sample("classic.conf").to_str().unwrap(),
        "-o",
        kept.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "# mine\n");
}

/// Which backend answers a WebSocket opened to `addr` on `path`.
async fn through(addr: &str, path: &str) -> String {
    let mut ws = connect(addr.parse().unwrap(), path).await;
    whoami(&mut ws).await
}

#[tokio::test]
async fn an_imported_configuration_proxies_the_same_traffic_to_the_same_backends() {
    let (sock1, sock2, web) = (
        Backend::start("sock-1").await,
        Backend::start("sock-2").await,
        Backend::start("web").await,
    );
    let pki = TestPki::new();
    let ip = private_loopback();
    let (plain, tls) = (free_port_on(&ip), free_port_on(&ip));
    let conf = format!(
        r#"
map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
upstream socket_nodes {{
    ip_hash;
    server {s1};
    server {s2};
}}
upstream web {{ server {web}; }}
server {{
    listen {ip}:{plain};
    listen {ip}:{tls} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location /socket.io/ {{
        proxy_pass http://socket_nodes;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 3600s;
    }}
    location / {{
        proxy_pass http://web;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
    }}
}}
"#,
        s1 = sock1.addr,
        s2 = sock2.addr,
        web = web.addr,
        cert = pki.cert_pem.display(),
        key = pki.key_pem.display(),
    );
    let dir = tempfile::TempDir::new().unwrap();
    let nginx = dir.path().join("app.conf");
    std::fs::write(&nginx, conf).unwrap();
    let (toml, _) = import(&nginx, dir.path());
    let mut proc = Proc::spawn(&["--config", toml.to_str().unwrap(), "--headless"]);
    proc.listening().await;
    let plain = format!("{ip}:{plain}");
    // As nginx: /socket.io/ to the ip_hash upstream (one client IP: one node), the
    // rest to web.
    let first = through(&plain, "/socket.io/?EIO=4&transport=websocket").await;
    assert!(first.starts_with("sock-"), "{first}");
    for _ in 0..5 {
        assert_eq!(through(&plain, "/socket.io/?EIO=4").await, first, "ip_hash");
    }
    assert_eq!(through(&plain, "/").await, "web");
    assert_eq!(through(&plain, "/chat").await, "web");
    // And over TLS with the certificate nginx was given.
    let mut ws = connect_wss(&pki, format!("{ip}:{tls}").parse().unwrap(), "/socket.io/").await;
    ws.send(Message::text("whoami")).await.unwrap();
    let name = loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => break t.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        name, first,
        "the same client IP hashes to the same node over TLS"
    );
}

/// A sample with its addresses made real: each backend address becomes a loopback
/// backend named after it, each `listen PORT` a free loopback port, each
/// certificate the test's. Returns the imported, running binary's listen ports by
/// the port the sample named, and the backends by the address the sample named.
struct Live {
    ports: std::collections::HashMap<u16, SocketAddr>,
    _backends: Vec<Backend>,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

async fn live(name: &str, pki: &TestPki) -> Live {
    let mut text = std::fs::read_to_string(sample(name)).unwrap();
    let mut backends = Vec::new();
    let re = regex::Regex::new(r"\b(10\.0\.\d+\.\d+|127\.0\.0\.1):(\d+)\b").unwrap();
    let originals: Vec<String> = re
        .find_iter(&text)
        .map(|m| m.as_str().to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for original in originals {
        let b = Backend::start(&original).await;
        text = text.replace(&original, &b.addr.to_string());
        backends.push(b);
    }
    let mut ports = std::collections::HashMap::new();
    let listen = regex::Regex::new(r"listen (\[::\]:)?(\d+)").unwrap();
    let named: Vec<u16> = listen
        .captures_iter(&text)
        .map(|c| c[2].parse().unwrap())
        .collect();
    let ip = private_loopback();
    for port in named {
        let free = free_port_on(&ip);
        ports.insert(port, format!("{ip}:{free}").parse().unwrap());
        text = text
            .replace(
                &format!("listen [::]:{port}"),
                &format!("listen {ip}:{free}"),
            )
            .replace(&format!("listen {port}"), &format!("listen {ip}:{free}"));
    }
    let cert = regex::Regex::new(r"ssl_certificate\s+\S+;").unwrap();
    text = cert
        .replace_all(
            &text,
            format!("ssl_certificate {};", pki.cert_pem.display()).as_str(),
        )
        .into_owned();
    let key = regex::Regex::new(r"ssl_certificate_key\s+\S+;").unwrap();
    text = key
        .replace_all(
            &text,
            format!("ssl_certificate_key {};", pki.key_pem.display()).as_str(),
        )
        .into_owned();
    let dir = tempfile::TempDir::new().unwrap();
    let conf = dir.path().join(name);
    std::fs::write(&conf, text).unwrap();
    let (toml, _) = import(&conf, dir.path());
    let mut proc = Proc::spawn(&["--config", toml.to_str().unwrap(), "--headless"]);
    proc.listening().await;
    Live {
        ports,
        _backends: backends,
        _proc: proc,
        _dir: dir,
    }
}

/// The backend (named after the sample's address) that answers through `addr`.
async fn who(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut ws = crate::common::clients::connect_with(addr, path, headers).await;
    whoami(&mut ws).await
}

async fn who_tls(pki: &TestPki, addr: SocketAddr, path: &str) -> String {
    let mut ws = connect_wss(pki, addr, path).await;
    ws.send(Message::text("whoami")).await.unwrap();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn every_sample_once_imported_proxies_its_traffic_where_nginx_would() {
    let pki = TestPki::new();
    // The classic guide: wss:// on 443 over its two servers.
    let classic = live("classic.conf", &pki).await;
    let name = who_tls(&pki, classic.ports[&443], "/").await;
    assert!(
        ["10.0.0.1:8010", "10.0.0.2:8010"].contains(&name.as_str()),
        "{name}"
    );

    // Socket.IO: /socket.io/ sticky by IP on the non-backup nodes, the rest to web.
    let sio = live("socketio.conf", &pki).await;
    let host = [("Host", "chat.example.org")];
    let node = who(sio.ports[&80], "/socket.io/?EIO=4", &host).await;
    assert!(
        ["10.0.1.11:3000", "10.0.1.12:3000"].contains(&node.as_str()),
        "{node}"
    );
    assert_eq!(who(sio.ports[&80], "/socket.io/?EIO=4", &host).await, node);
    assert_eq!(who(sio.ports[&80], "/", &host).await, "10.0.1.20:8080");

    // Cookie-sticky: each session lands on one of the two servers, every time.
    let sticky = live("sticky.conf", &pki).await;
    for session in ["s-1", "s-2", "s-3"] {
        let cookie = format!("session={session}");
        let headers = [("Host", "live.example.net"), ("Cookie", cookie.as_str())];
        let first = who(sticky.ports[&80], "/ws", &headers).await;
        assert!(
            ["10.0.2.1:9000", "10.0.2.2:9000"].contains(&first.as_str()),
            "{first}"
        );
        assert_eq!(
            who(sticky.ports[&80], "/ws", &headers).await,
            first,
            "{session}"
        );
    }

    // Directly proxied: /ws/ and /api/ each to their own local port.
    let direct = live("direct.conf", &pki).await;
    assert_eq!(
        who(direct.ports[&8080], "/ws/feed", &[]).await,
        "127.0.0.1:3000"
    );
    assert_eq!(
        who(direct.ports[&8080], "/api/v1", &[]).await,
        "127.0.0.1:3001"
    );
}
