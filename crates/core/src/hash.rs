//! A fast, non-cryptographic hasher for small in-process maps keyed by configuration (providers, models,
//! routes, currencies).
//!
//! The standard library's default (SipHash-1-3 with a random key) resists hash flooding by keys an
//! attacker chooses, at ~100–200 instructions per short key. The maps this is meant for are filled from
//! configuration and only *looked up* with request data, so flooding cannot grow them; a multiply-rotate
//! mix (FxHash, as in rustc) with a final avalanche is enough, at a fraction of the cost. Collisions only
//! cost speed, never correctness.
//!
//! ```
//! use genroute_core::hash::FxHashMap;
//!
//! let mut prices: FxHashMap<&str, u32> = FxHashMap::default();
//! prices.insert("gpt-image-1", 42);
//! assert_eq!(prices.get("gpt-image-1"), Some(&42));
//! ```

use std::hash::{BuildHasherDefault, Hasher};

/// The FxHash mix with a murmur3 finaliser. Deterministic (no per-process key).
#[derive(Default, Clone, Copy, Debug)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        // The tail (0 to 7 bytes) is read with fixed-size loads: a variable-length copy would call
        // `memcpy`, which costs more than the hashing itself.
        let rest = chunks.remainder();
        let n = rest.len();
        let tail = |i: usize| u64::from(rest[i]);
        let w = match n {
            0 => return,
            1..=3 => tail(0) | tail(n / 2) << 8 | tail(n - 1) << 16,
            _ => {
                let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
                u64::from(lo) | u64::from(hi) << 32
            }
        };
        self.add(w ^ (n as u64) << 59);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The FxHash mix leaves the low bits (which pick the bucket) blind to high input bytes; finish with
        // murmur3's avalanche so keys differing only in their last characters spread out.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`FxHasher`]s (a `HashMap`'s `S` parameter).
pub type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;
    use crate::{ModelId, ModelRef, ProviderId};

    fn h<T: Hash>(v: &T) -> u64 {
        FxBuildHasher::default().hash_one(v)
    }

    #[test]
    fn equal_keys_hash_equal_and_near_keys_differ() {
        let a = ModelRef::new(
            ProviderId::new("openai").unwrap(),
            ModelId::new("gpt-image-1").unwrap(),
        );
        assert_eq!(h(&a), h(&a.clone()));
        let mut seen = std::collections::HashSet::new();
        // Every tail length (0..=7 bytes past a whole word) and last-character changes give distinct hashes.
        for len in 1..=24 {
            for last in b'a'..=b'e' {
                let mut s = "x".repeat(len - 1);
                s.push(char::from(last));
                assert!(seen.insert(h(&s.as_str())), "collision for {s:?}");
            }
        }
        // The bucket bits (low bits) see the last character too.
        let low: std::collections::HashSet<u64> = (b'a'..=b'z')
            .map(|c| h(&format!("model-{}", char::from(c))) & 0xff)
            .collect();
        assert!(low.len() > 13, "low bits poorly spread: {}", low.len());
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: FxHashMap<String, usize> = FxHashMap::default();
        for i in 0..1000 {
            m.insert(format!("key-{i}"), i);
        }
        assert!((0..1000).all(|i| m.get(&format!("key-{i}")) == Some(&i)));
        assert_eq!(m.get("key-1000"), None);
    }
}
