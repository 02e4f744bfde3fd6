//! What a runner is asked to do: [`AgentRequest`], and its JSON shape (a public protocol).

use std::sync::Arc;

use milestone_core::engine::{AnalysisKind, IdempotencyKey, Role, StartCommand, Upstream, Work};
use milestone_core::{ItemRef, Limits, MilestoneId, MilestoneState, PhaseId, TaskId, Timestamp};
use serde::{Deserialize, Serialize};

/// The version of the request's JSON shape; bumped only on an incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// One attempt of one unit of work, as handed to an [`AgentRunner`](crate::AgentRunner).
///
/// Built by the orchestrator from the engine's [`StartCommand`] and the milestone with
/// [`AgentRequest::from_start`], or by hand with [`AgentRequest::new`] and the public fields.
///
/// # JSON shape (protocol version 1)
///
/// Serialized flat, with stable snake_case keys, for programs in any language (this is what
/// [`CommandAgent`](crate::CommandAgent) writes on a child's stdin, followed by a newline):
///
/// ```json
/// {
///   "protocol": 1,
///   "milestone": "login", "title": "Add login", "context": "…",
///   "role": "phase", "role_name": "design",
///   "phase": "design", "task": null, "analysis": null,
///   "input": [ {"phase": "spec", "data": {…}}, {"task": "t1", "data": …} ],
///   "attempt": 1, "deadline_ms": 1700000000000,
///   "budget": {"timeout_ms": 1800000, "memory_mib": 512},
///   "idempotency_key": "00000000deadbeef",
///   "degraded": false
/// }
/// ```
///
/// `role` is one of `scope`, `estimation`, `risk`, `kiro-strategy`, `aggregation`, `phase`,
/// `task`, `git-operations`, `conflict-resolution`, `custom`; `role_name` is the phase id for
/// `phase` and the host's name for `custom`, else absent. Exactly one of `phase`, `task`,
/// `analysis` names the work. Each `input` entry names its source the same way. Readers must
/// ignore keys they do not know: later minor additions do not bump `protocol`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "wire::Request", try_from = "wire::Request")]
#[non_exhaustive]
pub struct AgentRequest {
    /// The milestone.
    pub milestone: MilestoneId,
    /// Its title (shared by every request of the milestone: no copy per attempt).
    pub title: Arc<str>,
    /// Its context (free text from the host; shared like the title).
    pub context: Arc<str>,
    /// The role asked to act.
    pub role: Role,
    /// The work: a phase, a task or a planning analysis.
    pub work: Work,
    /// Data handed on from upstream work, in the engine's order.
    pub input: Vec<Upstream>,
    /// The attempt, 1-based.
    pub attempt: u32,
    /// The attempt counts as timed out past this time.
    pub deadline: Timestamp,
    /// Declared budgets (timeout, memory, CPU) of the phase.
    pub budget: Limits,
    /// The same for every attempt of this work (see the runner contract).
    pub idempotency_key: IdempotencyKey,
    /// Whether this is a degraded attempt (run by the role's direct runner).
    pub degraded: bool,
}

impl AgentRequest {
    /// A first attempt of `work` by `role`, with no input, no deadline (`u64::MAX`), default
    /// budgets and an idempotency key of 0: fill in the public fields as needed.
    pub fn new(milestone: MilestoneId, role: Role, work: Work) -> AgentRequest {
        AgentRequest {
            milestone,
            title: Arc::from(""),
            context: Arc::from(""),
            role,
            work,
            input: Vec::new(),
            attempt: 1,
            deadline: Timestamp(u64::MAX),
            budget: Limits::default(),
            idempotency_key: IdempotencyKey(0),
            degraded: false,
        }
    }

    /// The request for the engine's `start` in `state`'s milestone.
    pub fn from_start(start: &StartCommand, state: &MilestoneState) -> AgentRequest {
        AgentRequest::for_start(
            start.clone(),
            state.id().clone(),
            Arc::from(state.title()),
            Arc::from(state.context()),
        )
    }

    /// The request for `start`, taking its fields instead of copying them; the milestone's
    /// id, title and context are shared (the orchestrator's path: no copy per attempt).
    pub(crate) fn for_start(
        start: StartCommand,
        milestone: MilestoneId,
        title: Arc<str>,
        context: Arc<str>,
    ) -> AgentRequest {
        AgentRequest {
            milestone,
            title,
            context,
            role: start.role,
            work: start.work,
            input: start.input,
            attempt: start.attempt,
            deadline: start.deadline,
            budget: start.budget,
            idempotency_key: start.idempotency_key,
            degraded: start.degraded,
        }
    }

    /// The request as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a request written by [`to_json`](AgentRequest::to_json) (for runners written in
    /// Rust that read their request from stdin).
    pub fn from_json(json: &str) -> Result<AgentRequest, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// The kebab-case name of a role (`phase` for every phase role, `custom` for host roles).
pub fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Scope => "scope",
        Role::Estimation => "estimation",
        Role::Risk => "risk",
        Role::KiroStrategy => "kiro-strategy",
        Role::Aggregation => "aggregation",
        Role::Phase(_) => "phase",
        Role::Task => "task",
        Role::GitOperations => "git-operations",
        Role::ConflictResolution => "conflict-resolution",
        _ => "custom",
    }
}

mod wire {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Source {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phase: Option<PhaseId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<String>,
    }

    impl Source {
        fn of(work: &Work) -> Source {
            let mut s = Source {
                phase: None,
                task: None,
                analysis: None,
            };
            match work {
                Work::Item(ItemRef::Phase(p)) => s.phase = Some(p.clone()),
                Work::Item(ItemRef::Task(t)) => s.task = Some(t.clone()),
                Work::Planning(a) => s.analysis = Some(a.name().to_owned()),
            }
            s
        }

        fn work(self) -> Result<Work, String> {
            match (self.phase, self.task, self.analysis) {
                (Some(p), None, None) => Ok(Work::Item(ItemRef::Phase(p))),
                (None, Some(t), None) => Ok(Work::Item(ItemRef::Task(t))),
                (None, None, Some(a)) => [
                    AnalysisKind::Scope,
                    AnalysisKind::Estimation,
                    AnalysisKind::Risk,
                    AnalysisKind::KiroStrategy,
                    AnalysisKind::Aggregation,
                ]
                .into_iter()
                .find(|x| x.name() == a)
                .map(Work::Planning)
                .ok_or_else(|| format!("unknown analysis `{a}`")),
                _ => Err("exactly one of `phase`, `task`, `analysis` must be given".into()),
            }
        }
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Input {
        #[serde(flatten)]
        from: Source,
        #[serde(default)]
        data: serde_json::Value,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Request {
        protocol: u32,
        milestone: MilestoneId,
        #[serde(default)]
        title: String,
        #[serde(default)]
        context: String,
        role: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_name: Option<String>,
        #[serde(flatten)]
        work: Source,
        #[serde(default)]
        input: Vec<Input>,
        attempt: u32,
        deadline_ms: u64,
        #[serde(default)]
        budget: Limits,
        idempotency_key: String,
        #[serde(default)]
        degraded: bool,
    }

    impl From<AgentRequest> for Request {
        fn from(r: AgentRequest) -> Request {
            let role_name = match &r.role {
                Role::Phase(p) => Some(p.as_str().to_owned()),
                Role::Custom(name) => Some(name.clone()),
                _ => None,
            };
            Request {
                protocol: PROTOCOL_VERSION,
                milestone: r.milestone,
                title: r.title.to_string(),
                context: r.context.to_string(),
                role: super::role_name(&r.role).to_owned(),
                role_name,
                work: Source::of(&r.work),
                input: r
                    .input
                    .into_iter()
                    .map(|u| Input {
                        from: Source::of(&u.from),
                        data: u.data,
                    })
                    .collect(),
                attempt: r.attempt,
                deadline_ms: r.deadline.as_millis(),
                budget: r.budget,
                idempotency_key: r.idempotency_key.to_string(),
                degraded: r.degraded,
            }
        }
    }

    impl TryFrom<Request> for AgentRequest {
        type Error = String;
        fn try_from(w: Request) -> Result<AgentRequest, String> {
            if w.protocol != PROTOCOL_VERSION {
                return Err(format!(
                    "protocol {} is not supported (this is version {PROTOCOL_VERSION})",
                    w.protocol
                ));
            }
            let named = |what: &str| {
                w.role_name
                    .clone()
                    .ok_or_else(|| format!("role `{what}` needs `role_name`"))
            };
            let role = match w.role.as_str() {
                "scope" => Role::Scope,
                "estimation" => Role::Estimation,
                "risk" => Role::Risk,
                "kiro-strategy" => Role::KiroStrategy,
                "aggregation" => Role::Aggregation,
                "phase" => Role::Phase(PhaseId::new(named("phase")?).map_err(|e| e.to_string())?),
                "task" => Role::Task,
                "git-operations" => Role::GitOperations,
                "conflict-resolution" => Role::ConflictResolution,
                "custom" => Role::Custom(named("custom")?),
                other => return Err(format!("unknown role `{other}`")),
            };
            let key = u64::from_str_radix(&w.idempotency_key, 16).map_err(|_| {
                format!(
                    "idempotency_key `{}` is not a hexadecimal u64",
                    w.idempotency_key
                )
            })?;
            let input = w
                .input
                .into_iter()
                .enumerate()
                .map(|(i, u)| {
                    Ok(Upstream {
                        from: u.from.work().map_err(|e| format!("input[{i}]: {e}"))?,
                        data: u.data,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(AgentRequest {
                milestone: w.milestone,
                title: w.title.into(),
                context: w.context.into(),
                role,
                work: w.work.work()?,
                input,
                attempt: w.attempt,
                deadline: Timestamp(w.deadline_ms),
                budget: w.budget,
                idempotency_key: IdempotencyKey(key),
                degraded: w.degraded,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> AgentRequest {
        let mut r = AgentRequest::new(
            MilestoneId::new("login").unwrap(),
            Role::Phase(PhaseId::new("spec").unwrap()),
            Work::Item(ItemRef::Phase(PhaseId::new("spec").unwrap())),
        );
        r.title = "Add login".into();
        r.input = vec![
            Upstream {
                from: Work::Item(ItemRef::Phase(PhaseId::new("design").unwrap())),
                data: json!({"pattern": "mvc"}),
            },
            Upstream {
                from: Work::Planning(AnalysisKind::Risk),
                data: json!([1, 2]),
            },
        ];
        r.attempt = 2;
        r.deadline = Timestamp(5_000);
        r.idempotency_key = IdempotencyKey(0xdead_beef);
        r
    }

    #[test]
    fn json_shape_is_flat_and_versioned() {
        let v: serde_json::Value = serde_json::from_str(&request().to_json()).unwrap();
        assert_eq!(v["protocol"], json!(1));
        assert_eq!(v["milestone"], json!("login"));
        assert_eq!(v["role"], json!("phase"));
        assert_eq!(v["role_name"], json!("spec"));
        assert_eq!(v["phase"], json!("spec"));
        assert!(v.get("task").is_none());
        assert_eq!(
            v["input"][0],
            json!({"phase": "design", "data": {"pattern": "mvc"}})
        );
        assert_eq!(v["input"][1], json!({"analysis": "risk", "data": [1, 2]}));
        assert_eq!(v["attempt"], json!(2));
        assert_eq!(v["deadline_ms"], json!(5000));
        assert_eq!(v["budget"]["timeout_ms"], json!(1_800_000));
        assert_eq!(v["idempotency_key"], json!("00000000deadbeef"));
        assert_eq!(v["degraded"], json!(false));
    }

    #[test]
    fn from_start_copies_the_command_and_the_milestone() {
        use milestone_core::Workflow;
        use milestone_core::engine::CacheKey;
        let state = MilestoneState::new(
            MilestoneId::new("login").unwrap(),
            "Add login",
            "OAuth only",
            Workflow::kiro(),
            Timestamp(0),
            7,
        );
        let task = Work::Item(ItemRef::Task(TaskId::new("t1").unwrap()));
        let start = StartCommand {
            work: task.clone(),
            role: Role::Task,
            input: vec![Upstream {
                from: Work::Planning(AnalysisKind::Scope),
                data: json!({"files": 3}),
            }],
            attempt: 4,
            deadline: Timestamp(9_000),
            budget: Limits {
                timeout_ms: 60_000,
                memory_mib: Some(512),
                cpu_millicores: None,
            },
            idempotency_key: IdempotencyKey(99),
            cache_key: CacheKey(1),
            reusable: true,
            degraded: true,
        };
        let r = AgentRequest::from_start(&start, &state);
        assert_eq!(r.milestone.as_str(), "login");
        assert_eq!((&*r.title, &*r.context), ("Add login", "OAuth only"));
        assert_eq!((r.role.clone(), r.work.clone()), (Role::Task, task));
        assert_eq!(r.input, start.input);
        assert_eq!(
            (r.attempt, r.deadline, r.degraded),
            (4, Timestamp(9_000), true)
        );
        assert_eq!(
            (r.budget.clone(), r.idempotency_key),
            (start.budget.clone(), IdempotencyKey(99))
        );
    }

    #[test]
    fn json_round_trips_for_every_role() {
        let roles = [
            Role::Scope,
            Role::Estimation,
            Role::Risk,
            Role::KiroStrategy,
            Role::Aggregation,
            Role::Phase(PhaseId::new("design").unwrap()),
            Role::Task,
            Role::GitOperations,
            Role::ConflictResolution,
            Role::Custom("reviewer".into()),
        ];
        for role in roles {
            let mut r = request();
            r.role = role;
            r.work = Work::Item(ItemRef::Task(TaskId::new("t1").unwrap()));
            let back = AgentRequest::from_json(&r.to_json()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn bad_json_is_a_typed_error_naming_the_problem() {
        fn check(json: &str, expected: &str) {
            let err = AgentRequest::from_json(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let ok = request().to_json();
        check(
            &ok.replace("\"protocol\":1", "\"protocol\":2"),
            "protocol 2 is not supported",
        );
        check(
            &ok.replace("\"role\":\"phase\"", "\"role\":\"boss\""),
            "unknown role `boss`",
        );
        check(
            &ok.replace("00000000deadbeef", "xyz"),
            "not a hexadecimal u64",
        );
        check(
            &ok.replace("\"phase\":\"spec\"", "\"task\":\"t\",\"phase\":\"spec\""),
            "exactly one of",
        );
        check(
            &ok.replace("\"analysis\":\"risk\"", "\"analysis\":\"vibes\""),
            "input[1]: unknown analysis",
        );
        check(
            &ok.replace("\"milestone\":\"login\"", "\"milestone\":\"../x\""),
            "",
        );
        check("{}", "missing field");
    }
}
