//! [`dispatch`]: one engine start carried out end to end — request, runner, deadline, engine
//! input. The glue every host loop needs, written once.

use std::collections::BTreeMap;
use std::sync::Arc;

use milestone_core::engine::{Input, StartCommand};
use milestone_core::{ItemError, MilestoneState};

use crate::clock::Clock;
use crate::context::{AgentContext, CancelToken, ReportSink};
use crate::output::{AgentError, result_input};
use crate::registry::{Registry, RunnerSource};
use crate::request::AgentRequest;
use crate::runner::run_with_deadline;

/// How one dispatched attempt ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Dispatched {
    /// The engine input to feed back: [`Input::Finished`] or [`Input::Failed`].
    pub input: Input,
    /// The quality figures of a success (empty otherwise).
    pub quality: BTreeMap<String, f64>,
    /// The runner that ran, if one was found.
    pub runner: Option<String>,
    /// How it was chosen, if one was found.
    pub source: Option<RunnerSource>,
}

/// Carries out `start` for `state`'s milestone: builds the [`AgentRequest`], resolves the
/// runner in `registry` (the direct runner for a degraded attempt or an unavailable agent),
/// runs it under the start's deadline on `clock` with a context reporting into `sink` and
/// cancelled through `cancel`, and turns the outcome into the engine input for this attempt.
/// A role with no usable runner is an [`Input::Failed`] of kind `unavailable`.
///
/// ```
/// use std::sync::Arc;
/// use milestone_agents::{dispatch, AgentOutput, CancelToken, FnAgent, ManualClock, Registry};
/// use milestone_core::engine::{CacheKey, IdempotencyKey, Input, Role, StartCommand, Work};
/// use milestone_core::{ItemRef, Limits, MilestoneId, MilestoneState, PhaseId, Timestamp, Workflow};
///
/// let state = MilestoneState::new(MilestoneId::new("m")?, "M", "", Workflow::kiro(), Timestamp(0), 1);
/// let design = PhaseId::new("design")?;
/// let start = StartCommand {
///     work: Work::Item(ItemRef::Phase(design.clone())), role: Role::Phase(design),
///     input: vec![], attempt: 1, deadline: Timestamp(1_000), budget: Limits::default(),
///     idempotency_key: IdempotencyKey(7), cache_key: CacheKey(0), reusable: false, degraded: false,
/// };
/// let mut registry = Registry::new();
/// registry.bind_any_phase(FnAgent::sync("direct", |_| Ok(AgentOutput::new("done"))));
/// let clock = ManualClock::new(Timestamp(0));
/// let sink = Arc::new(|_report| {});
/// let done = futures::executor::block_on(dispatch(&registry, &clock, &start, &state, CancelToken::new(), sink));
/// assert!(matches!(done.input, Input::Finished { attempt: 1, .. }));
/// assert_eq!(done.runner.as_deref(), Some("direct"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn dispatch<C: Clock + ?Sized>(
    registry: &Registry,
    clock: &C,
    start: &StartCommand,
    state: &MilestoneState,
    cancel: CancelToken,
    sink: Arc<dyn ReportSink>,
) -> Dispatched {
    let work = start.work.clone();
    let resolved = match registry.resolve_detailed(&start.role, start.degraded).await {
        Ok(r) => r,
        Err(e) => {
            return Dispatched {
                input: Input::Failed {
                    work,
                    attempt: start.attempt,
                    error: ItemError::from(AgentError::unavailable(e.to_string())),
                },
                quality: BTreeMap::new(),
                runner: None,
                source: None,
            };
        }
    };
    let request = AgentRequest::from_start(start, state);
    let ctx = AgentContext::with_sink(sink, cancel);
    let result = run_with_deadline(&resolved.runner, request, ctx, clock).await;
    let (input, quality) = result_input(work, start.attempt, result);
    Dispatched {
        input,
        quality,
        runner: Some(resolved.runner.name().to_owned()),
        source: Some(resolved.source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::context::Report;
    use crate::fn_agent::FnAgent;
    use crate::output::AgentOutput;
    use crate::scripted::{Reply, ScriptedAgent};
    use futures::FutureExt;
    use futures::executor::block_on;
    use milestone_core::engine::{CacheKey, IdempotencyKey, Role, Work};
    use milestone_core::{
        FailureKind, ItemOutput, ItemRef, Limits, MilestoneId, PhaseId, Progress, Timestamp,
        Workflow,
    };
    use std::sync::Mutex;

    fn state() -> MilestoneState {
        MilestoneState::new(
            MilestoneId::new("m").unwrap(),
            "M",
            "ctx",
            Workflow::kiro(),
            Timestamp(0),
            1,
        )
    }

    fn start(phase: &str, attempt: u32, degraded: bool) -> StartCommand {
        let p = PhaseId::new(phase).unwrap();
        StartCommand {
            work: Work::Item(ItemRef::Phase(p.clone())),
            role: Role::Phase(p),
            input: vec![],
            attempt,
            deadline: Timestamp(1_000),
            budget: Limits::default(),
            idempotency_key: IdempotencyKey(5),
            cache_key: CacheKey(0),
            reusable: false,
            degraded,
        }
    }

    fn failure(d: &Dispatched) -> Option<FailureKind> {
        match &d.input {
            Input::Failed { error, .. } => Some(error.kind),
            _ => None,
        }
    }

    #[test]
    fn each_outcome_becomes_the_engine_input_of_its_attempt() {
        let clock = ManualClock::new(Timestamp(0));
        let design = ScriptedAgent::with_replies(
            "design-agent",
            Arc::new(clock.clone()),
            [
                Reply::new()
                    .progress(0.5)
                    .output(AgentOutput::new("ok").with_quality("q", 1.5)),
                Reply::new().error(AgentError::transient("flaky")),
                Reply::new().hang(),
                Reply::new().hang(),
            ],
        );
        let mut registry = Registry::new();
        registry
            .bind(Role::Phase(PhaseId::new("design").unwrap()), design.clone())
            .bind_direct_any_phase(FnAgent::sync("direct", |r| {
                Ok(AgentOutput::new(format!("direct attempt {}", r.attempt)))
            }));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: Arc<dyn ReportSink> = {
            let seen = Arc::clone(&seen);
            Arc::new(move |r: Report| seen.lock().unwrap().push(r))
        };
        let st = state();
        let run = |s: StartCommand, cancel: CancelToken| {
            let (registry, clock, st, sink) = (&registry, &clock, &st, Arc::clone(&sink));
            async move { dispatch(registry, clock, &s, st, cancel, sink).await }
        };

        let ok = block_on(run(start("design", 1, false), CancelToken::new()));
        assert_eq!(
            ok.input,
            Input::Finished {
                work: start("design", 1, false).work,
                attempt: 1,
                output: ItemOutput {
                    summary: "ok".into(),
                    ..ItemOutput::default()
                }
            }
        );
        assert_eq!(ok.quality.get("q"), Some(&1.5));
        assert_eq!(
            (ok.runner.as_deref(), ok.source),
            (Some("design-agent"), Some(RunnerSource::Primary))
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Report::Progress(Progress::from_basis_points(5000))]
        );

        let flaky = block_on(run(start("design", 2, false), CancelToken::new()));
        assert_eq!(failure(&flaky), Some(FailureKind::Transient));

        let mut hung = Box::pin(run(start("design", 3, false), CancelToken::new()));
        assert!((&mut hung).now_or_never().is_none());
        clock.advance(1_000);
        assert_eq!(failure(&block_on(hung)), Some(FailureKind::Timeout));

        let cancel = CancelToken::new();
        let mut fourth = start("design", 4, false);
        fourth.deadline = Timestamp(10_000);
        let mut stopped = Box::pin(run(fourth, cancel.clone()));
        assert!((&mut stopped).now_or_never().is_none());
        cancel.cancel();
        assert_eq!(failure(&block_on(stopped)), Some(FailureKind::Interrupted));

        let degraded = block_on(run(start("design", 5, true), CancelToken::new()));
        assert!(
            matches!(&degraded.input, Input::Finished { output, attempt: 5, .. } if output.summary == "direct attempt 5")
        );
        assert_eq!(degraded.source, Some(RunnerSource::Degraded));

        design.set_available(false);
        let fallback = block_on(run(start("design", 6, false), CancelToken::new()));
        assert_eq!(fallback.source, Some(RunnerSource::DirectFallback));
        assert_eq!(design.requests().len(), 4);
        assert!(
            design
                .requests()
                .iter()
                .all(|r| r.idempotency_key == IdempotencyKey(5) && r.context == "ctx")
        );
    }

    #[test]
    fn a_role_without_a_runner_fails_as_unavailable() {
        let clock = ManualClock::new(Timestamp(0));
        let d = block_on(dispatch(
            &Registry::new(),
            &clock,
            &start("spec", 1, false),
            &state(),
            CancelToken::new(),
            Arc::new(|_r: Report| {}),
        ));
        assert_eq!(failure(&d), Some(FailureKind::Unavailable));
        assert_eq!((d.runner, d.source), (None, None));
    }
}
