//! Milestone plans: the typed result of planning mode.
//!
//! Four analyses — scope, estimation, risk and KIRO strategy — are merged into one
//! [`MilestonePlan`].

use serde::{Deserialize, Serialize};

use crate::complexity::Complexity;
use crate::id::PhaseId;
use crate::kiro::KiroStrategy;
use crate::state::TaskSpec;

/// The scope analysis: what the milestone touches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeAnalysis {
    /// Components in scope.
    #[serde(default)]
    pub components: Vec<String>,
    /// External dependencies it relies on.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// How many files it is expected to touch.
    #[serde(default)]
    pub file_count: u32,
    /// The assessed complexity.
    #[serde(default)]
    pub complexity: Complexity,
    /// Factors that raise risk.
    #[serde(default)]
    pub risk_factors: Vec<String>,
}

/// The effort estimate of one phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseEstimate {
    /// The phase.
    pub phase: PhaseId,
    /// Estimated effort in milliseconds.
    pub effort_ms: u64,
}

/// The estimation analysis: effort per phase, timeline with buffer, critical path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimates {
    /// One estimate per phase.
    #[serde(default)]
    pub phases: Vec<PhaseEstimate>,
    /// Buffer added to the timeline, in percent.
    #[serde(default)]
    pub buffer_percent: u32,
    /// The phases on the critical path, in order.
    #[serde(default)]
    pub critical_path: Vec<PhaseId>,
}

/// A coarse level for probabilities and impacts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Low.
    Low,
    /// Medium.
    #[default]
    Medium,
    /// High.
    High,
}

/// One risk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// What could go wrong.
    pub description: String,
    /// How likely it is.
    pub probability: Level,
    /// How bad it would be.
    pub impact: Level,
    /// What lowers it.
    pub mitigation: String,
    /// What to do if it happens.
    pub contingency: String,
}

/// The plan of a milestone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilestonePlan {
    /// The scope analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeAnalysis>,
    /// The estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimates: Option<Estimates>,
    /// The risks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risks: Option<Vec<Risk>>,
    /// The KIRO strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiro: Option<KiroStrategy>,
    /// The tasks of the task phase, with their dependencies.
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
}
