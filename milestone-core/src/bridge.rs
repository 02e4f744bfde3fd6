//! The bridge between the canonical [`MilestoneState`] and the flat "command" shape older
//! tooling reads and writes.
//!
//! Older tools keep a milestone as one flat JSON object:
//!
//! ```json
//! { "id": "login", "title": "Add login", "created": 1700000000000, "status": "active",
//!   "phases": { "design": "completed", "spec": "in-progress", "task": "pending", "execute": "pending" },
//!   "progress": 25.0,
//!   "phaseProgress": { "design": 100.0, "spec": 40.0, "task": 0.0, "execute": 0.0 },
//!   "branch": "feature/milestone-login",
//!   "commits": [ { "phase": "design", "commit": "3f2a…" } ] }
//! ```
//!
//! [`CommandState::from_state`] writes that shape from a state; [`CommandState::apply_to`]
//! reads it back onto a state. Both are lossless for the fields the shapes share, so a file
//! store can export both and older tooling sees the same progress:
//!
//! | command          | canonical state                                            |
//! |------------------|------------------------------------------------------------|
//! | `id`             | [`MilestoneState::id`] (must match on the way back)        |
//! | `title`          | [`MilestoneState::title`]                                  |
//! | `created`        | [`MilestoneState::created_at`], milliseconds since the epoch |
//! | `status`         | [`MilestoneState::status`] (kebab-case)                    |
//! | `phases`         | each phase's status, keyed by phase id                     |
//! | `phaseProgress`  | each phase's progress in percent, exact to 0.01 (a basis point) |
//! | `progress`       | [`crate::progress::overall`] in percent; derived, so checked for range but otherwise ignored on the way back |
//! | `branch`         | [`crate::state::GitInfo::branch`]                          |
//! | `commits`        | [`crate::state::GitInfo::commits`], in order               |
//!
//! What the flat shape cannot carry, and [`CommandState::apply_to`] therefore keeps from the
//! state it is applied to: the context, the workflow, the mode, the seed, the plan, the
//! strategy, every task, each phase's times, attempts, partial result, output and last error,
//! the base branch, tag and merge commit, the open intervention, checkpoints, rollbacks,
//! `updated_at` and the event count.
//!
//! ```
//! use milestone_core::bridge::CommandState;
//! use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp, Workflow};
//!
//! let state = MilestoneState::from_events([
//!     &Event::Created { at: Timestamp(5), id: MilestoneId::new("login")?, title: "Add login".into(),
//!         context: String::new(), workflow: Workflow::kiro(), seed: 0 },
//!     &Event::BranchCreated { at: Timestamp(6), branch: "feature/milestone-login".into(),
//!         base: "main".into() },
//! ])?;
//! let flat = CommandState::from_state(&state);
//! assert_eq!(flat.branch.as_deref(), Some("feature/milestone-login"));
//! let json = flat.to_json();
//! assert!(json.contains("\"phaseProgress\""));
//! let back = CommandState::from_json(&json)?.apply_to(&state)?;
//! assert_eq!(back, state);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{LoadError, Problem, ProblemKind, Problems};
use crate::id::MilestoneId;
use crate::state::{ItemStatus, MilestoneState, MilestoneStatus, Mode, PhaseCommit, PhaseState};
use crate::units::{Progress, Timestamp};
use crate::workflow::Workflow;

/// The largest command JSON [`CommandState::from_json`] accepts (1 MiB; the flat shape has no
/// tasks, so real files are a few kilobytes).
pub const MAX_COMMAND_JSON: usize = 1 << 20;

/// One phase commit in the flat shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandCommit {
    /// The phase's id (checked against the workflow on the way back).
    pub phase: String,
    /// The commit id.
    pub commit: String,
}

/// The flat command shape of a milestone. See the module docs for what each field means and
/// what the shape cannot carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandState {
    /// The milestone's id.
    pub id: MilestoneId,
    /// Its title.
    pub title: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created: Timestamp,
    /// Its status.
    pub status: MilestoneStatus,
    /// Each phase's status, keyed by phase id.
    pub phases: BTreeMap<String, ItemStatus>,
    /// Overall progress in percent (0–100); derived from the phases.
    pub progress: f64,
    /// Each phase's progress in percent (0–100), keyed by phase id.
    pub phase_progress: BTreeMap<String, f64>,
    /// The milestone branch, once created.
    #[serde(default)]
    pub branch: Option<String>,
    /// One commit per committed phase, in order.
    #[serde(default)]
    pub commits: Vec<CommandCommit>,
}

fn percent(p: Progress) -> f64 {
    f64::from(p.basis_points()) / 100.0
}

/// A percentage as progress, exact to a basis point; `None` when not a number in 0..=100.
fn from_percent(v: f64) -> Option<Progress> {
    if !v.is_finite() || !(0.0..=100.0).contains(&v) {
        return None;
    }
    Some(Progress::from_basis_points((v * 100.0).round() as u32))
}

fn out_of_range(location: String, v: f64) -> Problem {
    Problem::new(
        location,
        ProblemKind::OutOfRange,
        format!("{v} is not a percentage from 0 to 100"),
    )
}

impl CommandState {
    /// The flat shape of `state` (see the module docs for the mapping).
    pub fn from_state(state: &MilestoneState) -> CommandState {
        let phases = state
            .phases()
            .iter()
            .map(|p| (p.id.as_str().to_owned(), p.item.status))
            .collect();
        let phase_progress = state
            .phases()
            .iter()
            .map(|p| (p.id.as_str().to_owned(), percent(p.item.progress)))
            .collect();
        let git = state.git();
        CommandState {
            id: state.id().clone(),
            title: state.title().to_owned(),
            created: state.created_at(),
            status: state.status(),
            phases,
            progress: percent(crate::progress::overall(state)),
            phase_progress,
            branch: git.branch.clone(),
            commits: git
                .commits
                .iter()
                .map(|c| CommandCommit {
                    phase: c.phase.as_str().to_owned(),
                    commit: c.commit.clone(),
                })
                .collect(),
        }
    }

    /// Loads the flat shape from JSON: at most [`MAX_COMMAND_JSON`] bytes, unknown fields
    /// refused, a valid id and statuses, percentages within 0–100. The flat shape has no schema
    /// version (older tooling does not write one). Phase names are checked by
    /// [`CommandState::apply_to`], which knows the workflow.
    ///
    /// # Errors
    /// [`LoadError::TooLarge`], [`LoadError::Malformed`] with line and column, or
    /// [`LoadError::Invalid`] with every out-of-range percentage.
    pub fn from_json(json: &str) -> Result<CommandState, LoadError> {
        const WHAT: &str = "command state";
        let cmd: CommandState = crate::load::from_json_limited(WHAT, json, MAX_COMMAND_JSON)?;
        let mut out = Vec::new();
        cmd.range_problems(&mut out);
        Problems(out)
            .into_result(cmd)
            .map_err(|problems| LoadError::Invalid {
                what: WHAT,
                problems,
            })
    }

    /// The flat shape as JSON (camelCase keys).
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and string-keyed maps: serializing cannot fail. A non-finite
        // percentage (only possible if a caller set one by hand) is written as `null`.
        serde_json::to_string(self).unwrap_or_default()
    }

    fn range_problems(&self, out: &mut Vec<Problem>) {
        if from_percent(self.progress).is_none() {
            out.push(out_of_range("progress".into(), self.progress));
        }
        for (name, &v) in &self.phase_progress {
            if from_percent(v).is_none() {
                out.push(out_of_range(format!("phaseProgress[{name:?}]"), v));
            }
        }
    }

    /// `base` with this flat shape's fields applied (see the module docs): the inverse of
    /// [`CommandState::from_state`] for the shared fields, keeping everything else of `base`.
    /// `base.apply_to(CommandState::from_state(&base))` is `base` itself.
    ///
    /// A phase missing from `phases` keeps its status, and one missing from `phaseProgress`
    /// keeps its progress — except that a phase newly marked completed is 100 % and one no
    /// longer completed drops just short of it. `progress` is derived and only range-checked.
    ///
    /// Every problem is reported at once: an id other than `base`'s (`id`), unknown phase names
    /// (`phases["x"]`, `phaseProgress["x"]`, `commits[2].phase`), a phase committed twice,
    /// percentages outside 0–100, a status other than `base`'s when `base` is completed or
    /// cancelled (final), `awaiting-intervention` without an open intervention in `base` (the
    /// flat shape cannot carry one), a phase leaving `pending` while `base` is
    /// still planning, and any inconsistency of the resulting state (a completed phase short of
    /// 100 %, a completed milestone with open phases).
    ///
    /// # Errors
    /// [`Problems`] listing everything wrong; `base` is never changed.
    pub fn apply_to(&self, base: &MilestoneState) -> Result<MilestoneState, Problems> {
        let mut out = Vec::new();
        if self.id != *base.id() {
            out.push(Problem::new(
                "id",
                ProblemKind::Inconsistent,
                format!(
                    "the command is for milestone {:?}, not {:?}",
                    self.id.as_str(),
                    base.id().as_str()
                ),
            ));
        }
        self.range_problems(&mut out);
        let mut data = base.data.clone();
        let workflow = base.workflow();
        for (name, &status) in &self.phases {
            let loc = format!("phases[{name:?}]");
            let Some(i) = workflow.position(name) else {
                out.push(unknown_phase(loc, name));
                continue;
            };
            let Some(phase) = data.phases.get_mut(i) else {
                continue;
            };
            if base.mode() == Mode::Planning
                && status != ItemStatus::Pending
                && phase.item.status != status
            {
                out.push(Problem::new(
                    loc,
                    ProblemKind::Inconsistent,
                    format!("the milestone is still planning: phase {name:?} cannot be {status}"),
                ));
            }
            set_status(phase, status);
        }
        for (name, &v) in &self.phase_progress {
            let Some(i) = workflow.position(name) else {
                out.push(unknown_phase(format!("phaseProgress[{name:?}]"), name));
                continue;
            };
            if let (Some(p), Some(phase)) = (from_percent(v), data.phases.get_mut(i)) {
                phase.item.progress = p;
            }
        }
        let mut commits: Vec<PhaseCommit> = Vec::with_capacity(self.commits.len());
        for (i, c) in self.commits.iter().enumerate() {
            let loc = format!("commits[{i}].phase");
            let Some(spec) = workflow.phase(&c.phase) else {
                out.push(unknown_phase(loc, &c.phase));
                continue;
            };
            if commits.iter().any(|k| k.phase == spec.id) {
                out.push(Problem::new(
                    loc,
                    ProblemKind::DuplicateId,
                    format!("phase {:?} is committed twice", c.phase),
                ));
                continue;
            }
            commits.push(PhaseCommit {
                phase: spec.id.clone(),
                commit: c.commit.clone(),
            });
        }
        if base.status().is_final() && self.status != base.status() {
            out.push(Problem::new(
                "status",
                ProblemKind::Inconsistent,
                format!(
                    "the milestone is {}, which is final; it cannot become {}",
                    base.status(),
                    self.status
                ),
            ));
        } else if self.status == MilestoneStatus::AwaitingIntervention {
            if base.intervention().is_none() {
                out.push(Problem::new(
                    "status",
                    ProblemKind::Inconsistent,
                    "awaiting-intervention needs an open intervention, which the flat shape \
                     cannot carry; request one with an intervention-requested event",
                ));
            }
        } else {
            data.intervention = None;
        }
        if !out.is_empty() {
            return Err(Problems(out));
        }
        data.title.clone_from(&self.title);
        data.created_at = self.created;
        data.status = self.status;
        data.git.branch.clone_from(&self.branch);
        data.git.commits = commits;
        MilestoneState::from_data(data)
    }

    /// A new state from this flat shape alone, for a milestone older tooling created: `workflow`
    /// gives the phases, the context is empty, the seed 0, `updated_at` equals `created`, and the
    /// mode is execution when any phase has left `pending` (planning otherwise). Then as
    /// [`CommandState::apply_to`].
    ///
    /// # Errors
    /// As [`CommandState::apply_to`].
    pub fn to_new_state(&self, workflow: Workflow) -> Result<MilestoneState, Problems> {
        let mut base = MilestoneState::new(
            self.id.clone(),
            self.title.clone(),
            String::new(),
            workflow,
            self.created,
            0,
        );
        let started = self.phases.iter().any(|(name, &status)| {
            status != ItemStatus::Pending && base.workflow().position(name).is_some()
        });
        if started {
            base.data.mode = Mode::Execution;
        }
        if self.status == MilestoneStatus::AwaitingIntervention {
            // A fresh state has no intervention to keep; say so rather than invent one.
            return Err(Problems(vec![Problem::new(
                "status",
                ProblemKind::Inconsistent,
                "a new state cannot start awaiting an intervention the flat shape cannot carry",
            )]));
        }
        self.apply_to(&base)
    }
}

fn unknown_phase(location: String, name: &str) -> Problem {
    Problem::new(
        location,
        ProblemKind::UnknownPhase,
        format!("phase {name:?} is not in the workflow"),
    )
}

/// Sets a phase's status from the flat shape, keeping progress consistent with it when the
/// command gives no explicit progress (an explicit one overrides later).
fn set_status(phase: &mut PhaseState, status: ItemStatus) {
    let item = &mut phase.item;
    if item.status == status {
        return;
    }
    item.status = status;
    if status == ItemStatus::Completed {
        item.progress = Progress::COMPLETE;
    } else {
        item.progress = item.progress.short_of_complete();
        item.completed_at = None;
    }
}
