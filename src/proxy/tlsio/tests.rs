//! Unit tests of `tlsio.rs`: each side against tokio-rustls (rustls's buffered API)
//! as the peer, over real sockets on 127.0.0.1.

use super::*;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{CipherSuiteCommon, RootCertStore, SupportedCipherSuite, Tls13CipherSuite};
use std::future::poll_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Versions = &'static [&'static rustls::SupportedProtocolVersion];
const TLS13: Versions = &[&rustls::version::TLS13];
const TLS12: Versions = &[&rustls::version::TLS12];

/// A server config with a certificate for "localhost", and a client config that
/// trusts only it.
fn configs(provider: CryptoProvider, versions: Versions) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let provider = Arc::new(provider);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der: CertificateDer<'static> = cert.der().clone();
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn default_configs(versions: Versions) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    configs(rustls::crypto::ring::default_provider(), versions)
}

/// AES-128-GCM with a confidentiality limit of `records`: a sender must renew its
/// keys (a TLS 1.3 KeyUpdate) every `records` records.
fn short_lived_keys(records: u64) -> CryptoProvider {
    let SupportedCipherSuite::Tls13(base) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        unreachable!()
    };
    let suite: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
        common: CipherSuiteCommon {
            confidentiality_limit: records,
            ..base.common
        },
        ..*base
    }));
    CryptoProvider {
        cipher_suites: vec![SupportedCipherSuite::Tls13(suite)],
        ..rustls::crypto::ring::default_provider()
    }
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// Our server side, accepted from a tokio-rustls client.
async fn server_pair(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (ServerStream, tokio_rustls::client::TlsStream<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = Acceptor::from(server);
    let ours = async move {
        let (tcp, _) = l.accept().await.unwrap();
        acceptor.accept(tcp).await.unwrap()
    };
    let theirs = async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(client)
            .connect(localhost(), tcp)
            .await
            .unwrap()
    };
    tokio::join!(ours, theirs)
}

/// Our client side, connected to a tokio-rustls server.
async fn client_pair(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (ClientStream, tokio_rustls::server::TlsStream<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let theirs = async move {
        let (tcp, _) = l.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .unwrap()
    };
    let ours = async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        connect(client, localhost(), tcp).await.unwrap()
    };
    tokio::join!(ours, theirs)
}

/// A listener whose one accepted connection's handshake must fail: its address,
/// and the error the handshake ends with.
async fn failing_accept(
    server: Arc<ServerConfig>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<io::Error>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = Acceptor::from(server);
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        acceptor
            .accept(tcp)
            .await
            .err()
            .expect("the handshake succeeded")
    });
    (addr, task)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Reads `len` bytes, `chunk` at most per read.
async fn read_in_chunks<R: AsyncRead + Unpin>(r: &mut R, len: usize, chunk: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; chunk];
    while got.len() < len {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "ended after {} of {len} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Polls one read without waiting: true when it would block.
async fn read_would_block<S: Side>(s: &mut TlsStream<S>) -> bool {
    let mut buf = [0u8; 16];
    poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut buf);
        Poll::Ready(Pin::new(&mut *s).poll_read(cx, &mut rb).is_pending())
    })
    .await
}

fn holds_no_buffer<S: Side>(s: &TlsStream<S>) -> bool {
    s.incoming.capacity() == 0 && s.out.buf.capacity() == 0 && s.left.buf.capacity() == 0
}

#[tokio::test]
async fn a_megabyte_crosses_both_ways_through_tiny_reads_and_large_writes() {
    for versions in [TLS13, TLS12] {
        let (server, client) = default_configs(versions);
        let (mut ours, mut theirs) = server_pair(server, client).await;
        let data = pattern(1 << 20);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            theirs.write_all(&sent).await.unwrap();
            theirs.flush().await.unwrap();
            let back = read_in_chunks(&mut theirs, sent.len(), 64 * 1024).await;
            (theirs, back)
        });
        // 7-byte reads: most of every record waits as leftover plaintext.
        let got = read_in_chunks(&mut ours, data.len(), 7).await;
        assert!(got == data, "{versions:?}: the server read other bytes");
        // One write far larger than a relay buffer: taken a relay buffer at a time.
        ours.write_all(&data).await.unwrap();
        ours.flush().await.unwrap();
        let (_theirs, back) = writer.await.unwrap();
        assert!(back == data, "{versions:?}: the client read other bytes");
    }
}

#[tokio::test]
async fn an_idle_connection_holds_no_buffer_on_either_side() {
    let (server, client) = default_configs(TLS13);
    let (mut ours, mut theirs) = server_pair(server.clone(), client.clone()).await;
    theirs.write_all(b"ping").await.unwrap();
    assert_eq!(read_in_chunks(&mut ours, 4, 64).await, b"ping");
    ours.write_all(b"pong").await.unwrap();
    assert_eq!(read_in_chunks(&mut theirs, 4, 64).await, b"pong");
    assert!(read_would_block(&mut ours).await);
    assert!(holds_no_buffer(&ours), "an idle server side holds a buffer");

    let (mut ours, mut theirs) = client_pair(server, client).await;
    ours.write_all(b"ping").await.unwrap();
    assert_eq!(read_in_chunks(&mut theirs, 4, 64).await, b"ping");
    theirs.write_all(b"pong").await.unwrap();
    assert_eq!(read_in_chunks(&mut ours, 4, 64).await, b"pong");
    assert!(read_would_block(&mut ours).await);
    assert!(holds_no_buffer(&ours), "an idle client side holds a buffer");
}

#[tokio::test]
async fn keys_renewed_every_few_records_on_both_sides_lose_nothing() {
    // Both sides renew their keys every 4 records: KeyUpdate messages go both ways,
    // between data records, for the whole exchange.
    let (server, client) = configs(short_lived_keys(4), TLS13);
    let (mut ours, theirs) = server_pair(server, client).await;
    let (mut their_read, mut their_write) = tokio::io::split(theirs);
    let data = pattern(300 * 1000);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(1000) {
            their_write.write_all(chunk).await.unwrap();
            their_write.flush().await.unwrap();
        }
        their_write
    });
    let reader =
        tokio::spawn(async move { read_in_chunks(&mut their_read, 300 * 1000, 4096).await });
    let got = read_in_chunks(&mut ours, data.len(), 1000).await;
    assert!(got == data, "the server read other bytes");
    for chunk in data.chunks(1000) {
        ours.write_all(chunk).await.unwrap();
    }
    ours.flush().await.unwrap();
    assert!(reader.await.unwrap() == data, "the client read other bytes");
    writer.await.unwrap();
}

#[tokio::test]
async fn a_key_update_the_peer_asks_for_is_answered() {
    let (server, client) = default_configs(TLS13);
    let (mut ours, mut theirs) = server_pair(server, client).await;
    for round in 0..3u8 {
        theirs.get_mut().1.refresh_traffic_keys().unwrap();
        theirs.write_all(&[round; 100]).await.unwrap();
        theirs.flush().await.unwrap();
        assert_eq!(read_in_chunks(&mut ours, 100, 4096).await, [round; 100]);
        ours.write_all(&[round + 10; 100]).await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(
            read_in_chunks(&mut theirs, 100, 4096).await,
            [round + 10; 100]
        );
    }
}

#[tokio::test]
async fn close_notify_ends_the_stream_both_ways() {
    let (server, client) = default_configs(TLS13);
    let (mut ours, mut theirs) = server_pair(server.clone(), client.clone()).await;
    theirs.write_all(b"last words").await.unwrap();
    theirs.shutdown().await.unwrap();
    let mut all = Vec::new();
    ours.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"last words");
    // Ours: close_notify, then the peer reads a clean end.
    ours.write_all(b"bye").await.unwrap();
    ours.shutdown().await.unwrap();
    let mut all = Vec::new();
    theirs.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"bye");
    // Writing after shutting down is refused.
    assert!(ours.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn a_peer_vanishing_without_close_notify_is_an_unexpected_eof() {
    let (server, client) = default_configs(TLS13);
    // Between records.
    let (mut ours, theirs) = server_pair(server.clone(), client.clone()).await;
    let (mut tcp, _) = theirs.into_inner();
    tcp.shutdown().await.unwrap();
    let err = ours.read(&mut [0u8; 64]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    // In the middle of a record: the partial record is not delivered as data.
    let (mut ours, mut theirs) = client_pair(server, client).await;
    theirs.write_all(&[7u8; 3000]).await.unwrap();
    theirs.flush().await.unwrap();
    let (mut tcp, _) = theirs.into_inner();
    let mut whole = [7u8; 3000];
    assert!(read_in_chunks(&mut ours, 3000, 4096).await == whole);
    // A record header announcing 1,000 bytes, then 10 of them, then nothing.
    whole[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x03, 0xe8]);
    tcp.write_all(&whole[..15]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let err = ours.read(&mut [0u8; 64]).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn plain_http_on_a_tls_port_fails_the_handshake_and_gets_an_alert() {
    let (server, _) = default_configs(TLS13);
    let (addr, ours) = failing_accept(server).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let err = ours.await.unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer.first(), Some(&0x15), "no alert record: {answer:?}");
}

#[tokio::test]
async fn a_client_that_stops_mid_handshake_is_an_unexpected_eof() {
    let (server, _) = default_configs(TLS13);
    let (addr, ours) = failing_accept(server).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    // A handshake record header and part of its body.
    raw.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    drop(raw);
    let err = ours.await.unwrap();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

#[tokio::test]
async fn alpn_is_reported_and_the_client_side_verifies_the_server() {
    let (server, client) = default_configs(TLS13);
    let mut server = (*server).clone();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut alpn_client = (*client).clone();
    alpn_client.alpn_protocols = vec![b"h2".to_vec()];
    let (ours, _theirs) = server_pair(Arc::new(server), Arc::new(alpn_client)).await;
    assert_eq!(ours.alpn_protocol(), Some(&b"h2"[..]));
    // A client trusting another certificate refuses this server.
    let (other_server, _) = default_configs(TLS13);
    let (_, stranger) = default_configs(TLS13);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let theirs = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        tokio_rustls::TlsAcceptor::from(other_server)
            .accept(tcp)
            .await
            .expect_err("the server finished the handshake")
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let err = connect(stranger, localhost(), tcp)
        .await
        .err()
        .expect("verified");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // The server is told why, by an alert.
    let told = theirs.await.unwrap().to_string();
    assert!(told.contains("alert"), "{told}");
}

#[tokio::test]
async fn a_peer_stalling_mid_record_holds_only_what_it_sent() {
    let (server, client) = default_configs(TLS13);
    let (mut ours, mut theirs) = server_pair(server, client).await;
    // One record made by the peer's TLS, sent by hand: 9 bytes of it, then nothing.
    let (tcp, conn) = theirs.get_mut();
    std::io::Write::write_all(&mut conn.writer(), b"hello, world").unwrap();
    let mut record = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut record).unwrap();
    }
    tcp.write_all(&record[..9]).await.unwrap();
    tcp.flush().await.unwrap();
    // Once they are in, reading takes them and blocks for the rest of the record.
    ours.tcp().readable().await.unwrap();
    assert!(read_would_block(&mut ours).await);
    assert_eq!(
        ours.incoming.capacity(),
        9,
        "a stalled partial record holds its bytes"
    );
    assert_eq!(ours.out.buf.capacity(), 0);
    tcp.write_all(&record[9..]).await.unwrap();
    assert_eq!(read_in_chunks(&mut ours, 12, 64).await, b"hello, world");
}
