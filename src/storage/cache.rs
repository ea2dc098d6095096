//! The recent-entries cache: a contiguous suffix of the log, bounded by the
//! memory it holds, so followers that are close behind are served from
//! memory.
//!
//! Each entry is charged its data plus a fixed overhead (the `Entry` itself
//! in the queue and the shared buffer's header): with small entries the
//! overhead is most of the memory, so a cap on data bytes alone would not
//! bound the cache.
//!
//! Besides its own cap (`log_cache_bytes`), every cache of the process is
//! charged against one process-wide budget ([`set_cache_budget`]): a push
//! that takes the process over the budget evicts the pushing cache's oldest
//! entries until the process is back under it (or the cache is empty). So
//! a process hosting 1,000 groups holds at most the budget in log caches,
//! not 1,000 × the per-node cap, and the groups that write keep their
//! recent entries while the idle ones hold what they last cached.

//!
//! The same budget also counts the entry data of Appends in flight (sent by
//! a leader, not yet acknowledged; [`charge_in_flight`], by each leader's
//! driver): while the two together exceed it, caches evict as above, and a
//! leader adds to its data in flight only what the budget has left, else
//! keeps one Append with entries in flight per peer
//! (`Raft::set_in_flight_limit`), so unacknowledged data stops growing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The process-wide budget of every log cache by default: 256 MiB.
pub const DEFAULT_CACHE_BUDGET: u64 = 256 << 20;

static BUDGET: AtomicU64 = AtomicU64::new(DEFAULT_CACHE_BUDGET);
static CHARGED: AtomicU64 = AtomicU64::new(0);
/// Entry data of Appends in flight, summed over the process's leaders.
static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// Adds `delta` bytes (negative: acknowledged or dropped) to the data of
/// Appends in flight charged to the budget.
pub fn charge_in_flight(delta: i64) {
    IN_FLIGHT.fetch_add(delta, Ordering::Relaxed);
}

/// Bytes of entry data in Appends in flight in this process (sent by its
/// leaders and not acknowledged yet).
pub fn in_flight_bytes() -> u64 {
    IN_FLIGHT.load(Ordering::Relaxed).max(0) as u64
}

/// True while the log caches and the data in flight together exceed the
/// process-wide budget.
pub fn memory_over_budget() -> bool {
    memory_used() > BUDGET.load(Ordering::Relaxed)
}

fn memory_used() -> u64 {
    CHARGED.load(Ordering::Relaxed) + in_flight_bytes()
}

/// What the process-wide budget leaves for the data in flight of one
/// leader that has `own` bytes in flight now: the budget less the log
/// caches and everyone else's data in flight. Counting the leader's own
/// data as used and adding it back would not do: an Append sent over the
/// limit (one per peer is always allowed) would then raise the leader's
/// next limit, and the data in flight would ratchet up turn by turn.
pub fn in_flight_allowance(own: u64) -> u64 {
    BUDGET
        .load(Ordering::Relaxed)
        .saturating_sub(memory_used().saturating_sub(own))
}

/// Sets the process-wide budget of the log caches and the data in flight
/// in bytes (0 = the default). Applies from the next push of each cache
/// and the next turn of each leader.
pub fn set_cache_budget(bytes: u64) {
    let bytes = if bytes == 0 {
        DEFAULT_CACHE_BUDGET
    } else {
        bytes
    };
    BUDGET.store(bytes, Ordering::Relaxed);
}

/// The process-wide budget of the log caches, and what they hold now, in
/// bytes.
pub fn cache_budget() -> (u64, u64) {
    (
        BUDGET.load(Ordering::Relaxed),
        CHARGED.load(Ordering::Relaxed),
    )
}

use crate::proto::Entry;

/// What one cached entry costs beyond its data bytes.
const ENTRY_OVERHEAD: u64 = std::mem::size_of::<Entry>() as u64 + 64;

fn cost(e: &Entry) -> u64 {
    e.data.len() as u64 + ENTRY_OVERHEAD
}

#[derive(Debug)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: u64,
    cap: u64,
}

impl EntryCache {
    pub fn new(cap_bytes: u64) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            cap: cap_bytes,
        }
    }

    /// Index of the oldest cached entry, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Appends `e`, which must directly follow the newest cached entry (or
    /// the cache is empty), evicting the oldest entries past the byte cap.
    pub fn push(&mut self, e: &Entry) {
        if let Some(b) = self.entries.back() {
            if b.index + 1 != e.index {
                self.clear();
            }
        }
        self.charge(cost(e));
        self.entries.push_back(e.clone());
        while self.bytes > self.cap || memory_over_budget() {
            match self.entries.pop_front() {
                Some(old) => self.release(cost(&old)),
                None => break,
            }
        }
    }

    fn charge(&mut self, bytes: u64) {
        self.bytes += bytes;
        CHARGED.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&mut self, bytes: u64) {
        self.bytes -= bytes;
        CHARGED.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        index
            .checked_sub(first)
            .and_then(|i| self.entries.get(i as usize))
    }

    /// Forgets every entry after `last_kept`.
    pub fn truncate_after(&mut self, last_kept: u64) {
        while matches!(self.entries.back(), Some(e) if e.index > last_kept) {
            let e = self.entries.pop_back().unwrap();
            self.release(cost(&e));
        }
    }

    /// Forgets every entry before `first`.
    pub fn drop_before(&mut self, first: u64) {
        while matches!(self.entries.front(), Some(e) if e.index < first) {
            let e = self.entries.pop_front().unwrap();
            self.release(cost(&e));
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        let held = self.bytes;
        self.release(held);
    }
}

impl Drop for EntryCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, len: usize) -> Entry {
        Entry {
            term: 1,
            index,
            entry_type: 1,
            data: bytes::Bytes::from(vec![7u8; len]),
        }
    }

    /// Every test here pushes into caches charged to the one process-wide
    /// budget, and one of them shrinks it: they take turns, or a cache of one
    /// test evicts its entries for another's.
    static BUDGET_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn budget_turn() -> std::sync::MutexGuard<'static, ()> {
        BUDGET_TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn small_entries_are_charged_their_overhead() {
        let _turn = budget_turn();
        let mut cache = EntryCache::new(64 * 1024);
        for i in 1..=10_000 {
            cache.push(&entry(i, 8));
        }
        let held = 10_001 - cache.first_index().unwrap();
        // 8 data bytes each would let all 10,000 fit in 64 KiB; with the
        // overhead counted, the cache holds what its cap allows.
        assert!(held * (8 + ENTRY_OVERHEAD) <= 64 * 1024, "held {held}");
        assert!(held > 64 * 1024 / (8 + ENTRY_OVERHEAD) / 2, "held {held}");
        assert!(cache.get(10_000).is_some());
    }

    #[test]
    fn the_process_budget_bounds_every_cache_together() {
        let _turn = budget_turn();
        // Other tests of this binary charge the same budget meanwhile (and
        // may release what they held at the start): bound this test's
        // caches by the budget plus that.
        let mut caches: Vec<EntryCache> = (0..4).map(|_| EntryCache::new(1 << 30)).collect();
        let (_, before) = cache_budget();
        set_cache_budget(before + (1 << 20));
        for i in 1..=4_000 {
            for cache in &mut caches {
                cache.push(&entry(i, 1000));
            }
        }
        let held: u64 = caches.iter().map(|c| c.bytes).sum();
        set_cache_budget(0);
        // Without the budget they would hold 4 × 4,000 × 1,000 bytes.
        assert!(
            held <= before + (1 << 20) + 4 * (1000 + ENTRY_OVERHEAD),
            "held {held}"
        );
        // Every cache still holds its newest entry: each evicts its own oldest.
        assert!(caches.iter().all(|c| c.get(4_000).is_some()));
        drop(caches);
        assert!(cache_budget().1 <= before + (1 << 20));
    }

    #[test]
    fn truncation_and_dropping_release_their_charge() {
        let _turn = budget_turn();
        let mut cache = EntryCache::new(1 << 20);
        for i in 1..=100 {
            cache.push(&entry(i, 100));
        }
        cache.truncate_after(50);
        cache.drop_before(26);
        assert_eq!(cache.bytes, 25 * (100 + ENTRY_OVERHEAD));
        assert_eq!(cache.first_index(), Some(26));
        assert!(cache.get(51).is_none());
    }
}
