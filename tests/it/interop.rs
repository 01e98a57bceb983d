//! Interoperability with the WebSocket stacks people actually put on either side of a
//! proxy: Node's `ws` (client and server, permessage-deflate, wss with a private CA)
//! and Python's `websockets` (client over ws and wss, and as a backend).
//!
//! The scripts live in `tests/interop/`. Their dependencies are installed by `.ci/run`
//! (`npm ci` there, and a venv at `tests/interop/.venv` with `websockets`). Where they
//! are missing, a test prints `skipping: …` and passes, unless the `CI` environment
//! variable is set: then it fails and says what to install.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::certs::TestPki;
use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{Dir, Event, Handshake, OpKind, Side, TunnelId, TunnelStats};

/// Hard time limit handed to every script (`INTEROP_LIMIT_MS`): a script that is never
/// told to finish still exits on its own, even if this test process was killed.
const SCRIPT_LIMIT_MS: &str = "30000";

/// RSV1: the permessage-deflate "compressed" bit, as [`FrameSample::rsv`] shows it.
///
/// [`FrameSample::rsv`]: tunnelscope::event::FrameSample::rsv
const RSV1: u8 = 0b100;

/// Node `ws` compresses messages from this size on (its default `threshold`); Python
/// `websockets` compresses every message once permessage-deflate is negotiated.
const DEFLATE_THRESHOLD: u64 = 1024;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A missing interop dependency: fatal in CI, a visible skip elsewhere.
fn unavailable(what: &str, install: &str) {
    if in_ci() {
        panic!("CI is set but {what} is missing: {install} (or run .ci/run, which does)");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests,
    // and a skip should be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping: {what} is missing ({install}, or run .ci/run); set CI=1 to fail instead"
    );
}

/// Whether `program args…` runs and exits 0 within [`WAIT`].
async fn runs(program: &Path, args: &[&str]) -> bool {
    let Ok(mut child) = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(WAIT, child.wait()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// `node`, if it is on PATH and `tests/interop/node_modules` holds `ws`.
async fn node() -> Option<PathBuf> {
    let node = PathBuf::from("node");
    if !runs(&node, &["--version"]).await {
        unavailable(
            "Node.js (`node` on PATH)",
            "install Node.js 18 or later, then run `npm ci` in tests/interop",
        );
        return None;
    }
    if !interop_dir().join("node_modules/ws/package.json").is_file() {
        unavailable(
            "the `ws` package in tests/interop/node_modules",
            "run `npm ci` in tests/interop",
        );
        return None;
    }
    Some(node)
}

/// The venv's python (`tests/interop/.venv/bin/python`) if there is one, else
/// `python3`, provided it can import `websockets`' asyncio API (websockets 13+).
async fn python() -> Option<PathBuf> {
    let venv = interop_dir().join(".venv/bin/python");
    let python = if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    };
    if !runs(&python, &["-c", "import websockets.asyncio.client"]).await {
        unavailable(
            &format!("Python 3 with `websockets` 13 or later ({})", python.display()),
            "run `python3 -m venv tests/interop/.venv && tests/interop/.venv/bin/pip install 'websockets>=17,<18'`",
        );
        return None;
    }
    Some(python)
}

/// A child process with line-oriented stdout, killed (by its PID) when dropped, so a
/// failing test never leaves a script behind. Every read is bounded by [`WAIT`].
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Everything read from stdout so far, for failure messages.
    transcript: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGKILL to the child's PID; tokio reaps it in the background.
            let _ = self.child.start_kill();
        }
    }
}

impl Proc {
    /// Starts `program script args…` in `tests/interop`.
    fn spawn(program: &Path, script: &str, args: &[OsString]) -> Proc {
        let mut child = Command::new(program)
            .arg(interop_dir().join(script))
            .args(args)
            .current_dir(interop_dir())
            .env("INTEROP_LIMIT_MS", SCRIPT_LIMIT_MS)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} {script}: {e}", program.display()));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut buf).await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name: script.to_string(),
            child,
            stdin,
            stdout,
            transcript: Vec::new(),
            stderr,
        }
    }

    fn context(&self) -> String {
        format!(
            "{}: stdout so far {:?}; stderr {:?}",
            self.name,
            self.transcript,
            self.stderr.lock().unwrap()
        )
    }

    /// The next stdout line; panics on EOF or after [`WAIT`].
    async fn line(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => {
                self.transcript.push(line.clone());
                line
            }
            Ok(Ok(None)) => panic!("stdout ended early; {}", self.context()),
            Ok(Err(e)) => panic!("reading stdout: {e}; {}", self.context()),
            Err(_) => panic!("no line within {WAIT:?}; {}", self.context()),
        }
    }

    async fn expect_line(&mut self, want: &str) {
        let got = self.line().await;
        assert_eq!(got, want, "unexpected line; {}", self.context());
    }

    /// Reads the `listening PORT` line a server script prints first.
    async fn listening_addr(&mut self) -> SocketAddr {
        let line = self.line().await;
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening PORT`; {}", self.context()));
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Closes stdin, reads the rest of stdout and waits for the exit, all within
    /// [`WAIT`]; returns the status and the lines not read before.
    async fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        let done = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = self.stdout.next_line().await {
                rest.push(line);
            }
            self.child.wait().await
        })
        .await;
        self.transcript.extend(rest.iter().cloned());
        match done {
            Ok(Ok(status)) => (status, rest),
            Ok(Err(e)) => panic!("waiting for exit: {e}; {}", self.context()),
            Err(_) => panic!("did not exit within {WAIT:?}; {}", self.context()),
        }
    }
}

/// Every event from subscription on, so a test can wait for one and later check what
/// else happened (violations) without missing anything in between.
struct Recorder {
    rx: broadcast::Receiver<Event>,
    log: Vec<Event>,
}

impl Recorder {
    fn new(rx: broadcast::Receiver<Event>) -> Recorder {
        Recorder {
            rx,
            log: Vec::new(),
        }
    }

    /// Waits (at most [`WAIT`]) for an event matching `pred`, logging everything.
    async fn until<F: FnMut(&Event) -> bool>(&mut self, what: &str, mut pred: F) -> Event {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.rx.recv().await {
                    Ok(ev) => {
                        self.log.push(ev.clone());
                        if pred(&ev) {
                            return ev;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        panic!("test subscriber lagged by {n} events")
                    }
                    Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no {what} event within {WAIT:?}"))
    }

    async fn handshake(&mut self) -> (TunnelId, Handshake) {
        match self
            .until("Handshake", |e| matches!(e, Event::Handshake { .. }))
            .await
        {
            Event::Handshake { id, handshake } => (id, handshake),
            _ => unreachable!(),
        }
    }

    /// The tunnel's end: close code, who closed, final counters.
    async fn closed(&mut self, tunnel: TunnelId) -> (Option<u16>, Side, TunnelStats) {
        match self
            .until(
                "TunnelClosed",
                |e| matches!(e, Event::TunnelClosed { id, .. } if *id == tunnel),
            )
            .await
        {
            Event::TunnelClosed {
                code, side, stats, ..
            } => (code, side, stats),
            _ => unreachable!(),
        }
    }

    fn violations(&self, tunnel: TunnelId) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Event::Violation { id, dir, violation } if *id == tunnel => {
                    Some(format!("{dir:?}: {violation}"))
                }
                _ => None,
            })
            .collect()
    }
}

/// One listener (wss:// when `pki` is given) in front of one backend; frame samples
/// published every 20 ms so tests see them while the tunnel is open.
fn config(pki: Option<&TestPki>, backend: SocketAddr) -> String {
    let tls = pki.map_or(String::new(), |p| {
        format!(
            "[listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            p.cert_pem.display(),
            p.key_pem.display()
        )
    });
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n{tls}\n[inspect]\nstats_interval = \"20ms\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{backend}\"\n"
    )
}

/// The client closed cleanly with 1000, every message crossed, nothing was flagged.
fn assert_clean_client_close(
    ended: (Option<u16>, Side, TunnelStats),
    messages: u64,
    events: &Recorder,
    tunnel: TunnelId,
) {
    let (code, side, stats) = ended;
    assert_eq!(code, Some(1000), "close code the proxy saw");
    assert_eq!(side, Side::Client, "who closed");
    assert_eq!(stats.client_to_backend.messages, messages, "{stats:?}");
    assert_eq!(stats.backend_to_client.messages, messages, "{stats:?}");
    assert_eq!(stats.client_to_backend.violations, 0, "{stats:?}");
    assert_eq!(stats.backend_to_client.violations, 0, "{stats:?}");
    assert_eq!(events.violations(tunnel), Vec::<String>::new());
}

/// The proxy saw `protocol` and permessage-deflate negotiated, and passed the client's
/// offer to the backend and the backend's answer to the client as they were.
fn assert_deflate_handshake(handshake: &Handshake, protocol: &str) {
    assert_eq!(handshake.subprotocol.as_deref(), Some(protocol));
    let offer = handshake.request_in.get("sec-websocket-extensions");
    assert!(
        offer.is_some_and(|o| o.contains("permessage-deflate")),
        "the client offers permessage-deflate: {offer:?}"
    );
    assert_eq!(
        handshake.request_out.get("sec-websocket-extensions"),
        offer,
        "the offer as the backend received it"
    );
    let answer = handshake.response.get("sec-websocket-extensions");
    assert!(
        answer.is_some_and(|a| a.starts_with("permessage-deflate")),
        "the backend accepts permessage-deflate: {answer:?}"
    );
    assert_eq!(
        handshake.extensions.as_deref(),
        answer,
        "negotiated extensions"
    );
}

/// Waits for the tunnel's frame samples to show compressed (RSV1) text and binary
/// frames both ways. Meanwhile no other RSV bit may appear, and no whole data message
/// of [`DEFLATE_THRESHOLD`] bytes or more may cross uncompressed: every large message
/// the scripts send is very compressible.
async fn expect_compressed_both_ways(events: &mut Recorder, id: TunnelId) {
    let mut compressed = BTreeSet::new();
    let mut other_rsv = Vec::new();
    let mut large_plain = Vec::new();
    events
        .until("FrameSamples with RSV1 text and binary both ways", |e| {
            if let Event::FrameSamples { id: t, samples } = e {
                for s in samples.iter().filter(|_| *t == id) {
                    match s.rsv {
                        RSV1 => {
                            compressed.insert((s.dir == Dir::ClientToBackend, s.opcode));
                        }
                        0 if matches!(s.opcode, 1 | 2) && s.len >= DEFLATE_THRESHOLD => {
                            large_plain.push((s.dir, s.opcode, s.len));
                        }
                        0 => {}
                        rsv => other_rsv.push(rsv),
                    }
                }
            }
            compressed.len() == 4
        })
        .await;
    assert_eq!(
        compressed,
        BTreeSet::from([(false, 1), (false, 2), (true, 1), (true, 2)]),
        "(client to backend, opcode) of RSV1 frames"
    );
    assert!(other_rsv.is_empty(), "unexpected RSV bits {other_rsv:?}");
    assert!(
        large_plain.is_empty(),
        "large messages crossed uncompressed: {large_plain:?}"
    );
}

#[tokio::test]
async fn node_ws_over_wss_negotiates_subprotocol_and_relays_deflate_frames_untouched() {
    let Some(node) = node().await else { return };
    let mut server = Proc::spawn(&node, "ws_server.js", &[]);
    let backend = server.listening_addr().await;
    let pki = TestPki::new();
    let proxy = proxy(&config(Some(&pki), backend)).await;
    let mut events = Recorder::new(proxy.subscribe());
    let url = format!(
        "wss://localhost:{}/chat?room=interop",
        proxy.local_addrs()[0].port()
    );

    let mut client = Proc::spawn(
        &node,
        "ws_client.js",
        &[url.into(), pki.ca_pem.clone().into()],
    );
    client.expect_line("protocol chat.v2").await;
    client.expect_line("extensions permessage-deflate").await;
    for line in [
        "echo text 15 ok",
        "echo text 4320 ok",
        "echo binary 6 ok",
        "echo binary 8192 ok",
        "ready",
    ] {
        client.expect_line(line).await;
    }
    server
        .expect_line(
            "connection path=/chat?room=interop protocol=chat.v2 extensions=permessage-deflate",
        )
        .await;

    // The proxy saw the negotiation as it happened.
    let (id, handshake) = events.handshake().await;
    assert_eq!(handshake.subprotocol.as_deref(), Some("chat.v2"));
    let extensions = handshake.extensions.clone().unwrap_or_default();
    assert!(
        extensions.contains("permessage-deflate"),
        "negotiated extensions {extensions:?}"
    );

    // The large messages cross compressed (RSV1) both ways; the small ones plain.
    expect_compressed_both_ways(&mut events, id).await;

    // Someone watches (the event recorder), so whole messages were captured from
    // the start: the inspector shows Node's compressed text inflated, both ways.
    let messages = (proxy.messages_source())(id).expect("a live tunnel");
    let long = "tunnelscope relays compressed text. ".repeat(120);
    for dir in [Dir::ClientToBackend, Dir::BackendToClient] {
        let m = messages
            .iter()
            .find(|m| {
                m.dir == dir
                    && m.compressed
                    && m.kind == OpKind::Text
                    && m.inflated_len == long.len() as u64
            })
            .unwrap_or_else(|| {
                panic!(
                    "no compressed {dir:?} long text in {} messages",
                    messages.len()
                )
            });
        let inflated = m.inflated.clone().expect("inflated").expect("inflates");
        assert!(
            inflated == long.as_bytes(),
            "the inflated text is what Node sent"
        );
        assert!(m.len < long.len() as u64 / 4, "{} bytes on the wire", m.len);
    }

    client.send_line("close").await;
    client.expect_line("closed 1000").await;
    let (status, rest) = client.finish().await;
    assert!(status.success(), "ws_client.js exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_client.js said more");
    server.expect_line("close 1000").await;

    let ended = events.closed(id).await;
    assert_clean_client_close(ended, 4, &events, id);
}

#[tokio::test]
async fn node_ws_refuses_the_proxy_certificate_without_the_test_ca() {
    // Proves the wss test above really verifies the chain: without `ca`, Node's own
    // roots do not know the test CA and the handshake fails.
    let Some(node) = node().await else { return };
    let backend = Backend::start("unreached").await;
    let pki = TestPki::new();
    let proxy = proxy(&config(Some(&pki), backend.addr)).await;
    let url = format!("wss://localhost:{}/", proxy.local_addrs()[0].port());

    let mut client = Proc::spawn(&node, "ws_client.js", &[url.into()]);
    let line = client.line().await;
    let (status, _) = client.finish().await;
    assert_eq!(status.code(), Some(1), "{line}");
    let code = line.split(' ').nth(1).unwrap_or_default();
    assert!(
        [
            "SELF_SIGNED_CERT_IN_CHAIN",
            "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
            "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        ]
        .contains(&code),
        "expected a certificate verification error, got {line:?}"
    );
    assert!(backend.seen().is_empty(), "no request reaches the backend");
}

/// Runs `ws_client.py` against `url` (trusting `ca`) and checks its whole report.
async fn python_client_round_trip(python: &Path, url: String, ca: Option<&Path>) {
    let mut args: Vec<OsString> = vec![url.into()];
    if let Some(ca) = ca {
        args.extend(["--ca".into(), ca.into()]);
    }
    let mut client = Proc::spawn(python, "ws_client.py", &args);
    // The Rust echo backend picks the first subprotocol offered.
    for line in [
        "protocol chat.v2",
        "echo text 17 ok",
        "echo text 3200 ok",
        "echo binary 6 ok",
        "echo binary 70000 ok",
        "closed sent=1000 received=1000",
    ] {
        client.expect_line(line).await;
    }
    let (status, rest) = client.finish().await;
    assert!(status.success(), "ws_client.py exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_client.py said more");
}

#[tokio::test]
async fn python_websockets_client_round_trips_over_plain_ws() {
    let Some(python) = python().await else { return };
    let backend = Backend::start("rust-echo").await;
    let proxy = proxy(&config(None, backend.addr)).await;
    let mut events = Recorder::new(proxy.subscribe());
    let url = format!("ws://127.0.0.1:{}/py/plain", proxy.local_addrs()[0].port());

    python_client_round_trip(&python, url, None).await;

    let (id, handshake) = events.handshake().await;
    assert_eq!(handshake.subprotocol.as_deref(), Some("chat.v2"));
    let ended = events.closed(id).await;
    assert_clean_client_close(ended, 4, &events, id);
    assert_eq!(backend.seen()[0].path, "/py/plain");
}

#[tokio::test]
async fn python_websockets_client_round_trips_over_wss_trusting_the_test_ca() {
    let Some(python) = python().await else { return };
    let backend = Backend::start("rust-echo").await;
    let pki = TestPki::new();
    let proxy = proxy(&config(Some(&pki), backend.addr)).await;
    let mut events = Recorder::new(proxy.subscribe());
    let url = format!("wss://localhost:{}/py/tls", proxy.local_addrs()[0].port());

    python_client_round_trip(&python, url, Some(&pki.ca_pem)).await;

    let (id, _) = events.handshake().await;
    let ended = events.closed(id).await;
    assert_clean_client_close(ended, 4, &events, id);
    let seen = backend.seen();
    assert_eq!(seen[0].path, "/py/tls");
    assert_eq!(seen[0].get("x-forwarded-proto").as_deref(), Some("https"));
}

#[tokio::test]
async fn tungstenite_client_round_trips_with_a_python_websockets_backend() {
    let Some(python) = python().await else { return };
    let mut server = Proc::spawn(&python, "ws_server.py", &[]);
    let backend = server.listening_addr().await;
    let proxy = proxy(&config(None, backend)).await;
    let mut events = Recorder::new(proxy.subscribe());

    let mut request = ws_url(proxy.local_addrs()[0], "/from/rust?x=1")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "chat.v2, chat.v1".parse().unwrap(),
    );
    let (mut ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), false),
    )
    .await
    .expect("connect in time")
    .expect("upgrade through the proxy");
    // websockets picks by the server's own preference: the proxy must relay its choice.
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v1")
    );
    server
        .expect_line("connection path=/from/rust?x=1 protocol=chat.v1 forwarded-proto=http")
        .await;

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let messages = [
        Message::text("hello from rust"),
        Message::text("ünïcødé ✓ ".repeat(50)),
        Message::binary(vec![0u8, 255, 1, 254]),
        Message::binary(big),
    ];
    for m in &messages {
        ws.send(m.clone()).await.unwrap();
        assert_eq!(&next_data(&mut ws).await, m);
    }

    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    })))
    .await
    .unwrap();
    let echoed = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("close answered in time");
    assert_eq!(echoed, Some(1000), "the backend answers the close");
    server.expect_line("closed 1000").await;

    let (id, handshake) = events.handshake().await;
    assert_eq!(handshake.subprotocol.as_deref(), Some("chat.v1"));
    let ended = events.closed(id).await;
    assert_clean_client_close(ended, messages.len() as u64, &events, id);
    let (status, _) = server.finish().await;
    assert!(status.success(), "ws_server.py exited with {status}");
}

#[tokio::test]
async fn python_websockets_client_and_node_ws_server_negotiate_subprotocol_and_deflate_through_the_proxy(
) {
    // Over wss: the Python client trusts only the test CA.
    let Some(python) = python().await else { return };
    let Some(node) = node().await else { return };
    let mut server = Proc::spawn(&node, "ws_server.js", &[]);
    let backend = server.listening_addr().await;
    let pki = TestPki::new();
    let proxy = proxy(&config(Some(&pki), backend)).await;
    let mut events = Recorder::new(proxy.subscribe());
    let url = format!(
        "wss://localhost:{}/py/to/node?deflate=on",
        proxy.local_addrs()[0].port()
    );

    let mut client = Proc::spawn(
        &python,
        "ws_client.py",
        &[
            url.into(),
            "--ca".into(),
            pki.ca_pem.clone().into(),
            "--extensions".into(),
            "--more".into(),
            "--hold".into(),
        ],
    );
    // ws_server.js picks the first subprotocol offered.
    for line in [
        "protocol chat.v2",
        "extensions permessage-deflate",
        "echo text 17 ok",
        "echo text 3200 ok",
        "echo binary 6 ok",
        "echo binary 70000 ok",
        "echo text 27 ok",
        "echo text 10200 ok",
        "echo binary 262144 ok",
        "ready",
    ] {
        client.expect_line(line).await;
    }
    server
        .expect_line(
            "connection path=/py/to/node?deflate=on protocol=chat.v2 extensions=permessage-deflate",
        )
        .await;

    let (id, handshake) = events.handshake().await;
    assert_deflate_handshake(&handshake, "chat.v2");
    expect_compressed_both_ways(&mut events, id).await;

    client.send_line("close").await;
    client.expect_line("closed sent=1000 received=1000").await;
    let (status, rest) = client.finish().await;
    assert!(status.success(), "ws_client.py exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_client.py said more");
    server.expect_line("close 1000").await;

    let ended = events.closed(id).await;
    assert_clean_client_close(ended, 7, &events, id);
    let (status, rest) = server.finish().await;
    assert!(status.success(), "ws_server.js exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_server.js said more");
}

#[tokio::test]
async fn node_ws_client_and_python_websockets_server_negotiate_subprotocol_and_deflate_through_the_proxy(
) {
    // Over plain ws (the Node client's wss path is covered above).
    let Some(node) = node().await else { return };
    let Some(python) = python().await else { return };
    let mut server = Proc::spawn(&python, "ws_server.py", &["--extensions".into()]);
    let backend = server.listening_addr().await;
    let proxy = proxy(&config(None, backend)).await;
    let mut events = Recorder::new(proxy.subscribe());
    let url = format!(
        "ws://127.0.0.1:{}/node/to/py?deflate=on",
        proxy.local_addrs()[0].port()
    );

    let mut client = Proc::spawn(&node, "ws_client.js", &[url.into(), "--more".into()]);
    // websockets picks by its own preference (chat.v1) among those offered.
    for line in [
        "protocol chat.v1",
        "extensions permessage-deflate",
        "echo text 15 ok",
        "echo text 4320 ok",
        "echo binary 6 ok",
        "echo binary 8192 ok",
        "echo text 25 ok",
        "echo text 10200 ok",
        "echo binary 262144 ok",
        "ready",
    ] {
        client.expect_line(line).await;
    }
    server
        .expect_line("connection path=/node/to/py?deflate=on protocol=chat.v1 forwarded-proto=http")
        .await;
    server.expect_line("extensions permessage-deflate").await;

    let (id, handshake) = events.handshake().await;
    assert_deflate_handshake(&handshake, "chat.v1");
    expect_compressed_both_ways(&mut events, id).await;

    client.send_line("close").await;
    client.expect_line("closed 1000").await;
    let (status, rest) = client.finish().await;
    assert!(status.success(), "ws_client.js exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_client.js said more");
    server.expect_line("closed 1000").await;

    let ended = events.closed(id).await;
    assert_clean_client_close(ended, 7, &events, id);
    let (status, rest) = server.finish().await;
    assert!(status.success(), "ws_server.py exited with {status}");
    assert_eq!(rest, Vec::<String>::new(), "ws_server.py said more");
}

/// A half-open client: the Python process is stopped (SIGSTOP) with its socket
/// open, so nothing answers any more. While it ran, `websockets` answered the
/// proxy's pings and the tunnel lived through several of them; once stopped, the
/// pings go unanswered and the tunnel is reaped: the backend gets Close 1001
/// `client missed ping` and the tunnel's ending blames the client.
#[tokio::test]
async fn a_stopped_client_process_is_reaped_by_the_proxys_pings() {
    use crate::common::recorder::{Ending, Recorder as EchoBackend};
    let Some(python) = python().await else { return };
    let mut backend = EchoBackend::start("b", false).await;
    let toml = format!(
        "[timeouts]\nping_interval = \"150ms\"\nping_timeout = \"300ms\"\nping = \"client\"\n\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        backend.addr
    );
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let url = format!("ws://127.0.0.1:{}/held", proxy.local_addrs()[0].port());
    let mut client = Proc::spawn(&python, "ws_client.py", &[url.into(), "--hold".into()]);
    while client.line().await != "ready" {}
    // Several ping rounds (interval + timeout is 450 ms) pass with the client alive.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(proxy.snapshot().tunnels.len(), 1, "a live client is kept");
    assert_eq!(backend.ended(), None);

    let pid = client.child.id().expect("the client runs").to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let stopped_at = std::time::Instant::now();
    assert_eq!(
        backend.next_ending().await,
        Ending::Close(Some(1001), "client missed ping".into())
    );
    assert!(stopped_at.elapsed() < WAIT);
    let closed = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed {
        side, code, reason, ..
    } = closed
    else {
        unreachable!()
    };
    assert_eq!(
        (side, code, reason.as_str()),
        (Side::Client, Some(1001), "client missed ping")
    );
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
}

/// Python `websockets` on both sides (permessage-deflate negotiated, as is its
/// default) through a proxy whose `[inspect]` section also has `inspect` (lines);
/// the client has had its echoes and holds its tunnel open ("ready").
async fn python_pair_holding(
    python: &Path,
    inspect: &str,
) -> (
    Proc,
    tunnelscope::proxy::ProxyHandle,
    crate::admin::client::Admin,
    Proc,
) {
    let mut server = Proc::spawn(python, "ws_server.py", &["--extensions".into()]);
    let backend = server.listening_addr().await;
    let toml = config(None, backend).replace("[inspect]\n", &format!("[inspect]\n{inspect}"));
    let proxy = proxy(&toml).await;
    let admin = crate::admin::client::Admin::start(&proxy, None).await;
    let url = format!("ws://127.0.0.1:{}/py", proxy.local_addrs()[0].port());
    let mut client = Proc::spawn(
        python,
        "ws_client.py",
        &[url.into(), "--extensions".into(), "--hold".into()],
    );
    while client.line().await != "ready" {}
    (server, proxy, admin, client)
}

/// Python `websockets` on both sides with permessage-deflate (its default): the
/// inspector inflates what it captured, so `GET /api/tunnels/{id}/messages` shows the
/// text each compressed message carried, both ways, with both sizes; the relayed
/// bytes were untouched (the echoes checked out).
#[tokio::test]
async fn compressed_messages_between_python_peers_are_shown_inflated() {
    let Some(python) = python().await else { return };
    let inspect = "capture = \"all\"\n";
    let (_server, proxy, admin, mut client) = python_pair_holding(&python, inspect).await;
    let id = proxy.snapshot().tunnels[0].id;
    let listed = admin.get_json(&format!("/api/tunnels/{id}/messages")).await;
    let messages = listed["messages"].as_array().unwrap();
    let long = "websockets through tunnelscope. ".repeat(100);
    for dir in ["client_to_backend", "backend_to_client"] {
        let m = messages
            .iter()
            .find(|m| m["direction"] == dir && m["inflated_text"] == long.as_str())
            .unwrap_or_else(|| panic!("no inflated {dir} message in {listed}"));
        assert_eq!(m["compressed"], true);
        assert_eq!(m["inflated_length"].as_u64(), Some(long.len() as u64));
        assert!(
            m["length"].as_u64().unwrap() < long.len() as u64 / 4,
            "the wire length is the compressed one: {m}"
        );
        assert!(
            m["text"].is_null(),
            "the compressed bytes are not shown as text"
        );
    }
    client.send_line("close").await;
    let (status, _) = client.finish().await;
    assert!(status.success());
}

/// Injection into a compressed tunnel between two strict, conforming peers (Python
/// `websockets` both sides, permessage-deflate negotiated): the operator's messages
/// go uncompressed (RSV1 clear, which permessage-deflate allows), masked toward the
/// server; the client reads them, the server echoes the one it got, and both then
/// close cleanly with 1000, so neither found a protocol error in what was injected.
#[tokio::test]
async fn messages_injected_into_a_compressed_tunnel_are_accepted_by_conforming_peers() {
    let Some(python) = python().await else { return };
    let (_server, proxy, admin, mut client) = python_pair_holding(&python, "").await;
    let id = proxy.snapshot().tunnels[0].id;
    let r = admin
        .post_body(
            &format!("/api/tunnels/{id}/send?to=client"),
            "héllo from the operator".as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    client.send_line("recv").await;
    client
        .expect_line("received text héllo from the operator")
        .await;
    let r = admin
        .post_body(
            &format!("/api/tunnels/{id}/send?to=backend&type=binary"),
            &[0xde, 0xad, 0xbe, 0xef],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    client.send_line("recv").await;
    client.expect_line("received binary deadbeef").await;
    client.send_line("close").await;
    let (status, lines) = client.finish().await;
    assert!(status.success(), "{lines:?}");
    assert!(
        lines.iter().any(|l| l == "closed sent=1000 received=1000"),
        "{lines:?}"
    );
}

/// Reads the checker's lines until it has got a message of each of `kinds`.
async fn got(check: &mut Proc, kinds: &[&str]) {
    let mut left: BTreeSet<String> = kinds.iter().map(|k| format!("got {k}")).collect();
    while !left.is_empty() {
        let line = check.line().await;
        left.remove(&line);
    }
}

/// The event stream against its published contract: a real session (a tunnel
/// talking, parking when silent, held and released, its backend drained and
/// undrained, then closed)
/// read by Python's `websockets` and every message checked by `jsonschema` against
/// `assets/events.schema.json`.
#[tokio::test]
async fn every_event_stream_message_matches_the_published_json_schema() {
    let Some(python) = python().await else { return };
    if !runs(&python, &["-c", "import jsonschema"]).await {
        unavailable(
            "Python's jsonschema",
            "run `tests/interop/.venv/bin/pip install 'jsonschema>=4.18,<5'`",
        );
        return;
    }
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let config = format!(
        "[timeouts]\npark_after = \"50ms\"\n\n{}",
        simple_config(&[&a, &b], "")
    );
    let proxy = proxy(&config).await;
    let admin = crate::admin::client::Admin::start(&proxy, Some("t0k")).await;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/events.schema.json");
    let args: Vec<OsString> = vec![
        format!("ws://{}/api/events", admin.addr).into(),
        schema.into(),
        "0".into(),
        "60".into(),
        "t0k".into(),
    ];
    let mut check = Proc::spawn(&python, "validate_events.py", &args);
    check.expect_line("connected").await;
    got(&mut check, &["snapshot"]).await;

    let mut ws = connect(proxy.local_addrs()[0], "/chat").await;
    let name = whoami(&mut ws).await;
    for i in 0..5 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        next_data(&mut ws).await;
    }
    // Silent after its messages, it parks, and is listed so (nothing wakes it
    // meanwhile); its counters may be told before or after.
    let mut events = proxy.subscribe();
    if !proxy.snapshot().tunnels.iter().all(|t| t.parked) {
        tokio::time::timeout(WAIT, async {
            while !matches!(
                events.recv().await,
                Ok(tunnelscope::event::Event::Parked { parked: true, .. })
            ) {}
        })
        .await
        .expect("the silent tunnel parks");
    }
    got(&mut check, &["frame_samples", "frame_stats", "parked"]).await;
    let tunnels = admin.get_json("/api/tunnels").await;
    let id = tunnels["tunnels"][0]["id"]
        .as_u64()
        .expect("the tunnel listed");
    assert_eq!(tunnels["tunnels"][0]["parked"], true, "{tunnels}");
    for action in ["hold", "release"] {
        let path = format!("/api/tunnels/{id}/{action}?from=client");
        assert_eq!(admin.post(&path).await.status, 200, "{action}");
        got(&mut check, &["hold"]).await;
    }
    let serving = if name == "a" { &a } else { &b };
    for action in ["drain", "undrain"] {
        let path = format!("/api/backends/app/{}/{action}", serving.addr);
        assert_eq!(admin.post(&path).await.status, 200, "{action}");
        got(&mut check, &["backend_state"]).await;
    }
    ws.close(None).await.unwrap();
    got(&mut check, &["tunnel_closed"]).await;
    // The admin API stopping closes the stream: the checker reports.
    drop(admin);
    let (status, rest) = check.finish().await;
    let report = rest.join("\n");
    assert!(
        status.success(),
        "validate_events.py: {status}\n{report}\n{}",
        check.context()
    );
    for kind in [
        "snapshot",
        "tunnel_opened",
        "backend_chosen",
        "handshake",
        "frame_stats",
        "frame_samples",
        "hold",
        "parked",
        "backend_state",
        "tunnel_closed",
    ] {
        assert!(
            rest.iter().any(|l| l.starts_with(&format!("seen {kind} "))),
            "no {kind} checked: {report}"
        );
    }
    assert!(rest.iter().any(|l| l.starts_with("ok ")), "{report}");
}
