//! The one error type of this crate.
//!
//! Every store converts its private failures into [`StoreError`], whose variants name what a
//! caller can do about them: retry on [`StoreError::Conflict`] or [`StoreError::Locked`], create
//! on [`StoreError::NotFound`], repair by hand on [`StoreError::Corrupt`], upgrade the library on
//! [`StoreError::UnsupportedSchema`], fix the call on [`StoreError::InvalidInput`].

use std::path::PathBuf;

use milestone_core::MilestoneId;

/// A state store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No milestone (or no checkpoint) of that name exists.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `milestone "login"` or `checkpoint "before-merge"`.
        what: String,
    },
    /// The milestone already exists (creating it again is refused).
    #[error("milestone {id} already exists")]
    AlreadyExists {
        /// The milestone.
        id: MilestoneId,
    },
    /// The caller's expected version is stale: someone else appended first. Load and retry
    /// (see [`crate::update`]); nothing was written.
    #[error("milestone {id} is at version {actual}, not the expected {expected}")]
    Conflict {
        /// The milestone.
        id: MilestoneId,
        /// The version the caller expected.
        expected: u64,
        /// The version the store holds.
        actual: u64,
    },
    /// Another process held the milestone's lock for longer than the bounded wait.
    #[error("milestone {id} is locked by another writer (waited {waited_ms} ms)")]
    Locked {
        /// The milestone.
        id: MilestoneId,
        /// How long this call waited, in milliseconds.
        waited_ms: u64,
    },
    /// A stored file is damaged in a way that recovery must not paper over. Nothing was
    /// deleted: the file is left for inspection.
    #[error("{file} is corrupt at {position}: {reason}", file = file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Where: `line N` for the event log, `byte N` or `whole file` otherwise.
        position: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored file was written by a newer version of this library.
    #[error("{file} has schema version {found}; this library reads up to {supported}", file = file.display())]
    UnsupportedSchema {
        /// The file.
        file: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The call itself is wrong (events that do not apply to the state, a bad label, a first
    /// event that is not `Created`, an oversized event). Nothing was written.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// The operating system refused an operation.
    #[error("I/O error on {path}: {source}", path = path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// `NotFound` for a milestone.
    pub(crate) fn milestone_not_found(id: &MilestoneId) -> StoreError {
        StoreError::NotFound {
            what: format!("milestone {:?}", id.as_str()),
        }
    }

    /// `NotFound` for a checkpoint label.
    pub(crate) fn checkpoint_not_found(id: &MilestoneId, label: &str) -> StoreError {
        StoreError::NotFound {
            what: format!("checkpoint {label:?} of milestone {:?}", id.as_str()),
        }
    }

    /// `InvalidInput` with a reason.
    pub(crate) fn invalid(reason: impl Into<String>) -> StoreError {
        StoreError::InvalidInput {
            reason: reason.into(),
        }
    }

    /// Whether retrying the same call later may succeed (`Conflict` after reloading, `Locked`).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict { .. } | StoreError::Locked { .. }
        )
    }
}

/// Longest checkpoint label accepted, in bytes.
pub const MAX_LABEL_LEN: usize = 128;

/// Checks a checkpoint label: 1..=[`MAX_LABEL_LEN`] bytes, no control characters.
pub(crate) fn check_label(label: &str) -> Result<(), StoreError> {
    if label.is_empty() {
        return Err(StoreError::invalid("a checkpoint label must not be empty"));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(StoreError::invalid(format!(
            "checkpoint label is {} bytes, over the limit of {MAX_LABEL_LEN}",
            label.len()
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "a checkpoint label must not contain control characters",
        ));
    }
    Ok(())
}
