//! `[inspect] record` / `--record DIR`: a JSON Lines recording per matching tunnel,
//! written as it happens, ended with how the tunnel closed, bounded per file and in
//! total (the oldest parts deleted), and readable by `tunnelscope replay`.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn config(b: &Backend, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[inspect]\nrecord = {:?}\nrecord_match = \"/rec\"\n{extra}\n\n{}",
        dir.display().to_string(),
        simple_config(&[b], "")
    )
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut f: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

#[tokio::test]
async fn each_matching_tunnel_is_recorded_to_its_end() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(&config(&b, dir.path(), "")).await;
    let mut events = proxy.subscribe();
    let addr = proxy.local_addrs()[0];
    let mut rec = connect(addr, "/rec/chat").await;
    let mut other = connect(addr, "/other").await;
    let rec_id = proxy
        .snapshot()
        .tunnels
        .iter()
        .find(|t| t.path == "/rec/chat")
        .expect("the recorded tunnel")
        .id;
    for text in ["one", "two", "three"] {
        rec.send(Message::text(text)).await.unwrap();
        assert_eq!(next_data(&mut rec).await, Message::text(text));
    }
    echo_on_other(&mut other).await;
    rec.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1000.into(),
        reason: "done".into(),
    }))
    .await
    .unwrap();
    while next_is_data(&mut rec).await {}
    // The client has the Close back before the proxy's tunnel has ended: shutting
    // down now would end it as the proxy's doing, not the client's.
    wait_event(
        &mut events,
        |e| matches!(e, tunnelscope::event::Event::TunnelClosed { id, .. } if *id == rec_id),
    )
    .await;
    proxy.shutdown();
    proxy.wait().await;

    let written = files(dir.path());
    assert_eq!(written.len(), 1, "only the matching tunnel: {written:?}");
    let text = std::fs::read_to_string(&written[0]).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[0]["path"], "/rec/chat");
    assert_eq!(lines[1]["type"], "handshake");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "end", "{text}");
    assert_eq!(
        (
            last["side"].as_str(),
            last["code"].as_u64(),
            last["reason"].as_str()
        ),
        (Some("client"), Some(1000), Some("done"))
    );
    let r = tunnelscope::inspect::recording::read(&text).unwrap();
    let texts: Vec<String> = r
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(texts, ["one", "one", "two", "two", "three", "three"]);
}

async fn echo_on_other(ws: &mut Client) {
    ws.send(Message::text("not recorded")).await.unwrap();
    assert_eq!(next_data(ws).await, Message::text("not recorded"));
}

/// Reads until the close handshake is over; false at the end.
async fn next_is_data(ws: &mut Client) -> bool {
    use futures_util::StreamExt;
    matches!(
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the close in time"),
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    )
}

#[tokio::test]
async fn recordings_rotate_by_size_and_the_oldest_parts_go_first() {
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "record_file_bytes = 4096\nrecord_total_bytes = 12288";
    let proxy = proxy(&config(&b, dir.path(), extra)).await;
    let mut ws = connect(proxy.local_addrs()[0], "/rec").await;
    let payload = "x".repeat(200);
    for _ in 0..100 {
        ws.send(Message::text(payload.clone())).await.unwrap();
        assert_eq!(next_data(&mut ws).await.into_data().len(), 200);
    }
    ws.close(None).await.unwrap();
    while next_is_data(&mut ws).await {}
    proxy.shutdown();
    proxy.wait().await;

    let written = files(dir.path());
    let total: u64 = written
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 12288, "{total} bytes kept: {written:?}");
    assert!(written.len() >= 2, "{written:?}");
    let names: Vec<String> = written
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with("-tunnel-1.jsonl")),
        "the first part went first: {names:?}"
    );
    // Every part starts with the tunnel, so each reads on its own; the last ends it.
    for f in &written {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.starts_with("{\"type\":\"start\""), "{f:?}");
        assert!(text.len() <= 4096 + 1024, "{f:?} is {} bytes", text.len());
    }
    let newest = written
        .iter()
        .max_by_key(|f| {
            let n = f.file_name().unwrap().to_string_lossy().into_owned();
            n.rsplit('.')
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(1)
        })
        .unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("\"type\":\"end\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_directory_that_cannot_be_written_stops_the_start_with_the_reason() {
    let b = Backend::start("b").await;
    let file = tempfile::NamedTempFile::new().unwrap();
    // A file where the directory should be.
    let cfg = config(&b, &file.path().join("sub"), "");
    let config = tunnelscope::config::Config::from_str(&cfg, "test.toml").unwrap();
    let err = match tunnelscope::proxy::start(config).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without a place to record"),
    };
    assert!(err.starts_with("cannot record into"), "{err}");
}
