//! Shared pieces of the orchestrator's end-to-end tests: planning runners that give a valid
//! plan, phase and task runners that record every run, and small async helpers.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use milestone_agents::{AgentError, AgentOutput, AgentRequest, FnAgent, Registry, role_name};
use milestone_core::engine::{Role, Work};
use milestone_core::{Artifact, ArtifactBody, ItemRef, Workflow};

/// Yields once to the executor.
pub fn yield_now() -> impl Future<Output = ()> {
    struct Y(bool);
    impl Future for Y {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    Y(false)
}

/// The data each analysis returns for a valid plan with three tasks (`c` after `a` and `b`).
pub fn analysis_data(role: &Role) -> serde_json::Value {
    match role_name(role) {
        "scope" => serde_json::json!({"components": ["auth", "api"], "file_count": 4}),
        "estimation" => serde_json::json!({
            "estimates": {"phases": [
                {"phase": "design", "effort_ms": 1000}, {"phase": "spec", "effort_ms": 1000},
                {"phase": "task", "effort_ms": 1000}, {"phase": "execute", "effort_ms": 1000}],
                "buffer_percent": 20, "critical_path": ["design", "spec", "task", "execute"]},
            "tasks": [
                {"id": "a", "title": "task a"},
                {"id": "b", "title": "task b", "dependencies": ["a"]},
                {"id": "c", "title": "task c", "dependencies": ["a", "b"]}]
        }),
        "risk" => serde_json::json!({"risks": [{"description": "scope creep",
            "probability": "medium", "impact": "high", "mitigation": "review",
            "contingency": "cut"}]}),
        _ => serde_json::json!({
            "keep": [{"description": "session model", "phase": "design"}],
            "improve": [{"description": "error messages", "phase": "spec"}],
            "originate": [{"description": "audit log", "phase": "task"},
                          {"description": "login form", "phase": "execute"}]}),
    }
}

/// A log of runs: `work@attempt#key`.
pub type RunLog = Arc<Mutex<Vec<String>>>;

pub fn entry(req: &AgentRequest) -> String {
    format!("{}@{}#{}", req.work, req.attempt, req.idempotency_key)
}

/// How many runs of `work` the log holds.
pub fn runs_of(log: &RunLog, work: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| e.split('@').next() == Some(work))
        .count()
}

/// A phase's output naming every expected output of the KIRO workflow's phase.
pub fn phase_output(req: &AgentRequest) -> AgentOutput {
    let mut out = AgentOutput::new(format!("{} done", req.work));
    if let Work::Item(ItemRef::Phase(p)) = &req.work
        && let Some(spec) = Workflow::kiro().phase(p.as_str())
    {
        for name in &spec.expected_outputs {
            out = out.with_artifact(Artifact {
                name: name.clone(),
                kind: "document".into(),
                body: ArtifactBody::Inline(String::new()),
            });
        }
    }
    out
}

/// Binds the four planning analyses (direct runners) to `registry`.
pub fn bind_planning(registry: &mut Registry) {
    for role in [
        Role::Scope,
        Role::Estimation,
        Role::Risk,
        Role::KiroStrategy,
    ] {
        registry.bind_direct(
            role,
            FnAgent::sync("analyst", |req| {
                Ok(AgentOutput::new("analysed").with_data(analysis_data(&req.role)))
            }),
        );
    }
}

/// Binds recording direct runners for every phase and for tasks.
pub fn bind_execution(registry: &mut Registry, log: &RunLog) {
    let l = Arc::clone(log);
    registry.bind_direct_any_phase(FnAgent::sync("phase-direct", move |req| {
        l.lock().unwrap().push(entry(&req));
        Ok(phase_output(&req))
    }));
    let l = Arc::clone(log);
    registry.bind_direct(
        Role::Task,
        FnAgent::sync("task-direct", move |req| {
            l.lock().unwrap().push(entry(&req));
            Ok(AgentOutput::new("task done"))
        }),
    );
}

/// A registry that plans and executes everything directly, recording runs in `log`.
pub fn registry(log: &RunLog) -> Registry {
    let mut r = Registry::new();
    bind_planning(&mut r);
    bind_execution(&mut r, log);
    r
}

/// A permanent failure.
pub fn broken(message: &str) -> AgentError {
    AgentError::permanent(message)
}

/// The base branch of the test repositories.
pub fn main_branch() -> milestone_git::RefName {
    milestone_git::RefName::new("main").unwrap()
}

/// An in-memory repository with one commit on `main`.
pub fn repo() -> Arc<milestone_git::InMemoryGit> {
    use milestone_git::{CommitRequest, GitBackend, InMemoryGit, RepoPath};
    let git = Arc::new(InMemoryGit::new());
    futures::executor::block_on(async {
        git.write_file(&RepoPath::new("README").unwrap(), b"hi")
            .await
            .unwrap();
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("initial")).await.unwrap();
    });
    git
}

/// The phases committed on the milestone branch, oldest first, as their trailers say (any git
/// backend).
pub fn committed_phases<G: milestone_git::GitBackend + ?Sized>(
    git: &G,
    m: &milestone_core::MilestoneId,
) -> Vec<String> {
    use milestone_git::conventions::{MILESTONE_TRAILER, PHASE_TRAILER, branch_name};
    use milestone_git::{LogRange, Revision};
    let range = LogRange::all(Revision::branch(&branch_name(m)));
    let mut phases: Vec<String> = futures::executor::block_on(git.log(&range))
        .unwrap()
        .into_iter()
        .filter(|e| e.trailer(MILESTONE_TRAILER) == Some(m.as_str()))
        .filter_map(|e| e.trailer(PHASE_TRAILER).map(str::to_owned))
        .collect();
    phases.reverse();
    phases
}

/// A milestone id.
pub fn id(s: &str) -> milestone_core::MilestoneId {
    milestone_core::MilestoneId::new(s).unwrap()
}

/// A phase id.
pub fn ph(s: &str) -> milestone_core::PhaseId {
    milestone_core::PhaseId::new(s).unwrap()
}

/// The directories of a run over `FileStore` and `CliGit`: the store, the repository, and the
/// home of git's isolated configuration (all under one temporary root).
pub struct Dirs {
    _root: tempfile::TempDir,
    pub store: std::path::PathBuf,
    pub repo: std::path::PathBuf,
    pub home: std::path::PathBuf,
}

pub fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let [store, repo, home] = ["store", "repo", "home"].map(|d| root.path().join(d));
    for d in [&store, &repo, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    Dirs {
        _root: root,
        store,
        repo,
        home,
    }
}

/// `git init -b main` in `d.repo` with one commit, through `CliGit`.
pub fn init_repo(d: &Dirs) -> Arc<milestone_git::CliGit> {
    use milestone_git::testing::isolated_config;
    use milestone_git::{CliGit, CommitRequest, GitBackend, RepoPath};
    futures::executor::block_on(async {
        let git = CliGit::init(&d.repo, &main_branch(), isolated_config(&d.home).unwrap())
            .await
            .unwrap();
        git.write_file(&RepoPath::new("README").unwrap(), b"hello\n")
            .await
            .unwrap();
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("initial")).await.unwrap();
        Arc::new(git)
    })
}

/// The repository of `d` opened again (a new process's view).
pub fn open_repo(d: &Dirs) -> Arc<milestone_git::CliGit> {
    use milestone_git::testing::isolated_config;
    Arc::new(
        futures::executor::block_on(milestone_git::CliGit::open(
            &d.repo,
            isolated_config(&d.home).unwrap(),
        ))
        .unwrap(),
    )
}

/// A runner that records its run in `log`, says so on `started` (the first time), then runs
/// until its run is cancelled: the work a dropped call leaves in flight.
pub fn hanging(
    name: &str,
    log: &RunLog,
    started: Option<futures::channel::oneshot::Sender<()>>,
) -> Arc<dyn milestone_agents::AgentRunner> {
    let log = log.clone();
    let started = Mutex::new(started);
    Arc::new(FnAgent::new(
        name,
        move |req: AgentRequest, ctx: milestone_agents::AgentContext| {
            log.lock().unwrap().push(entry(&req));
            if let Some(tx) = started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            async move {
                ctx.cancelled().await;
                Err(AgentError::cancelled("dropped"))
            }
        },
    ))
}
