//! The runner contract, held by every built-in runner through `Arc<dyn AgentRunner>`: prompt
//! return on cancellation, timeouts through `run_with_deadline` on the manual clock, wrappers
//! that forward everything, and executor independence (a thread pool, no runtime).
#![cfg(unix)]

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use futures::executor::{ThreadPool, block_on};
use futures::task::SpawnExt;
use futures::{FutureExt, StreamExt};
use milestone_agents::{
    AgentContext, AgentError, AgentOutput, AgentRequest, AgentRunner, Clock, CommandAgent,
    ContextHandle, FnAgent, ManualClock, Registry, Reply, RunNow, ScriptedAgent, SystemClock,
    run_with_deadline,
};
use milestone_core::engine::{Role, Work};
use milestone_core::{ItemRef, MilestoneId, PhaseId, Timestamp};

fn request(deadline: Timestamp) -> AgentRequest {
    let p = PhaseId::new("execute").unwrap();
    let mut r = AgentRequest::new(
        MilestoneId::new("m").unwrap(),
        Role::Phase(p.clone()),
        Work::Item(ItemRef::Phase(p)),
    );
    r.deadline = deadline;
    r
}

/// One runner of each kind that runs until cancelled (announcing itself with a handoff).
fn hanging_runners(clock: &ManualClock) -> Vec<Arc<dyn AgentRunner>> {
    let f = FnAgent::new("fn", |_req, ctx: AgentContext| async move {
        ctx.hand_off(serde_json::json!("started"));
        ctx.cancelled().await;
        Err(AgentError::cancelled("fn stopped"))
    });
    let scripted = ScriptedAgent::with_replies(
        "scripted",
        Arc::new(clock.clone()),
        [Reply::new().hand_off(serde_json::json!("started")).hang()],
    );
    let command = CommandAgent::new("command", "sh")
        .args(["-c", "echo '{\"handoff\": \"started\"}'; exec sleep 60"])
        .clock(Arc::new(clock.clone()));
    vec![Arc::new(f), Arc::new(scripted), Arc::new(command)]
}

#[test]
fn every_builtin_runner_returns_promptly_once_cancelled() {
    let clock = ManualClock::new(Timestamp(0));
    for runner in hanging_runners(&clock) {
        let start = Instant::now();
        let (ctx, handle) = AgentContext::new();
        let run = runner.run(request(Timestamp(u64::MAX)), ctx);
        cancel_once_started(&*runner, run, handle);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{}",
            runner.name()
        );
    }
}

#[test]
fn run_with_deadline_times_out_every_builtin_runner_on_the_manual_clock() {
    let clock = ManualClock::new(Timestamp(0));
    for runner in hanging_runners(&clock) {
        let (ctx, mut handle) = AgentContext::new();
        let token = ctx.cancel_token().clone();
        let deadline = clock.now().plus_millis(500);
        let (result, ()) = block_on(futures::future::join(
            run_with_deadline(&runner, request(deadline), ctx, &clock),
            async {
                assert!(handle.next().await.is_some(), "{} started", runner.name());
                clock.advance(500);
            },
        ));
        assert!(
            matches!(&result, Err(AgentError::TimedOut { message }) if message.contains(runner.name())),
            "{}: {result:?}",
            runner.name()
        );
        assert!(token.is_cancelled());
    }
}

#[test]
fn arc_and_box_forward_name_availability_and_run() {
    let inner = FnAgent::sync("off", |_| Ok(AgentOutput::new("ran"))).with_available(false);
    let boxed: Box<dyn AgentRunner> = Box::new(inner);
    let arced: Arc<Box<dyn AgentRunner>> = Arc::new(boxed);
    assert_eq!(arced.name(), "off");
    assert!(!block_on(arced.available()));
    let (ctx, _h) = AgentContext::new();
    let out = block_on(arced.run(request(Timestamp(u64::MAX)), ctx)).unwrap();
    assert_eq!(out.summary, "ran");
    // run_now goes through both wrappers to the function itself.
    let (ctx, _h) = AgentContext::new();
    let mut cx = Context::from_waker(Waker::noop());
    match arced.run_now(request(Timestamp(u64::MAX)), ctx, &mut cx) {
        RunNow::Done(Ok(out)) => assert_eq!(out.summary, "ran"),
        other => panic!("expected the function's answer at once, got {other:?}"),
    }
}

/// `run_now`: a plain function answers at once; any other runner answers at once when its
/// first poll finishes it, and otherwise hands back the run, which then finishes as `run`
/// would (here on a hand-off and a cancellation through its context).
#[test]
fn run_now_answers_at_once_or_hands_back_the_polled_run() {
    let mut cx = Context::from_waker(Waker::noop());
    let sync = FnAgent::sync("sync", |req: AgentRequest| {
        Ok(AgentOutput::new(req.work.to_string()))
    });
    let (ctx, _h) = AgentContext::new();
    match sync.run_now(request(Timestamp(u64::MAX)), ctx, &mut cx) {
        RunNow::Done(Ok(out)) => assert_eq!(out.summary, "phase execute"),
        other => panic!("expected Done, got {other:?}"),
    }
    let failing = FnAgent::sync("no", |_| Err(AgentError::permanent("refused")));
    let (ctx, _h) = AgentContext::new();
    assert!(matches!(
        failing.run_now(request(Timestamp(u64::MAX)), ctx, &mut cx),
        RunNow::Done(Err(AgentError::Permanent { .. }))
    ));

    let ready = FnAgent::new("ready", |_req, _ctx| async { Ok(AgentOutput::new("now")) });
    let (ctx, _h) = AgentContext::new();
    assert!(matches!(
        ready.run_now(request(Timestamp(u64::MAX)), ctx, &mut cx),
        RunNow::Done(Ok(ref out)) if out.summary == "now"
    ));

    let clock = ManualClock::new(Timestamp(0));
    for runner in hanging_runners(&clock) {
        let (ctx, handle) = AgentContext::new();
        let run = match runner.run_now(request(Timestamp(u64::MAX)), ctx, &mut cx) {
            RunNow::Pending(run) => run,
            RunNow::Done(r) => panic!("{} cannot be done at once: {r:?}", runner.name()),
        };
        cancel_once_started(&*runner, run, handle);
    }
}

/// A runner that answers in `run_now` and never in `run`.
#[derive(Debug)]
struct AnswersNow;

#[async_trait::async_trait]
impl AgentRunner for AnswersNow {
    fn name(&self) -> &str {
        "now"
    }
    async fn available(&self) -> bool {
        true
    }
    async fn run(&self, _: AgentRequest, _: AgentContext) -> Result<AgentOutput, AgentError> {
        futures::future::pending().await
    }
    fn run_now<'a>(&'a self, _: AgentRequest, _: AgentContext, _: &mut Context<'_>) -> RunNow<'a> {
        RunNow::Done(Ok(AgentOutput::new("now")))
    }
}

/// `run_with_deadline` starts a run through `run_now`: what answers there is the result, with
/// no timer and no future; a run that timed itself out has its context cancelled.
#[test]
fn run_with_deadline_starts_runs_through_run_now() {
    let clock = ManualClock::new(Timestamp(0));
    let (ctx, _h) = AgentContext::new();
    let out = block_on(run_with_deadline(
        &AnswersNow,
        request(Timestamp(10)),
        ctx,
        &clock,
    ));
    assert_eq!(out.map(|o| o.summary).ok().as_deref(), Some("now"));
    let gave_up = FnAgent::sync("late", |_| Err(AgentError::timed_out("gave up")));
    let (ctx, _h) = AgentContext::new();
    let result = block_on(run_with_deadline(
        &gave_up,
        request(Timestamp(10)),
        ctx.clone(),
        &clock,
    ));
    assert!(
        matches!(result, Err(AgentError::TimedOut { .. })),
        "{result:?}"
    );
    assert!(ctx.is_cancelled());
}

/// Awaits `run` while cancelling it through `handle` once it has announced itself; the run
/// must end with `Cancelled`.
fn cancel_once_started(
    runner: &dyn AgentRunner,
    run: impl std::future::Future<Output = Result<AgentOutput, AgentError>>,
    mut handle: ContextHandle,
) {
    let (result, ()) = block_on(futures::future::join(run, async {
        assert!(handle.next().await.is_some(), "{} started", runner.name());
        handle.cancel();
    }));
    assert!(
        matches!(result, Err(AgentError::Cancelled { .. })),
        "{}: {result:?}",
        runner.name()
    );
}

#[test]
fn a_registry_falls_back_to_direct_when_the_command_is_missing() {
    let mut registry = Registry::new();
    registry
        .bind_any_phase(CommandAgent::new("llm", "milestone-no-such-llm-tool"))
        .bind_direct_any_phase(FnAgent::sync("direct", |r| {
            Ok(AgentOutput::new(format!("direct {}", r.work)))
        }));
    let role = Role::Phase(PhaseId::new("execute").unwrap());
    let runner = block_on(registry.resolve(&role, false)).unwrap();
    let (ctx, _h) = AgentContext::new();
    let out = block_on(runner.run(request(Timestamp(u64::MAX)), ctx)).unwrap();
    assert_eq!(out.summary, "direct phase execute");
}

#[test]
fn runs_overlap_on_a_small_thread_pool_without_a_runtime() {
    let pool = ThreadPool::builder().pool_size(2).create().unwrap();
    let command: Arc<dyn AgentRunner> = Arc::new(
        CommandAgent::new("nap", "sh").args(["-c", "sleep 0.4; echo '{\"summary\": \"ok\"}'"]),
    );
    let system = SystemClock::new();
    let scripted: Arc<dyn AgentRunner> = Arc::new(ScriptedAgent::with_replies(
        "sleeper",
        Arc::new(system),
        (0..50).map(|_| Reply::new().sleep(400).output(AgentOutput::new("ok"))),
    ));
    let start = Instant::now();
    let mut runs = Vec::new();
    for runner in std::iter::repeat_n(&command, 6).chain(std::iter::repeat_n(&scripted, 50)) {
        let runner = Arc::clone(runner);
        let req = request(system.now().plus_millis(60_000));
        let handle = pool
            .spawn_with_handle(async move {
                let (ctx, _h) = AgentContext::new();
                runner.run(req, ctx).map(|r| r.map(|o| o.summary)).await
            })
            .unwrap();
        runs.push(handle);
    }
    let results = block_on(futures::future::join_all(runs));
    assert!(
        results.iter().all(|r| r.as_deref() == Ok("ok")),
        "{results:?}"
    );
    // 56 runs of 0.4 s each on two threads: they overlapped.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}
