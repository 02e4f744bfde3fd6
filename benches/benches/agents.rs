//! The runner layer's own costs: dispatching one run to an in-process runner (bare, through
//! the registry, under a deadline, scripted), and one `CommandAgent` run of a trivial program
//! next to a bare `std::process::Command` spawn of the same program (the floor).

use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::executor::block_on;
use milestone_agents::{
    AgentContext, AgentOutput, AgentRequest, AgentRunner, CancelToken, Clock, CommandAgent,
    FnAgent, Registry, Reply, Report, ReportSink, ScriptedAgent, SystemClock, run_with_deadline,
};
use milestone_core::engine::{Role, Work};
use milestone_core::{ItemRef, MilestoneId, PhaseId};

fn request() -> AgentRequest {
    let p = PhaseId::new("execute").expect("valid id");
    AgentRequest::new(
        MilestoneId::new("bench").expect("valid id"),
        Role::Phase(p.clone()),
        Work::Item(ItemRef::Phase(p)),
    )
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("agents/dispatch");
    let direct: Arc<dyn AgentRunner> =
        Arc::new(FnAgent::sync("noop", |_| Ok(AgentOutput::default())));
    let req = request();
    g.bench_function("fn-agent", |b| {
        b.iter(|| {
            let (ctx, _h) = AgentContext::new();
            black_box(block_on(direct.run(req.clone(), ctx)))
        })
    });
    // The orchestrator's shape: one sink shared by every run, one cancel token per run.
    let sink: Arc<dyn ReportSink> = Arc::new(|r: Report| {
        black_box(r);
    });
    g.bench_function("fn-agent-shared-sink", |b| {
        b.iter(|| {
            let ctx = AgentContext::with_sink(Arc::clone(&sink), CancelToken::new());
            black_box(block_on(direct.run(req.clone(), ctx)))
        })
    });
    let mut registry = Registry::new();
    registry.bind_any_phase(FnAgent::sync("noop", |_| Ok(AgentOutput::default())));
    let role = req.role.clone();
    g.bench_function("registry-resolve-and-run", |b| {
        b.iter(|| {
            let (ctx, _h) = AgentContext::new();
            black_box(block_on(async {
                let runner = registry.resolve(&role, false).await.expect("bound");
                runner.run(req.clone(), ctx).await
            }))
        })
    });
    let clock = SystemClock::new();
    let mut timed = req.clone();
    timed.deadline = clock.now().plus_millis(3_600_000);
    g.bench_function("fn-agent-with-deadline", |b| {
        b.iter(|| {
            let (ctx, _h) = AgentContext::new();
            black_box(block_on(run_with_deadline(
                &direct,
                timed.clone(),
                ctx,
                &clock,
            )))
        })
    });
    let scripted = ScriptedAgent::with_replies("s", Arc::new(clock), []);
    g.bench_function("scripted-reply-with-progress", |b| {
        b.iter(|| {
            scripted.push_replies([Reply::new().progress(0.5).output(AgentOutput::default())]);
            let (ctx, _h) = AgentContext::new();
            black_box(block_on(scripted.run(req.clone(), ctx)))
        })
    });
    g.finish();
}

const SCRIPT: &str = "cat >/dev/null; echo '{\"summary\": \"ok\"}'";

fn command(c: &mut Criterion) {
    let mut g = c.benchmark_group("agents/command");
    g.sample_size(20);
    g.bench_function("bare-spawn-floor", |b| {
        b.iter(|| {
            let out = Command::new("sh")
                .args(["-c", SCRIPT])
                .stdin(Stdio::null())
                .output()
                .expect("sh runs");
            black_box(out)
        })
    });
    let agent = CommandAgent::new("sh", "sh").args(["-c", SCRIPT]);
    let req = request();
    g.bench_function("command-agent-run", |b| {
        b.iter(|| {
            let (ctx, _h) = AgentContext::new();
            black_box(block_on(agent.run(req.clone(), ctx)).expect("ok"))
        })
    });
    g.finish();
}

criterion_group!(benches, dispatch, command);
criterion_main!(benches);
