//! [`ScriptedAgent`]: a test double whose replies are scripted, in the manner of tower-test's
//! mock handle: the test holds a [`ScriptHandle`] and plays the agent's side of the
//! conversation, or hands the agent a queue of [`Reply`]s played on a [`Clock`].

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::Either;

use crate::clock::Clock;
use crate::context::AgentContext;
use crate::output::{AgentError, AgentOutput};
use crate::request::AgentRequest;
use crate::runner::AgentRunner;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A runner whose behaviour a test scripts.
///
/// Interactive ([`ScriptedAgent::new`]): each `run` sends its request to the
/// [`ScriptHandle`], and waits for the test to answer through the [`Responder`]; a
/// cancellation of the run ends the wait with [`AgentError::Cancelled`].
///
/// ```
/// use milestone_agents::{AgentContext, AgentOutput, AgentRequest, AgentRunner, ScriptedAgent};
/// use milestone_core::engine::{Role, Work};
/// use milestone_core::{ItemRef, MilestoneId, PhaseId};
///
/// let (agent, mut handle) = ScriptedAgent::new("designer");
/// let design = PhaseId::new("design")?;
/// let request = AgentRequest::new(MilestoneId::new("m")?, Role::Phase(design.clone()),
///     Work::Item(ItemRef::Phase(design)));
/// let (ctx, _reports) = AgentContext::new();
/// let (result, ()) = futures::executor::block_on(futures::future::join(
///     agent.run(request, ctx),
///     async {
///         let call = handle.next_request().await.expect("a request");
///         assert_eq!(call.request().attempt, 1);
///         call.progress(0.5);
///         call.respond(AgentOutput::new("done"));
///     },
/// ));
/// assert_eq!(result?.summary, "done");
/// assert_eq!(agent.requests().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Pre-scripted ([`ScriptedAgent::with_replies`]): each `run` plays the next [`Reply`] of a
/// queue (sleeps on the clock, progress, handoffs, then an output, an error or a hang until
/// cancelled) — for simulations with many runs and no test driving them.
#[derive(Clone)]
pub struct ScriptedAgent {
    name: String,
    shared: Arc<Shared>,
}

struct Shared {
    mode: Mode,
    received: Mutex<Vec<AgentRequest>>,
    available: AtomicBool,
}

enum Mode {
    Interactive(mpsc::UnboundedSender<Responder>),
    Queue {
        clock: Arc<dyn Clock>,
        replies: Mutex<VecDeque<Reply>>,
    },
}

impl fmt::Debug for ScriptedAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedAgent")
            .field("name", &self.name)
            .field("received", &lock(&self.shared.received).len())
            .field("available", &self.shared.available.load(Ordering::Acquire))
            .finish()
    }
}

impl ScriptedAgent {
    /// An interactive scripted agent and the handle that answers its runs.
    pub fn new(name: impl Into<String>) -> (ScriptedAgent, ScriptHandle) {
        let (tx, rx) = mpsc::unbounded();
        let shared = Arc::new(Shared {
            mode: Mode::Interactive(tx),
            received: Mutex::new(Vec::new()),
            available: AtomicBool::new(true),
        });
        (
            ScriptedAgent {
                name: name.into(),
                shared: Arc::clone(&shared),
            },
            ScriptHandle { rx, shared },
        )
    }

    /// A pre-scripted agent: run *n* plays the *n*-th reply, with its sleeps on `clock`; runs
    /// past the end of the queue fail permanently ("no scripted reply left").
    pub fn with_replies(
        name: impl Into<String>,
        clock: Arc<dyn Clock>,
        replies: impl IntoIterator<Item = Reply>,
    ) -> ScriptedAgent {
        ScriptedAgent {
            name: name.into(),
            shared: Arc::new(Shared {
                mode: Mode::Queue {
                    clock,
                    replies: Mutex::new(replies.into_iter().collect()),
                },
                received: Mutex::new(Vec::new()),
                available: AtomicBool::new(true),
            }),
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<AgentRequest> {
        lock(&self.shared.received).clone()
    }

    /// Sets what [`available`](AgentRunner::available) answers.
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::Release);
    }

    /// Queues more replies (pre-scripted mode; ignored in interactive mode).
    pub fn push_replies(&self, more: impl IntoIterator<Item = Reply>) {
        if let Mode::Queue { replies, .. } = &self.shared.mode {
            lock(replies).extend(more);
        }
    }

    /// How many queued replies are left (pre-scripted mode; 0 in interactive mode).
    pub fn replies_left(&self) -> usize {
        match &self.shared.mode {
            Mode::Queue { replies, .. } => lock(replies).len(),
            Mode::Interactive(_) => 0,
        }
    }
}

#[async_trait]
impl AgentRunner for ScriptedAgent {
    fn name(&self) -> &str {
        &self.name
    }

    async fn available(&self) -> bool {
        self.shared.available.load(Ordering::Acquire)
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        lock(&self.shared.received).push(request.clone());
        match &self.shared.mode {
            Mode::Interactive(tx) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                let responder = Responder {
                    request,
                    ctx: ctx.clone(),
                    reply: reply_tx,
                };
                if tx.unbounded_send(responder).is_err() {
                    return Err(AgentError::unavailable(format!(
                        "scripted agent `{}`: its handle was dropped",
                        self.name
                    )));
                }
                match futures::future::select(reply_rx, ctx.cancelled()).await {
                    Either::Left((Ok(result), _)) => result,
                    Either::Left((Err(_), _)) => Err(AgentError::permanent(format!(
                        "scripted agent `{}`: the test dropped the request without answering",
                        self.name
                    ))),
                    Either::Right(((), _)) => Err(AgentError::cancelled(format!(
                        "scripted agent `{}` was cancelled",
                        self.name
                    ))),
                }
            }
            Mode::Queue { clock, replies } => {
                let reply = lock(replies).pop_front();
                match reply {
                    Some(reply) => reply.play(&self.name, clock.as_ref(), &ctx).await,
                    None => Err(AgentError::permanent(format!(
                        "scripted agent `{}`: no scripted reply left",
                        self.name
                    ))),
                }
            }
        }
    }
}

/// The test's end of an interactive [`ScriptedAgent`].
pub struct ScriptHandle {
    rx: mpsc::UnboundedReceiver<Responder>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ScriptHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptHandle").finish_non_exhaustive()
    }
}

impl ScriptHandle {
    /// Waits for the next run; `None` once every clone of the agent is dropped.
    pub async fn next_request(&mut self) -> Option<Responder> {
        self.rx.next().await
    }

    /// The next run if one has already started, without waiting.
    pub fn try_next_request(&mut self) -> Option<Responder> {
        self.rx.try_recv().ok()
    }

    /// Every request received so far, in order (answered or not).
    pub fn requests(&self) -> Vec<AgentRequest> {
        lock(&self.shared.received).clone()
    }

    /// Sets what the agent's [`available`](AgentRunner::available) answers.
    pub fn set_available(&self, available: bool) {
        self.shared.available.store(available, Ordering::Release);
    }
}

/// One run of an interactive [`ScriptedAgent`], waiting for the test's answer. Dropping it
/// unanswered fails the run permanently.
pub struct Responder {
    request: AgentRequest,
    ctx: AgentContext,
    reply: oneshot::Sender<Result<AgentOutput, AgentError>>,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("work", &self.request.work)
            .field("attempt", &self.request.attempt)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// The request of this run.
    pub fn request(&self) -> &AgentRequest {
        &self.request
    }

    /// Asserts something of the request (panics with `what` and the request otherwise, as a
    /// test assertion should); returns `self` for chaining.
    #[track_caller]
    pub fn assert_request(self, what: &str, check: impl FnOnce(&AgentRequest) -> bool) -> Self {
        assert!(
            check(&self.request),
            "request assertion `{what}` failed: {:?}",
            self.request
        );
        self
    }

    /// Asserts that the request is for `work` (compared by its display form, e.g.
    /// `phase design`, `task t1`, `analysis scope`) and returns `self`.
    #[track_caller]
    pub fn assert_work(self, work: &str) -> Self {
        assert_eq!(
            self.request.work.to_string(),
            work,
            "request: {:?}",
            self.request
        );
        self
    }

    /// Reports progress on the run's context.
    pub fn progress(&self, fraction: f64) {
        self.ctx.report_progress(fraction);
    }

    /// Hands off a partial result on the run's context.
    pub fn hand_off(&self, partial: serde_json::Value) {
        self.ctx.hand_off(partial);
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    /// Waits until the run is cancelled (a hung agent); the run has then already returned
    /// [`AgentError::Cancelled`].
    pub async fn hang_until_cancelled(self) {
        self.ctx.cancelled().await;
    }

    /// Completes the run with `output`.
    pub fn respond(self, output: AgentOutput) {
        // The run may have been cancelled and returned already; the answer is then moot.
        let _ = self.reply.send(Ok(output));
    }

    /// Fails the run with `error`.
    pub fn fail(self, error: AgentError) {
        let _ = self.reply.send(Err(error));
    }
}

/// One step of a pre-scripted [`Reply`].
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Sleep(u64),
    Progress(f64),
    Handoff(serde_json::Value),
}

/// How a pre-scripted reply ends.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Output(AgentOutput),
    Error(AgentError),
    Hang,
}

/// A pre-scripted run: steps (sleeps on the clock, progress, handoffs) played in order, then
/// an ending. Every sleep is cut short by a cancellation, which ends the run with
/// [`AgentError::Cancelled`].
///
/// ```
/// use milestone_agents::{AgentOutput, Reply};
/// let reply = Reply::new().sleep(100).progress(0.5).hand_off(serde_json::json!({"draft": 1}))
///     .sleep(100).output(AgentOutput::new("done"));
/// # let _ = reply;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a reply does nothing until it is queued"]
pub struct Reply {
    steps: Vec<Step>,
    end: End,
}

impl Default for Reply {
    fn default() -> Self {
        Reply::new()
    }
}

impl Reply {
    /// A reply that (so far) completes at once with an empty output.
    pub fn new() -> Reply {
        Reply {
            steps: Vec::new(),
            end: End::Output(AgentOutput::default()),
        }
    }

    /// Sleeps `ms` on the agent's clock.
    pub fn sleep(mut self, ms: u64) -> Reply {
        self.steps.push(Step::Sleep(ms));
        self
    }

    /// Reports progress.
    pub fn progress(mut self, fraction: f64) -> Reply {
        self.steps.push(Step::Progress(fraction));
        self
    }

    /// Hands off a partial result.
    pub fn hand_off(mut self, partial: serde_json::Value) -> Reply {
        self.steps.push(Step::Handoff(partial));
        self
    }

    /// Ends with `output`.
    pub fn output(mut self, output: AgentOutput) -> Reply {
        self.end = End::Output(output);
        self
    }

    /// Ends with `error`.
    pub fn error(mut self, error: AgentError) -> Reply {
        self.end = End::Error(error);
        self
    }

    /// Ends by hanging until cancelled.
    pub fn hang(mut self) -> Reply {
        self.end = End::Hang;
        self
    }

    async fn play(
        self,
        name: &str,
        clock: &dyn Clock,
        ctx: &AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let cancelled = || AgentError::cancelled(format!("scripted agent `{name}` was cancelled"));
        for step in self.steps {
            if ctx.is_cancelled() {
                return Err(cancelled());
            }
            match step {
                Step::Sleep(ms) => {
                    let sleep = clock.sleep(ms);
                    if let Either::Right(_) = futures::future::select(sleep, ctx.cancelled()).await
                    {
                        return Err(cancelled());
                    }
                }
                Step::Progress(f) => ctx.report_progress(f),
                Step::Handoff(v) => ctx.hand_off(v),
            }
        }
        match self.end {
            _ if ctx.is_cancelled() => Err(cancelled()),
            End::Output(o) => Ok(o),
            End::Error(e) => Err(e),
            End::Hang => {
                ctx.cancelled().await;
                Err(cancelled())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::context::Report;
    use futures::FutureExt;
    use futures::executor::block_on;
    use milestone_core::engine::{Role, Work};
    use milestone_core::{ItemRef, MilestoneId, PhaseId, Progress, Timestamp};

    fn request(attempt: u32) -> AgentRequest {
        let p = PhaseId::new("spec").unwrap();
        let mut r = AgentRequest::new(
            MilestoneId::new("m").unwrap(),
            Role::Phase(p.clone()),
            Work::Item(ItemRef::Phase(p)),
        );
        r.attempt = attempt;
        r
    }

    #[test]
    fn interactive_conversation_forwards_reports_and_answers() {
        let (agent, mut handle) = ScriptedAgent::new("a");
        let (ctx, mut reports) = AgentContext::new();
        let (result, ()) = block_on(futures::future::join(agent.run(request(3), ctx), async {
            let call = handle
                .next_request()
                .await
                .unwrap()
                .assert_work("phase spec")
                .assert_request("third attempt", |r| r.attempt == 3);
            call.progress(0.3);
            call.hand_off(serde_json::json!("draft"));
            call.fail(AgentError::transient("rate limited"));
        }));
        assert_eq!(result, Err(AgentError::transient("rate limited")));
        assert_eq!(
            reports.drain(),
            vec![
                Report::Progress(Progress::from_basis_points(3000)),
                Report::Handoff(serde_json::json!("draft"))
            ]
        );
        assert_eq!(handle.requests(), vec![request(3)]);
    }

    #[test]
    fn interactive_run_ends_when_cancelled_or_unanswered_or_orphaned() {
        let (agent, mut handle) = ScriptedAgent::new("a");
        let (ctx, reports) = AgentContext::new();
        let mut run = agent.run(request(1), ctx);
        assert!((&mut run).now_or_never().is_none());
        let call = handle.try_next_request().unwrap();
        let mut hang = Box::pin(call.hang_until_cancelled());
        assert!((&mut hang).now_or_never().is_none());
        reports.cancel();
        assert!(matches!(block_on(run), Err(AgentError::Cancelled { .. })));
        block_on(hang);

        let (ctx, _reports) = AgentContext::new();
        let mut run = agent.run(request(2), ctx);
        assert!((&mut run).now_or_never().is_none());
        drop(handle.try_next_request());
        assert!(matches!(block_on(run), Err(AgentError::Permanent { .. })));

        drop(handle);
        let (ctx, _reports) = AgentContext::new();
        assert!(matches!(
            block_on(agent.run(request(3), ctx)),
            Err(AgentError::Unavailable { .. })
        ));
        assert_eq!(agent.requests().len(), 3);
    }

    #[test]
    fn queued_replies_play_on_the_clock_in_order() {
        let clock = ManualClock::new(Timestamp(0));
        let agent = ScriptedAgent::with_replies(
            "q",
            Arc::new(clock.clone()),
            [
                Reply::new()
                    .sleep(100)
                    .progress(0.5)
                    .hand_off(serde_json::json!(1))
                    .sleep(50)
                    .output(AgentOutput::new("one")),
                Reply::new().error(AgentError::permanent("two")),
                Reply::new().hang(),
            ],
        );
        let (ctx, mut reports) = AgentContext::new();
        let mut run = agent.run(request(1), ctx);
        assert!((&mut run).now_or_never().is_none());
        clock.advance(99);
        assert!((&mut run).now_or_never().is_none());
        clock.advance(1);
        assert!((&mut run).now_or_never().is_none());
        assert_eq!(reports.drain().len(), 2);
        clock.advance(50);
        assert_eq!(block_on(run).map(|o| o.summary), Ok("one".to_owned()));

        let (ctx, _r) = AgentContext::new();
        assert_eq!(
            block_on(agent.run(request(2), ctx)),
            Err(AgentError::permanent("two"))
        );

        let (ctx, r) = AgentContext::new();
        let mut run = agent.run(request(3), ctx);
        clock.advance(1_000_000);
        assert!((&mut run).now_or_never().is_none());
        r.cancel();
        assert!(matches!(block_on(run), Err(AgentError::Cancelled { .. })));

        let (ctx, _r) = AgentContext::new();
        assert!(matches!(
            block_on(agent.run(request(4), ctx)),
            Err(AgentError::Permanent { .. })
        ));
        agent.set_available(false);
        assert!(!block_on(agent.available()));
    }

    #[test]
    fn a_cancelled_sleep_ends_the_queued_run() {
        let clock = ManualClock::new(Timestamp(0));
        let agent =
            ScriptedAgent::with_replies("q", Arc::new(clock.clone()), [Reply::new().sleep(10_000)]);
        let (ctx, r) = AgentContext::new();
        let mut run = agent.run(request(1), ctx);
        assert!((&mut run).now_or_never().is_none());
        assert_eq!(clock.sleepers(), 1);
        r.cancel();
        assert!(matches!(block_on(run), Err(AgentError::Cancelled { .. })));
        assert_eq!(clock.sleepers(), 0);
    }
}
