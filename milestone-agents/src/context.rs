//! The runner's side channel: [`AgentContext`] reports progress and hands off partial results
//! to the orchestrator, and lets the runner see cancellation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;
use futures::channel::mpsc;
use milestone_core::Progress;
use milestone_core::engine::{Input, Work};

/// What a runner reported while it ran.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Report {
    /// How far the work is (strictly more than the previous report).
    Progress(Progress),
    /// A partial result that pipelined successors may start from.
    Handoff(serde_json::Value),
}

impl Report {
    /// The engine input saying this of `attempt` of `work`.
    pub fn into_input(self, work: Work, attempt: u32) -> Input {
        match self {
            Report::Progress(progress) => Input::Progress {
                work,
                attempt,
                progress,
            },
            Report::Handoff(partial) => Input::Handoff {
                work,
                attempt,
                partial,
            },
        }
    }
}

/// A cancellation flag shared by everyone who holds a clone: cheap to check, and awaitable.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: TokenRef,
}

/// Where a token's flag lives: its own allocation, or inside the context of an orchestrator
/// run (one allocation per run for both).
#[derive(Clone)]
enum TokenRef {
    Own(Arc<CancelInner>),
    Run(Arc<Shared>),
}

impl Default for TokenRef {
    fn default() -> TokenRef {
        TokenRef::Own(Arc::default())
    }
}

impl std::ops::Deref for TokenRef {
    type Target = CancelInner;
    fn deref(&self) -> &CancelInner {
        match self {
            TokenRef::Own(inner) => inner,
            TokenRef::Run(shared) => &shared.cancel,
        }
    }
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    next: AtomicU64,
    /// The waiters: (slot, waker). Few per token, so a list (and no hasher to seed per token).
    wakers: Mutex<Vec<(u64, Waker)>>,
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancels: every [`cancelled`](CancelToken::cancelled) future completes. Idempotent.
    pub fn cancel(&self) {
        if !self.inner.cancelled.swap(true, Ordering::AcqRel) {
            let wakers = std::mem::take(
                &mut *self
                    .inner
                    .wakers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for (_, w) in wakers {
                w.wake();
            }
        }
    }

    /// Whether [`cancel`](CancelToken::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// A future that completes once the token is cancelled.
    pub fn cancelled(&self) -> Cancelled {
        Cancelled {
            inner: self.inner.clone(),
            slot: self.inner.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The future of [`CancelToken::cancelled`].
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled {
    inner: TokenRef,
    slot: u64,
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled").finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.cancelled.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: `cancel` takes the wakers under the same lock.
        if self.inner.cancelled.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        match wakers.iter_mut().find(|(slot, _)| *slot == self.slot) {
            Some((_, w)) => w.clone_from(cx.waker()),
            None => wakers.push((self.slot, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Ok(mut w) = self.inner.wakers.lock() {
            w.retain(|(slot, _)| *slot != self.slot);
        }
    }
}

/// Where a context's reports go: anything that takes a [`Report`] (a closure works).
///
/// The orchestrator uses one sink per run that tags reports with the work and attempt and
/// forwards them into a single channel, so it polls one stream for every running agent.
pub trait ReportSink: Send + Sync {
    /// Takes one report. Must not block.
    fn report(&self, report: Report);
}

impl<F: Fn(Report) + Send + Sync> ReportSink for F {
    fn report(&self, report: Report) {
        self(report)
    }
}

enum Sink {
    Nowhere,
    Channel(mpsc::UnboundedSender<Report>),
    Custom(Arc<dyn ReportSink>),
    /// The orchestrator's: one router for all its runs, each report tagged with the run's key
    /// (no allocation per run).
    Run(Arc<RunRouter>, u64),
}

/// Where the orchestrator's runs send their reports: one channel, tagged by run.
#[derive(Debug)]
pub(crate) struct RunRouter {
    tx: mpsc::UnboundedSender<(u64, Report)>,
}

impl RunRouter {
    /// A router and the receiving end of its channel.
    pub(crate) fn new() -> (Arc<RunRouter>, mpsc::UnboundedReceiver<(u64, Report)>) {
        let (tx, rx) = mpsc::unbounded();
        (Arc::new(RunRouter { tx }), rx)
    }
}

/// The allocations of ended runs' contexts, kept for the next runs (the orchestrator's): a
/// run that finishes when first polled then costs no allocation for its context.
///
/// Only a context nobody holds any more is kept ([`recycle`](ContextPool::recycle) is given
/// the last handle, the run's token): no runner, report or `cancelled` future can see it
/// reset.
#[derive(Default)]
pub(crate) struct ContextPool {
    spare: Vec<Arc<Shared>>,
}

/// Contexts kept at most: as many as runs usually end together.
const POOL_MAX: usize = 256;

impl ContextPool {
    /// Keeps the allocation behind `token` when it is a run's and `token` is its last handle;
    /// it is reset as new (no progress, not cancelled, no waiters).
    pub(crate) fn recycle(&mut self, token: CancelToken) {
        let TokenRef::Run(mut shared) = token.inner else {
            return;
        };
        if self.spare.len() >= POOL_MAX {
            return;
        }
        if let Some(s) = Arc::get_mut(&mut shared)
            && let Ok(wakers) = s.cancel.wakers.get_mut()
        {
            wakers.clear();
            *s.last.get_mut() = 0;
            *s.cancel.cancelled.get_mut() = false;
            *s.cancel.next.get_mut() = 0;
            self.spare.push(shared);
        }
    }
}

/// What the clones of one context share.
struct Shared {
    sink: Sink,
    last: AtomicU16,
    /// The flag of the run's token when the context was made with it (`for_run`).
    cancel: CancelInner,
}

/// What a runner gets besides its request: a way to report progress, hand off partial results
/// and see cancellation. Cheap to clone; all clones share one sink and one progress mark.
///
/// Progress reports are monotone hints: a report not above the previous one is dropped here,
/// so the orchestrator never sees progress move backwards. Reports are never blocking: if the
/// handle was dropped they are discarded.
#[derive(Clone)]
pub struct AgentContext {
    shared: Arc<Shared>,
    cancel: CancelToken,
}

impl fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentContext")
            .field("progress", &self.last_progress())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl AgentContext {
    fn with(sink: Sink, cancel: CancelToken) -> AgentContext {
        AgentContext {
            shared: Arc::new(Shared {
                sink,
                last: AtomicU16::new(0),
                cancel: CancelInner::default(),
            }),
            cancel,
        }
    }

    /// A context and the handle that receives its reports and can cancel it.
    pub fn new() -> (AgentContext, ContextHandle) {
        let (tx, rx) = mpsc::unbounded();
        let cancel = CancelToken::new();
        (
            AgentContext::with(Sink::Channel(tx), cancel.clone()),
            ContextHandle { rx, cancel },
        )
    }

    /// A context whose reports go to `sink`, cancelled through `cancel`.
    pub fn with_sink(sink: Arc<dyn ReportSink>, cancel: CancelToken) -> AgentContext {
        AgentContext::with(Sink::Custom(sink), cancel)
    }

    /// A context of one orchestrator run: reports go to `router` tagged with `key`; its token
    /// ([`cancel_token`](AgentContext::cancel_token)) lives in the same allocation.
    pub(crate) fn for_run(router: Arc<RunRouter>, key: u64) -> AgentContext {
        let shared = Arc::new(Shared {
            sink: Sink::Run(router, key),
            last: AtomicU16::new(0),
            cancel: CancelInner::default(),
        });
        AgentContext {
            cancel: CancelToken {
                inner: TokenRef::Run(Arc::clone(&shared)),
            },
            shared,
        }
    }

    /// A context of one orchestrator run, as [`for_run`](AgentContext::for_run), in an
    /// allocation `pool` kept from an ended run when it has one.
    pub(crate) fn for_run_in(
        pool: &mut ContextPool,
        router: &Arc<RunRouter>,
        key: u64,
    ) -> AgentContext {
        while let Some(mut shared) = pool.spare.pop() {
            if let Some(s) = Arc::get_mut(&mut shared)
                && let Sink::Run(r, k) = &mut s.sink
                && Arc::ptr_eq(r, router)
            {
                *k = key;
                return AgentContext {
                    cancel: CancelToken {
                        inner: TokenRef::Run(Arc::clone(&shared)),
                    },
                    shared,
                };
            }
        }
        AgentContext::for_run(Arc::clone(router), key)
    }

    /// A context whose reports go nowhere, cancelled through `cancel`.
    pub fn detached(cancel: CancelToken) -> AgentContext {
        AgentContext::with(Sink::Nowhere, cancel)
    }

    /// Reports progress as a fraction in 0.0..=1.0 (clamped; NaN counts as 0).
    pub fn report_progress(&self, fraction: f64) {
        self.progress(Progress::from_fraction(fraction));
    }

    /// Reports progress; dropped unless it is above the last report.
    pub fn progress(&self, progress: Progress) {
        let bp = progress.basis_points();
        if self.shared.last.fetch_max(bp, Ordering::AcqRel) < bp {
            self.send(Report::Progress(progress));
        }
    }

    /// The highest progress reported so far.
    pub fn last_progress(&self) -> Progress {
        Progress::from_basis_points(u32::from(self.shared.last.load(Ordering::Acquire)))
    }

    /// Hands off a partial result (pipelined successors may start from it).
    pub fn hand_off(&self, partial: serde_json::Value) {
        self.send(Report::Handoff(partial));
    }

    fn send(&self, report: Report) {
        match &self.shared.sink {
            Sink::Nowhere => {}
            // A closed handle means nobody listens any more; the report is moot.
            Sink::Channel(tx) => drop(tx.unbounded_send(report)),
            Sink::Custom(sink) => sink.report(report),
            Sink::Run(router, key) => drop(router.tx.unbounded_send((*key, report))),
        }
    }

    /// Whether the work was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A future that completes once the work is cancelled.
    pub fn cancelled(&self) -> Cancelled {
        self.cancel.cancelled()
    }

    /// The cancellation token (to cancel from inside, e.g. on a timeout).
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

/// The orchestrator's end of an [`AgentContext`]: a [`Stream`] of [`Report`]s (ending when
/// every clone of the context is dropped) and the power to cancel.
#[derive(Debug)]
pub struct ContextHandle {
    rx: mpsc::UnboundedReceiver<Report>,
    cancel: CancelToken,
}

impl ContextHandle {
    /// Cancels the work.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The cancellation token shared with the context.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// A report already sent, if any, without waiting.
    pub fn try_next(&mut self) -> Option<Report> {
        self.rx.try_recv().ok()
    }

    /// Every report already sent, without waiting.
    pub fn drain(&mut self) -> Vec<Report> {
        std::iter::from_fn(|| self.try_next()).collect()
    }
}

impl Stream for ContextHandle {
    type Item = Report;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Report>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use proptest::prelude::*;

    /// An ended run's context is reused only when nobody holds it any more, and then as new:
    /// no progress mark, not cancelled, its reports tagged with the new key.
    #[test]
    fn a_pooled_context_is_reused_only_when_unheld_and_starts_afresh() {
        let (router, mut rx) = RunRouter::new();
        let mut pool = ContextPool::default();
        let ctx = AgentContext::for_run_in(&mut pool, &router, 1);
        let token = ctx.cancel_token().clone();
        ctx.report_progress(0.7);
        token.cancel();
        drop(ctx);
        pool.recycle(token);
        assert_eq!(pool.spare.len(), 1);
        let again = AgentContext::for_run_in(&mut pool, &router, 2);
        assert!(pool.spare.is_empty());
        assert!(!again.is_cancelled());
        assert_eq!(again.last_progress(), Progress::from_basis_points(0));
        again.report_progress(0.1);
        assert_eq!(
            rx.try_recv().ok(),
            Some((1, Report::Progress(Progress::from_basis_points(7_000))))
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some((2, Report::Progress(Progress::from_basis_points(1_000))))
        );
        // Still held (a runner kept a clone, a `cancelled` future waits): not kept.
        let kept = again.clone();
        let waiting = again.cancelled();
        pool.recycle(again.cancel_token().clone());
        drop(again);
        assert!(pool.spare.is_empty());
        let third = AgentContext::for_run_in(&mut pool, &router, 3);
        kept.cancel_token().cancel();
        assert!(!third.is_cancelled());
        assert!(waiting.now_or_never().is_some());
        // A host's token is never pooled; nor is a context of another router.
        pool.recycle(CancelToken::new());
        assert!(pool.spare.is_empty());
        let (other, _rx) = RunRouter::new();
        let foreign = AgentContext::for_run_in(&mut pool, &other, 4);
        let t = foreign.cancel_token().clone();
        drop(foreign);
        pool.recycle(t);
        assert_eq!(pool.spare.len(), 1);
        let fresh = AgentContext::for_run_in(&mut pool, &router, 5);
        assert!(pool.spare.is_empty());
        fresh.report_progress(0.2);
        assert_eq!(
            rx.try_recv().ok(),
            Some((5, Report::Progress(Progress::from_basis_points(2_000))))
        );
    }

    /// A run's context: reports reach the router tagged with the run's key, and its token
    /// (in the same allocation) cancels every clone and wakes waiters.
    #[test]
    fn a_run_context_reports_by_key_and_cancels_through_its_token() {
        let (router, mut rx) = RunRouter::new();
        let ctx = AgentContext::for_run(router, 42);
        let token = ctx.cancel_token().clone();
        ctx.report_progress(0.5);
        ctx.clone().hand_off(serde_json::json!({"a": 1}));
        assert_eq!(
            rx.try_recv().ok(),
            Some((42, Report::Progress(Progress::from_basis_points(5_000))))
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some((42, Report::Handoff(serde_json::json!({"a": 1}))))
        );
        let mut waiting = ctx.cancelled();
        assert!((&mut waiting).now_or_never().is_none());
        assert!(!ctx.is_cancelled());
        token.cancel();
        assert!(ctx.is_cancelled() && ctx.clone().is_cancelled());
        assert!(waiting.now_or_never().is_some());
        // A host's own token is still the one a context made with it sees.
        let own = CancelToken::new();
        let hosted = AgentContext::detached(own.clone());
        own.cancel();
        assert!(hosted.is_cancelled());
    }

    #[test]
    fn cancellation_wakes_every_waiter_and_is_idempotent() {
        let (ctx, handle) = AgentContext::new();
        let mut a = ctx.cancelled();
        let mut b = ctx.clone().cancelled();
        assert!((&mut a).now_or_never().is_none());
        assert!((&mut b).now_or_never().is_none());
        assert!(!ctx.is_cancelled());
        handle.cancel();
        handle.cancel();
        assert!(ctx.is_cancelled());
        assert_eq!(a.now_or_never(), Some(()));
        assert_eq!(b.now_or_never(), Some(()));
        assert_eq!(ctx.cancelled().now_or_never(), Some(()));
    }

    #[test]
    fn reports_arrive_in_order_and_the_stream_ends_with_the_context() {
        let (ctx, mut handle) = AgentContext::new();
        ctx.report_progress(0.25);
        ctx.hand_off(serde_json::json!({"partial": true}));
        ctx.report_progress(0.5);
        drop(ctx);
        let all: Vec<Report> =
            futures::executor::block_on(futures::StreamExt::collect::<Vec<_>>(&mut handle));
        assert_eq!(
            all,
            vec![
                Report::Progress(Progress::from_basis_points(2500)),
                Report::Handoff(serde_json::json!({"partial": true})),
                Report::Progress(Progress::from_basis_points(5000)),
            ]
        );
    }

    #[test]
    fn a_custom_sink_sees_the_reports_of_every_clone() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let seen = Arc::clone(&seen);
            move |r: Report| seen.lock().unwrap().push(r)
        };
        let ctx = AgentContext::with_sink(Arc::new(sink), CancelToken::new());
        let other = ctx.clone();
        ctx.report_progress(0.5);
        other.report_progress(0.4);
        other.hand_off(serde_json::json!(1));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Report::Progress(Progress::from_basis_points(5000)),
                Report::Handoff(serde_json::json!(1))
            ]
        );
    }

    #[test]
    fn reports_become_engine_inputs_of_their_attempt() {
        let work = Work::Planning(milestone_core::engine::AnalysisKind::Risk);
        let p = Progress::from_basis_points(10);
        assert_eq!(
            Report::Progress(p).into_input(work.clone(), 2),
            Input::Progress {
                work: work.clone(),
                attempt: 2,
                progress: p
            }
        );
        assert_eq!(
            Report::Handoff(serde_json::json!(1)).into_input(work.clone(), 3),
            Input::Handoff {
                work,
                attempt: 3,
                partial: serde_json::json!(1)
            }
        );
    }

    #[test]
    fn detached_context_discards_reports_but_sees_cancellation() {
        let token = CancelToken::new();
        let ctx = AgentContext::detached(token.clone());
        ctx.report_progress(0.9);
        assert_eq!(ctx.last_progress(), Progress::from_basis_points(9000));
        token.cancel();
        assert!(ctx.is_cancelled());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Whatever a runner reports, the handle sees strictly increasing progress ending at
        /// the maximum reported.
        #[test]
        fn progress_seen_by_the_handle_is_strictly_increasing(
            fractions in proptest::collection::vec(-0.5f64..1.5, 0..40)
        ) {
            let (ctx, mut handle) = AgentContext::new();
            for f in &fractions {
                ctx.report_progress(*f);
            }
            let seen: Vec<u16> = handle.drain().into_iter().map(|r| match r {
                Report::Progress(p) => p.basis_points(),
                Report::Handoff(_) => u16::MAX,
            }).collect();
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]));
            let max = fractions.iter().map(|f| Progress::from_fraction(*f).basis_points()).max().unwrap_or(0);
            prop_assert_eq!(seen.last().copied().unwrap_or(0), max);
        }
    }
}
