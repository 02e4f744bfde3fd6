//! The [`GitBackend`] trait and the values it takes and returns.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::GitError;
use crate::names::{CommitId, NameProblem, RefName, RepoPath, Revision};

/// The state of the working tree and index, as paths relative to the top of the working tree.
///
/// Every list is sorted and free of duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Tracked paths that differ between `HEAD`, the index and the working tree (staged or not,
    /// including deletions).
    pub changed: Vec<String>,
    /// Paths in the working tree that are neither tracked nor ignored.
    pub untracked: Vec<String>,
    /// Paths left unmerged by a merge.
    pub conflicted: Vec<String>,
}

impl Status {
    /// Nothing changed, nothing untracked, nothing conflicted.
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.untracked.is_empty() && self.conflicted.is_empty()
    }
}

/// One `Key: value` trailer at the end of a commit message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trailer {
    key: String,
    value: String,
}

impl Trailer {
    /// A trailer. The key is 1–64 ASCII letters, digits or `-`, starting with a letter; the value
    /// is one line of at most 1,000 bytes without control characters, not empty.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] when the key or value breaks these rules.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Result<Self, GitError> {
        let key = key.into();
        let value = value.into();
        let bad = |what, v: &str, problem| GitError::InvalidName {
            what,
            value: v.chars().take(80).collect(),
            problem,
        };
        if key.is_empty() {
            return Err(bad("trailer key", &key, NameProblem::Empty));
        }
        if key.len() > 64 {
            return Err(bad(
                "trailer key",
                &key,
                NameProblem::TooLong {
                    len: key.len(),
                    max: 64,
                },
            ));
        }
        if let Some((at, ch)) = key.char_indices().find(|(i, c)| {
            !(c.is_ascii_alphanumeric() || *c == '-') || (*i == 0 && !c.is_ascii_alphabetic())
        }) {
            return Err(bad("trailer key", &key, NameProblem::BadChar { ch, at }));
        }
        if value.trim().is_empty() {
            return Err(bad("trailer value", &value, NameProblem::Empty));
        }
        if value.len() > 1000 {
            return Err(bad(
                "trailer value",
                &value,
                NameProblem::TooLong {
                    len: value.len(),
                    max: 1000,
                },
            ));
        }
        if let Some((at, ch)) = value.char_indices().find(|(_, c)| c.is_control()) {
            return Err(bad(
                "trailer value",
                &value,
                NameProblem::BadChar { ch, at },
            ));
        }
        let value = value.trim().to_owned();
        Ok(Self { key, value })
    }

    /// A trailer as parsed back from a commit, not re-validated.
    pub(crate) fn parsed(key: &str, value: &str) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    /// The key (`Milestone`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value (`login`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// What to commit: the message, its trailers, and whether an empty commit is allowed.
///
/// The commit records what is staged in the index (see [`GitBackend::add`]). The message must
/// not be blank and must not contain NUL; backends refuse it with [`GitError::InvalidName`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The message; its first line is the summary. Free text: it reaches git on stdin, never as
    /// an argument.
    pub message: String,
    /// Trailers appended as the last paragraph of the message.
    pub trailers: Vec<Trailer>,
    /// Commit even when the index equals `HEAD`.
    pub allow_empty: bool,
}

impl CommitRequest {
    /// A request with no trailers that refuses empty commits.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            trailers: Vec::new(),
            allow_empty: false,
        }
    }

    /// Adds a trailer.
    pub fn trailer(mut self, trailer: Trailer) -> Self {
        self.trailers.push(trailer);
        self
    }

    /// Sets whether an empty commit is allowed.
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// The full message as stored: the message with surrounding blank lines trimmed, then a blank
    /// line and one `Key: value` line per trailer.
    pub fn full_message(&self) -> String {
        let mut text = self.message.trim().to_owned();
        if !self.trailers.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            for t in &self.trailers {
                text.push_str(&t.key);
                text.push_str(": ");
                text.push_str(&t.value);
                text.push('\n');
            }
        } else {
            text.push('\n');
        }
        text
    }
}

/// Checks free text bound for git: a commit or merge message must not be blank (git refuses an
/// empty message), and no message may hold a NUL byte (git refuses it, and it cannot travel in
/// an argument).
pub(crate) fn check_message(
    what: &'static str,
    text: &str,
    allow_blank: bool,
) -> Result<(), GitError> {
    let bad = |problem| GitError::InvalidName {
        what,
        value: text.chars().take(80).collect(),
        problem,
    };
    if !allow_blank && text.trim().is_empty() {
        return Err(bad(NameProblem::Empty));
    }
    if let Some(at) = text.find('\0') {
        return Err(bad(NameProblem::BadChar { ch: '\0', at }));
    }
    Ok(())
}

/// Whether a merge may fast-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FastForward {
    /// Fast-forward when possible, else make a merge commit.
    #[default]
    Allow,
    /// Always make a merge commit (`--no-ff`).
    Never,
}

/// How to merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOptions {
    /// The merge commit's message (unused by a fast-forward).
    pub message: String,
    /// Whether fast-forward is allowed.
    pub fast_forward: FastForward,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeOutcome {
    /// The revision was already contained in `HEAD`; nothing changed.
    AlreadyUpToDate,
    /// `HEAD` moved forward to the merged commit.
    FastForward {
        /// The new `HEAD`.
        to: CommitId,
    },
    /// A merge commit was made.
    Merged {
        /// The merge commit.
        commit: CommitId,
    },
    /// The merge stopped with conflicts; the working tree holds conflict markers, and the merge
    /// is finished by resolving, [`GitBackend::add`]-ing and [`GitBackend::commit`]-ing, or
    /// abandoned with [`GitBackend::abort_merge`].
    Conflicts {
        /// The conflicted paths, sorted.
        paths: Vec<String>,
    },
}

/// A range of history: the commits reachable from `until` and not from `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRange {
    /// Commits reachable from here are excluded (`since..until`); `None` means all history.
    pub since: Option<Revision>,
    /// The newest end of the range.
    pub until: Revision,
}

impl LogRange {
    /// All history reachable from `until`.
    pub fn all(until: Revision) -> Self {
        Self { since: None, until }
    }

    /// `since..until`.
    pub fn between(since: Revision, until: Revision) -> Self {
        Self {
            since: Some(since),
            until,
        }
    }
}

/// One commit of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The commit.
    pub id: CommitId,
    /// Its summary: the first paragraph of the message, lines joined by spaces.
    pub summary: String,
    /// The trailers of its last paragraph, in order.
    pub trailers: Vec<Trailer>,
}

impl LogEntry {
    /// The value of the first trailer with this key.
    pub fn trailer(&self, key: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// A git repository with a working tree, as the milestone conventions need it.
///
/// # Contract
///
/// Every implementation guarantees, and the conformance suite in `testing` checks:
///
/// * **Names are validated values.** Branches and tags are [`RefName`]s, revisions
///   [`Revision`]s, paths [`RepoPath`]s: nothing a caller passes can be read as an option, a range
///   or a pathspec. Messages are free text and never reach a command line.
/// * **Errors are typed.** A missing ref is [`GitError::RefNotFound`], an existing one
///   [`GitError::AlreadyExists`], an unmerged tree [`GitError::Conflict`], and so on.
/// * **A failed operation changes nothing** that the caller can observe, except a merge that
///   stops with [`MergeOutcome::Conflicts`], which leaves the merge in progress on purpose.
/// * **head** is `None` only on an unborn branch; **current_branch** is `None` only when `HEAD`
///   is detached.
/// * **create_branch** does not switch; **switch** keeps local changes that do not conflict and
///   otherwise fails with [`GitError::DirtyWorkTree`].
/// * **commit** records the index, appends the trailers as the last paragraph, fails with
///   [`GitError::NothingToCommit`] when nothing is staged unless `allow_empty`, and during a
///   merge with no unmerged path makes the merge commit (two parents).
/// * **merge** reports fast-forward, merge commit, already-up-to-date, or conflicts with their
///   sorted paths. A path conflicts when both sides changed it differently since the merge base
///   (the conformance cases stay where line-level and file-level merging agree).
/// * **log** lists newest first in a topological order (a child before its parents).
/// * **resolve** peels tags to the commit they name.
/// * Operations are not required to be safe to run concurrently on one repository: callers that
///   run phases in parallel serialize through [`crate::MilestoneGit`].
#[async_trait]
pub trait GitBackend: Debug + Send + Sync {
    /// The commit `HEAD` points at, `None` on an unborn branch.
    async fn head(&self) -> Result<Option<CommitId>, GitError>;

    /// The branch `HEAD` is on, `None` when detached.
    async fn current_branch(&self) -> Result<Option<RefName>, GitError>;

    /// Whether the branch exists.
    async fn branch_exists(&self, name: &RefName) -> Result<bool, GitError>;

    /// Creates branch `name` at `from` without switching to it; returns the commit it points at.
    async fn create_branch(&self, name: &RefName, from: &Revision) -> Result<CommitId, GitError>;

    /// Switches the working tree and `HEAD` to branch `name`.
    async fn switch(&self, name: &RefName) -> Result<(), GitError>;

    /// The status of the working tree and index.
    async fn status(&self) -> Result<Status, GitError>;

    /// Stages the paths (additions, changes and deletions).
    async fn add(&self, paths: &[RepoPath]) -> Result<(), GitError>;

    /// Stages every change of the working tree, untracked files included (`git add --all`).
    async fn add_all(&self) -> Result<(), GitError>;

    /// Commits the index; returns the new commit.
    async fn commit(&self, request: &CommitRequest) -> Result<CommitId, GitError>;

    /// Creates the annotated tag `name` on `target` with `message`.
    async fn tag(&self, name: &RefName, target: &Revision, message: &str) -> Result<(), GitError>;

    /// Merges `rev` into the current branch.
    async fn merge(&self, rev: &Revision, options: &MergeOptions)
    -> Result<MergeOutcome, GitError>;

    /// Abandons the merge in progress, restoring the state before it.
    async fn abort_merge(&self) -> Result<(), GitError>;

    /// The commit being merged (`MERGE_HEAD`) while a merge is in progress, else `None`.
    async fn merge_in_progress(&self) -> Result<Option<CommitId>, GitError>;

    /// The commits of a range, newest first.
    async fn log(&self, range: &LogRange) -> Result<Vec<LogEntry>, GitError>;

    /// The commit a revision names.
    async fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError>;

    /// The contents of a working-tree file, `None` when it does not exist.
    async fn read_file(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, GitError>;

    /// Writes a working-tree file, creating parent directories.
    async fn write_file(&self, path: &RepoPath, contents: &[u8]) -> Result<(), GitError>;

    /// Removes a working-tree file; returns whether it existed.
    async fn remove_file(&self, path: &RepoPath) -> Result<bool, GitError>;
}

macro_rules! forward {
    ($ty:ty) => {
        #[async_trait]
        impl<T: GitBackend + ?Sized> GitBackend for $ty {
            async fn head(&self) -> Result<Option<CommitId>, GitError> {
                (**self).head().await
            }
            async fn current_branch(&self) -> Result<Option<RefName>, GitError> {
                (**self).current_branch().await
            }
            async fn branch_exists(&self, name: &RefName) -> Result<bool, GitError> {
                (**self).branch_exists(name).await
            }
            async fn create_branch(
                &self,
                name: &RefName,
                from: &Revision,
            ) -> Result<CommitId, GitError> {
                (**self).create_branch(name, from).await
            }
            async fn switch(&self, name: &RefName) -> Result<(), GitError> {
                (**self).switch(name).await
            }
            async fn status(&self) -> Result<Status, GitError> {
                (**self).status().await
            }
            async fn add(&self, paths: &[RepoPath]) -> Result<(), GitError> {
                (**self).add(paths).await
            }
            async fn add_all(&self) -> Result<(), GitError> {
                (**self).add_all().await
            }
            async fn commit(&self, request: &CommitRequest) -> Result<CommitId, GitError> {
                (**self).commit(request).await
            }
            async fn tag(
                &self,
                name: &RefName,
                target: &Revision,
                message: &str,
            ) -> Result<(), GitError> {
                (**self).tag(name, target, message).await
            }
            async fn merge(
                &self,
                rev: &Revision,
                options: &MergeOptions,
            ) -> Result<MergeOutcome, GitError> {
                (**self).merge(rev, options).await
            }
            async fn abort_merge(&self) -> Result<(), GitError> {
                (**self).abort_merge().await
            }
            async fn merge_in_progress(&self) -> Result<Option<CommitId>, GitError> {
                (**self).merge_in_progress().await
            }
            async fn log(&self, range: &LogRange) -> Result<Vec<LogEntry>, GitError> {
                (**self).log(range).await
            }
            async fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError> {
                (**self).resolve(rev).await
            }
            async fn read_file(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, GitError> {
                (**self).read_file(path).await
            }
            async fn write_file(&self, path: &RepoPath, contents: &[u8]) -> Result<(), GitError> {
                (**self).write_file(path, contents).await
            }
            async fn remove_file(&self, path: &RepoPath) -> Result<bool, GitError> {
                (**self).remove_file(path).await
            }
        }
    };
}

forward!(Arc<T>);
forward!(Box<T>);
forward!(&T);
