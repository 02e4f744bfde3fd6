//! `ProgressReport::compute` and its text rendering: table tests over small scripted milestones,
//! and the exact text of a small case.

use milestone_core::plan::{Estimates, PhaseEstimate};
use milestone_core::progress::{ProgressReport, RenderOptions, render_text};
use milestone_core::{
    Event, FailureKind, ItemError, ItemOutput, ItemRef, MilestoneId, MilestonePlan, MilestoneState,
    MilestoneStatus, PhaseId, Progress, TaskId, TaskSpec, Timestamp, Workflow,
};

const H: u64 = 3_600_000;

#[derive(Clone, Copy)]
enum Step {
    Start,
    Prog(u32),
    Done,
    Fail,
    Block,
    Skip,
    AddTasks(u8),
    Milestone(MilestoneStatus),
}
use Step::*;

fn item(id: &str) -> ItemRef {
    if let Some(t) = id.strip_prefix("t:") {
        ItemRef::Task(TaskId::new(t).unwrap())
    } else {
        ItemRef::Phase(PhaseId::new(id).unwrap())
    }
}

/// A KIRO milestone in execution mode at time 0, then `steps` (item, step, at in ms).
fn state(steps: &[(&str, Step, u64)]) -> MilestoneState {
    let mut s = MilestoneState::new(
        MilestoneId::new("login").unwrap(),
        "Add login",
        "",
        Workflow::kiro(),
        Timestamp(0),
        1,
    );
    s.apply(&Event::ExecutionStarted { at: Timestamp(0) })
        .unwrap();
    for &(id, step, at) in steps {
        let at = Timestamp(at);
        let it = if id.is_empty() {
            item("design")
        } else {
            item(id)
        };
        let attempts = s.item(&it).map_or(0, |i| i.attempts);
        let e = match step {
            Start => Event::ItemStarted {
                at,
                item: it,
                attempt: attempts + 1,
            },
            Prog(bp) => Event::ItemProgressed {
                at,
                item: it,
                progress: Progress::from_basis_points(bp),
            },
            Done => Event::ItemCompleted {
                at,
                item: it,
                output: ItemOutput::default().into(),
            },
            Fail => Event::ItemFailed {
                at,
                item: it,
                error: ItemError {
                    kind: FailureKind::Transient,
                    message: "agent crashed\nwith a long trace".into(),
                },
            },
            Block => Event::ItemBlocked {
                at,
                item: it,
                reason: "waiting".into(),
            },
            Skip => Event::ItemSkipped {
                at,
                item: it,
                reason: "degraded".into(),
            },
            AddTasks(n) => Event::TasksAdded {
                at,
                tasks: (0..n)
                    .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "task"))
                    .collect(),
            },
            Milestone(status) => Event::StatusChanged {
                at,
                status,
                reason: None,
            },
        };
        s.apply(&e)
            .unwrap_or_else(|err| panic!("{id} {e:?}: {err}"));
    }
    s
}

fn estimates(e: &[(&str, u64)]) -> Estimates {
    Estimates {
        phases: e
            .iter()
            .map(|&(p, ms)| PhaseEstimate {
                phase: PhaseId::new(p).unwrap(),
                effort_ms: ms,
            })
            .collect(),
        ..Estimates::default()
    }
}

fn summary(r: &ProgressReport) -> String {
    let ids = |v: &[PhaseId]| v.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
    format!(
        "{} v={} eta={} slow=[{}] blocked=[{}]",
        r.overall,
        r.velocity_bp_per_hour,
        r.eta.map_or("-".to_string(), |t| t.0.to_string()),
        ids(&r.slow),
        ids(&r.blocked),
    )
}

/// Builds the state, computes the report at `now` with `est`, and compares its summary.
fn check(steps: &[(&str, Step, u64)], now: u64, est: &[(&str, u64)], expected: &str) {
    let s = state(steps);
    let e = estimates(est);
    let r = ProgressReport::compute(&s, Timestamp(now), Some(&e));
    assert_eq!(summary(&r), expected, "steps at now={now}");
    assert_eq!(r.overall, milestone_core::progress::overall(&s));
    let sum: u32 = r.phases.iter().map(|p| p.contribution_bp).sum();
    if !r.overall.is_complete() {
        assert_eq!(u32::from(r.overall.basis_points()), sum.min(9_999));
    }
}

#[rustfmt::skip]
#[test]
fn overall_velocity_eta_slow_and_blocked() {
    check(&[], 0, &[], "0.00 % v=0 eta=- slow=[] blocked=[]");
    check(&[], 5 * H, &[], "0.00 % v=0 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0)], H, &[], "0.00 % v=0 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Prog(5_000), H)], H, &[], "7.50 % v=750 eta=48000000 slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Done, H)], H, &[], "15.00 % v=1500 eta=24000000 slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Done, H)], 2 * H, &[], "15.00 % v=750 eta=48000000 slow=[] blocked=[]");
    // A report of 100 % on an unfinished phase counts as 99.99 %.
    check(&[("design", Start, 0), ("design", Prog(10_000), H)], H, &[], "14.99 % v=1499 eta=24016011 slow=[] blocked=[]");
    // `now` before the first start: no time has passed, so no velocity and no ETA.
    check(&[("design", Start, 10 * H), ("design", Prog(5_000), 10 * H)], 5 * H, &[], "7.50 % v=0 eta=- slow=[] blocked=[]");
    // Estimates: slow only while unfinished and past the estimate.
    check(&[("design", Start, 0)], 2 * H, &[("design", H)], "0.00 % v=0 eta=- slow=[design] blocked=[]");
    check(&[("design", Start, 0)], H, &[("design", H)], "0.00 % v=0 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0)], 2 * H, &[("design", 3 * H)], "0.00 % v=0 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Done, 3 * H)], 4 * H, &[("design", H)], "15.00 % v=375 eta=96000000 slow=[] blocked=[]");
    check(&[("design", Start, 0)], 2 * H, &[("spec", H)], "0.00 % v=0 eta=- slow=[] blocked=[]");
    // Failed and blocked phases are stuck; a failed one can still be slow.
    check(&[("design", Start, 0), ("design", Fail, H)], 2 * H, &[("design", H)], "0.00 % v=0 eta=- slow=[design] blocked=[design]");
    check(&[("spec", Block, 0)], H, &[], "0.00 % v=0 eta=- slow=[] blocked=[spec]");
    check(&[("spec", Block, 0), ("spec", Start, H)], H, &[], "0.00 % v=0 eta=- slow=[] blocked=[]");
    // Skipped phases are not stuck, and never count as complete.
    check(&[("design", Skip, 0)], H, &[("design", 1)], "0.00 % v=0 eta=- slow=[] blocked=[]");
    // The execute phase moves with the share of its tasks done.
    check(&[("execute", AddTasks(2), 0), ("execute", Start, 0), ("t:t0", Start, 0), ("t:t0", Done, H)], H, &[], "20.00 % v=2000 eta=18000000 slow=[] blocked=[]");
    check(&[("execute", AddTasks(4), 0), ("t:t0", Start, 0), ("t:t0", Prog(5_000), H)], 2 * H, &[], "5.00 % v=250 eta=144000000 slow=[] blocked=[]");
    // A failed or cancelled milestone has no ETA.
    check(&[("design", Start, 0), ("design", Done, H), ("", Milestone(MilestoneStatus::Failed), H)], H, &[], "15.00 % v=1500 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Done, H), ("", Milestone(MilestoneStatus::Cancelled), H)], H, &[], "15.00 % v=1500 eta=- slow=[] blocked=[]");
    check(&[("design", Start, 0), ("design", Done, H), ("", Milestone(MilestoneStatus::Blocked), H)], H, &[], "15.00 % v=1500 eta=24000000 slow=[] blocked=[]");
}

fn all_done(end: u64) -> Vec<(&'static str, Step, u64)> {
    let mut v = Vec::new();
    for (i, p) in ["design", "spec", "task", "execute"]
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        v.push((p, Start, i * end / 4));
        v.push((p, Done, (i + 1) * end / 4));
    }
    v
}

#[rustfmt::skip]
#[test]
fn complete_milestone_reports_its_completion_time() {
    // The ETA is the last completion; velocity counts time until then, not until `now`.
    check(&all_done(4 * H), 4 * H, &[], "100.00 % v=2500 eta=14400000 slow=[] blocked=[]");
    check(&all_done(4 * H), 40 * H, &[], "100.00 % v=2500 eta=14400000 slow=[] blocked=[]");
    // One step short of complete is never 100 %.
    let mut almost = all_done(4 * H);
    almost.pop();
    almost.push(("execute", Prog(10_000), 4 * H));
    check(&almost, 4 * H, &[], "99.99 % v=2499 eta=14401441 slow=[] blocked=[]");
    let mut steps = all_done(2 * H);
    steps.push(("", Milestone(MilestoneStatus::Completed), 3 * H));
    check(&steps, 9 * H, &[], "100.00 % v=5000 eta=7200000 slow=[] blocked=[]");
}

#[test]
fn phase_rows_carry_timing_and_estimates() {
    let s = state(&[
        ("design", Start, 0),
        ("design", Done, H),
        ("spec", Start, H),
        ("spec", Prog(4_200), 2 * H),
        ("task", Block, 2 * H),
    ]);
    let r = ProgressReport::compute(&s, Timestamp(3 * H), Some(&estimates(&[("spec", H)])));
    let row = |id: &str| r.phases.iter().find(|p| p.id.as_str() == id).unwrap();
    assert_eq!(r.phases.len(), 4);
    assert_eq!(row("design").elapsed_ms, Some(H));
    assert_eq!(row("design").estimate_ms, None);
    assert_eq!(row("design").contribution_bp, 1_500);
    assert_eq!(row("spec").elapsed_ms, Some(2 * H));
    assert_eq!(row("spec").estimate_ms, Some(H));
    assert!(row("spec").slow);
    assert_eq!(row("spec").contribution_bp, 1_050);
    assert_eq!(row("spec").started_at, Some(Timestamp(H)));
    assert_eq!(row("task").elapsed_ms, None);
    assert!(row("task").blocked);
    assert_eq!(row("execute").started_at, None);
    assert_eq!(r.first_started_at, Some(Timestamp(0)));
    assert_eq!(r.elapsed_ms, 3 * H);
    assert_eq!(r.overall.basis_points(), 2_550);
}

#[test]
fn estimates_default_to_the_plan_on_the_state() {
    let mut s = MilestoneState::new(
        MilestoneId::new("m").unwrap(),
        "M",
        "",
        Workflow::kiro(),
        Timestamp(0),
        0,
    );
    let plan = MilestonePlan {
        estimates: Some(estimates(&[("design", H)])),
        ..MilestonePlan::default()
    };
    s.apply(&Event::PlanRecorded {
        at: Timestamp(0),
        plan: Box::new(plan),
    })
    .unwrap();
    s.apply(&Event::ExecutionStarted { at: Timestamp(0) })
        .unwrap();
    s.apply(&Event::ItemStarted {
        at: Timestamp(0),
        item: item("design"),
        attempt: 1,
    })
    .unwrap();
    let from_plan = ProgressReport::compute(&s, Timestamp(2 * H), None);
    assert_eq!(from_plan.slow, vec![PhaseId::new("design").unwrap()]);
    // Estimates passed in win over the plan's.
    let given = estimates(&[("design", 3 * H)]);
    let overridden = ProgressReport::compute(&s, Timestamp(2 * H), Some(&given));
    assert!(overridden.slow.is_empty());
    assert_eq!(overridden.phases[0].estimate_ms, Some(3 * H));
}

fn sample() -> ProgressReport {
    let s = state(&[
        ("execute", AddTasks(3), 0),
        ("design", Start, 0),
        ("design", Done, H),
        ("spec", Start, H),
        ("spec", Prog(4_200), 2 * H),
        ("task", Start, H),
        ("task", Fail, 2 * H),
        ("t:t0", Start, H),
        ("t:t0", Done, 2 * H),
        ("t:t1", Block, 2 * H),
    ]);
    ProgressReport::compute(
        &s,
        Timestamp(1_795_164_000_000 + 3 * H),
        Some(&estimates(&[("spec", H + 30 * 60_000)])),
    )
}

#[test]
fn renders_the_exact_text_of_a_small_case() {
    // A scenario starting 2026-11-20 08:40 UTC, seen three hours later.
    let s = {
        let base = 1_795_164_000_000;
        let mut s = MilestoneState::new(
            MilestoneId::new("login").unwrap(),
            "Add login",
            "",
            Workflow::kiro(),
            Timestamp(base),
            1,
        );
        let at = |h: u64| Timestamp(base + h * H);
        let events = [
            Event::ExecutionStarted { at: at(0) },
            Event::TasksAdded {
                at: at(0),
                tasks: (0..3)
                    .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "task"))
                    .collect(),
            },
            Event::ItemStarted {
                at: at(0),
                item: item("design"),
                attempt: 1,
            },
            Event::ItemCompleted {
                at: at(1),
                item: item("design"),
                output: ItemOutput::default().into(),
            },
            Event::ItemStarted {
                at: at(1),
                item: item("spec"),
                attempt: 1,
            },
            Event::ItemProgressed {
                at: at(2),
                item: item("spec"),
                progress: Progress::from_basis_points(4_200),
            },
            Event::ItemStarted {
                at: at(1),
                item: item("task"),
                attempt: 1,
            },
            Event::ItemFailed {
                at: at(2),
                item: item("task"),
                error: ItemError {
                    kind: FailureKind::Timeout,
                    message: "ran past 1800 s\nmore".into(),
                },
            },
            Event::ItemStarted {
                at: at(1),
                item: item("execute"),
                attempt: 1,
            },
            Event::ItemStarted {
                at: at(1),
                item: item("t:t0"),
                attempt: 1,
            },
            Event::ItemCompleted {
                at: at(2),
                item: item("t:t0"),
                output: ItemOutput::default().into(),
            },
            Event::ItemBlocked {
                at: at(2),
                item: item("t:t1"),
                reason: "waiting".into(),
            },
        ];
        for e in &events {
            s.apply(e).unwrap();
        }
        s
    };
    let r = ProgressReport::compute(
        &s,
        Timestamp(1_795_164_000_000 + 3 * H),
        Some(&estimates(&[("spec", H + 30 * 60_000)])),
    );
    let text = r.render(&RenderOptions::default().width(20));
    let expected = "\
login — Add login (active)
design  [████████████████████] 100.00 %  completed
spec    [████████░░░░░░░░░░░░]  42.00 %  in-progress
task    [░░░░░░░░░░░░░░░░░░░░]   0.00 %  failed
execute [██████░░░░░░░░░░░░░░]  33.33 %  in-progress
overall [███████░░░░░░░░░░░░░]  38.83 %
tasks: 1/3 completed, 0 in progress, 0 failed, 1 blocked, 0 skipped
velocity: 12.94 %/h, ETA 2026-11-20T16:23:33Z (in 4h 43m)
slow: spec running 2h 00m, past its estimate of 1h 30m
blocked: task failed (Timeout): ran past 1800 s
blocked tasks: t1
";
    assert_eq!(text, expected, "\n{text}");
    let ascii = r.render(&RenderOptions::default().width(4).ascii(true));
    assert!(ascii.contains("\noverall [#...]  38.83 %\n"), "{ascii}");
    assert_eq!(r.to_string(), render_text(&r));
    assert!(render_text(&r).contains(&format!("[{}]", "█".repeat(30))));
}

#[test]
fn lists_at_most_the_configured_number_of_blocked_tasks() {
    let mut steps = vec![("execute", AddTasks(5), 0)];
    let ids = ["t:t0", "t:t1", "t:t2", "t:t3", "t:t4"];
    for id in ids {
        steps.push((id, Block, 0));
    }
    let r = ProgressReport::compute(&state(&steps), Timestamp(H), None);
    assert_eq!(r.blocked_tasks.len(), 5);
    assert_eq!(r.tasks.blocked, 5);
    assert_eq!(r.tasks.total, 5);
    let text = r.render(&RenderOptions::default().max_listed_tasks(2));
    assert!(
        text.ends_with("blocked tasks: t0, t1 and 3 more\n"),
        "{text}"
    );
    let text = r.render(&RenderOptions::default().max_listed_tasks(0));
    assert!(text.ends_with("blocked tasks: 5\n"), "{text}");
}

#[test]
fn report_round_trips_through_json_and_is_deterministic() {
    let r = sample();
    let json = serde_json::to_string(&r).unwrap();
    let back: ProgressReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(
        back.render(&RenderOptions::default()),
        r.render(&RenderOptions::default())
    );
    assert_eq!(sample(), r);
    // Unknown fields are refused, like everywhere else.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["surprise"] = serde_json::json!(1);
    assert!(serde_json::from_value::<ProgressReport>(v).is_err());
}
