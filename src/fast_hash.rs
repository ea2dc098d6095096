//! A fast, non-cryptographic hasher (a folded multiply per 8 bytes, with
//! murmur3's final mix) for maps looked up on every message or log read: group names in the
//! server's routing table, group ids in the shared log. Their keys are
//! chosen by this process (a peer only looks names up), so the flooding
//! resistance of the default SipHash buys nothing there, and SipHash costs
//! several times more per lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hashed with [`FoldHasher`].
pub(crate) type FastHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Hashes 8 bytes at a time: rotate, xor, folded multiply; mixes the result so
/// that its low bits (the table's bucket) depend on every input bit. Without
/// the mix, short names such as `m0`..`m999` land in a few dozen buckets.
#[derive(Default, Clone, Copy)]
pub(crate) struct FoldHasher {
    hash: u64,
}

impl FoldHasher {
    fn add(&mut self, word: u64) {
        // The folded 128-bit product: a difference in the high bits of a
        // word reaches the low bits too (a plain multiply keeps it high,
        // and names that differ only there would collide).
        let product = u128::from(self.hash.rotate_left(5) ^ word) * u128::from(SEED);
        self.hash = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    #[test]
    fn names_that_differ_in_any_byte_hash_apart() {
        let hash = |s: &str| {
            let mut h = FoldHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        let names: Vec<String> = (0..2000).map(|i| format!("group_{i}")).collect();
        let mut hashes: Vec<u64> = names.iter().map(|n| hash(n)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
    }

    #[test]
    fn short_names_spread_over_the_low_bits() {
        let low_bits = |s: String| {
            let mut h = FoldHasher::default();
            s.hash(&mut h);
            h.finish() & 2047
        };
        let mut buckets: Vec<u64> = (0..1000).map(|i| low_bits(format!("m{i}"))).collect();
        buckets.sort_unstable();
        buckets.dedup();
        // Uniform hashing fills about 790 of 2048 buckets with 1000 keys.
        assert!(buckets.len() > 700, "{} buckets", buckets.len());
    }

    #[test]
    fn a_map_finds_every_key_it_holds() {
        let mut m: FastHashMap<u32, u32> = FastHashMap::default();
        for i in 0..1000u32 {
            m.insert(i, i * 2);
        }
        assert!((0..1000u32).all(|i| m.get(&i) == Some(&(i * 2))));
        assert_eq!(m.get(&1000), None);
    }
}
