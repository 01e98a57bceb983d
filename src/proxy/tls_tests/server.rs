//! A listener's certificate and key: loading, refusing, and the handshakes they serve.

use super::*;

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
