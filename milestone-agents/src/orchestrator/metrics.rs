//! What one run of the orchestrator measured: [`Report`], [`PhaseTiming`] and
//! [`ExecutionMetrics`], which feed the direct-vs-agent comparison
//! ([`milestone_core::complexity::compare`]).

use milestone_core::complexity::RunMetrics;
use milestone_core::engine::{Outcome, Strategy};
use milestone_core::state::Intervention;
use milestone_core::{
    ExecutionMode, MilestoneId, MilestoneState, MilestoneStatus, PhaseId, ProgressReport, Timestamp,
};

/// Counters of one `execute` / `resume` / `answer` / `plan` call.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ExecutionMetrics {
    /// When the call started (on the orchestrator's clock).
    pub started_at: Timestamp,
    /// When it returned.
    pub finished_at: Timestamp,
    /// Attempts handed to a runner.
    pub runs: u64,
    /// Of those, run by the role's agent.
    pub agent_runs: u64,
    /// Of those, run by the role's direct runner because the mode said so.
    pub direct_runs: u64,
    /// Of those, run by the direct runner because the agent was unavailable or not bound.
    pub fallback_runs: u64,
    /// Of those, degraded attempts (the recovery chain's degrade step).
    pub degraded_runs: u64,
    /// Starts answered from the result cache (no runner ran).
    pub cache_hits: u64,
    /// Attempts that failed (any kind, timeouts included).
    pub failures: u64,
    /// Attempts that ran past their deadline.
    pub timeouts: u64,
    /// The most runs in flight at once.
    pub max_parallel: u32,
    /// Milliseconds spent in runners, summed over every run (a resource-use measure).
    pub busy_ms: u64,
    /// The sum of every quality figure reported by successful runs.
    pub quality_sum: f64,
    /// How many quality figures were reported.
    pub quality_count: u64,
    /// Events appended to the store.
    pub events_appended: u64,
    /// Store appends (a durable store syncs once per append: group commit).
    pub appends: u64,
    /// Git operations carried out (commits, tag, merge, branch).
    pub git_operations: u64,
}

impl ExecutionMetrics {
    /// Wall-clock duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.finished_at.millis_since(self.started_at)
    }

    /// The mean quality figure, 1.0 when none was reported (as good as direct, by convention).
    pub fn quality(&self) -> f64 {
        if self.quality_count == 0 {
            1.0
        } else {
            self.quality_sum / self.quality_count as f64
        }
    }

    /// The figures [`milestone_core::complexity::compare`] takes.
    pub fn run_metrics(&self) -> RunMetrics {
        RunMetrics {
            duration_ms: self.duration_ms(),
            parallel_tasks: self.max_parallel,
            resource_use: self.busy_ms as f64,
            quality: self.quality(),
        }
    }
}

/// How long one phase took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTiming {
    /// The phase.
    pub phase: PhaseId,
    /// When its first attempt started.
    pub started_at: Option<Timestamp>,
    /// When it completed.
    pub completed_at: Option<Timestamp>,
    /// Attempts started.
    pub attempts: u32,
}

impl PhaseTiming {
    /// Milliseconds from the first start to completion, once completed.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.completed_at?.millis_since(self.started_at?))
    }

    pub(crate) fn of(state: &MilestoneState) -> Vec<PhaseTiming> {
        state
            .phases()
            .iter()
            .map(|p| PhaseTiming {
                phase: p.id.clone(),
                started_at: p.item.started_at,
                completed_at: p.item.completed_at,
                attempts: p.item.attempts,
            })
            .collect()
    }
}

/// What an orchestrator call returns: where the milestone stands and what the call measured.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The milestone.
    pub milestone: MilestoneId,
    /// Its status when the call returned.
    pub status: MilestoneStatus,
    /// How the run ended; `None` when it paused (awaiting intervention) or nothing was left to
    /// do in this call.
    pub outcome: Option<Outcome>,
    /// The open intervention, when the milestone awaits the host's answer.
    pub intervention: Option<Intervention>,
    /// The execution mode used (direct, hybrid or agents).
    pub mode: ExecutionMode,
    /// The strategy in force, once execution started.
    pub strategy: Option<Strategy>,
    /// Progress at the end of the call.
    pub progress: ProgressReport,
    /// Per-phase timings.
    pub phases: Vec<PhaseTiming>,
    /// Counters.
    pub metrics: ExecutionMetrics,
    /// The log version at the end of the call.
    pub version: u64,
}

/// One line a host can log:
/// `milestone login: completed (completed), 100.00 %, agents mode, pipeline strategy; 6 runs
/// (4 agent, 2 direct, 0 fallback, 0 degraded), 1 cache hit, 0 failures, 0 timeouts; 40 events in
/// 12 appends; 4 git operations; 1200 ms`.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match &self.outcome {
            None => "paused".to_owned(),
            Some(Outcome::Planned) => "planned".to_owned(),
            Some(Outcome::Completed) => "completed".to_owned(),
            Some(Outcome::Cancelled) => "cancelled".to_owned(),
            Some(Outcome::Failed {
                work,
                attempts,
                error,
            }) => format!(
                "failed: {work} after {attempts} attempts: {}",
                error.message
            ),
            Some(Outcome::PhasesDone { waiting }) if waiting.is_empty() => "phases done".to_owned(),
            Some(Outcome::PhasesDone { waiting }) => format!(
                "phases done, waiting: {}",
                waiting
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(other) => format!("{other:?}"),
        };
        let mode = match self.mode {
            ExecutionMode::Direct => "direct",
            ExecutionMode::Hybrid => "hybrid",
            _ => "agents",
        };
        let m = &self.metrics;
        write!(
            f,
            "milestone {}: {} ({outcome}), {}, {mode} mode",
            self.milestone, self.status, self.progress.overall
        )?;
        if let Some(s) = self.strategy {
            write!(f, ", {} strategy", s.name())?;
        }
        write!(
            f,
            "; {} runs ({} agent, {} direct, {} fallback, {} degraded), {} cache hit{}, {} \
             failures, {} timeouts; {} events in {} appends; {} git operations; {} ms",
            m.runs,
            m.agent_runs,
            m.direct_runs,
            m.fallback_runs,
            m.degraded_runs,
            m.cache_hits,
            if m.cache_hits == 1 { "" } else { "s" },
            m.failures,
            m.timeouts,
            m.events_appended,
            m.appends,
            m.git_operations,
            m.duration_ms()
        )
    }
}

impl Report {
    /// Whether the milestone completed.
    pub fn is_completed(&self) -> bool {
        self.status == MilestoneStatus::Completed
    }

    /// Whether the milestone waits for [`answer`](super::Orchestrator::answer).
    pub fn awaits_intervention(&self) -> bool {
        self.status == MilestoneStatus::AwaitingIntervention
    }
}
