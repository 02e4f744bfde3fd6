//! The shared example helpers: output, names, phase results, the branch log and the runners.

use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use milestone_agents::{
    AgentContext, AgentOutput, AgentRequest, AgentRunner, CancelToken, Clock, SystemClock,
};
use milestone_core::complexity::{Complexity, ExecutionMode, Recommendation};
use milestone_core::engine::{Role, Work};
use milestone_core::{ItemRef, MilestoneId, PhaseId, TaskId, Workflow};
use milestone_examples::support::{self, Calls};
use milestone_examples::{Out, say};

fn buffer() -> (Arc<Mutex<Vec<u8>>>, Out) {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: Out = buffer.clone();
    (buffer, out)
}

fn text(buffer: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
}

fn phase(id: &str) -> Work {
    Work::Item(ItemRef::Phase(PhaseId::new(id).unwrap()))
}

fn task(id: &str) -> Work {
    Work::Item(ItemRef::Task(TaskId::new(id).unwrap()))
}

#[test]
fn say_and_the_macro_write_one_line_each() {
    let (buffer, out) = buffer();
    support::say(&out, "plain").unwrap();
    say!(out, "{} of {}", 2, 4).unwrap();
    support::say_branch_log(&out, "milestone/x", &["abc1234 one".into()]).unwrap();
    assert_eq!(
        text(&buffer),
        "plain\n2 of 4\n\ngit log main..milestone/x\n  abc1234 one\n"
    );
}

#[test]
fn a_poisoned_output_is_an_error_not_a_panic() {
    let (buffer, out) = buffer();
    let poisoner = buffer.clone();
    let _ = std::thread::spawn(move || {
        let _guard = poisoner.lock().unwrap();
        panic!("poison the output");
    })
    .join();
    let err = support::say(&out, "lost").unwrap_err();
    assert!(err.to_string().contains("poisoned"), "{err}");
}

#[test]
fn short_ids() {
    fn check(commit: &str, expected: &str) {
        assert_eq!(support::short(commit), expected, "short({commit:?})");
    }
    check("0123456789abcdef0123456789abcdef01234567", "0123456");
    check("0123456", "0123456");
    check("012345", "012345");
    check("", "");
    // Not hex: byte 7 falls inside a character, so the whole text is kept rather than a panic.
    check("ééééé", "ééééé");
}

#[test]
fn names() {
    fn check(got: &str, expected: &str) {
        assert_eq!(got, expected);
    }
    check(support::mode_name(ExecutionMode::Direct), "direct");
    check(support::mode_name(ExecutionMode::Hybrid), "hybrid");
    check(support::mode_name(ExecutionMode::Agents), "agents");
    check(support::complexity_name(Complexity::Low), "low");
    check(support::complexity_name(Complexity::Medium), "medium");
    check(support::complexity_name(Complexity::High), "high");
    check(
        support::recommendation_name(Recommendation::AlwaysAgents),
        "always use agents",
    );
    check(
        support::recommendation_name(Recommendation::AgentsForComplex),
        "use agents for complex milestones",
    );
    check(
        support::recommendation_name(Recommendation::DirectForSimple),
        "run simple milestones directly",
    );
}

#[test]
fn a_phase_result_names_every_expected_output_of_that_phase() {
    let workflow = Workflow::kiro();
    for spec in workflow.phases() {
        let out = support::phase_output(&workflow, &phase(spec.id.as_str()), "T", "done");
        assert_eq!(out.summary, "done");
        let names: Vec<&str> = out.artifacts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, spec.expected_outputs, "phase {}", spec.id);
        for a in &out.artifacts {
            assert_eq!(
                a.body,
                milestone_core::ArtifactBody::Inline(format!("{} for T", a.name))
            );
        }
    }
}

#[test]
fn other_work_gets_no_artifacts_and_is_not_a_phase() {
    let workflow = Workflow::kiro();
    for work in [task("login-form"), phase("not-in-kiro")] {
        let out = support::phase_output(&workflow, &work, "T", "done");
        assert!(out.artifacts.is_empty(), "{work}");
    }
    assert_eq!(support::phase_of(&phase("spec")).unwrap().as_str(), "spec");
    let err = support::phase_of(&task("login-form")).unwrap_err();
    assert!(err.to_string().contains("not a phase"), "{err}");
}

#[test]
fn the_recorder_takes_what_was_recorded() {
    let calls: Calls = Arc::default();
    support::record(&calls, "a: phase design".into());
    support::record(&calls, "b: task x".into());
    assert_eq!(support::take(&calls), ["a: phase design", "b: task x"]);
    assert!(support::take(&calls).is_empty());
}

#[test]
fn the_branch_log_lists_the_branch_newest_first() {
    // A real run gives a state with a branch and commits on it: the simple example does.
    let (_, out) = buffer();
    let summary = milestone_examples::simple_direct::run(out).unwrap();
    assert_eq!(summary.git_log.len(), 4, "{:?}", summary.git_log);
    for line in &summary.git_log {
        let (id, message) = line.split_once(' ').unwrap();
        assert_eq!(id.len(), 7, "{line}");
        assert!(!message.is_empty(), "{line}");
    }
    assert!(
        summary.git_log[0].contains("execute"),
        "{:?}",
        summary.git_log
    );
    assert_eq!(
        support::branch_of(&summary.state),
        "feature/milestone-add-login"
    );
}

#[test]
fn a_branch_missing_from_git_is_an_error() {
    let git = milestone_git::InMemoryGit::new();
    block_on(support::initial_commit(&git, b"# readme\n")).unwrap();
    let (_, out) = buffer();
    let state = milestone_examples::simple_direct::run(out).unwrap().state;
    // The state names a branch this fresh repository does not have.
    assert!(block_on(support::branch_log(&git, &state)).is_err());
}

#[test]
fn the_worker_records_the_call_then_returns_its_output() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let calls: Calls = Arc::default();
    let recorder = Arc::clone(&calls);
    let worker = support::worker(
        &clock,
        "w",
        1,
        move |req: &AgentRequest| support::record(&recorder, format!("w: {}", req.work)),
        |req, by| Ok(AgentOutput::new(format!("{} by {by}", req.work))),
    );
    assert_eq!(worker.name(), "w");
    let request = AgentRequest::new(MilestoneId::new("m").unwrap(), Role::Task, task("t1"));
    let out = block_on(worker.run(request, AgentContext::detached(CancelToken::new()))).unwrap();
    assert_eq!(out.summary, "task t1 by w");
    assert_eq!(support::take(&calls), ["w: task t1"]);
}

#[test]
fn the_analyst_returns_its_analysis_as_data() {
    fn analysis(role: &Role) -> serde_json::Value {
        serde_json::json!({ "role": milestone_agents::role_name(role) })
    }
    for role in support::PLANNING_ROLES {
        let analyst = support::analyst(analysis);
        let request = AgentRequest::new(
            MilestoneId::new("m").unwrap(),
            role.clone(),
            phase("design"),
        );
        let out =
            block_on(analyst.run(request, AgentContext::detached(CancelToken::new()))).unwrap();
        assert_eq!(out.data, analysis(&role));
    }
}

#[test]
fn estimation_and_chain_build_the_json_the_examples_wrote_by_hand() {
    let tasks = support::chain(&[
        ("a-limit".into(), "limit a".into()),
        ("a-wire".into(), "wire a".into()),
        ("a-test".into(), "test a".into()),
    ]);
    let built = support::estimation(
        [3_600_000, 7_200_000, 1_800_000, 28_800_000],
        20,
        tasks.into(),
    );
    let by_hand = serde_json::json!({
        "estimates": {"phases": [
            {"phase": "design", "effort_ms": 3_600_000},
            {"phase": "spec", "effort_ms": 7_200_000},
            {"phase": "task", "effort_ms": 1_800_000},
            {"phase": "execute", "effort_ms": 28_800_000}],
            "buffer_percent": 20, "critical_path": ["design", "spec", "task", "execute"]},
        "tasks": [
            {"id": "a-limit", "title": "limit a"},
            {"id": "a-wire", "title": "wire a", "dependencies": ["a-limit"]},
            {"id": "a-test", "title": "test a", "dependencies": ["a-wire"]}]});
    assert_eq!(built, by_hand);
    assert!(support::chain(&[]).is_empty());
}

#[test]
fn done_by_says_who_did_a_phase_or_a_task_and_refuses_other_work() {
    fn check(work: Work, expected: Option<(&str, usize)>) {
        let req = AgentRequest::new(MilestoneId::new("m").unwrap(), Role::Task, work.clone());
        match (support::done_by(&req, "T", "w"), expected) {
            (Ok(out), Some((summary, artifacts))) => {
                assert_eq!(out.summary, summary, "{work}");
                assert_eq!(out.artifacts.len(), artifacts, "{work}");
            }
            (Err(e), None) => assert!(e.to_string().contains("not phase or task"), "{e}"),
            (got, want) => panic!("{work}: got {got:?}, want {want:?}"),
        }
    }
    check(phase("design"), Some(("design done by w", 3)));
    check(phase("execute"), Some(("execute done by w", 3)));
    check(task("t1"), Some(("t1 done by w", 0)));
    check(
        Work::Planning(milestone_core::engine::AnalysisKind::Scope),
        None,
    );
}
