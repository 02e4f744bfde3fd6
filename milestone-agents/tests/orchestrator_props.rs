//! Properties of the orchestrator over random failures and random crash points (the call is
//! dropped after a random number of polls, then resumed by a fresh orchestrator): the milestone
//! completes, a phase completed before the crash never runs again, git holds one commit per
//! phase and the log one record per phase. Also: the loop runs on any executor.

mod orchestrator_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::task::noop_waker;
use milestone_agents::orchestrator::{Orchestrator, PlanSpec};
use milestone_agents::{AgentContext, AgentError, AgentRequest, FnAgent, Registry};
use milestone_core::engine::{EngineConfig, RecoveryConfig, RecoveryStep, RetryConfig};
use milestone_core::{Event, ItemStatus, MilestoneId, MilestoneStatus};
use milestone_git::conventions::{MILESTONE_TRAILER, PHASE_TRAILER, branch_name};
use milestone_git::{CommitRequest, GitBackend, InMemoryGit, LogRange, RefName, Revision};
use milestone_state::{InMemory, StateStore};
use orchestrator_support::*;
use proptest::prelude::*;

const PHASES: [&str; 3] = ["design", "spec", "task"];

type Counts = Arc<[AtomicUsize; 3]>;

/// Phase runners that yield once (so a call can be dropped between polls) and fail
/// `failures[i]` times transiently before succeeding; tasks likewise yield once.
/// `counts` are shared by every orchestrator of one case: the failures are the world's, not
/// a process's.
fn yielding_registry(log: &RunLog, failures: [usize; 3], counts: &Counts) -> Registry {
    let mut r = registry(log);
    let counts = counts.clone();
    let l = log.clone();
    r.bind_direct_any_phase(FnAgent::new(
        "yielding",
        move |req: AgentRequest, _ctx: AgentContext| {
            let (l, counts) = (l.clone(), counts.clone());
            async move {
                yield_now().await;
                let phase = req.work.to_string().replace("phase ", "");
                let k = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
                if counts[k].fetch_add(1, Ordering::SeqCst) < failures[k] {
                    return Err(AgentError::transient("flaky"));
                }
                l.lock().unwrap().push(entry(&req));
                Ok(phase_output(&req))
            }
        },
    ));
    r
}

fn config() -> EngineConfig {
    EngineConfig {
        recovery: RecoveryConfig {
            order: vec![RecoveryStep::Retry],
            retry: RetryConfig {
                max_attempts: 4,
                base_ms: 1,
                factor: 1,
                cap_ms: 1,
            },
            ..RecoveryConfig::default()
        },
        ..EngineConfig::default()
    }
}

fn phases_on_branch(git: &InMemoryGit, m: &MilestoneId) -> Vec<String> {
    let range = LogRange::between(
        Revision::branch(&RefName::new("main").unwrap()),
        Revision::branch(&branch_name(m)),
    );
    let mut v: Vec<String> = block_on(git.log(&range))
        .unwrap()
        .into_iter()
        .filter(|e| e.trailer(MILESTONE_TRAILER) == Some(m.as_str()))
        .filter_map(|e| e.trailer(PHASE_TRAILER).map(str::to_owned))
        .collect();
    v.reverse();
    v
}

fn crash_and_resume(polls: usize, failures: [usize; 3]) {
    let store = Arc::new(InMemory::new());
    let git = Arc::new(InMemoryGit::new());
    block_on(async {
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("initial").allow_empty(true))
            .await
            .unwrap();
    });
    let m = MilestoneId::new("prop").unwrap();
    let counts = Counts::default();
    let build = |log: &RunLog| {
        Orchestrator::builder()
            .registry(yielding_registry(log, failures, &counts))
            .store(store.clone())
            .git(git.clone(), RefName::new("main").unwrap())
            .engine_config(config())
            .build()
            .unwrap()
    };
    let before = RunLog::default();
    let first = build(&before);
    block_on(async {
        first.plan(PlanSpec::new(m.clone(), "Prop")).await?;
        first.transition(&m).await.map(|_| ())
    })
    .unwrap();
    // Poll the execution `polls` times (a noop waker: retries' timers never wake it), then
    // drop it: a crash at a random point.
    {
        let mut run = Box::pin(first.execute(&m));
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..polls {
            if let Poll::Ready(r) = run.as_mut().poll(&mut cx) {
                r.unwrap();
                break;
            }
        }
    }
    drop(first);
    let mid = block_on(store.load(&m)).unwrap().state;
    let done_before: Vec<String> = mid
        .phases()
        .iter()
        .filter(|p| p.item.status == ItemStatus::Completed)
        .map(|p| format!("phase {}", p.id))
        .collect();
    let after = RunLog::default();
    let second = build(&after);
    let report = block_on(second.resume(&m)).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    for phase in &done_before {
        assert_eq!(
            runs_of(&after, phase),
            0,
            "{phase} completed before the crash ran again"
        );
    }
    assert_eq!(
        phases_on_branch(&git, &m),
        vec!["design", "spec", "task", "execute"]
    );
    let events = block_on(store.read_events(&m, 0)).unwrap();
    let commits = events
        .iter()
        .filter(|e| matches!(e, Event::PhaseCommitted { .. }))
        .count();
    assert_eq!(commits, 4);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Tagged { .. }))
            .count(),
        1
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn a_crash_anywhere_resumes_to_completion_without_duplicates(
        polls in 0usize..40,
        failures in prop::array::uniform3(0usize..3),
    ) {
        crash_and_resume(polls, failures);
    }
}

#[test]
fn the_loop_runs_on_a_thread_pool_and_a_local_pool() {
    let log = RunLog::default();
    let orchestrator = Orchestrator::builder()
        .registry(yielding_registry(&log, [0, 1, 0], &Counts::default()))
        .store(Arc::new(InMemory::new()))
        .engine_config(config())
        .build()
        .unwrap();
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    let o = orchestrator.clone();
    let handle = futures::task::SpawnExt::spawn_with_handle(&pool, async move {
        let m = MilestoneId::new("pooled").unwrap();
        o.plan(PlanSpec::new(m.clone(), "Pool")).await?;
        o.transition(&m).await?;
        o.execute(&m).await
    })
    .unwrap();
    let report = block_on(handle).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);

    let mut local = futures::executor::LocalPool::new();
    let m = MilestoneId::new("local").unwrap();
    let report = local
        .run_until(async {
            orchestrator.plan(PlanSpec::new(m.clone(), "Local")).await?;
            orchestrator.transition(&m).await?;
            orchestrator.execute(&m).await
        })
        .unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(runs_of(&log, "phase spec"), 2);
}
