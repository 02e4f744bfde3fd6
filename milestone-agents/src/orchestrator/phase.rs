//! Running one phase at a time ([`Orchestrator::execute_phase`]): a host runs design directly,
//! say, looks at the result, and runs execute later with agents.
//!
//! The call is an ordinary execution call whose engine has a
//! [`phase_filter`](milestone_core::engine::EngineConfig::phase_filter) of one phase and,
//! optionally, an execution mode of its own. Everything else is as in
//! [`Orchestrator::execute`]: the engine is rebuilt from the stored log (so a crashed or
//! dropped call is carried on by calling again), failures walk the recovery chain, the phase's
//! commit is made when it completes, and the milestone's tag only when the milestone completes.

use milestone_core::engine::{Input, Outcome, StartMode, Strategy};
use milestone_core::{Decision, ExecutionMode, MilestoneId, MilestoneState, Mode, PhaseId};

use super::{Orchestrator, OrchestratorError, Report};

/// What one call restricts or overrides (the default: nothing).
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    /// The execution mode, instead of the builder's [`ModePolicy`](super::ModePolicy).
    pub(crate) mode: Option<ExecutionMode>,
    /// The phases that may start, instead of the configuration's filter.
    pub(crate) phases: Option<Vec<PhaseId>>,
}

impl Call {
    /// `phase` only, with `mode` when given.
    fn one(phase: &PhaseId, mode: Option<ExecutionMode>) -> Call {
        Call {
            mode,
            phases: Some(vec![phase.clone()]),
        }
    }
}

impl Orchestrator {
    /// Runs one phase of the milestone — and, for the task phase (`execute` in KIRO), its
    /// tasks — then returns. `mode` overrides the builder's [`ModePolicy`](super::ModePolicy)
    /// for this call only: [`ExecutionMode::Direct`] runs the phase's direct runner in-process,
    /// [`ExecutionMode::Agents`] the registry's agent, so a host can run design directly and
    /// execute with agents. `None` keeps the builder's policy.
    ///
    /// - **Refused up front**, changing nothing, when the workflow has no such phase
    ///   ([`OrchestratorError::UnknownPhase`]) or when the phase's dependencies are not done
    ///   ([`OrchestratorError::PhaseNotReady`], naming every one of them). Under the
    ///   sequential strategy (the one recorded at execution start, else the configured one)
    ///   every earlier phase is a dependency.
    /// - **A phase already done** (completed, or skipped by a degraded run) runs nothing: the
    ///   report has outcome [`Outcome::PhasesDone`] and no runs, so a host may repeat a call it
    ///   is unsure went through.
    /// - **Otherwise** the phase runs as in [`Orchestrator::execute`]: failures walk the
    ///   recovery chain, its commit is made when it completes, and the report's outcome is
    ///   [`Outcome::PhasesDone`] with the milestone still active, or [`Outcome::Completed`]
    ///   (and the tag) when it was the last phase left, or `Failed` / an open intervention /
    ///   `Cancelled` as for `execute`.
    /// - **After a crash** or a dropped call, calling again carries on: completed work is not
    ///   run again. Phases outside this call that a crash left in progress are left as they
    ///   are; the next call that includes them (or [`Orchestrator::execute`]) restarts them.
    ///   [`Orchestrator::resume`] and [`Orchestrator::answer`] carry on the *whole* milestone,
    ///   as `execute` does; [`Orchestrator::answer_phase`] answers an intervention and keeps to
    ///   one phase.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use milestone_agents::orchestrator::{ModePolicy, Orchestrator};
    /// use milestone_agents::{AgentOutput, FnAgent, Registry};
    /// use milestone_core::engine::Outcome;
    /// use milestone_core::{Artifact, ArtifactBody, Event, ExecutionMode, MilestoneId,
    ///     MilestoneStatus, PhaseId, Timestamp, Workflow};
    /// use milestone_state::{InMemory, StateStore};
    ///
    /// // A runner naming the expected outputs of whichever phase it is given.
    /// let runner = |name: &'static str| FnAgent::sync(name, |req| {
    ///     let phase = req.work.to_string().replace("phase ", "");
    ///     let mut out = AgentOutput::new("done");
    ///     let expected = Workflow::kiro().phase(&phase).map(|p| p.expected_outputs.clone());
    ///     for name in expected.unwrap_or_default() {
    ///         out = out.with_artifact(Artifact { name, kind: "doc".into(),
    ///             body: ArtifactBody::Inline(String::new()) });
    ///     }
    ///     Ok(out)
    /// });
    /// let mut registry = Registry::new();
    /// registry.bind_direct_any_phase(runner("in-process"));
    /// registry.bind_any_phase(runner("agent"));
    /// let store = Arc::new(InMemory::new());
    /// let orchestrator = Orchestrator::builder()
    ///     .registry(registry)
    ///     .store(store.clone())
    ///     .mode(ModePolicy::Fixed(ExecutionMode::Agents))
    ///     .build()?;
    /// let id = MilestoneId::new("login")?;
    /// let (design, execute) = (PhaseId::new("design")?, PhaseId::new("execute")?);
    /// futures::executor::block_on(async {
    ///     // A milestone in execution mode (normally: `plan`, then `transition`).
    ///     store.create(&Event::Created { at: Timestamp(0), id: id.clone(),
    ///         title: "Add login".into(), context: String::new(), workflow: Workflow::kiro(),
    ///         seed: 0 }).await?;
    ///     store.append(&id, 1, &[Event::ExecutionStarted { at: Timestamp(0) }]).await?;
    ///
    ///     // Execute cannot run before design, spec and task: refused, naming them.
    ///     let refused = orchestrator.execute_phase(&id, &execute, None).await.unwrap_err();
    ///     assert!(refused.to_string().ends_with("waits on design, spec, task"), "{refused}");
    ///     // Design directly, in-process; the milestone stays active.
    ///     let report = orchestrator.execute_phase(&id, &design, Some(ExecutionMode::Direct))
    ///         .await?;
    ///     assert_eq!(report.outcome, Some(Outcome::PhasesDone { waiting: vec![] }));
    ///     assert_eq!(report.status, MilestoneStatus::Active);
    ///     assert_eq!((report.metrics.direct_runs, report.metrics.agent_runs), (1, 0));
    ///     // The rest with agents (the builder's policy).
    ///     let report = orchestrator.execute(&id).await?;
    ///     assert_eq!(report.status, MilestoneStatus::Completed);
    ///     assert_eq!((report.metrics.direct_runs, report.metrics.agent_runs), (0, 3));
    ///     Ok::<_, Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`OrchestratorError::UnknownPhase`], [`OrchestratorError::PhaseNotReady`];
    /// otherwise as [`Orchestrator::execute`].
    pub async fn execute_phase(
        &self,
        id: &MilestoneId,
        phase: &PhaseId,
        mode: Option<ExecutionMode>,
    ) -> Result<Report, OrchestratorError> {
        let mut session = self.open_with(id, Call::one(phase, mode)).await?;
        // The strategy the run will go by, an adaptive choice included: under sequential every
        // earlier phase counts, so the refusal comes before anything is stored.
        let strategy = session.strategy_now();
        let waiting_on = blockers(session.state(), phase, strategy).map_err(|()| {
            OrchestratorError::UnknownPhase {
                id: id.clone(),
                phase: phase.clone(),
            }
        })?;
        if !waiting_on.is_empty() {
            return Err(OrchestratorError::PhaseNotReady {
                id: id.clone(),
                phase: phase.clone(),
                waiting_on,
            });
        }
        let report = session
            .run(vec![Input::Start(StartMode::Execution)])
            .await?;
        // Should the clock have crossed a deadline between the check and the start (an
        // adaptive choice that then differs), the run leaves the phase waiting: refuse the
        // same way.
        if let Some(Outcome::PhasesDone { waiting }) = &report.outcome
            && waiting.contains(phase)
        {
            let strategy = session.strategy_now();
            let waiting_on = blockers(session.state(), phase, strategy).unwrap_or_default();
            return Err(OrchestratorError::PhaseNotReady {
                id: id.clone(),
                phase: phase.clone(),
                waiting_on,
            });
        }
        Ok(report)
    }
}

impl Orchestrator {
    /// Answers the open intervention, then carries on as
    /// [`Orchestrator::execute_phase`] does for `phase` (with `mode`, when given): the answer a
    /// host gives while it runs the milestone one phase at a time.
    ///
    /// # Errors
    /// [`OrchestratorError::UnknownPhase`]; [`OrchestratorError::Engine`] when the answer does
    /// not fit the open intervention (or there is none); as [`Orchestrator::execute`].
    pub async fn answer_phase(
        &self,
        id: &MilestoneId,
        decision: Decision,
        phase: &PhaseId,
        mode: Option<ExecutionMode>,
    ) -> Result<Report, OrchestratorError> {
        let mut session = self.open_with(id, Call::one(phase, mode)).await?;
        session
            .run(vec![
                Input::Answer(decision),
                Input::Start(StartMode::Execution),
            ])
            .await
    }
}

/// The phases `phase` waits on, in workflow order: its dependencies that are not done, and
/// under the sequential `strategy` every earlier phase not done. `Err` when the workflow has no
/// such phase. A milestone not in execution mode has none (the engine refuses it by mode).
fn blockers(
    state: &MilestoneState,
    phase: &PhaseId,
    strategy: Strategy,
) -> Result<Vec<PhaseId>, ()> {
    let wf = state.workflow();
    let pos = wf.position(phase.as_str()).ok_or(())?;
    let phases = state.phases();
    if state.mode() != Mode::Execution || phases[pos].item.status.is_done() {
        return Ok(Vec::new());
    }
    let sequential = strategy == Strategy::Sequential;
    let deps = &wf.phases()[pos].dependencies;
    Ok(phases
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            !p.item.status.is_done() && ((sequential && *i < pos) || deps.contains(&p.id))
        })
        .map(|(_, p)| p.id.clone())
        .collect())
}
