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
//! waiting, takes the milestone's `flock` (bounded wait, then [`StoreError::Locked`]), catches
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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::oneshot;
use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp};
use serde::{Deserialize, Serialize};

use self::fsutil::{IoContext, io_err, no_symlink};
use self::log::Next;
use crate::error::{StoreError, check_label};
use crate::fault;
use crate::store::{Checkpoint, Loaded, StateStore, apply_all, refused};

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
            group_commit_window: Duration::from_micros(200),
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
    /// (default 10 s).
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
    /// Default 200 µs; zero turns waiting off.
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
struct Inner {
    root: PathBuf,
    options: FileStoreOptions,
    recoveries: Mutex<Vec<Recovery>>,
}

impl Inner {
    fn report(&self, r: Recovery) {
        self.recoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
    }
}

#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<Request>,
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

const META: &str = "meta.json";
const EVENTS: &str = "events.jsonl";
const LOCK: &str = "lock";
const SNAPSHOTS: &str = "snapshots";
const STATE: &str = "state.json";
const CHECKPOINTS: &str = "checkpoints.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    schema_version: u32,
    id: MilestoneId,
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

    fn sender(&self, id: &MilestoneId, fresh: bool) -> Result<mpsc::Sender<Request>, StoreError> {
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
        let request = make(reply);
        if let Err(mpsc::SendError(request)) = self.sender(id, false)?.send(request) {
            // The writer stopped (its milestone was deleted or replaced): start a fresh one.
            self.sender(id, true)?
                .send(request)
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

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Request {
    Append {
        expected: u64,
        events: Vec<Event>,
        jsons: Vec<Vec<u8>>,
        reply: Reply<u64>,
    },
    Load(Reply<Loaded>),
    Checkpoint {
        label: String,
        at: Timestamp,
        reply: Reply<Checkpoint>,
    },
    Checkpoints(Reply<Vec<Checkpoint>>),
    Restore {
        label: String,
        at: Timestamp,
        reply: Reply<u64>,
    },
    Read {
        from: u64,
        reply: Reply<Vec<Event>>,
    },
    Snapshot(Reply<u64>),
    Export(Reply<u64>),
    Delete(Reply<()>),
}

impl Request {
    fn fail(self, e: StoreError) {
        match self {
            Request::Append { reply, .. }
            | Request::Restore { reply, .. }
            | Request::Snapshot(reply)
            | Request::Export(reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Load(reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Checkpoint { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::Checkpoints(reply) => {
                let _ = reply.send(Err(e));
            }
            Request::Read { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Request::Delete(reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// A copy of an error for each of several callers (`io::Error` is not `Clone`).
fn dup(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound { what } => StoreError::NotFound { what: what.clone() },
        StoreError::AlreadyExists { id } => StoreError::AlreadyExists { id: id.clone() },
        StoreError::Conflict {
            id,
            expected,
            actual,
        } => StoreError::Conflict {
            id: id.clone(),
            expected: *expected,
            actual: *actual,
        },
        StoreError::Locked { id, waited_ms } => StoreError::Locked {
            id: id.clone(),
            waited_ms: *waited_ms,
        },
        StoreError::Corrupt {
            file,
            position,
            reason,
        } => StoreError::Corrupt {
            file: file.clone(),
            position: position.clone(),
            reason: reason.clone(),
        },
        StoreError::UnsupportedSchema {
            file,
            found,
            supported,
        } => StoreError::UnsupportedSchema {
            file: file.clone(),
            found: *found,
            supported: *supported,
        },
        StoreError::InvalidInput { reason } => StoreError::InvalidInput {
            reason: reason.clone(),
        },
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: io::Error::new(source.kind(), source.to_string()),
        },
    }
}

/// The cached fold of the log, valid while the lock is held after a catch-up.
#[derive(Debug)]
struct Cache {
    state: MilestoneState,
    version: u64,
    end_offset: u64,
    /// The snapshot this cache started from: (version, log offset).
    snap: Option<(u64, u64)>,
    checkpoints: Vec<Checkpoint>,
    last_snapshot: u64,
}

/// Appends staged for one write + fdatasync.
#[derive(Default)]
struct Group {
    bytes: Vec<u8>,
    count: u64,
    entries: Vec<Staged>,
}

struct Staged {
    version: u64,
    events: Vec<Event>,
    reply: Reply<u64>,
}

struct Writer {
    inner: Arc<Inner>,
    id: MilestoneId,
    dir: PathBuf,
    dir_ino: u64,
    log_path: PathBuf,
    log: File,
    lock_path: PathBuf,
    lock: Arc<File>,
    cache: Option<Cache>,
    temps_checked: bool,
    /// Appends in the last group written (drives the group-commit window).
    last_group: usize,
}

impl Writer {
    fn open(inner: Arc<Inner>, id: MilestoneId) -> Result<Writer, StoreError> {
        let dir = inner.root.join(id.as_str());
        let dir_ino = match no_symlink(&dir)? {
            Some(m) if m.is_dir() => m.ino(),
            Some(_) => {
                return Err(StoreError::Corrupt {
                    file: dir,
                    position: "whole file".into(),
                    reason: "is not a directory".into(),
                });
            }
            None => return Err(StoreError::milestone_not_found(&id)),
        };
        let log_path = dir.join(EVENTS);
        let log = match fsutil::open_rw(&log_path) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::milestone_not_found(&id));
            }
            other => other?,
        };
        let lock_path = dir.join(LOCK);
        let lock = match fsutil::open_rw(&lock_path) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                fs::OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(&lock_path)
                    .at(&lock_path)?
            }
            other => other?,
        };
        Ok(Writer {
            inner,
            id,
            dir,
            dir_ino,
            log_path,
            log,
            lock_path,
            lock: Arc::new(lock),
            cache: None,
            temps_checked: false,
            last_group: 0,
        })
    }

    fn options(&self) -> &FileStoreOptions {
        &self.inner.options
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            if self.serve(first, &rx) {
                return;
            }
        }
    }

    /// Serves `first` and everything that arrives while the lock is taken and the group is
    /// staged (so that a burst of appends shares one write and one fdatasync); returns true when
    /// the writer must stop.
    fn serve(&mut self, first: Request, rx: &mpsc::Receiver<Request>) -> bool {
        let lock = self.lock.clone();
        let guard = match fsutil::lock(
            &lock,
            &self.lock_path,
            &self.id,
            self.options().lock_timeout,
        ) {
            Ok(g) => g,
            Err(e) => {
                first.fail(dup(&e));
                while let Ok(r) = rx.try_recv() {
                    r.fail(dup(&e));
                }
                return false;
            }
        };
        let stop = match self.prepare() {
            Err((e, stop)) => {
                self.cache = None;
                first.fail(dup(&e));
                while let Ok(r) = rx.try_recv() {
                    r.fail(dup(&e));
                }
                stop
            }
            Ok(()) => self.serve_locked(first, rx),
        };
        drop(guard);
        stop
    }

    fn serve_locked(&mut self, first: Request, rx: &mpsc::Receiver<Request>) -> bool {
        const MAX_BATCH: usize = 4096;
        let mut group = Group::default();
        let mut next = Some(first);
        let mut served = 0;
        while let Some(request) = next.take() {
            served += 1;
            match request {
                Request::Append {
                    expected,
                    events,
                    jsons,
                    reply,
                } => self.stage(&mut group, expected, events, &jsons, reply),
                Request::Delete(reply) => {
                    self.flush(&mut group);
                    let result = self.delete();
                    let deleted = result.is_ok();
                    let _ = reply.send(result);
                    if deleted {
                        while let Ok(r) = rx.try_recv() {
                            r.fail(StoreError::milestone_not_found(&self.id));
                        }
                        return true;
                    }
                }
                other => {
                    self.flush(&mut group);
                    self.serve_one(other);
                }
            }
            if served < MAX_BATCH {
                next = rx.try_recv().ok();
                if next.is_none() && !group.entries.is_empty() && self.last_group > 1 {
                    next = self.linger(rx);
                }
            }
        }
        self.flush(&mut group);
        self.maybe_snapshot();
        false
    }

    /// Waits up to the group-commit window for one more request. Only called when the previous
    /// group had several appends (concurrent writers are about), so a lone writer never waits.
    fn linger(&self, rx: &mpsc::Receiver<Request>) -> Option<Request> {
        let window = self.options().group_commit_window;
        if window.is_zero() {
            return None;
        }
        let deadline = std::time::Instant::now() + window;
        loop {
            std::thread::yield_now();
            if let Ok(r) = rx.try_recv() {
                return Some(r);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn serve_one(&mut self, request: Request) {
        match request {
            Request::Load(reply) => {
                let r = self.with_cache(|c| {
                    Ok(Loaded {
                        state: c.state.clone(),
                        version: c.version,
                    })
                });
                let _ = reply.send(r);
            }
            Request::Checkpoints(reply) => {
                let _ = reply.send(self.with_cache(|c| Ok(c.checkpoints.clone())));
            }
            Request::Checkpoint { label, at, reply } => {
                let _ = reply.send(self.checkpoint(label, at));
            }
            Request::Restore { label, at, reply } => {
                let _ = reply.send(self.restore(&label, at));
            }
            Request::Read { from, reply } => {
                let _ = reply.send(self.read(from));
            }
            Request::Snapshot(reply) => {
                let _ = reply.send(self.write_snapshot());
            }
            Request::Export(reply) => {
                let _ = reply.send(self.export());
            }
            Request::Append { reply, .. } => {
                let _ = reply.send(Err(StoreError::invalid("internal: unexpected append")));
            }
            Request::Delete(reply) => {
                let _ = reply.send(Err(StoreError::invalid("internal: unexpected delete")));
            }
        }
    }

    fn with_cache<T>(
        &mut self,
        f: impl FnOnce(&mut Cache) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.cache.is_none() {
            self.prepare().map_err(|(e, _)| e)?;
        }
        match self.cache.as_mut() {
            Some(c) => f(c),
            None => Err(StoreError::invalid("internal: no cached state")),
        }
    }

    /// Under the lock: removes stray temps once, checks the milestone is still this directory,
    /// and brings the cache up to the end of the log. The flag says whether to stop the writer.
    fn prepare(&mut self) -> Result<(), (StoreError, bool)> {
        match no_symlink(&self.dir).map_err(|e| (e, false))? {
            Some(m) if m.is_dir() && m.ino() == self.dir_ino => {}
            Some(_) => {
                return Err((
                    io_err(
                        &self.dir,
                        io::Error::other("the milestone was replaced by another process; retry"),
                    ),
                    true,
                ));
            }
            None => return Err((StoreError::milestone_not_found(&self.id), true)),
        }
        if !self.temps_checked {
            let snaps = self.dir.join(SNAPSHOTS);
            if no_symlink(&snaps).map_err(|e| (e, false))?.is_none() {
                fsutil::create_dir(&snaps).map_err(|e| (e, false))?;
            }
            for d in [self.dir.clone(), snaps] {
                for file in fsutil::remove_temps(&d).map_err(|e| (e, false))? {
                    self.inner.report(Recovery::TempRemoved { file });
                }
            }
            self.temps_checked = true;
        }
        self.catch_up().map_err(|e| (e, false))
    }

    fn catch_up(&mut self) -> Result<(), StoreError> {
        let Some(mut cache) = self.cache.take() else {
            self.cache = Some(self.full_load()?);
            return Ok(());
        };
        let len = self.log.metadata().at(&self.log_path)?.len();
        if len == cache.end_offset {
            self.cache = Some(cache);
            return Ok(());
        }
        if len < cache.end_offset {
            return Err(StoreError::Corrupt {
                file: self.log_path.clone(),
                position: format!("byte {len}"),
                reason: format!(
                    "the log shrank from {} to {len} bytes, below acknowledged events",
                    cache.end_offset
                ),
            });
        }
        let max_line = self.options().max_line_bytes;
        let scan = log::scan(
            &self.log,
            &self.log_path,
            cache.end_offset,
            cache.version,
            max_line,
            |seq, event| {
                note_checkpoint(&mut cache.checkpoints, seq, &event);
                cache
                    .state
                    .apply(&event)
                    .map_err(|e| format!("event does not apply to the state: {e}"))?;
                Ok(Next::Continue)
            },
        )?;
        cache.version = scan.version;
        cache.end_offset = scan.end_offset;
        if let Some(torn) = scan.torn {
            self.cut(torn, len)?;
        }
        self.cache = Some(cache);
        Ok(())
    }

    fn cut(&mut self, torn: log::Torn, len: u64) -> Result<(), StoreError> {
        if torn.offset == 0 {
            return Err(StoreError::Corrupt {
                file: self.log_path.clone(),
                position: "line 1".into(),
                reason: torn.reason,
            });
        }
        self.log.set_len(torn.offset).at(&self.log_path)?;
        self.log.sync_data().at(&self.log_path)?;
        self.inner.report(Recovery::TornTailCut {
            file: self.log_path.clone(),
            offset: torn.offset,
            bytes: len.saturating_sub(torn.offset),
            reason: torn.reason,
        });
        Ok(())
    }

    fn check_meta(&self) -> Result<(), StoreError> {
        let path = self.dir.join(META);
        let corrupt = |reason: String| StoreError::Corrupt {
            file: path.clone(),
            position: "whole file".into(),
            reason,
        };
        match no_symlink(&path)? {
            Some(m) if m.is_file() && m.len() <= 64 << 10 => {}
            Some(_) => return Err(corrupt("not a small regular file".into())),
            None => return Err(corrupt("missing".into())),
        }
        let text = fs::read_to_string(&path).at(&path)?;
        match milestone_core::load::check_schema_version("store metadata", &text, FORMAT_VERSION) {
            Ok(_) => {}
            Err(milestone_core::LoadError::UnsupportedSchema {
                found, supported, ..
            }) => {
                return Err(StoreError::UnsupportedSchema {
                    file: path,
                    found,
                    supported,
                });
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
        let meta: Meta = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if meta.id != self.id {
            return Err(corrupt(format!(
                "belongs to milestone {:?}, found in directory {:?}",
                meta.id.as_str(),
                self.id.as_str()
            )));
        }
        Ok(())
    }

    /// Newest valid snapshot + replay of the tail (or a full replay).
    fn full_load(&mut self) -> Result<Cache, StoreError> {
        self.check_meta()?;
        let len = self.log.metadata().at(&self.log_path)?.len();
        if len > self.options().max_file_bytes {
            return Err(StoreError::Corrupt {
                file: self.log_path.clone(),
                position: "whole file".into(),
                reason: format!(
                    "{len} bytes, over the limit of {}",
                    self.options().max_file_bytes
                ),
            });
        }
        if len == 0 {
            return Err(StoreError::Corrupt {
                file: self.log_path.clone(),
                position: "whole file".into(),
                reason: "the event log is empty (it always holds the created event)".into(),
            });
        }
        let snaps = self.dir.join(SNAPSHOTS);
        for (version, path) in snapshot::list(&snaps)? {
            let skip = |reason: String| Recovery::SnapshotSkipped {
                file: path.clone(),
                reason,
            };
            let snap = match snapshot::read(&path, self.options().max_file_bytes) {
                Ok(s) => s,
                Err(e @ StoreError::UnsupportedSchema { .. }) => return Err(e),
                Err(e) => {
                    self.inner.report(skip(e.to_string()));
                    continue;
                }
            };
            if snap.version != version || snap.log_offset > len || snap.log_offset == 0 {
                self.inner.report(skip(
                    "its version or log offset does not match the log".into(),
                ));
                continue;
            }
            match self.replay(Some(snap), len) {
                Ok(cache) => return Ok(cache),
                Err(e) => self
                    .inner
                    .report(skip(format!("the log after it does not replay: {e}"))),
            }
        }
        self.replay(None, len)
    }

    fn replay(&mut self, snap: Option<snapshot::Snapshot>, len: u64) -> Result<Cache, StoreError> {
        let (mut state, version, offset, mut checkpoints, from) = match snap {
            Some(s) => (
                Some(s.state),
                s.version,
                s.log_offset,
                s.checkpoints,
                Some((s.version, s.log_offset)),
            ),
            None => (None, 0, 0, Vec::new(), None),
        };
        let id = self.id.clone();
        let scan = log::scan(
            &self.log,
            &self.log_path,
            offset,
            version,
            self.options().max_line_bytes,
            |seq, event| {
                note_checkpoint(&mut checkpoints, seq, &event);
                match &mut state {
                    None => {
                        let s = MilestoneState::from_created(&event)
                            .map_err(|e| format!("the first event is not a creation: {e}"))?;
                        if *s.id() != id {
                            return Err(format!(
                                "the log creates milestone {:?}, not {:?}",
                                s.id().as_str(),
                                id.as_str()
                            ));
                        }
                        state = Some(s);
                    }
                    Some(s) => s
                        .apply(&event)
                        .map_err(|e| format!("event does not apply to the state: {e}"))?,
                }
                Ok(Next::Continue)
            },
        )?;
        if let Some(torn) = scan.torn {
            if from.is_some() && torn.offset <= offset {
                return Err(StoreError::Corrupt {
                    file: self.log_path.clone(),
                    position: format!("byte {offset}"),
                    reason: "the snapshot's log position is not the start of a line".into(),
                });
            }
            self.cut(torn, len)?;
        }
        let Some(state) = state else {
            return Err(StoreError::Corrupt {
                file: self.log_path.clone(),
                position: "line 1".into(),
                reason: "the log holds no complete event".into(),
            });
        };
        Ok(Cache {
            state,
            version: scan.version,
            end_offset: scan.end_offset,
            snap: from,
            checkpoints,
            last_snapshot: from.map_or(0, |f| f.0),
        })
    }

    fn stage(
        &mut self,
        group: &mut Group,
        expected: u64,
        events: Vec<Event>,
        jsons: &[Vec<u8>],
        reply: Reply<u64>,
    ) {
        if self.cache.is_none()
            && let Err((e, _)) = self.prepare()
        {
            let _ = reply.send(Err(e));
            return;
        }
        let max_file = self.options().max_file_bytes;
        let Some(cache) = self.cache.as_mut() else {
            let _ = reply.send(Err(StoreError::invalid("internal: no cached state")));
            return;
        };
        let pending = cache.version + group.count;
        if expected != pending {
            let _ = reply.send(Err(StoreError::Conflict {
                id: self.id.clone(),
                expected,
                actual: pending,
            }));
            return;
        }
        let n = events.len() as u64;
        let mark = group.bytes.len();
        for (i, json) in jsons.iter().enumerate() {
            log::encode(&mut group.bytes, pending + 1 + i as u64, pending + n, json);
        }
        if cache.end_offset + group.bytes.len() as u64 > max_file {
            group.bytes.truncate(mark);
            let _ = reply.send(Err(StoreError::invalid(format!(
                "the log of milestone {} would grow over {max_file} bytes",
                self.id
            ))));
            return;
        }
        if let Err((index, err)) = apply_all(&mut cache.state, &events) {
            group.bytes.truncate(mark);
            let _ = reply.send(Err(refused(index, &err)));
            if index > 0 {
                self.rebuild(group);
            }
            return;
        }
        group.count += n;
        group.entries.push(Staged {
            version: pending + n,
            events,
            reply,
        });
    }

    /// Rebuilds the cache from disk plus the group's staged appends (after a batch was refused
    /// half-way through being applied).
    fn rebuild(&mut self, group: &mut Group) {
        self.cache = None;
        let result = self.full_load().and_then(|mut cache| {
            for staged in &group.entries {
                apply_all(&mut cache.state, &staged.events).map_err(|(i, e)| refused(i, &e))?;
            }
            Ok(cache)
        });
        match result {
            Ok(cache) => self.cache = Some(cache),
            Err(e) => {
                for staged in group.entries.drain(..) {
                    let _ = staged.reply.send(Err(dup(&e)));
                }
                group.bytes.clear();
                group.count = 0;
            }
        }
    }

    fn flush(&mut self, group: &mut Group) {
        let group = std::mem::take(group);
        if group.entries.is_empty() {
            return;
        }
        let Some(cache) = self.cache.as_mut() else {
            for staged in group.entries {
                let _ = staged
                    .reply
                    .send(Err(StoreError::invalid("internal: no cached state")));
            }
            return;
        };
        let mut log = &self.log;
        let written = if group.bytes.is_empty() {
            Ok(())
        } else {
            fault::write_all(&mut log, &group.bytes, "append-mid-write")
                .and_then(|()| self.log.sync_data())
        };
        match written {
            Ok(()) => {
                self.last_group = group.entries.len();
                let first = cache.version + 1;
                let mut seq = first;
                for staged in &group.entries {
                    for e in &staged.events {
                        note_checkpoint(&mut cache.checkpoints, seq, e);
                        seq += 1;
                    }
                }
                cache.version += group.count;
                cache.end_offset += group.bytes.len() as u64;
                fault::point("append-before-ack");
                for staged in group.entries {
                    let _ = staged.reply.send(Ok(staged.version));
                }
            }
            Err(source) => {
                // Nothing of the group was acknowledged: cut whatever reached the file and forget
                // the cache, which holds the group's events.
                let _ = self.log.set_len(cache.end_offset);
                let _ = self.log.sync_data();
                self.cache = None;
                let e = io_err(&self.log_path, source);
                for staged in group.entries {
                    let _ = staged.reply.send(Err(dup(&e)));
                }
            }
        }
    }

    /// Appends one event on behalf of the store itself (checkpoint, restore).
    fn append_internal(&mut self, event: Event) -> Result<u64, StoreError> {
        let json = encode_event(&event, self.options().max_line_bytes)?;
        let expected = self.with_cache(|c| Ok(c.version))?;
        let mut group = Group::default();
        let (reply, mut rx) = oneshot::channel();
        self.stage(&mut group, expected, vec![event], &[json], reply);
        self.flush(&mut group);
        match rx.try_recv() {
            Ok(Some(result)) => result,
            _ => Err(StoreError::invalid("internal: append was not answered")),
        }
    }

    fn checkpoint(&mut self, label: String, at: Timestamp) -> Result<Checkpoint, StoreError> {
        let version = self.append_internal(Event::CheckpointRecorded {
            at,
            label: label.clone(),
        })?;
        // The checkpoint is durable in the log; its snapshot and the exported index only make
        // restores and other tools faster, so their failure does not undo it.
        let _ = self.write_snapshot();
        Ok(Checkpoint { label, version, at })
    }

    fn restore(&mut self, label: &str, at: Timestamp) -> Result<u64, StoreError> {
        let found = self.with_cache(|c| {
            Ok(c.checkpoints
                .iter()
                .rev()
                .find(|cp| cp.label == label)
                .cloned())
        })?;
        let Some(cp) = found else {
            return Err(StoreError::checkpoint_not_found(&self.id, label));
        };
        let state = self.state_at(cp.version)?;
        self.append_internal(Event::RolledBack {
            at,
            label: label.to_owned(),
            state: Box::new(state),
        })
    }

    /// The state after `version` events: its snapshot if valid, else a replay from the start.
    fn state_at(&mut self, version: u64) -> Result<MilestoneState, StoreError> {
        let path = self.dir.join(SNAPSHOTS).join(snapshot::file_name(version));
        if no_symlink(&path)?.is_some() {
            match snapshot::read(&path, self.options().max_file_bytes) {
                Ok(s) if s.version == version => return Ok(s.state),
                Ok(_) => {}
                Err(e) => self.inner.report(Recovery::SnapshotSkipped {
                    file: path,
                    reason: e.to_string(),
                }),
            }
        }
        let mut state: Option<MilestoneState> = None;
        log::scan(
            &self.log,
            &self.log_path,
            0,
            0,
            self.options().max_line_bytes,
            |seq, event| {
                match &mut state {
                    None => {
                        state =
                            Some(MilestoneState::from_created(&event).map_err(|e| e.to_string())?);
                    }
                    Some(s) => s.apply(&event).map_err(|e| e.to_string())?,
                }
                Ok(if seq >= version {
                    Next::Stop
                } else {
                    Next::Continue
                })
            },
        )?;
        state.ok_or_else(|| StoreError::checkpoint_not_found(&self.id, "(empty log)"))
    }

    fn read(&mut self, from: u64) -> Result<Vec<Event>, StoreError> {
        let (version, start) = self.with_cache(|c| {
            let start = match c.snap {
                Some((v, off)) if v <= from => (v, off),
                _ => (0, 0),
            };
            Ok((c.version, start))
        })?;
        let mut out = Vec::new();
        if from >= version {
            return Ok(out);
        }
        let cap = usize::try_from(version - from).unwrap_or(0).min(1 << 20);
        out.reserve(cap);
        log::scan(
            &self.log,
            &self.log_path,
            start.1,
            start.0,
            self.options().max_line_bytes,
            |seq, event| {
                if seq > from {
                    out.push(event);
                }
                Ok(if seq >= version {
                    Next::Stop
                } else {
                    Next::Continue
                })
            },
        )?;
        Ok(out)
    }

    fn maybe_snapshot(&mut self) {
        let every = self.options().snapshot_every;
        let due = self
            .cache
            .as_ref()
            .is_some_and(|c| every > 0 && c.version - c.last_snapshot >= every);
        if due {
            // Snapshots only speed up loading; a failure here leaves the log untouched and is
            // retried after the next append.
            let _ = self.write_snapshot();
        }
    }

    fn write_snapshot(&mut self) -> Result<u64, StoreError> {
        let dir = self.dir.clone();
        let snaps = dir.join(SNAPSHOTS);
        let keep = self.options().keep_snapshots;
        if self.cache.is_none() {
            self.prepare().map_err(|(e, _)| e)?;
        }
        let Some(c) = self.cache.as_mut() else {
            return Err(StoreError::invalid("internal: no cached state"));
        };
        let state_json = serde_json::to_vec(&c.state)
            .map_err(|e| StoreError::invalid(format!("cannot serialize the state: {e}")))?;
        let bytes = snapshot::encode(c.version, c.end_offset, &state_json, &c.checkpoints)?;
        fsutil::atomic_write(&snaps, &snapshot::file_name(c.version), &bytes)?;
        c.snap = Some((c.version, c.end_offset));
        c.last_snapshot = c.version;
        let version = c.version;
        let checkpoints = c.checkpoints.clone();
        fault::point("snapshot-during");
        fsutil::atomic_write(&dir, STATE, &state_json)?;
        write_checkpoints(&dir, &checkpoints)?;
        // Prune: keep the newest `keep` and every checkpoint's snapshot.
        let mut kept = 0;
        for (v, path) in snapshot::list(&snaps)? {
            if checkpoints.iter().any(|cp| cp.version == v) {
                continue;
            }
            kept += 1;
            if kept > keep && v < version {
                fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(version)
    }

    fn export(&mut self) -> Result<u64, StoreError> {
        let dir = self.dir.clone();
        let (json, version, checkpoints) = self.with_cache(|c| {
            let json = serde_json::to_vec(&c.state)
                .map_err(|e| StoreError::invalid(format!("cannot serialize the state: {e}")))?;
            Ok((json, c.version, c.checkpoints.clone()))
        })?;
        fsutil::atomic_write(&dir, STATE, &json)?;
        write_checkpoints(&dir, &checkpoints)?;
        Ok(version)
    }

    fn delete(&mut self) -> Result<(), StoreError> {
        let root = self.inner.root.clone();
        let trash = fsutil::temp_path(&root, &format!("deleted-{}", self.id));
        fs::rename(&self.dir, &trash).at(&self.dir)?;
        fsutil::sync_dir(&root)?;
        self.cache = None;
        fs::remove_dir_all(&trash).at(&trash)
    }
}

fn write_checkpoints(dir: &Path, checkpoints: &[Checkpoint]) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(checkpoints)
        .map_err(|e| StoreError::invalid(format!("cannot serialize checkpoints: {e}")))?;
    fsutil::atomic_write(dir, CHECKPOINTS, &json)
}

fn note_checkpoint(checkpoints: &mut Vec<Checkpoint>, seq: u64, event: &Event) {
    if let Event::CheckpointRecorded { at, label } = event {
        checkpoints.push(Checkpoint {
            label: label.clone(),
            version: seq,
            at: *at,
        });
    }
}

fn encode_event(event: &Event, max_line: usize) -> Result<Vec<u8>, StoreError> {
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
