//! TLS on the proxy's client and backend connections, over rustls's unbuffered API.
//!
//! rustls's buffered connection keeps a 4 KiB receive buffer for its whole life,
//! idle or not: a third of what an idle TLS tunnel cost. Here the ciphertext
//! buffers are borrowed from [`bufpool`] only while bytes are in flight (a partial
//! record read, a record not yet sent), so an idle TLS connection holds no buffer,
//! like a plain one.
//!
//! Semantics follow tokio-rustls, which this replaces on the relay path: a peer's
//! `close_notify` reads as end of stream, a TCP end without one is an
//! `UnexpectedEof` error, a TLS error is `InvalidData` (after a last attempt to send
//! the alert that explains it), and shutting down sends `close_notify` first.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncryptError, UnbufferedStatus};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use self::buffers::{encode_needs, encrypt_needs, Leftover, Outgoing};
pub use self::side::Side;
use super::bufpool;

mod buffers;
mod side;

/// Largest ciphertext held while the handshake runs: rustls's own limit on a
/// handshake message (64 KiB), plus a record's framing.
const MAX_HANDSHAKE_BUFFER: usize = 0x1_0000 + 512;
/// Plaintext taken per write: a relay buffer, which encrypted fits one TLS buffer.
const MAX_WRITE: usize = bufpool::BUF_SIZE;

/// A TLS connection accepted from a client.
pub type ServerStream = TlsStream<ServerConnectionData>;
/// A TLS connection made to a backend.
pub type ClientStream = TlsStream<ClientConnectionData>;

/// Accepts TLS connections with one listener's settings.
#[derive(Clone)]
pub struct Acceptor(Arc<ServerConfig>);

impl From<Arc<ServerConfig>> for Acceptor {
    fn from(config: Arc<ServerConfig>) -> Acceptor {
        Acceptor(config)
    }
}

impl Acceptor {
    /// Runs the server side of the handshake on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<ServerStream> {
        let conn = UnbufferedServerConnection::new(self.0.clone()).map_err(tls_error)?;
        TlsStream::new(tcp, conn).handshake().await
    }
}

/// Runs the client side of the handshake on `tcp`, verifying `name`.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> io::Result<ClientStream> {
    let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    TlsStream::new(tcp, conn).handshake().await
}

/// One TLS connection over TCP.
pub struct TlsStream<S: Side> {
    tcp: TcpStream,
    conn: S::Conn,
    /// Ciphertext received and not yet processed: `incoming[start..used]`. No
    /// allocation while nothing waits.
    incoming: Vec<u8>,
    start: usize,
    used: usize,
    out: Outgoing,
    /// Plaintext decrypted that the reader had no room for.
    left: Leftover,
    /// The peer's `close_notify` has been read: the stream ends there.
    peer_closed: bool,
    close_sent: bool,
    /// rustls has failed: nothing more is asked of it.
    failed: bool,
}

/// What the connection needs after a [`TlsStream::step`].
enum Next {
    /// Something happened (data delivered, a record encoded): step again.
    Again,
    /// Nothing more can happen without more input from the peer.
    NeedInput,
    /// The plaintext, or the `close_notify`, asked for is encrypted into `out`.
    Done,
    /// The peer's `close_notify` has just been read.
    PeerClosed,
    /// Both sides have sent `close_notify`.
    Closed,
}

/// What a [`TlsStream::step`] may encrypt.
#[derive(Clone, Copy)]
enum Want<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

impl<S: Side> TlsStream<S> {
    fn new(tcp: TcpStream, conn: S::Conn) -> TlsStream<S> {
        TlsStream {
            tcp,
            conn,
            incoming: Vec::new(),
            start: 0,
            used: 0,
            out: Outgoing::default(),
            left: Leftover::default(),
            peer_closed: false,
            close_sent: false,
            failed: false,
        }
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The protocol chosen by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    async fn handshake(mut self) -> io::Result<Self> {
        poll_fn(|cx| self.poll_handshake(cx)).await?;
        self.park_incoming();
        Ok(self)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.out.poll_send(&mut self.tcp, cx))?;
            match self.step(None, Want::Nothing) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Next::Again) => {}
                Ok(Next::NeedInput) if !self.conn.is_handshaking() => {
                    if self.out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Ok(Next::NeedInput) => {
                    if ready!(self.poll_fill(cx, MAX_HANDSHAKE_BUFFER))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                }
                Ok(Next::PeerClosed | Next::Closed | Next::Done) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed during the TLS handshake",
                    )));
                }
            }
        }
    }

    /// Runs rustls on what has been received until it needs more input, or has
    /// encrypted what `want` asks. Decrypted data goes to `rb`, or what `rb` has no
    /// room for (or all of it, without `rb`) to `self.left`.
    fn step(&mut self, mut rb: Option<&mut ReadBuf<'_>>, want: Want<'_>) -> io::Result<Next> {
        if self.failed {
            return Err(io::Error::other("the TLS connection failed earlier"));
        }
        let TlsStream {
            conn,
            incoming,
            start,
            used,
            out,
            left,
            ..
        } = self;
        let UnbufferedStatus { discard, state } = S::process(conn, &mut incoming[*start..*used]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                self.last_gasp();
                return Err(tls_error(e));
            }
        };
        let next = match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    let payload = record.payload;
                    let n = match rb.as_deref_mut() {
                        Some(rb) if left.is_empty() => {
                            let n = payload.len().min(rb.remaining());
                            rb.put_slice(&payload[..n]);
                            n
                        }
                        _ => 0,
                    };
                    left.push(&payload[n..]);
                }
                Next::Again
            }
            ConnectionState::EncodeTlsData(mut data) => {
                out.append(|room| data.encode(room), encode_needs)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                Next::Again
            }
            ConnectionState::TransmitTlsData(transmit) => {
                // The encoded records are in `out`, which is sent before anything
                // encrypted later: rustls may consider them sent.
                transmit.done();
                Next::Again
            }
            ConnectionState::WriteTraffic(mut traffic) => {
                let other = |e: EncryptError| io::Error::other(e.to_string());
                match want {
                    Want::Nothing => Next::NeedInput,
                    // rustls puts anything it queued first (a key update).
                    Want::Data(data) => {
                        out.append(|room| traffic.encrypt(data, room), encrypt_needs)
                            .map_err(other)?;
                        Next::Done
                    }
                    Want::CloseNotify => {
                        out.append(|room| traffic.queue_close_notify(room), encrypt_needs)
                            .map_err(other)?;
                        Next::Done
                    }
                }
            }
            ConnectionState::BlockedHandshake => Next::NeedInput,
            ConnectionState::PeerClosed => Next::PeerClosed,
            ConnectionState::Closed => Next::Closed,
            _ => return Err(io::Error::other("unexpected TLS state (early data)")),
        };
        Ok(self.advance(discard, next))
    }

    /// Skips the `discard` bytes rustls processed, and returns `next`. Processed
    /// records are skipped, not moved: the rest moves only when the buffer is full
    /// (see `poll_fill`).
    fn advance(&mut self, discard: usize, next: Next) -> Next {
        self.start += discard;
        if self.start == self.used {
            self.start = 0;
            self.used = 0;
        }
        next
    }

    /// After a TLS error: sends the alert rustls queued to explain it, if the socket
    /// takes it now, and marks the connection failed. rustls is asked only for what
    /// it queued: processing the input again would fail again.
    fn last_gasp(&mut self) {
        self.failed = true;
        let TlsStream {
            conn,
            incoming,
            start,
            used,
            out,
            ..
        } = self;
        while conn.wants_write() {
            let status = S::process(conn, &mut incoming[*start..*used]);
            let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state else {
                break;
            };
            if out.append(|room| data.encode(room), encode_needs).is_err() {
                return;
            }
        }
        let pending = self.out.pending();
        if !pending.is_empty() {
            let _ = self.tcp.try_write(pending);
        }
        self.out = Outgoing::default();
        self.start = 0;
        self.used = 0;
        self.release_incoming();
    }

    /// Reads more ciphertext from the socket, up to a buffer of `max` bytes.
    fn poll_fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        if self.incoming.len() < bufpool::TLS_BUF_SIZE {
            // Nothing, or a part of a record parked while the peer was silent.
            let mut buf = bufpool::take_tls();
            let waiting = self.used - self.start;
            buf[..waiting].copy_from_slice(&self.incoming[self.start..self.used]);
            self.incoming = buf;
            self.start = 0;
            self.used = waiting;
        }
        if self.used == self.incoming.len() && self.start > 0 {
            self.incoming.copy_within(self.start..self.used, 0);
            self.used -= self.start;
            self.start = 0;
        }
        if self.used == self.incoming.len() {
            if self.incoming.len() >= max {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS message too large",
                )));
            }
            let grown = (self.incoming.len() * 2).min(max);
            self.incoming.resize(grown, 0);
        }
        let mut rb = ReadBuf::new(&mut self.incoming[self.used..]);
        match Pin::new(&mut self.tcp).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.used += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.park_incoming();
                Poll::Pending
            }
        }
    }

    /// Gives the receive buffer back while it holds nothing.
    fn release_incoming(&mut self) {
        if self.used == 0 && !self.incoming.is_empty() {
            bufpool::give_tls(std::mem::take(&mut self.incoming));
        }
    }

    /// The peer has gone quiet: gives the receive buffer back, keeping what part of a
    /// record it holds in an allocation of that size. A peer that sends a few bytes
    /// of a record and stalls (or many such peers) holds what it sent, not a buffer.
    fn park_incoming(&mut self) {
        let waiting = self.used - self.start;
        if waiting > 0 && self.incoming.len() == bufpool::TLS_BUF_SIZE {
            let part = self.incoming[self.start..self.used].to_vec();
            bufpool::give_tls(std::mem::replace(&mut self.incoming, part));
            self.start = 0;
            self.used = waiting;
        }
        self.release_incoming();
    }
}

impl<S: Side> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        rb: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Records rustls queued while reading (a key update's answer) go out as soon
        // as the socket takes them; a write error shows on the next write.
        if !this.out.is_empty() {
            let _ = this.out.poll_send(&mut this.tcp, cx);
        }
        let start = rb.filled().len();
        this.left.drain_into(rb);
        loop {
            if rb.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.step(Some(rb), Want::Nothing) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Next::Again | Next::Done) => {}
                Ok(Next::NeedInput) => {
                    if rb.filled().len() > start || this.peer_closed {
                        return Poll::Ready(Ok(()));
                    }
                    match ready!(this.poll_fill(cx, bufpool::TLS_BUF_SIZE)) {
                        Ok(0) => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "peer closed connection without sending TLS close_notify",
                            )))
                        }
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Ok(Next::PeerClosed) => {
                    this.peer_closed = true;
                    this.release_incoming();
                    return Poll::Ready(Ok(()));
                }
                Ok(Next::Closed) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: Side> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was encrypted before goes first: that is the backpressure.
        ready!(this.out.poll_send(&mut this.tcp, cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.close_sent {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &buf[..buf.len().min(MAX_WRITE)];
        loop {
            match this.step(None, Want::Data(data))? {
                Next::Done => break,
                Next::Again => {}
                Next::PeerClosed => this.peer_closed = true,
                Next::NeedInput => {
                    return Poll::Ready(Err(io::Error::other("TLS handshake not complete")))
                }
                Next::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        // The data is taken: what the socket does not take now is sent first next time.
        if let Poll::Ready(Err(e)) = this.out.poll_send(&mut this.tcp, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_send(&mut this.tcp, cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.out.poll_send(&mut this.tcp, cx))?;
        if !this.close_sent {
            this.close_sent = true;
            // A connection rustls has failed cannot send close_notify: the TCP end says it.
            for _ in 0..8 {
                match this.step(None, Want::CloseNotify) {
                    Ok(Next::Again) => {}
                    Ok(Next::PeerClosed) => this.peer_closed = true,
                    _ => break,
                }
            }
            ready!(this.out.poll_send(&mut this.tcp, cx))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests;
