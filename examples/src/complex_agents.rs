//! The `complex_agents` example: a large milestone, "Refactor authentication system", run by
//! **agents** with tasks in parallel, and compared with running it directly.
//!
//! ```text
//! cargo run --example complex_agents
//! ```
//!
//! The plan has 24 tasks (eight components, each extracted, migrated and tested in turn) over 60
//! files, so [`complexity::assess`] says **high**; every phase has an available agent, so under
//! [`ModePolicy::Auto`] the orchestrator decides on **agents**: each phase and task runs on its
//! agent, and the eight independent chains of tasks run side by side.
//!
//! To show what that buys, the same plan is first run as a **direct baseline**: a second
//! milestone, forced to direct execution ([`ModePolicy::Fixed`]) and one step at a time
//! (`max_concurrency(1)`), as a host doing the work in its own process would. The two runs'
//! [`ExecutionMetrics::run_metrics`](milestone_agents::orchestrator::ExecutionMetrics::run_metrics)
//! go to [`complexity::compare`], which reports the speedup, parallelism, resource efficiency
//! and quality ratios and recommends a mode. The runners here are in-process stand-ins that
//! take a little real time (an agent a little longer per call than the direct runner: it has to
//! start up), so the figures are real measurements of this machine, not constants.
//!
//! The store and git are in memory: nothing is written to disk.

use std::error::Error;
use std::sync::Arc;

use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Report};
use milestone_agents::{
    AgentError, AgentOutput, AgentRequest, Clock, Orchestrator, PlanSpec, Registry, SystemClock,
    role_name,
};
use milestone_core::complexity::{self, Comparison, Complexity, ComplexityInput, ExecutionMode};
use milestone_core::engine::{Role, Work};
use milestone_core::{ItemRef, MilestoneId, MilestoneState, Workflow};
use milestone_git::{InMemoryGit, RefName};
use milestone_state::{InMemory, StateStore};

use crate::support::{
    self, Calls, PLANNING_ROLES, analyst, complexity_name, mode_name, recommendation_name, record,
    take,
};
use crate::{Out, say};

/// What the example did, for callers (and the example's test) to check.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The complexity the plan was assessed at.
    pub complexity: Complexity,
    /// The report of the agent run (its `mode` is the mode [`ModePolicy::Auto`] chose).
    pub agents: Report,
    /// The report of the direct baseline.
    pub direct: Report,
    /// The agent run compared with the direct baseline.
    pub comparison: Comparison,
    /// Calls on agents during the agent run's execution, as `runner: work`.
    pub agent_calls: Vec<String>,
    /// Calls on direct runners during the direct baseline's execution, as `runner: work`.
    pub direct_calls: Vec<String>,
    /// The agent run's final state.
    pub state: MilestoneState,
}

const TITLE: &str = "Refactor authentication system";
/// The components the refactoring touches; each gets an extract → migrate → test chain.
const COMPONENTS: [&str; 8] = [
    "token-service",
    "session-store",
    "login-api",
    "password-reset",
    "oauth",
    "mfa",
    "audit-log",
    "admin-console",
];
/// What one call costs, in milliseconds: (agent, direct). An agent has to start up.
const PHASE_MS: (u64, u64) = (20, 10);
const TASK_MS: (u64, u64) = (25, 15);

/// Runs the example, writing its report to `out`.
///
/// # Errors
/// Any store, git, orchestrator or I/O error, as a boxed error with its message.
pub fn run(out: Out) -> Result<Summary, Box<dyn Error>> {
    let workflow = Workflow::kiro();
    let store = Arc::new(InMemory::new());
    let git = Arc::new(InMemoryGit::new());
    block_on(support::initial_commit(&*git, b"# auth service\n"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let agent_calls: Calls = Arc::default();
    let direct_calls: Calls = Arc::default();
    let orchestrator = |mode: ModePolicy, concurrency: usize| {
        Orchestrator::builder()
            .workflow(workflow.clone())
            .registry(registry(&clock, &agent_calls, &direct_calls))
            .clock(Arc::clone(&clock))
            .store(store.clone())
            .git(git.clone(), RefName::new("main")?)
            .mode(mode)
            .max_concurrency(concurrency)
            .build()
            .map_err(Box::<dyn Error>::from)
    };
    say!(out, "milestone: {TITLE}\n")?;

    // The real run: Auto looks at the plan and will pick the mode when execution starts.
    let auto = orchestrator(ModePolicy::Auto, 64)?;
    let id = MilestoneId::new("auth-refactor")?;
    let plan = block_on(auto.plan(PlanSpec::new(id.clone(), TITLE)))?;
    let input = ComplexityInput::for_plan(&plan, &workflow);
    let assessed = complexity::assess(&input);
    say!(
        out,
        "plan: {} tasks in {} independent chains, {} files -> complexity {}",
        input.tasks,
        COMPONENTS.len(),
        input.files,
        complexity_name(assessed)
    )?;
    block_on(auto.transition(&id))?;

    // The direct baseline: the same plan, in-process, one step at a time.
    let baseline = orchestrator(ModePolicy::Fixed(ExecutionMode::Direct), 1)?;
    let direct_id = MilestoneId::new("auth-refactor-direct")?;
    block_on(baseline.plan(PlanSpec::new(direct_id.clone(), TITLE)))?;
    block_on(baseline.transition(&direct_id))?;
    clear(&agent_calls, &direct_calls);
    let direct = block_on(baseline.execute(&direct_id))?;
    let direct_log = take(&direct_calls);
    say!(
        out,
        "\ndirect baseline: mode {}, {} direct runs, one at a time, {} ms",
        mode_name(direct.mode),
        direct.metrics.direct_runs,
        direct.metrics.duration_ms()
    )?;

    // The real run's execution.
    clear(&agent_calls, &direct_calls);
    let agents = block_on(auto.execute(&id))?;
    let agent_log = take(&agent_calls);
    say!(
        out,
        "agent run:       mode {}, {} agent runs, {} at most at once, {} ms",
        mode_name(agents.mode),
        agents.metrics.agent_runs,
        agents.metrics.max_parallel,
        agents.metrics.duration_ms()
    )?;

    let comparison =
        complexity::compare(&direct.metrics.run_metrics(), &agents.metrics.run_metrics());
    say!(out, "\ndirect vs agents (complexity::compare)")?;
    say!(
        out,
        "  speedup              {:.2}x  (direct duration / agent duration)",
        comparison.speedup
    )?;
    say!(
        out,
        "  parallelism          {:.2}x  (agent tasks at once / direct tasks at once)",
        comparison.parallelism
    )?;
    say!(
        out,
        "  resource efficiency  {:.2}x  (direct busy time / agent busy time)",
        comparison.resource_efficiency
    )?;
    say!(
        out,
        "  quality              {:.2}x  (agent quality / direct quality)",
        comparison.quality
    )?;
    say!(
        out,
        "  recommendation       {}",
        recommendation_name(comparison.recommendation)
    )?;

    let state = block_on(store.load(&id))?.state;
    say!(out, "\nstatus: {}", state.status())?;
    if !agents.is_completed() || !direct.is_completed() {
        return Err(format!(
            "a run did not complete: agents {}, direct {}",
            agents.status, direct.status
        )
        .into());
    }
    Ok(Summary {
        complexity: assessed,
        agents,
        direct,
        comparison,
        agent_calls: agent_log,
        direct_calls: direct_log,
        state,
    })
}

fn clear(a: &Calls, b: &Calls) {
    for calls in [a, b] {
        if let Ok(mut c) = calls.lock() {
            c.clear();
        }
    }
}

/// The runners: four planning analysts (agents), and for every phase and for tasks an agent
/// and a direct runner. Each call sleeps for its cost on the orchestrator's clock and is
/// recorded in `agent_calls` or `direct_calls`.
fn registry(clock: &Arc<dyn Clock>, agent_calls: &Calls, direct_calls: &Calls) -> Registry {
    let mut r = Registry::new();
    for role in PLANNING_ROLES {
        r.bind(role, analyst(analysis));
    }
    r.bind_any_phase(worker(clock, agent_calls, "phase-agent", PHASE_MS.0));
    r.bind_direct_any_phase(worker(clock, direct_calls, "phase-direct", PHASE_MS.1));
    r.bind(
        Role::Task,
        worker(clock, agent_calls, "task-agent", TASK_MS.0),
    );
    r.bind_direct(
        Role::Task,
        worker(clock, direct_calls, "task-direct", TASK_MS.1),
    );
    r
}

/// A runner named `name` that records `name: work`, takes `ms` milliseconds and does the work.
fn worker(
    clock: &Arc<dyn Clock>,
    calls: &Calls,
    name: &'static str,
    ms: u64,
) -> impl milestone_agents::AgentRunner + 'static {
    let calls = Arc::clone(calls);
    let on_call = move |req: &AgentRequest| record(&calls, format!("{name}: {}", req.work));
    support::worker(clock, name, ms, on_call, output)
}

/// What a run produces: a phase names its expected outputs (its quality gate checks them); a
/// task reports that its tests passed.
fn output(req: &AgentRequest, by: &str) -> Result<AgentOutput, AgentError> {
    let out = support::done_by(req, TITLE, by)?;
    Ok(match &req.work {
        Work::Item(ItemRef::Task(_)) => out.with_quality("tests-passed", 1.0),
        _ => out,
    })
}

/// What each planning analysis finds: 24 tasks over 60 files.
fn analysis(role: &Role) -> serde_json::Value {
    match role_name(role) {
        "scope" => serde_json::json!({"components": COMPONENTS, "file_count": 60}),
        "estimation" => {
            let tasks: Vec<serde_json::Value> = COMPONENTS
                .iter()
                .flat_map(|c| {
                    support::chain(&[
                        (format!("{c}-extract"), format!("extract {c}")),
                        (format!("{c}-migrate"), format!("migrate {c}")),
                        (format!("{c}-test"), format!("test {c}")),
                    ])
                })
                .collect();
            support::estimation(
                [14_400_000, 21_600_000, 7_200_000, 57_600_000],
                25,
                tasks.into(),
            )
        }
        "risk" => serde_json::json!({"risks": [{
            "description": "existing sessions are invalidated by the new token format",
            "probability": "medium", "impact": "high",
            "mitigation": "accept both formats during a grace period",
            "contingency": "roll back the token service"}]}),
        _ => serde_json::json!({
            "keep": [{"description": "the public login API", "phase": "spec"}],
            "improve": [{"description": "token validation in one place", "phase": "design"}],
            "remove": [{"description": "three duplicated session checks", "phase": "execute"}],
            "originate": [{"description": "audit logging of logins", "phase": "task"}]}),
    }
}
