//! Small helpers with no better home: timestamps, ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// ISO-8601 UTC with seconds and an explicit offset, as Python's `isoformat()` printed it:
/// `2026-03-12T14:30:00+00:00`. Before 1970 is 1970; past the end of jiff's range
/// (9999-12-30T22:00:00Z) is that end.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let ts = i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    let d = jiff::tz::Offset::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

/// A 128-bit random id from the OS RNG, as 32 lowercase hex characters.
pub fn random_id() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Seconds since the Unix epoch now (0 before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whole seconds between two instants, never negative.
pub fn secs_since(earlier: std::time::Instant) -> u64 {
    earlier.elapsed().as_secs()
}

/// Open-file limit handling: raise the soft RLIMIT_NOFILE to the hard limit (systemd's default
/// soft limit is 1024, hard 524288) and return the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the rlimit struct we pass by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        // Capped: a huge limit buys nothing and makes select()-style code elsewhere misbehave.
        let want = l.rlim_max.min(1 << 20);
        if want > l.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
    }
    l.rlim_cur
}

/// File descriptors kept free of HTTP connections: stdio, the listener, log files, the command
/// log, resolver sockets, and a margin for device sockets.
pub const FD_RESERVE: u64 = 64;

/// The HTTP connection cap the open-file limit allows. Each connection holds two descriptors
/// (the socket and the clone used to unblock it at shutdown); half of what is left after the
/// reserve goes to connections, the other half stays for device sessions. So with `ulimit -n
/// 256` at most 48 connections are served and the rest are answered 503 at once, instead of
/// the acceptor running out of descriptors.
pub fn connection_cap(configured: usize, nofile: u64) -> usize {
    let allowed = (nofile.saturating_sub(FD_RESERVE) / 4).max(8);
    configured.min(usize::try_from(allowed).unwrap_or(usize::MAX))
}

/// Out of descriptors (EMFILE, ENFILE), memory or threads (ENOMEM, EAGAIN from clone).
pub fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) | Some(libc::ENOBUFS)
    ) || e.kind() == std::io::ErrorKind::OutOfMemory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_leaves_descriptors_for_sessions() {
        assert_eq!(connection_cap(512, 256), 48);
        assert_eq!(connection_cap(512, 1024), 240);
        assert_eq!(connection_cap(512, 524_288), 512);
        assert_eq!(connection_cap(512, 10), 8);
    }

    #[test]
    fn iso8601_formats_known_instants() {
        let cases = [
            (0u64, "1970-01-01T00:00:00+00:00"),
            (1_773_325_800, "2026-03-12T14:30:00+00:00"),
            (951_782_400, "2000-02-29T00:00:00+00:00"),
            (4_107_542_399, "2100-02-28T23:59:59+00:00"),
            (253_402_293_600, "9999-12-30T22:00:00+00:00"),
            (253_402_300_800, "9999-12-30T22:00:00+00:00"),
        ];
        for (secs, want) in cases {
            assert_eq!(iso8601(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
        // Sub-seconds are cut, not rounded; before the epoch is the epoch.
        let t = UNIX_EPOCH + Duration::from_millis(1_773_325_800_999);
        assert_eq!(iso8601(t), "2026-03-12T14:30:00+00:00");
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn ids_are_128_bit_hex_and_distinct() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
