//! The orchestrator: the async loop that drives the sans-I/O engine of `milestone-core` with
//! runners, a state store and git.
//!
//! The engine decides; the orchestrator performs. For every [`Step`](milestone_core::engine::Step)
//! the engine returns, the orchestrator first **appends its events to the store** (a
//! compare-and-swap on the log version: the store is the source of truth, and a second writer is
//! refused rather than silently overwritten), publishes them to listeners, and only then
//! **carries out its commands**: starts runs (resolved through the [`Registry`], answered from
//! the [`ResultCache`] when the result is reusable), cancels runs, snapshots the store at
//! checkpoints, commits phases, tags and merges through one git coordinator
//! ([`MilestoneGit`], whose lock serialises every git operation),
//! sleeps until the engine's next timer, asks the host's [`QualityGate`], and pauses for an
//! intervention. Progress reports, hand-offs, results, failures and timeouts flow back into the
//! engine as inputs. Inputs that arrive together are handled together and their events
//! appended in one call, so a durable store commits them with one sync (group commit).
//!
//! **Executor-agnostic.** Runs are futures in one `FuturesUnordered` polled by the call's own
//! task; sleeps come from the [`Clock`]; nothing spawns a thread per task. The same code runs
//! under `futures::executor::block_on`, a `LocalPool`, a `ThreadPool`, tokio or async-std.
//!
//! **Crash-safe.** Every call rebuilds the engine from the stored log
//! ([`Engine::resume`](milestone_core::engine::Engine::resume)): completed work is never run
//! again, work in flight at the crash starts again with the same idempotency key, and phase
//! commits are found by their trailers instead of being made twice.
//!
//! ```
//! use std::sync::Arc;
//! use milestone_agents::orchestrator::{Orchestrator, PlanSpec};
//! use milestone_agents::{AgentOutput, FnAgent, Registry};
//! use milestone_core::engine::Role;
//! use milestone_core::{Artifact, ArtifactBody, MilestoneId, MilestoneStatus, Workflow};
//! use milestone_state::InMemory;
//!
//! let mut registry = Registry::new();
//! // Planning: a runner per analysis (here one closure for all four); aggregation is built in.
//! let analysis = |req: milestone_agents::AgentRequest| {
//!     let data = match milestone_agents::role_name(&req.role) {
//!         "scope" => serde_json::json!({"components": ["auth"], "file_count": 3}),
//!         "estimation" => serde_json::json!({"estimates": {"phases": [
//!             {"phase": "design", "effort_ms": 10}, {"phase": "spec", "effort_ms": 10},
//!             {"phase": "task", "effort_ms": 10}, {"phase": "execute", "effort_ms": 10}]}}),
//!         "risk" => serde_json::json!({"risks": []}),
//!         _ => serde_json::json!({"keep": [{"description": "api", "phase": "design"}],
//!             "improve": [{"description": "docs", "phase": "spec"}],
//!             "originate": [{"description": "tasks", "phase": "task"},
//!                           {"description": "code", "phase": "execute"}]}),
//!     };
//!     Ok(AgentOutput::new("analysed").with_data(data))
//! };
//! for role in [Role::Scope, Role::Estimation, Role::Risk, Role::KiroStrategy] {
//!     registry.bind_direct(role, FnAgent::sync("analyst", analysis));
//! }
//! // Execution: every phase directly, naming the expected outputs its quality gate checks.
//! registry.bind_direct_any_phase(FnAgent::sync("direct", |req| {
//!     let phase = req.work.to_string().replace("phase ", "");
//!     let expected = Workflow::kiro().phase(&phase).map(|p| p.expected_outputs.clone());
//!     let mut out = AgentOutput::new("done");
//!     for name in expected.unwrap_or_default() {
//!         out = out.with_artifact(Artifact { name, kind: "doc".into(),
//!             body: ArtifactBody::Inline(String::new()) });
//!     }
//!     Ok(out)
//! }));
//!
//! let orchestrator = Orchestrator::builder()
//!     .registry(registry)
//!     .store(Arc::new(InMemory::new()))
//!     .build()?;
//! let id = MilestoneId::new("login")?;
//! let report = futures::executor::block_on(async {
//!     orchestrator.plan(PlanSpec::new(id.clone(), "Add login")).await?;
//!     orchestrator.transition(&id).await?;
//!     orchestrator.execute(&id).await
//! })?;
//! assert_eq!(report.status, MilestoneStatus::Completed);
//! assert_eq!(report.progress.overall, milestone_core::Progress::COMPLETE);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod builder;
mod cache;
mod events;
mod gate;
mod metrics;
mod phase;
mod run;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use milestone_core::engine::{EngineConfig, EngineError, Input, Outcome, StartMode};
use milestone_core::{
    Decision, Event, MilestoneId, MilestonePlan, MilestoneState, Mode, PhaseId, Problems,
    ProgressReport, Workflow,
};
use milestone_git::{GitBackend, GitError, MilestoneGit, conventions};
use milestone_state::{StateStore, StoreError};

pub use aggregate::BuiltinAggregator;
pub use builder::{ModePolicy, OrchestratorBuilder};
pub use cache::{InMemoryCache, ResultCache};
pub use events::{EventListener, Notice, Notices};
pub use gate::{GateVerdict, QualityGate};
pub use metrics::{ExecutionMetrics, PhaseTiming, Report};
pub use session::Session;

use crate::clock::Clock;
use crate::context::CancelToken;
use crate::registry::Registry;
use crate::runner::AgentRunner;

/// Why an orchestrator call failed. A refused call changes nothing it has not persisted: the
/// store always holds a log the next call can resume from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// The builder was given an unusable configuration.
    #[error("invalid orchestrator configuration: {0}")]
    Config(String),
    /// No such milestone in the store.
    #[error("milestone {0} not found")]
    NotFound(MilestoneId),
    /// The milestone is already being driven by a call of this orchestrator.
    #[error("milestone {0} is already running in this orchestrator")]
    AlreadyRunning(MilestoneId),
    /// A [`Session`] whose run failed is not run again: what it holds may be ahead of the
    /// store. Open the milestone again.
    #[error("the session of milestone {0} failed earlier; open the milestone again")]
    SessionFailed(MilestoneId),
    /// The plan cannot start execution; every problem is listed and nothing was changed.
    #[error("milestone {id} cannot start execution: {problems}")]
    Plan {
        /// The milestone.
        id: MilestoneId,
        /// Every problem found.
        problems: Problems,
    },
    /// Planning ended without a plan.
    #[error("planning of milestone {id} failed: {reason}")]
    PlanningFailed {
        /// The milestone.
        id: MilestoneId,
        /// Why.
        reason: String,
    },
    /// A merge left conflicts that could not be resolved (no conflict-resolution runner, the
    /// runner failed, or its work did not verify). The merge is left in progress.
    #[error("merging milestone {id} left conflicts in {paths:?}: {reason}")]
    MergeConflict {
        /// The milestone.
        id: MilestoneId,
        /// The conflicted paths.
        paths: Vec<String>,
        /// Why they are still conflicted.
        reason: String,
    },
    /// [`Orchestrator::execute_phase`] named a phase the milestone's workflow does not have.
    #[error("milestone {id} has no phase {phase}")]
    UnknownPhase {
        /// The milestone.
        id: MilestoneId,
        /// The phase named.
        phase: PhaseId,
    },
    /// [`Orchestrator::execute_phase`] named a phase whose dependencies are not done; nothing
    /// was run.
    #[error("phase {phase} of milestone {id} cannot run yet: it waits on {}", names(.waiting_on))]
    PhaseNotReady {
        /// The milestone.
        id: MilestoneId,
        /// The phase named.
        phase: PhaseId,
        /// Every phase it waits on, in workflow order.
        waiting_on: Vec<PhaseId>,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[source] StoreError),
    /// Git failed.
    #[error("git: {0}")]
    Git(#[from] GitError),
    /// The engine refused an input (a log that does not fold, a milestone in the wrong mode or
    /// status for the call).
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
}

impl From<StoreError> for OrchestratorError {
    fn from(e: StoreError) -> Self {
        OrchestratorError::Store(e)
    }
}

/// What [`Orchestrator::plan`] needs to create a milestone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanSpec {
    /// The new milestone's id.
    pub id: MilestoneId,
    /// Its title.
    pub title: String,
    /// Free context handed to every agent.
    pub context: String,
    /// The workflow; `None` takes the orchestrator's.
    pub workflow: Option<Workflow>,
    /// The seed of the retry jitter (default 0).
    pub seed: u64,
}

impl PlanSpec {
    /// A milestone with this id and title, no context, the orchestrator's workflow, seed 0.
    pub fn new(id: MilestoneId, title: impl Into<String>) -> PlanSpec {
        PlanSpec {
            id,
            title: title.into(),
            context: String::new(),
            workflow: None,
            seed: 0,
        }
    }

    /// Sets the context.
    pub fn context(mut self, context: impl Into<String>) -> PlanSpec {
        self.context = context.into();
        self
    }

    /// Sets the workflow.
    pub fn workflow(mut self, workflow: Workflow) -> PlanSpec {
        self.workflow = Some(workflow);
        self
    }

    /// Sets the jitter seed.
    pub fn seed(mut self, seed: u64) -> PlanSpec {
        self.seed = seed;
        self
    }
}

pub(crate) struct Inner {
    pub(crate) workflow: Workflow,
    pub(crate) registry: Registry,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) git: Option<Arc<MilestoneGit<Arc<dyn GitBackend>>>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hub: events::Hub,
    pub(crate) config: EngineConfig,
    pub(crate) cache: Option<Arc<dyn ResultCache>>,
    pub(crate) gate: Option<Arc<dyn QualityGate>>,
    pub(crate) mode: ModePolicy,
    pub(crate) snapshots: bool,
    pub(crate) aggregator: Arc<dyn AgentRunner>,
    /// Milestones being driven, with the token that cancels the call.
    pub(crate) running: Mutex<HashMap<MilestoneId, CancelToken>>,
}

/// Drives milestones: plan, transition, execute (the whole milestone, or one phase at a time
/// with [`Orchestrator::execute_phase`]), resume, answer, cancel. Cheap to clone (all
/// clones share one state); `Send + Sync`, so `cancel` and `progress` may be called from
/// another task while `execute` runs. See the module docs.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("registry", &self.inner.registry)
            .field("store", &self.inner.store)
            .field("git", &self.inner.git.as_ref().map(|g| g.base()))
            .field("config", &self.inner.config)
            .field("mode", &self.inner.mode)
            .field("hub", &self.inner.hub)
            .finish_non_exhaustive()
    }
}

/// Removes a milestone from the running map when a call ends, however it ends.
struct RunningGuard<'a> {
    inner: &'a Inner,
    id: MilestoneId,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Orchestrator {
    /// A builder.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// A stream of every event appended from now on, across milestones.
    pub fn subscribe(&self) -> Notices {
        self.inner.hub.subscribe()
    }

    fn claim(
        &self,
        id: &MilestoneId,
    ) -> Result<(RunningGuard<'_>, CancelToken), OrchestratorError> {
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(id) {
            return Err(OrchestratorError::AlreadyRunning(id.clone()));
        }
        let token = CancelToken::new();
        running.insert(id.clone(), token.clone());
        Ok((
            RunningGuard {
                inner: &self.inner,
                id: id.clone(),
            },
            token,
        ))
    }

    async fn read_log(&self, id: &MilestoneId) -> Result<Vec<Event>, OrchestratorError> {
        self.inner
            .store
            .read_events(id, 0)
            .await
            .map_err(|e| not_found(e, id))
    }

    /// Creates the milestone (`created`), runs the four planning analyses concurrently, then
    /// the aggregation runner — the built-in deterministic
    /// [`plan::aggregate`](milestone_core::plan::aggregate) when none is bound — and returns
    /// the recorded plan.
    ///
    /// # Errors
    /// [`OrchestratorError::Store`] (e.g. the id exists already);
    /// [`OrchestratorError::PlanningFailed`] when an analysis exhausted its retries or the
    /// aggregation's output is not a plan (the milestone is then failed in the store).
    pub async fn plan(&self, spec: PlanSpec) -> Result<MilestonePlan, OrchestratorError> {
        let (_guard, cancel) = self.claim(&spec.id)?;
        let created = Event::Created {
            at: self.inner.clock.now(),
            id: spec.id.clone(),
            title: spec.title,
            context: spec.context,
            workflow: spec.workflow.unwrap_or_else(|| self.inner.workflow.clone()),
            seed: spec.seed,
        };
        let version = self.inner.store.create(&created).await?;
        self.inner
            .hub
            .publish(&spec.id, 1, std::slice::from_ref(&created));
        let done = run::Drive::start(
            &self.inner,
            &spec.id,
            vec![created],
            version,
            cancel,
            vec![Input::Start(StartMode::Planning)],
            phase::Call::default(),
        )
        .await?;
        planned(&spec.id, done)
    }

    /// Plans a milestone created earlier whose planning did not finish (after a crash, say):
    /// the analyses run again.
    ///
    /// # Errors
    /// As [`Orchestrator::plan`]; [`OrchestratorError::NotFound`].
    pub async fn replan(&self, id: &MilestoneId) -> Result<MilestonePlan, OrchestratorError> {
        let mut session = self.open(id).await?;
        let done = session
            .run_done(vec![Input::Start(StartMode::Planning)])
            .await?;
        planned(id, done)
    }

    /// Moves a planned milestone into execution: validates the plan and, on problems, returns
    /// them all and changes nothing; otherwise appends `execution-started` (and the planned
    /// tasks) and, when git is configured, creates the milestone branch and records
    /// `branch-created`. Returns the state after the transition.
    ///
    /// # Errors
    /// [`OrchestratorError::Plan`] listing every problem; [`OrchestratorError::NotFound`];
    /// store and git errors.
    pub async fn transition(&self, id: &MilestoneId) -> Result<MilestoneState, OrchestratorError> {
        let (_guard, _cancel) = self.claim(id)?;
        let loaded = self
            .inner
            .store
            .load(id)
            .await
            .map_err(|e| not_found(e, id))?;
        let at = self.inner.clock.now().max(loaded.state.updated_at());
        let events =
            milestone_core::plan::start_execution(&loaded.state, at).map_err(|problems| {
                OrchestratorError::Plan {
                    id: id.clone(),
                    problems,
                }
            })?;
        let mut version = self.inner.store.append(id, loaded.version, &events).await?;
        self.inner.hub.publish(id, loaded.version + 1, &events);
        let mut state = loaded.state;
        for e in &events {
            state.apply(e).map_err(EngineError::Log)?;
        }
        if let Some(git) = &self.inner.git {
            let branch = git.start(id).await?;
            let event = Event::BranchCreated {
                at,
                branch: branch.as_str().to_owned(),
                base: git.base().as_str().to_owned(),
            };
            version = self
                .inner
                .store
                .append(id, version, std::slice::from_ref(&event))
                .await?;
            self.inner
                .hub
                .publish(id, version, std::slice::from_ref(&event));
            state.apply(&event).map_err(EngineError::Log)?;
        }
        Ok(state)
    }

    /// Runs the milestone until it completes, fails, is cancelled or awaits an intervention,
    /// and reports. The engine is rebuilt from the stored log, so this is also how an
    /// interrupted execution carries on (see [`Orchestrator::resume`]).
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`]; [`OrchestratorError::Engine`] when the milestone is not
    /// in execution mode or not active; store and git errors (the log stays resumable).
    pub async fn execute(&self, id: &MilestoneId) -> Result<Report, OrchestratorError> {
        self.drive(id, vec![Input::Start(StartMode::Execution)])
            .await
    }

    /// Carries on after a crash or a dropped call: rebuilds the engine from the stored log;
    /// completed work is not run again; work in flight starts again with the same idempotency
    /// key; phase commits already made are found by their trailers, not made twice. A
    /// milestone still in planning mode is planned again (and the report's outcome is
    /// `Planned`).
    ///
    /// # Errors
    /// As [`Orchestrator::execute`].
    pub async fn resume(&self, id: &MilestoneId) -> Result<Report, OrchestratorError> {
        let mut session = self.open(id).await?;
        let start = if session.state().mode() == Mode::Planning {
            StartMode::Planning
        } else {
            StartMode::Execution
        };
        session.run(vec![Input::Start(start)]).await
    }

    /// Answers the open intervention and carries on as [`Orchestrator::execute`] does.
    ///
    /// # Errors
    /// [`OrchestratorError::Engine`] when the answer does not fit the open intervention (or
    /// there is none); as [`Orchestrator::execute`].
    pub async fn answer(
        &self,
        id: &MilestoneId,
        decision: Decision,
    ) -> Result<Report, OrchestratorError> {
        self.drive(
            id,
            vec![Input::Answer(decision), Input::Start(StartMode::Execution)],
        )
        .await
    }

    /// Cancels the milestone. While a call of this orchestrator drives it, that call cancels
    /// its runs, records the cancellation and returns a report with outcome `Cancelled`;
    /// otherwise the cancellation is recorded here.
    ///
    /// # Errors
    /// [`OrchestratorError::Engine`] when the milestone is already final;
    /// [`OrchestratorError::NotFound`]; store errors.
    pub async fn cancel(&self, id: &MilestoneId) -> Result<(), OrchestratorError> {
        let token = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        if let Some(token) = token {
            token.cancel();
            return Ok(());
        }
        self.drive(id, vec![Input::Cancel]).await.map(|_| ())
    }

    /// The milestone's progress now, from the store (so it is current while another task
    /// executes the milestone).
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`]; store errors.
    pub async fn progress(&self, id: &MilestoneId) -> Result<ProgressReport, OrchestratorError> {
        let loaded = self
            .inner
            .store
            .load(id)
            .await
            .map_err(|e| not_found(e, id))?;
        let now = self.inner.clock.now().max(loaded.state.updated_at());
        Ok(ProgressReport::compute(&loaded.state, now, None))
    }

    async fn drive(
        &self,
        id: &MilestoneId,
        inputs: Vec<Input>,
    ) -> Result<Report, OrchestratorError> {
        self.open(id).await?.run(inputs).await
    }
}

/// Phase ids as `a, b, c`.
fn names(ids: &[PhaseId]) -> String {
    ids.iter()
        .map(PhaseId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn not_found(e: StoreError, id: &MilestoneId) -> OrchestratorError {
    match e {
        StoreError::NotFound { .. } => OrchestratorError::NotFound(id.clone()),
        other => OrchestratorError::Store(other),
    }
}

fn planned(id: &MilestoneId, done: run::Done) -> Result<MilestonePlan, OrchestratorError> {
    let report = done.report;
    match (&report.outcome, done.plan) {
        (Some(Outcome::Planned), Some(plan)) => Ok(plan),
        (outcome, _) => Err(OrchestratorError::PlanningFailed {
            id: id.clone(),
            reason: match outcome {
                Some(Outcome::Failed { work, error, .. }) => format!("{work}: {}", error.message),
                Some(Outcome::Cancelled) => "cancelled".to_owned(),
                _ => format!("the milestone is {}", report.status),
            },
        }),
    }
}

/// The tag a completed milestone gets.
pub(crate) fn tag_of(id: &MilestoneId) -> String {
    conventions::tag_name(id).as_str().to_owned()
}
