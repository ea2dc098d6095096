//! The recent-entries cache: a contiguous suffix of the log, bounded by the
//! bytes of data it holds, so followers that are close behind are served
//! from memory.

use std::collections::VecDeque;

use crate::proto::Entry;

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
        self.bytes += e.data.len() as u64;
        self.entries.push_back(e.clone());
        while self.bytes > self.cap {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.data.len() as u64,
                None => break,
            }
        }
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
            self.bytes -= e.data.len() as u64;
        }
    }

    /// Forgets every entry before `first`.
    pub fn drop_before(&mut self, first: u64) {
        while matches!(self.entries.front(), Some(e) if e.index < first) {
            let e = self.entries.pop_front().unwrap();
            self.bytes -= e.data.len() as u64;
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}
