//! One byte-stream type for every connection the proxy holds, plain or TLS, client
//! side or backend side. A concrete type (not a trait object) lets the tunnel take the
//! raw stream back out of hyper's `Upgraded` by downcasting, so no HTTP buffers stay
//! alive for the life of a tunnel.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client or backend connection.
pub enum Stream {
    Plain(TcpStream),
    /// A client connection on a TLS listener.
    ServerTls(Box<super::tlsio::ServerStream>),
    /// A backend connection with `tls = true`.
    ClientTls(Box<super::tlsio::ClientStream>),
    /// A WebSocket stream inside an HTTP/2 connection (RFC 8441): hyper's, not ours.
    H2(Box<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>),
}

/// Sets what every proxied TCP connection gets, on either side: no Nagle delay
/// (frames go as they arrive), and TCP keepalive as `[timeouts]` says. Also used on
/// a listening socket, which Linux copies to every socket it accepts (the client
/// side of a connection then costs no `setsockopt` of its own: five fewer system
/// calls per handshake), and on a socket accepted with a listener's earlier
/// settings: keepalive is switched off when the configuration has none, as a
/// reload may have turned it off.
pub fn tune_socket(s: socket2::SockRef<'_>, timeouts: &crate::config::Timeouts) -> io::Result<()> {
    s.set_tcp_nodelay(true)?;
    match keepalive(timeouts) {
        Some(k) => s.set_tcp_keepalive(&k),
        None => s.set_keepalive(false),
    }
}

/// What [`tune_socket`] sets, for telling whether a listener still passes on what the
/// configuration asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning(Option<(std::time::Duration, std::time::Duration, u32)>);

impl Tuning {
    pub fn of(timeouts: &crate::config::Timeouts) -> Tuning {
        Tuning((!timeouts.keepalive_idle.is_zero()).then_some((
            timeouts.keepalive_idle,
            timeouts.keepalive_interval,
            timeouts.keepalive_count,
        )))
    }
}

fn keepalive(timeouts: &crate::config::Timeouts) -> Option<socket2::TcpKeepalive> {
    let Tuning(Some((idle, interval, count))) = Tuning::of(timeouts) else {
        return None;
    };
    Some(
        socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(interval)
            .with_retries(count),
    )
}

impl Stream {
    /// Whether ending it takes more than closing a socket (a TLS close_notify, an
    /// HTTP/2 END_STREAM): then it is always shut down, never just dropped.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::H2(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
