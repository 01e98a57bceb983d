//! Sockets for both ends: a client stream that is plain TCP or TLS, connecting a
//! WebSocket client to an endpoint, and the TLS material (one self-signed
//! certificate made at run time, shared by every TLS terminator).

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// The name the certificate is made for and the clients ask for.
pub const SERVER_NAME: &str = "localhost";
/// Bound on connecting, the TLS handshake and the WebSocket upgrade together.
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A client connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub type Ws = WebSocketStream<Conn>;

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, b),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where a client connects: connection `i` goes to `addrs[i % len]` (the direct
/// target spreads over both backends this way; a proxy has one address).
#[derive(Clone)]
pub struct Endpoint {
    pub addrs: Vec<SocketAddr>,
    pub tls: Option<TlsConnector>,
}

impl Endpoint {
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let a: Vec<String> = self
            .addrs
            .iter()
            .map(|a| format!("{scheme}://{a}/"))
            .collect();
        a.join(" + ")
    }
}

/// Client settings: small read buffers when holding thousands of idle tunnels,
/// tungstenite's defaults otherwise.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Connects, (TLS,) upgrades: one WebSocket client, bounded by [`CONNECT_WAIT`].
pub async fn connect(ep: &Endpoint, i: usize, cfg: WebSocketConfig) -> Result<Ws> {
    let addr = ep.addrs[i % ep.addrs.len()];
    tokio::time::timeout(CONNECT_WAIT, async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let conn = match &ep.tls {
            None => Conn::Plain(tcp),
            Some(c) => {
                let name = ServerName::try_from(SERVER_NAME)?;
                Conn::Tls(Box::new(c.connect(name, tcp).await?))
            }
        };
        let url = format!("ws://{SERVER_NAME}:{}/", addr.port());
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, conn, Some(cfg)).await?;
        anyhow::Ok(ws)
    })
    .await
    .map_err(|_| anyhow!("connect to {addr}: no upgrade within {CONNECT_WAIT:?}"))?
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client that trusts exactly `cert_pem` and never resumes a session, so each
/// handshake is a full one.
pub fn tls_connector(cert_pem: &Path) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert_pem).context("reading the certificate")? {
        roots.add(c?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// A TLS server for the direct target's backends.
pub fn tls_acceptor(cert_pem: &Path, key_pem: &Path) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .context("reading the certificate")?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key_pem).context("reading the key")?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Writes a fresh self-signed ECDSA P-256 certificate for `localhost` and
/// 127.0.0.1: `cert.pem`, `key.pem`, and `combined.pem` (both, for HAProxy).
pub fn make_cert(dir: &Path) -> Result<()> {
    let ck =
        rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])?;
    let cert = ck.cert.pem();
    let key = ck.key_pair.serialize_pem();
    std::fs::write(dir.join("cert.pem"), &cert)?;
    std::fs::write(dir.join("key.pem"), &key)?;
    std::fs::write(dir.join("combined.pem"), format!("{cert}{key}"))?;
    Ok(())
}
