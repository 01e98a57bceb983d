//! The real `tunnelscope` binary: `check`, the quick start, graceful shutdown on
//! SIGTERM, a second SIGINT that cuts the grace short, and the access log. Every
//! process started here is killed by PID when its test ends.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::clients::{expect_close, hang_up};
use crate::common::wire::{raw_upgrade, read_frame};
use crate::common::*;
use crate::common::{binary::*, clients::*};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Writes `text` as `name` in `dir`; returns the path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary, headless, on a config file in front of `backend`, with `extra`
/// arguments; the directory holding the file lives as long as the returned guard.
fn headless(backend: &Backend, extra: &[&str]) -> (tempfile::TempDir, Proc) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = config_file(dir.path(), "", backend);
    let mut args = vec!["--config", file.to_str().unwrap(), "--headless"];
    args.extend_from_slice(extra);
    let proc = Proc::spawn(&args);
    (dir, proc)
}

/// One listener on a free port (read back from the log) in front of `backend`.
fn config_file(dir: &Path, timeouts: &str, backend: &Backend) -> PathBuf {
    write(
        dir,
        "tunnelscope.toml",
        &format!(
            "[timeouts]\n{timeouts}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
             [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
            backend.addr
        ),
    )
}

/// `tunnelscope check FILE`: (exit code, stdout, stderr), bounded.
async fn check(file: &Path) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
            .arg("check")
            .arg(file)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("check finishes in time")
    .expect("run tunnelscope check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn check_accepts_a_good_file_with_a_summary_and_rejects_bad_ones_naming_file_line_and_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let good = write(
        dir.path(),
        "good.toml",
        "[timeouts]\nidle = \"5m\"\n\n[[listener]]\nbind = \"127.0.0.1:8080\"\n\n\
         [pool.chat]\n[[pool.chat.server]]\naddr = \"127.0.0.1:9001\"\n\
         [[pool.chat.server]]\naddr = \"127.0.0.1:9002\"\n",
    );
    let (code, stdout, stderr) = check(&good).await;
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains(&format!("{}: ok", good.display())),
        "{stdout}"
    );
    assert!(stdout.contains("1 listener"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:8080"), "{stdout}");
    assert!(
        stdout.contains("chat") && stdout.contains("2 servers"),
        "{stdout}"
    );
    assert!(stdout.contains("idle timeout 5m"), "{stdout}");

    let unknown = write(
        dir.path(),
        "unknown-key.toml",
        "[[listener]]\nbind = \"127.0.0.1:8080\"\n\n[timeouts]\nidel = \"5m\"\n\n\
         [[pool.app.server]]\naddr = \"127.0.0.1:9001\"\n",
    );
    let (code, stdout, stderr) = check(&unknown).await;
    assert_eq!(code, Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(&format!("{}:5:", unknown.display())),
        "file and line 5: {stderr}"
    );
    assert!(stderr.contains("key timeouts.idel"), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");

    let duration = write(
        dir.path(),
        "bad-duration.toml",
        "[[listener]]\nbind = \"127.0.0.1:8080\"\n\n[timeouts]\nconnect = \"5s\"\nidle = \"10x\"\n\n\
         [[pool.app.server]]\naddr = \"127.0.0.1:9001\"\n",
    );
    let (code, stdout, stderr) = check(&duration).await;
    assert_eq!(code, Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(&format!("{}:6:", duration.display())),
        "file and line 6: {stderr}"
    );
    assert!(stderr.contains("key timeouts.idle"), "{stderr}");
    assert!(stderr.contains("10x"), "{stderr}");
}

#[tokio::test]
async fn quick_start_listens_where_told_and_balances_over_every_upstream() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    // A free port can be taken by someone else between the check and the bind:
    // retry with another one in that rare case.
    let mut attempt = 0;
    let (mut proc, listen) = loop {
        attempt += 1;
        let listen = free_addr();
        let mut proc = Proc::spawn(&[
            "--listen",
            &listen,
            "--upstream",
            &a_addr,
            "--upstream",
            &b_addr,
            "--headless",
        ]);
        match proc.wait_line(|l| l.contains("listening")).await {
            Some(line) => {
                assert_eq!(field(&line, "addr"), Some(listen.as_str()), "{line}");
                break (proc, listen);
            }
            None if attempt < 5 && proc.seen.iter().any(|l| l.contains("could not be bound")) => {
                continue
            }
            None => panic!("exited before listening:\n{}", proc.seen.join("\n")),
        }
    };
    let addr = listen.parse().unwrap();
    // least_conn: the second tunnel goes to the backend without one.
    let mut first = connect(addr, "/").await;
    let mut second = connect(addr, "/").await;
    let names: HashSet<String> = [whoami(&mut first).await, whoami(&mut second).await].into();
    assert_eq!(names, HashSet::from(["a".to_string(), "b".to_string()]));
    echo_on(&mut first, "relayed").await;
    assert!(proc.running());
}

/// The allocator gives memory back after a burst of tunnels from a thread of its
/// own (bench/alloc.sh measures it: the soak's 8,000 tunnels leave 24 MB instead
/// of 75 MB once closed); the event loops never have to call into it again.
#[cfg(feature = "jemalloc")]
#[tokio::test]
async fn the_proxy_runs_one_allocator_thread_that_gives_memory_back() {
    let backend = Backend::start("b").await;
    let (_dir, mut proc) = headless(&backend, &[]);
    proc.listening().await;
    // The thread names itself once it first runs, which a loaded machine may
    // delay; nothing signals it, so its name is looked for until a deadline.
    let threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", proc.pid))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut names = threads();
    while !names.iter().any(|n| n.starts_with("jemalloc_bg_thd"))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        names = threads();
    }
    let allocator = names.iter().filter(|n| n.starts_with("jemalloc_bg_thd"));
    assert_eq!(
        allocator.count(),
        1,
        "not one allocator background thread among {names:?}"
    );
}

#[tokio::test]
async fn sigterm_closes_tunnels_with_1001_refuses_new_connections_and_exits_0() {
    let backend = Backend::start("b").await;
    let dir = tempfile::TempDir::new().unwrap();
    // The raw client below never answers the Close: the proxy waits close_grace for
    // it, which leaves time to see new connections refused before the exit.
    let file = config_file(
        dir.path(),
        "close_grace = \"1s\"\nshutdown_grace = \"5s\"",
        &backend,
    );
    let mut proc = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = proc.listening().await;
    let mut a = connect(addr, "/a").await;
    let mut b = connect(addr, "/b").await;
    echo_on(&mut a, "a").await;
    echo_on(&mut b, "b").await;
    let mut mute = raw_upgrade(addr).await;

    let signalled = Instant::now();
    proc.signal("TERM");
    for ws in [&mut a, &mut b] {
        let close = expect_close(ws).await;
        assert_eq!(u16::from(close.code), 1001);
        assert_eq!(close.reason.as_str(), "going away");
    }
    let (opcode, payload) = read_frame(&mut mute).await.expect("a Close frame");
    assert_eq!(opcode, 0x8);
    assert_eq!(payload[..2], 1001u16.to_be_bytes());

    // Still running (waiting for the mute client), and no longer accepting.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                // The listener may take a moment longer to close than the tunnels.
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections still accepted");
    assert!(
        proc.running(),
        "refused because the process had already exited"
    );

    let status = proc.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status:?}");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "exited after {took:?}, past shutdown_grace"
    );
    assert_eq!(
        read_frame(&mut mute).await,
        None,
        "the mute client is hung up on"
    );
}

#[tokio::test]
async fn a_second_sigint_during_the_shutdown_grace_exits_at_once() {
    let backend = Backend::start("b").await;
    let dir = tempfile::TempDir::new().unwrap();
    let file = config_file(
        dir.path(),
        "close_grace = \"60s\"\nshutdown_grace = \"30s\"",
        &backend,
    );
    let mut proc = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = proc.listening().await;
    // Never answers the Close: the first shutdown would wait the whole 30 s.
    let mut mute = raw_upgrade(addr).await;

    proc.signal("INT");
    let (opcode, _) = read_frame(&mut mute).await.expect("a Close frame");
    assert_eq!(opcode, 0x8, "the first SIGINT started the shutdown");
    assert!(proc.running(), "still waiting for the mute client");

    let second = Instant::now();
    proc.signal("INT");
    let status = proc.exit_within(Duration::from_secs(5)).await;
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "took {:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(130), "exit status {status:?}");
}

#[tokio::test]
async fn the_access_log_has_one_line_per_tunnel_with_client_backend_path_counts_and_close_code() {
    let backend = Backend::start("b").await;
    let dir = tempfile::TempDir::new().unwrap();
    let file = config_file(dir.path(), "", &backend);
    let mut proc = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = proc.listening().await;
    let mut ws = connect(addr, "/chat?room=1").await;
    let client = crate::common::clients::local_addr(&ws);
    for _ in 0..3 {
        echo_on(&mut ws, "abc").await;
    }
    ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "".into(),
        },
    )))
    .await
    .unwrap();
    hang_up(ws).await;

    let line = proc
        .wait_line(|l| l.contains("tunnelscope::access"))
        .await
        .expect("an access log line before exit");
    let f = fields(&line);
    let client = client.to_string();
    let backend_id = format!("app/{}", backend.addr);
    let expected = [
        ("client", client.as_str()),
        ("backend", backend_id.as_str()),
        ("path", "/chat?room=1"),
        // 3 masked "abc" frames (2 + 4 + 3 bytes) and a masked Close 1000 (2 + 4 + 2).
        ("frames_in", "4"),
        ("bytes_in", "35"),
        // 3 echoes (2 + 3 bytes) and the backend's Close 1000 (2 + 2).
        ("frames_out", "4"),
        ("bytes_out", "19"),
        ("close_code", "1000"),
        ("closed_by", "client"),
    ];
    for (key, value) in expected {
        assert_eq!(f.get(key).copied(), Some(value), "{key} in {line}");
    }
    // The line is logged inside the tunnel's span (its id), within its connection's.
    assert!(
        line.contains("conn{") && line.contains("tunnel{id="),
        "span context in {line}"
    );
}

/// `--log-format json`: every line one JSON object, the access line's fields keys
/// of their own (numbers as numbers), the tunnel's span listed.
#[tokio::test]
async fn json_logs_carry_the_access_line_as_fields() {
    let backend = Backend::start("b").await;
    let (_dir, mut proc) = headless(&backend, &["--log-format", "json"]);
    let json = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let listening = proc
        .wait_line(|l| l.contains("\"listening\""))
        .await
        .expect("a listening line");
    let addr: std::net::SocketAddr = json(&listening)["addr"].as_str().unwrap().parse().unwrap();
    let mut ws = connect(addr, "/chat").await;
    let client = local_addr(&ws).to_string();
    echo_on(&mut ws, "abc").await;
    drop(ws);

    let line = proc
        .wait_line(|l| l.contains("tunnelscope::access"))
        .await
        .expect("an access line");
    let v = json(&line);
    assert_eq!(v["message"], "tunnel closed", "{line}");
    assert_eq!(v["client"], client.as_str());
    assert_eq!(v["backend"], format!("app/{}", backend.addr).as_str());
    assert_eq!(v["path"], "/chat");
    assert_eq!(v["frames_in"], 1, "a number: {line}");
    assert_eq!(v["closed_by"], "client");
    let spans = v["spans"].as_array().expect("the spans listed");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "tunnel" && s["id"].is_number()),
        "{line}"
    );
    // Every line is JSON, the ones before too.
    for seen in &proc.seen {
        json(seen);
    }
}

/// SIGHUP to the real binary while an echo load runs: the reload applies, the load
/// sees no error, the tunnels made before run on.
#[tokio::test]
async fn sighup_reloads_the_config_and_leaves_the_process_running_with_its_tunnels() {
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    let dir = tempfile::TempDir::new().unwrap();
    let file = config_file(dir.path(), "", &first);
    let mut proc = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = proc.listening().await;
    let mut ws = connect(addr, "/held").await;
    assert_eq!(whoami(&mut ws).await, "first");
    // An echo load runs through the reload, bounded in count, on its own tunnel.
    let mut busy = connect(addr, "/busy").await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let mut echoed = 0u32;
        while echoed < 100_000 && !*stopped.borrow_and_update() {
            let text = format!("load {echoed}");
            busy.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next_data(&mut busy).await, Message::text(text));
            echoed += 1;
        }
        echoed
    });

    // The pool now names the second backend only.
    config_file(dir.path(), "", &second);
    proc.signal("HUP");
    let line = proc
        .wait_line(|l| l.contains("config reloaded"))
        .await
        .expect("a reload log line, not an exit");
    assert!(
        line.contains(&format!("added app/{}", second.addr)),
        "{line}"
    );
    assert!(
        line.contains(&format!("removed app/{}", first.addr)),
        "{line}"
    );
    assert!(proc.running(), "SIGHUP ended the process");
    stop.send(true).unwrap();
    let echoed = load.await.expect("no echo failed across the reload");
    assert!(echoed > 0);
    // The tunnel made before runs on, on its backend; new ones go to the new one.
    assert_eq!(whoami(&mut ws).await, "first");
    let mut fresh = connect(addr, "/fresh").await;
    assert_eq!(whoami(&mut fresh).await, "second");

    // A broken file is refused whole, and the running config stays.
    std::fs::write(&file, "[[listener]\nbind = ").unwrap();
    proc.signal("HUP");
    let line = proc
        .wait_line(|l| l.contains("reload refused"))
        .await
        .expect("a refusal, not an exit");
    assert!(
        line.contains("tunnelscope.toml:1:"),
        "names file, line and column: {line}"
    );
    let mut again = connect(addr, "/again").await;
    assert_eq!(whoami(&mut again).await, "second");
    assert_eq!(whoami(&mut ws).await, "first");

    proc.signal("TERM");
    let status = proc.exit_within(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn quick_start_refuses_an_upstream_without_a_port_naming_it() {
    let mut proc = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "localhost",
        "--headless",
    ]);
    let line = proc
        .wait_line(|l| l.contains("error"))
        .await
        .expect("an error line before the exit");
    assert!(
        line.contains("--upstream") && line.contains("needs a port"),
        "{line}"
    );
    let status = proc.exit_within(WAIT).await;
    assert_eq!(status.code(), Some(2), "{}", proc.seen.join("\n"));
}

/// Logging never blocks relaying: with stderr a pipe nobody reads (full after a few
/// hundred lines) and every connection logging at trace level, new tunnels are still
/// made and relay, the lines dropped are counted and reported once the pipe drains,
/// and the process still stops on SIGTERM.
#[tokio::test]
async fn a_log_pipe_nobody_reads_does_not_stall_the_relay() {
    let backend = Backend::start("b").await;
    let (_dir, mut proc) = headless(&backend, &["--log", "trace"]);
    let addr = proc.listening().await;
    proc.stall_stderr();
    // Each tunnel logs about seven lines at trace level: the 64 KiB pipe is full
    // after about seventy, where a writer on the event loop would stop the relay,
    // and the proxy's queue of 4096 lines after about six hundred more.
    let mut held = connect(addr, "/held").await;
    for i in 0..1000 {
        let mut ws = connect(addr, &format!("/t{i}")).await;
        echo_on(&mut ws, "through").await;
        hang_up(ws).await;
    }
    echo_on(&mut held, "still relaying").await;
    assert!(proc.running());
    // Once stderr is read again, the proxy says how many lines it had to drop.
    proc.resume_stderr();
    let line = proc
        .wait_line(|l| l.contains("log lines dropped"))
        .await
        .expect("a report of the dropped lines");
    let dropped: u64 = field(&line, "dropped").unwrap().parse().unwrap();
    assert!(dropped > 0, "{line}");
    proc.signal("TERM");
    let status = proc.exit_within(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
}
