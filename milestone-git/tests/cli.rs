//! The conformance suite and CLI-specific behaviour against real git repositories.

#![cfg(unix)]

mod common;

use std::sync::Arc;

use futures::executor::block_on;
use milestone_git::testing::{self, Capabilities};
use milestone_git::{CliGit, CommitRequest, GitBackend, GitError, RepoPath};

#[test]
fn conformance_cli() {
    for name in testing::ALL {
        let repo = common::repo();
        block_on(testing::run(name, &repo.git, Capabilities::GIT));
    }
}

#[test]
fn conformance_cli_through_arc_dyn() {
    for name in ["first_commit", "conflicts"] {
        let repo = common::repo();
        let git: Arc<dyn GitBackend> = Arc::new(repo.git.clone());
        block_on(testing::run(name, &git, Capabilities::GIT));
    }
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn real_git() -> String {
    // Whatever `git` the tests run with; the version check would refuse one that is too old.
    "git".to_owned()
}

#[test]
fn missing_program_is_git_missing() {
    let home = tempfile::TempDir::new().unwrap();
    let config = common::config(&home).with_program("/nonexistent/bin/git");
    let err = block_on(CliGit::open(home.path(), config)).unwrap_err();
    assert!(matches!(err, GitError::GitMissing { .. }), "{err:?}");
}

#[test]
fn old_git_is_refused() {
    let home = tempfile::TempDir::new().unwrap();
    let old = script(home.path(), "old-git", "echo 'git version 2.30.1'");
    let config = common::config(&home).with_program(old);
    let err = block_on(CliGit::open(home.path(), config)).unwrap_err();
    assert_eq!(
        err,
        GitError::GitTooOld {
            found: "2.30.1".into(),
            required: "2.38"
        }
    );
}

#[test]
fn a_plain_directory_is_not_a_repository() {
    let home = tempfile::TempDir::new().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let parent = dir.path().parent().unwrap().to_path_buf();
    let config = common::config(&home).with_env("GIT_CEILING_DIRECTORIES", parent);
    let err = block_on(CliGit::open(dir.path(), config)).unwrap_err();
    assert_eq!(
        err,
        GitError::NotARepository {
            path: dir.path().to_path_buf()
        }
    );
}

#[test]
fn open_finds_the_top_of_the_working_tree() {
    let repo = common::repo();
    let sub = repo.dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let git = block_on(CliGit::open(&sub, common::config(&repo.home))).unwrap();
    assert_eq!(
        git.workdir().canonicalize().unwrap(),
        repo.dir.path().canonicalize().unwrap()
    );
}

#[test]
fn no_identity_is_identity_unknown() {
    let repo = common::repo_with(|mut c| {
        c.author = None;
        c.committer = None;
        c
    });
    // Refuse git's guesses from the host name, as a CI machine without identity would.
    std::fs::write(
        repo.home.path().join("gitconfig"),
        "[user]\n\tuseConfigOnly = true\n",
    )
    .unwrap();
    let err = block_on(repo.git.commit(&CommitRequest::new("x").allow_empty(true))).unwrap_err();
    assert!(matches!(err, GitError::IdentityUnknown { .. }), "{err:?}");
}

fn failing_hook(repo: &common::Repo) {
    let hooks = repo.dir.path().join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    script(
        &hooks,
        "pre-commit",
        "echo 'pre-commit says no' >&2; exit 1",
    );
}

#[test]
fn hooks_do_not_run_by_default() {
    let repo = common::repo();
    failing_hook(&repo);
    block_on(repo.git.commit(&CommitRequest::new("x").allow_empty(true))).unwrap();
}

#[test]
fn hooks_run_when_asked_and_fail_typed() {
    let repo = common::repo_with(|c| c.with_hooks(milestone_git::HooksPolicy::RunRepository));
    failing_hook(&repo);
    let err = block_on(repo.git.commit(&CommitRequest::new("x").allow_empty(true))).unwrap_err();
    assert!(
        matches!(&err, GitError::HookFailed { stderr } if stderr.contains("pre-commit says no")),
        "{err:?}"
    );
    assert_eq!(
        block_on(repo.git.head()).unwrap(),
        None,
        "nothing was committed"
    );
}

fn signing_config(repo: &common::Repo) {
    std::fs::write(
        repo.home.path().join("gitconfig"),
        "[commit]\n\tgpgsign = true\n[tag]\n\tgpgsign = true\n[gpg]\n\tprogram = /nonexistent/gpg\n",
    )
    .unwrap();
}

#[test]
fn signing_is_off_by_default() {
    let repo = common::repo();
    signing_config(&repo);
    block_on(repo.git.commit(&CommitRequest::new("x").allow_empty(true))).unwrap();
    let tag = milestone_git::RefName::new("t").unwrap();
    block_on(repo.git.tag(&tag, &milestone_git::Revision::head(), "tag")).unwrap();
}

#[test]
fn signing_from_config_fails_typed() {
    let repo = common::repo_with(|c| c.with_signing(milestone_git::SigningPolicy::FromConfig));
    signing_config(&repo);
    let err = block_on(repo.git.commit(&CommitRequest::new("x").allow_empty(true))).unwrap_err();
    assert!(matches!(err, GitError::SigningFailed { .. }), "{err:?}");
}

#[test]
fn hostile_environment_is_removed() {
    let repo = common::repo_with(|c| {
        c.with_env("GIT_DIR", "/nonexistent/.git")
            .with_env("GIT_WORK_TREE", "/nonexistent")
            .with_env("GIT_INDEX_FILE", "/nonexistent/index")
            .with_env("GIT_OBJECT_DIRECTORY", "/nonexistent/objects")
            .with_env("GIT_CONFIG_PARAMETERS", "'core.hooksPath'='/nonexistent'")
            .with_env("GIT_CONFIG_COUNT", "1")
            .with_env("GIT_CONFIG_KEY_0", "user.email")
            .with_env("GIT_CONFIG_VALUE_0", "evil@example.invalid")
            .with_env("GIT_NAMESPACE", "evil")
            .with_env("LC_ALL", "fr_FR.UTF-8")
    });
    block_on(async {
        repo.git
            .write_file(&RepoPath::new("a").unwrap(), b"a\n")
            .await
            .unwrap();
        repo.git.add_all().await.unwrap();
        repo.git
            .commit(&CommitRequest::new("isolated"))
            .await
            .unwrap();
        assert!(repo.git.status().await.unwrap().is_clean());
    });
    let out = std::process::Command::new(real_git())
        .args(["log", "-1", "--format=%ae %ad", "--date=unix"])
        .current_dir(repo.dir.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo.home.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "milestone@example.invalid 1112911993"
    );
}

#[test]
fn fixed_dates_make_commit_ids_reproducible() {
    let run = || {
        let repo = common::repo();
        block_on(async {
            repo.git
                .write_file(&RepoPath::new("a").unwrap(), b"a\n")
                .await
                .unwrap();
            repo.git.add_all().await.unwrap();
            repo.git.commit(&CommitRequest::new("same")).await.unwrap()
        })
    };
    assert_eq!(run(), run());
}

#[test]
fn a_git_call_does_not_block_the_executor() {
    let home = tempfile::TempDir::new().unwrap();
    let slow = script(home.path(), "slow-git", "sleep 0.5; exec git \"$@\"");
    let repo = common::repo();
    let config = common::config(&repo.home).with_program(slow);
    let git = block_on(CliGit::open(repo.dir.path(), config)).unwrap();
    let mut pool = futures::executor::LocalPool::new();
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = done.clone();
    use futures::task::LocalSpawnExt;
    pool.spawner()
        .spawn_local(async move {
            git.status().await.unwrap();
            flag.set(true);
        })
        .unwrap();
    let start = std::time::Instant::now();
    pool.run_until_stalled();
    // The single executor thread came back while git was still running.
    assert!(
        !done.get(),
        "the status call completed inside run_until_stalled"
    );
    assert!(start.elapsed() < std::time::Duration::from_millis(400));
    pool.run();
    assert!(done.get());
}

#[test]
fn processes_are_counted() {
    let repo = common::repo();
    let before = repo.git.processes_spawned();
    block_on(repo.git.status()).unwrap();
    assert_eq!(repo.git.processes_spawned(), before + 1);
}

#[test]
fn a_missing_directory_is_not_a_repository() {
    let home = tempfile::TempDir::new().unwrap();
    let gone = home.path().join("nope");
    let err = block_on(CliGit::open(&gone, common::config(&home))).unwrap_err();
    assert_eq!(err, GitError::NotARepository { path: gone });
}

#[test]
fn working_tree_files_never_go_through_a_symlink() {
    let repo = common::repo();
    let outside = tempfile::TempDir::new().unwrap();
    let target = outside.path().join("precious.txt");
    std::fs::write(&target, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&target, repo.dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.dir.path().join("dir")).unwrap();
    block_on(async {
        for p in ["link", "dir/precious.txt", "dir/new.txt"] {
            let p = RepoPath::new(p).unwrap();
            assert!(matches!(
                repo.git.write_file(&p, b"overwritten").await,
                Err(GitError::Io { .. })
            ));
            assert!(matches!(
                repo.git.read_file(&p).await,
                Err(GitError::Io { .. })
            ));
            assert!(matches!(
                repo.git.remove_file(&p).await,
                Err(GitError::Io { .. })
            ));
        }
    });
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert!(!outside.path().join("new.txt").exists());
}

#[test]
fn a_repository_of_another_owner_is_dubious_ownership() {
    let repo = common::repo();
    // git's own test switch makes it treat the repository as owned by someone else.
    let config = common::config(&repo.home).with_env("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1");
    let err = block_on(CliGit::open(repo.dir.path(), config)).unwrap_err();
    assert!(
        matches!(&err, GitError::DubiousOwnership { stderr } if stderr.contains("safe.directory")),
        "{err:?}"
    );
}

#[test]
fn a_current_branch_outside_our_name_rules_is_just_another_branch() {
    use milestone_core::{MilestoneId, PhaseId};
    use milestone_git::{MilestoneGit, RefName};
    let repo = common::repo();
    block_on(async {
        repo.git
            .write_file(&milestone_git::RepoPath::new("a.txt").unwrap(), b"a\n")
            .await
            .unwrap();
        repo.git.add_all().await.unwrap();
        repo.git
            .commit(&milestone_git::CommitRequest::new("init"))
            .await
            .unwrap();
    });
    // git allows `fix#12`; our caller-input rules do not.
    let status = std::process::Command::new("git")
        .args(["-c", "core.hooksPath=/dev/null", "switch", "-c", "fix#12"])
        .current_dir(repo.dir.path())
        .env("HOME", repo.home.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success());
    let conventions = MilestoneGit::new(&repo.git, RefName::new("main").unwrap());
    let id = MilestoneId::new("m").unwrap();
    let branch = block_on(conventions.start(&id)).unwrap();
    assert_eq!(branch.as_str(), "feature/milestone-m");
    let done =
        block_on(conventions.commit_phase(&id, &PhaseId::new("design").unwrap(), "M")).unwrap();
    assert!(done.created);
}
