//! The event loops that carry the traffic, one per thread, nginx-style: each is a
//! single-threaded tokio runtime with its own listening socket on every listen
//! address (SO_REUSEPORT), so the kernel spreads new connections over them and a
//! connection, its handshake and its tunnel live on one thread from accept to close.
//! Nothing migrates between threads and no thread wakes another to share work, which
//! is what a work-stealing runtime spends its time on with short handshakes.
//!
//! Everything else (commands, statistics, the dashboard, the admin API) runs on the
//! caller's runtime and reaches tunnels through the shared, thread-safe core.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};

/// Connections a listening socket queues before they are accepted (as tokio's
/// `TcpListener::bind`).
pub(super) const BACKLOG: i32 = 1024;

/// How many event loops `threads` asks for (0: one per CPU).
pub fn count(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Binds `copies` listening sockets on `addr` that share it. With one copy this is an
/// ordinary bind. With several, the address is first bound alone, so a port another
/// process holds (even another tunnelscope, which would otherwise join the group)
/// fails as it would with one; port 0 becomes the port that bind was given.
pub fn bind(addr: SocketAddr, copies: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let addr = {
        let probe = socket(addr, false)?;
        probe.bind(&addr.into())?;
        if copies == 1 {
            probe.listen(BACKLOG)?;
            return Ok(vec![probe.into()]);
        }
        probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("bound address is not an IP address"))?
    };
    (0..copies)
        .map(|_| {
            let s = socket(addr, true)?;
            s.bind(&addr.into())?;
            s.listen(BACKLOG)?;
            Ok(s.into())
        })
        .collect()
}

fn socket(addr: SocketAddr, share: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if share {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The running event loops.
pub struct Shards {
    /// Tells every loop to stop (dropping it does the same).
    stop: watch::Sender<bool>,
    /// One per loop, resolved when its thread has dropped its runtime.
    done: Vec<oneshot::Receiver<()>>,
}

impl Shards {
    /// Starts `count` event loops, each on a thread of its own, and returns handles
    /// to spawn on them (listeners' accept loops).
    pub fn start(count: usize) -> io::Result<(Shards, Vec<Handle>)> {
        let (stop, _) = watch::channel(false);
        let mut done = Vec::new();
        let mut handles = Vec::new();
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (finished, done_rx) = oneshot::channel();
            let mut stopped = stop.subscribe();
            std::thread::Builder::new()
                .name(format!("tunnelscope-io-{i}"))
                .spawn(move || {
                    // Until told, or until the proxy is gone; meanwhile it runs
                    // what is spawned on it.
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    });
                    // Whatever is still running here (tunnels past the shutdown
                    // grace) is dropped with the runtime, closing its sockets.
                    drop(runtime);
                    let _ = finished.send(());
                })?;
            done.push(done_rx);
        }
        Ok((Shards { stop, done }, handles))
    }

    /// Stops every loop and waits until their threads are done with their sockets.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for d in self.done {
            let _ = d.await;
        }
    }
}
