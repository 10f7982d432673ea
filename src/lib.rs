//! netdev-broker: long-lived SSH sessions to network devices behind a local HTTP API.
//!
//! Layers (see ARCHITECTURE.md): `transport` moves bytes, `channel` knows prompts, the session
//! `driver` knows platforms (data in `platform`), `session` owns one thread per session, `api`
//! knows HTTP and JSON, `http` is the bounded HTTP/1.1 server underneath.

pub mod api;
pub mod channel;
pub mod cli;
pub mod cmd_check;
pub mod cmd_demo;
pub mod cmd_hash;
pub mod cmdlog;
pub mod config;
pub mod debug;
pub mod http;
pub mod logging;
pub mod mask;
pub mod memory;
pub mod metrics;
pub mod platform;
pub mod secret;
pub mod server;
pub mod session;
pub mod transport;
pub mod trust;
pub mod util;
pub mod version;
pub mod web;
