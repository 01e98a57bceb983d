//! Connecting to a backend: TCP with a timeout, then TLS when the pool asks for it,
//! then an HTTP/1.1 client connection (hyper) on top.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::stream::Stream;

/// Why a backend could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, name not resolved).
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: String, source: io::Error },
    /// TCP connect or TLS handshake took longer than `timeouts.connect`.
    #[error("connect to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The TLS handshake with the backend failed.
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls { addr: String, source: io::Error },
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. })
    }
}

/// TLS settings for a pool's backends.
#[derive(Clone)]
pub struct UpstreamTls {
    pub config: Arc<rustls::ClientConfig>,
    /// Fixed server name to verify, or `None` to use each backend's host.
    pub server_name: Option<String>,
}

/// Opens a connection to `addr` (`host:port`), TLS when `tls` is given, verifying
/// the host of `authority` (the name the backend was resolved from, or `addr`).
pub async fn connect(
    addr: &str,
    authority: &str,
    tls: Option<&UpstreamTls>,
    timeouts: &crate::config::Timeouts,
) -> Result<Stream, ConnectError> {
    let timeout = timeouts.connect;
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        if let Err(e) = super::stream::tune_socket(socket2::SockRef::from(&tcp), timeouts) {
            tracing::debug!(%addr, error = %e, "cannot tune the backend connection's socket");
        }
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = super::tls::backend_server_name(authority, tls.server_name.as_deref()).map_err(
            |e| ConnectError::Tls {
                addr: addr.to_string(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            },
        )?;
        let stream = super::tlsio::connect(tls.config.clone(), name, tcp)
            .await
            .map_err(|source| ConnectError::Tls {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Stream::ClientTls(Box::new(stream)))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(res) => res,
        Err(_) => Err(ConnectError::Timeout {
            addr: addr.to_string(),
            after: timeout,
        }),
    }
}
