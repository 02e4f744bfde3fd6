//! The `hybrid` example: a medium milestone, "Add rate limiting to the public API", whose
//! design is run **directly** and whose execution is run by **agents** with tasks in parallel.
//!
//! ```text
//! cargo run --example hybrid
//! ```
//!
//! **How the choice is made.** The orchestrator chooses one execution mode per milestone and
//! applies it per role. Under [`ModePolicy::Auto`] a plan assessed **medium**
//! ([`complexity::assess`]: here 12 tasks and 30 files — more than 10 tasks or 20 files, but not
//! more than 20 tasks or 50 files) with agents available gives
//! [`ExecutionMode::Hybrid`]
//! ([`complexity::decide`]). In hybrid mode every phase *except the workflow's task phase* (KIRO's
//! `execute`, whose work is its tasks) prefers its **direct** runner, and the task phase's tasks
//! run on their **agents**. So with the KIRO workflow: `design`, `spec` and `task` run in-process,
//! and the twelve tasks of `execute` run on agents, independent ones side by side. Hybrid is not a
//! per-phase table: to run a particular phase another way, bind only the runner you want for it (a
//! phase with no direct runner falls back to its agent) or force a mode with
//! `ModePolicy::Fixed(ExecutionMode::Hybrid)`.
//!
//! **One phase at a time.** A host that wants to choose per phase — run design directly, look
//! at it, then run the rest with agents — calls
//! [`Orchestrator::execute_phase`] once per phase with the mode for that call. The example does
//! this for a second milestone of the same plan: `design` with
//! [`ExecutionMode::Direct`], then `spec`,
//! `task` and `execute` with
//! [`ExecutionMode::Agents`]. Each call runs
//! only its phase (`execute`: its tasks), commits it, and leaves the milestone active; the call
//! for the last phase completes and tags it.
//!
//! Both kinds of runner are bound for every phase and for tasks, and each records its calls, so
//! the example (and its test) can show which runner ran which phase. The store is a durable
//! [`FileStore`]; git is the real `git` program, on a repository in `repo_dir`.

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Report};
use milestone_agents::{
    AgentError, AgentOutput, AgentRequest, AgentRunner, Clock, Orchestrator, PlanSpec, Registry,
    SystemClock, role_name,
};
use milestone_core::complexity::ExecutionMode;
use milestone_core::complexity::{self, Complexity, ComplexityInput};
use milestone_core::engine::{Outcome, Role};
use milestone_core::{MilestoneId, MilestoneState, PhaseId, Workflow};
use milestone_git::{CliGit, RefName};
use milestone_state::StateStore;
use milestone_state::file::FileStore;

use crate::support::{
    self, PLANNING_ROLES, analyst, branch_log, complexity_name, mode_name, say_branch_log,
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
    /// Every execution call, in order, as `(runner, work)`: `("phase-direct", "phase design")`,
    /// `("task-agent", "task limiter-core")`, …
    pub calls: Vec<(String, String)>,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
    /// The one-line log of the milestone branch, newest first (`<commit> <message>`).
    pub git_log: Vec<String>,
    /// The second milestone, run one phase at a time.
    pub phased: Phased,
}

/// The second milestone of the example, run with one
/// [`execute_phase`](Orchestrator::execute_phase) call per phase.
#[derive(Debug, Clone)]
pub struct Phased {
    /// Its id.
    pub id: MilestoneId,
    /// One entry per call, in order.
    pub steps: Vec<PhaseStep>,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
}

/// One `execute_phase` call.
#[derive(Debug, Clone)]
pub struct PhaseStep {
    /// The phase it ran.
    pub phase: PhaseId,
    /// The mode asked for.
    pub mode: ExecutionMode,
    /// The report of the call.
    pub report: Report,
    /// The runs of the call, in order, as `(runner, work)`.
    pub calls: Vec<(String, String)>,
}

const TITLE: &str = "Add rate limiting to the public API";
/// The API areas that get limits; each gets a limit → wire → test chain.
const AREAS: [&str; 4] = ["auth", "search", "upload", "billing"];

/// Who ran what, in order: `(runner, work)`.
type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// Runs the example, writing its report to `out`, the store under `store_root` and the git
/// repository in `repo_dir` (which must be empty or absent).
///
/// # Errors
/// Any store, git, orchestrator or I/O error, as a boxed error with its message.
pub fn run(out: Out, store_root: &Path, repo_dir: &Path) -> Result<Summary, Box<dyn Error>> {
    let workflow = Workflow::kiro();
    let store = Arc::new(FileStore::open(store_root)?);
    let git = Arc::new(block_on(open_repo(repo_dir))?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let recorded: Calls = Arc::default();
    let calls = &recorded;
    let orchestrator = Orchestrator::builder()
        .workflow(workflow.clone())
        .registry(registry(&clock, calls))
        .clock(clock)
        .store(store.clone())
        .git(git.clone(), RefName::new("main")?)
        .mode(ModePolicy::Auto)
        .build()?;

    let id = MilestoneId::new(format!("rate-limits-{}", std::process::id()))?;
    say!(out, "milestone: {TITLE}")?;
    say!(out, "store: {} (milestone {id})\n", store_root.display())?;
    let plan = block_on(orchestrator.plan(PlanSpec::new(id.clone(), TITLE)))?;
    let input = ComplexityInput::for_plan(&plan, &workflow);
    let assessed = complexity::assess(&input);
    say!(
        out,
        "plan: {} tasks, {} files -> complexity {} -> decide() says {}",
        input.tasks,
        input.files,
        complexity_name(assessed),
        mode_name(complexity::decide(assessed, true))
    )?;

    block_on(orchestrator.transition(&id))?;
    if let Ok(mut c) = calls.lock() {
        c.clear();
    }
    let report = block_on(orchestrator.execute(&id))?;
    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    say!(out, "execution mode chosen: {}\n", mode_name(report.mode))?;
    say!(out, "who ran what")?;
    for phase in workflow.phases() {
        let name = phase.id.as_str();
        let is_task_phase = &phase.id == workflow.task_phase();
        let runners = if is_task_phase {
            runners_of(&calls, |w| w.starts_with("task "))
        } else {
            runners_of(&calls, |w| w == format!("phase {name}"))
        };
        let what = if is_task_phase {
            "its tasks"
        } else {
            "the phase"
        };
        say!(out, "  {name:<8} {what:<9} run by {}", runners.join(", "))?;
    }
    say!(
        out,
        "runs: {} ({} direct, {} by agents), {} at most at once",
        report.metrics.runs,
        report.metrics.direct_runs,
        report.metrics.agent_runs,
        report.metrics.max_parallel
    )?;

    let state = block_on(store.load(&id))?.state;
    block_on(store.export(&id))?;
    let git_log = block_on(branch_log(&*git, &state))?;
    say_branch_log(&out, &support::branch_of(&state), &git_log)?;
    say!(out, "\nstatus: {}", state.status())?;
    if !report.is_completed() {
        return Err(format!("the milestone did not complete: {}", state.status()).into());
    }
    let phased = run_phase_by_phase(&out, &orchestrator, &store, &workflow, &recorded)?;
    Ok(Summary {
        id,
        complexity: assessed,
        report,
        calls,
        state,
        git_log,
        phased,
    })
}

/// The second milestone: the same plan, one [`Orchestrator::execute_phase`] call per phase —
/// design directly, the rest with agents.
fn run_phase_by_phase(
    out: &Out,
    orchestrator: &Orchestrator,
    store: &Arc<FileStore>,
    workflow: &Workflow,
    calls: &Calls,
) -> Result<Phased, Box<dyn Error>> {
    let id = MilestoneId::new(format!("rate-limits-phased-{}", std::process::id()))?;
    say!(
        out,
        "\none phase at a time: execute_phase per phase (milestone {id})"
    )?;
    block_on(orchestrator.plan(PlanSpec::new(id.clone(), TITLE)))?;
    block_on(orchestrator.transition(&id))?;
    let mut steps = Vec::new();
    for phase in workflow.phases() {
        let mode = if phase.id.as_str() == "design" {
            ExecutionMode::Direct
        } else {
            ExecutionMode::Agents
        };
        if let Ok(mut c) = calls.lock() {
            c.clear();
        }
        let report = block_on(orchestrator.execute_phase(&id, &phase.id, Some(mode)))?;
        let ran = calls.lock().map(|c| c.clone()).unwrap_or_default();
        let outcome = match &report.outcome {
            Some(Outcome::PhasesDone { .. }) => "done, milestone still active".to_owned(),
            Some(Outcome::Completed) => "done, milestone completed".to_owned(),
            _ => format!("milestone {}", report.status),
        };
        say!(
            out,
            "  {:<8} {:<7} runs: {:<3} by {:<12} -> {outcome}",
            phase.id.as_str(),
            mode_name(mode),
            ran.len(),
            runners_of(&ran, |_| true).join(", "),
        )?;
        steps.push(PhaseStep {
            phase: phase.id.clone(),
            mode,
            report,
            calls: ran,
        });
    }
    let state = block_on(store.load(&id))?.state;
    block_on(store.export(&id))?;
    say!(
        out,
        "status: {}, {} phase commits, tag {}",
        state.status(),
        state.git().commits.len(),
        state.git().tag.as_deref().unwrap_or("none")
    )?;
    Ok(Phased { id, steps, state })
}

/// The distinct runners that ran the work matching `pick`, in first-call order.
fn runners_of(calls: &[(String, String)], pick: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (runner, work) in calls {
        if pick(work) && !names.contains(runner) {
            names.push(runner.clone());
        }
    }
    if names.is_empty() {
        names.push("nobody".into());
    }
    names
}

/// The runners: four in-process planning analysts; for every phase and for tasks an agent and
/// a direct runner, each recording its calls and taking a little real time.
fn registry(clock: &Arc<dyn Clock>, calls: &Calls) -> Registry {
    let mut r = Registry::new();
    for role in PLANNING_ROLES {
        r.bind_direct(role, analyst(analysis));
    }
    r.bind_any_phase(worker(clock, calls, "phase-agent", 20));
    r.bind_direct_any_phase(worker(clock, calls, "phase-direct", 5));
    r.bind(Role::Task, worker(clock, calls, "task-agent", 20));
    r.bind_direct(Role::Task, worker(clock, calls, "task-direct", 5));
    r
}

/// A runner named `name` that records `(name, work)`, takes `ms` milliseconds and does the work.
fn worker(
    clock: &Arc<dyn Clock>,
    calls: &Calls,
    name: &'static str,
    ms: u64,
) -> impl AgentRunner + 'static {
    let calls = Arc::clone(calls);
    let on_call = move |req: &AgentRequest| {
        if let Ok(mut c) = calls.lock() {
            c.push((name.to_owned(), req.work.to_string()));
        }
    };
    support::worker(clock, name, ms, on_call, output)
}

/// What a run produces: a phase names its expected outputs (its quality gate checks them); a
/// task says who did it.
fn output(req: &AgentRequest, by: &str) -> Result<AgentOutput, AgentError> {
    support::done_by(req, TITLE, by)
}

/// What each planning analysis finds: 12 tasks over 30 files — medium.
fn analysis(role: &Role) -> serde_json::Value {
    match role_name(role) {
        "scope" => serde_json::json!({"components": AREAS, "file_count": 30}),
        "estimation" => {
            let tasks: Vec<serde_json::Value> = AREAS
                .iter()
                .flat_map(|a| {
                    support::chain(&[
                        (format!("{a}-limit"), format!("limit {a} requests")),
                        (format!("{a}-wire"), format!("wire the {a} limiter")),
                        (format!("{a}-test"), format!("test {a} limits")),
                    ])
                })
                .collect();
            support::estimation(
                [3_600_000, 7_200_000, 1_800_000, 28_800_000],
                20,
                tasks.into(),
            )
        }
        "risk" => serde_json::json!({"risks": [{
            "description": "limits too low lock out legitimate clients",
            "probability": "medium", "impact": "medium",
            "mitigation": "start in report-only mode",
            "contingency": "raise the limits by configuration"}]}),
        _ => serde_json::json!({
            "keep": [{"description": "the public API's routes", "phase": "spec"}],
            "improve": [{"description": "error responses (429 with Retry-After)", "phase": "design"}],
            "originate": [{"description": "a limiter per API area", "phase": "execute"},
                          {"description": "a rollout plan", "phase": "task"}]}),
    }
}

async fn open_repo(dir: &Path) -> Result<CliGit, Box<dyn Error>> {
    let config = support::git_config("milestone example", "hybrid@milestone.invalid")?;
    support::init_repo(dir, config, b"# public API\n").await
}
