//! The work graph: the phases of a workflow and the tasks of its task phase as one dependency
//! graph.
//!
//! The engine needs one answer to "what may run now?" whether the thing is a phase or a task,
//! and the plan needs a critical path across both. So phases and tasks live in the same graph,
//! built on [`petgraph`], and every question (order, readiness, dependents, critical path) is
//! asked of it in the same way.
//!
//! # Node model
//!
//! - One node per phase of the [`Workflow`] (nodes `0..phase_count()`, in workflow order) and
//!   one node per task, numbered in the order tasks were added. Nodes are never removed, so a
//!   [`NodeId`] stays valid as the graph grows.
//! - Edges point **from a dependency to its dependent**: `a → b` means `b` waits for `a`.
//! - A phase depends on the phases its [`PhaseSpec::dependencies`](crate::PhaseSpec) name.
//! - Tasks live under the workflow's task phase ([`Workflow::task_phase`], `execute` in the
//!   KIRO workflow). A task depends on the tasks its [`TaskSpec::dependencies`] name; a task
//!   with no task dependencies depends instead on the phases the task phase depends on (in the
//!   KIRO workflow: `task`), so no task can start before the task breakdown is done.
//! - The task phase's node stands for the phase's *completion*: it depends on every task, so it
//!   becomes ready only when all of them are done.
//! - A dependency listed twice is one edge.
//!
//! ```text
//!  design ──▶ spec ──▶ task ──┬──▶ t1 ──▶ t3 ──┐
//!                             └──▶ t2 ─────────┴──▶ execute
//! ```
//!
//! Tasks can be added while the milestone runs ([`WorkGraph::add_tasks`]); a batch is checked as
//! a whole and either joins the graph entirely or not at all. Validation reports every problem at
//! once: duplicate ids, unknown dependencies, self-dependencies and dependency cycles (each
//! with its path, `a -> b -> c -> a`, read as "a depends on b, which depends on c, …").
//!
//! [`ReadyTracker`] keeps in-degree counters so that finishing a node yields the newly ready
//! nodes in time proportional to its number of dependents: no scan of the graph, no allocation
//! of strings per task.
//!
//! ```
//! use milestone_core::graph::{ReadyTracker, WorkGraph};
//! use milestone_core::{ItemRef, TaskId, TaskSpec, Workflow};
//!
//! let mut t2 = TaskSpec::new(TaskId::new("t2")?, "Wire the endpoint");
//! t2.dependencies.push(TaskId::new("t1")?);
//! // Tasks may come in any order.
//! let tasks = [t2, TaskSpec::new(TaskId::new("t1")?, "Add the model")];
//! let graph = WorkGraph::new(&Workflow::kiro(), &tasks)?;
//!
//! let mut tracker = ReadyTracker::new(&graph);
//! let mut ready: Vec<_> = tracker.ready().collect();
//! let mut order = Vec::new();
//! while let Some(node) = ready.pop() {
//!     order.push(graph.key(node).map(ItemRef::as_str).unwrap_or_default().to_string());
//!     tracker.complete_into(&graph, node, &mut ready)?;
//! }
//! assert_eq!(order, ["design", "spec", "task", "t1", "t2", "execute"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

use petgraph::Direction::{Incoming, Outgoing};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{Problem, ProblemKind, Problems};
use crate::id::TaskId;
use crate::state::{ItemRef, MilestoneState, TaskSpec};
use crate::workflow::Workflow;

type Inner = DiGraph<ItemRef, (), u32>;
type Ix = NodeIndex<u32>;

/// The most nodes (or edges) a graph may hold: petgraph's `u32` index space, minus its
/// reserved end marker.
const MAX_INDEX: usize = u32::MAX as usize - 1;

/// A cycle path longer than this is shown with its middle elided in problem messages.
const MAX_CYCLE_SHOWN: usize = 64;

/// A node of a [`WorkGraph`]: a dense index, cheap to copy and to store in arrays.
///
/// Phases are nodes `0..phase_count()` in workflow order; tasks follow in the order they were
/// added. A `NodeId` is only meaningful for the graph that produced it; methods given a
/// `NodeId` the graph does not have return `None` or an error, never panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The dense index of the node (`0..graph.len()`).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    fn ix(self) -> Ix {
        NodeIndex::new(self.index())
    }

    fn of(ix: Ix) -> NodeId {
        NodeId(ix.index() as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The dependency graph of a milestone's phases and tasks (see the module docs for the node
/// model). Always acyclic, with every dependency known.
#[derive(Debug, Clone)]
pub struct WorkGraph {
    graph: Inner,
    phase_count: usize,
    task_phase: Ix,
    /// The phases the task phase depends on: what a task without task dependencies waits for.
    entry: Vec<Ix>,
    tasks: HashMap<TaskId, Ix>,
}

/// A dependency of a task in a batch being added: a node already in the graph, or another task
/// of the batch (by its position in the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dep {
    Old(Ix),
    New(u32),
}

/// A checked batch of tasks: dependencies resolved (deduplicated, in CSR form) and a stable
/// dependency-respecting order of the batch.
struct Batch {
    deps: Vec<Dep>,
    starts: Vec<usize>,
    order: Vec<u32>,
}

impl Batch {
    fn deps_of(&self, i: usize) -> &[Dep] {
        &self.deps[self.starts[i]..self.starts[i + 1]]
    }
}

impl WorkGraph {
    /// Builds the graph of a workflow's phases and `tasks`, which may be listed in any order.
    /// Each task id is hashed once and each dependency looked up once; ordering the tasks for
    /// the acyclicity check is O(T log T).
    ///
    /// # Errors
    /// [`Problems`] listing everything wrong with the tasks: duplicate ids (`tasks[3].id`),
    /// unknown dependencies and self-dependencies (`tasks[3].dependencies[1]`) and every
    /// dependency cycle with its path (`tasks[0].dependencies`, "dependency cycle: a -> b -> a").
    pub fn new(workflow: &Workflow, tasks: &[TaskSpec]) -> Result<WorkGraph, Problems> {
        let mut graph = WorkGraph::with_phases(workflow, tasks.len());
        graph.add_tasks(tasks)?;
        Ok(graph)
    }

    /// The graph of a milestone's workflow and tasks.
    ///
    /// Infallible: a [`MilestoneState`] only exists with unique task ids and every task listed
    /// after its dependencies, so its tasks always form a valid graph. (Were that ever broken,
    /// a dependency not naming an earlier task would be left out rather than cause a panic.)
    pub fn from_state(state: &MilestoneState) -> WorkGraph {
        let tasks = state.tasks();
        let mut g = WorkGraph::with_phases(state.workflow(), tasks.len());
        let mut deps: Vec<Ix> = Vec::new();
        for t in tasks {
            if g.graph.node_count() >= MAX_INDEX {
                break;
            }
            let me = NodeIndex::new(g.graph.node_count());
            match g.tasks.entry(t.spec.id.clone()) {
                std::collections::hash_map::Entry::Occupied(_) => continue,
                std::collections::hash_map::Entry::Vacant(v) => v.insert(me),
            };
            deps.clear();
            for d in &t.spec.dependencies {
                if let Some(&ix) = g.tasks.get(d)
                    && ix != me
                {
                    deps.push(ix);
                }
            }
            dedup_tail(&mut deps, 0);
            g.graph.add_node(ItemRef::Task(t.spec.id.clone()));
            g.link_task(me, &deps);
        }
        g
    }

    fn with_phases(workflow: &Workflow, task_hint: usize) -> WorkGraph {
        let phases = workflow.phases();
        let mut graph = Inner::with_capacity(
            phases.len().saturating_add(task_hint).min(MAX_INDEX),
            task_hint.saturating_mul(2).min(MAX_INDEX),
        );
        for p in phases {
            graph.add_node(ItemRef::Phase(p.id.clone()));
        }
        let deps_of = |i: usize| -> Vec<Ix> {
            let mut out: Vec<Ix> = Vec::new();
            for d in &phases[i].dependencies {
                if let Some(j) = workflow.position(d.as_str())
                    && j != i
                    && !out.contains(&NodeIndex::new(j))
                {
                    out.push(NodeIndex::new(j));
                }
            }
            out
        };
        for i in 0..phases.len() {
            for j in deps_of(i) {
                graph.add_edge(j, NodeIndex::new(i), ());
            }
        }
        let tp = workflow
            .position(workflow.task_phase().as_str())
            .unwrap_or(0);
        WorkGraph {
            graph,
            phase_count: phases.len(),
            task_phase: NodeIndex::new(tp),
            entry: deps_of(tp),
            tasks: HashMap::with_capacity(task_hint),
        }
    }

    /// Adds edges into a new task node from its (deduplicated) task dependencies, or from the
    /// task phase's entry phases when it has none, and from it to the task phase.
    fn link_task(&mut self, me: Ix, deps: &[Ix]) {
        if deps.is_empty() {
            for &e in &self.entry {
                self.graph.add_edge(e, me, ());
            }
        } else {
            for &d in deps {
                self.graph.add_edge(d, me, ());
            }
        }
        self.graph.add_edge(me, self.task_phase, ());
    }

    /// Adds tasks while the milestone runs, in any order; they may depend on tasks already in
    /// the graph and on each other. Atomic: on error the graph is unchanged.
    ///
    /// # Errors
    /// [`Problems`] listing everything wrong with the batch, located by position in `tasks`:
    /// ids already in the graph or repeated in the batch, unknown dependencies,
    /// self-dependencies, and every cycle among the new tasks.
    pub fn add_tasks(&mut self, tasks: &[TaskSpec]) -> Result<(), Problems> {
        let base = self.graph.node_count();
        let dep_count: usize = tasks.iter().map(|t| t.dependencies.len()).sum();
        let max_edges = dep_count + tasks.len() * (1 + self.entry.len());
        if base + tasks.len() > MAX_INDEX || self.graph.edge_count() + max_edges > MAX_INDEX {
            return Err(Problems(vec![Problem::new(
                "tasks",
                ProblemKind::OutOfRange,
                format!(
                    "{} tasks would take the graph past its limit of {MAX_INDEX} nodes or edges",
                    tasks.len()
                ),
            )]));
        }
        let batch = check_batch(&mut self.tasks, base, tasks)?;
        self.graph.reserve_nodes(tasks.len());
        self.graph
            .reserve_edges(batch.deps.len() + tasks.len() * (1 + self.entry.len()));
        for t in tasks {
            // The id is in the task index already (check_batch put it there).
            self.graph.add_node(ItemRef::Task(t.id.clone()));
        }
        let mut deps: Vec<Ix> = Vec::new();
        for i in 0..tasks.len() {
            deps.clear();
            deps.extend(batch.deps_of(i).iter().map(|d| match *d {
                Dep::Old(ix) => ix,
                Dep::New(j) => NodeIndex::new(base + j as usize),
            }));
            self.link_task(NodeIndex::new(base + i), &deps);
        }
        Ok(())
    }

    /// How many nodes (phases and tasks) the graph has.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no nodes (never true for a graph built from a workflow, which has
    /// at least one phase).
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// How many phase nodes there are (they are nodes `0..phase_count()`).
    pub fn phase_count(&self) -> usize {
        self.phase_count
    }

    /// How many task nodes there are.
    pub fn task_count(&self) -> usize {
        self.graph.node_count() - self.phase_count
    }

    /// How many edges (dependency → dependent) there are.
    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// The node of the task phase, which depends on every task.
    pub fn task_phase(&self) -> NodeId {
        NodeId::of(self.task_phase)
    }

    /// What a node stands for, or `None` for a node this graph does not have.
    pub fn key(&self, node: NodeId) -> Option<&ItemRef> {
        self.graph.node_weight(node.ix())
    }

    /// The node of a phase or task.
    pub fn node(&self, item: &ItemRef) -> Option<NodeId> {
        match item {
            ItemRef::Phase(p) => self.phase_node(p.as_str()),
            ItemRef::Task(t) => self.task_node(t.as_str()),
        }
    }

    /// The node of the task with this id.
    pub fn task_node(&self, id: &str) -> Option<NodeId> {
        self.tasks.get(id).map(|&ix| NodeId::of(ix))
    }

    /// The node of the phase with this id.
    pub fn phase_node(&self, id: &str) -> Option<NodeId> {
        (0..self.phase_count)
            .find(|&i| self.graph[NodeIndex::<u32>::new(i)].as_str() == id)
            .map(|i| NodeId(i as u32))
    }

    /// Every node with what it stands for, in index order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &ItemRef)> + '_ {
        self.graph
            .node_indices()
            .map(|ix| (NodeId::of(ix), &self.graph[ix]))
    }

    /// Every edge as `(dependency, dependent)`, in the order edges were added.
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.graph
            .raw_edges()
            .iter()
            .map(|e| (NodeId::of(e.source()), NodeId::of(e.target())))
    }

    /// The direct dependencies of a node (empty for a node this graph does not have). The
    /// order is deterministic but unspecified.
    pub fn dependencies(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.neighbors(node, Incoming)
    }

    /// The direct dependents of a node: the nodes that wait for it (empty for a node this graph
    /// does not have). The order is deterministic but unspecified.
    pub fn dependents(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.neighbors(node, Outgoing)
    }

    fn neighbors(
        &self,
        node: NodeId,
        dir: petgraph::Direction,
    ) -> impl Iterator<Item = NodeId> + '_ {
        let valid = node.index() < self.graph.node_count();
        valid
            .then(|| self.graph.neighbors_directed(node.ix(), dir))
            .into_iter()
            .flatten()
            .map(NodeId::of)
    }

    /// Every node, each after all of its dependencies. Stable: among nodes the graph leaves
    /// unordered, the lower index comes first (phases in workflow order, tasks in the order
    /// they were added). O((V + E) log V).
    pub fn topological_order(&self) -> Vec<NodeId> {
        let n = self.graph.node_count();
        let mut indeg: Vec<u32> = vec![0; n];
        for e in self.graph.raw_edges() {
            indeg[e.target().index()] += 1;
        }
        let mut heap: BinaryHeap<Reverse<u32>> = (0..n as u32)
            .filter(|&v| indeg[v as usize] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(v)) = heap.pop() {
            order.push(NodeId(v));
            for w in self
                .graph
                .neighbors_directed(NodeIndex::new(v as usize), Outgoing)
            {
                let d = &mut indeg[w.index()];
                *d -= 1;
                if *d == 0 {
                    heap.push(Reverse(w.index() as u32));
                }
            }
        }
        order
    }

    /// The nodes that may start now: not done, with every dependency done. `is_done` is asked
    /// once per node. O(V + E); use a [`ReadyTracker`] to follow a run.
    pub fn ready(&self, mut is_done: impl FnMut(&ItemRef) -> bool) -> Vec<NodeId> {
        let done: Vec<bool> = self.graph.node_weights().map(&mut is_done).collect();
        self.graph
            .node_indices()
            .filter(|&v| {
                !done[v.index()]
                    && self
                        .graph
                        .neighbors_directed(v, Incoming)
                        .all(|u| done[u.index()])
            })
            .map(NodeId::of)
            .collect()
    }

    /// The critical path: the chain of dependent nodes with the largest total estimate, and
    /// that total (saturating at `u64::MAX`). `estimate` is asked once per node; give phases
    /// and tasks without an estimate 0 (or a default). Ties go to the lower node index, so the
    /// answer is deterministic. Returns an empty path and 0 for an empty graph.
    pub fn critical_path(&self, mut estimate: impl FnMut(&ItemRef) -> u64) -> (Vec<NodeId>, u64) {
        let n = self.graph.node_count();
        let mut best: Vec<u64> = vec![0; n];
        let mut prev: Vec<u32> = vec![u32::MAX; n];
        for v in self.topological_order() {
            let ix = v.ix();
            let mut from: Option<(u64, u32)> = None;
            for u in self.graph.neighbors_directed(ix, Incoming) {
                let cand = (best[u.index()], u.index() as u32);
                from = match from {
                    Some(f) if f.0 > cand.0 || (f.0 == cand.0 && f.1 < cand.1) => Some(f),
                    _ => Some(cand),
                };
            }
            let own = estimate(&self.graph[ix]);
            let (base, p) = from.unwrap_or((0, u32::MAX));
            best[v.index()] = base.saturating_add(own);
            prev[v.index()] = p;
        }
        let Some(end) = (0..n).fold(None::<usize>, |acc, v| match acc {
            Some(a) if best[a] >= best[v] => Some(a),
            _ => Some(v),
        }) else {
            return (Vec::new(), 0);
        };
        let mut path = vec![NodeId(end as u32)];
        let mut cur = end;
        while prev[cur] != u32::MAX {
            cur = prev[cur] as usize;
            path.push(NodeId(cur as u32));
        }
        path.reverse();
        (path, best[end])
    }

    /// An estimate of the heap memory the graph holds, in bytes: node and edge storage and the
    /// task index by capacity, plus the id strings of its tasks (shared with the [`TaskSpec`]s
    /// they came from, so counted here as an upper bound). Does not include `size_of::<WorkGraph>()`.
    pub fn memory_estimate(&self) -> usize {
        use std::mem::size_of;
        let (node_cap, edge_cap) = self.graph.capacity();
        let nodes = node_cap * size_of::<petgraph::graph::Node<ItemRef, u32>>();
        let edges = edge_cap * size_of::<petgraph::graph::Edge<(), u32>>();
        // hashbrown: one slot of (key, value) plus one control byte per bucket; buckets are a
        // power of two at least capacity * 8 / 7.
        let buckets = if self.tasks.capacity() == 0 {
            0
        } else {
            (self.tasks.capacity() * 8 / 7).next_power_of_two()
        };
        let index = buckets * (size_of::<(TaskId, Ix)>() + 1);
        // Arc<str>: two reference counts plus the bytes.
        let ids: usize = self
            .graph
            .node_weights()
            .map(|k| 2 * size_of::<usize>() + k.as_str().len())
            .sum();
        nodes + edges + index + ids + self.entry.capacity() * size_of::<Ix>()
    }
}

/// `tasks` in an order where every task comes after its dependencies. Stable: tasks the
/// dependencies leave unordered keep their input order (the result is the input order whenever
/// that already works). This is the order [`Event::TasksAdded`](crate::Event::TasksAdded)
/// requires.
///
/// ```
/// use milestone_core::graph::order_tasks;
/// use milestone_core::{TaskId, TaskSpec};
///
/// let mut b = TaskSpec::new(TaskId::new("b")?, "B");
/// b.dependencies.push(TaskId::new("a")?);
/// let c = TaskSpec::new(TaskId::new("c")?, "C");
/// let a = TaskSpec::new(TaskId::new("a")?, "A");
/// let ordered = order_tasks(&[b, c, a])?;
/// let ids: Vec<&str> = ordered.iter().map(|t| t.id.as_str()).collect();
/// assert_eq!(ids, ["c", "a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`Problems`] as for [`WorkGraph::new`]: duplicate ids, unknown dependencies,
/// self-dependencies and cycles, all at once.
pub fn order_tasks(tasks: &[TaskSpec]) -> Result<Vec<TaskSpec>, Problems> {
    Ok(task_order(tasks)?
        .into_iter()
        .map(|i| tasks[i].clone())
        .collect())
}

/// [`order_tasks`] as positions into `tasks`, without cloning any task.
///
/// # Errors
/// As [`order_tasks`].
pub fn task_order(tasks: &[TaskSpec]) -> Result<Vec<usize>, Problems> {
    let batch = check_batch(&mut HashMap::new(), 0, tasks)?;
    Ok(batch.order.iter().map(|&i| i as usize).collect())
}

/// Checks a batch of tasks against the tasks already present, reporting every problem.
///
/// To hash each id once, the batch's ids go straight into `index` (task `i` at node
/// `base + i`); on error they are taken out again, so `index` is unchanged.
fn check_batch(
    index: &mut HashMap<TaskId, Ix>,
    base: usize,
    tasks: &[TaskSpec],
) -> Result<Batch, Problems> {
    let k = tasks.len();
    let mut problems = Vec::new();
    index.reserve(k);
    for (i, t) in tasks.iter().enumerate() {
        match index.entry(t.id.clone()) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(NodeIndex::new(base + i));
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let id = t.id.as_str();
                let message = match o.get().index().checked_sub(base) {
                    Some(first) => format!("task id {id:?} is already used by tasks[{first}]"),
                    None => format!("task id {id:?} is already in the graph"),
                };
                problems.push(Problem::new(
                    format!("tasks[{i}].id"),
                    ProblemKind::DuplicateId,
                    message,
                ));
            }
        }
    }
    let mut deps: Vec<Dep> = Vec::with_capacity(k);
    let mut starts: Vec<usize> = Vec::with_capacity(k + 1);
    let mut indeg: Vec<u32> = vec![0; k];
    for (i, t) in tasks.iter().enumerate() {
        starts.push(deps.len());
        let from = deps.len();
        for (j, d) in t.dependencies.iter().enumerate() {
            let dep = if *d == t.id {
                problems.push(Problem::new(
                    format!("tasks[{i}].dependencies[{j}]"),
                    ProblemKind::SelfDependency,
                    format!("task {:?} depends on itself", t.id.as_str()),
                ));
                continue;
            } else if let Some(&ix) = index.get(d.as_str()) {
                match ix.index().checked_sub(base) {
                    Some(n) => Dep::New(n as u32),
                    None => Dep::Old(ix),
                }
            } else {
                problems.push(Problem::new(
                    format!("tasks[{i}].dependencies[{j}]"),
                    ProblemKind::UnknownDependency,
                    format!(
                        "task {:?} depends on unknown task {:?}",
                        t.id.as_str(),
                        d.as_str()
                    ),
                ));
                continue;
            };
            deps.push(dep);
        }
        dedup_tail(&mut deps, from);
        indeg[i] = deps[from..]
            .iter()
            .filter(|d| matches!(d, Dep::New(_)))
            .count() as u32;
    }
    starts.push(deps.len());
    let batch = Batch {
        deps,
        starts,
        order: Vec::new(),
    };
    let order = stable_order(&batch, indeg);
    if order.len() < k {
        cycles(tasks, &batch, &order, &mut problems);
    }
    if !problems.is_empty() {
        for (i, t) in tasks.iter().enumerate() {
            if index.get(t.id.as_str()) == Some(&NodeIndex::new(base + i)) {
                index.remove(t.id.as_str());
            }
        }
    }
    Problems(problems).into_result(Batch { order, ..batch })
}

/// Removes repeated values from `v[from..]`. Short lists keep their first occurrences in order;
/// long ones are sorted first, so that a task listing 100,000 dependencies costs O(d log d),
/// not O(d²).
fn dedup_tail<T: Ord + Copy>(v: &mut Vec<T>, from: usize) {
    const SHORT: usize = 16;
    if v.len() - from <= SHORT {
        let mut w = from;
        for r in from..v.len() {
            let x = v[r];
            if !v[from..w].contains(&x) {
                v[w] = x;
                w += 1;
            }
        }
        v.truncate(w);
    } else {
        let mut tail = v.split_off(from);
        tail.sort_unstable();
        tail.dedup();
        v.append(&mut tail);
    }
}

/// Kahn's algorithm over the batch with a min-heap: the lexicographically smallest
/// dependency-respecting order. Shorter than the batch when there are cycles.
fn stable_order(batch: &Batch, mut indeg: Vec<u32>) -> Vec<u32> {
    let k = indeg.len();
    // Dependents of each batch task, in CSR form.
    let mut out_start = vec![0usize; k + 1];
    for d in &batch.deps {
        if let Dep::New(n) = *d {
            out_start[n as usize + 1] += 1;
        }
    }
    for i in 0..k {
        out_start[i + 1] += out_start[i];
    }
    let mut fill = out_start.clone();
    let mut out = vec![0u32; out_start[k]];
    for i in 0..k {
        for d in batch.deps_of(i) {
            if let Dep::New(n) = *d {
                out[fill[n as usize]] = i as u32;
                fill[n as usize] += 1;
            }
        }
    }
    let mut heap: BinaryHeap<Reverse<u32>> = (0..k as u32)
        .filter(|&i| indeg[i as usize] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(k);
    while let Some(Reverse(v)) = heap.pop() {
        order.push(v);
        let v = v as usize;
        for &w in &out[out_start[v]..out_start[v + 1]] {
            let d = &mut indeg[w as usize];
            *d -= 1;
            if *d == 0 {
                heap.push(Reverse(w));
            }
        }
    }
    order
}

/// Reports one cycle per strongly connected component of the tasks Kahn's algorithm could not
/// order. Uses petgraph's Kosaraju (iterative, so a cycle of 100,000 tasks cannot overflow
/// the stack).
fn cycles(tasks: &[TaskSpec], batch: &Batch, ordered: &[u32], problems: &mut Vec<Problem>) {
    let k = tasks.len();
    let mut in_order = vec![false; k];
    for &v in ordered {
        in_order[v as usize] = true;
    }
    // Edges dependent → dependency among the unordered tasks: following them walks "depends on".
    let mut g: DiGraph<(), (), u32> = DiGraph::with_capacity(k, 0);
    for _ in 0..k {
        g.add_node(());
    }
    for i in (0..k).filter(|&i| !in_order[i]) {
        for d in batch.deps_of(i) {
            if let Dep::New(n) = *d
                && !in_order[n as usize]
            {
                g.add_edge(NodeIndex::new(i), NodeIndex::new(n as usize), ());
            }
        }
    }
    let mut comps: Vec<Vec<usize>> = petgraph::algo::kosaraju_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(|ix| ix.index()).collect();
            c.sort_unstable();
            c
        })
        .collect();
    comps.sort_unstable_by_key(|c| c[0]);
    let mut comp_of = vec![usize::MAX; k];
    for (ci, c) in comps.iter().enumerate() {
        for &v in c {
            comp_of[v] = ci;
        }
    }
    let mut parent = vec![u32::MAX; k];
    for (ci, c) in comps.iter().enumerate() {
        let s = c[0];
        let path = shortest_cycle(&g, s, |v| comp_of[v] == ci, &mut parent);
        let mut ids: Vec<&str> = path.iter().map(|&v| tasks[v].id.as_str()).collect();
        ids.push(tasks[s].id.as_str());
        problems.push(Problem::new(
            format!("tasks[{s}].dependencies"),
            ProblemKind::Cycle,
            format!("dependency cycle: {}", show_path(&ids)),
        ));
    }
}

/// Breadth-first search from `s` back to `s` within one component: the shortest cycle through
/// `s`, as `[s, v1, …, vk]` (vk has an edge back to s).
fn shortest_cycle(
    g: &DiGraph<(), (), u32>,
    s: usize,
    inside: impl Fn(usize) -> bool,
    parent: &mut [u32],
) -> Vec<usize> {
    let mut queue = std::collections::VecDeque::from([s]);
    parent[s] = s as u32;
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in g.neighbors_directed(NodeIndex::new(v), Outgoing) {
            let w = w.index();
            if w == s {
                last = Some(v);
                break 'search;
            }
            if inside(w) && parent[w] == u32::MAX {
                parent[w] = v as u32;
                queue.push_back(w);
            }
        }
    }
    // In a strongly connected component the search always comes back to `s`.
    let mut path = Vec::new();
    let mut cur = last.unwrap_or(s);
    loop {
        path.push(cur);
        if cur == s {
            break;
        }
        cur = parent[cur] as usize;
    }
    path.reverse();
    path
}

fn show_path(ids: &[&str]) -> String {
    if ids.len() <= MAX_CYCLE_SHOWN {
        return ids.join(" -> ");
    }
    let head = MAX_CYCLE_SHOWN / 2;
    let tail = MAX_CYCLE_SHOWN - head;
    format!(
        "{} -> … {} more … -> {}",
        ids[..head].join(" -> "),
        ids.len() - head - tail,
        ids[ids.len() - tail..].join(" -> ")
    )
}

/// Why a [`ReadyTracker`] refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    /// The node is not in the graph the tracker follows.
    #[error("node {node} is not tracked")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// The node was already completed.
    #[error("{item} is already done")]
    AlreadyDone {
        /// The node's item.
        item: ItemRef,
    },
    /// The node still has unfinished dependencies.
    #[error("{item} still waits for {remaining} dependencies")]
    NotReady {
        /// The node's item.
        item: ItemRef,
        /// How many dependencies are not done.
        remaining: u32,
    },
    /// New tasks would make a node that is already done depend on them.
    #[error("{item} is already done, but new {dependency} would be one of its dependencies")]
    DoneNodeGainsDependency {
        /// The done node.
        item: ItemRef,
        /// The new node it would wait for.
        dependency: ItemRef,
    },
    /// The graph does not have as many nodes as the tracker follows: it is another graph, or
    /// tasks were added and [`ReadyTracker::sync`] was not called (completing a node then could
    /// release the task phase before the new tasks are done).
    #[error(
        "the graph has {graph} nodes but the tracker follows {tracked}: \
         another graph, or tasks added without sync"
    )]
    GraphMismatch {
        /// Nodes in the graph.
        graph: usize,
        /// Nodes in the tracker.
        tracked: usize,
    },
}

/// Follows a run over a [`WorkGraph`]: which nodes are done, and for every other node how many
/// of its dependencies are not. Completing a node costs O(its number of dependents) and yields
/// exactly the nodes that became ready; nothing scans the graph and nothing allocates per node.
///
/// The tracker does not hold the graph (so the graph can grow while it runs): pass the same
/// graph to every call, and call [`ReadyTracker::sync`] after [`WorkGraph::add_tasks`].
///
/// "Ready" means *may start*: the tracker knows nothing of what is running. The caller (the
/// scheduling engine) hands each newly ready node out once, and a node that fails is simply
/// never completed, so its dependents stay waiting.
#[derive(Debug, Clone, Default)]
pub struct ReadyTracker {
    remaining: Vec<u32>,
    done: Vec<bool>,
    done_count: usize,
}

impl ReadyTracker {
    /// A tracker where nothing is done yet.
    pub fn new(graph: &WorkGraph) -> ReadyTracker {
        ReadyTracker::resume(graph, |_| false)
    }

    /// A tracker resuming a run: `is_done` (asked once per node) says which nodes are done
    /// already; every other node waits for its dependencies that are not. O(V + E).
    pub fn resume(graph: &WorkGraph, mut is_done: impl FnMut(&ItemRef) -> bool) -> ReadyTracker {
        let done: Vec<bool> = graph.graph.node_weights().map(&mut is_done).collect();
        let remaining = graph
            .graph
            .node_indices()
            .map(|v| {
                graph
                    .graph
                    .neighbors_directed(v, Incoming)
                    .filter(|u| !done[u.index()])
                    .count() as u32
            })
            .collect();
        let done_count = done.iter().filter(|&&d| d).count();
        ReadyTracker {
            remaining,
            done,
            done_count,
        }
    }

    /// The nodes ready now: not done, with every dependency done. O(V): call it to start or
    /// resume a run, then follow [`ReadyTracker::complete_into`].
    pub fn ready(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.remaining.len())
            .filter(|&v| self.remaining[v] == 0 && !self.done[v])
            .map(|v| NodeId(v as u32))
    }

    /// Marks `node` done and pushes onto `newly_ready` every node that became ready because of
    /// it, in O(out-degree). Returns how many were pushed.
    ///
    /// # Errors
    /// [`TrackError`] when the graph is not in step with the tracker (call
    /// [`ReadyTracker::sync`] after [`WorkGraph::add_tasks`]), or the node is unknown, already
    /// done or not ready; the tracker is then unchanged.
    pub fn complete_into(
        &mut self,
        graph: &WorkGraph,
        node: NodeId,
        newly_ready: &mut Vec<NodeId>,
    ) -> Result<usize, TrackError> {
        if graph.len() != self.remaining.len() {
            return Err(TrackError::GraphMismatch {
                graph: graph.len(),
                tracked: self.remaining.len(),
            });
        }
        let i = node.index();
        let (Some(&left), Some(item)) = (self.remaining.get(i), graph.key(node)) else {
            return Err(TrackError::UnknownNode { node });
        };
        if self.done[i] {
            return Err(TrackError::AlreadyDone { item: item.clone() });
        }
        if left > 0 {
            return Err(TrackError::NotReady {
                item: item.clone(),
                remaining: left,
            });
        }
        self.done[i] = true;
        self.done_count += 1;
        let before = newly_ready.len();
        for w in graph.graph.neighbors_directed(node.ix(), Outgoing) {
            let w = w.index();
            if let Some(r) = self.remaining.get_mut(w) {
                *r = r.saturating_sub(1);
                if *r == 0 && !self.done[w] {
                    newly_ready.push(NodeId(w as u32));
                }
            }
        }
        Ok(newly_ready.len() - before)
    }

    /// [`ReadyTracker::complete_into`] returning the newly ready nodes.
    ///
    /// # Errors
    /// As [`ReadyTracker::complete_into`].
    pub fn complete(&mut self, graph: &WorkGraph, node: NodeId) -> Result<Vec<NodeId>, TrackError> {
        let mut out = Vec::new();
        self.complete_into(graph, node, &mut out)?;
        Ok(out)
    }

    /// Takes in the nodes added to `graph` since the tracker last saw it (after
    /// [`WorkGraph::add_tasks`]) and pushes those that are ready onto `newly_ready`. A node
    /// that gains a new dependency (the task phase, which waits for every task) stops being
    /// ready until that dependency is done. O(new nodes + their edges).
    ///
    /// # Errors
    /// [`TrackError::GraphMismatch`] when the graph has fewer nodes than the tracker, and
    /// [`TrackError::DoneNodeGainsDependency`] when a new node would hold back a node already
    /// done; the tracker is then unchanged.
    pub fn sync(
        &mut self,
        graph: &WorkGraph,
        newly_ready: &mut Vec<NodeId>,
    ) -> Result<(), TrackError> {
        let old = self.remaining.len();
        let n = graph.len();
        if n < old {
            return Err(TrackError::GraphMismatch {
                graph: n,
                tracked: old,
            });
        }
        let new_nodes = || (old..n).map(NodeIndex::<u32>::new);
        for v in new_nodes() {
            for w in graph.graph.neighbors_directed(v, Outgoing) {
                if w.index() < old && self.done[w.index()] {
                    return Err(TrackError::DoneNodeGainsDependency {
                        item: graph.graph[w].clone(),
                        dependency: graph.graph[v].clone(),
                    });
                }
            }
        }
        for v in new_nodes() {
            let left = graph
                .graph
                .neighbors_directed(v, Incoming)
                .filter(|u| u.index() >= old || !self.done[u.index()])
                .count() as u32;
            self.remaining.push(left);
            self.done.push(false);
        }
        for v in new_nodes() {
            for w in graph.graph.neighbors_directed(v, Outgoing) {
                if w.index() < old {
                    self.remaining[w.index()] += 1;
                }
            }
        }
        newly_ready.extend(
            (old..n)
                .filter(|&v| self.remaining[v] == 0)
                .map(|v| NodeId(v as u32)),
        );
        Ok(())
    }

    /// Whether `node` is done (false for an unknown node).
    pub fn is_done(&self, node: NodeId) -> bool {
        self.done.get(node.index()).copied().unwrap_or(false)
    }

    /// Whether `node` is ready: not done, every dependency done (false for an unknown node).
    pub fn is_ready(&self, node: NodeId) -> bool {
        self.remaining.get(node.index()) == Some(&0) && !self.is_done(node)
    }

    /// How many dependencies of `node` are not done, or `None` for an unknown node.
    pub fn remaining(&self, node: NodeId) -> Option<u32> {
        self.remaining.get(node.index()).copied()
    }

    /// How many nodes are done.
    pub fn done_count(&self) -> usize {
        self.done_count
    }

    /// How many nodes the tracker follows.
    pub fn len(&self) -> usize {
        self.remaining.len()
    }

    /// Whether the tracker follows no nodes.
    pub fn is_empty(&self) -> bool {
        self.remaining.is_empty()
    }

    /// Whether every node is done.
    pub fn is_finished(&self) -> bool {
        self.done_count == self.remaining.len()
    }
}
