//! [`CommandAgent`]: runs an external program (an LLM command-line tool, a script) as an agent.
//!
//! # Protocol (version 1)
//!
//! The program is started **without a shell**, in its own process group, with a cleared
//! environment holding only the allow-listed variables, in the configured working directory
//! (the milestone's repository).
//!
//! - **stdin**: the [`AgentRequest`] as one line of JSON (see its docs for the shape), then
//!   end of file.
//! - **stdout**: one JSON value per line, read as the lines arrive:
//!   - `{"progress": 0.4}` — a progress report (a fraction, 0.0–1.0), passed on at once;
//!   - `{"handoff": <any JSON>}` — a partial result, passed on at once;
//!   - `{"output": {…}}` — the result, in the shape of [`AgentOutput`]; the last one wins;
//!   - `{"error": {"kind": "transient" | "permanent" | "unavailable", "message": "…"}}` — a
//!     failure the program reports itself (it wins over the exit code);
//!   - any other JSON object — taken as the result when no `output` line came (so a tool that
//!     prints a single `{"summary": …}` object works unchanged);
//!   - anything else (chatter, blank lines) is ignored, but counted and quoted in the error
//!     when no result came.
//! - **stderr**: kept (the last 64 KiB by default) and quoted in error messages.
//! - **exit code**: 0 = success (a result is then required: missing or malformed output is
//!   [`AgentError::InvalidOutput`]); a code listed as transient (default: 75, `EX_TEMPFAIL`)
//!   = [`AgentError::Transient`]; any other code = [`AgentError::Permanent`]; killed by a
//!   signal = [`AgentError::Transient`].
//! - **deadline and cancellation**: when the request's deadline passes on the agent's clock,
//!   or the context is cancelled, or the `run` future is dropped, the whole process group
//!   (the program and every child it started) gets `SIGKILL`, and the run ends with
//!   [`AgentError::TimedOut`] / [`AgentError::Cancelled`].
//! - **leftovers**: a program that exits while something it started still holds its stdout
//!   or stderr gets [`EXIT_GRACE_MS`] for the pipes to close; then the rest of its process
//!   group is killed and the run ends with the program's own result.
//!
//! # Threads
//!
//! To stay executor-agnostic (no tokio), each running command uses three short-lived helper
//! threads — one writes stdin and then waits for the exit, one reads stdout, one reads
//! stderr — feeding futures channels that the `run` future awaits. The group is killed with
//! the system's `kill` program (`kill -KILL -- -<pgid>`), since the crate forbids `unsafe` and
//! so calls no libc directly.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::task::Poll;

use async_trait::async_trait;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use serde::Deserialize;

use crate::clock::{Clock, SystemClock};
use crate::context::AgentContext;
use crate::output::{AgentError, AgentOutput};
use crate::request::AgentRequest;
use crate::runner::AgentRunner;

/// The variables passed through from the parent's environment by default.
pub const DEFAULT_PASS_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The exit codes that mean "try again" by default (`EX_TEMPFAIL` of `sysexits.h`).
pub const DEFAULT_TRANSIENT_CODES: [i32; 1] = [75];

/// A runner that runs an external program; see the [module docs](self) for the protocol.
///
/// ```no_run
/// use milestone_agents::CommandAgent;
///
/// let agent = CommandAgent::new("claude-design", "my-llm-tool")
///     .arg("--phase")
///     .arg("design")
///     .current_dir("/path/to/repo")
///     .pass_env("ANTHROPIC_API_KEY")
///     .env("NO_COLOR", "1");
/// # let _ = agent;
/// ```
#[derive(Clone)]
pub struct CommandAgent {
    name: String,
    program: OsString,
    args: Vec<OsString>,
    pass_env: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    transient_codes: Vec<i32>,
    stderr_limit: usize,
    max_line_bytes: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for CommandAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandAgent")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("args", &self.args)
            .field("pass_env", &self.pass_env)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("dir", &self.dir)
            .field("transient_codes", &self.transient_codes)
            .finish_non_exhaustive()
    }
}

impl CommandAgent {
    /// Runs `program` (looked up on the allow-listed `PATH` unless it contains a `/`), with
    /// the defaults: variables of [`DEFAULT_PASS_ENV`] passed through, transient codes
    /// [`DEFAULT_TRANSIENT_CODES`], the last 64 KiB of stderr kept, stdout lines of at most
    /// 16 MiB, deadlines on the [`SystemClock`], the parent's working directory.
    pub fn new(name: impl Into<String>, program: impl AsRef<OsStr>) -> CommandAgent {
        CommandAgent {
            name: name.into(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            pass_env: DEFAULT_PASS_ENV.iter().map(OsString::from).collect(),
            env: Vec::new(),
            dir: None,
            transient_codes: DEFAULT_TRANSIENT_CODES.to_vec(),
            stderr_limit: 64 * 1024,
            max_line_bytes: 16 * 1024 * 1024,
            clock: Arc::new(SystemClock),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> CommandAgent {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> CommandAgent
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Passes the parent's variable `name` through, when it is set.
    pub fn pass_env(mut self, name: impl AsRef<OsStr>) -> CommandAgent {
        self.pass_env.push(name.as_ref().to_owned());
        self
    }

    /// Passes nothing from the parent's environment (not even `PATH`).
    pub fn clear_pass_env(mut self) -> CommandAgent {
        self.pass_env.clear();
        self
    }

    /// Sets a variable for the program (wins over a passed-through one).
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> CommandAgent {
        self.env
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the program in `dir` (the milestone's repository).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> CommandAgent {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The exit codes that mean a transient failure (replacing the defaults).
    pub fn transient_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> CommandAgent {
        self.transient_codes = codes.into_iter().collect();
        self
    }

    /// How many bytes of the end of stderr to keep for error messages.
    pub fn stderr_limit(mut self, bytes: usize) -> CommandAgent {
        self.stderr_limit = bytes;
        self
    }

    /// The longest stdout line accepted; a longer one is invalid output and stops the run.
    pub fn max_line_bytes(mut self, bytes: usize) -> CommandAgent {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// The clock the request's deadline is measured on (the orchestrator's clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> CommandAgent {
        self.clock = clock;
        self
    }

    fn env_value(&self, name: &OsStr) -> Option<OsString> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.pass_env
                    .iter()
                    .any(|k| k == name)
                    .then(|| std::env::var_os(name))
                    .flatten()
            })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear();
        for name in &self.pass_env {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    fn program_found(&self) -> bool {
        let program = Path::new(&self.program);
        let executable = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if self.program.as_encoded_bytes().contains(&b'/') {
            let program = match &self.dir {
                Some(dir) if program.is_relative() => dir.join(program),
                _ => program.to_owned(),
            };
            return executable(&program);
        }
        self.env_value(OsStr::new("PATH"))
            .is_some_and(|path| std::env::split_paths(&path).any(|d| executable(&d.join(program))))
    }

    fn describe(&self) -> String {
        format!("`{}` ({})", self.program.to_string_lossy(), self.name)
    }
}

/// How long a program that has exited may leave its pipes open (a background child holding
/// them) before what it left behind is killed, so that the run ends with the program.
pub const EXIT_GRACE_MS: u64 = 200;

/// Kills the process group on drop unless disarmed (the program exited by itself).
struct GroupKiller {
    pgid: Option<u32>,
}

impl GroupKiller {
    /// Kills the group; `false` if it could not (no `kill` program).
    fn kill(&mut self) -> bool {
        self.pgid.take().is_none_or(kill_group)
    }
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Sends SIGKILL to every process of group `pgid`; `false` if no `kill` program could be run.
fn kill_group(pgid: u32) -> bool {
    let target = format!("-{pgid}");
    ["kill", "/bin/kill", "/usr/bin/kill"].iter().any(|kill| {
        Command::new(kill)
            .args(["-KILL", "--", &target])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

enum Line {
    Text(String),
    /// A line that is not UTF-8: never a JSON message, so it is ignored like other noise
    /// (never read with replacement characters, which could turn it into a message).
    NotUtf8(String),
    TooLong,
    Failed(io::Error),
}

/// Lines read ahead of the run's loop at most: beyond, the reader waits, and so does a child
/// writing faster than the loop reads (its pipe fills), instead of lines piling up in memory.
const LINES_AHEAD: usize = 64;

fn read_stdout(out: impl Read, max: usize, mut tx: mpsc::Sender<Line>) {
    use futures::SinkExt;
    let mut reader = BufReader::new(out);
    let mut buf = Vec::new();
    let mut send = |line: Line| futures::executor::block_on(tx.send(line)).is_ok();
    loop {
        buf.clear();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let ended = buf.last() == Some(&b'\n');
                if !ended && buf.len() > max {
                    send(Line::TooLong);
                    return;
                }
                let line = match std::str::from_utf8(&buf) {
                    Ok(text) => Line::Text(text.to_owned()),
                    Err(_) => Line::NotUtf8(String::from_utf8_lossy(&buf).into_owned()),
                };
                if !send(line) {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                send(Line::Failed(e));
                return;
            }
        }
    }
}

fn read_tail(mut err: impl Read, limit: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match err.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > limit.saturating_mul(2).max(8192) {
                    let cut = tail.len() - limit;
                    tail.drain(..cut);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if tail.len() > limit {
        let cut = tail.len() - limit;
        tail.drain(..cut);
    }
    tail
}

/// A failure the program reports itself on stdout.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportedError {
    kind: String,
    #[serde(default)]
    message: String,
}

/// What stdout said so far.
#[derive(Default)]
struct Transcript {
    lines: usize,
    output: Option<Result<AgentOutput, AgentError>>,
    fallback: Option<(usize, serde_json::Value)>,
    error: Option<AgentError>,
    ignored: usize,
    first_ignored: Option<(usize, String)>,
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl Transcript {
    fn feed(&mut self, line: &str, ctx: &AgentContext) {
        self.lines += 1;
        let n = self.lines;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return;
        }
        let value: serde_json::Value = match serde_json::from_str(trimmed) {
            Ok(serde_json::Value::Object(map)) => serde_json::Value::Object(map),
            _ => return self.ignore(n, trimmed),
        };
        let single = value
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next());
        match single {
            Some((k, v)) if k == "progress" => match v.as_f64() {
                Some(f) => ctx.report_progress(f),
                None => self.ignore(n, trimmed),
            },
            Some((k, v)) if k == "handoff" => ctx.hand_off(v.clone()),
            Some((k, v)) if k == "output" => {
                self.output = Some(AgentOutput::deserialize(v).map_err(|e| {
                    AgentError::invalid_output(format!(
                        "stdout line {n}: `output` is malformed: {e}"
                    ))
                }));
            }
            Some((k, v)) if k == "error" => {
                self.error = Some(match ReportedError::deserialize(v) {
                    Ok(r) => match r.kind.as_str() {
                        "transient" => AgentError::transient(r.message),
                        "permanent" => AgentError::permanent(r.message),
                        "unavailable" => AgentError::unavailable(r.message),
                        other => AgentError::invalid_output(format!(
                            "stdout line {n}: unknown error kind `{other}` ({})",
                            r.message
                        )),
                    },
                    Err(e) => AgentError::invalid_output(format!(
                        "stdout line {n}: `error` is malformed: {e}"
                    )),
                });
            }
            _ => self.fallback = Some((n, value)),
        }
    }

    fn ignore(&mut self, n: usize, line: &str) {
        self.ignored += 1;
        if self.first_ignored.is_none() {
            self.first_ignored = Some((n, excerpt(line)));
        }
    }

    /// The result of a successful exit.
    fn result(self, who: &str) -> Result<AgentOutput, AgentError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(out) = self.output {
            return out;
        }
        if let Some((n, value)) = self.fallback {
            return AgentOutput::deserialize(&value).map_err(|e| {
                AgentError::invalid_output(format!(
                    "{who}: stdout line {n} is not an output (expected `{{\"output\": …}}` or an \
                     output object): {e}"
                ))
            });
        }
        let mut message = format!("{who} printed no output on stdout ({} lines", self.lines);
        if let Some((n, text)) = self.first_ignored {
            message.push_str(&format!(
                ", {} not JSON objects; the first, line {n}: {text:?}",
                self.ignored
            ));
        }
        message.push(')');
        Err(AgentError::invalid_output(message))
    }
}

fn with_stderr(message: String, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        message
    } else {
        format!("{message}; stderr: {text}")
    }
}

enum Event {
    Cancelled,
    Deadline,
    /// The program exited some time ago and its pipes are still held open.
    Grace,
    Line(Option<Line>),
    Exit(io::Result<ExitStatus>),
    Stderr(Vec<u8>),
}

#[async_trait]
impl AgentRunner for CommandAgent {
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether the program can be found (an executable file).
    async fn available(&self) -> bool {
        self.program_found()
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        let who = self.describe();
        if ctx.is_cancelled() {
            return Err(AgentError::cancelled(format!(
                "{who} was cancelled before it started"
            )));
        }
        if self.clock.now() >= request.deadline {
            return Err(AgentError::timed_out(format!(
                "{who} was not started: its deadline ({} ms) has passed",
                request.deadline.as_millis()
            )));
        }
        let mut stdin_bytes = request.to_json().into_bytes();
        stdin_bytes.push(b'\n');

        let mut child = self.command().spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
                AgentError::unavailable(format!("{who} cannot be started: {e}"))
            }
            _ => AgentError::transient(format!("{who} could not be started: {e}")),
        })?;
        let mut killer = GroupKiller {
            pgid: Some(child.id()),
        };
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(AgentError::transient(format!(
                "{who}: pipes were not set up"
            )));
        };

        let (line_tx, mut lines) = mpsc::channel(LINES_AHEAD);
        let (exit_tx, mut exit_rx) = oneshot::channel();
        let (err_tx, mut err_rx) = oneshot::channel();
        let max_line = self.max_line_bytes;
        let stderr_limit = self.stderr_limit;
        let spawned = [
            std::thread::Builder::new()
                .name("milestone-cmd-wait".into())
                .spawn(move || {
                    // A program that does not read its stdin closes the pipe: not an error.
                    let _ = stdin.write_all(&stdin_bytes);
                    drop(stdin);
                    let _ = exit_tx.send(child.wait());
                })
                .is_ok(),
            std::thread::Builder::new()
                .name("milestone-cmd-out".into())
                .spawn(move || read_stdout(stdout, max_line, line_tx))
                .is_ok(),
            std::thread::Builder::new()
                .name("milestone-cmd-err".into())
                .spawn(move || {
                    let _ = err_tx.send(read_tail(stderr, stderr_limit));
                })
                .is_ok(),
        ];
        if spawned.contains(&false) {
            let _ = killer.kill();
            return Err(AgentError::transient(format!(
                "{who}: could not start the helper threads"
            )));
        }

        let mut cancelled = ctx.cancelled();
        let mut deadline = self.clock.sleep_until(request.deadline);
        let mut transcript = Transcript::default();
        let mut stdout_open = true;
        let mut exit: Option<io::Result<ExitStatus>> = None;
        let mut stderr_tail: Option<Vec<u8>> = None;
        // Armed when the program exits while its pipes stay open: something it left behind
        // still holds them, and would otherwise keep the run waiting until its deadline.
        let mut grace: Option<futures::future::BoxFuture<'static, ()>> = None;

        // Stop: kill the group and wait until the program itself is reaped.
        // (Unless the kill failed: then waiting could last forever.)
        let stop = |killer: &mut GroupKiller, exit_rx: oneshot::Receiver<_>, exited: bool| {
            let killed = killer.kill();
            async move {
                if killed && !exited {
                    let _ = exit_rx.await;
                }
            }
        };

        loop {
            if !stdout_open && exit.is_some() && stderr_tail.is_some() {
                break;
            }
            let event = futures::future::poll_fn(|cx| {
                if cancelled.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Event::Cancelled);
                }
                if deadline.poll_unpin(cx).is_ready() {
                    return Poll::Ready(Event::Deadline);
                }
                if let Some(g) = grace.as_mut()
                    && g.poll_unpin(cx).is_ready()
                {
                    return Poll::Ready(Event::Grace);
                }
                if stdout_open && let Poll::Ready(line) = lines.poll_next_unpin(cx) {
                    return Poll::Ready(Event::Line(line));
                }
                if exit.is_none()
                    && let Poll::Ready(r) = exit_rx.poll_unpin(cx)
                {
                    return Poll::Ready(Event::Exit(r.unwrap_or_else(|_| {
                        Err(io::Error::other(
                            "the waiting thread ended without a status",
                        ))
                    })));
                }
                if stderr_tail.is_none()
                    && let Poll::Ready(r) = err_rx.poll_unpin(cx)
                {
                    return Poll::Ready(Event::Stderr(r.unwrap_or_default()));
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Cancelled => {
                    stop(&mut killer, exit_rx, exit.is_some()).await;
                    return Err(AgentError::cancelled(format!(
                        "{who} was cancelled and killed"
                    )));
                }
                Event::Deadline => {
                    stop(&mut killer, exit_rx, exit.is_some()).await;
                    return Err(AgentError::timed_out(format!(
                        "{who} ran past its deadline ({} ms) and was killed",
                        request.deadline.as_millis()
                    )));
                }
                Event::Line(Some(Line::Text(text))) => transcript.feed(&text, &ctx),
                Event::Line(Some(Line::NotUtf8(text))) => {
                    transcript.lines += 1;
                    let n = transcript.lines;
                    transcript.ignore(n, &format!("(not UTF-8) {text}"));
                }
                Event::Line(Some(Line::TooLong)) => {
                    stop(&mut killer, exit_rx, exit.is_some()).await;
                    return Err(AgentError::invalid_output(format!(
                        "{who}: stdout line {} is longer than {} bytes",
                        transcript.lines + 1,
                        self.max_line_bytes
                    )));
                }
                Event::Line(Some(Line::Failed(e))) => {
                    stop(&mut killer, exit_rx, exit.is_some()).await;
                    return Err(AgentError::transient(format!(
                        "{who}: reading stdout failed: {e}"
                    )));
                }
                Event::Line(None) => stdout_open = false,
                Event::Exit(status) => {
                    if status.is_ok() {
                        if !stdout_open && stderr_tail.is_some() {
                            // Reaped, pipes closed: the group is gone and its id may be reused.
                            killer.disarm();
                        } else {
                            grace = Some(self.clock.sleep(EXIT_GRACE_MS));
                        }
                    }
                    exit = Some(status);
                }
                Event::Grace => {
                    // A pipe still open means a member of the group still lives (it holds
                    // the pipe), so the group id is still ours: kill what the program left
                    // behind, and the pipes close.
                    grace = None;
                    let _ = killer.kill();
                }
                Event::Stderr(tail) => stderr_tail = Some(tail),
            }
        }

        if exit.as_ref().is_some_and(|e| e.is_ok()) {
            // Everything is closed and the program reaped: never kill a reused group id later.
            killer.disarm();
        }
        let stderr_tail = stderr_tail.unwrap_or_default();
        let status = match exit {
            Some(Ok(status)) => status,
            Some(Err(e)) => {
                return Err(AgentError::transient(format!(
                    "{who}: waiting for it failed: {e}"
                )));
            }
            None => {
                return Err(AgentError::transient(format!("{who}: no exit status")));
            }
        };
        if status.success() {
            return transcript.result(&who).map_err(|e| match e {
                AgentError::InvalidOutput { message } => {
                    AgentError::invalid_output(with_stderr(message, &stderr_tail))
                }
                other => other,
            });
        }
        if let Some(reported) = transcript.error {
            return Err(reported);
        }
        let err = match status.code() {
            Some(code) if self.transient_codes.contains(&code) => AgentError::transient(
                with_stderr(format!("{who} exited with code {code}"), &stderr_tail),
            ),
            Some(code) => AgentError::permanent(with_stderr(
                format!("{who} exited with code {code}"),
                &stderr_tail,
            )),
            None => AgentError::transient(with_stderr(
                format!(
                    "{who} was killed by signal {}",
                    status
                        .signal()
                        .map_or_else(|| "?".to_owned(), |s| s.to_string())
                ),
                &stderr_tail,
            )),
        };
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Report;
    use proptest::prelude::*;
    use serde_json::json;

    /// One generated stdout line and what it means.
    #[derive(Debug, Clone)]
    enum Said {
        Progress(f64),
        Handoff(i64),
        Output(String),
        Error(&'static str),
        Chatter(String),
    }

    fn said() -> impl Strategy<Value = Said> {
        prop_oneof![
            (-1.0f64..2.0).prop_map(Said::Progress),
            any::<i64>().prop_map(Said::Handoff),
            "[a-z ]{0,12}".prop_map(Said::Output),
            prop_oneof![Just("transient"), Just("permanent"), Just("unavailable")]
                .prop_map(Said::Error),
            any::<String>().prop_map(Said::Chatter),
        ]
    }

    fn line(s: &Said) -> String {
        match s {
            Said::Progress(f) => json!({ "progress": f }).to_string(),
            Said::Handoff(v) => json!({ "handoff": v }).to_string(),
            Said::Output(text) => json!({ "output": { "summary": text } }).to_string(),
            Said::Error(kind) => json!({ "error": { "kind": kind, "message": "m" } }).to_string(),
            Said::Chatter(text) => text.replace('\n', " "),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a program prints: no panic; handoffs arrive in order; progress is
        /// monotone; a reported error wins, else the last `output` line is the result, else
        /// the run is invalid output.
        #[test]
        fn the_transcript_follows_the_protocol(lines in proptest::collection::vec(said(), 0..30)) {
            let (ctx, mut handle) = AgentContext::new();
            let mut t = Transcript::default();
            for l in &lines {
                t.feed(&line(l), &ctx);
            }
            let reports = handle.drain();
            let handoffs: Vec<_> = reports.iter().filter_map(|r| match r {
                Report::Handoff(v) => v.as_i64(),
                _ => None,
            }).collect();
            let sent: Vec<_> = lines.iter().filter_map(|l| match l {
                Said::Handoff(v) => Some(*v),
                _ => None,
            }).collect();
            prop_assert_eq!(handoffs, sent);
            let bps: Vec<u16> = reports.iter().filter_map(|r| match r {
                Report::Progress(p) => Some(p.basis_points()),
                _ => None,
            }).collect();
            prop_assert!(bps.windows(2).all(|w| w[0] < w[1]));

            let last_error = lines.iter().rev().find_map(|l| match l {
                Said::Error(k) => Some(*k),
                _ => None,
            });
            let last_output = lines.iter().rev().find_map(|l| match l {
                Said::Output(s) => Some(s.clone()),
                _ => None,
            });
            let result = t.result("p");
            match (last_error, last_output) {
                (Some(kind), _) => {
                    let got = result.err().map(|e| e.failure_kind());
                    let want = match kind {
                        "transient" => milestone_core::FailureKind::Transient,
                        "permanent" => milestone_core::FailureKind::Permanent,
                        _ => milestone_core::FailureKind::Unavailable,
                    };
                    prop_assert_eq!(got, Some(want));
                }
                (None, Some(summary)) => {
                    prop_assert_eq!(result.map(|o| o.summary), Ok(summary));
                }
                (None, None) => {
                    // Chatter that happens to be a JSON object is taken as a plain output.
                    let chatter_object = lines.iter().any(|l| matches!(l, Said::Chatter(c)
                        if serde_json::from_str::<serde_json::Value>(c.trim()).is_ok_and(|v| v.is_object())));
                    if !chatter_object {
                        let is_invalid = matches!(result, Err(AgentError::InvalidOutput { .. }));
                        prop_assert!(is_invalid);
                    }
                }
            }
        }
    }
}
