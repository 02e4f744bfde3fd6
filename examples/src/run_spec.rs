//! The `run_spec` example: a milestone described in a JSON file, each role bound to a command.
//!
//! ```text
//! cargo run --example run_spec                                   # examples/specs/shell_agents.json
//! cargo run --example run_spec -- examples/specs/python_agents.json
//! ```
//!
//! This is how a host wires real LLM command-line tools in: every role of the milestone —
//! the four planning analyses, the phases, the tasks — is a program run by a
//! [`CommandAgent`], speaking the stdin/stdout JSON protocol documented in
//! [`milestone_agents::command`] (the request as one JSON line on stdin; progress, hand-off and
//! output lines on stdout). The two shipped specs bind small `sh` and `python3` scripts from
//! `examples/specs/agents/`; swapping a script for a real tool is a change to the JSON only.
//!
//! # The spec format
//!
//! ```json
//! {
//!   "title": "Add login feature",
//!   "context": "Users sign in with email and password.",
//!   "id": "login",
//!   "workflow": { "phases": [ … ] },
//!   "strategy": "sequential",
//!   "mode": "auto",
//!   "roles": {
//!     "scope":         { "program": "sh", "args": ["agents/analyst.sh", "scope"] },
//!     "estimation":    { "program": "sh", "args": ["agents/analyst.sh", "estimation"] },
//!     "risk":          { "program": "sh", "args": ["agents/analyst.sh", "risk"] },
//!     "kiro-strategy": { "program": "sh", "args": ["agents/analyst.sh", "kiro-strategy"] },
//!     "phase":         { "program": "sh", "args": ["agents/phase.sh"] },
//!     "phase:design":  { "program": "sh", "args": ["agents/phase.sh"], "env": { "DEPTH": "2" } },
//!     "task":          { "program": "sh", "args": ["agents/task.sh"] }
//!   }
//! }
//! ```
//!
//! - `title` (required), `context` (default empty), `id` (default: the file's name; a
//!   process-unique suffix is added so that runs never collide in a kept store).
//! - `workflow` (optional): a workflow in the JSON shape of [`Workflow::from_json`]; the KIRO
//!   workflow by default.
//! - `strategy` (optional): `sequential` (default), `parallel-independent`, `pipeline` or
//!   `adaptive`.
//! - `mode` (optional): `auto` (default: from the plan's complexity), `direct`, `hybrid` or
//!   `agents`. Every command is bound both as the role's agent and as its direct runner, so
//!   each mode runs the same commands.
//! - `roles` (required): `scope`, `estimation`, `risk`, `kiro-strategy`, `phase` and `task` are
//!   required; `aggregation` is optional (the built-in aggregator merges the analyses
//!   otherwise); `phase:<id>` binds one phase, winning over `phase`.
//! - A binding: `program` (required; looked up on `PATH` unless it contains a `/`), `args`,
//!   `env` (variables set for the program), `pass_env` (variables passed through from the
//!   host's environment, on top of `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR`) and `dir`
//!   (the working directory, relative to the spec file's directory, which is the default).
//!
//! Unknown fields are refused. Every error is a [`SpecError`] naming the field
//! (`roles.scope.args[1]: expected a string, found 7`).
//!
//! When the plan has tasks, the execute phase completes through them (each run by the `task`
//! command); its phase binding is used only when there are none.
//!
//! # Binding a real tool (documentation only)
//!
//! A real LLM tool is bound the same way. The binding runs the tool (or a thin wrapper) in the
//! repository, passing through the variables it needs:
//!
//! ```json
//! "phase": {
//!   "program": "agents/llm-phase.sh",
//!   "args": ["--model", "large"],
//!   "pass_env": ["ANTHROPIC_API_KEY"],
//!   "env": { "NO_COLOR": "1" },
//!   "dir": "../my-repository"
//! }
//! ```
//!
//! and the wrapper adapts the tool's command line to the protocol — read the request, prompt
//! the tool, print the result as `{"output": …}` (a sketch, with `jq` and a tool taking a
//! prompt with `-p`):
//!
//! ```text
//! #!/bin/sh
//! read -r request
//! phase=$(printf '%s' "$request" | jq -r .role_name)
//! title=$(printf '%s' "$request" | jq -r .title)
//! echo '{"progress": 0.1}'
//! answer=$(llm-tool -p "Do the $phase phase of: $title. Upstream: $(printf '%s' "$request" | jq -c .input)") || exit 75
//! jq -cn --arg s "$answer" --arg p "$phase" '{output: {summary: $s, data: {phase: $p}}}'
//! ```
//!
//! Exit code 75 marks a transient failure (retried with backoff); any other non-zero code is
//! permanent; the request's `idempotency_key` lets the tool recognise a retried attempt.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::executor::block_on;
use milestone_agents::orchestrator::{ModePolicy, Notice};
use milestone_agents::{AgentRunner, Clock, CommandAgent, Orchestrator, PlanSpec, Registry};
use milestone_agents::{SystemClock, orchestrator::Report};
use milestone_core::complexity::ExecutionMode;
use milestone_core::engine::{Role, Strategy};
use milestone_core::{Event, MilestoneId, MilestoneState, PhaseId, Workflow};
use milestone_state::StateStore;
use milestone_state::file::FileStore;
use serde_json::Value;

use crate::Out;
use crate::support::say;

/// The largest spec file read (1 MiB).
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// The spec run when no path is given.
pub const DEFAULT_SPEC: &str = "examples/specs/shell_agents.json";

/// Why a spec could not be read. Each variant says where.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_SPEC_BYTES`].
    TooLarge {
        /// Its size in bytes.
        bytes: u64,
    },
    /// The text is not JSON.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A field is missing, unknown or has a wrong value.
    Field {
        /// The field's path, e.g. `roles.scope.args[1]`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl SpecError {
    /// The path of the field at fault, for [`SpecError::Field`].
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    fn field_error(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
        SpecError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            SpecError::TooLarge { bytes } => {
                write!(
                    f,
                    "the spec is {bytes} bytes, over the {MAX_SPEC_BYTES}-byte limit"
                )
            }
            SpecError::Syntax {
                line,
                column,
                message,
            } => write!(f, "not JSON at line {line}, column {column}: {message}"),
            SpecError::Field { field, problem } => write!(f, "{field}: {problem}"),
        }
    }
}

impl Error for SpecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            SpecError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How one role's program is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The program (looked up on `PATH` unless it contains a `/`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables set for it.
    pub env: BTreeMap<String, String>,
    /// Variables passed through from the host's environment (besides the defaults).
    pub pass_env: Vec<String>,
    /// Its working directory, relative to the spec file's directory.
    pub dir: Option<PathBuf>,
}

/// A parsed spec; see the [module docs](self) for the format.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The milestone's id, when the spec names one.
    pub id: Option<MilestoneId>,
    /// Its title.
    pub title: String,
    /// Its context.
    pub context: String,
    /// The workflow (the KIRO workflow unless the spec gives one).
    pub workflow: Workflow,
    /// The strategy.
    pub strategy: Strategy,
    /// How the execution mode is chosen.
    pub mode: ModePolicy,
    /// The bindings by role key (`scope`, `phase`, `phase:design`, …), in key order.
    pub roles: BTreeMap<String, Binding>,
}

const REQUIRED_ROLES: [&str; 6] = [
    "scope",
    "estimation",
    "risk",
    "kiro-strategy",
    "phase",
    "task",
];

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn string(v: &Value, field: &str) -> Result<String, SpecError> {
    v.as_str().map(str::to_owned).ok_or_else(|| {
        SpecError::field_error(field, format!("expected a string, found {}", kind(v)))
    })
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a serde_json::Map<String, Value>, SpecError> {
    v.as_object().ok_or_else(|| {
        SpecError::field_error(field, format!("expected an object, found {}", kind(v)))
    })
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, SpecError> {
    let Value::Array(items) = v else {
        return Err(SpecError::field_error(
            field,
            format!("expected an array of strings, found {}", kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &format!("{field}[{i}]")))
        .collect()
}

fn unknown(field: &str, known: &[&str]) -> SpecError {
    SpecError::field_error(
        field,
        format!("unknown field; expected one of {}", known.join(", ")),
    )
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Binding {
    fn parse(v: &Value, field: &str) -> Result<Binding, SpecError> {
        const KNOWN: [&str; 5] = ["program", "args", "env", "pass_env", "dir"];
        let map = object(v, field)?;
        let mut program = None;
        let mut binding = Binding {
            program: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            dir: None,
        };
        for (key, value) in map {
            let here = join(field, key);
            match key.as_str() {
                "program" => {
                    let p = string(value, &here)?;
                    if p.is_empty() {
                        return Err(SpecError::field_error(here, "the program is empty"));
                    }
                    program = Some(p);
                }
                "args" => binding.args = strings(value, &here)?,
                "env" => {
                    for (name, v) in object(value, &here)? {
                        binding
                            .env
                            .insert(name.clone(), string(v, &join(&here, name))?);
                    }
                }
                "pass_env" => binding.pass_env = strings(value, &here)?,
                "dir" => binding.dir = Some(PathBuf::from(string(value, &here)?)),
                _ => return Err(unknown(&here, &KNOWN)),
            }
        }
        binding.program =
            program.ok_or_else(|| SpecError::field_error(join(field, "program"), "missing"))?;
        Ok(binding)
    }

    /// The agent for this binding, named `name`, run in `base` (or its `dir` under `base`).
    fn agent(&self, name: &str, base: &Path, clock: &Arc<dyn Clock>) -> CommandAgent {
        let dir = match &self.dir {
            Some(d) => base.join(d),
            None => base.to_owned(),
        };
        let mut agent = CommandAgent::new(name, &self.program)
            .args(&self.args)
            .current_dir(dir)
            .clock(Arc::clone(clock));
        for name in &self.pass_env {
            agent = agent.pass_env(name);
        }
        for (name, value) in &self.env {
            agent = agent.env(name, value);
        }
        agent
    }
}

impl Spec {
    /// Parses a spec from JSON text.
    ///
    /// # Errors
    /// [`SpecError::Syntax`] when the text is not JSON, [`SpecError::Field`] naming the field
    /// that is missing, unknown or wrong.
    pub fn from_json(json: &str) -> Result<Spec, SpecError> {
        const KNOWN: [&str; 7] = [
            "title", "context", "id", "workflow", "strategy", "mode", "roles",
        ];
        let root: Value = serde_json::from_str(json).map_err(|e| SpecError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let map = object(&root, "(the spec)")?;
        let mut spec = Spec {
            id: None,
            title: String::new(),
            context: String::new(),
            workflow: Workflow::kiro(),
            strategy: Strategy::Sequential,
            mode: ModePolicy::Auto,
            roles: BTreeMap::new(),
        };
        let (mut title, mut roles) = (None, None);
        for (key, value) in map {
            match key.as_str() {
                "title" => title = Some(string(value, key)?),
                "context" => spec.context = string(value, key)?,
                "id" => {
                    let id = string(value, key)?;
                    spec.id = Some(
                        MilestoneId::new(id)
                            .map_err(|e| SpecError::field_error(key, e.to_string()))?,
                    );
                }
                "workflow" => {
                    object(value, key)?;
                    spec.workflow = Workflow::from_json(&value.to_string())
                        .map_err(|e| SpecError::field_error(key, e.to_string()))?;
                }
                "strategy" => {
                    let name = string(value, key)?;
                    spec.strategy = match name.as_str() {
                        "sequential" => Strategy::Sequential,
                        "parallel-independent" => Strategy::ParallelIndependent,
                        "pipeline" => Strategy::pipeline(),
                        "adaptive" => Strategy::Adaptive,
                        _ => {
                            return Err(SpecError::field_error(
                                key,
                                format!(
                                    "unknown strategy {name:?}; expected sequential, \
                                     parallel-independent, pipeline or adaptive"
                                ),
                            ));
                        }
                    };
                }
                "mode" => {
                    let name = string(value, key)?;
                    spec.mode = match name.as_str() {
                        "auto" => ModePolicy::Auto,
                        "direct" => ModePolicy::Fixed(ExecutionMode::Direct),
                        "hybrid" => ModePolicy::Fixed(ExecutionMode::Hybrid),
                        "agents" => ModePolicy::Fixed(ExecutionMode::Agents),
                        _ => {
                            return Err(SpecError::field_error(
                                key,
                                format!(
                                    "unknown mode {name:?}; expected auto, direct, hybrid or agents"
                                ),
                            ));
                        }
                    };
                }
                "roles" => roles = Some(value),
                _ => return Err(unknown(key, &KNOWN)),
            }
        }
        spec.title = title.ok_or_else(|| SpecError::field_error("title", "missing"))?;
        if spec.title.trim().is_empty() {
            return Err(SpecError::field_error("title", "the title is empty"));
        }
        let roles = roles.ok_or_else(|| SpecError::field_error("roles", "missing"))?;
        // Roles are checked after the workflow, whatever the key order: `phase:<id>` must name
        // one of its phases.
        for (key, value) in object(roles, "roles")? {
            let here = join("roles", key);
            let known = REQUIRED_ROLES.contains(&key.as_str()) || key == "aggregation";
            let phase = key.strip_prefix("phase:");
            if !known {
                match phase {
                    Some(p) if spec.workflow.phase(p).is_some() => {}
                    Some(p) => {
                        return Err(SpecError::field_error(
                            here,
                            format!("the workflow has no phase {p:?}"),
                        ));
                    }
                    None => {
                        return Err(SpecError::field_error(
                            here,
                            "unknown role; expected scope, estimation, risk, kiro-strategy, \
                             aggregation, phase, phase:<id> or task",
                        ));
                    }
                }
            }
            spec.roles
                .insert(key.clone(), Binding::parse(value, &here)?);
        }
        if let Some(missing) = REQUIRED_ROLES
            .iter()
            .find(|r| !spec.roles.contains_key(**r))
        {
            return Err(SpecError::field_error(join("roles", missing), "missing"));
        }
        Ok(spec)
    }

    /// Reads and parses the spec file at `path`.
    ///
    /// # Errors
    /// [`SpecError::Read`], [`SpecError::TooLarge`], and as [`Spec::from_json`].
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let read = |source| SpecError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read)?.len();
        if bytes > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge { bytes });
        }
        Spec::from_json(&std::fs::read_to_string(path).map_err(read)?)
    }

    /// A registry binding every role to its command, run in `base` (the spec file's
    /// directory) unless its binding says otherwise. Each command is both the role's agent and
    /// its direct runner.
    ///
    /// # Errors
    /// [`SpecError::Field`] for a `phase:<id>` key whose id is not valid.
    pub fn registry(&self, base: &Path, clock: &Arc<dyn Clock>) -> Result<Registry, SpecError> {
        let mut registry = Registry::new();
        for (key, binding) in &self.roles {
            let agent: Arc<dyn AgentRunner> = Arc::new(binding.agent(key, base, clock));
            let role =
                match key.as_str() {
                    "scope" => Role::Scope,
                    "estimation" => Role::Estimation,
                    "risk" => Role::Risk,
                    "kiro-strategy" => Role::KiroStrategy,
                    "aggregation" => Role::Aggregation,
                    "task" => Role::Task,
                    "phase" => {
                        registry.bind_any_phase(Arc::clone(&agent));
                        registry.bind_direct_any_phase(agent);
                        continue;
                    }
                    other => {
                        let id = other.strip_prefix("phase:").unwrap_or(other);
                        Role::Phase(PhaseId::new(id).map_err(|e| {
                            SpecError::field_error(join("roles", key), e.to_string())
                        })?)
                    }
                };
            registry.bind_arc(role.clone(), Arc::clone(&agent));
            registry.bind_direct_arc(role, agent);
        }
        Ok(registry)
    }
}

/// What a run of a spec did, for callers (and the example's test) to check.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The milestone's id.
    pub id: MilestoneId,
    /// The final state, loaded back from the store.
    pub state: MilestoneState,
    /// The execution call's report.
    pub report: Report,
}

/// Loads the spec at `spec_path` and runs its milestone from plan to completion, with the
/// store under `store_root`, writing a report to `out`.
///
/// # Errors
/// A [`SpecError`] (boxed) when the spec is wrong; any store, orchestrator or I/O error.
pub fn run(out: Out, spec_path: &Path, store_root: &Path) -> Result<Summary, Box<dyn Error>> {
    let spec = Spec::load(spec_path)?;
    let base = match spec_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let stem = match &spec.id {
        Some(id) => id.as_str().to_owned(),
        None => spec_path
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', "-"))
            .unwrap_or_else(|| "spec".into()),
    };
    let id = MilestoneId::new(format!("{stem}-{}", std::process::id()))?;
    say(
        &out,
        format!(
            "spec: {}\nmilestone {id}: {}",
            spec_path.display(),
            spec.title
        ),
    )?;
    say(&out, "roles:")?;
    for (key, b) in &spec.roles {
        say(
            &out,
            format!("  {key:<14} {} {}", b.program, b.args.join(" ")),
        )?;
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let printer = Arc::clone(&out);
    let listener = move |n: &Notice| {
        let line = match &n.event {
            Event::ItemCompleted { item, output, .. } => {
                format!("  {item} completed: {}", output.summary)
            }
            Event::ItemFailed { item, error, .. } => format!("  {item} failed: {}", error.message),
            Event::PlanRecorded { .. } => "  plan recorded".into(),
            _ => return,
        };
        // A listener cannot fail the run: a failed write only loses a line of output.
        let _ = say(&printer, line);
    };
    let store = Arc::new(FileStore::open(store_root)?);
    let orchestrator = Orchestrator::builder()
        .workflow(spec.workflow.clone())
        .registry(spec.registry(&base, &clock)?)
        .clock(clock)
        .store(store.clone())
        .strategy(spec.strategy)
        .mode(spec.mode)
        .listener(Arc::new(listener))
        .build()?;
    say(&out, "\nPlanning")?;
    let plan = block_on(
        orchestrator.plan(
            PlanSpec::new(id.clone(), spec.title.clone())
                .context(spec.context.clone())
                .workflow(spec.workflow.clone()),
        ),
    )?;
    say(
        &out,
        format!(
            "  {} tasks, {} risks",
            plan.tasks.len(),
            plan.risks.as_ref().map_or(0, Vec::len)
        ),
    )?;
    block_on(orchestrator.transition(&id))?;
    say(&out, format!("\nExecution ({})", spec.strategy.name()))?;
    let report = block_on(orchestrator.execute(&id))?;
    let state = block_on(store.load(&id))?.state;
    block_on(store.export(&id))?;
    say(
        &out,
        format!(
            "\nstatus: {}, mode {:?}, {} runs ({} at most at once)",
            report.status, report.mode, report.metrics.runs, report.metrics.max_parallel
        ),
    )?;
    say(
        &out,
        format!("store: {}", store_root.join(id.as_str()).display()),
    )?;
    Ok(Summary { id, state, report })
}
