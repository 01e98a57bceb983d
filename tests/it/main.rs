//! The integration tests, as one test binary: each module is one area of behaviour,
//! run against real sockets, real TLS, real WebSocket peers and the real binary.
//! (One binary links tokio, hyper, rustls and ratatui once instead of twenty times.)

mod common;

mod admin;
mod admin_guard;
mod balancing;
mod blame;
mod browser;
mod cli;
mod config;
mod control;
mod dashboard;
mod demo;
mod deploy;
mod dns;
mod faults;
mod handshake;
mod health;
mod hostile;
mod http2;
mod import_nginx;
mod inject;
mod inspector;
mod interop;
mod keepalive;
mod lifecycle;
mod limits;
mod pacing;
mod park;
mod plain_http;
mod probes;
mod recording;
mod relay;
mod reload;
mod replay;
mod top;
mod tui_e2e;
mod upgrade;
mod upstream_tls;
mod ws_limits;
