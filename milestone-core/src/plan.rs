//! Milestone plans: the typed result of planning mode, its validation, and the transition
//! to execution.
//!
//! Planning runs four analyses in parallel — scope, estimation (which may carry the task
//! breakdown), risk and KIRO strategy. Their results are typed values gathered in an
//! [`Analyses`]; [`aggregate`] merges them into one [`MilestonePlan`] deterministically.
//! A plan may be incomplete (an analysis failed or has not reported): that is allowed while
//! planning and caught by [`validate_plan`], which reports **every** problem at once. Only a
//! valid plan starts execution: [`start_execution`] returns the events that do it and
//! [`initial_execution_state`] the state they lead to — or the problems, with nothing changed.
//!
//! ```
//! use milestone_core::plan::{aggregate, initial_execution_state, Analyses, EstimationAnalysis,
//!     Estimates, PhaseEstimate, RiskAnalysis, ScopeAnalysis};
//! use milestone_core::{Event, KiroItem, KiroStrategy, MilestoneId, MilestoneState, Mode,
//!     PhaseId, TaskId, TaskSpec, Timestamp, Workflow};
//!
//! let workflow = Workflow::kiro();
//! let estimates = Estimates {
//!     phases: workflow
//!         .phases()
//!         .iter()
//!         .map(|p| PhaseEstimate { phase: p.id.clone(), effort_ms: 3_600_000 })
//!         .collect(),
//!     buffer_percent: 20,
//!     critical_path: vec![PhaseId::new("design")?, PhaseId::new("execute")?],
//! };
//! let mut api = TaskSpec::new(TaskId::new("api")?, "Login API");
//! api.dependencies.push(TaskId::new("schema")?);
//! let schema = TaskSpec::new(TaskId::new("schema")?, "User schema");
//! let plan = aggregate(Analyses {
//!     scope: Some(ScopeAnalysis::default()),
//!     estimation: Some(EstimationAnalysis { estimates, tasks: vec![api, schema] }),
//!     risk: Some(RiskAnalysis::default()),
//!     kiro: Some(KiroStrategy {
//!         keep: vec![KiroItem::new("session store", PhaseId::new("design")?)],
//!         ..KiroStrategy::default()
//!     }),
//! });
//!
//! let mut state = MilestoneState::new(MilestoneId::new("login")?, "Add login", "", workflow,
//!     Timestamp(0), 1);
//! state.apply(&Event::PlanRecorded { at: Timestamp(1), plan: Box::new(plan) })?;
//! let running = initial_execution_state(&state, Timestamp(2))?;
//! assert_eq!(running.mode(), Mode::Execution);
//! // Tasks are added in dependency order: `schema` before `api`.
//! assert_eq!(running.tasks()[0].spec.id.as_str(), "schema");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::complexity::Complexity;
use crate::error::{LoadError, Problem, ProblemKind, Problems};
use crate::event::Event;
use crate::id::PhaseId;
use crate::kiro::{KiroCategory, KiroItem, KiroStrategy};
use crate::state::{MilestoneState, Mode, TaskSpec, TransitionError};
use crate::units::Timestamp;
use crate::workflow::Workflow;

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

/// The newest plan document schema this build reads, and the one [`MilestonePlan::to_json`]
/// writes.
pub const PLAN_SCHEMA_VERSION: u32 = 1;

/// The largest plan JSON [`MilestonePlan::from_json`] accepts (64 MiB: room for a few hundred
/// thousand tasks).
pub const MAX_PLAN_JSON: usize = 64 << 20;

impl Level {
    /// 1 for low, 2 for medium, 3 for high.
    pub fn rank(self) -> u8 {
        match self {
            Level::Low => 1,
            Level::Medium => 2,
            Level::High => 3,
        }
    }
}

impl Risk {
    /// Probability rank × impact rank: 1 (low, low) to 9 (high, high).
    pub fn severity(&self) -> u8 {
        self.probability.rank() * self.impact.rank()
    }
}

impl Estimates {
    /// The estimate of `phase`, if any.
    pub fn for_phase(&self, phase: &str) -> Option<&PhaseEstimate> {
        self.phases.iter().find(|e| e.phase.as_str() == phase)
    }

    /// The sum of every phase's effort (saturating).
    pub fn total_effort_ms(&self) -> u64 {
        self.phases
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.effort_ms))
    }

    /// The timeline: total effort plus the buffer, `total × (100 + buffer) / 100`, rounded
    /// down and saturating at `u64::MAX`.
    pub fn timeline_ms(&self) -> u64 {
        let t = u128::from(self.total_effort_ms()) * (100 + u128::from(self.buffer_percent)) / 100;
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

/// The estimation analysis: estimates per phase and, when the estimator broke the work down,
/// the tasks with their dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimationAnalysis {
    /// Effort per phase, buffer and critical path.
    pub estimates: Estimates,
    /// The task breakdown, if the estimator made one.
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
}

/// The risk analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskAnalysis {
    /// The risks found (none is a valid answer).
    #[serde(default)]
    pub risks: Vec<Risk>,
}

/// The result of one planning analysis, as a host receives it from an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "analysis",
    content = "result",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
pub enum Analysis {
    /// The scope analysis.
    Scope(ScopeAnalysis),
    /// The estimation analysis.
    Estimation(EstimationAnalysis),
    /// The risk analysis.
    Risk(RiskAnalysis),
    /// The KIRO strategy.
    Kiro(KiroStrategy),
}

/// The four analyses of planning mode, each present once it has reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analyses {
    /// The scope analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeAnalysis>,
    /// The estimation analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimation: Option<EstimationAnalysis>,
    /// The risk analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskAnalysis>,
    /// The KIRO strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiro: Option<KiroStrategy>,
}

impl Analyses {
    /// Records one analysis, whatever order they finish in; returns the one of the same kind it
    /// replaces, if any (a re-run analysis supersedes the earlier result).
    pub fn record(&mut self, analysis: Analysis) -> Option<Analysis> {
        match analysis {
            Analysis::Scope(a) => self.scope.replace(a).map(Analysis::Scope),
            Analysis::Estimation(a) => self.estimation.replace(a).map(Analysis::Estimation),
            Analysis::Risk(a) => self.risk.replace(a).map(Analysis::Risk),
            Analysis::Kiro(a) => self.kiro.replace(a).map(Analysis::Kiro),
        }
    }

    /// Whether all four analyses have reported.
    pub fn is_complete(&self) -> bool {
        self.scope.is_some()
            && self.estimation.is_some()
            && self.risk.is_some()
            && self.kiro.is_some()
    }
}

/// Removes exact duplicates (items `cmp` finds equal), keeping the first of each and the order
/// of the rest. O(n log n), so a huge analysis cannot make aggregation quadratic.
fn dedup_by<T>(items: Vec<T>, cmp: impl Fn(&T, &T) -> Ordering) -> Vec<T> {
    if items.len() < 2 {
        return items;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Stable: among equal items the earliest index comes first and is the one kept.
    order.sort_by(|&a, &b| cmp(&items[a], &items[b]));
    let mut keep = vec![true; items.len()];
    for w in order.windows(2) {
        if cmp(&items[w[0]], &items[w[1]]) == Ordering::Equal {
            keep[w[1]] = false;
        }
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, k)| k.then_some(item))
        .collect()
}

fn dedup_kiro(items: Vec<KiroItem>) -> Vec<KiroItem> {
    dedup_by(items, |a, b| {
        (a.description.as_str(), a.phase.as_str()).cmp(&(b.description.as_str(), b.phase.as_str()))
    })
}

fn sorted_set(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Merges the analyses into one plan. Deterministic: the same analyses give the same plan,
/// whatever order they finished in. Missing analyses leave their section `None` (the
/// estimation's absence also means no tasks); [`validate_plan`] reports them.
///
/// What is normalised, and why:
/// - scope components, dependencies and risk factors are sets: sorted and deduplicated;
/// - risks are sorted by severity (highest first), then by description, mitigation,
///   contingency, probability and impact, and exact duplicates removed — a reader sees the
///   worst risks first and the order never depends on the analyst;
/// - phase estimates, KIRO items and tasks keep their order (it carries meaning: critical path,
///   priority of statements, the breakdown's reading order), with exact duplicates removed;
/// - the critical path is kept as given.
///
/// Entries that differ only in part (two estimates for one phase, two tasks with one id) are
/// kept: they are conflicts for [`validate_plan`] to report, not for aggregation to guess at.
pub fn aggregate(analyses: Analyses) -> MilestonePlan {
    let Analyses {
        scope,
        estimation,
        risk,
        kiro,
    } = analyses;
    let scope = scope.map(|s| ScopeAnalysis {
        components: sorted_set(s.components),
        dependencies: sorted_set(s.dependencies),
        file_count: s.file_count,
        complexity: s.complexity,
        risk_factors: sorted_set(s.risk_factors),
    });
    let (estimates, tasks) = match estimation {
        Some(e) => (
            Some(Estimates {
                phases: dedup_by(e.estimates.phases, |a, b| {
                    (a.phase.as_str(), a.effort_ms).cmp(&(b.phase.as_str(), b.effort_ms))
                }),
                buffer_percent: e.estimates.buffer_percent,
                critical_path: e.estimates.critical_path,
            }),
            dedup_by(e.tasks, |a, b| {
                (a.id.as_str(), a.title.as_str(), a.estimate_ms, a.priority)
                    .cmp(&(b.id.as_str(), b.title.as_str(), b.estimate_ms, b.priority))
                    .then_with(|| a.dependencies.cmp(&b.dependencies))
            }),
        ),
        None => (None, Vec::new()),
    };
    let risks = risk.map(|r| {
        let mut risks = r.risks;
        risks.sort_by(|a, b| {
            b.severity()
                .cmp(&a.severity())
                .then_with(|| a.description.cmp(&b.description))
                .then_with(|| a.mitigation.cmp(&b.mitigation))
                .then_with(|| a.contingency.cmp(&b.contingency))
                .then_with(|| a.probability.cmp(&b.probability))
                .then_with(|| a.impact.cmp(&b.impact))
        });
        risks.dedup();
        risks
    });
    let kiro = kiro.map(|k| KiroStrategy {
        keep: dedup_kiro(k.keep),
        improve: dedup_kiro(k.improve),
        remove: dedup_kiro(k.remove),
        originate: dedup_kiro(k.originate),
    });
    MilestonePlan {
        scope,
        estimates,
        risks,
        kiro,
        tasks,
    }
}

/// Checks the tasks' structure by the work graph's rules ([`crate::graph::task_order`]: ids
/// unique, dependencies known, no self-dependency, no cycle), pushing problems onto `out` with
/// locations under `plan.`; returns the tasks' dependency order when there is none.
fn task_structure(tasks: &[TaskSpec], out: &mut Vec<Problem>) -> Option<Vec<usize>> {
    match crate::graph::task_order(tasks) {
        Ok(order) => Some(order),
        Err(problems) => {
            out.extend(problems.0.into_iter().map(|mut p| {
                p.location = format!("plan.{}", p.location);
                p.message = p.message.replace("tasks[", "plan.tasks[");
                p
            }));
            None
        }
    }
}

/// Problems a plan has whatever its workflow: the tasks' structure, and no phase estimated
/// twice. Pushes onto `out` and returns the task graph.
fn structure_problems(plan: &MilestonePlan, out: &mut Vec<Problem>) -> Option<Vec<usize>> {
    let order = task_structure(&plan.tasks, out);
    if let Some(est) = &plan.estimates {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(est.phases.len());
        for (i, e) in est.phases.iter().enumerate() {
            if let Some(first) = seen.insert(e.phase.as_str(), i) {
                seen.insert(e.phase.as_str(), first);
                out.push(Problem::new(
                    format!("plan.estimates.phases[{i}].phase"),
                    ProblemKind::DuplicateId,
                    format!(
                        "phase {:?} is already estimated by plan.estimates.phases[{first}]",
                        e.phase.as_str()
                    ),
                ));
            }
        }
    }
    order
}

fn missing(location: &str, what: &str) -> Problem {
    Problem::new(
        location,
        ProblemKind::Missing,
        format!("the plan has no {what}"),
    )
}

fn unknown_phase(location: String, phase: &PhaseId) -> Problem {
    Problem::new(
        location,
        ProblemKind::UnknownPhase,
        format!("phase {:?} is not in the workflow", phase.as_str()),
    )
}

/// Validates a plan for the planning → execution transition against `workflow`, reporting
/// every problem at once:
///
/// - every section present (`plan.scope`, `plan.estimates`, `plan.risks`, `plan.kiro`; an empty
///   risk list is an answer, an empty KIRO strategy is not);
/// - each risk and KIRO item described (`plan.risks[0].description`,
///   `plan.kiro.keep[1].description`); each KIRO item's phase known
///   (`plan.kiro.improve[2].phase`);
/// - an estimate for every workflow phase (`plan.estimates.phases`), none for an unknown phase
///   (`plan.estimates.phases[1].phase`) and none twice; critical-path phases known and not
///   repeated (`plan.estimates.critical_path[0]`);
/// - tasks: ids unique (`plan.tasks[3].id`), dependencies known and not the task itself
///   (`plan.tasks[4].dependencies[0]`), no cycle (`plan.tasks[1].dependencies`, with the path
///   in the message).
///
/// # Errors
/// [`Problems`], never empty, in the order above.
pub fn validate_plan(plan: &MilestonePlan, workflow: &Workflow) -> Result<(), Problems> {
    let mut out = Vec::new();
    validate_into(plan, workflow, &mut out);
    Problems(out).into_result(())
}

/// [`validate_plan`] pushing onto `out`, returning the task graph for reuse.
fn validate_into(
    plan: &MilestonePlan,
    workflow: &Workflow,
    out: &mut Vec<Problem>,
) -> Option<Vec<usize>> {
    if plan.scope.is_none() {
        out.push(missing("plan.scope", "scope analysis"));
    }
    if plan.estimates.is_none() {
        out.push(missing("plan.estimates", "estimates"));
    }
    match &plan.risks {
        None => out.push(missing("plan.risks", "risk analysis")),
        Some(risks) => {
            for (i, r) in risks.iter().enumerate() {
                if r.description.trim().is_empty() {
                    out.push(Problem::new(
                        format!("plan.risks[{i}].description"),
                        ProblemKind::Missing,
                        "a risk needs a description",
                    ));
                }
            }
        }
    }
    match &plan.kiro {
        None => out.push(missing("plan.kiro", "KIRO strategy")),
        Some(k) if k.is_empty() => out.push(Problem::new(
            "plan.kiro",
            ProblemKind::Missing,
            "the KIRO strategy defines nothing to keep, improve, remove or originate",
        )),
        Some(k) => {
            for c in KiroCategory::ALL {
                for (i, item) in k.items(c).iter().enumerate() {
                    if item.description.trim().is_empty() {
                        out.push(Problem::new(
                            format!("plan.kiro.{}[{i}].description", c.name()),
                            ProblemKind::Missing,
                            format!("a KIRO item to {} needs a description", c.name()),
                        ));
                    }
                    if workflow.position(item.phase.as_str()).is_none() {
                        out.push(unknown_phase(
                            format!("plan.kiro.{}[{i}].phase", c.name()),
                            &item.phase,
                        ));
                    }
                }
            }
        }
    }
    if let Some(est) = &plan.estimates {
        for spec in workflow.phases() {
            if est.for_phase(spec.id.as_str()).is_none() {
                out.push(Problem::new(
                    "plan.estimates.phases",
                    ProblemKind::Missing,
                    format!("no estimate for phase {:?}", spec.id.as_str()),
                ));
            }
        }
        for (i, e) in est.phases.iter().enumerate() {
            if workflow.position(e.phase.as_str()).is_none() {
                out.push(unknown_phase(
                    format!("plan.estimates.phases[{i}].phase"),
                    &e.phase,
                ));
            }
        }
        for (i, p) in est.critical_path.iter().enumerate() {
            let loc = format!("plan.estimates.critical_path[{i}]");
            if workflow.position(p.as_str()).is_none() {
                out.push(unknown_phase(loc, p));
            } else if est.critical_path[..i].contains(p) {
                out.push(Problem::new(
                    loc,
                    ProblemKind::DuplicateId,
                    format!("phase {:?} appears twice on the critical path", p.as_str()),
                ));
            }
        }
    }
    structure_problems(plan, out)
}

/// The events that move a milestone in planning mode with a recorded plan into execution:
/// [`Event::ExecutionStarted`], then — when the plan has tasks — [`Event::TasksAdded`] with them
/// in dependency order ([`crate::graph::order_tasks`]), both at `at`.
///
/// Checks first, reporting every problem at once: the milestone is in planning mode
/// (`mode`) and active (`status`), a plan is recorded (`plan`), the plan is valid for the
/// milestone's workflow ([`validate_plan`]), and no planned task id is already a task of the
/// milestone (`plan.tasks[i].id`). Nothing is changed: the caller appends and applies the
/// events.
///
/// # Errors
/// [`Problems`] listing everything that stops execution.
pub fn start_execution(state: &MilestoneState, at: Timestamp) -> Result<Vec<Event>, Problems> {
    let mut out = Vec::new();
    if state.mode() != Mode::Planning {
        out.push(Problem::new(
            "mode",
            ProblemKind::Inconsistent,
            "the milestone is already executing",
        ));
    }
    if state.status() != crate::state::MilestoneStatus::Active {
        out.push(Problem::new(
            "status",
            ProblemKind::Inconsistent,
            format!("the milestone is {}, not active", state.status()),
        ));
    }
    let Some(plan) = state.plan() else {
        out.push(missing("plan", "recorded plan: run planning first"));
        return Err(Problems(out));
    };
    let order = validate_into(plan, state.workflow(), &mut out);
    for (i, t) in plan.tasks.iter().enumerate() {
        if state.task(t.id.as_str()).is_some() {
            out.push(Problem::new(
                format!("plan.tasks[{i}].id"),
                ProblemKind::DuplicateId,
                format!(
                    "task {:?} is already a task of the milestone",
                    t.id.as_str()
                ),
            ));
        }
    }
    if !out.is_empty() {
        return Err(Problems(out));
    }
    let mut events = vec![Event::ExecutionStarted { at }];
    if !plan.tasks.is_empty() {
        // Validation found no problem, so the order exists.
        let Some(order) = order else {
            return Err(Problems(vec![Problem::new(
                "plan.tasks",
                ProblemKind::Cycle,
                "the tasks form a dependency cycle",
            )]));
        };
        let tasks = order.into_iter().map(|i| plan.tasks[i].clone()).collect();
        events.push(Event::TasksAdded { at, tasks });
    }
    Ok(events)
}

/// The initial execution state of a milestone with a valid plan: `state` with the events of
/// [`start_execution`] applied. `state` itself is never changed.
///
/// # Errors
/// [`Problems`] as [`start_execution`] (or, should an event still be refused, that refusal as
/// a problem at `events`).
pub fn initial_execution_state(
    state: &MilestoneState,
    at: Timestamp,
) -> Result<MilestoneState, Problems> {
    let events = start_execution(state, at)?;
    let mut next = state.clone();
    for e in &events {
        next.apply(e).map_err(|err| match err {
            TransitionError::Tasks(p) => p,
            other => Problems(vec![Problem::new(
                "events",
                ProblemKind::Inconsistent,
                other.to_string(),
            )]),
        })?;
    }
    Ok(next)
}

/// The unchecked document form of a plan: the plan's sections plus `schema_version`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRaw {
    schema_version: u32,
    #[serde(default)]
    scope: Option<ScopeAnalysis>,
    #[serde(default)]
    estimates: Option<Estimates>,
    #[serde(default)]
    risks: Option<Vec<Risk>>,
    #[serde(default)]
    kiro: Option<KiroStrategy>,
    #[serde(default)]
    tasks: Vec<TaskSpec>,
}

impl TryFrom<PlanRaw> for MilestonePlan {
    type Error = Problems;
    fn try_from(raw: PlanRaw) -> Result<Self, Problems> {
        let plan = MilestonePlan {
            scope: raw.scope,
            estimates: raw.estimates,
            risks: raw.risks,
            kiro: raw.kiro,
            tasks: raw.tasks,
        };
        let mut out = Vec::new();
        structure_problems(&plan, &mut out);
        Problems(out).into_result(plan)
    }
}

/// The document form [`MilestonePlan::to_json`] writes.
#[derive(Serialize)]
struct PlanDoc<'a> {
    schema_version: u32,
    #[serde(flatten)]
    plan: &'a MilestonePlan,
}

impl MilestonePlan {
    /// Loads a plan document (the plan's sections plus `"schema_version": 1`) from JSON: at
    /// most [`MAX_PLAN_JSON`] bytes, a schema version this build reads, no unknown fields, valid
    /// ids, and a sound structure (task ids unique, dependencies known, no self-dependency, no
    /// cycle, no phase estimated twice). Sections may be missing — an unfinished plan is a
    /// value — and the workflow-dependent checks are [`validate_plan`]'s.
    ///
    /// # Errors
    /// [`LoadError::TooLarge`], [`LoadError::UnsupportedSchema`], [`LoadError::Malformed`]
    /// (with line and column) or [`LoadError::Invalid`] with every problem.
    pub fn from_json(json: &str) -> Result<MilestonePlan, LoadError> {
        const WHAT: &str = "milestone plan";
        if json.len() > MAX_PLAN_JSON {
            return Err(LoadError::TooLarge {
                what: WHAT,
                size: json.len(),
                limit: MAX_PLAN_JSON,
            });
        }
        // One parse on the happy path; only a document that fails to parse is probed for a
        // newer schema version, so that it is refused as unsupported rather than malformed.
        let raw: PlanRaw = match serde_json::from_str(json) {
            Ok(raw) => raw,
            Err(e) => {
                if let Err(unsupported @ LoadError::UnsupportedSchema { .. }) =
                    crate::load::check_schema_version(WHAT, json, PLAN_SCHEMA_VERSION)
                {
                    return Err(unsupported);
                }
                return Err(crate::load::malformed(WHAT, &e));
            }
        };
        if raw.schema_version == 0 || raw.schema_version > PLAN_SCHEMA_VERSION {
            return Err(LoadError::UnsupportedSchema {
                what: WHAT,
                found: raw.schema_version,
                supported: PLAN_SCHEMA_VERSION,
            });
        }
        MilestonePlan::try_from(raw).map_err(|problems| LoadError::Invalid {
            what: WHAT,
            problems,
        })
    }

    /// The plan as a JSON document [`MilestonePlan::from_json`] reads back, with
    /// `"schema_version"` set to [`PLAN_SCHEMA_VERSION`].
    pub fn to_json(&self) -> String {
        let doc = PlanDoc {
            schema_version: PLAN_SCHEMA_VERSION,
            plan: self,
        };
        // Serializing plain structs of strings, integers and ids into a String cannot fail.
        serde_json::to_string(&doc).unwrap_or_default()
    }
}
