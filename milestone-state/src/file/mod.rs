//! [`FileStore`]: the embedded, durable [`StateStore`] — a directory of append-only logs.
//!
//! # Layout
//!
//! ```text
//! <root>/                      0700
//!   <milestone-id>/            0700, one per milestone
//!     meta.json                {"schema_version":1,"id":"…"} — the layout version
//!     events.jsonl             the log: one checksummed JSON line per event (see below)
//!     snapshots/<v>.snap       the state after version v, plus the checkpoints up to it
//!     checkpoints.json         the checkpoint index, exported for other tools
//!     state.json               the state, exported for other tools (see "state.json")
//!     lock                     the cross-process lock file (never deleted)
//! ```
//!
//! Log lines look like `{"seq":7,"last":8,"crc":"1c291ca3","event":{…}}`: `seq` is the
//! event's version, `last` the version of the last event of the same append (an append is all
//! or nothing), `crc` a CRC-32 (IEEE) of `"{seq}:{last}:"` followed by the event's JSON bytes.
//!
//! # How an append is made durable
//!
//! Each open milestone has one writer thread fed by a channel. It takes every request that is
//! waiting, takes the milestone's `flock` (bounded wait, then [`StoreError::Locked`]: each call
//! waits at most [`FileStoreOptions::lock_timeout`] counted from when it was made, and a call
//! made after another call's `Locked` answer gets a lock attempt of its own), catches
//! up with anything other processes appended, checks each append's expected version and
//! applies its events to the cached state, writes all accepted lines with one `write` and one
//! `fdatasync`, and only then answers the callers (each awaits a `futures` oneshot, so no
//! executor thread blocks on the disk and the store works under any executor). Concurrent
//! appends therefore share one `fdatasync` (group commit); once the writer has seen concurrent
//! appends it also waits up to [`FileStoreOptions::group_commit_window`] for stragglers of a
//! burst, while a lone writer never waits. Cost per append: O(events appended)
//! — the history is never rewritten and the state is never serialized on this path.
//!
//! *Validation without clones*: events are applied to the cached state as they are checked.
//! [`MilestoneState::apply`] is atomic per event, so a refused single event costs nothing; when a
//! later event of a multi-event append is refused, the cache is rebuilt from disk (snapshot +
//! tail) and the group's earlier accepted appends are applied again — O(milestone), on that
//! error path only. A failed write or sync truncates the log back to the last acknowledged
//! byte and drops the cache, so an unacknowledged event is never visible.
//!
//! # Snapshots, `state.json` and checkpoints
//!
//! After every [`FileStoreOptions::snapshot_every`] events the writer thread writes a snapshot
//! (after answering the appenders, before serving the next group) and exports `state.json`;
//! both are written to a temp file in the same directory, fsynced, renamed and the directory
//! fsynced. "Current" in `state.json` therefore means *as of the last snapshot or
//! [`FileStore::export`]* — its `events_applied` field is the version it shows. The newest
//! [`FileStoreOptions::keep_snapshots`] snapshots and every checkpoint's snapshot are kept.
//! A checkpoint appends [`Event::CheckpointRecorded`], writes a snapshot at that version, and
//! exports `checkpoints.json`; the log is the truth for the index (every `CheckpointRecorded`
//! event is a checkpoint).
//!
//! # Recovery on open
//!
//! The first operation on a milestone in a process loads the newest valid snapshot and replays
//! the log after it. A torn or checksum-failing *last* line — and the rest of an incomplete
//! append before it — is cut and reported in [`FileStore::recoveries`]; damage before the last
//! line is [`StoreError::Corrupt`] naming the file and line, and nothing is deleted. A corrupt
//! snapshot is skipped (reported) in favour of an older one or a full replay; a snapshot from a
//! newer version of this library is [`StoreError::UnsupportedSchema`]. Stray temp files are
//! removed. Open verifies the log *after* the snapshot it starts from; [`StateStore::read_events`]
//! verifies every line it reads.
//!
//! # Security
//!
//! The root is created 0700 and every file 0600; milestone ids are validated [`MilestoneId`]s
//! (no `/`, no `..`, no leading `.`) joined under the root only; symbolic links inside the root
//! are refused ([`StoreError::Corrupt`]); lines ([`FileStoreOptions::max_line_bytes`]), logs and
//! snapshots ([`FileStoreOptions::max_file_bytes`]) are bounded.

mod crc;
mod fsutil;
mod log;
mod snapshot;
mod writer;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::channel::oneshot;
use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp};
use serde::{Deserialize, Serialize};

use self::fsutil::{IoContext, io_err, no_symlink};
use self::writer::{Queued, Request, Writer};
use crate::error::{StoreError, check_label};
use crate::store::{Checkpoint, Loaded, StateStore};

pub use self::snapshot::FORMAT_VERSION;

/// Tuning and limits of a [`FileStore`]. Build with [`FileStoreOptions::default`] and the
/// setters.
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    snapshot_every: u64,
    keep_snapshots: usize,
    lock_timeout: Duration,
    max_line_bytes: usize,
    max_file_bytes: u64,
    group_commit_window: Duration,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            snapshot_every: 10_000,
            keep_snapshots: 2,
            lock_timeout: Duration::from_secs(10),
            max_line_bytes: 64 << 20,
            max_file_bytes: 4 << 30,
            group_commit_window: Duration::from_micros(50),
        }
    }
}

impl FileStoreOptions {
    /// Write a snapshot (and export `state.json`) after this many events since the last one
    /// (default 10,000; 0 turns automatic snapshots off).
    pub fn snapshot_every(mut self, events: u64) -> Self {
        self.snapshot_every = events;
        self
    }
    /// Keep this many newest snapshots besides the checkpoints' (default 2, at least 1).
    pub fn keep_snapshots(mut self, n: usize) -> Self {
        self.keep_snapshots = n.max(1);
        self
    }
    /// Wait at most this long for another process's lock before [`StoreError::Locked`]
    /// (default 10 s), counted from when the call was made; the lock is always tried at least
    /// once, however long the call was queued behind others.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
    /// Longest log line accepted, in bytes (default 64 MiB); a longer event is refused with
    /// [`StoreError::InvalidInput`], a longer stored line is [`StoreError::Corrupt`].
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }
    /// How long the writer waits for more appends before writing a group, once it has seen
    /// concurrent appends (the previous group held several); a lone writer never waits.
    /// Default 50 µs; zero turns waiting off.
    pub fn group_commit_window(mut self, window: Duration) -> Self {
        self.group_commit_window = window;
        self
    }
    /// Largest log or snapshot file accepted, in bytes (default 4 GiB).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }
}

/// Counters of a [`FileStore`] (see [`FileStore::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Groups written: each is one `write` and one `fdatasync` of the log.
    pub groups: u64,
    /// Appends acknowledged.
    pub appends: u64,
    /// Events acknowledged.
    pub events: u64,
}

/// Something recovery did on open, for the host to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// A torn or damaged tail of the log (never an acknowledged append) was cut.
    TornTailCut {
        /// The log.
        file: PathBuf,
        /// The new length of the file.
        offset: u64,
        /// How many bytes were cut.
        bytes: u64,
        /// Why.
        reason: String,
    },
    /// A snapshot could not be used; an older one or a full replay was used instead. The file
    /// is left in place.
    SnapshotSkipped {
        /// The snapshot.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A temp file left by a crashed writer was removed.
    TempRemoved {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) options: FileStoreOptions,
    recoveries: Mutex<Vec<Recovery>>,
    pub(super) groups: AtomicU64,
    pub(super) appends: AtomicU64,
    pub(super) events: AtomicU64,
}

impl Inner {
    pub(super) fn report(&self, r: Recovery) {
        self.recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
    }
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<Queued>,
    thread: Option<JoinHandle<()>>,
}

/// The durable store: see the module docs for layout, durability and recovery.
///
/// ```
/// use milestone_core::{Event, MilestoneId, Timestamp, Workflow};
/// use milestone_state::{file::FileStore, StateStore};
///
/// let dir = tempfile::tempdir()?;
/// futures::executor::block_on(async {
///     let store = FileStore::open(dir.path().join("milestones"))?;
///     let id = MilestoneId::new("login")?;
///     store.create(&Event::Created { at: Timestamp(0), id: id.clone(), title: "Login".into(),
///         context: String::new(), workflow: Workflow::kiro(), seed: 0 }).await?;
///     let v = store.append(&id, 1, &[Event::ExecutionStarted { at: Timestamp(1) }]).await?;
///     drop(store);
///     let reopened = FileStore::open(dir.path().join("milestones"))?;
///     assert_eq!(reopened.load(&id).await?.version, v);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
    handles: Mutex<HashMap<MilestoneId, Handle>>,
}

pub(super) const META: &str = "meta.json";
pub(super) const EVENTS: &str = "events.jsonl";
pub(super) const LOCK: &str = "lock";
pub(super) const SNAPSHOTS: &str = "snapshots";
pub(super) const STATE: &str = "state.json";
pub(super) const CHECKPOINTS: &str = "checkpoints.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Meta {
    pub(super) schema_version: u32,
    pub(super) id: MilestoneId,
}

impl FileStore {
    /// Opens (creating it 0700 if needed) a store rooted at `root`, with default options.
    ///
    /// # Errors
    /// I/O errors; [`StoreError::InvalidInput`] if `root` is not a directory or is a link.
    pub fn open(root: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        FileStore::open_with(root, FileStoreOptions::default())
    }

    /// Opens a store with `options`.
    ///
    /// # Errors
    /// As [`FileStore::open`].
    pub fn open_with(
        root: impl Into<PathBuf>,
        options: FileStoreOptions,
    ) -> Result<FileStore, StoreError> {
        let root = root.into();
        match fs::symlink_metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::invalid(format!(
                    "store root {} is not a directory (links are refused)",
                    root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fsutil::create_dir_all(&root)?,
            Err(e) => return Err(io_err(&root, e)),
        }
        let store = FileStore {
            inner: Arc::new(Inner {
                root,
                options,
                recoveries: Mutex::new(Vec::new()),
                groups: AtomicU64::new(0),
                appends: AtomicU64::new(0),
                events: AtomicU64::new(0),
            }),
            handles: Mutex::new(HashMap::new()),
        };
        store.remove_stray_root_temps()?;
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// What this store has written since it was opened: with concurrent appenders,
    /// `appends / groups` shows how many appends shared each `fdatasync`.
    pub fn stats(&self) -> Stats {
        Stats {
            groups: self.inner.groups.load(Ordering::Relaxed),
            appends: self.inner.appends.load(Ordering::Relaxed),
            events: self.inner.events.load(Ordering::Relaxed),
        }
    }

    /// Everything recovery has done since this store was opened, oldest first.
    pub fn recoveries(&self) -> Vec<Recovery> {
        self.inner
            .recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Writes `state.json` and `checkpoints.json` for the current version now; returns it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Locked`], I/O errors.
    pub async fn export(&self, id: &MilestoneId) -> Result<u64, StoreError> {
        self.call(id, Request::Export).await
    }

    /// Temp directories of `create` or `delete` left by processes that no longer run.
    fn remove_stray_root_temps(&self) -> Result<(), StoreError> {
        if !Path::new("/proc/self").exists() {
            return Ok(());
        }
        let root = &self.inner.root;
        for entry in fs::read_dir(root).at(root)? {
            let entry = entry.at(root)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(fsutil::TEMP_PREFIX) else {
                continue;
            };
            let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let path = entry.path();
            let ft = entry.file_type().at(&path)?;
            if ft.is_dir() {
                fs::remove_dir_all(&path).at(&path)?;
            } else {
                fs::remove_file(&path).at(&path)?;
            }
            self.inner.report(Recovery::TempRemoved { file: path });
        }
        Ok(())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<MilestoneId, Handle>> {
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sender(&self, id: &MilestoneId, fresh: bool) -> Result<mpsc::Sender<Queued>, StoreError> {
        let mut handles = self.handles();
        if fresh {
            if let Some(mut old) = handles.remove(id)
                && let Some(t) = old.thread.take()
            {
                drop(old);
                let _ = t.join();
            }
        } else if let Some(h) = handles.get(id) {
            return Ok(h.tx.clone());
        }
        let writer = Writer::open(self.inner.clone(), id.clone())?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("milestone-writer-{id}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err(&self.inner.root, e))?;
        handles.insert(
            id.clone(),
            Handle {
                tx: tx.clone(),
                thread: Some(thread),
            },
        );
        Ok(tx)
    }

    async fn call<T>(
        &self,
        id: &MilestoneId,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        // The lock wait of this call is counted from now (see `Queued`).
        let queued = Queued {
            at: Instant::now(),
            request: make(reply),
        };
        if let Err(mpsc::SendError(queued)) = self.sender(id, false)?.send(queued) {
            // The writer stopped (its milestone was deleted or replaced): start a fresh one.
            self.sender(id, true)?
                .send(queued)
                .map_err(|_| stopped(&self.inner.root))?;
        }
        rx.await.map_err(|_| stopped(&self.inner.root))?
    }
}

fn stopped(root: &Path) -> StoreError {
    io_err(
        root,
        io::Error::other("the milestone's writer stopped before answering; retry"),
    )
}

impl Drop for FileStore {
    fn drop(&mut self) {
        let handles: Vec<Handle> = self.handles().drain().map(|(_, h)| h).collect();
        for mut h in handles {
            let thread = h.thread.take();
            drop(h);
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }
}

pub(super) fn encode_event(event: &Event, max_line: usize) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(event).map_err(|e| {
        StoreError::invalid(format!("cannot serialize a {} event: {e}", event.kind()))
    })?;
    if json.len() + log::LINE_OVERHEAD > max_line {
        return Err(StoreError::invalid(format!(
            "a {} event is {} bytes, over the line limit of {max_line}",
            event.kind(),
            json.len()
        )));
    }
    Ok(json)
}

#[async_trait]
impl StateStore for FileStore {
    async fn create(&self, created: &Event) -> Result<u64, StoreError> {
        let state = MilestoneState::from_created(created)
            .map_err(|e| StoreError::invalid(format!("cannot create a milestone: {e}")))?;
        let id = state.id().clone();
        let root = &self.inner.root;
        let dir = root.join(id.as_str());
        if no_symlink(&dir)?.is_some() {
            return Err(StoreError::AlreadyExists { id });
        }
        let json = encode_event(created, self.inner.options.max_line_bytes)?;
        let tmp = fsutil::temp_path(root, &format!("create-{id}"));
        let built = (|| {
            fsutil::create_dir(&tmp)?;
            let meta = serde_json::to_vec(&Meta {
                schema_version: FORMAT_VERSION,
                id: id.clone(),
            })
            .map_err(|e| StoreError::invalid(e.to_string()))?;
            let meta_path = tmp.join(META);
            let mut f = fsutil::create_new(&meta_path)?;
            io::Write::write_all(&mut f, &meta).at(&meta_path)?;
            f.sync_all().at(&meta_path)?;
            let mut line = Vec::with_capacity(json.len() + log::LINE_OVERHEAD);
            log::encode(&mut line, 1, 1, &json);
            let log_path = tmp.join(EVENTS);
            let mut f = fsutil::create_new(&log_path)?;
            io::Write::write_all(&mut f, &line).at(&log_path)?;
            f.sync_all().at(&log_path)?;
            fsutil::create_new(&tmp.join(LOCK))?
                .sync_all()
                .at(&tmp.join(LOCK))?;
            fsutil::create_dir(&tmp.join(SNAPSHOTS))?;
            fsutil::sync_dir(&tmp.join(SNAPSHOTS))?;
            fsutil::sync_dir(&tmp)?;
            Ok(())
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&tmp, &dir) {
            let _ = fs::remove_dir_all(&tmp);
            if no_symlink(&dir)?.is_some() {
                return Err(StoreError::AlreadyExists { id });
            }
            return Err(io_err(&dir, e));
        }
        fsutil::sync_dir(root)?;
        Ok(1)
    }

    async fn append(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        let max_line = self.inner.options.max_line_bytes;
        let jsons = events
            .iter()
            .map(|e| encode_event(e, max_line))
            .collect::<Result<Vec<_>, _>>()?;
        self.call(id, |reply| Request::Append {
            expected: expected_version,
            events: events.to_vec(),
            jsons,
            reply,
        })
        .await
    }

    async fn load(&self, id: &MilestoneId) -> Result<Loaded, StoreError> {
        self.call(id, Request::Load).await
    }

    async fn list(&self) -> Result<Vec<MilestoneId>, StoreError> {
        let root = &self.inner.root;
        let mut out = Vec::new();
        for entry in fs::read_dir(root).at(root)? {
            let entry = entry.at(root)?;
            let Ok(id) = MilestoneId::new(entry.file_name().to_string_lossy()) else {
                continue;
            };
            let ft = entry.file_type().at(&entry.path())?;
            // Only real directories holding a real log; links are never followed.
            let log = fs::symlink_metadata(entry.path().join(EVENTS));
            if ft.is_dir() && log.is_ok_and(|m| m.is_file()) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    async fn checkpoint(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<Checkpoint, StoreError> {
        check_label(label)?;
        let label = label.to_owned();
        self.call(id, |reply| Request::Checkpoint { label, at, reply })
            .await
    }

    async fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<Checkpoint>, StoreError> {
        self.call(id, Request::Checkpoints).await
    }

    async fn restore(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let label = label.to_owned();
        self.call(id, |reply| Request::Restore { label, at, reply })
            .await
    }

    async fn read_events(&self, id: &MilestoneId, from: u64) -> Result<Vec<Event>, StoreError> {
        self.call(id, |reply| Request::Read { from, reply }).await
    }

    async fn snapshot(&self, id: &MilestoneId) -> Result<u64, StoreError> {
        self.call(id, Request::Snapshot).await
    }

    async fn delete(&self, id: &MilestoneId) -> Result<(), StoreError> {
        let result = self.call(id, Request::Delete).await;
        if result.is_ok() {
            let handle = self.handles().remove(id);
            if let Some(mut h) = handle
                && let Some(t) = h.thread.take()
            {
                drop(h);
                let _ = t.join();
            }
        }
        result
    }
}

#[cfg(test)]
mod crafted_snapshot_tests {
    use super::*;
    use futures::executor::block_on;
    use milestone_core::Workflow;

    /// A snapshot whose header claims a version no log of its size can hold (a crafted file
    /// with a recomputed checksum) is skipped, never trusted into overflowing arithmetic.
    #[test]
    fn a_snapshot_claiming_an_impossible_version_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let id = MilestoneId::new("m").unwrap();
        let store = FileStore::open(&root).unwrap();
        let created = Event::Created {
            at: Timestamp(0),
            id: id.clone(),
            title: "m".into(),
            context: String::new(),
            workflow: Workflow::kiro(),
            seed: 1,
        };
        let mut v = block_on(store.create(&created)).unwrap();
        v = block_on(store.append(&id, v, &[Event::ExecutionStarted { at: Timestamp(1) }]))
            .unwrap();
        block_on(store.snapshot(&id)).unwrap();
        let expected = block_on(store.load(&id)).unwrap();
        drop(store);

        let snaps = root.join("m").join(SNAPSHOTS);
        let real = snaps.join(snapshot::file_name(v));
        let bytes = fs::read(&real).unwrap();
        let split = bytes.iter().position(|&b| b == b'\n').unwrap();
        let header: serde_json::Value = serde_json::from_slice(&bytes[..split]).unwrap();
        let log_offset = header["log_offset"].as_u64().unwrap();
        let crafted = snapshot::encode(u64::MAX, log_offset, &bytes[split + 1..], &[]).unwrap();
        fs::remove_file(&real).unwrap();
        fs::write(snaps.join(snapshot::file_name(u64::MAX)), crafted).unwrap();

        let store = FileStore::open(&root).unwrap();
        assert_eq!(block_on(store.load(&id)).unwrap(), expected);
        assert!(
            store
                .recoveries()
                .iter()
                .any(|r| matches!(r, Recovery::SnapshotSkipped { .. }))
        );
    }
}
