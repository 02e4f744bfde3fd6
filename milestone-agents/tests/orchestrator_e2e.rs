//! The orchestrator end to end over the in-memory store and the in-memory git backend, with
//! scripted and recording runners.

mod orchestrator_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use milestone_agents::orchestrator::{
    InMemoryCache, Notice, Orchestrator, OrchestratorError, PlanSpec,
};
use milestone_agents::{AgentOutput, FnAgent, Registry};
use milestone_core::engine::{Outcome, Role};
use milestone_core::{Event, MilestoneStatus, Mode, ProblemKind, Progress};
use milestone_git::conventions::{branch_name, tag_name};
use milestone_git::{GitBackend, Revision};
use milestone_state::{InMemory, StateStore};
use orchestrator_support::*;

#[test]
fn plan_transition_execute_in_memory_with_git() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let orchestrator = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .git(git.clone(), main_branch())
        .listener(Arc::new(move |n: &Notice| {
            h.lock().unwrap().push(n.event.kind().to_owned())
        }))
        .build()
        .unwrap();
    let mut notices = orchestrator.subscribe();
    let m = id("login");
    let report = block_on(async {
        let plan = orchestrator
            .plan(PlanSpec::new(m.clone(), "Add login").context("web app"))
            .await?;
        assert_eq!(plan.tasks.len(), 3);
        let state = orchestrator.transition(&m).await?;
        assert_eq!(state.mode(), Mode::Execution);
        assert_eq!(
            state.git().branch.as_deref(),
            Some("feature/milestone-login")
        );
        orchestrator.execute(&m).await
    })
    .unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.outcome, Some(Outcome::Completed));
    assert_eq!(report.progress.overall, Progress::COMPLETE);
    assert_eq!(report.phases.len(), 4);
    assert!(report.phases.iter().all(|p| p.completed_at.is_some()));
    // Three phases ran an agent; the execute phase ran through its three tasks.
    for work in [
        "phase design",
        "phase spec",
        "phase task",
        "task a",
        "task b",
        "task c",
    ] {
        assert_eq!(runs_of(&log, work), 1, "{work}: {:?}", log.lock().unwrap());
    }
    assert_eq!(report.metrics.runs, 6);
    // Task c ran after a and b.
    let order = log.lock().unwrap().clone();
    let pos = |w: &str| order.iter().position(|e| e.starts_with(w)).unwrap();
    assert!(pos("task c") > pos("task a") && pos("task c") > pos("task b"));
    // Git: one commit per phase, in order, a tag; the store records them.
    assert_eq!(
        committed_phases(&git, &m),
        vec!["design", "spec", "task", "execute"]
    );
    assert!(block_on(git.resolve(&Revision::tag(&tag_name(&m)))).is_ok());
    let stored = block_on(store.load(&m)).unwrap();
    assert_eq!(stored.version, report.version);
    assert_eq!(stored.state.status(), MilestoneStatus::Completed);
    assert_eq!(stored.state.git().commits.len(), 4);
    assert_eq!(stored.state.git().tag.as_deref(), Some("milestone/login"));
    // Every appended event was published, in order, with its version.
    drop(orchestrator);
    let seen: Vec<u64> = block_on(notices.by_ref().map(|n| n.version).collect::<Vec<_>>());
    assert_eq!(seen, (1..=stored.version).collect::<Vec<_>>());
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len() as u64, stored.version);
    assert_eq!(heard.first().map(String::as_str), Some("created"));
    assert_eq!(heard.iter().filter(|k| *k == "phase-committed").count(), 4);
}

#[test]
fn the_four_planning_analyses_overlap_in_time() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    for role in [
        Role::Scope,
        Role::Estimation,
        Role::Risk,
        Role::KiroStrategy,
    ] {
        let (in_flight, most, order) = (in_flight.clone(), most.clone(), order.clone());
        registry.bind(
            role,
            FnAgent::new(
                "analyst",
                move |req: milestone_agents::AgentRequest, _ctx| {
                    let (in_flight, most, order) = (in_flight.clone(), most.clone(), order.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        order.lock().unwrap().push(format!("start {}", req.work));
                        for _ in 0..3 {
                            yield_now().await;
                        }
                        order.lock().unwrap().push(format!("end {}", req.work));
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok(AgentOutput::new("ok").with_data(analysis_data(&req.role)))
                    }
                },
            ),
        );
    }
    let orchestrator = Orchestrator::builder()
        .registry(registry)
        .store(Arc::new(InMemory::new()))
        .build()
        .unwrap();
    let plan = block_on(orchestrator.plan(PlanSpec::new(id("m"), "M"))).unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 4);
    let order = order.lock().unwrap().clone();
    let last_start = order.iter().rposition(|e| e.starts_with("start")).unwrap();
    let first_end = order.iter().position(|e| e.starts_with("end")).unwrap();
    assert!(last_start < first_end, "{order:?}");
    // The built-in aggregation merged them: risks, KIRO and tasks are all there.
    assert_eq!(plan.risks.as_ref().map(Vec::len), Some(1));
    assert!(plan.kiro.is_some() && plan.scope.is_some());
}

#[test]
fn transition_refuses_a_bad_plan_listing_every_problem_and_changes_nothing() {
    let mut registry = Registry::new();
    for role in [
        Role::Scope,
        Role::Estimation,
        Role::Risk,
        Role::KiroStrategy,
    ] {
        let r = role.clone();
        registry.bind_direct(
            role,
            FnAgent::sync("analyst", move |_| {
                // No scope at all, no KIRO strategy; estimation and risk are fine.
                let data = match r {
                    Role::Scope | Role::KiroStrategy => serde_json::Value::Null,
                    _ => analysis_data(&r),
                };
                Ok(AgentOutput::new("ok").with_data(data))
            }),
        );
    }
    let store = Arc::new(InMemory::new());
    let git = repo();
    let orchestrator = Orchestrator::builder()
        .registry(registry)
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    let m = id("bad");
    block_on(orchestrator.plan(PlanSpec::new(m.clone(), "Bad"))).unwrap();
    let before = block_on(store.load(&m)).unwrap();
    let err = block_on(orchestrator.transition(&m)).unwrap_err();
    let OrchestratorError::Plan { problems, .. } = err else {
        panic!("{err}")
    };
    let found: Vec<(String, ProblemKind)> = problems
        .iter()
        .map(|p| (p.location.clone(), p.kind))
        .collect();
    assert!(
        found.contains(&("plan.scope".into(), ProblemKind::Missing)),
        "{found:?}"
    );
    assert!(
        found.iter().any(|(l, _)| l.starts_with("plan.kiro")),
        "{found:?}"
    );
    assert!(found.len() >= 2);
    let after = block_on(store.load(&m)).unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(after.state.mode(), Mode::Planning);
    assert!(!block_on(git.branch_exists(&branch_name(&m))).unwrap());
    // Executing a milestone that never transitioned is refused by the engine.
    assert!(matches!(
        block_on(orchestrator.execute(&m)),
        Err(OrchestratorError::Engine(_))
    ));
}

#[test]
fn a_cache_hit_skips_the_agent() {
    let log = RunLog::default();
    let cache = Arc::new(InMemoryCache::new());
    let orchestrator = Orchestrator::builder()
        .registry(registry(&log))
        .store(Arc::new(InMemory::new()))
        .cache(cache.clone())
        .build()
        .unwrap();
    let run = |name: &str| {
        let m = id(name);
        block_on(async {
            orchestrator.plan(PlanSpec::new(m.clone(), "Same")).await?;
            orchestrator.transition(&m).await?;
            orchestrator.execute(&m).await
        })
        .unwrap()
    };
    let first = run("one");
    let second = run("two");
    assert_eq!(first.metrics.cache_hits, 0);
    assert!(second.metrics.cache_hits >= 1, "{:?}", second.metrics);
    assert_eq!(second.status, MilestoneStatus::Completed);
    // The design phase is reusable: its agent ran once for both milestones; the spec phase
    // is not, so it ran twice.
    assert_eq!(runs_of(&log, "phase design"), 1);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    assert!(cache.hits() >= 1);
}

#[test]
fn an_intervention_pauses_the_milestone_until_answered() {
    let log = RunLog::default();
    let mut registry = registry(&log);
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let l = log.clone();
    registry.bind_direct(
        Role::Phase(milestone_core::PhaseId::new("spec").unwrap()),
        FnAgent::sync("flaky-spec", move |req| {
            l.lock().unwrap().push(entry(&req));
            if f.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(broken("spec agent crashed"))
            } else {
                Ok(phase_output(&req))
            }
        }),
    );
    let config = milestone_core::engine::EngineConfig {
        recovery: milestone_core::engine::RecoveryConfig {
            order: vec![milestone_core::engine::RecoveryStep::Intervene],
            ..Default::default()
        },
        ..Default::default()
    };
    let store = Arc::new(InMemory::new());
    let orchestrator = Orchestrator::builder()
        .registry(registry)
        .store(store.clone())
        .engine_config(config)
        .build()
        .unwrap();
    let m = id("paused");
    let paused = block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "P")).await?;
        orchestrator.transition(&m).await?;
        orchestrator.execute(&m).await
    })
    .unwrap();
    assert_eq!(paused.status, MilestoneStatus::AwaitingIntervention);
    assert!(paused.awaits_intervention());
    assert_eq!(paused.outcome, None);
    let open = paused.intervention.clone().unwrap();
    assert_eq!(open.item.map(|i| i.to_string()), Some("phase spec".into()));
    assert!(open.options.contains(&milestone_core::Decision::Retry));
    assert_eq!(
        block_on(store.load(&m)).unwrap().state.status(),
        MilestoneStatus::AwaitingIntervention
    );
    let done = block_on(orchestrator.answer(&m, milestone_core::Decision::Retry)).unwrap();
    assert_eq!(done.status, MilestoneStatus::Completed);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    assert_eq!(runs_of(&log, "phase design"), 1);
    // Answering again is refused: nothing is open.
    assert!(block_on(orchestrator.answer(&m, milestone_core::Decision::Retry)).is_err());
}

#[test]
fn resume_after_the_orchestrator_is_dropped_mid_run() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let git = repo();
    let m = id("dropped");
    // First orchestrator: the spec phase never finishes; the call is dropped while it runs.
    let mut first = registry(&log);
    first.bind_direct_arc(Role::Phase(ph("spec")), hanging("hanging-spec", &log, None));
    let orchestrator = Orchestrator::builder()
        .registry(first)
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "Drop")).await?;
        orchestrator.transition(&m).await.map(|_| ())
    })
    .unwrap();
    {
        let mut run = Box::pin(orchestrator.execute(&m));
        assert!((&mut run).now_or_never().is_none());
    }
    drop(orchestrator);
    assert_eq!(runs_of(&log, "phase design"), 1);
    assert_eq!(runs_of(&log, "phase spec"), 1);
    let mid = block_on(store.load(&m)).unwrap().state;
    assert_eq!(mid.git().commits.len(), 1);
    // Second orchestrator over the same store and repository: resume finishes the milestone.
    let second = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    let report = block_on(second.resume(&m)).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(
        runs_of(&log, "phase design"),
        1,
        "a completed phase never runs again"
    );
    assert_eq!(runs_of(&log, "phase spec"), 2);
    let keys: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with("phase spec"))
        .map(|e| e.split('#').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(keys[0], keys[1], "the restart keeps the idempotency key");
    assert_eq!(
        committed_phases(&git, &m),
        vec!["design", "spec", "task", "execute"]
    );
    let events = block_on(store.read_events(&m, 0)).unwrap();
    let commits = events
        .iter()
        .filter(|e| matches!(e, Event::PhaseCommitted { .. }))
        .count();
    assert_eq!(commits, 4);
    // Resuming a completed milestone does nothing more.
    let again = block_on(second.resume(&m)).unwrap();
    assert_eq!(again.metrics.runs, 0);
    assert_eq!(committed_phases(&git, &m).len(), 4);
}

#[test]
fn one_call_per_milestone_at_a_time_and_typed_errors_for_bad_calls() {
    let log = RunLog::default();
    let mut r = registry(&log);
    r.bind_direct(
        Role::Phase(milestone_core::PhaseId::new("design").unwrap()),
        FnAgent::new(
            "slow-design",
            |req: milestone_agents::AgentRequest, _ctx: milestone_agents::AgentContext| async move {
                for _ in 0..10 {
                    yield_now().await;
                }
                Ok(phase_output(&req))
            },
        ),
    );
    let orchestrator = Orchestrator::builder()
        .registry(r)
        .store(Arc::new(InMemory::new()))
        .build()
        .unwrap();
    let m = id("once");
    block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "Once")).await?;
        orchestrator.transition(&m).await.map(|_| ())
    })
    .unwrap();
    let (a, b) = block_on(futures::future::join(
        orchestrator.execute(&m),
        orchestrator.execute(&m),
    ));
    assert_eq!(a.unwrap().status, MilestoneStatus::Completed);
    assert!(matches!(b, Err(OrchestratorError::AlreadyRunning(_))));
    // Planning an existing id, transitioning twice, unknown milestones.
    assert!(matches!(
        block_on(orchestrator.plan(PlanSpec::new(m.clone(), "Again"))),
        Err(OrchestratorError::Store(_))
    ));
    assert!(matches!(
        block_on(orchestrator.transition(&m)),
        Err(OrchestratorError::Plan { .. })
    ));
    for result in [
        block_on(orchestrator.execute(&id("ghost"))).map(|_| ()),
        block_on(orchestrator.progress(&id("ghost"))).map(|_| ()),
        block_on(orchestrator.transition(&id("ghost"))).map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(OrchestratorError::NotFound(_))),
            "{result:?}"
        );
    }
    // A builder without a store, or merging without git, is refused.
    assert!(matches!(
        Orchestrator::builder().build(),
        Err(OrchestratorError::Config(_))
    ));
    assert!(matches!(
        Orchestrator::builder()
            .store(Arc::new(InMemory::new()))
            .merge(true)
            .max_concurrency(0)
            .build(),
        Err(OrchestratorError::Config(m)) if m.contains("git") && m.contains("max_concurrency")
    ));
}
