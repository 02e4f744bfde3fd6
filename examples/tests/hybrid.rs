//! `hybrid` runs in the test suite: a medium plan is executed in hybrid mode — the phases
//! before `execute` by their direct runners, `execute`'s tasks by agents, in parallel — and its
//! effects (store files, git history) are checked. Then a second milestone runs one phase per
//! call: design directly, the rest with agents.

use std::sync::{Arc, Mutex};

use milestone_core::complexity::{Complexity, ExecutionMode};
use milestone_core::engine::Outcome;
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

    // One phase per call: each call ran only its phase (execute: its twelve tasks), with the
    // runner its mode names, and left the milestone active until the last one completed it.
    let p = &s.phased;
    let ran: Vec<(&str, &str, usize, Vec<&str>)> = p
        .steps
        .iter()
        .map(|step| {
            let mut runners: Vec<&str> = step.calls.iter().map(|(r, _)| r.as_str()).collect();
            runners.dedup();
            (
                step.phase.as_str(),
                step.calls[0].1.as_str(),
                step.calls.len(),
                runners,
            )
        })
        .collect();
    assert_eq!(
        ran,
        [
            ("design", "phase design", 1, vec!["phase-direct"]),
            ("spec", "phase spec", 1, vec!["phase-agent"]),
            ("task", "phase task", 1, vec!["phase-agent"]),
            ("execute", ran[3].1, 12, vec!["task-agent"]),
        ],
        "{text}"
    );
    assert!(p.steps[3].calls.iter().all(|(_, w)| w.starts_with("task ")));
    let modes: Vec<ExecutionMode> = p.steps.iter().map(|s| s.mode).collect();
    assert_eq!(
        modes,
        [
            ExecutionMode::Direct,
            ExecutionMode::Agents,
            ExecutionMode::Agents,
            ExecutionMode::Agents
        ]
    );
    for (k, step) in p.steps.iter().enumerate() {
        let m = &step.report.metrics;
        let expected = if k == 0 {
            (1, 0)
        } else {
            (0, step.calls.len() as u64)
        };
        assert_eq!((m.direct_runs, m.agent_runs), expected, "{}", step.phase);
        if k < 3 {
            assert_eq!(
                step.report.outcome,
                Some(Outcome::PhasesDone { waiting: vec![] })
            );
            assert_eq!(step.report.status, MilestoneStatus::Active);
        } else {
            assert_eq!(step.report.outcome, Some(Outcome::Completed));
        }
    }
    assert_eq!(p.state.status(), MilestoneStatus::Completed);
    assert_eq!(p.state.git().commits.len(), 4);
    assert!(p.state.git().tag.is_some());
    assert!(
        text.contains("design   direct  runs: 1   by phase-direct"),
        "{text}"
    );
    assert!(text.contains("-> done, milestone completed"), "{text}");
}
