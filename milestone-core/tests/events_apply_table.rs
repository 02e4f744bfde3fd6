//! Apply-level tables: every item and milestone status pair driven through real events, and
//! one-line cases of events that do not fit the state. A refused event returns a typed error and
//! leaves the state exactly as it was (compared field by field and as JSON).

use milestone_core::state::check_milestone_transition;
use milestone_core::{
    Decision, Event, FailureKind, ItemError, ItemOutput, ItemRef, ItemStatus, MilestoneId,
    MilestonePlan, MilestoneState, MilestoneStatus, PhaseId, Progress, TaskId, TaskSpec, Timestamp,
    TransitionError, Workflow,
};

const T: Timestamp = Timestamp(10);

fn item(id: &str) -> ItemRef {
    match id.strip_prefix("t:") {
        Some(t) => ItemRef::Task(TaskId::new(t).unwrap()),
        None => ItemRef::Phase(PhaseId::new(id).unwrap()),
    }
}

fn start(id: &str, attempt: u32) -> Event {
    Event::ItemStarted {
        at: T,
        item: item(id),
        attempt,
    }
}
fn prog(id: &str, bp: u32) -> Event {
    Event::ItemProgressed {
        at: T,
        item: item(id),
        progress: Progress::from_basis_points(bp),
    }
}
fn handoff(id: &str) -> Event {
    Event::ItemHandedOff {
        at: T,
        item: item(id),
        partial: serde_json::json!({"draft": 1}),
    }
}
fn done(id: &str) -> Event {
    Event::ItemCompleted {
        at: T,
        item: item(id),
        output: ItemOutput::default().into(),
    }
}
fn fail(id: &str) -> Event {
    Event::ItemFailed {
        at: T,
        item: item(id),
        error: ItemError {
            kind: FailureKind::Transient,
            message: "boom".into(),
        },
    }
}
fn block(id: &str) -> Event {
    Event::ItemBlocked {
        at: T,
        item: item(id),
        reason: "waiting".into(),
    }
}
fn skip(id: &str) -> Event {
    Event::ItemSkipped {
        at: T,
        item: item(id),
        reason: "degraded".into(),
    }
}
fn cancel(id: &str) -> Event {
    Event::ItemCancelled {
        at: T,
        item: item(id),
    }
}
fn retry(id: &str, attempt: u32) -> Event {
    Event::RetryScheduled {
        at: T,
        item: item(id),
        attempt,
        not_before: Timestamp(20),
    }
}
fn status(s: MilestoneStatus) -> Event {
    Event::StatusChanged {
        at: T,
        status: s,
        reason: None,
    }
}
fn ask(options: &[Decision]) -> Event {
    Event::InterventionRequested {
        at: T,
        item: Some(item("design")),
        reason: "stuck".into(),
        options: options.to_vec(),
    }
}
fn answer(d: Decision) -> Event {
    Event::InterventionAnswered { at: T, decision: d }
}
fn tasks(specs: &[(&str, &[&str])]) -> Event {
    Event::TasksAdded {
        at: T,
        tasks: specs
            .iter()
            .map(|(id, deps)| TaskSpec {
                dependencies: deps.iter().map(|d| TaskId::new(d).unwrap()).collect(),
                ..TaskSpec::new(TaskId::new(id).unwrap(), "task")
            })
            .collect(),
    }
}
fn commit(phase: &str) -> Event {
    Event::PhaseCommitted {
        at: T,
        phase: PhaseId::new(phase).unwrap(),
        commit: "abc123".into(),
    }
}
fn created(id: &str) -> Event {
    Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new(id).unwrap(),
        title: "Add login".into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }
}
fn all_phases_done() -> Vec<Event> {
    ["design", "spec", "task", "execute"]
        .into_iter()
        .flat_map(|p| [start(p, 1), done(p)])
        .collect()
}

/// Created, still planning.
fn planning() -> MilestoneState {
    MilestoneState::from_events([&created("login")]).unwrap()
}

/// Created, executing, with tasks `a` and `b` (b depends on a).
fn executing() -> MilestoneState {
    let mut s = planning();
    s.apply(&Event::ExecutionStarted { at: T }).unwrap();
    s.apply(&tasks(&[("a", &[]), ("b", &["a"])])).unwrap();
    s
}

/// Applies `prefix` to `base` (each must fit), then `event`: "ok" expects it to fit and change
/// the state; anything else is the exact text of the error, and the state must be unchanged.
fn check(base: &MilestoneState, prefix: &[Event], event: Event, expected: &str) {
    let mut s = base.clone();
    for e in prefix {
        s.apply(e)
            .unwrap_or_else(|err| panic!("prefix {} refused: {err}", e.kind()));
    }
    let before = s.clone();
    let before_json = serde_json::to_string(&s).unwrap();
    match s.apply(&event) {
        Ok(()) => {
            assert_eq!(expected, "ok", "{} was accepted", event.kind());
            assert_eq!(s.events_applied(), before.events_applied() + 1);
        }
        Err(err) => {
            assert_eq!(err.to_string(), expected, "{}", event.kind());
            assert_eq!(s, before, "{} refused but changed the state", event.kind());
            assert_eq!(serde_json::to_string(&s).unwrap(), before_json);
        }
    }
}

#[rustfmt::skip]
#[test]
fn events_that_do_not_fit_are_refused_and_change_nothing() {
    use Decision::*;
    use MilestoneStatus::*;
    let p = &planning();
    let x = &executing();
    // Creation, planning and mode.
    check(x, &[], created("login"), "event created refused: the milestone already exists");
    check(p, &[], Event::PlanRecorded { at: T, plan: Box::default() }, "ok");
    check(x, &[], Event::PlanRecorded { at: T, plan: Box::new(MilestonePlan::default()) }, "event plan-recorded refused: a plan can only be recorded while planning");
    check(x, &[], Event::ExecutionStarted { at: T }, "milestone: cannot go from mode Execution to Execution");
    check(p, &[], Event::ExecutionStarted { at: T }, "ok");
    check(x, &[], Event::StrategyChosen { at: T, strategy: "pipeline".into(), reason: "r".into() }, "ok");
    // Starting.
    check(p, &[], start("design", 1), "event item-started refused: items start only in execution mode");
    check(x, &[], start("design", 1), "ok");
    check(x, &[], start("nope", 1), "phase nope: no such item in this milestone");
    check(x, &[], start("t:zz", 1), "task zz: no such item in this milestone");
    check(x, &[], start("design", 0), "event item-started refused: phase design: attempt 0 is not after attempt 0");
    check(x, &[start("design", 2)], start("design", 2), "event item-started refused: phase design: attempt 2 is not after attempt 2");
    check(x, &[start("design", 2)], start("design", 3), "ok");
    check(x, &[status(Blocked)], start("design", 1), "event item-started refused: the milestone is blocked");
    check(x, &[ask(&[Retry])], start("design", 1), "event item-started refused: the milestone is awaiting-intervention");
    check(x, &[status(Failed)], start("t:a", 1), "event item-started refused: the milestone is failed");
    check(x, &[start("design", 1), done("design")], start("design", 2), "phase design: cannot go from completed to in-progress");
    // Progress and hand-offs only while in progress; lower reports are accepted and ignored.
    check(x, &[], prog("design", 10), "event item-progressed refused: phase design is pending, not in progress");
    check(x, &[start("design", 1), fail("design")], prog("design", 10), "event item-progressed refused: phase design is failed, not in progress");
    check(x, &[start("design", 1), prog("design", 5_000)], prog("design", 10), "ok");
    check(x, &[start("t:a", 1)], prog("t:a", 10_000), "ok");
    check(x, &[], prog("t:zz", 10), "task zz: no such item in this milestone");
    check(x, &[], handoff("spec"), "event item-handed-off refused: phase spec is pending, not in progress");
    check(x, &[start("spec", 1)], handoff("spec"), "ok");
    // Completion, failure, blocking, skipping, cancelling follow the item table.
    check(x, &[], done("design"), "phase design: cannot go from pending to completed");
    check(x, &[], fail("t:a"), "task a: cannot go from pending to failed");
    check(x, &[skip("t:a")], block("t:a"), "task a: cannot go from skipped to blocked");
    check(x, &[cancel("spec")], skip("spec"), "phase spec: cannot go from cancelled to skipped");
    check(x, &[start("spec", 1), done("spec")], cancel("spec"), "phase spec: cannot go from completed to cancelled");
    check(x, &[], done("nope"), "phase nope: no such item in this milestone");
    // Retries: only a failed or blocked item, with a later attempt.
    check(x, &[start("design", 1)], retry("design", 2), "event retry-scheduled refused: phase design is in-progress; only a failed or blocked item is retried");
    check(x, &[start("design", 1), fail("design")], retry("design", 1), "event retry-scheduled refused: phase design: retry attempt 1 is not after 1");
    check(x, &[start("design", 1), fail("design")], retry("design", 2), "ok");
    check(x, &[block("design")], retry("design", 1), "ok");
    check(x, &[], retry("t:zz", 1), "task zz: no such item in this milestone");
    // Milestone status.
    check(x, &[], status(Completed), "event status-changed refused: phases neither completed nor skipped: design, spec, task, execute");
    check(x, &[start("design", 1), done("design")], status(Completed), "event status-changed refused: phases neither completed nor skipped: spec, task, execute");
    check(x, &all_phases_done(), status(Completed), "ok");
    check(x, &[], status(Active), "milestone: cannot go from active to active");
    check(x, &[], status(AwaitingIntervention), "event status-changed refused: use intervention-requested to await an intervention");
    check(x, &[ask(&[Retry])], status(Active), "event status-changed refused: use intervention-answered to leave awaiting-intervention");
    check(x, &[ask(&[Retry])], status(Cancelled), "ok");
    check(x, &[status(Failed)], status(Blocked), "milestone: cannot go from failed to blocked");
    // Final milestones refuse everything except recording git effects and checkpoints.
    check(x, &[status(Cancelled)], status(Active), "milestone: cannot go from cancelled to active");
    check(x, &[status(Cancelled)], start("design", 1), "event item-started refused: the milestone is cancelled");
    check(x, &[status(Cancelled)], tasks(&[("c", &[])]), "event tasks-added refused: the milestone is cancelled");
    check(x, &[status(Cancelled)], Event::Tagged { at: T, tag: "v1".into() }, "ok");
    check(x, &[status(Cancelled)], Event::CheckpointRecorded { at: T, label: "end".into() }, "ok");
    let mut complete = all_phases_done();
    complete.push(status(Completed));
    check(x, &complete, Event::Merged { at: T, commit: "m1".into() }, "ok");
    // The last phase's commit is recorded after completion; a second one is still refused.
    check(x, &complete, commit("design"), "ok");
    let mut committed = complete.clone();
    committed.push(commit("execute"));
    check(x, &committed, commit("execute"), "event phase-committed refused: phase execute is already committed");
    check(x, &complete, Event::BranchCreated { at: T, branch: "b".into(), base: "main".into() }, "event branch-created refused: the milestone is completed");
    check(x, &complete, status(Failed), "milestone: cannot go from completed to failed");
    // Interventions.
    check(x, &[], ask(&[]), "event intervention-requested refused: an intervention needs at least one option");
    check(x, &[], Event::InterventionRequested { at: T, item: Some(item("t:zz")), reason: "r".into(), options: vec![Retry] }, "task zz: no such item in this milestone");
    check(x, &[status(Blocked)], ask(&[Retry]), "milestone: cannot go from blocked to awaiting-intervention");
    check(x, &[ask(&[Retry])], ask(&[Retry]), "milestone: cannot go from awaiting-intervention to awaiting-intervention");
    check(x, &[], answer(Retry), "event intervention-answered refused: no intervention is open");
    check(x, &[ask(&[Retry, Skip])], answer(Abort), "event intervention-answered refused: Abort is not one of the options [Retry, Skip]");
    check(x, &[ask(&[Retry, Skip])], answer(Skip), "ok");
    check(x, &[ask(&[Abort])], answer(Abort), "ok");
    // Rollback to another milestone's checkpoint.
    let other = MilestoneState::from_events([&created("other")]).unwrap();
    check(x, &[], Event::RolledBack { at: T, label: "cp".into(), state: Box::new(other) }, "event rolled-back refused: checkpoint \"cp\" belongs to milestone other, not login");
    check(x, &[], Event::RolledBack { at: T, label: "cp".into(), state: Box::new(p.clone()) }, "ok");
    // Git bookkeeping.
    check(x, &[], commit("nope"), "phase nope: no such item in this milestone");
    check(x, &[commit("design")], commit("design"), "event phase-committed refused: phase design is already committed");
    check(x, &[], Event::BranchCreated { at: T, branch: "feature/milestone-login".into(), base: "main".into() }, "ok");
    // Tasks: every problem at once, with where it is.
    check(x, &[], tasks(&[("c", &["a", "b"])]), "ok");
    // Re-listing tasks already present, identical, is harmless (a producer that runs again);
    // the same id with another spec is refused by name.
    check(x, &[], tasks(&[("a", &[])]), "ok");
    check(x, &[], tasks(&[("a", &[]), ("b", &["a"])]), "ok");
    check(x, &[], tasks(&[("a", &[]), ("c", &["a"])]), "ok");
    check(x, &[], tasks(&[("b", &[])]), "tasks refused: 1 problem\n  - tasks[0].id: task id \"b\" is already used by a task with a different spec");
    check(x, &[], tasks(&[("a", &[]), ("b", &[]), ("c", &["b"])]), "tasks refused: 1 problem\n  - tasks[1].id: task id \"b\" is already used by a task with a different spec");
    check(x, &[start("execute", 1), done("execute")], tasks(&[("a", &[]), ("b", &["a"])]), "ok");
    check(x, &[start("execute", 1), done("execute")], tasks(&[("a", &[]), ("c", &[])]), "tasks refused: 1 problem\n  - phase execute: the task phase is completed; no task can join it");
    check(x, &[], tasks(&[("c", &[]), ("c", &[])]), "tasks refused: 1 problem\n  - tasks[1].id: task id \"c\" is listed twice");
    check(x, &[], tasks(&[("c", &["c"]), ("d", &["zz"])]), "tasks refused: 2 problems\n  - tasks[0].dependencies[0]: task \"c\" depends on itself\n  - tasks[1].dependencies[0]: task \"d\" depends on unknown task \"zz\"");
    check(x, &[], tasks(&[("c", &["d"]), ("d", &[])]), "tasks refused: 1 problem\n  - tasks[0].dependencies[0]: task \"c\" depends on \"d\", listed after it (list tasks in dependency order)");
    check(x, &[start("execute", 1), done("execute")], tasks(&[("c", &[])]), "tasks refused: 1 problem\n  - phase execute: the task phase is completed; no task can join it");
}

/// The events that move an item to `to`, given its attempts so far.
fn event_to(id: &str, to: ItemStatus, attempts: u32) -> Option<Event> {
    Some(match to {
        ItemStatus::Pending => return None,
        ItemStatus::InProgress => start(id, attempts + 1),
        ItemStatus::Completed => done(id),
        ItemStatus::Failed => fail(id),
        ItemStatus::Blocked => block(id),
        ItemStatus::Skipped => skip(id),
        ItemStatus::Cancelled => cancel(id),
    })
}

/// Events that bring an item from pending to `status`.
fn path_to(id: &str, status: ItemStatus) -> Vec<Event> {
    match status {
        ItemStatus::Pending => vec![],
        ItemStatus::InProgress => vec![start(id, 1)],
        ItemStatus::Completed => vec![start(id, 1), done(id)],
        ItemStatus::Failed => vec![start(id, 1), fail(id)],
        ItemStatus::Blocked => vec![block(id)],
        ItemStatus::Skipped => vec![skip(id)],
        ItemStatus::Cancelled => vec![cancel(id)],
    }
}

#[test]
fn every_item_status_pair_through_apply_matches_the_table() {
    let mut checked = 0;
    for id in ["design", "execute", "t:a", "t:b"] {
        let it = item(id);
        for from in ItemStatus::ALL {
            let mut s = executing();
            for e in path_to(id, from) {
                s.apply(&e).unwrap();
            }
            assert_eq!(s.item(&it).unwrap().status, from);
            for to in ItemStatus::ALL {
                let attempts = s.item(&it).unwrap().attempts;
                let Some(event) = event_to(id, to, attempts) else {
                    continue;
                };
                let legal = milestone_core::state::check_item_transition(&it, from, to).is_ok();
                let mut after = s.clone();
                match after.apply(&event) {
                    Ok(()) => {
                        assert!(legal, "{id}: {from} -> {to} accepted");
                        assert_eq!(after.item(&it).unwrap().status, to);
                    }
                    Err(err) => {
                        assert!(!legal, "{id}: {from} -> {to} refused: {err}");
                        assert_eq!(
                            err,
                            TransitionError::Item {
                                item: it.clone(),
                                from,
                                to
                            }
                        );
                        assert_eq!(after, s, "{id}: {from} -> {to} changed the state");
                    }
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * 7 * 6);
}

/// Events that bring a milestone with every phase completed to `status`.
fn milestone_path(status: MilestoneStatus) -> Vec<Event> {
    let mut v = all_phases_done();
    match status {
        MilestoneStatus::Active => {}
        MilestoneStatus::AwaitingIntervention => v.push(ask(&[Decision::Retry, Decision::Abort])),
        other => v.push(self::status(other)),
    }
    v
}

/// The event that asks for `to` from `from`: interventions have their own events.
fn milestone_event(from: MilestoneStatus, to: MilestoneStatus) -> Event {
    use MilestoneStatus::*;
    match (from, to) {
        (_, AwaitingIntervention) => ask(&[Decision::Retry]),
        (AwaitingIntervention, Active) => answer(Decision::Retry),
        (AwaitingIntervention, Failed) => answer(Decision::Abort),
        (_, to) => status(to),
    }
}

#[test]
fn every_milestone_status_pair_through_apply_matches_the_table() {
    for from in MilestoneStatus::ALL {
        let s = MilestoneState::from_events(
            std::iter::once(&created("login"))
                .chain([Event::ExecutionStarted { at: T }].iter())
                .chain(milestone_path(from).iter()),
        )
        .unwrap();
        assert_eq!(s.status(), from);
        for to in MilestoneStatus::ALL {
            let event = milestone_event(from, to);
            let legal = check_milestone_transition(from, to).is_ok();
            let mut after = s.clone();
            match after.apply(&event) {
                Ok(()) => {
                    assert!(legal, "{from} -> {to} accepted");
                    assert_eq!(after.status(), to);
                    assert_eq!(
                        after.intervention().is_some(),
                        to == MilestoneStatus::AwaitingIntervention
                    );
                }
                Err(err) => {
                    assert!(!legal, "{from} -> {to} refused: {err}");
                    assert_eq!(after, s, "{from} -> {to} changed the state");
                    if matches!(event, Event::StatusChanged { .. }) {
                        assert_eq!(err, TransitionError::Milestone { from, to });
                    }
                }
            }
        }
    }
}

#[test]
fn from_events_needs_a_created_event_first() {
    let none: [&Event; 0] = [];
    assert_eq!(
        MilestoneState::from_events(none).unwrap_err().to_string(),
        "event none refused: an event log must start with a created event"
    );
    assert_eq!(
        MilestoneState::from_events([&Event::ExecutionStarted { at: T }])
            .unwrap_err()
            .to_string(),
        "event execution-started refused: an event log must start with a created event"
    );
    // The first event that does not fit stops the fold.
    let err = MilestoneState::from_events(&[
        created("login"),
        start("design", 1),
        Event::ExecutionStarted { at: T },
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "event item-started refused: items start only in execution mode"
    );
}

#[test]
fn a_retry_restarts_a_failed_item_and_keeps_its_progress() {
    let mut s = executing();
    for e in [
        start("design", 1),
        prog("design", 4_000),
        fail("design"),
        retry("design", 2),
        start("design", 2),
    ] {
        s.apply(&e).unwrap();
    }
    let d = s.phase("design").unwrap();
    assert_eq!(d.item.status, ItemStatus::InProgress);
    assert_eq!(d.item.attempts, 2);
    assert_eq!(d.item.progress.basis_points(), 4_000);
    assert_eq!(
        d.item.last_error.as_ref().map(|e| e.message.as_str()),
        Some("boom")
    );
    assert_eq!(d.item.started_at, Some(T));
}

/// Re-adding identical tasks adds nothing: the tasks, their states and progress stay as they
/// were; only new ones join.
#[test]
fn re_adding_identical_tasks_adds_only_the_new_ones() {
    let mut s = executing();
    s.apply(&start("execute", 1)).unwrap();
    s.apply(&start("t:a", 1)).unwrap();
    s.apply(&done("t:a")).unwrap();
    let before = serde_json::to_value(s.tasks()).unwrap();
    let progress = s.phase("execute").unwrap().item.progress;
    s.apply(&tasks(&[("a", &[]), ("b", &["a"])])).unwrap();
    assert_eq!(serde_json::to_value(s.tasks()).unwrap(), before);
    assert_eq!(s.phase("execute").unwrap().item.progress, progress);
    s.apply(&tasks(&[("b", &["a"]), ("c", &["b"])])).unwrap();
    let ids: Vec<&str> = s.tasks().iter().map(|t| t.spec.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(s.task_position("c"), Some(2));
    assert_eq!(s.task("a").unwrap().item.status, ItemStatus::Completed);
}
