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

/// Where a node's list lies in one of the [`Edges`] arenas, and how much room it has there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) at: u32,
    pub(crate) len: u32,
    pub(crate) cap: u32,
}

impl Span {
    /// The positions of its entries in the arena.
    #[inline]
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.at as usize..self.at as usize + self.len as usize
    }
}

/// The task graph's edges in two flat arenas: each node's dependencies (fixed when the node
/// joins) and its dependents (which grow as tasks join). A completion reads its dependents
/// from one array, in order, where a list per node was an allocation of its own to chase.
/// Positions are `u32`, as node positions are.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edges {
    pub(crate) deps: Vec<u32>,
    pub(crate) dependents: Vec<u32>,
}

impl Edges {
    pub(crate) fn clear(&mut self) {
        self.deps.clear();
        self.dependents.clear();
    }

    /// Stores a node's dependencies (appended: they never change).
    pub(crate) fn add_deps(&mut self, deps: impl IntoIterator<Item = u32>) -> Span {
        let at = self.deps.len();
        self.deps.extend(deps);
        let len = (self.deps.len() - at) as u32;
        Span {
            at: at as u32,
            len,
            cap: len,
        }
    }

    /// Lays out the dependents of every node from their counts (`counts[i]` for node `i`),
    /// packed in node order: each span gets its room, filled by
    /// [`push_dependent`](Edges::push_dependent).
    pub(crate) fn reserve_dependents(&mut self, counts: &[u32]) -> Vec<Span> {
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        self.dependents.clear();
        self.dependents.resize(total, 0);
        let mut at = 0u32;
        counts
            .iter()
            .map(|&cap| {
                let span = Span { at, len: 0, cap };
                at += cap;
                span
            })
            .collect()
    }

    /// Adds `d` to the dependents at `span`. A full span moves to the end of the arena with
    /// twice the room (or grows in place when it is already last): amortized O(1).
    pub(crate) fn push_dependent(&mut self, span: &mut Span, d: u32) {
        if span.len == span.cap {
            let cap = (span.cap * 2).max(4);
            let end = span.at as usize + span.cap as usize;
            if end == self.dependents.len() && span.cap > 0 {
                self.dependents.resize(span.at as usize + cap as usize, 0);
            } else {
                let at = self.dependents.len();
                self.dependents.extend_from_within(span.range());
                self.dependents.resize(at + cap as usize, 0);
                span.at = at as u32;
            }
            span.cap = cap;
        }
        self.dependents[span.at as usize + span.len as usize] = d;
        span.len += 1;
    }
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
    /// Tasks depending on this one, in [`Edges::dependents`].
    pub(crate) dependents: Span,
    /// Task dependencies (node indices), in [`Edges::deps`]; for phases, empty (see
    /// `Engine::preds`).
    pub(crate) deps: Span,
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
            deps: Span::default(),
            dependents: Span::default(),
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

    /// Room for `n` more keys arriving in order (a batch of tasks readied at once), so that
    /// the run is not regrown and copied step by step.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.run.reserve(n);
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

        /// Dependents laid out from counts, then pushed onto any node in any order (beyond
        /// the counts too: tasks joining later), read back as a list per node would; the
        /// dependencies stored read back as given.
        #[test]
        fn edges_read_back_like_a_list_per_node(
            counts in proptest::collection::vec(0u32..4, 1..12),
            pushes in proptest::collection::vec((0usize..12, 0u32..1000), 0..120),
            deps in proptest::collection::vec(proptest::collection::vec(0u32..50, 0..5), 0..8),
        ) {
            let mut edges = Edges::default();
            let mut spans = edges.reserve_dependents(&counts);
            let mut model: Vec<Vec<u32>> = vec![Vec::new(); counts.len()];
            for (node, d) in pushes {
                let node = node % counts.len();
                edges.push_dependent(&mut spans[node], d);
                model[node].push(d);
                for (span, list) in spans.iter().zip(&model) {
                    prop_assert_eq!(&edges.dependents[span.range()], list.as_slice());
                }
            }
            // Spans that hold room never overlap (an empty one may sit anywhere: its first push
            // moves it to the end).
            let mut taken: Vec<(u32, u32)> = spans
                .iter()
                .filter(|s| s.cap > 0)
                .map(|s| (s.at, s.at + s.cap))
                .collect();
            taken.sort_unstable();
            for w in taken.windows(2) {
                prop_assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
            }
            let stored: Vec<Span> = deps.iter().map(|d| edges.add_deps(d.iter().copied())).collect();
            for (span, d) in stored.iter().zip(&deps) {
                prop_assert_eq!(&edges.deps[span.range()], d.as_slice());
            }
            edges.clear();
            prop_assert!(edges.deps.is_empty() && edges.dependents.is_empty());
        }

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
