//! A child process for the orchestrator's crash test (`tests/orchestrator_crash.rs`): executes
//! (or resumes) one milestone on a `FileStore` and a `CliGit` repository, with phase runners
//! that record each run in a log file, write a file into the repository and take their time.
//! It prints `committed <phase>` once a phase commit is recorded, so the test knows when to
//! kill it. Not a user-facing tool.
//!
//! Usage: `milestone-orchestrator-crashtest <store-dir> <repo-dir> <home-dir> <milestone-id>
//! <run-log> <phase-delay-ms>`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use milestone_agents::orchestrator::{Notice, Orchestrator};
use milestone_agents::{
    AgentError, AgentOutput, AgentRequest, Clock, FnAgent, Registry, SystemClock,
};
use milestone_core::engine::{Role, Work};
use milestone_core::{Artifact, ArtifactBody, Event, ItemRef, MilestoneId, Workflow};
use milestone_git::{CliGit, CliGitConfig, Identity, RefName};
use milestone_state::FileStore;

fn fail(message: String) -> ! {
    eprintln!("milestone-orchestrator-crashtest: {message}");
    std::process::exit(2)
}

/// The isolated git configuration of the tests (no user or system config, fixed identity).
fn git_config(home: &std::path::Path) -> Result<CliGitConfig, String> {
    let global = home.join("gitconfig");
    std::fs::write(&global, b"").map_err(|e| e.to_string())?;
    let identity =
        Identity::new("Milestone Test", "milestone@example.invalid").map_err(|e| e.to_string())?;
    Ok(CliGitConfig::default()
        .with_identity(identity)
        .with_date("2005-04-07T22:13:13 +0000")
        .with_env("HOME", home)
        .with_env("XDG_CONFIG_HOME", home)
        .with_env("GIT_CONFIG_NOSYSTEM", "1")
        .with_env("GIT_CONFIG_GLOBAL", &global))
}

/// What a phase run does: log, write a file into the repository, wait, return the outputs.
async fn phase(
    req: AgentRequest,
    repo: PathBuf,
    log: PathBuf,
    delay_ms: u64,
    clock: Arc<SystemClock>,
) -> Result<AgentOutput, AgentError> {
    let name = match &req.work {
        Work::Item(ItemRef::Phase(p)) => p.as_str().to_owned(),
        other => other.to_string(),
    };
    let line = format!("{}@{}#{}\n", req.work, req.attempt, req.idempotency_key);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| AgentError::permanent(e.to_string()))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| AgentError::permanent(e.to_string()))?;
    if name != "design" {
        clock.sleep(delay_ms).await;
    }
    std::fs::write(repo.join(format!("{name}.md")), format!("# {name}\n"))
        .map_err(|e| AgentError::permanent(e.to_string()))?;
    let mut out = AgentOutput::new(format!("{name} done"));
    if let Some(spec) = Workflow::kiro().phase(&name) {
        for n in &spec.expected_outputs {
            out = out.with_artifact(Artifact {
                name: n.clone(),
                kind: "document".into(),
                body: ArtifactBody::Inline(String::new()),
            });
        }
    }
    Ok(out)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, repo, home, id, log, delay] = args.as_slice() else {
        fail("usage: <store-dir> <repo-dir> <home-dir> <milestone-id> <run-log> <delay-ms>".into())
    };
    let delay: u64 = delay
        .parse()
        .unwrap_or_else(|e| fail(format!("delay: {e}")));
    let id = MilestoneId::new(id).unwrap_or_else(|e| fail(e.to_string()));
    let (store_dir, repo_dir, home, log) = (
        PathBuf::from(store),
        PathBuf::from(repo),
        PathBuf::from(home),
        PathBuf::from(log),
    );
    let result = futures::executor::block_on(async move {
        let config = git_config(&home)?;
        let git = CliGit::open(&repo_dir, config)
            .await
            .map_err(|e| e.to_string())?;
        let store = FileStore::open(&store_dir).map_err(|e| e.to_string())?;
        let clock = Arc::new(SystemClock::new());
        let mut registry = Registry::new();
        let (r, l, c) = (repo_dir.clone(), log.clone(), Arc::clone(&clock));
        registry.bind_direct_any_phase(FnAgent::new("phase", move |req, _ctx| {
            phase(req, r.clone(), l.clone(), delay, Arc::clone(&c))
        }));
        registry.bind_direct(
            Role::Task,
            FnAgent::sync("task", |_| Ok(AgentOutput::new("task done"))),
        );
        let listener = |n: &Notice| {
            if let Event::PhaseCommitted { phase, .. } = &n.event {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "committed {phase}");
                let _ = out.flush();
            }
        };
        let orchestrator = Orchestrator::builder()
            .registry(registry)
            .store(Arc::new(store))
            .git(
                Arc::new(git),
                RefName::new("main").map_err(|e| e.to_string())?,
            )
            .clock(clock)
            .listener(Arc::new(listener))
            .build()
            .map_err(|e| e.to_string())?;
        let report = orchestrator.resume(&id).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(report.status)
    });
    match result {
        Ok(status) => println!("finished {status}"),
        Err(e) => fail(e),
    }
}
