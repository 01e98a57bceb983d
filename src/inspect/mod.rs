//! What captured traffic is, read and written: decoders for the framings
//! applications put inside WebSocket messages. A leaf like [`crate::event`]: the
//! dashboard and the admin API both use it, and it knows neither.

pub mod decode;
