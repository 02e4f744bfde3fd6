//! Property tests of the engine over random workflows, task graphs, failure schedules and
//! crash points, driven by the deterministic simulation in `engine_sim`. Every step of every
//! run is checked by the driver: dependency order, concurrency and phase limits, completed
//! items never started again, pipeline successors never completing before their
//! predecessors, progress monotone except across rollbacks, and the engine's state always the
//! fold of the events it returned.

mod engine_sim;

use engine_sim::{Behaviour, End, Rng, Sim, created, random_config, random_workflow};
use proptest::prelude::*;

const MAX_STEPS: u32 = 20_000;

fn run(seed: u64, crash: u64) -> (Result<End, String>, Sim) {
    let mut rng = Rng(seed);
    let wf = random_workflow(&mut rng);
    let config = random_config(&mut rng, &wf);
    let b = Behaviour {
        crash,
        ..Behaviour::default()
    };
    let mut sim = Sim::new(created(wf, seed), config, seed, b);
    let end = sim.run(MAX_STEPS);
    (end, sim)
}

proptest! {
    // 192 cases by default; `ENGINE_CASES=5000` for a longer soak.
    #![proptest_config(ProptestConfig { cases: std::env::var("ENGINE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(192), ..ProptestConfig::default() })]

    /// Every run ends (completed, failed naming an item, awaiting intervention, or cancelled)
    /// within a bounded number of steps, with every invariant holding at every step, also
    /// across crashes and resumes from random prefixes of the log.
    #[test]
    fn every_run_ends_and_keeps_the_invariants(seed in any::<u64>(), crash in prop_oneof![Just(0u64), Just(2), Just(8)]) {
        let (end, sim) = run(seed, crash);
        let end = end.map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
        match &end {
            End::Completed => {
                prop_assert_eq!(sim.engine.state().status(), milestone_core::MilestoneStatus::Completed);
                prop_assert!(sim.engine.state().phases().iter().all(|p| p.item.status.is_done()));
            }
            End::Failed(message) => {
                prop_assert!(message.contains("phase ") || message.contains("task "), "{}", message);
                prop_assert_eq!(sim.engine.state().status(), milestone_core::MilestoneStatus::Failed);
            }
            End::Awaiting => prop_assert!(sim.engine.state().intervention().is_some()),
            End::Cancelled => prop_assert_eq!(sim.engine.state().status(), milestone_core::MilestoneStatus::Cancelled),
        }
        prop_assert!(sim.max_flights <= sim.config.max_concurrency);
    }

    /// The same seed gives the same event log, byte for byte.
    #[test]
    fn the_same_seed_gives_the_same_log(seed in any::<u64>()) {
        let (a, sa) = run(seed, 3);
        let (b, sb) = run(seed, 3);
        prop_assert_eq!(a, b);
        let ja = serde_json::to_string(&sa.log).unwrap();
        let jb = serde_json::to_string(&sb.log).unwrap();
        prop_assert_eq!(ja, jb);
    }

    /// Cancelling at a random step stops everything: status cancelled, nothing in progress.
    #[test]
    fn cancellation_at_any_point(seed in any::<u64>(), at in 1u32..200) {
        let mut rng = Rng(seed);
        let wf = random_workflow(&mut rng);
        let config = random_config(&mut rng, &wf);
        let mut sim = Sim::new(created(wf, seed), config, seed, Behaviour { crash: 0, ..Behaviour::default() });
        sim.cancel_at_step = Some(at);
        let end = sim.run(MAX_STEPS).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
        if end == End::Cancelled {
            let s = sim.engine.state();
            prop_assert!(s.phases().iter().all(|p| p.item.status != milestone_core::ItemStatus::InProgress));
            prop_assert!(s.tasks().iter().all(|t| t.item.status != milestone_core::ItemStatus::InProgress));
        }
    }
}

/// A resumed engine carries on: rebuilt from every prefix of a finished run's log, it reaches
/// an end without starting a completed item again (checked by the driver).
#[test]
fn resume_from_every_prefix_of_a_log() {
    for seed in 0..6u64 {
        let (end, sim) = run(seed, 0);
        end.unwrap();
        let log = sim.log.clone();
        for cut in 2..=log.len() {
            let mut rng = Rng(seed);
            let wf = random_workflow(&mut rng);
            let config = random_config(&mut rng, &wf);
            let _ = wf;
            let mut resumed = Sim::new(
                log[..cut].to_vec(),
                config,
                seed ^ cut as u64,
                Behaviour {
                    crash: 0,
                    ..Behaviour::default()
                },
            );
            let status = resumed.engine.state().status();
            if status != milestone_core::MilestoneStatus::Active {
                continue;
            }
            resumed
                .run(MAX_STEPS)
                .unwrap_or_else(|e| panic!("seed {seed} cut {cut}: {e}"));
        }
    }
}

/// The simulation reaches every path the properties are about: every kind of end, crashes,
/// rollbacks, degraded attempts, skips, timeouts, retries, gates, pipeline early starts and
/// interventions (otherwise the properties above would hold vacuously).
#[test]
fn the_simulation_covers_every_path() {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for seed in 0..300u64 {
        let (end, sim) = run(seed, 3);
        let end = end.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let key = match end {
            End::Completed => "end-completed",
            End::Failed(_) => "end-failed",
            End::Awaiting => "end-awaiting",
            End::Cancelled => "end-cancelled",
        };
        *seen.entry(key.to_string()).or_default() += 1;
        if sim.crashes > 0 {
            *seen.entry("crash".to_string()).or_default() += 1;
        }
        for e in &sim.log {
            let k = match e {
                milestone_core::Event::ItemFailed { error, .. } => {
                    format!("failed-{:?}", error.kind)
                }
                other => other.kind().to_string(),
            };
            *seen.entry(k).or_default() += 1;
        }
    }
    eprintln!("{seen:?}");
    for k in [
        "end-completed",
        "end-failed",
        "end-awaiting",
        "crash",
        "rolled-back",
        "item-degraded",
        "item-skipped",
        "retry-scheduled",
        "intervention-answered",
        "tasks-added",
        "failed-Timeout",
        "failed-Gate",
        "failed-Interrupted",
        "failed-Permanent",
        "item-handed-off",
    ] {
        assert!(
            seen.get(k).copied().unwrap_or(0) > 0,
            "never saw {k}: {seen:?}"
        );
    }
}
