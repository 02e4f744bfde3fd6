//! The `resume` example runs in the test suite: the cut really left the milestone half done,
//! and the resume finished it without doing any phase twice or committing any phase twice.

use std::sync::{Arc, Mutex};

use milestone_core::{Event, ItemRef, ItemStatus, MilestoneState, MilestoneStatus};
use milestone_state::StateStore;

#[test]
fn resume_finishes_a_cut_run_without_doing_a_phase_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let repo = dir.path().join("repo");
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let summary = milestone_examples::resume::run(out, &store, &repo).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();

    // The cut left design done and committed, the rest not.
    let cut = &summary.after_cut;
    assert_eq!(cut.status(), MilestoneStatus::Active, "{text}");
    let done: Vec<&str> = cut
        .phases()
        .iter()
        .filter(|p| p.item.status == ItemStatus::Completed)
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(done, ["design"], "{text}");
    assert_eq!(cut.git().commits.len(), 1);

    // The resume completed it.
    let state = &summary.state;
    assert_eq!(state.status(), MilestoneStatus::Completed, "{text}");
    assert!(
        state
            .tasks()
            .iter()
            .all(|t| t.item.status == ItemStatus::Completed)
    );

    // Every phase and task was done (finished by its agent) exactly once, across both sessions.
    let finished = |work: &str| {
        summary
            .runs
            .iter()
            .filter(|r| r.finished && r.work == work)
            .count()
    };
    for work in [
        "phase design",
        "phase spec",
        "phase task",
        "task schema",
        "task writer",
        "task api",
    ] {
        assert_eq!(finished(work), 1, "{work}: {:#?}", summary.runs);
    }
    // Design ran in session 1 only; nothing finished in session 1 after design.
    let design: Vec<_> = summary
        .runs
        .iter()
        .filter(|r| r.work == "phase design")
        .collect();
    assert_eq!(design.len(), 1);
    assert_eq!(design[0].session, 1);
    assert!(
        summary
            .runs
            .iter()
            .filter(|r| r.session == 1 && r.finished)
            .all(|r| r.work == "phase design")
    );
    // Work cut off in session 1 started again in session 2 under the same idempotency key.
    for cut_off in summary.runs.iter().filter(|r| !r.finished) {
        assert_eq!(cut_off.session, 1);
        let again = summary
            .runs
            .iter()
            .find(|r| r.session == 2 && r.work == cut_off.work)
            .unwrap();
        assert_eq!(again.key, cut_off.key);
    }

    // Git: exactly one conventional commit per phase, newest first.
    let title = "Add audit logging";
    let subjects: Vec<&str> = summary.git_log.iter().map(|l| &l[8..]).collect();
    assert_eq!(
        subjects,
        [
            format!("feat(execute): implement {title} functionality"),
            format!("feat(task): complete task planning for {title}"),
            format!("feat(spec): complete specification phase for {title}"),
            format!("feat(design): complete design phase for {title}"),
        ]
    );
    assert_eq!(state.git().commits.len(), 4);
    // The store's log (both sessions) folds into the same state; design started once, and
    // each phase was committed once.
    let files = milestone_state::file::FileStore::open(&store).unwrap();
    let events = futures::executor::block_on(files.read_events(&summary.id, 0)).unwrap();
    assert_eq!(&MilestoneState::from_events(&events).unwrap(), state);
    let design_starts = events
        .iter()
        .filter(|e| matches!(e, Event::ItemStarted { item: ItemRef::Phase(p), .. } if p.as_str() == "design"))
        .count();
    assert_eq!(design_starts, 1);
    let commits = events
        .iter()
        .filter(|e| matches!(e, Event::PhaseCommitted { .. }))
        .count();
    assert_eq!(commits, 4);
    assert!(text.contains("the run is cut off here"), "{text}");
}
