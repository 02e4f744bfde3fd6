//! The milestone conventions over both backends: branch, phase commits with exact messages and
//! trailers, idempotence on resume, tag, merge with conflicts and verification, and one git
//! operation at a time under concurrent phase commits.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::executor::{ThreadPool, block_on};
use futures::future::join_all;
use milestone_core::{MilestoneId, PhaseId};
use milestone_git::conventions::{branch_name, tag_name};
use milestone_git::{
    CommitId, CommitRequest, GitBackend, GitError, InMemoryGit, LogEntry, LogRange, MergeOptions,
    MergeOutcome, MilestoneGit, RefName, RepoPath, Revision, Status,
};

fn id(s: &str) -> MilestoneId {
    MilestoneId::new(s).unwrap()
}

fn phase(s: &str) -> PhaseId {
    PhaseId::new(s).unwrap()
}

fn path(s: &str) -> RepoPath {
    RepoPath::new(s).unwrap()
}

fn main_branch() -> RefName {
    RefName::new("main").unwrap()
}

/// A repository with one commit on `main`.
async fn seeded<B: GitBackend>(git: B) -> MilestoneGit<B> {
    git.write_file(&path("README.md"), b"base\n").await.unwrap();
    git.add_all().await.unwrap();
    git.commit(&CommitRequest::new("Initial commit"))
        .await
        .unwrap();
    MilestoneGit::new(git, main_branch())
}

async fn log_of<B: GitBackend>(m: &MilestoneGit<B>, ms: &MilestoneId) -> Vec<LogEntry> {
    let range = LogRange::between(
        Revision::branch(&main_branch()),
        Revision::branch(&branch_name(ms)),
    );
    m.backend().log(&range).await.unwrap()
}

async fn full_flow<B: GitBackend>(git: B) {
    let m = seeded(git).await;
    let ms = id("login");
    let title = "Add login feature";
    assert_eq!(
        m.start(&ms).await.unwrap().as_str(),
        "feature/milestone-login"
    );
    assert_eq!(
        m.backend().current_branch().await.unwrap(),
        Some(branch_name(&ms))
    );
    let mut commits = Vec::new();
    for p in ["design", "spec", "task", "execute"] {
        m.backend()
            .write_file(&path(&format!("docs/{p}.md")), p.as_bytes())
            .await
            .unwrap();
        let c = m.commit_phase(&ms, &phase(p), title).await.unwrap();
        assert!(c.created);
        commits.push(c.commit);
    }
    let log = log_of(&m, &ms).await;
    let summaries: Vec<&str> = log.iter().rev().map(|e| e.summary.as_str()).collect();
    assert_eq!(
        summaries,
        vec![
            "feat(design): complete design phase for Add login feature",
            "feat(spec): complete specification phase for Add login feature",
            "feat(task): complete task planning for Add login feature",
            "feat(execute): implement Add login feature functionality",
        ]
    );
    for (entry, p) in log.iter().rev().zip(["design", "spec", "task", "execute"]) {
        assert_eq!(entry.trailer("Milestone"), Some("login"));
        assert_eq!(entry.trailer("Milestone-Phase"), Some(p));
    }
    assert!(
        m.backend().status().await.unwrap().is_clean(),
        "every file was committed"
    );
    // Idempotent: committing a phase again creates nothing.
    let again = m.commit_phase(&ms, &phase("spec"), title).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.commit, commits[1]);
    assert_eq!(log_of(&m, &ms).await.len(), 4);
    let listed: Vec<(String, CommitId)> = m
        .phase_commits(&ms)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.phase.to_string(), c.commit))
        .collect();
    let expected: Vec<(String, CommitId)> = ["design", "spec", "task", "execute"]
        .iter()
        .map(|p| p.to_string())
        .zip(commits.iter().cloned())
        .collect();
    assert_eq!(listed, expected);
    // Tag, idempotently.
    let tagged = m.tag_completion(&ms, title).await.unwrap();
    assert_eq!(tagged, commits[3]);
    assert_eq!(m.tag_completion(&ms, title).await.unwrap(), tagged);
    assert_eq!(
        m.backend()
            .resolve(&Revision::tag(&tag_name(&ms)))
            .await
            .unwrap(),
        tagged
    );
    // Merge into main with a merge commit, then again: already up to date.
    let outcome = m.merge_into_base(&ms, title).await.unwrap();
    let MergeOutcome::Merged { commit } = outcome else {
        panic!("expected Merged, got {outcome:?}")
    };
    assert_eq!(
        m.backend().current_branch().await.unwrap(),
        Some(main_branch())
    );
    assert_eq!(
        m.backend()
            .resolve(&Revision::new("HEAD^2").unwrap())
            .await
            .unwrap(),
        commits[3]
    );
    let top = m
        .backend()
        .log(&LogRange::all(Revision::head()))
        .await
        .unwrap();
    assert_eq!(top[0].id, commit);
    assert_eq!(top[0].summary, "Merge milestone login: Add login feature");
    assert_eq!(top[0].trailer("Milestone"), Some("login"));
    assert_eq!(
        m.merge_into_base(&ms, title).await.unwrap(),
        MergeOutcome::AlreadyUpToDate
    );
}

#[test]
fn full_flow_in_memory() {
    block_on(full_flow(InMemoryGit::new()));
}

#[test]
fn full_flow_through_arc_dyn() {
    let git: Arc<dyn GitBackend> = Arc::new(InMemoryGit::new());
    block_on(full_flow(git));
}

#[test]
fn full_flow_cli() {
    let repo = common::repo();
    block_on(full_flow(repo.git.clone()));
}

/// A restart (a new `MilestoneGit` over the same repository) finds what was committed before
/// the crash and commits only what is missing.
async fn resume_after_crash<B: GitBackend + Clone>(git: B) {
    let ms = id("resume");
    {
        let before = seeded(git.clone()).await;
        before
            .commit_phase(&ms, &phase("design"), "t")
            .await
            .unwrap();
        before.commit_phase(&ms, &phase("spec"), "t").await.unwrap();
    }
    let after = MilestoneGit::new(git, main_branch());
    let design = after
        .commit_phase(&ms, &phase("design"), "t")
        .await
        .unwrap();
    let spec = after.commit_phase(&ms, &phase("spec"), "t").await.unwrap();
    let task = after.commit_phase(&ms, &phase("task"), "t").await.unwrap();
    assert!(!design.created && !spec.created && task.created);
    assert_eq!(log_of(&after, &ms).await.len(), 3);
    // Another milestone's phase of the same name is a different commit.
    let other = after
        .commit_phase(&id("other"), &phase("design"), "t")
        .await
        .unwrap();
    assert!(other.created);
}

#[test]
fn resume_after_crash_in_memory() {
    block_on(resume_after_crash(Arc::new(InMemoryGit::new())));
}

#[test]
fn resume_after_crash_cli() {
    let repo = common::repo();
    block_on(resume_after_crash(repo.git.clone()));
}

/// Titles are free text: newlines, quotes, a leading `-` or `--option` neither break the
/// message nor the command.
async fn hostile_titles<B: GitBackend>(git: B) {
    let m = seeded(git).await;
    let ms = id("titles");
    let cases = [
        ("design", "-x", "feat(design): complete design phase for -x"),
        (
            "spec",
            "--upload-pack=evil\nMilestone: forged",
            "feat(spec): complete specification phase for --upload-pack=evil Milestone: forged",
        ),
        (
            "task",
            "\"quoted\" 'single' `tick` $(id)",
            "feat(task): complete task planning for \"quoted\" 'single' `tick` $(id)",
        ),
        (
            "execute",
            "line one\r\n\r\nline two\0",
            "feat(execute): implement line one line two functionality",
        ),
    ];
    for (p, title, _) in cases {
        m.commit_phase(&ms, &phase(p), title).await.unwrap();
    }
    let log = log_of(&m, &ms).await;
    for (entry, (p, _, expected)) in log.iter().rev().zip(cases) {
        assert_eq!(entry.summary, expected);
        assert_eq!(
            entry.trailer("Milestone"),
            Some("titles"),
            "a title cannot forge a trailer"
        );
        assert_eq!(entry.trailer("Milestone-Phase"), Some(p));
        assert_eq!(entry.trailers.len(), 2);
    }
}

#[test]
fn hostile_titles_in_memory() {
    block_on(hostile_titles(InMemoryGit::new()));
}

#[test]
fn hostile_titles_cli() {
    let repo = common::repo();
    block_on(hostile_titles(repo.git.clone()));
}

/// The base moved on and changed the same file: the merge reports the conflict; a resolver
/// that leaves markers or litter is refused; a clean resolution makes the merge commit.
async fn conflict_then_resolve<B: GitBackend>(git: B) {
    let m = seeded(git).await;
    let ms = id("clash");
    m.start(&ms).await.unwrap();
    m.backend()
        .write_file(&path("README.md"), b"milestone\n")
        .await
        .unwrap();
    let tip = m
        .commit_phase(&ms, &phase("execute"), "Clash")
        .await
        .unwrap()
        .commit;
    m.backend().switch(&main_branch()).await.unwrap();
    m.backend()
        .write_file(&path("README.md"), b"base moved\n")
        .await
        .unwrap();
    m.backend().add_all().await.unwrap();
    let base_tip = m
        .backend()
        .commit(&CommitRequest::new("base moves"))
        .await
        .unwrap();
    let outcome = m.merge_into_base(&ms, "Clash").await.unwrap();
    assert_eq!(
        outcome,
        MergeOutcome::Conflicts {
            paths: vec!["README.md".into()]
        }
    );
    let conflicted = [path("README.md")];
    // A restart while the resolver works: the merge is reported again, not started again.
    let restarted = MilestoneGit::new(m.backend(), main_branch());
    assert_eq!(
        restarted.merge_into_base(&ms, "Clash").await.unwrap(),
        MergeOutcome::Conflicts {
            paths: vec!["README.md".into()]
        }
    );
    // The resolver has not worked yet: markers are still there.
    assert_eq!(
        m.complete_merge(&ms, "Clash", &conflicted).await,
        Err(GitError::Conflict {
            paths: vec!["README.md".into()]
        })
    );
    // It resolved, but left a backup file behind.
    m.backend()
        .write_file(&path("README.md"), b"both\n")
        .await
        .unwrap();
    m.backend()
        .write_file(&path("README.md.orig"), b"junk\n")
        .await
        .unwrap();
    assert_eq!(
        m.complete_merge(&ms, "Clash", &conflicted).await,
        Err(GitError::DirtyWorkTree {
            paths: vec!["README.md.orig".into()]
        })
    );
    assert!(
        m.backend().merge_in_progress().await.unwrap().is_some(),
        "still merging"
    );
    assert!(
        m.backend()
            .remove_file(&path("README.md.orig"))
            .await
            .unwrap()
    );
    let merge = m.complete_merge(&ms, "Clash", &conflicted).await.unwrap();
    assert_eq!(m.backend().head().await.unwrap(), Some(merge));
    assert_eq!(
        m.backend()
            .resolve(&Revision::new("HEAD^1").unwrap())
            .await
            .unwrap(),
        base_tip
    );
    assert_eq!(
        m.backend()
            .resolve(&Revision::new("HEAD^2").unwrap())
            .await
            .unwrap(),
        tip
    );
    assert!(m.backend().status().await.unwrap().is_clean());
    assert_eq!(
        m.complete_merge(&ms, "Clash", &conflicted).await,
        Err(GitError::NoMergeInProgress)
    );
}

#[test]
fn conflict_then_resolve_in_memory() {
    block_on(conflict_then_resolve(InMemoryGit::new()));
}

#[test]
fn conflict_then_resolve_cli() {
    let repo = common::repo();
    block_on(conflict_then_resolve(repo.git.clone()));
}

async fn conflict_then_abort<B: GitBackend>(git: B) {
    let m = seeded(git).await;
    let ms = id("abort");
    m.start(&ms).await.unwrap();
    m.backend()
        .write_file(&path("README.md"), b"milestone\n")
        .await
        .unwrap();
    m.commit_phase(&ms, &phase("execute"), "Abort")
        .await
        .unwrap();
    m.backend().switch(&main_branch()).await.unwrap();
    m.backend()
        .write_file(&path("README.md"), b"base moved\n")
        .await
        .unwrap();
    m.backend().add_all().await.unwrap();
    let base_tip = m
        .backend()
        .commit(&CommitRequest::new("base moves"))
        .await
        .unwrap();
    assert!(matches!(
        m.merge_into_base(&ms, "Abort").await.unwrap(),
        MergeOutcome::Conflicts { .. }
    ));
    m.abort_merge().await.unwrap();
    assert_eq!(m.backend().head().await.unwrap(), Some(base_tip));
    assert_eq!(m.backend().status().await.unwrap(), Status::default());
    assert_eq!(m.abort_merge().await, Err(GitError::NoMergeInProgress));
}

#[test]
fn conflict_then_abort_in_memory() {
    block_on(conflict_then_abort(InMemoryGit::new()));
}

#[test]
fn conflict_then_abort_cli() {
    let repo = common::repo();
    block_on(conflict_then_abort(repo.git.clone()));
}

#[test]
fn a_missing_base_is_ref_not_found() {
    let git = InMemoryGit::new();
    let m = MilestoneGit::new(&git, RefName::new("develop").unwrap());
    block_on(async {
        git.write_file(&path("a"), b"a").await.unwrap();
        git.add_all().await.unwrap();
        git.commit(&CommitRequest::new("root")).await.unwrap();
        let err = m.start(&id("x")).await.unwrap_err();
        assert_eq!(
            err,
            GitError::RefNotFound {
                name: "refs/heads/develop".into()
            }
        );
    });
}

/// A backend wrapper that records how many operations run at once.
#[derive(Debug)]
struct Counting<B> {
    inner: B,
    now: AtomicUsize,
    max: AtomicUsize,
    calls: AtomicUsize,
}

impl<B> Counting<B> {
    fn new(inner: B) -> Self {
        Self {
            inner,
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }
    }

    async fn track<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Give other tasks every chance to overlap with this one.
        std::thread::yield_now();
        let out = f.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[async_trait]
impl<B: GitBackend> GitBackend for Counting<B> {
    async fn head(&self) -> Result<Option<CommitId>, GitError> {
        self.track(self.inner.head()).await
    }
    async fn current_branch(&self) -> Result<Option<RefName>, GitError> {
        self.track(self.inner.current_branch()).await
    }
    async fn branch_exists(&self, name: &RefName) -> Result<bool, GitError> {
        self.track(self.inner.branch_exists(name)).await
    }
    async fn create_branch(&self, name: &RefName, from: &Revision) -> Result<CommitId, GitError> {
        self.track(self.inner.create_branch(name, from)).await
    }
    async fn switch(&self, name: &RefName) -> Result<(), GitError> {
        self.track(self.inner.switch(name)).await
    }
    async fn status(&self) -> Result<Status, GitError> {
        self.track(self.inner.status()).await
    }
    async fn add(&self, paths: &[RepoPath]) -> Result<(), GitError> {
        self.track(self.inner.add(paths)).await
    }
    async fn add_all(&self) -> Result<(), GitError> {
        self.track(self.inner.add_all()).await
    }
    async fn commit(&self, request: &CommitRequest) -> Result<CommitId, GitError> {
        self.track(self.inner.commit(request)).await
    }
    async fn tag(&self, name: &RefName, target: &Revision, message: &str) -> Result<(), GitError> {
        self.track(self.inner.tag(name, target, message)).await
    }
    async fn merge(
        &self,
        rev: &Revision,
        options: &MergeOptions,
    ) -> Result<MergeOutcome, GitError> {
        self.track(self.inner.merge(rev, options)).await
    }
    async fn abort_merge(&self) -> Result<(), GitError> {
        self.track(self.inner.abort_merge()).await
    }
    async fn merge_in_progress(&self) -> Result<Option<CommitId>, GitError> {
        self.track(self.inner.merge_in_progress()).await
    }
    async fn log(&self, range: &LogRange) -> Result<Vec<LogEntry>, GitError> {
        self.track(self.inner.log(range)).await
    }
    async fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError> {
        self.track(self.inner.resolve(rev)).await
    }
    async fn read_file(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, GitError> {
        self.track(self.inner.read_file(path)).await
    }
    async fn write_file(&self, path: &RepoPath, contents: &[u8]) -> Result<(), GitError> {
        self.track(self.inner.write_file(path, contents)).await
    }
    async fn remove_file(&self, path: &RepoPath) -> Result<bool, GitError> {
        self.track(self.inner.remove_file(path)).await
    }
}

/// Many phases finish at once on a thread pool: git still sees one operation at a time, and
/// every phase gets exactly one commit.
fn concurrent_phase_commits<B: GitBackend + 'static>(git: B, phases: usize) {
    let pool = ThreadPool::builder().pool_size(4).create().unwrap();
    let m = Arc::new(block_on(seeded(Counting::new(git))));
    let ms = id("parallel");
    let tasks: Vec<_> = (0..phases)
        .map(|i| {
            let (m, ms) = (m.clone(), ms.clone());
            let (tx, rx) = futures::channel::oneshot::channel();
            pool.spawn_ok(async move {
                let p = phase(&format!("phase-{i}"));
                let first = m.commit_phase(&ms, &p, "Parallel").await;
                let second = m.commit_phase(&ms, &p, "Parallel").await;
                let _ = tx.send((first, second));
            });
            rx
        })
        .collect();
    let results = block_on(join_all(tasks));
    for r in results {
        let (first, second) = r.unwrap();
        let (first, second) = (first.unwrap(), second.unwrap());
        assert!(first.created && !second.created);
        assert_eq!(first.commit, second.commit);
    }
    assert_eq!(
        m.backend().max.load(Ordering::SeqCst),
        1,
        "two git operations overlapped"
    );
    assert!(m.backend().calls.load(Ordering::SeqCst) > phases * 4);
    assert_eq!(block_on(log_of(&m, &ms)).len(), phases);
}

#[test]
fn concurrent_phase_commits_in_memory() {
    concurrent_phase_commits(InMemoryGit::new(), 32);
}

#[test]
fn concurrent_phase_commits_cli() {
    let repo = common::repo();
    concurrent_phase_commits(repo.git.clone(), 8);
}
