//! The three no-op workloads of DESIGN.md, as plain dependency lists (independent of the
//! engine, so every scheduler under test reads the same graphs).
//!
//! - **W1**: 10,000 independent tasks.
//! - **W2**: a chain of 2,000 tasks.
//! - **W3**: 50 layers × 200 tasks, each depending on 3 tasks of the layer before.
//!
//! ```
//! let w3 = milestone_benches::workloads::w3();
//! assert_eq!(w3.len(), 10_000);
//! assert!(w3.deps[200..].iter().all(|d| d.len() == 3));
//! ```

use std::fmt;

use milestone_core::engine::EngineConfig;
use milestone_core::kiro::{KiroItem, KiroStrategy};
use milestone_core::plan::{Estimates, MilestonePlan, PhaseEstimate, ScopeAnalysis};
use milestone_core::{
    Event, IdError, MilestoneId, PhaseId, PhaseSpec, TaskId, TaskSpec, Timestamp, Weight, Workflow,
};

/// The concurrency limit DESIGN.md's targets are measured with.
pub const LIMIT: usize = 64;

/// The engine's configuration in every bench: the defaults at [`LIMIT`].
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        max_concurrency: LIMIT,
        ..EngineConfig::default()
    }
}

/// A workload whose dependencies are not all earlier tasks (the fields of [`Workload`] are
/// public, so one can be built by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadError {
    /// Every offending dependency, as (task, dependency).
    pub bad: Vec<(usize, u32)>,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dependencies that are not earlier tasks:")?;
        for (k, (task, dep)) in self.bad.iter().enumerate() {
            let sep = if k == 0 { " " } else { ", " };
            write!(f, "{sep}task {task} on {dep}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WorkloadError {}

/// A task graph: task `i` depends on the tasks `deps[i]`, all of which come before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// A short name (`W1`, `W2`, `W3`).
    pub name: &'static str,
    /// The dependencies of each task, as indices of earlier tasks.
    pub deps: Vec<Vec<u32>>,
}

impl Workload {
    /// How many tasks it has.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether it has no task.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// The workload as task specs `t0`, `t1`, … (each after its dependencies), with estimates
    /// that vary a little so that critical paths are not all ties.
    ///
    /// # Errors
    /// Never for these generated ids; the `Result` keeps `IdError` visible rather than hidden.
    pub fn task_specs(&self) -> Result<Vec<TaskSpec>, IdError> {
        let ids: Vec<TaskId> = (0..self.deps.len())
            .map(|i| TaskId::new(format!("t{i}")))
            .collect::<Result<_, _>>()?;
        Ok(self
            .deps
            .iter()
            .enumerate()
            .map(|(i, deps)| {
                let mut t = TaskSpec::new(ids[i].clone(), format!("Task {i}"));
                t.estimate_ms = Some(1_000 + (i as u64 % 7) * 250);
                t.dependencies = deps.iter().map(|&d| ids[d as usize].clone()).collect();
                t
            })
            .collect())
    }

    /// The log of a milestone `bench` already in execution mode whose one phase, `execute`
    /// (weight 100), holds this workload's tasks: what an engine or orchestrator bench resumes
    /// from. The tasks carry no estimates: the workloads are bare graphs, as the floor sees
    /// them, so every ready task ranks the same.
    ///
    /// # Errors
    /// Never for these generated ids and this fixed workflow; the `Result` keeps that visible.
    pub fn execution_log(&self) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
        let phase = PhaseSpec::new(
            PhaseId::new("execute")?,
            "Execution",
            Weight::new(100).ok_or("weight over 100")?,
        );
        let workflow = Workflow::new(vec![phase], 3)?;
        Ok(vec![
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("bench")?,
                title: "bench".into(),
                context: String::new(),
                workflow,
                seed: 1,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
            Event::TasksAdded {
                at: Timestamp(0),
                tasks: self
                    .task_specs()?
                    .into_iter()
                    .map(|t| TaskSpec {
                        estimate_ms: None,
                        ..t
                    })
                    .collect(),
            },
        ])
    }

    /// Checks that every dependency is an earlier task (so the graph is acyclic and every
    /// index is in range), as the schedulers under test assume.
    ///
    /// # Errors
    /// [`WorkloadError`] naming every dependency that is not.
    pub fn check(&self) -> Result<(), WorkloadError> {
        let bad: Vec<(usize, u32)> = self
            .deps
            .iter()
            .enumerate()
            .flat_map(|(i, deps)| {
                deps.iter()
                    .filter(move |&&d| d as usize >= i)
                    .map(move |&d| (i, d))
            })
            .collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(WorkloadError { bad })
        }
    }

    /// How many dependency edges it has.
    pub fn edges(&self) -> usize {
        self.deps.iter().map(Vec::len).sum()
    }
}

/// `n` independent tasks (W1 at `n` = 10,000).
pub fn independent(n: u32) -> Workload {
    Workload {
        name: "W1",
        deps: vec![Vec::new(); n as usize],
    }
}

/// A chain of `n` tasks, each depending on the one before (W2 at `n` = 2,000).
pub fn chain(n: u32) -> Workload {
    Workload {
        name: "W2",
        deps: (0..n)
            .map(|i| if i == 0 { Vec::new() } else { vec![i - 1] })
            .collect(),
    }
}

/// Layers of 200 tasks, `n` tasks in all (the last layer may be partial); task `j` of a layer
/// depends on tasks `j`, `j + 67` and `j + 133` (modulo 200) of the layer before: three distinct
/// tasks, spread over the layer (W3 at `n` = 10,000).
pub fn layered(n: u32) -> Workload {
    const WIDTH: u32 = 200;
    let deps = (0..n)
        .map(|i| {
            let (layer, j) = (i / WIDTH, i % WIDTH);
            if layer == 0 {
                Vec::new()
            } else {
                let base = (layer - 1) * WIDTH;
                vec![base + j, base + (j + 67) % WIDTH, base + (j + 133) % WIDTH]
            }
        })
        .collect();
    Workload { name: "W3", deps }
}

/// A plan valid for [`Workflow::kiro`] around `tasks`: every section present, one estimate
/// per phase, one KIRO item — what the plan and transition benches validate and build.
pub fn kiro_plan(tasks: Vec<TaskSpec>) -> MilestonePlan {
    let wf = Workflow::kiro();
    let first = wf.phases()[0].id.clone();
    MilestonePlan {
        scope: Some(ScopeAnalysis::default()),
        estimates: Some(Estimates {
            phases: wf
                .phases()
                .iter()
                .map(|p| PhaseEstimate {
                    phase: p.id.clone(),
                    effort_ms: 1,
                })
                .collect(),
            buffer_percent: 10,
            critical_path: vec![first.clone()],
        }),
        risks: Some(Vec::new()),
        kiro: Some(KiroStrategy {
            keep: vec![KiroItem::new("x", first)],
            ..KiroStrategy::default()
        }),
        tasks,
    }
}

/// W1: 10,000 independent tasks.
pub fn w1() -> Workload {
    independent(10_000)
}

/// W2: a chain of 2,000 tasks, each depending on the one before.
pub fn w2() -> Workload {
    chain(2_000)
}

/// W3: 50 layers of 200 tasks, each depending on 3 tasks of the layer before.
pub fn w3() -> Workload {
    layered(10_000)
}

/// W1, W2 and W3.
pub fn all() -> [Workload; 3] {
    [w1(), w2(), w3()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_plan_is_valid_and_the_log_folds() {
        let w = layered(450);
        let plan = kiro_plan(w.task_specs().unwrap());
        milestone_core::plan::validate_plan(&plan, &Workflow::kiro()).unwrap();
        let log = w.execution_log().unwrap();
        let state = milestone_core::MilestoneState::from_events(&log).unwrap();
        assert_eq!(state.tasks().len(), 450);
        assert_eq!(state.mode(), milestone_core::Mode::Execution);
    }

    #[test]
    fn shapes_match_the_design() {
        let [a, b, c] = all();
        assert_eq!((a.len(), a.edges()), (10_000, 0));
        assert_eq!((b.len(), b.edges()), (2_000, 1_999));
        assert_eq!((c.len(), c.edges()), (10_000, 49 * 200 * 3));
        for w in [&a, &b, &c] {
            for (i, d) in w.deps.iter().enumerate() {
                assert!(d.iter().all(|&x| (x as usize) < i), "{} task {i}", w.name);
                let mut s = d.clone();
                s.dedup();
                assert_eq!(s.len(), d.len(), "{} task {i} has a duplicate", w.name);
            }
        }
    }
}
