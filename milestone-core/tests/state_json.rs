//! JSON: every public serializable type of units, ids, state, events, workflow and KIRO
//! round-trips (proptest), and `MilestoneState::from_json` turns malformed, truncated,
//! bit-flipped, oversized, future-version and inconsistent input into a typed error that says
//! what and where — never a panic, never a half-built state.

use std::fmt::Debug;

use milestone_core::error::{LoadError, Problem, ProblemKind, Problems};
use milestone_core::state::{
    CheckpointMark, GitInfo, Intervention, MAX_STATE_JSON, PhaseCommit, PhaseState, TaskState,
};
use milestone_core::{
    Artifact, ArtifactBody, CachePolicy, Decision, Event, FailureKind, ItemError, ItemOutput,
    ItemRef, ItemState, ItemStatus, KiroCategory, KiroItem, KiroStrategy, Limits, MilestoneId,
    MilestonePlan, MilestoneState, MilestoneStatus, Mode, PhaseId, PhaseSpec, Priority, Progress,
    TaskId, TaskSpec, Timestamp, Weight, Workflow,
};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Round trips

/// Through a string and through a `Value`; the re-serialized text is identical.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) {
    let text = serde_json::to_string(v).unwrap();
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(&back, v, "{text}");
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    let value = serde_json::to_value(v).unwrap();
    let back: T = serde_json::from_value(value).unwrap();
    assert_eq!(&back, v);
    let pretty = serde_json::to_string_pretty(v).unwrap();
    let back: T = serde_json::from_str(&pretty).unwrap();
    assert_eq!(&back, v);
}

fn text() -> impl Strategy<Value = String> {
    prop::string::string_regex("(?s).{0,12}").unwrap()
}
fn id_text() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z0-9]([a-z0-9_-]|\\.[a-z0-9]){0,10}").unwrap()
}
fn phase_id() -> impl Strategy<Value = PhaseId> {
    id_text().prop_map(|s| PhaseId::new(s).unwrap())
}
fn task_id() -> impl Strategy<Value = TaskId> {
    id_text().prop_map(|s| TaskId::new(s).unwrap())
}
fn ts() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}
fn progress() -> impl Strategy<Value = Progress> {
    (0u32..=10_000).prop_map(Progress::from_basis_points)
}
fn priority() -> impl Strategy<Value = Priority> {
    prop::sample::select(vec![
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Critical,
    ])
}
fn item_status() -> impl Strategy<Value = ItemStatus> {
    prop::sample::select(ItemStatus::ALL.to_vec())
}
fn milestone_status() -> impl Strategy<Value = MilestoneStatus> {
    prop::sample::select(MilestoneStatus::ALL.to_vec())
}
fn decision() -> impl Strategy<Value = Decision> {
    prop::sample::select(vec![
        Decision::Retry,
        Decision::Skip,
        Decision::Rollback,
        Decision::Abort,
    ])
}
fn failure_kind() -> impl Strategy<Value = FailureKind> {
    prop::sample::select(vec![
        FailureKind::Transient,
        FailureKind::Permanent,
        FailureKind::Timeout,
        FailureKind::Unavailable,
        FailureKind::Gate,
        FailureKind::Interrupted,
    ])
}
/// JSON values without floats (serde_json's default float parsing is not bit-exact).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
fn item_ref() -> impl Strategy<Value = ItemRef> {
    prop_oneof![
        phase_id().prop_map(ItemRef::Phase),
        task_id().prop_map(ItemRef::Task)
    ]
}
fn artifact() -> impl Strategy<Value = Artifact> {
    (
        text(),
        text(),
        prop_oneof![
            text().prop_map(ArtifactBody::Inline),
            text().prop_map(ArtifactBody::Path)
        ],
    )
        .prop_map(|(name, kind, body)| Artifact { name, kind, body })
}
fn output() -> impl Strategy<Value = ItemOutput> {
    (
        text(),
        prop::collection::vec(artifact(), 0..3),
        prop::collection::vec(text(), 0..3),
        value(),
    )
        .prop_map(|(summary, artifacts, decisions, data)| ItemOutput {
            summary,
            artifacts,
            decisions,
            data,
        })
}
fn item_error() -> impl Strategy<Value = ItemError> {
    (failure_kind(), text()).prop_map(|(kind, message)| ItemError { kind, message })
}
fn item_state() -> impl Strategy<Value = ItemState> {
    (
        item_status(),
        proptest::option::of(ts()),
        proptest::option::of(ts()),
        any::<u32>(),
        progress(),
        proptest::option::of(value()),
        proptest::option::of(output()),
        proptest::option::of(item_error()),
    )
        .prop_map(
            |(
                status,
                started_at,
                completed_at,
                attempts,
                progress,
                partial,
                output,
                last_error,
            )| {
                ItemState {
                    status,
                    started_at,
                    completed_at,
                    attempts,
                    progress,
                    partial,
                    output: output.map(Into::into),
                    last_error,
                }
            },
        )
}
fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        task_id(),
        text(),
        prop::collection::vec(task_id(), 0..3),
        proptest::option::of(any::<u64>()),
        priority(),
    )
        .prop_map(
            |(id, title, dependencies, estimate_ms, priority)| TaskSpec {
                id,
                title,
                dependencies,
                estimate_ms,
                priority,
            },
        )
}
fn limits() -> impl Strategy<Value = Limits> {
    (
        1u64..,
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(timeout_ms, memory_mib, cpu_millicores)| Limits {
            timeout_ms,
            memory_mib,
            cpu_millicores,
        })
}
fn cache() -> impl Strategy<Value = CachePolicy> {
    prop::sample::select(vec![CachePolicy::Reusable, CachePolicy::NotReusable])
}
/// A valid workflow of 1–5 phases `p0..`, weights summing to 100, dependencies on earlier phases.
fn workflow() -> impl Strategy<Value = Workflow> {
    (1usize..=5)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(0u8..=100, n - 1),
                prop::collection::vec(
                    (
                        text(),
                        priority(),
                        text(),
                        prop::collection::vec(text(), 0..3),
                        any::<u8>(),
                        limits(),
                        cache(),
                        any::<bool>(),
                    ),
                    n,
                ),
                1u32..10,
            )
        })
        .prop_map(|(mut cuts, specs, parallel)| {
            cuts.sort_unstable();
            let mut bounds = vec![0u8];
            bounds.extend(cuts);
            bounds.push(100);
            let phases = specs
                .into_iter()
                .enumerate()
                .map(
                    |(
                        i,
                        (title, priority, focus, expected_outputs, deps, limits, cache, optional),
                    )| {
                        let weight = Weight::new(bounds[i + 1] - bounds[i]).unwrap();
                        PhaseSpec {
                            priority,
                            focus,
                            expected_outputs,
                            dependencies: (0..i)
                                .filter(|j| deps & (1 << j) != 0)
                                .map(|j| PhaseId::new(format!("p{j}")).unwrap())
                                .collect(),
                            limits,
                            cache,
                            optional,
                            ..PhaseSpec::new(PhaseId::new(format!("p{i}")).unwrap(), title, weight)
                        }
                    },
                )
                .collect();
            Workflow::new(phases, parallel).unwrap()
        })
}
fn kiro() -> impl Strategy<Value = KiroStrategy> {
    let items = || {
        prop::collection::vec(
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

/// Items named so that the random events below often hit a phase or task that exists.
fn pool_item() -> impl Strategy<Value = ItemRef> {
    prop_oneof![
        (0u8..5).prop_map(|i| ItemRef::Phase(PhaseId::new(format!("p{i}")).unwrap())),
        (0u8..5).prop_map(|i| ItemRef::Task(TaskId::new(format!("t{i}")).unwrap())),
    ]
}

/// Any event but `created` and `rolled-back` (which need a whole milestone).
fn simple_event() -> impl Strategy<Value = Event> {
    let at = || (0u64..1_000_000).prop_map(Timestamp);
    prop_oneof![
        at().prop_map(|at| Event::PlanRecorded {
            at,
            plan: Box::new(MilestonePlan {
                kiro: Some(KiroStrategy::default()),
                ..MilestonePlan::default()
            })
        }),
        at().prop_map(|at| Event::ExecutionStarted { at }),
        (at(), text(), text()).prop_map(|(at, strategy, reason)| Event::StrategyChosen {
            at,
            strategy,
            reason
        }),
        (at(), prop::collection::vec(task_spec(), 0..3))
            .prop_map(|(at, tasks)| Event::TasksAdded { at, tasks }),
        (at(), (0u8..5), prop::collection::vec(0u8..5, 0..3)).prop_map(|(at, i, deps)| {
            let mut spec = TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "t");
            spec.dependencies = deps
                .into_iter()
                .map(|d| TaskId::new(format!("t{d}")).unwrap())
                .collect();
            Event::TasksAdded {
                at,
                tasks: vec![spec],
            }
        }),
        (at(), pool_item(), 0u32..4).prop_map(|(at, item, attempt)| Event::ItemStarted {
            at,
            item,
            attempt
        }),
        (at(), pool_item(), progress()).prop_map(|(at, item, progress)| Event::ItemProgressed {
            at,
            item,
            progress
        }),
        (at(), pool_item(), value()).prop_map(|(at, item, partial)| Event::ItemHandedOff {
            at,
            item,
            partial
        }),
        (at(), pool_item(), output()).prop_map(|(at, item, output)| Event::ItemCompleted {
            at,
            item,
            output: output.into()
        }),
        (at(), pool_item(), item_error()).prop_map(|(at, item, error)| Event::ItemFailed {
            at,
            item,
            error
        }),
        (at(), pool_item(), text()).prop_map(|(at, item, reason)| Event::ItemBlocked {
            at,
            item,
            reason
        }),
        (at(), pool_item(), text()).prop_map(|(at, item, reason)| Event::ItemSkipped {
            at,
            item,
            reason
        }),
        (at(), pool_item()).prop_map(|(at, item)| Event::ItemCancelled { at, item }),
        (at(), pool_item(), 0u32..4, ts()).prop_map(|(at, item, attempt, not_before)| {
            Event::RetryScheduled {
                at,
                item,
                attempt,
                not_before,
            }
        }),
        (at(), milestone_status(), proptest::option::of(text()))
            .prop_map(|(at, status, reason)| Event::StatusChanged { at, status, reason }),
        (
            at(),
            proptest::option::of(pool_item()),
            text(),
            prop::collection::vec(decision(), 0..4)
        )
            .prop_map(|(at, item, reason, options)| Event::InterventionRequested {
                at,
                item,
                reason,
                options
            }),
        (at(), decision()).prop_map(|(at, decision)| Event::InterventionAnswered { at, decision }),
        (at(), text()).prop_map(|(at, label)| Event::CheckpointRecorded { at, label }),
        (at(), text(), text()).prop_map(|(at, branch, base)| Event::BranchCreated {
            at,
            branch,
            base
        }),
        (at(), (0u8..5), text()).prop_map(|(at, i, commit)| Event::PhaseCommitted {
            at,
            phase: PhaseId::new(format!("p{i}")).unwrap(),
            commit
        }),
        (at(), text()).prop_map(|(at, tag)| Event::Tagged { at, tag }),
        (at(), text()).prop_map(|(at, commit)| Event::Merged { at, commit }),
    ]
}

/// A valid state: a random workflow and a random event list, keeping the events that fit.
fn state() -> impl Strategy<Value = MilestoneState> {
    (
        id_text(),
        text(),
        text(),
        workflow(),
        ts(),
        any::<u64>(),
        prop::collection::vec(simple_event(), 0..40),
    )
        .prop_map(|(id, title, context, workflow, at, seed, events)| {
            let mut s = MilestoneState::new(
                MilestoneId::new(id).unwrap(),
                title,
                context,
                workflow,
                at,
                seed,
            );
            for e in &events {
                let _ = s.apply(e);
            }
            s
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => simple_event(),
        1 => (id_text(), text(), text(), workflow(), ts(), any::<u64>()).prop_map(
            |(id, title, context, workflow, at, seed)| Event::Created {
                at,
                id: MilestoneId::new(id).unwrap(),
                title,
                context,
                workflow,
                seed,
            }
        ),
        1 => (ts(), text(), state()).prop_map(|(at, label, s)| Event::RolledBack {
            at,
            label,
            state: Box::new(s),
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn units_and_ids_round_trip(t in ts(), p in progress(), w in 0u8..=100, pr in priority(),
                                m in id_text(), ph in phase_id(), tk in task_id()) {
        round_trip(&t);
        round_trip(&p);
        round_trip(&Weight::new(w).unwrap());
        round_trip(&pr);
        round_trip(&MilestoneId::new(m).unwrap());
        round_trip(&ph);
        round_trip(&tk);
    }

    #[test]
    fn state_parts_round_trip(st in item_state(), r in item_ref(), o in output(), e in item_error(),
                              spec in task_spec(), ph in phase_id(), d in decision(),
                              ms in milestone_status(), is in item_status(), label in text(),
                              at in ts(), git in (proptest::option::of(text()), proptest::option::of(text()),
                              prop::collection::vec((phase_id(), text()), 0..3), proptest::option::of(text()),
                              proptest::option::of(text())),
                              opts in prop::collection::vec(decision(), 0..4)) {
        round_trip(&st);
        round_trip(&r);
        round_trip(&o);
        round_trip(&e);
        round_trip(&e.kind);
        round_trip(&spec);
        round_trip(&d);
        round_trip(&ms);
        round_trip(&is);
        round_trip(&Mode::Planning);
        round_trip(&Mode::Execution);
        round_trip(&PhaseState { id: ph.clone(), item: st.clone() });
        round_trip(&TaskState { spec: spec.clone(), item: st.clone() });
        round_trip(&CheckpointMark { label: label.clone(), at });
        round_trip(&Intervention { item: Some(r.clone()), reason: label.clone(), options: opts, requested_at: at });
        let (branch, base, commits, tag, merge_commit) = git;
        round_trip(&GitInfo {
            branch,
            base,
            commits: commits.into_iter().map(|(phase, commit)| PhaseCommit { phase, commit }).collect(),
            tag,
            merge_commit,
        });
        for a in &o.artifacts {
            round_trip(a);
            round_trip(&a.body);
        }
    }

    #[test]
    fn workflows_and_kiro_round_trip(w in workflow(), k in kiro(), c in cache(), l in limits()) {
        round_trip(&w);
        for p in w.phases() {
            round_trip(p);
        }
        round_trip(&k);
        for (cat, item) in k.all() {
            round_trip(&cat);
            round_trip(item);
        }
        round_trip(&c);
        round_trip(&l);
        let json = serde_json::to_string(&w).unwrap();
        prop_assert_eq!(Workflow::from_json(&json).unwrap(), w);
    }

    #[test]
    fn events_round_trip(e in event()) {
        round_trip(&e);
    }

    #[test]
    fn states_round_trip_and_reload(s in state()) {
        round_trip(&s);
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(MilestoneState::from_json(&json).unwrap(), s.clone());
        let pretty = serde_json::to_string_pretty(&s).unwrap();
        prop_assert_eq!(MilestoneState::from_json(&pretty).unwrap(), s);
    }

    #[test]
    fn problems_round_trip(loc in text(), msg in text(), k in prop::sample::select(vec![
        ProblemKind::InvalidId, ProblemKind::DuplicateId, ProblemKind::UnknownDependency,
        ProblemKind::SelfDependency, ProblemKind::Cycle, ProblemKind::WeightSum,
        ProblemKind::OutOfRange, ProblemKind::Missing, ProblemKind::UnknownPhase,
        ProblemKind::Inconsistent])) {
        let p = Problem::new(loc, k, msg);
        round_trip(&p);
        round_trip(&Problems(vec![p.clone(), p]));
    }
}

#[test]
fn kiro_categories_round_trip() {
    for c in KiroCategory::ALL {
        round_trip(&c);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{}\"", c.name())
        );
    }
    round_trip(&Workflow::kiro());
}

// ---------------------------------------------------------------------------------------------
// Corruption

/// A small valid state: tasks, a completed and a running phase, git and a checkpoint.
fn small_state() -> MilestoneState {
    let t = |s: &str| TaskId::new(s).unwrap();
    let design = ItemRef::Phase(PhaseId::new("design").unwrap());
    let spec = ItemRef::Phase(PhaseId::new("spec").unwrap());
    let mut b = TaskSpec::new(t("b"), "B");
    b.dependencies.push(t("a"));
    let events = [
        Event::Created {
            at: Timestamp(1),
            id: MilestoneId::new("login").unwrap(),
            title: "Add login".into(),
            context: "web app".into(),
            workflow: Workflow::kiro(),
            seed: 3,
        },
        Event::ExecutionStarted { at: Timestamp(2) },
        Event::TasksAdded {
            at: Timestamp(3),
            tasks: vec![TaskSpec::new(t("a"), "A"), b],
        },
        Event::ItemStarted {
            at: Timestamp(4),
            item: design.clone(),
            attempt: 1,
        },
        Event::ItemCompleted {
            at: Timestamp(5),
            item: design,
            output: ItemOutput {
                summary: "ok".into(),
                ..ItemOutput::default()
            }
            .into(),
        },
        Event::ItemStarted {
            at: Timestamp(6),
            item: spec.clone(),
            attempt: 1,
        },
        Event::ItemProgressed {
            at: Timestamp(7),
            item: spec,
            progress: Progress::from_basis_points(4_200),
        },
        Event::BranchCreated {
            at: Timestamp(8),
            branch: "feature/milestone-login".into(),
            base: "main".into(),
        },
        Event::CheckpointRecorded {
            at: Timestamp(9),
            label: "design".into(),
        },
    ];
    MilestoneState::from_events(&events).unwrap()
}

fn small_json() -> String {
    serde_json::to_string(&small_state()).unwrap()
}

/// `small_json` edited by `f`.
fn edited(f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(&small_json()).unwrap();
    f(&mut v);
    serde_json::to_string(&v).unwrap()
}

/// The outcome of `from_json` as text: `ok`, `too-large: …`, `malformed: …`,
/// `unsupported: …` or `invalid: …` (with every problem's location and message).
fn outcome(json: &str) -> String {
    match MilestoneState::from_json(json) {
        Ok(_) => "ok".into(),
        Err(LoadError::TooLarge { size, limit, .. }) => format!("too-large: {size} > {limit}"),
        Err(LoadError::Malformed {
            line,
            column,
            reason,
            ..
        }) => format!("malformed: {line}:{column}: {reason}"),
        Err(LoadError::UnsupportedSchema {
            found, supported, ..
        }) => format!("unsupported: {found} > {supported}"),
        Err(LoadError::Invalid { problems, .. }) => format!(
            "invalid: {}",
            problems
                .iter()
                .map(|p| format!("{} ({:?}): {}", p.location, p.kind, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Err(other) => format!("other: {other}"),
    }
}

/// `from_json(json)` gives an outcome starting with `expected`'s class and containing the rest.
fn check(json: &str, expected: &str) {
    let got = outcome(json);
    let (class, detail) = expected.split_once(": ").unwrap_or((expected, ""));
    assert!(
        got.starts_with(class) && got.contains(detail),
        "expected {expected:?}, got {got:?}"
    );
}

#[rustfmt::skip]
#[test]
fn corrupt_and_inconsistent_states_are_typed_errors() {
    check(&small_json(), "ok");
    // Not a state at all.
    check("", "malformed: 1:0: EOF while parsing");
    check("null", "malformed: invalid type: null, expected struct Probe");
    check("[]", "malformed: invalid length 0, expected struct Probe with 1 element");
    check("[1]", "malformed: invalid length 1, expected struct StateData");
    check("[1, 2]", "malformed: trailing");
    check("42", "malformed: invalid type: integer");
    check("\"state\"", "malformed: invalid type: string");
    check("{}", "malformed: missing field `schema_version`");
    check("{\"schema_version\": 1}", "malformed: missing field `id`");
    check("{\"schema_version\": 1", "malformed: EOF while parsing");
    check(&format!("{}x", small_json()), "malformed: trailing characters");
    check(&format!("{} {{}}", small_json()), "malformed: trailing characters");
    check(&format!("{}{}{}", "[".repeat(10_000), 1, "]".repeat(10_000)), "malformed: 1:1: invalid type: sequence, expected u64");
    check(&small_json().replacen("\"data\":null", &format!("\"data\":{}{}", "[".repeat(10_000), "]".repeat(10_000)), 1), "malformed: recursion limit exceeded");
    // Versions.
    check(&edited(|v| v["schema_version"] = json!(2)), "unsupported: 2 > 1");
    check(&edited(|v| v["schema_version"] = json!(0)), "unsupported: 0 > 1");
    check(&edited(|v| v["schema_version"] = json!(u64::MAX)), "unsupported: 4294967295 > 1");
    check(&edited(|v| v["schema_version"] = json!(-1)), "malformed: invalid value: integer `-1`");
    check(&edited(|v| v["schema_version"] = json!("1")), "malformed: invalid type: string \"1\"");
    check(r#"{"schema_version": 7, "from": "the future", "shape": ["unknown"]}"#, "unsupported: 7 > 1");
    // Unknown fields, anywhere.
    check(&edited(|v| v["surprise"] = json!(1)), "malformed: unknown field `surprise`");
    check(&edited(|v| v["phases"][0]["surprise"] = json!(1)), "malformed: unknown field `surprise`");
    check(&edited(|v| v["tasks"][0]["surprise"] = json!(1)), "malformed: unknown field `surprise`");
    check(&edited(|v| v["git"]["surprise"] = json!(1)), "malformed: unknown field `surprise`");
    check(&edited(|v| v["workflow"]["phases"][0]["surprise"] = json!(1)), "malformed: unknown field `surprise`");
    // Values of the wrong shape or out of range.
    check(&edited(|v| v["status"] = json!("running")), "malformed: unknown variant `running`");
    check(&edited(|v| v["phases"][1]["progress"] = json!(10_001)), "malformed: progress 10001 is over 10000 basis points");
    check(&edited(|v| v["phases"][1]["attempts"] = json!(-3)), "malformed: invalid value: integer `-3`");
    check(&edited(|v| v["id"] = json!("../etc")), "malformed: ");
    check(&edited(|v| v["id"] = json!("-rf")), "malformed: ");
    check(&edited(|v| v["tasks"][0]["spec"]["id"] = json!("A B")), "malformed: ");
    check(&edited(|v| v["created_at"] = json!(1.5)), "malformed: invalid type: floating point");
    check(&edited(|v| v["workflow"]["phases"][0]["weight"] = json!(5)), "malformed: weights sum to 90, not 100");
    check(&edited(|v| v["workflow"]["phases"][0]["weight"] = json!(101)), "malformed: weight 101 is over 100 percent");
    check(&edited(|v| v["workflow"]["phases"][1]["dependencies"] = json!(["execute"])), "malformed: dependency cycle");
    check(&edited(|v| { v.as_object_mut().unwrap().remove("workflow"); }), "malformed: missing field `workflow`");
    // Inconsistent states: every problem, with where it is.
    check(&edited(|v| { v["phases"].as_array_mut().unwrap().pop(); }), "invalid: phases (Inconsistent): the phase list does not match the workflow's phases in order");
    check(&edited(|v| v["phases"].as_array_mut().unwrap().swap(0, 1)), "invalid: phases (Inconsistent)");
    check(&edited(|v| v["tasks"][1]["spec"]["id"] = json!("a")), "invalid: tasks[1].id (DuplicateId): task id \"a\" appears twice");
    check(&edited(|v| v["tasks"][1]["spec"]["dependencies"] = json!(["zz"])), "invalid: tasks[1].dependencies[0] (UnknownDependency): task \"b\" depends on unknown task \"zz\"");
    check(&edited(|v| v["tasks"].as_array_mut().unwrap().swap(0, 1)), "invalid: tasks[0].dependencies[0] (Inconsistent): task \"b\" depends on \"a\", which is not listed before it");
    check(&edited(|v| v["phases"][1]["progress"] = json!(10_000)), "invalid: phase spec (Inconsistent): progress 100.00 % does not match status in-progress");
    check(&edited(|v| v["phases"][0]["progress"] = json!(5_000)), "invalid: phase design (Inconsistent): progress 50.00 % does not match status completed");
    check(&edited(|v| v["tasks"][0]["progress"] = json!(10_000)), "invalid: task a (Inconsistent): progress 100.00 % does not match status pending");
    check(&edited(|v| v["status"] = json!("completed")), "invalid: status (Inconsistent): the milestone is completed but a phase is neither completed nor skipped");
    check(&edited(|v| v["status"] = json!("awaiting-intervention")), "invalid: intervention (Inconsistent): the milestone awaits an intervention but none is open");
    check(&edited(|v| v["intervention"] = json!({"reason": "r", "options": ["retry"], "requested_at": 1})), "invalid: intervention (Inconsistent): an intervention is open but the milestone does not await one");
    check(&edited(|v| { v["phases"].as_array_mut().unwrap().pop(); v["tasks"][1]["spec"]["id"] = json!("a"); }), "invalid: phases (Inconsistent): the phase list does not match the workflow's phases in order; tasks[1].id (DuplicateId)");
}

#[test]
fn a_completed_milestone_needs_every_phase_completed_or_skipped() {
    let all_done = edited(|v| {
        for p in v["phases"].as_array_mut().unwrap() {
            p["status"] = json!("completed");
            p["progress"] = json!(10_000);
        }
        v["status"] = json!("completed");
    });
    check(&all_done, "ok");
    let mut v: Value = serde_json::from_str(&all_done).unwrap();
    // A degraded run that skipped a phase still completes.
    v["phases"][3]["status"] = json!("skipped");
    v["phases"][3]["progress"] = json!(0);
    check(&v.to_string(), "ok");
    v["phases"][3]["status"] = json!("failed");
    check(
        &v.to_string(),
        "invalid: status (Inconsistent): the milestone is completed but a phase is neither completed nor skipped",
    );
}

#[test]
fn every_truncation_is_a_typed_error() {
    let json = small_json();
    assert!(json.len() > 500, "{}", json.len());
    for cut in (0..json.len()).filter(|&i| json.is_char_boundary(i)) {
        let got = outcome(&json[..cut]);
        assert!(got.starts_with("malformed: "), "cut at {cut}: {got}");
    }
    let pretty = serde_json::to_string_pretty(&small_state()).unwrap();
    for cut in (0..pretty.len()).step_by(7) {
        assert!(
            MilestoneState::from_json(&pretty[..cut]).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn bit_flips_never_panic_and_never_load_an_invalid_state() {
    let json = small_json();
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..json.len() {
        for bit in 0..8 {
            let mut bytes = json.clone().into_bytes();
            bytes[i] ^= 1 << bit;
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            match MilestoneState::from_json(&text) {
                Err(_) => refused += 1,
                Ok(s) => {
                    // Whatever loads is a consistent state: it reloads from its own JSON.
                    accepted += 1;
                    let again = serde_json::to_string(&s).unwrap();
                    assert_eq!(MilestoneState::from_json(&again).unwrap(), s);
                }
            }
        }
    }
    assert!(refused > accepted, "refused {refused}, accepted {accepted}");
    assert!(
        accepted > 0,
        "some flips (in titles, times) still give valid states"
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    // 300 MB built in memory: refused on its size alone.
    let mut huge = String::with_capacity(300 << 20);
    huge.push_str("{\"schema_version\":1,\"title\":\"");
    huge.extend(std::iter::repeat_n('x', (300 << 20) - huge.len() - 2));
    huge.push_str("\"}");
    assert_eq!(huge.len(), 300 << 20);
    match MilestoneState::from_json(&huge) {
        Err(LoadError::TooLarge { size, limit, what }) => {
            assert_eq!(
                (size, limit, what),
                (300 << 20, MAX_STATE_JSON, "milestone state")
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // One byte over the limit is too large; at the limit it is parsed (and is malformed here).
    assert!(matches!(
        MilestoneState::from_json(&huge[..MAX_STATE_JSON + 1]),
        Err(LoadError::TooLarge { .. })
    ));
    assert!(matches!(
        MilestoneState::from_json(&huge[..MAX_STATE_JSON]),
        Err(LoadError::Malformed { .. })
    ));
}

#[test]
fn errors_say_what_and_where() {
    let e = MilestoneState::from_json(&edited(|v| v["tasks"][1]["spec"]["id"] = json!("a")))
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("milestone state is invalid: 2 problems"),
        "{text}"
    );
    assert!(
        text.contains("\n  - tasks[1].id: task id \"a\" appears twice"),
        "{text}"
    );
    assert!(
        text.contains("\n  - tasks[1].dependencies[0]: task \"a\" depends on \"a\""),
        "{text}"
    );
    let e = MilestoneState::from_json("{\"schema_version\": 1,\n \"surprise\": true}").unwrap_err();
    match e {
        LoadError::Malformed { line, column, .. } => assert_eq!((line, column), (2, 11)),
        other => panic!("{other:?}"),
    }
    let e = MilestoneState::from_json(&edited(|v| v["schema_version"] = json!(9))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "milestone state has schema version 9; this library reads up to 1"
    );
}

// ---------------------------------------------------------------------------------------------
// Flat phases and tasks: the hand-written reader keeps the derive's rules

/// Reads `json` as a `T`: `ok: ` and its JSON written back, or `err: ` and the message.
fn read_flat<T: Serialize + DeserializeOwned>(json: &str) -> String {
    match serde_json::from_str::<T>(json) {
        Ok(v) => format!("ok: {}", serde_json::to_string(&v).unwrap()),
        Err(e) => format!("err: {e}"),
    }
}

/// A task's outcome contains `expected` (its class `ok`/`err` first).
fn check_task(json: &str, expected: &str) {
    let got = read_flat::<TaskState>(json);
    assert!(
        got.starts_with(&expected[..3]) && got.contains(&expected[5..]),
        "{json}: expected {expected:?}, got {got:?}"
    );
}

/// A phase's outcome contains `expected` (its class `ok`/`err` first).
fn check_phase(json: &str, expected: &str) {
    let got = read_flat::<PhaseState>(json);
    assert!(
        got.starts_with(&expected[..3]) && got.contains(&expected[5..]),
        "{json}: expected {expected:?}, got {got:?}"
    );
}

#[rustfmt::skip]
#[test]
fn flat_tasks_and_phases_read_as_the_derive_did() {
    const SPEC: &str = r#""spec":{"id":"a","title":"A"}"#;
    // Absent optional keys take their defaults; `null` optionals are absent.
    check_task(&format!(r#"{{{SPEC},"status":"pending"}}"#), r#"ok: {"spec":{"id":"a","title":"A","dependencies":[],"priority":"medium"},"status":"pending","attempts":0,"progress":0}"#);
    check_task(&format!(r#"{{"status":"pending",{SPEC}}}"#), r#"ok: "status":"pending","attempts":0"#);
    check_task(&format!(r#"{{{SPEC},"status":"pending","started_at":null,"completed_at":null,"output":null,"last_error":null}}"#), r#"ok: "status":"pending","attempts":0,"progress":0}"#);
    check_phase(r#"{"id":"design","status":"pending"}"#, r#"ok: {"id":"design","status":"pending","attempts":0,"progress":0}"#);
    check_phase(r#"{"status":"in-progress","progress":4200,"attempts":2,"started_at":5,"id":"spec"}"#, r#"ok: {"id":"spec","status":"in-progress","started_at":5,"attempts":2,"progress":4200}"#);
    // A present `partial`, even `null`, is kept.
    check_phase(r#"{"id":"design","status":"in-progress","partial":null}"#, r#"ok: "partial":null"#);
    check_task(&format!(r#"{{{SPEC},"status":"in-progress","partial":{{"k":[1]}}}}"#), r#"ok: "partial":{"k":[1]}"#);
    // Unknown keys are refused, naming them (the owner's key of the other kind too).
    check_task(&format!(r#"{{{SPEC},"status":"pending","surprise":1}}"#), "err: unknown field `surprise`, expected one of `spec`, `status`");
    check_task(&format!(r#"{{{SPEC},"id":"a","status":"pending"}}"#), "err: unknown field `id`");
    check_phase(r#"{"id":"design","status":"pending","spec":{}}"#, "err: unknown field `spec`, expected one of `id`, `status`");
    check_phase(r#"{"id":"design","Status":"pending"}"#, "err: unknown field `Status`");
    // Duplicate keys are refused, naming them.
    check_task(&format!(r#"{{{SPEC},"status":"pending","status":"pending"}}"#), "err: duplicate field `status`");
    check_task(&format!(r#"{{{SPEC},{SPEC},"status":"pending"}}"#), "err: duplicate field `spec`");
    check_phase(r#"{"id":"design","id":"spec","status":"pending"}"#, "err: duplicate field `id`");
    check_phase(r#"{"id":"design","status":"pending","partial":null,"partial":null}"#, "err: duplicate field `partial`");
    check_phase(r#"{"id":"design","status":"pending","started_at":null,"started_at":1}"#, "err: duplicate field `started_at`");
    check_phase(r#"{"id":"design","status":"pending","attempts":1,"attempts":1}"#, "err: duplicate field `attempts`");
    // Missing required keys are refused, naming them.
    check_task(r#"{"status":"pending"}"#, "err: missing field `spec`");
    check_task(&format!(r#"{{{SPEC}}}"#), "err: missing field `status`");
    check_task("{}", "err: missing field `spec`");
    check_phase(r#"{"status":"pending"}"#, "err: missing field `id`");
    check_phase(r#"{"id":"design","progress":0}"#, "err: missing field `status`");
    // Values of the wrong shape, and not a map at all.
    check_phase(r#"{"id":"design","status":"running"}"#, "err: unknown variant `running`");
    check_phase(r#"{"id":"design","status":"pending","attempts":-1}"#, "err: invalid value: integer `-1`");
    check_phase(r#"{"id":"design","status":"pending","progress":10001}"#, "err: progress 10001 is over 10000 basis points");
    check_phase(r#"{"id":"bad id","status":"pending"}"#, "err: ");
    check_phase(r#"{"id":"design","status":"pending","last_error":{"kind":"transient"}}"#, "err: missing field `message`");
    check_phase("[]", "err: invalid type: sequence, expected struct PhaseState");
    check_task("null", "err: invalid type: null, expected struct TaskState");
    check_task(r#"{"spec":{"id":"a","title":"A"},"status":"pending""#, "err: EOF while parsing");
    check_task(r#"{1:2}"#, "err: key must be a string");
}

#[test]
fn flat_items_with_every_field_round_trip() {
    let item = ItemState {
        status: ItemStatus::Failed,
        started_at: Some(Timestamp(3)),
        completed_at: Some(Timestamp(9)),
        attempts: 4,
        progress: Progress::from_basis_points(1_234),
        partial: Some(json!({"draft": ["x", 1, null]})),
        output: Some(
            ItemOutput {
                summary: "s".into(),
                artifacts: vec![Artifact {
                    name: "n".into(),
                    kind: "document".into(),
                    body: ArtifactBody::Inline("text".into()),
                }],
                decisions: vec!["d".into()],
                data: json!({"k": 1}),
            }
            .into(),
        ),
        last_error: Some(ItemError {
            kind: FailureKind::Transient,
            message: "m".into(),
        }),
    };
    let mut spec = TaskSpec::new(TaskId::new("b").unwrap(), "B");
    spec.dependencies.push(TaskId::new("a").unwrap());
    spec.estimate_ms = Some(60_000);
    spec.priority = Priority::High;
    let task = TaskState {
        spec,
        item: item.clone(),
    };
    round_trip(&task);
    let phase = PhaseState {
        id: PhaseId::new("execute").unwrap(),
        item: ItemState {
            partial: Some(Value::Null),
            ..item
        },
    };
    round_trip(&phase);
    assert!(
        serde_json::to_string(&phase)
            .unwrap()
            .contains("\"partial\":null")
    );
    // Every key is read back, none dropped: the written JSON has each one.
    let text = serde_json::to_string(&task).unwrap();
    for key in [
        "spec",
        "status",
        "started_at",
        "completed_at",
        "attempts",
        "progress",
        "partial",
        "output",
        "last_error",
    ] {
        assert!(text.contains(&format!("\"{key}\":")), "{key}: {text}");
    }
}

#[test]
fn a_duplicate_key_in_a_stored_task_is_malformed() {
    let json = small_json();
    check(
        &json.replacen("\"spec\":{", "\"status\":\"pending\",\"spec\":{", 1),
        "malformed: duplicate field `status`",
    );
    check(
        &json.replacen("\"spec\":{", "\"surprise\":0,\"spec\":{", 1),
        "malformed: unknown field `surprise`",
    );
}
