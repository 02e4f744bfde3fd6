//! # milestone-agents
//!
//! The async shell around the pure engine of `milestone-core`: the things that actually do a
//! milestone's work. An **agent** is anything that can take one unit of work — a planning
//! analysis, a phase, a task, a git operation — and return its output: an LLM command-line
//! tool, a script, a plain Rust function. This crate defines the one trait they all implement
//! ([`AgentRunner`]), the request and context they get ([`AgentRequest`], [`AgentContext`]),
//! what they return ([`AgentOutput`] / [`AgentError`]), a [`Registry`] binding the engine's
//! roles to runners with a direct (in-process) fallback per role, the built-in runners
//! ([`FnAgent`], [`ScriptedAgent`], [`CommandAgent`]) and a [`Clock`] for deadlines.
//!
//! **Architecture Invariant:** nothing here needs a particular executor. Runners are plain
//! `async fn`s; sleeps come from a [`Clock`] ([`SystemClock`] serves every sleep from one
//! shared timer thread, [`ManualClock`] moves only when a test says so); a [`CommandAgent`]
//! reads its pipes on helper threads feeding futures channels. The crate runs the same under
//! `futures::executor`, tokio or async-std.
//!
//! ```
//! use milestone_agents::{AgentContext, AgentError, AgentOutput, AgentRequest, FnAgent,
//!     Registry, Report};
//! use milestone_core::engine::{Role, Work};
//! use milestone_core::{ItemRef, MilestoneId, PhaseId, Progress};
//!
//! // An in-process runner for every phase: it reports progress and returns an output.
//! let mut registry = Registry::new();
//! registry.bind_direct_any_phase(FnAgent::new("direct", |req: AgentRequest, ctx: AgentContext| async move {
//!     ctx.report_progress(0.5);
//!     if req.input.is_empty() {
//!         Ok(AgentOutput::new(format!("{} done", req.work)))
//!     } else {
//!         Err(AgentError::permanent("unexpected input"))
//!     }
//! }));
//!
//! let design = PhaseId::new("design")?;
//! let role = Role::Phase(design.clone());
//! let request = AgentRequest::new(MilestoneId::new("login")?, role.clone(),
//!     Work::Item(ItemRef::Phase(design)));
//! let (ctx, mut reports) = AgentContext::new();
//! let output = futures::executor::block_on(async {
//!     let runner = registry.resolve(&role, false).await?;
//!     Ok::<_, Box<dyn std::error::Error>>(runner.run(request, ctx).await?)
//! })?;
//! assert_eq!(output.summary, "phase design done");
//! assert_eq!(reports.drain(), vec![Report::Progress(Progress::from_basis_points(5000))]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The runner contract
//!
//! Summarised here, in full on [`AgentRunner`]: the idempotency key is the same for every
//! attempt of the same work, so a runner with side effects can make them happen once;
//! progress reports are monotone hints; a cancelled runner returns promptly (and dropping its
//! future is a cancellation too); output artifacts are matched by name against the phase's
//! expected outputs by the quality gate; the kind of an [`AgentError`] drives the recovery
//! chain (see [`AgentError::failure_kind`]).
//!
//! ## The orchestrator
//!
//! [`Orchestrator`] (module [`orchestrator`]) is the thin async loop around the engine: built
//! with [`Orchestrator::builder`] from a workflow, a [`Registry`], a state store, optional git,
//! a [`Clock`], listeners, engine settings (strategy, concurrency, recovery, gates, merge), a
//! result cache and a mode policy, it plans (the four analyses at once, then the aggregation —
//! built in when no runner is bound), transitions (all plan problems at once, nothing changed
//! on refusal; the milestone branch created when git is configured), executes, resumes after a
//! crash, answers interventions and cancels. Every call rebuilds the engine from the stored
//! event log, persists each step's events before acting on them, and reports progress, per-phase
//! timings and the run metrics of the direct-vs-agent comparison.
//!
//! ## The command protocol
//!
//! A [`CommandAgent`] child gets the request as one JSON line on stdin (shape on
//! [`AgentRequest`], versioned by its `protocol` field) and prints JSON lines on stdout:
//! `{"progress": 0.4}`, `{"handoff": …}`, then `{"output": {…}}` (or an `{"error": …}`); the
//! exit code says success (0), transient failure (75) or permanent failure (anything else).
//! The details are in the [`command`] module.

pub mod clock;
#[cfg(unix)]
pub mod command;
pub mod context;
pub mod fn_agent;
pub mod orchestrator;
pub mod output;
pub mod registry;
pub mod request;
pub mod runner;
pub mod scripted;

pub use clock::{Clock, Elapsed, ManualClock, SystemClock, with_timeout};
#[cfg(unix)]
pub use command::CommandAgent;
pub use context::{AgentContext, CancelToken, Cancelled, ContextHandle, Report, ReportSink};
pub use fn_agent::FnAgent;
pub use orchestrator::{Orchestrator, OrchestratorBuilder, OrchestratorError, PlanSpec};
pub use output::{AgentError, AgentOutput, result_input};
pub use registry::{Registry, RegistryError, Resolved, RunnerSource};
pub use request::{AgentRequest, PROTOCOL_VERSION, role_name};
pub use runner::{AgentRunner, RunNow, run_with_deadline};
pub use scripted::{Reply, Responder, ScriptHandle, ScriptedAgent};
