//! Random legal event sequences: a proptest strategy of choices that a driver turns into events
//! which fit the state (starts, progress reports, hand-offs, completions, failures, retries,
//! blocks, skips, tasks added, interventions, checkpoints and rollbacks to an earlier snapshot).
//!
//! Shown for every sequence: overall progress never decreases except across a rollback; it is
//! 100 % exactly when every phase is completed; replaying the log gives an identical state and
//! identical JSON, also after a JSON round trip of the log; every state round-trips through
//! `MilestoneState::from_json`; and an event that does not fit, tried at every step, is refused
//! without changing anything.

use milestone_core::plan::{Estimates, PhaseEstimate};
use milestone_core::progress::{ProgressReport, RenderOptions, overall};
use milestone_core::{
    Decision, Event, FailureKind, ItemError, ItemOutput, ItemRef, ItemStatus, MilestoneId,
    MilestonePlan, MilestoneState, MilestoneStatus, PhaseId, Progress, TaskId, TaskSpec, Timestamp,
    Workflow,
};
use proptest::prelude::*;

/// One random choice: an operation, two selectors and a time step.
type Choice = (u8, u16, u16, u16);

/// An event for a failure message: rollbacks carry a whole state, so name only their label.
fn short(e: &Event) -> String {
    match e {
        Event::RolledBack { label, .. } => format!("rolled-back to {label}"),
        other => format!("{other:?}"),
    }
}

struct Driver {
    state: MilestoneState,
    log: Vec<Event>,
    snapshots: Vec<MilestoneState>,
    now: u64,
    next_task: u32,
    rollbacks: u32,
    completed: bool,
}

fn items(s: &MilestoneState) -> Vec<ItemRef> {
    s.phases()
        .iter()
        .map(|p| ItemRef::Phase(p.id.clone()))
        .chain(s.tasks().iter().map(|t| ItemRef::Task(t.spec.id.clone())))
        .collect()
}

fn phase_progress(s: &MilestoneState) -> Vec<Progress> {
    s.phases()
        .iter()
        .map(|p| {
            if p.item.status == ItemStatus::Completed {
                Progress::COMPLETE
            } else {
                p.item.progress
            }
        })
        .collect()
}

/// What every progress report of any reachable state satisfies.
fn check_report(state: &MilestoneState, now: Timestamp) {
    let r = ProgressReport::compute(state, now, None);
    assert_eq!(r.overall, overall(state));
    assert_eq!(r.phases.len(), state.phases().len());
    assert_eq!(r.tasks.total, state.tasks().len() as u64);
    for p in &r.phases {
        assert_eq!(p.progress.is_complete(), p.status == ItemStatus::Completed);
        assert_eq!(p.blocked, r.blocked.contains(&p.id));
        assert_eq!(p.slow, r.slow.contains(&p.id));
        if p.slow {
            assert!(matches!(
                p.status,
                ItemStatus::InProgress | ItemStatus::Failed | ItemStatus::Blocked
            ));
            assert!(p.elapsed_ms > p.estimate_ms);
        }
    }
    match r.eta {
        Some(eta) if !r.overall.is_complete() => {
            assert!(eta >= now);
            assert!(r.overall > Progress::ZERO);
        }
        Some(eta) => assert!(eta <= now.max(state.updated_at())),
        None => assert!(
            r.overall == Progress::ZERO
                || r.elapsed_ms == 0
                || matches!(
                    r.status,
                    MilestoneStatus::Failed | MilestoneStatus::Cancelled
                )
        ),
    }
    // The text has a header, a row per phase, the overall row and the velocity line, then
    // one line per task summary, slow phase, blocked phase and blocked-task list.
    let text = r.render(&RenderOptions::default().width(8));
    let expected_lines = 1
        + r.phases.len()
        + 1
        + usize::from(r.tasks.total > 0)
        + 1
        + r.slow.len()
        + r.blocked.len()
        + usize::from(!r.blocked_tasks.is_empty());
    assert_eq!(text.lines().count(), expected_lines, "{text}");
    assert!(text.ends_with('\n'));
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<ProgressReport>(&json).unwrap(), r);
}

impl Driver {
    fn new(with_plan: bool) -> Driver {
        let created = Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m-1").unwrap(),
            title: "Random walk".into(),
            context: "ctx".into(),
            workflow: Workflow::kiro(),
            seed: 42,
        };
        let state = MilestoneState::from_events([&created]).unwrap();
        let mut d = Driver {
            state,
            log: vec![created],
            snapshots: Vec::new(),
            now: 0,
            next_task: 0,
            rollbacks: 0,
            completed: false,
        };
        if with_plan {
            let estimates = Estimates {
                phases: ["design", "spec", "task", "execute"]
                    .iter()
                    .map(|p| PhaseEstimate {
                        phase: PhaseId::new(p).unwrap(),
                        effort_ms: 50_000,
                    })
                    .collect(),
                ..Estimates::default()
            };
            let plan = MilestonePlan {
                estimates: Some(estimates),
                ..MilestonePlan::default()
            };
            d.push(Event::PlanRecorded {
                at: Timestamp(0),
                plan: Box::new(plan),
            });
        }
        d.push(Event::ExecutionStarted { at: Timestamp(0) });
        d
    }

    /// Applies an event that must fit, and checks the invariants across it.
    fn push(&mut self, e: Event) {
        let before = overall(&self.state);
        let before_phases = phase_progress(&self.state);
        if let Err(err) = self.state.apply(&e) {
            panic!("legal event {} refused: {err}", short(&e));
        }
        let after = overall(&self.state);
        let rolled_back = matches!(e, Event::RolledBack { .. });
        if rolled_back {
            self.rollbacks += 1;
        } else {
            assert!(
                after >= before,
                "overall fell from {before} to {after} on {}",
                short(&e)
            );
            for (b, a) in before_phases.iter().zip(phase_progress(&self.state)) {
                assert!(a >= *b, "a phase fell from {b} to {a} on {}", short(&e));
            }
        }
        assert_eq!(
            after.is_complete(),
            self.state.all_phases_completed(),
            "overall {after} vs phases {:?}",
            self.state
                .phases()
                .iter()
                .map(|p| p.item.status)
                .collect::<Vec<_>>()
        );
        self.completed |= after.is_complete();
        let json = serde_json::to_string(&self.state).unwrap();
        let back = MilestoneState::from_json(&json)
            .unwrap_or_else(|err| panic!("state after {} does not reload: {err}", short(&e)));
        assert_eq!(back, self.state, "JSON round trip after {}", short(&e));
        check_report(&self.state, Timestamp(self.now));
        self.log.push(e);
    }

    fn step(&mut self, (op, a, b, dt): Choice) {
        self.now += u64::from(dt);
        let at = Timestamp(self.now);
        self.try_wild(op, a, b);
        if self.state.status().is_final() {
            // Only git bookkeeping and checkpoints are still recorded.
            if self.state.git().tag.is_none() {
                self.push(Event::Tagged {
                    at,
                    tag: "milestone-m-1".into(),
                });
            } else if op.is_multiple_of(4) {
                self.push(Event::Merged {
                    at,
                    commit: format!("m{b}"),
                });
            }
            return;
        }
        let all = items(&self.state);
        let it = all[usize::from(a) % all.len()].clone();
        let st = self.state.item(&it).cloned().unwrap_or_default();
        let active = self.state.status() == MilestoneStatus::Active;
        let is_task = matches!(it, ItemRef::Task(_));
        let next = st.attempts + 1;
        let e = match op % 24 {
            0 | 1 if active && !st.status.is_final() => Event::ItemStarted {
                at,
                item: it,
                attempt: next,
            },
            2..=4 if st.status == ItemStatus::InProgress => Event::ItemProgressed {
                at,
                item: it,
                progress: Progress::from_basis_points(u32::from(b) % 10_001),
            },
            5 if st.status == ItemStatus::InProgress => Event::ItemHandedOff {
                at,
                item: it,
                partial: serde_json::json!({ "step": b }),
            },
            6 | 7 if st.status == ItemStatus::InProgress => Event::ItemCompleted {
                at,
                item: it,
                output: ItemOutput {
                    summary: format!("done {b}"),
                    ..ItemOutput::default()
                }
                .into(),
            },
            8 if matches!(st.status, ItemStatus::InProgress | ItemStatus::Blocked) => {
                Event::ItemFailed {
                    at,
                    item: it,
                    error: ItemError {
                        kind: if b.is_multiple_of(2) {
                            FailureKind::Transient
                        } else {
                            FailureKind::Timeout
                        },
                        message: format!("failure {b}"),
                    },
                }
            }
            9 if matches!(st.status, ItemStatus::Failed | ItemStatus::Blocked) => {
                self.push(Event::RetryScheduled {
                    at,
                    item: it.clone(),
                    attempt: next,
                    not_before: at.plus_millis(1_000),
                });
                if !active {
                    return;
                }
                Event::ItemStarted {
                    at,
                    item: it,
                    attempt: next,
                }
            }
            10 if matches!(st.status, ItemStatus::Pending | ItemStatus::InProgress) => {
                Event::ItemBlocked {
                    at,
                    item: it,
                    reason: "waiting".into(),
                }
            }
            11 if (is_task || b.is_multiple_of(8))
                && matches!(
                    st.status,
                    ItemStatus::Pending | ItemStatus::Failed | ItemStatus::Blocked
                ) =>
            {
                Event::ItemSkipped {
                    at,
                    item: it,
                    reason: "degraded".into(),
                }
            }
            12 if is_task && b.is_multiple_of(4) && !st.status.is_final() => {
                Event::ItemCancelled { at, item: it }
            }
            13 => {
                let task_phase = self.state.workflow().task_phase().clone();
                if self
                    .state
                    .phase(task_phase.as_str())
                    .is_some_and(|p| p.item.status.is_final())
                {
                    return;
                }
                let existing: Vec<TaskId> = self
                    .state
                    .tasks()
                    .iter()
                    .map(|t| t.spec.id.clone())
                    .collect();
                let mut new: Vec<TaskSpec> = Vec::new();
                for k in 0..=(b % 3) {
                    let id = TaskId::new(format!("t{}", self.next_task)).unwrap();
                    self.next_task += 1;
                    let mut spec = TaskSpec::new(id, format!("task {k}"));
                    if !existing.is_empty() && (b >> 2).is_multiple_of(2) {
                        spec.dependencies
                            .push(existing[usize::from(a) % existing.len()].clone());
                    }
                    if let Some(prev) = new.last()
                        && (b >> 3).is_multiple_of(2)
                    {
                        spec.dependencies.push(prev.id.clone());
                    }
                    spec.estimate_ms = (!b.is_multiple_of(5)).then_some(u64::from(b) * 10 + 1);
                    new.push(spec);
                }
                Event::TasksAdded { at, tasks: new }
            }
            14 => {
                let label = format!("cp-{}", self.snapshots.len());
                self.push(Event::CheckpointRecorded { at, label });
                self.snapshots.push(self.state.clone());
                return;
            }
            15 if !self.snapshots.is_empty() => {
                let i = usize::from(b) % self.snapshots.len();
                Event::RolledBack {
                    at,
                    label: format!("cp-{i}"),
                    state: Box::new(self.snapshots[i].clone()),
                }
            }
            16 => match self.state.status() {
                MilestoneStatus::Active if self.state.all_phases_completed() => {
                    Event::StatusChanged {
                        at,
                        status: MilestoneStatus::Completed,
                        reason: None,
                    }
                }
                MilestoneStatus::Active => Event::StatusChanged {
                    at,
                    status: if b.is_multiple_of(3) {
                        MilestoneStatus::Failed
                    } else {
                        MilestoneStatus::Blocked
                    },
                    reason: Some("external".into()),
                },
                MilestoneStatus::Blocked | MilestoneStatus::Failed => Event::StatusChanged {
                    at,
                    status: MilestoneStatus::Active,
                    reason: None,
                },
                _ => return,
            },
            17 => match self.state.intervention() {
                None if active => Event::InterventionRequested {
                    at,
                    item: Some(it),
                    reason: "needs a decision".into(),
                    options: if b.is_multiple_of(5) {
                        vec![Decision::Retry, Decision::Abort]
                    } else {
                        vec![Decision::Retry, Decision::Skip, Decision::Rollback]
                    },
                },
                Some(open) => Event::InterventionAnswered {
                    at,
                    decision: open.options[usize::from(b) % open.options.len()],
                },
                None => return,
            },
            18 if !self.state.status().is_final() => {
                let done: Vec<PhaseId> = self
                    .state
                    .phases()
                    .iter()
                    .filter(|p| p.item.status == ItemStatus::Completed)
                    .filter(|p| !self.state.git().commits.iter().any(|c| c.phase == p.id))
                    .map(|p| p.id.clone())
                    .collect();
                match (done.first(), b % 3) {
                    (Some(p), _) => Event::PhaseCommitted {
                        at,
                        phase: p.clone(),
                        commit: format!("c{b}"),
                    },
                    (None, 0) => Event::StrategyChosen {
                        at,
                        strategy: "sequential".into(),
                        reason: "default".into(),
                    },
                    (None, _) => Event::BranchCreated {
                        at,
                        branch: "feature/milestone-m-1".into(),
                        base: "main".into(),
                    },
                }
            }
            19..=23 => {
                // Drive the first unfinished phase forward, so that many runs complete.
                let Some(p) = self
                    .state
                    .phases()
                    .iter()
                    .find(|p| p.item.status != ItemStatus::Completed)
                else {
                    if active {
                        self.push(Event::StatusChanged {
                            at,
                            status: MilestoneStatus::Completed,
                            reason: None,
                        });
                    }
                    return;
                };
                let item = ItemRef::Phase(p.id.clone());
                match p.item.status {
                    ItemStatus::InProgress => Event::ItemCompleted {
                        at,
                        item,
                        output: ItemOutput::default().into(),
                    },
                    s if active && !s.is_final() => Event::ItemStarted {
                        at,
                        item,
                        attempt: p.item.attempts + 1,
                    },
                    _ => return,
                }
            }
            _ => return,
        };
        self.push(e);
    }

    /// Builds an arbitrary event, legal or not, and checks that if the state refuses it,
    /// nothing changed.
    fn try_wild(&self, op: u8, a: u16, b: u16) {
        let all = items(&self.state);
        let it = if usize::from(a) % (all.len() + 1) == all.len() {
            ItemRef::Task(TaskId::new("ghost").unwrap())
        } else {
            all[usize::from(a) % all.len()].clone()
        };
        let at = Timestamp(self.now);
        let e = match (usize::from(op / 24) + usize::from(b)) % 14 {
            0 => Event::ItemStarted {
                at,
                item: it,
                attempt: u32::from(b % 4),
            },
            1 => Event::ItemProgressed {
                at,
                item: it,
                progress: Progress::from_basis_points(u32::from(b)),
            },
            2 => Event::ItemCompleted {
                at,
                item: it,
                output: ItemOutput::default().into(),
            },
            3 => Event::ItemFailed {
                at,
                item: it,
                error: ItemError {
                    kind: FailureKind::Permanent,
                    message: "x".into(),
                },
            },
            4 => Event::ItemBlocked {
                at,
                item: it,
                reason: "x".into(),
            },
            5 => Event::ItemSkipped {
                at,
                item: it,
                reason: "x".into(),
            },
            6 => Event::ItemCancelled { at, item: it },
            7 => Event::RetryScheduled {
                at,
                item: it,
                attempt: u32::from(b % 4),
                not_before: at,
            },
            8 => Event::StatusChanged {
                at,
                status: MilestoneStatus::ALL[usize::from(a) % 6],
                reason: None,
            },
            9 => Event::InterventionAnswered {
                at,
                decision: [
                    Decision::Retry,
                    Decision::Skip,
                    Decision::Rollback,
                    Decision::Abort,
                ][usize::from(a) % 4],
            },
            10 => Event::TasksAdded {
                at,
                tasks: vec![
                    TaskSpec {
                        dependencies: vec![TaskId::new("ghost").unwrap()],
                        ..TaskSpec::new(TaskId::new("w1").unwrap(), "w")
                    },
                    TaskSpec::new(TaskId::new("t0").unwrap(), "maybe a duplicate"),
                ],
            },
            11 => Event::PhaseCommitted {
                at,
                phase: PhaseId::new(if a.is_multiple_of(2) {
                    "design"
                } else {
                    "nope"
                })
                .unwrap(),
                commit: "w".into(),
            },
            12 => Event::ExecutionStarted { at },
            _ => self.log[0].clone(),
        };
        let mut trial = self.state.clone();
        if trial.apply(&e).is_err() {
            assert_eq!(trial, self.state, "refused {} changed the state", short(&e));
        }
    }

    fn finish(self) -> Driver {
        // Replay gives the identical state and JSON.
        let replayed = MilestoneState::from_events(&self.log).unwrap();
        assert_eq!(replayed, self.state);
        assert_eq!(
            serde_json::to_string(&replayed).unwrap(),
            serde_json::to_string(&self.state).unwrap()
        );
        // So does replaying the log after a JSON round trip of every event.
        let log_json = serde_json::to_string(&self.log).unwrap();
        let log_back: Vec<Event> = serde_json::from_str(&log_json).unwrap();
        assert_eq!(log_back, self.log);
        assert_eq!(MilestoneState::from_events(&log_back).unwrap(), self.state);
        assert_eq!(self.state.events_applied(), self.log.len() as u64);
        self
    }
}

fn choices(max: usize) -> impl Strategy<Value = (bool, Vec<Choice>)> {
    (
        any::<bool>(),
        prop::collection::vec(
            (any::<u8>(), any::<u16>(), any::<u16>(), 0u16..20_000),
            0..max,
        ),
    )
}

fn run(with_plan: bool, choices: &[Choice]) -> Driver {
    let mut d = Driver::new(with_plan);
    for &c in choices {
        d.step(c);
    }
    d.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_legal_sequences_keep_every_invariant((with_plan, cs) in choices(160)) {
        run(with_plan, &cs);
    }
}

/// A small deterministic generator, to show that the walks reach the interesting places.
fn walk(seed: u64, len: usize) -> Vec<Choice> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..len)
        .map(|_| {
            let r = next();
            (
                r as u8,
                (r >> 8) as u16,
                (r >> 24) as u16,
                ((r >> 40) % 20_000) as u16,
            )
        })
        .collect()
}

#[test]
fn the_walks_reach_completion_rollbacks_and_tasks() {
    let (mut completed, mut rolled_back, mut with_tasks, mut interventions) = (0, 0, 0, 0);
    for seed in 0..40u64 {
        let d = run(seed.is_multiple_of(2), &walk(seed, 160));
        completed += usize::from(d.completed);
        rolled_back += usize::from(d.rollbacks > 0);
        with_tasks += usize::from(!d.state.tasks().is_empty());
        interventions += usize::from(
            d.log
                .iter()
                .any(|e| matches!(e, Event::InterventionAnswered { .. })),
        );
    }
    assert!(completed >= 10, "only {completed} walks completed");
    assert!(rolled_back >= 15, "only {rolled_back} walks rolled back");
    assert!(with_tasks >= 20, "only {with_tasks} walks added tasks");
    assert!(
        interventions >= 10,
        "only {interventions} walks answered interventions"
    );
}
