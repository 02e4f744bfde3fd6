//! Validated identifiers: [`MilestoneId`], [`PhaseId`] and [`TaskId`].
//!
//! Every id is 1–64 characters long, starts with `[a-z0-9]`, continues with `[a-z0-9._-]`,
//! never contains `..` and never ends in `.` or `.lock`. Such a string is safe as a single
//! file-name component (no separator, no `.`/`..`, no hidden file) and inside a git ref name
//! (no option-looking `-` prefix, no `..`, no `@{`, no `.lock` suffix, no control characters).
//!
//! Ids are cheap to clone (a shared `Arc<str>`), which matters on the engine's per-task path.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest id accepted, in bytes (ids are ASCII, so also in characters).
pub const MAX_ID_LEN: usize = 64;

/// What kind of id a value was meant to be; carried by [`IdError`] so messages say where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum IdKind {
    /// A [`MilestoneId`].
    Milestone,
    /// A [`PhaseId`].
    Phase,
    /// A [`TaskId`].
    Task,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Milestone => "milestone id",
            IdKind::Phase => "phase id",
            IdKind::Task => "task id",
        })
    }
}

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdProblem {
    /// The string is empty.
    Empty,
    /// The string is longer than [`MAX_ID_LEN`] characters.
    TooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The first character is not `[a-z0-9]`.
    BadFirst {
        /// The offending character.
        ch: char,
    },
    /// A character other than `[a-z0-9._-]` at a byte offset.
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The string contains `..`.
    DoubleDot,
    /// The string ends in `.`.
    TrailingDot,
    /// The string ends in `.lock`.
    LockSuffix,
}

impl fmt::Display for IdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdProblem::Empty => f.write_str("it is empty"),
            IdProblem::TooLong { len } => {
                write!(f, "it is {len} characters long (at most {MAX_ID_LEN})")
            }
            IdProblem::BadFirst { ch } => {
                write!(f, "it starts with {ch:?} (must start with a-z or 0-9)")
            }
            IdProblem::BadChar { ch, at } => write!(
                f,
                "character {ch:?} at byte {at} is not allowed (only a-z, 0-9, '.', '_', '-')"
            ),
            IdProblem::DoubleDot => f.write_str("it contains \"..\""),
            IdProblem::TrailingDot => f.write_str("it ends in \".\""),
            IdProblem::LockSuffix => f.write_str("it ends in \".lock\""),
        }
    }
}

/// A string was refused as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {problem}")]
pub struct IdError {
    /// Which kind of id was being built.
    pub kind: IdKind,
    /// The refused value (truncated to 80 characters for display safety).
    pub value: String,
    /// What is wrong with it.
    pub problem: IdProblem,
}

/// Checks `s` against the id rules, returning the first problem found.
pub fn check_id(s: &str) -> Result<(), IdProblem> {
    let Some(first) = s.chars().next() else {
        return Err(IdProblem::Empty);
    };
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdProblem::TooLong { len });
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(IdProblem::BadFirst { ch: first });
    }
    for (at, ch) in s.char_indices() {
        let ok = ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-');
        if !ok {
            return Err(IdProblem::BadChar { ch, at });
        }
    }
    if s.contains("..") {
        return Err(IdProblem::DoubleDot);
    }
    if s.ends_with(".lock") {
        return Err(IdProblem::LockSuffix);
    }
    if s.ends_with('.') {
        return Err(IdProblem::TrailingDot);
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`IdError`] naming the rule the value breaks.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                match check_id(value) {
                    Ok(()) => Ok(Self(Arc::from(value))),
                    Err(problem) => Err(IdError { kind: $kind, value: shorten(value), problem }),
                }
            }

            /// An id from a literal known to be valid (crate-internal tables only).
            #[allow(dead_code)]
            pub(crate) fn known(value: &'static str) -> Self {
                debug_assert!(check_id(value).is_ok(), "invalid literal id {value}");
                Self(Arc::from(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&*s).map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// The id of a milestone; also its directory name in a file store and part of its git
    /// branch (`feature/milestone-<id>`).
    MilestoneId,
    IdKind::Milestone
);
define_id!(
    /// The id of a phase of a workflow (`design`, `spec`, `task`, `execute`, …).
    PhaseId,
    IdKind::Phase
);
define_id!(
    /// The id of a task of the execute phase.
    TaskId,
    IdKind::Task
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), IdProblem>) {
        assert_eq!(check_id(input), expected, "input {input:?}");
        assert_eq!(
            MilestoneId::new(input).is_ok(),
            expected.is_ok(),
            "input {input:?}"
        );
    }

    #[test]
    fn id_rules_table() {
        let long = "a".repeat(65);
        check("design", Ok(()));
        check("a", Ok(()));
        check("0", Ok(()));
        check("m-1.2_x", Ok(()));
        check(&"a".repeat(64), Ok(()));
        check("", Err(IdProblem::Empty));
        check(&long, Err(IdProblem::TooLong { len: 65 }));
        check("-x", Err(IdProblem::BadFirst { ch: '-' }));
        check("--upload-pack=x", Err(IdProblem::BadFirst { ch: '-' }));
        check(".hidden", Err(IdProblem::BadFirst { ch: '.' }));
        check("..", Err(IdProblem::BadFirst { ch: '.' }));
        check("_x", Err(IdProblem::BadFirst { ch: '_' }));
        check("a..b", Err(IdProblem::DoubleDot));
        check("a/b", Err(IdProblem::BadChar { ch: '/', at: 1 }));
        check("a\\b", Err(IdProblem::BadChar { ch: '\\', at: 1 }));
        check("x.lock", Err(IdProblem::LockSuffix));
        check("x.", Err(IdProblem::TrailingDot));
        check("Upper", Err(IdProblem::BadFirst { ch: 'U' }));
        check("aB", Err(IdProblem::BadChar { ch: 'B', at: 1 }));
        check("é", Err(IdProblem::BadFirst { ch: 'é' }));
        check("aé", Err(IdProblem::BadChar { ch: 'é', at: 1 }));
        check("a\0b", Err(IdProblem::BadChar { ch: '\0', at: 1 }));
        check("a b", Err(IdProblem::BadChar { ch: ' ', at: 1 }));
        check("a@{1}", Err(IdProblem::BadChar { ch: '@', at: 1 }));
        check("a~1", Err(IdProblem::BadChar { ch: '~', at: 1 }));
        check("a:b", Err(IdProblem::BadChar { ch: ':', at: 1 }));
        check("a\nb", Err(IdProblem::BadChar { ch: '\n', at: 1 }));
    }

    #[test]
    fn error_names_kind_value_and_rule() {
        let err = TaskId::new("a/b").unwrap_err();
        assert_eq!(err.kind, IdKind::Task);
        let text = err.to_string();
        assert!(text.contains("task id"), "{text}");
        assert!(text.contains("\"a/b\""), "{text}");
        assert!(text.contains("'/'"), "{text}");
    }

    #[test]
    fn serde_validates() {
        let id: PhaseId = serde_json::from_str("\"spec\"").unwrap();
        assert_eq!(id.as_str(), "spec");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"spec\"");
        let err = serde_json::from_str::<PhaseId>("\"../etc\"").unwrap_err();
        assert!(err.to_string().contains("phase id"), "{err}");
        assert!(serde_json::from_str::<PhaseId>("12").is_err());
    }

    proptest::proptest! {
        #[test]
        fn accepted_ids_are_safe_path_and_ref_components(s in "\\PC{0,70}") {
            if let Ok(id) = MilestoneId::new(&s) {
                let v = id.as_str();
                proptest::prop_assert!(!v.is_empty() && v.len() <= MAX_ID_LEN);
                proptest::prop_assert!(!v.starts_with('-') && !v.starts_with('.'));
                proptest::prop_assert!(!v.contains('/') && !v.contains("..") && !v.contains("@{"), "unsafe id {}", v);
                proptest::prop_assert!(!v.ends_with(".lock") && !v.ends_with('.'));
                proptest::prop_assert!(v.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn valid_ids_round_trip(s in "[a-z0-9][a-z0-9_-]{0,40}") {
            let id = TaskId::new(&s).unwrap();
            let json = serde_json::to_string(&id).unwrap();
            let back: TaskId = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(back, id);
        }
    }
}
