//! tunnelscope: a WebSocket-aware reverse proxy and load balancer with a live
//! terminal inspector.
//!
//! Module map (dependencies point downwards only):
//!
//! - [`config`], [`event`], [`control`], [`ws`]: leaves. The TOML schema; the events
//!   the core publishes; the commands observers send to it; the WebSocket vocabulary
//!   (opcodes, close codes, Close frames, masking).
//! - [`proxy`]: listeners and admission, TLS, one request top to bottom
//!   (`request`: route, connect, upgrade or plain), backend pools, the tunnel relay
//!   and its sans-IO frame scanner, the registry of what is live, the command
//!   loop, and reload in place. Knows nothing of any observer; its API is
//!   [`proxy::start`] and [`proxy::ProxyHandle`].
//! - [`dashboard`]: the ratatui inspector. Sees only events, snapshots and the
//!   control handle, never proxy internals.
//! - [`admin`]: the HTTP admin API (JSON state, Prometheus `/metrics`, an event
//!   stream, control endpoints). Like the dashboard, sees only events, snapshots,
//!   counters and the control handle.
//! - [`demo`]: in-process backends and synthetic clients for `tunnelscope demo`.
//!
//! Only `main.rs` wires the parts together.

pub mod admin;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod demo;
pub mod event;
pub mod inspect;
pub mod nginx;
pub mod proxy;
pub mod remote;
pub mod replay;
mod sync;
mod throttle;
pub mod ws;
