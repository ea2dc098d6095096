//! One surface for both logs: [`DurableLog`] (what the writer thread and the
//! runtime call), [`MemLog`] for `memory://`, and [`LogBackend`] chosen from
//! the log URI (segments, memory, or a group of the shared log).

use std::path::Path;
use std::sync::{Arc, RwLock};

use super::fs::FileSystem;
use super::segment_log::{LogOptions, Recovered, SegmentLog, PREALLOCATE_BYTES};
use super::shared_log::{SharedGroupLog, SharedLog, SyncDone};
use super::uri::StorageUri;
use crate::core::{LogStorage, MemStorage, StorageError};
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
    /// Runs `done` once every append so far is durable. By default it syncs
    /// on the calling thread; a shared log queues `done` for its next sync
    /// round, which runs it on the log's syncer thread.
    fn sync_then(&self, done: SyncDone) {
        done(self.sync())
    }
    /// Whether [`DurableLog::sync_then`] runs `done` later, on another
    /// thread (the writer then hands its batch over instead of waiting).
    fn syncs_later(&self) -> bool {
        false
    }
    /// The last index known durable (every append is, once `sync` returned).
    fn durable_last_index(&self) -> u64 {
        self.last_index()
    }
    /// The shared log whose sync rounds the owner steps
    /// ([`LogOptions::stepped_rounds`]); None for a log with its own syncer
    /// or one that syncs in place.
    fn stepped_rounds(&self) -> Option<&SharedLog> {
        None
    }
    /// Work that makes later syncs cheaper, run by the log writer after it
    /// reported a batch, off the commit path (a segment log's preallocated
    /// zeros). Nothing by default.
    fn prepare_ahead(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// A clean close, once nothing writes any more: leaves the files in
    /// their plain layout (a segment log cuts its preallocated zeros).
    /// Nothing by default.
    fn close(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl DurableLog for SharedGroupLog {
    fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        SharedGroupLog::append(self, entries)
    }
    fn sync(&self) -> Result<(), StorageError> {
        SharedGroupLog::sync(self)
    }
    fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        SharedGroupLog::truncate_suffix(self, last_kept)
    }
    fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        SharedGroupLog::truncate_prefix(self, first_kept)
    }
    fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        SharedGroupLog::reset(self, next_index)
    }
    fn sync_then(&self, done: SyncDone) {
        SharedGroupLog::sync_then(self, done)
    }
    fn syncs_later(&self) -> bool {
        true
    }
    fn durable_last_index(&self) -> u64 {
        SharedGroupLog::durable_last_index(self)
    }
    fn stepped_rounds(&self) -> Option<&SharedLog> {
        SharedGroupLog::stepped_rounds(self)
    }
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
    fn prepare_ahead(&self) -> Result<(), StorageError> {
        SegmentLog::prepare_ahead(self)
    }
    fn close(&self) -> Result<(), StorageError> {
        SegmentLog::close(self)
    }
}

/// The `memory://` log: [`SegmentLog`]'s surface over the core's
/// [`MemStorage`], behind a lock; nothing survives a restart.
#[derive(Debug)]
pub struct MemLog {
    inner: RwLock<MemStorage>,
}

impl Default for MemLog {
    fn default() -> Self {
        MemLog::new()
    }
}

impl MemLog {
    pub fn new() -> MemLog {
        MemLog {
            inner: RwLock::new(MemStorage::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemStorage> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemStorage> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn first_index(&self) -> u64 {
        self.read().first_index()
    }

    pub fn last_index(&self) -> u64 {
        self.read().last_index()
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.read().term(index)
    }

    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        let m = self.read();
        if index < m.first_index() {
            return Err(StorageError::Compacted);
        }
        m.all()
            .get((index - m.first_index()) as usize)
            .cloned()
            .ok_or(StorageError::Unavailable)
    }

    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.read().entries(lo, hi, max_bytes)
    }

    pub fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        self.write().append(entries)
    }

    pub fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        let mut m = self.write();
        if last_kept >= m.last_index() {
            return Ok(());
        }
        let first = m.first_index();
        if last_kept < first {
            m.reset(first - 1);
            return Ok(());
        }
        // Appending the last kept entry again drops every entry after it.
        let last = m.all()[(last_kept - first) as usize].clone();
        m.append(&[last])
    }

    pub fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        self.write().compact(first_kept);
        Ok(())
    }

    pub fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        self.write().reset(next_index.max(1) - 1);
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
    Shared(SharedGroupLog),
}

impl LogBackend {
    /// Opens the log named by `uri` (`local://DIR`, `local-prealloc://DIR`
    /// or `memory://`). `local-prealloc://` keeps zeros ahead of the open
    /// segment's last entry ([`LogOptions::preallocate_bytes`]) whatever
    /// `opts` says; `local://` does as `opts` says (a node turns it on
    /// unless it runs with `braft_compat`).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        uri: &str,
        opts: LogOptions,
    ) -> Result<(LogBackend, Recovered), StorageError> {
        LogBackend::open_as(fs, uri, opts, None)
    }

    /// As [`LogBackend::open`], for the group `owner` (its name in a
    /// `shared://` log, which needs one; the node passes its group and peer
    /// id).
    pub fn open_as(
        fs: Arc<dyn FileSystem>,
        uri: &str,
        mut opts: LogOptions,
        owner: Option<&str>,
    ) -> Result<(LogBackend, Recovered), StorageError> {
        match StorageUri::parse(uri).map_err(|e| StorageError::Io(e.0))? {
            StorageUri::Shared(dir) => {
                let Some(owner) = owner else {
                    return Err(StorageError::Io(format!(
                        "log {uri}: a shared:// log is opened for a named group"
                    )));
                };
                let shared = SharedLog::open_shared(fs, &dir, opts)?;
                let (log, rec) = shared.open_group(owner, opts.cache_bytes)?;
                Ok((LogBackend::Shared(log), rec))
            }
            StorageUri::Local(dir) => {
                if StorageUri::is_preallocated(uri) && opts.preallocate_bytes == 0 {
                    opts.preallocate_bytes = PREALLOCATE_BYTES;
                }
                Self::open_dir(fs, &dir, opts)
            }
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
            LogBackend::Shared(l) => l,
        }
    }

    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        match self {
            LogBackend::Segment(l) => l.entry(index),
            LogBackend::Memory(l) => l.entry(index),
            LogBackend::Shared(l) => l.entry(index),
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
    fn sync_then(&self, done: SyncDone) {
        self.dl().sync_then(done)
    }
    fn syncs_later(&self) -> bool {
        self.dl().syncs_later()
    }
    fn durable_last_index(&self) -> u64 {
        self.dl().durable_last_index()
    }
    fn stepped_rounds(&self) -> Option<&SharedLog> {
        self.dl().stepped_rounds()
    }
    fn prepare_ahead(&self) -> Result<(), StorageError> {
        self.dl().prepare_ahead()
    }
    fn close(&self) -> Result<(), StorageError> {
        self.dl().close()
    }
}
