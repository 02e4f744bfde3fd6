//! The engine alone on W1/W2/W3 (no-op tasks, limit 64), next to the floor scheduler, in the
//! same criterion group. The engine's driver is the least a host can do: take the start
//! commands, answer each with an empty output (`CompactOutput::default()`, which allocates
//! nothing and has nothing to convert), reuse one `Step`. It answers the starts in the order
//! they came, as the floor's `FuturesUnordered` completes its no-op futures (and as the
//! orchestrator finishes in-process runs): the oldest running task finishes first.

use std::collections::VecDeque;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use milestone_benches::{floor, workloads};
use milestone_core::engine::{Command, Engine, EngineConfig, Input, StartMode, Step, Work};
use milestone_core::{CompactOutput, Timestamp};

const LIMIT: usize = 64;

fn config() -> EngineConfig {
    EngineConfig {
        max_concurrency: LIMIT,
        ..EngineConfig::default()
    }
}

/// Drives the engine until it finishes; returns how many tasks it started.
fn drive(engine: &mut Engine) -> usize {
    let now = Timestamp(1);
    let mut step = Step::default();
    let mut queue: VecDeque<(Work, u32)> = VecDeque::with_capacity(LIMIT);
    let mut started = 0;
    engine
        .handle_into(Input::Start(StartMode::Execution), now, &mut step)
        .expect("start");
    loop {
        for c in step.commands.drain(..) {
            if let Command::Start(s) = c {
                started += 1;
                queue.push_back((s.work, s.attempt));
            }
        }
        let Some((work, attempt)) = queue.pop_front() else {
            break;
        };
        engine
            .handle_into(
                Input::Finished {
                    work,
                    attempt,
                    output: CompactOutput::default(),
                },
                now,
                &mut step,
            )
            .expect("finished");
    }
    started
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for w in workloads::all() {
        let log = w.execution_log().expect("generated workload");
        let graph = floor::Graph::new(&w);
        // Sanity: both run every task.
        let mut e = Engine::resume(&log, config()).expect("resume");
        assert_eq!(drive(&mut e), w.len());
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
                    drive(&mut engine);
                    engine
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
