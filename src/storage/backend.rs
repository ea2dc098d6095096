//! One surface for both logs: [`DurableLog`] (what the writer thread and the
//! runtime call), [`MemLog`] for `memory://`, and [`LogBackend`] chosen from
//! the log URI.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::fs::FileSystem;
use super::segment_log::{LogOptions, Recovered, SegmentLog};
use super::uri::StorageUri;
use crate::core::{LogStorage, StorageError};
use crate::proto::Entry;

/// The mutations of a log, with `&self` (implementations lock internally).
pub trait DurableLog: LogStorage + Send + Sync {
    /// As [`crate::core::MemStorage::append`]; not durable until `sync`.
    fn append(&self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Makes every append so far durable.
    fn sync(&self) -> Result<(), StorageError>;
    /// Drops every entry after `last_kept`.
    fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError>;
    /// Drops every entry before `first_kept`.
    fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError>;
    /// Drops everything; the next append starts at `next_index`.
    fn reset(&self, next_index: u64) -> Result<(), StorageError>;
}

impl DurableLog for SegmentLog {
    fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        SegmentLog::append(self, entries)
    }
    fn sync(&self) -> Result<(), StorageError> {
        SegmentLog::sync(self)
    }
    fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        SegmentLog::truncate_suffix(self, last_kept)
    }
    fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        SegmentLog::truncate_prefix(self, first_kept)
    }
    fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        SegmentLog::reset(self, next_index)
    }
}

#[derive(Debug)]
struct MemInner {
    /// Index of `entries[0]` (or of the next append when empty).
    first: u64,
    entries: VecDeque<Entry>,
}

impl MemInner {
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
}

/// The `memory://` log: [`SegmentLog`]'s surface, nothing survives a restart.
#[derive(Debug)]
pub struct MemLog {
    inner: RwLock<MemInner>,
}

impl Default for MemLog {
    fn default() -> Self {
        MemLog::new()
    }
}

impl MemLog {
    pub fn new() -> MemLog {
        MemLog {
            inner: RwLock::new(MemInner {
                first: 1,
                entries: VecDeque::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemInner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemInner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn first_index(&self) -> u64 {
        self.read().first
    }

    pub fn last_index(&self) -> u64 {
        self.read().last()
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        let m = self.read();
        if index < m.first {
            return Err(StorageError::Compacted);
        }
        m.entries
            .get((index - m.first) as usize)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable)
    }

    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        let m = self.read();
        if index < m.first {
            return Err(StorageError::Compacted);
        }
        m.entries
            .get((index - m.first) as usize)
            .cloned()
            .ok_or(StorageError::Unavailable)
    }

    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let m = self.read();
        if lo < m.first {
            return Err(StorageError::Compacted);
        }
        if hi > m.last() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in m
            .entries
            .range((lo - m.first) as usize..(hi - m.first) as usize)
        {
            bytes += e.data.len() as u64;
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    pub fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let mut m = self.write();
        if head.index < m.first || head.index > m.last() + 1 {
            return Err(StorageError::Io(format!(
                "append at {} outside [{}, {}]",
                head.index,
                m.first,
                m.last() + 1
            )));
        }
        let keep = (head.index - m.first) as usize;
        m.entries.truncate(keep);
        m.entries.extend(entries.iter().cloned());
        Ok(())
    }

    pub fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        let mut m = self.write();
        let keep = last_kept.saturating_add(1).saturating_sub(m.first) as usize;
        m.entries.truncate(keep);
        Ok(())
    }

    pub fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        let mut m = self.write();
        if first_kept <= m.first {
            return Ok(());
        }
        let drop = ((first_kept - m.first) as usize).min(m.entries.len());
        m.entries.drain(..drop);
        m.first = first_kept;
        Ok(())
    }

    pub fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        let mut m = self.write();
        m.entries.clear();
        m.first = next_index.max(1);
        Ok(())
    }
}

impl LogStorage for MemLog {
    fn first_index(&self) -> u64 {
        MemLog::first_index(self)
    }
    fn last_index(&self) -> u64 {
        MemLog::last_index(self)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        MemLog::term(self, index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        MemLog::entries(self, lo, hi, max_bytes)
    }
}

impl DurableLog for MemLog {
    fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        MemLog::append(self, entries)
    }
    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }
    fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        MemLog::truncate_suffix(self, last_kept)
    }
    fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        MemLog::truncate_prefix(self, first_kept)
    }
    fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        MemLog::reset(self, next_index)
    }
}

/// The log a node runs on, chosen by its log URI.
// One per node, made once: the size difference of the variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LogBackend {
    Segment(SegmentLog),
    Memory(MemLog),
}

impl LogBackend {
    /// Opens the log named by `uri` (`local://DIR` or `memory://`).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        uri: &str,
        opts: LogOptions,
    ) -> Result<(LogBackend, Recovered), StorageError> {
        match StorageUri::parse(uri).map_err(|e| StorageError::Io(e.0))? {
            StorageUri::Local(dir) => Self::open_dir(fs, &dir, opts),
            StorageUri::Memory => Ok((
                LogBackend::Memory(MemLog::new()),
                Recovered {
                    first_index: 1,
                    last_index: 0,
                    configurations: Vec::new(),
                    may_have_lost_acked: false,
                },
            )),
        }
    }

    pub fn open_dir(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: LogOptions,
    ) -> Result<(LogBackend, Recovered), StorageError> {
        let (log, rec) = SegmentLog::open(fs, dir, opts)?;
        Ok((LogBackend::Segment(log), rec))
    }

    fn dl(&self) -> &dyn DurableLog {
        match self {
            LogBackend::Segment(l) => l,
            LogBackend::Memory(l) => l,
        }
    }

    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        match self {
            LogBackend::Segment(l) => l.entry(index),
            LogBackend::Memory(l) => l.entry(index),
        }
    }

    /// See [`SegmentLog::align_with_snapshot`].
    pub fn align_with_snapshot(&self, snapshot_index: u64) -> Result<(), StorageError> {
        let (first, last) = (self.first_index(), self.last_index());
        if last < snapshot_index || first > snapshot_index + 1 {
            DurableLog::reset(self, snapshot_index + 1)
        } else {
            DurableLog::truncate_prefix(self, snapshot_index + 1)
        }
    }
}

impl LogStorage for LogBackend {
    fn first_index(&self) -> u64 {
        self.dl().first_index()
    }
    fn last_index(&self) -> u64 {
        self.dl().last_index()
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.dl().term(index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.dl().entries(lo, hi, max_bytes)
    }
}

impl DurableLog for LogBackend {
    fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        self.dl().append(entries)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.dl().sync()
    }
    fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        self.dl().truncate_suffix(last_kept)
    }
    fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        self.dl().truncate_prefix(first_kept)
    }
    fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        self.dl().reset(next_index)
    }
}

/// The core holds its log by value: these let it hold a shared one while
/// the writer thread appends to the same log.
impl LogStorage for Arc<LogBackend> {
    fn first_index(&self) -> u64 {
        self.dl().first_index()
    }
    fn last_index(&self) -> u64 {
        self.dl().last_index()
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.dl().term(index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.dl().entries(lo, hi, max_bytes)
    }
}

impl LogStorage for Arc<MemLog> {
    fn first_index(&self) -> u64 {
        MemLog::first_index(self)
    }
    fn last_index(&self) -> u64 {
        MemLog::last_index(self)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        MemLog::term(self, index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        MemLog::entries(self, lo, hi, max_bytes)
    }
}
