//! The 100,000-task milestone of DESIGN.md, next to the same milestone at 10,000 tasks (the W3
//! shape, `layered(n)`), against the design's targets:
//!
//! - "A 100,000-task milestone validates and builds in ≤ 100 ms, resumes in ≤ 200 ms, and
//!   holds ≤ 1 KiB of memory per task."
//! - "Persisting a transition costs O(1) in the milestone's size: per-task cost at 100,000
//!   tasks is within 1.5x of the cost at 10,000."
//!
//! Groups: `m100k_validate_build` (plan validation + initial execution state, and the work graph
//! alone for reference), `m100k_resume` (`Engine::resume` from the log of a half-done
//! milestone, and a cold `FileStore` load of it), `m100k_persist` (one task transition,
//! `ItemStarted` + `ItemCompleted`, appended to `InMemory` and to `FileStore`). Memory per
//! task is printed once, not timed. Each group ends with a line of 100k/10k ratios read from
//! criterion's own medians.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use milestone_benches::workloads::layered;
use milestone_core::engine::{
    Command, Engine, EngineConfig, Input, RecoveryConfig, RecoveryStep, StartMode, Step, Work,
};
use milestone_core::graph::WorkGraph;
use milestone_core::plan::{
    MilestonePlan, initial_execution_state, start_execution, validate_plan,
};
use milestone_core::state::ItemStatus;
use milestone_core::{
    Artifact, ArtifactBody, Event, ItemOutput, ItemRef, MilestoneId, MilestoneState, TaskId,
    TaskSpec, Timestamp, Workflow,
};
use milestone_state::{FileStore, FileStoreOptions, InMemory, StateStore};

const SIZES: [u32; 2] = [10_000, 100_000];
/// Events per `append` call when a log is written to a store.
const BATCH: usize = 1_000;

fn tasks(n: u32) -> Vec<TaskSpec> {
    layered(n).task_specs().expect("generated ids are valid")
}

/// A plan holding `n` W3 tasks, with every section filled so that it is valid for KIRO.
fn plan(n: u32) -> MilestonePlan {
    milestone_benches::workloads::kiro_plan(tasks(n))
}

/// `Created` + `PlanRecorded`: a milestone in planning mode with its plan recorded.
fn planning_log(n: u32) -> Vec<Event> {
    vec![
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m100k").expect("valid id"),
            title: "100k".into(),
            context: String::new(),
            workflow: Workflow::kiro(),
            seed: 1,
        },
        Event::PlanRecorded {
            at: Timestamp(1),
            plan: Box::new(plan(n)),
        },
    ]
}

/// The log of the milestone in execution mode with about half its tasks completed: the
/// planning log, the transition's events, then the events of an engine driven with no-op
/// results (phases answer with their expected artifacts) until half the tasks are done.
fn half_done_log(n: u32) -> Vec<Event> {
    let mut log = planning_log(n);
    let state = MilestoneState::from_events(&log).expect("planning log folds");
    log.extend(start_execution(&state, Timestamp(2)).expect("the plan is valid"));
    let mut engine = Engine::resume(&log, EngineConfig::default()).expect("resume");
    let mut step = Step::default();
    let mut now = 3;
    engine
        .handle_into(
            Input::Start(StartMode::Execution),
            Timestamp(now),
            &mut step,
        )
        .expect("start");
    let mut queue: Vec<(Work, u32)> = Vec::new();
    let mut done = 0;
    loop {
        for e in step.events.drain(..) {
            if matches!(
                e,
                Event::ItemCompleted {
                    item: ItemRef::Task(_),
                    ..
                }
            ) {
                done += 1;
            }
            log.push(e);
        }
        queue.extend(step.commands.drain(..).filter_map(|c| match c {
            Command::Start(s) => Some((s.work, s.attempt)),
            _ => None,
        }));
        if done >= n / 2 {
            break;
        }
        let Some((work, attempt)) = queue.pop() else {
            break;
        };
        let artifacts = match &work {
            Work::Item(ItemRef::Phase(p)) => engine
                .state()
                .workflow()
                .phase(p.as_str())
                .map(|p| p.expected_outputs.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|name| Artifact {
                    name,
                    kind: "document".into(),
                    body: ArtifactBody::Inline(String::new()),
                })
                .collect(),
            _ => Vec::new(),
        };
        now += 1;
        engine
            .handle_into(
                Input::Finished {
                    work,
                    attempt,
                    output: ItemOutput {
                        artifacts,
                        ..ItemOutput::default()
                    }
                    .into(),
                },
                Timestamp(now),
                &mut step,
            )
            .expect("finished");
    }
    assert!(done >= n / 2, "only {done} of {n} tasks completed");
    log
}

/// Writes `log` to `store` (create, then appends of [`BATCH`] events); returns the version.
fn write_log<S: StateStore>(store: &S, log: &[Event]) -> u64 {
    let id = MilestoneId::new("m100k").expect("valid id");
    let mut version = block_on(store.create(&log[0])).expect("create");
    for chunk in log[1..].chunks(BATCH) {
        version = block_on(store.append(&id, version, chunk)).expect("append");
    }
    version
}

/// When this run started (set by the first group, before it measures anything).
static STARTED: OnceLock<SystemTime> = OnceLock::new();

/// The median of a benchmark criterion has just measured, in nanoseconds, from its
/// `estimates.json` (None when the file is not where criterion usually writes it).
fn median_ns(group: &str, function: &str, n: u32) -> Option<f64> {
    let roots: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("../target"), PathBuf::from("target")])
        .collect();
    roots.iter().find_map(|root| {
        let path = root
            .join("criterion")
            .join(group)
            .join(function)
            .join(n.to_string())
            .join("new/estimates.json");
        // Only a median written by this run (a filtered run leaves older files behind).
        let written = std::fs::metadata(&path).ok()?.modified().ok()?;
        if written < *STARTED.get_or_init(SystemTime::now) {
            return None;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        json["median"]["point_estimate"].as_f64()
    })
}

/// Prints each function's 100k/10k median ratio. With `whole` the benchmark handles the
/// whole milestone, so the per-task ratio is the ratio over 10 (the sizes are 10x apart: 1.0
/// is linear, 1.5 the design's bound); otherwise it times one transition and the ratio is
/// already per task.
fn print_ratios(group: &str, functions: &[&str], whole: bool) {
    for f in functions {
        match (median_ns(group, f, SIZES[0]), median_ns(group, f, SIZES[1])) {
            (Some(small), Some(large)) => eprintln!(
                "{group}/{f}: median 10k {:.1} us, 100k {:.1} us, ratio 100k/10k {:.2}, \
                 per task {:.2}x",
                small / 1e3,
                large / 1e3,
                large / small,
                if whole {
                    large / small / f64::from(SIZES[1] / SIZES[0])
                } else {
                    large / small
                },
            ),
            _ => eprintln!("{group}/{f}: no medians of this run under target/criterion"),
        }
    }
}

fn validate_build(c: &mut Criterion) {
    let wf = Workflow::kiro();
    let group = "m100k_validate_build";
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for n in SIZES {
        let state = MilestoneState::from_events(&planning_log(n)).expect("planning log folds");
        let p = state.plan().expect("plan recorded").clone();
        let built = initial_execution_state(&state, Timestamp(2)).expect("valid plan");
        assert_eq!(built.tasks().len(), n as usize);
        g.bench_with_input(
            BenchmarkId::new("validate_and_build", n),
            &state,
            |b, state| {
                b.iter_with_large_drop(|| {
                    validate_plan(black_box(&p), &wf).expect("valid");
                    initial_execution_state(black_box(state), Timestamp(2)).expect("builds")
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("work_graph_new", n), &p, |b, p| {
            b.iter_with_large_drop(|| WorkGraph::new(&wf, black_box(&p.tasks)).expect("valid"))
        });
    }
    g.finish();
    print_ratios(group, &["validate_and_build", "work_graph_new"], true);
}

fn resume(c: &mut Criterion) {
    let group = "m100k_resume";
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let id = MilestoneId::new("m100k").expect("valid id");
    for n in SIZES {
        let log = half_done_log(n);
        let engine = Engine::resume(&log, EngineConfig::default()).expect("resume");
        let done = engine
            .state()
            .tasks()
            .iter()
            .filter(|t| t.item.status == ItemStatus::Completed)
            .count();
        eprintln!(
            "{group}: {n} tasks, {} events, {done} tasks completed",
            log.len()
        );
        g.bench_with_input(BenchmarkId::new("engine_resume", n), &log, |b, log| {
            b.iter_with_large_drop(|| {
                Engine::resume(black_box(log), EngineConfig::default()).expect("resume")
            })
        });
        // A real store (default options: a snapshot every 10,000 events).
        let root = dir.path().join(format!("store-{n}"));
        let version = write_log(&FileStore::open(&root).expect("open"), &log);
        g.bench_with_input(BenchmarkId::new("file_store_load", n), &root, |b, root| {
            b.iter_batched(
                || FileStore::open(root).expect("open"),
                |store| {
                    let loaded = block_on(store.load(&id)).expect("load");
                    assert_eq!(loaded.version, version);
                    (loaded, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    print_ratios(group, &["engine_resume", "file_store_load"], true);
}

/// Resident set size in bytes (Linux; 0 elsewhere). Pages are taken as 4 KiB.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn memory(_: &mut Criterion) {
    STARTED.get_or_init(SystemTime::now);
    let n = SIZES[1];
    let log = half_done_log(n);
    let before_state = rss();
    let state = MilestoneState::from_events(&log).expect("log folds");
    let after_state = rss();
    let engine = Engine::resume(&log, EngineConfig::default()).expect("resume");
    let after_engine = rss();
    // For comparison: an engine built from (a copy of) the state, without the log's
    // checkpoint states.
    let built = Engine::new(state.clone(), EngineConfig::default()).expect("engine");
    let after_built = rss();
    // And resumed with a recovery chain that can never roll back (no checkpoint states).
    let no_rollback = EngineConfig {
        recovery: RecoveryConfig {
            order: vec![RecoveryStep::Retry],
            ..RecoveryConfig::default()
        },
        ..EngineConfig::default()
    };
    let plain = Engine::resume(&log, no_rollback).expect("resume");
    let after_plain = rss();
    let per_task = |bytes: usize| bytes / n as usize;
    eprintln!(
        "memory, w3-layered {n} tasks, half done ({} events): RSS growth per task: \
         execution MilestoneState {} B, Engine::resume on the log {} B, Engine::new on a \
         state clone {} B, Engine::resume without rollback {} B (target <= 1024 B)",
        log.len(),
        per_task(after_state.saturating_sub(before_state)),
        per_task(after_engine.saturating_sub(after_state)),
        per_task(after_built.saturating_sub(after_engine)),
        per_task(after_plain.saturating_sub(after_built)),
    );
    black_box((state, engine, built, plain, log));
}

/// Pending tasks of the milestone `log` folds into, last first (so `pop` takes them in order).
fn pending(log: &[Event]) -> Vec<TaskId> {
    let state = MilestoneState::from_events(log).expect("log folds");
    let mut ids: Vec<TaskId> = state
        .tasks()
        .iter()
        .filter(|t| t.item.status == ItemStatus::Pending)
        .map(|t| t.spec.id.clone())
        .collect();
    ids.reverse();
    ids
}

/// `ItemStarted` + `ItemCompleted` for `task`.
fn transition(task: TaskId, at: u64) -> [Event; 2] {
    let item = ItemRef::Task(task);
    [
        Event::ItemStarted {
            at: Timestamp(at),
            item: item.clone(),
            attempt: 1,
        },
        Event::ItemCompleted {
            at: Timestamp(at),
            item,
            output: ItemOutput::default().into(),
        },
    ]
}

/// A store holding the milestone of `log`, with the pending tasks still to transition.
struct Pool<S> {
    store: S,
    version: u64,
    left: Vec<TaskId>,
}

impl<S: StateStore> Pool<S> {
    fn new(store: S, log: &[Event], pending_tasks: &[TaskId]) -> Self {
        let version = write_log(&store, log);
        Pool {
            store,
            version,
            left: pending_tasks.to_vec(),
        }
    }
}

/// Times `iters` transitions appended to the pool's store; when its pending tasks run out, a
/// fresh store holding `log` replaces it (untimed).
fn time_transitions<S: StateStore>(
    iters: u64,
    pool: &mut Pool<S>,
    log: &[Event],
    pending_tasks: &[TaskId],
    fresh: &mut dyn FnMut() -> S,
) -> Duration {
    let id = MilestoneId::new("m100k").expect("valid id");
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let task = match pool.left.pop() {
            Some(task) => task,
            None => {
                *pool = Pool::new(fresh(), log, pending_tasks);
                pool.left.pop().expect("pending tasks")
            }
        };
        let events = transition(task, 1_000_000 + pool.version);
        let start = Instant::now();
        pool.version =
            block_on(pool.store.append(&id, pool.version, black_box(&events))).expect("append");
        total += start.elapsed();
    }
    total
}

fn persist(c: &mut Criterion) {
    let group = "m100k_persist";
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut stores = 0u32;
    // Automatic snapshots off: the append itself, not the amortised snapshot.
    let mut file_store = || {
        stores += 1;
        FileStore::open_with(
            dir.path().join(format!("persist-{stores}")),
            FileStoreOptions::default().snapshot_every(0),
        )
        .expect("open")
    };
    for n in SIZES {
        let log = half_done_log(n);
        let pending_tasks = pending(&log);
        assert!(!pending_tasks.is_empty());
        let mut pool = Pool::new(InMemory::new(), &log, &pending_tasks);
        g.bench_function(BenchmarkId::new("in_memory", n), |b| {
            b.iter_custom(|iters| {
                time_transitions(iters, &mut pool, &log, &pending_tasks, &mut InMemory::new)
            })
        });
        drop(pool);
        let mut pool = Pool::new(file_store(), &log, &pending_tasks);
        g.bench_function(BenchmarkId::new("file_store", n), |b| {
            b.iter_custom(|iters| {
                time_transitions(iters, &mut pool, &log, &pending_tasks, &mut file_store)
            })
        });
    }
    g.finish();
    print_ratios(group, &["in_memory", "file_store"], false);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = memory, validate_build, resume, persist
}
criterion_main!(benches);
