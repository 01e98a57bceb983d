//! TLS to backends: trusted CAs and the names verified.

use super::*;

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
