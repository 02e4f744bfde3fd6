//! [`AddrIndex`]: task positions by the address of their id's text.
//!
//! Ids are `Arc<str>`: the events a host appends are usually clones of ids the state already
//! holds (the engine hands out the state's ids, the store keeps the engine's events), so they
//! share the text's allocation. Finding a task by that address is one multiply and a probe or
//! two, where the id → position map hashes the text and compares it. An address that is not
//! found (an id parsed from JSON, built anew) falls back to the map, so the index is only ever
//! a shortcut: every hit is checked against the task it names.

/// An open-addressing table of task positions (`u32::MAX` = empty), probed by a hash of the
/// id's text address; kept at most half full.
#[derive(Debug, Default)]
pub(crate) struct AddrIndex {
    slots: Vec<u32>,
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

impl AddrIndex {
    fn home(&self, addr: usize) -> usize {
        let bits = self.slots.len().trailing_zeros();
        ((addr as u64 >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The position of the task whose id text is at `addr`, if indexed; `addr_of(pos)` gives
    /// the address of the id at a position.
    pub(crate) fn get(&self, addr: usize, addr_of: impl Fn(usize) -> usize) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut k = self.home(addr);
        loop {
            let pos = self.slots[k];
            if pos == EMPTY {
                return None;
            }
            if addr_of(pos as usize) == addr {
                return Some(pos as usize);
            }
            k = (k + 1) & mask;
        }
    }

    /// Indexes the tasks at positions `from..len` (appended since the last call), growing the
    /// table when needed. Positions past `u32::MAX - 1` are left to the map.
    pub(crate) fn extend(&mut self, from: usize, len: usize, addr_of: impl Fn(usize) -> usize) {
        let len = len.min(EMPTY as usize);
        if len * 2 > self.slots.len() {
            let size = (len * 2).next_power_of_two().max(64);
            self.slots = vec![EMPTY; size];
            for pos in 0..len {
                self.put(pos, addr_of(pos));
            }
        } else {
            for pos in from..len {
                self.put(pos, addr_of(pos));
            }
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
    use crate::id::TaskId;

    #[test]
    fn finds_every_indexed_id_by_its_address_and_nothing_else() {
        let ids: Vec<TaskId> = (0..1000)
            .map(|i| TaskId::new(format!("t{i}")).unwrap())
            .collect();
        let addr = |i: usize| ids[i].as_str().as_ptr() as usize;
        let mut index = AddrIndex::default();
        assert_eq!(index.get(addr(0), addr), None);
        // Grown in uneven steps.
        for (from, to) in [(0, 1), (1, 40), (40, 41), (41, 700), (700, 1000)] {
            index.extend(from, to, addr);
            for i in 0..to {
                assert_eq!(index.get(addr(i), addr), Some(i), "t{i} after {to}");
            }
        }
        // The same text elsewhere is not found: the map answers for it.
        let fresh = TaskId::new("t5").unwrap();
        assert_eq!(index.get(fresh.as_str().as_ptr() as usize, addr), None);
        // A clone shares the address.
        let clone = ids[5].clone();
        assert_eq!(index.get(clone.as_str().as_ptr() as usize, addr), Some(5));
        // A copy of the index starts empty, and the next extension rebuilds it whole.
        let mut copy = index.clone();
        assert_eq!(copy.get(addr(5), addr), None);
        copy.extend(1000, 1000, addr);
        assert_eq!(copy.get(addr(5), addr), Some(5));
    }
}
