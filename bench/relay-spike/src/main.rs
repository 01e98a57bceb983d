//! relay-spike: issue 16's prototype. The relay's inner loop, alone: accept a client,
//! connect the backend, relay both ways while scanning every frame, on one thread,
//! either on epoll (a current-thread tokio runtime with read/write, as tunnelscope's
//! shards do) or on io_uring (multishot receive into a provided buffer ring, sends
//! queued per direction, one io_uring_enter per loop turn).
//!
//!   relay-spike --engine epoll|splice|uring --listen 127.0.0.1:P --backend 127.0.0.1:Q
//!
//! Measured with `loadgen echo --addr 127.0.0.1:P --pid PID` (see bench/spike.sh).

mod scan;
mod splice;
mod uring;

use std::net::SocketAddr;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut engine, mut listen, mut backend) = (String::from("epoll"), None, None);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value after each option");
        match a.as_str() {
            "--engine" => engine = v,
            "--listen" => listen = Some(v.parse::<SocketAddr>().expect("--listen ADDR")),
            "--backend" => backend = Some(v.parse::<SocketAddr>().expect("--backend ADDR")),
            _ => panic!("unknown option {a}"),
        }
    }
    let (listen, backend) = (listen.expect("--listen"), backend.expect("--backend"));
    let listener = std::net::TcpListener::bind(listen).expect("bind");
    match engine.as_str() {
        "epoll" => epoll(listener, backend),
        "splice" => splice::run(listener, backend),
        "uring" => uring::run(listener, backend).expect("io_uring relay"),
        e => panic!("unknown engine {e}"),
    }
}

/// Accepts on one current-thread tokio runtime; each client gets a task that
/// connects the backend (both without Nagle's delay) and hands the pair to `relay`.
pub fn serve<F, Fut>(listener: std::net::TcpListener, backend: SocketAddr, relay: F)
where
    F: Fn(tokio::net::TcpStream, tokio::net::TcpStream) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                relay(client, server).await;
            });
        }
    });
}

fn epoll(listener: std::net::TcpListener, backend: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pipe(mut r: tokio::net::tcp::OwnedReadHalf, mut w: tokio::net::tcp::OwnedWriteHalf) {
        let mut s = scan::Scanner::default();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            s.feed(&buf[..n]);
            if w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
    serve(listener, backend, |client, server| async move {
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::spawn(pipe(sr, cw));
        pipe(cr, sw).await;
    });
}
