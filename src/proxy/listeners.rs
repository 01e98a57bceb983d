//! The listeners accepting now: bound at start, added and removed by a reload. Each
//! is accepted on by every event loop (one socket per loop, see [`super::shard`]);
//! removing one stops its accept loops and closes its sockets, while the
//! connections and tunnels it accepted run on.

use crate::sync::lock;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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

/// Reads the listener's certificates and binds its sockets, one per event loop.
pub(super) fn prepare(l: &config::Listener, loops: usize) -> Result<Prepared, StartError> {
    let name: Arc<str> = l.display_name().into();
    let tls_error = |source| StartError::ListenerTls {
        listener: name.to_string(),
        source,
    };
    let (certs, tls) = match &l.tls {
        Some(t) => {
            let certs = ListenerCerts::load(t).map_err(tls_error)?;
            let config = tls::server_config_with(certs.clone()).map_err(tls_error)?;
            (Some(certs), Some(TlsAcceptor::from(config)))
        }
        None => (None, None),
    };
    let bind_error = |source| StartError::Bind {
        addr: l.bind,
        source,
    };
    let sockets = shard::bind(l.bind, loops).map_err(bind_error)?;
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
        for (handle, socket) in loops.iter().zip(p.sockets) {
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
        }));
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
