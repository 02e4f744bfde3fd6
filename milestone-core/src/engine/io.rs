//! What goes into the engine ([`Input`]) and what comes out ([`Step`]: events to append and
//! [`Command`]s to carry out).

use std::fmt;

use crate::error::Problems;
use crate::id::PhaseId;
use crate::state::{
    CompactOutput, Decision, ItemError, ItemRef, MilestoneStatus, Mode, TransitionError,
};
use crate::units::{Progress, Timestamp};
use crate::workflow::Limits;

/// The analyses of planning mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnalysisKind {
    /// Scope: components, dependencies, files, complexity, risk factors.
    Scope,
    /// Estimation: effort per phase, buffer, critical path.
    Estimation,
    /// Risk: probability, impact, mitigation, contingency.
    Risk,
    /// The KIRO strategy.
    KiroStrategy,
    /// The aggregation of the four into one `MilestonePlan`.
    Aggregation,
}

impl AnalysisKind {
    /// The four analyses that run at once, in order.
    pub const PARALLEL: [AnalysisKind; 4] = [
        AnalysisKind::Scope,
        AnalysisKind::Estimation,
        AnalysisKind::Risk,
        AnalysisKind::KiroStrategy,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            AnalysisKind::Scope => 0,
            AnalysisKind::Estimation => 1,
            AnalysisKind::Risk => 2,
            AnalysisKind::KiroStrategy => 3,
            AnalysisKind::Aggregation => 4,
        }
    }

    pub(crate) fn from_index(i: usize) -> AnalysisKind {
        match i {
            0 => AnalysisKind::Scope,
            1 => AnalysisKind::Estimation,
            2 => AnalysisKind::Risk,
            3 => AnalysisKind::KiroStrategy,
            _ => AnalysisKind::Aggregation,
        }
    }

    /// The role that performs it.
    pub fn role(self) -> Role {
        match self {
            AnalysisKind::Scope => Role::Scope,
            AnalysisKind::Estimation => Role::Estimation,
            AnalysisKind::Risk => Role::Risk,
            AnalysisKind::KiroStrategy => Role::KiroStrategy,
            AnalysisKind::Aggregation => Role::Aggregation,
        }
    }

    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            AnalysisKind::Scope => "scope",
            AnalysisKind::Estimation => "estimation",
            AnalysisKind::Risk => "risk",
            AnalysisKind::KiroStrategy => "kiro-strategy",
            AnalysisKind::Aggregation => "aggregation",
        }
    }
}

/// A unit of work the engine starts: a phase or task, or a planning analysis.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// A phase or a task (execution mode).
    Item(ItemRef),
    /// A planning analysis (planning mode; not recorded in the state until the plan is).
    Planning(AnalysisKind),
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::Item(i) => i.fmt(f),
            Work::Planning(a) => write!(f, "analysis {}", a.name()),
        }
    }
}

impl From<ItemRef> for Work {
    fn from(item: ItemRef) -> Self {
        Work::Item(item)
    }
}

/// Who does a piece of work; the agents crate binds runners to roles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Scope analysis.
    Scope,
    /// Estimation.
    Estimation,
    /// Risk analysis.
    Risk,
    /// KIRO strategy.
    KiroStrategy,
    /// Aggregation of the analyses into a plan.
    Aggregation,
    /// A phase's agent.
    Phase(PhaseId),
    /// A task's agent.
    Task,
    /// Git operations.
    GitOperations,
    /// Merge conflict resolution.
    ConflictResolution,
    /// A host-defined role.
    Custom(String),
}

/// Which mode [`Input::Start`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Run the four analyses, then the aggregation, and record the plan.
    Planning,
    /// Run the phases (the milestone must already be in execution mode).
    Execution,
}

/// One input to [`Engine::handle`](super::Engine::handle). Inputs about a unit of work carry
/// the attempt the engine started, so a late answer from a cancelled attempt is refused as
/// stale instead of being credited to the next one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Input {
    /// Start planning or execution; on an engine that already runs, carries on (restarts work
    /// interrupted by a crash, starts what is ready).
    Start(StartMode),
    /// The host started the work (informational).
    Started {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
    },
    /// The work reported progress.
    Progress {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
        /// How far it is.
        progress: Progress,
    },
    /// The work handed off a partial result (pipeline).
    Handoff {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
        /// The partial result.
        partial: serde_json::Value,
    },
    /// The work finished with its outputs and artifacts.
    Finished {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
        /// What it produced (`ItemOutput::into()` makes one; `CompactOutput::default()` is
        /// the empty output, with nothing to allocate or convert).
        output: CompactOutput,
    },
    /// The work failed (transient, permanent, timeout, unavailable, …).
    Failed {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
        /// Why.
        error: ItemError,
    },
    /// The answer to [`Command::AwaitGate`].
    GateResult {
        /// The phase.
        item: ItemRef,
        /// Its attempt.
        attempt: u32,
        /// Whether the gate passed.
        passed: bool,
        /// Why, in words.
        message: String,
    },
    /// The answer to [`Command::AwaitIntervention`].
    Answer(Decision),
    /// Cancel the milestone: running work is cancelled and nothing new starts.
    Cancel,
    /// Time passed: deadlines and retry timers are checked.
    Tick,
}

/// One input assembled for a start: an upstream unit and the data it produced (its output's
/// `data`, or its last partial result when the pipeline started the successor early).
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Where the data comes from.
    pub from: Work,
    /// The data.
    pub data: serde_json::Value,
}

/// A stable content hash (FNV-1a 64) of a phase and its input, under which a result may be
/// cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub u64);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A key that is the same for every attempt of the same work in the same milestone, so that a
/// runner can make its effects happen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(pub u64);

impl IdempotencyKey {
    /// A key for work a host starts outside the engine (the orchestrator's merge conflict
    /// resolution, say): FNV-1a 64 of `text`, the same in every version.
    ///
    /// ```
    /// use milestone_core::engine::IdempotencyKey;
    /// assert_eq!(IdempotencyKey::of_text("a"), IdempotencyKey::of_text("a"));
    /// assert_ne!(IdempotencyKey::of_text("a"), IdempotencyKey::of_text("b"));
    /// assert_eq!(IdempotencyKey::of_text("").0, 0xcbf2_9ce4_8422_2325);
    /// ```
    pub fn of_text(text: &str) -> IdempotencyKey {
        let mut h = super::hash::Fnv::new();
        h.bytes(text.as_bytes());
        IdempotencyKey(h.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Start one attempt of a unit of work.
#[derive(Debug, Clone, PartialEq)]
pub struct StartCommand {
    /// The work.
    pub work: Work,
    /// Who does it.
    pub role: Role,
    /// Its input, from its dependencies' outputs: for a phase, one entry per predecessor (its
    /// output's `data`, or its partial result); for a task, one entry per dependency whose
    /// output carries data. Dependencies that produced no data (`null`) are left out of a
    /// task's input, so a task of a plain graph starts with an empty, unallocated list.
    pub input: Vec<Upstream>,
    /// The attempt, 1-based; echo it in the inputs about this work.
    pub attempt: u32,
    /// The attempt fails as timed out on a tick past this time.
    pub deadline: Timestamp,
    /// Declared budgets (and the timeout) of its phase.
    pub budget: Limits,
    /// The same for every attempt of this work.
    pub idempotency_key: IdempotencyKey,
    /// Content hash of (phase, input).
    pub cache_key: CacheKey,
    /// Whether a cached result under `cache_key` may be reused (the phase's cache policy).
    pub reusable: bool,
    /// Run the role's fallback (direct) runner: a degraded attempt.
    pub degraded: bool,
}

/// How a milestone run ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Planning finished and the plan is recorded.
    Planned,
    /// Every phase is done.
    Completed,
    /// The recovery chain was exhausted (or the host aborted).
    Failed {
        /// The work that failed.
        work: Work,
        /// Its attempts.
        attempts: u32,
        /// The last error.
        error: ItemError,
    },
    /// The host cancelled.
    Cancelled,
    /// The run was restricted to some phases
    /// ([`EngineConfig::phase_filter`](super::EngineConfig::phase_filter)) and none of them is
    /// left to run: each is done, or waits on phases outside the filter. The milestone stays
    /// active; a later run carries on.
    PhasesDone {
        /// The allowed phases that are not done and could not start in this run (their
        /// dependencies outside the filter are not done, or the phase limit is held by phases
        /// outside it). Empty when every allowed phase is done.
        waiting: Vec<PhaseId>,
    },
}

/// Something for the host to carry out, after persisting the step's events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Start an attempt. Boxed: a command moves by its pointer (measured cheaper than moving
    /// the whole start through the step and the host's loop).
    Start(Box<StartCommand>),
    /// Cancel a running attempt.
    Cancel {
        /// The work.
        work: Work,
        /// Its attempt.
        attempt: u32,
    },
    /// Take a checkpoint (a snapshot at this log position) under `label`.
    Checkpoint {
        /// The label.
        label: String,
    },
    /// Commit a completed phase on the milestone branch; the host records
    /// `Event::PhaseCommitted` once done. An engine resumed from a log where a completed phase
    /// has no such record asks again, so git operations must be idempotent.
    CommitPhase {
        /// The phase.
        phase: PhaseId,
    },
    /// Tag the completed milestone.
    Tag,
    /// Merge the milestone branch into its base.
    Merge,
    /// Feed [`Input::Tick`] at (or after) this time. Each request replaces the previous one
    /// (the engine asks again whenever its earliest timer changes or the last request passed).
    WakeAt(Timestamp),
    /// Run the host's quality gate on a finished phase and answer with [`Input::GateResult`].
    AwaitGate {
        /// The phase.
        item: ItemRef,
        /// Its attempt.
        attempt: u32,
    },
    /// Ask the host to decide; answer with [`Input::Answer`].
    AwaitIntervention {
        /// The item concerned.
        item: Option<ItemRef>,
        /// Why.
        reason: String,
        /// The answers allowed.
        options: Vec<Decision>,
    },
    /// The run is over.
    Finished(Outcome),
}

/// The result of one input: events to append (already applied to the engine's state, in
/// order), then commands to carry out. Reuse one with
/// [`Engine::handle_into`](super::Engine::handle_into) to avoid allocating per input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// Events, in order.
    pub events: Vec<crate::event::Event>,
    /// Commands, in order.
    pub commands: Vec<Command>,
}

impl Step {
    /// Empties both lists, keeping their capacity.
    pub fn clear(&mut self) {
        self.events.clear();
        self.commands.clear();
    }
}

/// Why the engine refused an input. A refused input changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is invalid.
    #[error("invalid engine configuration: {0}")]
    Config(Problems),
    /// The event log does not fold into a state.
    #[error("the event log does not fold: {0}")]
    Log(TransitionError),
    /// The input needs another mode.
    #[error("the milestone is in {actual:?} mode; this input needs {expected:?} mode")]
    WrongMode {
        /// The mode the input needs.
        expected: Mode,
        /// The milestone's mode.
        actual: Mode,
    },
    /// The milestone cannot take this input in its status.
    #[error("the milestone is {status}: {reason}")]
    Status {
        /// Its status.
        status: MilestoneStatus,
        /// What was refused.
        reason: &'static str,
    },
    /// The input names work the milestone does not have.
    #[error("{work}: no such work in this milestone")]
    UnknownWork {
        /// The work.
        work: Work,
    },
    /// The input is about work that is not running under that attempt (late, duplicate, or
    /// from a cancelled attempt).
    #[error("{work}: attempt {attempt} is not running")]
    NotRunning {
        /// The work.
        work: Work,
        /// The attempt named.
        attempt: u32,
    },
    /// An answer that does not fit the open intervention.
    #[error("intervention answer refused: {0}")]
    Answer(String),
    /// An event the engine built was refused by the state (a bug in the engine; the events
    /// already applied are in the step).
    #[error("internal: {0}")]
    Internal(TransitionError),
}
