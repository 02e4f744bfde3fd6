//! The engine alone on W1/W2/W3 (no-op tasks, limit 64), next to the floor scheduler, in the
//! same criterion group. The engine's driver ([`hosts::drive`]) is the least a host can do:
//! take the start commands, answer each with an empty output (`CompactOutput::default()`,
//! which allocates nothing and has nothing to convert), reuse one `Step`. It answers the
//! starts in the order they came, as the floor's `FuturesUnordered` completes its no-op futures
//! (and as the orchestrator finishes in-process runs): the oldest running task finishes first.
//!
//! Two lower bounds run in the same group, driven the same way: `least` and `least-indexed`,
//! the least engine of [`least`] with items named as the library names them (shared ids) and
//! by position. Whatever the engine costs above `least` is what it does beyond the per-task
//! minimum; `least` above `least-indexed` is what naming items by shared ids costs.

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use milestone_benches::least::{self, Indexed, Least, Named, Naming};
use milestone_benches::workloads::{LIMIT, Workload, engine_config as config};
use milestone_benches::{floor, hosts, workloads};
use milestone_core::engine::Engine;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for w in workloads::all() {
        let log = w.execution_log().expect("generated workload");
        let graph = floor::Graph::new(&w).expect("generated workload");
        // Sanity: both run every task.
        let mut e = Engine::resume(&log, config()).expect("resume");
        assert_eq!(hosts::drive(&mut e).expect("drive"), w.len());
        assert_eq!(
            e.state().status(),
            milestone_core::MilestoneStatus::Completed
        );
        assert_eq!(floor::run(&graph, LIMIT), w.len());

        group.throughput(Throughput::Elements(w.len() as u64));
        group.bench_function(format!("floor/{}", w.name), |b| {
            b.iter(|| floor::run(&graph, LIMIT))
        });
        group.bench_function(format!("engine/{}", w.name), |b| {
            b.iter_batched(
                || Engine::resume(&log, config()).expect("resume"),
                |mut engine| {
                    hosts::drive(&mut engine).expect("drive");
                    engine
                },
                BatchSize::LargeInput,
            )
        });
        bench_least::<Named>(&mut group, "least", &w);
        bench_least::<Indexed>(&mut group, "least-indexed", &w);
    }
    group.finish();
}

/// The least engine with naming `N` on `w`, as `label/W…`.
fn bench_least<N: Naming + Clone>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    w: &Workload,
) {
    let proto = Least::<N>::new(w, LIMIT).expect("least engine");
    assert_eq!(least::drive(&mut proto.clone()), Ok(w.len()));
    group.bench_function(format!("{label}/{}", w.name), |b| {
        b.iter_batched(
            || proto.clone(),
            |mut e| {
                least::drive(&mut e).expect("drive");
                e
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
