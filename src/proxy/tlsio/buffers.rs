//! The ciphertext waiting to go out, and the plaintext waiting to be read: both
//! borrowed from [`bufpool`] or allocated only while bytes wait.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::unbuffered::{EncodeError, EncryptError, InsufficientSizeError};
use tokio::io::{AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy::bufpool;

/// Ciphertext waiting to be sent: `buf[start..end]`, in a relay buffer borrowed
/// only while something waits.
#[derive(Default)]
pub(super) struct Outgoing {
    pub(super) buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Outgoing {
    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub(super) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Free space after what waits, at least `need` bytes (and some when 0).
    pub(super) fn room(&mut self, need: usize) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = bufpool::take_tls();
        }
        if self.start > 0 && self.buf.len() - self.end < need.max(1) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < need {
            self.buf.resize(self.end + need, 0);
        }
        &mut self.buf[self.end..]
    }

    pub(super) fn commit(&mut self, n: usize) {
        self.end += n;
    }

    /// Appends what `write` puts in the free space. When it fails for want of room
    /// (`needs` says how much), it is given that much and asked again, once.
    pub(super) fn append<E>(
        &mut self,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
        needs: impl Fn(&E) -> Option<usize>,
    ) -> Result<(), E> {
        let mut need = 0;
        loop {
            match write(self.room(need)) {
                Ok(n) => {
                    self.commit(n);
                    return Ok(());
                }
                Err(e) => match needs(&e) {
                    Some(required) if need < required => need = required,
                    _ => return Err(e),
                },
            }
        }
    }

    /// Writes what waits; gives the buffer back once all is sent.
    pub(super) fn poll_send(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.start < self.end {
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.buf[self.start..self.end]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.start += n;
        }
        self.start = 0;
        self.end = 0;
        if !self.buf.is_empty() {
            bufpool::give_tls(std::mem::take(&mut self.buf));
        }
        Poll::Ready(Ok(()))
    }
}

/// Decrypted bytes a reader had no room for: `buf[pos..]`.
#[derive(Default)]
pub(super) struct Leftover {
    pub(super) buf: Vec<u8>,
    pos: usize,
}

impl Leftover {
    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.buf.extend_from_slice(bytes);
        }
    }

    pub(super) fn drain_into(&mut self, rb: &mut ReadBuf<'_>) {
        if self.is_empty() {
            return;
        }
        let n = (self.buf.len() - self.pos).min(rb.remaining());
        rb.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.is_empty() {
            *self = Leftover::default();
        }
    }
}

/// The room an encoding asked for, when that is why it failed.
pub(super) fn encode_needs(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// The room an encryption asked for, when that is why it failed.
pub(super) fn encrypt_needs(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}
