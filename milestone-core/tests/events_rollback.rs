//! A rollback undoes work, never the record of what exists in git.

use milestone_core::{
    Event, ItemOutput, ItemRef, ItemStatus, MilestoneId, MilestoneState, PhaseId, Timestamp,
    Workflow,
};

#[test]
fn a_rollback_keeps_the_git_records_made_since_the_checkpoint() {
    let design = ItemRef::Phase(PhaseId::new("design").unwrap());
    let mut state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("m").unwrap(),
        title: "m".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    let events = [
        Event::ExecutionStarted { at: Timestamp(1) },
        Event::BranchCreated {
            at: Timestamp(1),
            branch: "feature/milestone-m".into(),
            base: "main".into(),
        },
        Event::ItemStarted {
            at: Timestamp(2),
            item: design.clone(),
            attempt: 1,
        },
        Event::ItemCompleted {
            at: Timestamp(3),
            item: design,
            output: ItemOutput::default().into(),
        },
        Event::CheckpointRecorded {
            at: Timestamp(3),
            label: "after-design".into(),
        },
    ];
    for e in &events {
        state.apply(e).unwrap();
    }
    // The checkpoint is taken before the phase's commit is recorded, as the engine does.
    let checkpoint = state.clone();
    state
        .apply(&Event::PhaseCommitted {
            at: Timestamp(4),
            phase: PhaseId::new("design").unwrap(),
            commit: "abc123".into(),
        })
        .unwrap();
    state
        .apply(&Event::RolledBack {
            at: Timestamp(5),
            label: "after-design".into(),
            state: Box::new(checkpoint),
        })
        .unwrap();
    assert_eq!(state.rollbacks(), 1);
    assert_eq!(
        state.phase("design").unwrap().item.status,
        ItemStatus::Completed
    );
    let commits: Vec<(&str, &str)> = state
        .git()
        .commits
        .iter()
        .map(|c| (c.phase.as_str(), c.commit.as_str()))
        .collect();
    assert_eq!(commits, [("design", "abc123")]);
    assert_eq!(state.git().branch.as_deref(), Some("feature/milestone-m"));
    // Replaying the same log gives the same state, and a second record is still refused.
    assert!(
        state
            .clone()
            .apply(&Event::PhaseCommitted {
                at: Timestamp(6),
                phase: PhaseId::new("design").unwrap(),
                commit: "abc123".into(),
            })
            .is_err()
    );
}

#[test]
fn an_attempt_number_with_no_successor_is_refused() {
    let design = ItemRef::Phase(PhaseId::new("design").unwrap());
    let mut state = MilestoneState::from_events([
        &Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "m".into(),
            context: String::new(),
            workflow: Workflow::kiro(),
            seed: 1,
        },
        &Event::ExecutionStarted { at: Timestamp(1) },
    ])
    .unwrap();
    let before = state.clone();
    let err = state
        .apply(&Event::ItemStarted {
            at: Timestamp(2),
            item: design.clone(),
            attempt: u32::MAX,
        })
        .unwrap_err();
    assert!(err.to_string().contains("attempt numbers end"), "{err}");
    assert_eq!(state, before);
    // The largest accepted attempt still leaves room for the engine's next one.
    state
        .apply(&Event::ItemStarted {
            at: Timestamp(2),
            item: design,
            attempt: u32::MAX - 1,
        })
        .unwrap();
    let engine = milestone_core::engine::Engine::new(state, Default::default());
    assert!(engine.is_ok());
}

#[test]
fn a_huge_bar_width_is_drawn_at_the_maximum() {
    use milestone_core::progress::{MAX_BAR_WIDTH, ProgressReport, RenderOptions};
    let state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("m").unwrap(),
        title: "m".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    let report = ProgressReport::compute(&state, Timestamp(1), None);
    let text = report.render(&RenderOptions::default().width(usize::MAX));
    let longest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(
        longest > MAX_BAR_WIDTH && longest < MAX_BAR_WIDTH + 200,
        "{longest}"
    );
}
