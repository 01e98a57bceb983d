//! Active health checks: every backend of a pool with `[pool.NAME.health]` is probed
//! every `interval` (a TCP connect, an HTTP request, or a real WebSocket handshake
//! followed by a Close); the backend keeps the verdict apart from its admin state
//! and from passive checks. The pools are read afresh each round, so backends a
//! reload adds are checked and removed ones are not.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pacing::{self, Plan};
use super::pool::Backend;
use super::registry::Registry;
use super::stream::Stream;
use super::upstream::{self, UpstreamTls};
use crate::config::{CheckKind, HealthCheck};
use crate::event::{CheckResult, PaceCause};
use crate::ws;

/// How often due checks are looked for; checks themselves run at their interval.
const ROUND: Duration = Duration::from_millis(100);

/// Runs checks until shutdown begins.
pub(super) async fn run(core: Arc<Registry>) {
    core.every(ROUND, || {
        let now = Instant::now();
        for pool in core.pools.all() {
            let Some(check) = &pool.config.health else {
                continue;
            };
            let tls = core.upstream_tls(&pool.name);
            for backend in pool.backends() {
                if backend.check_due(now, check.interval) {
                    let (backend, check, tls) = (backend.clone(), check.clone(), tls.clone());
                    let timeouts = core.config().timeouts.clone();
                    let (core, rate) = (core.clone(), pool.config.close_rate);
                    tokio::spawn(async move {
                        let at = SystemTime::now();
                        let started = Instant::now();
                        let result = match tokio::time::timeout(
                            check.timeout,
                            probe(&backend, &check, tls.as_ref(), &timeouts),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(format!("no answer within {:?}", check.timeout)),
                        };
                        let result = CheckResult {
                            at,
                            latency: started.elapsed(),
                            error: result.err(),
                        };
                        let down = backend.record_check(result, check.rise, check.fall);
                        if down && check.close_on_down {
                            let plan = Plan {
                                cause: PaceCause::Down,
                                after: Duration::ZERO,
                                rate,
                                quota: None,
                            };
                            pacing::run(core, backend, plan).await;
                        }
                    });
                }
            }
        }
    })
    .await;
}

/// One check of one backend.
async fn probe(
    backend: &Backend,
    check: &HealthCheck,
    tls: Option<&UpstreamTls>,
    timeouts: &crate::config::Timeouts,
) -> Result<(), String> {
    let mut stream = upstream::connect(&backend.addr, backend.authority(), tls, timeouts)
        .await
        .map_err(|e| e.to_string())?;
    let host = check.host.as_deref().unwrap_or(backend.authority());
    match check.kind() {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http => {
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tunnelscope-health\r\nConnection: close\r\n\r\n",
                check.path
            );
            let status = exchange(&mut stream, req.as_bytes()).await?.0;
            expect(status, check.status.unwrap_or(200))
        }
        CheckKind::Ws => {
            // RFC 6455's sample nonce: a check needs no secret key.
            let key = "dGhlIHNhbXBsZSBub25jZQ==";
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tunnelscope-health\r\n\
                 Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n",
                check.path
            );
            let (status, head) = exchange(&mut stream, req.as_bytes()).await?;
            expect(status, check.status.unwrap_or(101))?;
            if status == 101 {
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                if !head
                    .to_ascii_lowercase()
                    .contains(&accept.to_ascii_lowercase())
                {
                    return Err("101 without the right Sec-WebSocket-Accept".into());
                }
                // Leave as a client should: a masked Close, then hang up.
                let close = ws::close_frame(1000, "health check", Some(ws::mask_key()));
                let _ = stream.write_all(&close).await;
                let _ = stream.shutdown().await;
            }
            Ok(())
        }
    }
}

fn expect(status: u16, want: u16) -> Result<(), String> {
    if status == want {
        Ok(())
    } else {
        Err(format!("answered {status}, expected {want}"))
    }
}

/// Sends a request and reads the response head: its status and the head's text.
async fn exchange(stream: &mut Stream, request: &[u8]) -> Result<(u16, String), String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a response".into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                text.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, text))
}
