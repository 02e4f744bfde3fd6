//! Work graph benchmarks: build + validation, stable ordering, and a full run of the ready
//! tracker, at 10,000 and 100,000 tasks. The DESIGN.md target: a 100,000-task milestone
//! validates and builds in ≤ 100 ms and holds ≤ 1 KiB of memory per task. Memory per task is
//! printed once (the graph's own estimate and the resident-set growth read from
//! `/proc/self/statm`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use milestone_benches::workloads::{chain, independent, layered};
use milestone_core::graph::{ReadyTracker, WorkGraph, order_tasks};
use milestone_core::{Event, MilestoneId, MilestoneState, TaskSpec, Timestamp, Workflow};

const SIZES: [usize; 2] = [10_000, 100_000];

fn workload(name: &str, n: usize) -> Vec<TaskSpec> {
    let n = u32::try_from(n).expect("benchmark sizes fit in u32");
    match name {
        "w1-independent" => independent(n),
        "w2-chain" => chain(n),
        _ => layered(n),
    }
    .task_specs()
    .expect("generated ids are valid")
}

fn build(c: &mut Criterion) {
    let wf = Workflow::kiro();
    let mut g = c.benchmark_group("graph_build");
    g.sample_size(10);
    for n in SIZES {
        for name in ["w1-independent", "w2-chain", "w3-layered"] {
            let tasks = workload(name, n);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(name, n), &tasks, |b, tasks| {
                b.iter(|| WorkGraph::new(&wf, black_box(tasks)).expect("valid workload"))
            });
        }
        // Any order: the same layered workload listed backwards.
        let mut reversed = workload("w3-layered", n);
        reversed.reverse();
        g.bench_with_input(BenchmarkId::new("w3-reversed", n), &reversed, |b, tasks| {
            b.iter(|| WorkGraph::new(&wf, black_box(tasks)).expect("valid workload"))
        });
    }
    g.finish();
}

/// A milestone state holding `tasks`, as the event fold builds it.
fn state_with(tasks: Vec<TaskSpec>) -> MilestoneState {
    let mut state = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("bench").expect("valid id"),
        title: "Bench".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .expect("created");
    state
        .apply(&Event::TasksAdded {
            at: Timestamp(1),
            tasks,
        })
        .expect("tasks in dependency order");
    state
}

fn from_state(c: &mut Criterion) {
    let mut g = c.benchmark_group("graph_from_state");
    g.sample_size(10);
    for n in SIZES {
        let state = state_with(workload("w3-layered", n));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("w3-layered", n), &state, |b, state| {
            b.iter(|| WorkGraph::from_state(black_box(state)))
        });
    }
    g.finish();
}

fn order(c: &mut Criterion) {
    let mut g = c.benchmark_group("order_tasks");
    g.sample_size(10);
    for n in SIZES {
        let mut reversed = workload("w3-layered", n);
        reversed.reverse();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("w3-reversed", n), &reversed, |b, tasks| {
            b.iter(|| order_tasks(black_box(tasks)).expect("valid workload"))
        });
    }
    g.finish();
}

/// A whole run: start a tracker, complete every node as it becomes ready.
fn run(graph: &WorkGraph) -> usize {
    let mut tracker = ReadyTracker::new(graph);
    let mut ready: Vec<_> = tracker.ready().collect();
    let mut done = 0;
    while let Some(node) = ready.pop() {
        tracker
            .complete_into(graph, node, &mut ready)
            .expect("ready node");
        done += 1;
    }
    done
}

fn ready_updates(c: &mut Criterion) {
    let wf = Workflow::kiro();
    let mut g = c.benchmark_group("ready_tracker_run");
    g.sample_size(10);
    for n in SIZES {
        for name in ["w1-independent", "w2-chain", "w3-layered"] {
            let graph = WorkGraph::new(&wf, &workload(name, n)).expect("valid workload");
            g.throughput(Throughput::Elements(n as u64));
            g.bench_with_input(BenchmarkId::new(name, n), &graph, |b, graph| {
                b.iter(|| run(black_box(graph)))
            });
        }
    }
    g.finish();
    // Growing while running: add 1,000 tasks to a 100k graph, then sync the tracker.
    let mut g = c.benchmark_group("grow_while_running");
    g.sample_size(10);
    let base = WorkGraph::new(&wf, &workload("w3-layered", 100_000)).expect("valid workload");
    let extra: Vec<TaskSpec> = workload("w3-layered", 101_000).split_off(100_000);
    g.throughput(Throughput::Elements(extra.len() as u64));
    g.bench_function("add_1000_to_100k_and_sync", |b| {
        b.iter_batched(
            || (base.clone(), ReadyTracker::new(&base)),
            |(mut graph, mut tracker)| {
                graph.add_tasks(&extra).expect("valid batch");
                let mut newly = Vec::new();
                tracker.sync(&graph, &mut newly).expect("in sync");
                // Returned so that dropping the 100k graph is not timed.
                (graph, tracker, newly)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Resident set size in bytes (Linux; 0 elsewhere). Pages are taken as 4 KiB.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn memory(_: &mut Criterion) {
    let n = 100_000;
    let before_tasks = rss();
    let tasks = workload("w3-layered", n);
    let before_graph = rss();
    let graph = WorkGraph::new(&Workflow::kiro(), &tasks).expect("valid workload");
    let after = rss();
    let tracker = ReadyTracker::new(&graph);
    let after_tracker = rss();
    eprintln!(
        "memory, w3-layered {n} tasks: graph estimate {} B/task; RSS growth: graph {} B/task, \
         task specs {} B/task, tracker {} B/task",
        graph.memory_estimate() / n,
        after.saturating_sub(before_graph) / n,
        before_graph.saturating_sub(before_tasks) / n,
        after_tracker.saturating_sub(after) / n,
    );
    black_box((graph, tracker, tasks));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = memory, build, from_state, order, ready_updates
}
criterion_main!(benches);
