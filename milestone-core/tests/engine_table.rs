//! Table tests of the engine: each recovery step, each strategy, timeouts, gates, tasks and
//! intervention answers, as one-line cases through one `check(case, expected)` helper. A case
//! is a workflow, a configuration and a script of how each attempt of each unit of work ends;
//! the expected value is the trace of the events the engine returned (checkpoints and
//! progress left out).

use std::collections::HashMap;

use milestone_core::complexity::Complexity;
use milestone_core::engine::{
    AdaptiveInputs, AnalysisKind, Command, Engine, EngineConfig, EngineError, Input, Outcome,
    RecoveryStep, Role, StartMode, Step, Strategy, Work,
};
use milestone_core::{
    Artifact, ArtifactBody, Decision, Event, FailureKind, ItemError, ItemOutput, ItemRef,
    MilestoneId, PhaseId, PhaseSpec, Priority, Progress, Timestamp, Weight, Workflow,
};

/// How one attempt ends.
#[derive(Debug, Clone)]
enum Act {
    Ok,
    /// Finishes without its expected outputs.
    Bare,
    Fail(FailureKind),
    Hang,
    /// Hands off a partial result, then (later) finishes.
    Handoff,
    /// Hands off a partial result, then (later) fails.
    HandoffFail(FailureKind),
    /// Reports 25 % progress, then (later) finishes.
    Report,
    /// Finishes with this output data.
    Data(serde_json::Value),
    /// Reports 25 % progress, then (later) finishes with this output data.
    LateData(serde_json::Value),
}

struct Case {
    phases: Vec<PhaseSpec>,
    max_parallel: u32,
    config: EngineConfig,
    script: HashMap<String, Vec<Act>>,
    answers: Vec<Decision>,
    gates: Vec<bool>,
}

fn p(id: &str, weight: u8, deps: &[&str]) -> PhaseSpec {
    let mut s = PhaseSpec::new(PhaseId::new(id).unwrap(), id, Weight::new(weight).unwrap());
    s.dependencies = deps.iter().map(|d| PhaseId::new(d).unwrap()).collect();
    s.expected_outputs = vec![format!("{id}-doc")];
    s.limits.timeout_ms = 1_000;
    s
}

fn one() -> Case {
    case(vec![p("a", 100, &[])])
}

fn two(deps: &[&str]) -> Case {
    case(vec![p("a", 50, &[]), p("b", 50, deps)])
}

fn case(phases: Vec<PhaseSpec>) -> Case {
    Case {
        phases,
        max_parallel: 3,
        config: EngineConfig::default(),
        script: HashMap::new(),
        answers: Vec::new(),
        gates: Vec::new(),
    }
}

impl Case {
    fn acts(mut self, work: &str, acts: &[Act]) -> Case {
        self.script.insert(work.to_string(), acts.to_vec());
        self
    }
    fn order(mut self, order: &[RecoveryStep]) -> Case {
        self.config.recovery.order = order.to_vec();
        self
    }
    fn strategy(mut self, s: Strategy) -> Case {
        self.config.strategy = s;
        self
    }
    fn answers(mut self, a: &[Decision]) -> Case {
        self.answers = a.to_vec();
        self
    }
    fn optional(mut self, id: &str) -> Case {
        for ph in &mut self.phases {
            if ph.id.as_str() == id {
                ph.optional = true;
            }
        }
        self
    }
    fn host_gate(mut self, id: &str, results: &[bool]) -> Case {
        self.config.host_gates.push(PhaseId::new(id).unwrap());
        self.gates = results.to_vec();
        self
    }
    fn limit(mut self, n: usize) -> Case {
        self.config.max_concurrency = n;
        self
    }
    fn adaptive(mut self, a: AdaptiveInputs) -> Case {
        self.config.strategy = Strategy::Adaptive;
        self.config.adaptive = a;
        self
    }
}

fn token(e: &Event) -> Option<String> {
    let id = |i: &ItemRef| i.as_str().to_string();
    Some(match e {
        Event::StrategyChosen { strategy, .. } => format!("strategy:{strategy}"),
        Event::TasksAdded { tasks, .. } => format!(
            "tasks:{}",
            tasks
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Event::ItemStarted { item, attempt, .. } => format!("+{}{attempt}", id(item)),
        Event::ItemHandedOff { item, .. } => format!("handoff:{}", id(item)),
        Event::ItemCompleted { item, .. } => format!("ok:{}", id(item)),
        Event::ItemFailed { item, error, .. } => {
            format!(
                "x:{}:{}",
                id(item),
                format!("{:?}", error.kind).to_lowercase()
            )
        }
        Event::ItemSkipped { item, .. } => format!("skip:{}", id(item)),
        Event::ItemCancelled { item, .. } => format!("cancel:{}", id(item)),
        Event::ItemDegraded { item, .. } => format!("degrade:{}", id(item)),
        Event::RetryScheduled { item, attempt, .. } => format!("retry:{}{attempt}", id(item)),
        Event::RolledBack { label, .. } => format!("rollback:{label}"),
        Event::InterventionRequested { item, .. } => {
            format!("ask:{}", item.as_ref().map(id).unwrap_or_default())
        }
        Event::InterventionAnswered { decision, .. } => {
            format!("answer:{}", format!("{decision:?}").to_lowercase())
        }
        Event::StatusChanged { status, .. } => format!("status:{status}"),
        _ => return None,
    })
}

/// Runs a case to its end and returns the trace.
fn trace(c: Case) -> String {
    let log = start_log(&c);
    trace_from(c, log).0
}

/// A new milestone of the case's workflow, in execution mode.
fn start_log(c: &Case) -> Vec<Event> {
    let workflow = Workflow::new(c.phases.clone(), c.max_parallel).unwrap();
    vec![
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "t".into(),
            context: String::new(),
            workflow,
            seed: 3,
        },
        Event::ExecutionStarted { at: Timestamp(0) },
    ]
}

/// Runs a case from `log` (a later call on the same milestone) to its end; returns the trace
/// and the log grown by the events of the run.
fn trace_from(mut c: Case, mut log: Vec<Event>) -> (String, Vec<Event>) {
    let mut engine = Engine::resume(&log, c.config.clone()).unwrap();
    let mut now = log.last().map_or(0, |e| e.at().0) + 1;
    let mut out: Vec<String> = Vec::new();
    let mut queue: Vec<Input> = vec![Input::Start(StartMode::Execution)];
    let mut later: Vec<Input> = Vec::new();
    let mut wake: Option<u64> = None;
    let mut answers = c.answers.clone().into_iter();
    let mut gates = c.gates.clone().into_iter();
    for _ in 0..500 {
        let input = if !queue.is_empty() {
            queue.remove(0)
        } else if !later.is_empty() {
            later.remove(0)
        } else if let Some(w) = wake.take() {
            now = now.max(w);
            Input::Tick
        } else {
            break;
        };
        now += 10;
        let step: Step = engine.handle(input, Timestamp(now)).unwrap();
        out.extend(step.events.iter().filter_map(token));
        log.extend(step.events.iter().cloned());
        for cmd in step.commands {
            match cmd {
                Command::Start(s) => {
                    let name = match &s.work {
                        Work::Item(i) => i.as_str().to_string(),
                        Work::Planning(a) => a.name().to_string(),
                    };
                    if s.degraded {
                        out.push(format!("degraded:{name}"));
                    }
                    let act = c
                        .script
                        .get_mut(&name)
                        .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                        .unwrap_or(Act::Ok);
                    let (work, attempt) = (s.work.clone(), s.attempt);
                    let output = |bare: bool| ItemOutput {
                        artifacts: if bare {
                            Vec::new()
                        } else {
                            vec![Artifact {
                                name: format!("{name}-doc"),
                                kind: "document".into(),
                                body: ArtifactBody::Inline(String::new()),
                            }]
                        },
                        ..ItemOutput::default()
                    };
                    match act {
                        Act::Ok => queue.push(Input::Finished {
                            work,
                            attempt,
                            output: output(false).into(),
                        }),
                        Act::Bare => queue.push(Input::Finished {
                            work,
                            attempt,
                            output: output(true).into(),
                        }),
                        Act::Data(data) => queue.push(Input::Finished {
                            work,
                            attempt,
                            output: ItemOutput {
                                data,
                                ..output(false)
                            }
                            .into(),
                        }),
                        Act::Fail(kind) => queue.push(Input::Failed {
                            work,
                            attempt,
                            error: ItemError {
                                kind,
                                message: "scripted".into(),
                            },
                        }),
                        Act::Hang => {}
                        Act::HandoffFail(kind) => {
                            queue.push(Input::Handoff {
                                work: work.clone(),
                                attempt,
                                partial: serde_json::json!({"draft": true}),
                            });
                            later.push(Input::Failed {
                                work,
                                attempt,
                                error: ItemError {
                                    kind,
                                    message: "scripted".into(),
                                },
                            });
                        }
                        Act::Report | Act::LateData(_) => {
                            let data = match act {
                                Act::LateData(data) => data,
                                _ => serde_json::Value::Null,
                            };
                            queue.push(Input::Progress {
                                work: work.clone(),
                                attempt,
                                progress: Progress::from_basis_points(2_500),
                            });
                            later.push(Input::Finished {
                                work,
                                attempt,
                                output: ItemOutput {
                                    data,
                                    ..output(false)
                                }
                                .into(),
                            });
                        }
                        Act::Handoff => {
                            queue.push(Input::Handoff {
                                work: work.clone(),
                                attempt,
                                partial: serde_json::json!({"draft": true}),
                            });
                            later.push(Input::Finished {
                                work,
                                attempt,
                                output: output(false).into(),
                            });
                        }
                    }
                }
                Command::WakeAt(t) => wake = Some(t.0),
                Command::AwaitGate { item, attempt } => queue.push(Input::GateResult {
                    item,
                    attempt,
                    passed: gates.next().unwrap_or(true),
                    message: "scripted gate".into(),
                }),
                Command::AwaitIntervention { .. } => match answers.next() {
                    Some(d) => queue.push(Input::Answer(d)),
                    None => out.push("(awaiting)".into()),
                },
                Command::Finished(o) => out.push(match o {
                    Outcome::Completed => "=completed".into(),
                    Outcome::Cancelled => "=cancelled".into(),
                    Outcome::Planned => "=planned".into(),
                    Outcome::Failed { work, attempts, .. } => format!("=failed:{work}:{attempts}"),
                    Outcome::PhasesDone { waiting } => format!(
                        "=phases-done:{}",
                        waiting
                            .iter()
                            .map(|p| p.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    _ => "=other".into(),
                }),
                Command::Cancel { work, attempt } => {
                    let name = match &work {
                        Work::Item(i) => i.as_str().to_string(),
                        Work::Planning(a) => a.name().to_string(),
                    };
                    out.push(format!("stop:{name}{attempt}"));
                    // Anything queued for the cancelled attempt never arrives.
                    let same = |i: &Input| match i {
                        Input::Finished {
                            work: w,
                            attempt: a,
                            ..
                        }
                        | Input::Failed {
                            work: w,
                            attempt: a,
                            ..
                        }
                        | Input::Handoff {
                            work: w,
                            attempt: a,
                            ..
                        } => *w == work && *a == attempt,
                        _ => false,
                    };
                    queue.retain(|i| !same(i));
                    later.retain(|i| !same(i));
                }
                _ => {}
            }
        }
    }
    (out.join(" "), log)
}

fn check(c: Case, expected: &str) {
    let got = trace(c);
    assert_eq!(got, expected, "\n got: {got}\nwant: {expected}");
}

use Act::*;
use FailureKind::{Permanent, Transient, Unavailable};
use RecoveryStep::{Degrade, Intervene, Retry, Rollback};

const SEQ: &str = "strategy:sequential";

#[test]
fn recovery_steps() {
    check(
        one(),
        &format!("{SEQ} +a1 ok:a status:completed =completed"),
    );
    check(
        one().acts("a", &[Fail(Transient)]),
        &format!("{SEQ} +a1 x:a:transient retry:a2 +a2 ok:a status:completed =completed"),
    );
    check(
        one().acts("a", &[Fail(Unavailable), Fail(Transient)]),
        &format!(
            "{SEQ} +a1 x:a:unavailable retry:a2 +a2 x:a:transient retry:a3 +a3 ok:a status:completed =completed"
        ),
    );
    check(
        one().acts("a", &[Fail(Permanent)]),
        &format!(
            "{SEQ} +a1 x:a:permanent degrade:a +a2 degraded:a ok:a status:completed =completed"
        ),
    );
    check(
        two(&["a"]).acts("b", &[Fail(Permanent), Fail(Permanent)]),
        &format!(
            "{SEQ} +a1 ok:a +b1 x:b:permanent rollback:after-a +b2 x:b:permanent degrade:b +b3 degraded:b ok:b status:completed =completed"
        ),
    );
    check(
        one()
            .acts("a", &[Fail(Transient), Fail(Transient), Fail(Transient)])
            .order(&[Retry]),
        &format!(
            "{SEQ} +a1 x:a:transient retry:a2 +a2 x:a:transient retry:a3 +a3 x:a:transient status:failed =failed:phase a:3"
        ),
    );
    check(
        one().acts("a", &[Fail(Permanent)]).order(&[Retry]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
    check(
        one().acts("a", &[Fail(Permanent)]).order(&[]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
    check(
        one().acts("a", &[Fail(Permanent)]).order(&[Degrade]),
        &format!(
            "{SEQ} +a1 x:a:permanent degrade:a +a2 degraded:a ok:a status:completed =completed"
        ),
    );
    check(
        one()
            .acts("a", &[Fail(Permanent), Fail(Permanent)])
            .order(&[Degrade]),
        &format!(
            "{SEQ} +a1 x:a:permanent degrade:a +a2 degraded:a x:a:permanent status:failed =failed:phase a:2"
        ),
    );
    check(
        two(&[])
            .optional("a")
            .acts("a", &[Fail(Permanent)])
            .order(&[Degrade]),
        &format!("{SEQ} +a1 x:a:permanent skip:a +b1 ok:b status:completed =completed"),
    );
    check(
        one().acts("a", &[Fail(Transient)]).order(&[Intervene]),
        &format!("{SEQ} +a1 x:a:transient ask:a (awaiting)"),
    );
    check(
        two(&["a"]).acts("b", &[Fail(Permanent)]).order(&[Rollback]),
        &format!(
            "{SEQ} +a1 ok:a +b1 x:b:permanent rollback:after-a +b2 ok:b status:completed =completed"
        ),
    );
    check(
        two(&["a"])
            .acts("b", &[Fail(Permanent), Fail(Permanent)])
            .order(&[Rollback]),
        &format!(
            "{SEQ} +a1 ok:a +b1 x:b:permanent rollback:after-a +b2 x:b:permanent status:failed =failed:phase b:2"
        ),
    );
}

#[test]
fn intervention_answers() {
    let base = || one().acts("a", &[Fail(Permanent)]).order(&[Intervene]);
    check(
        base().answers(&[Decision::Retry]),
        &format!("{SEQ} +a1 x:a:permanent ask:a answer:retry +a2 ok:a status:completed =completed"),
    );
    check(
        base().answers(&[Decision::Abort]),
        &format!("{SEQ} +a1 x:a:permanent ask:a answer:abort =failed:phase a:1"),
    );
    check(
        two(&["a"])
            .acts("b", &[Fail(Permanent)])
            .order(&[Intervene])
            .answers(&[Decision::Rollback]),
        &format!(
            "{SEQ} +a1 ok:a +b1 x:b:permanent ask:b answer:rollback rollback:after-a +b2 ok:b status:completed =completed"
        ),
    );
    check(
        two(&[])
            .optional("a")
            .acts("a", &[Fail(Permanent)])
            .order(&[Intervene])
            .answers(&[Decision::Skip]),
        &format!(
            "{SEQ} +a1 x:a:permanent ask:a answer:skip skip:a +b1 ok:b status:completed =completed"
        ),
    );
    check(
        base()
            .acts("a", &[Fail(Permanent), Fail(Permanent)])
            .answers(&[Decision::Retry, Decision::Abort]),
        &format!(
            "{SEQ} +a1 x:a:permanent ask:a answer:retry +a2 x:a:permanent ask:a answer:abort =failed:phase a:2"
        ),
    );
}

#[test]
fn timeouts_and_gates() {
    check(
        one().acts("a", &[Hang]),
        &format!("{SEQ} +a1 x:a:timeout retry:a2 stop:a1 +a2 ok:a status:completed =completed"),
    );
    check(
        one().acts("a", &[Hang, Hang, Hang]).order(&[Retry]),
        &format!(
            "{SEQ} +a1 x:a:timeout retry:a2 stop:a1 +a2 x:a:timeout retry:a3 stop:a2 +a3 x:a:timeout status:failed stop:a3 =failed:phase a:3"
        ),
    );
    check(
        one().acts("a", &[Bare]),
        &format!("{SEQ} +a1 x:a:gate retry:a2 +a2 ok:a status:completed =completed"),
    );
    check(
        one().host_gate("a", &[true]),
        &format!("{SEQ} +a1 ok:a status:completed =completed"),
    );
    check(
        one().host_gate("a", &[false, true]),
        &format!("{SEQ} +a1 x:a:gate retry:a2 +a2 ok:a status:completed =completed"),
    );
    check(
        one().host_gate("a", &[false]).order(&[]),
        &format!("{SEQ} +a1 x:a:gate status:failed =failed:phase a:1"),
    );
}

#[test]
fn strategies() {
    check(
        two(&[]),
        &format!("{SEQ} +a1 ok:a +b1 ok:b status:completed =completed"),
    );
    check(
        two(&[]).strategy(Strategy::ParallelIndependent),
        "strategy:parallel-independent +a1 +b1 ok:a ok:b status:completed =completed",
    );
    check(
        two(&["a"]).strategy(Strategy::ParallelIndependent),
        "strategy:parallel-independent +a1 ok:a +b1 ok:b status:completed =completed",
    );
    let mut three = case(vec![
        p("a", 30, &[]),
        p("b", 30, &[]),
        p("c", 40, &["a", "b"]),
    ])
    .strategy(Strategy::ParallelIndependent);
    three.max_parallel = 1;
    check(
        three,
        "strategy:parallel-independent +a1 ok:a +b1 ok:b +c1 ok:c status:completed =completed",
    );
    check(
        case(vec![
            p("a", 30, &[]),
            p("b", 30, &[]),
            p("c", 40, &["a", "b"]),
        ])
        .strategy(Strategy::ParallelIndependent),
        "strategy:parallel-independent +a1 +b1 ok:a ok:b +c1 ok:c status:completed =completed",
    );
    // Pipeline: b starts on a's handoff, finishes first, and completes only after a.
    check(
        two(&["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[Handoff]),
        "strategy:pipeline +a1 handoff:a +b1 ok:a ok:b status:completed =completed",
    );
    check(
        two(&["a"]).strategy(Strategy::pipeline()),
        "strategy:pipeline +a1 ok:a +b1 ok:b status:completed =completed",
    );
    // Pipeline: b never completes before a (a timed-out b is retried like any item).
    check(
        two(&["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[Handoff])
            .acts("b", &[Hang]),
        "strategy:pipeline +a1 handoff:a +b1 ok:a x:b:timeout retry:b2 stop:b1 +b2 ok:b status:completed =completed",
    );
    // Pipeline: a fails after handing off; b is cancelled (interrupted) and starts again with
    // a's retry, from a's last partial result (kept by the state).
    check(
        two(&["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[HandoffFail(Transient), Ok]),
        "strategy:pipeline +a1 handoff:a +b1 x:a:transient x:b:interrupted retry:a2 +a2 +b2 ok:a ok:b status:completed =completed",
    );
    check(
        two(&["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[HandoffFail(Transient), Ok])
            .acts("b", &[Hang]),
        "strategy:pipeline +a1 handoff:a +b1 x:a:transient x:b:interrupted retry:a2 stop:b1 +a2 +b2 ok:a ok:b status:completed =completed",
    );
    // Below the threshold, progress does not start the successor; a threshold of 1 % does.
    check(
        two(&["a"])
            .strategy(Strategy::Pipeline {
                threshold: Progress::from_basis_points(100),
            })
            .acts("a", &[Report]),
        "strategy:pipeline +a1 +b1 ok:a ok:b status:completed =completed",
    );
    check(
        two(&["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[Report]),
        "strategy:pipeline +a1 ok:a +b1 ok:b status:completed =completed",
    );
    check(
        one().adaptive(AdaptiveInputs {
            complexity: Some(Complexity::High),
            agents_available: 4,
            deadline: None,
        }),
        "strategy:parallel-independent +a1 ok:a status:completed =completed",
    );
    check(
        one().adaptive(AdaptiveInputs {
            complexity: Some(Complexity::High),
            agents_available: 0,
            deadline: None,
        }),
        "strategy:sequential +a1 ok:a status:completed =completed",
    );
    check(
        one().adaptive(AdaptiveInputs {
            complexity: Some(Complexity::Medium),
            agents_available: 1,
            deadline: None,
        }),
        "strategy:pipeline +a1 ok:a status:completed =completed",
    );
    check(
        one().adaptive(AdaptiveInputs {
            complexity: Some(Complexity::Low),
            agents_available: 1,
            deadline: None,
        }),
        "strategy:sequential +a1 ok:a status:completed =completed",
    );
}

/// `strategy_at` answers what starting execution would choose, records nothing, and once
/// execution has started answers the recorded choice (also after a resume), whatever the time.
#[test]
fn strategy_at_previews_the_adaptive_choice() {
    for (inputs, expected) in [
        (
            (Some(Complexity::High), 4, None),
            Strategy::ParallelIndependent,
        ),
        ((Some(Complexity::High), 0, None), Strategy::Sequential),
        ((Some(Complexity::Medium), 1, None), Strategy::pipeline()),
        ((Some(Complexity::Low), 1, None), Strategy::Sequential),
        // The effort (none planned: 0 ms) fits before any deadline.
        (
            (Some(Complexity::Low), 1, Some(Timestamp(10))),
            Strategy::Sequential,
        ),
    ] {
        let (complexity, agents_available, deadline) = inputs;
        let c = one().adaptive(AdaptiveInputs {
            complexity,
            agents_available,
            deadline,
        });
        let log = start_log(&c);
        let mut e = Engine::resume(&log, c.config.clone()).unwrap();
        assert_eq!(e.strategy_at(Timestamp(1)), expected, "{inputs:?}");
        assert_eq!(e.strategy(), None, "a preview records nothing");
        assert_eq!(e.state().strategy(), None);
        let step = e
            .handle(Input::Start(StartMode::Execution), Timestamp(1))
            .unwrap();
        assert_eq!(e.strategy(), Some(expected));
        assert_eq!(e.strategy_at(Timestamp(u64::MAX)), expected);
        let mut log = log;
        log.extend(step.events);
        let resumed = Engine::resume(&log, c.config).unwrap();
        assert_eq!(resumed.strategy_at(Timestamp(u64::MAX)), expected);
    }
}

fn tasks(list: &[(&str, &[&str], &str)]) -> Act {
    Data(
        serde_json::json!({ "tasks": list.iter().map(|(id, deps, pr)| serde_json::json!({
        "id": id, "title": id, "dependencies": deps, "priority": pr })).collect::<Vec<_>>() }),
    )
}

#[test]
fn tasks_join_the_task_phase() {
    // b is the task phase (the last one); a produces the tasks.
    check(
        two(&["a"])
            .acts("a", &[tasks(&[("t2", &["t1"], "low"), ("t1", &[], "low")])])
            .limit(1),
        &format!(
            "{SEQ} +a1 tasks:t1,t2 ok:a +b1 +t11 ok:t1 +t21 ok:t2 ok:b status:completed =completed"
        ),
    );
    // Priority, then critical path: with one slot, critical first; among equals, the longer path.
    check(
        two(&["a"])
            .acts(
                "a",
                &[tasks(&[
                    ("l", &[], "low"),
                    ("c", &[], "critical"),
                    ("h", &[], "high"),
                ])],
            )
            .limit(1),
        &format!(
            "{SEQ} +a1 tasks:l,c,h ok:a +b1 +c1 ok:c +h1 ok:h +l1 ok:l ok:b status:completed =completed"
        ),
    );
    check(
        two(&["a"])
            .acts(
                "a",
                &[tasks(&[
                    ("x", &[], "low"),
                    ("y", &[], "low"),
                    ("z", &["y"], "low"),
                ])],
            )
            .limit(1),
        &format!(
            "{SEQ} +a1 tasks:x,y,z ok:a +b1 +y1 ok:y +x1 ok:x +z1 ok:z ok:b status:completed =completed"
        ),
    );
    // A failing task walks the chain like a phase.
    check(
        two(&["a"])
            .acts("a", &[tasks(&[("t", &[], "low")])])
            .acts("t", &[Fail(Transient)]),
        &format!(
            "{SEQ} +a1 tasks:t ok:a +b1 +t1 x:t:transient retry:t2 +t2 ok:t ok:b status:completed =completed"
        ),
    );
    check(
        two(&["a"])
            .acts("a", &[tasks(&[("t", &[], "low")])])
            .acts("t", &[Fail(Permanent)])
            .order(&[Intervene])
            .answers(&[Decision::Skip]),
        &format!(
            "{SEQ} +a1 tasks:t ok:a +b1 +t1 x:t:permanent ask:t answer:skip skip:t ok:b status:completed =completed"
        ),
    );
    // Under a parallel strategy, a producer that is not a predecessor of the task phase may
    // finish after it: its tasks are refused (the task phase is completed) and the producer
    // fails permanently. Make the producer a dependency of the task phase to have its tasks
    // awaited.
    check(
        two(&[])
            .strategy(Strategy::ParallelIndependent)
            .acts(
                "a",
                &[Act::LateData(serde_json::json!({"tasks": [
                    {"id": "t", "title": "t", "dependencies": [], "priority": "low"}
                ]}))],
            )
            .order(&[]),
        "strategy:parallel-independent +a1 +b1 ok:b x:a:permanent status:failed =failed:phase a:1",
    );
    // An invalid list fails the producer permanently.
    check(
        two(&["a"])
            .acts("a", &[tasks(&[("p", &["q"], "low"), ("q", &["p"], "low")])])
            .order(&[]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
    check(
        two(&["a"])
            .acts("a", &[tasks(&[("p", &["nowhere"], "low")])])
            .order(&[]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
    check(
        two(&["a"])
            .acts("a", &[Data(serde_json::json!({"tasks": 3}))])
            .order(&[]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
}

fn kiro_log() -> Vec<Event> {
    vec![Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("k").unwrap(),
        title: "Login".into(),
        context: "ctx".into(),
        workflow: Workflow::kiro(),
        seed: 9,
    }]
}

fn starts(step: &Step) -> Vec<&milestone_core::engine::StartCommand> {
    step.commands
        .iter()
        .filter_map(|c| match c {
            Command::Start(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

#[test]
fn planning_runs_four_analyses_then_the_aggregation() {
    let mut e = Engine::resume(&kiro_log(), EngineConfig::default()).unwrap();
    let step = e
        .handle(Input::Start(StartMode::Planning), Timestamp(1))
        .unwrap();
    let roles: Vec<Role> = starts(&step).iter().map(|s| s.role.clone()).collect();
    assert_eq!(
        roles,
        vec![
            Role::Scope,
            Role::Estimation,
            Role::Risk,
            Role::KiroStrategy
        ]
    );
    assert!(step.events.is_empty());
    for (k, a) in AnalysisKind::PARALLEL.iter().enumerate() {
        let step = e
            .handle(
                Input::Finished {
                    work: Work::Planning(*a),
                    attempt: 1,
                    output: ItemOutput {
                        data: serde_json::json!({"n": k}),
                        ..ItemOutput::default()
                    }
                    .into(),
                },
                Timestamp(2),
            )
            .unwrap();
        let s = starts(&step);
        if k < 3 {
            assert!(s.is_empty());
        } else {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].role, Role::Aggregation);
            let data: Vec<serde_json::Value> = s[0].input.iter().map(|u| u.data.clone()).collect();
            assert_eq!(
                data,
                (0..4)
                    .map(|n| serde_json::json!({"n": n}))
                    .collect::<Vec<_>>()
            );
        }
    }
    // Not a plan: the aggregation is retried after a backoff, then a plan is recorded.
    let bad = e.handle(
        Input::Finished {
            work: Work::Planning(AnalysisKind::Aggregation),
            attempt: 1,
            output: ItemOutput {
                data: serde_json::json!({"nonsense": 1}),
                ..ItemOutput::default()
            }
            .into(),
        },
        Timestamp(3),
    );
    let bad = bad.unwrap();
    assert!(
        bad.events
            .iter()
            .any(|e| matches!(e, Event::StatusChanged { .. })),
        "{bad:?}"
    );
    assert_eq!(e.state().status(), milestone_core::MilestoneStatus::Failed);

    let mut e = Engine::resume(&kiro_log(), EngineConfig::default()).unwrap();
    e.handle(Input::Start(StartMode::Planning), Timestamp(1))
        .unwrap();
    for a in AnalysisKind::PARALLEL {
        e.handle(
            Input::Finished {
                work: Work::Planning(a),
                attempt: 1,
                output: ItemOutput::default().into(),
            },
            Timestamp(2),
        )
        .unwrap();
    }
    let step = e
        .handle(
            Input::Finished {
                work: Work::Planning(AnalysisKind::Aggregation),
                attempt: 1,
                output: ItemOutput {
                    data: serde_json::json!({"tasks": []}),
                    ..ItemOutput::default()
                }
                .into(),
            },
            Timestamp(3),
        )
        .unwrap();
    assert!(matches!(
        step.events.as_slice(),
        [Event::PlanRecorded { .. }]
    ));
    assert!(step.commands.contains(&Command::Finished(Outcome::Planned)));
    assert!(e.state().plan().is_some());
}

#[test]
fn planning_failures_retry_then_fail_naming_the_analysis() {
    let mut e = Engine::resume(&kiro_log(), EngineConfig::default()).unwrap();
    e.handle(Input::Start(StartMode::Planning), Timestamp(1))
        .unwrap();
    let mut now = 1;
    for attempt in 1..=3 {
        let step = e
            .handle(
                Input::Failed {
                    work: Work::Planning(AnalysisKind::Risk),
                    attempt,
                    error: ItemError {
                        kind: Transient,
                        message: "flaky".into(),
                    },
                },
                Timestamp(now),
            )
            .unwrap();
        if attempt < 3 {
            let Some(Command::WakeAt(t)) = step
                .commands
                .iter()
                .find(|c| matches!(c, Command::WakeAt(_)))
            else {
                panic!("{step:?}")
            };
            now = t.0.max(now);
            let step = e.handle(Input::Tick, Timestamp(now)).unwrap();
            assert_eq!(starts(&step)[0].attempt, attempt + 1);
        } else {
            assert!(
                matches!(
                    step.commands.last(),
                    Some(Command::Finished(Outcome::Failed { attempts: 3, .. }))
                ),
                "{step:?}"
            );
        }
    }
    assert_eq!(e.state().status(), milestone_core::MilestoneStatus::Failed);
}

#[test]
fn refused_inputs_change_nothing() {
    let mut e = Engine::resume(&kiro_log(), EngineConfig::default()).unwrap();
    let before = e.state().clone();
    assert!(matches!(
        e.handle(Input::Start(StartMode::Execution), Timestamp(1)),
        Err(EngineError::WrongMode { .. })
    ));
    assert!(matches!(
        e.handle(Input::Answer(Decision::Retry), Timestamp(1)),
        Err(EngineError::Answer(_))
    ));
    let design = Work::Item(ItemRef::Phase(PhaseId::new("design").unwrap()));
    assert!(matches!(
        e.handle(
            Input::Finished {
                work: design.clone(),
                attempt: 1,
                output: ItemOutput::default().into()
            },
            Timestamp(1)
        ),
        Err(EngineError::NotRunning { .. })
    ));
    assert!(matches!(
        e.handle(
            Input::Finished {
                work: Work::Planning(AnalysisKind::Risk),
                attempt: 1,
                output: ItemOutput::default().into()
            },
            Timestamp(1)
        ),
        Err(EngineError::NotRunning { .. })
    ));
    assert_eq!(e.state(), &before);
    let bad = EngineConfig {
        max_concurrency: 0,
        ..EngineConfig::default()
    };
    let err = Engine::resume(&kiro_log(), bad).unwrap_err();
    assert!(err.to_string().contains("max_concurrency"), "{err}");
    assert!(matches!(
        Engine::resume(&[], EngineConfig::default()),
        Err(EngineError::Log(_))
    ));
}

#[test]
fn stale_and_unknown_inputs_are_refused() {
    let mut log = kiro_log();
    log.push(Event::ExecutionStarted { at: Timestamp(0) });
    let mut e = Engine::resume(&log, EngineConfig::default()).unwrap();
    let step = e
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    let s = starts(&step)[0].clone();
    assert_eq!(
        s.work,
        Work::Item(ItemRef::Phase(PhaseId::new("design").unwrap()))
    );
    assert!(s.reusable, "design results are reusable (KIRO)");
    assert!(matches!(
        e.handle(
            Input::Progress {
                work: s.work.clone(),
                attempt: 2,
                progress: Progress::from_basis_points(10)
            },
            Timestamp(2)
        ),
        Err(EngineError::NotRunning { .. })
    ));
    let unknown = Work::Item(ItemRef::Phase(PhaseId::new("nope").unwrap()));
    assert!(matches!(
        e.handle(
            Input::Started {
                work: unknown,
                attempt: 1
            },
            Timestamp(2)
        ),
        Err(EngineError::UnknownWork { .. })
    ));
    // A progress report is recorded once, never lowered.
    let p = |bp| Input::Progress {
        work: s.work.clone(),
        attempt: 1,
        progress: Progress::from_basis_points(bp),
    };
    assert_eq!(e.handle(p(4_000), Timestamp(3)).unwrap().events.len(), 1);
    assert_eq!(e.handle(p(3_000), Timestamp(4)).unwrap().events.len(), 0);
    assert_eq!(e.handle(p(10_000), Timestamp(5)).unwrap().events.len(), 1);
    assert_eq!(
        e.state().phase("design").unwrap().item.progress,
        Progress::ALMOST
    );
}

#[test]
fn resume_restarts_work_in_flight_with_the_same_idempotency_key() {
    let mut log = kiro_log();
    log.push(Event::ExecutionStarted { at: Timestamp(0) });
    let mut e = Engine::resume(&log, EngineConfig::default()).unwrap();
    let step = e
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    let first = starts(&step)[0].clone();
    log.extend(step.events.iter().cloned());
    // Crash: a new engine from the log carries on.
    let mut e2 = Engine::resume(&log, EngineConfig::default()).unwrap();
    let step = e2.handle(Input::Tick, Timestamp(50)).unwrap();
    let again = starts(&step)[0].clone();
    assert_eq!(again.work, first.work);
    assert_eq!(again.attempt, 2);
    assert_eq!(again.idempotency_key, first.idempotency_key);
    assert_eq!(again.cache_key, first.cache_key, "same phase, same input");
}

#[test]
fn cancellation_stops_everything() {
    let c = two(&[])
        .strategy(Strategy::ParallelIndependent)
        .acts("a", &[Hang])
        .acts("b", &[Hang]);
    let workflow = Workflow::new(c.phases.clone(), 3).unwrap();
    let log = [
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "t".into(),
            context: String::new(),
            workflow,
            seed: 1,
        },
        Event::ExecutionStarted { at: Timestamp(0) },
    ];
    let mut e = Engine::resume(&log, c.config).unwrap();
    assert_eq!(
        starts(
            &e.handle(Input::Start(StartMode::Execution), Timestamp(1))
                .unwrap()
        )
        .len(),
        2
    );
    let step = e.handle(Input::Cancel, Timestamp(2)).unwrap();
    let cancels = step
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Cancel { .. }))
        .count();
    assert_eq!(cancels, 2);
    assert!(
        step.commands
            .contains(&Command::Finished(Outcome::Cancelled))
    );
    assert_eq!(
        e.state().status(),
        milestone_core::MilestoneStatus::Cancelled
    );
    assert!(matches!(
        e.handle(Input::Cancel, Timestamp(3)),
        Err(EngineError::Status { .. })
    ));
    let step = e.handle(Input::Tick, Timestamp(1_000_000)).unwrap();
    assert!(
        step.events.is_empty() && step.commands.is_empty(),
        "{step:?}"
    );
}

#[test]
fn completion_commits_checkpoints_tags_and_merges() {
    let mut c = two(&["a"]);
    c.config.merge = true;
    let workflow = Workflow::new(c.phases.clone(), 3).unwrap();
    let log = [
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "t".into(),
            context: String::new(),
            workflow,
            seed: 1,
        },
        Event::ExecutionStarted { at: Timestamp(0) },
    ];
    let mut e = Engine::resume(&log, c.config).unwrap();
    let mut cmds = Vec::new();
    let mut step = e
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    loop {
        cmds.extend(
            step.commands
                .iter()
                .filter(|c| !matches!(c, Command::Start(_) | Command::WakeAt(_)))
                .cloned(),
        );
        let Some(s) = starts(&step).first().map(|s| (*s).clone()) else {
            break;
        };
        let name = s.work.to_string().replace("phase ", "");
        step = e
            .handle(
                Input::Finished {
                    work: s.work,
                    attempt: s.attempt,
                    output: ItemOutput {
                        artifacts: vec![Artifact {
                            name: format!("{name}-doc"),
                            kind: "d".into(),
                            body: ArtifactBody::Inline(String::new()),
                        }],
                        ..ItemOutput::default()
                    }
                    .into(),
                },
                Timestamp(5),
            )
            .unwrap();
    }
    let a = PhaseId::new("a").unwrap();
    let b = PhaseId::new("b").unwrap();
    assert_eq!(
        cmds,
        vec![
            Command::Checkpoint {
                label: "execution-start".into()
            },
            Command::CommitPhase { phase: a },
            Command::Checkpoint {
                label: "after-a".into()
            },
            Command::CommitPhase { phase: b },
            Command::Checkpoint {
                label: "after-b".into()
            },
            Command::Tag,
            Command::Merge,
            Command::Finished(Outcome::Completed),
        ]
    );
    assert_eq!(
        milestone_core::progress::overall(e.state()),
        Progress::COMPLETE
    );
}

/// The wake-ups the engine asks for: one for the earliest live deadline; a new one when a
/// later start has an earlier deadline than the wake-up asked for; none while the one asked for
/// is still ahead and no deadline is earlier; and, once it comes, one for the next live deadline
/// (an item that finished in between no longer counts).
#[test]
fn wake_ups_follow_the_earliest_live_deadline() {
    let wakes = |step: &Step| -> Vec<u64> {
        step.commands
            .iter()
            .filter_map(|c| match c {
                Command::WakeAt(t) => Some(t.0),
                _ => None,
            })
            .collect()
    };
    let finished = |id: &str| Input::Finished {
        work: Work::Item(ItemRef::Phase(PhaseId::new(id).unwrap())),
        attempt: 1,
        output: ItemOutput {
            artifacts: vec![Artifact {
                name: format!("{id}-doc"),
                kind: "doc".into(),
                body: ArtifactBody::Inline("x".into()),
            }],
            ..ItemOutput::default()
        }
        .into(),
    };
    // a and c start together; b follows c with a much shorter timeout.
    let mut b = p("b", 30, &["c"]);
    b.limits.timeout_ms = 50;
    let c = case(vec![p("a", 40, &[]), p("c", 30, &[]), b]).strategy(Strategy::ParallelIndependent);
    let mut engine = Engine::resume(&start_log(&c), c.config.clone()).unwrap();
    let step = engine
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    assert_eq!(starts(&step).len(), 2);
    assert_eq!(wakes(&step), vec![1_001]);
    // c finishes at 10: b starts with a deadline (60) before the wake-up asked for (1001).
    let step = engine.handle(finished("c"), Timestamp(10)).unwrap();
    assert_eq!(starts(&step).len(), 1);
    assert_eq!(wakes(&step), vec![60]);
    // b finishes at 20: the wake-up at 60 is still ahead, and nothing is earlier.
    let step = engine.handle(finished("b"), Timestamp(20)).unwrap();
    assert_eq!(wakes(&step), Vec::<u64>::new());
    // The tick at 60 finds b done: the next wake-up is a's deadline.
    let step = engine.handle(Input::Tick, Timestamp(60)).unwrap();
    assert!(step.events.is_empty(), "{:?}", step.events);
    assert_eq!(wakes(&step), vec![1_001]);
}

#[test]
fn priorities_order_phases() {
    let mut c = case(vec![p("a", 30, &[]), p("b", 30, &[]), p("c", 40, &[])])
        .strategy(Strategy::ParallelIndependent);
    c.phases[2].priority = Priority::Critical;
    c.phases[1].priority = Priority::High;
    c.max_parallel = 1;
    check(
        c,
        "strategy:parallel-independent +c1 ok:c +b1 ok:b +a1 ok:a status:completed =completed",
    );
}

#[test]
fn a_hanging_analysis_times_out_and_is_retried() {
    let config = EngineConfig {
        planning_timeout_ms: 500,
        ..EngineConfig::default()
    };
    let mut e = Engine::resume(&kiro_log(), config).unwrap();
    let step = e
        .handle(Input::Start(StartMode::Planning), Timestamp(1))
        .unwrap();
    assert!(
        step.commands.contains(&Command::WakeAt(Timestamp(501))),
        "{step:?}"
    );
    let step = e.handle(Input::Tick, Timestamp(501)).unwrap();
    let cancels = step
        .commands
        .iter()
        .filter(|c| matches!(c, Command::Cancel { attempt: 1, .. }))
        .count();
    assert_eq!(cancels, 4, "{step:?}");
    // The four retries start after their backoff.
    let step = e.handle(Input::Tick, Timestamp(10_000)).unwrap();
    let attempts: Vec<u32> = starts(&step).iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, vec![2, 2, 2, 2]);
    assert_eq!(e.running(), 4);
    // Cancelling stops them.
    let step = e.handle(Input::Cancel, Timestamp(10_001)).unwrap();
    assert_eq!(
        step.commands
            .iter()
            .filter(|c| matches!(c, Command::Cancel { .. }))
            .count(),
        4
    );
    assert_eq!(e.running(), 0);
    assert_eq!(
        e.state().status(),
        milestone_core::MilestoneStatus::Cancelled
    );
}

/// Restricts a case to some phases (`EngineConfig::phase_filter`).
fn only(mut c: Case, phases: &[&str]) -> Case {
    c.config.phase_filter = Some(phases.iter().map(|p| PhaseId::new(p).unwrap()).collect());
    c
}

fn three_chain() -> Case {
    case(vec![
        p("a", 30, &[]),
        p("b", 30, &["a"]),
        p("c", 40, &["b"]),
    ])
}

/// One phase at a time: phases outside the filter never start; once nothing the filter allows
/// is left, the run ends (`=phases-done:` names the allowed phases that could not start) and
/// the milestone stays active. Recovery works as usual inside the filter.
#[test]
fn a_phase_filter_runs_only_its_phases() {
    check(
        only(two(&[]), &["a"]),
        &format!("{SEQ} +a1 ok:a =phases-done:"),
    );
    check(only(two(&[]), &["b"]), &format!("{SEQ} =phases-done:b"));
    check(
        only(two(&["a"]), &["b"]).strategy(Strategy::ParallelIndependent),
        "strategy:parallel-independent =phases-done:b",
    );
    check(
        only(two(&[]), &["b"]).strategy(Strategy::ParallelIndependent),
        "strategy:parallel-independent +b1 ok:b =phases-done:",
    );
    check(
        only(three_chain(), &["a", "b"]),
        &format!("{SEQ} +a1 ok:a +b1 ok:b =phases-done:"),
    );
    check(
        only(three_chain(), &["a", "c"]),
        &format!("{SEQ} +a1 ok:a =phases-done:c"),
    );
    // All phases allowed: the milestone completes as usual.
    check(
        only(two(&[]), &["a", "b"]),
        &format!("{SEQ} +a1 ok:a +b1 ok:b status:completed =completed"),
    );
    // Retries and gates happen inside the filter.
    check(
        only(two(&[]), &["a"]).acts("a", &[Fail(Transient), Ok]),
        &format!("{SEQ} +a1 x:a:transient retry:a2 +a2 ok:a =phases-done:"),
    );
    check(
        only(two(&[]), &["a"]).host_gate("a", &[false, true]),
        &format!("{SEQ} +a1 x:a:gate retry:a2 +a2 ok:a =phases-done:"),
    );
    // A rollback inside a filtered run goes back to the last phase boundary, and carries on.
    check(
        only(three_chain(), &["a", "b"])
            .acts("b", &[Fail(Transient), Ok])
            .order(&[Rollback]),
        &format!("{SEQ} +a1 ok:a +b1 x:b:transient rollback:after-a +b2 ok:b =phases-done:"),
    );
    // Failures still end the milestone when the chain is exhausted.
    check(
        only(two(&[]), &["a"])
            .acts("a", &[Fail(Permanent)])
            .order(&[]),
        &format!("{SEQ} +a1 x:a:permanent status:failed =failed:phase a:1"),
    );
    // A pipeline successor outside the filter does not start on a hand-off.
    check(
        only(two(&["a"]), &["a"])
            .strategy(Strategy::pipeline())
            .acts("a", &[Handoff]),
        "strategy:pipeline +a1 handoff:a ok:a =phases-done:",
    );
    // Tasks listed by an allowed phase wait for their task phase (b, the last).
    check(
        only(two(&["a"]), &["a"]).acts("a", &[tasks(&[("t", &[], "low")])]),
        &format!("{SEQ} +a1 tasks:t ok:a =phases-done:"),
    );
}

/// Phase after phase, one call each, the log carried from call to call; then an unfiltered
/// call finishes the rest.
#[test]
fn phases_run_one_call_at_a_time_and_an_unfiltered_run_finishes() {
    let log = start_log(&three_chain());
    let produce = tasks(&[("t", &[], "low")]);
    let (t1, log) = trace_from(only(three_chain(), &["a"]), log);
    assert_eq!(t1, format!("{SEQ} +a1 ok:a =phases-done:"));
    let (t2, log) = trace_from(only(three_chain(), &["b"]).acts("b", &[produce]), log);
    assert_eq!(t2, "+b1 tasks:t ok:b =phases-done:");
    // The strategy was chosen once; a phase already done is no work at all.
    let (t3, log) = trace_from(only(three_chain(), &["a", "b"]), log);
    assert_eq!(t3, "=phases-done:");
    let (t4, log) = trace_from(three_chain(), log);
    assert_eq!(t4, "+c1 +t1 ok:t ok:c status:completed =completed");
    let starts = log
        .iter()
        .filter(|e| matches!(e, Event::ItemStarted { .. }))
        .count();
    assert_eq!(starts, 4, "every item started once");
    // The last phase alone completes the milestone too.
    let log = start_log(&three_chain());
    let (_, log) = trace_from(only(three_chain(), &["a", "b"]), log);
    let (t, _) = trace_from(only(three_chain(), &["c"]), log);
    assert_eq!(t, "+c1 ok:c status:completed =completed");
}

/// A phase outside the filter that a crash left in progress is not restarted by a filtered
/// run (it keeps its place against the phase limit); the next run that allows it restarts it.
#[test]
fn a_filtered_resume_leaves_phases_outside_it_alone() {
    let c = || two(&[]).strategy(Strategy::ParallelIndependent);
    let mut log = start_log(&c());
    let mut e = Engine::resume(&log, c().config).unwrap();
    let step = e
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    assert_eq!(starts(&step).len(), 2);
    log.extend(step.events.iter().cloned());
    // Crash with a and b running. A run of b alone restarts b only.
    let (t, log) = trace_from(only(c(), &["b"]), log);
    assert_eq!(t, "+b2 ok:b =phases-done:");
    assert_eq!(
        Engine::resume(&log, EngineConfig::default())
            .unwrap()
            .state()
            .phase("a")
            .unwrap()
            .item
            .status,
        milestone_core::ItemStatus::InProgress
    );
    let (t, _) = trace_from(c(), log);
    assert_eq!(t, "+a2 ok:a status:completed =completed");
}

#[test]
fn a_phase_filter_naming_unknown_phases_is_refused_listing_them_all() {
    let c = only(two(&[]), &["a", "zz", "a", "yy"]);
    let err = Engine::resume(&start_log(&c), c.config.clone()).unwrap_err();
    let EngineError::Config(problems) = err else {
        panic!("{err:?}")
    };
    let got: Vec<(String, milestone_core::ProblemKind)> = problems
        .iter()
        .map(|p| (p.location.clone(), p.kind))
        .collect();
    use milestone_core::ProblemKind::{DuplicateId, Missing, UnknownPhase};
    assert_eq!(
        got,
        [
            ("phase_filter[1]".to_string(), UnknownPhase),
            ("phase_filter[2]".to_string(), DuplicateId),
            ("phase_filter[3]".to_string(), UnknownPhase),
        ]
    );
    let c = only(two(&[]), &[]);
    let err = Engine::resume(&start_log(&c), c.config.clone()).unwrap_err();
    assert!(
        matches!(&err, EngineError::Config(p) if p.len() == 1 && p.0[0].kind == Missing),
        "{err:?}"
    );
}

/// A producer that runs again lists the same tasks again: identical ones are no news (no
/// second `tasks-added`, no failure); a changed one fails the producer naming it.
#[test]
fn a_producer_running_again_may_list_the_same_tasks() {
    let list = || tasks(&[("t", &[], "low"), ("u", &["t"], "low")]);
    // Pipeline: b (the producer) finishes early with tasks and is held until a completes; a
    // fails after its hand-off, b is interrupted and runs again, listing the same tasks.
    check(
        three_chain()
            .strategy(Strategy::pipeline())
            .acts("a", &[HandoffFail(Transient), Ok])
            .acts("b", &[list(), list()]),
        "strategy:pipeline +a1 handoff:a +b1 tasks:t,u x:a:transient x:b:interrupted retry:a2 +a2 +b2 ok:a ok:b +c1 +t1 ok:t +u1 ok:u ok:c status:completed =completed",
    );
    // The second listing adds one task and keeps the first two.
    check(
        three_chain()
            .strategy(Strategy::pipeline())
            .acts("a", &[HandoffFail(Transient), Ok])
            .acts(
                "b",
                &[
                    list(),
                    tasks(&[
                        ("t", &[], "low"),
                        ("u", &["t"], "low"),
                        ("v", &["u"], "low"),
                    ]),
                ],
            ),
        "strategy:pipeline +a1 handoff:a +b1 tasks:t,u x:a:transient x:b:interrupted retry:a2 +a2 +b2 ok:a tasks:v ok:b +c1 +t1 ok:t +u1 ok:u +v1 ok:v ok:c status:completed =completed",
    );
    // The same id with another spec is refused: the producer fails permanently.
    check(
        three_chain()
            .strategy(Strategy::pipeline())
            .acts("a", &[HandoffFail(Transient), Ok])
            .acts("b", &[list(), tasks(&[("t", &[], "high")])])
            .order(&[Retry]),
        "strategy:pipeline +a1 handoff:a +b1 tasks:t,u x:a:transient x:b:interrupted retry:a2 +a2 +b2 ok:a x:b:permanent status:failed =failed:phase b:2",
    );
}

/// Pipeline: the task phase started with an agent of its own (no tasks yet) and received
/// tasks while it ran. An engine resumed in that window restarts its agent (whose gate is
/// checked when it finishes) instead of treating it as run only through its tasks.
#[test]
fn a_task_phase_that_started_with_an_agent_restarts_its_agent_on_resume() {
    let c = two(&["a"]).strategy(Strategy::pipeline());
    let config = c.config.clone();
    let mut log = start_log(&c);
    let mut e = Engine::resume(&log, config.clone()).unwrap();
    let feed = |e: &mut Engine, log: &mut Vec<Event>, input, t| {
        let step = e.handle(input, Timestamp(t)).unwrap();
        log.extend(step.events.iter().cloned());
        step
    };
    let step = feed(&mut e, &mut log, Input::Start(StartMode::Execution), 1);
    let a = starts(&step)[0].clone();
    let step = feed(
        &mut e,
        &mut log,
        Input::Handoff {
            work: a.work.clone(),
            attempt: 1,
            partial: serde_json::json!({"draft": 1}),
        },
        2,
    );
    let b = starts(&step)[0].clone();
    assert_eq!(b.work.to_string(), "phase b");
    let data = serde_json::json!({"tasks": [{"id": "t", "title": "t"}]});
    let output = ItemOutput {
        artifacts: vec![Artifact {
            name: "a-doc".into(),
            kind: "document".into(),
            body: ArtifactBody::Inline(String::new()),
        }],
        data,
        ..ItemOutput::default()
    };
    let step = feed(
        &mut e,
        &mut log,
        Input::Finished {
            work: a.work.clone(),
            attempt: 1,
            output: output.into(),
        },
        3,
    );
    let t = starts(&step)[0].clone();
    assert_eq!(t.work.to_string(), "task t");
    // Crash: b's agent and task t were running.
    let mut e = Engine::resume(&log, config.clone()).unwrap();
    let step = feed(&mut e, &mut log, Input::Start(StartMode::Execution), 10);
    let again: Vec<(String, u32)> = starts(&step)
        .iter()
        .map(|s| (s.work.to_string(), s.attempt))
        .collect();
    assert_eq!(
        again,
        [("phase b".to_string(), 2), ("task t".to_string(), 2)]
    );
    // b's gate is checked: finishing without its expected output fails the attempt.
    feed(
        &mut e,
        &mut log,
        Input::Finished {
            work: t.work.clone(),
            attempt: 2,
            output: ItemOutput::default().into(),
        },
        11,
    );
    let step = feed(
        &mut e,
        &mut log,
        Input::Finished {
            work: b.work.clone(),
            attempt: 2,
            output: ItemOutput::default().into(),
        },
        12,
    );
    assert!(
        step.events.iter().any(|ev| matches!(ev,
            Event::ItemFailed { item, error, .. }
                if item.as_str() == "b" && error.kind == FailureKind::Gate)),
        "{:?}",
        step.events
    );
    // Crash again before b's retry: the retry of a task phase that has tasks is a container
    // attempt (its tasks are done), so it completes without an agent.
    let mut e = Engine::resume(&log, config).unwrap();
    let step = feed(&mut e, &mut log, Input::Tick, 100_000);
    assert!(starts(&step).is_empty(), "{step:?}");
    assert_eq!(
        e.state().status(),
        milestone_core::MilestoneStatus::Completed
    );
}

/// Runs tasks `a`, `b` (no dependencies) and `c` (after both) in a one-phase milestone: `a`
/// finishes with `a_data`, `b` with no data. Returns `c`'s start from the live engine, and its
/// restart by an engine resumed from the log after it started.
fn start_of_c(a_data: serde_json::Value) -> [milestone_core::engine::StartCommand; 2] {
    use milestone_core::{TaskId, TaskSpec};
    let mut log = vec![
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("m").unwrap(),
            title: "m".into(),
            context: String::new(),
            workflow: Workflow::new(vec![p("x", 100, &[])], 3).unwrap(),
            seed: 1,
        },
        Event::ExecutionStarted { at: Timestamp(0) },
    ];
    let id = |s: &str| TaskId::new(s).unwrap();
    let mut c = TaskSpec::new(id("c"), "c");
    c.dependencies = vec![id("a"), id("b")];
    log.push(Event::TasksAdded {
        at: Timestamp(0),
        tasks: vec![TaskSpec::new(id("a"), "a"), TaskSpec::new(id("b"), "b"), c],
    });
    let mut e = Engine::resume(&log, EngineConfig::default()).unwrap();
    let mut step = e
        .handle(Input::Start(StartMode::Execution), Timestamp(1))
        .unwrap();
    let mut pending: Vec<_> = starts(&step).into_iter().cloned().collect();
    log.append(&mut step.events);
    let mut live = None;
    while let Some(s) = pending.pop() {
        let name = s.work.to_string();
        if name.ends_with('c') {
            live = Some(s);
            break;
        }
        let data = if name.ends_with('a') {
            a_data.clone()
        } else {
            serde_json::Value::Null
        };
        step = e
            .handle(
                Input::Finished {
                    work: s.work,
                    attempt: s.attempt,
                    output: ItemOutput {
                        data,
                        ..ItemOutput::default()
                    }
                    .into(),
                },
                Timestamp(2),
            )
            .unwrap();
        pending.extend(starts(&step).into_iter().cloned());
        log.append(&mut step.events);
    }
    let live = live.expect("c started");
    let mut r = Engine::resume(&log, EngineConfig::default()).unwrap();
    let step = r
        .handle(Input::Start(StartMode::Execution), Timestamp(3))
        .unwrap();
    let resumed = starts(&step)
        .into_iter()
        .find(|s| s.work.to_string().ends_with('c'))
        .expect("c starts after resume")
        .clone();
    [live, resumed]
}

#[test]
fn task_inputs_carry_the_data_dependencies_produced_and_key_the_cache_by_it() {
    let [live, resumed] = start_of_c(serde_json::json!({"x": 1}));
    // b produced no data: left out.
    assert_eq!(live.input.len(), 1, "{:?}", live.input);
    assert_eq!(live.input[0].from.to_string(), "task a");
    assert_eq!(live.input[0].data, serde_json::json!({"x": 1}));
    assert_eq!(resumed.input, live.input);
    assert_eq!(resumed.cache_key, live.cache_key, "same task, same input");
    let [again, _] = start_of_c(serde_json::json!({"x": 1}));
    assert_eq!(again.cache_key, live.cache_key);
    let [other, _] = start_of_c(serde_json::json!({"x": 2}));
    assert_ne!(other.cache_key, live.cache_key, "different input data");
    // No dependency produced data: nothing to hand on, and a key of its own.
    let [bare, bare_resumed] = start_of_c(serde_json::Value::Null);
    assert!(bare.input.is_empty());
    assert!(bare_resumed.input.is_empty());
    assert_eq!(bare_resumed.cache_key, bare.cache_key);
    assert_ne!(bare.cache_key, live.cache_key);
}
