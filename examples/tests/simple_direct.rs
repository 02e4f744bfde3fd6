//! `simple_direct` runs in the test suite: a low-complexity plan is executed directly, the
//! direct runners do all the work and the agents are never called.

use std::sync::{Arc, Mutex};

use milestone_core::complexity::{Complexity, ExecutionMode};
use milestone_core::{ItemStatus, MilestoneStatus};

#[test]
fn simple_direct_runs_a_low_complexity_milestone_without_agents() {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let summary = milestone_examples::simple_direct::run(out).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();

    // Low complexity, so Auto chose direct execution.
    assert_eq!(summary.complexity, Complexity::Low, "{text}");
    assert_eq!(summary.report.mode, ExecutionMode::Direct, "{text}");
    assert!(summary.report.is_completed(), "{text}");
    assert_eq!(summary.state.status(), MilestoneStatus::Completed);

    // The agents were bound and available, but not one was called.
    assert!(summary.agent_calls.is_empty(), "{:?}", summary.agent_calls);
    assert_eq!(summary.report.metrics.agent_runs, 0);
    // The direct runners ran every phase and every task, each exactly once (the execute phase
    // is its tasks: it completes when they do).
    let mut calls = summary.direct_calls.clone();
    calls.sort();
    assert_eq!(
        calls,
        [
            "phase-direct: phase design",
            "phase-direct: phase spec",
            "phase-direct: phase task",
            "task-direct: task login-form",
            "task-direct: task login-tests",
            "task-direct: task session-check",
        ],
        "{text}"
    );
    assert_eq!(summary.report.metrics.direct_runs, 6);
    assert!(
        summary
            .state
            .tasks()
            .iter()
            .all(|t| t.item.status == ItemStatus::Completed)
    );

    // One conventional commit per phase on the milestone branch.
    assert_eq!(summary.git_log.len(), 4, "{text}");
    assert!(
        summary.git_log[0].ends_with("feat(execute): implement Add login feature functionality")
    );
    assert!(
        summary.git_log[3].ends_with("feat(design): complete design phase for Add login feature")
    );

    assert_eq!(summary.state.git().commits.len(), 4);
    assert_eq!(
        summary.state.git().tag.as_deref(),
        Some("milestone/add-login")
    );

    // The output says what happened.
    assert!(text.contains("complexity: low"), "{text}");
    assert!(text.contains("execution mode chosen: direct"), "{text}");
    assert!(text.contains("agent calls: 0"), "{text}");
}
