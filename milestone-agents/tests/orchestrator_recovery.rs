//! The orchestrator under strategies, modes, recovery steps, timeouts on the manual clock,
//! cancellation, host gates and merge conflicts (in-memory store and git).

mod orchestrator_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::executor::block_on;
use futures::future::{Either, select};
use milestone_agents::orchestrator::{
    GateVerdict, ModePolicy, Orchestrator, OrchestratorBuilder, OrchestratorError, PlanSpec,
    QualityGate, Report,
};
use milestone_agents::{
    AgentContext, AgentError, AgentOutput, AgentRequest, FnAgent, ManualClock, Registry,
};
use milestone_core::engine::{
    EngineConfig, Outcome, RecoveryConfig, RecoveryStep, RetryConfig, Role, Strategy,
};
use milestone_core::{
    ExecutionMode, ItemOutput, ItemRef, MilestoneState, MilestoneStatus, PhaseId, Timestamp,
};
use milestone_git::{CommitRequest, GitBackend, InMemoryGit, RefName, RepoPath};
use milestone_state::{InMemory, StateStore};
use orchestrator_support::*;

fn spec() -> Role {
    Role::Phase(PhaseId::new("spec").unwrap())
}

fn recovery(order: Vec<RecoveryStep>) -> EngineConfig {
    EngineConfig {
        recovery: RecoveryConfig {
            order,
            retry: RetryConfig {
                base_ms: 2,
                cap_ms: 5,
                ..RetryConfig::default()
            },
            ..RecoveryConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// Plans, transitions and executes milestone `name` with `builder` (store added here).
fn run(builder: OrchestratorBuilder, name: &str) -> (Orchestrator, Report) {
    let orchestrator = builder.store(Arc::new(InMemory::new())).build().unwrap();
    let m = id(name);
    let report = block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "R")).await?;
        orchestrator.transition(&m).await?;
        orchestrator.execute(&m).await
    })
    .unwrap();
    (orchestrator, report)
}

/// A spec runner that fails `failures` times with `error`, then succeeds.
fn flaky_spec(
    log: &RunLog,
    failures: usize,
    error: fn() -> AgentError,
) -> impl milestone_agents::AgentRunner + 'static {
    let (l, n) = (log.clone(), Arc::new(AtomicUsize::new(0)));
    FnAgent::sync("flaky-spec", move |req| {
        l.lock().unwrap().push(entry(&req));
        if n.fetch_add(1, Ordering::SeqCst) < failures {
            Err(error())
        } else {
            Ok(phase_output(&req))
        }
    })
}

fn check_strategy(strategy: Strategy, expected: Option<Strategy>) {
    let log = RunLog::default();
    let (_, report) = run(
        Orchestrator::builder()
            .registry(registry(&log))
            .strategy(strategy),
        "s",
    );
    assert_eq!(report.status, MilestoneStatus::Completed, "{strategy:?}");
    if expected.is_some() {
        assert_eq!(report.strategy, expected, "{strategy:?}");
    } else {
        assert!(report.strategy.is_some());
    }
    for work in ["phase design", "phase spec", "phase task"] {
        assert_eq!(runs_of(&log, work), 1, "{strategy:?} {work}");
    }
}

#[test]
fn every_strategy_completes_the_milestone() {
    check_strategy(Strategy::Sequential, Some(Strategy::Sequential));
    check_strategy(
        Strategy::ParallelIndependent,
        Some(Strategy::ParallelIndependent),
    );
    check_strategy(Strategy::pipeline(), Some(Strategy::pipeline()));
    check_strategy(Strategy::Adaptive, None);
}

#[test]
fn retry_runs_a_transient_failure_again() {
    let log = RunLog::default();
    let mut r = registry(&log);
    r.bind_direct(
        spec(),
        flaky_spec(&log, 1, || AgentError::transient("busy")),
    );
    let (_, report) = run(
        Orchestrator::builder()
            .registry(r)
            .engine_config(recovery(vec![RecoveryStep::Retry])),
        "retry",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    assert_eq!(report.metrics.failures, 1);
    let spec = report
        .phases
        .iter()
        .find(|p| p.phase.as_str() == "spec")
        .unwrap();
    assert_eq!(spec.attempts, 2);
}

#[test]
fn rollback_goes_back_to_the_last_checkpoint_and_carries_on() {
    let log = RunLog::default();
    let mut r = registry(&log);
    r.bind_direct(
        spec(),
        flaky_spec(&log, 1, || AgentError::permanent("wrong")),
    );
    let (orchestrator, report) = run(
        Orchestrator::builder()
            .registry(r)
            .engine_config(recovery(vec![RecoveryStep::Rollback])),
        "rollback",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    let state = block_on(orchestrator.store().load(&id("rollback")))
        .unwrap()
        .state;
    assert_eq!(state.rollbacks(), 1);
    assert_eq!(
        runs_of(&log, "phase design"),
        1,
        "the checkpoint after design is kept"
    );
    assert_eq!(runs_of(&log, "phase spec"), 2);
}

#[test]
fn degrade_runs_the_direct_runner_after_the_agent_fails() {
    let log = RunLog::default();
    let mut r = registry(&log);
    let l = log.clone();
    r.bind(
        spec(),
        FnAgent::sync("spec-agent", move |req| {
            l.lock().unwrap().push(format!("agent {}", entry(&req)));
            Err(AgentError::permanent("the agent cannot do it"))
        }),
    );
    let (_, report) = run(
        Orchestrator::builder()
            .registry(r)
            .mode(ModePolicy::Fixed(ExecutionMode::Agents))
            .engine_config(recovery(vec![RecoveryStep::Degrade])),
        "degrade",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.metrics.degraded_runs, 1);
    assert_eq!(report.metrics.agent_runs, 1);
    assert_eq!(runs_of(&log, "agent phase spec"), 1);
    assert_eq!(runs_of(&log, "phase spec"), 1, "then the direct runner");
}

#[test]
fn exhausted_recovery_fails_naming_the_phase() {
    let log = RunLog::default();
    let mut r = registry(&log);
    r.bind_direct(
        spec(),
        flaky_spec(&log, 99, || AgentError::permanent("never")),
    );
    let (_, report) = run(
        Orchestrator::builder()
            .registry(r)
            .engine_config(recovery(vec![RecoveryStep::Retry])),
        "fails",
    );
    assert_eq!(report.status, MilestoneStatus::Failed);
    let Some(Outcome::Failed { work, error, .. }) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(work.to_string(), "phase spec");
    assert!(error.message.contains("never"));
    assert_eq!(runs_of(&log, "phase task"), 0);
}

/// Runs `fut` while advancing `clock` to its next deadline whenever everyone is waiting.
fn with_clock<F: std::future::Future>(clock: &ManualClock, fut: F) -> F::Output {
    let driver = async {
        loop {
            for _ in 0..50 {
                yield_now().await;
            }
            if let Some(t) = clock.next_deadline() {
                clock.set(t);
            }
        }
    };
    match block_on(select(Box::pin(fut), Box::pin(driver))) {
        Either::Left((out, _)) => out,
        Either::Right(((), _)) => unreachable!("the driver never ends"),
    }
}

#[test]
fn a_hanging_phase_times_out_on_the_manual_clock_and_is_retried() {
    let clock = ManualClock::new(Timestamp(1_000));
    let log = RunLog::default();
    let mut r = registry(&log);
    let (l, n) = (log.clone(), Arc::new(AtomicUsize::new(0)));
    r.bind_direct(
        spec(),
        FnAgent::new("hangs-once", move |req: AgentRequest, ctx: AgentContext| {
            l.lock().unwrap().push(entry(&req));
            let first = n.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    ctx.cancelled().await;
                    return Err(AgentError::cancelled("stopped"));
                }
                Ok(phase_output(&req))
            }
        }),
    );
    let orchestrator = Orchestrator::builder()
        .registry(r)
        .store(Arc::new(InMemory::new()))
        .clock(Arc::new(clock.clone()))
        .engine_config(recovery(vec![RecoveryStep::Retry]))
        .build()
        .unwrap();
    let m = id("timeout");
    let report = with_clock(&clock, async {
        orchestrator.plan(PlanSpec::new(m.clone(), "T")).await?;
        orchestrator.transition(&m).await?;
        orchestrator.execute(&m).await
    })
    .unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.metrics.timeouts, 1);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    // The spec phase's default limit is 30 minutes: the manual clock went past it.
    assert!(clock.now_ms() >= 1_000 + 1_800_000);
}

trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        milestone_agents::Clock::now(self).as_millis()
    }
}

#[test]
fn cancel_stops_a_running_execution_and_its_runs() {
    let log = RunLog::default();
    let mut r = registry(&log);
    let started = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let (s1, s2) = (started.clone(), stopped.clone());
    r.bind_direct(
        spec(),
        FnAgent::new("endless", move |_req: AgentRequest, ctx: AgentContext| {
            s1.store(true, Ordering::SeqCst);
            let s2 = s2.clone();
            async move {
                ctx.cancelled().await;
                s2.store(true, Ordering::SeqCst);
                Err(AgentError::cancelled("cancelled"))
            }
        }),
    );
    let orchestrator = Orchestrator::builder()
        .registry(r)
        .store(Arc::new(InMemory::new()))
        .build()
        .unwrap();
    let m = id("cancel");
    block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "C")).await?;
        orchestrator.transition(&m).await.map(|_| ())
    })
    .unwrap();
    let canceller = async {
        while !started.load(Ordering::SeqCst) {
            yield_now().await;
        }
        // A progress snapshot while the spec runs: design (15 %) is done.
        let snapshot = orchestrator.progress(&m).await?;
        assert_eq!(
            snapshot.overall,
            milestone_core::Progress::from_basis_points(1_500)
        );
        assert_eq!(snapshot.status, MilestoneStatus::Active);
        orchestrator.cancel(&m).await
    };
    let (report, cancelled) = block_on(futures::future::join(orchestrator.execute(&m), canceller));
    cancelled.unwrap();
    let report = report.unwrap();
    assert_eq!(report.outcome, Some(Outcome::Cancelled));
    assert_eq!(report.status, MilestoneStatus::Cancelled);
    assert!(
        stopped.load(Ordering::SeqCst),
        "the runner saw the cancellation"
    );
    let stored = block_on(orchestrator.store().load(&m)).unwrap().state;
    assert_eq!(stored.status(), MilestoneStatus::Cancelled);
    // A final milestone cannot be cancelled again.
    assert!(matches!(
        block_on(orchestrator.cancel(&m)),
        Err(OrchestratorError::Engine(_))
    ));
}

#[test]
fn cancel_without_a_running_call_is_recorded() {
    let log = RunLog::default();
    let orchestrator = Orchestrator::builder()
        .registry(registry(&log))
        .store(Arc::new(InMemory::new()))
        .build()
        .unwrap();
    let m = id("idle");
    block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "I")).await?;
        orchestrator.transition(&m).await?;
        orchestrator.cancel(&m).await
    })
    .unwrap();
    let state = block_on(orchestrator.store().load(&m)).unwrap().state;
    assert_eq!(state.status(), MilestoneStatus::Cancelled);
    assert!(matches!(
        block_on(orchestrator.cancel(&id("nobody"))),
        Err(OrchestratorError::NotFound(_))
    ));
}

/// A registry with agents (available or not) and direct runners for every phase and tasks,
/// and a scope analysis of `files` files.
fn mode_registry(log: &RunLog, files: u32, available: bool) -> Registry {
    let mut r = registry(log);
    r.bind_direct(
        Role::Scope,
        FnAgent::sync("scope", move |_| {
            Ok(AgentOutput::new("scope")
                .with_data(serde_json::json!({"components": ["x"], "file_count": files})))
        }),
    );
    let l = log.clone();
    r.bind_any_phase(
        FnAgent::sync("phase-agent", move |req| {
            l.lock().unwrap().push(format!("agent {}", entry(&req)));
            Ok(phase_output(&req))
        })
        .with_available(available),
    );
    let l = log.clone();
    r.bind(
        Role::Task,
        FnAgent::sync("task-agent", move |req| {
            l.lock().unwrap().push(format!("agent {}", entry(&req)));
            Ok(AgentOutput::new("task"))
        })
        .with_available(available),
    );
    r
}

/// (mode, agent runs, direct runs, fallback runs) of a run.
fn check_mode(
    policy: ModePolicy,
    files: u32,
    available: bool,
    expected: (ExecutionMode, u64, u64, u64),
) {
    let log = RunLog::default();
    let (_, report) = run(
        Orchestrator::builder()
            .registry(mode_registry(&log, files, available))
            .mode(policy),
        "mode",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    let m = &report.metrics;
    let got = (report.mode, m.agent_runs, m.direct_runs, m.fallback_runs);
    assert_eq!(
        got, expected,
        "{policy:?} files={files} available={available}"
    );
}

#[test]
fn the_mode_follows_complexity_and_agent_availability() {
    use ExecutionMode::*;
    // Execution has three phase runs (design, spec, task; the KIRO task phase `execute`
    // runs through its three tasks) and three task runs. Hybrid runs the phases directly and
    // the tasks with agents; unavailable agents fall back to the direct runners.
    check_mode(ModePolicy::Auto, 4, true, (Direct, 0, 6, 0));
    check_mode(ModePolicy::Auto, 30, true, (Hybrid, 3, 3, 0));
    check_mode(ModePolicy::Auto, 60, true, (Agents, 6, 0, 0));
    check_mode(ModePolicy::Auto, 60, false, (Direct, 0, 6, 0));
    check_mode(ModePolicy::Fixed(Agents), 4, true, (Agents, 6, 0, 0));
    check_mode(ModePolicy::Fixed(Agents), 4, false, (Agents, 0, 0, 6));
    check_mode(ModePolicy::Fixed(Direct), 60, true, (Direct, 0, 6, 0));
}

#[derive(Debug, Default)]
struct OnceFailingGate {
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl QualityGate for OnceFailingGate {
    async fn check(
        &self,
        state: &MilestoneState,
        item: &ItemRef,
        output: Option<&ItemOutput>,
    ) -> GateVerdict {
        assert_eq!(state.id().as_str(), "gated");
        assert_eq!(item.to_string(), "phase spec");
        assert!(output.is_some_and(|o| o.summary == "phase spec done"));
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            GateVerdict::fail("the API contract lacks error codes")
        } else {
            GateVerdict::pass("reviewed")
        }
    }
}

#[test]
fn a_failed_host_gate_fails_the_attempt_and_the_retry_passes() {
    let log = RunLog::default();
    let gate = Arc::new(OnceFailingGate::default());
    let mut config = recovery(vec![RecoveryStep::Retry]);
    config.host_gates = vec![PhaseId::new("spec").unwrap()];
    let (_, report) = run(
        Orchestrator::builder()
            .registry(registry(&log))
            .gate(gate.clone())
            .engine_config(config),
        "gated",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(gate.calls.load(Ordering::SeqCst), 2);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    assert_eq!(runs_of(&log, "phase design"), 1);
}

fn path(p: &str) -> RepoPath {
    RepoPath::new(p).unwrap()
}

/// A repository where `main` and the milestone branch both change `README` after the
/// transition; the design runner writes the branch's side.
fn conflicting(resolver: bool) -> (Arc<InMemoryGit>, Result<Report, OrchestratorError>) {
    let git = Arc::new(InMemoryGit::new());
    let main = RefName::new("main").unwrap();
    block_on(async {
        git.write_file(&path("README"), b"base\n").await.unwrap();
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("initial")).await.unwrap();
    });
    let log = RunLog::default();
    let mut r = registry(&log);
    let g = git.clone();
    r.bind_direct(
        Role::Phase(PhaseId::new("design").unwrap()),
        FnAgent::new("design", move |req: AgentRequest, _ctx: AgentContext| {
            let g = g.clone();
            async move {
                g.write_file(&path("README"), b"branch\n")
                    .await
                    .map_err(|e| AgentError::permanent(e.to_string()))?;
                Ok(phase_output(&req))
            }
        }),
    );
    if resolver {
        let g = git.clone();
        r.bind(
            Role::ConflictResolution,
            FnAgent::new("resolver", move |req: AgentRequest, _ctx: AgentContext| {
                let g = g.clone();
                async move {
                    assert_eq!(
                        req.input[0].data,
                        serde_json::json!({"conflicts": ["README"]})
                    );
                    g.write_file(&path("README"), b"resolved\n")
                        .await
                        .map_err(|e| AgentError::permanent(e.to_string()))?;
                    Ok(AgentOutput::new("resolved"))
                }
            }),
        );
    }
    let orchestrator = Orchestrator::builder()
        .registry(r)
        .store(Arc::new(InMemory::new()))
        .git(git.clone(), main.clone())
        .merge(true)
        .build()
        .unwrap();
    let m = id("merge");
    let result = block_on(async {
        orchestrator.plan(PlanSpec::new(m.clone(), "Merge")).await?;
        orchestrator.transition(&m).await?;
        // Main moves on meanwhile.
        let branch = milestone_git::conventions::branch_name(&m);
        git.switch(&main).await?;
        git.write_file(&path("README"), b"main\n").await?;
        git.add_all().await?;
        git.commit(&CommitRequest::new("main changes")).await?;
        git.switch(&branch).await?;
        orchestrator.execute(&m).await
    });
    (git, result)
}

#[test]
fn merge_conflicts_go_to_the_resolver_and_are_verified() {
    let (git, report) = conflicting(true);
    let report = report.unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    let contents = block_on(git.read_file(&path("README"))).unwrap().unwrap();
    assert_eq!(contents, b"resolved\n");
    assert_eq!(
        block_on(git.current_branch())
            .unwrap()
            .map(|b| b.as_str().to_owned()),
        Some("main".into())
    );
    assert!(block_on(git.merge_in_progress()).unwrap().is_none());
}

#[test]
fn merge_conflicts_without_a_resolver_are_a_typed_error() {
    let (git, result) = conflicting(false);
    let Err(OrchestratorError::MergeConflict { paths, .. }) = result else {
        panic!("{result:?}")
    };
    assert_eq!(paths, vec!["README".to_string()]);
    assert!(
        block_on(git.merge_in_progress()).unwrap().is_some(),
        "left for the host"
    );
}

#[test]
fn pipeline_starts_a_phase_on_its_predecessors_hand_off() {
    let order = RunLog::default();
    let log = RunLog::default();
    let mut r = registry(&log);
    let spec_started = Arc::new(AtomicBool::new(false));
    let (o, s) = (order.clone(), spec_started.clone());
    r.bind_direct(
        Role::Phase(PhaseId::new("design").unwrap()),
        FnAgent::new("design", move |req: AgentRequest, ctx: AgentContext| {
            let (o, s) = (o.clone(), s.clone());
            async move {
                ctx.hand_off(serde_json::json!({"patterns": ["repository"]}));
                // Give the pipeline a chance to start spec before design returns.
                for _ in 0..1_000 {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    yield_now().await;
                }
                o.lock().unwrap().push("design done".into());
                Ok(phase_output(&req))
            }
        }),
    );
    let (o, s) = (order.clone(), spec_started.clone());
    r.bind_direct(
        spec(),
        FnAgent::sync("spec", move |req| {
            s.store(true, Ordering::SeqCst);
            o.lock()
                .unwrap()
                .push(format!("spec started with {}", req.input.len()));
            Ok(phase_output(&req))
        }),
    );
    let (_, report) = run(
        Orchestrator::builder()
            .registry(r)
            .strategy(Strategy::pipeline()),
        "pipe",
    );
    assert_eq!(report.status, MilestoneStatus::Completed);
    let order = order.lock().unwrap().clone();
    assert_eq!(order[0], "spec started with 1", "{order:?}");
    assert_eq!(order[1], "design done");
}

#[test]
fn run_metrics_feed_the_direct_versus_agents_recommendation() {
    // Direct runners take 100 ms per phase, agents 10 ms, on the manual clock.
    let clock = ManualClock::new(Timestamp(0));
    let log = RunLog::default();
    let mut r = registry(&log);
    let c: Arc<dyn milestone_agents::Clock> = Arc::new(clock.clone());
    for (agent, ms) in [(false, 100u64), (true, 10)] {
        let c = c.clone();
        let runner = FnAgent::new(
            if agent { "agent" } else { "direct" },
            move |req: AgentRequest, _ctx: AgentContext| {
                let sleep = c.sleep(ms);
                async move {
                    sleep.await;
                    Ok(phase_output(&req).with_quality("review", 1.0))
                }
            },
        );
        if agent {
            r.bind_any_phase(runner);
        } else {
            r.bind_direct_any_phase(runner);
        }
    }
    let measure = |mode: ExecutionMode, name: &str| {
        let orchestrator = Orchestrator::builder()
            .registry(r.clone())
            .store(Arc::new(InMemory::new()))
            .clock(Arc::new(clock.clone()))
            .mode(ModePolicy::Fixed(mode))
            .build()
            .unwrap();
        let m = id(name);
        with_clock(&clock, async {
            orchestrator
                .plan(PlanSpec::new(m.clone(), "Compare"))
                .await?;
            orchestrator.transition(&m).await?;
            orchestrator.execute(&m).await
        })
        .unwrap()
    };
    let direct = measure(ExecutionMode::Direct, "direct");
    let agents = measure(ExecutionMode::Agents, "agents");
    assert_eq!(direct.metrics.duration_ms(), 300);
    assert_eq!(agents.metrics.duration_ms(), 30);
    assert_eq!(direct.metrics.busy_ms, 300);
    let cmp = milestone_core::complexity::compare(
        &direct.metrics.run_metrics(),
        &agents.metrics.run_metrics(),
    );
    assert_eq!(cmp.speedup, 10.0);
    assert_eq!(
        cmp.recommendation,
        milestone_core::complexity::Recommendation::AlwaysAgents
    );
    let design = &agents.phases[0];
    assert_eq!(design.duration_ms(), Some(10));
}
