//! What the broker tells its operators: the Prometheus counters ([`metrics`]), the per-command
//! JSON log ([`cmdlog`]), the process log ([`logging`]) and the masking of secrets in device
//! output ([`mask`]). Nothing here reaches a device.

pub mod cmdlog;
pub mod logging;
pub mod mask;
pub mod metrics;
