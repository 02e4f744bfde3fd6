//! The main demo runs in the test suite, so it cannot rot: its output and its effects (the
//! store's files, the git history, the Mermaid file) are checked.

use std::sync::{Arc, Mutex};

use milestone_core::progress::overall;
use milestone_core::{ItemStatus, MilestoneStatus, Progress};

#[test]
fn kiro_demo_completes_a_milestone_with_its_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let repo = dir.path().join("repo");
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let summary = milestone_examples::kiro_demo::run(out, &store, &repo).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();

    assert!(summary.completed, "{text}");
    let state = &summary.state;
    assert_eq!(state.status(), MilestoneStatus::Completed);
    assert!(
        state
            .phases()
            .iter()
            .all(|p| p.item.status == ItemStatus::Completed)
    );
    assert_eq!(overall(state), Progress::COMPLETE);
    // The plan's six tasks plus the two the task phase handed on, all done.
    assert_eq!(state.tasks().len(), 8, "{text}");
    assert!(
        state
            .tasks()
            .iter()
            .all(|t| t.item.status == ItemStatus::Completed)
    );
    assert!(
        summary.analyses_overlapped,
        "the four analyses ran one after another: {text}"
    );
    assert!(
        summary.max_parallel >= 2,
        "agents ran one at a time: {text}"
    );
    // Independent tasks ran together.
    assert!(text.contains("(2 tasks running)"), "{text}");
    assert_eq!(summary.flawed_plan_problems, 3);
    assert!(
        text.contains("plan.risks")
            && text.contains("\"deploy\"")
            && text.contains("\"ship-docs\""),
        "{text}"
    );
    // Pipeline: spec started while design was still running.
    assert!(
        text.contains("started phase spec (pipelined: design at"),
        "{text}"
    );

    // One commit per phase, exactly the conventional messages, newest first; then a tag.
    let title = "Refactor authentication system";
    let messages: Vec<&str> = summary.git_log.iter().map(|l| &l[8..]).collect();
    assert_eq!(
        messages,
        [
            format!("feat(execute): implement {title} functionality"),
            format!("feat(task): complete task planning for {title}"),
            format!("feat(spec): complete specification phase for {title}"),
            format!("feat(design): complete design phase for {title}"),
        ]
    );
    assert_eq!(state.git().commits.len(), 4);
    assert_eq!(
        state.git().tag.as_deref(),
        Some(format!("milestone/{}", summary.id).as_str())
    );

    // The store holds the log and the exported state; the graph was written as Mermaid.
    let mdir = store.join(summary.id.as_str());
    assert!(mdir.join("events.jsonl").is_file());
    let exported = std::fs::read_to_string(mdir.join("state.json")).unwrap();
    let reloaded = milestone_core::MilestoneState::from_json(&exported).unwrap();
    assert_eq!(&reloaded, state);
    let mermaid = std::fs::read_to_string(&summary.mermaid_path).unwrap();
    assert!(
        mermaid.starts_with("flowchart") || mermaid.starts_with("graph"),
        "{mermaid}"
    );
    assert!(mermaid.contains("integration-tests"), "{mermaid}");
}
