//! `netdev-broker check-config [--config PATH]`: load the config exactly as `serve` would (same
//! loader, same environment token), check the file's permissions, and print what the broker
//! would run with, secrets masked.

use crate::config::{self, ConfigError, Overrides};

/// Returns the report to print (warnings first, then one `key: value` per line), or the error
/// that `serve` would stop on, or the permission problem.
pub fn run(ov: &Overrides, env_token: Option<String>) -> Result<String, ConfigError> {
    let mut ov = ov.clone();
    // Unlike `serve`, the default path must exist: checking nothing is not a check.
    let path = ov
        .config
        .get_or_insert_with(|| config::DEFAULT_CONFIG_PATH.into())
        .clone();
    let loaded = config::load(&ov, env_token)?;
    let mut warnings = config::check_permissions(&path, &loaded.secret_keys)?;
    warnings.extend(loaded.warnings);
    let mut out = String::new();
    for w in &warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str(&format!("# {}: OK\n", path.display()));
    for (k, v) in loaded.config.describe() {
        out.push_str(&format!("{k}: {v}\n"));
    }
    Ok(out)
}
