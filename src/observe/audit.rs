//! The audit trail: one line per state-changing request (who, from where, what, the answer),
//! always in the log at INFO and, with `audit_log`, as JSON lines in a file of its own:
//! append-only, mode 0640, each line written whole and fsync'd before the next.

use parking_lot::Mutex;
use serde_json::Value;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct AuditLog {
    file: Mutex<Option<(PathBuf, File)>>,
    /// A file is configured (read without the lock).
    has_file: bool,
}

fn open(path: &Path) -> Result<File, String> {
    let existed = path.exists();
    let f = super::open_append(path).map_err(|e| {
        format!(
            "config key 'audit_log': cannot open {}: {e}",
            path.display()
        )
    })?;
    if !existed {
        // 0640 whatever the umask (systemd's UMask=0077 would make it 0600): the group reads
        // it (a SIEM shipper), nobody else.
        use std::os::unix::fs::PermissionsExt;
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o640));
    }
    Ok(f)
}

impl AuditLog {
    /// The file at `path`, if any (created 0640 when missing).
    pub fn new(path: Option<&Path>) -> Result<AuditLog, String> {
        let file = match path {
            Some(p) => Some((p.to_path_buf(), open(p)?)),
            None => None,
        };
        Ok(AuditLog {
            has_file: file.is_some(),
            file: Mutex::new(file),
        })
    }

    /// Open the file again at its path (logrotate moved the old one away); the old handle is
    /// kept when that fails.
    pub fn reopen(&self) -> Result<(), String> {
        let mut f = self.file.lock();
        if let Some((path, file)) = f.as_mut() {
            *file = open(path)?;
        }
        Ok(())
    }

    /// A record would be written anywhere: the log takes INFO lines, or a file is configured.
    /// The caller builds a record only then.
    pub fn wanted(&self) -> bool {
        self.has_file
            || log::log_enabled!(target: "netdev_broker::observe::audit", log::Level::Info)
    }

    /// One record: in the log (INFO, as `audit: {json}`) and in the file, fsync'd.
    pub fn record(&self, line: &Value) {
        let text = line.to_string();
        log::info!("audit: {text}");
        let mut f = self.file.lock();
        if let Some((path, file)) = f.as_mut() {
            let mut bytes = text.into_bytes();
            bytes.push(b'\n');
            if let Err(e) = file.write_all(&bytes).and_then(|()| file.sync_data()) {
                log::error!("audit log {}: cannot write: {e}", path.display());
            }
        }
    }
}
