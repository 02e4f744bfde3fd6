//! Events: every change of a milestone's state, and the pure fold that applies them.
//!
//! The event log is the source of truth: a state is [`MilestoneState::from_events`] of its log,
//! and [`MilestoneState::apply`] changes a state by one event. Applying is deterministic and
//! atomic: an event that does not fit the state returns a [`TransitionError`] and leaves the state
//! exactly as it was. Each event costs O(1) in the milestone's size, except
//! [`Event::TasksAdded`] (linear in the tasks added) and [`Event::RolledBack`] (which carries the
//! state it restores).
//!
//! ```
//! use milestone_core::{Event, MilestoneId, MilestoneState, Timestamp, Workflow};
//!
//! let created = Event::Created {
//!     at: Timestamp(1_000),
//!     id: MilestoneId::new("m-1")?,
//!     title: "Add login".into(),
//!     context: String::new(),
//!     workflow: Workflow::kiro(),
//!     seed: 7,
//! };
//! let state = MilestoneState::from_events([&created, &Event::ExecutionStarted { at: Timestamp(2_000) }])?;
//! assert_eq!(state.mode(), milestone_core::Mode::Execution);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Problem, ProblemKind, Problems};
use crate::id::{MilestoneId, PhaseId};
use crate::plan::MilestonePlan;
use crate::state::{
    CheckpointMark, CompactOutput, Decision, Intervention, ItemError, ItemRef, ItemState,
    ItemStatus, MilestoneState, MilestoneStatus, Mode, PhaseCommit, TaskSpec, TaskState,
    TransitionError, check_item_transition, check_milestone_transition, check_mode_transition,
};
use crate::units::{Progress, Timestamp};
use crate::workflow::Workflow;

/// One change of a milestone's state. Serialized with a `type` tag in kebab-case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Event {
    /// The milestone was created (always the first event).
    Created {
        /// When.
        at: Timestamp,
        /// Its id.
        id: MilestoneId,
        /// Its title.
        title: String,
        /// Free text handed to agents.
        #[serde(default)]
        context: String,
        /// Its workflow.
        workflow: Workflow,
        /// Seed of its deterministic randomness.
        #[serde(default)]
        seed: u64,
    },
    /// A plan was recorded (planning mode).
    PlanRecorded {
        /// When.
        at: Timestamp,
        /// The plan.
        plan: Box<MilestonePlan>,
    },
    /// Planning → execution.
    ExecutionStarted {
        /// When.
        at: Timestamp,
    },
    /// An execution strategy was chosen.
    StrategyChosen {
        /// When.
        at: Timestamp,
        /// The strategy (`sequential`, `parallel-independent`, `pipeline`).
        strategy: String,
        /// Why it was chosen.
        reason: String,
    },
    /// Tasks joined the task phase (ids unique, dependencies known, no cycle). A task already
    /// present with an identical spec is skipped, so re-listing the same tasks is harmless; the
    /// same id with a different spec is refused.
    TasksAdded {
        /// When.
        at: Timestamp,
        /// The tasks, each after its dependencies.
        tasks: Vec<TaskSpec>,
    },
    /// An attempt of an item started (a restart of an in-progress item means the previous
    /// attempt was interrupted).
    ItemStarted {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// The attempt number, 1-based and increasing.
        attempt: u32,
    },
    /// An item reported progress (never lowers it).
    ItemProgressed {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// Its progress.
        progress: Progress,
    },
    /// An item handed off a partial result (pipeline).
    ItemHandedOff {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// The partial result.
        partial: serde_json::Value,
    },
    /// An item completed.
    ItemCompleted {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// What it produced (compact: see [`CompactOutput`]).
        output: CompactOutput,
    },
    /// An attempt failed.
    ItemFailed {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// Why.
        error: ItemError,
    },
    /// An item is blocked.
    ItemBlocked {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// Why.
        reason: String,
    },
    /// An item was skipped (degraded run).
    ItemSkipped {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// Why.
        reason: String,
    },
    /// An item was cancelled.
    ItemCancelled {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
    },
    /// A retry of a failed item was scheduled.
    RetryScheduled {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// The attempt that will run.
        attempt: u32,
        /// Not before this time.
        not_before: Timestamp,
    },
    /// The milestone's status changed.
    StatusChanged {
        /// When.
        at: Timestamp,
        /// The new status.
        status: MilestoneStatus,
        /// Why, in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The host was asked to decide (the milestone awaits intervention).
    InterventionRequested {
        /// When.
        at: Timestamp,
        /// The item concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<ItemRef>,
        /// Why.
        reason: String,
        /// The answers allowed.
        options: Vec<Decision>,
    },
    /// The host answered the open intervention (the milestone is active again, or failed on
    /// abort).
    InterventionAnswered {
        /// When.
        at: Timestamp,
        /// The answer.
        decision: Decision,
    },
    /// A checkpoint was taken.
    CheckpointRecorded {
        /// When.
        at: Timestamp,
        /// Its label.
        label: String,
    },
    /// The state was rolled back to a checkpoint (history stays in the log).
    RolledBack {
        /// When.
        at: Timestamp,
        /// The checkpoint's label.
        label: String,
        /// The state at the checkpoint.
        state: Box<MilestoneState>,
    },
    /// The milestone branch was created.
    BranchCreated {
        /// When.
        at: Timestamp,
        /// The branch.
        branch: String,
        /// The base it was created from.
        base: String,
    },
    /// A phase was committed on the milestone branch.
    PhaseCommitted {
        /// When.
        at: Timestamp,
        /// The phase.
        phase: PhaseId,
        /// The commit id.
        commit: String,
    },
    /// The milestone was tagged.
    Tagged {
        /// When.
        at: Timestamp,
        /// The tag.
        tag: String,
    },
    /// The milestone branch was merged into its base.
    Merged {
        /// When.
        at: Timestamp,
        /// The merge commit (or the fast-forwarded head).
        commit: String,
    },
    /// A failed item's next attempt runs degraded (the role's fallback or direct runner):
    /// the recovery chain's degrade step. Only a failed item can be degraded.
    ItemDegraded {
        /// When.
        at: Timestamp,
        /// The item.
        item: ItemRef,
        /// Why (the failure that led here).
        reason: String,
    },
}

impl Event {
    /// The kebab-case name of the event's kind (its `type` tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Created { .. } => "created",
            Event::PlanRecorded { .. } => "plan-recorded",
            Event::ExecutionStarted { .. } => "execution-started",
            Event::StrategyChosen { .. } => "strategy-chosen",
            Event::TasksAdded { .. } => "tasks-added",
            Event::ItemStarted { .. } => "item-started",
            Event::ItemProgressed { .. } => "item-progressed",
            Event::ItemHandedOff { .. } => "item-handed-off",
            Event::ItemCompleted { .. } => "item-completed",
            Event::ItemFailed { .. } => "item-failed",
            Event::ItemBlocked { .. } => "item-blocked",
            Event::ItemSkipped { .. } => "item-skipped",
            Event::ItemCancelled { .. } => "item-cancelled",
            Event::RetryScheduled { .. } => "retry-scheduled",
            Event::StatusChanged { .. } => "status-changed",
            Event::InterventionRequested { .. } => "intervention-requested",
            Event::InterventionAnswered { .. } => "intervention-answered",
            Event::CheckpointRecorded { .. } => "checkpoint-recorded",
            Event::RolledBack { .. } => "rolled-back",
            Event::BranchCreated { .. } => "branch-created",
            Event::PhaseCommitted { .. } => "phase-committed",
            Event::Tagged { .. } => "tagged",
            Event::Merged { .. } => "merged",
            Event::ItemDegraded { .. } => "item-degraded",
        }
    }

    /// When the event happened.
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Created { at, .. }
            | Event::PlanRecorded { at, .. }
            | Event::ExecutionStarted { at }
            | Event::StrategyChosen { at, .. }
            | Event::TasksAdded { at, .. }
            | Event::ItemStarted { at, .. }
            | Event::ItemProgressed { at, .. }
            | Event::ItemHandedOff { at, .. }
            | Event::ItemCompleted { at, .. }
            | Event::ItemFailed { at, .. }
            | Event::ItemBlocked { at, .. }
            | Event::ItemSkipped { at, .. }
            | Event::ItemCancelled { at, .. }
            | Event::RetryScheduled { at, .. }
            | Event::StatusChanged { at, .. }
            | Event::InterventionRequested { at, .. }
            | Event::InterventionAnswered { at, .. }
            | Event::CheckpointRecorded { at, .. }
            | Event::RolledBack { at, .. }
            | Event::BranchCreated { at, .. }
            | Event::PhaseCommitted { at, .. }
            | Event::Tagged { at, .. }
            | Event::Merged { at, .. }
            | Event::ItemDegraded { at, .. } => *at,
        }
    }
}

/// Where an item lives in the state: its index among the phases or the tasks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// A phase's position in the workflow.
    Phase(usize),
    /// A task's position among the tasks.
    Task(usize),
}

/// Equal texts, by address first (ids cloned from one another share their text).
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn refused(event: &Event, reason: impl Into<String>) -> TransitionError {
    TransitionError::Refused {
        event: event.kind(),
        reason: reason.into(),
    }
}

impl MilestoneState {
    /// Folds an event log into a state. The first event must be [`Event::Created`].
    ///
    /// # Errors
    /// [`TransitionError`] for the first event that does not fit.
    pub fn from_events<'a, I>(events: I) -> Result<MilestoneState, TransitionError>
    where
        I: IntoIterator<Item = &'a Event>,
    {
        let mut it = events.into_iter();
        let mut state = match it.next() {
            Some(first) => MilestoneState::from_created(first)?,
            None => {
                return Err(TransitionError::Refused {
                    event: "none",
                    reason: "an event log must start with a created event".into(),
                });
            }
        };
        for e in it {
            state.apply(e)?;
        }
        Ok(state)
    }

    /// The state a [`Event::Created`] describes.
    ///
    /// # Errors
    /// [`TransitionError::Refused`] for any other event.
    pub fn from_created(event: &Event) -> Result<MilestoneState, TransitionError> {
        match event {
            Event::Created {
                at,
                id,
                title,
                context,
                workflow,
                seed,
            } => Ok(MilestoneState::new(
                id.clone(),
                title.clone(),
                context.clone(),
                workflow.clone(),
                *at,
                *seed,
            )),
            other => Err(refused(
                other,
                "an event log must start with a created event",
            )),
        }
    }

    /// A copy of this state with `event` applied (the functional form of
    /// [`MilestoneState::apply`]).
    ///
    /// # Errors
    /// As [`MilestoneState::apply`].
    pub fn applied(mut self, event: &Event) -> Result<MilestoneState, TransitionError> {
        self.apply(event)?;
        Ok(self)
    }

    /// Applies one event. On error the state is unchanged.
    ///
    /// # Errors
    /// [`TransitionError`] naming the item and the refused change when the event does not fit.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        // The two events every task goes through take the fast path once their task is found
        // (a store folding a log, or checking what it is asked to append, mostly sees these).
        let hint = match event {
            Event::ItemStarted {
                item: ItemRef::Task(t),
                ..
            }
            | Event::ItemCompleted {
                item: ItemRef::Task(t),
                ..
            } => self.task_position_of(t).map(Slot::Task),
            _ => None,
        };
        self.apply_at(event, hint)
    }

    /// As [`MilestoneState::apply`], with where the event's item probably is: a caller that
    /// keeps its own index (the engine) saves the id lookup. A wrong hint costs the lookup,
    /// never correctness: it is used only when the id at that position is the event's.
    #[inline(always)]
    pub(crate) fn apply_at(
        &mut self,
        event: &Event,
        hint: Option<Slot>,
    ) -> Result<(), TransitionError> {
        if let Some(Slot::Task(i)) = hint
            && self.apply_task_fast(event, i)
        {
            return Ok(());
        }
        self.apply_general(event, hint)
    }

    /// The two events every task goes through, started and completed, applied at the task the
    /// hint names when every check of [`MilestoneState::apply_general`] passes: the same
    /// checks and the same changes, without the general path's dispatch. Returns false, having
    /// changed nothing, when the event is another kind or any check fails; the general path
    /// then applies or refuses it.
    #[inline(always)]
    fn apply_task_fast(&mut self, event: &Event, i: usize) -> bool {
        let status = self.data.status;
        if status.is_final() {
            return false;
        }
        let at = match event {
            Event::ItemStarted {
                item: ItemRef::Task(t),
                attempt,
                at,
            } => {
                let Some(task) = self.data.tasks.get_mut(i) else {
                    return false;
                };
                let st = &mut task.item;
                if self.data.mode != Mode::Execution
                    || status != MilestoneStatus::Active
                    || !same(task.spec.id.as_str(), t.as_str())
                    || !matches!(
                        st.status,
                        ItemStatus::Pending
                            | ItemStatus::InProgress
                            | ItemStatus::Failed
                            | ItemStatus::Blocked
                    )
                    || *attempt == u32::MAX
                    || *attempt <= st.attempts
                {
                    return false;
                }
                mark_started(st, *at, *attempt);
                *at
            }
            Event::ItemCompleted {
                item: ItemRef::Task(t),
                output,
                at,
            } => {
                let Some(task) = self.data.tasks.get(i) else {
                    return false;
                };
                // Only an item in progress completes (the item table).
                if task.item.status != ItemStatus::InProgress
                    || !same(task.spec.id.as_str(), t.as_str())
                {
                    return false;
                }
                self.raise_progress(Slot::Task(i), Progress::COMPLETE);
                mark_completed(&mut self.data.tasks[i].item, *at, output);
                *at
            }
            _ => return false,
        };
        self.data.updated_at = self.data.updated_at.max(at);
        self.data.events_applied = self.data.events_applied.saturating_add(1);
        true
    }

    /// [`MilestoneState::apply_at`] for every event.
    #[inline(never)]
    fn apply_general(&mut self, event: &Event, hint: Option<Slot>) -> Result<(), TransitionError> {
        if self.data.status.is_final() {
            if let Event::StatusChanged { status, .. } = event {
                return Err(TransitionError::Milestone {
                    from: self.data.status,
                    to: *status,
                });
            }
            // Git effects are recorded after the fact: the last phase's commit, the tag and the
            // merge necessarily follow completion, so a final milestone still takes them.
            if !matches!(
                event,
                Event::PhaseCommitted { .. }
                    | Event::Tagged { .. }
                    | Event::Merged { .. }
                    | Event::CheckpointRecorded { .. }
            ) {
                return Err(refused(
                    event,
                    format!("the milestone is {}", self.data.status),
                ));
            }
        }
        match event {
            Event::Created { .. } => {
                return Err(refused(event, "the milestone already exists"));
            }
            Event::PlanRecorded { plan, .. } => {
                if self.data.mode != Mode::Planning {
                    return Err(refused(event, "a plan can only be recorded while planning"));
                }
                self.data.plan = Some(plan.clone());
            }
            Event::ExecutionStarted { .. } => {
                check_mode_transition(self.data.mode, Mode::Execution)?;
                self.data.mode = Mode::Execution;
            }
            Event::StrategyChosen { strategy, .. } => {
                self.data.strategy = Some(strategy.clone());
            }
            Event::TasksAdded { tasks, .. } => self.add_tasks(tasks)?,
            Event::ItemStarted { item, attempt, at } => {
                if self.data.mode != Mode::Execution {
                    return Err(refused(event, "items start only in execution mode"));
                }
                if self.data.status != MilestoneStatus::Active {
                    return Err(refused(
                        event,
                        format!("the milestone is {}", self.data.status),
                    ));
                }
                let slot = self.slot(item, hint)?;
                let st = self.at_slot(slot);
                check_item_transition(item, st.status, ItemStatus::InProgress)?;
                if *attempt == u32::MAX {
                    return Err(refused(
                        event,
                        format!("{item}: attempt numbers end before {}", u32::MAX),
                    ));
                }
                if *attempt <= st.attempts {
                    return Err(refused(
                        event,
                        format!(
                            "{item}: attempt {attempt} is not after attempt {}",
                            st.attempts
                        ),
                    ));
                }
                mark_started(self.at_slot_mut(slot), *at, *attempt);
            }
            Event::ItemProgressed { item, progress, .. } => {
                let slot = self.slot(item, hint)?;
                let st = self.at_slot(slot);
                if st.status != ItemStatus::InProgress {
                    return Err(refused(
                        event,
                        format!("{item} is {}, not in progress", st.status),
                    ));
                }
                self.raise_progress(slot, progress.short_of_complete());
            }
            Event::ItemHandedOff { item, partial, .. } => {
                let slot = self.slot(item, hint)?;
                let st = self.at_slot(slot);
                if st.status != ItemStatus::InProgress {
                    return Err(refused(
                        event,
                        format!("{item} is {}, not in progress", st.status),
                    ));
                }
                self.at_slot_mut(slot).partial = Some(partial.clone());
            }
            Event::ItemCompleted { item, output, at } => {
                let slot = self.slot(item, hint)?;
                check_item_transition(item, self.at_slot(slot).status, ItemStatus::Completed)?;
                self.raise_progress(slot, Progress::COMPLETE);
                mark_completed(self.at_slot_mut(slot), *at, output);
            }
            Event::ItemFailed { item, error, .. } => {
                let slot = self.set_item_status(item, hint, ItemStatus::Failed)?;
                self.at_slot_mut(slot).last_error = Some(error.clone());
            }
            Event::ItemBlocked { item, .. } => {
                self.set_item_status(item, hint, ItemStatus::Blocked)?;
            }
            Event::ItemSkipped { item, .. } => {
                self.set_item_status(item, hint, ItemStatus::Skipped)?;
            }
            Event::ItemCancelled { item, .. } => {
                self.set_item_status(item, hint, ItemStatus::Cancelled)?;
            }
            Event::RetryScheduled { item, attempt, .. } => {
                let st = self.at_slot(self.slot(item, hint)?);
                if !matches!(st.status, ItemStatus::Failed | ItemStatus::Blocked) {
                    return Err(refused(
                        event,
                        format!(
                            "{item} is {}; only a failed or blocked item is retried",
                            st.status
                        ),
                    ));
                }
                if *attempt == u32::MAX {
                    return Err(refused(
                        event,
                        format!("{item}: attempt numbers end before {}", u32::MAX),
                    ));
                }
                if *attempt <= st.attempts {
                    return Err(refused(
                        event,
                        format!(
                            "{item}: retry attempt {attempt} is not after {}",
                            st.attempts
                        ),
                    ));
                }
            }
            Event::StatusChanged { status, .. } => {
                check_milestone_transition(self.data.status, *status)?;
                if *status == MilestoneStatus::Completed && !self.all_phases_done() {
                    let open: Vec<&str> = self
                        .data
                        .phases
                        .iter()
                        .filter(|p| !p.item.status.is_done())
                        .map(|p| p.id.as_str())
                        .collect();
                    return Err(refused(
                        event,
                        format!("phases neither completed nor skipped: {}", open.join(", ")),
                    ));
                }
                if *status == MilestoneStatus::AwaitingIntervention {
                    return Err(refused(
                        event,
                        "use intervention-requested to await an intervention",
                    ));
                }
                if self.data.status == MilestoneStatus::AwaitingIntervention
                    && *status == MilestoneStatus::Active
                {
                    return Err(refused(
                        event,
                        "use intervention-answered to leave awaiting-intervention",
                    ));
                }
                if *status != MilestoneStatus::AwaitingIntervention {
                    self.data.intervention = None;
                }
                self.data.status = *status;
            }
            Event::InterventionRequested {
                item,
                reason,
                options,
                at,
            } => {
                check_milestone_transition(
                    self.data.status,
                    MilestoneStatus::AwaitingIntervention,
                )?;
                if options.is_empty() {
                    return Err(refused(event, "an intervention needs at least one option"));
                }
                if let Some(i) = item {
                    self.slot(i, hint)?;
                }
                self.data.status = MilestoneStatus::AwaitingIntervention;
                self.data.intervention = Some(Intervention {
                    item: item.clone(),
                    reason: reason.clone(),
                    options: options.clone(),
                    requested_at: *at,
                });
            }
            Event::InterventionAnswered { decision, .. } => {
                let Some(open) = &self.data.intervention else {
                    return Err(refused(event, "no intervention is open"));
                };
                if !open.options.contains(decision) {
                    return Err(refused(
                        event,
                        format!("{decision:?} is not one of the options {:?}", open.options),
                    ));
                }
                let to = if *decision == Decision::Abort {
                    MilestoneStatus::Failed
                } else {
                    MilestoneStatus::Active
                };
                check_milestone_transition(self.data.status, to)?;
                self.data.status = to;
                self.data.intervention = None;
            }
            Event::CheckpointRecorded { at, label } => {
                self.data.checkpoints.push(CheckpointMark {
                    label: label.clone(),
                    at: *at,
                });
            }
            Event::RolledBack { state, label, .. } => {
                if state.id() != self.id() {
                    return Err(refused(
                        event,
                        format!(
                            "checkpoint {label:?} belongs to milestone {}, not {}",
                            state.id(),
                            self.id()
                        ),
                    ));
                }
                let rollbacks = self.data.rollbacks.saturating_add(1);
                let applied = self.data.events_applied;
                // A rollback undoes work, not facts about the repository: the commits, branch,
                // tag and merge recorded since the checkpoint still exist in git.
                let git = std::mem::take(&mut self.data.git);
                *self = (**state).clone();
                // A copy's index starts empty: index the restored tasks.
                self.task_addr.extend(0, &self.data.tasks);
                self.data.git = git;
                self.data.rollbacks = rollbacks;
                self.data.events_applied = applied;
            }
            Event::BranchCreated { branch, base, .. } => {
                self.data.git.branch = Some(branch.clone());
                self.data.git.base = Some(base.clone());
            }
            Event::PhaseCommitted { phase, commit, .. } => {
                if self.phase(phase.as_str()).is_none() {
                    return Err(TransitionError::UnknownItem {
                        item: ItemRef::Phase(phase.clone()),
                    });
                }
                if self.data.git.commits.iter().any(|c| c.phase == *phase) {
                    return Err(refused(
                        event,
                        format!("phase {phase} is already committed"),
                    ));
                }
                self.data.git.commits.push(PhaseCommit {
                    phase: phase.clone(),
                    commit: commit.clone(),
                });
            }
            Event::Tagged { tag, .. } => self.data.git.tag = Some(tag.clone()),
            Event::Merged { commit, .. } => self.data.git.merge_commit = Some(commit.clone()),
            Event::ItemDegraded { item, .. } => {
                let st = self.at_slot(self.slot(item, hint)?);
                if st.status != ItemStatus::Failed {
                    return Err(refused(
                        event,
                        format!("{item} is {}; only a failed item is degraded", st.status),
                    ));
                }
            }
        }
        self.data.updated_at = self.data.updated_at.max(event.at());
        self.data.events_applied = self.data.events_applied.saturating_add(1);
        Ok(())
    }

    /// Resolves an item to its position: the only id lookup an item event does.
    #[inline(always)]
    fn slot(&self, item: &ItemRef, hint: Option<Slot>) -> Result<Slot, TransitionError> {
        if let Some(h) = hint
            && self.holds_at(h, item)
        {
            return Ok(h);
        }
        let slot = match item {
            ItemRef::Phase(p) => self.data.workflow.position(p.as_str()).map(Slot::Phase),
            ItemRef::Task(t) => self.task_position_of(t).map(Slot::Task),
        };
        slot.ok_or_else(|| TransitionError::UnknownItem { item: item.clone() })
    }

    /// Whether `item` is the one at `slot` (ids are unique, so then the lookup would find it
    /// there). The engine's ids share their allocation with the state's, so this is usually a
    /// pointer comparison.
    #[inline(always)]
    fn holds_at(&self, slot: Slot, item: &ItemRef) -> bool {
        match (slot, item) {
            (Slot::Phase(i), ItemRef::Phase(p)) => self
                .data
                .phases
                .get(i)
                .is_some_and(|x| same(x.id.as_str(), p.as_str())),
            (Slot::Task(i), ItemRef::Task(t)) => self
                .data
                .tasks
                .get(i)
                .is_some_and(|x| same(x.spec.id.as_str(), t.as_str())),
            _ => false,
        }
    }

    #[inline(always)]
    fn at_slot(&self, slot: Slot) -> &ItemState {
        match slot {
            Slot::Phase(i) => &self.data.phases[i].item,
            Slot::Task(i) => &self.data.tasks[i].item,
        }
    }

    #[inline(always)]
    fn at_slot_mut(&mut self, slot: Slot) -> &mut ItemState {
        match slot {
            Slot::Phase(i) => &mut self.data.phases[i].item,
            Slot::Task(i) => &mut self.data.tasks[i].item,
        }
    }

    fn set_item_status(
        &mut self,
        item: &ItemRef,
        hint: Option<Slot>,
        to: ItemStatus,
    ) -> Result<Slot, TransitionError> {
        let slot = self.slot(item, hint)?;
        let st = self.at_slot_mut(slot);
        check_item_transition(item, st.status, to)?;
        st.status = to;
        Ok(slot)
    }

    /// Raises an item's progress to `to` if higher; for a task, keeps the task phase's progress
    /// (the weighted share of its tasks) in step, never lowering it. O(1).
    #[inline(always)]
    fn raise_progress(&mut self, slot: Slot, to: Progress) {
        let st = self.at_slot_mut(slot);
        let before = st.progress;
        if to <= before {
            return;
        }
        st.progress = to;
        if let Slot::Task(i) = slot {
            let weight = u128::from(self.data.tasks[i].spec.progress_weight());
            self.task_done += weight * u128::from(to.basis_points() - before.basis_points());
            self.bump_task_phase();
        }
    }

    /// Raises the task phase's progress to the share of its tasks done, short of complete.
    #[inline(always)]
    fn bump_task_phase(&mut self) {
        let Some(share) = self.task_share() else {
            return;
        };
        if let Some(p) = self.data.phases.get_mut(self.task_phase_pos)
            && p.item.status != ItemStatus::Completed
        {
            p.item.progress = p.item.progress.max(share.short_of_complete());
        }
    }

    /// Adds tasks. Re-adding is idempotent: a task whose id is already present with an
    /// identical spec is skipped (a producer that runs again lists the same tasks again); the
    /// same id with a different spec is refused, named.
    fn add_tasks(&mut self, tasks: &[TaskSpec]) -> Result<(), TransitionError> {
        let mut problems = Vec::new();
        // Which entries are already present, identical: skipped.
        let mut known = vec![false; tasks.len()];
        let mut new_ids = std::collections::HashMap::with_capacity(tasks.len());
        for (i, t) in tasks.iter().enumerate() {
            if let Some(&k) = self.task_index.get(t.id.as_str()) {
                if self.data.tasks[k].spec == *t {
                    known[i] = true;
                } else {
                    problems.push(Problem::new(
                        format!("tasks[{i}].id"),
                        ProblemKind::DuplicateId,
                        format!(
                            "task id {:?} is already used by a task with a different spec",
                            t.id.as_str()
                        ),
                    ));
                }
            } else if new_ids.insert(&t.id, i).is_some() {
                problems.push(Problem::new(
                    format!("tasks[{i}].id"),
                    ProblemKind::DuplicateId,
                    format!("task id {:?} is listed twice", t.id.as_str()),
                ));
            }
        }
        let task_phase = self.data.workflow.task_phase().clone();
        if known.iter().any(|k| !k)
            && let Some(p) = self.phase(task_phase.as_str())
            && p.item.status.is_final()
        {
            problems.insert(
                0,
                Problem::new(
                    format!("phase {task_phase}"),
                    ProblemKind::Inconsistent,
                    format!("the task phase is {}; no task can join it", p.item.status),
                ),
            );
        }
        for (i, t) in tasks.iter().enumerate() {
            if known[i] {
                continue;
            }
            for (j, d) in t.dependencies.iter().enumerate() {
                // The location is formatted only when there is a problem to report.
                let loc = || format!("tasks[{i}].dependencies[{j}]");
                if *d == t.id {
                    problems.push(Problem::new(
                        loc(),
                        ProblemKind::SelfDependency,
                        format!("task {:?} depends on itself", t.id.as_str()),
                    ));
                } else if self.task_index.contains_key(d.as_str()) {
                    // An existing task: fine.
                } else {
                    match new_ids.get(d) {
                        None => problems.push(Problem::new(
                            loc(),
                            ProblemKind::UnknownDependency,
                            format!(
                                "task {:?} depends on unknown task {:?}",
                                t.id.as_str(),
                                d.as_str()
                            ),
                        )),
                        Some(&k) if k > i => problems.push(Problem::new(
                            loc(),
                            ProblemKind::Inconsistent,
                            format!(
                                "task {:?} depends on {:?}, listed after it (list tasks in dependency order)",
                                t.id.as_str(),
                                d.as_str()
                            ),
                        )),
                        Some(_) => {}
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(TransitionError::Tasks(Problems(problems)));
        }
        self.data.tasks.reserve(tasks.len());
        let first = self.data.tasks.len();
        for (t, _) in tasks.iter().zip(&known).filter(|(_, k)| !**k) {
            self.task_index.insert(t.id.clone(), self.data.tasks.len());
            self.task_total += u128::from(t.progress_weight()) * 10_000;
            self.data.tasks.push(TaskState {
                spec: t.clone(),
                item: ItemState::default(),
            });
        }
        self.task_addr.extend(first, &self.data.tasks);
        Ok(())
    }
}

/// What a start changes in an item, once its checks passed (both apply paths).
#[inline(always)]
fn mark_started(st: &mut ItemState, at: Timestamp, attempt: u32) {
    st.status = ItemStatus::InProgress;
    st.attempts = attempt;
    st.started_at.get_or_insert(at);
}

/// What a completion changes in an item, once its checks passed and its progress was raised
/// (both apply paths). Most outputs of plain tasks are empty: their copy allocates nothing.
#[inline(always)]
fn mark_completed(st: &mut ItemState, at: Timestamp, output: &CompactOutput) {
    st.status = ItemStatus::Completed;
    st.completed_at = Some(at);
    st.output = Some(output.clone());
    st.partial = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TaskId;
    use crate::state::{FailureKind, ItemOutput};
    use proptest::prelude::*;

    /// A milestone in execution with `n` tasks (ids `t0`…).
    fn state_with_tasks(n: usize) -> MilestoneState {
        let tasks = (0..n)
            .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "t"))
            .collect();
        MilestoneState::from_events(&[
            Event::Created {
                at: Timestamp(0),
                id: MilestoneId::new("m").unwrap(),
                title: "m".into(),
                context: String::new(),
                workflow: Workflow::kiro(),
                seed: 0,
            },
            Event::ExecutionStarted { at: Timestamp(0) },
            Event::TasksAdded {
                at: Timestamp(0),
                tasks,
            },
        ])
        .unwrap()
    }

    /// One step: (kind, task, attempt, time, hint offset, whether the id is a fresh copy).
    type Op = (u8, usize, u32, u64, usize, bool);

    fn event_of(state: &MilestoneState, (kind, k, attempt, at, _, fresh): Op) -> Event {
        let shared = &state.tasks()[k].spec.id;
        let id = if fresh {
            TaskId::new(shared.as_str()).unwrap()
        } else {
            shared.clone()
        };
        let item = ItemRef::Task(id);
        let at = Timestamp(at);
        match kind % 6 {
            0 | 1 => Event::ItemStarted { at, item, attempt },
            2 | 3 => Event::ItemCompleted {
                at,
                item,
                output: ItemOutput {
                    summary: if attempt % 2 == 0 {
                        String::new()
                    } else {
                        "s".into()
                    },
                    ..ItemOutput::default()
                }
                .into(),
            },
            4 => Event::ItemFailed {
                at,
                item,
                error: ItemError {
                    kind: FailureKind::Transient,
                    message: "m".into(),
                },
            },
            _ => Event::StatusChanged {
                at,
                status: if attempt % 2 == 0 {
                    MilestoneStatus::Blocked
                } else {
                    MilestoneStatus::Cancelled
                },
                reason: None,
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The task fast path is the general path: for any sequence of task events (legal or
        /// not, ids shared or fresh, hints right or wrong, the milestone active or not),
        /// applying with a hint, applying through `apply` (which finds the task itself) and
        /// applying through the general path alone give the same verdicts and the same
        /// states.
        #[test]
        fn a_hint_changes_nothing_but_the_speed(
            ops in prop::collection::vec(
                (0u8..6, 0usize..6, 0u32..4, 0u64..50, 0usize..3, any::<bool>()),
                1..60,
            ),
        ) {
            let mut hinted = state_with_tasks(6);
            let mut found = hinted.clone();
            let mut plain = hinted.clone();
            for op in ops {
                let event = event_of(&plain, op);
                // Offset 0 is the right task; others point elsewhere (or past the tasks).
                let hint = Slot::Task((op.1 + op.4 * 5) % 8);
                let a = hinted.apply_at(&event, Some(hint));
                let f = found.apply(&event);
                let b = plain.apply_general(&event, None);
                prop_assert_eq!(a.is_ok(), b.is_ok(), "{:?}: {:?} / {:?}", event, a, b);
                prop_assert_eq!(f.is_ok(), b.is_ok(), "{:?}: {:?} / {:?}", event, f, b);
                prop_assert_eq!(&hinted, &plain);
                prop_assert_eq!(&found, &plain);
            }
        }
    }
}
