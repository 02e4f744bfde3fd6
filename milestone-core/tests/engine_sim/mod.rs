//! A deterministic simulation driver for the engine: a virtual clock and a seeded population of
//! agents with random durations, progress reports, handoffs, failures and hangs, plus crash
//! points where the engine is rebuilt from a prefix of the log. Every step is checked against
//! the engine's invariants by an independent fold of the log (the "mirror").

#![allow(dead_code)]

use std::collections::HashSet;

use milestone_core::engine::{
    AdaptiveInputs, Command, Engine, EngineConfig, Input, Outcome, RecoveryStep, StartMode,
    Strategy, Work,
};
use milestone_core::progress::overall;
use milestone_core::{
    Artifact, ArtifactBody, Decision, Event, FailureKind, ItemError, ItemOutput, ItemRef,
    ItemStatus, MilestoneId, MilestoneState, MilestoneStatus, PhaseId, PhaseSpec, Priority,
    Progress, Timestamp, Weight, Workflow,
};

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// How the simulated agents behave (percentages).
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub transient: u64,
    pub permanent: u64,
    pub unavailable: u64,
    pub hang: u64,
    pub missing_output: u64,
    pub progress: u64,
    pub handoff: u64,
    /// Tasks the producing phase lists (0: none).
    pub tasks: u64,
    /// How many interventions the host answers before it stops answering.
    pub answers: u32,
    /// Crash points: percentage per step of a crash.
    pub crash: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            transient: 10,
            permanent: 3,
            unavailable: 2,
            hang: 3,
            missing_output: 3,
            progress: 50,
            handoff: 20,
            tasks: 12,
            answers: 3,
            crash: 2,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Completed,
    Failed(String),
    Awaiting,
    Cancelled,
}

#[derive(Debug, Clone)]
struct Flight {
    work: Work,
    attempt: u32,
    at: u64,
    kind: Act,
}

#[derive(Debug, Clone, PartialEq)]
enum Act {
    Progress(u64, u64), // (report at, finish at)
    Handoff(u64),
    Finish,
    Fail(FailureKind),
    Hang,
}

pub struct Sim {
    pub engine: Engine,
    pub config: EngineConfig,
    pub log: Vec<Event>,
    pub now: u64,
    rng: Rng,
    b: Behaviour,
    flights: Vec<Flight>,
    wake: Option<u64>,
    mirror: MilestoneState,
    completed: HashSet<ItemRef>,
    last_progress: Progress,
    producer: Option<PhaseId>,
    generation: u32,
    answers_left: u32,
    pub crashes: u32,
    pub steps: u32,
    pub max_flights: usize,
    pub ended: Option<End>,
    pending_answer: Option<Vec<Decision>>,
    pub cancel_at_step: Option<u32>,
    pub trace: bool,
    gates: Vec<(ItemRef, u32)>,
}

pub fn phase(id: &str, weight: u8) -> PhaseSpec {
    PhaseSpec::new(PhaseId::new(id).unwrap(), id, Weight::new(weight).unwrap())
}

/// A random valid workflow: 1–5 phases, weights summing to 100, dependencies on earlier
/// phases, small timeouts; the last phase receives tasks.
pub fn random_workflow(rng: &mut Rng) -> Workflow {
    let n = 1 + rng.below(5) as usize;
    let mut left = 100u8;
    let mut phases = Vec::new();
    for i in 0..n {
        let w = if i + 1 == n {
            left
        } else {
            let max = left as u64 - (n - i - 1) as u64;
            let w = 1 + rng.below(max.min(40)) as u8;
            left -= w;
            w
        };
        let mut p = phase(&format!("p{i}"), w);
        for j in 0..i {
            if rng.chance(45) || (j + 1 == i && rng.chance(50)) {
                p.dependencies.push(PhaseId::new(format!("p{j}")).unwrap());
            }
        }
        p.priority = [
            Priority::Low,
            Priority::Medium,
            Priority::High,
            Priority::Critical,
        ][rng.below(4) as usize];
        for k in 0..rng.below(3) {
            p.expected_outputs.push(format!("out-{k}"));
        }
        p.limits.timeout_ms = 2_000 + rng.below(3_000);
        p.optional = i + 1 != n && rng.chance(25);
        phases.push(p);
    }
    Workflow::new(phases, 1 + rng.below(3) as u32).unwrap()
}

pub fn random_config(rng: &mut Rng, workflow: &Workflow) -> EngineConfig {
    let strategy = match rng.below(4) {
        0 => Strategy::Sequential,
        1 => Strategy::ParallelIndependent,
        2 => Strategy::Pipeline {
            threshold: Progress::from_basis_points(1 + rng.below(10_000) as u32),
        },
        _ => Strategy::Adaptive,
    };
    let adaptive = AdaptiveInputs {
        complexity: None,
        agents_available: rng.below(3) as u32,
        deadline: None,
    };
    let mut c = EngineConfig {
        strategy,
        adaptive,
        max_concurrency: 1 + rng.below(8) as usize,
        ..EngineConfig::default()
    };
    let mut steps = vec![
        RecoveryStep::Retry,
        RecoveryStep::Rollback,
        RecoveryStep::Degrade,
        RecoveryStep::Intervene,
    ];
    // A random subset in a random order.
    for i in (1..steps.len()).rev() {
        steps.swap(i, rng.below(i as u64 + 1) as usize);
    }
    steps.truncate(rng.below(5) as usize);
    c.recovery.order = steps;
    c.recovery.retry.base_ms = 100;
    c.recovery.retry.cap_ms = 2_000;
    for p in workflow.phases() {
        if rng.chance(15) {
            c.host_gates.push(p.id.clone());
        }
    }
    c.merge = rng.chance(50);
    c
}

pub fn created(workflow: Workflow, seed: u64) -> Vec<Event> {
    vec![
        Event::Created {
            at: Timestamp(0),
            id: MilestoneId::new("sim").unwrap(),
            title: "Simulated".into(),
            context: String::new(),
            workflow,
            seed,
        },
        Event::ExecutionStarted { at: Timestamp(0) },
    ]
}

impl Sim {
    pub fn new(log: Vec<Event>, config: EngineConfig, seed: u64, b: Behaviour) -> Sim {
        let engine = Engine::resume(&log, config.clone()).unwrap();
        let mirror = MilestoneState::from_events(&log).unwrap();
        let wf = mirror.workflow().clone();
        let receiver = wf.task_phase().clone();
        let producer = wf
            .phase(receiver.as_str())
            .and_then(|p| p.dependencies.first().cloned())
            .or_else(|| Some(receiver.clone()));
        Sim {
            engine,
            config,
            log,
            now: 1,
            rng: Rng(seed ^ 0x5eed),
            answers_left: b.answers,
            b,
            flights: Vec::new(),
            wake: None,
            mirror,
            completed: HashSet::new(),
            last_progress: Progress::ZERO,
            producer,
            generation: 0,
            crashes: 0,
            steps: 0,
            max_flights: 0,
            ended: None,
            pending_answer: None,
            cancel_at_step: None,
            trace: false,
            gates: Vec::new(),
        }
    }

    /// Runs to an end (or `max_steps`), checking every invariant; `Err` names the violation.
    pub fn run(&mut self, max_steps: u32) -> Result<End, String> {
        self.feed(Input::Start(StartMode::Execution))?;
        while self.ended.is_none() {
            self.steps += 1;
            if self.steps > max_steps {
                return Err(format!("no end within {max_steps} steps"));
            }
            if self.cancel_at_step == Some(self.steps) {
                self.feed(Input::Cancel)?;
                continue;
            }
            if self.b.crash > 0 && self.rng.chance(self.b.crash) {
                self.crash()?;
                continue;
            }
            if !self.gates.is_empty() {
                let (item, attempt) = self.gates.remove(0);
                let passed = self.rng.chance(80);
                self.feed(Input::GateResult {
                    item,
                    attempt,
                    passed,
                    message: "host check".into(),
                })?;
                continue;
            }
            if let Some(options) = self.pending_answer.take() {
                if self.answers_left == 0 {
                    self.ended = Some(End::Awaiting);
                    break;
                }
                self.answers_left -= 1;
                let d = options[self.rng.below(options.len() as u64) as usize];
                self.feed(Input::Answer(d))?;
                continue;
            }
            // The next thing to happen: an agent's next act, or the wake-up.
            let next_flight = self
                .flights
                .iter()
                .enumerate()
                .filter(|(_, f)| f.kind != Act::Hang)
                .min_by_key(|(k, f)| (f.at, *k))
                .map(|(k, f)| (k, f.at));
            let next = match (next_flight, self.wake) {
                (Some((k, t)), Some(w)) if t <= w => Some((Some(k), t)),
                (Some((k, t)), None) => Some((Some(k), t)),
                (_, Some(w)) => Some((None, w)),
                (None, None) => None,
            };
            let Some((which, t)) = next else {
                return Err(format!(
                    "stalled: nothing in flight and no wake-up, status {}",
                    self.engine.state().status()
                ));
            };
            self.now = self.now.max(t);
            match which {
                None => {
                    self.wake = None;
                    self.feed(Input::Tick)?;
                }
                Some(k) => self.act(k)?,
            }
        }
        Ok(self.ended.clone().unwrap_or(End::Awaiting))
    }

    fn act(&mut self, k: usize) -> Result<(), String> {
        let f = self.flights[k].clone();
        let (work, attempt) = (f.work.clone(), f.attempt);
        match f.kind {
            Act::Progress(_, finish) => {
                self.flights[k].kind = Act::Finish;
                self.flights[k].at = finish;
                let p = Progress::from_basis_points(1 + self.rng.below(9_999) as u32);
                self.feed(Input::Progress {
                    work,
                    attempt,
                    progress: p,
                })
            }
            Act::Handoff(finish) => {
                self.flights[k].kind = Act::Finish;
                self.flights[k].at = finish;
                self.feed(Input::Handoff {
                    work,
                    attempt,
                    partial: serde_json::json!({"partial": true}),
                })
            }
            Act::Finish => {
                self.flights.swap_remove(k);
                let output = self.output_for(&work);
                self.feed(Input::Finished {
                    work,
                    attempt,
                    output: output.into(),
                })
            }
            Act::Fail(kind) => {
                self.flights.swap_remove(k);
                self.feed(Input::Failed {
                    work,
                    attempt,
                    error: ItemError {
                        kind,
                        message: format!("simulated {kind:?}"),
                    },
                })
            }
            Act::Hang => Ok(()),
        }
    }

    fn output_for(&mut self, work: &Work) -> ItemOutput {
        let mut out = ItemOutput::default();
        if let Work::Item(ItemRef::Phase(p)) = work {
            let spec = self.engine.state().workflow().phase(p.as_str()).cloned();
            if let Some(spec) = spec {
                let skip = if !spec.expected_outputs.is_empty()
                    && self.rng.chance(self.b.missing_output)
                {
                    self.rng.below(spec.expected_outputs.len() as u64) as usize
                } else {
                    usize::MAX
                };
                for (k, name) in spec.expected_outputs.iter().enumerate() {
                    if k != skip {
                        out.artifacts.push(Artifact {
                            name: name.clone(),
                            kind: "document".into(),
                            body: ArtifactBody::Inline(String::new()),
                        });
                    }
                }
            }
            if Some(p) == self.producer.as_ref() && self.b.tasks > 0 {
                self.generation += 1;
                let g = self.generation;
                let n = 1 + self.rng.below(self.b.tasks);
                let mut tasks = Vec::new();
                for k in 0..n {
                    let mut deps = Vec::new();
                    for j in 0..k {
                        if self.rng.chance(30) {
                            deps.push(format!("t{g}-{j}"));
                        }
                    }
                    let pr = ["low", "medium", "high", "critical"][self.rng.below(4) as usize];
                    tasks.push(serde_json::json!({
                        "id": format!("t{g}-{k}"), "title": "task", "dependencies": deps,
                        "priority": pr, "estimate_ms": 1 + self.rng.below(1000),
                    }));
                }
                // Listed in reverse: the engine orders them.
                tasks.reverse();
                out.data = serde_json::json!({ "tasks": tasks });
            }
        }
        out
    }

    /// The host crashes: in-flight work and unanswered commands are lost, the log is cut at a
    /// random point (possibly inside the last step), and a new engine resumes from it.
    fn crash(&mut self) -> Result<(), String> {
        self.crashes += 1;
        let min = 2.min(self.log.len());
        let cut = min + self.rng.below((self.log.len() - min) as u64 + 1) as usize;
        if self.trace {
            eprintln!(
                "  CRASH at {} keeping {cut} of {} events",
                self.now,
                self.log.len()
            );
        }
        self.log.truncate(cut);
        self.flights.clear();
        self.wake = None;
        self.pending_answer = None;
        self.gates.clear();
        self.engine =
            Engine::resume(&self.log, self.config.clone()).map_err(|e| format!("resume: {e}"))?;
        self.mirror = MilestoneState::from_events(&self.log).map_err(|e| e.to_string())?;
        self.last_progress = overall(&self.mirror);
        // Completed items in the surviving log, since its last rollback.
        self.completed.clear();
        for e in &self.log {
            match e {
                Event::ItemCompleted { item, .. } => {
                    self.completed.insert(item.clone());
                }
                Event::RolledBack { state, .. } => {
                    self.completed = completed_in(state);
                }
                _ => {}
            }
        }
        let status = self.mirror.status();
        match status {
            MilestoneStatus::Active => self.feed(Input::Start(StartMode::Execution)),
            MilestoneStatus::AwaitingIntervention => {
                self.pending_answer = self.mirror.intervention().map(|i| i.options.clone());
                Ok(())
            }
            MilestoneStatus::Completed => self.feed(Input::Start(StartMode::Execution)),
            MilestoneStatus::Failed => {
                self.ended = Some(End::Failed(format!("{:?}", self.mirror.phases())));
                Ok(())
            }
            MilestoneStatus::Cancelled => {
                self.ended = Some(End::Cancelled);
                Ok(())
            }
            MilestoneStatus::Blocked => Err("blocked".into()),
        }
    }

    fn feed(&mut self, input: Input) -> Result<(), String> {
        let step = self
            .engine
            .handle(input.clone(), Timestamp(self.now))
            .map_err(|e| format!("engine refused {input:?}: {e}"))?;
        for e in &step.events {
            self.check_event(e)?;
            self.log.push(e.clone());
        }
        if self.engine.state() != &self.mirror {
            // Compare without the counters that legitimately differ in nothing: they must match.
            return Err("the engine's state is not the fold of its events".into());
        }
        for c in step.commands {
            if self.trace {
                eprintln!("  now {} cmd {c:?}", self.now);
            }
            match c {
                Command::Start(s) => {
                    let r = self.rng.below(100);
                    let dur = 1 + self.rng.below(1_000);
                    let at = self.now + dur;
                    let b = &self.b;
                    let kind = if r < b.transient {
                        Act::Fail(FailureKind::Transient)
                    } else if r < b.transient + b.permanent {
                        Act::Fail(FailureKind::Permanent)
                    } else if r < b.transient + b.permanent + b.unavailable {
                        Act::Fail(FailureKind::Unavailable)
                    } else if r < b.transient + b.permanent + b.unavailable + b.hang {
                        Act::Hang
                    } else if self.rng.chance(b.handoff)
                        && matches!(s.work, Work::Item(ItemRef::Phase(_)))
                    {
                        Act::Handoff(at)
                    } else if self.rng.chance(b.progress) {
                        Act::Progress(self.now + dur / 2, at)
                    } else {
                        Act::Finish
                    };
                    let first_at = match kind {
                        Act::Progress(p, _) => p,
                        Act::Handoff(_) => self.now + dur / 3,
                        _ => at,
                    };
                    self.flights.push(Flight {
                        work: s.work,
                        attempt: s.attempt,
                        at: first_at,
                        kind,
                    });
                    self.max_flights = self.max_flights.max(self.flights.len());
                    if self.flights.len() > self.config.max_concurrency {
                        return Err(format!(
                            "{} agents running, over the limit {}",
                            self.flights.len(),
                            self.config.max_concurrency
                        ));
                    }
                }
                Command::Cancel { work, attempt } => {
                    self.flights
                        .retain(|f| !(f.work == work && f.attempt == attempt));
                }
                Command::WakeAt(t) => {
                    // Each wake-up request replaces the previous one.
                    self.wake = Some(t.0.max(self.now));
                }
                Command::AwaitGate { item, attempt } => {
                    // Answered once this step's commands are carried out.
                    self.gates.push((item, attempt));
                }
                Command::AwaitIntervention { options, .. } => {
                    self.pending_answer = Some(options);
                }
                Command::Finished(o) => {
                    self.ended = Some(match o {
                        Outcome::Completed => End::Completed,
                        Outcome::Failed {
                            work,
                            attempts,
                            error,
                        } => End::Failed(format!(
                            "{work} after {attempts} attempts: {}",
                            error.message
                        )),
                        Outcome::Cancelled => End::Cancelled,
                        other => End::Failed(format!("unexpected {other:?}")),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks one event against the mirror, then applies it there.
    fn check_event(&mut self, e: &Event) -> Result<(), String> {
        let strategy = self.engine.strategy();
        let wf = self.mirror.workflow().clone();
        match e {
            Event::ItemStarted { item, .. } => {
                if self.completed.contains(item) {
                    return Err(format!("{item} started again after completing"));
                }
                let done =
                    |s: &MilestoneState, r: &ItemRef| s.item(r).is_some_and(|x| x.status.is_done());
                match item {
                    ItemRef::Task(t) => {
                        let task = self.mirror.task(t.as_str()).ok_or("unknown task")?;
                        for d in &task.spec.dependencies {
                            if !done(&self.mirror, &ItemRef::Task(d.clone())) {
                                return Err(format!("{item} started before its dependency {d}"));
                            }
                        }
                        let rec = self.mirror.phase(wf.task_phase().as_str()).unwrap();
                        if rec.item.status != ItemStatus::InProgress {
                            return Err(format!("{item} started outside its phase"));
                        }
                    }
                    ItemRef::Phase(p) => {
                        let pos = wf.position(p.as_str()).unwrap();
                        let mut preds: Vec<PhaseId> = wf.phases()[pos].dependencies.clone();
                        if strategy == Some(Strategy::Sequential) && pos > 0 {
                            preds.push(wf.phases()[pos - 1].id.clone());
                        }
                        let restart =
                            self.mirror.phases()[pos].item.status == ItemStatus::InProgress;
                        for d in preds {
                            let st = &self.mirror.phase(d.as_str()).unwrap().item;
                            let ok = st.status.is_done()
                                || match strategy {
                                    Some(Strategy::Pipeline { threshold }) => {
                                        restart
                                            || (st.status == ItemStatus::InProgress
                                                && (st.partial.is_some()
                                                    || st.progress >= threshold))
                                    }
                                    _ => false,
                                };
                            if !ok {
                                return Err(format!(
                                    "{item} started before its dependency {d} ({})",
                                    st.status
                                ));
                            }
                        }
                    }
                }
            }
            Event::ItemCompleted {
                item: ItemRef::Phase(p),
                ..
            } => {
                let pos = wf.position(p.as_str()).unwrap();
                for d in &wf.phases()[pos].dependencies {
                    let st = self.mirror.phase(d.as_str()).unwrap().item.status;
                    if !st.is_done() {
                        return Err(format!(
                            "phase {p} completed before its predecessor {d} ({st})"
                        ));
                    }
                }
            }
            _ => {}
        }
        self.mirror
            .apply(e)
            .map_err(|x| format!("the mirror refused {}: {x}", e.kind()))?;
        match e {
            Event::ItemCompleted { item, .. } => {
                self.completed.insert(item.clone());
            }
            Event::RolledBack { state, .. } => {
                self.completed = completed_in(state);
            }
            _ => {}
        }
        // Phases in progress within the limit.
        let limit = match strategy {
            Some(Strategy::Sequential) => 1,
            _ => wf.max_parallel_phases() as usize,
        };
        let active = self
            .mirror
            .phases()
            .iter()
            .filter(|p| p.item.status == ItemStatus::InProgress)
            .count();
        if active > limit {
            return Err(format!(
                "{active} phases in progress, over the limit {limit}"
            ));
        }
        let p = overall(&self.mirror);
        if !matches!(e, Event::RolledBack { .. }) && p < self.last_progress {
            return Err(format!(
                "progress fell from {} to {p} on {}",
                self.last_progress,
                e.kind()
            ));
        }
        self.last_progress = p;
        Ok(())
    }
}

fn completed_in(state: &MilestoneState) -> HashSet<ItemRef> {
    let mut set = HashSet::new();
    for p in state.phases() {
        if p.item.status == ItemStatus::Completed {
            set.insert(ItemRef::Phase(p.id.clone()));
        }
    }
    for t in state.tasks() {
        if t.item.status == ItemStatus::Completed {
            set.insert(ItemRef::Task(t.spec.id.clone()));
        }
    }
    set
}
