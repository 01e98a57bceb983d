//! The real `tunnelscope` binary as a child process: its log lines read as they
//! come, signals by PID, killed when the test ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::WAIT;

/// The `tunnelscope` binary running as a child process. Its stderr (the logs) is
/// read line by line; it is killed by PID when dropped if still running.
pub struct Proc {
    child: tokio::process::Child,
    pub pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far, for failure messages.
    pub seen: Vec<String>,
    stall: Arc<tokio::sync::Notify>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
        }
    }
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the tunnelscope binary");
        let pid = child.id().expect("a running child has a pid");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::unbounded_channel();
        let stall = Arc::new(tokio::sync::Notify::new());
        let stalled = stall.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            loop {
                let line = tokio::select! {
                    line = reader.next_line() => line,
                    _ = stalled.notified() => {
                        // Stalled: the pipe stays open, unread, until resumed.
                        stalled.notified().await;
                        continue;
                    }
                };
                match line {
                    Ok(Some(line)) if !tx.is_closed() => {
                        let _ = tx.send(line);
                    }
                    _ => return,
                }
            }
        });
        Proc {
            child,
            pid,
            lines,
            seen: Vec::new(),
            stall,
        }
    }

    /// The next stderr line matching `pred`; None when stderr ended first (the
    /// process exited). Panics after WAIT.
    pub async fn wait_line<F: FnMut(&str) -> bool>(&mut self, mut pred: F) -> Option<String> {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(found) => found,
            Err(_) => panic!(
                "no matching log line within {WAIT:?}; stderr so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the "listening" line and returns the bound address it names.
    pub async fn listening(&mut self) -> SocketAddr {
        let line = self
            .wait_line(|l| l.contains("listening") && l.contains("addr="))
            .await
            .unwrap_or_else(|| panic!("exited before listening:\n{}", self.seen.join("\n")));
        let addr = field(&line, "addr").expect("the listening line names its address");
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"))
    }

    /// Stops reading stderr but keeps the pipe open: once its buffer is full, every
    /// write the process makes to stderr would block.
    pub fn stall_stderr(&self) {
        self.stall.notify_one();
    }

    /// Reads stderr again after [`stall_stderr`](Self::stall_stderr).
    pub fn resume_stderr(&self) {
        self.stall.notify_one();
    }

    /// Sends a signal by PID with the `kill` command (`sig` as in `kill -TERM`).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit within `within`; panics if it does not.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!(
                "still running after {within:?}; stderr so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }
}

/// The value of `key=value` in a log line (the last occurrence), with the quotes
/// tracing puts around strings removed.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    fields(line).remove(key)
}

/// Every `key=value` pair in a log line; later ones win (so a span's fields are
/// overridden by the event's own).
pub fn fields(line: &str) -> HashMap<String, &str> {
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"')))
        })
        .collect()
}

/// A loopback address and port that were free a moment ago, on an address of the
/// caller's own (see [`private_loopback`]).
pub fn free_addr() -> String {
    let ip = private_loopback();
    format!("{ip}:{}", free_port_on(&ip))
}

/// A loopback address no other test binds (127.0.77.1, 127.0.77.2, …). A port found
/// free on 127.0.0.1 may be taken by another test before the process under test
/// binds it, and with SO_REUSEPORT on both sides the two would share it, each
/// getting some of the other's connections.
pub fn private_loopback() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("127.0.{}.{}", 77 + n / 250, n % 250 + 1)
}

/// A port free on `ip` now.
pub fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
