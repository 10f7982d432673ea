//! The subcommands of the `netdev-broker` binary: the command line itself ([`cli`]), `serve`,
//! `check-config`, `demo`, `hash-password`, `telnet-debug` and `token`.

pub mod check;
pub mod cli;
pub mod demo;
pub mod hash;
pub mod serve;
pub mod telnet_debug;
pub mod token;
