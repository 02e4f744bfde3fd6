//! [`AddrIndex`]: task positions by the address of their id's text.
//!
//! Ids are `Arc<str>`: the events a host appends are usually clones of ids the state already
//! holds (the engine hands out the state's ids, the store keeps the engine's events), so they
//! share the text's allocation. Finding a task by that address is one multiply and a probe or
//! two, where the id → position map hashes the text and compares it. An address that is not
//! found (an id parsed from JSON, built anew) falls back to the map, so the index is only ever
//! a shortcut: every hit is checked against the task it names.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::id::TaskId;
use crate::state::TaskState;

/// An open-addressing table of task positions (`u32::MAX` = empty), probed by a hash of the
/// id's text address; kept at most half full.
#[derive(Default)]
pub(crate) struct AddrIndex {
    slots: Vec<u32>,
    /// The positions after the last two found: events mostly name tasks in the order they
    /// were listed, in two interleaved runs (completions, and the starts they make room for),
    /// so these are tried before the table (a hit touches a task next to one just touched,
    /// where a probe of the table is a random read). Relaxed atomics: `get` takes `&self` and
    /// the state stays `Sync`.
    next: [AtomicU32; 2],
}

/// Derived data, shown by its size only (a state's `Debug` would otherwise list every slot).
impl fmt::Debug for AddrIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AddrIndex({} slots)", self.slots.len())
    }
}

/// A copy starts empty (lookups fall back to the id map until the next
/// [`extend`](AddrIndex::extend) rebuilds it): copies of a state are mostly checkpoints kept for
/// a rollback, which need no shortcut, and an index per copy would cost memory per task.
impl Clone for AddrIndex {
    fn clone(&self) -> AddrIndex {
        AddrIndex::default()
    }
}

const EMPTY: u32 = u32::MAX;

/// The address of an id's text: what the index is keyed by.
fn addr_of(id: &TaskId) -> usize {
    id.as_str().as_ptr() as usize
}

impl AddrIndex {
    fn home(&self, addr: usize) -> usize {
        let bits = self.slots.len().trailing_zeros();
        ((addr as u64 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The position in `tasks` of the task whose id is `id` (the same text allocation), if
    /// indexed. Every hit is checked against the task it names, so a stale entry is a miss.
    pub(crate) fn get(&self, id: &TaskId, tasks: &[TaskState]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let addr = addr_of(id);
        for next in &self.next {
            let guess = next.load(Ordering::Relaxed) as usize;
            if tasks
                .get(guess)
                .is_some_and(|t| addr_of(&t.spec.id) == addr)
            {
                next.store((guess as u32).wrapping_add(1), Ordering::Relaxed);
                return Some(guess);
            }
        }
        let mask = self.slots.len() - 1;
        let mut k = self.home(addr);
        loop {
            let pos = self.slots[k];
            if pos == EMPTY {
                return None;
            }
            if tasks
                .get(pos as usize)
                .is_some_and(|t| addr_of(&t.spec.id) == addr)
            {
                let [a, b] = &self.next;
                b.store(a.load(Ordering::Relaxed), Ordering::Relaxed);
                a.store(pos.wrapping_add(1), Ordering::Relaxed);
                return Some(pos as usize);
            }
            k = (k + 1) & mask;
        }
    }

    /// Indexes `tasks[from..]` (appended since the last call), growing the table when needed
    /// (then every task is indexed again). Positions past `u32::MAX - 1` are left to the map.
    pub(crate) fn extend(&mut self, from: usize, tasks: &[TaskState]) {
        let len = tasks.len().min(EMPTY as usize);
        let from = if len * 2 > self.slots.len() {
            let size = (len * 2).next_power_of_two().max(64);
            self.slots = vec![EMPTY; size];
            0
        } else {
            from
        };
        for (pos, t) in tasks.iter().enumerate().take(len).skip(from) {
            self.put(pos, addr_of(&t.spec.id));
        }
    }

    fn put(&mut self, pos: usize, addr: usize) {
        let mask = self.slots.len() - 1;
        let mut k = self.home(addr);
        while self.slots[k] != EMPTY {
            k = (k + 1) & mask;
        }
        self.slots[k] = pos as u32;
    }
}

/// Derived data: two states are equal whatever their ids' addresses.
impl PartialEq for AddrIndex {
    fn eq(&self, _: &AddrIndex) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ItemState, TaskSpec};

    fn tasks(n: usize) -> Vec<TaskState> {
        (0..n)
            .map(|i| TaskState {
                spec: TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "t"),
                item: ItemState::default(),
            })
            .collect()
    }

    #[test]
    fn finds_every_indexed_id_by_its_address_and_nothing_else() {
        let all = tasks(1000);
        let id = |i: usize| &all[i].spec.id;
        let mut index = AddrIndex::default();
        assert_eq!(index.get(id(0), &all), None);
        // Grown in uneven steps.
        for (from, to) in [(0, 1), (1, 40), (40, 41), (41, 700), (700, 1000)] {
            index.extend(from, &all[..to]);
            for i in 0..to {
                assert_eq!(index.get(id(i), &all[..to]), Some(i), "t{i} after {to}");
            }
        }
        // The same text elsewhere is not found: the map answers for it.
        let fresh = TaskId::new("t5").unwrap();
        assert_eq!(index.get(&fresh, &all), None);
        // A clone shares the address.
        let clone = id(5).clone();
        assert_eq!(index.get(&clone, &all), Some(5));
        // A copy of the index starts empty, and the next extension rebuilds it whole.
        let mut copy = index.clone();
        assert_eq!(copy.get(id(5), &all), None);
        copy.extend(1000, &all);
        assert_eq!(copy.get(id(5), &all), Some(5));
        // Entries for positions the tasks no longer reach are misses, not panics.
        assert_eq!(index.get(id(999), &all[..10]), None);
        assert_eq!(format!("{index:?}"), "AddrIndex(2048 slots)");
    }

    #[test]
    fn the_guess_of_the_next_position_never_answers_for_another_task() {
        let all = tasks(300);
        let mut index = AddrIndex::default();
        index.extend(0, &all);
        // In order and in two interleaved runs (the guesses hit), backwards, and by strides
        // (they miss): always right.
        let orders: [Vec<usize>; 4] = [
            (0..300).collect(),
            (0..150).flat_map(|i| [i, i + 150]).collect(),
            (0..300).rev().collect(),
            (0..300).map(|i| (i * 7) % 300).collect(),
        ];
        for order in orders {
            for i in order {
                assert_eq!(index.get(&all[i].spec.id, &all), Some(i));
            }
        }
        // A guess past the tasks given is a miss, not a panic; an id not indexed is not found
        // even when the guess points at a task.
        assert_eq!(index.get(&all[299].spec.id, &all), Some(299));
        assert_eq!(index.get(&all[5].spec.id, &all[..3]), None);
        assert_eq!(index.get(&all[0].spec.id, &all), Some(0));
        let fresh = TaskId::new("t1").unwrap();
        assert_eq!(index.get(&fresh, &all), None);
    }
}
