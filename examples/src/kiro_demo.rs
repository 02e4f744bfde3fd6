//! The `kiro_demo` example: one KIRO milestone from plan to tag, on embedded defaults.
//!
//! An [`Orchestrator`] drives the sans-I/O engine with a [`FileStore`] (every event persisted
//! before it is acted on), git over the real `git` program (one conventional commit per phase,
//! a tag at the end) and agents from a [`Registry`] — here in-process [`FnAgent`]s standing in
//! for LLM agents. A listener folds the events it is told about into its own copy of the state
//! (state is a fold of the event log) and prints live progress from it.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Notice};
use milestone_agents::{
    AgentError, AgentOutput, AgentRequest, Clock, FnAgent, Orchestrator, PlanSpec, Registry,
    SystemClock,
};
use milestone_core::complexity::ExecutionMode;
use milestone_core::engine::{Role, Strategy};
use milestone_core::kiro::{KiroItem, KiroStrategy};
use milestone_core::picture::to_mermaid;
use milestone_core::plan::{
    self, Analysis, Estimates, EstimationAnalysis, Level, PhaseEstimate, Risk, RiskAnalysis,
    ScopeAnalysis,
};
use milestone_core::progress::{ProgressReport, RenderOptions};
use milestone_core::{
    Event, ItemRef, ItemStatus, MilestoneId, MilestoneState, PhaseId, TaskId, TaskSpec, Workflow,
};
use milestone_git::{CliGit, RefName};
use milestone_state::StateStore;
use milestone_state::file::FileStore;

use crate::support::{self, branch_log, phase_of, say_branch_log, short};
use crate::{Out, say};

/// What the demo did, for callers (and the example's test) to check.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The milestone's id.
    pub id: MilestoneId,
    /// Whether it completed.
    pub completed: bool,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
    /// The one-line log of the milestone branch, newest first.
    pub git_log: Vec<String>,
    /// How many problems the deliberately flawed plan had.
    pub flawed_plan_problems: usize,
    /// The most agents that ran at once.
    pub max_parallel: u32,
    /// Whether the four planning analyses overlapped in time.
    pub analyses_overlapped: bool,
    /// Where the Mermaid picture of the graph was written.
    pub mermaid_path: PathBuf,
}

const TITLE: &str = "Refactor authentication system";
const MINUTE: u64 = 60_000;

fn id(s: &str) -> Result<PhaseId, Box<dyn Error>> {
    Ok(PhaseId::new(s)?)
}

/// Runs the demo, writing its report to `out`, the store under `store_root` and the git
/// repository in `repo_dir` (which must be empty or absent).
///
/// # Errors
/// Any store, git, orchestrator or I/O error, as a boxed error with its message.
pub fn run(out: Out, store_root: &Path, repo_dir: &Path) -> Result<DemoSummary, Box<dyn Error>> {
    let workflow = Workflow::kiro();
    say!(out, "milestone: {TITLE}\n")?;
    say!(out, "The KIRO workflow")?;
    for p in workflow.phases() {
        say!(
            out,
            "  {:<8} {:>4}  {:<9} {:<32} -> {}",
            p.id.as_str(),
            p.weight.to_string(),
            p.priority.to_string(),
            p.focus,
            p.expected_outputs.join(", ")
        )?;
    }

    let store = Arc::new(FileStore::open(store_root)?);
    let git = Arc::new(block_on(open_repo(repo_dir))?);
    let live = Arc::new(Live::new(Arc::clone(&out)));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let trace: Trace = Arc::default();
    let orchestrator = Orchestrator::builder()
        .workflow(workflow.clone())
        .registry(registry(Arc::clone(&clock), Arc::clone(&trace))?)
        .clock(clock)
        .store(store.clone())
        .git(git.clone(), RefName::new("main")?)
        .strategy(Strategy::pipeline())
        .mode(ModePolicy::Fixed(ExecutionMode::Agents))
        .listener(live.clone())
        .build()?;

    let mid = MilestoneId::new(format!("auth-refactor-{}", std::process::id()))?;
    say!(out, "\nstore: {} (milestone {mid})", store_root.display())?;
    say!(out, "\nPlanning")?;
    let spec = PlanSpec::new(mid.clone(), TITLE)
        .context("Session tokens are checked in three places; consolidate them.")
        .seed(42);
    let plan = block_on(orchestrator.plan(spec))?;
    let analyses_overlapped = match trace.lock() {
        Ok(t) => {
            let first_end = t.iter().map(|r| r.2).min().unwrap_or(0);
            let names: Vec<&str> = t.iter().map(|r| r.0.as_str()).collect();
            say!(
                out,
                "  analyses {} ran at once: all {} started before the first finished",
                names.join(", "),
                t.len()
            )?;
            t.len() == 4 && t.iter().all(|r| r.1 < first_end)
        }
        Err(_) => false,
    };

    // Validation: first a deliberately flawed copy of the plan, to show every problem at once.
    let mut flawed = plan.clone();
    flawed.risks = None;
    if let Some(k) = flawed.kiro.as_mut() {
        k.originate
            .push(KiroItem::new("a deploy pipeline", id("deploy")?));
    }
    if let Some(t) = flawed.tasks.first_mut() {
        t.dependencies.push(TaskId::new("ship-docs")?);
    }
    let problems = match plan::validate_plan(&flawed, &workflow) {
        Ok(()) => return Err("the flawed plan passed validation".into()),
        Err(p) => p,
    };
    say!(out, "\nA flawed plan is refused with {problems}")?;
    say!(
        out,
        "The real plan: {} tasks, {} risks, {} KIRO items",
        plan.tasks.len(),
        plan.risks.as_ref().map_or(0, Vec::len),
        plan.kiro.as_ref().map_or(0, |k| k.all().count())
    )?;

    // Transition (validates again, creates the branch), then the run.
    block_on(orchestrator.transition(&mid))?;
    say!(out, "\nExecution (pipeline)")?;
    let report = block_on(orchestrator.execute(&mid))?;

    // The end: the progress report, git's log, the graph.
    let state = block_on(store.load(&mid))?.state;
    block_on(store.export(&mid))?;
    say!(
        out,
        "\n{}",
        report.progress.render(&RenderOptions::default().width(28))
    )?;
    say!(
        out,
        "runs: {} ({} at most at once), events appended: {}",
        report.metrics.runs,
        report.metrics.max_parallel,
        report.metrics.events_appended
    )?;
    let git_log = block_on(branch_log(&*git, &state))?;
    say_branch_log(&out, &support::branch_of(&state), &git_log)?;
    let mermaid_path = store_root.join(format!("{mid}.mmd"));
    std::fs::write(&mermaid_path, to_mermaid(&state))?;
    say!(out, "\nthe graph as Mermaid: {}", mermaid_path.display())?;
    say!(out, "status: {}", state.status())?;
    Ok(DemoSummary {
        id: mid,
        completed: report.is_completed(),
        state,
        git_log,
        flawed_plan_problems: problems.len(),
        max_parallel: report.metrics.max_parallel,
        analyses_overlapped,
        mermaid_path,
    })
}

/// The live view: folds every persisted event into its own state and prints what a person
/// wants to see — phase starts (and whether they were pipelined), tasks, commits, progress bars.
struct Live {
    out: Out,
    state: Mutex<Option<MilestoneState>>,
}

impl Live {
    fn new(out: Out) -> Live {
        Live {
            out,
            state: Mutex::new(None),
        }
    }

    fn line(&self, state: &MilestoneState, event: &Event) -> Option<String> {
        match event {
            Event::ItemStarted {
                item: ItemRef::Phase(p),
                ..
            } => Some(format!("  started phase {p}{}", pipelined(state, p))),
            Event::ItemStarted {
                item: ItemRef::Task(t),
                ..
            } => {
                let running = state
                    .tasks()
                    .iter()
                    .filter(|t| t.item.status == ItemStatus::InProgress)
                    .count();
                let plural = if running == 1 { "" } else { "s" };
                Some(format!(
                    "  started task {t} ({running} task{plural} running)"
                ))
            }
            Event::ItemCompleted {
                item: ItemRef::Phase(p),
                at,
                ..
            } => {
                let report = ProgressReport::compute(state, *at, None);
                let bars: Vec<String> = report
                    .render(&RenderOptions::default().width(28))
                    .lines()
                    .filter(|l| l.contains('['))
                    .map(|l| format!("    {l}"))
                    .collect();
                Some(format!("  {p} completed\n{}", bars.join("\n")))
            }
            Event::TasksAdded { tasks, .. } => Some(format!(
                "  tasks joined the execute phase: {}",
                tasks
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Event::PhaseCommitted { phase, commit, .. } => Some(format!(
                "  committed {phase} as {}: {}",
                short(commit),
                milestone_git::conventions::phase_message(phase, state.title())
            )),
            Event::Tagged { tag, .. } => Some(format!("  tagged {tag}")),
            Event::BranchCreated { branch, .. } => Some(format!("  branch {branch} created")),
            Event::PlanRecorded { .. } => Some("  plan recorded".into()),
            _ => None,
        }
    }
}

impl milestone_agents::orchestrator::EventListener for Live {
    fn on_event(&self, notice: &Notice) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        let applied = match guard.as_mut() {
            None => MilestoneState::from_created(&notice.event).map(|s| *guard = Some(s)),
            Some(state) => state.apply(&notice.event),
        };
        let Some(state) = guard.as_ref() else {
            return;
        };
        if applied.is_ok()
            && let Some(line) = self.line(state, &notice.event)
        {
            // The listener cannot fail the run: a failed write only loses a line of output.
            let _ = say!(self.out, "{line}");
        }
    }
}

/// " (pipelined: design at 50.00 %)" when a phase starts before a predecessor has completed.
fn pipelined(state: &MilestoneState, phase: &PhaseId) -> String {
    let unfinished: Vec<String> = state
        .workflow()
        .phase(phase.as_str())
        .map(|p| p.dependencies.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| state.phase(d.as_str()))
        .filter(|d| d.item.status != ItemStatus::Completed)
        .map(|d| format!("{} at {}", d.id, d.item.progress))
        .collect();
    if unfinished.is_empty() {
        String::new()
    } else {
        format!(" (pipelined: {})", unfinished.join(", "))
    }
}

async fn open_repo(dir: &Path) -> Result<CliGit, Box<dyn Error>> {
    let config = support::git_config("milestone demo", "demo@milestone.invalid")?;
    support::init_repo(
        dir,
        config,
        b"# auth service\n\nSession tokens are checked in three places.\n",
    )
    .await
}

/// When each planning analysis ran, in milliseconds on the orchestrator's clock.
type Trace = Arc<Mutex<Vec<(String, u64, u64)>>>;

/// Builds one analysis's result.
type MakeAnalysis = fn() -> Result<Analysis, Box<dyn Error>>;

/// The agents of this demo: in-process functions standing in for LLM agents. They take a
/// little real time (on the orchestrator's clock) so that overlap and pipelining are visible.
fn registry(clock: Arc<dyn Clock>, trace: Trace) -> Result<Registry, Box<dyn Error>> {
    let mut r = Registry::new();
    let analyses: [(Role, MakeAnalysis); 4] = [
        (Role::Scope, || Ok(Analysis::Scope(scope()))),
        (Role::Estimation, || Ok(Analysis::Estimation(estimation()?))),
        (Role::Risk, || Ok(Analysis::Risk(risks()))),
        (Role::KiroStrategy, || Ok(Analysis::Kiro(kiro()?))),
    ];
    for (role, make) in analyses {
        let (clock, trace) = (Arc::clone(&clock), Arc::clone(&trace));
        let name = milestone_agents::role_name(&role).to_string();
        r.bind(
            role,
            FnAgent::new(name.clone(), move |_req: AgentRequest, _ctx| {
                let (clock, trace, name) = (Arc::clone(&clock), Arc::clone(&trace), name.clone());
                async move {
                    let start = clock.now().as_millis();
                    clock.sleep(40).await;
                    if let Ok(mut t) = trace.lock() {
                        t.push((name, start, clock.now().as_millis()));
                    }
                    analysis(make().map_err(|e| AgentError::permanent(e.to_string()))?)
                }
            }),
        );
    }
    let phase_clock = Arc::clone(&clock);
    r.bind_any_phase(FnAgent::new(
        "phase-agent",
        move |req: AgentRequest, ctx| {
            let clock = Arc::clone(&phase_clock);
            async move {
                // Half done: under the pipeline strategy the next phase may start now.
                ctx.report_progress(0.5);
                clock.sleep(60).await;
                phase_output(&req)
            }
        },
    ));
    let task_clock = Arc::clone(&clock);
    r.bind(
        Role::Task,
        FnAgent::new("task-agent", move |req: AgentRequest, _ctx| {
            let clock = Arc::clone(&task_clock);
            async move {
                clock.sleep(20).await;
                Ok(AgentOutput::new(format!("done: {}", req.work))
                    .with_quality("tests-passed", 1.0))
            }
        }),
    );
    Ok(r)
}

fn analysis(a: Analysis) -> Result<AgentOutput, AgentError> {
    let data = serde_json::to_value(&a).map_err(|e| AgentError::permanent(e.to_string()))?;
    Ok(AgentOutput::new("analysis done").with_data(data))
}

/// A phase agent: names the phase's expected outputs (the quality gate checks them); the task
/// phase also hands two more tasks to the execute phase, so the graph grows while it runs.
fn phase_output(req: &AgentRequest) -> Result<AgentOutput, AgentError> {
    let phase = phase_of(&req.work)?;
    let mut out =
        support::phase_output(&Workflow::kiro(), &req.work, TITLE, format!("{phase} done"));
    if phase.as_str() == "task" {
        let extra = [
            task("migration-guide", &["session-store"])
                .map_err(|e| AgentError::permanent(e.to_string()))?,
            task("login-benchmark", &["token-service"])
                .map_err(|e| AgentError::permanent(e.to_string()))?,
        ];
        out = out.with_data(serde_json::json!({ "tasks": extra }));
    }
    Ok(out)
}

fn task(id: &str, deps: &[&str]) -> Result<TaskSpec, Box<dyn Error>> {
    let mut t = TaskSpec::new(TaskId::new(id)?, id.replace('-', " "));
    for d in deps {
        t.dependencies.push(TaskId::new(d)?);
    }
    t.estimate_ms = Some(90 * MINUTE);
    Ok(t)
}

fn scope() -> ScopeAnalysis {
    ScopeAnalysis {
        components: vec![
            "session store".into(),
            "token service".into(),
            "login api".into(),
        ],
        dependencies: vec!["redis".into()],
        file_count: 24,
        risk_factors: vec!["token format change".into()],
        ..ScopeAnalysis::default()
    }
}

fn estimation() -> Result<EstimationAnalysis, Box<dyn Error>> {
    let hours = |h: u64| h * 60 * MINUTE;
    Ok(EstimationAnalysis {
        estimates: Estimates {
            phases: vec![
                PhaseEstimate {
                    phase: id("design")?,
                    effort_ms: hours(4),
                },
                PhaseEstimate {
                    phase: id("spec")?,
                    effort_ms: hours(6),
                },
                PhaseEstimate {
                    phase: id("task")?,
                    effort_ms: hours(2),
                },
                PhaseEstimate {
                    phase: id("execute")?,
                    effort_ms: hours(16),
                },
            ],
            buffer_percent: 20,
            critical_path: vec![id("design")?, id("spec")?, id("task")?, id("execute")?],
        },
        tasks: vec![
            task("token-service", &[])?,
            task("session-store", &[])?,
            task("login-api", &["token-service", "session-store"])?,
            task("remove-legacy-checks", &["login-api"])?,
            task("audit-logging", &["token-service"])?,
            task("integration-tests", &["login-api", "audit-logging"])?,
        ],
    })
}

fn risks() -> RiskAnalysis {
    RiskAnalysis {
        risks: vec![Risk {
            description: "existing sessions are invalidated by the new token format".into(),
            probability: Level::Medium,
            impact: Level::High,
            mitigation: "accept both formats during a grace period".into(),
            contingency: "roll back the token service".into(),
        }],
    }
}

fn kiro() -> Result<KiroStrategy, Box<dyn Error>> {
    Ok(KiroStrategy {
        keep: vec![KiroItem::new("the public login API", id("spec")?)],
        improve: vec![KiroItem::new(
            "token validation in one place",
            id("design")?,
        )],
        remove: vec![KiroItem::new(
            "three duplicated session checks",
            id("execute")?,
        )],
        originate: vec![KiroItem::new("audit logging of logins", id("task")?)],
    })
}
