//! `CommandAgent` with real child processes: success with progress and handoffs, the request
//! on stdin, garbage and malformed output, exit codes, signals, timeouts and cancellation
//! killing the whole process group (no orphan left), the environment allow-list, the working
//! directory, a missing program.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::executor::block_on;
use futures::future::{Either, select};
use milestone_agents::{
    AgentContext, AgentError, AgentOutput, AgentRequest, AgentRunner, Clock, CommandAgent,
    ContextHandle, ManualClock, Report, SystemClock,
};
use milestone_core::engine::{IdempotencyKey, Role, Work};
use milestone_core::{ItemRef, MilestoneId, PhaseId, Progress, Timestamp};
use serde_json::{Value, json};

/// The real python3 interpreter (not a version-manager shim), found once.
fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    })
}

struct Script {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn script(name: &str, body: &str) -> Script {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write script");
    Script { dir, path }
}

fn sh(body: &str) -> (Script, CommandAgent) {
    let s = script("agent.sh", body);
    let agent = CommandAgent::new("sh-agent", "sh").arg(&s.path);
    (s, agent)
}

fn py(body: &str) -> (Script, CommandAgent) {
    let s = script("agent.py", body);
    let agent = CommandAgent::new("py-agent", python()).arg(&s.path);
    (s, agent)
}

fn request() -> AgentRequest {
    let design = PhaseId::new("design").unwrap();
    let mut r = AgentRequest::new(
        MilestoneId::new("login").unwrap(),
        Role::Phase(design.clone()),
        Work::Item(ItemRef::Phase(design)),
    );
    r.title = "Add login".into();
    r.attempt = 2;
    r.idempotency_key = IdempotencyKey(42);
    r.deadline = SystemClock.now().plus_millis(30_000);
    r
}

fn run(agent: &CommandAgent, req: AgentRequest) -> (Result<AgentOutput, AgentError>, Vec<Report>) {
    let (ctx, mut handle) = AgentContext::new();
    let result = block_on(agent.run(req, ctx));
    (result, handle.drain())
}

/// Whether `pid` is gone (or a zombie: dead, waiting to be reaped by its new parent).
fn dead(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn assert_dies(pid: u64) {
    let start = Instant::now();
    while !dead(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "process {pid} is still alive"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn success_reports_progress_and_handoffs_as_they_come_and_returns_the_output() {
    let (_s, agent) = py(r#"
import json, sys
req = json.loads(sys.stdin.readline())
print(json.dumps({"progress": 0.25}), flush=True)
print("some chatter that is not JSON", flush=True)
print(json.dumps({"handoff": {"draft": req["title"]}}), flush=True)
print(json.dumps({"progress": 0.75}), flush=True)
print(json.dumps({"output": {"summary": "designed " + req["milestone"],
    "artifacts": [{"name": "design-decisions", "kind": "document", "body": {"inline": "x"}}],
    "data": req, "quality": {"tests": 1.0}}}))
"#);
    let req = request();
    let (result, reports) = run(&agent, req.clone());
    let out = result.expect("success");
    assert_eq!(out.summary, "designed login");
    assert_eq!(out.artifacts[0].name, "design-decisions");
    assert_eq!(out.quality.get("tests"), Some(&1.0));
    // The child received exactly the request's JSON on stdin.
    let sent: Value = serde_json::from_str(&req.to_json()).unwrap();
    assert_eq!(out.data, sent);
    assert_eq!(out.data["protocol"], json!(1));
    assert_eq!(out.data["idempotency_key"], json!("000000000000002a"));
    assert_eq!(AgentRequest::from_json(&out.data.to_string()).unwrap(), req);
    assert_eq!(
        reports,
        vec![
            Report::Progress(Progress::from_basis_points(2500)),
            Report::Handoff(json!({"draft": "Add login"})),
            Report::Progress(Progress::from_basis_points(7500)),
        ]
    );
}

#[test]
fn progress_arrives_while_the_program_is_still_running() {
    // The program waits for a file the test creates only after seeing the progress report.
    let s = script(
        "agent.sh",
        "echo '{\"progress\": 0.5}'\nwhile [ ! -e \"$1\" ]; do sleep 0.01; done\necho '{\"summary\": \"after\"}'\n",
    );
    let flag = s.dir.path().join("go");
    let agent = CommandAgent::new("sh-agent", "sh").arg(&s.path).arg(&flag);
    let (ctx, mut handle) = AgentContext::new();
    let (result, ()) = block_on(futures::future::join(agent.run(request(), ctx), async {
        assert_eq!(
            handle.next().await,
            Some(Report::Progress(Progress::from_basis_points(5000)))
        );
        std::fs::write(&flag, "").unwrap();
    }));
    assert_eq!(result.map(|o| o.summary), Ok("after".to_owned()));
}

#[test]
fn a_single_plain_output_object_is_accepted() {
    let (_s, agent) = sh("cat >/dev/null\necho '{\"summary\": \"plain\", \"data\": [1]}'\n");
    let (result, _) = run(&agent, request());
    let out = result.expect("success");
    assert_eq!((out.summary.as_str(), out.data), ("plain", json!([1])));
}

/// Every way of printing something that is not an output: a typed error naming the problem.
#[test]
fn garbage_or_malformed_output_is_a_typed_error_naming_the_problem() {
    fn check(body: &str, expected: &[&str]) {
        let (_s, agent) = sh(body);
        match run(&agent, request()).0 {
            Err(AgentError::InvalidOutput { message }) => {
                for e in expected {
                    assert!(message.contains(e), "{body:?}: {message:?} lacks {e:?}");
                }
            }
            other => panic!("{body:?}: expected invalid output, got {other:?}"),
        }
    }
    check(
        "echo hello world\n",
        &["no output", "line 1", "hello world"],
    );
    check("", &["no output", "0 lines"]);
    check(
        "echo '[1, 2]'\necho 'oops' >&2\n",
        &["line 1", "[1, 2]", "stderr: oops"],
    );
    check(
        "echo '{\"output\": {\"sumary\": \"typo\"}}'\n",
        &["line 1", "`output` is malformed", "sumary"],
    );
    check("echo '{\"output\": 7}'\n", &["`output` is malformed"]);
    check(
        "echo x\necho '{\"what\": 1}'\n",
        &["line 2 is not an output", "what"],
    );
    check(
        "echo '{\"error\": {\"kind\": \"weird\", \"message\": \"m\"}}'\n",
        &["unknown error kind `weird`"],
    );
}

/// A stdout line that is not UTF-8 is never read as a message (no replacement characters
/// turning it into JSON): it is ignored like other noise, and named when no output follows.
#[test]
fn a_stdout_line_that_is_not_utf8_is_not_a_message() {
    // `{"output": {"summary": "caf<0xe9>"}}`: JSON once made lossy, but not UTF-8.
    let (_s, agent) = sh("printf '{\"output\": {\"summary\": \"caf\\351\"}}\\n'\n");
    match run(&agent, request()).0 {
        Err(AgentError::InvalidOutput { message }) => {
            assert!(message.contains("no output"), "{message}");
            assert!(message.contains("line 1: \"(not UTF-8)"), "{message}");
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
    // The same noise before a real output does not spoil it.
    let (_t, agent) = sh("printf 'caf\\351\\n'\necho '{\"output\": {\"summary\": \"fine\"}}'\n");
    assert_eq!(run(&agent, request()).0.expect("success").summary, "fine");
}

/// A child printing far more lines than the loop keeps ahead is slowed by its pipe, not
/// buffered without bound, and every progress report still arrives in order.
#[test]
fn a_flood_of_stdout_lines_is_read_through_with_back_pressure() {
    let (_s, agent) = py(
        "import sys\nfor i in range(1, 20001):\n    print('{\"progress\": %f}' % (i / 20001.0))\n\
         print('{\"output\": {\"summary\": \"flood\"}}')\n",
    );
    let (result, reports) = run(&agent, request());
    assert_eq!(result.expect("success").summary, "flood");
    let marks: Vec<u16> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Progress(p) => Some(p.basis_points()),
            _ => None,
        })
        .collect();
    assert!(marks.len() > 1000, "{}", marks.len());
    assert!(
        marks.windows(2).all(|w| w[0] < w[1]),
        "progress is monotone"
    );
}

#[test]
fn exit_codes_map_to_transient_or_permanent_with_stderr_quoted() {
    fn check(agent: CommandAgent, expected: fn(&AgentError) -> bool, text: &str) {
        let (result, _) = run(&agent, request());
        let err = result.expect_err("a failure");
        assert!(expected(&err), "{err:?}");
        assert!(err.to_string().contains(text), "{err} lacks {text:?}");
    }
    let permanent = |e: &AgentError| matches!(e, AgentError::Permanent { .. });
    let transient = |e: &AgentError| matches!(e, AgentError::Transient { .. });
    let unavailable = |e: &AgentError| matches!(e, AgentError::Unavailable { .. });
    let (_a, a) = sh("echo boom >&2\nexit 3\n");
    check(a, permanent, "exited with code 3; stderr: boom");
    let (_b, b) = sh("echo busy >&2\nexit 75\n");
    check(b, transient, "code 75; stderr: busy");
    let (_c, c) = sh("exit 9\n");
    check(c.transient_exit_codes([9]), transient, "code 9");
    let (_d, d) = sh("exit 75\n");
    check(d.transient_exit_codes([]), permanent, "code 75");
    let (_e, e) = sh("kill -TERM $$\n");
    check(e, transient, "killed by signal 15");
    let (_f, f) = sh(
        "echo '{\"error\": {\"kind\": \"unavailable\", \"message\": \"no api key\"}}'\nexit 1\n",
    );
    check(f, unavailable, "no api key");
    // Output printed before a failing exit does not make it a success.
    let (_g, g) = sh("echo '{\"output\": {}}'\nexit 2\n");
    check(g, permanent, "code 2");
}

#[test]
fn stderr_kept_is_bounded_to_its_tail() {
    let (_s, agent) = py("import sys\nsys.stderr.write('a' * 100000 + 'THE END')\nsys.exit(1)\n");
    let err = run(&agent.stderr_limit(1000), request())
        .0
        .expect_err("failure");
    let text = err.to_string();
    assert!(
        text.ends_with("THE END"),
        "{}",
        &text[text.len().saturating_sub(50)..]
    );
    assert!(text.len() < 1200, "{}", text.len());
}

#[test]
fn an_overlong_stdout_line_stops_the_run() {
    let (_s, agent) = py("print('x' * 5000, flush=True)\nimport time\ntime.sleep(30)\n");
    let start = Instant::now();
    let err = run(&agent.max_line_bytes(100), request())
        .0
        .expect_err("failure");
    assert!(
        matches!(&err, AgentError::InvalidOutput { message } if message.contains("longer than 100 bytes")),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// A program that starts a grandchild, reports both pids as a handoff, then hangs.
const HANGS_WITH_A_GRANDCHILD: &str =
    "sleep 60 &\necho \"{\\\"handoff\\\": {\\\"child\\\": $$, \\\"grandchild\\\": $!}}\"\nwait\n";

fn pids(reports: &[Report]) -> (u64, u64) {
    let handoff = reports
        .iter()
        .find_map(|r| match r {
            Report::Handoff(v) => Some(v.clone()),
            _ => None,
        })
        .expect("the script handed off its pids");
    (
        handoff["child"].as_u64().unwrap(),
        handoff["grandchild"].as_u64().unwrap(),
    )
}

async fn first_handoff(handle: &mut ContextHandle) -> Vec<Report> {
    let mut seen = Vec::new();
    while let Some(r) = handle.next().await {
        let done = matches!(r, Report::Handoff(_));
        seen.push(r);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn a_timeout_kills_the_program_and_its_children() {
    let (_s, agent) = sh(HANGS_WITH_A_GRANDCHILD);
    let mut req = request();
    req.deadline = SystemClock.now().plus_millis(2_000);
    let start = Instant::now();
    let (result, reports) = run(&agent, req);
    assert!(
        matches!(&result, Err(AgentError::TimedOut { message }) if message.contains("killed")),
        "{result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    let (child, grandchild) = pids(&reports);
    assert!(dead(child), "the program was reaped before run returned");
    assert_dies(grandchild);
}

#[test]
fn a_background_child_holding_stdout_does_not_hold_the_run_past_the_program() {
    // The program answers and exits at once, leaving a child that keeps stdout open.
    let (_s, agent) = sh(
        "sleep 60 &\necho \"{\\\"handoff\\\": {\\\"child\\\": $$, \\\"grandchild\\\": $!}}\"\necho '{\"output\": {\"summary\": \"done\"}}'\n",
    );
    let start = Instant::now();
    let (result, reports) = run(&agent, request());
    assert_eq!(result.map(|o| o.summary).as_deref().ok(), Some("done"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the run waited {:?} for a background child",
        start.elapsed()
    );
    let (_child, grandchild) = pids(&reports);
    assert_dies(grandchild);
}

#[test]
fn the_deadline_is_measured_on_the_agents_clock() {
    let clock = ManualClock::new(Timestamp(0));
    let (_s, agent) = sh(HANGS_WITH_A_GRANDCHILD);
    let agent = agent.clock(Arc::new(clock.clone()));
    let mut req = request();
    req.deadline = Timestamp(1_000);
    let (ctx, mut handle) = AgentContext::new();
    let (result, reports) = block_on(futures::future::join(agent.run(req, ctx), async {
        let seen = first_handoff(&mut handle).await;
        clock.advance(999);
        assert!(handle.try_next().is_none());
        clock.advance(1);
        seen
    }));
    assert!(
        matches!(result, Err(AgentError::TimedOut { .. })),
        "{result:?}"
    );
    let (child, grandchild) = pids(&reports);
    assert_dies(child);
    assert_dies(grandchild);
}

#[test]
fn cancellation_through_the_context_kills_the_program_and_its_children() {
    let (_s, agent) = sh(HANGS_WITH_A_GRANDCHILD);
    let (ctx, mut handle) = AgentContext::new();
    let (result, reports) = block_on(futures::future::join(agent.run(request(), ctx), async {
        let seen = first_handoff(&mut handle).await;
        handle.cancel();
        seen
    }));
    assert!(
        matches!(result, Err(AgentError::Cancelled { .. })),
        "{result:?}"
    );
    let (child, grandchild) = pids(&reports);
    assert!(dead(child));
    assert_dies(grandchild);
}

#[test]
fn dropping_the_run_future_kills_the_program_and_its_children() {
    let (_s, agent) = sh(HANGS_WITH_A_GRANDCHILD);
    let (ctx, mut handle) = AgentContext::new();
    let run = Box::pin(agent.run(request(), ctx));
    let watch = Box::pin(first_handoff(&mut handle));
    let reports = match block_on(select(run, watch)) {
        Either::Right((reports, run)) => {
            drop(run);
            reports
        }
        Either::Left((result, _)) => panic!("the run ended by itself: {result:?}"),
    };
    let (child, grandchild) = pids(&reports);
    assert_dies(child);
    assert_dies(grandchild);
}

#[test]
fn a_run_cancelled_or_late_before_it_starts_spawns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let agent = CommandAgent::new("touch", "touch").arg(&marker);
    let (ctx, handle) = AgentContext::new();
    handle.cancel();
    assert!(matches!(
        block_on(agent.run(request(), ctx)),
        Err(AgentError::Cancelled { .. })
    ));
    assert!(!marker.exists());
    let mut late = request();
    late.deadline = SystemClock.now();
    let (ctx, _handle) = AgentContext::new();
    assert!(matches!(
        block_on(agent.run(late, ctx)),
        Err(AgentError::TimedOut { .. })
    ));
    assert!(!marker.exists());
    // The same program with a live deadline does run.
    let (ctx, _handle) = AgentContext::new();
    let _ = block_on(agent.run(request(), ctx));
    assert!(marker.exists());
}

#[test]
fn the_environment_is_an_allow_list() {
    // Any variable of the test process that is not allow-listed stands in for a secret.
    let secret = std::env::vars()
        .map(|(k, _)| k)
        .find(|k| !["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"].contains(&k.as_str()))
        .expect("the test process has some variable");
    let (_s, agent) = py("import json, os\nprint(json.dumps({'data': dict(os.environ)}))\n");
    let out = run(&agent.env("GIVEN", "yes"), request())
        .0
        .expect("success");
    let env = out.data.as_object().expect("an object");
    assert!(!env.contains_key(&secret), "{secret} leaked: {env:?}");
    assert_eq!(env.get("GIVEN"), Some(&json!("yes")));
    for key in env.keys() {
        let allowed = [
            "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "GIVEN", "LC_CTYPE",
        ];
        assert!(allowed.contains(&key.as_str()), "unexpected variable {key}");
    }

    let (_t, agent) = py("import json, os\nprint(json.dumps({'data': sorted(os.environ)}))\n");
    let out = run(&agent.clear_pass_env().pass_env(&secret), request())
        .0
        .expect("success");
    let keys: Vec<String> = serde_json::from_value(out.data).unwrap();
    assert!(
        keys.contains(&secret) && !keys.contains(&"PATH".to_owned()),
        "{keys:?}"
    );
}

#[test]
fn the_program_runs_in_the_configured_directory() {
    let (s, agent) = py("import json, os\nprint(json.dumps({'summary': os.getcwd()}))\n");
    let repo = s.dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let out = run(&agent.current_dir(&repo), request())
        .0
        .expect("success");
    assert_eq!(
        Path::new(&out.summary).canonicalize().unwrap(),
        repo.canonicalize().unwrap()
    );
}

#[test]
fn a_missing_program_is_unavailable() {
    let agent = CommandAgent::new("ghost", "milestone-no-such-program-xyz");
    assert!(!block_on(agent.available()));
    assert!(matches!(
        run(&agent, request()).0,
        Err(AgentError::Unavailable { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let not_exec = dir.path().join("plain.txt");
    std::fs::write(&not_exec, "").unwrap();
    let agent = CommandAgent::new("plain", &not_exec);
    assert!(!block_on(agent.available()));
    assert!(matches!(
        run(&agent, request()).0,
        Err(AgentError::Unavailable { .. })
    ));
    assert!(block_on(CommandAgent::new("sh", "sh").available()));
    assert!(block_on(CommandAgent::new("sh", "/bin/sh").available()));
    assert!(!block_on(
        CommandAgent::new("sh", "sh").clear_pass_env().available()
    ));
}

#[test]
fn many_concurrent_runs_cancelled_at_once_leave_no_process_behind() {
    use futures::task::SpawnExt;
    let pool = futures::executor::ThreadPool::builder()
        .pool_size(2)
        .create()
        .unwrap();
    let (_s, agent) = sh(HANGS_WITH_A_GRANDCHILD);
    let agent = Arc::new(agent);
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (ctx, handle) = AgentContext::new();
        let agent = Arc::clone(&agent);
        runs.push(
            pool.spawn_with_handle(async move { agent.run(request(), ctx).await })
                .unwrap(),
        );
        handles.push(handle);
    }
    let mut all_pids = Vec::new();
    for handle in &mut handles {
        all_pids.push(pids(&block_on(first_handoff(handle))));
    }
    for handle in &handles {
        handle.cancel();
    }
    for result in block_on(futures::future::join_all(runs)) {
        assert!(
            matches!(result, Err(AgentError::Cancelled { .. })),
            "{result:?}"
        );
    }
    for (child, grandchild) in all_pids {
        assert_dies(child);
        assert_dies(grandchild);
    }
}
