//! Properties of the work graph on random DAGs: topological order respects every edge, an
//! injected cycle is refused with a path that really is a cycle, a ready set never holds a node
//! with an unfinished dependency, the tracker agrees with the ready set at every step, the
//! stable order keeps valid input as it is, growing the graph in batches builds the same
//! graph as building it at once, a refused batch changes nothing, and a state's graph is the
//! graph of its tasks.

use std::collections::{BTreeSet, HashMap, HashSet};

use milestone_core::graph::{NodeId, ReadyTracker, WorkGraph, order_tasks};
use milestone_core::{
    Event, ItemRef, MilestoneId, MilestoneState, ProblemKind, TaskId, TaskSpec, Timestamp, Workflow,
};
use proptest::prelude::*;
use proptest::sample::Index;

fn id(i: usize) -> TaskId {
    TaskId::new(format!("t{i}")).unwrap()
}

/// A random DAG of tasks in dependency order: task `i` depends on some tasks before it, and has
/// an estimate.
fn dag() -> impl Strategy<Value = Vec<TaskSpec>> {
    prop::collection::vec(
        (prop::collection::vec(any::<Index>(), 0..4), 0u64..100),
        1..40,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (deps, est))| {
                let mut t = TaskSpec::new(id(i), format!("task {i}"));
                t.estimate_ms = Some(est);
                if i > 0 {
                    let mut seen = HashSet::new();
                    t.dependencies = deps
                        .iter()
                        .map(|ix| ix.index(i))
                        .filter(|&d| seen.insert(d))
                        .map(id)
                        .collect();
                }
                t
            })
            .collect()
    })
}

/// A random DAG, shuffled: tasks in any order.
fn shuffled_dag() -> impl Strategy<Value = Vec<TaskSpec>> {
    dag().prop_flat_map(|ts| Just(ts).prop_shuffle())
}

fn key_edges(g: &WorkGraph) -> BTreeSet<(ItemRef, ItemRef)> {
    g.edges()
        .map(|(a, b)| (g.key(a).unwrap().clone(), g.key(b).unwrap().clone()))
        .collect()
}

/// The longest total estimate of a chain ending at each task, by brute force over the specs.
fn longest(ts: &[TaskSpec]) -> u64 {
    let by_id: HashMap<&TaskId, &TaskSpec> = ts.iter().map(|t| (&t.id, t)).collect();
    fn go<'a>(
        t: &'a TaskSpec,
        by_id: &HashMap<&TaskId, &'a TaskSpec>,
        memo: &mut HashMap<&'a TaskId, u64>,
    ) -> u64 {
        if let Some(&v) = memo.get(&t.id) {
            return v;
        }
        let best = t
            .dependencies
            .iter()
            .map(|d| go(by_id[d], by_id, memo))
            .max()
            .unwrap_or(0);
        let v = best + t.estimate_ms.unwrap_or(0);
        memo.insert(&t.id, v);
        v
    }
    let mut memo = HashMap::new();
    ts.iter()
        .map(|t| go(t, &by_id, &mut memo))
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn topological_order_respects_every_edge(ts in shuffled_dag()) {
        let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        let order = g.topological_order();
        prop_assert_eq!(order.len(), g.len());
        let mut pos = vec![usize::MAX; g.len()];
        for (p, n) in order.iter().enumerate() {
            prop_assert_eq!(pos[n.index()], usize::MAX, "node listed twice");
            pos[n.index()] = p;
        }
        for (a, b) in g.edges() {
            prop_assert!(pos[a.index()] < pos[b.index()]);
        }
        // Every task dependency is an edge.
        for t in &ts {
            let me = g.task_node(t.id.as_str()).unwrap();
            let deps: BTreeSet<NodeId> = g.dependencies(me).collect();
            for d in &t.dependencies {
                prop_assert!(deps.contains(&g.task_node(d.as_str()).unwrap()));
            }
        }
    }

    #[test]
    fn an_injected_cycle_is_refused_with_a_real_cycle(
        ts in dag(),
        picks in prop::collection::vec(any::<Index>(), 2..6),
        shuffle_seed in any::<Index>(),
    ) {
        prop_assume!(ts.len() >= 2);
        let mut ts = ts;
        let mut members: Vec<usize> = Vec::new();
        for p in &picks {
            let v = p.index(ts.len());
            if !members.contains(&v) {
                members.push(v);
            }
        }
        prop_assume!(members.len() >= 2);
        // members[0] depends on members[1], …, the last on members[0].
        for k in 0..members.len() {
            let (from, to) = (members[k], members[(k + 1) % members.len()]);
            let dep = id(to);
            if !ts[from].dependencies.contains(&dep) {
                ts[from].dependencies.push(dep);
            }
        }
        let r = shuffle_seed.index(ts.len());
        ts.rotate_left(r);
        let deps: HashMap<&str, Vec<&str>> = ts
            .iter()
            .map(|t| (t.id.as_str(), t.dependencies.iter().map(|d| d.as_str()).collect()))
            .collect();
        let err = WorkGraph::new(&Workflow::kiro(), &ts).unwrap_err();
        prop_assert!(err.iter().all(|p| p.kind == ProblemKind::Cycle), "{}", err);
        prop_assert!(!err.is_empty());
        for p in &err {
            let path: Vec<&str> = p
                .message
                .strip_prefix("dependency cycle: ")
                .unwrap()
                .split(" -> ")
                .collect();
            prop_assert!(path.len() >= 3, "{}", p.message);
            prop_assert_eq!(path.first(), path.last());
            let inner: HashSet<&&str> = path[..path.len() - 1].iter().collect();
            prop_assert_eq!(inner.len(), path.len() - 1, "a cycle visits each task once");
            for w in path.windows(2) {
                prop_assert!(deps[w[0]].contains(&w[1]), "{} does not depend on {}", w[0], w[1]);
            }
            // The location names the first task of the path.
            let first = ts.iter().position(|t| t.id.as_str() == path[0]).unwrap();
            prop_assert_eq!(&p.location, &format!("tasks[{first}].dependencies"));
        }
        prop_assert!(order_tasks(&ts).is_err());
    }

    #[test]
    fn a_ready_set_never_holds_a_node_with_an_unfinished_dependency(
        ts in shuffled_dag(),
        done_bits in prop::collection::vec(any::<bool>(), 50),
    ) {
        let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        let done: Vec<bool> = (0..g.len()).map(|i| done_bits[i % done_bits.len()]).collect();
        let is_done = |k: &ItemRef| done[g.node(k).unwrap().index()];
        let ready: BTreeSet<NodeId> = g.ready(is_done).into_iter().collect();
        for (n, _) in g.nodes() {
            let deps_done = g.dependencies(n).all(|d| done[d.index()]);
            let expected = !done[n.index()] && deps_done;
            prop_assert_eq!(ready.contains(&n), expected, "node {}", n);
        }
        let tracker = ReadyTracker::resume(&g, is_done);
        prop_assert_eq!(tracker.ready().collect::<BTreeSet<_>>(), ready);
    }

    #[test]
    fn the_tracker_agrees_with_the_ready_set_at_every_step(
        ts in shuffled_dag(),
        choices in prop::collection::vec(any::<Index>(), 200),
    ) {
        let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        let mut tracker = ReadyTracker::new(&g);
        let mut ready: Vec<NodeId> = tracker.ready().collect();
        let mut done = vec![false; g.len()];
        let mut step = 0;
        while !ready.is_empty() {
            let expected: BTreeSet<NodeId> =
                g.ready(|k| done[g.node(k).unwrap().index()]).into_iter().collect();
            prop_assert_eq!(ready.iter().copied().collect::<BTreeSet<_>>(), expected);
            let pick = ready.swap_remove(choices[step % choices.len()].index(ready.len()));
            for d in g.dependencies(pick) {
                prop_assert!(done[d.index()]);
            }
            tracker.complete_into(&g, pick, &mut ready).unwrap();
            done[pick.index()] = true;
            step += 1;
        }
        prop_assert!(tracker.is_finished());
        prop_assert_eq!(step, g.len());
    }

    #[test]
    fn order_tasks_keeps_valid_input_as_it_is_and_orders_any_input(ts in dag(), shuffled in shuffled_dag()) {
        prop_assert_eq!(order_tasks(&ts).unwrap(), ts);
        let ordered = order_tasks(&shuffled).unwrap();
        prop_assert_eq!(ordered.len(), shuffled.len());
        let mut seen = HashSet::new();
        for t in &ordered {
            for d in &t.dependencies {
                prop_assert!(seen.contains(d), "{} before its dependency {}", t.id, d);
            }
            seen.insert(t.id.clone());
        }
    }

    #[test]
    fn growing_in_batches_builds_the_same_graph(ts in dag(), cut in any::<Index>()) {
        let at = cut.index(ts.len() + 1);
        let whole = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        let mut grown = WorkGraph::new(&Workflow::kiro(), &ts[..at]).unwrap();
        grown.add_tasks(&ts[at..]).unwrap();
        prop_assert_eq!(key_edges(&whole), key_edges(&grown));
        prop_assert_eq!(whole.len(), grown.len());
    }

    #[test]
    fn the_critical_path_is_a_chain_as_long_as_the_longest(ts in shuffled_dag()) {
        let g = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        let est: HashMap<&str, u64> =
            ts.iter().map(|t| (t.id.as_str(), t.estimate_ms.unwrap_or(0))).collect();
        let estimate = |k: &ItemRef| match k {
            ItemRef::Task(t) => est[t.as_str()],
            ItemRef::Phase(_) => 0,
        };
        let (path, len) = g.critical_path(estimate);
        prop_assert_eq!(len, longest(&ts));
        let sum: u64 = path.iter().map(|&n| estimate(g.key(n).unwrap())).sum();
        prop_assert_eq!(sum, len);
        let edges: HashSet<(NodeId, NodeId)> = g.edges().collect();
        for w in path.windows(2) {
            prop_assert!(edges.contains(&(w[0], w[1])));
        }
    }

    #[test]
    fn a_refused_batch_changes_nothing(
        ts in dag(),
        cut in any::<Index>(),
        bad in 0usize..4,
        at in any::<Index>(),
    ) {
        let split = cut.index(ts.len()).max(1);
        let mut g = WorkGraph::new(&Workflow::kiro(), &ts[..split]).unwrap();
        let mut batch: Vec<TaskSpec> = ts[split..].to_vec();
        let existing = id(at.index(split));
        match bad {
            0 => batch.push(TaskSpec::new(existing, "again")),
            1 => {
                let mut t = TaskSpec::new(id(10_000), "unknown dep");
                t.dependencies.push(id(20_000));
                batch.push(t);
            }
            2 => {
                let mut t = TaskSpec::new(id(10_000), "self");
                t.dependencies.push(id(10_000));
                batch.push(t);
            }
            _ => {
                let mut x = TaskSpec::new(id(10_000), "x");
                x.dependencies.push(id(10_001));
                let mut y = TaskSpec::new(id(10_001), "y");
                y.dependencies.push(id(10_000));
                y.dependencies.push(existing);
                batch.extend([x, y]);
            }
        }
        let edges = key_edges(&g);
        let nodes: Vec<(NodeId, ItemRef)> = g.nodes().map(|(n, k)| (n, k.clone())).collect();
        prop_assert!(g.add_tasks(&batch).is_err());
        prop_assert_eq!(key_edges(&g), edges);
        prop_assert_eq!(g.nodes().map(|(n, k)| (n, k.clone())).collect::<Vec<_>>(), nodes.clone());
        for (n, k) in &nodes {
            prop_assert_eq!(g.node(k), Some(*n));
        }
        for t in &batch {
            if !ts[..split].iter().any(|o| o.id == t.id) {
                prop_assert_eq!(g.task_node(t.id.as_str()), None);
            }
        }
        // Without the bad tasks the rest still joins.
        let good: Vec<TaskSpec> = ts[split..].to_vec();
        prop_assert!(g.add_tasks(&good).is_ok());
        prop_assert_eq!(g.task_count(), ts.len());
    }

    #[test]
    fn a_state_has_the_graph_of_its_tasks(ts in dag()) {
        let mut state = MilestoneState::from_events([&Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "M".into(),
            context: String::new(),
            workflow: Workflow::kiro(),
            seed: 1,
        }])
        .unwrap();
        let half = ts.len() / 2;
        for part in [&ts[..half], &ts[half..]] {
            state.apply(&Event::TasksAdded { at: Timestamp(1), tasks: part.to_vec() }).unwrap();
        }
        let from_state = WorkGraph::from_state(&state);
        let built = WorkGraph::new(&Workflow::kiro(), &ts).unwrap();
        prop_assert_eq!(key_edges(&from_state), key_edges(&built));
        prop_assert_eq!(from_state.len(), built.len());
    }
}
