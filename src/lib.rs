//! netdev-broker: long-lived SSH sessions to network devices behind a local HTTP API.
//!
//! Layers (see ARCHITECTURE.md): `transport` moves bytes, `channel` knows prompts, the session
//! `driver` knows platforms (data in `platform`), `session` owns one thread per session, `api`
//! knows HTTP and JSON, `http` is the bounded HTTP/1.1 server underneath.

pub mod api;
pub mod channel;
pub mod cmd;
pub mod config;
pub mod http;
pub mod memory;
pub mod observe;
pub mod platform;
mod policy;
pub mod secret;
pub mod server;
pub mod session;
#[cfg(test)]
mod source_scan;
pub mod transport;
pub mod util;
pub mod version;
pub mod web;
