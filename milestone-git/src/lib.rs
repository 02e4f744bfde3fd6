//! # milestone-git
//!
//! Git for milestones: every phase of a milestone is recorded as a commit on the milestone's
//! own branch, the finished milestone is tagged and merged into its base branch, and a resumed
//! milestone never records a phase twice.
//!
//! The crate has three layers, each usable on its own:
//!
//! * [`GitBackend`] — the small async trait the rest of the workspace talks to (head, current
//!   branch, branch exists/create/switch, status, add, commit with trailers, annotated tag,
//!   merge with typed outcome, abort, log with trailers, resolve, working-tree files). Its
//!   **contract** is written on the trait and enforced by one conformance suite
//!   (`testing`, feature `testing`) that every backend's tests run.
//! * Two backends: [`CliGit`] drives the real `git` program (2.38 or newer) with an isolated
//!   environment, no shell, `--end-of-options` before every ref and `--` before every path,
//!   hooks off and signing off by default, each process on its own thread so no executor thread
//!   blocks; [`InMemoryGit`] models commits, branches, tags, an index, a working tree and
//!   file-level three-way merges, for tests and dry runs.
//! * [`MilestoneGit`] — the conventions: branch `feature/milestone-<id>`, one commit per phase
//!   with the design's messages and `Milestone:` / `Milestone-Phase:` trailers, idempotent by
//!   those trailers, tag `milestone/<id>`, merge into the base with conflicts returned as data
//!   and a verified resolution, and one git operation at a time behind an async mutex.
//!
//! Names are values checked before any process starts ([`RefName`], [`Revision`],
//! [`RepoPath`]); ids come from `milestone-core` already validated. Every failure is a
//! [`GitError`] variant a caller can act on.
//!
//! ```
//! use milestone_core::{MilestoneId, PhaseId};
//! use milestone_git::{CommitRequest, GitBackend, InMemoryGit, MergeOutcome, MilestoneGit, RefName, RepoPath};
//!
//! futures::executor::block_on(async {
//!     let git = InMemoryGit::new();
//!     git.write_file(&RepoPath::new("README.md")?, b"hello\n").await?;
//!     git.add_all().await?;
//!     git.commit(&CommitRequest::new("Initial commit")).await?;
//!
//!     let milestones = MilestoneGit::new(git, RefName::new("main")?);
//!     let id = MilestoneId::new("login")?;
//!     let design = PhaseId::new("design")?;
//!     milestones.start(&id).await?;
//!     milestones.backend().write_file(&RepoPath::new("docs/design.md")?, b"# Design\n").await?;
//!     let first = milestones.commit_phase(&id, &design, "Add login").await?;
//!     assert!(first.created);
//!     // After a crash and resume, the same phase is found, not committed again.
//!     let again = milestones.commit_phase(&id, &design, "Add login").await?;
//!     assert_eq!((again.created, again.commit), (false, first.commit));
//!
//!     milestones.tag_completion(&id, "Add login").await?;
//!     let merged = milestones.merge_into_base(&id, "Add login").await?;
//!     assert!(matches!(merged, MergeOutcome::Merged { .. }));
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod cli;
pub mod conventions;
pub mod error;
pub mod memory;
pub mod names;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    CommitRequest, FastForward, GitBackend, LogEntry, LogRange, MergeOptions, MergeOutcome, Status,
    Trailer,
};
pub use cli::{CliGit, CliGitConfig, HooksPolicy, Identity, SigningPolicy};
pub use conventions::{CommittedPhase, MilestoneGit};
pub use error::GitError;
pub use memory::InMemoryGit;
pub use names::{CommitId, NameProblem, RefName, RepoPath, Revision};
