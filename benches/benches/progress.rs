//! Progress and the state fold at scale: `overall` (O(phases)), `ProgressReport::compute`
//! (O(tasks)), rendering, one applied event on a large milestone (O(1) in its size), and
//! replaying a whole log (`MilestoneState::from_events`, what a resume without a snapshot costs).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use milestone_core::progress::{ProgressReport, RenderOptions, overall};
use milestone_core::{
    Event, FailureKind, ItemError, ItemOutput, ItemRef, MilestoneId, MilestoneState, PhaseId,
    TaskId, TaskSpec, Timestamp, Workflow,
};

/// The log of a milestone with `n` tasks: execute running, the first half of the tasks done,
/// the last task running.
fn log(n: usize) -> Vec<Event> {
    let at = Timestamp(1_000);
    let ids: Vec<TaskId> = (0..n)
        .map(|i| TaskId::new(format!("t{i}")).expect("valid id"))
        .collect();
    let mut events = vec![
        Event::Created {
            at,
            id: MilestoneId::new("bench").expect("valid id"),
            title: "Bench".into(),
            context: String::new(),
            workflow: Workflow::kiro(),
            seed: 0,
        },
        Event::ExecutionStarted { at },
        Event::TasksAdded {
            at,
            tasks: ids
                .iter()
                .map(|id| TaskSpec::new(id.clone(), "task"))
                .collect(),
        },
        Event::ItemStarted {
            at,
            item: ItemRef::Phase(PhaseId::new("execute").expect("valid id")),
            attempt: 1,
        },
    ];
    for id in &ids[..n / 2] {
        let item = ItemRef::Task(id.clone());
        events.push(Event::ItemStarted {
            at,
            item: item.clone(),
            attempt: 1,
        });
        events.push(Event::ItemCompleted {
            at,
            item,
            output: ItemOutput::default().into(),
        });
    }
    events.push(Event::ItemStarted {
        at,
        item: ItemRef::Task(ids[n - 1].clone()),
        attempt: 1,
    });
    events
}

fn state(n: usize) -> MilestoneState {
    MilestoneState::from_events(&log(n)).expect("the bench log fits")
}

fn bench(c: &mut Criterion) {
    let sizes = [1_000usize, 10_000, 100_000];
    let states: Vec<(usize, MilestoneState)> = sizes.iter().map(|&n| (n, state(n))).collect();
    let now = Timestamp(3_600_000);

    let mut g = c.benchmark_group("progress/overall");
    for (n, s) in &states {
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| overall(black_box(s)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("progress/report");
    for (n, s) in &states {
        g.bench_with_input(BenchmarkId::from_parameter(n), s, |b, s| {
            b.iter(|| ProgressReport::compute(black_box(s), now, None))
        });
    }
    g.finish();

    let report = ProgressReport::compute(&states[1].1, now, None);
    c.bench_function("progress/render", |b| {
        b.iter(|| black_box(&report).render(&RenderOptions::default()))
    });

    // One failure and one restart of a task: two real state changes, O(1) in the size.
    let mut g = c.benchmark_group("apply/fail-and-restart-task");
    for (n, s) in &states {
        let mut s = s.clone();
        let item = ItemRef::Task(TaskId::new(format!("t{}", n - 1)).expect("valid id"));
        let mut attempt = 1u32;
        let error = ItemError {
            kind: FailureKind::Transient,
            message: "bench".into(),
        };
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                attempt += 1;
                s.apply(&Event::ItemFailed {
                    at: now,
                    item: item.clone(),
                    error: error.clone(),
                })
                .expect("fits");
                s.apply(&Event::ItemStarted {
                    at: now,
                    item: item.clone(),
                    attempt,
                })
                .expect("fits");
            })
        });
    }
    g.finish();

    // Folding a whole log: ≈ 1 + n events for n tasks.
    let mut g = c.benchmark_group("replay/from_events");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let events = log(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &events, |b, ev| {
            b.iter(|| MilestoneState::from_events(black_box(ev)).expect("fits"))
        });
    }
    g.finish();

    // The first three events alone: creation and one `TasksAdded` of n tasks.
    let mut g = c.benchmark_group("replay/tasks-added");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let events = log(n)[..3].to_vec();
        g.bench_with_input(BenchmarkId::from_parameter(n), &events, |b, ev| {
            b.iter(|| MilestoneState::from_events(black_box(ev)).expect("fits"))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
