//! Plan validation for the planning → execution transition, and the transition itself.

use milestone_core::plan::{
    Estimates, Level, MilestonePlan, PhaseEstimate, Risk, ScopeAnalysis, initial_execution_state,
    start_execution, validate_plan,
};
use milestone_core::{
    Event, KiroItem, KiroStrategy, MilestoneId, MilestoneState, MilestoneStatus, Mode, PhaseId,
    ProblemKind, TaskId, TaskSpec, Timestamp, Workflow,
};
use proptest::prelude::*;

fn pid(s: &str) -> PhaseId {
    PhaseId::new(s).unwrap()
}

fn task(id: &str, deps: &[&str]) -> TaskSpec {
    let mut t = TaskSpec::new(TaskId::new(id).unwrap(), format!("task {id}"));
    t.dependencies = deps.iter().map(|d| TaskId::new(d).unwrap()).collect();
    t
}

/// A valid plan for the KIRO workflow with three tasks (c depends on a and b; b on a).
fn valid_plan() -> MilestonePlan {
    let wf = Workflow::kiro();
    MilestonePlan {
        scope: Some(ScopeAnalysis {
            components: vec!["auth".into()],
            file_count: 4,
            ..ScopeAnalysis::default()
        }),
        estimates: Some(Estimates {
            phases: wf
                .phases()
                .iter()
                .map(|p| PhaseEstimate {
                    phase: p.id.clone(),
                    effort_ms: 1_000,
                })
                .collect(),
            buffer_percent: 25,
            critical_path: vec![pid("design"), pid("spec"), pid("execute")],
        }),
        risks: Some(Vec::new()),
        kiro: Some(KiroStrategy {
            keep: vec![KiroItem::new("session model", pid("design"))],
            improve: vec![
                KiroItem::new("error messages", pid("spec")),
                KiroItem::new("tests", pid("execute")),
            ],
            remove: Vec::new(),
            originate: vec![KiroItem::new("audit log", pid("task"))],
        }),
        tasks: vec![task("c", &["a", "b"]), task("b", &["a"]), task("a", &[])],
    }
}

/// Validates `plan` after `edit` and compares the `(location, kind)` of every problem.
fn check(edit: fn(&mut MilestonePlan), expected: &[(&str, ProblemKind)]) {
    let mut plan = valid_plan();
    edit(&mut plan);
    let got: Vec<(String, ProblemKind)> = match validate_plan(&plan, &Workflow::kiro()) {
        Ok(()) => Vec::new(),
        Err(p) => {
            assert!(!p.is_empty());
            p.iter().map(|p| (p.location.clone(), p.kind)).collect()
        }
    };
    let want: Vec<(String, ProblemKind)> = expected
        .iter()
        .map(|(l, k)| ((*l).to_owned(), *k))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn validation_table() {
    use ProblemKind::*;
    check(|_| {}, &[]);
    check(|p| p.scope = None, &[("plan.scope", Missing)]);
    check(|p| p.estimates = None, &[("plan.estimates", Missing)]);
    check(|p| p.risks = None, &[("plan.risks", Missing)]);
    check(|p| p.kiro = None, &[("plan.kiro", Missing)]);
    check(
        |p| p.kiro = Some(KiroStrategy::default()),
        &[("plan.kiro", Missing)],
    );
    check(|p| p.tasks.clear(), &[]);
    check(
        |p| {
            p.risks = Some(vec![Risk {
                description: " ".into(),
                probability: Level::Low,
                impact: Level::High,
                mitigation: String::new(),
                contingency: String::new(),
            }])
        },
        &[("plan.risks[0].description", Missing)],
    );
    check(
        |p| p.kiro.as_mut().unwrap().improve[0].description.clear(),
        &[("plan.kiro.improve[0].description", Missing)],
    );
    check(
        |p| p.kiro.as_mut().unwrap().keep[0] = KiroItem::new("", pid("qa")),
        &[
            ("plan.kiro.keep[0].description", Missing),
            ("plan.kiro.keep[0].phase", UnknownPhase),
        ],
    );
    check(
        |p| p.kiro.as_mut().unwrap().improve[1].phase = pid("deploy"),
        &[("plan.kiro.improve[1].phase", UnknownPhase)],
    );
    check(
        |p| p.kiro.as_mut().unwrap().originate[0].phase = pid("qa"),
        &[("plan.kiro.originate[0].phase", UnknownPhase)],
    );
    check(
        |p| {
            p.estimates.as_mut().unwrap().phases.remove(1);
        },
        &[("plan.estimates.phases", Missing)],
    );
    check(
        |p| p.estimates.as_mut().unwrap().phases[2].phase = pid("qa"),
        &[
            ("plan.estimates.phases", Missing),
            ("plan.estimates.phases[2].phase", UnknownPhase),
        ],
    );
    check(
        |p| {
            let e = p.estimates.as_mut().unwrap();
            let dup = e.phases[0].clone();
            e.phases.push(dup);
        },
        &[("plan.estimates.phases[4].phase", DuplicateId)],
    );
    check(
        |p| {
            p.estimates
                .as_mut()
                .unwrap()
                .critical_path
                .push(pid("ship"))
        },
        &[("plan.estimates.critical_path[3]", UnknownPhase)],
    );
    check(
        |p| {
            p.estimates
                .as_mut()
                .unwrap()
                .critical_path
                .push(pid("design"))
        },
        &[("plan.estimates.critical_path[3]", DuplicateId)],
    );
    check(
        |p| p.tasks.push(task("a", &[])),
        &[("plan.tasks[3].id", DuplicateId)],
    );
    check(
        |p| p.tasks.push(task("d", &["zz"])),
        &[("plan.tasks[3].dependencies[0]", UnknownDependency)],
    );
    check(
        |p| p.tasks.push(task("d", &["a", "d"])),
        &[("plan.tasks[3].dependencies[1]", SelfDependency)],
    );
    check(
        |p| p.tasks[2].dependencies.push(TaskId::new("c").unwrap()),
        &[("plan.tasks[0].dependencies", Cycle)],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut plan = valid_plan();
    plan.scope = None;
    plan.risks = None;
    plan.kiro.as_mut().unwrap().improve[0].phase = pid("deploy");
    plan.estimates.as_mut().unwrap().phases.pop();
    plan.tasks.push(task("a", &[]));
    plan.tasks.push(task("e", &["e", "missing"]));
    let problems = validate_plan(&plan, &Workflow::kiro()).unwrap_err();
    let locations: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            "plan.scope",
            "plan.risks",
            "plan.kiro.improve[0].phase",
            "plan.estimates.phases",
            "plan.tasks[3].id",
            "plan.tasks[4].dependencies[0]",
            "plan.tasks[4].dependencies[1]",
        ]
    );
    let text = problems.to_string();
    assert!(text.starts_with("7 problems"), "{text}");
    assert!(
        text.contains("\"execute\""),
        "names the phase without estimate: {text}"
    );
    assert!(text.contains("\"deploy\""), "{text}");
}

#[test]
fn a_cycle_is_reported_with_its_path() {
    let mut plan = valid_plan();
    plan.tasks = vec![
        task("x", &[]),
        task("a", &["b"]),
        task("b", &["c"]),
        task("c", &["a"]),
    ];
    let problems = validate_plan(&plan, &Workflow::kiro()).unwrap_err();
    assert_eq!(problems.len(), 1);
    let p = &problems.0[0];
    assert_eq!(p.kind, ProblemKind::Cycle);
    assert_eq!(p.location, "plan.tasks[1].dependencies");
    assert!(p.message.ends_with("a -> b -> c -> a"), "{}", p.message);
}

fn planning_state(plan: Option<MilestonePlan>) -> MilestoneState {
    let mut s = MilestoneState::new(
        MilestoneId::new("m1").unwrap(),
        "Add login",
        "",
        Workflow::kiro(),
        Timestamp(10),
        3,
    );
    if let Some(plan) = plan {
        s.apply(&Event::PlanRecorded {
            at: Timestamp(11),
            plan: Box::new(plan),
        })
        .unwrap();
    }
    s
}

#[test]
fn execution_starts_with_order_tasks_ok() {
    let state = planning_state(Some(valid_plan()));
    let events = start_execution(&state, Timestamp(20)).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Event::ExecutionStarted { at: Timestamp(20) });
    let Event::TasksAdded { at, tasks } = &events[1] else {
        panic!("expected tasks-added, got {:?}", events[1]);
    };
    assert_eq!(*at, Timestamp(20));
    let order: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);

    let running = initial_execution_state(&state, Timestamp(20)).unwrap();
    assert_eq!(running.mode(), Mode::Execution);
    assert_eq!(running.tasks().len(), 3);
    assert_eq!(running.task_position("c"), Some(2));
    assert_eq!(running.updated_at(), Timestamp(20));
    // The input state is untouched.
    assert_eq!(state.mode(), Mode::Planning);
    assert!(state.tasks().is_empty());
}

#[test]
fn a_plan_without_tasks_only_starts_execution() {
    let mut plan = valid_plan();
    plan.tasks.clear();
    let state = planning_state(Some(plan));
    assert_eq!(
        start_execution(&state, Timestamp(5)).unwrap(),
        [Event::ExecutionStarted { at: Timestamp(5) }]
    );
}

#[test]
fn nothing_starts_while_anything_is_wrong() {
    use ProblemKind::*;
    let kinds = |s: &MilestoneState| -> Vec<(String, ProblemKind)> {
        let before = s.clone();
        let got = initial_execution_state(s, Timestamp(30)).unwrap_err();
        assert_eq!(*s, before);
        assert!(start_execution(s, Timestamp(30)).is_err());
        got.iter().map(|p| (p.location.clone(), p.kind)).collect()
    };
    // No plan recorded.
    assert_eq!(kinds(&planning_state(None)), [("plan".to_owned(), Missing)]);
    // An invalid plan: every problem comes back.
    let mut plan = valid_plan();
    plan.kiro = None;
    plan.tasks.push(task("d", &["nope"]));
    assert_eq!(
        kinds(&planning_state(Some(plan))),
        [
            ("plan.kiro".to_owned(), Missing),
            (
                "plan.tasks[3].dependencies[0]".to_owned(),
                UnknownDependency
            )
        ]
    );
    // Already executing.
    let running =
        initial_execution_state(&planning_state(Some(valid_plan())), Timestamp(1)).unwrap();
    let got = kinds(&running);
    assert_eq!(got[0], ("mode".to_owned(), Inconsistent));
    // Tasks already present with the plan's ids count too.
    assert!(
        got.iter()
            .any(|(l, k)| l == "plan.tasks[0].id" && *k == DuplicateId)
    );
    // Not active.
    let mut blocked = planning_state(Some(valid_plan()));
    blocked
        .apply(&Event::StatusChanged {
            at: Timestamp(12),
            status: MilestoneStatus::Blocked,
            reason: None,
        })
        .unwrap();
    assert_eq!(kinds(&blocked), [("status".to_owned(), Inconsistent)]);
}

#[test]
fn dependency_order_table() {
    fn check_order(tasks: &[TaskSpec], expected: Option<&[&str]>) {
        let got = order_tasks_ok(tasks).map(|v| {
            v.iter()
                .map(|t| t.id.as_str().to_owned())
                .collect::<Vec<_>>()
        });
        let want = expected.map(|e| e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(got, want);
    }
    check_order(&[], Some(&[]));
    check_order(&[task("a", &[]), task("b", &[])], Some(&["a", "b"]));
    check_order(&[task("b", &["a"]), task("a", &[])], Some(&["a", "b"]));
    // Stable: independent tasks keep plan order around the ones that must move.
    check_order(
        &[
            task("x", &[]),
            task("c", &["d"]),
            task("y", &[]),
            task("d", &[]),
        ],
        Some(&["x", "y", "d", "c"]),
    );
    // Unknown dependencies are a problem, not something to order around.
    check_order(&[task("a", &["zz"])], None);
    check_order(&[task("a", &["b"]), task("b", &["a"])], None);
    check_order(&[task("a", &["a"])], None);
}

fn random_dag() -> impl Strategy<Value = Vec<TaskSpec>> {
    // Task i may depend on any task j < i; then the list is shuffled.
    (1usize..40)
        .prop_flat_map(|n| {
            (
                Just(n),
                proptest::collection::vec(
                    proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                    n,
                ),
                Just(()).prop_perturb(move |_, mut rng| {
                    let mut order: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        let j = (rng.next_u32() as usize) % (i + 1);
                        order.swap(i, j);
                    }
                    order
                }),
            )
        })
        .prop_map(|(n, deps, order)| {
            let tasks: Vec<TaskSpec> = (0..n)
                .map(|i| {
                    let ds: Vec<String> = if i == 0 {
                        Vec::new()
                    } else {
                        deps[i]
                            .iter()
                            .map(|ix| format!("t{}", ix.index(i)))
                            .collect()
                    };
                    let refs: Vec<&str> = ds.iter().map(String::as_str).collect();
                    task(&format!("t{i}"), &refs)
                })
                .collect();
            order.into_iter().map(|i| tasks[i].clone()).collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_valid_dag_starts_execution_with_every_task(tasks in random_dag()) {
        let mut plan = valid_plan();
        plan.tasks = tasks.clone();
        prop_assert!(validate_plan(&plan, &Workflow::kiro()).is_ok());
        let running = initial_execution_state(&planning_state(Some(plan)), Timestamp(9)).unwrap();
        prop_assert_eq!(running.tasks().len(), tasks.len());
        for t in running.tasks() {
            let me = running.task_position(t.spec.id.as_str()).unwrap();
            for d in &t.spec.dependencies {
                prop_assert!(running.task_position(d.as_str()).unwrap() < me);
            }
        }
        // Stability: a plan already in dependency order is kept as is.
        let sorted = order_tasks_ok(&tasks).unwrap();
        prop_assert_eq!(order_tasks_ok(&sorted).unwrap(), sorted);
    }
}

/// The work graph's ordering, as the plan's transition uses it; `None` on any problem.
fn order_tasks_ok(tasks: &[TaskSpec]) -> Option<Vec<TaskSpec>> {
    milestone_core::graph::order_tasks(tasks).ok()
}
