//! Engine configuration: strategy, concurrency, recovery chain, gates.
//!
//! A [`EngineConfig`] is plain data with defaults from the issue (sequential strategy, 64 items
//! at once, retry 3 attempts with 1 s base, factor 2, 5 min cap and full jitter, then rollback,
//! degraded execution and manual intervention). [`EngineConfig::validate`] reports every
//! problem at once; [`EngineConfig::validate_for`] also checks the names it gives against a
//! workflow (the engine calls it when it is built).

use crate::complexity::Complexity;
use crate::error::{Problem, ProblemKind, Problems};
use crate::id::PhaseId;
use crate::units::{Progress, Timestamp};
use crate::workflow::Workflow;

/// The default pipeline threshold: 50 % (in basis points).
pub const DEFAULT_PIPELINE_THRESHOLD_BP: u32 = 5_000;

/// How phases are ordered against each other. Tasks always run in parallel where their graph
/// allows, up to the concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// One phase at a time, in workflow order (and dependency order).
    Sequential,
    /// Every phase whose dependencies are done runs at once (up to the workflow's phase limit);
    /// a phase with several dependencies is the aggregate step that receives all their outputs.
    ParallelIndependent,
    /// A phase may start once each predecessor has handed off a partial result or reached
    /// `threshold`, but never completes before its predecessors; a predecessor's failure
    /// cancels its early successors.
    Pipeline {
        /// The progress at which a successor may start (default 50 %).
        threshold: Progress,
    },
    /// Chosen at execution start from complexity, agent availability and deadline
    /// ([`AdaptiveInputs`]); the choice is recorded as a `strategy-chosen` event.
    Adaptive,
}

impl Strategy {
    /// The pipeline strategy with the default 50 % threshold.
    pub fn pipeline() -> Strategy {
        Strategy::Pipeline {
            threshold: Progress::from_basis_points(DEFAULT_PIPELINE_THRESHOLD_BP),
        }
    }

    /// The strategy a `strategy-chosen` event names (`adaptive` is never recorded: its choice
    /// is). A pipeline takes `threshold`.
    pub fn from_name(name: &str, threshold: Progress) -> Option<Strategy> {
        match name {
            "sequential" => Some(Strategy::Sequential),
            "parallel-independent" => Some(Strategy::ParallelIndependent),
            "pipeline" => Some(Strategy::Pipeline { threshold }),
            _ => None,
        }
    }

    /// The name recorded in `strategy-chosen` events.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Sequential => "sequential",
            Strategy::ParallelIndependent => "parallel-independent",
            Strategy::Pipeline { .. } => "pipeline",
            Strategy::Adaptive => "adaptive",
        }
    }
}

/// What the adaptive strategy decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdaptiveInputs {
    /// The milestone's complexity; when `None`, the plan's scope complexity, else low.
    pub complexity: Option<Complexity>,
    /// How many agents are available (0: direct execution, one phase at a time).
    pub agents_available: u32,
    /// The deadline, if any: when the plan's estimates do not fit before it, phases overlap.
    pub deadline: Option<Timestamp>,
}

/// One step of the recovery chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecoveryStep {
    /// Retry with exponential backoff and full jitter (skipped for permanent errors).
    Retry,
    /// Roll the state back to the last checkpoint (as an event; history is kept).
    Rollback,
    /// Run the role's fallback (direct) runner once, or skip an optional phase.
    Degrade,
    /// Ask the host: the milestone awaits intervention until answered.
    Intervene,
}

/// Retry settings: `max_attempts` attempts in all, delays `base_ms × factor^(n-1)` capped at
/// `cap_ms`, each drawn uniformly from `0..=delay` (full jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all before the next recovery step (default 3).
    pub max_attempts: u32,
    /// The first delay in milliseconds (default 1000).
    pub base_ms: u64,
    /// The growth factor (default 2).
    pub factor: u32,
    /// The largest delay in milliseconds (default 300 000).
    pub cap_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base_ms: 1_000,
            factor: 2,
            cap_ms: 300_000,
        }
    }
}

/// The recovery chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// The steps, tried in this order; the first that applies is taken. When none applies the
    /// milestone fails naming the item, its attempts and the last error.
    pub order: Vec<RecoveryStep>,
    /// Retry settings.
    pub retry: RetryConfig,
    /// How many rollbacks a milestone may use in all (default 1).
    pub max_rollbacks: u32,
    /// Whether a degraded attempt with the fallback runner is allowed for non-optional items
    /// (default true). Optional phases are always skippable by the degrade step.
    pub fallback: bool,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            order: vec![
                RecoveryStep::Retry,
                RecoveryStep::Rollback,
                RecoveryStep::Degrade,
                RecoveryStep::Intervene,
            ],
            retry: RetryConfig::default(),
            max_rollbacks: 1,
            fallback: true,
        }
    }
}

/// Everything the engine needs besides the workflow and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How phases overlap (default sequential).
    pub strategy: Strategy,
    /// Inputs of the adaptive strategy.
    pub adaptive: AdaptiveInputs,
    /// The global limit of agents running at once, phases and tasks together (default 64).
    /// Phases are further limited by the workflow's `max_parallel_phases`.
    pub max_concurrency: usize,
    /// The recovery chain.
    pub recovery: RecoveryConfig,
    /// Phases whose finish waits for a host gate (`Command::AwaitGate` → `Input::GateResult`).
    pub host_gates: Vec<PhaseId>,
    /// Whether a completed milestone is merged into its base (`Command::Merge`).
    pub merge: bool,
    /// How long one planning analysis may run, in milliseconds (default 1 800 000).
    pub planning_timeout_ms: u64,
    /// Run only these phases (default `None`: every phase). This is how a host runs one phase
    /// at a time — design directly, say, and execute later with agents.
    ///
    /// - Phases outside the filter never start, and are not restarted either: a phase outside
    ///   it that a crash left in progress stays in progress (and counts against the phase
    ///   limit) until a run whose filter allows it, or an unfiltered one, starts it again.
    ///   Failures of phases outside it found on resume wait for such a run too.
    /// - Tasks belong to the task phase ([`Workflow::task_phase`]): they run when it is
    ///   allowed. A phase in the filter that lists tasks adds them as usual; they wait.
    /// - A phase in the filter starts when its dependencies allow it under the strategy, as
    ///   always; failures walk the recovery chain as usual.
    /// - Once nothing the filter allows is running, waiting for a retry or able to start, the
    ///   run ends with [`Outcome::PhasesDone`](super::Outcome::PhasesDone) naming the allowed
    ///   phases that could not start, without completing or failing the milestone: it stays
    ///   active and a later run carries on. When the filtered phases were the last ones, the
    ///   milestone completes as usual ([`Outcome::Completed`](super::Outcome::Completed)).
    ///
    /// [`EngineConfig::validate_for`] reports ids the workflow does not have, ids listed
    /// twice and an empty filter.
    pub phase_filter: Option<Vec<PhaseId>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            strategy: Strategy::Sequential,
            adaptive: AdaptiveInputs::default(),
            max_concurrency: 64,
            recovery: RecoveryConfig::default(),
            host_gates: Vec::new(),
            merge: false,
            planning_timeout_ms: crate::workflow::DEFAULT_TIMEOUT_MS,
            phase_filter: None,
        }
    }
}

impl EngineConfig {
    /// Checks the configuration, reporting every problem at once.
    ///
    /// # Errors
    /// [`Problems`] naming each bad field.
    pub fn validate(&self) -> Result<(), Problems> {
        let mut p = Vec::new();
        if self.max_concurrency == 0 {
            p.push(Problem::new(
                "max_concurrency",
                ProblemKind::OutOfRange,
                "at least one item must be allowed to run",
            ));
        }
        if self.recovery.retry.max_attempts == 0 {
            p.push(Problem::new(
                "recovery.retry.max_attempts",
                ProblemKind::OutOfRange,
                "at least one attempt is needed",
            ));
        }
        if self.recovery.retry.factor == 0 {
            p.push(Problem::new(
                "recovery.retry.factor",
                ProblemKind::OutOfRange,
                "the backoff factor must be at least 1",
            ));
        }
        if self.planning_timeout_ms == 0 {
            p.push(Problem::new(
                "planning_timeout_ms",
                ProblemKind::OutOfRange,
                "the planning timeout must be positive",
            ));
        }
        for (i, s) in self.recovery.order.iter().enumerate() {
            if self.recovery.order[..i].contains(s) {
                p.push(Problem::new(
                    format!("recovery.order[{i}]"),
                    ProblemKind::DuplicateId,
                    format!("recovery step {s:?} is listed twice"),
                ));
            }
        }
        if let Strategy::Pipeline { threshold } = self.strategy
            && threshold == Progress::ZERO
        {
            p.push(Problem::new(
                "strategy.threshold",
                ProblemKind::OutOfRange,
                "a pipeline threshold of 0 would start successors before their predecessors",
            ));
        }
        Problems(p).into_result(())
    }

    /// As [`EngineConfig::validate`], and checks [`EngineConfig::phase_filter`] against
    /// `workflow`: every id must be one of its phases, each listed once, and at least one
    /// listed. Every problem is reported at once. ([`EngineConfig::host_gates`] is not
    /// checked: one configuration may serve milestones of several workflows.)
    ///
    /// ```
    /// use milestone_core::engine::EngineConfig;
    /// use milestone_core::{PhaseId, ProblemKind, Workflow};
    ///
    /// let config = EngineConfig {
    ///     phase_filter: Some(vec![PhaseId::new("design")?, PhaseId::new("deploy")?,
    ///         PhaseId::new("review")?]),
    ///     ..EngineConfig::default()
    /// };
    /// let problems = config.validate_for(&Workflow::kiro()).unwrap_err();
    /// assert_eq!(problems.len(), 2);
    /// assert!(problems.iter().all(|p| p.kind == ProblemKind::UnknownPhase));
    /// assert_eq!(problems.0[0].location, "phase_filter[1]");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Problems`] naming each bad field.
    pub fn validate_for(&self, workflow: &Workflow) -> Result<(), Problems> {
        let mut p = match self.validate() {
            Ok(()) => Vec::new(),
            Err(Problems(p)) => p,
        };
        if let Some(filter) = &self.phase_filter {
            if filter.is_empty() {
                p.push(Problem::new(
                    "phase_filter",
                    ProblemKind::Missing,
                    "an empty phase filter allows nothing to run (use None to run every phase)",
                ));
            }
            for (i, id) in filter.iter().enumerate() {
                if workflow.position(id.as_str()).is_none() {
                    p.push(Problem::new(
                        format!("phase_filter[{i}]"),
                        ProblemKind::UnknownPhase,
                        format!("the workflow has no phase {:?}", id.as_str()),
                    ));
                } else if filter[..i].contains(id) {
                    p.push(Problem::new(
                        format!("phase_filter[{i}]"),
                        ProblemKind::DuplicateId,
                        format!("phase {:?} is listed twice", id.as_str()),
                    ));
                }
            }
        }
        Problems(p).into_result(())
    }

    /// Whether the phase filter lets the phase `id` start (always, without a filter).
    pub fn allows_phase(&self, id: &PhaseId) -> bool {
        self.phase_filter
            .as_ref()
            .is_none_or(|f| f.iter().any(|p| p == id))
    }
}
