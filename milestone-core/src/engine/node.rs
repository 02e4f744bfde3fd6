//! The engine's compact, index-based view of the work graph: phases at `0..np`, tasks at
//! `np + position in MilestoneState::tasks()`.

use crate::state::{ItemOutput, ItemRef};
use crate::units::Priority;

/// Where a node is in its life, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Not started; waits for its dependencies (or for a slot).
    Pending,
    /// In the ready queue.
    Queued,
    /// An agent runs this attempt.
    Running { attempt: u32, deadline: u64 },
    /// A phase run only through its tasks (no agent).
    Container,
    /// A phase whose agent finished; its completion waits (predecessors, tasks).
    Held,
    /// A phase whose finish waits for the host gate.
    Gate { attempt: u32 },
    /// A failed item waiting for its retry time.
    RetryWait { attempt: u32 },
    /// A failed item waiting for an intervention, or the milestone failed.
    Failed,
    /// Completed, skipped or cancelled.
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) item: ItemRef,
    pub(crate) priority: Priority,
    /// Estimated effort of this node (ms).
    pub(crate) est: u64,
    /// Longest remaining path from here, estimates summed.
    pub(crate) cp: u64,
    /// Task dependencies (node indices); for phases, unused (see `Engine::preds`).
    pub(crate) deps: Box<[u32]>,
    /// Tasks depending on this one.
    pub(crate) dependents: Vec<u32>,
    /// Dependencies not done yet (tasks).
    pub(crate) waiting: u32,
    pub(crate) st: NodeState,
    /// Attempts started (mirrors the state, also after a rollback).
    pub(crate) attempts: u32,
    /// The next attempt runs degraded.
    pub(crate) degraded: bool,
    /// The degrade step was used.
    pub(crate) degrade_used: bool,
    /// Position in `Engine::running` while running.
    pub(crate) slot: u32,
    /// A finished output waiting for completion (phases).
    pub(crate) held: Option<Box<ItemOutput>>,
    /// The content hash of (phase, item), extended with the input at each start.
    pub(crate) ident: u64,
    /// The idempotency key: the same for every attempt.
    pub(crate) idem: u64,
}

impl Node {
    pub(crate) fn new(item: ItemRef, priority: Priority, est: u64) -> Node {
        Node {
            item,
            priority,
            est,
            cp: est,
            deps: Box::new([]),
            dependents: Vec::new(),
            waiting: 0,
            st: NodeState::Pending,
            attempts: 0,
            degraded: false,
            degrade_used: false,
            slot: 0,
            held: None,
            ident: 0,
            idem: 0,
        }
    }

    /// In progress in the state's sense (an attempt is open).
    pub(crate) fn in_progress(&self) -> bool {
        matches!(
            self.st,
            NodeState::Running { .. }
                | NodeState::Container
                | NodeState::Held
                | NodeState::Gate { .. }
        )
    }
}

/// A ready task in the queue, packed so that a larger key starts first: priority, then
/// longest remaining path, then the earlier index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey(u128);

impl ReadyKey {
    pub(crate) fn new(priority: Priority, cp: u64, index: u32) -> ReadyKey {
        ReadyKey(
            (u128::from(priority as u8) << 96)
                | (u128::from(cp) << 32)
                | u128::from(u32::MAX - index),
        )
    }

    pub(crate) fn index(self) -> u32 {
        u32::MAX - (self.0 as u32)
    }
}
