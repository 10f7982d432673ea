//! What the broker tells its operators: the Prometheus counters ([`metrics`]), the per-command
//! JSON log ([`cmdlog`]), the process log ([`logging`]), the audit trail ([`audit`]) and the masking of secrets in device
//! output ([`mask`]). Nothing here reaches a device.

pub mod audit;
pub mod cmdlog;
pub mod logging;
pub mod mask;
pub mod metrics;
