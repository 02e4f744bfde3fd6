//! The writer thread of one open milestone: it serves every request for that milestone under
//! the milestone's lock, commits appends in groups, and keeps the cached fold of the log. See
//! the parent module for the protocol.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use futures::channel::oneshot;
use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp};

use super::fsutil::{self, IoContext, io_err, locked, no_symlink};
use super::log::{self, Next};
use super::snapshot::{self, FORMAT_VERSION};
use super::{
    CHECKPOINTS, EVENTS, FileStoreOptions, Inner, LOCK, META, Meta, Recovery, SNAPSHOTS, STATE,
    encode_event,
};
use crate::error::StoreError;
use crate::fault;
use crate::store::{Checkpoint, Loaded, apply_all, refused};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Request {
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

/// A request with the time it was made: its lock wait ([`FileStoreOptions::lock_timeout`]) is
/// counted from then, so that a request that arrives while the writer waits for the lock on
/// behalf of earlier ones gets a wait of its own, never an earlier request's answer.
pub(super) struct Queued {
    pub(super) at: Instant,
    pub(super) request: Request,
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

pub(super) struct Writer {
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
    pub(super) fn open(inner: Arc<Inner>, id: MilestoneId) -> Result<Writer, StoreError> {
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

    pub(super) fn run(mut self, rx: mpsc::Receiver<Queued>) {
        while let Ok(first) = rx.recv() {
            if self.serve(first, &rx) {
                return;
            }
        }
    }

    /// Serves `first` and everything that arrives while the lock is taken and the group is
    /// staged (so that a burst of appends shares one write and one fdatasync); returns true when
    /// the writer must stop.
    ///
    /// Whenever requests are failed together, everything queued is taken off the channel
    /// *before* the first answer is sent: a request made after its caller (or any caller) saw
    /// an answer is then never failed with that answer's error, without an attempt of its own.
    fn serve(&mut self, first: Queued, rx: &mpsc::Receiver<Queued>) -> bool {
        let lock = self.lock.clone();
        let timeout = self.options().lock_timeout;
        let mut waiting = VecDeque::from([first]);
        let guard = loop {
            // The request made first has the earliest deadline.
            let Some(since) = waiting.iter().map(|q| q.at).min() else {
                return false;
            };
            match fsutil::lock(&lock, &self.lock_path, &self.id, since, timeout) {
                Ok(g) => break g,
                Err(e) => {
                    let now = Instant::now();
                    waiting.extend(rx.try_iter());
                    if !matches!(e, StoreError::Locked { .. }) {
                        for q in waiting {
                            q.request.fail(dup(&e));
                        }
                        return false;
                    }
                    // Only requests that have waited their whole timeout get `Locked`, each
                    // with its own wait; the others keep waiting for the lock.
                    let (expired, rest) = waiting
                        .into_iter()
                        .partition::<Vec<_>, _>(|q| now.duration_since(q.at) >= timeout);
                    for q in expired {
                        q.request.fail(locked(&self.id, now.duration_since(q.at)));
                    }
                    waiting = rest.into();
                }
            }
        };
        let stop = match self.prepare() {
            Err((e, stop)) => {
                self.cache = None;
                waiting.extend(rx.try_iter());
                for q in waiting {
                    q.request.fail(dup(&e));
                }
                stop
            }
            Ok(()) => self.serve_locked(waiting, rx),
        };
        drop(guard);
        stop
    }

    /// Serves the requests in `waiting`, then what the channel holds (up to a batch limit).
    fn serve_locked(&mut self, mut waiting: VecDeque<Queued>, rx: &mpsc::Receiver<Queued>) -> bool {
        const MAX_BATCH: usize = 4096;
        let mut group = Group::default();
        let mut next = waiting.pop_front();
        let mut served = 0;
        while let Some(Queued { request, .. }) = next.take() {
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
                    if result.is_ok() {
                        // Everything queued before the answer was for the deleted milestone.
                        waiting.extend(rx.try_iter());
                        let _ = reply.send(result);
                        for q in waiting {
                            q.request.fail(StoreError::milestone_not_found(&self.id));
                        }
                        return true;
                    }
                    let _ = reply.send(result);
                }
                other => {
                    self.flush(&mut group);
                    self.serve_one(other);
                }
            }
            next = waiting.pop_front();
            if next.is_none() && served < MAX_BATCH {
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
    fn linger(&self, rx: &mpsc::Receiver<Queued>) -> Option<Queued> {
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
            // Every event takes more than one byte of log, so a version above the offset is a
            // crafted or damaged header (and would overflow the replay's arithmetic).
            if snap.version != version
                || snap.log_offset > len
                || snap.log_offset == 0
                || snap.version > snap.log_offset
                || !self.newline_before(snap.log_offset)
            {
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

    /// Whether the log byte just before `offset` is a newline (a snapshot's position must be
    /// the start of a line).
    fn newline_before(&self, offset: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let mut byte = [0u8; 1];
        offset > 0 && self.log.read_exact_at(&mut byte, offset - 1).is_ok() && byte[0] == b'\n'
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
            if from.is_some() && torn.offset < offset {
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
                if !group.bytes.is_empty() {
                    self.inner.groups.fetch_add(1, Ordering::Relaxed);
                }
                self.inner
                    .appends
                    .fetch_add(group.entries.len() as u64, Ordering::Relaxed);
                self.inner.events.fetch_add(group.count, Ordering::Relaxed);
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
        state.ok_or_else(|| StoreError::Corrupt {
            file: self.log_path.clone(),
            position: "line 1".into(),
            reason: "the log holds no complete event".into(),
        })
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
