//! The loop behind every orchestrator call: feed inputs to the engine, persist its events,
//! carry out its commands, wait for runs, reports and timers.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use futures::channel::mpsc;
use futures::future::{BoxFuture, poll_fn};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use milestone_core::complexity::{ComplexityInput, assess, decide};
use milestone_core::engine::{
    Command, Engine, EngineError, IdempotencyKey, Input, Outcome, Role, StartCommand, Step,
    Upstream, Work,
};
use milestone_core::{
    Complexity, Event, ExecutionMode, FailureKind, ItemError, ItemOutput, ItemRef, MilestoneId,
    MilestonePlan, MilestoneStatus, PhaseId, ProgressReport, Timestamp, Workflow,
};
use milestone_git::{MergeOutcome, RepoPath, Revision};

use super::builder::ModePolicy;
use super::gate::GateVerdict;
use super::metrics::{ExecutionMetrics, PhaseTiming, Report};
use super::{Inner, OrchestratorError, tag_of};
use crate::context::{AgentContext, CancelToken, Report as RunReport, ReportSink};
use crate::output::{AgentError, result_input};
use crate::registry::{RegistryError, RunnerSource};
use crate::request::AgentRequest;
use crate::runner::{AgentRunner, run_with_deadline};

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

/// A run that ended.
struct RunDone {
    input: Input,
    quality: BTreeMap<String, f64>,
    via: Option<Via>,
    started_at: Timestamp,
    cache: Option<milestone_core::engine::CacheKey>,
}

/// A run to launch: the loop owns the `FuturesUnordered`.
struct Launch {
    start: Box<StartCommand>,
    request: AgentRequest,
    ctx: AgentContext,
    at: Timestamp,
}

enum Woke {
    Report(Work, u32, RunReport),
    Done(RunDone),
    Tick,
    Cancel,
}

type Reports = mpsc::UnboundedSender<(Work, u32, RunReport)>;

pub(crate) struct Drive<'a> {
    inner: &'a Inner,
    id: MilestoneId,
    title: String,
    engine: Engine,
    version: u64,
    mode: ExecutionMode,
    metrics: ExecutionMetrics,
    tokens: HashMap<(Work, u32), CancelToken>,
    committed: HashSet<PhaseId>,
    tagged: bool,
    merged: bool,
    pending_cache: HashMap<ItemRef, (milestone_core::engine::CacheKey, ItemOutput)>,
    gated: HashMap<ItemRef, ItemOutput>,
    outcome: Option<Outcome>,
    inputs: VecDeque<Input>,
    sleep: Option<BoxFuture<'static, ()>>,
    launches: Vec<Launch>,
    tx: Reports,
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

/// The runner for a role under `mode`; aggregation falls back to the built-in one.
async fn resolve(
    inner: &Inner,
    role: &Role,
    degraded: bool,
    mode: ExecutionMode,
    task_phase: Option<&PhaseId>,
) -> Result<(Arc<dyn AgentRunner>, Via), RegistryError> {
    let prefer_direct = !degraded
        && match mode {
            ExecutionMode::Direct => matches!(role, Role::Phase(_) | Role::Task),
            ExecutionMode::Hybrid => matches!(role, Role::Phase(p) if Some(p) != task_phase),
            _ => false,
        };
    if prefer_direct && let Some(d) = inner.registry.direct(role) {
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

async fn run_one(
    inner: &Inner,
    mode: ExecutionMode,
    task_phase: Option<PhaseId>,
    launch: Launch,
) -> RunDone {
    let Launch {
        start,
        request,
        ctx,
        at,
    } = launch;
    let StartCommand {
        work,
        role,
        attempt,
        degraded,
        reusable,
        cache_key,
        ..
    } = *start;
    let cache = reusable.then_some(cache_key);
    match resolve(inner, &role, degraded, mode, task_phase.as_ref()).await {
        Err(e) => RunDone {
            input: Input::Failed {
                work,
                attempt,
                error: ItemError::from(AgentError::unavailable(e.to_string())),
            },
            quality: BTreeMap::new(),
            via: None,
            started_at: at,
            cache,
        },
        Ok((runner, via)) => {
            let result = run_with_deadline(&*runner, request, ctx, &*inner.clock).await;
            let (input, quality) = result_input(work, attempt, result);
            RunDone {
                input,
                quality,
                via: Some(via),
                started_at: at,
                cache,
            }
        }
    }
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
    ) -> Result<Done, OrchestratorError> {
        let started_at = inner.clock.now();
        let mut config = inner.config.clone();
        let mode = choose_mode(inner, &log, &mut config).await;
        let engine = Engine::resume(&log, config)?;
        drop(log);
        let task_phase = engine.state().workflow().task_phase().clone();
        let state = engine.state();
        let (tx, mut rx) = mpsc::unbounded();
        let mut drive = Drive {
            inner,
            id: id.clone(),
            title: state.title().to_owned(),
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
            metrics: ExecutionMetrics {
                started_at,
                ..ExecutionMetrics::default()
            },
            tokens: HashMap::new(),
            pending_cache: HashMap::new(),
            gated: HashMap::new(),
            outcome: None,
            inputs: initial.into(),
            sleep: None,
            launches: Vec::new(),
            tx,
            first: true,
        };
        let mut runs = FuturesUnordered::new();
        let mut cancelled = cancel.cancelled();
        let mut cancel_seen = false;
        let mut acc = Step::default();
        let mut scratch = Step::default();
        loop {
            drive.read_clock();
            while let Some(input) = drive.inputs.pop_front() {
                drive.feed(input, &mut scratch, &mut acc)?;
            }
            if !acc.events.is_empty() || !acc.commands.is_empty() {
                drive.perform(&mut acc).await?;
                for launch in drive.launches.drain(..) {
                    runs.push(run_one(inner, mode, Some(task_phase.clone()), launch));
                }
                drive.metrics.max_parallel = drive.metrics.max_parallel.max(runs.len() as u32);
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
                if let Poll::Ready(Some((w, a, r))) = rx.poll_next_unpin(cx) {
                    return Poll::Ready(Woke::Report(w, a, r));
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
                Woke::Report(w, a, r) => drive.inputs.push_back(r.into_input(w, a)),
                Woke::Done(d) => drive.finish_run(d),
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
                if let Ok((w, a, r)) = rx.try_recv() {
                    drive.inputs.push_back(r.into_input(w, a));
                    continue;
                }
                match runs.next().now_or_never() {
                    Some(Some(d)) => drive.finish_run(d),
                    _ => break,
                }
            }
        }
        // Runs still in flight (cancelled ones, late ones) are told to stop and given a short
        // grace period to return, as the runner contract asks; then they are dropped.
        for token in drive.tokens.values() {
            token.cancel();
        }
        if !runs.is_empty() {
            let drain = runs.for_each(|_| futures::future::ready(()));
            let grace = inner.clock.sleep(CANCEL_GRACE_MS);
            futures::future::select(Box::pin(drain), grace).await;
        }
        Ok(drive.finish())
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
    fn feed(
        &mut self,
        input: Input,
        scratch: &mut Step,
        acc: &mut Step,
    ) -> Result<(), OrchestratorError> {
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
        match self.engine.handle_into(input, now, scratch) {
            Ok(()) => {}
            Err(EngineError::NotRunning { .. } | EngineError::UnknownWork { .. })
                if about_a_run => {}
            Err(EngineError::Status { .. }) if lenient => {}
            Err(EngineError::Internal(e)) => {
                // The events already applied are in `scratch`: persist nothing more; the next
                // call rebuilds the engine from the stored log.
                return Err(OrchestratorError::Engine(EngineError::Internal(e)));
            }
            Err(e) => return Err(e.into()),
        }
        acc.events.append(&mut scratch.events);
        acc.commands.append(&mut scratch.commands);
        Ok(())
    }

    async fn append(&mut self, events: &[Event]) -> Result<(), OrchestratorError> {
        if events.is_empty() {
            return Ok(());
        }
        let v = self
            .inner
            .store
            .append(&self.id, self.version, events)
            .await?;
        self.inner.hub.publish(&self.id, self.version + 1, events);
        self.version = v;
        self.metrics.events_appended += events.len() as u64;
        self.metrics.appends += 1;
        Ok(())
    }

    /// Persists the batch's events, then carries out its commands.
    async fn perform(&mut self, acc: &mut Step) -> Result<(), OrchestratorError> {
        let events = std::mem::take(&mut acc.events);
        let mut commands = std::mem::take(&mut acc.commands);
        // A phase commit asked for in the step that ends the milestone is made (and recorded)
        // before the final status is appended: a final milestone takes no more phase records.
        let split = if commands
            .iter()
            .any(|c| matches!(c, Command::CommitPhase { .. }))
        {
            events
                .iter()
                .position(|e| matches!(e, Event::StatusChanged { status, .. } if status.is_final()))
        } else {
            None
        };
        match split {
            Some(k) => {
                self.append(&events[..k]).await?;
                for c in &commands {
                    if let Command::CommitPhase { phase } = c {
                        self.commit(phase).await?;
                    }
                }
                commands.retain(|c| !matches!(c, Command::CommitPhase { .. }));
                self.append(&events[k..]).await?;
            }
            None => self.append(&events).await?,
        }
        self.after_append(&events);
        acc.events = events;
        acc.events.clear();
        for command in commands.drain(..) {
            self.carry_out(command).await?;
        }
        acc.commands = commands;
        Ok(())
    }

    fn after_append(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::ItemCompleted { item, .. } if !self.pending_cache.is_empty() => {
                    if let (Some((key, output)), Some(cache)) =
                        (self.pending_cache.remove(item), &self.inner.cache)
                    {
                        cache.put(key, output);
                    }
                }
                Event::ItemFailed { error, .. } => {
                    self.metrics.failures += 1;
                    if error.kind == FailureKind::Timeout {
                        self.metrics.timeouts += 1;
                    }
                }
                _ => {}
            }
        }
    }

    async fn carry_out(&mut self, command: Command) -> Result<(), OrchestratorError> {
        match command {
            Command::Start(start) => self.launch(start),
            Command::Cancel { work, attempt } => {
                if let Some(t) = self.tokens.remove(&(work, attempt)) {
                    t.cancel();
                }
            }
            Command::Checkpoint { .. } if self.inner.snapshots => {
                self.inner.store.snapshot(&self.id).await?;
            }
            Command::CommitPhase { phase } => self.commit(&phase).await?,
            Command::Tag => self.tag().await?,
            Command::Merge => self.merge().await?,
            Command::WakeAt(t) => self.sleep = Some(self.inner.clock.sleep_until(t)),
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
            Command::AwaitIntervention { .. } => {}
            Command::Finished(outcome) => self.outcome = Some(outcome),
            _ => {}
        }
        Ok(())
    }

    fn launch(&mut self, start: Box<StartCommand>) {
        if start.reusable
            && let Some(cache) = &self.inner.cache
            && let Some(output) = cache.get(start.cache_key)
        {
            self.metrics.cache_hits += 1;
            self.inputs.push_back(Input::Finished {
                work: start.work,
                attempt: start.attempt,
                output,
            });
            return;
        }
        let token = CancelToken::new();
        self.tokens
            .insert((start.work.clone(), start.attempt), token.clone());
        let request = AgentRequest::from_start(&start, self.engine.state());
        let sink: Arc<dyn ReportSink> = {
            let tx = self.tx.clone();
            let work = start.work.clone();
            let attempt = start.attempt;
            Arc::new(move |r: RunReport| {
                // The loop holds the receiver for as long as anyone can report.
                let _ = tx.unbounded_send((work.clone(), attempt, r));
            })
        };
        let at = self.now();
        self.launches.push(Launch {
            start,
            request,
            ctx: AgentContext::with_sink(sink, token),
            at,
        });
    }

    fn finish_run(&mut self, done: RunDone) {
        let now = self.now();
        self.metrics.busy_ms += now.millis_since(done.started_at);
        if let Input::Finished { work, attempt, .. } | Input::Failed { work, attempt, .. } =
            &done.input
        {
            self.tokens.remove(&(work.clone(), *attempt));
        }
        if let Some(via) = done.via {
            self.metrics.runs += 1;
            match via {
                Via::Agent => self.metrics.agent_runs += 1,
                Via::Direct => self.metrics.direct_runs += 1,
                Via::Fallback => self.metrics.fallback_runs += 1,
                Via::Degraded => self.metrics.degraded_runs += 1,
            }
        }
        for q in done.quality.values() {
            self.metrics.quality_sum += q;
            self.metrics.quality_count += 1;
        }
        if let Input::Finished {
            work: Work::Item(item),
            output,
            ..
        } = &done.input
        {
            if let (Some(key), Some(_)) = (done.cache, &self.inner.cache) {
                self.pending_cache
                    .insert(item.clone(), (key, output.clone()));
            }
            if let ItemRef::Phase(p) = item
                && self.inner.config.host_gates.contains(p)
            {
                self.gated.insert(item.clone(), output.clone());
            }
        }
        self.inputs.push_back(done.input);
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
        self.append(&[Event::PhaseCommitted {
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
        self.append(&[Event::Tagged {
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
        self.append(&[Event::Merged {
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
        request.context = self.engine.state().context().to_owned();
        request.input = vec![Upstream {
            from: work,
            data: serde_json::json!({ "conflicts": paths }),
        }];
        let now = self.read_clock();
        request.deadline = now.plus_millis(milestone_core::workflow::DEFAULT_TIMEOUT_MS);
        request.idempotency_key = IdempotencyKey(conflict_key(&self.id));
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

    fn finish(mut self) -> Done {
        let now = self.read_clock();
        self.metrics.finished_at = now;
        let state = self.engine.state();
        let plan = match self.outcome {
            Some(Outcome::Planned) => state.plan().cloned(),
            _ => None,
        };
        Done {
            report: Report {
                milestone: self.id,
                status: state.status(),
                outcome: self.outcome,
                intervention: state.intervention().cloned(),
                mode: self.mode,
                strategy: self.engine.strategy(),
                progress: ProgressReport::compute(state, now, None),
                phases: PhaseTiming::of(state),
                metrics: self.metrics,
                version: self.version,
            },
            plan,
        }
    }
}

/// A stable key for the merge of one milestone (FNV-1a of its id).
fn conflict_key(id: &MilestoneId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"merge:".iter().chain(id.as_str().as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
