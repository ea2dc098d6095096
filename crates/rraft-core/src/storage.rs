//! Read access to the durable log, as the core needs it.
//!
//! The core reads persisted entries through [`LogStorage`] and keeps entries
//! not yet persisted in memory itself. Writes go the other way: the runtime
//! persists what `Ready` asks for, then reports `on_persisted`.

use super::api::{Entry, StorageError};

/// The durable log, read-only from the core's side. Must answer quickly: the
/// node runtime serves recent entries from memory.
pub trait LogStorage {
    /// Index of the first entry held (1 for a fresh log; the snapshot index
    /// + 1 after compaction).
    fn first_index(&self) -> u64;
    /// Index of the last entry held; `first_index() - 1` when empty.
    fn last_index(&self) -> u64;
    /// Term of the entry at `index`, for `first_index() <= index <= last_index()`.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// Entries in `[lo, hi)`: as many as fit in `max_bytes` of data, but at
    /// least one when `lo < hi`.
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
}

/// The core holds its log by value: this lets it hold a shared one while a
/// writer thread appends to the same log. (It lives here because a crate
/// using the core may not implement the core's trait for `Arc`.)
impl<T: LogStorage + ?Sized> LogStorage for std::sync::Arc<T> {
    fn first_index(&self) -> u64 {
        (**self).first_index()
    }
    fn last_index(&self) -> u64 {
        (**self).last_index()
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        (**self).term(index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        (**self).entries(lo, hi, max_bytes)
    }
}

/// An in-memory log: the simulator's disk and the `memory://` log.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    /// Index of `entries[0]` (or of the next append when empty).
    first: u64,
    entries: Vec<Entry>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage {
            first: 1,
            entries: Vec::new(),
        }
    }

    /// Appends `entries`, first dropping any held entry at or after
    /// `entries[0].index`. The batch must start at or before `last_index() + 1`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        if head.index < self.first || head.index > self.last_index() + 1 {
            return Err(StorageError::Io(format!(
                "append at {} outside [{}, {}]",
                head.index,
                self.first,
                self.last_index() + 1
            )));
        }
        self.entries.truncate((head.index - self.first) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Drops every entry before `index` (it is in a snapshot now).
    pub fn compact(&mut self, index: u64) {
        if index <= self.first {
            return;
        }
        let drop = ((index - self.first) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.first = index;
    }

    /// Empties the log so that the next entry is `snapshot_index + 1`.
    pub fn reset(&mut self, snapshot_index: u64) {
        self.entries.clear();
        self.first = snapshot_index + 1;
    }

    /// Every held entry, for tests and the simulator's checks.
    pub fn all(&self) -> &[Entry] {
        &self.entries
    }
}

impl LogStorage for MemStorage {
    fn first_index(&self) -> u64 {
        self.first
    }

    fn last_index(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index < self.first {
            return Err(StorageError::Compacted);
        }
        self.entries
            .get((index - self.first) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo < self.first {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let range = (lo - self.first) as usize..(hi - self.first) as usize;
        extend_within_bytes(&mut out, &self.entries[range], 0, max_bytes);
        Ok(out)
    }
}

/// Appends `entries` to `out` in order while the payload, counted from
/// `bytes` (what `out` already holds), stays within `max_bytes`; an empty
/// `out` takes its first entry whatever its size.
pub(crate) fn extend_within_bytes(
    out: &mut Vec<Entry>,
    entries: &[Entry],
    mut bytes: u64,
    max_bytes: u64,
) {
    for e in entries {
        bytes += e.data.len() as u64;
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(e.clone());
    }
}
