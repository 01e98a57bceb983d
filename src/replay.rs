//! `tunnelscope replay FILE --to ws://HOST/PATH`: plays the client side of a
//! recording (`GET /api/tunnels/{id}/recording`) against a backend and reports where
//! the backend's answers differ from the recorded ones.
//!
//! By default each client message waits for the backend messages that followed it
//! in the recording (as fast as the backend answers, each answer waited for at most
//! `--wait`); `--timing original` sends at the recorded pace instead. Answers are
//! compared in order, byte for byte (compressed messages as the application saw
//! them, inflated). Control frames are not replayed.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::event::Dir;
use crate::inspect::recording::{self, RecordedMessage};

/// How client messages are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Timing {
    /// Each client message waits for the answers recorded before it.
    Answers,
    /// Each client message goes at its recorded offset from the first.
    Original,
}

/// What to replay, where, and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub recording: String,
    pub to: String,
    pub timing: Timing,
    /// How long an expected answer is waited for.
    pub wait: Duration,
}

/// How a replay went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    pub same: usize,
    pub differ: usize,
    pub missing: usize,
    pub extra: usize,
}

impl Report {
    /// Every answer came, as recorded.
    pub fn matched(&self) -> bool {
        self.differ == 0 && self.missing == 0 && self.extra == 0
    }
}

/// Replays the recording; writes what happens to `out`. An error is a failure to
/// replay at all (unreadable recording, backend unreachable).
pub async fn run(opts: &Options, out: &mut dyn std::io::Write) -> Result<Report, String> {
    let rec = recording::read(&opts.recording)?;
    let script = rec.messages();
    let sends = script
        .iter()
        .filter(|m| m.dir == Dir::ClientToBackend)
        .count();
    let expected: Vec<&RecordedMessage> = script
        .iter()
        .filter(|m| m.dir == Dir::BackendToClient)
        .collect();
    let pace = match opts.timing {
        Timing::Answers => "as fast as the backend answers",
        Timing::Original => "at the recorded pace",
    };
    let say = |out: &mut dyn std::io::Write, line: String| {
        let _ = writeln!(out, "{line}");
    };
    say(
        out,
        format!(
            "replaying {sends} client messages against {} ({pace}); {} answers recorded",
            opts.to,
            expected.len()
        ),
    );
    let mut request = opts
        .to
        .as_str()
        .into_client_request()
        .map_err(|e| format!("--to {}: {e}", opts.to))?;
    if let Some(p) = &rec.subprotocol {
        let value = p.parse().map_err(|_| format!("subprotocol {p:?}"))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    let (ws, _) = tokio::time::timeout(opts.wait, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| format!("{}: no answer within {:?}", opts.to, opts.wait))?
        .map_err(|e| format!("{}: {e}", opts.to))?;
    let (mut sink, mut stream) = ws.split();
    let mut got: Vec<(u8, Vec<u8>)> = Vec::new();
    let first_at = script.first().and_then(|m| m.at);
    let started = tokio::time::Instant::now();
    let mut answers_before = 0;
    for (i, m) in script.iter().enumerate() {
        if m.dir == Dir::BackendToClient {
            answers_before += 1;
            continue;
        }
        match opts.timing {
            Timing::Answers => {
                while got.len() < answers_before {
                    match recv(&mut stream, opts.wait).await {
                        Some(answer) => got.push(answer),
                        None => break,
                    }
                }
            }
            Timing::Original => {
                if let (Some(first), Some(at)) = (first_at, m.at) {
                    let offset = (at - first).to_std().unwrap_or_default();
                    tokio::time::sleep_until(started + offset).await;
                }
            }
        }
        if m.truncated {
            say(
                out,
                format!("message {} was recorded truncated: sent as recorded", i + 1),
            );
        }
        let msg = if m.opcode == 1 {
            Message::text(String::from_utf8_lossy(&m.payload).into_owned())
        } else {
            Message::binary(m.payload.clone())
        };
        sink.send(msg)
            .await
            .map_err(|e| format!("sending message {}: {e}", i + 1))?;
    }
    while got.len() < expected.len() {
        match recv(&mut stream, opts.wait).await {
            Some(answer) => got.push(answer),
            None => break,
        }
    }
    let _ = sink.close().await;
    let mut report = Report {
        sent: sends,
        ..Report::default()
    };
    for (n, want) in expected.iter().enumerate() {
        match got.get(n) {
            None => {
                report.missing += 1;
                say(
                    out,
                    format!(
                        "← answer {}: missing (recorded {})",
                        n + 1,
                        show(&want.payload)
                    ),
                );
            }
            Some((op, bytes)) if *op == want.opcode && *bytes == want.payload => report.same += 1,
            Some((op, bytes)) => {
                report.differ += 1;
                say(
                    out,
                    format!(
                        "← answer {}: differs {}",
                        n + 1,
                        difference(want, *op, bytes)
                    ),
                );
            }
        }
    }
    for (n, (_, bytes)) in got.iter().enumerate().skip(expected.len()) {
        report.extra += 1;
        say(
            out,
            format!("← answer {}: not in the recording: {}", n + 1, show(bytes)),
        );
    }
    say(
        out,
        format!(
            "{} sent; {} answers: {} same, {} differ, {} missing, {} extra",
            report.sent,
            expected.len(),
            report.same,
            report.differ,
            report.missing,
            report.extra
        ),
    );
    Ok(report)
}

/// The next data message from the backend (control frames are answered by the
/// library and skipped), or None when none comes within `wait` or it closed.
async fn recv<S>(stream: &mut S, wait: Duration) -> Option<(u8, Vec<u8>)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some((1, t.as_bytes().to_vec())),
            Ok(Some(Ok(Message::Binary(b)))) => return Some((2, b.to_vec())),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// `tunnelscope replay`: exit 0 when every answer came as recorded, 1 when not, 2
/// when it could not replay.
pub fn command(
    file: &std::path::Path,
    to: &str,
    timing: Timing,
    wait: std::time::Duration,
) -> ExitCode {
    let recording = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        recording,
        to: to.to_string(),
        timing,
        wait,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&opts, &mut std::io::stdout())) {
        Ok(report) if report.matched() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where `got` departs from the recorded answer.
fn difference(want: &RecordedMessage, op: u8, got: &[u8]) -> String {
    if op != want.opcode {
        let name = |o: u8| if o == 1 { "text" } else { "binary" };
        return format!("in kind: recorded {}, got {}", name(want.opcode), name(op));
    }
    let at = want
        .payload
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.payload.len().min(got.len()));
    let from = at.saturating_sub(16);
    format!(
        "at byte {at}: recorded {} got {}",
        show(&want.payload[from..]),
        show(&got[from..])
    )
}

/// A payload in a line: text quoted and cut, binary in hex.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 48;
    let cut = bytes.len() > MAX;
    let shown = &bytes[..bytes.len().min(MAX)];
    let more = if cut { "…" } else { "" };
    match std::str::from_utf8(shown) {
        Ok(t) => format!("{t:?}{more}"),
        Err(_) => {
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}{more}")
        }
    }
}
