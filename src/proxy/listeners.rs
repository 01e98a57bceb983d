//! The listeners accepting now: bound at start, added and removed by a reload. Each
//! is accepted on by every event loop (one socket per loop, see [`super::shard`]);
//! removing one stops its accept loops and closes its sockets, while the
//! connections and tunnels it accepted run on.

use crate::sync::lock;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use super::tlsio::Acceptor as TlsAcceptor;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::certs::ListenerCerts;
use super::listener::{self, Bound};
use super::registry::Registry;
use super::{shard, tls, StartError};
use crate::config;
use crate::event::ListenerInfo;

/// A listener accepting now.
pub(super) struct Live {
    pub info: ListenerInfo,
    /// As configured (port 0 stays 0 here; `info.addr` is what it was given): a
    /// reload matches listeners by this and by TLS on or off.
    pub bind: SocketAddr,
    /// Its certificates, which a reload re-reads; None for plain listeners.
    pub certs: Option<Arc<ListenerCerts>>,
    stop: watch::Sender<bool>,
    /// Its sockets (copies of those the event loops accept on), to hand to a new
    /// process on a binary upgrade.
    sockets: Vec<std::net::TcpListener>,
}

/// A listener bound and ready, not accepting yet.
pub(super) struct Prepared {
    info: ListenerInfo,
    bind: SocketAddr,
    certs: Option<Arc<ListenerCerts>>,
    tls: Option<TlsAcceptor>,
    /// One socket per event loop.
    sockets: Vec<std::net::TcpListener>,
}

impl Prepared {
    pub fn info(&self) -> &ListenerInfo {
        &self.info
    }
}

/// Reads the listener's certificates and binds its sockets, one per event loop, or
/// takes over `inherited` ones (a binary upgrade hands its listening sockets on).
pub(super) fn prepare(
    l: &config::Listener,
    loops: usize,
    inherited: Option<Vec<std::net::TcpListener>>,
) -> Result<Prepared, StartError> {
    let name: Arc<str> = l.display_name().into();
    let tls_error = |source| StartError::ListenerTls {
        listener: name.to_string(),
        source,
    };
    let (certs, tls) = match &l.tls {
        Some(t) => {
            let certs = ListenerCerts::load(t).map_err(tls_error)?;
            let config = tls::server_config_with(certs.clone(), t.h2).map_err(tls_error)?;
            (Some(certs), Some(TlsAcceptor::from(config)))
        }
        None => (None, None),
    };
    let bind_error = |source| StartError::Bind {
        addr: l.bind,
        source,
    };
    let sockets = match inherited {
        Some(sockets) => adopt(sockets, loops).map_err(bind_error)?,
        None => shard::bind(l.bind, loops).map_err(bind_error)?,
    };
    let addr = sockets[0].local_addr().map_err(bind_error)?;
    Ok(Prepared {
        info: ListenerInfo {
            name,
            addr,
            tls: tls.is_some(),
        },
        bind: l.bind,
        certs,
        tls,
        sockets,
    })
}

/// The live listeners, and the event loops that accept on them.
#[derive(Default)]
pub(super) struct Listeners {
    live: Mutex<Vec<Arc<Live>>>,
    loops: OnceLock<Vec<Handle>>,
}

impl Listeners {
    /// The event loops new listeners are served on (set once they run).
    pub fn set_loops(&self, loops: Vec<Handle>) {
        let _ = self.loops.set(loops);
    }

    /// How many event loops there are, so a listener gets a socket for each.
    pub fn loop_count(&self) -> usize {
        self.loops.get().map_or(1, Vec::len)
    }

    pub fn live(&self) -> Vec<Arc<Live>> {
        lock(&self.live).clone()
    }

    pub fn infos(&self) -> Vec<ListenerInfo> {
        lock(&self.live).iter().map(|l| l.info.clone()).collect()
    }

    /// Starts accepting on a prepared listener, on every event loop.
    pub fn serve(&self, core: &Arc<Registry>, p: Prepared) {
        let (stop, _) = watch::channel(false);
        let loops = self.loops.get().map_or(&[][..], Vec::as_slice);
        tracing::info!(listener = %p.info.name, addr = %p.info.addr, tls = p.tls.is_some(), loops = loops.len(), "listening");
        let copies = p
            .sockets
            .iter()
            .map(|s| s.try_clone())
            .collect::<Result<Vec<_>, _>>();
        let copies = copies.unwrap_or_else(|e| {
            tracing::warn!(listener = %p.info.name, error = %e, "cannot keep copies of the listening sockets: a binary upgrade will bind afresh");
            Vec::new()
        });
        // Every socket is accepted on; loops take turns when there are more sockets
        // than loops (inherited from a process with more).
        for (i, socket) in p.sockets.into_iter().enumerate() {
            let Some(handle) = loops.get(i % loops.len().max(1)) else {
                break;
            };
            let (core, name, tls) = (core.clone(), p.info.name.clone(), p.tls.clone());
            let stopped = stop.subscribe();
            handle.spawn(async move {
                // The socket joins this loop's reactor here, on the loop's own thread.
                match tokio::net::TcpListener::from_std(socket) {
                    Ok(listener) => {
                        let bound = Bound {
                            name,
                            listener,
                            tls,
                            stopped,
                        };
                        listener::serve(core, bound).await;
                    }
                    Err(e) => {
                        tracing::error!(listener = %name, error = %e, "cannot serve listener")
                    }
                }
            });
        }
        lock(&self.live).push(Arc::new(Live {
            info: p.info,
            bind: p.bind,
            certs: p.certs,
            stop,
            sockets: copies,
        }));
    }

    /// Copies of every listener's sockets, by configured address, for a new process.
    pub fn handover(&self) -> Vec<(SocketAddr, Vec<std::net::TcpListener>)> {
        lock(&self.live)
            .iter()
            .map(|l| {
                let copies = l
                    .sockets
                    .iter()
                    .filter_map(|s| s.try_clone().ok())
                    .collect();
                (l.bind, copies)
            })
            .collect()
    }

    /// Stops accepting on every listener (a new process took them over).
    pub fn remove_all(&self) {
        let binds: Vec<SocketAddr> = lock(&self.live).iter().map(|l| l.bind).collect();
        for bind in binds {
            self.remove(bind);
        }
    }

    /// Stops accepting on the listener (its open connections run on) and forgets it.
    pub fn remove(&self, bind: SocketAddr) -> Option<ListenerInfo> {
        let mut live = lock(&self.live);
        let at = live.iter().position(|l| l.bind == bind)?;
        let gone = live.remove(at);
        let _ = gone.stop.send(true);
        tracing::info!(listener = %gone.info.name, addr = %gone.info.addr, "no longer listening");
        Some(gone.info.clone())
    }
}

/// Inherited sockets, made ready for the event loops: non-blocking, and as many as
/// there are loops when there are fewer (a copy shares the same socket).
fn adopt(
    mut sockets: Vec<std::net::TcpListener>,
    loops: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let have = sockets.len();
    if have == 0 {
        return Err(std::io::Error::other("no socket was handed over"));
    }
    for i in have..loops {
        let copy = sockets[i % have].try_clone()?;
        sockets.push(copy);
    }
    for s in &sockets {
        s.set_nonblocking(true)?;
    }
    Ok(sockets)
}
