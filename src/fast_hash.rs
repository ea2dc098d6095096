//! The hasher of maps looked up on every message or log read: group names
//! in the server's routing table, group ids in the shared log. Their keys
//! are chosen by this process (a peer only looks names up), so SipHash's
//! flooding resistance buys little there and costs several times more per
//! lookup. `foldhash` (a folded multiply per word, randomly seeded per
//! process) spreads short names such as `m0`..`m999` over every bucket,
//! which the simpler Fx hash does not.

use std::collections::HashMap;

/// A `HashMap` hashed with foldhash's fast hasher.
pub(crate) type FastHashMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hasher() -> foldhash::fast::RandomState {
        FastHashMap::<String, ()>::default().hasher().clone()
    }

    #[test]
    fn names_that_differ_in_any_byte_hash_apart() {
        let state = hasher();
        let names: Vec<String> = (0..2000).map(|i| format!("group_{i}")).collect();
        let mut hashes: Vec<u64> = names.iter().map(|n| state.hash_one(n)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
    }

    #[test]
    fn short_names_spread_over_the_low_bits() {
        let state = hasher();
        let mut buckets: Vec<u64> = (0..1000)
            .map(|i| state.hash_one(format!("m{i}")) & 2047)
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        // Uniform hashing fills about 790 of 2048 buckets with 1000 keys.
        assert!(buckets.len() > 700, "{} buckets", buckets.len());
    }
}
