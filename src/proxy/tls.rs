//! TLS for both sides of the proxy: the server configuration of a TLS listener
//! (default certificate plus SNI-selected ones) and the client configuration and
//! server name used to reach backends with `tls = true`.
//!
//! Every configuration is built on the `ring` [`CryptoProvider`] passed explicitly
//! through `builder_with_provider`, so nothing here depends on (or races with) a
//! process-wide default provider. Only TLS 1.2 and 1.3 are enabled and ALPN is
//! `http/1.1`: the proxy speaks HTTP/1.1 (WebSocket upgrades need it) on both sides.
//!
//! Loading never panics on file content: every unusable file becomes a [`TlsError`]
//! that names the file and says what is expected instead.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::certs::ListenerCerts;
use rustls::{
    ClientConfig, InconsistentKeys, RootCertStore, ServerConfig, SupportedProtocolVersion,
};

use crate::config::ListenerTls;

/// The protocol versions offered on both sides; anything older is refused.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The only application protocol: WebSocket upgrades are HTTP/1.1 requests.
const ALPN_HTTP11: &[u8] = b"http/1.1";
const ALPN_H2: &[u8] = b"h2";

/// A TLS setting that cannot be used; each message names the file (or the value)
/// and says what is expected instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The file has a PEM section that does not decode.
    #[error("{}: malformed PEM: {source}", .path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },

    /// The file has no `CERTIFICATE` PEM section.
    #[error("{}: no certificate found (expected PEM 'BEGIN CERTIFICATE')", .path.display())]
    NoCertificate { path: PathBuf },

    /// The file has no unencrypted private key PEM section.
    #[error(
        "{}: no private key found (expected an unencrypted PEM 'BEGIN PRIVATE KEY', \
         'BEGIN RSA PRIVATE KEY' or 'BEGIN EC PRIVATE KEY')",
        .path.display()
    )]
    NoPrivateKey { path: PathBuf },

    /// The private key parsed as PEM but the crypto provider cannot sign with it.
    #[error(
        "{}: private key cannot be used ({source}); use an unencrypted RSA (2048 bits or \
         more), ECDSA P-256/P-384 or Ed25519 key",
        .path.display()
    )]
    UnsupportedKey {
        path: PathBuf,
        source: rustls::Error,
    },

    /// The first certificate of a chain is not a parsable X.509 certificate.
    #[error("{}: the first certificate cannot be parsed ({source}); expected a PEM X.509 certificate", .path.display())]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },

    /// The key does not belong to the first certificate of the chain.
    #[error(
        "{} and {}: cert and key do not match (the key must belong to the first \
         certificate in the chain)",
        .cert.display(), .key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    /// A CA bundle whose certificates are all unusable as trust anchors.
    #[error(
        "{}: none of its {found} certificate(s) can be used as a trust anchor; \
         expected PEM CA certificates",
        .path.display()
    )]
    NoUsableCa { path: PathBuf, found: usize },

    /// No CA bundle was configured and the system has no usable roots.
    #[error(
        "no system root certificates could be loaded{detail}; set `ca` on the pool to a \
         PEM CA bundle"
    )]
    NoSystemRoots { detail: String },

    /// An `sni` entry has an empty `names` list.
    #[error("{}: the sni entry for this certificate lists no names", .cert.display())]
    EmptySniNames { cert: PathBuf },

    /// An `sni` name is neither a DNS name nor a `*.domain` wildcard.
    #[error(
        "{}: sni name `{name}` is not a DNS name or `*.domain` wildcard (clients never \
         send IP addresses as SNI; they get the default certificate)",
        .cert.display()
    )]
    InvalidSniName { cert: PathBuf, name: String },

    /// The same SNI name is listed for two certificates.
    #[error(
        "sni name `{name}` is listed for both {} and {}; list it once",
        .first.display(), .second.display()
    )]
    DuplicateSniName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    /// `server_name` is neither a DNS name nor an IP address.
    #[error("server_name `{name}` is not a valid DNS name or IP address")]
    InvalidServerName { name: String },

    /// The host part of a backend address cannot be used as a TLS server name.
    #[error(
        "backend `{addr}`: its host is not a valid DNS name or IP address to verify TLS \
         against; write `host:port` or `[v6]:port`, or set `server_name` on the pool"
    )]
    BadBackendAddr { addr: String },

    /// rustls refused the assembled configuration (not expected with the ring provider).
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The provider every configuration here is built on. A fresh value each time is
/// cheap (static tables) and keeps us independent of `CryptoProvider::install_default`.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server config of a TLS listener.
///
/// TLS 1.2 and 1.3 only, ALPN `["h2", "http/1.1"]` (`["http/1.1"]` with `h2 = false`). The main `cert`/`key` are the default;
/// each `sni` entry is chosen by the client's SNI server name, matched
/// case-insensitively against exact names and `*.example.com` wildcards (one label,
/// as in certificates; exact names win). Unknown or absent SNI gets the default.
///
/// The ring [`CryptoProvider`] is passed explicitly (`builder_with_provider`), so this
/// never depends on a process-wide default provider.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(ListenerCerts::load(tls)?, tls.h2)
}

/// The server configuration of a TLS listener that serves `certs` (which a reload
/// can swap under it).
/// A TLS listener's settings: ALPN offers `h2` (WebSocket over HTTP/2, RFC 8441,
/// and plain requests) before `http/1.1` when `h2` is on.
pub(super) fn server_config_with(
    certs: Arc<ListenerCerts>,
    h2: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    if h2 {
        config.alpn_protocols.insert(0, ALPN_H2.to_vec());
    }
    Ok(Arc::new(config))
}

/// Reads a listener's certificate files: the default chain and key, and each SNI
/// entry's, checked as at start.
pub(super) fn sni_resolver(tls: &ListenerTls) -> Result<SniResolver, TlsError> {
    let provider = provider();
    let default = load_certified_key(&tls.cert, &tls.key, &provider)?;

    let mut resolver = SniResolver {
        default,
        exact: HashMap::new(),
        wildcard: HashMap::new(),
    };
    // Where each name came from, only to name both files in a duplicate error.
    let mut origin: HashMap<(bool, String), PathBuf> = HashMap::new();
    for entry in &tls.sni {
        if entry.names.is_empty() {
            return Err(TlsError::EmptySniNames {
                cert: entry.cert.clone(),
            });
        }
        // Names are validated before the files are read: a typo in a name is the
        // cheaper mistake to report.
        let mut parsed = Vec::with_capacity(entry.names.len());
        for name in &entry.names {
            let pattern = parse_sni_name(name).ok_or_else(|| TlsError::InvalidSniName {
                cert: entry.cert.clone(),
                name: name.clone(),
            })?;
            if let Some(first) = origin.insert(pattern.clone(), entry.cert.clone()) {
                return Err(TlsError::DuplicateSniName {
                    name: name.clone(),
                    first,
                    second: entry.cert.clone(),
                });
            }
            parsed.push(pattern);
        }
        let key = load_certified_key(&entry.cert, &entry.key, &provider)?;
        for (is_wildcard, name) in parsed {
            let map = if is_wildcard {
                &mut resolver.wildcard
            } else {
                &mut resolver.exact
            };
            map.insert(name, Arc::clone(&key));
        }
    }
    Ok(resolver)
}

/// Builds the client config used towards backends with `tls = true`.
///
/// Roots come from `ca` (a PEM bundle) when given, else from the system store via
/// `rustls-native-certs`; individual certificates that cannot be used are skipped
/// (stores often carry a few odd ones), and it is an error only when none is left.
/// TLS 1.2 and 1.3 only, ALPN `["http/1.1"]`, ring provider passed explicitly.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = read_certs(path)?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate {
                    path: path.to_path_buf(),
                });
            }
            let found = certs.len();
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::NoUsableCa {
                    path: path.to_path_buf(),
                    found,
                });
            }
            if ignored > 0 {
                tracing::warn!(
                    ca = %path.display(),
                    ignored,
                    "skipped CA certificates that cannot be used as trust anchors"
                );
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                let mut detail = String::new();
                if ignored > 0 {
                    detail.push_str(&format!(" ({ignored} found, none usable)"));
                }
                if let Some(first) = native.errors.first() {
                    detail.push_str(&format!(" ({first})"));
                }
                return Err(TlsError::NoSystemRoots { detail });
            }
            // Partial failures are normal on some systems (an unreadable file in a
            // cert dir); they matter only when nothing loaded, handled above.
            for error in &native.errors {
                tracing::debug!(%error, "while loading system root certificates");
            }
        }
    }

    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The name a backend's certificate is verified against: `server_name` when set,
/// else the host part of `addr` (`host:port` or `[v6]:port`). IP addresses become
/// [`ServerName::IpAddress`] (verified against IP SANs, no SNI sent).
///
/// IPv6 addresses in `addr` need brackets: `::1:8080` is itself a valid IPv6
/// address and is taken as one.
pub fn backend_server_name(
    addr: &str,
    server_name: Option<&str>,
) -> Result<ServerName<'static>, TlsError> {
    if let Some(name) = server_name {
        return to_server_name(name.trim()).ok_or_else(|| TlsError::InvalidServerName {
            name: name.to_string(),
        });
    }
    host_of(addr)
        .and_then(to_server_name)
        .ok_or_else(|| TlsError::BadBackendAddr {
            addr: addr.to_string(),
        })
}

/// The host part of `host:port`, `[v6]:port`, or of a bare host or IP address.
fn host_of(addr: &str) -> Option<&str> {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':')).then_some(host);
    }
    // A bare IPv6 address has colons of its own; don't cut it at the last one.
    if addr.parse::<IpAddr>().is_ok() {
        return Some(addr);
    }
    Some(addr.rsplit_once(':').map_or(addr, |(host, _)| host))
}

/// A DNS name or an IP address (optionally in brackets) as a `ServerName`.
fn to_server_name(name: &str) -> Option<ServerName<'static>> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    // IP first: a dotted quad must never be looked up as a DNS name.
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ServerName::from(ip));
    }
    if bare.is_empty() || bare != name {
        return None;
    }
    DnsName::try_from(bare.to_string())
        .ok()
        .map(ServerName::DnsName)
}

/// Normalises an SNI name from the config: `(is_wildcard, lowercase name)`, where a
/// wildcard `*.example.com` is stored as `example.com`. `None` if it is not a DNS
/// name, or the `*` is not the whole leftmost label.
fn parse_sni_name(name: &str) -> Option<(bool, String)> {
    let lower = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let (is_wildcard, domain) = match lower.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, lower.as_str()),
    };
    // Clients never send IP addresses as SNI (RFC 6066), so such an entry would
    // silently never match; refuse it instead.
    if domain.is_empty() || domain.contains('*') || domain.parse::<IpAddr>().is_ok() {
        return None;
    }
    DnsName::try_from(domain).ok()?;
    Some((is_wildcard, domain.to_string()))
}

/// Chooses the certificate by SNI; the default for unknown or absent names.
pub(super) struct SniResolver {
    default: Arc<CertifiedKey>,
    /// Lowercase exact names.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Lowercase parent domains of `*.domain` wildcards.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        // A wildcard covers exactly one non-empty leftmost label, as in certificates.
        if let Some((label, parent)) = name.split_once('.') {
            if !label.is_empty() {
                if let Some(key) = self.wildcard.get(parent) {
                    return key;
                }
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(client_hello.server_name())))
    }
}

// By hand: CertifiedKey holds the signing key, which must not end up in logs.
impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut exact: Vec<_> = self.exact.keys().collect();
        exact.sort();
        let mut wildcard: Vec<_> = self.wildcard.keys().map(|d| format!("*.{d}")).collect();
        wildcard.sort();
        f.debug_struct("SniResolver")
            .field("exact", &exact)
            .field("wildcard", &wildcard)
            .finish_non_exhaustive()
    }
}

/// Loads a chain and its key, and checks that they belong together so a mismatch
/// shows at startup instead of as handshake failures.
fn load_certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let key_der = read_key(key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::UnsupportedKey {
            path: key.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The key cannot tell its public half: nothing to compare, accept it.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        // Anything else comes from parsing the end-entity certificate.
        Err(source) => {
            return Err(TlsError::BadCertificate {
                path: cert.to_path_buf(),
                source,
            });
        }
    }
    Ok(Arc::new(certified))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every `CERTIFICATE` section of a PEM file, in order (possibly none).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM file. Other
/// sections are skipped, so a combined cert+key file works as the key file too.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
#[path = "tls_tests/mod.rs"]
mod tests;
