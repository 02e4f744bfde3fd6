//! The `custom_runner` example: plugging your own agents in.
//!
//! ```text
//! cargo run --example custom_runner
//! ```
//!
//! Two ways to bring an agent, both running in one milestone:
//!
//! - **By hand**: [`Reviewer`] implements [`AgentRunner`] — a `name`, an `available` check
//!   (cheap, asked before every run; `false` sends the work to the role's direct runner) and a
//!   `run` that reports progress through its [`AgentContext`] and stops promptly when the
//!   context is cancelled. It runs the design and task phases and every task (the execute phase completes when its
//!   tasks have).
//! - **As a program**: a [`CommandAgent`] runs a small `sh` script (written to a temporary
//!   directory) speaking the documented stdin/stdout JSON protocol of
//!   [`milestone_agents::command`]: it reads the request as one JSON line, prints progress
//!   lines (and some chatter, which is ignored), then one `{"output": …}` line. It is bound to
//!   the spec phase only; a binding for one phase wins over the any-phase binding.
//!
//! The example first calls each agent once by hand, outside any milestone: the reviewer is
//! cancelled half-way (the cancellation contract on its own), and the script's progress lines
//! are seen arriving through the context.

use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::executor::block_on;
use futures::future::{Either, select};
use milestone_agents::orchestrator::{ModePolicy, Notice};
use milestone_agents::{
    AgentContext, AgentError, AgentOutput, AgentRequest, AgentRunner, Clock, CommandAgent,
    Orchestrator, PlanSpec, Registry, Report, SystemClock,
};
use milestone_core::complexity::ExecutionMode;
use milestone_core::engine::{Role, Work};
use milestone_core::{Event, ItemRef, MilestoneId, MilestoneState, PhaseId, Workflow};
use milestone_state::{InMemory, StateStore};

use crate::Out;
use crate::support::{self, say};

/// What the example did, for callers (and its test) to check.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The final state.
    pub state: MilestoneState,
    /// The work the hand-written [`Reviewer`] ran, in order (`phase design`, `task a`, …).
    pub reviewer_work: Vec<String>,
    /// The progress reports (in basis points) the script sent when called by hand.
    pub script_progress: Vec<u16>,
    /// What the reviewer returned when it was cancelled by hand.
    pub cancelled_run: String,
}

const TITLE: &str = "Add audit logging";

/// How many steps a reviewer run takes; it reports progress after each.
const STEPS: u32 = 4;

/// An agent written by hand: reviews a phase or a task in a few steps, reporting progress
/// after each and stopping as soon as its context is cancelled.
#[derive(Debug)]
pub struct Reviewer {
    name: String,
    workflow: Workflow,
    clock: Arc<dyn Clock>,
    step_ms: u64,
    online: AtomicBool,
    work: Mutex<Vec<String>>,
}

impl Reviewer {
    /// A reviewer named `name` that names the expected outputs of `workflow`'s phases, taking
    /// `step_ms` per step on `clock`.
    pub fn new(
        name: impl Into<String>,
        workflow: Workflow,
        clock: Arc<dyn Clock>,
        step_ms: u64,
    ) -> Reviewer {
        Reviewer {
            name: name.into(),
            workflow,
            clock,
            step_ms,
            online: AtomicBool::new(true),
            work: Mutex::new(Vec::new()),
        }
    }

    /// Takes the reviewer offline (or back): an offline reviewer is not `available`, so the
    /// registry hands its work to the role's direct runner.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// The work this reviewer finished, in order.
    pub fn work(&self) -> Vec<String> {
        self.work.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn output(&self, request: &AgentRequest) -> AgentOutput {
        // The phase's quality gate checks that every expected output is named.
        support::phase_output(
            &self.workflow,
            &request.work,
            &request.title,
            format!("{} reviewed by {}", request.work, self.name),
        )
        .with_quality("review", 1.0)
    }
}

#[async_trait]
impl AgentRunner for Reviewer {
    fn name(&self) -> &str {
        &self.name
    }

    async fn available(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        for step in 1..=STEPS {
            // Wait for one step of work, or for the cancellation, whichever comes first.
            let cancelled = ctx.cancelled();
            let work = self.clock.sleep(self.step_ms);
            if let Either::Left(_) = select(cancelled, work).await {
                return Err(AgentError::cancelled(format!(
                    "{} stopped {} at step {step} of {STEPS}",
                    self.name, request.work
                )));
            }
            ctx.report_progress(f64::from(step) / f64::from(STEPS));
        }
        if let Ok(mut w) = self.work.lock() {
            w.push(request.work.to_string());
        }
        Ok(self.output(&request))
    }
}

/// The script the spec phase runs: the stdin/stdout protocol of `CommandAgent` in plain `sh`.
/// Its arguments are the outputs the phase must name.
pub const SPEC_SCRIPT: &str = r#"#!/bin/sh
# A phase agent speaking the CommandAgent protocol (version 1).
# stdin: the request as one line of JSON. argv: the outputs the phase must name.
read -r request
phase=$(printf '%s' "$request" | sed -n 's/.*"role_name":"\([^"]*\)".*/\1/p')
echo '{"progress": 0.25}'
echo "drafting the $phase documents"   # not JSON: ignored by the protocol
echo '{"progress": 0.75}'
artifacts=""
for name in "$@"; do
  artifacts="$artifacts${artifacts:+,}{\"name\":\"$name\",\"kind\":\"document\",\"body\":{\"inline\":\"$name (from sh)\"}}"
done
printf '{"output":{"summary":"%s written by a shell script","artifacts":[%s],"quality":{"review":1.0}}}\n' \
  "$phase" "$artifacts"
"#;

/// The data each planning analysis returns: a small valid plan with three tasks.
pub(crate) fn analysis_data(role: &Role) -> serde_json::Value {
    match milestone_agents::role_name(role) {
        "scope" => serde_json::json!({"components": ["audit log", "api"], "file_count": 4}),
        "estimation" => support::estimation(
            [3_600_000, 3_600_000, 1_800_000, 7_200_000],
            20,
            serde_json::json!([
                {"id": "schema", "title": "audit table schema"},
                {"id": "writer", "title": "audit writer", "dependencies": ["schema"]},
                {"id": "api", "title": "audit query api", "dependencies": ["schema"]}]),
        ),
        "risk" => serde_json::json!({"risks": [{"description": "log volume",
            "probability": "medium", "impact": "medium", "mitigation": "retention policy",
            "contingency": "sample events"}]}),
        _ => serde_json::json!({
            "keep": [{"description": "the request log", "phase": "design"}],
            "improve": [{"description": "log format", "phase": "spec"}],
            "originate": [{"description": "audit tasks", "phase": "task"},
                          {"description": "audit writer", "phase": "execute"}]}),
    }
}

/// Binds in-process runners for the four planning analyses.
pub(crate) fn bind_planning(registry: &mut Registry) {
    for role in support::PLANNING_ROLES {
        registry.bind_direct(role, support::analyst(analysis_data));
    }
}

/// Runs the example, writing its report to `out`; the script is written into `script_dir`.
///
/// # Errors
/// Any orchestrator, store or I/O error, as a boxed error with its message.
pub fn run(out: Out, script_dir: &Path) -> Result<Summary, Box<dyn Error>> {
    let workflow = Workflow::kiro();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let reviewer = Arc::new(Reviewer::new(
        "reviewer",
        workflow.clone(),
        Arc::clone(&clock),
        5,
    ));

    // 1. The hand-written runner on its own: started, then cancelled half-way.
    say(&out, "A hand-written runner, cancelled by hand")?;
    let slow = Reviewer::new("slow-reviewer", workflow.clone(), Arc::clone(&clock), 200);
    let design = PhaseId::new("design")?;
    let request = AgentRequest::new(
        MilestoneId::new("by-hand")?,
        Role::Phase(design.clone()),
        Work::Item(ItemRef::Phase(design)),
    );
    let (ctx, handle) = AgentContext::new();
    let canceller = async {
        clock.sleep(50).await;
        handle.cancel();
    };
    let (result, ()) = block_on(futures::future::join(slow.run(request, ctx), canceller));
    let cancelled_run = match result {
        Err(e @ AgentError::Cancelled { .. }) => e.to_string(),
        Err(e) => return Err(format!("expected a cancellation, got {e}").into()),
        Ok(_) => return Err("the cancelled run finished anyway".into()),
    };
    say(&out, format!("  {cancelled_run}"))?;

    // 2. The script, bound to the spec phase through a CommandAgent.
    std::fs::create_dir_all(script_dir)?;
    let script = script_dir.join("spec-agent.sh");
    std::fs::write(&script, SPEC_SCRIPT)?;
    let spec = PhaseId::new("spec")?;
    let expected = workflow
        .phase(spec.as_str())
        .map(|p| p.expected_outputs.clone())
        .unwrap_or_default();
    let spec_agent = CommandAgent::new("spec-script", "sh")
        .arg(&script)
        .args(&expected)
        .current_dir(script_dir)
        .clock(Arc::clone(&clock));

    // The script on its own first: every progress line reaches the context as it is printed.
    say(&out, "\nThe script, called by hand")?;
    let mut request = AgentRequest::new(
        MilestoneId::new("by-hand")?,
        Role::Phase(spec.clone()),
        Work::Item(ItemRef::Phase(spec.clone())),
    );
    request.title = TITLE.into();
    let (ctx, mut handle) = AgentContext::new();
    let by_hand = block_on(spec_agent.run(request, ctx))?;
    let script_progress: Vec<u16> = handle
        .drain()
        .into_iter()
        .filter_map(|r| match r {
            Report::Progress(p) => Some(p.basis_points()),
            _ => None,
        })
        .collect();
    say(
        &out,
        format!(
            "  progress {script_progress:?} (basis points), then: {} ({} artifacts)",
            by_hand.summary,
            by_hand.artifacts.len()
        ),
    )?;

    let mut registry = Registry::new();
    bind_planning(&mut registry);
    registry.bind_any_phase(Arc::clone(&reviewer));
    registry.bind(Role::Phase(spec.clone()), spec_agent);
    registry.bind(Role::Task, Arc::clone(&reviewer));
    say(&out, "\nThe bindings")?;
    say(
        &out,
        "  scope, estimation, risk, kiro-strategy  analyst (in-process function)",
    )?;
    say(
        &out,
        format!(
            "  phase spec                              spec-script (sh {})",
            script.display()
        ),
    )?;
    say(
        &out,
        "  any other phase, task                   reviewer (hand-written)",
    )?;

    // A listener prints what completed, and who did it.
    let printer = Arc::clone(&out);
    let listener = move |notice: &Notice| {
        if let Event::ItemCompleted { item, output, .. } = &notice.event {
            // A listener cannot fail the run: a failed write only loses a line of output.
            let _ = say(&printer, format!("  {item} completed: {}", output.summary));
        }
    };

    let store = Arc::new(InMemory::new());
    let orchestrator = Orchestrator::builder()
        .workflow(workflow)
        .registry(registry)
        .clock(clock)
        .store(store.clone())
        .mode(ModePolicy::Fixed(ExecutionMode::Agents))
        .listener(Arc::new(listener))
        .build()?;
    let id = MilestoneId::new("audit-logging")?;
    say(&out, format!("\nmilestone: {TITLE}"))?;
    let report = block_on(async {
        orchestrator
            .plan(PlanSpec::new(id.clone(), TITLE).context("Record who did what, and when."))
            .await?;
        orchestrator.transition(&id).await?;
        orchestrator.execute(&id).await
    })?;
    let state = block_on(store.load(&id))?.state;
    say(
        &out,
        format!(
            "\nstatus: {}, mode {:?}, {} runs by agents",
            report.status, report.mode, report.metrics.agent_runs
        ),
    )?;
    say(
        &out,
        format!("the reviewer ran: {}", reviewer.work().join(", ")),
    )?;
    Ok(Summary {
        state,
        reviewer_work: reviewer.work(),
        script_progress,
        cancelled_run,
    })
}
