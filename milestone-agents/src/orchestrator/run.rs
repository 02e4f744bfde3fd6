//! The loop behind every orchestrator call: feed inputs to the engine, persist its events,
//! carry out its commands, wait for runs, reports and timers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::future::{BoxFuture, poll_fn};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use milestone_core::complexity::{ComplexityInput, assess, decide};
use milestone_core::engine::{
    Command, Engine, EngineError, IdempotencyKey, Input, Outcome, Role, StartCommand, Step,
    Strategy, Upstream, Work,
};
use milestone_core::{
    Complexity, Event, ExecutionMode, FailureKind, ItemOutput, ItemRef, MilestoneId, MilestonePlan,
    MilestoneStatus, PhaseId, ProgressReport, Timestamp, Workflow,
};
use milestone_git::{MergeOutcome, RepoPath, Revision};

use super::builder::ModePolicy;
use super::gate::GateVerdict;
use super::metrics::{ExecutionMetrics, PhaseTiming, Report};
use super::{Inner, OrchestratorError, tag_of};
use crate::context::{AgentContext, CancelToken, ContextPool, Report as RunReport, RunRouter};
use crate::output::{AgentError, AgentOutput, result_input};
use crate::registry::{RegistryError, RunnerSource};
use crate::request::AgentRequest;
use crate::runner::{AgentRunner, RunNow, finish_by_deadline, run_with_deadline, settle};

/// Inputs handled (and events appended) together at most, so that a flood of completions
/// still gets its starts out promptly.
const MAX_BATCH: usize = 1024;

/// How long runs cancelled at the end of a call get to return, in milliseconds.
const CANCEL_GRACE_MS: u64 = 1_000;

/// What a call produced.
pub(crate) struct Done {
    pub(crate) report: Report,
    /// The plan, when planning finished in this call.
    pub(crate) plan: Option<MilestonePlan>,
}

/// How a run's runner was chosen.
#[derive(Debug, Clone, Copy)]
enum Via {
    Agent,
    Direct,
    Fallback,
    Degraded,
}

/// What a batch of events means once stored: outputs for the result cache, failures and
/// timeouts for the metrics.
#[derive(Default)]
struct Effects {
    cached: Vec<(milestone_core::engine::CacheKey, ItemOutput)>,
    failures: u64,
    timeouts: u64,
}

/// An append under way: what its events mean, read before the store took them. (Where they
/// land is derived when the store answers: from the version before it and the one it returns.)
struct Appending {
    /// A copy for the event listeners, when there are any.
    published: Option<Vec<Event>>,
    effects: Effects,
}

/// A run that ended: its key in the run table, and what the runner returned.
struct RunDone {
    key: u64,
    result: Result<AgentOutput, AgentError>,
    via: Option<Via>,
}

/// A run to launch: the loop owns the `FuturesUnordered`.
struct Launch {
    key: u64,
    degraded: bool,
    request: AgentRequest,
    ctx: AgentContext,
}

/// What the loop knows of a run while it runs.
struct RunMeta {
    work: Work,
    attempt: u32,
    /// A handle on the cancellation of the run's context.
    token: CancelToken,
    started_at: Timestamp,
    cache: Option<milestone_core::engine::CacheKey>,
}

/// The runs in flight, by key (slot in the low half, a sequence number in the high half, so a
/// late report of an ended run never reaches the run that took its slot): O(1) per run, no
/// hashing.
#[derive(Default)]
struct RunTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    seq: u32,
}

/// One place of the run table.
#[derive(Default)]
enum Slot {
    #[default]
    Free,
    /// Held for the key with this sequence number, not filled yet.
    Reserved(u32),
    /// The run under the key with this sequence number.
    Run(u32, RunMeta),
}

impl RunTable {
    /// A key for a run whose entry may never be needed (an in-process run that answers at
    /// once): its slot is held for it until [`fill`](RunTable::fill) or
    /// [`release`](RunTable::release). A late report for the key finds nothing, as for any
    /// ended run.
    fn reserve(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = Slot::Reserved(self.seq);
                }
                slot
            }
            None => {
                self.slots.push(Slot::Reserved(self.seq));
                (self.slots.len() - 1) as u32
            }
        };
        (u64::from(self.seq) << 32) | u64::from(slot)
    }

    /// The slot held for `key`, if it is still held for it.
    fn reserved(&mut self, key: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(key as u32 as usize)
            .filter(|s| matches!(s, Slot::Reserved(seq) if *seq == (key >> 32) as u32))
    }

    /// Puts `meta` under the reserved `key`.
    fn fill(&mut self, key: u64, meta: RunMeta) {
        if let Some(slot) = self.reserved(key) {
            *slot = Slot::Run((key >> 32) as u32, meta);
        }
    }

    /// Gives back the slot held for `key`, never filled.
    fn release(&mut self, key: u64) {
        if let Some(slot) = self.reserved(key) {
            *slot = Slot::Free;
            self.free.push(key as u32);
        }
    }

    fn get(&self, key: u64) -> Option<&RunMeta> {
        match self.slots.get(key as u32 as usize) {
            Some(Slot::Run(seq, m)) if *seq == (key >> 32) as u32 => Some(m),
            _ => None,
        }
    }

    fn take(&mut self, key: u64) -> Option<RunMeta> {
        self.get(key)?;
        self.free.push(key as u32);
        match std::mem::take(&mut self.slots[key as u32 as usize]) {
            Slot::Run(_, m) => Some(m),
            _ => None,
        }
    }

    fn iter(&self) -> impl Iterator<Item = &RunMeta> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Run(_, m) => Some(m),
            _ => None,
        })
    }
}

enum Woke {
    Report(u64, RunReport),
    Done(RunDone),
    Tick,
    Cancel,
}

type Runs<'a> = FuturesUnordered<futures::future::BoxFuture<'a, RunDone>>;

pub(crate) struct Drive<'a> {
    inner: &'a Inner,
    id: MilestoneId,
    title: Arc<str>,
    context: Arc<str>,
    task_phase: PhaseId,
    engine: Engine,
    version: u64,
    mode: ExecutionMode,
    metrics: ExecutionMetrics,
    runs: RunTable,
    /// The direct runner of `Role::Task`, looked up once (`None` until then).
    task_runner: Option<Option<&'a dyn AgentRunner>>,
    committed: HashSet<PhaseId>,
    tagged: bool,
    merged: bool,
    pending_cache: HashMap<ItemRef, (milestone_core::engine::CacheKey, ItemOutput)>,
    gated: HashMap<ItemRef, ItemOutput>,
    outcome: Option<Outcome>,
    inputs: VecDeque<Input>,
    sleep: Option<BoxFuture<'static, ()>>,
    /// Start commands to launch, kept in the engine's boxes: a pointer is moved, not the
    /// command.
    #[allow(clippy::vec_box)]
    launches: Vec<Box<StartCommand>>,
    router: Arc<RunRouter>,
    /// Contexts of ended runs, reused by the next ones.
    contexts: ContextPool,
    reports: mpsc::UnboundedReceiver<(u64, RunReport)>,
    first: bool,
    last_now: Timestamp,
}

/// Picks the mode and completes the adaptive inputs from the log's plan and the registry.
async fn choose_mode(
    inner: &Inner,
    log: &[Event],
    config: &mut milestone_core::engine::EngineConfig,
) -> ExecutionMode {
    let workflow: Option<&Workflow> = log.iter().find_map(|e| match e {
        Event::Created { workflow, .. } => Some(workflow),
        _ => None,
    });
    let plan: Option<&MilestonePlan> = log.iter().rev().find_map(|e| match e {
        Event::PlanRecorded { plan, .. } => Some(&**plan),
        _ => None,
    });
    let roles: Vec<Role> = workflow
        .map(|w| {
            w.phases()
                .iter()
                .map(|p| Role::Phase(p.id.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut available = 0u32;
    for role in &roles {
        if let Some(r) = inner.registry.runner(role)
            && r.available().await
        {
            available += 1;
        }
    }
    let complexity = match (plan, workflow) {
        (Some(p), Some(w)) => assess(&ComplexityInput::for_plan(p, w)),
        _ => Complexity::Low,
    };
    if config.adaptive.complexity.is_none() && plan.is_some() {
        config.adaptive.complexity = Some(complexity);
    }
    if config.adaptive.agents_available == 0 {
        config.adaptive.agents_available = available;
    }
    match inner.mode {
        ModePolicy::Fixed(m) => m,
        ModePolicy::Auto => decide(
            complexity,
            !roles.is_empty() && available as usize == roles.len(),
        ),
    }
}

/// Whether `mode` runs `role` on its direct (in-process) runner when it has one: direct mode
/// for phases and tasks, hybrid mode for the phases other than the task phase; never for a
/// degraded attempt (the registry picks its runner).
fn prefers_direct(
    mode: ExecutionMode,
    role: &Role,
    degraded: bool,
    task_phase: Option<&PhaseId>,
) -> bool {
    !degraded
        && match mode {
            ExecutionMode::Direct => matches!(role, Role::Phase(_) | Role::Task),
            ExecutionMode::Hybrid => matches!(role, Role::Phase(p) if Some(p) != task_phase),
            _ => false,
        }
}

/// The runner for a role under `mode`; aggregation falls back to the built-in one.
async fn resolve(
    inner: &Inner,
    role: &Role,
    degraded: bool,
    mode: ExecutionMode,
    task_phase: Option<&PhaseId>,
) -> Result<(Arc<dyn AgentRunner>, Via), RegistryError> {
    if prefers_direct(mode, role, degraded, task_phase)
        && let Some(d) = inner.registry.direct(role)
    {
        return Ok((Arc::clone(d), Via::Direct));
    }
    match inner.registry.resolve_detailed(role, degraded).await {
        Ok(r) => {
            let via = match r.source {
                RunnerSource::Primary => Via::Agent,
                RunnerSource::Degraded => Via::Degraded,
                _ => Via::Fallback,
            };
            Ok((r.runner, via))
        }
        Err(_) if *role == Role::Aggregation => Ok((Arc::clone(&inner.aggregator), Via::Direct)),
        Err(e) => Err(e),
    }
}

/// Runs a launch whose runner is resolved asynchronously (agents, fallbacks, degraded runs).
async fn run_one(
    inner: &Inner,
    mode: ExecutionMode,
    task_phase: PhaseId,
    launch: Launch,
) -> RunDone {
    let Launch {
        key,
        degraded,
        request,
        ctx,
    } = launch;
    match resolve(inner, &request.role, degraded, mode, Some(&task_phase)).await {
        Err(e) => RunDone {
            key,
            result: Err(AgentError::unavailable(e.to_string())),
            via: None,
        },
        Ok((runner, via)) => RunDone {
            key,
            result: run_with_deadline(&*runner, request, ctx, &*inner.clock).await,
            via: Some(via),
        },
    }
}

/// Where to split a batch whose step asks for a phase commit and ends the milestone: the
/// position of the event that makes the milestone final (see [`Drive::perform_split`]).
fn split_at(acc: &Step) -> Option<usize> {
    if !acc
        .commands
        .iter()
        .any(|c| matches!(c, Command::CommitPhase { .. }))
    {
        return None;
    }
    acc.events
        .iter()
        .position(|e| matches!(e, Event::StatusChanged { status, .. } if status.is_final()))
}

impl<'a> Drive<'a> {
    /// Drives the milestone whose log is `log` (at `version`) from `initial` inputs until it
    /// finishes, pauses, or has nothing left to do.
    pub(crate) async fn start(
        inner: &'a Inner,
        id: &MilestoneId,
        log: Vec<Event>,
        version: u64,
        cancel: CancelToken,
        initial: Vec<Input>,
        call: super::phase::Call,
    ) -> Result<Done, OrchestratorError> {
        let mut drive = Drive::open(inner, id, log, version, call).await?;
        drive.run(cancel, initial).await
    }

    /// Rebuilds the engine of the milestone whose log is `log` (at `version`), with `call`'s
    /// restrictions: the part of a call that costs O(milestone).
    pub(crate) async fn open(
        inner: &'a Inner,
        id: &MilestoneId,
        log: Vec<Event>,
        version: u64,
        call: super::phase::Call,
    ) -> Result<Drive<'a>, OrchestratorError> {
        let mut config = inner.config.clone();
        if call.phases.is_some() {
            config.phase_filter = call.phases;
        }
        let chosen = choose_mode(inner, &log, &mut config).await;
        let mode = call.mode.unwrap_or(chosen);
        let engine = Engine::resume(&log, config)?;
        drop(log);
        let state = engine.state();
        let (router, reports) = RunRouter::new();
        Ok(Drive {
            inner,
            id: id.clone(),
            title: Arc::from(state.title()),
            context: Arc::from(state.context()),
            task_phase: state.workflow().task_phase().clone(),
            committed: state
                .git()
                .commits
                .iter()
                .map(|c| c.phase.clone())
                .collect(),
            tagged: state.git().tag.is_some(),
            merged: state.git().merge_commit.is_some(),
            last_now: state.updated_at(),
            engine,
            version,
            mode,
            metrics: ExecutionMetrics::default(),
            runs: RunTable::default(),
            task_runner: None,
            pending_cache: HashMap::new(),
            gated: HashMap::new(),
            outcome: None,
            inputs: VecDeque::new(),
            sleep: None,
            launches: Vec::new(),
            router,
            contexts: ContextPool::default(),
            reports,
            first: true,
        })
    }

    /// The state of the milestone as the engine holds it.
    pub(crate) fn state(&self) -> &milestone_core::MilestoneState {
        self.engine.state()
    }

    /// The strategy a run starting now goes by (see [`Engine::strategy_at`]).
    pub(crate) fn strategy_now(&self) -> Strategy {
        self.engine.strategy_at(self.inner.clock.now())
    }

    /// The version of the log the engine has folded.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Feeds `initial` and carries on until the run finishes, pauses, or has nothing left.
    pub(crate) async fn run(
        &mut self,
        cancel: CancelToken,
        initial: Vec<Input>,
    ) -> Result<Done, OrchestratorError> {
        let drive = self;
        drive.metrics.started_at = drive.inner.clock.now();
        drive.inputs.extend(initial);
        let mut runs: Runs<'a> = FuturesUnordered::new();
        let mut cancelled = cancel.cancelled();
        let mut cancel_seen = false;
        let mut acc = Step::default();
        let mut launches = Vec::new();
        loop {
            drive.read_clock();
            while let Some(input) = drive.inputs.pop_front() {
                drive.feed(input, &mut acc)?;
            }
            if !acc.events.is_empty() || !acc.commands.is_empty() {
                if let Some(k) = split_at(&acc) {
                    drive.perform_split(&mut acc, k).await?;
                } else {
                    // The batch's events are stored, then its commands carried out: spelled
                    // out here rather than in an async helper, as this runs on every turn.
                    let n = acc.events.len();
                    if let Some(waiting) = drive.append_now(&mut acc.events)? {
                        drive.append_waiting(waiting, &mut acc.events).await?;
                    }
                    // A store that kept the buffer itself leaves none: the next batch gets one
                    // as large as this one was, instead of growing one step by step.
                    if acc.events.capacity() == 0 {
                        acc.events.reserve(n);
                    }
                    let later = drive.carry_out_commands(&mut acc);
                    if !later.is_empty() {
                        drive.carry_out_later(later).await?;
                    }
                }
                if !drive.launches.is_empty() {
                    std::mem::swap(&mut launches, &mut drive.launches);
                    // In-process runners usually finish when first polled: they are polled
                    // here, and only those still pending join the set of runs.
                    // (Moved in as `&mut`: a shared borrow of the runs would need them `Sync`.)
                    let (this, todo, set) = (&mut *drive, &mut launches, &mut runs);
                    poll_fn(move |cx| {
                        for launch in todo.drain(..) {
                            if let Some(run) = this.launch_now(launch, cx) {
                                set.push(run);
                            }
                        }
                        Poll::Ready(())
                    })
                    .await;
                }
                drive.metrics.max_parallel = drive
                    .metrics
                    .max_parallel
                    .max(u32::try_from(drive.engine.running()).unwrap_or(u32::MAX));
                if !drive.inputs.is_empty() {
                    continue;
                }
            }
            if drive.outcome.is_some() {
                break;
            }
            let paused = drive.engine.state().status() == MilestoneStatus::AwaitingIntervention;
            if runs.is_empty() && (drive.sleep.is_none() || paused) {
                if !cancel_seen
                    && cancel.is_cancelled()
                    && !drive.engine.state().status().is_final()
                {
                    cancel_seen = true;
                    drive.inputs.push_back(Input::Cancel);
                    continue;
                }
                break;
            }
            let woke = poll_fn(|cx| {
                if let Poll::Ready(Some((k, r))) = drive.reports.poll_next_unpin(cx) {
                    return Poll::Ready(Woke::Report(k, r));
                }
                if !runs.is_empty()
                    && let Poll::Ready(Some(d)) = runs.poll_next_unpin(cx)
                {
                    return Poll::Ready(Woke::Done(d));
                }
                if let Some(s) = drive.sleep.as_mut()
                    && s.poll_unpin(cx).is_ready()
                {
                    return Poll::Ready(Woke::Tick);
                }
                if !cancel_seen && Pin::new(&mut cancelled).poll(cx).is_ready() {
                    return Poll::Ready(Woke::Cancel);
                }
                Poll::Pending
            })
            .await;
            drive.read_clock();
            match woke {
                Woke::Report(k, r) => drive.report(k, r),
                Woke::Done(d) => drive.finish_run(d.key, d.result, d.via),
                Woke::Tick => {
                    drive.sleep = None;
                    drive.inputs.push_back(Input::Tick);
                }
                Woke::Cancel => {
                    cancel_seen = true;
                    drive.inputs.push_back(Input::Cancel);
                }
            }
            // Whatever else is ready joins this batch (one append for all: group commit).
            while drive.inputs.len() < MAX_BATCH {
                if let Ok((k, r)) = drive.reports.try_recv() {
                    drive.report(k, r);
                    continue;
                }
                match runs.next().now_or_never() {
                    Some(Some(d)) => drive.finish_run(d.key, d.result, d.via),
                    _ => break,
                }
            }
        }
        // Runs still in flight (cancelled ones, late ones) are told to stop and given a short
        // grace period to return, as the runner contract asks; then they are dropped.
        for run in drive.runs.iter() {
            run.token.cancel();
        }
        if !runs.is_empty() {
            let drain = runs.for_each(|_| futures::future::ready(()));
            let grace = drive.inner.clock.sleep(CANCEL_GRACE_MS);
            futures::future::select(Box::pin(drain), grace).await;
        }
        Ok(drive.finish())
    }

    /// Starts a launch: an in-process runner is called and polled at once, and when it is
    /// done its result is handled here; otherwise the run is returned for the loop to poll.
    // The box from the queue is opened here, its fields moved straight into the request.
    #[allow(clippy::boxed_local)]
    fn launch_now(
        &mut self,
        start: Box<StartCommand>,
        cx: &mut Context<'_>,
    ) -> Option<futures::future::BoxFuture<'a, RunDone>> {
        let inner = self.inner;
        // The run's entry is made only if the run does not answer at once.
        let key = self.runs.reserve();
        let ctx = AgentContext::for_run_in(&mut self.contexts, &self.router, key);
        let meta = RunMeta {
            work: start.work.clone(),
            attempt: start.attempt,
            token: ctx.cancel_token().clone(),
            started_at: self.last_now,
            cache: start.reusable.then_some(start.cache_key),
        };
        let degraded = start.degraded;
        let request = AgentRequest::for_start(
            *start,
            self.id.clone(),
            Arc::clone(&self.title),
            Arc::clone(&self.context),
        );
        let direct = prefers_direct(self.mode, &request.role, degraded, Some(&self.task_phase));
        let runner: Option<&'a dyn AgentRunner> = match (direct, &request.role) {
            (false, _) => None,
            (true, Role::Task) => *self
                .task_runner
                .get_or_insert_with(|| inner.registry.direct(&Role::Task).map(|r| &**r)),
            (true, role) => inner.registry.direct(role).map(|r| &**r),
        };
        let Some(runner) = runner else {
            self.runs.fill(key, meta);
            return Some(Box::pin(run_one(
                inner,
                self.mode,
                self.task_phase.clone(),
                Launch {
                    key,
                    degraded,
                    request,
                    ctx,
                },
            )));
        };
        let deadline = request.deadline;
        match runner.run_now(request, ctx, cx) {
            // Settled by `finish_meta`, with the run's token.
            RunNow::Done(result) => {
                self.runs.release(key);
                self.finish_meta(meta, result, Some(Via::Direct));
                None
            }
            RunNow::Pending(run) => {
                // Pending in-process runs are rare: the label is made only for them.
                let work = meta.work.to_string();
                let token = meta.token.clone();
                self.runs.fill(key, meta);
                Some(Box::pin(async move {
                    let result =
                        finish_by_deadline(runner, &work, deadline, token, &*inner.clock, run)
                            .await;
                    RunDone {
                        key,
                        result,
                        via: Some(Via::Direct),
                    }
                }))
            }
        }
    }

    /// A progress report or hand-off from run `key`; dropped once the run has ended.
    fn report(&mut self, key: u64, report: RunReport) {
        if let Some(run) = self.runs.get(key) {
            let input = report.into_input(run.work.clone(), run.attempt);
            self.inputs.push_back(input);
        }
    }

    /// Reads the clock (once per batch: every input of a batch is handled at one time).
    fn read_clock(&mut self) -> Timestamp {
        let now = self.inner.clock.now().max(self.last_now);
        self.last_now = now;
        now
    }

    /// The time of the current batch.
    fn now(&mut self) -> Timestamp {
        self.last_now
    }

    /// Hands one input to the engine, collecting its step into `acc`. Late news about runs the
    /// engine no longer considers running (cancelled, timed out) is dropped.
    fn feed(&mut self, input: Input, acc: &mut Step) -> Result<(), OrchestratorError> {
        let now = self.now();
        let about_a_run = matches!(
            input,
            Input::Progress { .. }
                | Input::Handoff { .. }
                | Input::Finished { .. }
                | Input::Failed { .. }
                | Input::Started { .. }
                | Input::GateResult { .. }
                | Input::Tick
        );
        let lenient = about_a_run || !self.first;
        self.first = false;
        match self.engine.handle_append(input, now, acc) {
            Ok(()) => {}
            Err(EngineError::NotRunning { .. } | EngineError::UnknownWork { .. })
                if about_a_run => {}
            Err(EngineError::Status { .. }) if lenient => {}
            Err(EngineError::Internal(e)) => {
                // The batch is abandoned, persisted up to its last append; the next call
                // rebuilds the engine from the stored log.
                return Err(OrchestratorError::Engine(EngineError::Internal(e)));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Appends `events`, awaiting the store if it waits: the few events of a phase commit, a
    /// tag, a merge, or the halves of a batch split around a commit (the loop calls
    /// [`append_now`](Drive::append_now) itself, keeping its buffer).
    async fn append(&mut self, mut events: Vec<Event>) -> Result<(), OrchestratorError> {
        if let Some(waiting) = self.append_now(&mut events)? {
            self.append_waiting(waiting, &mut events).await?;
        }
        Ok(())
    }

    /// Hands `events` to the store (moved, not copied, when the store keeps events as they
    /// are). A store that needs no waiting (the in-memory one, through
    /// [`StateStore::append_now`](milestone_state::StateStore::append_now)) is done here, without the boxed future of an async call:
    /// `None`. Otherwise nothing happened yet, and the append is left to
    /// [`append_waiting`](Drive::append_waiting) with what is returned.
    fn append_now(
        &mut self,
        events: &mut Vec<Event>,
    ) -> Result<Option<Appending>, OrchestratorError> {
        if events.is_empty() {
            return Ok(None);
        }
        let pending = self.before_append(events);
        match self.inner.store.append_now(&self.id, self.version, events) {
            Some(v) => {
                self.after_append(pending, v?);
                Ok(None)
            }
            None => Ok(Some(pending)),
        }
    }

    /// The append [`append_now`](Drive::append_now) left: awaited.
    async fn append_waiting(
        &mut self,
        pending: Appending,
        events: &mut Vec<Event>,
    ) -> Result<(), OrchestratorError> {
        let v = self
            .inner
            .store
            .append_from(&self.id, self.version, events)
            .await?;
        self.after_append(pending, v);
        Ok(())
    }

    /// What appending `events` will mean, read before the store takes them.
    fn before_append(&mut self, events: &[Event]) -> Appending {
        Appending {
            published: (!self.inner.hub.is_quiet()).then(|| events.to_vec()),
            effects: self.effects_of(events),
        }
    }

    /// The store holds the events now, up to `version`: what they mean for the result cache,
    /// the listeners and the metrics takes effect.
    fn after_append(&mut self, appended: Appending, version: u64) {
        let Appending { published, effects } = appended;
        if let Some(events) = published {
            self.inner.hub.publish(&self.id, self.version + 1, &events);
        }
        self.metrics.events_appended += version.saturating_sub(self.version);
        self.version = version;
        self.metrics.appends += 1;
        self.metrics.failures += effects.failures;
        self.metrics.timeouts += effects.timeouts;
        if let Some(cache) = &self.inner.cache {
            for (key, output) in effects.cached {
                cache.put(key, output);
            }
        }
    }

    /// Persists a batch whose step asks for a phase commit and ends the milestone, then
    /// carries out its commands: the commit is made (and recorded) before the final status is
    /// appended, as a final milestone takes no more phase records.
    async fn perform_split(&mut self, acc: &mut Step, k: usize) -> Result<(), OrchestratorError> {
        let mut before = std::mem::take(&mut acc.events);
        let after = before.split_off(k.min(before.len()));
        self.append(before).await?;
        for c in &acc.commands {
            if let Command::CommitPhase { phase } = c {
                self.commit(phase).await?;
            }
        }
        acc.commands
            .retain(|c| !matches!(c, Command::CommitPhase { .. }));
        self.append(after).await?;
        let later = self.carry_out_commands(acc);
        self.carry_out_later(later).await
    }

    /// Carries out the batch's commands that need no waiting, without an async call each, and
    /// returns the others (they wait on the store, git or the host's gate; rare, so the vector
    /// is seldom allocated) for [`carry_out_later`](Drive::carry_out_later): nothing the first
    /// do depends on that order. `acc.commands` is left empty, its buffer kept.
    fn carry_out_commands(&mut self, acc: &mut Step) -> Vec<Command> {
        let mut commands = std::mem::take(&mut acc.commands);
        let mut later = Vec::new();
        for command in commands.drain(..) {
            if let Some(command) = self.carry_out_now(command) {
                later.push(command);
            }
        }
        acc.commands = commands;
        later
    }

    /// Carries out the commands [`carry_out_commands`](Drive::carry_out_commands) returned.
    async fn carry_out_later(&mut self, later: Vec<Command>) -> Result<(), OrchestratorError> {
        for command in later {
            self.carry_out(command).await?;
        }
        Ok(())
    }

    /// Carries out the commands that need no waiting (starts, cancellations, wake-ups, the
    /// outcome) without an async call each; gives back the others (store snapshots, git, gates)
    /// for [`carry_out`](Drive::carry_out).
    fn carry_out_now(&mut self, command: Command) -> Option<Command> {
        match command {
            Command::Start(start) => self.launch(start),
            Command::Cancel { work, attempt } => self.cancel_run(&work, attempt),
            Command::Checkpoint { .. } if !self.inner.snapshots => {}
            Command::WakeAt(t) => self.sleep = Some(self.inner.clock.sleep_until(t)),
            Command::AwaitIntervention { .. } => {}
            Command::Finished(outcome) => self.outcome = Some(outcome),
            command @ (Command::Checkpoint { .. }
            | Command::CommitPhase { .. }
            | Command::Tag
            | Command::Merge
            | Command::AwaitGate { .. }) => return Some(command),
            _ => {}
        }
        None
    }

    /// A cancel command: the run of `attempt` of `work` is told to stop.
    fn cancel_run(&mut self, work: &Work, attempt: u32) {
        // Rare: a scan of the runs not launched yet (a start and its cancellation in one
        // batch: it never starts), then of the runs in flight.
        self.launches
            .retain(|s| !(s.attempt == attempt && s.work == *work));
        if let Some(run) = self
            .runs
            .iter()
            .find(|r| r.attempt == attempt && r.work == *work)
        {
            run.token.cancel();
        }
    }

    /// What appending `events` will mean: the outputs to cache (taken from those waiting for
    /// their completion to be stored) and the failures and timeouts to count.
    fn effects_of(&mut self, events: &[Event]) -> Effects {
        let mut effects = Effects::default();
        for e in events {
            match e {
                Event::ItemCompleted { item, .. } if !self.pending_cache.is_empty() => {
                    if let Some(entry) = self.pending_cache.remove(item) {
                        effects.cached.push(entry);
                    }
                }
                Event::ItemFailed { error, .. } => {
                    effects.failures += 1;
                    if error.kind == FailureKind::Timeout {
                        effects.timeouts += 1;
                    }
                }
                _ => {}
            }
        }
        effects
    }

    /// The commands [`carry_out_now`](Drive::carry_out_now) gives back: those that wait on the
    /// store, git or the host's gate.
    async fn carry_out(&mut self, command: Command) -> Result<(), OrchestratorError> {
        match command {
            Command::Checkpoint { .. } => {
                self.inner.store.snapshot(&self.id).await?;
            }
            Command::CommitPhase { phase } => self.commit(&phase).await?,
            Command::Tag => self.tag().await?,
            Command::Merge => self.merge().await?,
            Command::AwaitGate { item, attempt } => {
                let verdict = match &self.inner.gate {
                    Some(gate) => {
                        gate.check(self.engine.state(), &item, self.gated.get(&item))
                            .await
                    }
                    None => GateVerdict::pass("no host gate configured"),
                };
                self.gated.remove(&item);
                self.inputs.push_back(Input::GateResult {
                    item,
                    attempt,
                    passed: verdict.passed,
                    message: verdict.message,
                });
            }
            // The others never come here: `carry_out_now` carries them out.
            _ => {}
        }
        Ok(())
    }

    /// A start command: answered from the cache when it may be, else queued for
    /// [`launch_now`](Drive::launch_now) (still boxed: the request is built once, there).
    fn launch(&mut self, start: Box<StartCommand>) {
        if start.reusable
            && let Some(cache) = &self.inner.cache
            && let Some(output) = cache.get(start.cache_key)
        {
            self.metrics.cache_hits += 1;
            self.inputs.push_back(Input::Finished {
                work: start.work,
                attempt: start.attempt,
                output: output.into(),
            });
            return;
        }
        self.launches.push(start);
    }

    /// Run `key` ended with `result`: its input joins the batch.
    fn finish_run(&mut self, key: u64, result: Result<AgentOutput, AgentError>, via: Option<Via>) {
        if let Some(run) = self.runs.take(key) {
            self.finish_meta(run, result, via);
        }
    }

    /// The run `run` (out of the run table, or never in it) ended with `result`: its input
    /// joins the batch.
    fn finish_meta(
        &mut self,
        run: RunMeta,
        result: Result<AgentOutput, AgentError>,
        via: Option<Via>,
    ) {
        let result = settle(result, &run.token);
        self.contexts.recycle(run.token);
        self.metrics.busy_ms += self.last_now.millis_since(run.started_at);
        if let Some(via) = via {
            self.metrics.runs += 1;
            match via {
                Via::Agent => self.metrics.agent_runs += 1,
                Via::Direct => self.metrics.direct_runs += 1,
                Via::Fallback => self.metrics.fallback_runs += 1,
                Via::Degraded => self.metrics.degraded_runs += 1,
            }
        }
        let (input, quality) = result_input(run.work, run.attempt, result);
        for q in quality.values() {
            self.metrics.quality_sum += q;
            self.metrics.quality_count += 1;
        }
        if let Input::Finished {
            work: Work::Item(item),
            output,
            ..
        } = &input
        {
            if let (Some(key), Some(_)) = (run.cache, &self.inner.cache) {
                self.pending_cache
                    .insert(item.clone(), (key, ItemOutput::clone(output)));
            }
            if let ItemRef::Phase(p) = item
                && self.inner.config.host_gates.contains(p)
            {
                self.gated.insert(item.clone(), ItemOutput::clone(output));
            }
        }
        self.inputs.push_back(input);
    }

    async fn commit(&mut self, phase: &PhaseId) -> Result<(), OrchestratorError> {
        let Some(git) = self.inner.git.clone() else {
            return Ok(());
        };
        if self.committed.contains(phase) {
            return Ok(());
        }
        let done = git.commit_phase(&self.id, phase, &self.title).await?;
        self.metrics.git_operations += 1;
        let at = self.read_clock();
        self.append(vec![Event::PhaseCommitted {
            at,
            phase: phase.clone(),
            commit: done.commit.as_str().to_owned(),
        }])
        .await?;
        self.committed.insert(phase.clone());
        Ok(())
    }

    async fn tag(&mut self) -> Result<(), OrchestratorError> {
        let Some(git) = self.inner.git.clone() else {
            return Ok(());
        };
        if self.tagged {
            return Ok(());
        }
        git.tag_completion(&self.id, &self.title).await?;
        self.metrics.git_operations += 1;
        let at = self.read_clock();
        self.append(vec![Event::Tagged {
            at,
            tag: tag_of(&self.id),
        }])
        .await?;
        self.tagged = true;
        Ok(())
    }

    async fn merge(&mut self) -> Result<(), OrchestratorError> {
        let Some(git) = self.inner.git.clone() else {
            return Ok(());
        };
        if self.merged {
            return Ok(());
        }
        let commit = match git.merge_into_base(&self.id, &self.title).await? {
            MergeOutcome::FastForward { to } => to,
            MergeOutcome::Merged { commit } => commit,
            MergeOutcome::Conflicts { paths } => self.resolve_conflicts(&git, paths).await?,
            _ => git.backend().resolve(&Revision::branch(git.base())).await?,
        };
        self.metrics.git_operations += 1;
        let at = self.read_clock();
        self.append(vec![Event::Merged {
            at,
            commit: commit.as_str().to_owned(),
        }])
        .await?;
        self.merged = true;
        Ok(())
    }

    /// Hands the conflicted paths to the conflict-resolution runner, then verifies its work
    /// and makes the merge commit.
    async fn resolve_conflicts(
        &mut self,
        git: &milestone_git::MilestoneGit<Arc<dyn milestone_git::GitBackend>>,
        paths: Vec<String>,
    ) -> Result<milestone_git::CommitId, OrchestratorError> {
        let id = self.id.clone();
        let conflict = |reason: String, paths: &[String]| OrchestratorError::MergeConflict {
            id: id.clone(),
            paths: paths.to_vec(),
            reason,
        };
        let role = Role::ConflictResolution;
        let runner = self
            .inner
            .registry
            .resolve(&role, false)
            .await
            .map_err(|e| conflict(e.to_string(), &paths))?;
        let last_phase = self
            .engine
            .state()
            .phases()
            .last()
            .map(|p| p.id.clone())
            .ok_or_else(|| conflict("the workflow has no phase".into(), &paths))?;
        let work = Work::Item(ItemRef::Phase(last_phase));
        let mut request = AgentRequest::new(self.id.clone(), role, work.clone());
        request.title = self.title.clone();
        request.context = Arc::clone(&self.context);
        request.input = vec![Upstream {
            from: work,
            data: serde_json::json!({ "conflicts": paths }),
        }];
        let now = self.read_clock();
        request.deadline = now.plus_millis(milestone_core::workflow::DEFAULT_TIMEOUT_MS);
        request.idempotency_key = IdempotencyKey::of_text(&format!("merge:{}", self.id));
        let ctx = AgentContext::detached(CancelToken::new());
        self.metrics.runs += 1;
        self.metrics.agent_runs += 1;
        run_with_deadline(&*runner, request, ctx, &*self.inner.clock)
            .await
            .map_err(|e| conflict(format!("the resolver failed: {e}"), &paths))?;
        let repo_paths = paths
            .iter()
            .map(RepoPath::new)
            .collect::<Result<Vec<_>, _>>()?;
        match git.complete_merge(&self.id, &self.title, &repo_paths).await {
            Ok(commit) => Ok(commit),
            Err(
                e @ (milestone_git::GitError::Conflict { .. }
                | milestone_git::GitError::DirtyWorkTree { .. }),
            ) => Err(conflict(
                format!("the resolution did not verify: {e}"),
                &paths,
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The report of the run that just ended; the metrics start again from zero.
    fn finish(&mut self) -> Done {
        let now = self.read_clock();
        self.metrics.finished_at = now;
        let metrics = std::mem::take(&mut self.metrics);
        let outcome = self.outcome.take();
        let state = self.engine.state();
        let plan = match outcome {
            Some(Outcome::Planned) => state.plan().cloned(),
            _ => None,
        };
        Done {
            report: Report {
                milestone: self.id.clone(),
                status: state.status(),
                outcome,
                intervention: state.intervention().cloned(),
                mode: self.mode,
                strategy: self.engine.strategy(),
                progress: ProgressReport::compute(state, now, None),
                phases: PhaseTiming::of(state),
                metrics,
                version: self.version,
            },
            plan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milestone_core::TaskId;

    fn meta(task: &str) -> RunMeta {
        RunMeta {
            work: Work::Item(ItemRef::Task(TaskId::new(task).expect("valid id"))),
            attempt: 1,
            token: CancelToken::default(),
            started_at: Timestamp(0),
            cache: None,
        }
    }

    fn work_of(table: &RunTable, key: u64) -> Option<String> {
        table.get(key).map(|m| m.work.to_string())
    }

    /// Keys are never reused: a slot given back (a run that answered at once, or one taken
    /// out when it ended) serves the next run under a new key, and the old key finds nothing.
    #[test]
    fn a_stale_key_never_reaches_the_run_in_its_slot() {
        let mut table = RunTable::default();
        let a = table.reserve();
        assert_eq!(work_of(&table, a), None, "reserved, not filled");
        table.release(a);
        let b = table.reserve();
        assert_eq!(b as u32, a as u32, "the slot is reused");
        assert_ne!(b, a);
        table.fill(b, meta("b"));
        assert_eq!(work_of(&table, b).as_deref(), Some("task b"));
        assert_eq!(work_of(&table, a), None);
        assert!(table.take(a).is_none());
        // A second run while the first is in flight takes another slot.
        let c = table.reserve();
        assert_ne!(c as u32, b as u32);
        table.fill(c, meta("c"));
        assert_eq!(table.iter().count(), 2);
        assert_eq!(
            table.take(b).map(|m| m.work.to_string()).as_deref(),
            Some("task b")
        );
        assert!(table.take(b).is_none(), "taken once");
        // Releasing a key whose slot holds a run gives nothing back.
        table.release(c);
        let d = table.reserve();
        assert_eq!(d as u32, b as u32);
        assert_eq!(work_of(&table, c).as_deref(), Some("task c"));
        table.release(d);
        table.release(d);
        let (e, f) = (table.reserve(), table.reserve());
        assert_ne!(
            e as u32, f as u32,
            "a slot given back twice is handed out once"
        );
        // A key given back fills nothing, not even the next key's reservation of its slot.
        table.release(e);
        let g = table.reserve();
        assert_eq!(g as u32, e as u32);
        table.fill(e, meta("e"));
        assert_eq!(work_of(&table, e), None);
        assert_eq!(work_of(&table, g), None);
        table.fill(g, meta("g"));
        assert_eq!(work_of(&table, g).as_deref(), Some("task g"));
    }
}
