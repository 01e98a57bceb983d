//! Where `tunnelscope top` connects: `--connect [NAME=]URL` (`http://HOST:PORT`,
//! `https://HOST:PORT`, or just `HOST:PORT`), and the token and CA that go with it.

use std::sync::Arc;

/// One instance's admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name given with `NAME=URL`; else the instance's `[admin] name`, else
    /// `authority`.
    pub name: Option<String>,
    pub tls: bool,
    /// `HOST:PORT` as given (brackets around an IPv6 address kept).
    pub authority: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `[NAME=]URL`.
    pub fn parse(spec: &str) -> Result<Target, String> {
        let (name, url) = match spec.split_once('=') {
            Some((n, u)) if !n.contains("://") => (Some(n.trim()), u.trim()),
            _ => (None, spec.trim()),
        };
        if name.is_some_and(str::is_empty) {
            return Err(format!("{spec:?}: the name before `=` is empty"));
        }
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if url.contains("://") {
            return Err(format!(
                "{url:?}: the admin API is reached over http:// or https://"
            ));
        } else {
            (false, url)
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!(
                "{url:?}: give the admin API's address only (http://HOST:PORT), no path"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h, p),
            _ => {
                return Err(format!(
                    "{url:?}: say the admin API's port (http://HOST:PORT)"
                ))
            }
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{url:?}: {port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(Target {
            name: name.map(str::to_string),
            tls,
            authority: authority.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The URL shown to the operator.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// What every request carries: the token, and how https:// instances are trusted.
#[derive(Clone, Default)]
pub struct Auth {
    pub token: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "«set»"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The client TLS config for https:// instances: the CA bundle given (`--ca`), else
/// the system's roots.
pub fn tls_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("CA file {}: no usable certificate", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_specs_name_scheme_host_and_port() {
        let t = Target::parse("edge-a=http://127.0.0.1:9090/").unwrap();
        assert_eq!(
            (t.name.as_deref(), t.tls, t.host.as_str(), t.port),
            (Some("edge-a"), false, "127.0.0.1", 9090)
        );
        let t = Target::parse("https://[::1]:9443").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.authority.as_str()),
            (true, "::1", "[::1]:9443")
        );
        assert_eq!(
            Target::parse("localhost:9090").unwrap().url(),
            "http://localhost:9090"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(Target::parse("ws://h:1").unwrap_err().contains("http://"));
        assert!(Target::parse("http://h:1/api")
            .unwrap_err()
            .contains("no path"));
        assert!(Target::parse("http://h").unwrap_err().contains("port"));
        assert!(Target::parse("h:99999").unwrap_err().contains("not a port"));
        assert!(Target::parse("=http://h:1").unwrap_err().contains("name"));
    }
}
