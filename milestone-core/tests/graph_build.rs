//! The work graph: validation (every problem, with locations and cycle paths), the node model,
//! growing the graph while it runs, order, queries, critical path and the ready tracker.

use std::collections::BTreeSet;

use milestone_core::graph::{NodeId, ReadyTracker, TrackError, WorkGraph, order_tasks};
use milestone_core::{
    Event, ItemOutput, ItemRef, MilestoneId, MilestoneState, PhaseId, PhaseSpec, Problems, TaskId,
    TaskSpec, Timestamp, Weight, Workflow,
};

/// Tasks from a tiny language: `a:b,c; b; c(5)` is task `a` depending on `b` and `c`, task `b`,
/// and task `c` with an estimate of 5 ms.
fn tasks(spec: &str) -> Vec<TaskSpec> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (head, deps) = s.split_once(':').unwrap_or((s, ""));
            let (id, est) = match head.split_once('(') {
                Some((id, rest)) => (id, Some(rest.trim_end_matches(')').parse().unwrap())),
                None => (head, None),
            };
            let mut t = TaskSpec::new(TaskId::new(id.trim()).unwrap(), format!("Task {id}"));
            t.estimate_ms = est;
            t.dependencies = deps
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| TaskId::new(d).unwrap())
                .collect();
            t
        })
        .collect()
}

/// Problems in a compact form: `Kind location`, plus `: path` for cycles.
fn show(problems: &Problems) -> String {
    problems
        .iter()
        .map(|p| {
            let mut s = format!("{:?} {}", p.kind, p.location);
            if let Some(path) = p.message.strip_prefix("dependency cycle: ") {
                s.push_str(": ");
                s.push_str(path);
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Builds a graph from `case`; `expected` is "ok" or the problems as [`show`] prints them. The
/// same problems must come from `order_tasks`.
fn check(case: &str, expected: &str) {
    let ts = tasks(case);
    let got = match WorkGraph::new(&Workflow::kiro(), &ts) {
        Ok(g) => {
            assert_eq!(g.task_count(), ts.len(), "case {case:?}");
            "ok".to_string()
        }
        Err(p) => show(&p),
    };
    assert_eq!(got, expected, "case {case:?}");
    let ordered = match order_tasks(&ts) {
        Ok(_) => "ok".to_string(),
        Err(p) => show(&p),
    };
    assert_eq!(ordered, expected, "order_tasks, case {case:?}");
}

#[test]
fn validation_reports_every_problem_with_its_place() {
    check("", "ok");
    check("a", "ok");
    check("a; b:a; c:a,b", "ok");
    check("c:a,b; b:a; a", "ok");
    check("a:b,b; b", "ok");
    check("a; a", "DuplicateId tasks[1].id");
    check(
        "a; b; a; b",
        "DuplicateId tasks[2].id | DuplicateId tasks[3].id",
    );
    check("a:a", "SelfDependency tasks[0].dependencies[0]");
    check("a:x", "UnknownDependency tasks[0].dependencies[0]");
    check(
        "a:b,x,y; b",
        "UnknownDependency tasks[0].dependencies[1] | UnknownDependency tasks[0].dependencies[2]",
    );
    check("a:b; b:a", "Cycle tasks[0].dependencies: a -> b -> a");
    check(
        "a:b; b:c; c:a",
        "Cycle tasks[0].dependencies: a -> b -> c -> a",
    );
    check(
        "c:a; a:b; b:c",
        "Cycle tasks[0].dependencies: c -> a -> b -> c",
    );
    check(
        "x; a:b; b:a; c:a",
        "Cycle tasks[1].dependencies: a -> b -> a",
    );
    check(
        "a:b; b:a; c:d; d:c",
        "Cycle tasks[0].dependencies: a -> b -> a | Cycle tasks[2].dependencies: c -> d -> c",
    );
    check(
        "a:c,b; b:a; c:b",
        "Cycle tasks[0].dependencies: a -> b -> a",
    );
    check(
        "a:b; b:c; c:d; d:b",
        "Cycle tasks[1].dependencies: b -> c -> d -> b",
    );
    check(
        "a:a,x; a; b:b",
        "DuplicateId tasks[1].id | SelfDependency tasks[0].dependencies[0] \
         | UnknownDependency tasks[0].dependencies[1] | SelfDependency tasks[2].dependencies[0]",
    );
    check(
        "a:b,x; b:a",
        "UnknownDependency tasks[0].dependencies[1] | Cycle tasks[0].dependencies: a -> b -> a",
    );
    check(
        "a:b; b:a; a",
        "DuplicateId tasks[2].id | Cycle tasks[0].dependencies: a -> b -> a",
    );
}

#[test]
fn a_long_cycle_is_found_without_overflow_and_shown_shortened() {
    let n = 100_000;
    let spec: Vec<String> = (0..n).map(|i| format!("t{i}:t{}", (i + 1) % n)).collect();
    let err = WorkGraph::new(&Workflow::kiro(), &tasks(&spec.join(";"))).unwrap_err();
    assert_eq!(err.len(), 1);
    let msg = &err.0[0].message;
    assert!(msg.starts_with("dependency cycle: t0 -> t1 -> "), "{msg}");
    assert!(msg.contains("more"), "{msg}");
    assert!(msg.ends_with("-> t99999 -> t0"), "{msg}");
    assert!(msg.len() < 2_000);
}

fn names(g: &WorkGraph, nodes: impl IntoIterator<Item = NodeId>) -> Vec<String> {
    nodes
        .into_iter()
        .map(|n| g.key(n).unwrap().as_str().to_string())
        .collect()
}

fn sorted(g: &WorkGraph, nodes: impl IntoIterator<Item = NodeId>) -> Vec<String> {
    let mut v = names(g, nodes);
    v.sort();
    v
}

fn node(g: &WorkGraph, id: &str) -> NodeId {
    g.task_node(id).or_else(|| g.phase_node(id)).unwrap()
}

#[test]
fn node_model_tasks_sit_under_the_task_phase() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("t2:t1; t1; t3")).unwrap();
    assert_eq!((g.len(), g.phase_count(), g.task_count()), (7, 4, 3));
    assert_eq!(g.key(g.task_phase()).unwrap().as_str(), "execute");
    // Phases are nodes 0..4 in workflow order, tasks follow in input order.
    assert_eq!(
        names(&g, (0..7).filter_map(|i| g.nodes().nth(i).map(|n| n.0))),
        ["design", "spec", "task", "execute", "t2", "t1", "t3"]
    );
    assert_eq!(sorted(&g, g.dependencies(node(&g, "t1"))), ["task"]);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "t3"))), ["task"]);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "t2"))), ["t1"]);
    assert_eq!(
        sorted(&g, g.dependencies(node(&g, "execute"))),
        ["t1", "t2", "t3", "task"]
    );
    assert_eq!(sorted(&g, g.dependents(node(&g, "t1"))), ["execute", "t2"]);
    assert_eq!(
        sorted(&g, g.dependents(node(&g, "task"))),
        ["execute", "t1", "t3"]
    );
    assert_eq!(
        sorted(&g, g.dependencies(node(&g, "design"))),
        Vec::<String>::new()
    );
    // 3 phase edges + t1, t3 from `task` + t2 from t1 + 3 into execute.
    assert_eq!(g.edge_count(), 9);
    assert_eq!(
        names(&g, g.topological_order()),
        ["design", "spec", "task", "t1", "t2", "t3", "execute"]
    );
    assert_eq!(
        g.node(&ItemRef::Task(TaskId::new("t3").unwrap())),
        g.task_node("t3")
    );
    assert_eq!(
        g.node(&ItemRef::Phase(PhaseId::new("spec").unwrap())),
        Some(node(&g, "spec"))
    );
    assert_eq!(g.task_node("nope"), None);
    assert_eq!(g.phase_node("nope"), None);
}

#[test]
fn a_repeated_dependency_is_one_edge() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a,a,a")).unwrap();
    assert_eq!(sorted(&g, g.dependencies(node(&g, "b"))), ["a"]);
    assert_eq!(g.edge_count(), 3 + 1 + 1 + 2);
}

#[test]
fn in_a_single_phase_workflow_tasks_start_at_once() {
    let only = PhaseSpec::new(
        PhaseId::new("build").unwrap(),
        "Build",
        Weight::new(100).unwrap(),
    );
    let wf = Workflow::new(vec![only], 1).unwrap();
    let g = WorkGraph::new(&wf, &tasks("a; b:a; c")).unwrap();
    assert_eq!(sorted(&g, g.ready(|_| false)), ["a", "c"]);
    let done = |k: &ItemRef| k.as_str() != "build";
    assert_eq!(sorted(&g, g.ready(done)), ["build"]);
}

#[test]
fn ready_follows_what_is_done() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a; c")).unwrap();
    let ready_after = |done: &[&str]| sorted(&g, g.ready(|k| done.contains(&k.as_str())));
    assert_eq!(ready_after(&[]), ["design"]);
    assert_eq!(ready_after(&["design"]), ["spec"]);
    assert_eq!(ready_after(&["design", "spec", "task"]), ["a", "c"]);
    assert_eq!(ready_after(&["design", "spec", "task", "a"]), ["b", "c"]);
    assert_eq!(
        ready_after(&["design", "spec", "task", "a", "b", "c"]),
        ["execute"]
    );
    assert_eq!(
        ready_after(&["design", "spec", "task", "a", "b", "c", "execute"]),
        Vec::<String>::new()
    );
}

#[test]
fn tasks_join_while_running_and_a_bad_batch_changes_nothing() {
    let mut g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a")).unwrap();
    g.add_tasks(&tasks("d:c; c:b; e")).unwrap();
    assert_eq!(g.task_count(), 5);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "c"))), ["b"]);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "d"))), ["c"]);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "e"))), ["task"]);
    assert_eq!(
        sorted(&g, g.dependencies(g.task_phase())),
        ["a", "b", "c", "d", "e", "task"]
    );

    let before: Vec<_> = g.edges().collect();
    let len = g.len();
    let err = g.add_tasks(&tasks("f:zz; a; g:h; h:g; i:i")).unwrap_err();
    assert_eq!(
        show(&err),
        "DuplicateId tasks[1].id | UnknownDependency tasks[0].dependencies[0] \
         | SelfDependency tasks[4].dependencies[0] | Cycle tasks[2].dependencies: g -> h -> g"
    );
    assert!(
        err.0[0].message.contains("already in the graph"),
        "{}",
        err.0[0].message
    );
    assert_eq!(g.len(), len);
    assert_eq!(g.edges().collect::<Vec<_>>(), before);
    assert_eq!(g.task_node("f"), None);
    assert_eq!(g.task_node("a").map(NodeId::index), Some(4));
    // The refused ids are free again.
    g.add_tasks(&tasks("f:a; g; h:g; i")).unwrap();
    assert_eq!(g.task_count(), 9);
    assert_eq!(sorted(&g, g.dependencies(node(&g, "f"))), ["a"]);
}

#[test]
fn from_state_matches_new() {
    let ts = tasks("a; b:a,a; c:a,b,a; d");
    let mut state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("m").unwrap(),
        title: "M".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    state
        .apply(&Event::TasksAdded {
            at: Timestamp(1),
            tasks: ts.clone(),
        })
        .unwrap();
    let from_state = WorkGraph::from_state(&state);
    let built = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
    assert_eq!(
        from_state.edges().collect::<Vec<_>>(),
        built.edges().collect::<Vec<_>>()
    );
    assert_eq!(
        from_state
            .nodes()
            .map(|(_, k)| k.clone())
            .collect::<Vec<_>>(),
        built.nodes().map(|(_, k)| k.clone()).collect::<Vec<_>>()
    );
}

fn check_order(case: &str, expected: &str) {
    let got: Vec<String> = order_tasks(&tasks(case))
        .unwrap()
        .iter()
        .map(|t| t.id.as_str().to_string())
        .collect();
    assert_eq!(got.join(" "), expected, "case {case:?}");
}

#[test]
fn order_tasks_puts_dependencies_first_and_keeps_input_order_otherwise() {
    check_order("", "");
    check_order("a; b; c", "a b c");
    check_order("c; b; a", "c b a");
    check_order("b:a; c; a", "c a b");
    check_order("c:b; b:a; a", "a b c");
    check_order("a; c:b; b", "a b c");
    check_order("x:a,b; b; a; y", "b a x y");
    check_order("d:c; a; c:a; b", "a c d b");
}

#[test]
fn order_tasks_output_is_accepted_by_tasks_added() {
    let ordered = order_tasks(&tasks("e:d; d:c,b; c:a; b:a; a")).unwrap();
    let mut state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("m").unwrap(),
        title: "M".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    state
        .apply(&Event::TasksAdded {
            at: Timestamp(1),
            tasks: ordered,
        })
        .unwrap();
    assert_eq!(state.tasks().len(), 5);
}

fn check_critical(case: &str, expected_path: &str, expected_len: u64) {
    let ts = tasks(case);
    let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
    let (path, len) = g.critical_path(|k| match k {
        ItemRef::Task(t) => ts
            .iter()
            .find(|s| s.id == *t)
            .and_then(|s| s.estimate_ms)
            .unwrap_or(0),
        _ => 1,
    });
    assert_eq!(names(&g, path).join(" "), expected_path, "case {case:?}");
    assert_eq!(len, expected_len, "case {case:?}");
}

#[test]
fn critical_path_is_the_longest_chain_of_estimates() {
    check_critical("", "design spec task execute", 4);
    check_critical("a(5)", "design spec task a execute", 9);
    check_critical("a(5); b(3):a; c(10)", "design spec task c execute", 14);
    check_critical("a(5); b(6):a; c(10)", "design spec task a b execute", 15);
    check_critical("a(5); b(5):a; c(10)", "design spec task a b execute", 14);
    check_critical("c(10); a(5); b(5):a", "design spec task c execute", 14);
    check_critical(
        &format!("a({}); b({}):a", u64::MAX / 2, u64::MAX / 2),
        "design spec task a b execute",
        u64::MAX,
    );
}

#[test]
fn tracker_yields_each_node_once_its_dependencies_are_done() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a; c:a; d:b,c")).unwrap();
    let mut t = ReadyTracker::new(&g);
    assert_eq!(sorted(&g, t.ready()), ["design"]);
    let mut step = |id: &str| sorted(&g, t.complete(&g, node(&g, id)).unwrap());
    assert_eq!(step("design"), ["spec"]);
    assert_eq!(step("spec"), ["task"]);
    assert_eq!(step("task"), ["a"]);
    assert_eq!(step("a"), ["b", "c"]);
    assert_eq!(step("b"), Vec::<String>::new());
    assert_eq!(step("c"), ["d"]);
    assert_eq!(step("d"), ["execute"]);
    assert_eq!(step("execute"), Vec::<String>::new());
    assert!(t.is_finished());
    assert_eq!(t.done_count(), 8);
}

#[test]
fn tracker_refuses_bad_updates_and_stays_unchanged() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a")).unwrap();
    let big = WorkGraph::new(&Workflow::kiro(), &tasks("a; b; c; d; e; f; g")).unwrap();
    let mut t = ReadyTracker::new(&g);
    let b = node(&g, "b");
    assert_eq!(
        t.complete(&g, b),
        Err(TrackError::NotReady {
            item: ItemRef::Task(TaskId::new("b").unwrap()),
            remaining: 1
        })
    );
    let foreign = node(&big, "g");
    assert_eq!(
        t.complete(&g, foreign),
        Err(TrackError::UnknownNode { node: foreign })
    );
    assert_eq!(
        t.complete(&big, node(&big, "design")),
        Err(TrackError::GraphMismatch {
            graph: 11,
            tracked: 6
        })
    );
    let design = node(&g, "design");
    t.complete(&g, design).unwrap();
    assert!(matches!(
        t.complete(&g, design),
        Err(TrackError::AlreadyDone { .. })
    ));
    assert_eq!(t.done_count(), 1);
    assert_eq!(t.remaining(b), Some(1));
    assert!(!t.is_ready(b) && !t.is_done(b) && t.is_done(design));
    assert_eq!(t.remaining(foreign), None);
    assert!(matches!(
        ReadyTracker::new(&big).sync(&g, &mut Vec::new()),
        Err(TrackError::GraphMismatch { .. })
    ));
}

#[test]
fn tracker_takes_in_tasks_added_while_running() {
    let mut g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a")).unwrap();
    let mut t = ReadyTracker::resume(&g, |k| {
        ["design", "spec", "task", "a", "b"].contains(&k.as_str())
    });
    assert_eq!(sorted(&g, t.ready()), ["execute"]);
    g.add_tasks(&tasks("d:c; c:b")).unwrap();
    g.add_tasks(&tasks("e")).unwrap();
    // Not in step until sync: nothing can complete.
    assert!(matches!(
        t.complete(&g, g.task_phase()),
        Err(TrackError::GraphMismatch {
            graph: 9,
            tracked: 6
        })
    ));
    let mut newly = Vec::new();
    t.sync(&g, &mut newly).unwrap();
    assert_eq!(sorted(&g, newly), ["c", "e"]);
    let exec = g.task_phase();
    assert_eq!(t.remaining(exec), Some(3));
    assert!(!t.is_ready(exec));
    for id in ["c", "e", "d"] {
        t.complete(&g, node(&g, id)).unwrap();
    }
    assert!(t.is_ready(exec));
    t.complete(&g, exec).unwrap();
    // The task phase is done: a task joining now would hold it back.
    g.add_tasks(&tasks("late")).unwrap();
    let err = t.sync(&g, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, TrackError::DoneNodeGainsDependency { .. }),
        "{err}"
    );
    assert_eq!(t.len(), 9);
}

#[test]
fn resume_counts_only_unfinished_dependencies() {
    let g = WorkGraph::new(&Workflow::kiro(), &tasks("a; b:a; c; d:b,c")).unwrap();
    let done = ["design", "spec", "task", "a", "c"];
    let t = ReadyTracker::resume(&g, |k| done.contains(&k.as_str()));
    assert_eq!(sorted(&g, t.ready()), ["b"]);
    assert_eq!(t.remaining(node(&g, "d")), Some(1));
    assert_eq!(t.remaining(g.task_phase()), Some(2));
    assert_eq!(t.done_count(), 5);
}

#[test]
fn a_state_drives_the_tracker() {
    let mut state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("m").unwrap(),
        title: "M".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    state
        .apply(&Event::ExecutionStarted { at: Timestamp(1) })
        .unwrap();
    state
        .apply(&Event::TasksAdded {
            at: Timestamp(1),
            tasks: tasks("a; b:a"),
        })
        .unwrap();
    let design = ItemRef::Phase(PhaseId::new("design").unwrap());
    state
        .apply(&Event::ItemStarted {
            at: Timestamp(2),
            item: design.clone(),
            attempt: 1,
        })
        .unwrap();
    state
        .apply(&Event::ItemCompleted {
            at: Timestamp(3),
            item: design,
            output: ItemOutput::default().into(),
        })
        .unwrap();
    let g = WorkGraph::from_state(&state);
    let is_done = |k: &ItemRef| state.item(k).is_some_and(|s| s.status.is_done());
    let t = ReadyTracker::resume(&g, is_done);
    assert_eq!(sorted(&g, t.ready()), ["spec"]);
    assert_eq!(
        t.ready().collect::<BTreeSet<_>>(),
        g.ready(is_done).into_iter().collect::<BTreeSet<_>>()
    );
}

#[test]
fn memory_estimate_is_plausible() {
    let spec: Vec<String> = (0..10_000)
        .map(|i| {
            if i == 0 {
                "t0".to_string()
            } else {
                format!("t{i}:t{}", i / 2)
            }
        })
        .collect();
    let g = WorkGraph::new(&Workflow::kiro(), &tasks(&spec.join(";"))).unwrap();
    let per_task = g.memory_estimate() / g.task_count();
    assert!((64..1024).contains(&per_task), "{per_task} bytes per task");
}

#[test]
fn a_huge_dependency_list_is_deduplicated() {
    let mut spec: Vec<String> = (0..1_000).map(|i| format!("t{i}")).collect();
    let all: Vec<String> = (0..50)
        .flat_map(|_| (0..1_000).map(|i| format!("t{i}")))
        .collect();
    spec.push(format!("last:{}", all.join(",")));
    let ts = tasks(&spec.join(";"));
    assert_eq!(ts[1_000].dependencies.len(), 50_000);
    let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
    assert_eq!(g.dependencies(node(&g, "last")).count(), 1_000);
    let mut grown = WorkGraph::new(&Workflow::kiro(), &ts[..1_000]).unwrap();
    grown.add_tasks(&ts[1_000..]).unwrap();
    assert_eq!(grown.dependencies(node(&grown, "last")).count(), 1_000);
    assert_eq!(g.edge_count(), grown.edge_count());
}
