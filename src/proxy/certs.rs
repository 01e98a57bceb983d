//! A TLS listener's certificates, swappable under live traffic: a reload re-reads
//! the files and swaps them in whole, so the next handshake gets a renewed
//! certificate while the connections already made carry on.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::tls::{sni_resolver, SniResolver, TlsError};
use crate::config::ListenerTls;

/// The certificates one TLS listener serves.
pub struct ListenerCerts(ArcSwap<SniResolver>);

impl ListenerCerts {
    /// Reads the listener's certificate files.
    pub fn load(tls: &ListenerTls) -> Result<Arc<ListenerCerts>, TlsError> {
        Ok(Arc::new(ListenerCerts(ArcSwap::from_pointee(
            sni_resolver(tls)?,
        ))))
    }

    /// Reads the files again, without serving them yet ([`ListenerCerts::swap`]).
    pub fn prepare(tls: &ListenerTls) -> Result<Renewed, TlsError> {
        sni_resolver(tls).map(Renewed)
    }

    /// Serves these from the next handshake on.
    pub fn swap(&self, renewed: Renewed) {
        self.0.store(Arc::new(renewed.0));
    }
}

/// Certificates read by [`ListenerCerts::prepare`], ready to swap in.
pub struct Renewed(SniResolver);

impl ResolvesServerCert for ListenerCerts {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().resolve(client_hello)
    }
}

impl fmt::Debug for ListenerCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ListenerCerts")
            .field(&*self.0.load())
            .finish()
    }
}
