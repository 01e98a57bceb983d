//! Pool configs with weights and backups, addresses that refuse connections, and
//! a backend's state as the proxy reports it.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tunnelscope::event::{BackendId, BackendInfo, Event};
use tunnelscope::proxy::ProxyHandle;

/// Two pools chosen by path: `/raw...` goes to `raw`, everything else to `app`.
pub fn two_pool_config(top: &str, app: SocketAddr, raw: SocketAddr) -> String {
    format!(
        "{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/raw\"\npool = \"raw\"\n\n[[route]]\npath = \"/\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{app}\"\n\n\
         [pool.raw]\n[[pool.raw.server]]\naddr = \"{raw}\"\n"
    )
}

/// The pool every config here names.
pub const POOL: &str = "app";

/// The id the proxy gives the server configured at `addr` in [`POOL`].
pub fn backend_id(addr: SocketAddr) -> BackendId {
    BackendId::new(POOL, &addr.to_string())
}

/// One listener, `top` (e.g. a `[proxy]` table) and one pool with `pool_extra` and
/// these servers, each with its own extra lines (`weight = 2`, `backup = true`).
pub fn pool_config(top: &str, pool_extra: &str, servers: &[(SocketAddr, &str)]) -> String {
    let servers: String = servers
        .iter()
        .map(|(addr, extra)| format!("[[pool.{POOL}.server]]\naddr = \"{addr}\"\n{extra}\n"))
        .collect();
    format!("{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.{POOL}]\n{pool_extra}\n{servers}")
}

/// An address on which nothing listens: connecting is refused at once.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Binds `addr` again (after [`dead_addr`] released it), allowing reuse.
pub fn rebind(addr: SocketAddr) -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr)
        .expect("the released port can be bound again");
    socket.listen(128).unwrap()
}

/// The backend's state in the snapshot.
pub fn backend_info(proxy: &ProxyHandle, addr: SocketAddr) -> BackendInfo {
    let id = backend_id(addr);
    proxy
        .snapshot()
        .backends
        .into_iter()
        .find(|b| b.id == id)
        .unwrap_or_else(|| panic!("{id} is in the snapshot"))
}

/// Waits for a BackendState event of the backend at `addr` that matches `pred`.
pub async fn wait_backend<F: FnMut(&BackendInfo) -> bool>(
    rx: &mut broadcast::Receiver<Event>,
    addr: SocketAddr,
    mut pred: F,
) -> BackendInfo {
    let id = backend_id(addr);
    match super::wait_event(
        rx,
        |e| matches!(e, Event::BackendState(b) if b.id == id && pred(b)),
    )
    .await
    {
        Event::BackendState(info) => info,
        _ => unreachable!(),
    }
}
