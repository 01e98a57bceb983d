//! Unit tests of `tls.rs`.

use super::*;
use crate::config::SniCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::UnixTime;
use rustls::{ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme};
use tempfile::TempDir;

/// A self-signed certificate for `names`, written as `<stem>.crt` / `<stem>.key`.
fn self_signed(
    dir: &TempDir,
    stem: &str,
    names: &[&str],
) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join(format!("{stem}.crt"));
    let key_path = dir.path().join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.der().clone())
}

/// A CA and a leaf it signed, as files: (ca, leaf cert, leaf key).
fn ca_and_leaf(dir: &TempDir, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{stem} CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let ca_path = dir.path().join(format!("{stem}-ca.crt"));
    let cert_path = dir.path().join(format!("{stem}.crt"));
    let key_path = dir.path().join(format!("{stem}.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

fn listener(cert: &Path, key: &Path) -> ListenerTls {
    ListenerTls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        sni: Vec::new(),
        h2: true,
    }
}

/// Accepts any server certificate (signatures still checked): lets the SNI tests
/// look at which certificate was served, whatever name it carries.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_client() -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// A complete in-memory handshake, pumping records between the two sides.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: ServerName<'static>,
) -> Result<(ClientConnection, ServerConnection), rustls::Error> {
    let mut client = ClientConnection::new(client, name)?;
    let mut server = ServerConnection::new(server)?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets()?;
        }
        let mut wire = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        let mut rd = wire.as_slice();
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok((client, server));
        }
    }
    panic!("handshake did not finish");
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_string()).unwrap()
}

/// The end-entity certificate the client was shown.
fn served(client: &ClientConnection) -> CertificateDer<'static> {
    client.peer_certificates().unwrap()[0].clone().into_owned()
}

#[test]
fn server_config_loads_a_generated_cert_and_negotiates_http11() {
    let dir = TempDir::new().unwrap();
    let (cert, key, der) = self_signed(&dir, "site", &["localhost"]);
    let mut tls = listener(&cert, &key);
    tls.h2 = false;
    assert_eq!(
        server_config(&tls).unwrap().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
    // h2 is offered first; a client that only speaks HTTP/1.1 gets that.
    let config = server_config(&listener(&cert, &key)).unwrap();
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let (client, _) = handshake(config, accept_any_client(), dns("localhost")).unwrap();
    assert_eq!(served(&client), der);
    assert_eq!(client.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn server_speaks_tls12_too() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    let provider = provider();
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let server = server_config(&listener(&cert, &key)).unwrap();
    let (client, _) = handshake(server, Arc::new(client), dns("localhost")).unwrap();
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[test]
fn combined_pem_works_as_cert_and_key() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    let both = dir.path().join("both.pem");
    let text = std::fs::read_to_string(&key).unwrap() + &std::fs::read_to_string(&cert).unwrap();
    std::fs::write(&both, text).unwrap();
    server_config(&listener(&both, &both)).unwrap();
}

fn err_text(tls: &ListenerTls) -> String {
    server_config(tls).unwrap_err().to_string()
}

#[test]
fn missing_file_is_named() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    let missing = dir.path().join("nope.pem");
    let e = err_text(&listener(&missing, &key));
    assert!(
        e.starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
    let e = err_text(&listener(&cert, &missing));
    assert!(
        e.starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
}

#[test]
fn empty_files_are_named() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let e = err_text(&listener(&empty, &key));
    assert_eq!(
        e,
        format!(
            "{}: no certificate found (expected PEM 'BEGIN CERTIFICATE')",
            empty.display()
        )
    );
    let e = err_text(&listener(&cert, &empty));
    assert!(
        e.starts_with(&format!("{}: no private key found", empty.display())),
        "{e}"
    );
}

#[test]
fn key_without_cert_and_cert_without_key() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    // The key file given as the certificate: no certificate in it.
    let e = err_text(&listener(&key, &key));
    assert!(
        e.starts_with(&format!("{}: no certificate found", key.display())),
        "{e}"
    );
    // The certificate given as the key: no key in it.
    let e = err_text(&listener(&cert, &cert));
    assert!(
        e.starts_with(&format!("{}: no private key found", cert.display())),
        "{e}"
    );
}

#[test]
fn mismatched_key_is_refused() {
    let dir = TempDir::new().unwrap();
    let (cert, _, _) = self_signed(&dir, "a", &["a.test"]);
    let (_, other_key, _) = self_signed(&dir, "b", &["b.test"]);
    let e = server_config(&listener(&cert, &other_key)).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("cert and key do not match"), "{e}");
}

#[test]
fn garbage_never_panics() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    let contents: Vec<Vec<u8>> = vec![
        (0..=255u8).cycle().take(4096).collect(),
        b"-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n".to_vec(),
        b"-----BEGIN CERTIFICATE-----\nAAAA\n".to_vec(),
        b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\nAAECAwQF\n-----END PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN RSA PRIVATE KEY-----\nAAECAwQF\n-----END RSA PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN EC PRIVATE KEY-----\nAAECAwQF\n-----END EC PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAECAwQF\n-----END ENCRYPTED PRIVATE KEY-----\n"
            .to_vec(),
    ];
    let bad = dir.path().join("bad.pem");
    for content in contents {
        std::fs::write(&bad, &content).unwrap();
        for tls in [listener(&bad, &key), listener(&cert, &bad)] {
            let e = err_text(&tls);
            assert!(e.contains(&bad.display().to_string()), "{e}");
        }
        let e = client_config(Some(&bad)).unwrap_err().to_string();
        assert!(e.contains(&bad.display().to_string()), "{e}");
    }
}

// Made once with `openssl genrsa -traditional` / `openssl ecparam -genkey -noout`
// and `openssl req -x509 -days 36500`: rcgen with ring cannot write PKCS#1 or
// SEC1 keys (nor generate RSA ones), and these are the formats people paste.
const RSA_PKCS1_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEArWHLVoITY5s4nyGyCCb4h79FG2EP/QHPCSlxnU6iS0CpGquA\n\
I+FV33jCpm2EjzbIXeI5QMuw6g2VQ6o75WTP5hDQoIXUwFgWFDq7l0u5zoTtIYul\n\
VsKvu5T0/ng3OIjOcyDW5qty/H8lfsspQpZ5EQneRWgWQcRdjjHXe7MdVkTHJEkg\n\
VnhCtzlupKH3oEmzOqtff1LHP46KWwqR88DMkedJlQQhsUQkRhXI2y6ue3rGZbGg\n\
do7DSrMJ4Ysz4Fl0nWX1lIae4CJFUkEiepXxAtrLxtzfIOUWCH5677mv/ir63s0H\n\
aEyiFTDdHfzuAibLLBg+6NQ5xdZZq1RVLtryOQIDAQABAoIBAARnTfNKBXULrbH4\n\
+J0VZE2KUZaC7hWGdLwuVcjhhOS1ZTYcsfn3UKeG2SbB9FJw2UDtLHgVVE51ftuD\n\
mNbYKyGUPsA89ezWr+TeowISNctle+JUuiPMeQsiGuDVq81fSCMLa/na0+ZO0mR4\n\
g3lB+hwxLHiFzr7n3lpssKTfJTkaJmLBYhvOwqwK/2pTezZQZsiJqrL5LWgj7N8F\n\
PZ77pUOV8UMFdY91x6EjzBAVZEXQEfv3yY/27KMsB39tLfz/4f+O/KcXWtzR1hAE\n\
T+7X1Lgmsd21QCmK1MHebL4nf7FdQXN0FnEFYE+zuzI21Gm6w0PJkVNGjQU7zOHO\n\
tsYQz3sCgYEA1YvMvd96FU3W9r1mvNAn5YBZNdg11iBDwmtV5rUj/vZVbQP3RUaN\n\
cDYtXBe8BxCr/AkhhfZm2Vd1y/8MOqpT8E/e+d/US/95j6orWONTMhGlbk0S1lqC\n\
eanBbFWV7TVT5PR0sYSFsw3iLN3Qa22HAPdV3qOMV++ozqsCEslKHXcCgYEAz9ni\n\
6ceG/E2FT3sgO2H+aibVoA6jsGaG/e2wauv7HxYKKBaDvFyqYrbeeT1XYGg3oufw\n\
1so2bqoomz+EhfzAOvMErqPatA1iXT6FTNXRE/8QS/UeadrDxCxq/NN4TCYgtRDx\n\
YfJDJydKjTFUBGDrnTY/A3n5792Wfl+CO4J3mc8CgYBrRsa9H/Y5m5gA7hcdhUh1\n\
n6uxRAOPpTfFBJzrwFXr8J3rnRFsSMwm8eCJohbASdzMSV4A6U6zop83stHW6tgu\n\
IkG2r338C8RqqqcKCXEy9vBvX+K1slRXgDL+FGSz/JU/sJqqzxNHZxMXTPs17Jjk\n\
oFwP84M+bdQUto3dGCfWcwKBgQCcBbfCuycFv39BgXBZgx7COjKDull/cgcFF+Yk\n\
7M0NsbKgEv6CZ6DzBsiLg9NSKAkTfT4ZTaN8gLiIiS6GkYsO9RtfqNnj7GQZEHRp\n\
j9spQn7ONcrFtRTc7mbFMEyOBNTqdjRrzLpB6smYoR2rR8G1umGkz2whdVmhtToC\n\
R9ZVmwKBgQCtJm0KkC44VJf2IdqajNY4VNphmh9Xjc458gzsgAHwZko/4QfuXGmL\n\
LHrNBn13zrlTXdHEQNoTeJelPHPXZYFYJDo8fLYCest5EDU3mqHC2IuTGufjNU9Q\n\
Hmt6IOHivtNeqH3JRz0CaQvursDSLEsD0QEdtGurzwPCVocxMgAalA==\n\
-----END RSA PRIVATE KEY-----\n\
";
const RSA_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDMDCCAhigAwIBAgIUcg9w4RLpx4sURUuv15Mv5yQRwRMwDQYJKoZIhvcNAQEL\n\
BQAwEzERMA8GA1UEAwwIcnNhLnRlc3QwIBcNMjYxMTI0MDcxMTU0WhgPMjEyNjEw\n\
MzEwNzExNTRaMBMxETAPBgNVBAMMCHJzYS50ZXN0MIIBIjANBgkqhkiG9w0BAQEF\n\
AAOCAQ8AMIIBCgKCAQEArWHLVoITY5s4nyGyCCb4h79FG2EP/QHPCSlxnU6iS0Cp\n\
GquAI+FV33jCpm2EjzbIXeI5QMuw6g2VQ6o75WTP5hDQoIXUwFgWFDq7l0u5zoTt\n\
IYulVsKvu5T0/ng3OIjOcyDW5qty/H8lfsspQpZ5EQneRWgWQcRdjjHXe7MdVkTH\n\
JEkgVnhCtzlupKH3oEmzOqtff1LHP46KWwqR88DMkedJlQQhsUQkRhXI2y6ue3rG\n\
ZbGgdo7DSrMJ4Ysz4Fl0nWX1lIae4CJFUkEiepXxAtrLxtzfIOUWCH5677mv/ir6\n\
3s0HaEyiFTDdHfzuAibLLBg+6NQ5xdZZq1RVLtryOQIDAQABo3oweDAdBgNVHQ4E\n\
FgQUekKI31nFH6tk577seXUi0NoXnn0wHwYDVR0jBBgwFoAUekKI31nFH6tk577s\n\
eXUi0NoXnn0wEwYDVR0RBAwwCoIIcnNhLnRlc3QwDAYDVR0TAQH/BAIwADATBgNV\n\
HSUEDDAKBggrBgEFBQcDATANBgkqhkiG9w0BAQsFAAOCAQEAl7ZW2iGKNTQyxA5n\n\
QUXAqNmzBoGVGaMQR3KpekeE+6NWifM8JptELmU3qcoa9YWl+8hdBlrlUcENcTB1\n\
jceLxlERv0M9f/3f6JyNt7F8CUisBwQrKhGdjOzC5pxaqFBv3d6rR6gzpzuANTkh\n\
Mf9F2CpZR+zgXrWN/ccaiOS4cMIq2Ag2sMxbx6XBeAYLa6oWZ3FBN4B3JnZYHsXy\n\
cohgliXuOGG5F4Z4LGGQQnb5z60u8xI68UjccXugx8Bjow7994p6vttr6E1PddQ/\n\
OceyDYvDf2gwXYHkCcxzsxSayAm+UZsS01WHrl2tbycBV3LME8aD1f6+xKQsPC1j\n\
R0ZrBQ==\n\
-----END CERTIFICATE-----\n\
";
const EC_SEC1_KEY: &str = "\
-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIMCJkOK9rCVgCxqxV0aAA+CSIhrIMQ09hfAz1tOEnrUAoAoGCCqGSM49\n\
AwEHoUQDQgAE1nioUqOmjFksSvROGFOiYTK8zhEQzTmXBoHYf78pHSVwhoWPGMTr\n\
IHdN/9dcBca3sY9xL3U0pBv1Knefn6j70Q==\n\
-----END EC PRIVATE KEY-----\n\
";
const EC_CERT: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBoTCCAUegAwIBAgIUM3I0rr62yw8OLaC4fhPfXsn2cCIwCgYIKoZIzj0EAwIw\n\
EjEQMA4GA1UEAwwHZWMudGVzdDAgFw0yNjExMjQwNzExNTRaGA8yMTI2MTAzMTA3\n\
MTE1NFowEjEQMA4GA1UEAwwHZWMudGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEH\n\
A0IABNZ4qFKjpoxZLEr0ThhTomEyvM4REM05lwaB2H+/KR0lcIaFjxjE6yB3Tf/X\n\
XAXGt7GPcS91NKQb9Sp3n5+o+9GjeTB3MB0GA1UdDgQWBBRcPbNR9Il9Fa1e6i3I\n\
cy2//3Q9ZjAfBgNVHSMEGDAWgBRcPbNR9Il9Fa1e6i3Icy2//3Q9ZjASBgNVHREE\n\
CzAJggdlYy50ZXN0MAwGA1UdEwEB/wQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwEw\n\
CgYIKoZIzj0EAwIDSAAwRQIhAP/cLReLVZ/k6NAoDakF2pbX9thnFcg2MUqEMnR+\n\
wd50AiBizcPkLYC2N6QFJ0TW5iVR2glqlkWxL6eZKO8DWGXuxw==\n\
-----END CERTIFICATE-----\n\
";

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_serve_and_verify() {
    let dir = TempDir::new().unwrap();
    for (stem, cert_pem, key_pem, marker) in [
        ("rsa", RSA_CERT, RSA_PKCS1_KEY, "BEGIN RSA PRIVATE KEY"),
        ("ec", EC_CERT, EC_SEC1_KEY, "BEGIN EC PRIVATE KEY"),
    ] {
        assert!(key_pem.contains(marker));
        let cert = dir.path().join(format!("{stem}.crt"));
        let key = dir.path().join(format!("{stem}.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let server = server_config(&listener(&cert, &key)).unwrap();
        // The self-signed certificate is its own trust anchor.
        let client = client_config(Some(&cert)).unwrap();
        handshake(server, client, dns(&format!("{stem}.test"))).unwrap();
    }
}

fn sni(names: &[&str], cert: &Path, key: &Path) -> SniCert {
    SniCert {
        names: names.iter().map(|n| n.to_string()).collect(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    }
}

#[test]
fn sni_picks_exact_wildcard_and_default() {
    let dir = TempDir::new().unwrap();
    let (d_cert, d_key, d_der) = self_signed(&dir, "default", &["default.test"]);
    let (a_cert, a_key, a_der) = self_signed(&dir, "a", &["a.example.com"]);
    let (w_cert, w_key, w_der) = self_signed(&dir, "w", &["*.example.com"]);
    let (o_cert, o_key, o_der) = self_signed(&dir, "o", &["other.test"]);
    let tls = ListenerTls {
        cert: d_cert,
        key: d_key,
        sni: vec![
            sni(&["*.Example.com"], &w_cert, &w_key),
            // Listed after the wildcard: exact names still win.
            sni(&["A.example.com"], &a_cert, &a_key),
            sni(&["other.test", "other2.test."], &o_cert, &o_key),
        ],
        h2: true,
    };
    let server = server_config(&tls).unwrap();
    let cases = [
        ("a.example.com", &a_der),
        ("A.EXAMPLE.COM", &a_der),
        ("b.example.com", &w_der),
        ("B.Example.Com", &w_der),
        ("other.test", &o_der),
        ("other2.test", &o_der),
        // A wildcard covers one label only.
        ("x.b.example.com", &d_der),
        ("example.com", &d_der),
        ("unknown.test", &d_der),
    ];
    for (name, want) in cases {
        let (client, _) = handshake(server.clone(), accept_any_client(), dns(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&served(&client), want, "{name}");
    }
    // An IP server name sends no SNI at all: the default certificate.
    let ip = ServerName::from("127.0.0.1".parse::<IpAddr>().unwrap());
    let (client, _) = handshake(server, accept_any_client(), ip).unwrap();
    assert_eq!(served(&client), d_der);
}

#[test]
fn bad_sni_entries_are_refused() {
    let dir = TempDir::new().unwrap();
    let (cert, key, _) = self_signed(&dir, "site", &["localhost"]);
    for bad in [
        "",
        "*",
        "*.",
        "a*.example.com",
        "*.*.example.com",
        "10.0.0.1",
        "bad name",
    ] {
        let mut tls = listener(&cert, &key);
        tls.sni = vec![sni(&[bad], &cert, &key)];
        let e = server_config(&tls).unwrap_err();
        assert!(matches!(e, TlsError::InvalidSniName { .. }), "{bad:?}: {e}");
    }
    let mut tls = listener(&cert, &key);
    tls.sni = vec![sni(&[], &cert, &key)];
    assert!(matches!(
        server_config(&tls).unwrap_err(),
        TlsError::EmptySniNames { .. }
    ));
    let (other, other_key, _) = self_signed(&dir, "other", &["x.test"]);
    let mut tls = listener(&cert, &key);
    tls.sni = vec![
        sni(&["x.test"], &cert, &key),
        sni(&["X.test"], &other, &other_key),
    ];
    let e = server_config(&tls).unwrap_err();
    assert!(matches!(e, TlsError::DuplicateSniName { .. }), "{e}");
    // A broken SNI certificate is reported like the main one.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let mut tls = listener(&cert, &key);
    tls.sni = vec![sni(&["x.test"], &empty, &key)];
    let e = err_text(&tls);
    assert!(
        e.starts_with(&format!("{}: no certificate", empty.display())),
        "{e}"
    );
}

#[test]
fn client_config_trusts_the_given_ca_only() {
    let dir = TempDir::new().unwrap();
    let (ca, cert, key) = ca_and_leaf(&dir, "backend", &["backend.test", "127.0.0.1"]);
    let (other_ca, _, _) = ca_and_leaf(&dir, "other", &["backend.test"]);
    let server = server_config(&listener(&cert, &key)).unwrap();

    let client = client_config(Some(&ca)).unwrap();
    assert_eq!(client.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let (conn, _) = handshake(server.clone(), client.clone(), dns("backend.test")).unwrap();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let name = backend_server_name("127.0.0.1:8443", None).unwrap();
    handshake(server.clone(), client.clone(), name).unwrap();

    let e = handshake(server.clone(), client, dns("wrong.test")).unwrap_err();
    assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e}");
    let untrusting = client_config(Some(&other_ca)).unwrap();
    let e = handshake(server, untrusting, dns("backend.test")).unwrap_err();
    assert!(matches!(e, rustls::Error::InvalidCertificate(_)), "{e}");
}

#[test]
fn client_config_errors_name_the_ca_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let e = client_config(Some(&missing)).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read", missing.display())),
        "{e}"
    );
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let e = client_config(Some(&empty)).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: no certificate found (expected PEM 'BEGIN CERTIFICATE')",
            empty.display()
        )
    );
    // Certificates that are not usable trust anchors (here: not even X.509).
    let junk = dir.path().join("junk-ca.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = client_config(Some(&junk)).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: none of its 1 certificate(s)", junk.display())),
        "{e}"
    );
}

#[test]
fn client_config_with_system_roots_loads_or_says_what_to_do() {
    match client_config(None) {
        Ok(config) => assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]),
        Err(e) => assert!(e.to_string().contains("set `ca`"), "{e}"),
    }
}

#[test]
fn backend_server_names() {
    let name = |addr: &str, over: Option<&str>| backend_server_name(addr, over).unwrap();
    assert_eq!(name("example.com:443", None), dns("example.com"));
    assert_eq!(name("Backend.internal:8443", None), dns("Backend.internal"));
    assert_eq!(
        name("10.0.0.1:8443", None),
        ServerName::from("10.0.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        name("[::1]:8443", None),
        ServerName::from("::1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        name("[2001:db8::2]:443", None),
        ServerName::from("2001:db8::2".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        name("10.0.0.1:8443", Some("api.example.com")),
        dns("api.example.com")
    );
    assert_eq!(
        name("backend:1", Some("192.168.1.9")),
        ServerName::from("192.168.1.9".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        name("backend:1", Some("[::1]")),
        ServerName::from("::1".parse::<IpAddr>().unwrap())
    );
    assert!(matches!(
        backend_server_name(":443", None),
        Err(TlsError::BadBackendAddr { .. })
    ));
    assert!(matches!(
        backend_server_name("[::1:443", None),
        Err(TlsError::BadBackendAddr { .. })
    ));
    assert!(matches!(
        backend_server_name("[::1]x", None),
        Err(TlsError::BadBackendAddr { .. })
    ));
    assert!(matches!(
        backend_server_name("a:1", Some("not a name")),
        Err(TlsError::InvalidServerName { .. })
    ));
    assert!(matches!(
        backend_server_name("a:1", Some("")),
        Err(TlsError::InvalidServerName { .. })
    ));
}
