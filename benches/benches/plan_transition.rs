//! The planning → execution transition at scale: validating a plan and building the initial
//! execution state (validation, dependency ordering, adding every task), at 10,000 and 100,000
//! tasks, plus loading a plan document. DESIGN.md target: a 100,000-task milestone validates
//! and builds in ≤ 100 ms, with per-task cost roughly flat from 10k to 100k.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use milestone_benches::workloads;
use milestone_core::plan::{
    MilestonePlan, initial_execution_state, start_execution, validate_plan,
};
use milestone_core::{Event, MilestoneId, MilestoneState, TaskSpec, Timestamp, Workflow};

/// The W3 shape (layers of 200 tasks, each depending on 3 of the layer before), listed last
/// layer first so that the transition has to reorder every task.
fn layered_tasks(n: usize) -> Vec<TaskSpec> {
    let n = u32::try_from(n).expect("bench sizes fit in u32");
    let mut tasks = workloads::layered(n)
        .task_specs()
        .expect("generated ids are valid");
    tasks.reverse();
    tasks
}

fn plan(n: usize) -> MilestonePlan {
    workloads::kiro_plan(layered_tasks(n))
}

fn planning_state(plan: MilestonePlan) -> MilestoneState {
    let mut s = MilestoneState::new(
        MilestoneId::new("bench").expect("valid id"),
        "bench",
        "",
        Workflow::kiro(),
        Timestamp(0),
        0,
    );
    s.apply(&Event::PlanRecorded {
        at: Timestamp(1),
        plan: Box::new(plan),
    })
    .expect("planning state accepts a plan");
    s
}

fn bench(c: &mut Criterion) {
    let wf = Workflow::kiro();
    let mut g = c.benchmark_group("plan_transition");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let p = plan(n);
        g.bench_function(format!("validate/{n}"), |b| {
            b.iter(|| validate_plan(black_box(&p), &wf).expect("valid"))
        });
        let state = planning_state(p.clone());
        g.bench_function(format!("start_execution/{n}"), |b| {
            b.iter_with_large_drop(|| {
                start_execution(black_box(&state), Timestamp(2)).expect("starts")
            })
        });
        g.bench_function(format!("initial_execution_state/{n}"), |b| {
            b.iter_with_large_drop(|| {
                initial_execution_state(black_box(&state), Timestamp(2)).expect("starts")
            })
        });
        let json = p.to_json();
        g.bench_function(format!("from_json/{n}"), |b| {
            b.iter(|| MilestonePlan::from_json(black_box(&json)).expect("loads"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
