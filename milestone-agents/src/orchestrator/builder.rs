//! [`OrchestratorBuilder`]: everything an [`Orchestrator`] is made of, with defaults.

use std::sync::Arc;

use milestone_core::engine::{EngineConfig, RecoveryConfig, Strategy};
use milestone_core::{ExecutionMode, Workflow};
use milestone_git::{GitBackend, MilestoneGit, RefName};
use milestone_state::StateStore;

use super::cache::ResultCache;
use super::events::{EventListener, Hub};
use super::gate::QualityGate;
use super::{Inner, Orchestrator, OrchestratorError};
use crate::clock::{Clock, SystemClock};
use crate::registry::Registry;

/// How the execution mode is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ModePolicy {
    /// From the plan's complexity and agent availability
    /// ([`complexity::assess`](milestone_core::complexity::assess) then
    /// [`complexity::decide`](milestone_core::complexity::decide)): high with agents available →
    /// agents, medium → hybrid, low or no agents → direct.
    #[default]
    Auto,
    /// Always this mode.
    Fixed(ExecutionMode),
}

/// Builds an [`Orchestrator`]. Only the store is required.
///
/// Defaults: the KIRO workflow, an empty registry (planning then needs runners for the four
/// analyses; aggregation falls back to the built-in one), the [`SystemClock`], no git, no
/// listeners, the default [`EngineConfig`], no cache, no host gate, [`ModePolicy::Auto`],
/// and a store snapshot at each checkpoint.
#[derive(Default)]
#[must_use = "a builder does nothing until built"]
pub struct OrchestratorBuilder {
    workflow: Option<Workflow>,
    registry: Registry,
    store: Option<Arc<dyn StateStore>>,
    git: Option<(Arc<dyn GitBackend>, RefName)>,
    clock: Option<Arc<dyn Clock>>,
    listeners: Vec<Arc<dyn EventListener>>,
    config: EngineConfig,
    cache: Option<Arc<dyn ResultCache>>,
    gate: Option<Arc<dyn QualityGate>>,
    mode: ModePolicy,
    snapshots: bool,
}

impl std::fmt::Debug for OrchestratorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("registry", &self.registry)
            .field("store", &self.store)
            .field("git", &self.git.as_ref().map(|(_, base)| base))
            .field("config", &self.config)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl OrchestratorBuilder {
    /// The workflow new milestones are planned with (default [`Workflow::kiro`]).
    pub fn workflow(mut self, workflow: Workflow) -> Self {
        self.workflow = Some(workflow);
        self
    }

    /// The runners, by role.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The state store (required).
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A git backend and the base branch milestones branch from and merge into.
    pub fn git(mut self, backend: Arc<dyn GitBackend>, base: RefName) -> Self {
        self.git = Some((backend, base));
        self
    }

    /// The clock (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Adds a listener of every appended event.
    pub fn listener(mut self, listener: Arc<dyn EventListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The whole engine configuration (strategy, concurrency, recovery, gates, merge).
    pub fn engine_config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The phase strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.config.strategy = strategy;
        self
    }

    /// The most runs in flight at once, phases and tasks together.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.config.max_concurrency = n;
        self
    }

    /// The recovery chain.
    pub fn recovery(mut self, recovery: RecoveryConfig) -> Self {
        self.config.recovery = recovery;
        self
    }

    /// Whether a completed milestone is merged into the base branch (needs git).
    pub fn merge(mut self, merge: bool) -> Self {
        self.config.merge = merge;
        self
    }

    /// The result cache.
    pub fn cache(mut self, cache: Arc<dyn ResultCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The host's quality gate, for the phases in the engine's `host_gates`.
    pub fn gate(mut self, gate: Arc<dyn QualityGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// How the execution mode is chosen.
    pub fn mode(mut self, mode: ModePolicy) -> Self {
        self.mode = mode;
        self
    }

    /// Whether each engine checkpoint also writes a store snapshot (default false), so that a
    /// later load replays only the tail of the log. Not needed for correctness: a checkpoint is
    /// a position in the log and a restore replays up to it; the store's own cadence (a
    /// `FileStore` snapshots every 10,000 events by default) already bounds replay. A snapshot
    /// copies the whole state, which costs more than a durable append in a large milestone.
    pub fn snapshot_at_checkpoints(mut self, yes: bool) -> Self {
        self.snapshots = yes;
        self
    }

    /// Builds the orchestrator.
    ///
    /// # Errors
    /// [`OrchestratorError::Config`] when no store was given, the engine configuration is
    /// invalid (every problem listed), or a merge is asked for without git.
    pub fn build(self) -> Result<Orchestrator, OrchestratorError> {
        let mut problems = Vec::new();
        if let Err(p) = self.config.validate() {
            problems.push(p.to_string());
        }
        if self.config.merge && self.git.is_none() {
            problems.push("merge is enabled but no git backend is configured".to_owned());
        }
        let Some(store) = self.store else {
            problems.push("no state store is configured".to_owned());
            return Err(OrchestratorError::Config(problems.join("; ")));
        };
        if !problems.is_empty() {
            return Err(OrchestratorError::Config(problems.join("; ")));
        }
        let git = self
            .git
            .map(|(backend, base)| Arc::new(MilestoneGit::new(backend, base)));
        Ok(Orchestrator {
            inner: Arc::new(Inner {
                workflow: self.workflow.unwrap_or_else(Workflow::kiro),
                registry: self.registry,
                store,
                git,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
                hub: Hub::new(self.listeners),
                config: self.config,
                cache: self.cache,
                gate: self.gate,
                mode: self.mode,
                snapshots: self.snapshots,
                aggregator: Arc::new(super::aggregate::BuiltinAggregator),
                running: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }
}
