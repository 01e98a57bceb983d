//! `tunnelscope replay`: a recording taken through the proxy is played against a
//! live backend, the real binary reporting every answer the same (exit 0), or where
//! a different backend's answers differ (exit 1); an unreadable recording or an
//! unreachable backend is exit 2 with the reason.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::admin::client::Admin;
use crate::common::pools::dead_addr;
use crate::common::*;

/// Records a tunnel through the proxy to `b`: whoami, a text, a binary.
async fn record(b: &Backend) -> tempfile::NamedTempFile {
    let cfg = format!(
        "[inspect]\ncapture = \"all\"\n\n{}",
        simple_config(&[b], "")
    );
    let proxy = proxy(&cfg).await;
    let admin = Admin::start(&proxy, None).await;
    let mut ws = connect(proxy.local_addrs()[0], "/app").await;
    assert_eq!(whoami(&mut ws).await, b.name);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(vec![1, 2, 3]));
    let id = proxy.snapshot().tunnels[0].id;
    let reply = admin.get(&format!("/api/tunnels/{id}/recording")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), reply.body).unwrap();
    file
}

/// Runs `tunnelscope replay ARGS`; returns its exit code and output.
async fn replay(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        WAIT * 2,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
            .arg("replay")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("replay ends in time")
    .expect("replay runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_recording_replays_against_the_same_backend_with_every_answer_the_same() {
    let b = Backend::start("b").await;
    let file = record(&b).await;
    let path = file.path().to_str().unwrap();
    let to = format!("ws://{}/app", b.addr);
    for timing in ["answers", "original"] {
        let (code, out, err) = replay(&[path, "--to", &to, "--timing", timing]).await;
        assert_eq!(code, 0, "{timing}: {out}{err}");
        assert!(
            out.contains("3 sent; 3 answers: 3 same, 0 differ, 0 missing, 0 extra"),
            "{out}"
        );
    }
}

#[tokio::test]
async fn a_different_backend_is_reported_where_its_answers_differ() {
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let file = record(&b).await;
    let (code, out, err) = replay(&[
        file.path().to_str().unwrap(),
        "--to",
        &format!("ws://{}/app", c.addr),
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(r#"answer 1: differs at byte 0: recorded "b" got "c""#),
        "{out}"
    );
    assert!(out.contains("2 same, 1 differ"), "{out}");
}

#[tokio::test]
async fn an_unreadable_recording_or_an_unreachable_backend_is_exit_2() {
    let b = Backend::start("b").await;
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"type\":\"start\"\nnot json at all\n").unwrap();
    let to = format!("ws://{}/", b.addr);
    let (code, _, err) = replay(&[bad.path().to_str().unwrap(), "--to", &to]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1"), "{err}");

    let file = record(&b).await;
    let dead = format!("ws://{}/", dead_addr().await);
    let (code, _, err) =
        replay(&[file.path().to_str().unwrap(), "--to", &dead, "--wait", "2s"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error:"), "{err}");
}
