//! The one call that differs between rustls's client and server connections.
//! `process_tls_records` is an inherent method of each type, not a trait method, so
//! each side states it once here.

use std::ops::DerefMut;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{UnbufferedConnectionCommon, UnbufferedStatus};

/// The client or server half of rustls's unbuffered API.
pub trait Side: Sized + 'static {
    type Conn: DerefMut<Target = UnbufferedConnectionCommon<Self>> + Send + Sync + Unpin;

    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self>;
}

impl Side for ServerConnectionData {
    type Conn = UnbufferedServerConnection;

    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self> {
        conn.process_tls_records(incoming)
    }
}

impl Side for ClientConnectionData {
    type Conn = UnbufferedClientConnection;

    fn process<'c, 'i>(
        conn: &'c mut UnbufferedConnectionCommon<Self>,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self> {
        conn.process_tls_records(incoming)
    }
}
