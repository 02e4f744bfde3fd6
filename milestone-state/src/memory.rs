//! [`InMemory`]: the reference [`StateStore`], always compiled.
//!
//! It keeps each milestone's log, its current state and the log position of every checkpoint in
//! a mutex-guarded map. Nothing is durable; everything else in the contract holds, which makes it
//! the store for tests, examples and hosts that persist elsewhere.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp};

use crate::error::{StoreError, check_label};
use crate::store::{Checkpoint, Loaded, StateStore, refused};

/// An event log kept as the batches appended (a batch handed over by
/// [`StateStore::append_from`] is kept as it is: no copy, and no copy of the whole log when it
/// grows).
#[derive(Debug, Default)]
struct Log {
    chunks: Vec<Vec<Event>>,
    len: usize,
}

/// Batches smaller than this are copied into the last chunk rather than kept on their own.
const SMALL_BATCH: usize = 32;

impl Log {
    fn len(&self) -> usize {
        self.len
    }

    /// The chunk a batch of `n` events is copied into: the last one while it has room for a
    /// small batch, else a new one; `None` for a large batch, which becomes a chunk itself.
    fn room_for(&mut self, n: usize) -> Option<&mut Vec<Event>> {
        if n >= SMALL_BATCH {
            return None;
        }
        if self
            .chunks
            .last()
            .is_none_or(|last| last.len() >= 4 * SMALL_BATCH)
        {
            self.chunks.push(Vec::with_capacity(4 * SMALL_BATCH));
        }
        self.chunks.last_mut()
    }

    /// Takes the events out of `batch`: a small one is moved into the last chunk (the caller
    /// keeps its buffer), a large one becomes a chunk of its own, buffer and all.
    fn take_batch(&mut self, batch: &mut Vec<Event>) {
        self.len += batch.len();
        if let Some(chunk) = self.room_for(batch.len()) {
            chunk.append(batch);
            return;
        }
        if batch.capacity() > batch.len() + batch.len() / 4 {
            batch.shrink_to_fit();
        }
        self.chunks.push(std::mem::take(batch));
    }

    fn extend_from_slice(&mut self, events: &[Event]) {
        self.len += events.len();
        match self.room_for(events.len()) {
            Some(chunk) => chunk.extend_from_slice(events),
            None => self.chunks.push(events.to_vec()),
        }
    }

    /// The events from position `from` on, in order.
    fn iter_from(&self, from: usize) -> impl Iterator<Item = &Event> {
        let mut skip = from;
        self.chunks
            .iter()
            .filter_map(move |c| {
                if skip >= c.len() {
                    skip -= c.len();
                    None
                } else {
                    let s = skip;
                    skip = 0;
                    Some(&c[s..])
                }
            })
            .flatten()
    }

    /// The events before position `upto`, folded.
    fn fold(&self, upto: usize) -> Result<MilestoneState, StoreError> {
        MilestoneState::from_events(self.iter_from(0).take(upto))
            .map_err(|e| StoreError::invalid(format!("stored log no longer folds: {e}")))
    }
}

#[derive(Debug)]
struct Entry {
    events: Log,
    state: MilestoneState,
    /// Checkpoints, by log position. A restore folds the log up to its checkpoint: restores are
    /// rare, while a copy of the state at every checkpoint would cost O(milestone) each time.
    checkpoints: Vec<Checkpoint>,
}

/// The in-memory store. Appends cost O(events appended): the state is updated in place.
///
/// Every [`Event::CheckpointRecorded`] appended (by [`StateStore::checkpoint`] or directly) is a
/// checkpoint; a restore folds the log up to it (O(log), but restores are rare, and no
/// checkpoint costs a copy of the state).
///
/// Validation: each event is applied to the current state as it is checked. When a later event
/// of a multi-event batch is refused, the earlier ones are undone by folding the stored log
/// again — O(milestone), but only on that error path; the common path never clones the state.
///
/// ```
/// use milestone_core::{Event, MilestoneId, Timestamp, Workflow};
/// use milestone_state::{memory::InMemory, StateStore};
///
/// futures::executor::block_on(async {
///     let store = InMemory::new();
///     let id = MilestoneId::new("m-1")?;
///     let created = Event::Created { at: Timestamp(0), id: id.clone(), title: "M".into(),
///         context: String::new(), workflow: Workflow::kiro(), seed: 0 };
///     assert_eq!(store.create(&created).await?, 1);
///     let v = store.append(&id, 1, &[Event::ExecutionStarted { at: Timestamp(1) }]).await?;
///     assert_eq!(store.load(&id).await?.version, v);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct InMemory {
    milestones: Mutex<BTreeMap<MilestoneId, Entry>>,
}

impl InMemory {
    /// An empty store.
    pub fn new() -> InMemory {
        InMemory::default()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<MilestoneId, Entry>> {
        // A panic while holding the lock cannot leave an entry half-updated (every mutation
        // below is completed or undone before returning), so a poisoned lock is still usable.
        self.milestones
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn entry<'a>(
    map: &'a mut BTreeMap<MilestoneId, Entry>,
    id: &MilestoneId,
) -> Result<&'a mut Entry, StoreError> {
    map.get_mut(id)
        .ok_or_else(|| StoreError::milestone_not_found(id))
}

fn append_locked(
    entry: &mut Entry,
    id: &MilestoneId,
    expected: u64,
    events: &[Event],
) -> Result<u64, StoreError> {
    check_locked(entry, id, expected, events)?;
    entry.events.extend_from_slice(events);
    Ok(entry.events.len() as u64)
}

/// Checks `events` against the entry and applies them to its state (all or none), recording
/// their checkpoints; the caller then stores them.
fn check_locked(
    entry: &mut Entry,
    id: &MilestoneId,
    expected: u64,
    events: &[Event],
) -> Result<(), StoreError> {
    let actual = entry.events.len() as u64;
    if expected != actual {
        return Err(StoreError::Conflict {
            id: id.clone(),
            expected,
            actual,
        });
    }
    let marks = entry.checkpoints.len();
    for (index, event) in events.iter().enumerate() {
        if let Err(err) = entry.state.apply(event) {
            entry.checkpoints.truncate(marks);
            if index > 0 {
                // Undo the events of this batch already applied: fold the stored log again.
                entry.state = entry.events.fold(usize::MAX)?;
            }
            return Err(refused(index, &err));
        }
        if let Event::CheckpointRecorded { at, label } = event {
            entry.checkpoints.push(Checkpoint {
                label: label.clone(),
                version: actual + 1 + index as u64,
                at: *at,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl StateStore for InMemory {
    async fn create(&self, created: &Event) -> Result<u64, StoreError> {
        let state = MilestoneState::from_created(created)
            .map_err(|e| StoreError::invalid(format!("cannot create a milestone: {e}")))?;
        let mut map = self.map();
        let id = state.id().clone();
        if map.contains_key(&id) {
            return Err(StoreError::AlreadyExists { id });
        }
        map.insert(
            id,
            Entry {
                events: Log {
                    chunks: vec![vec![created.clone()]],
                    len: 1,
                },
                state,
                checkpoints: Vec::new(),
            },
        );
        Ok(1)
    }

    async fn append(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64, StoreError> {
        let mut map = self.map();
        append_locked(entry(&mut map, id)?, id, expected_version, events)
    }

    /// Always answers: nothing here waits. (`append_from` is the trait's, which returns this
    /// answer.)
    fn append_now(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &mut Vec<Event>,
    ) -> Option<Result<u64, StoreError>> {
        let mut map = self.map();
        let checked = entry(&mut map, id)
            .and_then(|e| check_locked(e, id, expected_version, events).map(|()| e));
        Some(match checked {
            Ok(e) => {
                e.events.take_batch(events);
                Ok(e.events.len() as u64)
            }
            Err(err) => {
                events.clear();
                Err(err)
            }
        })
    }

    async fn load(&self, id: &MilestoneId) -> Result<Loaded, StoreError> {
        let mut map = self.map();
        let e = entry(&mut map, id)?;
        Ok(Loaded {
            state: e.state.clone(),
            version: e.events.len() as u64,
        })
    }

    async fn list(&self) -> Result<Vec<MilestoneId>, StoreError> {
        Ok(self.map().keys().cloned().collect())
    }

    async fn checkpoint(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<Checkpoint, StoreError> {
        check_label(label)?;
        let mut map = self.map();
        let e = entry(&mut map, id)?;
        let version = e.events.len() as u64;
        let event = Event::CheckpointRecorded {
            at,
            label: label.to_owned(),
        };
        let version = append_locked(e, id, version, std::slice::from_ref(&event))?;
        Ok(Checkpoint {
            label: label.to_owned(),
            version,
            at,
        })
    }

    async fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<Checkpoint>, StoreError> {
        let mut map = self.map();
        let e = entry(&mut map, id)?;
        Ok(e.checkpoints.clone())
    }

    async fn restore(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut map = self.map();
        let e = entry(&mut map, id)?;
        let Some(cp) = e.checkpoints.iter().rev().find(|c| c.label == label) else {
            return Err(StoreError::checkpoint_not_found(id, label));
        };
        // The state at the checkpoint: the fold of the log up to it.
        let upto = usize::try_from(cp.version)
            .unwrap_or(usize::MAX)
            .min(e.events.len());
        let state = e.events.fold(upto)?;
        let event = Event::RolledBack {
            at,
            label: label.to_owned(),
            state: Box::new(state),
        };
        let version = e.events.len() as u64;
        append_locked(e, id, version, std::slice::from_ref(&event))
    }

    async fn read_events(&self, id: &MilestoneId, from: u64) -> Result<Vec<Event>, StoreError> {
        let mut map = self.map();
        let e = entry(&mut map, id)?;
        let start = usize::try_from(from)
            .unwrap_or(usize::MAX)
            .min(e.events.len());
        let mut out = Vec::with_capacity(e.events.len() - start);
        out.extend(e.events.iter_from(start).cloned());
        Ok(out)
    }

    async fn snapshot(&self, id: &MilestoneId) -> Result<u64, StoreError> {
        let mut map = self.map();
        Ok(entry(&mut map, id)?.events.len() as u64)
    }

    async fn delete(&self, id: &MilestoneId) -> Result<(), StoreError> {
        self.map()
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| StoreError::milestone_not_found(id))
    }
}
