//! The scheduling engine: a sans-I/O, deterministic state machine.
//!
//! The engine decides; it never performs. A host builds it from a state (or an event log),
//! feeds it one [`Input`] at a time together with the current time, persists the events of the
//! returned [`Step`] and then carries out its [`Command`]s: start an attempt, cancel one,
//! checkpoint, commit a phase, tag, merge, wake me at *t*, await a gate or an intervention,
//! finished. The engine applies every event it returns to its own [`MilestoneState`] before
//! returning, so [`Engine::state`] is always the fold of the events returned so far. Because
//! time is an input and jitter is a hash of (seed, item, attempt), the same inputs give the
//! same events, byte for byte.
//!
//! # Rules
//! - **Order.** Nothing starts before its dependencies allow it under the [`Strategy`] in
//!   force; agents running at once never exceed [`EngineConfig::max_concurrency`], phases in
//!   progress never exceed the workflow's `max_parallel_phases` (one for sequential). Ready
//!   tasks start by priority (critical first), then by longest remaining critical path
//!   (estimates summed), then in the order they were added.
//! - **Tasks.** Any phase or task whose finished output `data` carries a `tasks` array of
//!   [`TaskSpec`](crate::TaskSpec)s adds those tasks (ordered after their dependencies, stably)
//!   to the workflow's task phase ([`Workflow::task_phase`](crate::Workflow::task_phase),
//!   `execute` in KIRO); an invalid list fails the producing item permanently with every
//!   problem in the message. A producer that runs again may list the same tasks again: those
//!   already present with an identical spec are skipped, a same id with another spec is
//!   refused. A task phase that has tasks when it starts runs only through them (no agent of
//!   its own); it completes once all its tasks are done. Without tasks it runs as an ordinary
//!   phase, and tasks added while it runs must finish before it completes (after a resume its
//!   agent starts again). Tasks listed once the task phase has completed are refused, and their
//!   producer fails naming the task phase: under a parallel strategy, a producer that is not a
//!   predecessor of the task phase may finish after it, so make it one to have its tasks
//!   awaited.
//! - **One phase at a time.** [`EngineConfig::phase_filter`] restricts which phases may start;
//!   once nothing it allows is left, the run ends with [`Outcome::PhasesDone`] and the
//!   milestone stays active for a later run.
//! - **Inputs.** A start carries its dependencies' data as [`StartCommand::input`]: every
//!   predecessor of a phase (its output's data, or its partial result when started early);
//!   for a task, the dependencies that produced data — dependencies that produced no data are
//!   left out. The cache key hashes the phase, the item and that input.
//! - **Timeouts.** Every start carries a deadline from its phase's limits; an [`Input::Tick`]
//!   past it fails the attempt as timed out and cancels it.
//! - **Gates.** A finished phase must name each of its expected outputs as an artifact; when
//!   [`EngineConfig::host_gates`] lists it, the host's gate is awaited too. A failed gate is a
//!   failed attempt.
//! - **Recovery.** A failed attempt walks [`RecoveryConfig::order`]: retry with backoff and
//!   full jitter (not for permanent errors), rollback to the last checkpoint, a degraded
//!   attempt (`degraded: true` on the start; an optional phase is skipped instead), manual
//!   intervention. When no step applies, the milestone fails naming the item, its attempts
//!   and the last error. A skipped phase counts as done for its dependents, and a
//!   milestone whose phases are all completed or skipped completes *degraded*: its
//!   `status-changed` reason names the skipped phases, and its progress stays short of 100 % by
//!   their weight (100 % means every phase completed).
//! - **Git.** A checkpoint at execution start and after every phase, a commit command when a
//!   phase completes, a tag (and a merge when configured) when the milestone completes. The
//!   engine keeps the state of the last phase-boundary checkpoint for rollback (one O(items)
//!   copy per phase boundary, none per task, and none at all once the recovery chain can no
//!   longer roll back: no intervention step and no rollbacks left); the execution-start
//!   checkpoint is recorded for the store but is no rollback target.
//! - **Resume.** [`Engine::resume`] folds any prefix of the log. Completed items are never
//!   started again; items in flight start again as a new attempt with the same idempotency
//!   key once the host feeds [`Input::Start`] or [`Input::Tick`]. Planning progress is not
//!   persisted before the plan is recorded: resuming in planning mode restarts the analyses.
//!
//! ```
//! use milestone_core::engine::{Command, Engine, EngineConfig, Input, StartMode, Work};
//! use milestone_core::{Artifact, ArtifactBody, Event, ItemOutput, MilestoneId, MilestoneStatus,
//!     Timestamp, Workflow};
//!
//! let log = [
//!     Event::Created { at: Timestamp(0), id: MilestoneId::new("m")?, title: "Login".into(),
//!         context: String::new(), workflow: Workflow::kiro(), seed: 1 },
//!     Event::ExecutionStarted { at: Timestamp(0) },
//! ];
//! let mut engine = Engine::resume(&log, EngineConfig::default())?;
//! let mut queue: Vec<(Work, u32, Vec<String>)> = Vec::new();
//! let mut step = engine.handle(Input::Start(StartMode::Execution), Timestamp(1))?;
//! let mut now = 1;
//! loop {
//!     for c in step.commands.drain(..) {
//!         if let Command::Start(s) = c {
//!             let outputs = match &s.work {
//!                 Work::Item(milestone_core::ItemRef::Phase(p)) => engine.state().workflow()
//!                     .phase(p.as_str()).map(|p| p.expected_outputs.clone()).unwrap_or_default(),
//!                 _ => Vec::new(),
//!             };
//!             queue.push((s.work, s.attempt, outputs));
//!         }
//!     }
//!     let Some((work, attempt, names)) = queue.pop() else { break };
//!     let artifacts = names.into_iter().map(|name| Artifact { name, kind: "document".into(),
//!         body: ArtifactBody::Inline(String::new()) }).collect();
//!     now += 10;
//!     step = engine.handle(Input::Finished { work, attempt,
//!         output: ItemOutput { artifacts, ..ItemOutput::default() }.into() }, Timestamp(now))?;
//! }
//! assert_eq!(engine.state().status(), MilestoneStatus::Completed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod exec;
pub(crate) mod hash;
mod io;
mod node;
mod planning;
mod recovery;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

pub use config::{
    AdaptiveInputs, DEFAULT_PIPELINE_THRESHOLD_BP, EngineConfig, RecoveryConfig, RecoveryStep,
    RetryConfig, Strategy,
};
pub use exec::EXECUTION_START;
pub use io::{
    AnalysisKind, CacheKey, Command, EngineError, IdempotencyKey, Input, Outcome, Role,
    StartCommand, StartMode, Step, Upstream, Work,
};
pub use recovery::backoff_delay_ms;

use crate::event::{Event, Slot};
use crate::state::{ItemRef, MilestoneState};
use crate::units::Timestamp;
use node::{Edges, Node, ReadyQueue};
use planning::Planning;

/// A timer: (time, node, attempt).
type Timer = Reverse<(u64, u32, u32)>;

/// What a log tells beyond the state it folds into (see [`Engine::resume`]).
#[derive(Debug, Default)]
struct LogMemory {
    /// Retries scheduled and not yet started: item → (attempt, not before).
    retries: HashMap<ItemRef, (u32, u64)>,
    /// Items whose next (or current) attempt runs degraded.
    degraded: HashMap<ItemRef, bool>,
    /// The highest attempt started per item (attempt numbers keep rising across rollbacks).
    attempts: HashMap<ItemRef, u32>,
    /// Whether the task phase's latest attempt started as a container (tasks existed when it
    /// started) or with an agent of its own (none did: it may have received tasks since, under
    /// the pipeline strategy). `None` when the log does not tell (no start since the last
    /// rollback, or an engine built from a state alone): then it is a container iff it has
    /// tasks.
    receiver_container: Option<bool>,
}

/// The scheduling engine. See the module docs.
#[derive(Debug, Clone)]
pub struct Engine {
    state: MilestoneState,
    config: EngineConfig,
    /// The strategy in force, once chosen.
    strategy: Option<Strategy>,
    /// Execution was started (or resumed after it was).
    enabled: bool,
    /// A `Finished` command was emitted.
    over: bool,
    nodes: Vec<Node>,
    /// The task graph's edges (the nodes hold their spans).
    edges: Edges,
    np: usize,
    receiver: usize,
    /// Effective phase dependencies (workflow's, plus the chain when sequential).
    preds: Vec<Vec<u32>>,
    succs: Vec<Vec<u32>>,
    /// Phases in dispatch order: priority, critical path, position.
    phase_order: Vec<u32>,
    ready: ReadyQueue,
    /// Ready tasks whose task phase is not in progress yet.
    parked: Vec<u32>,
    /// Agents running (node indices).
    running: Vec<u32>,
    phases_active: usize,
    phases_done: usize,
    tasks_open: usize,
    deadlines: ReadyQueue<Timer>,
    retries: BinaryHeap<Timer>,
    phase_dirty: bool,
    checkpoints: Vec<(String, MilestoneState)>,
    restart: Vec<u32>,
    recover: Vec<u32>,
    /// Completed phases whose commit may have been lost in a crash.
    recommit: Vec<u32>,
    last_wake: Option<u64>,
    planning: Planning,
    idem_base: u64,
    /// Recently started tasks by the address of their id's text, direct-mapped. The engine
    /// hands out the ids it holds and a host echoes them back, so an input about running work
    /// usually finds its node here with one multiply and one compare, without hashing the
    /// id's text; a miss (an id built anew, an overwritten entry) falls back to the state's
    /// index.
    recent: Vec<(usize, u32)>,
    /// `64 - log2(recent.len())` once `recent` is allocated (its size never changes after).
    recent_shift: u32,
    /// Some task may have completed with data (`null` otherwise): until one has, a start
    /// gathers no input from its dependencies without reading their states. Set from the
    /// state on construction and by every completion with data; never cleared (after a
    /// rollback it may be true needlessly, which costs only the reads).
    task_data: bool,
}

impl Engine {
    /// An engine over `state`. Built from a state alone, the engine has no checkpoint states
    /// (rollback becomes available after the next phase boundary) and no scheduled retries
    /// (failed items walk the recovery chain again), and a task phase in progress that has
    /// tasks is taken to run through them (whether it started with an agent of its own is in
    /// the log only); [`Engine::resume`] recovers all three from the log.
    ///
    /// # Errors
    /// [`EngineError::Config`] when the configuration is invalid.
    pub fn new(state: MilestoneState, config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::build(state, config, Vec::new(), LogMemory::default())
    }

    /// An engine rebuilt from an event log (any prefix of one): the state is its fold, the
    /// checkpoints taken are replayed, scheduled retries and degraded attempts are recovered.
    ///
    /// # Errors
    /// [`EngineError::Log`] when the log does not fold; [`EngineError::Config`].
    pub fn resume(events: &[Event], config: EngineConfig) -> Result<Engine, EngineError> {
        let mut it = events.iter();
        let mut state = match it.next() {
            Some(first) => MilestoneState::from_created(first).map_err(EngineError::Log)?,
            None => MilestoneState::from_events([]).map_err(EngineError::Log)?,
        };
        let mut checkpoints: Vec<(String, MilestoneState)> = Vec::new();
        let mut mem = LogMemory::default();
        let r = &config.recovery;
        // Whether this configuration can ever roll back (see `Engine::may_roll_back`).
        let keep = r.order.iter().any(|s| match s {
            RecoveryStep::Intervene => true,
            RecoveryStep::Rollback => r.max_rollbacks > 0,
            _ => false,
        });
        // The rollback target is set by the last checkpoint or rollback in the log: copy the
        // state there only, not at every phase boundary of a long log.
        let target = events.iter().rposition(|e| match e {
            Event::CheckpointRecorded { label, .. } => label != EXECUTION_START,
            Event::RolledBack { .. } => true,
            _ => false,
        });
        for (k, e) in it.enumerate() {
            state.apply(e).map_err(EngineError::Log)?;
            let is_target = keep && target == Some(k + 1);
            match e {
                // Only the newest checkpoint is ever a rollback target: keep one copy.
                Event::CheckpointRecorded { label, .. } if is_target => {
                    checkpoints.push((label.clone(), state.clone()));
                }
                // After a rollback (the engine's, or a host restoring an older checkpoint
                // through its store) the state is the checkpoint's: that is the target now.
                Event::RolledBack { label, .. } => {
                    if is_target {
                        checkpoints.push((label.clone(), state.clone()));
                    }
                    mem.retries.clear();
                    mem.degraded.clear();
                    mem.receiver_container = None;
                }
                Event::RetryScheduled {
                    item,
                    attempt,
                    not_before,
                    ..
                } => {
                    mem.retries
                        .insert(item.clone(), (*attempt, not_before.as_millis()));
                }
                Event::ItemStarted { item, attempt, .. } => {
                    if let ItemRef::Phase(p) = item
                        && p == state.workflow().task_phase()
                    {
                        mem.receiver_container = Some(!state.tasks().is_empty());
                    }
                    mem.retries.remove(item);
                    let a = mem.attempts.entry(item.clone()).or_insert(0);
                    *a = (*a).max(*attempt);
                }
                Event::ItemDegraded { item, .. } => {
                    mem.degraded.insert(item.clone(), true);
                }
                _ => {}
            }
        }
        Engine::build(state, config, checkpoints, mem)
    }

    fn build(
        state: MilestoneState,
        config: EngineConfig,
        checkpoints: Vec<(String, MilestoneState)>,
        mem: LogMemory,
    ) -> Result<Engine, EngineError> {
        config
            .validate_for(state.workflow())
            .map_err(EngineError::Config)?;
        let mut h = hash::Fnv::new();
        h.str(state.id().as_str());
        let idem_base = h.finish();
        let threshold = match config.strategy {
            Strategy::Pipeline { threshold } => threshold,
            _ => crate::units::Progress::from_basis_points(DEFAULT_PIPELINE_THRESHOLD_BP),
        };
        let strategy = state
            .strategy()
            .and_then(|s| Strategy::from_name(s, threshold));
        let mut engine = Engine {
            enabled: strategy.is_some(),
            strategy,
            state,
            config,
            over: false,
            nodes: Vec::new(),
            edges: Edges::default(),
            np: 0,
            receiver: 0,
            preds: Vec::new(),
            succs: Vec::new(),
            phase_order: Vec::new(),
            ready: ReadyQueue::default(),
            parked: Vec::new(),
            running: Vec::new(),
            phases_active: 0,
            phases_done: 0,
            tasks_open: 0,
            deadlines: ReadyQueue::default(),
            retries: BinaryHeap::new(),
            phase_dirty: true,
            checkpoints,
            restart: Vec::new(),
            recover: Vec::new(),
            recommit: Vec::new(),
            last_wake: None,
            planning: Planning::default(),
            idem_base,
            recent: Vec::new(),
            recent_shift: 63,
            task_data: false,
        };
        engine.task_data = engine
            .state
            .tasks()
            .iter()
            .any(|t| t.item.output.as_ref().is_some_and(|o| !o.data.is_null()));
        engine.rebuild(&mem);
        if engine.enabled {
            for i in 0..engine.np {
                let committed = engine
                    .state
                    .git()
                    .commits
                    .iter()
                    .any(|c| c.phase.as_str() == engine.nodes[i].item.as_str());
                let completed =
                    engine.state.phases()[i].item.status == crate::state::ItemStatus::Completed;
                if completed && !committed {
                    engine.recommit.push(i as u32);
                }
            }
        }
        Ok(engine)
    }

    /// The state: the fold of every event this engine returned (and of the log it started
    /// from).
    pub fn state(&self) -> &MilestoneState {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The strategy in force, once execution has started (the adaptive choice, when adaptive).
    pub fn strategy(&self) -> Option<Strategy> {
        self.strategy
    }

    /// The strategy execution runs under: [`strategy`](Engine::strategy) once chosen, else
    /// the one starting execution at `now` would choose (the configured strategy, or the
    /// adaptive choice from complexity, agents available and deadline). Nothing is recorded.
    pub fn strategy_at(&self, now: Timestamp) -> Strategy {
        self.strategy
            .unwrap_or_else(|| self.choose_strategy(now.as_millis()).0)
    }

    /// How many agents the engine considers running.
    pub fn running(&self) -> usize {
        self.running.len() + self.planning.running()
    }

    /// Handles one input at time `now` and returns the events to append and the commands to
    /// carry out.
    ///
    /// # Errors
    /// [`EngineError`] when the input does not fit; nothing changes then.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Result<Step, EngineError> {
        let mut step = Step::default();
        self.handle_into(input, now, &mut step)?;
        Ok(step)
    }

    /// As [`Engine::handle`], writing into `out` (cleared first) so that its buffers are
    /// reused. On [`EngineError::Internal`] `out` holds the events already applied; on every
    /// other error it is empty.
    ///
    /// # Errors
    /// As [`Engine::handle`].
    pub fn handle_into(
        &mut self,
        input: Input,
        now: Timestamp,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        out.clear();
        self.handle_append(input, now, out)
    }

    /// As [`Engine::handle_into`], appending to `out` instead of clearing it first: a host that
    /// handles a batch of inputs and persists their events together collects them in one step
    /// without copying. On [`EngineError::Internal`] `out` has the events already applied
    /// appended; on every other error nothing is added.
    ///
    /// # Errors
    /// As [`Engine::handle`].
    // Inlined into `handle_into`, so that the input is not copied once more on the way.
    #[inline]
    pub fn handle_append(
        &mut self,
        input: Input,
        now: Timestamp,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let (events, commands) = (out.events.len(), out.commands.len());
        match self.handle_dispatch(input, now, out) {
            Ok(()) => Ok(()),
            Err(e) => {
                if !matches!(e, EngineError::Internal(_)) {
                    out.events.truncate(events);
                    out.commands.truncate(commands);
                }
                Err(e)
            }
        }
    }

    #[inline]
    fn handle_dispatch(
        &mut self,
        input: Input,
        now: Timestamp,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let now = now.as_millis();
        match input {
            Input::Start(crate::engine::StartMode::Planning) => self.start_planning(now, out)?,
            Input::Start(crate::engine::StartMode::Execution) => self.start_execution(now, out)?,
            Input::Cancel => self.cancel(now, out)?,
            Input::Tick => self.tick(now, out)?,
            Input::Answer(decision) => self.answer(decision, now, out)?,
            Input::Started { work, attempt } => {
                self.check_running(&work, attempt)?;
            }
            Input::Progress {
                work,
                attempt,
                progress,
            } => self.progress(work, attempt, progress, now, out)?,
            Input::Handoff {
                work,
                attempt,
                partial,
            } => self.handoff(work, attempt, partial, now, out)?,
            Input::Finished {
                work,
                attempt,
                output,
            } => self.finished(work, attempt, output, now, out)?,
            Input::Failed {
                work,
                attempt,
                error,
            } => self.failed(work, attempt, error, now, out)?,
            Input::GateResult {
                item,
                attempt,
                passed,
                message,
            } => self.gate_result(item, attempt, passed, message, now, out)?,
        }
        self.pump(now, out)?;
        self.request_wake(now, out);
        Ok(())
    }

    /// Applies `event` to the state and appends it to the step.
    fn emit(&mut self, event: Event, out: &mut Step) -> Result<(), EngineError> {
        self.state.apply(&event).map_err(EngineError::Internal)?;
        out.events.push(event);
        Ok(())
    }

    /// As [`Engine::emit`], for an event about node `i`: the state finds the item by the
    /// node's position instead of looking its id up.
    #[inline(always)]
    fn emit_at(&mut self, i: usize, event: Event, out: &mut Step) -> Result<(), EngineError> {
        self.emit_with(i, out, || event)
    }

    /// As [`Engine::emit_at`], building the event only once the step has room for it, so that
    /// it is written straight into the step instead of being built aside and copied whole.
    #[inline(always)]
    fn emit_with(
        &mut self,
        i: usize,
        out: &mut Step,
        make: impl FnOnce() -> Event,
    ) -> Result<(), EngineError> {
        let hint = if i < self.np {
            Slot::Phase(i)
        } else {
            Slot::Task(i - self.np)
        };
        out.events.extend(std::iter::once_with(make));
        if let Some(e) = out.events.last()
            && let Err(err) = self.state.apply_at(e, Some(hint))
        {
            // Refused: taken back, so the step holds only applied events.
            out.events.pop();
            return Err(EngineError::Internal(err));
        }
        Ok(())
    }

    /// The node a unit of work names (execution work only).
    #[inline]
    fn node_of(&self, work: &Work) -> Result<usize, EngineError> {
        let found = match work {
            Work::Item(ItemRef::Phase(p)) => self.state.workflow().position(p.as_str()),
            Work::Item(ItemRef::Task(t)) => {
                let addr = t.as_str().as_ptr() as usize;
                match self.recent.get(self.recent_slot(addr)) {
                    // The node holds that id alive, so no other id has its address while it
                    // exists; the node's own id is checked all the same.
                    Some(&(a, i))
                        if a == addr
                            && self
                                .nodes
                                .get(i as usize)
                                .is_some_and(|n| n.item_addr() == addr) =>
                    {
                        Some(i as usize)
                    }
                    _ => self.state.task_position_of(t).map(|j| self.np + j),
                }
            }
            Work::Planning(_) => None,
        };
        found
            .filter(|&i| i < self.nodes.len())
            .ok_or_else(|| EngineError::UnknownWork { work: work.clone() })
    }

    /// The entry of `recent` for an id at `addr` (a Fibonacci hash of the address).
    #[inline]
    fn recent_slot(&self, addr: usize) -> usize {
        // Before `recent` is allocated this is 0 or 1, which `get` answers with `None`.
        ((addr as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.recent_shift) as usize
    }

    /// Remembers a started task for [`Engine::node_of`].
    fn remember(&mut self, i: usize) {
        if self.recent.is_empty() {
            // Eight entries per agent that may run at once: few collisions, L1-sized.
            let n = self
                .config
                .max_concurrency
                .saturating_mul(8)
                .clamp(64, 4096)
                .next_power_of_two();
            self.recent = vec![(0, 0); n];
            self.recent_shift = 64 - n.trailing_zeros();
        }
        let addr = self.nodes[i].item_addr();
        let k = self.recent_slot(addr);
        self.recent[k] = (addr, i as u32);
    }

    /// Asks for a tick at the earliest pending timer when the host has no earlier wake-up.
    fn request_wake(&mut self, now: u64, out: &mut Step) {
        if self.over {
            return;
        }
        // Drop stale tops so the wake-up is for a live timer.
        while let Some(Reverse((_, i, a))) = self.deadlines.peek().copied() {
            if self.is_running(i as usize, a) {
                break;
            }
            self.deadlines.pop();
        }
        while let Some(Reverse((_, i, a))) = self.retries.peek().copied() {
            if matches!(self.nodes.get(i as usize).map(|n| n.st), Some(node::NodeState::RetryWait { attempt }) if attempt == a)
            {
                break;
            }
            self.retries.pop();
        }
        let earlier = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, None) => x,
            (None, y) => y,
        };
        let next = earlier(
            earlier(
                self.deadlines.peek().map(|t| t.0.0),
                self.retries.peek().map(|t| t.0.0),
            ),
            // Planning timers run only in planning mode.
            if self.state.mode() == crate::state::Mode::Planning {
                self.planning.next_timer()
            } else {
                None
            },
        );
        if let Some(t) = next
            && self.last_wake.is_none_or(|w| t < w || w <= now)
        {
            self.last_wake = Some(t);
            out.commands.push(Command::WakeAt(Timestamp(t)));
        }
    }

    fn is_running(&self, i: usize, attempt: u32) -> bool {
        matches!(self.nodes.get(i).map(|n| n.st), Some(node::NodeState::Running { attempt: a, .. }) if a == attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MilestoneId, PhaseId, TaskId};
    use crate::state::{ItemOutput, TaskSpec};
    use crate::units::Weight;
    use crate::workflow::{PhaseSpec, Workflow};

    fn engine_with_tasks(n: usize) -> Engine {
        let phase = PhaseSpec::new(
            PhaseId::new("execute").unwrap(),
            "Execution",
            Weight::new(100).unwrap(),
        );
        let log = [
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("m").unwrap(),
                title: "m".into(),
                context: String::new(),
                workflow: Workflow::new(vec![phase], 3).unwrap(),
                seed: 1,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
            Event::TasksAdded {
                at: Timestamp(0),
                tasks: (0..n)
                    .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "t"))
                    .collect(),
            },
        ];
        Engine::resume(&log, EngineConfig::default()).unwrap()
    }

    fn started(step: &Step) -> Vec<(Work, u32)> {
        step.commands
            .iter()
            .filter_map(|c| match c {
                Command::Start(s) => Some((s.work.clone(), s.attempt)),
                _ => None,
            })
            .collect()
    }

    /// Inputs find their node whether they echo the engine's id or build the same id anew;
    /// unknown and stale ones are refused the same way.
    #[test]
    fn inputs_find_their_node_by_the_echoed_id_or_by_a_new_one() {
        let mut e = engine_with_tasks(3);
        let step = e
            .handle(Input::Start(StartMode::Execution), Timestamp(1))
            .unwrap();
        let starts = started(&step);
        assert_eq!(starts.len(), 3);
        let finish = |work: Work, attempt| Input::Finished {
            work,
            attempt,
            output: ItemOutput::default().into(),
        };
        // Echoed (same allocation).
        let (w0, a0) = starts[0].clone();
        e.handle(finish(w0.clone(), a0), Timestamp(2)).unwrap();
        // The same id, built anew.
        let fresh = Work::Item(ItemRef::Task(
            TaskId::new(starts[1].0.to_string().trim_start_matches("task ")).unwrap(),
        ));
        let addr = |w: &Work| match w {
            Work::Item(it) => it.as_str().as_ptr(),
            Work::Planning(_) => std::ptr::null(),
        };
        assert_eq!(fresh, starts[1].0);
        assert_ne!(addr(&fresh), addr(&starts[1].0));
        e.handle(finish(fresh, starts[1].1), Timestamp(3)).unwrap();
        // Stale: already finished.
        assert_eq!(
            e.handle(finish(w0.clone(), a0), Timestamp(4)),
            Err(EngineError::NotRunning {
                work: w0,
                attempt: a0
            })
        );
        // Unknown.
        let unknown = Work::Item(ItemRef::Task(TaskId::new("t9").unwrap()));
        assert_eq!(
            e.handle(finish(unknown.clone(), 1), Timestamp(5)),
            Err(EngineError::UnknownWork { work: unknown })
        );
        let (w2, a2) = starts[2].clone();
        e.handle(finish(w2, a2), Timestamp(6)).unwrap();
        assert_eq!(e.state().status(), crate::state::MilestoneStatus::Completed);
    }

    /// The most checkpoint states an engine with `recovery` holds while running two phases to
    /// completion.
    fn checkpoints_kept(recovery: RecoveryConfig) -> usize {
        let phases = ["a", "b"]
            .map(|p| PhaseSpec::new(PhaseId::new(p).unwrap(), p, Weight::new(50).unwrap()));
        let log = [
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("m").unwrap(),
                title: "m".into(),
                context: String::new(),
                workflow: Workflow::new(phases.to_vec(), 3).unwrap(),
                seed: 1,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
        ];
        let config = EngineConfig {
            recovery,
            ..EngineConfig::default()
        };
        let mut e = Engine::resume(&log, config).unwrap();
        let mut step = e
            .handle(Input::Start(StartMode::Execution), Timestamp(1))
            .unwrap();
        let mut most = 0;
        while let Some((work, attempt)) = started(&step).pop() {
            step = e
                .handle(
                    Input::Finished {
                        work,
                        attempt,
                        output: ItemOutput::default().into(),
                    },
                    Timestamp(2),
                )
                .unwrap();
            most = most.max(e.checkpoints.len());
        }
        assert_eq!(e.state().status(), crate::state::MilestoneStatus::Completed);
        most
    }

    #[test]
    fn only_the_newest_checkpoint_is_kept_and_a_restore_resets_it() {
        let phases = ["a", "b", "c"]
            .map(|p| PhaseSpec::new(PhaseId::new(p).unwrap(), p, Weight::new(1).unwrap()));
        let mut phases = phases.to_vec();
        phases[2].weight = Weight::new(98).unwrap();
        phases[1].dependencies = vec![PhaseId::new("a").unwrap()];
        phases[2].dependencies = vec![PhaseId::new("b").unwrap()];
        let mut log = vec![
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("m").unwrap(),
                title: "m".into(),
                context: String::new(),
                workflow: Workflow::new(phases, 3).unwrap(),
                seed: 1,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
        ];
        let mut e = Engine::resume(&log, EngineConfig::default()).unwrap();
        let mut step = e
            .handle(Input::Start(StartMode::Execution), Timestamp(1))
            .unwrap();
        log.extend(step.events.iter().cloned());
        // Finish a and b; c stays running.
        for _ in 0..2 {
            let (work, attempt) = started(&step).pop().unwrap();
            step = e
                .handle(
                    Input::Finished {
                        work,
                        attempt,
                        output: ItemOutput::default().into(),
                    },
                    Timestamp(2),
                )
                .unwrap();
            log.extend(step.events.iter().cloned());
        }
        let labels: Vec<(String, MilestoneState)> = {
            let mut state = MilestoneState::from_events(&log[..1]).unwrap();
            let mut out = Vec::new();
            for ev in &log[1..] {
                state.apply(ev).unwrap();
                if let Event::CheckpointRecorded { label, .. } = ev
                    && label != EXECUTION_START
                {
                    out.push((label.clone(), state.clone()));
                }
            }
            out
        };
        assert_eq!(labels.len(), 2, "a checkpoint after a and after b");
        // Live and resumed engines hold one copy: the newest.
        assert_eq!(e.checkpoints.len(), 1);
        assert_eq!(e.checkpoints[0].0, labels[1].0);
        let resumed = Engine::resume(&log, EngineConfig::default()).unwrap();
        assert_eq!(resumed.checkpoints.len(), 1);
        assert_eq!(resumed.checkpoints[0].0, labels[1].0);
        // A host restores the older checkpoint through its store: that is the target now,
        // never the newer one the state has left behind.
        log.push(Event::RolledBack {
            at: Timestamp(3),
            label: labels[0].0.clone(),
            state: Box::new(labels[0].1.clone()),
        });
        let resumed = Engine::resume(&log, EngineConfig::default()).unwrap();
        assert_eq!(resumed.checkpoints.len(), 1);
        assert_eq!(resumed.checkpoints[0].0, labels[0].0);
        assert_eq!(
            resumed.checkpoints[0].1.phases()[1].item.status,
            crate::state::ItemStatus::Pending,
            "the target is the state after a, before b"
        );
    }

    /// `handle_append` collects several inputs' steps in one, exactly as `handle_into` would
    /// have returned them one by one; a refused input adds nothing.
    #[test]
    fn handle_append_is_handle_into_concatenated() {
        let mut a = engine_with_tasks(4);
        let mut b = a.clone();
        let start = Input::Start(StartMode::Execution);
        let s = a.handle(start.clone(), Timestamp(1)).unwrap();
        let mut acc = Step::default();
        b.handle_append(start, Timestamp(1), &mut acc).unwrap();
        assert_eq!(acc, s);
        let finish = |(work, attempt): (Work, u32)| Input::Finished {
            work,
            attempt,
            output: ItemOutput::default().into(),
        };
        let mut expected = s.clone();
        for (k, w) in started(&s).into_iter().take(2).enumerate() {
            let one = a
                .handle(finish(w.clone()), Timestamp(2 + k as u64))
                .unwrap();
            expected.events.extend(one.events);
            expected.commands.extend(one.commands);
            b.handle_append(finish(w.clone()), Timestamp(2 + k as u64), &mut acc)
                .unwrap();
            // The same input again is stale: refused, and nothing is added.
            let before = acc.clone();
            assert!(matches!(
                b.handle_append(finish(w), Timestamp(9), &mut acc),
                Err(EngineError::NotRunning { .. })
            ));
            assert_eq!(acc, before);
        }
        assert_eq!(acc, expected);
        assert_eq!(a.state(), b.state());
    }

    #[test]
    fn checkpoint_states_are_kept_only_when_a_rollback_can_use_them() {
        let chain = |order: Vec<RecoveryStep>, max_rollbacks| RecoveryConfig {
            order,
            max_rollbacks,
            ..RecoveryConfig::default()
        };
        assert_eq!(checkpoints_kept(RecoveryConfig::default()), 1);
        assert_eq!(checkpoints_kept(chain(vec![RecoveryStep::Rollback], 1)), 1);
        assert_eq!(checkpoints_kept(chain(vec![RecoveryStep::Intervene], 0)), 1);
        assert_eq!(checkpoints_kept(chain(vec![RecoveryStep::Retry], 1)), 0);
        assert_eq!(checkpoints_kept(chain(vec![RecoveryStep::Rollback], 0)), 0);
        assert_eq!(
            checkpoints_kept(chain(vec![RecoveryStep::Retry, RecoveryStep::Degrade], 3)),
            0
        );
    }
}
