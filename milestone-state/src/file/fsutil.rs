//! File-system helpers: private permissions, symlink refusal, atomic replacement, bounded lock
//! waits.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use milestone_core::MilestoneId;

use crate::error::StoreError;
use crate::fault;

/// Prefix of every temp file and directory this store creates.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

pub(crate) fn io_err(path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Extension to attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| io_err(path, e))
    }
}

/// Refuses `path` if it is a symbolic link; returns its metadata, or `None` if it is absent.
pub(crate) fn no_symlink(path: &Path) -> Result<Option<fs::Metadata>, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::Corrupt {
            file: path.to_path_buf(),
            position: "whole file".into(),
            reason: "is a symbolic link; links inside the store root are refused".into(),
        }),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Creates a private (0700) directory.
pub(crate) fn create_dir(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new().mode(0o700).create(path).at(path)
}

/// Creates a directory and its parents, all private (0700).
pub(crate) fn create_dir_all(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .at(path)
}

/// Opens an existing regular file (not a link) for reading and appending.
pub(crate) fn open_rw(path: &Path) -> Result<File, StoreError> {
    match no_symlink(path)? {
        Some(m) if m.is_file() => {}
        Some(_) => {
            return Err(StoreError::Corrupt {
                file: path.to_path_buf(),
                position: "whole file".into(),
                reason: "is not a regular file".into(),
            });
        }
        None => {
            return Err(io_err(
                path,
                io::Error::new(io::ErrorKind::NotFound, "missing"),
            ));
        }
    }
    OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .at(path)
}

/// Creates a new private (0600) file; fails if it exists.
pub(crate) fn create_new(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// fsync of a directory, so that renames and creations in it are durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path).and_then(|d| d.sync_all()).at(path)
}

/// A process-unique temp name in `dir` for `name`.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{name}-{}-{n}", std::process::id()))
}

/// Replaces `dir/name` atomically with `bytes`: temp file in the same directory, write, fsync,
/// rename, fsync of the directory. A crash leaves the old file or the new one, plus at most a
/// temp file that the next open removes.
pub(crate) fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    if let Some(m) = no_symlink(&target)?
        && !m.is_file()
    {
        return Err(StoreError::Corrupt {
            file: target,
            position: "whole file".into(),
            reason: "is not a regular file".into(),
        });
    }
    let tmp = temp_path(dir, name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        fault::point("temp-created");
        fault::write_all(&mut f, bytes, "temp-mid-write").at(&tmp)?;
        f.flush().at(&tmp)?;
        fault::point("temp-before-fsync");
        f.sync_all().at(&tmp)?;
        fault::point("temp-before-rename");
        fs::rename(&tmp, &target).at(&target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fault::point("after-rename-before-dir-fsync");
    sync_dir(dir)
}

/// Removes stray temp files (from crashed writers) in `dir`; returns the paths removed. Call
/// only while holding the milestone's lock, since every temp writer holds it.
pub(crate) fn remove_temps(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            let ft = entry.file_type().at(&path)?;
            if ft.is_file() || ft.is_symlink() {
                fs::remove_file(&path).at(&path)?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

/// Holds an exclusive `flock` on a milestone's lock file; released on drop.
pub(crate) struct LockGuard<'a> {
    file: &'a File,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Takes the exclusive lock on `file`, trying at least once and waiting until `timeout` after
/// `since` (when the caller's request was made).
pub(crate) fn lock<'a>(
    file: &'a File,
    path: &Path,
    id: &MilestoneId,
    since: Instant,
    timeout: Duration,
) -> Result<LockGuard<'a>, StoreError> {
    let mut pause = Duration::from_micros(50);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LockGuard { file }),
            Err(fs::TryLockError::WouldBlock) => {
                let waited = since.elapsed();
                if waited >= timeout {
                    return Err(locked(id, waited));
                }
                std::thread::sleep(pause.min(timeout - waited));
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(path, e)),
        }
    }
}

/// [`StoreError::Locked`] for a call that waited `waited`.
pub(crate) fn locked(id: &MilestoneId, waited: Duration) -> StoreError {
    StoreError::Locked {
        id: id.clone(),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }
}
