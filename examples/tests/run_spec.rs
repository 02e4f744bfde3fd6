//! The `run_spec` example runs in the test suite: both shipped spec files run their milestone
//! to completion through their commands, and a malformed spec is a typed error naming the
//! field.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use milestone_core::{ItemStatus, MilestoneStatus, Progress};
use milestone_examples::run_spec::{Spec, SpecError, run};

fn spec_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("specs")
        .join(name)
}

/// Runs a shipped spec; returns the summary and the printed report.
fn run_file(name: &str) -> (milestone_examples::run_spec::Summary, String) {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let summary = run(out, &spec_file(name), dir.path()).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    // The store holds the log and the exported state of the run.
    let exported =
        std::fs::read_to_string(dir.path().join(summary.id.as_str()).join("state.json")).unwrap();
    assert_eq!(
        milestone_core::MilestoneState::from_json(&exported).unwrap(),
        summary.state
    );
    (summary, text)
}

/// Every phase and task completed, each done by the agent labelled `by` (the design phase by
/// `design_by`).
fn assert_done_by(
    summary: &milestone_examples::run_spec::Summary,
    by: &str,
    design_by: &str,
    text: &str,
) {
    let state = &summary.state;
    assert_eq!(state.status(), MilestoneStatus::Completed, "{text}");
    assert_eq!(summary.report.progress.overall, Progress::COMPLETE);
    for phase in ["design", "spec", "task"] {
        let p = state.phase(phase).unwrap();
        assert_eq!(p.item.status, ItemStatus::Completed);
        let summary = &p.item.output.as_ref().unwrap().summary;
        let by = if phase == "design" { design_by } else { by };
        assert_eq!(summary, &format!("{phase} phase done {by}"), "{text}");
    }
    for t in state.tasks() {
        assert_eq!(t.item.status, ItemStatus::Completed);
        let summary = &t.item.output.as_ref().unwrap().summary;
        assert_eq!(summary, &format!("task {} done {by}", t.spec.id), "{text}");
    }
}

#[test]
fn the_shell_spec_runs_its_milestone_through_sh_scripts() {
    let (summary, text) = run_file("shell_agents.json");
    assert_done_by(&summary, "by sh", "by sh", &text);
    assert_eq!(summary.state.tasks().len(), 3);
    assert_eq!(summary.state.title(), "Add login feature");
    // Six files and three tasks: low complexity, so `auto` chose direct execution.
    assert_eq!(
        summary.report.mode,
        milestone_core::complexity::ExecutionMode::Direct
    );
    assert!(summary.id.as_str().starts_with("shell-agents-"));
    assert!(text.contains("Execution (sequential)"), "{text}");
}

#[test]
fn the_python_spec_runs_its_workflow_with_agents_in_a_pipeline() {
    let (summary, text) = run_file("python_agents.json");
    // `phase:design` wins over `phase`, and its `env` reached the program.
    assert_done_by(&summary, "by python", "by python (design binding)", &text);
    assert_eq!(summary.state.tasks().len(), 4);
    assert_eq!(
        summary.report.mode,
        milestone_core::complexity::ExecutionMode::Agents
    );
    assert!(summary.report.metrics.agent_runs >= 7, "{text}");
    assert!(summary.id.as_str().starts_with("auth-refactor-"));
    // The spec's own workflow (60 s phase timeouts) is the milestone's.
    let design = summary.state.workflow().phase("design").unwrap();
    assert_eq!(design.limits.timeout_ms, 60_000);
    assert!(text.contains("Execution (pipeline)"), "{text}");
}

/// The shell spec with one edit made to its JSON.
fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(spec_file("shell_agents.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    v.to_string()
}

/// A malformed spec is refused with a `Field` error naming `field`, whose message has `text`.
fn check(json: &str, field: &str, text: &str) {
    match Spec::from_json(json) {
        Err(e @ SpecError::Field { .. }) => {
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.to_string().contains(text), "{e}");
        }
        other => panic!("expected a field error for {field}, got {other:?}"),
    }
}

#[test]
fn a_malformed_spec_is_a_typed_error_naming_the_field() {
    use serde_json::json;
    check(
        &edited(|v| v["titel"] = json!("x")),
        "titel",
        "unknown field",
    );
    check(
        &edited(|v| {
            v.as_object_mut().unwrap().remove("title");
        }),
        "title",
        "missing",
    );
    check(
        &edited(|v| v["title"] = json!(7)),
        "title",
        "expected a string, found 7",
    );
    check(&edited(|v| v["title"] = json!("  ")), "title", "empty");
    check(&edited(|v| v["id"] = json!("../escape")), "id", "");
    check(
        &edited(|v| v["strategy"] = json!("fastest")),
        "strategy",
        "unknown strategy",
    );
    check(
        &edited(|v| v["mode"] = json!("turbo")),
        "mode",
        "unknown mode",
    );
    check(
        &edited(|v| v["workflow"] = json!([])),
        "workflow",
        "expected an object",
    );
    check(
        &edited(|v| v["workflow"] = json!({"phases": []})),
        "workflow",
        "",
    );
    check(
        &edited(|v| {
            v.as_object_mut().unwrap().remove("roles");
        }),
        "roles",
        "missing",
    );
    check(
        &edited(|v| v["roles"] = json!("sh")),
        "roles",
        "expected an object",
    );
    check(
        &edited(|v| {
            v["roles"].as_object_mut().unwrap().remove("task");
        }),
        "roles.task",
        "missing",
    );
    check(
        &edited(|v| v["roles"]["scpoe"] = json!({"program": "sh"})),
        "roles.scpoe",
        "unknown role",
    );
    check(
        &edited(|v| v["roles"]["phase:deploy"] = json!({"program": "sh"})),
        "roles.phase:deploy",
        "no phase \"deploy\"",
    );
    check(
        &edited(|v| v["roles"]["scope"] = json!({"args": []})),
        "roles.scope.program",
        "missing",
    );
    check(
        &edited(|v| v["roles"]["scope"]["program"] = json!("")),
        "roles.scope.program",
        "empty",
    );
    check(
        &edited(|v| v["roles"]["scope"]["args"][1] = json!(7)),
        "roles.scope.args[1]",
        "expected a string, found 7",
    );
    check(
        &edited(|v| v["roles"]["scope"]["args"] = json!("scope")),
        "roles.scope.args",
        "expected an array",
    );
    check(
        &edited(|v| v["roles"]["risk"]["env"] = json!({"A": 1})),
        "roles.risk.env.A",
        "expected a string",
    );
    check(
        &edited(|v| v["roles"]["risk"]["pass_env"] = json!([null])),
        "roles.risk.pass_env[0]",
        "found null",
    );
    check(
        &edited(|v| v["roles"]["task"]["timeout"] = json!(5)),
        "roles.task.timeout",
        "unknown field",
    );
}

#[test]
fn unreadable_or_non_json_specs_are_typed_errors() {
    let missing = Spec::load(Path::new("/nonexistent/spec.json")).unwrap_err();
    assert!(matches!(missing, SpecError::Read { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/spec.json"));
    match Spec::from_json("{\n  \"title\": ,\n}") {
        Err(SpecError::Syntax { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    check("[1, 2]", "(the spec)", "expected an object");
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.json");
    let padding = " ".repeat(milestone_examples::run_spec::MAX_SPEC_BYTES as usize);
    std::fs::write(&huge, format!("{{{padding}}}")).unwrap();
    assert!(matches!(
        Spec::load(&huge),
        Err(SpecError::TooLarge { bytes }) if bytes > milestone_examples::run_spec::MAX_SPEC_BYTES
    ));
    // A run of a malformed spec stops before anything is created.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, edited(|v| v["strategy"] = serde_json::json!(1))).unwrap();
    let out: milestone_examples::Out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let err = run(out, &bad, &dir.path().join("store")).unwrap_err();
    assert_eq!(
        err.downcast_ref::<SpecError>().and_then(SpecError::field),
        Some("strategy")
    );
    assert!(!dir.path().join("store").exists());
}

#[test]
fn both_shipped_specs_parse_with_every_role_bound() {
    for name in ["shell_agents.json", "python_agents.json"] {
        let spec = Spec::load(&spec_file(name)).unwrap();
        for role in [
            "scope",
            "estimation",
            "risk",
            "kiro-strategy",
            "phase",
            "task",
        ] {
            assert!(spec.roles.contains_key(role), "{name}: {role}");
        }
    }
}

/// Every field path of `v` (objects as `a.b`, arrays as `a[0]`), the root excluded.
fn paths(v: &serde_json::Value, here: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let p = if here.is_empty() {
                    k.clone()
                } else {
                    format!("{here}.{k}")
                };
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{here}[{i}]");
                out.push(p.clone());
                paths(child, &p, out);
            }
        }
        _ => {}
    }
}

/// The value at `path` in `v`.
fn at<'a>(v: &'a mut serde_json::Value, path: &str) -> &'a mut serde_json::Value {
    let mut v = v;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, Some(i.trim_end_matches(']').parse::<usize>().unwrap())),
            None => (part, None),
        };
        v = &mut v[key];
        if let Some(i) = index {
            v = &mut v[i];
        }
    }
    v
}

#[test]
fn every_field_of_the_shipped_specs_given_a_wrong_type_is_named_in_the_error() {
    for name in ["shell_agents.json", "python_agents.json"] {
        let text = std::fs::read_to_string(spec_file(name)).unwrap();
        let valid: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut all = Vec::new();
        paths(&valid, "", &mut all);
        let mut checked = 0;
        for path in all.iter().filter(|p| !p.starts_with("workflow.")) {
            let mut v = valid.clone();
            let slot = at(&mut v, path);
            // A string where something else is expected, else a number.
            *slot = if slot.is_string() {
                serde_json::json!(7)
            } else {
                serde_json::json!("seven")
            };
            let err = Spec::from_json(&v.to_string()).unwrap_err();
            assert_eq!(err.field(), Some(path.as_str()), "{name}: {err}");
            checked += 1;
        }
        assert!(checked > 30, "{name}: only {checked} fields");
    }
}
