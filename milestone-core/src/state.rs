//! Milestone state and its transition rules.
//!
//! [`MilestoneState`] is the canonical state of one milestone. It is never edited field by
//! field: it is created by [`MilestoneState::new`] from a [`Event::Created`] and changed only by
//! [`MilestoneState::apply`], so that state is a fold of the event log (see [`crate::event`]).
//! Deserializing a state runs the same consistency checks as building it, so an inconsistent
//! state never exists in memory.
//!
//! The status machines are small tables, exposed as [`check_item_transition`],
//! [`check_milestone_transition`] and [`check_mode_transition`]:
//!
//! ```text
//! item:      pending -> in-progress | blocked | skipped | cancelled
//!            in-progress -> completed | failed | blocked | cancelled | in-progress (restart)
//!            failed -> in-progress (retry) | skipped (degraded) | cancelled
//!            blocked -> in-progress | skipped | cancelled | failed
//!            completed, skipped, cancelled: final
//! milestone: active -> completed | blocked | failed | awaiting-intervention | cancelled
//!            blocked | awaiting-intervention -> active | failed | cancelled
//!            failed -> active (the host retries) | cancelled
//!            completed, cancelled: final
//! mode:      planning -> execution
//! ```
//!
//! [`Event::Created`]: crate::event::Event::Created

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::engine::hash::IdHashState;
use crate::error::{LoadError, Problem, ProblemKind, Problems};
use crate::id::{MilestoneId, PhaseId, TaskId};
use crate::plan::MilestonePlan;
use crate::units::{Priority, Progress, Timestamp};
use crate::workflow::Workflow;

/// The newest state schema this build reads and the one it writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The largest state JSON [`MilestoneState::from_json`] accepts (256 MiB).
pub const MAX_STATE_JSON: usize = 256 << 20;

/// The status of a milestone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MilestoneStatus {
    /// Being planned or executed.
    Active,
    /// Every phase is done.
    Completed,
    /// Waiting on something outside the milestone.
    Blocked,
    /// Recovery was exhausted.
    Failed,
    /// Paused until the host answers an intervention.
    AwaitingIntervention,
    /// Cancelled by the host.
    Cancelled,
}

impl MilestoneStatus {
    /// Every status, for tables.
    pub const ALL: [MilestoneStatus; 6] = [
        MilestoneStatus::Active,
        MilestoneStatus::Completed,
        MilestoneStatus::Blocked,
        MilestoneStatus::Failed,
        MilestoneStatus::AwaitingIntervention,
        MilestoneStatus::Cancelled,
    ];

    /// Whether no further change is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MilestoneStatus::Completed | MilestoneStatus::Cancelled
        )
    }

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            MilestoneStatus::Active => "active",
            MilestoneStatus::Completed => "completed",
            MilestoneStatus::Blocked => "blocked",
            MilestoneStatus::Failed => "failed",
            MilestoneStatus::AwaitingIntervention => "awaiting-intervention",
            MilestoneStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for MilestoneStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a milestone is being planned or executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The analyses run and a plan is built.
    Planning,
    /// The phases run.
    Execution,
}

/// The status of a phase or a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    /// Not started.
    #[default]
    Pending,
    /// Running.
    InProgress,
    /// Done.
    Completed,
    /// The last attempt failed; may be retried.
    Failed,
    /// Waiting on something.
    Blocked,
    /// Skipped by a degraded run.
    Skipped,
    /// Cancelled.
    Cancelled,
}

impl ItemStatus {
    /// Every status, for tables.
    pub const ALL: [ItemStatus; 7] = [
        ItemStatus::Pending,
        ItemStatus::InProgress,
        ItemStatus::Completed,
        ItemStatus::Failed,
        ItemStatus::Blocked,
        ItemStatus::Skipped,
        ItemStatus::Cancelled,
    ];

    /// Whether no further change is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemStatus::Completed | ItemStatus::Skipped | ItemStatus::Cancelled
        )
    }

    /// Whether dependents may treat this item as done (completed or skipped).
    pub fn is_done(self) -> bool {
        matches!(self, ItemStatus::Completed | ItemStatus::Skipped)
    }

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::InProgress => "in-progress",
            ItemStatus::Completed => "completed",
            ItemStatus::Failed => "failed",
            ItemStatus::Blocked => "blocked",
            ItemStatus::Skipped => "skipped",
            ItemStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An illegal status change, or an event that does not fit the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// A phase or task may not go from one status to the other.
    #[error("{item}: cannot go from {from} to {to}")]
    Item {
        /// The item.
        item: ItemRef,
        /// Its status.
        from: ItemStatus,
        /// The refused status.
        to: ItemStatus,
    },
    /// The milestone may not go from one status to the other.
    #[error("milestone: cannot go from {from} to {to}")]
    Milestone {
        /// Its status.
        from: MilestoneStatus,
        /// The refused status.
        to: MilestoneStatus,
    },
    /// The milestone may not go from one mode to the other.
    #[error("milestone: cannot go from mode {from:?} to {to:?}")]
    Mode {
        /// Its mode.
        from: Mode,
        /// The refused mode.
        to: Mode,
    },
    /// An event names a phase or task the milestone does not have.
    #[error("{item}: no such item in this milestone")]
    UnknownItem {
        /// The item.
        item: ItemRef,
    },
    /// An event was refused for a reason other than a status table.
    #[error("event {event} refused: {reason}")]
    Refused {
        /// The event's kind (`item-started`, …).
        event: &'static str,
        /// Why.
        reason: String,
    },
    /// Tasks could not be added; every problem is listed.
    #[error("tasks refused: {0}")]
    Tasks(Problems),
}

/// Checks a phase or task status change against the item table (module docs).
///
/// # Errors
/// [`TransitionError::Item`] when the change is illegal.
#[inline]
pub fn check_item_transition(
    item: &ItemRef,
    from: ItemStatus,
    to: ItemStatus,
) -> Result<(), TransitionError> {
    use ItemStatus::*;
    let ok = match from {
        Pending => matches!(to, InProgress | Blocked | Skipped | Cancelled),
        InProgress => matches!(to, InProgress | Completed | Failed | Blocked | Cancelled),
        Failed => matches!(to, InProgress | Skipped | Cancelled),
        Blocked => matches!(to, InProgress | Skipped | Cancelled | Failed),
        Completed | Skipped | Cancelled => false,
    };
    if ok {
        Ok(())
    } else {
        Err(item_refused(item, from, to))
    }
}

/// The error of [`check_item_transition`], out of line: the check itself is on every item
/// event's path.
#[cold]
#[inline(never)]
fn item_refused(item: &ItemRef, from: ItemStatus, to: ItemStatus) -> TransitionError {
    TransitionError::Item {
        item: item.clone(),
        from,
        to,
    }
}

/// Checks a milestone status change against the milestone table (module docs). Completion also
/// needs every phase done, which [`MilestoneState::apply`] checks.
///
/// # Errors
/// [`TransitionError::Milestone`] when the change is illegal.
pub fn check_milestone_transition(
    from: MilestoneStatus,
    to: MilestoneStatus,
) -> Result<(), TransitionError> {
    use MilestoneStatus::*;
    let ok = match from {
        Active => matches!(
            to,
            Completed | Blocked | Failed | AwaitingIntervention | Cancelled
        ),
        Blocked | AwaitingIntervention => matches!(to, Active | Failed | Cancelled),
        Failed => matches!(to, Active | Cancelled),
        Completed | Cancelled => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TransitionError::Milestone { from, to })
    }
}

/// Checks a mode change: only planning → execution.
///
/// # Errors
/// [`TransitionError::Mode`] otherwise.
pub fn check_mode_transition(from: Mode, to: Mode) -> Result<(), TransitionError> {
    if from == Mode::Planning && to == Mode::Execution {
        Ok(())
    } else {
        Err(TransitionError::Mode { from, to })
    }
}

/// A reference to a phase or a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemRef {
    /// A phase of the workflow.
    Phase(PhaseId),
    /// A task of the task phase.
    Task(TaskId),
}

impl ItemRef {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        match self {
            ItemRef::Phase(p) => p.as_str(),
            ItemRef::Task(t) => t.as_str(),
        }
    }
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemRef::Phase(p) => write!(f, "phase {p}"),
            ItemRef::Task(t) => write!(f, "task {t}"),
        }
    }
}

/// Where an artifact's content is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactBody {
    /// The content itself.
    Inline(String),
    /// A path relative to the milestone's repository.
    Path(String),
}

/// A named product of a phase or task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The artifact's name; matched against a phase's expected outputs.
    pub name: String,
    /// What it is (`document`, `diagram`, `code`, `report`, …).
    pub kind: String,
    /// Its content.
    pub body: ArtifactBody,
}

/// What a finished phase or task produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemOutput {
    /// A one-line summary.
    #[serde(default)]
    pub summary: String,
    /// Named artifacts.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Decisions taken, in words.
    #[serde(default)]
    pub decisions: Vec<String>,
    /// Structured data handed on to dependents.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl ItemOutput {
    /// Whether it carries nothing: no summary, artifacts or decisions, and `null` data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.summary.is_empty()
            && self.artifacts.is_empty()
            && self.decisions.is_empty()
            && self.data.is_null()
    }
}

/// The empty output every empty [`CompactOutput`] reads as.
static EMPTY_OUTPUT: ItemOutput = ItemOutput {
    summary: String::new(),
    artifacts: Vec::new(),
    decisions: Vec::new(),
    data: serde_json::Value::Null,
};

/// An [`ItemOutput`] as an [`Event::ItemCompleted`](crate::Event::ItemCompleted) and an
/// [`ItemState`] hold it: one pointer wide, and without an allocation when the output is empty
/// (as most outputs of plain tasks are). Every event is as large as its largest kind, and a
/// state holds an item per task: keeping outputs small keeps the log and the state small.
///
/// It reads as an [`ItemOutput`] (through `Deref`) and has the same JSON.
///
/// ```
/// use milestone_core::{CompactOutput, ItemOutput};
///
/// let empty = CompactOutput::from(ItemOutput::default());
/// assert!(empty.is_empty());
/// let out = CompactOutput::from(ItemOutput {
///     summary: "done".into(),
///     ..ItemOutput::default()
/// });
/// assert_eq!(out.summary, "done");
/// assert_eq!(out.into_inner().summary, "done");
/// ```
#[derive(Clone, Default)]
pub struct CompactOutput(Option<Box<ItemOutput>>);

impl PartialEq for CompactOutput {
    fn eq(&self, other: &CompactOutput) -> bool {
        **self == **other
    }
}

impl CompactOutput {
    /// Holds `output` (boxed unless it is empty).
    #[inline]
    pub fn new(output: ItemOutput) -> CompactOutput {
        if output.is_empty() {
            CompactOutput(None)
        } else {
            CompactOutput(Some(Box::new(output)))
        }
    }

    /// The output itself.
    pub fn into_inner(self) -> ItemOutput {
        self.0.map_or_else(ItemOutput::default, |b| *b)
    }
}

impl std::ops::Deref for CompactOutput {
    type Target = ItemOutput;
    #[inline]
    fn deref(&self) -> &ItemOutput {
        self.0.as_deref().unwrap_or(&EMPTY_OUTPUT)
    }
}

impl From<ItemOutput> for CompactOutput {
    fn from(output: ItemOutput) -> CompactOutput {
        CompactOutput::new(output)
    }
}

impl From<CompactOutput> for ItemOutput {
    fn from(output: CompactOutput) -> ItemOutput {
        output.into_inner()
    }
}

impl fmt::Debug for CompactOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ItemOutput::fmt(self, f)
    }
}

impl Serialize for CompactOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ItemOutput::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for CompactOutput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CompactOutput, D::Error> {
        ItemOutput::deserialize(d).map(CompactOutput::new)
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FailureKind {
    /// Worth retrying.
    Transient,
    /// Retrying will not help.
    Permanent,
    /// The attempt ran past its deadline.
    Timeout,
    /// The runner was not available.
    Unavailable,
    /// A quality gate failed.
    Gate,
    /// The attempt was interrupted (a crash or a cancelled pipeline predecessor).
    Interrupted,
}

/// A failure with its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemError {
    /// The kind.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
}

/// The state shared by phases and tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemState {
    /// Status.
    pub status: ItemStatus,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Attempts started so far.
    #[serde(default)]
    pub attempts: u32,
    /// Progress, never decreasing outside a rollback; complete only when completed.
    #[serde(default)]
    pub progress: Progress,
    /// The last partial result handed off, if any (a `null` hand-off is kept as `Some(Null)`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub partial: Option<serde_json::Value>,
    /// What it produced, once completed (compact: an empty output takes no allocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<CompactOutput>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<ItemError>,
}

/// A field that is present is `Some`, even when it is `null`, so that `Some(Null)` round-trips.
fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The state of one phase.
///
/// Its JSON is flat: `id` beside [`ItemState`]'s keys. Deserializing reads it directly, in one pass,
/// rather than through serde's buffered `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseState {
    /// The phase.
    pub id: PhaseId,
    /// Its status, times, attempts, progress and output.
    #[serde(flatten)]
    pub item: ItemState,
}

/// A task of the task phase, as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Its id, unique within the milestone.
    pub id: TaskId,
    /// A human title.
    pub title: String,
    /// Tasks that must complete first.
    #[serde(default)]
    pub dependencies: Vec<TaskId>,
    /// Estimated effort in milliseconds, if known; weights the task phase's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_ms: Option<u64>,
    /// How urgent it is.
    #[serde(default)]
    pub priority: Priority,
}

impl TaskSpec {
    /// A task with no dependencies, no estimate, medium priority.
    pub fn new(id: TaskId, title: impl Into<String>) -> Self {
        TaskSpec {
            id,
            title: title.into(),
            dependencies: Vec::new(),
            estimate_ms: None,
            priority: Priority::Medium,
        }
    }

    /// The weight of this task in its phase's progress: its estimate, or one hour.
    pub fn progress_weight(&self) -> u64 {
        self.estimate_ms.unwrap_or(DEFAULT_TASK_WEIGHT_MS).max(1)
    }
}

/// The weight of a task without an estimate in its phase's progress (one hour).
pub const DEFAULT_TASK_WEIGHT_MS: u64 = 3_600_000;

/// The state of one task.
///
/// Its JSON is flat: `spec` beside [`ItemState`]'s keys. Deserializing reads it directly, in one pass,
/// rather than through serde's buffered `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskState {
    /// The task as planned.
    pub spec: TaskSpec,
    /// Its status, times, attempts, progress and output.
    #[serde(flatten)]
    pub item: ItemState,
}

// ---------------------------------------------------------------------------------------------
// Reading phases and tasks
//
// `#[serde(flatten)]` deserializes through a buffered map of every key and value (an allocation
// each), which dominated loading a state of 100,000 tasks. The visitor below reads the same flat
// JSON in one pass with the derive's rules: unknown and duplicate keys refused, naming the key;
// `status` and the owner's key (`id`, `spec`) required; the other item keys defaulted; a present
// `partial: null` kept as `Some(Null)`.

/// [`ItemState`]'s keys, in its declaration order.
#[derive(Clone, Copy)]
enum ItemField {
    Status,
    StartedAt,
    CompletedAt,
    Attempts,
    Progress,
    Partial,
    Output,
    LastError,
}

impl ItemField {
    fn from_name(name: &str) -> Option<ItemField> {
        Some(match name {
            "status" => ItemField::Status,
            "started_at" => ItemField::StartedAt,
            "completed_at" => ItemField::CompletedAt,
            "attempts" => ItemField::Attempts,
            "progress" => ItemField::Progress,
            "partial" => ItemField::Partial,
            "output" => ItemField::Output,
            "last_error" => ItemField::LastError,
            _ => return None,
        })
    }
}

/// The keys of a flat phase or task for "expected one of" in errors: the owner's key, then
/// [`ItemState`]'s (those [`ItemField::from_name`] reads).
macro_rules! flat_keys {
    ($own:literal) => {
        &[
            $own,
            "status",
            "started_at",
            "completed_at",
            "attempts",
            "progress",
            "partial",
            "output",
            "last_error",
        ]
    };
}

const PHASE_FIELDS: &[&str] = flat_keys!("id");
const TASK_FIELDS: &[&str] = flat_keys!("spec");

/// A key of a flat phase or task: the owner's own key or one of [`ItemState`]'s.
enum FlatKey {
    Own,
    Item(ItemField),
}

/// Reads a key without allocating (serde_json hands borrowed or transient text to `visit_str`).
#[derive(Clone, Copy)]
struct FlatKeySeed {
    own: &'static str,
    fields: &'static [&'static str],
}

impl<'de> serde::de::DeserializeSeed<'de> for FlatKeySeed {
    type Value = FlatKey;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<FlatKey, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FlatKeySeed {
    type Value = FlatKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FlatKey, E> {
        if v == self.own {
            return Ok(FlatKey::Own);
        }
        ItemField::from_name(v)
            .map(FlatKey::Item)
            .ok_or_else(|| E::unknown_field(v, self.fields))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<FlatKey, E> {
        match std::str::from_utf8(v) {
            Ok(text) => self.visit_str(text),
            Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
        }
    }
}

/// The item keys read so far; `None` is "not seen", so that a second sight is a duplicate.
#[derive(Default)]
struct ItemFields {
    status: Option<ItemStatus>,
    started_at: Option<Option<Timestamp>>,
    completed_at: Option<Option<Timestamp>>,
    attempts: Option<u32>,
    progress: Option<Progress>,
    partial: Option<Option<serde_json::Value>>,
    output: Option<Option<CompactOutput>>,
    last_error: Option<Option<ItemError>>,
}

/// Reads the next value into `slot`, refusing a second one.
fn read_once<'de, A, T>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error>
where
    A: serde::de::MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(serde::de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl ItemFields {
    fn read<'de, A: serde::de::MapAccess<'de>>(
        &mut self,
        field: ItemField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            ItemField::Status => read_once(&mut self.status, "status", map),
            ItemField::StartedAt => read_once(&mut self.started_at, "started_at", map),
            ItemField::CompletedAt => read_once(&mut self.completed_at, "completed_at", map),
            ItemField::Attempts => read_once(&mut self.attempts, "attempts", map),
            ItemField::Progress => read_once(&mut self.progress, "progress", map),
            ItemField::Partial => {
                if self.partial.is_some() {
                    return Err(serde::de::Error::duplicate_field("partial"));
                }
                // Present, even as `null`: `Some(Null)` (as `present_value`).
                self.partial = Some(Some(map.next_value::<serde_json::Value>()?));
                Ok(())
            }
            ItemField::Output => read_once(&mut self.output, "output", map),
            ItemField::LastError => read_once(&mut self.last_error, "last_error", map),
        }
    }

    fn finish<E: serde::de::Error>(self) -> Result<ItemState, E> {
        Ok(ItemState {
            status: self.status.ok_or_else(|| E::missing_field("status"))?,
            started_at: self.started_at.flatten(),
            completed_at: self.completed_at.flatten(),
            attempts: self.attempts.unwrap_or_default(),
            progress: self.progress.unwrap_or_default(),
            partial: self.partial.flatten(),
            output: self.output.flatten(),
            last_error: self.last_error.flatten(),
        })
    }
}

/// Reads a flat phase or task: the owner's key `own` (of type `O`) beside [`ItemState`]'s keys.
struct FlatItemVisitor<O> {
    own: &'static str,
    fields: &'static [&'static str],
    what: &'static str,
    owner: std::marker::PhantomData<fn() -> O>,
}

impl<'de, O: Deserialize<'de>> serde::de::Visitor<'de> for FlatItemVisitor<O> {
    type Value = (O, ItemState);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "struct {}", self.what)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<(O, ItemState), A::Error> {
        let seed = FlatKeySeed {
            own: self.own,
            fields: self.fields,
        };
        let mut own: Option<O> = None;
        let mut item = ItemFields::default();
        while let Some(key) = map.next_key_seed(seed)? {
            match key {
                FlatKey::Own => read_once(&mut own, self.own, &mut map)?,
                FlatKey::Item(field) => item.read(field, &mut map)?,
            }
        }
        let own = own.ok_or_else(|| serde::de::Error::missing_field(self.own))?;
        Ok((own, item.finish()?))
    }
}

impl<'de> Deserialize<'de> for PhaseState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, item) = d.deserialize_map(FlatItemVisitor::<PhaseId> {
            own: "id",
            fields: PHASE_FIELDS,
            what: "PhaseState",
            owner: std::marker::PhantomData,
        })?;
        Ok(PhaseState { id, item })
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (spec, item) = d.deserialize_map(FlatItemVisitor::<TaskSpec> {
            own: "spec",
            fields: TASK_FIELDS,
            what: "TaskState",
            owner: std::marker::PhantomData,
        })?;
        Ok(TaskState { spec, item })
    }
}

/// One phase commit on the milestone branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseCommit {
    /// The phase.
    pub phase: PhaseId,
    /// The commit id.
    pub commit: String,
}

/// What git knows of the milestone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    /// The milestone branch, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The base branch it was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// One commit per completed phase, in order.
    #[serde(default)]
    pub commits: Vec<PhaseCommit>,
    /// The tag, once the milestone completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The merge commit on the base branch, once merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
}

/// A host's answer to an intervention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Try the item again.
    Retry,
    /// Skip the item and carry on.
    Skip,
    /// Go back to the last checkpoint.
    Rollback,
    /// Fail the milestone.
    Abort,
}

/// An open request for the host's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// The item concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
    /// Why the host is asked.
    pub reason: String,
    /// The answers the host may give.
    pub options: Vec<Decision>,
    /// When it was asked.
    pub requested_at: Timestamp,
}

/// A named checkpoint known to the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMark {
    /// The label.
    pub label: String,
    /// When it was taken.
    pub at: Timestamp,
}

/// The serialized form of [`MilestoneState`]; also what the events mutate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateData {
    pub(crate) schema_version: u32,
    pub(crate) id: MilestoneId,
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) context: String,
    pub(crate) created_at: Timestamp,
    pub(crate) updated_at: Timestamp,
    pub(crate) status: MilestoneStatus,
    pub(crate) mode: Mode,
    #[serde(default)]
    pub(crate) seed: u64,
    pub(crate) workflow: Workflow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) plan: Option<Box<MilestonePlan>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) strategy: Option<String>,
    pub(crate) phases: Vec<PhaseState>,
    #[serde(default)]
    pub(crate) tasks: Vec<TaskState>,
    #[serde(default)]
    pub(crate) git: GitInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) intervention: Option<Intervention>,
    #[serde(default)]
    pub(crate) checkpoints: Vec<CheckpointMark>,
    #[serde(default)]
    pub(crate) rollbacks: u32,
    #[serde(default)]
    pub(crate) events_applied: u64,
}

/// The canonical state of one milestone. See the module docs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "StateData")]
pub struct MilestoneState {
    pub(crate) data: StateData,
    /// Task id → position in `data.tasks`.
    pub(crate) task_index: HashMap<TaskId, usize, IdHashState>,
    /// Task id text address → position: the shortcut tried before `task_index`.
    pub(crate) task_addr: crate::addr_index::AddrIndex,
    /// Σ weight × progress (basis points) of the tasks, for O(1) task-phase progress.
    pub(crate) task_done: u128,
    /// Σ weight × 10 000 of the tasks.
    pub(crate) task_total: u128,
    /// Position of the workflow's task phase in `data.phases` (cached: the workflow never
    /// changes inside a state).
    pub(crate) task_phase_pos: usize,
}

impl Serialize for MilestoneState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(s)
    }
}

impl TryFrom<StateData> for MilestoneState {
    type Error = Problems;
    fn try_from(data: StateData) -> Result<Self, Problems> {
        MilestoneState::from_data(data)
    }
}

impl MilestoneState {
    /// The state right after a milestone is created: planning mode, active, every phase pending,
    /// no tasks.
    pub fn new(
        id: MilestoneId,
        title: impl Into<String>,
        context: impl Into<String>,
        workflow: Workflow,
        created_at: Timestamp,
        seed: u64,
    ) -> MilestoneState {
        let task_phase_pos = task_phase_position(&workflow);
        let phases = workflow
            .phases()
            .iter()
            .map(|p| PhaseState {
                id: p.id.clone(),
                item: ItemState::default(),
            })
            .collect();
        MilestoneState {
            data: StateData {
                schema_version: SCHEMA_VERSION,
                id,
                title: title.into(),
                context: context.into(),
                created_at,
                updated_at: created_at,
                status: MilestoneStatus::Active,
                mode: Mode::Planning,
                seed,
                workflow,
                plan: None,
                strategy: None,
                phases,
                tasks: Vec::new(),
                git: GitInfo::default(),
                intervention: None,
                checkpoints: Vec::new(),
                rollbacks: 0,
                events_applied: 1,
            },
            task_index: HashMap::default(),
            task_addr: Default::default(),
            task_done: 0,
            task_total: 0,
            task_phase_pos,
        }
    }

    /// Loads a state from JSON: size limit, schema version, unknown fields refused, and every
    /// consistency problem reported.
    ///
    /// # Errors
    /// [`LoadError`] saying what is wrong and where.
    pub fn from_json(json: &str) -> Result<MilestoneState, LoadError> {
        if json.len() > MAX_STATE_JSON {
            return Err(LoadError::TooLarge {
                what: "milestone state",
                size: json.len(),
                limit: MAX_STATE_JSON,
            });
        }
        // One parse on the happy path; the version is probed only to explain a failure, so that a
        // document from a newer version says so rather than naming a field this build lacks.
        let data: StateData = match serde_json::from_str(json) {
            Ok(data) => data,
            Err(e) => {
                crate::load::check_schema_version("milestone state", json, SCHEMA_VERSION)?;
                return Err(crate::load::malformed("milestone state", &e));
            }
        };
        if data.schema_version == 0 || data.schema_version > SCHEMA_VERSION {
            return Err(LoadError::UnsupportedSchema {
                what: "milestone state",
                found: data.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        MilestoneState::from_data(data).map_err(|problems| LoadError::Invalid {
            what: "milestone state",
            problems,
        })
    }

    pub(crate) fn from_data(data: StateData) -> Result<MilestoneState, Problems> {
        let mut problems = Vec::new();
        if data.schema_version == 0 || data.schema_version > SCHEMA_VERSION {
            problems.push(Problem::new(
                "schema_version",
                ProblemKind::OutOfRange,
                format!(
                    "schema version {} is not supported (this library reads 1..={SCHEMA_VERSION})",
                    data.schema_version
                ),
            ));
        }
        let wf = data.workflow.phases();
        if wf.len() != data.phases.len() || wf.iter().zip(&data.phases).any(|(w, p)| w.id != p.id) {
            problems.push(Problem::new(
                "phases",
                ProblemKind::Inconsistent,
                "the phase list does not match the workflow's phases in order",
            ));
        }
        let mut task_index =
            HashMap::with_capacity_and_hasher(data.tasks.len(), IdHashState::new());
        for (i, t) in data.tasks.iter().enumerate() {
            if task_index.insert(t.spec.id.clone(), i).is_some() {
                problems.push(Problem::new(
                    format!("tasks[{i}].id"),
                    ProblemKind::DuplicateId,
                    format!("task id {:?} appears twice", t.spec.id.as_str()),
                ));
            }
        }
        for (i, t) in data.tasks.iter().enumerate() {
            for (j, d) in t.spec.dependencies.iter().enumerate() {
                match task_index.get(d) {
                    None => problems.push(Problem::new(
                        format!("tasks[{i}].dependencies[{j}]"),
                        ProblemKind::UnknownDependency,
                        format!(
                            "task {:?} depends on unknown task {:?}",
                            t.spec.id.as_str(),
                            d.as_str()
                        ),
                    )),
                    Some(&k) if k >= i => problems.push(Problem::new(
                        format!("tasks[{i}].dependencies[{j}]"),
                        ProblemKind::Inconsistent,
                        format!(
                            "task {:?} depends on {:?}, which is not listed before it",
                            t.spec.id.as_str(),
                            d.as_str()
                        ),
                    )),
                    Some(_) => {}
                }
            }
        }
        // The item's reference is built only for a problem: cloning an id per item (an atomic
        // count on each of 100,000 ids) showed when loading a large state.
        let progress_problem = |item_ref: ItemRef, item: &ItemState| {
            Problem::new(
                item_ref.to_string(),
                ProblemKind::Inconsistent,
                format!(
                    "progress {} does not match status {}",
                    item.progress, item.status
                ),
            )
        };
        let mismatched = |item: &ItemState| {
            item.progress.is_complete() != (item.status == ItemStatus::Completed)
        };
        for p in data.phases.iter().filter(|p| mismatched(&p.item)) {
            problems.push(progress_problem(ItemRef::Phase(p.id.clone()), &p.item));
        }
        for t in data.tasks.iter().filter(|t| mismatched(&t.item)) {
            problems.push(progress_problem(ItemRef::Task(t.spec.id.clone()), &t.item));
        }
        if data.status == MilestoneStatus::Completed
            && data.phases.iter().any(|p| !p.item.status.is_done())
        {
            problems.push(Problem::new(
                "status",
                ProblemKind::Inconsistent,
                "the milestone is completed but a phase is neither completed nor skipped",
            ));
        }
        let awaiting = data.status == MilestoneStatus::AwaitingIntervention;
        if data.intervention.is_some() != awaiting {
            problems.push(Problem::new(
                "intervention",
                ProblemKind::Inconsistent,
                if awaiting {
                    "the milestone awaits an intervention but none is open"
                } else {
                    "an intervention is open but the milestone does not await one"
                },
            ));
        }
        Problems(problems).into_result(())?;
        let (mut task_done, mut task_total) = (0u128, 0u128);
        for t in &data.tasks {
            let w = u128::from(t.spec.progress_weight());
            task_total += w * 10_000;
            task_done += w * u128::from(t.item.progress.basis_points());
        }
        let task_phase_pos = task_phase_position(&data.workflow);
        let mut task_addr = crate::addr_index::AddrIndex::default();
        task_addr.extend(0, &data.tasks);
        Ok(MilestoneState {
            data,
            task_index,
            task_addr,
            task_done,
            task_total,
            task_phase_pos,
        })
    }

    /// The schema version of this state.
    pub fn schema_version(&self) -> u32 {
        self.data.schema_version
    }
    /// The milestone's id.
    pub fn id(&self) -> &MilestoneId {
        &self.data.id
    }
    /// Its title.
    pub fn title(&self) -> &str {
        &self.data.title
    }
    /// Its context (free text handed to the agents).
    pub fn context(&self) -> &str {
        &self.data.context
    }
    /// When it was created.
    pub fn created_at(&self) -> Timestamp {
        self.data.created_at
    }
    /// The time of the last event applied.
    pub fn updated_at(&self) -> Timestamp {
        self.data.updated_at
    }
    /// Its status.
    pub fn status(&self) -> MilestoneStatus {
        self.data.status
    }
    /// Its mode.
    pub fn mode(&self) -> Mode {
        self.data.mode
    }
    /// The seed of its deterministic randomness (backoff jitter).
    pub fn seed(&self) -> u64 {
        self.data.seed
    }
    /// Its workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.data.workflow
    }
    /// Its plan, once recorded.
    pub fn plan(&self) -> Option<&MilestonePlan> {
        self.data.plan.as_deref()
    }
    /// The execution strategy chosen, once chosen.
    pub fn strategy(&self) -> Option<&str> {
        self.data.strategy.as_deref()
    }
    /// Its phases, in workflow order.
    pub fn phases(&self) -> &[PhaseState] {
        &self.data.phases
    }
    /// The phase with `id`.
    pub fn phase(&self, id: &str) -> Option<&PhaseState> {
        self.data
            .workflow
            .position(id)
            .and_then(|i| self.data.phases.get(i))
    }
    /// Its tasks, in the order they were added (dependencies always before dependents).
    pub fn tasks(&self) -> &[TaskState] {
        &self.data.tasks
    }
    /// The task with `id`.
    pub fn task(&self, id: &str) -> Option<&TaskState> {
        self.task_index.get(id).map(|&i| &self.data.tasks[i])
    }
    /// The position of task `id` in [`MilestoneState::tasks`].
    pub fn task_position(&self, id: &str) -> Option<usize> {
        self.task_index.get(id).copied()
    }

    /// As [`task_position`](MilestoneState::task_position) for a whole id: first by its text's
    /// address (ids cloned from the state's share it), then by its text.
    pub(crate) fn task_position_of(&self, id: &TaskId) -> Option<usize> {
        self.task_addr
            .get(id, &self.data.tasks)
            .or_else(|| self.task_index.get(id.as_str()).copied())
    }
    /// The state of any item.
    pub fn item(&self, item: &ItemRef) -> Option<&ItemState> {
        match item {
            ItemRef::Phase(p) => self.phase(p.as_str()).map(|p| &p.item),
            ItemRef::Task(t) => self.task(t.as_str()).map(|t| &t.item),
        }
    }
    /// What git knows of it.
    pub fn git(&self) -> &GitInfo {
        &self.data.git
    }
    /// The open intervention, if any.
    pub fn intervention(&self) -> Option<&Intervention> {
        self.data.intervention.as_ref()
    }
    /// Checkpoints taken (since the last rollback).
    pub fn checkpoints(&self) -> &[CheckpointMark] {
        &self.data.checkpoints
    }
    /// How many rollbacks have happened.
    pub fn rollbacks(&self) -> u32 {
        self.data.rollbacks
    }
    /// How many events this state is the fold of.
    pub fn events_applied(&self) -> u64 {
        self.data.events_applied
    }
    /// The task phase's progress computed from its tasks (weighted by estimates), or `None` when
    /// it has no tasks. O(1).
    #[inline]
    pub fn task_share(&self) -> Option<Progress> {
        if self.task_total == 0 {
            return None;
        }
        let done = self.task_done * 10_000;
        // A 64-bit division when both fit (up to ~1.8e15 ms of estimates), else 128-bit.
        let bp = match (u64::try_from(done), u64::try_from(self.task_total)) {
            (Ok(d), Ok(t)) => u128::from(d / t),
            _ => done / self.task_total,
        };
        Some(Progress::from_basis_points(bp as u32))
    }
    /// Whether every phase is done: completed, or skipped by a degraded run or the host. A
    /// milestone completes when this holds; it is *fully* complete (100 %) only when
    /// [`MilestoneState::all_phases_completed`] also does.
    pub fn all_phases_done(&self) -> bool {
        self.data.phases.iter().all(|p| p.item.status.is_done())
    }

    /// Whether every phase is completed.
    pub fn all_phases_completed(&self) -> bool {
        self.data
            .phases
            .iter()
            .all(|p| p.item.status == ItemStatus::Completed)
    }
}

/// The position of the workflow's task phase among its phases.
fn task_phase_position(workflow: &Workflow) -> usize {
    workflow
        .position(workflow.task_phase().as_str())
        .unwrap_or(workflow.phases().len().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key list in errors, the keys the flat reader knows and the keys an item state is
    /// written with are one list.
    #[test]
    fn the_flat_key_lists_agree() {
        assert_eq!((PHASE_FIELDS[0], TASK_FIELDS[0]), ("id", "spec"));
        assert_eq!(PHASE_FIELDS[1..], TASK_FIELDS[1..]);
        for key in &TASK_FIELDS[1..] {
            assert!(ItemField::from_name(key).is_some(), "{key}");
        }
        let full = ItemState {
            started_at: Some(Timestamp(1)),
            completed_at: Some(Timestamp(2)),
            partial: Some(serde_json::Value::Null),
            output: Some(CompactOutput::default()),
            last_error: Some(ItemError {
                kind: FailureKind::Transient,
                message: "m".into(),
            }),
            ..ItemState::default()
        };
        let written = serde_json::to_value(&full).unwrap();
        let keys: Vec<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = TASK_FIELDS[1..].to_vec();
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    /// A compact output reads, compares and serializes as the output it holds; only an empty
    /// one is left unboxed (any field set makes it non-empty).
    #[test]
    fn a_compact_output_is_its_output() {
        let outputs = [
            ItemOutput::default(),
            ItemOutput {
                summary: "s".into(),
                ..ItemOutput::default()
            },
            ItemOutput {
                artifacts: vec![Artifact {
                    name: "a".into(),
                    kind: "report".into(),
                    body: ArtifactBody::Inline("x".into()),
                }],
                ..ItemOutput::default()
            },
            ItemOutput {
                decisions: vec!["d".into()],
                ..ItemOutput::default()
            },
            ItemOutput {
                data: serde_json::json!({"k": 1}),
                ..ItemOutput::default()
            },
        ];
        for (i, output) in outputs.iter().enumerate() {
            let compact = CompactOutput::new(output.clone());
            assert_eq!(*compact, *output);
            assert_eq!(compact.0.is_none(), i == 0, "case {i}");
            assert_eq!(compact.is_empty(), i == 0);
            let json = serde_json::to_string(&compact).unwrap();
            assert_eq!(json, serde_json::to_string(output).unwrap());
            let back: CompactOutput = serde_json::from_str(&json).unwrap();
            assert_eq!(back, compact);
            assert_eq!(back.0.is_none(), i == 0);
            assert_eq!(compact.clone().into_inner(), *output);
            assert_eq!(format!("{compact:?}"), format!("{output:?}"));
        }
        // Unknown keys are refused as ItemOutput refuses them.
        assert!(serde_json::from_str::<CompactOutput>(r#"{"summary":"","extra":1}"#).is_err());
    }

    /// Every event is as large as its largest kind: each is kept small (a log holds two per
    /// task), the big payloads boxed or shared. So is the state of an item.
    #[test]
    fn events_stay_small() {
        assert!(
            std::mem::size_of::<crate::Event>() <= 96,
            "Event is {} bytes",
            std::mem::size_of::<crate::Event>()
        );
        assert_eq!(std::mem::size_of::<CompactOutput>(), 8);
        assert_eq!(std::mem::size_of::<Workflow>(), 8);
        // A state holds one item per task: its output is compact too.
        assert!(
            std::mem::size_of::<ItemState>() <= 128,
            "ItemState is {} bytes",
            std::mem::size_of::<ItemState>()
        );
    }

    #[test]
    fn item_transition_table_covers_every_pair() {
        use ItemStatus::*;
        let legal = [
            (Pending, InProgress),
            (Pending, Blocked),
            (Pending, Skipped),
            (Pending, Cancelled),
            (InProgress, InProgress),
            (InProgress, Completed),
            (InProgress, Failed),
            (InProgress, Blocked),
            (InProgress, Cancelled),
            (Failed, InProgress),
            (Failed, Skipped),
            (Failed, Cancelled),
            (Blocked, InProgress),
            (Blocked, Skipped),
            (Blocked, Cancelled),
            (Blocked, Failed),
        ];
        let item = ItemRef::Phase(PhaseId::new("design").unwrap());
        for from in ItemStatus::ALL {
            for to in ItemStatus::ALL {
                let expected = legal.contains(&(from, to));
                let got = check_item_transition(&item, from, to);
                assert_eq!(got.is_ok(), expected, "{from} -> {to}");
                if let Err(e) = got {
                    let text = e.to_string();
                    assert!(
                        text.contains(from.name()) && text.contains(to.name()),
                        "{text}"
                    );
                    assert!(text.contains("phase design"), "{text}");
                }
            }
        }
    }

    #[test]
    fn milestone_transition_table_covers_every_pair() {
        use MilestoneStatus::*;
        let legal = [
            (Active, Completed),
            (Active, Blocked),
            (Active, Failed),
            (Active, AwaitingIntervention),
            (Active, Cancelled),
            (Blocked, Active),
            (Blocked, Failed),
            (Blocked, Cancelled),
            (AwaitingIntervention, Active),
            (AwaitingIntervention, Failed),
            (AwaitingIntervention, Cancelled),
            (Failed, Active),
            (Failed, Cancelled),
        ];
        for from in MilestoneStatus::ALL {
            for to in MilestoneStatus::ALL {
                let expected = legal.contains(&(from, to));
                assert_eq!(
                    check_milestone_transition(from, to).is_ok(),
                    expected,
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn mode_transitions() {
        assert!(check_mode_transition(Mode::Planning, Mode::Execution).is_ok());
        assert!(check_mode_transition(Mode::Execution, Mode::Planning).is_err());
        assert!(check_mode_transition(Mode::Execution, Mode::Execution).is_err());
        assert!(check_mode_transition(Mode::Planning, Mode::Planning).is_err());
    }
}
