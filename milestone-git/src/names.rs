//! Validated names: [`RefName`], [`Revision`], [`RepoPath`] and [`CommitId`].
//!
//! Names are checked here, before any git process exists, so that no caller-controlled string can
//! be read by git as an option, a range, a reflog selector or a pathspec. Our rules are a strict
//! subset of git's `check-ref-format` rules (a test runs every accepted name through the real
//! `git check-ref-format --branch`):
//!
//! * ASCII letters, digits, `.`, `_`, `-` and `/` only — so no spaces, control characters,
//!   `~ ^ : ? * [ \`, no `@{`, and no unicode lookalikes;
//! * components separated by single `/`, none empty, none starting with `.` or `-`, none ending
//!   in `.lock`; no `..` anywhere; no trailing `.`;
//! * not `HEAD` and not starting with `refs/` (a branch or tag is named by its short name).

use std::fmt;
use std::sync::Arc;

use crate::error::GitError;

/// The longest ref name accepted, in bytes.
pub const MAX_REF_LEN: usize = 200;
/// The longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a name was refused; carried by [`GitError::InvalidName`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than allowed.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A character outside the allowed set, at a byte offset.
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// An empty `/`-separated component (leading, trailing or doubled `/`).
    EmptyComponent,
    /// A component starts with `-` (it could be read as an option).
    LeadingDash,
    /// A component starts with `.` (hidden, or `.`/`..`).
    LeadingDot,
    /// A component ends in `.lock`.
    LockSuffix,
    /// The name contains `..` (a range).
    DoubleDot,
    /// The name ends in `.`.
    TrailingDot,
    /// A reserved name: `HEAD`, or a name starting with `refs/`.
    Reserved,
    /// A path is absolute.
    Absolute,
    /// A path has a `.` or `..` component.
    DotComponent,
    /// A path reaches into the `.git` directory.
    GitDir,
    /// A revision suffix other than `~N` or `^N`.
    BadSuffix,
    /// Not a full commit id (40 or 64 lowercase hex digits).
    NotACommitId,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("it is empty"),
            NameProblem::TooLong { len, max } => {
                write!(f, "it is {len} bytes long (at most {max})")
            }
            NameProblem::BadChar { ch, at } => {
                write!(f, "character {ch:?} at byte {at} is not allowed")
            }
            NameProblem::EmptyComponent => f.write_str("it has an empty '/'-separated component"),
            NameProblem::LeadingDash => f.write_str("a component starts with '-'"),
            NameProblem::LeadingDot => f.write_str("a component starts with '.'"),
            NameProblem::LockSuffix => f.write_str("a component ends in \".lock\""),
            NameProblem::DoubleDot => f.write_str("it contains \"..\""),
            NameProblem::TrailingDot => f.write_str("it ends in '.'"),
            NameProblem::Reserved => f.write_str("it is reserved (HEAD or refs/...)"),
            NameProblem::Absolute => f.write_str("it is absolute"),
            NameProblem::DotComponent => f.write_str("it has a '.' or '..' component"),
            NameProblem::GitDir => f.write_str("it reaches into .git"),
            NameProblem::BadSuffix => f.write_str("only ~N and ^N may follow a revision"),
            NameProblem::NotACommitId => f.write_str("it is not 40 or 64 lowercase hex digits"),
        }
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

fn invalid(what: &'static str, value: &str, problem: NameProblem) -> GitError {
    GitError::InvalidName {
        what,
        value: shorten(value),
        problem,
    }
}

/// Checks a short branch or tag name against our rules (see the module docs).
pub fn check_ref_name(s: &str) -> Result<(), NameProblem> {
    if s.is_empty() {
        return Err(NameProblem::Empty);
    }
    if s.len() > MAX_REF_LEN {
        return Err(NameProblem::TooLong {
            len: s.len(),
            max: MAX_REF_LEN,
        });
    }
    for (at, ch) in s.char_indices() {
        if !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '/')) {
            return Err(NameProblem::BadChar { ch, at });
        }
    }
    if s == "HEAD" || s.starts_with("refs/") {
        return Err(NameProblem::Reserved);
    }
    for component in s.split('/') {
        if component.is_empty() {
            return Err(NameProblem::EmptyComponent);
        }
        if component.starts_with('-') {
            return Err(NameProblem::LeadingDash);
        }
        if component.starts_with('.') {
            return Err(NameProblem::LeadingDot);
        }
        if component.ends_with(".lock") {
            return Err(NameProblem::LockSuffix);
        }
    }
    if s.contains("..") {
        return Err(NameProblem::DoubleDot);
    }
    if s.ends_with('.') {
        return Err(NameProblem::TrailingDot);
    }
    Ok(())
}

/// A validated short branch or tag name (`main`, `feature/milestone-login`, `milestone/login`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(pub(crate) Arc<str>);

impl RefName {
    /// Validates `value` as a branch or tag name.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] naming the rule the value breaks.
    pub fn new(value: impl AsRef<str>) -> Result<Self, GitError> {
        let value = value.as_ref();
        check_ref_name(value).map_err(|p| invalid("ref name", value, p))?;
        Ok(Self(Arc::from(value)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated revision: `HEAD`, a (possibly abbreviated) commit id, a short ref name, or a full
/// `refs/heads/…` / `refs/tags/…` name, optionally followed by `~N` / `^N` steps.
///
/// Ranges (`a..b`), reflog selectors (`@{…}`), `:path` lookups and peel syntax are refused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub(crate) Arc<str>);

/// One ancestry step of a [`Revision`]: `~n` (n-th first-parent ancestor) or `^n` (n-th parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Ancestor(u32),
    Parent(u32),
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a revision string into its base and its `~N` / `^N` steps.
fn split_revision(s: &str) -> Result<(&str, Vec<Step>), NameProblem> {
    let cut = s.find(['~', '^']).unwrap_or(s.len());
    let (base, mut rest) = s.split_at(cut);
    let mut steps = Vec::new();
    while let Some(op) = rest.chars().next() {
        rest = &rest[1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n = if digits == 0 {
            1
        } else {
            rest[..digits]
                .parse::<u32>()
                .map_err(|_| NameProblem::BadSuffix)?
        };
        rest = &rest[digits..];
        steps.push(if op == '~' {
            Step::Ancestor(n)
        } else {
            Step::Parent(n)
        });
        if !rest.is_empty() && !rest.starts_with(['~', '^']) {
            return Err(NameProblem::BadSuffix);
        }
    }
    Ok((base, steps))
}

/// Checks a revision string (see [`Revision`]).
pub fn check_revision(s: &str) -> Result<(), NameProblem> {
    if s.is_empty() {
        return Err(NameProblem::Empty);
    }
    if s.len() > MAX_REF_LEN + 16 {
        return Err(NameProblem::TooLong {
            len: s.len(),
            max: MAX_REF_LEN + 16,
        });
    }
    let (base, _) = split_revision(s)?;
    if base == "HEAD" || (base.len() >= 4 && base.len() <= 64 && is_hex(base)) {
        return Ok(());
    }
    let short = base
        .strip_prefix("refs/heads/")
        .or_else(|| base.strip_prefix("refs/tags/"));
    check_ref_name(short.unwrap_or(base))
}

impl Revision {
    /// Validates `value` as a revision.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] naming the rule the value breaks.
    pub fn new(value: impl AsRef<str>) -> Result<Self, GitError> {
        let value = value.as_ref();
        check_revision(value).map_err(|p| invalid("revision", value, p))?;
        Ok(Self(Arc::from(value)))
    }

    /// `HEAD`.
    pub fn head() -> Self {
        Self(Arc::from("HEAD"))
    }

    /// The branch `name`, unambiguously (`refs/heads/<name>`).
    pub fn branch(name: &RefName) -> Self {
        Self(Arc::from(format!("refs/heads/{}", name.as_str())))
    }

    /// The tag `name`, unambiguously (`refs/tags/<name>`).
    pub fn tag(name: &RefName) -> Self {
        Self(Arc::from(format!("refs/tags/{}", name.as_str())))
    }

    /// The revision as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The base and ancestry steps (always parses: checked at construction).
    pub(crate) fn parts(&self) -> (&str, Vec<Step>) {
        split_revision(&self.0).unwrap_or((&self.0, Vec::new()))
    }
}

impl From<&RefName> for Revision {
    /// A ref name as a revision; prefer [`Revision::branch`] or [`Revision::tag`] when the
    /// kind is known.
    fn from(name: &RefName) -> Self {
        Self(name.0.clone())
    }
}

impl From<&CommitId> for Revision {
    fn from(id: &CommitId) -> Self {
        Self(id.0.clone())
    }
}

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub(crate) Arc<str>);

impl CommitId {
    /// Validates `value` as a full commit id.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] when it is not 40 or 64 lowercase hex digits.
    pub fn new(value: impl AsRef<str>) -> Result<Self, GitError> {
        let value = value.as_ref();
        if (value.len() == 40 || value.len() == 64) && is_hex(value) {
            Ok(Self(Arc::from(value)))
        } else {
            Err(invalid("commit id", value, NameProblem::NotACommitId))
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a working-tree path (see [`RepoPath`]).
pub fn check_path(s: &str) -> Result<(), NameProblem> {
    if s.is_empty() {
        return Err(NameProblem::Empty);
    }
    if s.len() > MAX_PATH_LEN {
        return Err(NameProblem::TooLong {
            len: s.len(),
            max: MAX_PATH_LEN,
        });
    }
    if let Some((at, ch)) = s.char_indices().find(|(_, c)| c.is_control() || *c == '\\') {
        return Err(NameProblem::BadChar { ch, at });
    }
    if s.starts_with('/') {
        return Err(NameProblem::Absolute);
    }
    for component in s.split('/') {
        match component {
            "" => return Err(NameProblem::EmptyComponent),
            "." | ".." => return Err(NameProblem::DotComponent),
            c if c.eq_ignore_ascii_case(".git") => return Err(NameProblem::GitDir),
            _ => {}
        }
    }
    Ok(())
}

/// A validated path relative to the top of the working tree, `/`-separated: not absolute, no
/// empty, `.` or `..` components, no `.git` component, no control characters or backslashes.
/// Paths are always passed to git after `--` and with pathspec magic off.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(pub(crate) Arc<str>);

impl RepoPath {
    /// Validates `value` as a working-tree path.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] naming the rule the value breaks.
    pub fn new(value: impl AsRef<str>) -> Result<Self, GitError> {
        let value = value.as_ref();
        check_path(value).map_err(|p| invalid("path", value, p))?;
        Ok(Self(Arc::from(value)))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_like {
    ($name:ident) => {
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

        impl std::str::FromStr for $name {
            type Err = GitError;
            fn from_str(s: &str) -> Result<Self, GitError> {
                Self::new(s)
            }
        }
    };
}

string_like!(RefName);
string_like!(Revision);
string_like!(CommitId);
string_like!(RepoPath);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(), NameProblem>) {
        assert_eq!(check_ref_name(input), expected, "input {input:?}");
        assert_eq!(
            RefName::new(input).is_ok(),
            expected.is_ok(),
            "input {input:?}"
        );
    }

    #[test]
    fn ref_names() {
        check("main", Ok(()));
        check("feature/milestone-login", Ok(()));
        check("milestone/v1.2_x", Ok(()));
        check("", Err(NameProblem::Empty));
        check(
            &"a".repeat(201),
            Err(NameProblem::TooLong { len: 201, max: 200 }),
        );
        check("-x", Err(NameProblem::LeadingDash));
        check("feature/-x", Err(NameProblem::LeadingDash));
        check(
            "--upload-pack=x",
            Err(NameProblem::BadChar { ch: '=', at: 13 }),
        );
        check("a..b", Err(NameProblem::DoubleDot));
        check("a@{1}", Err(NameProblem::BadChar { ch: '@', at: 1 }));
        check("@", Err(NameProblem::BadChar { ch: '@', at: 0 }));
        check("x.lock", Err(NameProblem::LockSuffix));
        check("x.lock/y", Err(NameProblem::LockSuffix));
        check(".x", Err(NameProblem::LeadingDot));
        check("a/.x", Err(NameProblem::LeadingDot));
        check("a b", Err(NameProblem::BadChar { ch: ' ', at: 1 }));
        check("a\tb", Err(NameProblem::BadChar { ch: '\t', at: 1 }));
        check(
            "a\u{7f}",
            Err(NameProblem::BadChar {
                ch: '\u{7f}',
                at: 1,
            }),
        );
        check(
            "ma\u{456}n",
            Err(NameProblem::BadChar {
                ch: '\u{456}',
                at: 2,
            }),
        );
        check("a~1", Err(NameProblem::BadChar { ch: '~', at: 1 }));
        check("a^", Err(NameProblem::BadChar { ch: '^', at: 1 }));
        check("a:b", Err(NameProblem::BadChar { ch: ':', at: 1 }));
        check("a*", Err(NameProblem::BadChar { ch: '*', at: 1 }));
        check("a/", Err(NameProblem::EmptyComponent));
        check("/a", Err(NameProblem::EmptyComponent));
        check("a//b", Err(NameProblem::EmptyComponent));
        check("a.", Err(NameProblem::TrailingDot));
        check("HEAD", Err(NameProblem::Reserved));
        check("refs/heads/x", Err(NameProblem::Reserved));
    }

    fn check_rev(input: &str, expected: Result<(), NameProblem>) {
        assert_eq!(check_revision(input), expected, "input {input:?}");
    }

    #[test]
    fn revisions() {
        check_rev("HEAD", Ok(()));
        check_rev("HEAD~2", Ok(()));
        check_rev("HEAD^2~1^", Ok(()));
        check_rev("main", Ok(()));
        check_rev("refs/heads/feature/x", Ok(()));
        check_rev("refs/tags/milestone/x", Ok(()));
        check_rev("0123abcd", Ok(()));
        check_rev("HEAD~x", Err(NameProblem::BadSuffix));
        check_rev("HEAD^{commit}", Err(NameProblem::BadSuffix));
        check_rev("main..other", Err(NameProblem::DoubleDot));
        check_rev("main@{1}", Err(NameProblem::BadChar { ch: '@', at: 4 }));
        check_rev("-x", Err(NameProblem::LeadingDash));
        check_rev("refs/remotes/x", Err(NameProblem::Reserved));
        check_rev("HEAD:path", Err(NameProblem::BadChar { ch: ':', at: 4 }));
        check_rev("", Err(NameProblem::Empty));
    }

    fn check_p(input: &str, expected: Result<(), NameProblem>) {
        assert_eq!(check_path(input), expected, "input {input:?}");
    }

    #[test]
    fn paths() {
        check_p("a.txt", Ok(()));
        check_p("src/-weird name.rs", Ok(()));
        check_p(":(glob)*", Ok(()));
        check_p("", Err(NameProblem::Empty));
        check_p("/etc/passwd", Err(NameProblem::Absolute));
        check_p("../x", Err(NameProblem::DotComponent));
        check_p("a/./b", Err(NameProblem::DotComponent));
        check_p("a//b", Err(NameProblem::EmptyComponent));
        check_p(".git/config", Err(NameProblem::GitDir));
        check_p("x/.GIT/config", Err(NameProblem::GitDir));
        check_p("a\nb", Err(NameProblem::BadChar { ch: '\n', at: 1 }));
        check_p("a\\b", Err(NameProblem::BadChar { ch: '\\', at: 1 }));
    }

    #[test]
    fn commit_ids() {
        assert!(CommitId::new("0".repeat(40)).is_ok());
        assert!(CommitId::new("a".repeat(64)).is_ok());
        assert!(CommitId::new("A".repeat(40)).is_err());
        assert!(CommitId::new("abc").is_err());
    }
}
