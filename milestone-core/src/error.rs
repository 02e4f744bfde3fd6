//! Errors of `milestone-core`.
//!
//! Analyses that can find several things wrong at once (validating a workflow, a graph or a plan)
//! return [`Problems`]: every [`Problem`] found, each with the place it was found. Operations that
//! stop at the first thing wrong return a more specific error; all of them convert into the
//! crate-wide [`Error`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::IdError;
use crate::state::TransitionError;

/// One thing wrong with an input, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Where the problem is, as a path into the input (`phases[2].dependencies[0]`,
    /// `task "t-3"`, `plan.estimates`).
    pub location: String,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// A sentence a person can act on.
    pub message: String,
}

impl Problem {
    /// A problem of `kind` at `location` with a message.
    pub fn new(location: impl Into<String>, kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            location: location.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// An id breaks the id rules.
    InvalidId,
    /// Two items share an id.
    DuplicateId,
    /// A dependency names nothing known.
    UnknownDependency,
    /// An item depends on itself.
    SelfDependency,
    /// Dependencies form a cycle (the message carries the path).
    Cycle,
    /// Phase weights do not sum to exactly 100.
    WeightSum,
    /// A value is out of its allowed range.
    OutOfRange,
    /// A required section or value is missing.
    Missing,
    /// An item names a phase that is not in the workflow.
    UnknownPhase,
    /// A value is inconsistent with another one.
    Inconsistent,
}

/// Every problem found in one input. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any problem is of `kind`.
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.0.iter().any(|p| p.kind == kind)
    }

    /// `Ok(value)` when there are no problems, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Loading a value from JSON failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The input is larger than the limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was being loaded.
        what: &'static str,
        /// The input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not well-formed JSON of the expected shape (unknown fields are refused).
    #[error("{what} is malformed at line {line}, column {column}: {reason}")]
    Malformed {
        /// What was being loaded.
        what: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        reason: String,
    },
    /// The input was written by a newer version of this library.
    #[error("{what} has schema version {found}; this library reads up to {supported}")]
    UnsupportedSchema {
        /// What was being loaded.
        what: &'static str,
        /// The version in the input.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The input parsed but is not valid.
    #[error("{what} is invalid: {problems}")]
    Invalid {
        /// What was being loaded.
        what: &'static str,
        /// Every problem found.
        problems: Problems,
    },
}

/// The crate-wide error: every error of `milestone-core` converts into it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An id was refused.
    #[error(transparent)]
    Id(#[from] IdError),
    /// An input had problems (all are listed).
    #[error(transparent)]
    Problems(#[from] Problems),
    /// A status transition or event did not fit the state.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A JSON input could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}
