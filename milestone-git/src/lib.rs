//! milestone-git (docs written below).

pub mod backend;
pub mod error;
pub mod memory;
pub mod names;

pub use backend::{
    CommitRequest, FastForward, GitBackend, LogEntry, LogRange, MergeOptions, MergeOutcome, Status,
    Trailer,
};
pub use error::GitError;
pub use memory::InMemoryGit;
pub use names::{CommitId, NameProblem, RefName, RepoPath, Revision};
pub mod cli;
pub use cli::{CliGit, CliGitConfig, HooksPolicy, Identity, SigningPolicy};
pub mod conventions;
pub use conventions::{CommittedPhase, MilestoneGit};
#[cfg(feature = "testing")]
pub mod testing;
