//! The orchestrator end to end over `FileStore` and `CliGit` in temporary directories (a real
//! `git init -b main`, isolated configuration, fixed identity), including a resume after the
//! process running the milestone is killed with SIGKILL.
#![cfg(unix)]

mod orchestrator_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures::executor::block_on;
use milestone_agents::orchestrator::{Orchestrator, PlanSpec};
use milestone_agents::{AgentOutput, AgentRequest, FnAgent, Registry};
use milestone_core::engine::{Role, Work};
use milestone_core::{Event, ItemRef, MilestoneId, MilestoneStatus, Progress};
use milestone_git::conventions::{PHASE_TRAILER, tag_name};
use milestone_git::{GitBackend, LogRange, Revision};
use milestone_state::{FileStore, StateStore};
use orchestrator_support::*;

fn writing_registry(log: &RunLog, repo: &Path) -> Registry {
    let mut r = registry(log);
    let (l, repo) = (log.clone(), repo.to_path_buf());
    r.bind_direct_any_phase(FnAgent::sync("writer", move |req: AgentRequest| {
        l.lock().unwrap().push(entry(&req));
        if let Work::Item(ItemRef::Phase(p)) = &req.work {
            std::fs::write(repo.join(format!("{p}.md")), format!("# {p}\n"))
                .map_err(|e| broken(&e.to_string()))?;
        }
        Ok(phase_output(&req))
    }));
    r.bind_direct(
        Role::Task,
        FnAgent::sync("task", |_| Ok(AgentOutput::new("task done"))),
    );
    r
}

#[test]
fn plan_transition_execute_over_file_store_and_cli_git() {
    let d = dirs();
    let git = init_repo(&d);
    let log = RunLog::default();
    let m = MilestoneId::new("files").unwrap();
    let orchestrator = Orchestrator::builder()
        .registry(writing_registry(&log, &d.repo))
        .store(Arc::new(FileStore::open(&d.store).unwrap()))
        .git(git.clone(), main_branch())
        .merge(true)
        .build()
        .unwrap();
    let report = block_on(async {
        orchestrator
            .plan(PlanSpec::new(m.clone(), "Store files"))
            .await?;
        orchestrator.transition(&m).await?;
        orchestrator.execute(&m).await
    })
    .unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    assert_eq!(report.progress.overall, Progress::COMPLETE);
    assert_eq!(
        committed_phases(&git, &m),
        vec!["design", "spec", "task", "execute"]
    );
    assert!(block_on(git.resolve(&Revision::tag(&tag_name(&m)))).is_ok());
    // Merged into main with a merge commit: main now holds the phases' files and commits.
    assert!(d.repo.join("spec.md").exists() && d.repo.join("task.md").exists());
    let on_main = block_on(git.log(&LogRange::all(Revision::branch(&main_branch())))).unwrap();
    assert!(
        on_main[0].summary.starts_with("Merge milestone files"),
        "{:?}",
        on_main[0]
    );
    assert_eq!(
        on_main
            .iter()
            .filter(|e| e.trailer(PHASE_TRAILER).is_some())
            .count(),
        4
    );
    assert_eq!(block_on(git.current_branch()).unwrap(), Some(main_branch()));
    drop(orchestrator);
    // A fresh store over the same directory sees the same state, git records included.
    let store = FileStore::open(&d.store).unwrap();
    let state = block_on(store.load(&m)).unwrap().state;
    assert_eq!(state.status(), MilestoneStatus::Completed);
    assert_eq!(state.git().commits.len(), 4);
    assert!(state.git().merge_commit.is_some());
    assert_eq!(state.git().tag.as_deref(), Some("milestone/files"));
}

/// Reads the run log the child and the parent append to.
fn file_log(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn resume_after_sigkill_of_the_process_running_the_milestone() {
    let d = dirs();
    let git = init_repo(&d);
    let m = MilestoneId::new("killed").unwrap();
    let run_log = d.home.join("runs.log");
    // Plan and transition here; the child executes.
    {
        let orchestrator = Orchestrator::builder()
            .registry(writing_registry(&RunLog::default(), &d.repo))
            .store(Arc::new(FileStore::open(&d.store).unwrap()))
            .git(git.clone(), main_branch())
            .build()
            .unwrap();
        block_on(async {
            orchestrator
                .plan(PlanSpec::new(m.clone(), "Survive a kill"))
                .await?;
            orchestrator.transition(&m).await.map(|_| ())
        })
        .unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_milestone-orchestrator-crashtest"))
        .args([
            d.store.as_os_str(),
            d.repo.as_os_str(),
            d.home.as_os_str(),
            m.as_str().as_ref(),
            run_log.as_os_str(),
            "60000".as_ref(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "committed design");
    // The spec phase is running (it waits a minute): kill the process now.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let before = file_log(&run_log);
    assert_eq!(
        before
            .iter()
            .filter(|e| e.starts_with("phase design"))
            .count(),
        1
    );

    // The parent resumes over the same directories with its own runners.
    let log = RunLog::default();
    let orchestrator = Orchestrator::builder()
        .registry(writing_registry(&log, &d.repo))
        .store(Arc::new(FileStore::open(&d.store).unwrap()))
        .git(open_repo(&d), main_branch())
        .build()
        .unwrap();
    let report = block_on(orchestrator.resume(&m)).unwrap();
    assert_eq!(report.status, MilestoneStatus::Completed);
    let after = log.lock().unwrap().clone();
    assert!(
        !after.iter().any(|e| e.starts_with("phase design")),
        "design completed before the kill and must not run again: {after:?}"
    );
    for phase in ["phase spec", "phase task", "phase execute"] {
        let n = after.iter().filter(|e| e.starts_with(phase)).count();
        assert!(n <= 1, "{phase} ran {n} times after the resume");
    }
    // A spec started by the child is restarted with the same idempotency key.
    let key = |e: &String| e.split('#').nth(1).map(str::to_owned);
    let spec_keys: Vec<_> = before
        .iter()
        .chain(after.iter())
        .filter(|e| e.starts_with("phase spec"))
        .map(key)
        .collect();
    assert!(spec_keys.windows(2).all(|w| w[0] == w[1]), "{spec_keys:?}");
    // No commit is duplicated: one per phase on the branch, one record per phase in the log.
    assert_eq!(
        committed_phases(&git, &m),
        vec!["design", "spec", "task", "execute"]
    );
    let events = block_on(orchestrator.store().read_events(&m, 0)).unwrap();
    let mut recorded: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseCommitted { phase, .. } => Some(phase.to_string()),
            _ => None,
        })
        .collect();
    recorded.sort();
    assert_eq!(recorded, vec!["design", "execute", "spec", "task"]);
    assert!(block_on(git.resolve(&Revision::tag(&tag_name(&m)))).is_ok());
}
