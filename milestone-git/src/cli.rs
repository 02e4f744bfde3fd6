//! [`CliGit`]: a [`GitBackend`] over the real `git` program.
//!
//! * Commands are run with [`std::process::Command`], never through a shell. Every ref or
//!   revision follows `--end-of-options`, every path follows `--`, pathspec magic is off
//!   (`GIT_LITERAL_PATHSPECS=1`), and free text (commit and tag messages) goes through stdin.
//!   The only caller text on a command line is a merge message, attached to `--message=`.
//! * The environment is isolated: `GIT_DIR`, `GIT_WORK_TREE`, `GIT_INDEX_FILE`,
//!   `GIT_OBJECT_DIRECTORY`, `GIT_COMMON_DIR`, `GIT_NAMESPACE`, `GIT_CONFIG_PARAMETERS` and
//!   `GIT_CONFIG_COUNT` are removed; `GIT_TERMINAL_PROMPT=0`, `GIT_EDITOR=true`,
//!   `GIT_MERGE_AUTOEDIT=no` and `LC_ALL=C` are set (the last so stderr can be classified).
//! * Hooks do not run and nothing is signed unless [`CliGitConfig`] says otherwise.
//! * Each git process runs on its own thread; the async caller awaits a oneshot channel, so no
//!   executor thread ever blocks on a child process. Working-tree file reads and writes
//!   ([`GitBackend::read_file`], [`GitBackend::write_file`]) are plain, short file system calls.
//! * Git 2.38 or newer is required; the version is checked by [`CliGit::open`].

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::backend::{
    CommitRequest, FastForward, GitBackend, LogEntry, LogRange, MergeOptions, MergeOutcome, Status,
    Trailer, check_message,
};
use crate::error::GitError;
use crate::names::{CommitId, NameProblem, RefName, RepoPath, Revision};

/// The oldest git version supported.
pub const MIN_GIT_VERSION: (u32, u32) = (2, 38);

const MIN_GIT_VERSION_TEXT: &str = "2.38";

/// Environment variables removed from every git process.
pub const REMOVED_ENV: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// Who authors or commits: a name and an email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    name: String,
    email: String,
}

impl Identity {
    /// An identity. Neither part may be empty, contain `<`, `>` or control characters.
    ///
    /// # Errors
    /// [`GitError::InvalidName`] naming the part and the rule.
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Result<Self, GitError> {
        let name = name.into();
        let email = email.into();
        for (what, v) in [("identity name", &name), ("identity email", &email)] {
            if v.trim().is_empty() {
                return Err(GitError::InvalidName {
                    what,
                    value: v.clone(),
                    problem: NameProblem::Empty,
                });
            }
            if let Some((at, ch)) = v
                .char_indices()
                .find(|(_, c)| c.is_control() || matches!(c, '<' | '>'))
            {
                return Err(GitError::InvalidName {
                    what,
                    value: v.chars().take(80).collect(),
                    problem: NameProblem::BadChar { ch, at },
                });
            }
        }
        Ok(Self { name, email })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The email address.
    pub fn email(&self) -> &str {
        &self.email
    }
}

/// Whether git hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HooksPolicy {
    /// Run no hook (`core.hooksPath=/dev/null`): an agent's commit must not execute code the
    /// repository brought along.
    #[default]
    RunNone,
    /// Run the hooks the repository configures.
    RunRepository,
}

/// Whether commits and tags are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SigningPolicy {
    /// Never sign (`commit.gpgsign=false`, `tag.gpgsign=false`).
    #[default]
    Off,
    /// Sign as the repository and user configuration say.
    FromConfig,
}

/// How [`CliGit`] runs git.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CliGitConfig {
    /// The git program (default `git`, looked up on `PATH`).
    pub git_program: PathBuf,
    /// The author of commits and tags; `None` leaves it to git's configuration.
    pub author: Option<Identity>,
    /// The committer; `None` uses `author` when set, else git's configuration.
    pub committer: Option<Identity>,
    /// A fixed date for authoring and committing (any format git accepts, e.g.
    /// `2005-04-07T22:13:13 +0000`), for reproducible commit ids.
    pub date: Option<String>,
    /// Whether hooks run (default: none).
    pub hooks: HooksPolicy,
    /// Whether to sign (default: off).
    pub signing: SigningPolicy,
    /// Extra environment variables for every git process (e.g. `HOME`, `GIT_CONFIG_GLOBAL`).
    /// The isolation rules above are applied after these and win.
    pub env: Vec<(OsString, OsString)>,
}

impl Default for CliGitConfig {
    fn default() -> Self {
        Self {
            git_program: PathBuf::from("git"),
            author: None,
            committer: None,
            date: None,
            hooks: HooksPolicy::default(),
            signing: SigningPolicy::default(),
            env: Vec::new(),
        }
    }
}

impl CliGitConfig {
    /// Sets author and committer to `identity`.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.author = Some(identity.clone());
        self.committer = Some(identity);
        self
    }

    /// Sets a fixed author and committer date.
    pub fn with_date(mut self, date: impl Into<String>) -> Self {
        self.date = Some(date.into());
        self
    }

    /// Sets the git program.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.git_program = program.into();
        self
    }

    /// Adds an environment variable for every git process.
    pub fn with_env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the hooks policy.
    pub fn with_hooks(mut self, hooks: HooksPolicy) -> Self {
        self.hooks = hooks;
        self
    }

    /// Sets the signing policy.
    pub fn with_signing(mut self, signing: SigningPolicy) -> Self {
        self.signing = signing;
        self
    }
}

/// A git repository with a working tree, driven through the `git` program. See the module docs.
#[derive(Clone)]
pub struct CliGit {
    workdir: PathBuf,
    config: Arc<CliGitConfig>,
    spawned: Arc<AtomicU64>,
}

impl fmt::Debug for CliGit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CliGit")
            .field("workdir", &self.workdir)
            .field("git_program", &self.config.git_program)
            .finish_non_exhaustive()
    }
}

/// What a failing command was about, so its stderr maps to the right error.
struct Ctx<'a> {
    op: &'static str,
    /// The name reported by `RefNotFound`.
    missing: &'a str,
    /// The name reported by `AlreadyExists`.
    existing: &'a str,
}

impl<'a> Ctx<'a> {
    fn op(op: &'static str) -> Self {
        Ctx {
            op,
            missing: "",
            existing: "",
        }
    }
    fn missing(op: &'static str, missing: &'a str) -> Self {
        Ctx {
            op,
            missing,
            existing: "",
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses `git version 2.47.3` (and vendor suffixes) into (major, minor).
pub(crate) fn parse_version(output: &str) -> Option<(u32, u32)> {
    let version = output.trim().strip_prefix("git version ")?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Maps a failed git command to a typed error.
fn classify(ctx: &Ctx<'_>, workdir: &Path, out: &Output, hooks: HooksPolicy) -> GitError {
    let stderr = text(&out.stderr);
    let all = format!("{}\n{}", text(&out.stdout), stderr);
    let has = |needle: &str| all.contains(needle);
    let stderr_trimmed = stderr.trim().to_owned();
    if has("detected dubious ownership") {
        GitError::DubiousOwnership {
            stderr: stderr_trimmed,
        }
    } else if has("not a git repository") {
        GitError::NotARepository {
            path: workdir.to_path_buf(),
        }
    } else if has("Please tell me who you are")
        || has("identity unknown")
        || has("unable to auto-detect email address")
        || has("empty ident name")
        || has("no email was given")
        || has("no name was given")
    {
        GitError::IdentityUnknown {
            stderr: stderr_trimmed,
        }
    } else if has("failed to sign") || has("gpg failed") || has("cannot run gpg") {
        GitError::SigningFailed {
            stderr: stderr_trimmed,
        }
    } else if has("nothing to commit")
        || has("nothing added to commit")
        || has("no changes added to commit")
    {
        GitError::NothingToCommit
    } else if has("There is no merge to abort") || has("MERGE_HEAD missing") {
        GitError::NoMergeInProgress
    } else if has("would be overwritten by") {
        let paths = stderr
            .lines()
            .filter_map(|l| l.strip_prefix('\t'))
            .map(|l| l.trim().to_owned())
            .collect();
        GitError::DirtyWorkTree { paths }
    } else if has("unmerged files")
        || has("resolve your current index first")
        || has("unmerged paths")
        || has("while merging")
    {
        GitError::Conflict { paths: Vec::new() }
    } else if has("already exists") && !ctx.existing.is_empty() {
        GitError::AlreadyExists {
            name: ctx.existing.to_owned(),
        }
    } else if (has("unknown revision")
        || has("not a valid object name")
        || has("invalid reference")
        || has("Needed a single revision")
        || has("bad revision")
        || has("Failed to resolve")
        || has("not a valid ref")
        || has("does not have any commits yet")
        || has("not something we can merge"))
        && !ctx.missing.is_empty()
    {
        GitError::RefNotFound {
            name: ctx.missing.to_owned(),
        }
    } else if stderr.contains("hook")
        || (hooks == HooksPolicy::RunRepository && matches!(ctx.op, "commit" | "merge" | "tag"))
    {
        GitError::HookFailed {
            stderr: stderr_trimmed,
        }
    } else {
        let detail = if stderr_trimmed.is_empty() {
            text(&out.stdout).trim().to_owned()
        } else {
            stderr_trimmed
        };
        GitError::Other {
            operation: ctx.op.to_owned(),
            stderr: detail,
        }
    }
}

fn os(s: impl AsRef<str>) -> OsString {
    OsString::from(s.as_ref())
}

impl CliGit {
    /// Opens the repository that contains `dir`, after checking that the git program runs and
    /// is at least version 2.38.
    ///
    /// # Errors
    /// [`GitError::GitMissing`], [`GitError::GitTooOld`], [`GitError::NotARepository`],
    /// [`GitError::DubiousOwnership`].
    pub async fn open(dir: impl AsRef<Path>, config: CliGitConfig) -> Result<Self, GitError> {
        let git = Self {
            workdir: dir.as_ref().to_path_buf(),
            config: Arc::new(config),
            spawned: Arc::new(AtomicU64::new(0)),
        };
        if !git.workdir.is_dir() {
            return Err(GitError::NotARepository { path: git.workdir });
        }
        git.check_version().await?;
        let out = git
            .run(vec![os("rev-parse"), os("--show-toplevel")], None)
            .await?;
        if !out.status.success() {
            return Err(git.fail(&Ctx::op("open"), &out));
        }
        let top = text(&out.stdout).trim_end_matches(['\n', '\r']).to_owned();
        if top.is_empty() {
            // A bare repository or the inside of `.git`: no working tree to work in.
            return Err(GitError::NotARepository { path: git.workdir });
        }
        Ok(Self {
            workdir: PathBuf::from(top),
            ..git
        })
    }

    /// Creates a repository in the existing directory `dir` (`git init`) on the unborn branch
    /// `initial_branch`, then opens it.
    ///
    /// # Errors
    /// As [`CliGit::open`], plus [`GitError::Other`] when `git init` fails.
    pub async fn init(
        dir: impl AsRef<Path>,
        initial_branch: &RefName,
        config: CliGitConfig,
    ) -> Result<Self, GitError> {
        let git = Self {
            workdir: dir.as_ref().to_path_buf(),
            config: Arc::new(config),
            spawned: Arc::new(AtomicU64::new(0)),
        };
        if !git.workdir.is_dir() {
            return Err(GitError::Io {
                path: git.workdir.display().to_string(),
                detail: "not an existing directory".into(),
            });
        }
        git.check_version().await?;
        let args = vec![
            os("init"),
            os("--quiet"),
            os(format!("--initial-branch={}", initial_branch.as_str())),
        ];
        let out = git.run(args, None).await?;
        if !out.status.success() {
            return Err(git.fail(&Ctx::op("init"), &out));
        }
        let config = Arc::try_unwrap(git.config).unwrap_or_else(|arc| (*arc).clone());
        Self::open(&git.workdir, config).await
    }

    /// The top of the working tree.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The configuration.
    pub fn config(&self) -> &CliGitConfig {
        &self.config
    }

    /// How many git processes this handle (and its clones) started so far, `open` included.
    pub fn processes_spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }

    async fn check_version(&self) -> Result<(), GitError> {
        let out = self.run(vec![os("version")], None).await?;
        let reported = text(&out.stdout);
        match parse_version(&reported) {
            Some(v) if out.status.success() && v >= MIN_GIT_VERSION => Ok(()),
            Some(_) => Err(GitError::GitTooOld {
                found: reported
                    .trim()
                    .trim_start_matches("git version ")
                    .to_owned(),
                required: MIN_GIT_VERSION_TEXT,
            }),
            None => Err(GitError::GitMissing {
                program: self.config.git_program.clone(),
                detail: format!("unexpected `git version` output {:?}", reported.trim()),
            }),
        }
    }

    fn command(&self, args: Vec<OsString>) -> Command {
        let c = &self.config;
        let mut cmd = Command::new(&c.git_program);
        cmd.current_dir(&self.workdir);
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        for k in REMOVED_ENV {
            cmd.env_remove(k);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true")
            .env("GIT_MERGE_AUTOEDIT", "no")
            .env("LC_ALL", "C")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_PAGER", "cat");
        if let Some(a) = &c.author {
            cmd.env("GIT_AUTHOR_NAME", &a.name)
                .env("GIT_AUTHOR_EMAIL", &a.email);
        }
        if let Some(m) = c.committer.as_ref().or(c.author.as_ref()) {
            cmd.env("GIT_COMMITTER_NAME", &m.name)
                .env("GIT_COMMITTER_EMAIL", &m.email);
        }
        if let Some(d) = &c.date {
            cmd.env("GIT_AUTHOR_DATE", d).env("GIT_COMMITTER_DATE", d);
        }
        if c.hooks == HooksPolicy::RunNone {
            cmd.arg("-c").arg("core.hooksPath=/dev/null");
        }
        if c.signing == SigningPolicy::Off {
            cmd.args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]);
        }
        cmd.args(args);
        cmd
    }

    /// Runs git on a thread of its own and awaits its output.
    async fn run(&self, args: Vec<OsString>, stdin: Option<Vec<u8>>) -> Result<Output, GitError> {
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let program = self.config.git_program.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        let work = move || {
            let result = (|| {
                let mut child = cmd.spawn()?;
                if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                    use std::io::Write;
                    // Git may exit before reading its input (an unknown identity, say): its
                    // exit status and stderr tell what happened, not the broken pipe.
                    match pipe.write_all(&input) {
                        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                        _ => {}
                    }
                }
                child.wait_with_output()
            })();
            // The receiver is gone only when the caller stopped waiting; nothing to report to.
            let _ = tx.send(result);
        };
        std::thread::Builder::new()
            .name("milestone-git".into())
            .spawn(work)
            .map_err(|e| GitError::Other {
                operation: "spawn thread".into(),
                stderr: e.to_string(),
            })?;
        match rx.await {
            Ok(Ok(out)) => Ok(out),
            // Only a program that cannot be found or run is "git missing"; anything else
            // (too many arguments, a broken pipe, a failed wait) says what happened.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                Err(GitError::GitMissing {
                    program,
                    detail: e.to_string(),
                })
            }
            Ok(Err(e)) => Err(GitError::Other {
                operation: "run".into(),
                stderr: e.to_string(),
            }),
            Err(_) => Err(GitError::Other {
                operation: "run".into(),
                stderr: "the git thread ended without a result".into(),
            }),
        }
    }

    fn fail(&self, ctx: &Ctx<'_>, out: &Output) -> GitError {
        classify(ctx, &self.workdir, out, self.config.hooks)
    }

    /// Runs a command that must succeed; returns its stdout.
    async fn ok(
        &self,
        ctx: Ctx<'_>,
        args: Vec<OsString>,
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, GitError> {
        let out = self.run(args, stdin).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.fail(&ctx, &out))
        }
    }

    /// `rev-parse --verify --quiet <rev>^{commit}`: `None` when it does not resolve.
    async fn try_resolve(&self, rev: &str) -> Result<Option<CommitId>, GitError> {
        let args = vec![
            os("rev-parse"),
            os("--verify"),
            os("--quiet"),
            os("--end-of-options"),
            os(format!("{rev}^{{commit}}")),
        ];
        let out = self.run(args, None).await?;
        if out.status.success() {
            CommitId::new(text(&out.stdout).trim()).map(Some)
        } else if out.status.code() == Some(1) && out.stderr.is_empty() {
            Ok(None)
        } else {
            Err(self.fail(&Ctx::missing("rev-parse", rev), &out))
        }
    }

    /// The file `path` of the working tree, refusing a path that passes through a symbolic link
    /// (which could lead outside the working tree).
    fn file(&self, path: &RepoPath) -> Result<PathBuf, GitError> {
        let mut full = self.workdir.clone();
        for part in path.as_str().split('/') {
            full.push(part);
            if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(GitError::Io {
                    path: path.as_str().to_owned(),
                    detail: format!("{} is a symbolic link", full.display()),
                });
            }
        }
        Ok(full)
    }

    async fn conflicted_paths(&self) -> Result<Vec<String>, GitError> {
        Ok(self.status().await?.conflicted)
    }
}

fn parse_status(raw: &[u8]) -> Status {
    let mut status = Status::default();
    let mut entries = raw.split(|b| *b == 0).filter(|e| e.len() > 3);
    while let Some(entry) = entries.next() {
        let (xy, path) = entry.split_at(3);
        let path = text(path);
        match &xy[..2] {
            b"??" => status.untracked.push(path),
            b"!!" => {}
            b"DD" | b"AU" | b"UD" | b"UA" | b"DU" | b"AA" | b"UU" => status.conflicted.push(path),
            [b'R' | b'C', _] | [_, b'R' | b'C'] => {
                // Renames carry the original path as the next entry (not produced with
                // --no-renames, handled for safety).
                status.changed.push(path);
                if let Some(orig) = entries.next() {
                    status.changed.push(text(orig));
                }
            }
            _ => status.changed.push(path),
        }
    }
    for list in [
        &mut status.changed,
        &mut status.untracked,
        &mut status.conflicted,
    ] {
        list.sort();
        list.dedup();
    }
    status
}

fn parse_log(raw: &[u8]) -> Result<Vec<LogEntry>, GitError> {
    let mut entries = Vec::new();
    for record in raw.split(|b| *b == 0) {
        let record = text(record);
        let record = record.trim_start_matches('\n');
        if record.is_empty() {
            continue;
        }
        let mut fields = record.splitn(3, '\u{1f}');
        let id = CommitId::new(fields.next().unwrap_or_default())?;
        let summary = fields.next().unwrap_or_default().to_owned();
        let trailers = fields
            .next()
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(k, v)| Trailer::parsed(k.trim(), v.trim()))
            .collect();
        entries.push(LogEntry {
            id,
            summary,
            trailers,
        });
    }
    Ok(entries)
}

#[async_trait]
impl GitBackend for CliGit {
    async fn head(&self) -> Result<Option<CommitId>, GitError> {
        self.try_resolve("HEAD").await
    }

    async fn current_branch(&self) -> Result<Option<RefName>, GitError> {
        let args = vec![
            os("symbolic-ref"),
            os("--quiet"),
            os("--short"),
            os("--end-of-options"),
            os("HEAD"),
        ];
        let out = self.run(args, None).await?;
        if out.status.success() {
            RefName::new(text(&out.stdout).trim()).map(Some)
        } else if out.status.code() == Some(1) {
            Ok(None)
        } else {
            Err(self.fail(&Ctx::op("symbolic-ref"), &out))
        }
    }

    async fn branch_exists(&self, name: &RefName) -> Result<bool, GitError> {
        let args = vec![
            os("rev-parse"),
            os("--verify"),
            os("--quiet"),
            os("--end-of-options"),
            os(Revision::branch(name).as_str()),
        ];
        let out = self.run(args, None).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) if out.stderr.is_empty() => Ok(false),
            _ => Err(self.fail(&Ctx::op("rev-parse"), &out)),
        }
    }

    async fn create_branch(&self, name: &RefName, from: &Revision) -> Result<CommitId, GitError> {
        let id = self
            .try_resolve(from.as_str())
            .await?
            .ok_or_else(|| GitError::RefNotFound {
                name: from.as_str().to_owned(),
            })?;
        let args = vec![
            os("branch"),
            os("--no-track"),
            os("--end-of-options"),
            os(name.as_str()),
            os(id.as_str()),
        ];
        let ctx = Ctx {
            op: "branch",
            missing: from.as_str(),
            existing: name.as_str(),
        };
        self.ok(ctx, args, None).await?;
        Ok(id)
    }

    async fn switch(&self, name: &RefName) -> Result<(), GitError> {
        let args = vec![
            os("switch"),
            os("--quiet"),
            os("--no-guess"),
            os("--end-of-options"),
            os(name.as_str()),
        ];
        match self
            .ok(Ctx::missing("switch", name.as_str()), args, None)
            .await
        {
            Err(GitError::Conflict { .. }) => Err(GitError::Conflict {
                paths: self.conflicted_paths().await?,
            }),
            other => other.map(drop),
        }
    }

    async fn status(&self) -> Result<Status, GitError> {
        let args = vec![
            os("status"),
            os("--porcelain=v1"),
            os("-z"),
            os("--untracked-files=all"),
            os("--no-renames"),
        ];
        let out = self.ok(Ctx::op("status"), args, None).await?;
        Ok(parse_status(&out))
    }

    async fn add(&self, paths: &[RepoPath]) -> Result<(), GitError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut args = vec![os("add"), os("--")];
        args.extend(paths.iter().map(|p| os(p.as_str())));
        self.ok(Ctx::op("add"), args, None).await.map(drop)
    }

    async fn add_all(&self) -> Result<(), GitError> {
        self.ok(Ctx::op("add"), vec![os("add"), os("--all")], None)
            .await
            .map(drop)
    }

    async fn commit(&self, request: &CommitRequest) -> Result<CommitId, GitError> {
        check_message("commit message", &request.message, false)?;
        let mut args = vec![os("commit"), os("--quiet"), os("--cleanup=whitespace")];
        if request.allow_empty {
            args.push(os("--allow-empty"));
        }
        args.push(os("--file=-"));
        let message = request.full_message().into_bytes();
        match self.ok(Ctx::op("commit"), args, Some(message)).await {
            Err(GitError::Conflict { .. }) => {
                return Err(GitError::Conflict {
                    paths: self.conflicted_paths().await?,
                });
            }
            other => other?,
        };
        self.try_resolve("HEAD")
            .await?
            .ok_or_else(|| GitError::Other {
                operation: "commit".into(),
                stderr: "HEAD does not resolve after committing".into(),
            })
    }

    async fn tag(&self, name: &RefName, target: &Revision, message: &str) -> Result<(), GitError> {
        check_message("tag message", message, true)?;
        let args = vec![
            os("tag"),
            os("--annotate"),
            os("--file=-"),
            os("--end-of-options"),
            os(name.as_str()),
            os(target.as_str()),
        ];
        let mut message = message.trim().to_owned();
        if message.is_empty() {
            message = name.as_str().to_owned();
        }
        message.push('\n');
        let ctx = Ctx {
            op: "tag",
            missing: target.as_str(),
            existing: name.as_str(),
        };
        self.ok(ctx, args, Some(message.into_bytes()))
            .await
            .map(drop)
    }

    async fn merge(
        &self,
        rev: &Revision,
        options: &MergeOptions,
    ) -> Result<MergeOutcome, GitError> {
        check_message("merge message", &options.message, true)?;
        let theirs =
            self.try_resolve(rev.as_str())
                .await?
                .ok_or_else(|| GitError::RefNotFound {
                    name: rev.as_str().to_owned(),
                })?;
        let before = self.head().await?;
        let mut message = options.message.trim().to_owned();
        if message.is_empty() {
            message = format!("Merge {}", rev.as_str());
        }
        let args = vec![
            os("merge"),
            os("--no-edit"),
            os("--no-stat"),
            os("--no-log"),
            os(match options.fast_forward {
                FastForward::Allow => "--ff",
                FastForward::Never => "--no-ff",
            }),
            os(format!("--message={message}")),
            os("--end-of-options"),
            os(theirs.as_str()),
        ];
        let out = self.run(args, None).await?;
        if out.status.success() {
            let after = self.head().await?;
            return Ok(match after {
                Some(after) if Some(&after) == before.as_ref() => MergeOutcome::AlreadyUpToDate,
                Some(after) if after == theirs => MergeOutcome::FastForward { to: after },
                Some(after) => MergeOutcome::Merged { commit: after },
                None => {
                    return Err(GitError::Other {
                        operation: "merge".into(),
                        stderr: "HEAD does not resolve after merging".into(),
                    });
                }
            });
        }
        let stdout = text(&out.stdout);
        if stdout.contains("CONFLICT") || stdout.contains("Automatic merge failed") {
            let paths = self.conflicted_paths().await?;
            return Ok(MergeOutcome::Conflicts { paths });
        }
        Err(self.fail(&Ctx::missing("merge", rev.as_str()), &out))
    }

    async fn abort_merge(&self) -> Result<(), GitError> {
        self.ok(
            Ctx::op("merge --abort"),
            vec![os("merge"), os("--abort")],
            None,
        )
        .await
        .map(drop)
    }

    async fn merge_in_progress(&self) -> Result<Option<CommitId>, GitError> {
        self.try_resolve("MERGE_HEAD").await
    }

    async fn log(&self, range: &LogRange) -> Result<Vec<LogEntry>, GitError> {
        let spec = match &range.since {
            Some(since) => format!("{}..{}", since.as_str(), range.until.as_str()),
            None => range.until.as_str().to_owned(),
        };
        let args = vec![
            os("log"),
            os("--topo-order"),
            os("-z"),
            os("--format=%H%x1f%s%x1f%(trailers:only,unfold)"),
            os("--end-of-options"),
            os(&spec),
            os("--"),
        ];
        match self.ok(Ctx::missing("log", &spec), args, None).await {
            Ok(out) => parse_log(&out),
            Err(GitError::RefNotFound { name }) => {
                // Name the end that is missing rather than the range.
                for rev in range.since.iter().chain(std::iter::once(&range.until)) {
                    if self.try_resolve(rev.as_str()).await?.is_none() {
                        return Err(GitError::RefNotFound {
                            name: rev.as_str().to_owned(),
                        });
                    }
                }
                Err(GitError::RefNotFound { name })
            }
            Err(e) => Err(e),
        }
    }

    async fn resolve(&self, rev: &Revision) -> Result<CommitId, GitError> {
        self.try_resolve(rev.as_str())
            .await?
            .ok_or_else(|| GitError::RefNotFound {
                name: rev.as_str().to_owned(),
            })
    }

    async fn read_file(&self, path: &RepoPath) -> Result<Option<Vec<u8>>, GitError> {
        match std::fs::read(self.file(path)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GitError::Io {
                path: path.as_str().to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    async fn write_file(&self, path: &RepoPath, contents: &[u8]) -> Result<(), GitError> {
        let full = self.file(path)?;
        let io = |e: std::io::Error| GitError::Io {
            path: path.as_str().to_owned(),
            detail: e.to_string(),
        };
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(full, contents).map_err(io)
    }

    async fn remove_file(&self, path: &RepoPath) -> Result<bool, GitError> {
        match std::fs::remove_file(self.file(path)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(GitError::Io {
                path: path.as_str().to_owned(),
                detail: e.to_string(),
            }),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn out(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    fn check(stdout: &str, stderr: &str, expected: GitError) {
        let ctx = Ctx {
            op: "commit",
            missing: "nosuch",
            existing: "dup",
        };
        let got = classify(
            &ctx,
            Path::new("/repo"),
            &out(128, stdout, stderr),
            HooksPolicy::RunNone,
        );
        assert_eq!(got, expected, "stderr {stderr:?}");
    }

    #[test]
    fn stderr_maps_to_typed_errors() {
        let s = |x: &str| x.trim().to_owned();
        let dubious = "fatal: detected dubious ownership in repository at '/repo'";
        check(
            "",
            dubious,
            GitError::DubiousOwnership { stderr: s(dubious) },
        );
        check(
            "",
            "fatal: not a git repository (or any of the parent directories): .git",
            GitError::NotARepository {
                path: "/repo".into(),
            },
        );
        let who = "Author identity unknown\n\n*** Please tell me who you are.";
        check("", who, GitError::IdentityUnknown { stderr: s(who) });
        let gpg = "error: gpg failed to sign the data\nfatal: failed to write commit object";
        check("", gpg, GitError::SigningFailed { stderr: s(gpg) });
        check(
            "nothing to commit, working tree clean",
            "",
            GitError::NothingToCommit,
        );
        check(
            "",
            "fatal: There is no merge to abort (MERGE_HEAD missing).",
            GitError::NoMergeInProgress,
        );
        check(
            "",
            "error: Your local changes to the following files would be overwritten by checkout:\n\ta.txt\n\tb.txt\nPlease commit",
            GitError::DirtyWorkTree {
                paths: vec!["a.txt".into(), "b.txt".into()],
            },
        );
        check(
            "",
            "error: Committing is not possible because you have unmerged files.",
            GitError::Conflict { paths: vec![] },
        );
        check(
            "",
            "fatal: a branch named 'dup' already exists",
            GitError::AlreadyExists { name: "dup".into() },
        );
        check(
            "",
            "fatal: invalid reference: nosuch",
            GitError::RefNotFound {
                name: "nosuch".into(),
            },
        );
        check(
            "",
            "fatal: ambiguous argument 'nosuch': unknown revision or path",
            GitError::RefNotFound {
                name: "nosuch".into(),
            },
        );
        check(
            "",
            "pre-commit hook refused",
            GitError::HookFailed {
                stderr: "pre-commit hook refused".into(),
            },
        );
        check(
            "",
            "fatal: something new",
            GitError::Other {
                operation: "commit".into(),
                stderr: "fatal: something new".into(),
            },
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("git version 2.47.3\n"), Some((2, 47)));
        assert_eq!(parse_version("git version 2.39.5.windows.1"), Some((2, 39)));
        assert_eq!(
            parse_version("git version 2.37.1 (Apple Git-137)"),
            Some((2, 37))
        );
        assert_eq!(parse_version("git version 3.0"), Some((3, 0)));
        assert_eq!(parse_version("hello"), None);
        assert!(
            (2, 37) < MIN_GIT_VERSION && (2, 38) >= MIN_GIT_VERSION && (3, 0) > MIN_GIT_VERSION
        );
    }

    #[test]
    fn status_parsing() {
        let raw = b"?? new.txt\0 M a.txt\0UU c.txt\0D  gone.txt\0AA both.txt\0!! ignored\0";
        let s = parse_status(raw);
        assert_eq!(s.untracked, vec!["new.txt"]);
        assert_eq!(s.changed, vec!["a.txt", "gone.txt"]);
        assert_eq!(s.conflicted, vec!["both.txt", "c.txt"]);
    }

    #[test]
    fn log_parsing() {
        let id = "a".repeat(40);
        let raw = format!(
            "{id}\u{1f}feat: x\u{1f}Milestone: m1\nMilestone-Phase: design\n\0\n{id}\u{1f}root\u{1f}\0"
        );
        let entries = parse_log(raw.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].summary, "feat: x");
        assert_eq!(entries[0].trailer("Milestone-Phase"), Some("design"));
        assert!(entries[1].trailers.is_empty());
    }
}
