//! Choosing a certificate by SNI.

use super::*;

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
