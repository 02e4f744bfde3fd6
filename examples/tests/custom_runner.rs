//! The `custom_runner` example runs in the test suite: the hand-written runner and the script
//! each did the work they are bound to, progress flowed back, cancellation was honoured.

use std::sync::{Arc, Mutex};

use milestone_core::{ItemStatus, MilestoneStatus};

#[test]
fn custom_runner_runs_a_hand_written_runner_and_a_script_in_one_milestone() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let summary = milestone_examples::custom_runner::run(out, dir.path()).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    let state = &summary.state;

    assert_eq!(state.status(), MilestoneStatus::Completed, "{text}");
    assert!(
        state
            .phases()
            .iter()
            .all(|p| p.item.status == ItemStatus::Completed)
    );
    // The reviewer ran design and task once each and every task once; the execute phase
    // completed with its tasks; spec went to the script.
    let mut work = summary.reviewer_work.clone();
    work.sort();
    assert_eq!(
        work,
        [
            "phase design",
            "phase task",
            "task api",
            "task schema",
            "task writer"
        ],
        "{text}"
    );
    // The spec phase's result came from the script, with the artifacts its gate requires.
    let spec = state.phase("spec").unwrap();
    let output = spec.item.output.as_ref().unwrap();
    assert_eq!(output.summary, "spec written by a shell script", "{text}");
    let names: Vec<&str> = output.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["technical-specs", "api-contracts", "data-models"]);
    assert_eq!(spec.item.attempts, 1);
    // Called by hand, the script's progress lines reached the context, in order.
    assert_eq!(summary.script_progress, [2500, 7500], "{text}");
    assert!(
        text.contains("progress [2500, 7500] (basis points), then: spec written by a shell script (3 artifacts)"),
        "{text}"
    );
    // The hand-written runner stopped promptly when cancelled.
    assert!(
        summary
            .cancelled_run
            .contains("stopped phase design at step 1 of 4"),
        "{}",
        summary.cancelled_run
    );
    assert!(
        text.contains("phase spec completed: spec written by a shell script"),
        "{text}"
    );
    assert_eq!(
        state
            .phase("execute")
            .unwrap()
            .item
            .output
            .as_ref()
            .unwrap()
            .summary,
        "3 tasks done"
    );
    assert!(text.contains("the reviewer ran: "), "{text}");
}

#[test]
fn an_offline_reviewer_is_not_available() {
    let clock: Arc<dyn milestone_agents::Clock> = Arc::new(milestone_agents::SystemClock::new());
    let reviewer = milestone_examples::custom_runner::Reviewer::new(
        "r",
        milestone_core::Workflow::kiro(),
        clock,
        1,
    );
    use milestone_agents::AgentRunner;
    assert!(futures::executor::block_on(reviewer.available()));
    reviewer.set_online(false);
    assert!(!futures::executor::block_on(reviewer.available()));
}
