//! The echo backend: a tokio-tungstenite server on one thread that sends every data
//! message back, batching its writes (it flushes once nothing more is ready to
//! read). It listens on a plain port and, for the direct target's TLS figures, on a
//! TLS port with the run's certificate.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::net;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Plain ws:// address.
    #[arg(long)]
    pub plain: SocketAddr,
    /// TLS wss:// address (needs --cert and --key).
    #[arg(long, requires_all = ["cert", "key"])]
    pub tls: Option<SocketAddr>,
    #[arg(long)]
    pub cert: Option<PathBuf>,
    #[arg(long)]
    pub key: Option<PathBuf>,
}

fn config() -> WebSocketConfig {
    // 64 KiB reads: large messages in few syscalls, 8,000 idle tunnels still cheap.
    net::ws_config(64 * 1024)
}

pub fn main(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let plain = TcpListener::bind(args.plain).await?;
        if let (Some(addr), Some(cert), Some(key)) = (args.tls, &args.cert, &args.key) {
            let acceptor = net::tls_acceptor(cert, key)?;
            let tls = TcpListener::bind(addr).await?;
            tokio::spawn(accept_loop(tls, Some(acceptor)));
        }
        accept_loop(plain, None).await;
        Ok(())
    })
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(tcp).await,
                Some(acc) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(net::CONNECT_WAIT, acc.accept(tcp)).await
                    {
                        serve(s).await
                    }
                }
            }
        });
    }
}

/// Echoes data messages until the peer closes; tungstenite answers Ping and Close.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(Ok(mut ws)) = tokio::time::timeout(
        net::CONNECT_WAIT,
        tokio_tungstenite::accept_async_with_config(stream, Some(config())),
    )
    .await
    else {
        return;
    };
    while let Some(Ok(first)) = ws.next().await {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            if matches!(m, Message::Binary(_) | Message::Text(_)) && ws.feed(m).await.is_err() {
                return;
            }
            // Whatever else has already arrived goes out in the same write.
            if let Some(Some(Ok(m))) = ws.next().now_or_never() {
                next = Some(m);
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
    // End the connection cleanly (a TLS close_notify, then FIN), as the proxies do.
    let mut stream = ws.into_inner();
    let _ = tokio::time::timeout(net::CONNECT_WAIT, stream.shutdown()).await;
}
