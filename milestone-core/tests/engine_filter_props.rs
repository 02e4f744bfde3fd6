//! Property tests of the engine's phase filter (`EngineConfig::phase_filter`): a milestone run
//! as a series of filtered runs — random subsets of phases, random strategies, transient
//! failures, crashes and resumes between inputs, a producer that lists the same tasks each time
//! it runs — never starts a phase outside the run's filter (nor a task unless the task phase is
//! in it), never completes a phase twice, ends every filtered run with `PhasesDone` naming
//! exactly the allowed phases that are not done (the milestone still active) or with the
//! milestone completed, and a final unfiltered run always completes the milestone.

use std::collections::BTreeSet;

use milestone_core::engine::{Command, Engine, EngineConfig, Input, Outcome, StartMode, Work};
use milestone_core::engine::{RecoveryStep, Strategy};
use milestone_core::{
    Artifact, ArtifactBody, Event, FailureKind, ItemError, ItemOutput, ItemRef, MilestoneId,
    MilestoneStatus, PhaseId, PhaseSpec, Timestamp, Weight, Workflow,
};
use proptest::prelude::*;

/// A small deterministic generator (xorshift), so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// 1–5 phases with weights summing to 100 and random dependencies on earlier ones; the last
/// receives tasks.
fn workflow(rng: &mut Rng) -> Workflow {
    let n = 1 + rng.below(5) as usize;
    let mut phases = Vec::new();
    for i in 0..n {
        let w = if i + 1 == n {
            100 - 10 * (n as u8 - 1)
        } else {
            10
        };
        let mut p = PhaseSpec::new(
            PhaseId::new(format!("p{i}")).unwrap(),
            "p",
            Weight::new(w).unwrap(),
        );
        for j in 0..i {
            if rng.chance(40) {
                p.dependencies.push(PhaseId::new(format!("p{j}")).unwrap());
            }
        }
        if rng.chance(50) {
            p.expected_outputs.push(format!("p{i}-doc"));
        }
        phases.push(p);
    }
    Workflow::new(phases, 1 + rng.below(3) as u32).unwrap()
}

/// The output of one finished attempt: the phase's expected outputs, and the producer's task
/// list (the same list every time it runs).
fn output(wf: &Workflow, work: &Work, producer: &str, tasks: usize) -> ItemOutput {
    let mut out = ItemOutput::default();
    if let Work::Item(ItemRef::Phase(p)) = work {
        for name in &wf.phase(p.as_str()).unwrap().expected_outputs {
            out.artifacts.push(Artifact {
                name: name.clone(),
                kind: "doc".into(),
                body: ArtifactBody::Inline(String::new()),
            });
        }
        if p.as_str() == producer {
            let list: Vec<serde_json::Value> = (0..tasks)
                .map(|k| {
                    let deps: Vec<String> = (0..k)
                        .filter(|j| j % 2 == 0)
                        .map(|j| format!("t{j}"))
                        .collect();
                    serde_json::json!({"id": format!("t{k}"), "title": "t", "dependencies": deps})
                })
                .collect();
            out.data = serde_json::json!({ "tasks": list });
        }
    }
    out
}

/// One run under `filter` from `log`, to its end; crashes (a new engine from the log) on the
/// way. Checks what may start; returns the outcome.
fn run(
    rng: &mut Rng,
    log: &mut Vec<Event>,
    config: &EngineConfig,
    producer: &str,
    tasks: usize,
    now: &mut u64,
) -> Result<Outcome, TestCaseError> {
    let wf = match &log[0] {
        Event::Created { workflow, .. } => workflow.clone(),
        _ => unreachable!(),
    };
    let receiver = wf.task_phase().clone();
    let allowed = |p: &PhaseId| config.phase_filter.as_ref().is_none_or(|f| f.contains(p));
    let mut engine = Engine::resume(log, config.clone()).unwrap();
    let mut inputs = vec![Input::Start(StartMode::Execution)];
    let mut flights: Vec<(Work, u32)> = Vec::new();
    let mut wake: Option<u64> = None;
    for _ in 0..5_000 {
        let input = if let Some(i) = inputs.pop() {
            i
        } else if !flights.is_empty() {
            let (work, attempt) = flights.remove(rng.below(flights.len() as u64) as usize);
            if rng.chance(10) {
                Input::Failed {
                    work,
                    attempt,
                    error: ItemError {
                        kind: FailureKind::Transient,
                        message: "flaky".into(),
                    },
                }
            } else {
                let output = output(&wf, &work, producer, tasks);
                Input::Finished {
                    work,
                    attempt,
                    output: output.into(),
                }
            }
        } else if let Some(t) = wake.take() {
            *now = (*now).max(t);
            Input::Tick
        } else {
            return Err(TestCaseError::fail(
                "stalled: nothing in flight, no wake-up",
            ));
        };
        *now += 1;
        let step = engine
            .handle(input, Timestamp(*now))
            .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        for e in &step.events {
            if let Event::ItemStarted { item, .. } = e {
                let ok = match item {
                    ItemRef::Phase(p) => allowed(p),
                    ItemRef::Task(_) => allowed(&receiver),
                };
                prop_assert!(
                    ok,
                    "{item} started outside the filter {:?}",
                    config.phase_filter
                );
            }
            if let Event::ItemCompleted {
                item: item @ ItemRef::Phase(_),
                ..
            } = e
            {
                let before = log
                    .iter()
                    .filter(|x| matches!(x, Event::ItemCompleted { item: i, .. } if i == item))
                    .count();
                prop_assert_eq!(before, 0, "{} completed twice", item);
            }
        }
        log.extend(step.events.iter().cloned());
        for c in step.commands {
            match c {
                Command::Start(s) => flights.push((s.work, s.attempt)),
                Command::WakeAt(t) => wake = Some(t.0),
                Command::Finished(o) => return Ok(o),
                _ => {}
            }
        }
        if rng.chance(5) {
            // Crash: whatever was in flight is lost; a new engine carries on from the log.
            flights.clear();
            wake = None;
            inputs.clear();
            engine = Engine::resume(log, config.clone()).unwrap();
            inputs.push(Input::Start(StartMode::Execution));
        }
    }
    Err(TestCaseError::fail("no end within 5000 inputs"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn filtered_runs_start_only_their_phases_and_together_complete(seed in 1u64..) {
        let mut rng = Rng(seed);
        let wf = workflow(&mut rng);
        let ids: Vec<PhaseId> = wf.phases().iter().map(|p| p.id.clone()).collect();
        // The producer comes before the task phase (or is it): tasks join a phase not done.
        let last = wf.phases().last().unwrap();
        let mut candidates = last.dependencies.clone();
        candidates.push(last.id.clone());
        let producer = candidates[rng.below(candidates.len() as u64) as usize].as_str().to_owned();
        let tasks = rng.below(4) as usize;
        let strategy = match rng.below(3) {
            0 => Strategy::Sequential,
            1 => Strategy::ParallelIndependent,
            _ => Strategy::pipeline(),
        };
        let mut base = EngineConfig {
            strategy,
            max_concurrency: 1 + rng.below(4) as usize,
            ..EngineConfig::default()
        };
        base.recovery.order = vec![RecoveryStep::Retry];
        base.recovery.retry.max_attempts = 40;
        base.recovery.retry.base_ms = 10;
        base.recovery.retry.cap_ms = 100;
        let mut log = vec![
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("f").unwrap(),
                title: "f".into(),
                context: String::new(),
                workflow: wf.clone(),
                seed,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
        ];
        let mut now = 0;
        for _ in 0..2 * ids.len() {
            let filter: Vec<PhaseId> = ids.iter().filter(|_| rng.chance(40)).cloned().collect();
            if filter.is_empty() {
                continue;
            }
            let config = EngineConfig { phase_filter: Some(filter.clone()), ..base.clone() };
            let outcome = run(&mut rng, &mut log, &config, &producer, tasks, &mut now)?;
            let state = Engine::resume(&log, base.clone()).unwrap().state().clone();
            match outcome {
                Outcome::PhasesDone { waiting } => {
                    prop_assert_eq!(state.status(), MilestoneStatus::Active);
                    let open: BTreeSet<&str> = filter
                        .iter()
                        .filter(|p| !state.phase(p.as_str()).unwrap().item.status.is_done())
                        .map(|p| p.as_str())
                        .collect();
                    let named: BTreeSet<&str> = waiting.iter().map(|p| p.as_str()).collect();
                    prop_assert_eq!(named, open);
                }
                Outcome::Completed => {
                    prop_assert_eq!(state.status(), MilestoneStatus::Completed);
                    break;
                }
                other => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            }
        }
        // An unfiltered run finishes whatever is left.
        let outcome = run(&mut rng, &mut log, &base, &producer, tasks, &mut now)?;
        prop_assert_eq!(outcome, Outcome::Completed);
        let state = Engine::resume(&log, base).unwrap().state().clone();
        prop_assert!(state.phases().iter().all(|p| p.item.status.is_done()));
        prop_assert_eq!(state.tasks().len(), tasks);
    }
}
