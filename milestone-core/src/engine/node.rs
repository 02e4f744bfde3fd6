//! The engine's compact, index-based view of the work graph: phases at `0..np`, tasks at
//! `np + position in MilestoneState::tasks()`.

use std::collections::{BinaryHeap, VecDeque};

use crate::state::{CompactOutput, ItemRef};
use crate::units::Priority;

/// Where a node is in its life, as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// Not started; waits for its dependencies (or for a slot).
    Pending,
    /// In the ready queue.
    Queued,
    /// An agent runs this attempt.
    Running { attempt: u32 },
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

/// One phase or task. `repr(C)` with the fields a completion touches on each dependent
/// (state, waiting count, dependents, dependencies) first and next to each other, so that
/// they mostly share a cache line: finishing a task updates nodes spread over the whole graph.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Node {
    pub(crate) st: NodeState,
    /// Dependencies not done yet (tasks).
    pub(crate) waiting: u32,
    /// Position in `Engine::running` while running.
    pub(crate) slot: u32,
    /// Tasks depending on this one.
    pub(crate) dependents: Vec<u32>,
    /// Task dependencies (node indices); for phases, unused (see `Engine::preds`).
    pub(crate) deps: Box<[u32]>,
    pub(crate) item: ItemRef,
    /// The content hash of (phase, item), extended with the input at each start.
    pub(crate) ident: u64,
    /// The idempotency key: the same for every attempt.
    pub(crate) idem: u64,
    /// Estimated effort of this node (ms).
    pub(crate) est: u64,
    /// Longest remaining path from here, estimates summed.
    pub(crate) cp: u64,
    /// The finished output of a phase that waits for completion or its gate (meaningful in
    /// `Held` and `Gate`; empty otherwise).
    pub(crate) held: CompactOutput,
    /// Attempts started (mirrors the state, also after a rollback).
    pub(crate) attempts: u32,
    pub(crate) priority: Priority,
    /// The next attempt runs degraded.
    pub(crate) degraded: bool,
    /// The degrade step was used.
    pub(crate) degrade_used: bool,
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
            held: CompactOutput::default(),
            ident: 0,
            idem: 0,
        }
    }

    /// The address of the item's id text (see `Engine::recent`).
    pub(crate) fn item_addr(&self) -> usize {
        self.item.as_str().as_ptr() as usize
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

/// A max-queue for keys that mostly arrive in order: the ready tasks (largest key first) and
/// the attempt deadlines (as `Reverse`, earliest first). Keys pushed in non-increasing order
/// (tasks added in order and all alike; deadlines of one phase's attempts) go to a FIFO run
/// and cost O(1); the others go to a binary heap. `pop` takes the larger of the two heads, so
/// the order is exactly a heap's.
#[derive(Debug, Clone)]
pub(crate) struct ReadyQueue<T = ReadyKey> {
    run: VecDeque<T>,
    heap: BinaryHeap<T>,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        ReadyQueue {
            run: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy> ReadyQueue<T> {
    #[inline]
    pub(crate) fn push(&mut self, key: T) {
        if self.run.back().is_none_or(|&last| key <= last) {
            self.run.push_back(key);
        } else {
            self.heap.push(key);
        }
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<&T> {
        match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(b)) if b > a => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<T> {
        match (self.run.front(), self.heap.peek()) {
            (Some(a), Some(b)) if b > a => self.heap.pop(),
            (Some(_), _) => self.run.pop_front(),
            (None, _) => self.heap.pop(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.run.len() + self.heap.len()
    }

    /// Keeps the keys `keep` accepts (the run stays in order).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.run.retain(&mut keep);
        self.heap.retain(keep);
    }

    pub(crate) fn clear(&mut self) {
        self.run.clear();
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A node is read on every start and completion: it stays within two cache lines.
    #[test]
    fn a_node_fits_two_cache_lines() {
        assert!(
            std::mem::size_of::<Node>() <= 128,
            "Node is {} bytes",
            std::mem::size_of::<Node>()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any interleaving of pushes and pops gives what a plain binary heap gives.
        #[test]
        fn ready_queue_pops_like_a_heap(ops in proptest::collection::vec(
            prop_oneof![
                (0u8..4, 0u64..6, 0u32..50).prop_map(Some),
                Just(None),
            ],
            0..200,
        )) {
            let mut q = ReadyQueue::default();
            let mut h = BinaryHeap::new();
            let prio = [Priority::Low, Priority::Medium, Priority::High, Priority::Critical];
            for op in ops {
                match op {
                    Some((p, cp, i)) => {
                        let k = ReadyKey::new(prio[p as usize], cp, i);
                        q.push(k);
                        h.push(k);
                    }
                    None => {
                        prop_assert_eq!(q.peek().copied(), h.peek().copied());
                        prop_assert_eq!(q.pop(), h.pop());
                    }
                }
                prop_assert_eq!(q.len(), h.len());
            }
            // Dropping some keys keeps the order of the rest.
            q.retain(|k| k.index() % 3 != 0);
            h.retain(|k| k.index() % 3 != 0);
            prop_assert_eq!(q.len(), h.len());
            while let Some(k) = h.pop() {
                prop_assert_eq!(q.pop(), Some(k));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }

    #[test]
    fn keys_order_by_priority_then_path_then_earlier_index() {
        let mut q = ReadyQueue::default();
        for k in [
            ReadyKey::new(Priority::Medium, 5, 3),
            ReadyKey::new(Priority::Medium, 5, 1),
            ReadyKey::new(Priority::Critical, 1, 9),
            ReadyKey::new(Priority::Medium, 7, 8),
            ReadyKey::new(Priority::Low, 100, 0),
        ] {
            q.push(k);
        }
        let order: Vec<u32> = std::iter::from_fn(|| q.pop().map(ReadyKey::index)).collect();
        assert_eq!(order, [9, 8, 1, 3, 0]);
    }
}
