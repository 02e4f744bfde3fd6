//! The command-shape bridge: lossless both ways for the shared fields, and every bad command
//! refused with all its problems.

use milestone_core::bridge::{CommandCommit, CommandState};
use milestone_core::{
    Decision, Event, FailureKind, ItemError, ItemOutput, ItemRef, ItemStatus, MilestoneId,
    MilestoneState, MilestoneStatus, Mode, PhaseId, ProblemKind, Progress, TaskId, TaskSpec,
    Timestamp, Workflow,
};
use proptest::prelude::*;

/// What one phase goes through in a generated history.
#[derive(Debug, Clone, Copy)]
enum Script {
    Pending,
    Running(u16),
    Completed(u16, bool),
    Failed(u16),
    Blocked,
    Skipped,
    Cancelled,
}

fn script() -> impl Strategy<Value = Script> {
    prop_oneof![
        Just(Script::Pending),
        (0u16..=10_000).prop_map(Script::Running),
        (0u16..=10_000, any::<bool>()).prop_map(|(p, c)| Script::Completed(p, c)),
        (0u16..=10_000).prop_map(Script::Failed),
        Just(Script::Blocked),
        Just(Script::Skipped),
        Just(Script::Cancelled),
    ]
}

fn status() -> impl Strategy<Value = MilestoneStatus> {
    prop_oneof![
        Just(MilestoneStatus::Active),
        Just(MilestoneStatus::Completed),
        Just(MilestoneStatus::Blocked),
        Just(MilestoneStatus::Failed),
        Just(MilestoneStatus::AwaitingIntervention),
        Just(MilestoneStatus::Cancelled),
    ]
}

struct Log {
    state: MilestoneState,
    t: u64,
}

impl Log {
    fn at(&mut self) -> Timestamp {
        self.t += 7;
        Timestamp(self.t)
    }
    fn apply(&mut self, e: Event) {
        self.state
            .apply(&e)
            .unwrap_or_else(|err| panic!("{e:?}: {err}"));
    }
}

/// Builds a state through events: optional branch, optional execution with tasks, a script per
/// phase, commits, and a final milestone status.
fn build(
    title: &str,
    created: u64,
    branch: Option<String>,
    execute: bool,
    scripts: &[Script],
    final_status: MilestoneStatus,
) -> MilestoneState {
    let workflow = Workflow::kiro();
    let phases: Vec<PhaseId> = workflow.phases().iter().map(|p| p.id.clone()).collect();
    let mut log = Log {
        state: MilestoneState::new(
            MilestoneId::new("m-1").unwrap(),
            title,
            "context the flat shape cannot carry",
            workflow,
            Timestamp(created),
            9,
        ),
        t: created,
    };
    if let Some(b) = branch {
        let at = log.at();
        log.apply(Event::BranchCreated {
            at,
            branch: b,
            base: "main".into(),
        });
    }
    if execute {
        let at = log.at();
        log.apply(Event::ExecutionStarted { at });
        let t1 = TaskSpec::new(TaskId::new("t1").unwrap(), "first");
        let mut t2 = TaskSpec::new(TaskId::new("t2").unwrap(), "second");
        t2.dependencies.push(t1.id.clone());
        let at = log.at();
        log.apply(Event::TasksAdded {
            at,
            tasks: vec![t1.clone(), t2],
        });
        let item = ItemRef::Task(t1.id);
        let at = log.at();
        log.apply(Event::ItemStarted {
            at,
            item: item.clone(),
            attempt: 1,
        });
        let at = log.at();
        log.apply(Event::ItemProgressed {
            at,
            item,
            progress: Progress::from_basis_points(3_000),
        });
        for (phase, s) in phases.iter().zip(scripts) {
            let item = ItemRef::Phase(phase.clone());
            let start = |log: &mut Log| {
                let at = log.at();
                log.apply(Event::ItemStarted {
                    at,
                    item: item.clone(),
                    attempt: 1,
                });
            };
            let progress = |log: &mut Log, bp: u16| {
                let at = log.at();
                log.apply(Event::ItemProgressed {
                    at,
                    item: item.clone(),
                    progress: Progress::from_basis_points(u32::from(bp)),
                });
            };
            match *s {
                Script::Pending => {}
                Script::Running(bp) => {
                    start(&mut log);
                    progress(&mut log, bp);
                }
                Script::Completed(bp, commit) => {
                    start(&mut log);
                    progress(&mut log, bp);
                    let at = log.at();
                    log.apply(Event::ItemCompleted {
                        at,
                        item: item.clone(),
                        output: ItemOutput::default().into(),
                    });
                    if commit {
                        let at = log.at();
                        log.apply(Event::PhaseCommitted {
                            at,
                            phase: phase.clone(),
                            commit: format!("c0ffee{}", phase.as_str()),
                        });
                    }
                }
                Script::Failed(bp) => {
                    start(&mut log);
                    progress(&mut log, bp);
                    let at = log.at();
                    log.apply(Event::ItemFailed {
                        at,
                        item: item.clone(),
                        error: ItemError {
                            kind: FailureKind::Transient,
                            message: "flaky".into(),
                        },
                    });
                }
                Script::Blocked => {
                    start(&mut log);
                    let at = log.at();
                    log.apply(Event::ItemBlocked {
                        at,
                        item: item.clone(),
                        reason: "waiting".into(),
                    });
                }
                Script::Skipped => {
                    let at = log.at();
                    log.apply(Event::ItemSkipped {
                        at,
                        item: item.clone(),
                        reason: "degraded".into(),
                    });
                }
                Script::Cancelled => {
                    start(&mut log);
                    let at = log.at();
                    log.apply(Event::ItemCancelled {
                        at,
                        item: item.clone(),
                    });
                }
            }
        }
    }
    let at = log.at();
    match final_status {
        MilestoneStatus::Active => {}
        MilestoneStatus::AwaitingIntervention => log.apply(Event::InterventionRequested {
            at,
            item: None,
            reason: "decide".into(),
            options: vec![Decision::Retry, Decision::Abort],
        }),
        MilestoneStatus::Completed if !log.state.all_phases_completed() => {}
        status => log.apply(Event::StatusChanged {
            at,
            status,
            reason: None,
        }),
    }
    log.state
}

fn state() -> impl Strategy<Value = MilestoneState> {
    (
        ".{0,16}",
        0u64..1u64 << 50,
        proptest::option::of("[a-z/-]{1,24}"),
        any::<bool>(),
        proptest::collection::vec(script(), 4),
        status(),
    )
        .prop_map(|(title, created, branch, execute, scripts, status)| {
            build(&title, created, branch, execute, &scripts, status)
        })
}

fn fresh(mode: Mode) -> MilestoneState {
    let mut s = MilestoneState::new(
        MilestoneId::new("m-1").unwrap(),
        "fresh",
        "",
        Workflow::kiro(),
        Timestamp(1),
        0,
    );
    if mode == Mode::Execution {
        s.apply(&Event::ExecutionStarted { at: Timestamp(2) })
            .unwrap();
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn state_to_command_to_state_to_command_is_lossless(s in state()) {
        let c1 = CommandState::from_state(&s);
        // Through JSON, as older tooling would read and write it.
        let json = c1.to_json();
        let parsed = CommandState::from_json(&json).unwrap();
        prop_assert_eq!(&parsed, &c1);
        // Back onto the same state: nothing changes at all.
        let s2 = parsed.apply_to(&s).unwrap();
        prop_assert_eq!(&s2, &s);
        let c2 = CommandState::from_state(&s2);
        prop_assert_eq!(&c2, &c1);
        // Onto another state of the same milestone: the shared fields all come across.
        let onto = if s.mode() == Mode::Execution { fresh(Mode::Execution) } else { fresh(Mode::Planning) };
        let moved = c1.apply_to(&onto);
        if c1.status == MilestoneStatus::AwaitingIntervention {
            let problems = moved.unwrap_err();
            prop_assert_eq!(problems.0[0].location.as_str(), "status");
        } else {
            let moved = moved.unwrap();
            prop_assert_eq!(CommandState::from_state(&moved), c1.clone());
            prop_assert_eq!(moved.context(), "");
            prop_assert!(moved.tasks().is_empty());
            // And a brand-new state from the flat shape alone agrees too.
            let new = c1.to_new_state(Workflow::kiro()).unwrap();
            prop_assert_eq!(CommandState::from_state(&new), c1.clone());
            prop_assert_eq!(new.mode() == Mode::Execution,
                c1.phases.values().any(|&st| st != ItemStatus::Pending));
        }
    }
}

#[test]
fn the_flat_shape_uses_the_names_older_tooling_reads() {
    let s = build(
        "Add login",
        1_700_000_000_000,
        Some("feature/milestone-m-1".into()),
        true,
        &[
            Script::Completed(0, true),
            Script::Running(4_000),
            Script::Pending,
            Script::Pending,
        ],
        MilestoneStatus::Active,
    );
    let v: serde_json::Value =
        serde_json::from_str(&CommandState::from_state(&s).to_json()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "id",
        "title",
        "created",
        "status",
        "phases",
        "progress",
        "phaseProgress",
        "branch",
        "commits",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    assert_eq!(v["created"], 1_700_000_000_000u64);
    assert_eq!(v["status"], "active");
    assert_eq!(v["phases"]["design"], "completed");
    assert_eq!(v["phases"]["spec"], "in-progress");
    assert_eq!(v["phaseProgress"]["design"], 100.0);
    assert_eq!(v["phaseProgress"]["spec"], 40.0);
    // 15 % of design + 25 % × 40 % of spec + 40 % × 15 % of execute (task t1 is 30 % done,
    // one of two equally weighted tasks) = 31 %.
    assert_eq!(v["progress"], 31.0);
    assert_eq!(v["commits"][0]["phase"], "design");
    assert_eq!(v["commits"][0]["commit"], "c0ffeedesign");
}

/// Applies a command edited by `edit` onto a running state and compares the `(location,
/// kind)` of every problem (empty when it applies).
fn check(edit: fn(&mut CommandState), expected: &[(&str, ProblemKind)]) {
    let base = build(
        "t",
        5,
        None,
        true,
        &[
            Script::Completed(0, true),
            Script::Running(4_000),
            Script::Pending,
            Script::Pending,
        ],
        MilestoneStatus::Active,
    );
    let mut c = CommandState::from_state(&base);
    edit(&mut c);
    let got: Vec<(String, ProblemKind)> = match c.apply_to(&base) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(|p| (p.location.clone(), p.kind)).collect(),
    };
    let want: Vec<(String, ProblemKind)> = expected
        .iter()
        .map(|(l, k)| ((*l).to_owned(), *k))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn bad_commands_are_refused_with_every_problem() {
    use ProblemKind::*;
    check(|_| {}, &[]);
    check(
        |c| c.id = MilestoneId::new("other").unwrap(),
        &[("id", Inconsistent)],
    );
    check(
        |c| {
            c.phases.insert("deploy".into(), ItemStatus::Pending);
        },
        &[("phases[\"deploy\"]", UnknownPhase)],
    );
    check(
        |c| {
            c.phase_progress.insert("Design".into(), 1.0);
        },
        &[("phaseProgress[\"Design\"]", UnknownPhase)],
    );
    check(
        |c| {
            c.commits.push(CommandCommit {
                phase: "qa".into(),
                commit: "x".into(),
            })
        },
        &[("commits[1].phase", UnknownPhase)],
    );
    check(
        |c| {
            c.commits.push(CommandCommit {
                phase: "design".into(),
                commit: "y".into(),
            })
        },
        &[("commits[1].phase", DuplicateId)],
    );
    check(|c| c.progress = f64::NAN, &[("progress", OutOfRange)]);
    check(
        |c| {
            c.phase_progress.insert("spec".into(), 100.01);
        },
        &[("phaseProgress[\"spec\"]", OutOfRange)],
    );
    check(
        |c| c.status = MilestoneStatus::AwaitingIntervention,
        &[("status", Inconsistent)],
    );
    // The resulting state is checked too: completed must mean 100 %.
    check(
        |c| {
            c.phases.insert("spec".into(), ItemStatus::Completed);
            c.phase_progress.insert("spec".into(), 50.0);
        },
        &[("phase spec", Inconsistent)],
    );
    check(
        |c| c.status = MilestoneStatus::Completed,
        &[("status", Inconsistent)],
    );
    // All at once.
    check(
        |c| {
            c.id = MilestoneId::new("x").unwrap();
            c.progress = -1.0;
            c.phases.insert("zzz".into(), ItemStatus::Failed);
            c.commits[0].phase = "nope".into();
        },
        &[
            ("id", Inconsistent),
            ("progress", OutOfRange),
            ("phases[\"zzz\"]", UnknownPhase),
            ("commits[0].phase", UnknownPhase),
        ],
    );
}

#[test]
fn older_tooling_edits_come_across() {
    let base = build(
        "t",
        5,
        None,
        true,
        &[
            Script::Running(1_000),
            Script::Pending,
            Script::Pending,
            Script::Pending,
        ],
        MilestoneStatus::Active,
    );
    let mut c = CommandState::from_state(&base);
    // Mark design completed without touching its progress: it becomes 100 %.
    c.phases.insert("design".into(), ItemStatus::Completed);
    c.phase_progress.remove("design");
    c.phase_progress.insert("spec".into(), 12.34);
    c.branch = Some("feature/milestone-m-1".into());
    c.title = "Renamed".into();
    let s = c.apply_to(&base).unwrap();
    assert_eq!(
        s.phase("design").unwrap().item.status,
        ItemStatus::Completed
    );
    assert_eq!(s.phase("design").unwrap().item.progress, Progress::COMPLETE);
    assert_eq!(s.phase("spec").unwrap().item.progress.basis_points(), 1_234);
    assert_eq!(s.git().branch.as_deref(), Some("feature/milestone-m-1"));
    assert_eq!(s.title(), "Renamed");
    // Everything the flat shape cannot carry is kept.
    assert_eq!(s.context(), base.context());
    assert_eq!(s.tasks(), base.tasks());
    assert_eq!(s.events_applied(), base.events_applied());
    // A final status stays final.
    let mut cancelled = base.clone();
    cancelled
        .apply(&Event::StatusChanged {
            at: Timestamp(999),
            status: MilestoneStatus::Cancelled,
            reason: None,
        })
        .unwrap();
    let mut c = CommandState::from_state(&cancelled);
    assert_eq!(c.apply_to(&cancelled).unwrap(), cancelled);
    c.status = MilestoneStatus::Active;
    let p = c.apply_to(&cancelled).unwrap_err();
    assert_eq!(
        (p.0[0].location.as_str(), p.0[0].kind),
        ("status", ProblemKind::Inconsistent)
    );
    // A phase leaving pending while still planning is refused.
    let planning = fresh(Mode::Planning);
    let mut c = CommandState::from_state(&planning);
    c.phases.insert("design".into(), ItemStatus::InProgress);
    let p = c.apply_to(&planning).unwrap_err();
    assert_eq!(p.0[0].location, "phases[\"design\"]");
    assert_eq!(p.0[0].kind, ProblemKind::Inconsistent);
    // A completed phase reopened drops just short of 100 %.
    let mut c = CommandState::from_state(&s);
    c.phases.insert("design".into(), ItemStatus::InProgress);
    c.phase_progress.remove("design");
    let reopened = c.apply_to(&s).unwrap();
    assert_eq!(
        reopened.phase("design").unwrap().item.progress,
        Progress::ALMOST
    );
    assert_eq!(reopened.phase("design").unwrap().item.completed_at, None);
}
