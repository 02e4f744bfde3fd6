//! Loading plans (and the other documents a host keeps: workflows, states, the command shape)
//! from JSON: every public plan type round-trips, and malformed, truncated, oversized and
//! future-version input gets a typed error.

use milestone_core::bridge::{CommandState, MAX_COMMAND_JSON};
use milestone_core::plan::{
    Analyses, Analysis, Estimates, EstimationAnalysis, Level, MAX_PLAN_JSON, MilestonePlan,
    PLAN_SCHEMA_VERSION, PhaseEstimate, Risk, RiskAnalysis, ScopeAnalysis,
};
use milestone_core::workflow::MAX_WORKFLOW_JSON;
use milestone_core::{
    KiroItem, KiroStrategy, LoadError, MilestoneState, PhaseId, Priority, ProblemKind, TaskId,
    TaskSpec, Workflow, complexity::Complexity,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        "[a-z ]{0,20}",
        Just(String::new()),
        Just("\"\\\n\u{1F600}".to_owned())
    ]
}

fn phase_id() -> impl Strategy<Value = PhaseId> {
    "[a-z][a-z0-9_-]{0,8}".prop_map(|s| PhaseId::new(s).unwrap())
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Low), Just(Level::Medium), Just(Level::High)]
}

fn scope() -> impl Strategy<Value = ScopeAnalysis> {
    (
        proptest::collection::vec(text(), 0..4),
        proptest::collection::vec(text(), 0..4),
        any::<u32>(),
        prop_oneof![
            Just(Complexity::Low),
            Just(Complexity::Medium),
            Just(Complexity::High)
        ],
        proptest::collection::vec(text(), 0..4),
    )
        .prop_map(
            |(components, dependencies, file_count, complexity, risk_factors)| ScopeAnalysis {
                components,
                dependencies,
                file_count,
                complexity,
                risk_factors,
            },
        )
}

/// Estimates whose phases are distinct (a structurally sound section).
fn estimates() -> impl Strategy<Value = Estimates> {
    (
        proptest::collection::btree_set("[a-z][a-z0-9]{0,6}", 0..6),
        proptest::collection::vec(any::<u64>(), 6),
        any::<u32>(),
        proptest::collection::vec(phase_id(), 0..4),
    )
        .prop_map(
            |(names, efforts, buffer_percent, critical_path)| Estimates {
                phases: names
                    .into_iter()
                    .zip(efforts)
                    .map(|(n, effort_ms)| PhaseEstimate {
                        phase: PhaseId::new(n).unwrap(),
                        effort_ms,
                    })
                    .collect(),
                buffer_percent,
                critical_path,
            },
        )
}

fn risk() -> impl Strategy<Value = Risk> {
    (text(), level(), level(), text(), text()).prop_map(
        |(description, probability, impact, mitigation, contingency)| Risk {
            description,
            probability,
            impact,
            mitigation,
            contingency,
        },
    )
}

fn kiro() -> impl Strategy<Value = KiroStrategy> {
    let items = || {
        proptest::collection::vec(
            (text(), phase_id()).prop_map(|(d, p)| KiroItem::new(d, p)),
            0..3,
        )
    };
    (items(), items(), items(), items()).prop_map(|(keep, improve, remove, originate)| {
        KiroStrategy {
            keep,
            improve,
            remove,
            originate,
        }
    })
}

/// Tasks with unique ids, each depending only on earlier ones (a sound breakdown).
fn tasks() -> impl Strategy<Value = Vec<TaskSpec>> {
    proptest::collection::vec(
        (
            text(),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
            proptest::option::of(any::<u64>()),
            prop_oneof![
                Just(Priority::Low),
                Just(Priority::Medium),
                Just(Priority::High),
                Just(Priority::Critical)
            ],
        ),
        0..8,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (title, deps, estimate_ms, priority))| {
                let mut t = TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), title);
                if i > 0 {
                    t.dependencies = deps
                        .iter()
                        .map(|d| TaskId::new(format!("t{}", d.index(i))).unwrap())
                        .collect();
                    t.dependencies.dedup();
                }
                t.estimate_ms = estimate_ms;
                t.priority = priority;
                t
            })
            .collect()
    })
}

fn plan() -> impl Strategy<Value = MilestonePlan> {
    (
        proptest::option::of(scope()),
        proptest::option::of(estimates()),
        proptest::option::of(proptest::collection::vec(risk(), 0..4)),
        proptest::option::of(kiro()),
        tasks(),
    )
        .prop_map(|(scope, estimates, risks, kiro, tasks)| MilestonePlan {
            scope,
            estimates,
            risks,
            kiro,
            tasks,
        })
}

fn serde_round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plans_round_trip_through_their_document(p in plan()) {
        let json = p.to_json();
        let version = format!("\"schema_version\":{PLAN_SCHEMA_VERSION}");
        prop_assert!(json.contains(&version));
        prop_assert_eq!(MilestonePlan::from_json(&json).unwrap(), p.clone());
        // And through plain serde, as embedded in events and states.
        prop_assert_eq!(serde_round_trip(&p), p);
    }

    #[test]
    fn plan_parts_round_trip_through_json(s in scope(), e in estimates(), r in risk(),
                                          k in kiro(), t in tasks()) {
        prop_assert_eq!(serde_round_trip(&s), s.clone());
        prop_assert_eq!(serde_round_trip(&e), e.clone());
        prop_assert_eq!(serde_round_trip(&r), r.clone());
        prop_assert_eq!(serde_round_trip(&k), k.clone());
        let est = EstimationAnalysis { estimates: e.clone(), tasks: t };
        prop_assert_eq!(serde_round_trip(&est), est.clone());
        let risks = RiskAnalysis { risks: vec![r.clone()] };
        prop_assert_eq!(serde_round_trip(&risks), risks.clone());
        for a in [Analysis::Scope(s.clone()), Analysis::Estimation(est.clone()),
                  Analysis::Risk(risks.clone()), Analysis::Kiro(k.clone())] {
            prop_assert_eq!(serde_round_trip(&a), a);
        }
        let all = Analyses { scope: Some(s), estimation: Some(est), risk: None, kiro: Some(k) };
        prop_assert_eq!(serde_round_trip(&all), all);
    }
}

/// What loading should say.
#[derive(Debug, PartialEq)]
enum Expect {
    Ok,
    TooLarge,
    Malformed,
    Unsupported(u32),
    Invalid(ProblemKind),
}

fn classify<T>(r: Result<T, LoadError>) -> Expect {
    match r {
        Ok(_) => Expect::Ok,
        Err(LoadError::TooLarge { .. }) => Expect::TooLarge,
        Err(LoadError::Malformed { .. }) => Expect::Malformed,
        Err(LoadError::UnsupportedSchema { found, .. }) => Expect::Unsupported(found),
        Err(LoadError::Invalid { problems, .. }) => Expect::Invalid(problems.0[0].kind),
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn check(json: &str, expected: Expect) {
    let got = classify(MilestonePlan::from_json(json));
    assert_eq!(
        got,
        expected,
        "{}",
        json.chars().take(120).collect::<String>()
    );
}

const GOOD: &str = r#"{"schema_version":1,"risks":[],"tasks":[{"id":"a","title":"A"},{"id":"b","title":"B","dependencies":["a"]}]}"#;

#[test]
fn plan_documents_good_and_bad() {
    use Expect::*;
    check(GOOD, Ok);
    check(r#"{"schema_version":1}"#, Ok);
    check("", Malformed);
    check("{", Malformed);
    check("[]", Malformed);
    check("null", Malformed);
    check(r#"{"tasks":[]}"#, Malformed);
    check(&GOOD[..GOOD.len() / 2], Malformed);
    check(&GOOD[..GOOD.len() - 1], Malformed);
    check(r#"{"schema_version":2}"#, Unsupported(2));
    // A newer document with sections this build does not know is unsupported, not malformed.
    check(
        r#"{"schema_version":3,"milestones":{"x":1},"tasks":"later"}"#,
        Unsupported(3),
    );
    check(r#"{"schema_version":0}"#, Unsupported(0));
    check(r#"{"schema_version":99999999999}"#, Unsupported(u32::MAX));
    check(r#"{"schema_version":"1"}"#, Malformed);
    check(r#"{"schema_version":1,"surprise":true}"#, Malformed);
    check(r#"{"schema_version":1,"scope":{"files":3}}"#, Malformed);
    check(
        r#"{"schema_version":1,"tasks":[{"id":"Bad Id","title":"x"}]}"#,
        Malformed,
    );
    check(
        r#"{"schema_version":1,"tasks":[{"id":"-rf","title":"x"}]}"#,
        Malformed,
    );
    check(
        r#"{"schema_version":1,"kiro":{"keep":[{"description":"x","phase":"../up"}]}}"#,
        Malformed,
    );
    check(
        r#"{"schema_version":1,"risks":[{"description":"x","probability":"huge","impact":"low","mitigation":"","contingency":""}]}"#,
        Malformed,
    );
    check(
        r#"{"schema_version":1,"estimates":{"phases":[{"phase":"design","effort_ms":-1}]}}"#,
        Malformed,
    );
    check(
        r#"{"schema_version":1,"tasks":[{"id":"a","title":"A"},{"id":"a","title":"again"}]}"#,
        Invalid(ProblemKind::DuplicateId),
    );
    check(
        r#"{"schema_version":1,"tasks":[{"id":"a","title":"A","dependencies":["b"]},{"id":"b","title":"B","dependencies":["a"]}]}"#,
        Invalid(ProblemKind::Cycle),
    );
    check(
        r#"{"schema_version":1,"tasks":[{"id":"a","title":"A","dependencies":["ghost"]}]}"#,
        Invalid(ProblemKind::UnknownDependency),
    );
    check(
        r#"{"schema_version":1,"tasks":[{"id":"a","title":"A","dependencies":["a"]}]}"#,
        Invalid(ProblemKind::SelfDependency),
    );
    check(
        r#"{"schema_version":1,"estimates":{"phases":[{"phase":"spec","effort_ms":1},{"phase":"spec","effort_ms":2}]}}"#,
        Invalid(ProblemKind::DuplicateId),
    );
    let oversized = format!(
        r#"{{"schema_version":1,"risks":[],"x":"{}"}}"#,
        " ".repeat(MAX_PLAN_JSON)
    );
    check(&oversized, TooLarge);
}

#[test]
fn malformed_plan_errors_say_where() {
    let err = MilestonePlan::from_json(
        "{\"schema_version\":1,\n\"tasks\":[{\"id\":\"a\",\"title\":\"A\",\"oops\":1}]}",
    )
    .unwrap_err();
    let LoadError::Malformed { line, reason, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*line, 2);
    assert!(reason.contains("oops"), "{reason}");
    let err = MilestonePlan::from_json(r#"{"schema_version":1,"tasks":[{"id":"a","title":"A"},{"id":"b","title":"B","dependencies":["a","z"]}]}"#)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("plan.tasks[1].dependencies[1]") && text.contains("\"z\""),
        "{text}"
    );
}

fn check_other(got: Expect, expected: Expect, what: &str) {
    assert_eq!(got, expected, "{what}");
}

#[test]
fn workflows_states_and_command_shapes_refuse_bad_json() {
    use Expect::*;
    let wf = serde_json::to_string(&Workflow::kiro()).unwrap();
    check_other(classify(Workflow::from_json(&wf)), Ok, "kiro workflow");
    check_other(
        classify(Workflow::from_json(&wf[..wf.len() - 3])),
        Malformed,
        "truncated workflow",
    );
    check_other(
        classify(Workflow::from_json(
            &wf.replace("\"weight\":15", "\"weight\":16"),
        )),
        Invalid(ProblemKind::WeightSum),
        "weights 101",
    );
    check_other(
        classify(Workflow::from_json(&wf.replacen('{', "{\"extra\":1,", 1))),
        Malformed,
        "unknown workflow field",
    );
    check_other(
        classify(Workflow::from_json(&" ".repeat(MAX_WORKFLOW_JSON + 1))),
        TooLarge,
        "oversized workflow",
    );

    let state = MilestoneState::new(
        milestone_core::MilestoneId::new("m").unwrap(),
        "t",
        "",
        Workflow::kiro(),
        milestone_core::Timestamp(1),
        0,
    );
    let sj = serde_json::to_string(&state).unwrap();
    check_other(classify(MilestoneState::from_json(&sj)), Ok, "state");
    check_other(
        classify(MilestoneState::from_json(&sj[..sj.len() / 3])),
        Malformed,
        "truncated state",
    );
    check_other(
        classify(MilestoneState::from_json(
            &sj.replace("\"schema_version\":1", "\"schema_version\":7"),
        )),
        Unsupported(7),
        "future state",
    );

    let cj = CommandState::from_state(&state).to_json();
    check_other(classify(CommandState::from_json(&cj)), Ok, "command");
    check_other(
        classify(CommandState::from_json(&cj[..cj.len() - 1])),
        Malformed,
        "truncated command",
    );
    check_other(
        classify(CommandState::from_json(&cj.replacen(
            '{',
            "{\"mode\":\"execution\",",
            1,
        ))),
        Malformed,
        "unknown command field",
    );
    check_other(
        classify(CommandState::from_json(
            &cj.replace("\"id\":\"m\"", "\"id\":\"../m\""),
        )),
        Malformed,
        "escaping id",
    );
    check_other(
        classify(CommandState::from_json(
            &cj.replace("\"status\":\"active\"", "\"status\":\"paused\""),
        )),
        Malformed,
        "unknown status",
    );
    check_other(
        classify(CommandState::from_json(
            &cj.replace("\"progress\":0.0", "\"progress\":100.5"),
        )),
        Invalid(ProblemKind::OutOfRange),
        "progress over 100",
    );
    check_other(
        classify(CommandState::from_json(
            &cj.replace("\"design\":0.0", "\"design\":-1.0"),
        )),
        Invalid(ProblemKind::OutOfRange),
        "negative phase progress",
    );
    check_other(
        classify(CommandState::from_json(&" ".repeat(MAX_COMMAND_JSON + 1))),
        TooLarge,
        "oversized command",
    );
}
