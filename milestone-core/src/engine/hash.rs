//! Hashing: stable hashes for cache keys, idempotency keys and backoff jitter, and a fast
//! keyed hasher for the id → index maps.
//!
//! The stable hash is FNV-1a 64 over a canonical encoding: every value is tagged with its type
//! and length, and object entries are hashed in key order, so the hash does not depend on map
//! order or on serde_json's `preserve_order` feature. The result is finished with the
//! splitmix64 mixer so that its low bits are usable as random numbers (jitter).
//!
//! [`IdHashState`] serves the maps from ids to positions, looked up on every item event. Ids
//! come from plans and agents, so an attacker may choose them: the hash is keyed with a
//! per-process random seed (taken once from the standard library's `RandomState`), which keeps
//! collisions unpredictable, and it reads eight bytes per multiply instead of SipHash's
//! rounds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use serde_json::Value;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a 64 hasher over a canonical encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(OFFSET)
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }

    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.bytes(&[0]),
            Value::Bool(b) => self.bytes(&[1, u8::from(*b)]),
            Value::Number(n) => {
                if let Some(i) = n.as_u64() {
                    self.bytes(&[2]);
                    self.u64(i);
                } else if let Some(i) = n.as_i64() {
                    self.bytes(&[3]);
                    self.u64(i as u64);
                } else {
                    self.bytes(&[4]);
                    self.u64(n.as_f64().map_or(0, f64::to_bits));
                }
            }
            Value::String(s) => {
                self.bytes(&[5]);
                self.str(s);
            }
            Value::Array(a) => {
                self.bytes(&[6]);
                self.u64(a.len() as u64);
                for x in a {
                    self.value(x);
                }
            }
            Value::Object(m) => {
                self.bytes(&[7]);
                self.u64(m.len() as u64);
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (k, x) in entries {
                    self.str(k);
                    self.value(x);
                }
            }
        }
    }

    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// The splitmix64 finalizer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Multiplies into 128 bits and folds the halves: every input bit reaches every output bit.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

const ID_K1: u64 = 0x9e37_79b9_7f4a_7c15;
const ID_K2: u64 = 0xbf58_476d_1ce4_e5b9;

/// Builds [`IdHasher`]s keyed with the process's random seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHashState {
    seed: u64,
}

impl IdHashState {
    pub(crate) fn new() -> IdHashState {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x6d69_6c65_7374_6f6e_u64));
        IdHashState { seed }
    }
}

impl Default for IdHashState {
    fn default() -> IdHashState {
        IdHashState::new()
    }
}

impl BuildHasher for IdHashState {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// A keyed multiply-fold hasher: eight bytes per step, the length mixed in first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0.wrapping_add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = fold(h ^ u64::from_le_bytes(w), ID_K1);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = fold(h ^ u64::from_le_bytes(w), ID_K1);
        }
        self.0 = h;
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = fold(self.0 ^ u64::from(i), ID_K1);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = fold(self.0 ^ i, ID_K1);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        fold(self.0, ID_K2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &Value) -> u64 {
        let mut f = Fnv::new();
        f.value(v);
        f.finish()
    }

    #[test]
    fn object_key_order_does_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"a":1,"b":[true,null,"x"],"c":{"y":2,"x":1}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"c":{"x":1,"y":2},"b":[true,null,"x"],"a":1}"#).unwrap();
        assert_eq!(h(&a), h(&b));
    }

    #[test]
    fn different_values_hash_differently() {
        let cases = [
            "null",
            "false",
            "true",
            "0",
            "1",
            "-1",
            "1.5",
            "\"\"",
            "\"a\"",
            "[]",
            "[null]",
            "{}",
            "{\"a\":null}",
            "{\"b\":null}",
            "[\"a\",\"b\"]",
            "[\"ab\"]",
        ];
        let hashes: Vec<u64> = cases
            .iter()
            .map(|c| h(&serde_json::from_str(c).unwrap()))
            .collect();
        for i in 0..hashes.len() {
            for j in 0..i {
                assert_ne!(hashes[i], hashes[j], "{} vs {}", cases[i], cases[j]);
            }
        }
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        // FNV-1a 64 reference values: a change of the hash changes every cache key.
        for (input, expected) in [
            ("", 0xcbf2_9ce4_8422_2325_u64),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("foobar", 0x8594_4171_f739_67e8),
        ] {
            let mut f = Fnv::new();
            f.bytes(input.as_bytes());
            assert_eq!(f.0, expected, "{input:?}");
        }
    }

    fn id_hash(s: &str) -> u64 {
        IdHashState::new().hash_one(s)
    }

    #[test]
    fn id_hash_is_stable_within_a_process_and_separates_ids() {
        assert_eq!(id_hash("t1"), id_hash("t1"));
        // Zero padding of the last chunk, chunk boundaries and the length are all seen.
        let tricky = [
            "",
            "a",
            "a\0",
            "ab",
            "ab\0",
            "abcdefg",
            "abcdefg\u{7}",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "ba",
            "t1",
            "t10",
            "t01",
        ];
        let mut seen = std::collections::HashSet::new();
        for s in tricky {
            assert!(seen.insert(id_hash(s)), "{s:?} collides");
        }
        // No full 64-bit collision over many ids of the shape plans use, and the buckets a
        // table would use (low bits) are spread.
        let mut all = std::collections::HashSet::new();
        let mut buckets = [0u32; 64];
        for i in 0..50_000 {
            let h = id_hash(&format!("task-{i}"));
            assert!(all.insert(h), "task-{i} collides");
            buckets[(h & 63) as usize] += 1;
        }
        let (lo, hi) = (buckets.iter().min(), buckets.iter().max());
        assert!(
            lo.zip(hi).is_some_and(|(lo, hi)| *lo > 600 && *hi < 1000),
            "{buckets:?}"
        );
    }

    #[test]
    fn id_maps_find_what_they_hold() {
        let mut m: std::collections::HashMap<crate::id::TaskId, usize, IdHashState> =
            std::collections::HashMap::default();
        for i in 0..1_000 {
            m.insert(crate::id::TaskId::new(format!("t{i}")).unwrap(), i);
        }
        for i in 0..1_000 {
            assert_eq!(m.get(format!("t{i}").as_str()), Some(&i));
        }
        assert_eq!(m.get("t1000"), None);
    }

    #[test]
    fn the_seed_keys_the_hash() {
        let a = IdHasher(1);
        let b = IdHasher(2);
        let h = |mut x: IdHasher| {
            x.write(b"same-id");
            x.finish()
        };
        assert_ne!(h(a), h(b));
    }
}
