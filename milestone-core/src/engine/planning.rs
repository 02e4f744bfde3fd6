//! Planning mode: four analyses at once, then the aggregation whose output is the plan.
//!
//! Planning progress lives only in the engine until the plan is recorded
//! (`plan-recorded`): an engine resumed in planning mode starts the analyses again.

use super::io::AnalysisKind;
use super::{
    CacheKey, Command, Engine, EngineError, IdempotencyKey, Outcome, StartCommand, Step, Upstream,
    Work, backoff_delay_ms, hash,
};
use crate::event::Event;
use crate::plan::MilestonePlan;
use crate::state::{CompactOutput, FailureKind, ItemError, MilestoneStatus, Mode};
use crate::units::Timestamp;
use crate::workflow::Limits;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SlotState {
    #[default]
    Idle,
    Running {
        attempt: u32,
        deadline: u64,
    },
    RetryWait {
        not_before: u64,
    },
    Done,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    st: SlotState,
    attempts: u32,
    data: Option<serde_json::Value>,
}

/// The planning analyses' progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct Planning {
    slots: [Slot; 5],
    started: bool,
}

impl Planning {
    pub(crate) fn running(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.st, SlotState::Running { .. }))
            .count()
    }

    pub(crate) fn next_timer(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| match s.st {
                SlotState::Running { deadline, .. } => Some(deadline),
                SlotState::RetryWait { not_before } => Some(not_before),
                _ => None,
            })
            .min()
    }

    pub(crate) fn check(&self, a: AnalysisKind, attempt: u32) -> Result<(), EngineError> {
        match self.slots[a.index()].st {
            SlotState::Running { attempt: x, .. } if x == attempt => Ok(()),
            _ => Err(EngineError::NotRunning {
                work: Work::Planning(a),
                attempt,
            }),
        }
    }

    /// Cancel commands for every running analysis; they stop.
    pub(crate) fn cancel_all(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        for (k, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Running { attempt, .. } = s.st {
                out.push(Command::Cancel {
                    work: Work::Planning(AnalysisKind::from_index(k)),
                    attempt,
                });
                s.st = SlotState::Idle;
            }
        }
        out
    }
}

impl Engine {
    pub(super) fn start_planning(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if self.state.mode() != Mode::Planning {
            return Err(EngineError::WrongMode {
                expected: Mode::Planning,
                actual: self.state.mode(),
            });
        }
        let status = self.state.status();
        if status != MilestoneStatus::Active {
            return Err(EngineError::Status {
                status,
                reason: "planning starts only while active",
            });
        }
        if self.state.plan().is_some() {
            out.commands.push(Command::Finished(Outcome::Planned));
            return Ok(());
        }
        if self.planning.started {
            return Ok(());
        }
        self.planning.started = true;
        for a in AnalysisKind::PARALLEL {
            self.start_analysis(a, now, out);
        }
        Ok(())
    }

    fn start_analysis(&mut self, a: AnalysisKind, now: u64, out: &mut Step) {
        let deadline = now.saturating_add(self.config.planning_timeout_ms);
        let slot = &mut self.planning.slots[a.index()];
        slot.attempts += 1;
        let attempt = slot.attempts;
        slot.st = SlotState::Running { attempt, deadline };
        let input: Vec<Upstream> = if a == AnalysisKind::Aggregation {
            AnalysisKind::PARALLEL
                .iter()
                .map(|&x| Upstream {
                    from: Work::Planning(x),
                    data: self.planning.slots[x.index()]
                        .data
                        .clone()
                        .unwrap_or(serde_json::Value::Null),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut h = hash::Fnv::new();
        h.str("planning");
        h.str(a.name());
        h.str(self.state.title());
        h.str(self.state.context());
        for u in &input {
            h.value(&u.data);
        }
        let cache_key = CacheKey(h.finish());
        let mut k = hash::Fnv(self.idem_base);
        k.bytes(&[2]);
        k.str(a.name());
        out.commands.push(Command::Start(Box::new(StartCommand {
            work: Work::Planning(a),
            role: a.role(),
            input,
            attempt,
            deadline: Timestamp(deadline),
            budget: Limits {
                timeout_ms: self.config.planning_timeout_ms,
                ..Limits::default()
            },
            idempotency_key: IdempotencyKey(k.finish()),
            cache_key,
            reusable: false,
            degraded: false,
        })));
    }

    pub(super) fn planning_finished(
        &mut self,
        a: AnalysisKind,
        attempt: u32,
        output: CompactOutput,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        self.planning.check(a, attempt)?;
        if a != AnalysisKind::Aggregation {
            let slot = &mut self.planning.slots[a.index()];
            slot.st = SlotState::Done;
            slot.data = Some(output.into_inner().data);
            let all = AnalysisKind::PARALLEL
                .iter()
                .all(|x| self.planning.slots[x.index()].st == SlotState::Done);
            if all {
                self.start_analysis(AnalysisKind::Aggregation, now, out);
            }
            return Ok(());
        }
        match serde_json::from_value::<MilestonePlan>(output.into_inner().data) {
            Ok(plan) => {
                self.planning.slots[a.index()].st = SlotState::Done;
                self.emit(
                    Event::PlanRecorded {
                        at: Timestamp(now),
                        plan: Box::new(plan),
                    },
                    out,
                )?;
                out.commands.push(Command::Finished(Outcome::Planned));
                Ok(())
            }
            Err(e) => {
                let error = ItemError {
                    kind: FailureKind::Permanent,
                    message: format!("the aggregation's output is not a milestone plan: {e}"),
                };
                self.planning_failed(a, attempt, error, now, out)
            }
        }
    }

    pub(super) fn planning_failed(
        &mut self,
        a: AnalysisKind,
        attempt: u32,
        error: ItemError,
        now: u64,
        out: &mut Step,
    ) -> Result<(), EngineError> {
        self.planning.check(a, attempt)?;
        let retry = self.config.recovery.retry;
        let slot = &self.planning.slots[a.index()];
        let retryable = error.kind != FailureKind::Permanent
            && self
                .config
                .recovery
                .order
                .contains(&super::RecoveryStep::Retry);
        if retryable && slot.attempts < retry.max_attempts {
            let delay = backoff_delay_ms(&retry, self.state.seed(), a.name(), slot.attempts);
            self.planning.slots[a.index()].st = SlotState::RetryWait {
                not_before: now.saturating_add(delay),
            };
            return Ok(());
        }
        let attempts = slot.attempts;
        self.planning.slots[a.index()].st = SlotState::Idle;
        out.commands.extend(self.planning.cancel_all());
        self.emit(
            Event::StatusChanged {
                at: Timestamp(now),
                status: MilestoneStatus::Failed,
                reason: Some(format!(
                    "analysis {} failed after {attempts} attempts: {}",
                    a.name(),
                    error.message
                )),
            },
            out,
        )?;
        out.commands.push(Command::Finished(Outcome::Failed {
            work: Work::Planning(a),
            attempts,
            error,
        }));
        self.planning.started = false;
        Ok(())
    }

    pub(super) fn planning_tick(&mut self, now: u64, out: &mut Step) -> Result<(), EngineError> {
        if self.state.status() != MilestoneStatus::Active {
            return Ok(());
        }
        for k in 0..self.planning.slots.len() {
            let a = AnalysisKind::from_index(k);
            match self.planning.slots[k].st {
                SlotState::Running { attempt, deadline } if deadline <= now => {
                    out.commands.push(Command::Cancel {
                        work: Work::Planning(a),
                        attempt,
                    });
                    let error = ItemError {
                        kind: FailureKind::Timeout,
                        message: format!(
                            "attempt {attempt} ran past its deadline at {deadline} ms"
                        ),
                    };
                    self.planning_failed(a, attempt, error, now, out)?;
                    if self.state.status() != MilestoneStatus::Active {
                        return Ok(());
                    }
                }
                SlotState::RetryWait { not_before } if not_before <= now => {
                    self.start_analysis(a, now, out);
                }
                _ => {}
            }
        }
        Ok(())
    }
}
