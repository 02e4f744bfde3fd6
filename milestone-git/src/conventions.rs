//! [`MilestoneGit`]: the milestone's git conventions, over any [`GitBackend`].
//!
//! * One branch per milestone, `feature/milestone-<id>`, created from a base branch.
//! * One commit per phase, with the messages of the design
//!   (`feat(design): complete design phase for <title>`, …, see [`phase_message`]) and the
//!   trailers `Milestone: <id>` and `Milestone-Phase: <phase>`.
//! * **Idempotent**: a phase whose trailers are already on the branch (in `base..branch`) is not
//!   committed again; the existing commit is returned. This is what makes resume after a crash
//!   safe: whatever was committed before the crash is found, not duplicated.
//! * An annotated tag `milestone/<id>` when the milestone completes (also idempotent).
//! * A merge into the base branch with a merge commit; conflicts come back as
//!   [`MergeOutcome::Conflicts`] with their paths, and after a resolver has edited the files,
//!   [`MilestoneGit::complete_merge`] verifies them (no conflict markers, nothing unmerged, no
//!   stray untracked files) before making the merge commit.
//! * **One git operation at a time**: every method holds an async mutex for its whole
//!   sequence of git calls, however many phases run in parallel. Going around it (calling the
//!   backend directly while phases run) gives up that guarantee.

use futures::lock::Mutex;
use milestone_core::{MilestoneId, PhaseId};

use crate::backend::{
    CommitRequest, FastForward, GitBackend, LogRange, MergeOptions, MergeOutcome, Trailer,
};
use crate::error::GitError;
use crate::names::{CommitId, RefName, RepoPath, Revision};

/// The trailer key naming the milestone.
pub const MILESTONE_TRAILER: &str = "Milestone";
/// The trailer key naming the phase.
pub const PHASE_TRAILER: &str = "Milestone-Phase";
/// The longest title kept in a commit subject, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A title made safe for a one-line subject: every run of whitespace or control characters
/// becomes one space, the ends are trimmed, and it is cut at [`MAX_TITLE_CHARS`] characters.
pub fn one_line(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for word in title
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    let cut: String = out.chars().take(MAX_TITLE_CHARS).collect();
    cut.trim_end().to_owned()
}

/// The commit subject for a phase.
///
/// | phase     | subject                                          |
/// |-----------|--------------------------------------------------|
/// | `design`  | `feat(design): complete design phase for <title>` |
/// | `spec`    | `feat(spec): complete specification phase for <title>` |
/// | `task`    | `feat(task): complete task planning for <title>` |
/// | `execute` | `feat(execute): implement <title> functionality` |
/// | other `p` | `feat(p): complete p phase for <title>`           |
///
/// The title passes through [`one_line`]; an empty title is replaced by `milestone`.
///
/// ```
/// use milestone_core::PhaseId;
/// use milestone_git::conventions::phase_message;
///
/// let spec = PhaseId::new("spec")?;
/// assert_eq!(phase_message(&spec, "Add\nlogin"), "feat(spec): complete specification phase for Add login");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn phase_message(phase: &PhaseId, title: &str) -> String {
    let mut title = one_line(title);
    if title.is_empty() {
        title = "milestone".to_owned();
    }
    match phase.as_str() {
        "design" => format!("feat(design): complete design phase for {title}"),
        "spec" => format!("feat(spec): complete specification phase for {title}"),
        "task" => format!("feat(task): complete task planning for {title}"),
        "execute" => format!("feat(execute): implement {title} functionality"),
        p => format!("feat({p}): complete {p} phase for {title}"),
    }
}

/// The milestone branch: `feature/milestone-<id>`.
pub fn branch_name(id: &MilestoneId) -> RefName {
    // A milestone id is `[a-z0-9][a-z0-9._-]*` without `..`, a trailing `.` or `.lock`: always a
    // valid ref component after `milestone-`.
    RefName(std::sync::Arc::from(format!(
        "feature/milestone-{}",
        id.as_str()
    )))
}

/// The completion tag: `milestone/<id>`.
pub fn tag_name(id: &MilestoneId) -> RefName {
    RefName(std::sync::Arc::from(format!("milestone/{}", id.as_str())))
}

/// Whether `contents` holds a conflict marker line (`<<<<<<<`, `|||||||`, `=======` alone, or
/// `>>>>>>>`).
pub fn has_conflict_markers(contents: &[u8]) -> bool {
    contents.split(|b| *b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.starts_with(b"<<<<<<<")
            || line.starts_with(b">>>>>>>")
            || line.starts_with(b"|||||||")
            || line == b"======="
    })
}

/// A phase commit on the milestone branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedPhase {
    /// The phase.
    pub phase: PhaseId,
    /// Its commit.
    pub commit: CommitId,
    /// `true` when this call made the commit, `false` when it was already on the branch.
    pub created: bool,
}

/// The milestone conventions over a backend. See the module docs.
#[derive(Debug)]
pub struct MilestoneGit<B> {
    backend: B,
    base: RefName,
    lock: Mutex<()>,
}

fn trailers(id: &MilestoneId, phase: Option<&PhaseId>) -> Result<Vec<Trailer>, GitError> {
    let mut t = vec![Trailer::new(MILESTONE_TRAILER, id.as_str())?];
    if let Some(p) = phase {
        t.push(Trailer::new(PHASE_TRAILER, p.as_str())?);
    }
    Ok(t)
}

fn merge_message(id: &MilestoneId, title: &str) -> String {
    let title = one_line(title);
    let title = if title.is_empty() {
        id.as_str().to_owned()
    } else {
        title
    };
    format!("Merge milestone {id}: {title}\n\n{MILESTONE_TRAILER}: {id}\n")
}

impl<B: GitBackend> MilestoneGit<B> {
    /// Conventions over `backend`, with milestones branching from and merging into `base`.
    pub fn new(backend: B, base: RefName) -> Self {
        Self {
            backend,
            base,
            lock: Mutex::new(()),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The base branch.
    pub fn base(&self) -> &RefName {
        &self.base
    }

    /// Whether the work tree is on `branch`. A current branch that git allows but our stricter
    /// name rules refuse (`fix#12`, `wip@home`) is simply another branch, not an error.
    async fn is_on(&self, branch: &RefName) -> Result<bool, GitError> {
        match self.backend.current_branch().await {
            Ok(current) => Ok(current.as_ref() == Some(branch)),
            Err(GitError::InvalidName { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn on_branch(&self, id: &MilestoneId) -> Result<RefName, GitError> {
        let branch = branch_name(id);
        if self.is_on(&branch).await? {
            return Ok(branch);
        }
        if !self.backend.branch_exists(&branch).await? {
            self.backend
                .create_branch(&branch, &Revision::branch(&self.base))
                .await?;
        }
        self.backend.switch(&branch).await?;
        Ok(branch)
    }

    /// Creates the milestone branch from the base branch unless it exists, and switches to it.
    /// Returns the branch name.
    ///
    /// # Errors
    /// [`GitError::RefNotFound`] when the base branch does not exist; what the backend reports.
    pub async fn start(&self, id: &MilestoneId) -> Result<RefName, GitError> {
        let _guard = self.lock.lock().await;
        self.on_branch(id).await
    }

    async fn find_phase(
        &self,
        id: &MilestoneId,
        phase: &PhaseId,
    ) -> Result<Option<CommitId>, GitError> {
        let range = LogRange::between(
            Revision::branch(&self.base),
            Revision::branch(&branch_name(id)),
        );
        Ok(self
            .backend
            .log(&range)
            .await?
            .into_iter()
            .find(|e| {
                e.trailer(MILESTONE_TRAILER) == Some(id.as_str())
                    && e.trailer(PHASE_TRAILER) == Some(phase.as_str())
            })
            .map(|e| e.id))
    }

    /// Commits everything in the working tree as the phase's commit on the milestone branch
    /// (creating and switching to the branch as needed). A phase that already has its commit
    /// on the branch is not committed again: the existing commit comes back with
    /// `created: false`.
    ///
    /// # Errors
    /// What the backend reports (a dirty switch, an unknown identity, a hook…).
    pub async fn commit_phase(
        &self,
        id: &MilestoneId,
        phase: &PhaseId,
        title: &str,
    ) -> Result<CommittedPhase, GitError> {
        let _guard = self.lock.lock().await;
        self.on_branch(id).await?;
        if let Some(commit) = self.find_phase(id, phase).await? {
            return Ok(CommittedPhase {
                phase: phase.clone(),
                commit,
                created: false,
            });
        }
        self.backend.add_all().await?;
        let request = CommitRequest {
            message: phase_message(phase, title),
            trailers: trailers(id, Some(phase))?,
            allow_empty: true,
        };
        let commit = self.backend.commit(&request).await?;
        Ok(CommittedPhase {
            phase: phase.clone(),
            commit,
            created: true,
        })
    }

    /// The phase commits on the milestone branch, oldest first.
    ///
    /// # Errors
    /// [`GitError::RefNotFound`] when the branch or the base does not exist.
    pub async fn phase_commits(&self, id: &MilestoneId) -> Result<Vec<CommittedPhase>, GitError> {
        let _guard = self.lock.lock().await;
        let range = LogRange::between(
            Revision::branch(&self.base),
            Revision::branch(&branch_name(id)),
        );
        let mut out: Vec<CommittedPhase> = self
            .backend
            .log(&range)
            .await?
            .into_iter()
            .filter(|e| e.trailer(MILESTONE_TRAILER) == Some(id.as_str()))
            .filter_map(|e| {
                let phase = PhaseId::new(e.trailer(PHASE_TRAILER)?).ok()?;
                Some(CommittedPhase {
                    phase,
                    commit: e.id,
                    created: false,
                })
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Tags the tip of the milestone branch `milestone/<id>` (annotated), unless the tag exists.
    /// Returns the tagged commit.
    ///
    /// # Errors
    /// [`GitError::RefNotFound`] when the milestone branch does not exist.
    pub async fn tag_completion(
        &self,
        id: &MilestoneId,
        title: &str,
    ) -> Result<CommitId, GitError> {
        let _guard = self.lock.lock().await;
        let tag = tag_name(id);
        match self.backend.resolve(&Revision::tag(&tag)).await {
            Ok(commit) => return Ok(commit),
            Err(GitError::RefNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let target = Revision::branch(&branch_name(id));
        let commit = self.backend.resolve(&target).await?;
        let title = one_line(title);
        let message = if title.is_empty() {
            format!("Milestone {id} complete")
        } else {
            format!("Milestone {id} complete: {title}")
        };
        self.backend
            .tag(&tag, &Revision::from(&commit), &message)
            .await?;
        Ok(commit)
    }

    /// Switches to the base branch and merges the milestone branch into it with a merge commit.
    /// Already merged → [`MergeOutcome::AlreadyUpToDate`]; conflicts →
    /// [`MergeOutcome::Conflicts`] with the merge left in progress for a resolver, then
    /// [`MilestoneGit::complete_merge`] or [`MilestoneGit::abort_merge`].
    ///
    /// A merge of this milestone left in progress (a crash while a resolver worked, say) is not
    /// started again: it is reported again as [`MergeOutcome::Conflicts`] with the paths still
    /// unmerged (possibly none, when only [`MilestoneGit::complete_merge`] is left to do).
    ///
    /// # Errors
    /// [`GitError::Conflict`] when a merge of something else is in progress; what the backend
    /// reports (a dirty working tree, a missing branch…).
    pub async fn merge_into_base(
        &self,
        id: &MilestoneId,
        title: &str,
    ) -> Result<MergeOutcome, GitError> {
        let _guard = self.lock.lock().await;
        let branch = Revision::branch(&branch_name(id));
        if let Some(merging) = self.backend.merge_in_progress().await? {
            let conflicted = self.backend.status().await?.conflicted;
            return if self.backend.resolve(&branch).await? == merging {
                Ok(MergeOutcome::Conflicts { paths: conflicted })
            } else {
                Err(GitError::Conflict { paths: conflicted })
            };
        }
        if !self.is_on(&self.base).await? {
            self.backend.switch(&self.base).await?;
        }
        let options = MergeOptions {
            message: merge_message(id, title),
            fast_forward: FastForward::Never,
        };
        self.backend.merge(&branch, &options).await
    }

    /// Checks a resolver's work without committing: none of `paths` holds conflict markers, no
    /// path is unmerged after staging `paths`, and no untracked file was left behind.
    async fn verify(&self, paths: &[RepoPath]) -> Result<(), GitError> {
        let mut marked = Vec::new();
        for p in paths {
            if let Some(contents) = self.backend.read_file(p).await?
                && has_conflict_markers(&contents)
            {
                marked.push(p.as_str().to_owned());
            }
        }
        if !marked.is_empty() {
            return Err(GitError::Conflict { paths: marked });
        }
        self.backend.add(paths).await?;
        let status = self.backend.status().await?;
        if !status.conflicted.is_empty() {
            return Err(GitError::Conflict {
                paths: status.conflicted,
            });
        }
        if !status.untracked.is_empty() {
            return Err(GitError::DirtyWorkTree {
                paths: status.untracked,
            });
        }
        Ok(())
    }

    /// Finishes a merge after a resolver edited the conflicted `paths`: verifies them (no
    /// conflict markers, nothing unmerged, no untracked leftovers), stages them and makes the
    /// merge commit. Returns the merge commit.
    ///
    /// # Errors
    /// [`GitError::NoMergeInProgress`]; [`GitError::Conflict`] naming files that still hold
    /// markers or are unmerged; [`GitError::DirtyWorkTree`] naming untracked leftovers. On
    /// these errors the merge stays in progress, untouched apart from staging `paths`.
    pub async fn complete_merge(
        &self,
        id: &MilestoneId,
        title: &str,
        paths: &[RepoPath],
    ) -> Result<CommitId, GitError> {
        let _guard = self.lock.lock().await;
        if self.backend.merge_in_progress().await?.is_none() {
            return Err(GitError::NoMergeInProgress);
        }
        self.verify(paths).await?;
        let request = CommitRequest {
            message: merge_message(id, title)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            trailers: trailers(id, None)?,
            allow_empty: true,
        };
        self.backend.commit(&request).await
    }

    /// Abandons a merge in progress.
    ///
    /// # Errors
    /// [`GitError::NoMergeInProgress`] when there is none.
    pub async fn abort_merge(&self) -> Result<(), GitError> {
        let _guard = self.lock.lock().await;
        self.backend.abort_merge().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(phase: &str, title: &str, expected: &str) {
        let phase = PhaseId::new(phase).unwrap();
        assert_eq!(phase_message(&phase, title), expected);
    }

    #[test]
    fn messages() {
        check(
            "design",
            "Add login",
            "feat(design): complete design phase for Add login",
        );
        check(
            "spec",
            "Add login",
            "feat(spec): complete specification phase for Add login",
        );
        check(
            "task",
            "Add login",
            "feat(task): complete task planning for Add login",
        );
        check(
            "execute",
            "Add login",
            "feat(execute): implement Add login functionality",
        );
        check(
            "review",
            "Add login",
            "feat(review): complete review phase for Add login",
        );
        check(
            "design",
            "a\nb\r\n\tc",
            "feat(design): complete design phase for a b c",
        );
        check(
            "design",
            "  ",
            "feat(design): complete design phase for milestone",
        );
        check(
            "design",
            "-x \"q\"",
            "feat(design): complete design phase for -x \"q\"",
        );
        check(
            "design",
            "a\u{0}b",
            "feat(design): complete design phase for a b",
        );
    }

    #[test]
    fn names() {
        let id = MilestoneId::new("login-2").unwrap();
        assert_eq!(branch_name(&id).as_str(), "feature/milestone-login-2");
        assert_eq!(tag_name(&id).as_str(), "milestone/login-2");
    }

    #[test]
    fn markers() {
        assert!(has_conflict_markers(b"a\n<<<<<<< ours\nb\n"));
        assert!(has_conflict_markers(b"=======\r\n"));
        assert!(has_conflict_markers(b"x\n>>>>>>> theirs"));
        assert!(!has_conflict_markers(b"a\n======== heading\n<<<<<< six\n"));
        assert!(!has_conflict_markers(b""));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        #[test]
        fn branch_and_tag_of_any_id_are_valid(id in "[a-z0-9][a-z0-9._-]{0,40}") {
            if let Ok(id) = MilestoneId::new(&id) {
                proptest::prop_assert!(RefName::new(branch_name(&id).as_str()).is_ok());
                proptest::prop_assert!(RefName::new(tag_name(&id).as_str()).is_ok());
            }
        }

        #[test]
        fn one_line_has_no_line_breaks(title in ".{0,300}") {
            let line = one_line(&title);
            proptest::prop_assert!(!line.chars().any(|c| c.is_control()));
            proptest::prop_assert!(line.chars().count() <= MAX_TITLE_CHARS);
            proptest::prop_assert_eq!(line.trim(), line.as_str());
        }
    }
}
