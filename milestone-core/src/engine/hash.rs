//! Stable hashing for cache keys, idempotency keys and backoff jitter.
//!
//! FNV-1a 64 over a canonical encoding: every value is tagged with its type and length, and
//! object entries are hashed in key order, so the hash does not depend on map order or on
//! serde_json's `preserve_order` feature. The result is finished with the splitmix64 mixer so
//! that its low bits are usable as random numbers (jitter).

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
}
