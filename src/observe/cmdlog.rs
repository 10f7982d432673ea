//! Per-session JSONL command log (`<cmd_log_dir>/<session_id>.jsonl`): one flushed line per
//! command, secrets masked, file mode 0640.

use crate::observe::mask::Masker;
use crate::util::iso8601;
use serde_json::json;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct CmdLog {
    dir: PathBuf,
    masker: Masker,
}

pub struct Entry<'a> {
    pub session_id: &'a str,
    pub host: &'a str,
    pub command: &'a str,
    pub output: &'a str,
    pub elapsed_ms: u64,
    /// ok | failed | timeout | error
    pub status: &'a str,
    pub truncated: bool,
    /// Who typed it: the client's API token name, or `guard` (a change guard's event or
    /// rollback).
    pub by: &'a str,
}

impl CmdLog {
    /// Create the directory (0750) if needed.
    pub fn new(dir: PathBuf, masker: Masker) -> std::io::Result<CmdLog> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(&dir)?;
        }
        Ok(CmdLog { dir, masker })
    }

    pub fn append(&self, e: &Entry) {
        let line = json!({
            "ts": iso8601(SystemTime::now()),
            "session_id": e.session_id,
            "host": e.host,
            "command": self.masker.mask(e.command),
            "output": self.masker.mask(e.output),
            "elapsed_ms": e.elapsed_ms,
            "status": e.status,
            "truncated": e.truncated,
            "by": e.by,
            // The request this thread works for now (none for a guard that fired by itself).
            "request_id": crate::observe::logging::current_request().as_deref(),
        });
        let path = self.dir.join(format!("{}.jsonl", e.session_id));
        let r = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .and_then(|mut f| {
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                f.write_all(&bytes)?;
                f.flush()
            });
        if let Err(err) = r {
            log::warn!(
                "session {}: cannot write command log {}: {err}",
                e.session_id,
                path.display()
            );
        }
    }
}

use std::os::unix::fs::DirBuilderExt;
