//! What the examples share: where they write their report ([`Out`], [`say`],
//! [`say!`](crate::say!)), the starting repository ([`git_config`], [`init_repo`],
//! [`initial_commit`]), the phase results their stand-in agents return ([`phase_output`]), the
//! one-line log of the milestone branch ([`branch_log`]), the stand-in runners ([`analyst`],
//! [`worker`]) with their call records ([`Calls`]), and the names they print for modes and
//! complexities.
//!
//! Each example is meant to be read on its own, but these pieces are the same in all of them;
//! keeping one copy here means a fix reaches every example and each example's file shows only
//! what that example is about.

use std::error::Error;
use std::fmt::Display;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use milestone_agents::{AgentError, AgentOutput, AgentRequest, AgentRunner, Clock, FnAgent};
use milestone_core::complexity::{Complexity, ExecutionMode, Recommendation};
use milestone_core::engine::{Role, Work};
use milestone_core::{Artifact, ArtifactBody, ItemRef, MilestoneState, PhaseId, Workflow};
use milestone_git::{
    CliGit, CliGitConfig, CommitRequest, GitBackend, Identity, LogRange, RefName, RepoPath,
    Revision,
};

/// Where an example writes its report: shared with the orchestrator's listeners, which print
/// live progress while the milestone runs. The mains pass stdout, the tests a buffer.
pub type Out = Arc<Mutex<dyn Write + Send>>;

/// The branch every example's milestone branch starts from.
pub const MAIN: &str = "main";

/// Writes `line` and a newline to `out`.
///
/// # Errors
/// The writer's error, or an error saying the output's lock was poisoned.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use milestone_examples::{Out, support::say};
///
/// let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
/// let out: Out = buffer.clone();
/// say(&out, "hello")?;
/// assert_eq!(buffer.lock().map(|b| b.clone()).unwrap_or_default(), b"hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn say(out: &Out, line: impl Display) -> io::Result<()> {
    match out.lock() {
        Ok(mut w) => writeln!(w, "{line}"),
        Err(_) => Err(io::Error::other("output lock poisoned")),
    }
}

/// `say!(out, "format {args}")`: [`say`] with a format string, as `writeln!` takes one.
/// Evaluates to the `io::Result<()>` of the write.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use milestone_examples::{Out, say};
///
/// let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
/// let out: Out = buffer.clone();
/// say!(out, "{} of {}", 1, 4)?;
/// assert_eq!(buffer.lock().map(|b| b.clone()).unwrap_or_default(), b"1 of 4\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        $crate::support::say(&$out, ::std::format_args!($($arg)*))
    };
}

/// The first seven characters of a commit id (all of it when shorter), as `git log --oneline`
/// shows it.
///
/// ```
/// use milestone_examples::support::short;
///
/// assert_eq!(short("0123456789abcdef"), "0123456");
/// assert_eq!(short("abc"), "abc");
/// ```
pub fn short(commit: &str) -> &str {
    // Commit ids are ASCII hex; `get` keeps any other text from panicking on a char boundary.
    commit.get(..7).unwrap_or(commit)
}

/// The milestone's branch as recorded in `state` (empty when it has none yet).
pub fn branch_of(state: &MilestoneState) -> String {
    state.git().branch.clone().unwrap_or_default()
}

/// The one-line log of the milestone branch, newest first: `<short id> <summary>` for every
/// commit on the branch that is not on [`MAIN`].
///
/// # Errors
/// A branch name git does not accept, or git's own error.
pub async fn branch_log(
    git: &dyn GitBackend,
    state: &MilestoneState,
) -> Result<Vec<String>, Box<dyn Error>> {
    let log = git
        .log(&LogRange::between(
            Revision::branch(&RefName::new(MAIN)?),
            Revision::branch(&RefName::new(branch_of(state))?),
        ))
        .await?;
    Ok(log
        .iter()
        .map(|e| format!("{} {}", short(e.id.as_str()), e.summary))
        .collect())
}

/// Writes a branch log as the examples print it: a `git log main..<branch>` heading after a
/// blank line, then one indented line per commit.
///
/// # Errors
/// As [`say`].
pub fn say_branch_log(out: &Out, branch: &str, lines: &[String]) -> io::Result<()> {
    say(out, format_args!("\ngit log {MAIN}..{branch}"))?;
    for line in lines {
        say(out, format_args!("  {line}"))?;
    }
    Ok(())
}

/// The result of a stand-in agent's run of `work`, summarised as `summary`. When the work is a
/// phase of `workflow`, the result names each of the phase's expected outputs as an inline
/// artifact (`"<output> for <title>"`), which is what the phase's quality gate checks.
///
/// ```
/// use milestone_core::engine::{Role, Work};
/// use milestone_core::{ItemRef, PhaseId, Workflow};
/// use milestone_examples::support::phase_output;
///
/// let work = Work::Item(ItemRef::Phase(PhaseId::new("spec")?));
/// let out = phase_output(&Workflow::kiro(), &work, "Add login", "spec done");
/// assert_eq!(out.summary, "spec done");
/// assert_eq!(out.artifacts.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn phase_output(
    workflow: &Workflow,
    work: &Work,
    title: &str,
    summary: impl Into<String>,
) -> AgentOutput {
    let mut out = AgentOutput::new(summary);
    if let Work::Item(ItemRef::Phase(phase)) = work
        && let Some(spec) = workflow.phase(phase.as_str())
    {
        for name in &spec.expected_outputs {
            out = out.with_artifact(Artifact {
                name: name.clone(),
                kind: "document".into(),
                body: ArtifactBody::Inline(format!("{name} for {title}")),
            });
        }
    }
    out
}

/// The phase `work` is, or a permanent error saying it is not a phase (for agents bound to
/// phases only).
///
/// # Errors
/// [`AgentError::permanent`] naming the work when it is not a phase.
pub fn phase_of(work: &Work) -> Result<&PhaseId, AgentError> {
    match work {
        Work::Item(ItemRef::Phase(phase)) => Ok(phase),
        other => Err(AgentError::permanent(format!("not a phase: {other}"))),
    }
}

/// The identity and fixed commit date of the examples' git repositories, so that their
/// commits do not depend on the machine's git configuration.
///
/// # Errors
/// An identity git would not accept.
pub fn git_config(name: &str, email: &str) -> Result<CliGitConfig, Box<dyn Error>> {
    Ok(CliGitConfig::default()
        .with_identity(Identity::new(name, email)?)
        .with_date("2026-11-21T09:00:00Z"))
}

/// Commits a `README.md` holding `readme` as `Initial commit`, so that [`MAIN`] exists for the
/// milestone branch to start from.
///
/// # Errors
/// git's error.
pub async fn initial_commit(git: &dyn GitBackend, readme: &[u8]) -> Result<(), Box<dyn Error>> {
    git.write_file(&RepoPath::new("README.md")?, readme).await?;
    git.add_all().await?;
    git.commit(&CommitRequest::new("Initial commit")).await?;
    Ok(())
}

/// A new repository in `dir` (created if absent; it must be empty) on branch [`MAIN`], with
/// its [`initial_commit`].
///
/// # Errors
/// An I/O error creating `dir`, or git's error.
pub async fn init_repo(
    dir: &Path,
    config: CliGitConfig,
    readme: &[u8],
) -> Result<CliGit, Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let git = CliGit::init(dir, &RefName::new(MAIN)?, config).await?;
    initial_commit(&git, readme).await?;
    Ok(git)
}

/// The name the examples print for an execution mode.
pub fn mode_name(mode: ExecutionMode) -> &'static str {
    match mode {
        ExecutionMode::Direct => "direct",
        ExecutionMode::Hybrid => "hybrid",
        ExecutionMode::Agents => "agents",
    }
}

/// The name the examples print for a complexity.
pub fn complexity_name(c: Complexity) -> &'static str {
    match c {
        Complexity::Low => "low",
        Complexity::Medium => "medium",
        Complexity::High => "high",
    }
}

/// The advice the examples print for a recommendation.
pub fn recommendation_name(r: Recommendation) -> &'static str {
    match r {
        Recommendation::AlwaysAgents => "always use agents",
        Recommendation::AgentsForComplex => "use agents for complex milestones",
        Recommendation::DirectForSimple => "run simple milestones directly",
    }
}

/// Who ran what: one line per call, in order, shared between the runners that record and the
/// example that reports.
pub type Calls = Arc<Mutex<Vec<String>>>;

/// Appends `line` to `calls` (a poisoned lock only loses the line).
pub fn record(calls: &Calls, line: String) {
    if let Ok(mut c) = calls.lock() {
        c.push(line);
    }
}

/// Takes the lines recorded so far, leaving `calls` empty.
pub fn take(calls: &Calls) -> Vec<String> {
    calls
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default()
}

/// The four planning analyses, in the order the examples bind them.
pub const PLANNING_ROLES: [Role; 4] = [
    Role::Scope,
    Role::Estimation,
    Role::Risk,
    Role::KiroStrategy,
];

/// An in-process planning analyst named `analyst`: its result's data is `analysis` of the
/// role it is asked to run (bind it under each of [`PLANNING_ROLES`]).
pub fn analyst(analysis: fn(&Role) -> serde_json::Value) -> impl AgentRunner + 'static {
    FnAgent::sync("analyst", move |req: AgentRequest| {
        Ok(AgentOutput::new("analysed").with_data(analysis(&req.role)))
    })
}

/// A stand-in runner named `name`: each call is first shown to `on_call` (the examples record
/// who ran what), then takes `ms` milliseconds on `clock` and returns `output(request, name)`.
pub fn worker(
    clock: &Arc<dyn Clock>,
    name: &'static str,
    ms: u64,
    on_call: impl Fn(&AgentRequest) + Send + Sync + 'static,
    output: fn(&AgentRequest, &str) -> Result<AgentOutput, AgentError>,
) -> impl AgentRunner + 'static {
    let clock = Arc::clone(clock);
    FnAgent::new(name, move |req: AgentRequest, _ctx| {
        on_call(&req);
        let sleep = clock.sleep(ms);
        async move {
            sleep.await;
            output(&req, name)
        }
    })
}

/// An estimation analysis as a planning agent returns it: `effort_ms` for KIRO's design, spec,
/// task and execute phases (in that order, which is also the critical path), a buffer of
/// `buffer_percent` and the planned `tasks` (a JSON array of task specs).
///
/// ```
/// use milestone_core::plan::EstimationAnalysis;
/// use milestone_examples::support::estimation;
///
/// let json = estimation([1, 2, 3, 4], 20, serde_json::json!([{"id": "a", "title": "a"}]));
/// let parsed: EstimationAnalysis = serde_json::from_value(json)?;
/// assert_eq!(parsed.estimates.phases[3].effort_ms, 4);
/// assert_eq!(parsed.tasks.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn estimation(
    effort_ms: [u64; 4],
    buffer_percent: u32,
    tasks: serde_json::Value,
) -> serde_json::Value {
    let order = ["design", "spec", "task", "execute"];
    let phases: Vec<serde_json::Value> = order
        .iter()
        .zip(effort_ms)
        .map(|(phase, ms)| serde_json::json!({"phase": phase, "effort_ms": ms}))
        .collect();
    serde_json::json!({
        "estimates": {"phases": phases, "buffer_percent": buffer_percent, "critical_path": order},
        "tasks": tasks,
    })
}

/// Task specs (JSON) for `steps` as `(id, title)` pairs, each depending on the one before it.
///
/// ```
/// use milestone_examples::support::chain;
///
/// let tasks = chain(&[("a".into(), "do a".into()), ("b".into(), "do b".into())]);
/// assert_eq!(tasks[1]["dependencies"], serde_json::json!(["a"]));
/// assert!(tasks[0].get("dependencies").is_none());
/// ```
pub fn chain(steps: &[(String, String)]) -> Vec<serde_json::Value> {
    let mut previous: Option<&str> = None;
    steps
        .iter()
        .map(|(id, title)| {
            let mut task = serde_json::json!({"id": id, "title": title});
            if let Some(p) = previous {
                task["dependencies"] = serde_json::json!([p]);
            }
            previous = Some(id);
            task
        })
        .collect()
}

/// What a stand-in phase or task runner named `by` returns for `req` on a KIRO milestone titled
/// `title`: for a phase, [`phase_output`] summarised `"<phase> done by <by>"`; for a task,
/// `"<task> done by <by>"`.
///
/// # Errors
/// A permanent [`AgentError`] for work that is neither a phase nor a task.
pub fn done_by(req: &AgentRequest, title: &str, by: &str) -> Result<AgentOutput, AgentError> {
    match &req.work {
        Work::Item(ItemRef::Phase(phase)) => Ok(phase_output(
            &Workflow::kiro(),
            &req.work,
            title,
            format!("{phase} done by {by}"),
        )),
        Work::Item(ItemRef::Task(task)) => Ok(AgentOutput::new(format!("{task} done by {by}"))),
        other => Err(AgentError::permanent(format!(
            "not phase or task work: {other}"
        ))),
    }
}
