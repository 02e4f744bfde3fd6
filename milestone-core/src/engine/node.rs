//! The engine's compact, index-based view of the work graph: phases at `0..np`, tasks at
//! `np + position in MilestoneState::tasks()`.

use std::cmp::Ordering;

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

/// A ready task in the queue: priority, then longest remaining path, then the earlier index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadyKey {
    pub(crate) priority: Priority,
    pub(crate) cp: u64,
    pub(crate) index: u32,
}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then(self.cp.cmp(&other.cp))
            .then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
