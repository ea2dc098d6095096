//! Values keyed by log index, for keys that mostly arrive in increasing
//! order and leave from the front: a node's proposals waiting for their
//! entries to be applied. A sorted `VecDeque` makes that common case O(1)
//! (push at the back, pop at the front) where a `BTreeMap` walks and
//! rebalances its nodes for every entry; an index out of order (a proposal
//! at an index a new leader truncated) costs a binary search.

use std::collections::VecDeque;

/// Values sorted by their `u64` key, each key at most once.
pub(crate) struct IndexQueue<T> {
    items: VecDeque<(u64, T)>,
}

impl<T> Default for IndexQueue<T> {
    fn default() -> Self {
        IndexQueue {
            items: VecDeque::new(),
        }
    }
}

impl<T> IndexQueue<T> {
    /// Stores `value` at `index`; answers the value it replaces.
    pub(crate) fn insert(&mut self, index: u64, value: T) -> Option<T> {
        if self.items.back().map_or(true, |(last, _)| *last < index) {
            self.items.push_back((index, value));
            return None;
        }
        match self.items.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => Some(std::mem::replace(&mut self.items[at].1, value)),
            Err(at) => {
                self.items.insert(at, (index, value));
                None
            }
        }
    }

    /// Takes the value at `index`.
    pub(crate) fn remove(&mut self, index: u64) -> Option<T> {
        match self.items.front() {
            Some((first, _)) if *first == index => self.items.pop_front().map(|(_, v)| v),
            Some((first, _)) if *first < index => {
                let at = self.items.binary_search_by_key(&index, |(i, _)| *i).ok()?;
                self.items.remove(at).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Takes every value at an index up to `last`, in index order.
    pub(crate) fn take_through(&mut self, last: u64) -> Vec<(u64, T)> {
        let n = self.items.partition_point(|(i, _)| *i <= last);
        self.items.drain(..n).collect()
    }

    /// Takes every value, in index order.
    pub(crate) fn take_all(&mut self) -> VecDeque<(u64, T)> {
        std::mem::take(&mut self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::IndexQueue;
    use std::collections::BTreeMap;

    /// Every operation agrees with a `BTreeMap` over a long mixed run
    /// (mostly in order, with rewinds like a truncating leader's).
    #[test]
    fn an_index_queue_behaves_like_a_btree_map() {
        let mut q = IndexQueue::default();
        let mut m = BTreeMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut tip = 1u64;
        let mut oldest = 1u64;
        for step in 0..20_000u64 {
            tip = tip.max(oldest);
            match next() % 10 {
                0..=4 => {
                    // Mostly the next index, sometimes a rewind.
                    let index = if next() % 20 == 0 {
                        oldest + next() % (tip - oldest + 1)
                    } else {
                        tip
                    };
                    tip = tip.max(index + 1);
                    assert_eq!(
                        q.insert(index, step),
                        m.insert(index, step),
                        "insert {index}"
                    );
                }
                5..=8 => {
                    let index = if next() % 10 == 0 {
                        oldest + next() % (tip - oldest + 1)
                    } else {
                        oldest
                    };
                    assert_eq!(q.remove(index), m.remove(&index), "remove {index}");
                    if index == oldest {
                        oldest += 1;
                    }
                }
                _ => {
                    let last = oldest + next() % 4;
                    let want: Vec<(u64, u64)> = m.range(..=last).map(|(i, v)| (*i, *v)).collect();
                    m.retain(|i, _| *i > last);
                    assert_eq!(q.take_through(last), want, "take through {last}");
                    oldest = oldest.max(last + 1);
                }
            }
        }
        let rest: Vec<(u64, u64)> = q.take_all().into_iter().collect();
        assert_eq!(rest, m.into_iter().collect::<Vec<_>>());
    }
}
