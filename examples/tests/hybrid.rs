//! `hybrid` runs in the test suite: a medium plan is executed in hybrid mode — the phases
//! before `execute` by their direct runners, `execute`'s tasks by agents, in parallel — and its
//! effects (store files, git history) are checked.

use std::sync::{Arc, Mutex};

use milestone_core::complexity::{Complexity, ExecutionMode};
use milestone_core::{ItemStatus, MilestoneState, MilestoneStatus};

#[test]
fn hybrid_runs_design_directly_and_execution_on_parallel_agents() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let repo = dir.path().join("repo");
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let s = milestone_examples::hybrid::run(out, &store, &repo).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();

    // Medium complexity, so Auto chose hybrid; everything completed.
    assert_eq!(s.complexity, Complexity::Medium, "{text}");
    assert_eq!(s.report.mode, ExecutionMode::Hybrid, "{text}");
    assert_eq!(s.state.status(), MilestoneStatus::Completed);
    assert_eq!(s.state.tasks().len(), 12);
    assert!(
        s.state
            .tasks()
            .iter()
            .all(|t| t.item.status == ItemStatus::Completed)
    );

    // Which runner ran which phase: design, spec and task directly, each once and in order;
    // every task of execute on an agent, each once; nothing else ran.
    let by = |runner: &str| -> Vec<&str> {
        s.calls
            .iter()
            .filter(|(r, _)| r == runner)
            .map(|(_, w)| w.as_str())
            .collect()
    };
    assert_eq!(
        by("phase-direct"),
        ["phase design", "phase spec", "phase task"],
        "{text}"
    );
    let mut tasks = by("task-agent");
    tasks.sort_unstable();
    tasks.dedup();
    assert_eq!(tasks.len(), 12, "{:?}", s.calls);
    assert!(tasks.iter().all(|w| w.starts_with("task ")));
    assert_eq!(s.calls.len(), 15, "{:?}", s.calls);
    assert!(by("phase-agent").is_empty() && by("task-direct").is_empty());
    assert_eq!(s.report.metrics.direct_runs, 3);
    assert_eq!(s.report.metrics.agent_runs, 12);
    // Four independent chains of tasks: the agents ran side by side.
    assert!(s.report.metrics.max_parallel > 1, "{text}");
    assert!(s.report.metrics.max_parallel <= 4, "{text}");
    // The phase runs came before any task: execute starts after task completes.
    let first_task = s.calls.iter().position(|(r, _)| r == "task-agent").unwrap();
    assert_eq!(first_task, 3, "{:?}", s.calls);

    // The output tells the same story.
    assert!(
        text.contains("complexity medium -> decide() says hybrid"),
        "{text}"
    );
    assert!(
        text.contains("design   the phase run by phase-direct"),
        "{text}"
    );
    assert!(
        text.contains("execute  its tasks run by task-agent"),
        "{text}"
    );

    // Effects: one conventional commit per phase on the branch; the store's log and the
    // exported state, which reloads to the same state.
    let title = "Add rate limiting to the public API";
    let messages: Vec<&str> = s.git_log.iter().map(|l| &l[8..]).collect();
    assert_eq!(
        messages,
        [
            format!("feat(execute): implement {title} functionality"),
            format!("feat(task): complete task planning for {title}"),
            format!("feat(spec): complete specification phase for {title}"),
            format!("feat(design): complete design phase for {title}"),
        ]
    );
    let mdir = store.join(s.id.as_str());
    assert!(mdir.join("events.jsonl").is_file());
    let exported = std::fs::read_to_string(mdir.join("state.json")).unwrap();
    assert_eq!(MilestoneState::from_json(&exported).unwrap(), s.state);
}
