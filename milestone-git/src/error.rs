//! The one error type of this crate, [`GitError`].
//!
//! Every backend converts what goes wrong into one of these variants, so a caller (the
//! orchestrator, a host program) can act on the kind — ask a human for an identity, hand a
//! conflict to a resolver, give up on a missing repository — without parsing messages.

use std::path::PathBuf;

use crate::names::NameProblem;

/// Everything a git operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The directory is not inside a git repository.
    #[error("{path} is not a git repository")]
    NotARepository {
        /// The directory that was opened.
        path: PathBuf,
    },
    /// The `git` program could not be started.
    #[error("cannot run git program {program}: {detail}")]
    GitMissing {
        /// The program that was tried.
        program: PathBuf,
        /// Why it could not be started.
        detail: String,
    },
    /// The `git` program is older than the oldest version supported.
    #[error("git {found} is too old: milestone-git needs git {required} or newer")]
    GitTooOld {
        /// The version reported by `git version`.
        found: String,
        /// The oldest supported version.
        required: &'static str,
    },
    /// Git refuses to work in a repository owned by another user (`safe.directory`).
    #[error("git refuses the repository because of dubious ownership: {stderr}")]
    DubiousOwnership {
        /// What git said.
        stderr: String,
    },
    /// No author or committer identity is configured for a commit or a tag.
    #[error("git does not know who commits (set an identity in the backend config): {stderr}")]
    IdentityUnknown {
        /// What git said.
        stderr: String,
    },
    /// A branch, tag or revision does not exist.
    #[error("ref or revision not found: {name}")]
    RefNotFound {
        /// The name that was looked up.
        name: String,
    },
    /// A branch or tag that was to be created already exists.
    #[error("ref already exists: {name}")]
    AlreadyExists {
        /// The name of the existing ref.
        name: String,
    },
    /// A branch name, tag name, revision, path or trailer was refused before reaching git.
    #[error("invalid {what} {value:?}: {problem}")]
    InvalidName {
        /// What kind of name it was meant to be (`ref name`, `revision`, `path`, …).
        what: &'static str,
        /// The refused value (shortened for display).
        value: String,
        /// Which rule it breaks.
        problem: NameProblem,
    },
    /// Unresolved conflicts: unmerged paths, or conflict markers left in files.
    #[error("unresolved conflicts in {}", paths.join(", "))]
    Conflict {
        /// The conflicted paths, sorted.
        paths: Vec<String>,
    },
    /// Local changes stand in the way of a switch or merge.
    #[error("local changes would be overwritten: {}", paths.join(", "))]
    DirtyWorkTree {
        /// The paths in the way, when known.
        paths: Vec<String>,
    },
    /// A commit was asked for with nothing staged and `allow_empty` off.
    #[error("nothing to commit")]
    NothingToCommit,
    /// `abort_merge` (or a merge commit) was asked for with no merge in progress.
    #[error("no merge in progress")]
    NoMergeInProgress,
    /// A hook refused the operation. With hooks enabled
    /// ([`HooksPolicy::RunRepository`](crate::HooksPolicy::RunRepository)), a commit, merge or
    /// tag that fails for a reason git does not name is reported as this too: hooks speak for
    /// themselves on stderr, which is kept here.
    #[error("a git hook failed: {stderr}")]
    HookFailed {
        /// What git and the hook said.
        stderr: String,
    },
    /// Signing a commit or tag failed.
    #[error("signing failed: {stderr}")]
    SigningFailed {
        /// What git said.
        stderr: String,
    },
    /// Reading or writing a file of the working tree failed.
    #[error("I/O error on {path}: {detail}")]
    Io {
        /// The file, relative to the working tree.
        path: String,
        /// The operating system's message.
        detail: String,
    },
    /// Anything else; carries git's stderr.
    #[error("git {operation} failed: {stderr}")]
    Other {
        /// The git subcommand or backend operation.
        operation: String,
        /// What git said (or what the backend found wrong).
        stderr: String,
    },
}
