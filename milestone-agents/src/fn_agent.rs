//! [`FnAgent`]: a runner from a closure, for direct (in-process) work and quick tests.

use std::fmt;
use std::future::Future;
use std::task::Context;

use async_trait::async_trait;

use crate::context::AgentContext;
use crate::output::{AgentError, AgentOutput};
use crate::request::AgentRequest;
use crate::runner::{AgentRunner, RunNow};

/// A runner that calls a closure: `Fn(AgentRequest, AgentContext) -> impl Future<Output =
/// Result<AgentOutput, AgentError>>`. Use [`FnAgent::sync`] for a plain function.
///
/// ```
/// use milestone_agents::{AgentContext, AgentOutput, AgentRunner, AgentRequest, FnAgent};
/// use milestone_core::engine::{Role, Work};
/// use milestone_core::{ItemRef, MilestoneId, PhaseId};
///
/// let agent = FnAgent::sync("echo", |req: AgentRequest| Ok(AgentOutput::new(req.work.to_string())));
/// let design = PhaseId::new("design")?;
/// let request = AgentRequest::new(MilestoneId::new("m")?, Role::Phase(design.clone()),
///     Work::Item(ItemRef::Phase(design)));
/// let (ctx, _handle) = AgentContext::new();
/// let out = futures::executor::block_on(agent.run(request, ctx))?;
/// assert_eq!(out.summary, "phase design");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FnAgent<F> {
    name: String,
    available: bool,
    f: F,
}

impl<F> fmt::Debug for FnAgent<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnAgent")
            .field("name", &self.name)
            .field("available", &self.available)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> FnAgent<F>
where
    F: Fn(AgentRequest, AgentContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<AgentOutput, AgentError>> + Send,
{
    /// A runner named `name` that runs the async closure `f`.
    pub fn new(name: impl Into<String>, f: F) -> FnAgent<F> {
        FnAgent {
            name: name.into(),
            available: true,
            f,
        }
    }
}

impl<F> FnAgent<F> {
    /// Makes [`available`](AgentRunner::available) answer `available` (default `true`).
    pub fn with_available(mut self, available: bool) -> FnAgent<F> {
        self.available = available;
        self
    }
}

/// The function behind [`FnAgent::sync`]. Such a runner answers
/// [`run_now`](AgentRunner::run_now) by calling it: no future is made for the run.
pub struct SyncFn(Box<dyn Fn(AgentRequest) -> Result<AgentOutput, AgentError> + Send + Sync>);

impl fmt::Debug for SyncFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SyncFn")
    }
}

impl FnAgent<()> {
    /// A runner named `name` that calls the synchronous function `g` (it should be quick: it
    /// runs on the executor's thread).
    pub fn sync<G>(name: impl Into<String>, g: G) -> FnAgent<SyncFn>
    where
        G: Fn(AgentRequest) -> Result<AgentOutput, AgentError> + Send + Sync + 'static,
    {
        FnAgent {
            name: name.into(),
            available: true,
            f: SyncFn(Box::new(g)),
        }
    }
}

#[async_trait]
impl<F, Fut> AgentRunner for FnAgent<F>
where
    F: Fn(AgentRequest, AgentContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<AgentOutput, AgentError>> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn available(&self) -> bool {
        self.available
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        (self.f)(request, ctx).await
    }
}

#[async_trait]
impl AgentRunner for FnAgent<SyncFn> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn available(&self) -> bool {
        self.available
    }

    async fn run(
        &self,
        request: AgentRequest,
        _ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        (self.f.0)(request)
    }

    fn run_now<'a>(
        &'a self,
        request: AgentRequest,
        _ctx: AgentContext,
        _cx: &mut Context<'_>,
    ) -> RunNow<'a> {
        RunNow::Done((self.f.0)(request))
    }
}
