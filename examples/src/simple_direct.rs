//! The `simple_direct` example: a small milestone, "Add login feature", run **directly**.
//!
//! ```text
//! cargo run --example simple_direct
//! ```
//!
//! The host binds two runners for every phase and for tasks: an *agent* (in a real host, an LLM
//! command-line tool; here an in-process stand-in that records its calls) and a cheap *direct*
//! runner that does the work in-process. The orchestrator uses [`ModePolicy::Auto`]: when
//! execution starts it assesses the recorded plan's complexity ([`complexity::assess`]: three
//! tasks and four files are **low**) and decides ([`complexity::decide`]) on **direct**
//! execution, so every phase and task runs on its direct runner and the agents are never
//! called, though they are bound and available: coordinating agents costs more than a small
//! change is worth. (The execute phase has no runner of its own: its work is its tasks.)
//!
//! The store and git are in memory ([`InMemory`], [`InMemoryGit`]): nothing is written to disk.

use std::error::Error;
use std::sync::Arc;

use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Report};
use milestone_agents::{AgentError, AgentOutput, AgentRequest, FnAgent, Orchestrator, PlanSpec};
use milestone_agents::{Registry, role_name};
use milestone_core::complexity::{self, Complexity, ComplexityInput};
use milestone_core::engine::Role;
use milestone_core::{MilestoneId, MilestoneState, MilestoneStatus, Workflow};
use milestone_git::{InMemoryGit, RefName};
use milestone_state::{InMemory, StateStore};

use crate::support::{
    self, Calls, PLANNING_ROLES, analyst, branch_log, complexity_name, mode_name, phase_of, record,
    say_branch_log, take,
};
use crate::{Out, say};

/// What the example did, for callers (and the example's test) to check.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The milestone's id.
    pub id: MilestoneId,
    /// The complexity the plan was assessed at.
    pub complexity: Complexity,
    /// The orchestrator's report of the execution (its `mode` is the mode it chose).
    pub report: Report,
    /// Every call on an agent, as `runner: work` (empty when the run was direct).
    pub agent_calls: Vec<String>,
    /// Every call on a direct runner, as `runner: work`.
    pub direct_calls: Vec<String>,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
    /// The one-line log of the milestone branch, newest first (`<commit> <message>`).
    pub git_log: Vec<String>,
}

const TITLE: &str = "Add login feature";

/// Runs the example, writing its report to `out`.
///
/// # Errors
/// Any store, git, orchestrator or I/O error, as a boxed error with its message.
pub fn run(out: Out) -> Result<Summary, Box<dyn Error>> {
    let workflow = Workflow::kiro();
    let agent_calls: Calls = Arc::default();
    let direct_calls: Calls = Arc::default();
    let store = Arc::new(InMemory::new());
    let git = Arc::new(InMemoryGit::new());
    block_on(support::initial_commit(&*git, b"# web app\n"))?;
    let orchestrator = Orchestrator::builder()
        .workflow(workflow.clone())
        .registry(registry(&agent_calls, &direct_calls))
        .store(store.clone())
        .git(git.clone(), RefName::new("main")?)
        .mode(ModePolicy::Auto)
        .build()?;

    let id = MilestoneId::new("add-login")?;
    say!(out, "milestone: {TITLE}\n")?;
    let plan = block_on(orchestrator.plan(PlanSpec::new(id.clone(), TITLE)))?;
    let input = ComplexityInput::for_plan(&plan, &workflow);
    let assessed = complexity::assess(&input);
    say!(
        out,
        "plan: {} tasks ({}), {} files, {} phases",
        input.tasks,
        plan.tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        input.files,
        input.phases
    )?;
    say!(
        out,
        "complexity: {} -> with agents available, decide() says {}",
        complexity_name(assessed),
        mode_name(complexity::decide(assessed, true))
    )?;

    block_on(orchestrator.transition(&id))?;
    let report = block_on(orchestrator.execute(&id))?;
    say!(out, "\nexecution mode chosen: {}", mode_name(report.mode))?;
    let direct = take(&direct_calls);
    let agents = take(&agent_calls);
    say!(out, "direct runner calls ({}):", direct.len())?;
    for call in &direct {
        say!(out, "  {call}")?;
    }
    say!(out, "agent calls: {}", agents.len())?;
    say!(
        out,
        "runs: {} ({} direct by mode, {} by agents)",
        report.metrics.runs,
        report.metrics.direct_runs,
        report.metrics.agent_runs
    )?;

    let state = block_on(store.load(&id))?.state;
    let git_log = block_on(branch_log(&*git, &state))?;
    say_branch_log(&out, &support::branch_of(&state), &git_log)?;
    say!(out, "\nstatus: {}", state.status())?;
    if state.status() != MilestoneStatus::Completed {
        return Err(format!("the milestone did not complete: {}", state.status()).into());
    }
    Ok(Summary {
        id,
        complexity: assessed,
        report,
        agent_calls: agents,
        direct_calls: direct,
        state,
        git_log,
    })
}

/// The runners. Planning: four in-process analysts. Execution: an agent and a direct runner
/// for every phase and for tasks, each recording its calls.
fn registry(agent_calls: &Calls, direct_calls: &Calls) -> Registry {
    let mut r = Registry::new();
    for role in PLANNING_ROLES {
        r.bind_direct(role, analyst(analysis));
    }
    let (a, d) = (Arc::clone(agent_calls), Arc::clone(direct_calls));
    r.bind_any_phase(FnAgent::sync("phase-agent", move |req| {
        record(&a, format!("phase-agent: {}", req.work));
        phase_output(&req)
    }));
    r.bind_direct_any_phase(FnAgent::sync("phase-direct", move |req| {
        record(&d, format!("phase-direct: {}", req.work));
        phase_output(&req)
    }));
    let (a, d) = (Arc::clone(agent_calls), Arc::clone(direct_calls));
    r.bind(
        Role::Task,
        FnAgent::sync("task-agent", move |req| {
            record(&a, format!("task-agent: {}", req.work));
            Ok(AgentOutput::new(format!("agent did {}", req.work)))
        }),
    );
    r.bind_direct(
        Role::Task,
        FnAgent::sync("task-direct", move |req| {
            record(&d, format!("task-direct: {}", req.work));
            Ok(AgentOutput::new(format!("did {} in-process", req.work)))
        }),
    );
    r
}

/// What each planning analysis finds: a small change — three tasks, four files.
fn analysis(role: &Role) -> serde_json::Value {
    match role_name(role) {
        "scope" => serde_json::json!({
            "components": ["login form", "session check"], "file_count": 4}),
        "estimation" => support::estimation(
            [1_800_000, 1_800_000, 900_000, 7_200_000],
            20,
            serde_json::json!([
                {"id": "login-form", "title": "login form"},
                {"id": "session-check", "title": "session check"},
                {"id": "login-tests", "title": "login tests",
                 "dependencies": ["login-form", "session-check"]}]),
        ),
        "risk" => serde_json::json!({"risks": []}),
        _ => serde_json::json!({
            "keep": [{"description": "the user model", "phase": "design"}],
            "improve": [{"description": "error messages", "phase": "spec"}],
            "originate": [{"description": "the login form", "phase": "execute"}]}),
    }
}

/// A phase's output, naming the phase's expected outputs (its quality gate checks them).
fn phase_output(req: &AgentRequest) -> Result<AgentOutput, AgentError> {
    let phase = phase_of(&req.work)?;
    Ok(support::phase_output(
        &Workflow::kiro(),
        &req.work,
        TITLE,
        format!("{phase} done"),
    ))
}
