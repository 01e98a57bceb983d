//! Pools with `tls = true`: the proxy speaks TLS to its backends, verifying them
//! against the configured CA and server name.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::config::ListenerTls;
use tunnelscope::event::Event;

/// A wss echo backend with a certificate from `pki`.
async fn tls_backend(pki: &certs::TestPki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = tunnelscope::proxy::tls::server_config(&ListenerTls {
        cert: pki.cert_pem.clone(),
        key: pki.key_pem.clone(),
        sni: Vec::new(),
        h2: false,
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(backend: SocketAddr, ca: &std::path::Path, server_name: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\ntls = true\nca = \"{}\"\nserver_name = \"{server_name}\"\n[[pool.app.server]]\naddr = \"{backend}\"\n",
        ca.display()
    )
}

#[tokio::test]
async fn tunnels_reach_a_tls_backend_verified_against_the_configured_ca() {
    let pki = certs::TestPki::new();
    let backend = tls_backend(&pki).await;
    let proxy = proxy(&config(backend, &pki.ca_pem, "localhost")).await;
    let mut ws = connect(proxy.local_addrs()[0], "/secure-upstream").await;
    for i in 0..20 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::text(format!("m{i}")));
    }
    let big = vec![7u8; 3 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::binary(big));
}

#[tokio::test]
async fn a_backend_whose_certificate_does_not_verify_gets_502() {
    let pki = certs::TestPki::new();
    let other = certs::TestPki::new();
    let backend = tls_backend(&pki).await;
    // Trusting another CA: the backend's certificate must be refused.
    let proxy = proxy(&config(backend, &other.ca_pem, "localhost")).await;
    let mut events = proxy.subscribe();
    let err = tokio_tungstenite::connect_async(ws_url(proxy.local_addrs()[0], "/"))
        .await
        .expect_err("the upgrade must fail");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("expected an HTTP error, got {err:?}");
    };
    assert_eq!(resp.status(), 502);
    let ev = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
    let Event::Refused { refusal, .. } = ev else {
        unreachable!()
    };
    assert!(refusal.reason.contains("TLS"), "reason: {}", refusal.reason);
}

#[tokio::test]
async fn a_backend_presenting_a_certificate_for_another_name_gets_502() {
    let pki = certs::TestPki::new();
    let backend = tls_backend(&pki).await;
    let proxy = proxy(&config(backend, &pki.ca_pem, "not-the-backend.example")).await;
    let err = tokio_tungstenite::connect_async(ws_url(proxy.local_addrs()[0], "/"))
        .await
        .expect_err("the upgrade must fail");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("expected an HTTP error, got {err:?}");
    };
    assert_eq!(resp.status(), 502);
}
