//! [`Session`]: a milestone loaded and its engine rebuilt, ready to run.

use std::fmt;

use milestone_core::engine::{Input, StartMode, Strategy};
use milestone_core::{Event, MilestoneId, MilestoneState};

use super::phase::Call;
use super::{Orchestrator, OrchestratorError, Report, RunningGuard, run};
use crate::context::CancelToken;

/// A milestone opened by [`Orchestrator::open`]: its log read and its engine rebuilt (the part
/// of a call that costs O(milestone)), claimed by this orchestrator until the session is run or
/// dropped. Hosts use it to look at the state before running, to keep the load out of a
/// measured run, or to fail early when a milestone cannot be loaded.
///
/// ```
/// use milestone_agents::orchestrator::Orchestrator;
/// use milestone_agents::{AgentOutput, FnAgent, Registry};
/// use milestone_core::engine::Role;
/// use milestone_core::{Event, MilestoneId, MilestoneStatus, Timestamp, Workflow};
/// use milestone_state::{InMemory, StateStore};
/// use std::sync::Arc;
///
/// futures::executor::block_on(async {
///     let store = Arc::new(InMemory::new());
///     let id = MilestoneId::new("m")?;
///     store.create(&Event::Created { at: Timestamp(0), id: id.clone(), title: "M".into(),
///         context: String::new(), workflow: Workflow::new(vec![
///             milestone_core::PhaseSpec::new(milestone_core::PhaseId::new("build")?, "Build",
///                 milestone_core::Weight::new(100).ok_or("weight")?)], 1)?, seed: 0 }).await?;
///     store.append(&id, 1, &[Event::ExecutionStarted { at: Timestamp(0) }]).await?;
///     let mut registry = Registry::new();
///     registry.bind_direct_any_phase(FnAgent::sync("build", |_| Ok(AgentOutput::default())));
///     let orchestrator = Orchestrator::builder().registry(registry).store(store).build()?;
///
///     let mut session = orchestrator.open(&id).await?;
///     assert_eq!(session.version(), 2);
///     assert_eq!(session.state().status(), MilestoneStatus::Active);
///     let report = session.execute().await?;
///     assert_eq!(report.status, MilestoneStatus::Completed);
///     assert_eq!(session.state().status(), MilestoneStatus::Completed);
///     assert_eq!(session.version(), report.version);
///     Ok::<(), Box<dyn std::error::Error>>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Session<'o> {
    _guard: RunningGuard<'o>,
    cancel: CancelToken,
    drive: run::Drive<'o>,
    /// A run failed: the engine may be ahead of the store.
    failed: bool,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("milestone", &self.state().id())
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl Orchestrator {
    /// Opens a milestone: reads its log, rebuilds its engine and claims it (another call on it
    /// fails with [`OrchestratorError::AlreadyRunning`] until the session ends). Running the
    /// session is what [`Orchestrator::execute`] does after this.
    ///
    /// # Errors
    /// [`OrchestratorError::NotFound`]; [`OrchestratorError::AlreadyRunning`];
    /// [`OrchestratorError::Engine`] when the log does not fold; store errors.
    pub async fn open(&self, id: &MilestoneId) -> Result<Session<'_>, OrchestratorError> {
        self.open_with(id, Call::default()).await
    }

    /// As [`Orchestrator::open`], with `call`'s restrictions; a phase of the filter the
    /// milestone's workflow does not have is [`OrchestratorError::UnknownPhase`].
    pub(crate) async fn open_with(
        &self,
        id: &MilestoneId,
        call: Call,
    ) -> Result<Session<'_>, OrchestratorError> {
        let (guard, cancel) = self.claim(id)?;
        let log = self.read_log(id).await?;
        if let (Some(phases), Some(Event::Created { workflow, .. })) = (&call.phases, log.first())
            && let Some(unknown) = phases
                .iter()
                .find(|p| workflow.position(p.as_str()).is_none())
        {
            return Err(OrchestratorError::UnknownPhase {
                id: id.clone(),
                phase: unknown.clone(),
            });
        }
        let version = log.len() as u64;
        let drive = run::Drive::open(&self.inner, id, log, version, call).await?;
        Ok(Session {
            _guard: guard,
            cancel,
            drive,
            failed: false,
        })
    }
}

impl Session<'_> {
    /// The milestone's state: as loaded, and after [`execute`](Session::execute) as it
    /// left it.
    pub fn state(&self) -> &MilestoneState {
        self.drive.state()
    }

    /// The version of the log the state is the fold of.
    pub fn version(&self) -> u64 {
        self.drive.version()
    }

    /// The strategy a run starting now goes by.
    pub(crate) fn strategy_now(&self) -> Strategy {
        self.drive.strategy_now()
    }

    /// Runs the milestone as [`Orchestrator::execute`] does. Afterwards
    /// [`state`](Session::state) is the state after the run; running again carries on from
    /// there (a finished milestone runs nothing more). After an error, open the milestone
    /// again: the store holds everything persisted.
    ///
    /// # Errors
    /// As [`Orchestrator::execute`]; [`OrchestratorError::SessionFailed`] once a run of this
    /// session has failed.
    pub async fn execute(&mut self) -> Result<Report, OrchestratorError> {
        self.run(vec![Input::Start(StartMode::Execution)]).await
    }

    /// Feeds `inputs` and runs until the run ends.
    pub(crate) async fn run(&mut self, inputs: Vec<Input>) -> Result<Report, OrchestratorError> {
        self.run_done(inputs).await.map(|done| done.report)
    }

    /// As [`run`](Session::run), with the plan a planning run recorded.
    pub(crate) async fn run_done(
        &mut self,
        inputs: Vec<Input>,
    ) -> Result<run::Done, OrchestratorError> {
        if self.failed {
            return Err(OrchestratorError::SessionFailed(self.state().id().clone()));
        }
        let result = self.drive.run(self.cancel.clone(), inputs).await;
        self.failed = result.is_err();
        result
    }
}
