//! One phase at a time (`Orchestrator::execute_phase`) end to end, over the in-memory store and
//! the in-memory git backend: each call runs only its phase (what the runners saw and what the
//! log holds), the per-call mode picks direct or agent runners, unready and unknown phases are
//! refused up front naming what is missing, `execute` finishes the rest, and a call dropped
//! mid-phase is carried on by calling again without running completed work twice.

mod orchestrator_support;

use std::sync::Arc;

use futures::FutureExt;
use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Orchestrator, OrchestratorError, PlanSpec};
use milestone_agents::{AgentContext, AgentError, AgentOutput, AgentRequest, FnAgent, Registry};
use milestone_core::engine::{AdaptiveInputs, EngineConfig, Outcome, Role, Strategy};
use milestone_core::{Complexity, Event, ExecutionMode, MilestoneId, MilestoneStatus, Workflow};
use milestone_git::conventions::tag_name;
use milestone_git::{GitBackend, InMemoryGit, Revision};
use milestone_state::{InMemory, StateStore};
use orchestrator_support::*;

/// Planning runners, plus a direct runner and an agent for every phase and for tasks; each run
/// is recorded as `direct:<work>` or `agent:<work>` (then `@attempt#key`).
fn registry(log: &RunLog) -> Registry {
    let mut r = Registry::new();
    bind_planning(&mut r);
    let record = |how: &'static str, log: &RunLog| {
        let l = Arc::clone(log);
        FnAgent::sync(how, move |req: AgentRequest| {
            l.lock().unwrap().push(format!("{how}:{}", entry(&req)));
            Ok(phase_output(&req))
        })
    };
    r.bind_direct_any_phase(record("direct", log));
    r.bind_direct(Role::Task, record("direct", log));
    r.bind_any_phase(record("agent", log));
    r.bind(Role::Task, record("agent", log));
    r
}

/// The runs recorded since `from`, as `how:work`.
fn runs_since(log: &RunLog, from: usize) -> Vec<String> {
    log.lock().unwrap()[from..]
        .iter()
        .map(|e| e.split('@').next().unwrap().to_owned())
        .collect()
}

/// The items started by the events appended after `version`.
fn started_since(store: &InMemory, m: &MilestoneId, version: u64) -> Vec<String> {
    block_on(store.read_events(m, version))
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ItemStarted { item, .. } => Some(item.to_string()),
            _ => None,
        })
        .collect()
}

fn version(store: &InMemory, m: &MilestoneId) -> u64 {
    block_on(store.load(m)).unwrap().version
}

/// A planned milestone in execution mode (the plan lists tasks a, b, c; c after a and b).
fn transitioned(orchestrator: &Orchestrator, m: &MilestoneId) {
    block_on(async {
        orchestrator
            .plan(PlanSpec::new(m.clone(), "Add login"))
            .await?;
        orchestrator.transition(m).await.map(|_| ())
    })
    .unwrap();
}

fn orchestrator(log: &RunLog, store: &Arc<InMemory>, git: &Arc<InMemoryGit>) -> Orchestrator {
    Orchestrator::builder()
        .registry(registry(log))
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap()
}

fn done(waiting: &[&str]) -> Option<Outcome> {
    Some(Outcome::PhasesDone {
        waiting: waiting.iter().map(|p| ph(p)).collect(),
    })
}

#[test]
fn phases_run_one_call_at_a_time_each_with_its_own_mode() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let o = orchestrator(&log, &store, &git);
    let m = id("login");
    transitioned(&o, &m);
    let tag = Revision::tag(&tag_name(&m));
    // (phase, mode, the runs expected, the items started)
    let steps: [(&str, ExecutionMode, &[&str], &[&str]); 4] = [
        (
            "design",
            ExecutionMode::Direct,
            &["direct:phase design"],
            &["phase design"],
        ),
        (
            "spec",
            ExecutionMode::Direct,
            &["direct:phase spec"],
            &["phase spec"],
        ),
        (
            "task",
            ExecutionMode::Agents,
            &["agent:phase task"],
            &["phase task"],
        ),
        (
            "execute",
            ExecutionMode::Agents,
            &["agent:task a", "agent:task b", "agent:task c"],
            &["phase execute", "task a", "task b", "task c"],
        ),
    ];
    for (k, (phase, mode, runs, started)) in steps.into_iter().enumerate() {
        let (seen, v) = (log.lock().unwrap().len(), version(&store, &m));
        let report = block_on(o.execute_phase(&m, &ph(phase), Some(mode))).unwrap();
        assert_eq!(runs_since(&log, seen), runs, "{phase}");
        assert_eq!(started_since(&store, &m, v), started, "{phase}");
        assert_eq!(report.mode, mode);
        let (direct, agent) = if mode == ExecutionMode::Direct {
            (runs.len() as u64, 0)
        } else {
            (0, runs.len() as u64)
        };
        assert_eq!(
            (report.metrics.direct_runs, report.metrics.agent_runs),
            (direct, agent),
            "{phase}"
        );
        assert_eq!(committed_phases(&git, &m).len(), k + 1, "{phase}");
        assert!(
            report.phases[k].completed_at.is_some(),
            "{phase} is completed"
        );
        let weights = [1_500, 4_000, 6_000, 10_000];
        assert_eq!(
            report.progress.overall.basis_points(),
            weights[k],
            "{phase}"
        );
        if k < 3 {
            assert_eq!(report.outcome, done(&[]), "{phase}");
            assert_eq!(report.status, MilestoneStatus::Active);
            assert!(
                report.phases[k + 1..]
                    .iter()
                    .all(|p| p.started_at.is_none()),
                "{phase}: later phases untouched"
            );
            assert!(
                block_on(git.resolve(&tag)).is_err(),
                "no tag before the end"
            );
        } else {
            assert_eq!(report.outcome, Some(Outcome::Completed));
            assert_eq!(report.status, MilestoneStatus::Completed);
            assert!(block_on(git.resolve(&tag)).is_ok(), "tagged at the end");
        }
    }
    assert_eq!(
        committed_phases(&git, &m),
        ["design", "spec", "task", "execute"]
    );
    let state = block_on(store.load(&m)).unwrap().state;
    assert_eq!(state.git().tag.as_deref(), Some("milestone/login"));
    // The strategy was chosen once, by the first call.
    let events = block_on(store.read_events(&m, 0)).unwrap();
    let chosen = events
        .iter()
        .filter(|e| matches!(e, Event::StrategyChosen { .. }))
        .count();
    assert_eq!(chosen, 1);
}

#[test]
fn a_phase_whose_dependencies_are_not_done_is_refused_naming_them_all() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let o = orchestrator(&log, &store, &git);
    let m = id("early");
    transitioned(&o, &m);
    let v = version(&store, &m);
    let refused = |phase: &str| -> Vec<String> {
        match block_on(o.execute_phase(&m, &ph(phase), None)) {
            Err(OrchestratorError::PhaseNotReady { id, waiting_on, .. }) => {
                assert_eq!(id, m);
                waiting_on.iter().map(|p| p.as_str().to_owned()).collect()
            }
            other => panic!("{phase}: {other:?}"),
        }
    };
    // Sequential (the default): every earlier phase.
    assert_eq!(refused("execute"), ["design", "spec", "task"]);
    assert_eq!(refused("spec"), ["design"]);
    let err = block_on(o.execute_phase(&m, &ph("execute"), None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "phase execute of milestone early cannot run yet: it waits on design, spec, task"
    );
    match block_on(o.execute_phase(&m, &ph("deploy"), None)) {
        Err(OrchestratorError::UnknownPhase { id, phase }) => {
            assert_eq!((id, phase.as_str()), (m.clone(), "deploy"));
        }
        other => panic!("{other:?}"),
    }
    // Nothing ran, nothing was appended.
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(version(&store, &m), v);
    // After design, spec may run but execute still waits on spec and task.
    block_on(o.execute_phase(&m, &ph("design"), None)).unwrap();
    assert_eq!(refused("execute"), ["spec", "task"]);
    // A milestone still in planning mode is refused by the engine, by mode.
    let planned = id("planned");
    block_on(o.plan(PlanSpec::new(planned.clone(), "Planned"))).unwrap();
    assert!(matches!(
        block_on(o.execute_phase(&planned, &ph("design"), None)),
        Err(OrchestratorError::Engine(
            milestone_core::engine::EngineError::WrongMode { .. }
        ))
    ));
    // A missing milestone is NotFound.
    assert!(matches!(
        block_on(o.execute_phase(&id("nowhere"), &ph("design"), None)),
        Err(OrchestratorError::NotFound(_))
    ));
}

#[test]
fn under_parallel_independent_only_declared_dependencies_count() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let o = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .strategy(Strategy::ParallelIndependent)
        .build()
        .unwrap();
    let m = id("parallel");
    transitioned(&o, &m);
    let err = block_on(o.execute_phase(&m, &ph("execute"), None)).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::PhaseNotReady { waiting_on, .. }
            if waiting_on == &[ph("task")]),
        "{err}"
    );
}

/// Under the adaptive strategy the choice is made when execution starts. A phase call before
/// that is checked against the strategy the start would choose: here sequential (low
/// complexity). In this workflow spec declares no dependency, so only the sequential order
/// makes it wait on design; the refusal comes before anything is stored (no strategy
/// recorded). Once design has run, the recorded choice holds.
#[test]
fn under_adaptive_a_call_is_checked_against_the_choice_before_anything_is_stored() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let o = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .engine_config(EngineConfig {
            strategy: Strategy::Adaptive,
            adaptive: AdaptiveInputs {
                complexity: Some(Complexity::Low),
                ..AdaptiveInputs::default()
            },
            ..EngineConfig::default()
        })
        .build()
        .unwrap();
    let m = id("adaptive");
    let mut phases = Workflow::kiro().phases().to_vec();
    phases[1].dependencies.clear();
    let workflow = Workflow::new(phases, 3).unwrap();
    block_on(async {
        o.plan(PlanSpec::new(m.clone(), "Add login").workflow(workflow))
            .await?;
        o.transition(&m).await.map(|_| ())
    })
    .unwrap();
    let v = version(&store, &m);
    let err = block_on(o.execute_phase(&m, &ph("spec"), None)).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::PhaseNotReady { waiting_on, .. }
            if waiting_on == &[ph("design")]),
        "{err}"
    );
    assert_eq!(version(&store, &m), v, "a refused call stores nothing");
    assert_eq!(block_on(store.load(&m)).unwrap().state.strategy(), None);
    assert!(log.lock().unwrap().is_empty());
    block_on(o.execute_phase(&m, &ph("design"), None)).unwrap();
    let state = block_on(store.load(&m)).unwrap().state;
    assert_eq!(state.strategy(), Some(Strategy::Sequential.name()));
    let err = block_on(o.execute_phase(&m, &ph("task"), None)).unwrap_err();
    assert!(
        matches!(&err, OrchestratorError::PhaseNotReady { waiting_on, .. }
            if waiting_on == &[ph("spec")]),
        "{err}"
    );
}

#[test]
fn a_completed_phase_runs_nothing_and_execute_finishes_the_rest() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let o = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .git(git.clone(), main_branch())
        .mode(ModePolicy::Fixed(ExecutionMode::Agents))
        .build()
        .unwrap();
    let m = id("rest");
    transitioned(&o, &m);
    let first = block_on(o.execute_phase(&m, &ph("design"), Some(ExecutionMode::Direct))).unwrap();
    assert_eq!(first.outcome, done(&[]));
    let v = version(&store, &m);
    // Again: nothing runs, nothing is appended, the same outcome.
    let again = block_on(o.execute_phase(&m, &ph("design"), None)).unwrap();
    assert_eq!(again.outcome, done(&[]));
    assert_eq!(again.metrics.runs, 0);
    assert_eq!(version(&store, &m), v);
    // `execute` runs the rest, with the builder's mode (agents).
    let report = block_on(o.execute(&m)).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.metrics.direct_runs, 0);
    assert_eq!(report.metrics.agent_runs, 5);
    assert_eq!(
        runs_since(&log, 0),
        [
            "direct:phase design",
            "agent:phase spec",
            "agent:phase task",
            "agent:task a",
            "agent:task b",
            "agent:task c"
        ]
    );
    assert_eq!(
        committed_phases(&git, &m),
        ["design", "spec", "task", "execute"]
    );
    // On a completed milestone, a phase call runs nothing and reports completion.
    let after = block_on(o.execute_phase(&m, &ph("spec"), None)).unwrap();
    assert_eq!(after.outcome, Some(Outcome::Completed));
    assert_eq!(after.metrics.runs, 0);
}

#[test]
fn a_call_dropped_mid_phase_is_carried_on_by_calling_again() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let m = id("dropped");
    // First orchestrator: task c never finishes; the call is dropped while it runs.
    let mut first = registry(&log);
    let l = log.clone();
    first.bind_direct(
        Role::Task,
        FnAgent::new("hangs-on-c", move |req: AgentRequest, ctx: AgentContext| {
            l.lock().unwrap().push(format!("direct:{}", entry(&req)));
            let hang = req.work.to_string() == "task c";
            async move {
                if hang {
                    ctx.cancelled().await;
                    return Err(AgentError::cancelled("dropped"));
                }
                Ok(AgentOutput::new("task done"))
            }
        }),
    );
    let o = Orchestrator::builder()
        .registry(first)
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    transitioned(&o, &m);
    for phase in ["design", "spec", "task"] {
        block_on(o.execute_phase(&m, &ph(phase), Some(ExecutionMode::Direct))).unwrap();
    }
    let execute = ph("execute");
    {
        let mut run = Box::pin(o.execute_phase(&m, &execute, Some(ExecutionMode::Direct)));
        assert!((&mut run).now_or_never().is_none());
    }
    drop(o);
    assert_eq!(runs_of_any(&log, "task a"), 1);
    assert_eq!(runs_of_any(&log, "task c"), 1);
    let mid = block_on(store.load(&m)).unwrap().state;
    assert_eq!(mid.status(), MilestoneStatus::Active);
    assert_eq!(mid.git().commits.len(), 3);
    // A second orchestrator runs the phase again: a and b are not run again; c restarts.
    let second = orchestrator(&log, &store, &git);
    let report =
        block_on(second.execute_phase(&m, &ph("execute"), Some(ExecutionMode::Agents))).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(runs_since(&log, 6), ["agent:task c"]);
    for work in [
        "phase design",
        "phase spec",
        "phase task",
        "task a",
        "task b",
    ] {
        assert_eq!(runs_of_any(&log, work), 1, "{work} ran once");
    }
    assert_eq!(
        committed_phases(&git, &m),
        ["design", "spec", "task", "execute"]
    );
}

/// How many runs of `work` (direct or agent) the log holds.
fn runs_of_any(log: &RunLog, work: &str) -> usize {
    runs_since(log, 0)
        .iter()
        .filter(|e| e.split_once(':').map(|(_, w)| w) == Some(work))
        .count()
}

#[test]
fn an_intervention_in_a_phase_call_is_answered_keeping_to_that_phase() {
    use milestone_core::Decision;
    use milestone_core::engine::{EngineConfig, RecoveryStep};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let mut r = registry(&log);
    let tries = Arc::new(AtomicUsize::new(0));
    let (l, t) = (log.clone(), tries.clone());
    r.bind_direct(
        Role::Phase(ph("spec")),
        FnAgent::sync("flaky-spec", move |req: AgentRequest| {
            l.lock().unwrap().push(format!("direct:{}", entry(&req)));
            if t.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(AgentError::permanent("the spec does not parse"))
            } else {
                Ok(phase_output(&req))
            }
        }),
    );
    let mut config = EngineConfig::default();
    config.recovery.order = vec![RecoveryStep::Intervene];
    let o = Orchestrator::builder()
        .registry(r)
        .store(store.clone())
        .engine_config(config)
        .mode(ModePolicy::Fixed(ExecutionMode::Direct))
        .build()
        .unwrap();
    let m = id("ask");
    transitioned(&o, &m);
    block_on(o.execute_phase(&m, &ph("design"), None)).unwrap();
    let paused = block_on(o.execute_phase(&m, &ph("spec"), None)).unwrap();
    assert_eq!(paused.status, MilestoneStatus::AwaitingIntervention);
    assert!(paused.intervention.is_some());
    // An unknown phase is refused before the answer is recorded.
    assert!(matches!(
        block_on(o.answer_phase(&m, Decision::Retry, &ph("deploy"), None)),
        Err(OrchestratorError::UnknownPhase { .. })
    ));
    let report = block_on(o.answer_phase(&m, Decision::Retry, &ph("spec"), None)).unwrap();
    assert_eq!(report.outcome, done(&[]));
    assert_eq!(report.status, MilestoneStatus::Active);
    assert_eq!(
        runs_since(&log, 0),
        [
            "direct:phase design",
            "direct:phase spec",
            "direct:phase spec"
        ],
        "task did not start"
    );
}
