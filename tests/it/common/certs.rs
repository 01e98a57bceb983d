//! Test PKI for integration tests: a throwaway CA and leaves it signed, written as PEM
//! files into a temporary directory, plus a TLS client that trusts only that CA.
//!
//! Use as `mod common;` then `common::certs::TestPki::new()`. Panics freely: this is a
//! fixture, and a broken fixture should fail the test loudly.

// Shared by several test binaries, each using a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};

/// A throwaway CA and a leaf for "localhost", 127.0.0.1 and ::1, written as PEM files
/// into a TempDir (removed when the `TestPki` is dropped).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca_pem: PathBuf,
    /// The leaf chain (PEM): the leaf, then the CA.
    pub cert_pem: PathBuf,
    /// The leaf's private key (PEM, PKCS#8).
    pub key_pem: PathBuf,
    /// The CA certificate (DER), for building custom root stores.
    pub ca_der: CertificateDer<'static>,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    /// Numbers the files written by [`TestPki::leaf`].
    leaves: AtomicUsize,
}

impl TestPki {
    /// Generates the CA and the default leaf.
    pub fn new() -> TestPki {
        let dir = tempfile::TempDir::new().expect("create temp dir");
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tunnelscope test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca_cert.pem()).expect("write CA");
        let ca_der = ca_cert.der().clone();

        let mut pki = TestPki {
            cert_pem: PathBuf::new(),
            key_pem: PathBuf::new(),
            dir,
            ca_pem,
            ca_der,
            ca_cert,
            ca_key,
            leaves: AtomicUsize::new(0),
        };
        let (cert_pem, key_pem) = pki.write_leaf("localhost", &["localhost", "127.0.0.1", "::1"]);
        pki.cert_pem = cert_pem;
        pki.key_pem = key_pem;
        pki
    }

    /// Another leaf signed by the same CA for the given DNS names (IP literals become
    /// IP SANs), written to the same dir; returns (cert_path, key_path). The cert file
    /// holds the leaf then the CA.
    pub fn leaf(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let n = self.leaves.fetch_add(1, Ordering::Relaxed);
        self.write_leaf(&format!("leaf{n}"), names)
    }

    fn write_leaf(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("tunnelscope test {stem}"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign leaf");
        let cert_path = self.dir.path().join(format!("{stem}.pem"));
        let key_path = self.dir.path().join(format!("{stem}-key.pem"));
        std::fs::write(&cert_path, cert.pem() + &self.ca_cert.pem()).expect("write leaf");
        std::fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        (cert_path, key_path)
    }

    /// A rustls ClientConfig trusting only this CA (ring provider), ALPN http/1.1.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA as trust anchor");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Connects to `addr` over TLS, sending `name` as SNI (an IP literal sends none and
    /// is verified against the IP SANs); returns the tokio_rustls client stream.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let server_name = ServerName::try_from(name.to_string()).expect("valid server name");
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        tokio_rustls::TlsConnector::from(self.client_config())
            .connect(server_name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} as {name}: {e}"))
    }
}
