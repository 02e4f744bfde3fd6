//! The `resume` example: a run cut off mid-way, then resumed, with no phase done twice.
//!
//! ```text
//! cargo run --example resume
//! ```
//!
//! **Session 1** plans the milestone, transitions it and starts executing it over a
//! [`FileStore`] and a real git repository. As soon as the design phase is committed, the run
//! is cut off: the `execute` future is dropped mid-flight together with the orchestrator and
//! the store — what a crash or a killed process leaves behind. Nothing more is written.
//!
//! **Session 2** opens the same store directory and repository afresh (as a new process
//! would) and calls [`Orchestrator::resume`]. The engine is rebuilt from the stored event log:
//! the completed design phase is not run again and its commit is found by its trailers, not
//! made twice. Work recorded as started when the run was cut (here the spec phase: its start
//! was logged, but it had produced nothing) starts again as a new attempt with the *same
//! idempotency key*, so an agent with outside side effects can recognise the retry.
//!
//! At the end the milestone branch holds exactly one conventional commit per phase.

use std::error::Error;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::executor::block_on;
use futures::future::{Either, select};
use milestone_agents::orchestrator::Notice;
use milestone_agents::{
    AgentContext, AgentError, AgentOutput, AgentRequest, Clock, FnAgent, Orchestrator, PlanSpec,
    Registry, SystemClock,
};
use milestone_core::engine::Role;
use milestone_core::{Event, ItemStatus, MilestoneId, MilestoneState, Workflow};
use milestone_git::{CliGit, CliGitConfig, RefName};
use milestone_state::StateStore;
use milestone_state::file::FileStore;

use crate::Out;
use crate::custom_runner::bind_planning;
use crate::support::{self, branch_log, say, say_branch_log, short};

/// One run of a phase or task agent, as the agents recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// 1 or 2: the session that ran it.
    pub session: u8,
    /// The work (`phase design`, `task schema`, …).
    pub work: String,
    /// The attempt's idempotency key.
    pub key: String,
    /// Whether the agent finished (returned its result); `false` when the run was cut off.
    pub finished: bool,
}

/// What the example did, for callers (and its test) to check.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The milestone's id.
    pub id: MilestoneId,
    /// The state the store held when session 1 was cut off.
    pub after_cut: MilestoneState,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
    /// Every agent run of both sessions, in order.
    pub runs: Vec<RunRecord>,
    /// The one-line log of the milestone branch (`<short id> <subject>`), newest first.
    pub git_log: Vec<String>,
}

const TITLE: &str = "Add audit logging";

type Runs = Arc<Mutex<Vec<RunRecord>>>;

/// Runs the example, writing its report to `out`, the store under `store_root` and the git
/// repository in `repo_dir` (which must be empty or absent).
///
/// # Errors
/// Any store, git, orchestrator or I/O error, as a boxed error with its message.
pub fn run(out: Out, store_root: &Path, repo_dir: &Path) -> Result<Summary, Box<dyn Error>> {
    let id = MilestoneId::new(format!("resume-{}", std::process::id()))?;
    let runs: Runs = Arc::default();
    let main = RefName::new("main")?;
    say(
        &out,
        format!("milestone {id}: {TITLE}\nstore: {}", store_root.display()),
    )?;

    // Session 1: plan, transition, execute — cut off once design is committed.
    say(&out, "\nSession 1")?;
    let after_cut = {
        let store = Arc::new(FileStore::open(store_root)?);
        let git = Arc::new(block_on(init_repo(repo_dir))?);
        let (cut_tx, cut_rx) = futures::channel::oneshot::channel::<()>();
        let cut_tx = Mutex::new(Some(cut_tx));
        let printer = Arc::clone(&out);
        let listener = move |notice: &Notice| {
            print_event(&printer, &notice.event);
            if let Event::PhaseCommitted { phase, .. } = &notice.event
                && phase.as_str() == "design"
                && let Some(tx) = cut_tx.lock().ok().and_then(|mut t| t.take())
            {
                let _ = tx.send(());
            }
        };
        let orchestrator = Orchestrator::builder()
            .registry(registry(1, &runs)?)
            .store(store.clone())
            .git(git, main.clone())
            .listener(Arc::new(listener))
            .build()?;
        block_on(async {
            orchestrator
                .plan(PlanSpec::new(id.clone(), TITLE).context("Record who did what."))
                .await?;
            orchestrator.transition(&id).await.map(|_| ())
        })?;
        let cut = block_on(select(Box::pin(orchestrator.execute(&id)), cut_rx));
        match cut {
            Either::Left((report, _)) => {
                return Err(format!("session 1 was not cut off: {:?}", report?.status).into());
            }
            // Dropping the `execute` future here is the crash: its runs are dropped with it.
            Either::Right(_) => say(&out, "  -- the run is cut off here (process killed) --")?,
        }
        block_on(store.load(&id))?.state
        // The orchestrator, the store (and its lock) and git are dropped here.
    };
    say(
        &out,
        format!(
            "  stored: {} of 4 phases completed, {} commit(s), status {}",
            completed_phases(&after_cut),
            after_cut.git().commits.len(),
            after_cut.status()
        ),
    )?;

    // Session 2: everything opened afresh over the same directories, then `resume`.
    say(&out, "\nSession 2")?;
    let store = Arc::new(FileStore::open(store_root)?);
    let git = Arc::new(block_on(CliGit::open(repo_dir, git_config()?))?);
    let printer = Arc::clone(&out);
    let orchestrator = Orchestrator::builder()
        .registry(registry(2, &runs)?)
        .store(store.clone())
        .git(git.clone(), main.clone())
        .listener(Arc::new(move |n: &Notice| print_event(&printer, &n.event)))
        .build()?;
    let report = block_on(orchestrator.resume(&id))?;
    let state = block_on(store.load(&id))?.state;
    say(
        &out,
        format!(
            "  resumed: status {}, {} runs in this session",
            report.status, report.metrics.runs
        ),
    )?;

    let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
    say(&out, "\nAgent runs (session, work, idempotency key)")?;
    for r in &runs {
        let note = if r.finished { "" } else { "  (cut off)" };
        say(
            &out,
            format!("  {} {:<16} {}{note}", r.session, r.work, r.key),
        )?;
    }
    let git_log = block_on(branch_log(&*git, &state))?;
    say_branch_log(&out, &support::branch_of(&state), &git_log)?;
    say(&out, format!("status: {}", state.status()))?;
    Ok(Summary {
        id,
        after_cut,
        state,
        runs,
        git_log,
    })
}

fn completed_phases(state: &MilestoneState) -> usize {
    state
        .phases()
        .iter()
        .filter(|p| p.item.status == ItemStatus::Completed)
        .count()
}

fn print_event(out: &Out, event: &Event) {
    let line = match event {
        Event::ItemStarted { item, attempt, .. } => format!("  started {item} (attempt {attempt})"),
        Event::ItemCompleted { item, .. } => format!("  completed {item}"),
        Event::PhaseCommitted { phase, commit, .. } => {
            format!("  committed {phase} as {}", short(commit))
        }
        Event::Tagged { tag, .. } => format!("  tagged {tag}"),
        _ => return,
    };
    // A listener cannot fail the run: a failed write only loses a line of output.
    let _ = say(out, line);
}

/// The agents of one session: planning in-process, and phase and task agents that take a
/// little real time and record every run (and whether it finished).
fn registry(session: u8, runs: &Runs) -> Result<Registry, Box<dyn Error>> {
    let mut r = Registry::new();
    bind_planning(&mut r);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let agent = move |runs: Runs| {
        let clock = Arc::clone(&clock);
        move |req: AgentRequest, ctx: AgentContext| {
            let (runs, clock) = (Arc::clone(&runs), Arc::clone(&clock));
            async move {
                let record = RunRecord {
                    session,
                    work: req.work.to_string(),
                    key: req.idempotency_key.to_string(),
                    finished: false,
                };
                let index = runs
                    .lock()
                    .map(|mut r| {
                        r.push(record);
                        r.len() - 1
                    })
                    .unwrap_or_default();
                ctx.report_progress(0.5);
                if let Either::Left(_) = select(ctx.cancelled(), clock.sleep(20)).await {
                    return Err(AgentError::cancelled("cut off"));
                }
                if let Ok(mut r) = runs.lock()
                    && let Some(rec) = r.get_mut(index)
                {
                    rec.finished = true;
                }
                Ok(output(&req))
            }
        }
    };
    r.bind_direct_any_phase(FnAgent::new("phase-agent", agent(Arc::clone(runs))));
    r.bind_direct(
        Role::Task,
        FnAgent::new("task-agent", agent(Arc::clone(runs))),
    );
    Ok(r)
}

/// A result naming the phase's expected outputs (its quality gate checks them).
fn output(req: &AgentRequest) -> AgentOutput {
    support::phase_output(
        &Workflow::kiro(),
        &req.work,
        TITLE,
        format!("{} done", req.work),
    )
}

fn git_config() -> Result<CliGitConfig, Box<dyn Error>> {
    support::git_config("milestone example", "example@milestone.invalid")
}

async fn init_repo(dir: &Path) -> Result<CliGit, Box<dyn Error>> {
    support::init_repo(dir, git_config()?, b"# audit service\n").await
}
