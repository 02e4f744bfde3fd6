//! Named crash points for the reliability tests.
//!
//! With the non-default `fault-injection` feature, reaching a point aborts the process when the
//! environment variable [`CRASH_AT_VAR`] names the point; without the feature every function here
//! is an empty inline call, so release builds carry no such code. The points:
//!
//! | name | where |
//! |---|---|
//! | `temp-created` | an atomic file write (snapshot, `state.json`, checkpoint index) created its temp file |
//! | `temp-mid-write` | half of the temp file's bytes are written |
//! | `temp-before-fsync` | the temp file is written, not yet synced |
//! | `temp-before-rename` | the temp file is synced, not yet renamed |
//! | `after-rename-before-dir-fsync` | renamed, the directory not yet synced |
//! | `append-mid-write` | half of an append group's bytes are in the log |
//! | `append-before-ack` | the group is written and synced, callers not yet answered |
//! | `snapshot-during` | the snapshot file is in place; `state.json` and pruning not done |

/// The environment variable naming the crash point (feature `fault-injection`).
pub const CRASH_AT_VAR: &str = "MILESTONE_CRASH_AT";

/// Every crash point's name.
pub const POINTS: &[&str] = &[
    "temp-created",
    "temp-mid-write",
    "temp-before-fsync",
    "temp-before-rename",
    "after-rename-before-dir-fsync",
    "append-mid-write",
    "append-before-ack",
    "snapshot-during",
];

#[cfg(feature = "fault-injection")]
fn armed() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(CRASH_AT_VAR).ok())
        .as_deref()
}

/// Aborts the process if `name` is the armed crash point.
#[inline]
pub(crate) fn point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if armed() == Some(name) {
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

/// `write_all`, except that when `name` is armed it writes the first half and aborts.
#[inline]
pub(crate) fn write_all(
    out: &mut impl std::io::Write,
    bytes: &[u8],
    name: &str,
) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    if armed() == Some(name) {
        let half = bytes.len() / 2;
        out.write_all(&bytes[..half])?;
        out.flush()?;
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
    out.write_all(bytes)
}
