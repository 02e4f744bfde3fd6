//! Complexity assessment, the direct / hybrid / agents decision, and the direct-vs-agent
//! comparison.
//!
//! A host decides how to run a milestone from how big it is: small work is cheaper done directly
//! (in-process, no agents), large work pays for agent coordination. These functions are the
//! rules of DESIGN.md as plain, total functions: they never panic, and odd inputs (zero
//! durations, NaN scores) give documented, finite answers.
//!
//! ```
//! use milestone_core::complexity::{assess, decide, Complexity, ComplexityInput, ExecutionMode};
//!
//! let input = ComplexityInput { tasks: 25, files: 12, phases: 4, git_operations: 7 };
//! assert_eq!(assess(&input), Complexity::High);
//! assert_eq!(decide(Complexity::High, true), ExecutionMode::Agents);
//! assert_eq!(decide(Complexity::High, false), ExecutionMode::Direct);
//! ```

use serde::{Deserialize, Serialize};

use crate::plan::MilestonePlan;
use crate::workflow::Workflow;

/// How complex a milestone is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Complexity {
    /// Low.
    #[default]
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// More tasks than this is at least medium.
pub const MEDIUM_TASKS: u32 = 10;
/// More tasks than this is high.
pub const HIGH_TASKS: u32 = 20;
/// More files than this is at least medium.
pub const MEDIUM_FILES: u32 = 20;
/// More files than this is high.
pub const HIGH_FILES: u32 = 50;
/// More phases than this raises low to medium (never to high).
pub const MEDIUM_PHASES: u32 = 6;
/// More git operations than this raises low to medium (never to high).
pub const MEDIUM_GIT_OPERATIONS: u32 = 25;

/// What a complexity assessment looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplexityInput {
    /// Tasks in the task breakdown.
    pub tasks: u32,
    /// Files expected to change.
    pub files: u32,
    /// Phases in the workflow.
    pub phases: u32,
    /// Git operations the milestone needs (branch, commits, tag, merge).
    pub git_operations: u32,
}

impl ComplexityInput {
    /// The input a plan describes: its task count, its scope's file count (0 without a scope),
    /// the workflow's phase count, and `phases + 3` git operations (one branch, one commit per
    /// phase, one tag, one merge).
    pub fn for_plan(plan: &MilestonePlan, workflow: &Workflow) -> ComplexityInput {
        let phases = u32::try_from(workflow.phases().len()).unwrap_or(u32::MAX);
        ComplexityInput {
            tasks: u32::try_from(plan.tasks.len()).unwrap_or(u32::MAX),
            files: plan.scope.as_ref().map_or(0, |s| s.file_count),
            phases,
            git_operations: phases.saturating_add(3),
        }
    }
}

/// Assesses complexity with the thresholds of DESIGN.md:
///
/// - **high** when tasks > [`HIGH_TASKS`] (20) or files > [`HIGH_FILES`] (50);
/// - **medium** when tasks > [`MEDIUM_TASKS`] (10) or files > [`MEDIUM_FILES`] (20);
/// - **medium** also when phases > [`MEDIUM_PHASES`] (6) or git operations >
///   [`MEDIUM_GIT_OPERATIONS`] (25): a long workflow or much git work is coordination a
///   direct run does badly, but it never makes a milestone high on its own;
/// - **low** otherwise (the default four-phase workflow with its 7 git operations stays low).
pub fn assess(input: &ComplexityInput) -> Complexity {
    if input.tasks > HIGH_TASKS || input.files > HIGH_FILES {
        Complexity::High
    } else if input.tasks > MEDIUM_TASKS
        || input.files > MEDIUM_FILES
        || input.phases > MEDIUM_PHASES
        || input.git_operations > MEDIUM_GIT_OPERATIONS
    {
        Complexity::Medium
    } else {
        Complexity::Low
    }
}

/// How a milestone is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionMode {
    /// In-process, no agents.
    Direct,
    /// Some phases direct, the heavy ones (execution) with agents.
    Hybrid,
    /// Every phase with agents.
    Agents,
}

/// The execution mode for a complexity: high with agents available → agents; medium with
/// agents available → hybrid; low, or no agents available → direct.
pub fn decide(complexity: Complexity, agents_available: bool) -> ExecutionMode {
    match (complexity, agents_available) {
        (_, false) | (Complexity::Low, true) => ExecutionMode::Direct,
        (Complexity::Medium, true) => ExecutionMode::Hybrid,
        (Complexity::High, true) => ExecutionMode::Agents,
    }
}

/// The metrics of one run of the same milestone, direct or with agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunMetrics {
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// The most tasks that ran at once (0 is read as 1: a run does one thing at a time at least).
    pub parallel_tasks: u32,
    /// Resources used, in any unit the host keeps fixed across runs (CPU seconds, tokens, …).
    /// Negative or NaN is read as 0.
    pub resource_use: f64,
    /// A quality score in any unit the host keeps fixed (share of tests passed, review score).
    /// Negative or NaN is read as 0.
    pub quality: f64,
}

/// How an agent run compares with a direct run. Every ratio is finite and within
/// `0.0..=`[`MAX_RATIO`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// Direct duration ÷ agent duration (above 1: agents are faster).
    pub speedup: f64,
    /// Agent parallel tasks ÷ direct parallel tasks.
    pub parallelism: f64,
    /// Direct resource use ÷ agent resource use (above 1: agents use less).
    pub resource_efficiency: f64,
    /// Agent quality ÷ direct quality (at least 1: agents are as good or better).
    pub quality: f64,
    /// What to do.
    pub recommendation: Recommendation,
}

/// What a [`Comparison`] recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recommendation {
    /// Speedup > 2 and quality ≥ 1: always use agents.
    AlwaysAgents,
    /// Speedup > 1.5: use agents for complex milestones.
    AgentsForComplex,
    /// Otherwise: run simple milestones directly.
    DirectForSimple,
}

impl Recommendation {
    /// The recommendation of DESIGN.md for a speedup and quality ratio: speedup > 2 and
    /// quality ≥ 1 → [`Recommendation::AlwaysAgents`]; speedup > 1.5 →
    /// [`Recommendation::AgentsForComplex`]; otherwise [`Recommendation::DirectForSimple`].
    /// NaN compares false everywhere, so it gives `DirectForSimple`.
    pub fn from_ratios(speedup: f64, quality: f64) -> Recommendation {
        if speedup > 2.0 && quality >= 1.0 {
            Recommendation::AlwaysAgents
        } else if speedup > 1.5 {
            Recommendation::AgentsForComplex
        } else {
            Recommendation::DirectForSimple
        }
    }
}

/// The largest ratio a [`Comparison`] reports (a zero denominator with a positive numerator).
pub const MAX_RATIO: f64 = 1e9;

/// `num ÷ den` for non-negative measures: NaN and negatives are read as 0; 0 ÷ 0 is 1 (no
/// difference); x ÷ 0 is [`MAX_RATIO`]; the result is clamped to `0.0..=MAX_RATIO`.
fn ratio(num: f64, den: f64) -> f64 {
    let clean = |x: f64| if x.is_nan() || x < 0.0 { 0.0 } else { x };
    let (num, den) = (clean(num), clean(den));
    if den == 0.0 {
        return if num == 0.0 { 1.0 } else { MAX_RATIO };
    }
    let r = num / den;
    if r.is_nan() {
        1.0
    } else {
        r.clamp(0.0, MAX_RATIO)
    }
}

/// Compares a direct run with an agent run of the same work (see [`Comparison`] for each
/// ratio and [`Recommendation::from_ratios`] for the rule). Never panics and every ratio is
/// finite: negative or NaN measures are read as 0, 0 ÷ 0 is 1 (no difference), x ÷ 0 is
/// [`MAX_RATIO`], and results are clamped to `0.0..=MAX_RATIO`.
pub fn compare(direct: &RunMetrics, agents: &RunMetrics) -> Comparison {
    let speedup = ratio(direct.duration_ms as f64, agents.duration_ms as f64);
    let parallelism = ratio(
        f64::from(agents.parallel_tasks.max(1)),
        f64::from(direct.parallel_tasks.max(1)),
    );
    let resource_efficiency = ratio(direct.resource_use, agents.resource_use);
    let quality = ratio(agents.quality, direct.quality);
    Comparison {
        speedup,
        parallelism,
        resource_efficiency,
        quality,
        recommendation: Recommendation::from_ratios(speedup, quality),
    }
}
