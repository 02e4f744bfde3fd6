//! Workflows and phases.
//!
//! A [`Workflow`] is an ordered list of [`PhaseSpec`]s whose weights sum to exactly 100, whose ids
//! are unique and whose dependencies are known and acyclic. It can only be built through
//! [`Workflow::new`] (or deserialized, which runs the same checks), so an invalid workflow never
//! exists in memory. [`Workflow::kiro`] is the default table of DESIGN.md.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{LoadError, Problem, ProblemKind, Problems};
use crate::id::PhaseId;
use crate::units::{Priority, Weight};

/// Resource limits of one phase: the timeout is enforced by the engine; memory and CPU are
/// declared budgets handed to runners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// How long one attempt may run, in milliseconds (default 1 800 000 = 1800 s).
    pub timeout_ms: u64,
    /// Declared memory budget in MiB, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Declared CPU budget in millicores, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            memory_mib: None,
            cpu_millicores: None,
        }
    }
}

/// The default per-attempt timeout: 1800 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 1_800_000;
/// The default number of phases that may run at once.
pub const DEFAULT_MAX_PARALLEL_PHASES: u32 = 3;

/// Whether a phase's result may be reused from the cache for the same input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CachePolicy {
    /// Results may be reused (design patterns, task templates).
    Reusable,
    /// Results are always recomputed (specifications).
    #[default]
    NotReusable,
}

/// One phase of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// The phase's id.
    pub id: PhaseId,
    /// A human title.
    pub title: String,
    /// Its share of the milestone.
    pub weight: Weight,
    /// How urgent it is.
    #[serde(default)]
    pub priority: Priority,
    /// What it concentrates on.
    #[serde(default)]
    pub focus: String,
    /// Outputs a finished attempt must name for the quality gate to pass.
    #[serde(default)]
    pub expected_outputs: Vec<String>,
    /// Phases that must complete before this one may start.
    #[serde(default)]
    pub dependencies: Vec<PhaseId>,
    /// Timeout and declared budgets.
    #[serde(default)]
    pub limits: Limits,
    /// Whether its results are reusable from the cache.
    #[serde(default)]
    pub cache: CachePolicy,
    /// Whether a degraded run may skip it.
    #[serde(default)]
    pub optional: bool,
}

impl PhaseSpec {
    /// A phase with defaults: medium priority, no outputs, no dependencies, default limits,
    /// not reusable, not optional.
    pub fn new(id: PhaseId, title: impl Into<String>, weight: Weight) -> Self {
        PhaseSpec {
            id,
            title: title.into(),
            weight,
            priority: Priority::Medium,
            focus: String::new(),
            expected_outputs: Vec::new(),
            dependencies: Vec::new(),
            limits: Limits::default(),
            cache: CachePolicy::NotReusable,
            optional: false,
        }
    }
}

/// A validated workflow: see the module docs.
///
/// Shared: a clone (each state, checkpoint and `Created` event holds one) costs a reference
/// count, and the value is one pointer wide.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WorkflowRaw", into = "WorkflowRaw")]
pub struct Workflow {
    inner: Arc<WorkflowInner>,
}

#[derive(Clone, PartialEq, Eq)]
struct WorkflowInner {
    phases: Vec<PhaseSpec>,
    max_parallel_phases: u32,
    index: HashMap<PhaseId, usize>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("phases", &self.inner.phases)
            .field("max_parallel_phases", &self.inner.max_parallel_phases)
            .finish()
    }
}

/// The unchecked serde form of a [`Workflow`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkflowRaw {
    phases: Vec<PhaseSpec>,
    #[serde(default = "default_parallel")]
    max_parallel_phases: u32,
}

fn default_parallel() -> u32 {
    DEFAULT_MAX_PARALLEL_PHASES
}

impl TryFrom<WorkflowRaw> for Workflow {
    type Error = Problems;
    fn try_from(raw: WorkflowRaw) -> Result<Self, Problems> {
        Workflow::new(raw.phases, raw.max_parallel_phases)
    }
}

impl From<Workflow> for WorkflowRaw {
    fn from(w: Workflow) -> Self {
        let inner = Arc::unwrap_or_clone(w.inner);
        WorkflowRaw {
            phases: inner.phases,
            max_parallel_phases: inner.max_parallel_phases,
        }
    }
}

/// The largest workflow JSON [`Workflow::from_json`] accepts.
pub const MAX_WORKFLOW_JSON: usize = 1 << 20;

impl Workflow {
    /// Validates and builds a workflow, reporting every problem at once: weights not summing to
    /// exactly 100, duplicate ids, unknown dependencies, self-dependencies, dependency cycles
    /// (with their path), no phases, or a parallelism limit of 0.
    ///
    /// # Errors
    /// [`Problems`] listing everything wrong.
    pub fn new(phases: Vec<PhaseSpec>, max_parallel_phases: u32) -> Result<Workflow, Problems> {
        let mut problems = Vec::new();
        if phases.is_empty() {
            problems.push(Problem::new(
                "phases",
                ProblemKind::Missing,
                "a workflow needs at least one phase",
            ));
        }
        if max_parallel_phases == 0 {
            problems.push(Problem::new(
                "max_parallel_phases",
                ProblemKind::OutOfRange,
                "at least one phase must be allowed to run",
            ));
        }
        let sum: u32 = phases.iter().map(|p| u32::from(p.weight.percent())).sum();
        if !phases.is_empty() && sum != 100 {
            problems.push(Problem::new(
                "phases[*].weight",
                ProblemKind::WeightSum,
                format!("weights sum to {sum}, not 100"),
            ));
        }
        let mut index = HashMap::with_capacity(phases.len());
        for (i, p) in phases.iter().enumerate() {
            if let Some(first) = index.insert(p.id.clone(), i) {
                index.insert(p.id.clone(), first);
                problems.push(Problem::new(
                    format!("phases[{i}].id"),
                    ProblemKind::DuplicateId,
                    format!(
                        "phase id {:?} is already used by phases[{first}]",
                        p.id.as_str()
                    ),
                ));
            }
            if p.limits.timeout_ms == 0 {
                problems.push(Problem::new(
                    format!("phases[{i}].limits.timeout_ms"),
                    ProblemKind::OutOfRange,
                    "the timeout must be positive",
                ));
            }
        }
        for (i, p) in phases.iter().enumerate() {
            for (j, d) in p.dependencies.iter().enumerate() {
                let loc = format!("phases[{i}].dependencies[{j}]");
                if *d == p.id {
                    problems.push(Problem::new(
                        loc,
                        ProblemKind::SelfDependency,
                        format!("phase {:?} depends on itself", p.id.as_str()),
                    ));
                } else if !index.contains_key(d) {
                    problems.push(Problem::new(
                        loc,
                        ProblemKind::UnknownDependency,
                        format!(
                            "phase {:?} depends on unknown phase {:?}",
                            p.id.as_str(),
                            d.as_str()
                        ),
                    ));
                }
            }
        }
        if let Some(cycle) = phase_cycle(&phases, &index) {
            let path: Vec<&str> = cycle.iter().map(|&i| phases[i].id.as_str()).collect();
            problems.push(Problem::new(
                format!("phases[{}].dependencies", cycle[0]),
                ProblemKind::Cycle,
                format!("dependency cycle: {}", path.join(" -> ")),
            ));
        }
        Problems(problems).into_result(Workflow::from_parts(phases, max_parallel_phases, index))
    }

    /// The default KIRO workflow of DESIGN.md: design 15 %, spec 25 %, task 20 %, execute 40 %,
    /// in sequence, 1800 s timeouts, at most 3 phases at once.
    pub fn kiro() -> Workflow {
        // The table is fixed and valid (a unit test runs it through `Workflow::new`).
        let phases = kiro_phases();
        let index = phases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Workflow::from_parts(phases, DEFAULT_MAX_PARALLEL_PHASES, index)
    }

    fn from_parts(
        phases: Vec<PhaseSpec>,
        max_parallel_phases: u32,
        index: HashMap<PhaseId, usize>,
    ) -> Workflow {
        Workflow {
            inner: Arc::new(WorkflowInner {
                phases,
                max_parallel_phases,
                index,
            }),
        }
    }

    /// Loads a workflow from JSON with a size limit; unknown fields are refused and every
    /// validation problem is reported.
    ///
    /// # Errors
    /// [`LoadError`] saying what is wrong and where.
    pub fn from_json(json: &str) -> Result<Workflow, LoadError> {
        crate::load::from_json_limited::<WorkflowRaw>("workflow", json, MAX_WORKFLOW_JSON).and_then(
            |raw| {
                Workflow::try_from(raw).map_err(|problems| LoadError::Invalid {
                    what: "workflow",
                    problems,
                })
            },
        )
    }

    /// The phases in declaration order.
    pub fn phases(&self) -> &[PhaseSpec] {
        &self.inner.phases
    }

    /// The phase with `id`.
    pub fn phase(&self, id: &str) -> Option<&PhaseSpec> {
        self.inner.index.get(id).map(|&i| &self.inner.phases[i])
    }

    /// The position of phase `id` in [`Workflow::phases`].
    pub fn position(&self, id: &str) -> Option<usize> {
        self.inner.index.get(id).copied()
    }

    /// How many phases may run at once.
    pub fn max_parallel_phases(&self) -> u32 {
        self.inner.max_parallel_phases
    }

    /// The same workflow with another parallelism limit (at least 1).
    pub fn with_max_parallel_phases(mut self, n: u32) -> Workflow {
        Arc::make_mut(&mut self.inner).max_parallel_phases = n.max(1);
        self
    }

    /// The id of the phase that receives tasks: `execute` if present, else the last phase.
    pub fn task_phase(&self) -> &PhaseId {
        match self.phase("execute") {
            Some(p) => &p.id,
            None => &self.inner.phases[self.inner.phases.len() - 1].id,
        }
    }
}

fn kiro_phases() -> Vec<PhaseSpec> {
    let id = PhaseId::known;
    let w = Weight::known;
    let mk = |pid: &'static str,
              title: &str,
              weight: u8,
              priority: Priority,
              focus: &str,
              outputs: &[&str],
              deps: &[&'static str],
              cache: CachePolicy| PhaseSpec {
        id: id(pid),
        title: title.to_string(),
        weight: w(weight),
        priority,
        focus: focus.to_string(),
        expected_outputs: outputs.iter().map(|s| s.to_string()).collect(),
        dependencies: deps.iter().map(|d| id(d)).collect(),
        limits: Limits::default(),
        cache,
        optional: false,
    };
    vec![
        mk(
            "design",
            "Design",
            15,
            Priority::Medium,
            "architecture and patterns",
            &[
                "design-decisions",
                "architecture-diagrams",
                "pattern-analysis",
            ],
            &[],
            CachePolicy::Reusable,
        ),
        mk(
            "spec",
            "Specification",
            25,
            Priority::High,
            "technical specifications",
            &["technical-specs", "api-contracts", "data-models"],
            &["design"],
            CachePolicy::NotReusable,
        ),
        mk(
            "task",
            "Task planning",
            20,
            Priority::Medium,
            "task breakdown and planning",
            &["task-list", "dependency-graph", "execution-roadmap"],
            &["spec"],
            CachePolicy::Reusable,
        ),
        mk(
            "execute",
            "Execution",
            40,
            Priority::Critical,
            "implementation and validation",
            &["implemented-code", "test-results", "validation-reports"],
            &["task"],
            CachePolicy::NotReusable,
        ),
    ]
}

/// Finds one dependency cycle among phases, as a path of indices whose last element depends on
/// the first.
fn phase_cycle(phases: &[PhaseSpec], index: &HashMap<PhaseId, usize>) -> Option<Vec<usize>> {
    let n = phases.len();
    let deps: Vec<Vec<usize>> = phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.dependencies
                .iter()
                .filter_map(|d| index.get(d).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    crate::dag::find_cycle(n, |i| deps[i].iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(id: &str, weight: u8, deps: &[&str]) -> PhaseSpec {
        let mut p = PhaseSpec::new(PhaseId::new(id).unwrap(), id, Weight::new(weight).unwrap());
        p.dependencies = deps.iter().map(|d| PhaseId::new(d).unwrap()).collect();
        p
    }

    #[test]
    fn kiro_is_the_design_table() {
        let w = Workflow::kiro();
        let rows: Vec<(&str, u8, Priority)> = w
            .phases()
            .iter()
            .map(|p| (p.id.as_str(), p.weight.percent(), p.priority))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("design", 15, Priority::Medium),
                ("spec", 25, Priority::High),
                ("task", 20, Priority::Medium),
                ("execute", 40, Priority::Critical),
            ]
        );
        assert_eq!(w.max_parallel_phases(), 3);
        assert!(w.phases().iter().all(|p| p.limits.timeout_ms == 1_800_000));
        assert_eq!(w.task_phase().as_str(), "execute");
        // The fixed table passes the same checks as any other workflow.
        let rebuilt = Workflow::new(w.phases().to_vec(), 3).unwrap();
        assert_eq!(rebuilt, w);
    }

    #[test]
    fn weights_table() {
        let cases: &[(&[u8], bool)] = &[
            (&[100], true),
            (&[15, 25, 20, 40], true),
            (&[50, 50, 0], true),
            (&[15, 25, 20, 39], false),
            (&[15, 25, 20, 41], false),
            (&[100, 100], false),
            (&[0], false),
        ];
        for (weights, ok) in cases {
            let phases = weights
                .iter()
                .enumerate()
                .map(|(i, w)| phase(&format!("p{i}"), *w, &[]))
                .collect();
            let r = Workflow::new(phases, 3);
            assert_eq!(r.is_ok(), *ok, "weights {weights:?}");
            if let Err(p) = r {
                assert!(p.has(ProblemKind::WeightSum), "{p}");
            }
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let phases = vec![
            phase("a", 30, &["c"]),
            phase("b", 30, &["a", "b", "zzz"]),
            phase("c", 30, &["b"]),
            phase("a", 30, &[]),
        ];
        let problems = Workflow::new(phases, 0).unwrap_err();
        for kind in [
            ProblemKind::WeightSum,
            ProblemKind::DuplicateId,
            ProblemKind::SelfDependency,
            ProblemKind::UnknownDependency,
            ProblemKind::Cycle,
            ProblemKind::OutOfRange,
        ] {
            assert!(problems.has(kind), "missing {kind:?} in {problems}");
        }
        let cycle = problems
            .iter()
            .find(|p| p.kind == ProblemKind::Cycle)
            .unwrap();
        assert!(
            cycle.message.contains("a -> c -> b")
                || cycle.message.contains("b -> a -> c")
                || cycle.message.contains("c -> b -> a"),
            "{}",
            cycle.message
        );
        let text = problems.to_string();
        assert!(text.starts_with("6 problems"), "{text}");
    }

    #[test]
    fn json_round_trip_and_validation() {
        let w = Workflow::kiro();
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(Workflow::from_json(&json).unwrap(), w);
        let bad = json.replace("\"weight\":40", "\"weight\":41");
        match Workflow::from_json(&bad) {
            Err(LoadError::Invalid { problems, .. }) => {
                assert!(problems.has(ProblemKind::WeightSum))
            }
            other => panic!("expected invalid, got {other:?}"),
        }
        let unknown = json.replacen("\"phases\"", "\"extra\":1,\"phases\"", 1);
        assert!(matches!(
            Workflow::from_json(&unknown),
            Err(LoadError::Malformed { .. })
        ));
        assert!(matches!(
            Workflow::from_json(&json[..json.len() / 2]),
            Err(LoadError::Malformed { .. })
        ));
    }
}
