//! The [`StateStore`] trait, its value types and the [`update`] helper.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// A milestone's state as loaded: the fold of its log and the log's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The state after `version` events.
    pub state: MilestoneState,
    /// The number of events in the log (the `Created` event is version 1). Pass it as the
    /// expected version of the next [`StateStore::append`].
    pub version: u64,
}

/// A named checkpoint: a label for a position of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The label given by the caller.
    pub label: String,
    /// The log position it names: the version right after its `CheckpointRecorded` event.
    pub version: u64,
    /// When it was taken.
    pub at: Timestamp,
}

/// Durable, versioned storage of milestones as event logs.
///
/// # Contract
///
/// Every implementation guarantees the following; the public `testing` module checks
/// it (feature `testing`).
///
/// - **The log is the truth.** A milestone is its event log; its state is
///   [`MilestoneState::from_events`] of the log. The *version* is the number of events; the
///   `Created` event that [`create`](StateStore::create) writes is version 1.
/// - **Compare-and-swap appends.** [`append`](StateStore::append) writes only when
///   `expected_version` equals the current version, else it returns
///   [`StoreError::Conflict`] and writes nothing: two writers never lose an update. The events of
///   one call are written all or nothing and get consecutive versions.
/// - **Validated appends.** Events that do not apply to the state (per
///   [`MilestoneState::apply`]) are refused with [`StoreError::InvalidInput`] and nothing of the
///   call is written. An empty slice writes nothing and returns the current version (after the
///   version check).
/// - **Acknowledged means durable** (for durable stores): once `append` returns `Ok`, the events
///   survive a crash of the process or the machine.
/// - **Load** returns the state and version of the latest acknowledged append (a snapshot plus
///   a replay of the tail is an implementation detail that must not show).
/// - **Checkpoints** name a log position; [`restore`](StateStore::restore) appends an
///   [`Event::RolledBack`] carrying the state at that position — history is never rewritten.
///   When a label was used more than once, the latest checkpoint with it is restored.
/// - **Reads** of the log from any position return exactly the events appended, in order.
/// - **Delete** removes a milestone; afterwards it is [`StoreError::NotFound`] and its id may be
///   created again.
/// - Unknown milestones give [`StoreError::NotFound`]; nothing panics on bad input.
#[async_trait]
pub trait StateStore: Debug + Send + Sync {
    /// Creates a milestone from its [`Event::Created`] event and returns version 1.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`]; [`StoreError::InvalidInput`] if `created` is another event.
    async fn create(&self, created: &Event) -> Result<u64, StoreError>;

    /// Appends `events` if the milestone is at `expected_version`; returns the new version.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] on a stale version, [`StoreError::InvalidInput`] when an event
    /// does not apply, [`StoreError::NotFound`], [`StoreError::Locked`], I/O errors.
    async fn append(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &[Event],
    ) -> Result<u64, StoreError>;

    /// As [`append`](StateStore::append), taking the events out of `events` (left empty, on
    /// success and on error alike — on error nothing was appended): a store that keeps events
    /// as they are (the in-memory one) moves them instead of copying them, and may take the
    /// buffer itself. A caller that appends batch after batch reuses one buffer. The default
    /// returns [`append_now`](StateStore::append_now)'s answer when there is one; otherwise it
    /// appends a borrow of the events, then empties the buffer. A store that answers
    /// `append_now` therefore need not implement this method.
    ///
    /// # Errors
    /// As [`append`](StateStore::append).
    async fn append_from(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &mut Vec<Event>,
    ) -> Result<u64, StoreError> {
        if let Some(result) = self.append_now(id, expected_version, events) {
            return result;
        }
        let result = self.append(id, expected_version, events).await;
        events.clear();
        result
    }

    /// As [`append_from`](StateStore::append_from), answered at once by a store that needs
    /// no waiting for it (the in-memory one): `Some` with what `append_from` returns, `events`
    /// left as it leaves them. `None` (the default) from a store that would have to wait: then
    /// nothing happened, `events` is untouched, and the caller awaits `append_from`.
    ///
    /// A host that appends batch after batch tries this first: an answer here costs no future
    /// (an async trait method's future is boxed), as `AgentRunner::run_now` in
    /// `milestone-agents` does for runners.
    fn append_now(
        &self,
        id: &MilestoneId,
        expected_version: u64,
        events: &mut Vec<Event>,
    ) -> Option<Result<u64, StoreError>> {
        let _ = (id, expected_version, events);
        None
    }

    /// Loads the current state and version.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], I/O errors.
    async fn load(&self, id: &MilestoneId) -> Result<Loaded, StoreError>;

    /// The ids of every stored milestone, sorted.
    ///
    /// # Errors
    /// I/O errors.
    async fn list(&self) -> Result<Vec<MilestoneId>, StoreError>;

    /// Records a checkpoint named `label` at the current position (appends an
    /// [`Event::CheckpointRecorded`]) and returns it.
    ///
    /// # Errors
    /// [`StoreError::InvalidInput`] for an empty or oversized label or a milestone that takes no
    /// more events, [`StoreError::NotFound`], I/O errors.
    async fn checkpoint(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<Checkpoint, StoreError>;

    /// Every checkpoint of the milestone, oldest first.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], I/O errors.
    async fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<Checkpoint>, StoreError>;

    /// Rolls the milestone back to the latest checkpoint named `label` by appending an
    /// [`Event::RolledBack`]; returns the new version.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown milestone or label, I/O errors.
    async fn restore(
        &self,
        id: &MilestoneId,
        label: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError>;

    /// The events after position `from`: versions `from + 1 ..= current`, in order (empty when
    /// `from` is the current version or beyond).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Corrupt`], I/O errors.
    async fn read_events(&self, id: &MilestoneId, from: u64) -> Result<Vec<Event>, StoreError>;

    /// Writes a snapshot of the current state so that later loads replay only the tail; returns
    /// the version it covers.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], I/O errors.
    async fn snapshot(&self, id: &MilestoneId) -> Result<u64, StoreError>;

    /// Deletes the milestone and everything stored for it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Locked`], I/O errors.
    async fn delete(&self, id: &MilestoneId) -> Result<(), StoreError>;
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: StateStore + ?Sized> StateStore for $ty {
            async fn create(&self, created: &Event) -> Result<u64, StoreError> {
                (**self).create(created).await
            }
            async fn append(
                &self,
                id: &MilestoneId,
                expected_version: u64,
                events: &[Event],
            ) -> Result<u64, StoreError> {
                (**self).append(id, expected_version, events).await
            }
            async fn append_from(
                &self,
                id: &MilestoneId,
                expected_version: u64,
                events: &mut Vec<Event>,
            ) -> Result<u64, StoreError> {
                (**self).append_from(id, expected_version, events).await
            }
            fn append_now(
                &self,
                id: &MilestoneId,
                expected_version: u64,
                events: &mut Vec<Event>,
            ) -> Option<Result<u64, StoreError>> {
                (**self).append_now(id, expected_version, events)
            }
            async fn load(&self, id: &MilestoneId) -> Result<Loaded, StoreError> {
                (**self).load(id).await
            }
            async fn list(&self) -> Result<Vec<MilestoneId>, StoreError> {
                (**self).list().await
            }
            async fn checkpoint(
                &self,
                id: &MilestoneId,
                label: &str,
                at: Timestamp,
            ) -> Result<Checkpoint, StoreError> {
                (**self).checkpoint(id, label, at).await
            }
            async fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<Checkpoint>, StoreError> {
                (**self).checkpoints(id).await
            }
            async fn restore(
                &self,
                id: &MilestoneId,
                label: &str,
                at: Timestamp,
            ) -> Result<u64, StoreError> {
                (**self).restore(id, label, at).await
            }
            async fn read_events(
                &self,
                id: &MilestoneId,
                from: u64,
            ) -> Result<Vec<Event>, StoreError> {
                (**self).read_events(id, from).await
            }
            async fn snapshot(&self, id: &MilestoneId) -> Result<u64, StoreError> {
                (**self).snapshot(id).await
            }
            async fn delete(&self, id: &MilestoneId) -> Result<(), StoreError> {
                (**self).delete(id).await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);

/// How many times [`update`] tries before giving up with the last [`StoreError::Conflict`].
pub const UPDATE_ATTEMPTS: u32 = 1_000;

/// Loads the milestone, asks `decide` for the events to append given the state and version,
/// appends them with that version, and starts over when another writer got there first.
///
/// Returns the new version (the loaded one when `decide` returns no events). `decide` may run
/// several times, once per attempt, so it must only compute — not act.
///
/// ```
/// use milestone_core::{Event, MilestoneId, Timestamp, Workflow};
/// use milestone_state::{memory::InMemory, update, StateStore};
///
/// futures::executor::block_on(async {
///     let store = InMemory::new();
///     let id = MilestoneId::new("login")?;
///     store.create(&Event::Created {
///         at: Timestamp(0), id: id.clone(), title: "Login".into(), context: String::new(),
///         workflow: Workflow::kiro(), seed: 0,
///     }).await?;
///     let version = update(&store, &id, |state, _version| {
///         Ok(vec![Event::ExecutionStarted { at: state.updated_at().plus_millis(1) }])
///     }).await?;
///     assert_eq!(version, 2);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Whatever `decide` returns; the store's errors; [`StoreError::Conflict`] after
/// [`UPDATE_ATTEMPTS`] lost races.
pub async fn update<S, F>(store: &S, id: &MilestoneId, mut decide: F) -> Result<u64, StoreError>
where
    S: StateStore + ?Sized,
    F: FnMut(&MilestoneState, u64) -> Result<Vec<Event>, StoreError> + Send,
{
    let mut last = None;
    for _ in 0..UPDATE_ATTEMPTS {
        let loaded = store.load(id).await?;
        let events = decide(&loaded.state, loaded.version)?;
        if events.is_empty() {
            return Ok(loaded.version);
        }
        match store.append(id, loaded.version, &events).await {
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| StoreError::invalid("update made no attempt")))
}

/// Applies `events` to `state` in order; on the first refusal returns its index and error. The
/// state then holds the events before it (callers rebuild; see the stores' docs).
pub(crate) fn apply_all(
    state: &mut MilestoneState,
    events: &[Event],
) -> Result<(), (usize, milestone_core::TransitionError)> {
    for (i, e) in events.iter().enumerate() {
        state.apply(e).map_err(|err| (i, err))?;
    }
    Ok(())
}

/// The `InvalidInput` for a refused event.
pub(crate) fn refused(index: usize, err: &milestone_core::TransitionError) -> StoreError {
    StoreError::invalid(format!("event {index} of the batch does not apply: {err}"))
}
