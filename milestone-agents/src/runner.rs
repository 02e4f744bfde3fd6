//! The [`AgentRunner`] trait: the one thing every agent implements.

use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;

use futures::future::BoxFuture;
use milestone_core::Timestamp;

use crate::clock::{Clock, with_timeout};
use crate::context::{AgentContext, CancelToken};
use crate::output::{AgentError, AgentOutput};
use crate::request::AgentRequest;

/// Something that does a unit of work: an LLM command-line tool, a script, a person behind a
/// queue, a plain function.
///
/// # Contract
///
/// Every implementation must hold to this; the orchestrator relies on it.
///
/// - **Idempotency.** [`AgentRequest::idempotency_key`] is the same for every attempt of the
///   same work in the same milestone (retries, degraded attempts, restarts after a crash). A
///   runner with side effects outside the repository (opening a ticket, calling a paid API)
///   uses it to make them happen once.
/// - **Progress is a hint.** Reports through [`AgentContext`] are monotone hints for display
///   and pipelining; they never complete the work. Only returning `Ok` does.
/// - **Cancellation is prompt.** Once [`AgentContext::is_cancelled`] turns true (or its
///   `cancelled()` future completes) the runner stops its work and returns promptly, normally
///   with [`AgentError::Cancelled`]. Dropping the `run` future is also a cancellation: a
///   runner that owns resources (child processes) releases them on drop.
/// - **Outputs are matched by name.** The names of [`AgentOutput::artifacts`] are matched
///   against the phase's expected outputs by the quality gate; `data` is handed on as the
///   input of dependent work.
/// - **Errors drive recovery.** The kind of [`AgentError`] picks the recovery step:
///   transient → retry with backoff; permanent or invalid output → rollback / degraded run;
///   unavailable → the role's direct runner; timed out → as the engine's timeout policy says.
/// - **`available()` is cheap** (no work is done) and is asked before each run; `false` makes
///   the registry fall back to the role's direct runner.
/// - **`run_now` is `run`.** An override of [`run_now`](AgentRunner::run_now) gives the result
///   `run` would give for the same request; a caller may use either.
#[async_trait]
pub trait AgentRunner: std::fmt::Debug + Send + Sync {
    /// A short name for logs and metrics.
    fn name(&self) -> &str;

    /// Whether the runner can run now. Defaults to `true`.
    async fn available(&self) -> bool {
        true
    }

    /// Does the work.
    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError>;

    /// Starts the work and polls it once with `cx`: [`RunNow::Done`] when it finished at once,
    /// else the run to await (it has already been polled once with `cx`).
    ///
    /// The default boxes [`run`](AgentRunner::run)'s future and polls it. A runner that answers
    /// without waiting (a plain function) overrides it to answer without a future at all. The
    /// orchestrator starts in-process runs through this method.
    ///
    /// The orchestrator reads a run's progress reports and hand-offs after the call that made
    /// them returns. For a run that answered at once, they arrive after its result. They are
    /// dropped then, because the result supersedes them.
    fn run_now<'a>(
        &'a self,
        request: AgentRequest,
        ctx: AgentContext,
        cx: &mut Context<'_>,
    ) -> RunNow<'a> {
        let mut run = self.run(request, ctx);
        match run.as_mut().poll(cx) {
            Poll::Ready(result) => RunNow::Done(result),
            Poll::Pending => RunNow::Pending(run),
        }
    }
}

/// What [`AgentRunner::run_now`] gives back.
#[must_use = "a pending run does nothing unless it is polled"]
pub enum RunNow<'a> {
    /// The run finished at once.
    Done(Result<AgentOutput, AgentError>),
    /// The run is under way: poll it (again) to completion.
    Pending(BoxFuture<'a, Result<AgentOutput, AgentError>>),
}

impl std::fmt::Debug for RunNow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunNow::Done(result) => f.debug_tuple("Done").field(result).finish(),
            RunNow::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Smart pointers to a runner are runners: every method goes to the runner inside.
macro_rules! forward_runner {
    ($ty:ty) => {
        #[async_trait]
        impl<T: AgentRunner + ?Sized> AgentRunner for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }
            async fn available(&self) -> bool {
                (**self).available().await
            }
            async fn run(
                &self,
                request: AgentRequest,
                ctx: AgentContext,
            ) -> Result<AgentOutput, AgentError> {
                (**self).run(request, ctx).await
            }
            fn run_now<'a>(
                &'a self,
                request: AgentRequest,
                ctx: AgentContext,
                cx: &mut Context<'_>,
            ) -> RunNow<'a> {
                (**self).run_now(request, ctx, cx)
            }
        }
    };
}

forward_runner!(Arc<T>);
forward_runner!(Box<T>);

/// Runs `runner` until it returns or the request's deadline passes on `clock`. On a timeout
/// (seen here, or reported by the runner itself) the context is cancelled, the run future is dropped (releasing what the runner holds) and
/// [`AgentError::TimedOut`] is returned.
///
/// ```
/// use milestone_agents::{run_with_deadline, AgentContext, AgentError, AgentOutput,
///     AgentRequest, Clock, FnAgent, ManualClock};
/// use milestone_core::engine::{Role, Work};
/// use milestone_core::{ItemRef, MilestoneId, PhaseId, Timestamp};
///
/// let clock = ManualClock::new(Timestamp(0));
/// let slow = FnAgent::new("slow", |_req, ctx: AgentContext| async move {
///     ctx.cancelled().await;
///     Err(AgentError::cancelled("stopped"))
/// });
/// let design = PhaseId::new("design")?;
/// let mut request = AgentRequest::new(MilestoneId::new("m")?, Role::Phase(design.clone()),
///     Work::Item(ItemRef::Phase(design)));
/// request.deadline = Timestamp(1_000);
/// let (ctx, _handle) = AgentContext::new();
/// let mut run = Box::pin(run_with_deadline(&slow, request, ctx.clone(), &clock));
/// assert!(futures::FutureExt::now_or_never(&mut run).is_none());
/// clock.advance(1_000);
/// let result: Result<AgentOutput, AgentError> = futures::executor::block_on(run);
/// assert!(matches!(result, Err(AgentError::TimedOut { .. })));
/// assert!(ctx.is_cancelled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn run_with_deadline<R, C>(
    runner: &R,
    request: AgentRequest,
    ctx: AgentContext,
    clock: &C,
) -> Result<AgentOutput, AgentError>
where
    R: AgentRunner + ?Sized,
    C: Clock + ?Sized,
{
    let deadline = request.deadline;
    let work = request.work.clone();
    let token = ctx.cancel_token().clone();
    // Started through `run_now` (polled once, with no future at all for a plain function)
    // before a timer is armed: in-process runners usually finish at once and then cost no
    // timer.
    match futures::future::lazy(|cx| runner.run_now(request, ctx, cx)).await {
        RunNow::Done(result) => settle(result, &token),
        RunNow::Pending(run) => {
            finish_by_deadline(runner, &work, deadline, token, clock, run).await
        }
    }
}

/// A run's result, its token cancelled when the runner timed itself out: whatever it left
/// running stops too.
pub(crate) fn settle(
    result: Result<AgentOutput, AgentError>,
    token: &CancelToken,
) -> Result<AgentOutput, AgentError> {
    if matches!(result, Err(AgentError::TimedOut { .. })) {
        token.cancel();
    }
    result
}

/// Awaits a run that was polled once and is still pending, until `deadline` on `clock`: past
/// it the run is dropped, its token cancelled, and the error names `work` and the runner.
pub(crate) async fn finish_by_deadline<R, C>(
    runner: &R,
    work: &(dyn std::fmt::Display + Sync),
    deadline: Timestamp,
    token: CancelToken,
    clock: &C,
    run: BoxFuture<'_, Result<AgentOutput, AgentError>>,
) -> Result<AgentOutput, AgentError>
where
    R: AgentRunner + ?Sized,
    C: Clock + ?Sized,
{
    match with_timeout(clock, deadline, run).await {
        Ok(result) => settle(result, &token),
        Err(_) => {
            token.cancel();
            Err(AgentError::timed_out(format!(
                "{work} ({}) ran past its deadline at {} ms",
                runner.name(),
                deadline.as_millis()
            )))
        }
    }
}
