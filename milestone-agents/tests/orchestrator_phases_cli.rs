//! One phase at a time over `FileStore` and `CliGit` in temporary directories: a call dropped
//! mid-phase, then a new orchestrator over the reopened store and repository carries the phase
//! on with a phase call; every phase is committed once, in order, and the tag comes with the
//! call that completes the milestone.
#![cfg(unix)]

mod orchestrator_support;

use std::sync::Arc;

use futures::executor::block_on;
use milestone_agents::orchestrator::{Orchestrator, PlanSpec};
use milestone_core::engine::{Outcome, Role};
use milestone_core::{ExecutionMode, MilestoneId, MilestoneStatus};
use milestone_git::conventions::tag_name;
use milestone_git::{GitBackend, Revision};
use milestone_state::{FileStore, StateStore};
use orchestrator_support::*;

#[test]
fn phase_calls_over_file_store_and_cli_git_survive_a_dropped_call() {
    let d = dirs();
    let git = init_repo(&d);
    let log = RunLog::default();
    let m = MilestoneId::new("phased").unwrap();

    // First orchestrator: design runs; the spec call is dropped while spec runs.
    let mut first = registry(&log);
    let (started_tx, started) = futures::channel::oneshot::channel::<()>();
    first.bind_direct_arc(
        Role::Phase(ph("spec")),
        hanging("hanging-spec", &log, Some(started_tx)),
    );
    let store = Arc::new(FileStore::open(&d.store).unwrap());
    let o = Orchestrator::builder()
        .registry(first)
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    block_on(async {
        o.plan(PlanSpec::new(m.clone(), "Phased")).await?;
        o.transition(&m).await?;
        o.execute_phase(&m, &ph("design"), Some(ExecutionMode::Direct))
            .await
    })
    .unwrap();
    let spec = ph("spec");
    {
        // Run the call until spec has started, then drop it.
        let call = Box::pin(o.execute_phase(&m, &spec, Some(ExecutionMode::Direct)));
        match block_on(futures::future::select(call, started)) {
            futures::future::Either::Right((Ok(()), call)) => drop(call),
            _ => panic!("the spec call ended before spec started"),
        }
    }
    drop(o);
    drop(store);
    assert_eq!(committed_phases(&git, &m), ["design"]);

    // A new orchestrator over the reopened store and repository.
    let store = Arc::new(FileStore::open(&d.store).unwrap());
    let git = open_repo(&d);
    let o = Orchestrator::builder()
        .registry(registry(&log))
        .store(store.clone())
        .git(git.clone(), main_branch())
        .build()
        .unwrap();
    let report = block_on(o.execute_phase(&m, &spec, Some(ExecutionMode::Direct))).unwrap();
    assert_eq!(
        report.outcome,
        Some(Outcome::PhasesDone { waiting: vec![] })
    );
    assert_eq!(report.metrics.runs, 1);
    assert_eq!(runs_of(&log, "phase design"), 1);
    assert_eq!(runs_of(&log, "phase spec"), 2);
    assert_eq!(runs_of(&log, "phase task"), 0);
    assert_eq!(committed_phases(&git, &m), ["design", "spec"]);
    assert!(block_on(git.resolve(&Revision::tag(&tag_name(&m)))).is_err());

    for phase in ["task", "execute"] {
        block_on(o.execute_phase(&m, &ph(phase), None)).unwrap();
    }
    let state = block_on(store.load(&m)).unwrap().state;
    assert_eq!(state.status(), MilestoneStatus::Completed);
    assert_eq!(
        committed_phases(&git, &m),
        ["design", "spec", "task", "execute"]
    );
    assert_eq!(state.git().commits.len(), 4);
    assert!(block_on(git.resolve(&Revision::tag(&tag_name(&m)))).is_ok());
    for work in ["phase task", "task a", "task b", "task c"] {
        assert_eq!(runs_of(&log, work), 1, "{work}");
    }
}
