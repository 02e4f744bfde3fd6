//! `Orchestrator::open` and `Session`: a milestone loaded once, run, inspected, and refused
//! when it is claimed or when its run failed.

mod orchestrator_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::executor::block_on;
use milestone_agents::orchestrator::{
    InMemoryCache, Orchestrator, OrchestratorBuilder, OrchestratorError, PlanSpec,
};
use milestone_core::{Event, MilestoneId, MilestoneStatus, Mode};
use milestone_state::{Checkpoint, InMemory, Loaded, StateStore, StoreError};
use orchestrator_support::*;

/// A planned, transitioned milestone `m` in `store`, and an orchestrator over it.
fn ready(store: Arc<dyn StateStore>, log: &RunLog, m: &MilestoneId) -> Orchestrator {
    ready_with(Orchestrator::builder(), store, log, m)
}

/// As [`ready`], from a builder the test has configured further (a result cache, say).
fn ready_with(
    builder: OrchestratorBuilder,
    store: Arc<dyn StateStore>,
    log: &RunLog,
    m: &MilestoneId,
) -> Orchestrator {
    let o = builder
        .registry(registry(log))
        .store(store)
        .build()
        .unwrap();
    block_on(async {
        o.plan(PlanSpec::new(m.clone(), "Add login")).await?;
        o.transition(m).await
    })
    .unwrap();
    o
}

#[test]
fn a_session_runs_once_and_shows_the_state_it_left() {
    let log = RunLog::default();
    let store = Arc::new(InMemory::new());
    let m = id("login");
    let o = ready(store.clone(), &log, &m);
    let mut session = block_on(o.open(&m)).unwrap();
    let opened_at = session.version();
    assert_eq!(opened_at, block_on(store.load(&m)).unwrap().version);
    assert_eq!(session.state().mode(), Mode::Execution);
    assert_eq!(session.state().status(), MilestoneStatus::Active);
    assert!(log.lock().unwrap().is_empty(), "opening runs nothing");

    let report = block_on(session.execute()).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.metrics.runs, 6);
    assert_eq!(session.state().status(), MilestoneStatus::Completed);
    assert_eq!(session.version(), report.version);
    // Every event this run stored is counted once, and nothing else.
    assert_eq!(report.metrics.events_appended, report.version - opened_at);
    assert!(report.metrics.appends > 0);
    assert_eq!(
        block_on(store.load(&m)).unwrap().state,
        *session.state(),
        "the session's state is the store's"
    );
    let line = report.to_string();
    for part in [
        "milestone login: completed (completed), 100",
        "mode",
        "6 runs (0 agent, 6 direct, 0 fallback, 0 degraded), 0 cache hits, 0 failures, 0 timeouts",
        &format!("{} events in", report.metrics.events_appended),
    ] {
        assert!(line.contains(part), "{line:?} lacks {part:?}");
    }
    // Running again runs nothing more.
    let again = block_on(session.execute()).unwrap();
    assert_eq!(again.status, MilestoneStatus::Completed);
    assert_eq!(again.metrics.runs, 0);
    assert_eq!(log.lock().unwrap().len(), 6);
}

#[test]
fn an_open_session_claims_its_milestone() {
    let log = RunLog::default();
    let m = id("claimed");
    let o = ready(Arc::new(InMemory::new()), &log, &m);
    let session = block_on(o.open(&m)).unwrap();
    assert!(matches!(
        block_on(o.execute(&m)),
        Err(OrchestratorError::AlreadyRunning(x)) if x == m
    ));
    assert!(matches!(
        block_on(o.open(&m)),
        Err(OrchestratorError::AlreadyRunning(_))
    ));
    drop(session);
    assert_eq!(
        block_on(o.execute(&m)).unwrap().status,
        MilestoneStatus::Completed
    );
    assert!(matches!(
        block_on(o.open(&id("nowhere"))),
        Err(OrchestratorError::NotFound(x)) if x == id("nowhere")
    ));
}

/// A store whose appends fail once `budget` of them have been made; it counts the snapshots
/// it is asked for.
#[derive(Debug)]
struct Failing {
    inner: InMemory,
    budget: AtomicUsize,
    snapshots: AtomicUsize,
}

impl Failing {
    /// An empty store that does not fail until a budget is set.
    fn new() -> Arc<Failing> {
        Arc::new(Failing {
            inner: InMemory::new(),
            budget: AtomicUsize::new(usize::MAX),
            snapshots: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl StateStore for Failing {
    async fn create(&self, created: &Event) -> Result<u64, StoreError> {
        self.inner.create(created).await
    }
    async fn append(&self, id: &MilestoneId, v: u64, events: &[Event]) -> Result<u64, StoreError> {
        if self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_err()
        {
            return Err(StoreError::Io {
                path: "log.jsonl".into(),
                source: std::io::Error::other("the disk is gone"),
            });
        }
        self.inner.append(id, v, events).await
    }
    async fn load(&self, id: &MilestoneId) -> Result<Loaded, StoreError> {
        self.inner.load(id).await
    }
    async fn list(&self) -> Result<Vec<MilestoneId>, StoreError> {
        self.inner.list().await
    }
    async fn checkpoint(
        &self,
        id: &MilestoneId,
        label: &str,
        at: milestone_core::Timestamp,
    ) -> Result<Checkpoint, StoreError> {
        self.inner.checkpoint(id, label, at).await
    }
    async fn checkpoints(&self, id: &MilestoneId) -> Result<Vec<Checkpoint>, StoreError> {
        self.inner.checkpoints(id).await
    }
    async fn restore(
        &self,
        id: &MilestoneId,
        label: &str,
        at: milestone_core::Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.restore(id, label, at).await
    }
    async fn read_events(&self, id: &MilestoneId, from: u64) -> Result<Vec<Event>, StoreError> {
        self.inner.read_events(id, from).await
    }
    async fn snapshot(&self, id: &MilestoneId) -> Result<u64, StoreError> {
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.snapshot(id).await
    }
    async fn delete(&self, id: &MilestoneId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

/// A store snapshot is written at each checkpoint the engine records when, and only when, the
/// orchestrator is built to do so.
#[test]
fn checkpoints_write_snapshots_only_when_asked() {
    for asked in [false, true] {
        let log = RunLog::default();
        let store = Failing::new();
        let m = id("snapshots");
        let o = ready_with(
            Orchestrator::builder().snapshot_at_checkpoints(asked),
            store.clone(),
            &log,
            &m,
        );
        let before = store.snapshots.load(Ordering::SeqCst);
        let opened_at = block_on(store.load(&m)).unwrap().version;
        let report = block_on(o.execute(&m)).unwrap();
        assert_eq!(report.status, MilestoneStatus::Completed);
        let recorded = block_on(store.read_events(&m, opened_at))
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::CheckpointRecorded { .. }))
            .count();
        // Execution start and each phase boundary.
        assert!(recorded >= 2, "{recorded} checkpoints recorded");
        let taken = store.snapshots.load(Ordering::SeqCst) - before;
        assert_eq!(taken, if asked { recorded } else { 0 }, "asked: {asked}");
    }
}

#[test]
fn a_failed_session_is_not_run_again_and_a_new_one_finishes() {
    let log = RunLog::default();
    let store = Failing::new();
    let m = id("flaky");
    let o = ready(store.clone(), &log, &m);
    // Two more appends succeed, then the store fails.
    store.budget.store(2, Ordering::SeqCst);
    let mut session = block_on(o.open(&m)).unwrap();
    assert!(matches!(
        block_on(session.execute()),
        Err(OrchestratorError::Store(_))
    ));
    assert!(matches!(
        block_on(session.execute()),
        Err(OrchestratorError::SessionFailed(x)) if x == m
    ));
    drop(session);
    store.budget.store(usize::MAX, Ordering::SeqCst);
    let report = block_on(async { o.open(&m).await?.execute().await }).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    let stored = block_on(store.load(&m)).unwrap();
    assert_eq!(stored.state.status(), MilestoneStatus::Completed);
    assert_eq!(stored.version, report.version);
}

/// What a batch's events mean for the result cache takes effect once the store holds them: a
/// completion whose append failed is not cached (a later run would take it for done work).
#[test]
fn a_completion_the_store_refused_is_not_cached() {
    let log = RunLog::default();
    let store = Failing::new();
    let cache = Arc::new(InMemoryCache::new());
    let m = id("cached");
    let o = ready_with(
        Orchestrator::builder().cache(cache.clone()),
        store.clone(),
        &log,
        &m,
    );
    // The first append of the run (the start of design) succeeds; the one holding design's
    // completion fails.
    store.budget.store(1, Ordering::SeqCst);
    assert!(matches!(
        block_on(o.execute(&m)),
        Err(OrchestratorError::Store(_))
    ));
    let stored = block_on(store.load(&m)).unwrap().state;
    assert!(!stored.phase("design").unwrap().item.status.is_done());
    assert_eq!(cache.len(), 0, "nothing the store refused is cached");
    store.budget.store(usize::MAX, Ordering::SeqCst);
    let report = block_on(o.execute(&m)).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert!(
        !cache.is_empty(),
        "stored completions of reusable phases are cached"
    );
}
