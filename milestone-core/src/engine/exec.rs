//! Execution: building the index from the state, dispatching, finishing, completing.

use std::cmp::Reverse;

use super::node::{Node, NodeState, ReadyKey};
use super::{
    CacheKey, Command, Engine, EngineError, IdempotencyKey, LogMemory, Outcome, RecoveryStep, Role,
    StartCommand, Step, Strategy, Upstream, Work, hash,
};
use crate::complexity::Complexity;
use crate::event::Event;
use crate::state::{
    CompactOutput, FailureKind, ItemError, ItemOutput, ItemRef, ItemStatus, MilestoneStatus, Mode,
    TaskSpec, TransitionError,
};
use crate::units::{Progress, Timestamp};
use crate::workflow::CachePolicy;

/// The label of the checkpoint recorded when execution starts. It is not a rollback target.
pub const EXECUTION_START: &str = "execution-start";

impl Engine {
    /// Rebuilds every index from the state (construction and rollback): O(items).
    pub(super) fn rebuild(&mut self, mem: &LogMemory) {
        let state = &self.state;
        let wf = state.workflow();
        let np = wf.phases().len();
        self.np = np;
        self.receiver = wf.position(wf.task_phase().as_str()).unwrap_or(np - 1);
        self.nodes.clear();
        self.edges.clear();
        self.recent.clear();
        self.ready.clear();
        self.parked.clear();
        self.running.clear();
        self.deadlines.clear();
        self.retries.clear();
        self.restart.clear();
        self.recover.clear();
        self.phases_active = 0;
        self.phases_done = 0;
        self.tasks_open = 0;
        self.phase_dirty = true;
        let estimates = state.plan().and_then(|p| p.estimates.as_ref());
        for spec in wf.phases() {
            let est = estimates
                .and_then(|e| e.phases.iter().find(|x| x.phase == spec.id))
                .map_or(u64::from(spec.weight.percent()) * 1_000, |x| x.effort_ms);
            self.nodes.push(Node::new(
                ItemRef::Phase(spec.id.clone()),
                spec.priority,
                est.max(1),
            ));
        }
        for t in state.tasks() {
            let mut n = Node::new(
                ItemRef::Task(t.spec.id.clone()),
                t.spec.priority,
                t.spec.progress_weight(),
            );
            n.deps = self.edges.add_deps(
                t.spec
                    .dependencies
                    .iter()
                    .filter_map(|d| state.task_position(d.as_str()))
                    .map(|j| (np + j) as u32),
            );
            self.nodes.push(n);
        }
        // Dependents, packed: counted, laid out, then filled in task order.
        let mut counts = vec![0u32; self.nodes.len()];
        for &d in &self.edges.deps {
            counts[d as usize] += 1;
        }
        let spans = self.edges.reserve_dependents(&counts);
        for (n, span) in self.nodes.iter_mut().zip(spans) {
            n.dependents = span;
        }
        for i in np..self.nodes.len() {
            for k in self.nodes[i].deps.range() {
                let d = self.edges.deps[k] as usize;
                self.edges
                    .push_dependent(&mut self.nodes[d].dependents, i as u32);
            }
        }
        let receiver_id = wf.task_phase().clone();
        for n in &mut self.nodes {
            let phase = match &n.item {
                ItemRef::Phase(p) => p.clone(),
                ItemRef::Task(_) => receiver_id.clone(),
            };
            key_node(n, phase.as_str(), self.idem_base);
        }
        // Status of every node from the state.
        let has_tasks = self.nodes.len() > np;
        // The task phase's current attempt runs through its tasks only when it started so:
        // under the pipeline strategy it may have started with an agent of its own and received
        // tasks since; that agent starts again, and its gate is checked when it finishes.
        let receiver_container = mem.receiver_container.unwrap_or(has_tasks) && has_tasks;
        // Phases (and the task phase's tasks) outside the phase filter are neither restarted
        // nor recovered here: a run that allows them does that.
        let allowed: Vec<bool> = wf
            .phases()
            .iter()
            .map(|p| self.config.allows_phase(&p.id))
            .collect();
        let live = state.status() == MilestoneStatus::Active;
        let open_item = state.intervention().and_then(|x| x.item.clone());
        for i in 0..self.nodes.len() {
            let ok = allowed[if i < np { i } else { self.receiver }];
            let st = if i < np {
                &state.phases()[i].item
            } else {
                &state.tasks()[i - np].item
            };
            let item = self.nodes[i].item.clone();
            self.nodes[i].attempts = st
                .attempts
                .max(mem.attempts.get(&item).copied().unwrap_or(0));
            let degraded = mem.degraded.get(&item).copied().unwrap_or(false);
            self.nodes[i].degrade_used = degraded;
            self.nodes[i].st = match st.status {
                ItemStatus::Completed | ItemStatus::Skipped | ItemStatus::Cancelled => {
                    if i < np {
                        self.phases_done += 1;
                    }
                    NodeState::Done
                }
                ItemStatus::InProgress => {
                    if i < np {
                        self.phases_active += 1;
                    }
                    if i == self.receiver && receiver_container && ok {
                        NodeState::Container
                    } else if !ok {
                        // Left in progress, untouched, for a run that allows it.
                        NodeState::Pending
                    } else {
                        // Restarted once the milestone is active (now, or after an answer).
                        self.restart.push(i as u32);
                        self.nodes[i].degraded = degraded;
                        NodeState::Queued
                    }
                }
                ItemStatus::Failed => {
                    let kind = st.last_error.as_ref().map(|e| e.kind);
                    if kind == Some(FailureKind::Interrupted) {
                        NodeState::Pending
                    } else if let Some(&(attempt, at)) = mem.retries.get(&item) {
                        self.retries.push(Reverse((at, i as u32, attempt)));
                        NodeState::RetryWait { attempt }
                    } else if degraded {
                        self.nodes[i].degraded = true;
                        NodeState::Pending
                    } else {
                        if live && ok && open_item.as_ref() != Some(&item) {
                            self.recover.push(i as u32);
                        }
                        NodeState::Failed
                    }
                }
                ItemStatus::Pending | ItemStatus::Blocked => NodeState::Pending,
            };
        }
        // Waiting counts, open tasks, ready tasks.
        for i in np..self.nodes.len() {
            let waiting = self.edges.deps[self.nodes[i].deps.range()]
                .iter()
                .filter(|&&d| self.nodes[d as usize].st != NodeState::Done)
                .count() as u32;
            self.nodes[i].waiting = waiting;
            if self.nodes[i].st != NodeState::Done {
                self.tasks_open += 1;
            }
        }
        self.compute_task_cp(np);
        let receiver_active = self.nodes[self.receiver].in_progress();
        for i in np..self.nodes.len() {
            if self.nodes[i].st == NodeState::Pending && self.nodes[i].waiting == 0 {
                if receiver_active {
                    self.queue(i);
                } else {
                    self.parked.push(i as u32);
                }
            }
        }
        self.phase_graph();
    }

    /// Critical paths of the tasks from `from` on (they are in dependency order), then raised
    /// along the dependencies of earlier tasks.
    fn compute_task_cp(&mut self, from: usize) {
        for i in (from..self.nodes.len()).rev() {
            let best = self.edges.dependents[self.nodes[i].dependents.range()]
                .iter()
                .map(|&d| self.nodes[d as usize].cp)
                .max()
                .unwrap_or(0);
            self.nodes[i].cp = self.nodes[i].est.saturating_add(best);
        }
        let mut work: Vec<u32> = Vec::new();
        for i in from..self.nodes.len() {
            for &d in &self.edges.deps[self.nodes[i].deps.range()] {
                if (d as usize) < from {
                    work.push(d);
                }
            }
        }
        while let Some(d) = work.pop() {
            let d = d as usize;
            let best = self.edges.dependents[self.nodes[d].dependents.range()]
                .iter()
                .map(|&x| self.nodes[x as usize].cp)
                .max()
                .unwrap_or(0);
            let cp = self.nodes[d].est.saturating_add(best);
            if cp > self.nodes[d].cp {
                self.nodes[d].cp = cp;
                work.extend_from_slice(&self.edges.deps[self.nodes[d].deps.range()]);
            }
        }
    }

    /// Effective phase dependencies, successors, critical paths and dispatch order.
    fn phase_graph(&mut self) {
        let np = self.np;
        let wf = self.state.workflow();
        let mut preds: Vec<Vec<u32>> = wf
            .phases()
            .iter()
            .map(|p| {
                p.dependencies
                    .iter()
                    .filter_map(|d| wf.position(d.as_str()))
                    .map(|j| j as u32)
                    .collect()
            })
            .collect();
        if self.strategy == Some(Strategy::Sequential) {
            for (i, p) in preds.iter_mut().enumerate().skip(1) {
                let prev = (i - 1) as u32;
                if !p.contains(&prev) {
                    p.push(prev);
                }
            }
        }
        let mut succs = vec![Vec::new(); np];
        for (i, p) in preds.iter().enumerate() {
            for &d in p {
                succs[d as usize].push(i as u32);
            }
        }
        // Longest path over the phase DAG (workflows are acyclic; positions need not be
        // topological, so iterate to a fixed point, at most np rounds).
        for _ in 0..np {
            let mut changed = false;
            for (i, succ) in succs.iter().enumerate() {
                let best = succ
                    .iter()
                    .map(|&s| self.nodes[s as usize].cp)
                    .max()
                    .unwrap_or(0);
                let cp = self.nodes[i].est.saturating_add(best);
                if cp != self.nodes[i].cp {
                    self.nodes[i].cp = cp;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut order: Vec<u32> = (0..np as u32).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&self.nodes[a as usize], &self.nodes[b as usize]);
            y.priority
                .cmp(&x.priority)
                .then(y.cp.cmp(&x.cp))
                .then(a.cmp(&b))
        });
        self.preds = preds;
        self.succs = succs;
        self.phase_order = order;
        self.phase_dirty = true;
    }

    #[inline]
    pub(super) fn queue(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.st = NodeState::Queued;
        self.ready.push(ReadyKey::new(n.priority, n.cp, i as u32));
    }

    /// Makes a task whose dependencies are done runnable (queued, or parked until its phase
    /// runs).
    #[inline(always)]
    pub(super) fn task_ready(&mut self, i: usize) {
        // The task's state is read when it starts, usually a few completions from now, and
        // tasks become ready in no particular order: reading it now lets that cache miss
        // overlap with the rest of this completion instead of stalling the start (W3 of the
        // engine bench, cold caches: 20-25 % faster). The value itself is not needed.
        std::hint::black_box(
            self.state
                .tasks()
                .get(i.wrapping_sub(self.np))
                .map(|t| t.item.attempts),
        );
        if self.nodes[self.receiver].in_progress() {
            self.queue(i);
        } else {
            self.nodes[i].st = NodeState::Pending;
            self.parked.push(i as u32);
        }
    }

    fn phase_limit(&self) -> usize {
        match self.strategy {
            Some(Strategy::Sequential) => 1,
            _ => self.state.workflow().max_parallel_phases() as usize,
        }
    }

    pub(super) fn start_execution(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if self.state.mode() != Mode::Execution {
            return Err(EngineError::WrongMode {
                expected: Mode::Execution,
                actual: self.state.mode(),
            });
        }
        let status = self.state.status();
        if status == MilestoneStatus::Completed {
            // A crash may have lost the final commands: git operations are idempotent.
            if self.state.git().tag.is_none() {
                out.commands.push(Command::Tag);
            }
            if self.config.merge && self.state.git().merge_commit.is_none() {
                out.commands.push(Command::Merge);
            }
            out.commands.push(Command::Finished(Outcome::Completed));
            self.over = true;
            return Ok(());
        }
        if status != MilestoneStatus::Active {
            return Err(EngineError::Status {
                status,
                reason: "execution starts only while active",
            });
        }
        if self.enabled {
            return Ok(());
        }
        let (strategy, reason) = self.choose_strategy(now);
        self.emit(
            Event::StrategyChosen {
                at: Timestamp(now),
                strategy: strategy.name().to_string(),
                reason,
            },
            out,
        )?;
        self.strategy = Some(strategy);
        self.enabled = true;
        self.phase_graph();
        // Recorded for the store, but not kept for rollback: before the first phase boundary
        // there is no work to go back to (and keeping it would copy every task planned).
        let label = EXECUTION_START.to_string();
        self.emit(
            Event::CheckpointRecorded {
                at: Timestamp(now),
                label: label.clone(),
            },
            out,
        )?;
        out.commands.push(Command::Checkpoint { label });
        Ok(())
    }

    pub(super) fn choose_strategy(&self, now: u64) -> (Strategy, String) {
        let configured = self.config.strategy;
        if configured != Strategy::Adaptive {
            return (configured, "configured".to_string());
        }
        let a = self.config.adaptive;
        let plan = self.state.plan();
        let complexity = a
            .complexity
            .or_else(|| plan.and_then(|p| p.scope.as_ref()).map(|s| s.complexity))
            .unwrap_or(Complexity::Low);
        if a.agents_available == 0 {
            return (
                Strategy::Sequential,
                "no agents available: direct execution, one phase at a time".to_string(),
            );
        }
        if let Some(deadline) = a.deadline {
            let effort: u64 = plan
                .and_then(|p| p.estimates.as_ref())
                .map_or(0, |e| e.phases.iter().map(|x| x.effort_ms).sum());
            let left = deadline.as_millis().saturating_sub(now);
            if effort > left {
                return (
                    Strategy::pipeline(),
                    format!(
                        "the estimated effort {effort} ms does not fit the {left} ms left before the deadline: phases overlap"
                    ),
                );
            }
        }
        match complexity {
            Complexity::High => (
                Strategy::ParallelIndependent,
                format!(
                    "high complexity with {} agents available: independent phases at once",
                    a.agents_available
                ),
            ),
            Complexity::Medium => (
                Strategy::pipeline(),
                "medium complexity: phases overlap from 50 % of their predecessor".to_string(),
            ),
            Complexity::Low => (
                Strategy::Sequential,
                "low complexity: one phase at a time".to_string(),
            ),
        }
    }

    pub(super) fn checkpoint(
        &mut self,
        label: String,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        self.emit(
            Event::CheckpointRecorded {
                at: Timestamp(now),
                label: label.clone(),
            },
            out,
        )?;
        // Only the newest checkpoint is ever a rollback target: one copy, never a growing list.
        self.checkpoints.clear();
        if self.may_roll_back() {
            self.checkpoints.push((label.clone(), self.state.clone()));
        } else {
            // No rollback can ever use a checkpoint state: no O(items) copy.
            self.checkpoints.clear();
        }
        out.commands.push(Command::Checkpoint { label });
        Ok(())
    }

    /// Whether a rollback may still happen: the recovery chain can ask for an intervention
    /// (which offers one), or roll back itself with rollbacks left. The count of rollbacks
    /// never goes down, so once this is false it stays false.
    pub(super) fn may_roll_back(&self) -> bool {
        let r = &self.config.recovery;
        r.order.iter().any(|s| match s {
            RecoveryStep::Intervene => true,
            RecoveryStep::Rollback => self.state.rollbacks() < r.max_rollbacks,
            _ => false,
        })
    }

    /// Starts what may start, completes what may complete.
    pub(super) fn pump(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if !self.enabled
            || self.over
            || self.state.mode() != Mode::Execution
            || self.state.status() != MilestoneStatus::Active
        {
            return Ok(());
        }
        for i in std::mem::take(&mut self.recommit) {
            out.commands.push(Command::CommitPhase {
                phase: self.phase_id(i as usize),
            });
        }
        // A crash may have cut the log between the last phase's completion and the
        // milestone's.
        if self.phases_done >= self.np {
            self.check_complete(now, out)?;
        }
        if self.over {
            return Ok(());
        }
        // Failures found on resume first: a rollback among them refills the restarts.
        loop {
            let list = std::mem::take(&mut self.recover);
            if list.is_empty() {
                break;
            }
            let rollbacks = self.state.rollbacks();
            for i in list {
                let i = i as usize;
                let error = self.state_item(i).last_error.clone().unwrap_or(ItemError {
                    kind: FailureKind::Interrupted,
                    message: "unknown failure".to_string(),
                });
                self.recover(i, &error, now, out)?;
                if self.state.status() != MilestoneStatus::Active {
                    return Ok(());
                }
                if self.state.rollbacks() != rollbacks {
                    // Every index was rebuilt from the restored state.
                    break;
                }
            }
        }
        let restart = std::mem::take(&mut self.restart);
        for (k, &i) in restart.iter().enumerate() {
            if self.running.len() >= self.config.max_concurrency {
                // Interrupted work restarts first, as slots free up.
                self.restart.extend_from_slice(&restart[k..]);
                break;
            }
            let i = i as usize;
            if i >= self.np && !self.nodes[self.receiver].in_progress() {
                self.nodes[i].st = NodeState::Pending;
                self.parked.push(i as u32);
                continue;
            }
            let was_active = i < self.np;
            self.start_agent(i, was_active, now, out)?;
            if i == self.receiver {
                // A task phase restarting with its own agent (see `rebuild`) takes the tasks
                // that became ready while it waited to restart.
                self.unpark();
            }
        }
        loop {
            if self.state.status() != MilestoneStatus::Active || self.over {
                return Ok(());
            }
            if self.phase_dirty {
                self.phase_dirty = false;
                self.eval_phases(now, out)?;
                continue;
            }
            if self.running.len() >= self.config.max_concurrency {
                break;
            }
            let Some(key) = self.ready.pop() else { break };
            let i = key.index() as usize;
            if self.nodes[i].st != NodeState::Queued {
                continue;
            }
            if !self.nodes[self.receiver].in_progress() {
                // The task phase failed since this task was queued: wait for its next attempt.
                self.nodes[i].st = NodeState::Pending;
                self.parked.push(i as u32);
                continue;
            }
            self.start_agent(i, false, now, out)?;
        }
        Ok(())
    }

    fn phase_id(&self, i: usize) -> crate::id::PhaseId {
        match &self.nodes[i].item {
            ItemRef::Phase(p) => p.clone(),
            ItemRef::Task(_) => self.state.workflow().task_phase().clone(),
        }
    }

    pub(super) fn state_item(&self, i: usize) -> &crate::state::ItemState {
        if i < self.np {
            &self.state.phases()[i].item
        } else {
            &self.state.tasks()[i - self.np].item
        }
    }

    /// Whether phase `i`'s dependencies let it start now.
    fn phase_may_start(&self, i: usize) -> bool {
        let threshold = match self.strategy {
            Some(Strategy::Pipeline { threshold }) => Some(threshold),
            _ => None,
        };
        self.preds[i].iter().all(|&d| {
            let n = &self.nodes[d as usize];
            if n.st == NodeState::Done {
                return true;
            }
            match threshold {
                Some(t) if n.in_progress() => {
                    let st = &self.state.phases()[d as usize].item;
                    st.partial.is_some() || st.progress >= t
                }
                _ => false,
            }
        })
    }

    fn preds_done(&self, i: usize) -> bool {
        self.preds[i]
            .iter()
            .all(|&d| self.nodes[d as usize].st == NodeState::Done)
    }

    /// Completes phases that may complete and starts phases that may start.
    fn eval_phases(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        for k in 0..self.np {
            let i = self.phase_order[k] as usize;
            match self.nodes[i].st {
                NodeState::Held | NodeState::Container => {
                    let tasks_ok = i != self.receiver || self.tasks_open == 0;
                    if tasks_ok && self.preds_done(i) {
                        // A held phase completes with its agent's output; a container with
                        // a summary of its tasks.
                        let output = if self.nodes[i].st == NodeState::Held {
                            std::mem::take(&mut self.nodes[i].held)
                        } else {
                            ItemOutput {
                                summary: format!("{} tasks done", self.nodes.len() - self.np),
                                ..ItemOutput::default()
                            }
                            .into()
                        };
                        self.complete_phase(i, output, now, out)?;
                        if self.over {
                            return Ok(());
                        }
                    }
                }
                _ => {}
            }
        }
        for k in 0..self.np {
            let i = self.phase_order[k] as usize;
            if self.nodes[i].st != NodeState::Pending
                || !self.phase_may_start(i)
                || !self.phase_allowed(i)
            {
                continue;
            }
            if self.phases_active >= self.phase_limit() {
                break;
            }
            if i == self.receiver && self.nodes.len() > self.np {
                let attempt = self.nodes[i].attempts + 1;
                self.emit_at(
                    i,
                    Event::ItemStarted {
                        at: Timestamp(now),
                        item: self.nodes[i].item.clone(),
                        attempt,
                    },
                    out,
                )?;
                self.nodes[i].attempts = attempt;
                self.nodes[i].st = NodeState::Container;
                self.phases_active += 1;
                self.unpark();
                if self.tasks_open == 0 {
                    self.phase_dirty = true;
                }
            } else {
                if self.running.len() >= self.config.max_concurrency {
                    break;
                }
                self.start_agent(i, false, now, out)?;
            }
        }
        if self.config.phase_filter.is_some() {
            self.end_filtered_run(out);
        }
        Ok(())
    }

    /// Queues the parked tasks that are ready (the task phase is in progress now).
    fn unpark(&mut self) {
        self.ready.reserve(self.parked.len());
        for t in std::mem::take(&mut self.parked) {
            let t = t as usize;
            if self.nodes[t].st == NodeState::Pending && self.nodes[t].waiting == 0 {
                self.queue(t);
            }
        }
    }

    /// Whether the phase filter lets phase `i` start.
    fn phase_allowed(&self, i: usize) -> bool {
        match (&self.config.phase_filter, &self.nodes[i].item) {
            (None, _) => true,
            (Some(f), ItemRef::Phase(p)) => f.contains(p),
            (Some(_), ItemRef::Task(_)) => false,
        }
    }

    /// Under a phase filter: ends the run once nothing it allows is running, waiting for a
    /// retry or a gate, or able to start ([`Outcome::PhasesDone`]). The milestone stays active.
    fn end_filtered_run(&mut self, out: &mut Step) {
        if self.over || !self.running.is_empty() || !self.restart.is_empty() {
            return;
        }
        let busy = (0..self.np).any(|i| {
            self.phase_allowed(i)
                && matches!(
                    self.nodes[i].st,
                    NodeState::Queued
                        | NodeState::Running { .. }
                        | NodeState::Container
                        | NodeState::Held
                        | NodeState::Gate { .. }
                        | NodeState::RetryWait { .. }
                )
        });
        if busy {
            return;
        }
        let waiting = (0..self.np)
            .filter(|&i| self.phase_allowed(i) && self.nodes[i].st != NodeState::Done)
            .map(|i| self.phase_id(i))
            .collect();
        out.commands
            .push(Command::Finished(Outcome::PhasesDone { waiting }));
        self.over = true;
    }

    /// Starts a new attempt of node `i` with an agent. `was_active`: a phase that already
    /// counts as in progress (a restart).
    pub(super) fn start_agent(
        &mut self,
        i: usize,
        was_active: bool,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let attempt = self.nodes[i].attempts + 1;
        // Both clones first, back to back: each is an atomic increment, which waits for the
        // stores before it (the event's) to drain.
        let started = self.nodes[i].item.clone();
        let work = Work::Item(self.nodes[i].item.clone());
        self.emit_with(i, out, || Event::ItemStarted {
            at: Timestamp(now),
            item: started,
            attempt,
        })?;
        let phase_pos = if i < self.np { i } else { self.receiver };
        let spec = &self.state.workflow().phases()[phase_pos];
        let budget = spec.limits.clone();
        let reusable = spec.cache == CachePolicy::Reusable;
        let deadline = now.saturating_add(budget.timeout_ms);
        // Input: the data of the dependencies (their partial result when started early),
        // hashed into the cache key as it is gathered.
        let mut h = hash::Fnv(self.nodes[i].ident);
        let mut input = Vec::new();
        if i < self.np {
            input.reserve(self.preds[i].len());
            for &d in &self.preds[i] {
                let st = &self.state.phases()[d as usize].item;
                let data = match (&st.output, &st.partial) {
                    (Some(o), _) => o.data.clone(),
                    (None, Some(p)) => p.clone(),
                    (None, None) => serde_json::Value::Null,
                };
                let from = &self.nodes[d as usize].item;
                h.str(from.as_str());
                h.value(&data);
                input.push(Upstream {
                    from: Work::Item(from.clone()),
                    data,
                });
            }
        } else if self.task_data {
            // A task's dependencies that produced no data are left out: a plain graph starts
            // its tasks without allocating or hashing anything per dependency (and without
            // reading their states at all while no task has produced data).
            for &d in &self.edges.deps[self.nodes[i].deps.range()] {
                let Some(o) = &self.state.tasks()[d as usize - self.np].item.output else {
                    continue;
                };
                if o.data.is_null() {
                    continue;
                }
                let from = &self.nodes[d as usize].item;
                h.str(from.as_str());
                h.value(&o.data);
                input.push(Upstream {
                    from: Work::Item(from.clone()),
                    data: o.data.clone(),
                });
            }
        }
        let cache_key = CacheKey(h.finish());
        let n = &mut self.nodes[i];
        let idempotency_key = IdempotencyKey(n.idem);
        let degraded = n.degraded;
        n.attempts = attempt;
        n.st = NodeState::Running { attempt };
        n.slot = self.running.len() as u32;
        self.running.push(i as u32);
        let role = if i < self.np {
            Role::Phase(self.phase_id(i))
        } else {
            self.remember(i);
            Role::Task
        };
        if i < self.np && !was_active {
            self.phases_active += 1;
        }
        self.deadlines.push(Reverse((deadline, i as u32, attempt)));
        if self.deadlines.len() > 2 * self.running.len() + 64 {
            let nodes = &self.nodes;
            self.deadlines.retain(|Reverse((_, n, a))| {
                matches!(nodes[*n as usize].st, NodeState::Running { attempt, .. } if attempt == *a)
            });
        }
        // Allocated first and written in place: `Box::new` built the command on the stack and
        // copied it over.
        let slot = Box::new_uninit();
        out.commands.push(Command::Start(Box::write(
            slot,
            StartCommand {
                work,
                role,
                input,
                attempt,
                deadline: Timestamp(deadline),
                budget,
                idempotency_key,
                cache_key,
                reusable,
                degraded,
            },
        )));
        Ok(())
    }

    /// Removes node `i` from the running list.
    #[inline]
    pub(super) fn release(&mut self, i: usize) {
        let slot = self.nodes[i].slot as usize;
        if self.running.get(slot) == Some(&(i as u32)) {
            self.running.swap_remove(slot);
            if let Some(&moved) = self.running.get(slot) {
                self.nodes[moved as usize].slot = slot as u32;
            }
        }
    }

    /// The node running `work` under `attempt`; planning work answers `Ok(None)`.
    #[inline(always)]
    pub(super) fn check_running(
        &self,
        work: &Work,
        attempt: u32,
    ) -> Result<Option<usize>, EngineError> {
        if let Work::Planning(a) = work {
            return self.planning.check(*a, attempt).map(|_| None);
        }
        let i = self.node_of(work)?;
        if self.is_running(i, attempt) {
            Ok(Some(i))
        } else {
            Err(EngineError::NotRunning {
                work: work.clone(),
                attempt,
            })
        }
    }

    pub(super) fn progress(
        &mut self,
        work: Work,
        attempt: u32,
        progress: Progress,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let Some(i) = self.check_running(&work, attempt)? else {
            return Ok(());
        };
        let progress = progress.short_of_complete();
        if progress > self.state_item(i).progress {
            self.emit_at(
                i,
                Event::ItemProgressed {
                    at: Timestamp(now),
                    item: self.nodes[i].item.clone(),
                    progress,
                },
                out,
            )?;
            if i < self.np || self.strategy_is_pipeline() {
                self.phase_dirty = true;
            }
        }
        Ok(())
    }

    fn strategy_is_pipeline(&self) -> bool {
        matches!(self.strategy, Some(Strategy::Pipeline { .. }))
    }

    pub(super) fn handoff(
        &mut self,
        work: Work,
        attempt: u32,
        partial: serde_json::Value,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let Some(i) = self.check_running(&work, attempt)? else {
            return Ok(());
        };
        self.emit_at(
            i,
            Event::ItemHandedOff {
                at: Timestamp(now),
                item: self.nodes[i].item.clone(),
                partial,
            },
            out,
        )?;
        if i < self.np {
            self.phase_dirty = true;
        }
        Ok(())
    }

    pub(super) fn finished(
        &mut self,
        work: Work,
        attempt: u32,
        output: CompactOutput,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        if let Work::Planning(a) = work {
            return self.planning_finished(a, attempt, output, now, out);
        }
        let Some(i) = self.check_running(&work, attempt)? else {
            return Ok(());
        };
        self.release(i);
        // The host's id (equal to the node's: the lookup checked it) moves into the event.
        let item = match work {
            Work::Item(item) => Some(item),
            Work::Planning(_) => None,
        };
        if i >= self.np && !output.data.is_object() {
            // A task whose output lists no tasks completes at once, as `accept` would complete
            // it (measured 2-3 % faster on W1/W2 than going through it).
            return self.complete_task(i, item, output, now, out);
        }
        if i < self.np {
            let spec = &self.state.workflow().phases()[i];
            let missing: Vec<&str> = spec
                .expected_outputs
                .iter()
                .filter(|name| !output.artifacts.iter().any(|a| &a.name == *name))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                let error = ItemError {
                    kind: FailureKind::Gate,
                    message: format!(
                        "quality gate: expected outputs missing: {}",
                        missing.join(", ")
                    ),
                };
                return self.fail(i, error, false, now, out);
            }
            if self.config.host_gates.contains(&spec.id) {
                self.nodes[i].st = NodeState::Gate { attempt };
                self.nodes[i].held = output;
                out.commands.push(Command::AwaitGate {
                    item: self.nodes[i].item.clone(),
                    attempt,
                });
                return Ok(());
            }
        }
        self.accept(i, item, output, now, out)
    }

    pub(super) fn gate_result(
        &mut self,
        item: ItemRef,
        attempt: u32,
        passed: bool,
        message: String,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let work = Work::Item(item);
        let i = self.node_of(&work)?;
        if self.nodes[i].st != (NodeState::Gate { attempt }) {
            return Err(EngineError::NotRunning { work, attempt });
        }
        if passed {
            let output = std::mem::take(&mut self.nodes[i].held);
            self.accept(i, None, output, now, out)
        } else {
            self.nodes[i].held = CompactOutput::default();
            let error = ItemError {
                kind: FailureKind::Gate,
                message: format!("quality gate failed: {message}"),
            };
            self.fail(i, error, false, now, out)
        }
    }

    /// A finished attempt that passed its gates: tasks it lists join, then it completes (a
    /// phase may be held until its predecessors and tasks are done). `item`: the id the host
    /// echoed, if at hand (saves a clone of the node's).
    fn accept(
        &mut self,
        i: usize,
        item: Option<ItemRef>,
        output: CompactOutput,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        if output.data.is_object()
            && let Some(tasks) = output.data.get("tasks")
            && let Err(message) = self.add_tasks(i, tasks, now, out)
        {
            let error = ItemError {
                kind: FailureKind::Permanent,
                message,
            };
            return self.fail(i, error, false, now, out);
        }
        if i < self.np {
            self.nodes[i].held = output;
            self.nodes[i].st = NodeState::Held;
            self.phase_dirty = true;
            Ok(())
        } else {
            self.complete_task(i, item, output, now, out)
        }
    }

    fn add_tasks(
        &mut self,
        from: usize,
        tasks: &serde_json::Value,
        now: u64,
        out: &mut Step,
    ) -> Result<(), String> {
        let who = self.nodes[from].item.clone();
        let mut list: Vec<TaskSpec> = serde_json::from_value(tasks.clone())
            .map_err(|e| format!("{who} produced an invalid task list: {e}"))?;
        // A producer that runs again (a retry, a pipeline restart, a rollback that kept the
        // tasks) lists the same tasks again: those already present, identical, are no news. A
        // same id with another spec stays in the list, for the fold to refuse by name.
        list.retain(|t| self.state.task(t.id.as_str()).is_none_or(|x| x.spec != *t));
        if list.is_empty() {
            return Ok(());
        }
        let ordered = order_tasks(list).map_err(|m| format!("{who} produced {m}"))?;
        let first = self.nodes.len();
        let event = Event::TasksAdded {
            at: Timestamp(now),
            tasks: ordered,
        };
        match self.state.apply(&event) {
            Ok(()) => {}
            Err(TransitionError::Tasks(problems)) => {
                return Err(format!("{who} produced an invalid task list: {problems}"));
            }
            Err(e) => return Err(format!("{who} produced tasks that cannot join: {e}")),
        }
        let Event::TasksAdded { tasks, .. } = &event else {
            return Ok(());
        };
        let np = self.np;
        let receiver_id = self.state.workflow().task_phase().clone();
        for t in tasks {
            let mut n = Node::new(ItemRef::Task(t.id.clone()), t.priority, t.progress_weight());
            n.deps = self.edges.add_deps(
                t.dependencies
                    .iter()
                    .filter_map(|d| self.state.task_position(d.as_str()))
                    .map(|j| (np + j) as u32),
            );
            let idx = self.nodes.len() as u32;
            let mut waiting = 0;
            for k in n.deps.range() {
                let d = self.edges.deps[k] as usize;
                self.edges
                    .push_dependent(&mut self.nodes[d].dependents, idx);
                if self.nodes[d].st != NodeState::Done {
                    waiting += 1;
                }
            }
            n.waiting = waiting;
            key_node(&mut n, receiver_id.as_str(), self.idem_base);
            self.nodes.push(n);
            self.tasks_open += 1;
        }
        out.events.push(event);
        self.compute_task_cp(first);
        for i in first..self.nodes.len() {
            if self.nodes[i].waiting == 0 {
                self.task_ready(i);
            }
        }
        Ok(())
    }

    fn complete_task(
        &mut self,
        i: usize,
        item: Option<ItemRef>,
        output: CompactOutput,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let item = item.unwrap_or_else(|| self.nodes[i].item.clone());
        self.task_data |= !output.data.is_null();
        self.emit_with(i, out, || Event::ItemCompleted {
            at: Timestamp(now),
            item,
            output,
        })?;
        self.task_done(i);
        Ok(())
    }

    /// Bookkeeping for a task that is done (completed or skipped).
    pub(super) fn task_done(&mut self, i: usize) {
        self.nodes[i].st = NodeState::Done;
        self.tasks_open = self.tasks_open.saturating_sub(1);
        for k in self.nodes[i].dependents.range() {
            let d = self.edges.dependents[k] as usize;
            let n = &mut self.nodes[d];
            n.waiting = n.waiting.saturating_sub(1);
            if n.waiting == 0 && n.st == NodeState::Pending {
                self.task_ready(d);
            }
        }
        if self.tasks_open == 0
            || (self.strategy_is_pipeline() && !self.succs[self.receiver].is_empty())
        {
            self.phase_dirty = true;
        }
    }

    fn complete_phase(
        &mut self,
        i: usize,
        output: CompactOutput,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let item = self.nodes[i].item.clone();
        self.emit_at(
            i,
            Event::ItemCompleted {
                at: Timestamp(now),
                item: item.clone(),
                output,
            },
            out,
        )?;
        self.nodes[i].st = NodeState::Done;
        self.phases_active = self.phases_active.saturating_sub(1);
        self.phases_done += 1;
        self.phase_dirty = true;
        let phase = self.phase_id(i);
        out.commands.push(Command::CommitPhase {
            phase: phase.clone(),
        });
        let label = format!("after-{phase}");
        if self.phases_done == self.np {
            // The milestone completes now: nothing can roll back to this checkpoint, so its
            // state is not kept (an O(items) clone saved).
            self.emit(
                Event::CheckpointRecorded {
                    at: Timestamp(now),
                    label: label.clone(),
                },
                out,
            )?;
            out.commands.push(Command::Checkpoint { label });
        } else {
            self.checkpoint(label, now, out)?;
        }
        self.check_complete(now, out)
    }

    /// Completes the milestone when every phase is done.
    #[inline]
    pub(super) fn check_complete(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if self.phases_done < self.np || self.over {
            return Ok(());
        }
        // Every phase is done. One skipped by a degraded run or by the host leaves the
        // milestone completed but degraded: the reason names what was skipped, and progress
        // stays short of 100 % by the skipped phases' weight.
        let skipped: Vec<&str> = self
            .state
            .phases()
            .iter()
            .filter(|p| p.item.status == crate::state::ItemStatus::Skipped)
            .map(|p| p.id.as_str())
            .collect();
        let reason =
            (!skipped.is_empty()).then(|| format!("degraded: skipped {}", skipped.join(", ")));
        self.emit(
            Event::StatusChanged {
                at: Timestamp(now),
                status: MilestoneStatus::Completed,
                reason,
            },
            out,
        )?;
        out.commands.push(Command::Tag);
        if self.config.merge {
            out.commands.push(Command::Merge);
        }
        out.commands.push(Command::Finished(Outcome::Completed));
        self.over = true;
        Ok(())
    }

    pub(super) fn failed(
        &mut self,
        work: Work,
        attempt: u32,
        error: ItemError,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        if let Work::Planning(a) = work {
            return self.planning_failed(a, attempt, error, now, out);
        }
        let Some(i) = self.check_running(&work, attempt)? else {
            return Ok(());
        };
        self.fail(i, error, false, now, out)
    }

    pub(super) fn tick(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if self.state.mode() == Mode::Planning {
            return self.planning_tick(now, out);
        }
        if self.state.status() != MilestoneStatus::Active {
            return Ok(());
        }
        while let Some(&Reverse((t, i, a))) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let i = i as usize;
            if self.is_running(i, a) {
                let error = ItemError {
                    kind: FailureKind::Timeout,
                    message: format!("attempt {a} ran past its deadline at {t} ms"),
                };
                self.fail(i, error, true, now, out)?;
                if self.state.status() != MilestoneStatus::Active {
                    return Ok(());
                }
            }
        }
        while let Some(&Reverse((t, i, a))) = self.retries.peek() {
            if t > now {
                break;
            }
            self.retries.pop();
            let i = i as usize;
            if self.nodes[i].st == (NodeState::RetryWait { attempt: a }) {
                self.nodes[i].st = NodeState::Pending;
                if i < self.np {
                    self.phase_dirty = true;
                } else if self.nodes[i].waiting == 0 {
                    self.task_ready(i);
                }
            }
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        let status = self.state.status();
        if status.is_final() {
            return Err(EngineError::Status {
                status,
                reason: "a finished milestone cannot be cancelled",
            });
        }
        for a in self.planning.cancel_all() {
            out.commands.push(a);
        }
        for k in 0..self.running.len() {
            let i = self.running[k] as usize;
            if let NodeState::Running { attempt, .. } = self.nodes[i].st {
                out.commands.push(Command::Cancel {
                    work: Work::Item(self.nodes[i].item.clone()),
                    attempt,
                });
            }
        }
        // Every item in progress in the state: running, held, containers, and work waiting to
        // restart after a crash.
        let mut open: Vec<u32> = (0..self.np as u32).collect();
        open.extend_from_slice(&self.running);
        open.extend_from_slice(&self.restart);
        open.extend_from_slice(&self.parked);
        for i in open {
            let i = i as usize;
            if self.state_item(i).status == ItemStatus::InProgress {
                self.emit_at(
                    i,
                    Event::ItemCancelled {
                        at: Timestamp(now),
                        item: self.nodes[i].item.clone(),
                    },
                    out,
                )?;
                self.nodes[i].st = NodeState::Done;
            }
        }
        self.running.clear();
        self.emit(
            Event::StatusChanged {
                at: Timestamp(now),
                status: MilestoneStatus::Cancelled,
                reason: Some("cancelled by the host".to_string()),
            },
            out,
        )?;
        out.commands.push(Command::Finished(Outcome::Cancelled));
        self.over = true;
        Ok(())
    }
}

/// Computes a node's content hash of (phase, item), later extended with the input at each
/// start, and its idempotency key: once per node, not per start.
fn key_node(n: &mut Node, phase: &str, idem_base: u64) {
    let mut h = hash::Fnv::new();
    h.str(phase);
    h.str(n.item.as_str());
    let mut k = hash::Fnv(idem_base);
    k.bytes(&[u8::from(matches!(n.item, ItemRef::Phase(_)))]);
    k.str(n.item.as_str());
    n.ident = h.0;
    n.idem = k.finish();
}

/// Orders a task list so that each task comes after its dependencies within the list, keeping
/// the given order where it already is (Kahn's algorithm, earliest index first).
fn order_tasks(list: Vec<TaskSpec>) -> Result<Vec<TaskSpec>, String> {
    use std::collections::{BinaryHeap, HashMap};
    let n = list.len();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, t) in list.iter().enumerate() {
        index.entry(t.id.as_str()).or_insert(i);
    }
    let mut indegree = vec![0u32; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in list.iter().enumerate() {
        for d in &t.dependencies {
            if let Some(&j) = index.get(d.as_str())
                && j != i
            {
                indegree[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = heap.pop() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                heap.push(Reverse(d));
            }
        }
    }
    if order.len() < n {
        let stuck: Vec<&str> = (0..n)
            .filter(|&i| indegree[i] > 0)
            .map(|i| list[i].id.as_str())
            .collect();
        return Err(format!(
            "a task list with a dependency cycle among: {}",
            stuck.join(", ")
        ));
    }
    let mut slots: Vec<Option<TaskSpec>> = list.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}
