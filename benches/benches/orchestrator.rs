//! The whole orchestrator (engine, registry, no-op `FnAgent`s, store appends, reports) on
//! W1/W2/W3 over the in-memory store, next to the floor scheduler in the same group, and next
//! to `engine+store`: the engine driven with each step appended to the same store and nothing
//! else ([`hosts::drive_stored`]), the part of the cost that any durable host built on the
//! engine and the store pays; the rest is the orchestrator's own. As the floor gets its graph
//! prepared outside the measure, the orchestrator gets its milestone opened outside it
//! ([`Orchestrator::open`]: the log read and the engine rebuilt, which the `milestone_100k`
//! bench measures on its own); the measure is the run (`Session::execute`, its report
//! included), and the session is dropped after it. `execute/W1` measures a whole `execute`
//! call (open, run, drop) for comparison. Over `FileStore`: a durable chain step next to one
//! append + fdatasync, and a durable fan-out (group commit: the completions that arrive
//! together are appended with one sync).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Orchestrator};
use milestone_agents::{AgentOutput, FnAgent, Registry};
use milestone_benches::workloads::{LIMIT, engine_config as config};
use milestone_benches::{floor, hosts, workloads};
use milestone_core::engine::{Engine, Role};
use milestone_core::{Event, ExecutionMode, MilestoneId, MilestoneStatus, Timestamp};
use milestone_state::{FileStore, InMemory, StateStore};

fn id() -> MilestoneId {
    MilestoneId::new("bench").expect("valid id")
}

fn noop_registry() -> Registry {
    let mut r = Registry::new();
    r.bind_direct(
        Role::Task,
        FnAgent::sync("noop", |_| Ok(AgentOutput::default())),
    )
    .bind_direct_any_phase(FnAgent::sync("noop", |_| Ok(AgentOutput::default())));
    r
}

fn orchestrator(store: Arc<dyn StateStore>) -> Orchestrator {
    orchestrator_with(store, false)
}

/// `snapshots`: whether each engine checkpoint (execution start, each phase boundary) also
/// writes a store snapshot.
fn orchestrator_with(store: Arc<dyn StateStore>, snapshots: bool) -> Orchestrator {
    Orchestrator::builder()
        .registry(noop_registry())
        .store(store)
        .snapshot_at_checkpoints(snapshots)
        .mode(ModePolicy::Fixed(ExecutionMode::Direct))
        .engine_config(config())
        .build()
        .expect("valid orchestrator")
}

/// A store holding `log`.
async fn fill(store: &dyn StateStore, log: &[Event]) {
    store.create(&log[0]).await.expect("create");
    store.append(&id(), 1, &log[1..]).await.expect("append");
}

fn run(o: &Orchestrator) -> u64 {
    let report = block_on(o.execute(&id())).expect("execute");
    assert_eq!(report.status, MilestoneStatus::Completed);
    report.metrics.runs
}

fn in_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("orchestrator/in-memory");
    group.sample_size(10);
    for w in workloads::all() {
        let log = w.execution_log().expect("generated workload");
        let graph = floor::Graph::new(&w).expect("generated workload");
        let setup = || {
            let store = Arc::new(InMemory::new());
            block_on(fill(&*store, &log));
            orchestrator(store)
        };
        assert_eq!(run(&setup()), w.len() as u64);
        group.throughput(Throughput::Elements(w.len() as u64));
        group.bench_function(format!("floor/{}", w.name), |b| {
            b.iter(|| floor::run(&graph, LIMIT))
        });
        // The engine and the store alone: what every durable host pays before it runs anything.
        group.bench_function(format!("engine+store/{}", w.name), |b| {
            b.iter_batched(
                || {
                    let store = InMemory::new();
                    block_on(fill(&store, &log));
                    let engine = Engine::resume(&log, config()).expect("resume");
                    (store, engine)
                },
                |(store, mut engine)| {
                    let v = hosts::drive_stored(&mut engine, &store, &id(), log.len() as u64)
                        .expect("drive");
                    black_box(v);
                    (store, engine)
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_function(format!("orchestrator/{}", w.name), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let o = setup();
                    let mut session = block_on(o.open(&id())).expect("open");
                    let t = Instant::now();
                    let report = block_on(session.execute()).expect("execute");
                    measured += t.elapsed();
                    assert_eq!(report.status, MilestoneStatus::Completed);
                    black_box(report);
                }
                measured
            })
        });
        if w.name == "W1" {
            group.bench_function("execute/W1", |b| {
                b.iter_batched(setup, |o| run(&o), BatchSize::LargeInput)
            });
        }
    }
    group.finish();
}

fn file_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("orchestrator/file-store");
    group.sample_size(10);

    // The baseline: one durable append of one event.
    let base = FileStore::open(dir.path().join("base")).expect("store");
    let log = workloads::independent(1)
        .execution_log()
        .expect("generated workload");
    block_on(fill(&base, &log));
    let mut version = 3;
    group.throughput(Throughput::Elements(1));
    group.bench_function("append + fdatasync (1 event)", |b| {
        b.iter(|| {
            let e = Event::CheckpointRecorded {
                at: Timestamp(version),
                label: "step".into(),
            };
            version = block_on(base.append(&id(), version, &[e])).expect("append");
            black_box(version)
        })
    });

    let cases = [
        (
            "durable chain step (200)",
            false,
            workloads::Workload {
                name: "chain",
                deps: (0..200u32)
                    .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
                    .collect(),
            },
        ),
        (
            "durable fan-out (2000)",
            false,
            workloads::Workload {
                name: "fan-out",
                deps: vec![vec![]; 2_000],
            },
        ),
        (
            "durable fan-out (2000), snapshot at each checkpoint",
            true,
            workloads::Workload {
                name: "fan-out",
                deps: vec![vec![]; 2_000],
            },
        ),
    ];
    let mut n = 0u32;
    for (name, snapshots, w) in cases {
        let log = w.execution_log().expect("generated workload");
        let mut setup = || {
            n += 1;
            let store = Arc::new(FileStore::open(dir.path().join(format!("s{n}"))).expect("store"));
            block_on(fill(&*store, &log));
            orchestrator_with(store, snapshots)
        };
        assert_eq!(run(&setup()), w.len() as u64);
        group.throughput(Throughput::Elements(w.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(&mut setup, |o| run(&o), BatchSize::PerIteration)
        });
    }
    group.finish();
}

criterion_group!(benches, in_memory, file_store);
criterion_main!(benches);
