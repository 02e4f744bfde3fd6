//! Failure handling: the recovery chain, rollbacks, interventions.

use std::cmp::Reverse;

use super::node::NodeState;
use super::{
    Command, Engine, EngineError, LogMemory, Outcome, RecoveryStep, RetryConfig, Step, Strategy,
    Work, hash,
};
use crate::event::Event;
use crate::state::{CompactOutput, Decision, FailureKind, ItemError, MilestoneStatus};
use crate::units::Timestamp;

/// The backoff before attempt `attempt + 1` after attempt `attempt` failed: a delay drawn
/// uniformly from `0..=min(cap, base × factor^(attempt-1))` (full jitter) by hashing
/// (`seed`, `item`, `attempt`), so the same inputs always give the same delay.
///
/// ```
/// use milestone_core::engine::{backoff_delay_ms, RetryConfig};
/// let retry = RetryConfig::default();
/// let d = backoff_delay_ms(&retry, 7, "phase design", 1);
/// assert!(d <= 1_000);
/// assert_eq!(d, backoff_delay_ms(&retry, 7, "phase design", 1));
/// assert!(backoff_delay_ms(&retry, 7, "phase design", 30) <= 300_000);
/// ```
pub fn backoff_delay_ms(retry: &RetryConfig, seed: u64, item: &str, attempt: u32) -> u64 {
    let mut ceiling = retry.base_ms.min(retry.cap_ms);
    for _ in 1..attempt {
        ceiling = ceiling.saturating_mul(u64::from(retry.factor));
        if ceiling >= retry.cap_ms {
            ceiling = retry.cap_ms;
            break;
        }
    }
    let mut h = hash::Fnv::new();
    h.u64(seed);
    h.str(item);
    h.u64(u64::from(attempt));
    match ceiling.checked_add(1) {
        Some(m) => h.finish() % m,
        None => h.finish(),
    }
}

impl Engine {
    /// Fails the running (or held) attempt of node `i` and walks the recovery chain.
    pub(super) fn fail(
        &mut self,
        i: usize,
        error: ItemError,
        cancel: bool,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        if let NodeState::Running { attempt, .. } = self.nodes[i].st {
            self.release(i);
            if cancel {
                out.commands.push(Command::Cancel {
                    work: Work::Item(self.nodes[i].item.clone()),
                    attempt,
                });
            }
        }
        self.emit_at(
            i,
            Event::ItemFailed {
                at: Timestamp(now),
                item: self.nodes[i].item.clone(),
                error: error.clone(),
            },
            out,
        )?;
        self.nodes[i].st = NodeState::Failed;
        self.nodes[i].held = CompactOutput::default();
        self.nodes[i].degraded = false;
        if i < self.np {
            self.phases_active = self.phases_active.saturating_sub(1);
            self.phase_dirty = true;
            if matches!(self.strategy, Some(Strategy::Pipeline { .. })) {
                self.interrupt_successors(i, now, out)?;
            }
        }
        self.recover(i, &error, now, out)
    }

    /// Pipeline: successors started early on phase `i` are cancelled (and theirs, in turn).
    fn interrupt_successors(
        &mut self,
        i: usize,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let mut work = vec![i];
        while let Some(p) = work.pop() {
            for k in 0..self.succs[p].len() {
                let s = self.succs[p][k] as usize;
                let st = self.nodes[s].st;
                if !matches!(
                    st,
                    NodeState::Running { .. } | NodeState::Held | NodeState::Gate { .. }
                ) {
                    continue;
                }
                if let NodeState::Running { attempt, .. } = st {
                    self.release(s);
                    out.commands.push(Command::Cancel {
                        work: Work::Item(self.nodes[s].item.clone()),
                        attempt,
                    });
                }
                let message = format!("cancelled: its predecessor {} failed", self.nodes[p].item);
                self.emit(
                    Event::ItemFailed {
                        at: Timestamp(now),
                        item: self.nodes[s].item.clone(),
                        error: ItemError {
                            kind: FailureKind::Interrupted,
                            message,
                        },
                    },
                    out,
                )?;
                self.nodes[s].st = NodeState::Pending;
                self.nodes[s].held = CompactOutput::default();
                self.phases_active = self.phases_active.saturating_sub(1);
                work.push(s);
            }
        }
        Ok(())
    }

    /// The first step of the chain that applies to node `i` failing with `kind`.
    fn choose_step(&self, i: usize, kind: FailureKind) -> Option<RecoveryStep> {
        let r = &self.config.recovery;
        for &step in &r.order {
            let applies = match step {
                RecoveryStep::Retry => {
                    kind != FailureKind::Permanent
                        && kind != FailureKind::Interrupted
                        && self.nodes[i].attempts < r.retry.max_attempts
                }
                RecoveryStep::Rollback => {
                    self.state.rollbacks() < r.max_rollbacks && !self.checkpoints.is_empty()
                }
                RecoveryStep::Degrade => {
                    !self.nodes[i].degrade_used && (self.optional_phase(i) || r.fallback)
                }
                RecoveryStep::Intervene => true,
            };
            if applies {
                return Some(step);
            }
        }
        None
    }

    fn optional_phase(&self, i: usize) -> bool {
        i < self.np && self.state.workflow().phases()[i].optional
    }

    /// Walks the recovery chain for node `i`, which has just failed with `error`.
    pub(super) fn recover(
        &mut self,
        i: usize,
        error: &ItemError,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let item = self.nodes[i].item.clone();
        match self.choose_step(i, error.kind) {
            Some(RecoveryStep::Retry) => {
                let attempt = self.nodes[i].attempts + 1;
                let delay = backoff_delay_ms(
                    &self.config.recovery.retry,
                    self.state.seed(),
                    item.as_str(),
                    self.nodes[i].attempts,
                );
                let not_before = now.saturating_add(delay);
                self.emit(
                    Event::RetryScheduled {
                        at: Timestamp(now),
                        item,
                        attempt,
                        not_before: Timestamp(not_before),
                    },
                    out,
                )?;
                self.nodes[i].st = NodeState::RetryWait { attempt };
                self.retries.push(Reverse((not_before, i as u32, attempt)));
                Ok(())
            }
            Some(RecoveryStep::Rollback) => self.rollback(now, out),
            Some(RecoveryStep::Degrade) => {
                if self.optional_phase(i) {
                    self.skip(
                        i,
                        format!("optional phase skipped after: {}", error.message),
                        now,
                        out,
                    )
                } else {
                    self.emit(
                        Event::ItemDegraded {
                            at: Timestamp(now),
                            item,
                            reason: error.message.clone(),
                        },
                        out,
                    )?;
                    let n = &mut self.nodes[i];
                    n.degraded = true;
                    n.degrade_used = true;
                    n.st = NodeState::Pending;
                    if i < self.np {
                        self.phase_dirty = true;
                    } else if self.nodes[i].waiting == 0 {
                        self.task_ready(i);
                    }
                    Ok(())
                }
            }
            Some(RecoveryStep::Intervene) => {
                let mut options = vec![Decision::Retry];
                if i >= self.np || self.optional_phase(i) {
                    options.push(Decision::Skip);
                }
                if !self.checkpoints.is_empty() {
                    options.push(Decision::Rollback);
                }
                options.push(Decision::Abort);
                let reason = format!(
                    "{item} failed after {} attempts: {}",
                    self.nodes[i].attempts, error.message
                );
                self.emit(
                    Event::InterventionRequested {
                        at: Timestamp(now),
                        item: Some(item.clone()),
                        reason: reason.clone(),
                        options: options.clone(),
                    },
                    out,
                )?;
                self.nodes[i].st = NodeState::Failed;
                out.commands.push(Command::AwaitIntervention {
                    item: Some(item),
                    reason,
                    options,
                });
                Ok(())
            }
            None => self.fail_milestone(i, error, None, now, out),
        }
    }

    /// Skips node `i` (done for its dependents).
    fn skip(
        &mut self,
        i: usize,
        reason: String,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        self.emit_at(
            i,
            Event::ItemSkipped {
                at: Timestamp(now),
                item: self.nodes[i].item.clone(),
                reason,
            },
            out,
        )?;
        if i < self.np {
            self.nodes[i].st = NodeState::Done;
            self.phases_done += 1;
            self.phase_dirty = true;
            self.check_complete(now, out)
        } else {
            self.task_done(i);
            Ok(())
        }
    }

    /// Rolls the state back to the last checkpoint: running work is cancelled, every index is
    /// rebuilt from the restored state.
    fn rollback(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        let Some((label, target)) = self.checkpoints.last().cloned() else {
            return Ok(());
        };
        for k in 0..self.running.len() {
            let i = self.running[k] as usize;
            if let NodeState::Running { attempt, .. } = self.nodes[i].st {
                out.commands.push(Command::Cancel {
                    work: Work::Item(self.nodes[i].item.clone()),
                    attempt,
                });
            }
        }
        // Attempts keep counting across the rollback so that a late answer of a cancelled
        // attempt is refused as stale.
        let mem = LogMemory {
            attempts: self
                .nodes
                .iter()
                .map(|n| (n.item.clone(), n.attempts))
                .collect(),
            ..LogMemory::default()
        };
        self.emit(
            Event::RolledBack {
                at: Timestamp(now),
                label,
                state: Box::new(target),
            },
            out,
        )?;
        self.rebuild(&mem);
        Ok(())
    }

    /// Fails the milestone: running work is cancelled, the error names the item, its attempts
    /// and the last error.
    fn fail_milestone(
        &mut self,
        i: usize,
        error: &ItemError,
        already: Option<()>,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        self.stop_running(now, out)?;
        let item = self.nodes[i].item.clone();
        let attempts = self.nodes[i].attempts;
        if already.is_none() {
            self.emit(
                Event::StatusChanged {
                    at: Timestamp(now),
                    status: MilestoneStatus::Failed,
                    reason: Some(format!(
                        "{item} failed after {attempts} attempts: {}",
                        error.message
                    )),
                },
                out,
            )?;
        }
        out.commands.push(Command::Finished(Outcome::Failed {
            work: Work::Item(item),
            attempts,
            error: error.clone(),
        }));
        self.over = true;
        Ok(())
    }

    /// Cancels every running agent; their attempts are recorded as interrupted.
    fn stop_running(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        while let Some(&i) = self.running.last() {
            let i = i as usize;
            let NodeState::Running { attempt, .. } = self.nodes[i].st else {
                self.running.pop();
                continue;
            };
            self.release(i);
            out.commands.push(Command::Cancel {
                work: Work::Item(self.nodes[i].item.clone()),
                attempt,
            });
            self.emit_at(
                i,
                Event::ItemFailed {
                    at: Timestamp(now),
                    item: self.nodes[i].item.clone(),
                    error: ItemError {
                        kind: FailureKind::Interrupted,
                        message: "the milestone stopped".to_string(),
                    },
                },
                out,
            )?;
            self.nodes[i].st = NodeState::Pending;
        }
        Ok(())
    }

    /// The host's answer to the open intervention.
    pub(super) fn answer(
        &mut self,
        decision: Decision,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        let Some(open) = self.state.intervention() else {
            return Err(EngineError::Answer("no intervention is open".to_string()));
        };
        if !open.options.contains(&decision) {
            return Err(EngineError::Answer(format!(
                "{decision:?} is not one of the options {:?}",
                open.options
            )));
        }
        let item = open.item.clone();
        let node = match &item {
            Some(it) => Some(self.node_of(&Work::Item(it.clone()))?),
            None => None,
        };
        self.emit(
            Event::InterventionAnswered {
                at: Timestamp(now),
                decision,
            },
            out,
        )?;
        match (decision, node) {
            (Decision::Retry, Some(i)) => {
                self.nodes[i].st = NodeState::Pending;
                if i < self.np {
                    self.phase_dirty = true;
                } else if self.nodes[i].waiting == 0 {
                    self.task_ready(i);
                }
                Ok(())
            }
            (Decision::Skip, Some(i)) => self.skip(i, "skipped by the host".to_string(), now, out),
            (Decision::Rollback, _) => self.rollback(now, out),
            (Decision::Abort, Some(i)) => {
                let error = self.state_item(i).last_error.clone().unwrap_or(ItemError {
                    kind: FailureKind::Permanent,
                    message: "aborted by the host".to_string(),
                });
                self.fail_milestone(i, &error, Some(()), now, out)
            }
            _ => Ok(()),
        }
    }
}
