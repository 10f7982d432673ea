//! What the broker tells its operators: the Prometheus counters ([`metrics`]), the per-command
//! JSON log ([`cmdlog`]), the process log ([`logging`]), the audit trail ([`audit`]) and the masking of secrets in device
//! output ([`mask`]). Nothing here reaches a device.

pub mod audit;
pub mod cmdlog;
pub mod logging;
pub mod mask;
pub mod metrics;

/// Open `path` for appending, created with mode 0640 if missing (the log file, the audit file).
pub(crate) fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}
