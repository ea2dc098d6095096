//! The core's view of the log: the durable part (read through
//! [`LogStorage`]) plus `unstable`, the entries appended in memory whose
//! write the runtime has not confirmed yet; and the commit / persisted /
//! applied cursors.
//!
//! Invariants:
//! - `unstable[i]` has index `offset + i`; every index below `offset` is
//!   durable and belongs to this log (storage may still hold stale entries
//!   at or beyond `offset` until the runtime persists a truncation).
//! - persisted index == `offset - 1`.
//! - indices <= `floor` are never read from storage (they were replaced by a
//!   restored snapshot whose write may still be in flight).
//! - `kept` holds durable entries `[offset - kept.len(), offset - 1]`, each
//!   above `handed_committed`: entries the runtime persisted that are not yet
//!   handed to the state machine. They are the log's own (a truncation
//!   below `offset` drops the ones it replaces), so reads of them (the
//!   committed entries of the next Ready, the terms a follower matches) need
//!   no storage access.

use std::collections::VecDeque;

use super::api::{Entry, SnapshotMeta, StorageError};
use super::storage::{extend_within_bytes, LogStorage};

/// At most this many durable entries stay in memory (`kept`) waiting to be
/// handed out; older ones are read from storage. Small: a process may hold
/// a thousand logs, and entries a leader cannot commit pile up here.
const KEEP_MAX_ENTRIES: usize = 512;
/// At most this much entry data stays in `kept`.
const KEEP_MAX_BYTES: u64 = 128 << 10;

pub struct RaftLog<S: LogStorage> {
    pub storage: S,
    unstable: Vec<Entry>,
    offset: u64,
    /// Durable entries not handed out yet, ending at `offset - 1`.
    kept: VecDeque<Entry>,
    /// Data bytes of `kept`.
    kept_bytes: u64,
    /// Index and term of the last entry released from `kept` once handed
    /// out (0, 0: none): the entry before the next Append's, whose term
    /// the leader sends and the follower matches.
    released: (u64, u64),
    /// Last unstable index already handed out in a Ready.
    handed: u64,
    /// The newest snapshot known (local or installed); index 0 = none.
    snapshot: SnapshotMeta,
    /// A restored snapshot not yet handed out in a Ready.
    pending_snapshot: Option<SnapshotMeta>,
    floor: u64,
    pub committed: u64,
    /// Last committed index handed out in `Ready::committed_entries`.
    pub handed_committed: u64,
    pub applied: u64,
}

impl<S: LogStorage> RaftLog<S> {
    pub fn new(storage: S, snapshot: Option<SnapshotMeta>) -> RaftLog<S> {
        let snapshot = snapshot.unwrap_or_default();
        let offset = storage.last_index().max(snapshot.last_index) + 1;
        RaftLog {
            storage,
            unstable: Vec::new(),
            offset,
            kept: VecDeque::new(),
            kept_bytes: 0,
            released: (0, 0),
            handed: offset - 1,
            floor: 0,
            pending_snapshot: None,
            committed: snapshot.last_index,
            handed_committed: snapshot.last_index,
            applied: snapshot.last_index,
            snapshot,
        }
    }

    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn first_index(&self) -> u64 {
        self.storage
            .first_index()
            .max(self.floor + 1)
            .min(self.offset)
    }

    pub fn last_index(&self) -> u64 {
        self.offset + self.unstable.len() as u64 - 1
    }

    pub fn persisted(&self) -> u64 {
        self.offset - 1
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// Term of the entry at `index`.
    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if index == self.snapshot.last_index {
            return Ok(self.snapshot.last_term);
        }
        if index >= self.offset {
            return self
                .unstable
                .get((index - self.offset) as usize)
                .map(|e| e.term)
                .ok_or(StorageError::Unavailable);
        }
        if index <= self.floor {
            return Err(StorageError::Compacted);
        }
        if let Some(e) = self.kept_entry(index) {
            return Ok(e.term);
        }
        // Handed out, so above every compaction (which stops at an applied
        // index) but the snapshot's own, answered above.
        if index == self.released.0 {
            return Ok(self.released.1);
        }
        self.storage.term(index)
    }

    /// The kept (durable, not yet handed out) entry at `index`, if any.
    fn kept_entry(&self, index: u64) -> Option<&Entry> {
        let first = self.kept.front()?.index;
        if index < first {
            return None;
        }
        self.kept.get((index - first) as usize)
    }

    /// Drops kept entries up to `index` (handed out) and the oldest beyond
    /// the bounds.
    fn release_kept(&mut self, index: u64) {
        while let Some(e) = self.kept.front() {
            let over = self.kept.len() > KEEP_MAX_ENTRIES || self.kept_bytes > KEEP_MAX_BYTES;
            if e.index > index && !over {
                break;
            }
            if e.index <= index {
                self.released = (e.index, e.term);
            }
            self.kept_bytes -= e.data.len() as u64;
            self.kept.pop_front();
        }
    }

    /// Drops kept entries at or after `index` (replaced by a truncation).
    fn truncate_kept(&mut self, index: u64) {
        if self.released.0 >= index {
            self.released = (0, 0);
        }
        while self.kept.back().is_some_and(|e| e.index >= index) {
            if let Some(e) = self.kept.pop_back() {
                self.kept_bytes -= e.data.len() as u64;
            }
        }
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        matches!(self.term(index), Ok(t) if t == term)
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as
    /// up to date as ours?
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[lo, hi)`, at most `max_bytes` of payload (at least one).
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        if lo <= self.floor {
            return Err(StorageError::Compacted);
        }
        // Kept entries are above every compaction (which stops at an
        // applied index): only a read below them asks the storage's bounds.
        let kept_from = self.kept.front().map_or(self.offset, |e| e.index);
        if lo < kept_from && lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        if lo < self.offset {
            let stop = hi.min(self.offset);
            out = match self.kept.front() {
                Some(first) if first.index <= lo => {
                    let from = (lo - first.index) as usize;
                    let to = (stop - first.index) as usize;
                    let mut kept = Vec::with_capacity(to - from);
                    for e in self.kept.range(from..to) {
                        bytes += e.data.len() as u64;
                        if !kept.is_empty() && bytes > max_bytes {
                            break;
                        }
                        kept.push(e.clone());
                    }
                    kept
                }
                _ => self.storage.entries(lo, stop, max_bytes)?,
            };
            if out.is_empty() {
                return Err(StorageError::Io(format!(
                    "storage returned no entry for [{lo}, {stop})"
                )));
            }
            bytes = out.iter().map(|e| e.data.len() as u64).sum();
            if hi <= self.offset || (out.len() as u64) < stop - lo || bytes >= max_bytes {
                return Ok(out);
            }
        }
        let from = lo.max(self.offset);
        let range = (from - self.offset) as usize..(hi - self.offset) as usize;
        extend_within_bytes(&mut out, &self.unstable[range], bytes, max_bytes);
        Ok(out)
    }

    /// Appends entries that directly follow the last one (leader side).
    pub fn append(&mut self, entries: Vec<Entry>) {
        if self.unstable.is_empty() {
            self.unstable = entries;
        } else {
            self.unstable.extend(entries);
        }
    }

    /// Appends `entries`, replacing any entry at or after `entries[0].index`.
    /// `entries[0].index` must be in `[first_index, last_index + 1]`.
    pub fn truncate_and_append(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        if first == self.last_index() + 1 {
            self.append(entries);
        } else if first >= self.offset {
            self.unstable.truncate((first - self.offset) as usize);
            self.unstable.extend(entries);
            self.handed = self.handed.min(first - 1);
        } else {
            self.truncate_kept(first);
            self.unstable = entries;
            self.offset = first;
            self.handed = first - 1;
        }
    }

    /// Marks entries up to `index` durable if the entry there still has `term`.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset {
            return;
        }
        let pos = (index - self.offset) as usize;
        match self.unstable.get(pos) {
            Some(e) if e.term == term => {
                for e in self.unstable.drain(..=pos) {
                    if e.index > self.handed_committed {
                        self.kept_bytes += e.data.len() as u64;
                        self.kept.push_back(e);
                    }
                }
                self.release_kept(self.handed_committed);
                self.offset = index + 1;
                self.handed = self.handed.max(index);
            }
            _ => {}
        }
    }

    /// Replaces the whole log by a snapshot received from the leader.
    pub fn restore(&mut self, meta: SnapshotMeta) {
        let idx = meta.last_index;
        self.unstable.clear();
        self.kept.clear();
        self.kept_bytes = 0;
        self.released = (0, 0);
        self.offset = idx + 1;
        self.handed = idx;
        self.floor = idx;
        self.committed = idx;
        self.handed_committed = self.handed_committed.max(idx);
        self.applied = self.applied.max(idx);
        self.pending_snapshot = Some(meta.clone());
        self.snapshot = meta;
    }

    /// The state machine saved a snapshot locally; reads at its index now
    /// come from `meta`.
    pub fn on_snapshot(&mut self, meta: SnapshotMeta) {
        if meta.last_index > self.snapshot.last_index && meta.last_index <= self.last_index() {
            self.snapshot = meta;
        }
    }

    pub fn commit_to(&mut self, index: u64) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    pub fn has_unhanded(&self) -> bool {
        self.pending_snapshot.is_some() || self.handed < self.last_index()
    }

    pub fn take_snapshot(&mut self) -> Option<SnapshotMeta> {
        self.pending_snapshot.take()
    }

    /// Entries appended since the last Ready (to persist).
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = (self.handed + 1).max(self.offset);
        let out = self.unstable[(from - self.offset) as usize..].to_vec();
        self.handed = self.last_index();
        out
    }

    /// The highest index that can be handed to the state machine.
    pub fn applicable(&self) -> u64 {
        self.committed.min(self.persisted())
    }

    pub fn has_committed_to_hand(&self) -> bool {
        self.handed_committed < self.applicable()
    }

    /// Committed, durable entries not handed out yet (up to `max_bytes`).
    pub fn take_committed(&mut self, max_bytes: u64) -> Vec<Entry> {
        let hi = self.applicable();
        if self.handed_committed >= hi {
            return Vec::new();
        }
        match self.entries(self.handed_committed + 1, hi + 1, max_bytes) {
            Ok(ents) => {
                if let Some(l) = ents.last() {
                    self.handed_committed = l.index;
                    self.release_kept(l.index);
                }
                ents
            }
            Err(e) => {
                log::warn!(
                    "reading committed entries after {}: {e}",
                    self.handed_committed
                );
                Vec::new()
            }
        }
    }

    /// Largest index <= `index` whose term is <= `term` (terms never
    /// decrease along the log, so a binary search suffices), with its term.
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let index = index.min(self.last_index());
        let low = self.first_index().saturating_sub(1);
        if index <= low {
            return (index, self.term(index).unwrap_or(0));
        }
        match self.term(index) {
            Ok(t) if t <= term => return (index, t),
            _ => {}
        }
        let (mut lo, mut hi) = (low, index);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.term(mid) {
                Ok(t) if t <= term => lo = mid,
                _ => hi = mid,
            }
        }
        (lo, self.term(lo).unwrap_or(0))
    }
}
