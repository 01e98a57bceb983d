//! The epoll engine with frame-aware splice: the scanner sees every header and the
//! first bytes of each payload; once a frame says at least `SPLICE_MIN` more payload
//! bytes follow, they go socket to pipe to socket in the kernel, never copied into
//! user space, and the scanner is told how many went by.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::scan::Scanner;

/// Payload bytes still to come in a frame before splicing is worth its syscalls.
const SPLICE_MIN: u64 = 16 * 1024;
const PIPE: usize = 1 << 20;

struct Pipe(RawFd, RawFd);

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: fds is two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a pipe this function owns; failure leaves the default size.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, PIPE as libc::c_int) };
        Ok(Pipe(fds[0], fds[1]))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: owned.
        unsafe {
            libc::close(self.0);
            libc::close(self.1);
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors; null offsets for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

async fn write_all(w: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        w.writable().await?;
        match w.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn pipe(r: Arc<TcpStream>, w: Arc<TcpStream>) -> io::Result<()> {
    let mut s = Scanner::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut p: Option<Pipe> = None;
    loop {
        if s.left() >= SPLICE_MIN {
            let pipe = match &p {
                Some(p) => p,
                None => p.insert(Pipe::new()?),
            };
            // In: socket to pipe, as much of the payload as the pipe takes.
            let want = s.left().min(PIPE as u64) as usize;
            let n = loop {
                r.readable().await?;
                match r.try_io(Interest::READABLE, || splice(r.as_raw_fd(), pipe.1, want)) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                break;
            }
            s.skip(n as u64);
            // Out: pipe to socket, all of it.
            let mut left = n;
            while left > 0 {
                w.writable().await?;
                match w.try_io(Interest::WRITABLE, || splice(pipe.0, w.as_raw_fd(), left)) {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
            continue;
        }
        r.readable().await?;
        let n = match r.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        s.feed(&buf[..n]);
        write_all(&w, &buf[..n]).await?;
    }
    // SAFETY: shutting down the write side of an open socket.
    unsafe { libc::shutdown(w.as_raw_fd(), libc::SHUT_WR) };
    Ok(())
}

pub fn run(listener: std::net::TcpListener, backend: SocketAddr) {
    crate::serve(listener, backend, |client, server| async move {
        let (c, s) = (Arc::new(client), Arc::new(server));
        tokio::spawn(pipe(s.clone(), c.clone()));
        let _ = pipe(c, s).await;
    });
}
