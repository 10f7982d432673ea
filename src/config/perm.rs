//! File-system rules: the config file's permissions (`check-config` refuses a file holding
//! secrets that other users can read; `serve` warns), and the state directory the broker must
//! be able to write (checked at start, not found at the first session's open).

use super::ConfigError;
use std::path::Path;

/// The permission check of `check-config`: a file holding secrets must not be readable or
/// writable by other users (an error); group-writable is a warning.
pub fn check_permissions(path: &Path, secret_keys: &[String]) -> Result<Vec<String>, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::io(format!("cannot stat {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut warnings = Vec::new();
    if mode & 0o007 != 0 && !secret_keys.is_empty() {
        return Err(ConfigError::new(format!(
            "{} has mode {mode:04o}: it holds {} and must not be readable or writable by other users (chmod 0640, owner root, group netdev-broker)",
            path.display(),
            secret_keys.join(", ")
        )));
    }
    if mode & 0o020 != 0 {
        warnings.push(format!(
            "{} has mode {mode:04o}: group-writable (0640 is enough: the broker only reads it)",
            path.display()
        ));
    }
    if mode & 0o002 != 0 {
        warnings.push(format!(
            "{} has mode {mode:04o}: anyone can change the broker's configuration",
            path.display()
        ));
    }
    Ok(warnings)
}

/// May this process read, write and search `dir`? `access(2)`, as the process's user.
fn accessible(p: &Path, mode: libc::c_int) -> Result<(), std::io::Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; access only reads it.
    match unsafe { libc::access(c.as_ptr(), mode) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

fn writable_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    accessible(dir, libc::R_OK | libc::W_OK | libc::X_OK).map_err(|e| {
        format!(
            "{} is not readable and writable by this user (uid {}): {e}",
            dir.display(),
            uid()
        )
    })
}

/// Could the broker create (if missing) and use `dir`? Nothing is created: the directory
/// itself, else its nearest existing parent, must be a directory this user can write.
pub fn dir_usable(dir: &Path) -> Result<(), String> {
    match dir.ancestors().find(|a| a.symlink_metadata().is_ok()) {
        Some(a) if a == dir => writable_dir(dir),
        Some(a) => writable_dir(a).map_err(|m| format!("cannot create {}: {m}", dir.display())),
        None => Err(format!("cannot create {}", dir.display())),
    }
}

/// Create `dir` if missing and check that this user can use it; a file `name` already in it
/// must be readable and writable.
pub fn ensure_dir(dir: &Path, name: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    writable_dir(dir)?;
    if let Some(f) = name.map(|n| dir.join(n)).filter(|f| f.exists()) {
        accessible(&f, libc::R_OK | libc::W_OK).map_err(|e| {
            format!(
                "{} is not readable and writable by this user (uid {}): {e}",
                f.display(),
                uid()
            )
        })?;
    }
    Ok(())
}

/// The directory the known_hosts file lives in, made and checked at start: `state_dir`, or
/// the directory of an explicit `known_hosts`. The error names the key.
pub fn ensure_state(c: &super::Restart) -> Result<(), ConfigError> {
    let (key, dir, name) = match &c.known_hosts {
        None => ("state_dir", c.state_dir.as_path(), Some("known_hosts")),
        Some(f) => (
            "known_hosts",
            f.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            f.file_name().and_then(|n| n.to_str()),
        ),
    };
    ensure_dir(dir, name).map_err(|m| ConfigError::key(key, m))
}
