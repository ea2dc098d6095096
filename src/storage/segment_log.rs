//! The segmented log: entries in segment files under one directory, an
//! in-memory index (offsets per entry, terms as runs) and a cache of recent
//! entries.
//!
//! Thread safety: every method takes `&self`. Mutations (append, sync,
//! truncations, reset) are serialized by one writer mutex; the index sits
//! behind a read-write lock that writers hold only to publish what they
//! wrote (and during the rare truncations), so the core task keeps reading
//! while the writer thread appends and waits on fdatasync.
//!
//! Durability rules:
//! - `append` writes (page cache) but does not sync; `sync` fdatasyncs every
//!   segment appended to since the last sync and fsyncs the directory when a
//!   segment was created, renamed or removed.
//! - A full segment is sealed (no IO) and appends go on in a new one; at the
//!   next `sync`, after the fdatasyncs, sealed segments are renamed from
//!   `log_inprogress_<first>` to `log_<first>_<last>`: a closed name always
//!   means whole, durable data, and rolling costs no extra fdatasync.
//!   Recovery accepts several `log_inprogress_*` after the closed segments
//!   (a crash before the rename): one whose entries run up to the next
//!   segment is closed; at one that is torn or after which entries are
//!   missing the log ends (see "Recovery" below).
//! - The first entry written after a sync (and after open and reset) is
//!   flagged as starting a sync batch: every byte before it was durable
//!   when it was written.
//! - `truncate_prefix` first records the new first index in `log_meta`
//!   (atomically), then deletes whole segments; `reset` deletes every
//!   segment, fsyncs the directory, then records the new first index.
//! - Any write or sync error is sticky: every later mutation fails with the
//!   same error, and nothing is retried.
//!
//! Recovery: closed segments must be whole. Where the open segments stop
//! holding whole, consecutive entries (a damaged entry, or entries missing
//! before the next segment), the log ends, unless an entry flagged as
//! starting a sync batch follows anywhere after that spot: then the spot
//! had been synced and recovery refuses, naming the file and byte offset.
//! Otherwise the spot is inside the last, unsynced batch, whose pages may
//! have reached the disk in any order: the tail is cut (with a warning)
//! and later open segments are removed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::braft_pb::{self, LogPbMeta};
use super::cache::EntryCache;
use super::entry_codec;
use super::fs::{io_err, read_whole, write_atomic, File, FileSystem, OpenMode};
use super::prezero::{self, ZeroAhead};
use super::segment::{self, ScanKind, Segment, SegmentName, TermRuns};
use crate::core::{LogStorage, StorageError};
use crate::proto::Entry;

/// Name of the file holding the log's first index (after compaction or reset).
pub const LOG_META: &str = "log_meta";

/// Settings of a [`SegmentLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment is closed and a new one started once it reaches this many
    /// bytes (braft raft_max_segment_size, 8 MiB).
    pub segment_size: u64,
    /// fdatasync in `sync` (braft raft_sync). With `false`, `sync` only
    /// renames sealed segments and a power loss can lose acknowledged
    /// entries. Truncations, reset and `log_meta` are made durable either way.
    pub sync: bool,
    /// Bytes of entry data kept in memory for recent entries.
    pub cache_bytes: u64,
    /// With `sync`, real zeros are kept this many bytes ahead of the
    /// open segment's last entry (0: off): an fdatasync after an append
    /// that grows the file must also commit the inode (its size) and wait
    /// for it; inside blocks already written and synced it writes the data
    /// alone. The zeros are written and synced by
    /// [`SegmentLog::prepare_ahead`], which the log writer calls after a
    /// small batch's acknowledgements left, once less than half of them is
    /// left (`storage::prezero`). Recovery reads a zero tail as the end of
    /// the log; a roll and [`SegmentLog::close`] cut the zeros, so closed
    /// segments, and the open one after a clean close, are braft's layout.
    /// braft refuses an open segment with zeros after its last entry (a
    /// zero header fails its checksum): after a crash, a preallocated log
    /// opens in braft only once rraft has opened it. Nodes turn it on for
    /// `local://` logs with [`PREALLOCATE_BYTES`] (except with
    /// `braft_compat`); `LogOptions::default()` leaves it off.
    pub preallocate_bytes: u64,
    /// Test only (mutation check of the crash tests): restores an older,
    /// wrong recovery rule that refuses to open whenever any valid entry
    /// follows a damaged spot of the open segment, even one of the same
    /// unsynced batch. Never set it outside tests.
    #[doc(hidden)]
    pub strict_tail_mutation: bool,
    /// Test only (mutation check of the runtime simulator): a `shared://`
    /// log's sync round skips the fdatasync and still counts its records
    /// durable. Never set it outside tests.
    #[doc(hidden)]
    pub unsynced_rounds_mutation: bool,
    /// A `shared://` log runs no syncer thread: its owner steps each sync
    /// round (`SharedLog::write_round`, then `finish_round`), as the
    /// deterministic simulation does. Other logs ignore it.
    pub stepped_rounds: bool,
}

/// The preallocation window of a node's `local://` log.
pub const PREALLOCATE_BYTES: u64 = 256 << 10;

/// Batches (bytes appended between two syncs) at least this large skip
/// preallocation. It saves the metadata commit of an fdatasync (~50 us
/// here) and costs as many zero bytes as the data that later fills them: a
/// win for small batches only.
const PREALLOCATE_MAX_BATCH: u64 = 16 << 10;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size: 8 << 20,
            sync: true,
            cache_bytes: 8 << 20,
            preallocate_bytes: 0,
            strict_tail_mutation: false,
            unsynced_rounds_mutation: false,
            stepped_rounds: false,
        }
    }
}

/// What [`SegmentLog::open`] found on disk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recovered {
    pub first_index: u64,
    /// `first_index - 1` when the log is empty.
    pub last_index: u64,
    /// Configuration entries at or after `first_index`, ascending.
    pub configurations: Vec<Entry>,
    /// Recovery cut entries it cannot prove were never synced: a torn or
    /// damaged entry (bytes other than zeros after the last whole entry),
    /// or whole entries after such a spot. The batch they belonged to may
    /// have been acknowledged; the node may apply protocol-aware recovery.
    /// A tail of zeros alone is taken for preallocated space.
    pub may_have_lost_acked: bool,
}

#[derive(Debug)]
struct State {
    first_index: u64,
    last_index: u64,
    /// Ascending, contiguous; at most the last one is open.
    segments: Vec<Segment>,
    terms: TermRuns,
    cache: EntryCache,
}

impl State {
    /// Position in `segments` of the segment holding `index`.
    fn segment_of(&self, index: u64) -> Option<usize> {
        let i = self.segments.partition_point(|s| s.first <= index);
        let i = i.checked_sub(1)?;
        (index <= self.segments[i].last()).then_some(i)
    }
}

#[derive(Debug, Default)]
struct Writer {
    /// The first write/sync error: every later mutation fails with it.
    failed: Option<StorageError>,
    /// Files appended to since the last sync.
    dirty: Vec<Arc<dyn File>>,
    /// A segment was created, renamed or removed since the last sync.
    dir_dirty: bool,
    /// Bytes appended since the last sync (the batch the sync makes durable).
    batch_bytes: u64,
    /// Bytes the last sync made durable (read by `prepare_ahead`).
    last_batch: u64,
    /// Everything written is durable (with `sync` on): the next entry
    /// written is flagged as starting a sync batch.
    batch_start_next: bool,
    buf: Vec<u8>,
}

impl Writer {
    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records `e` as the sticky failure and returns it.
    fn fail(&mut self, e: StorageError) -> StorageError {
        log::error!("log storage failed, refusing every later write: {e}");
        self.failed = Some(e.clone());
        e
    }

    fn mark_dirty(&mut self, f: &Arc<dyn File>) {
        if !self.dirty.iter().any(|d| Arc::ptr_eq(d, f)) {
            self.dirty.push(f.clone());
        }
    }
}

/// The durable, segmented Raft log of one node (`local://` log URI).
#[derive(Debug)]
pub struct SegmentLog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: LogOptions,
    state: RwLock<State>,
    writer: Mutex<Writer>,
}

fn read_log_meta(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>, StorageError> {
    let path = dir.join(LOG_META);
    let Some(b) = read_whole(fs, &path).map_err(|e| io_err("read log meta", e))? else {
        return Ok(None);
    };
    let corrupt =
        |why: String| StorageError::Io(format!("{}: corrupt log meta: {why}", path.display()));
    let meta: LogPbMeta = braft_pb::unframe(&b).map_err(corrupt)?;
    match u64::try_from(meta.first_log_index) {
        Ok(first) if first >= 1 => Ok(Some(first)),
        _ => Err(corrupt(format!("first log index {}", meta.first_log_index))),
    }
}

/// Reads the whole file `f` (at `path`) into `buf`.
fn read_file(f: &dyn File, path: &Path, buf: &mut Vec<u8>) -> Result<(), StorageError> {
    let len = f.size().map_err(|e| io_err("stat log segment", e))? as usize;
    buf.clear();
    buf.resize(len, 0);
    f.read_exact_at(buf, 0)
        .map_err(|e| io_err(format!("read {}", path.display()), e))
}

/// `log_meta` as braft writes it: a `ProtoBufFile` of `LogPBMeta`.
fn log_meta_bytes(first: u64) -> Result<Vec<u8>, StorageError> {
    let first_log_index = i64::try_from(first)
        .map_err(|_| StorageError::Io(format!("first log index {first} exceeds braft's int64")))?;
    Ok(braft_pb::frame(&LogPbMeta { first_log_index }))
}

fn write_log_meta(fs: &dyn FileSystem, dir: &Path, first: u64) -> Result<(), StorageError> {
    let b = log_meta_bytes(first)?;
    write_atomic(fs, dir, LOG_META, &b).map_err(|e| io_err("write log meta", e))
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir` and recovers it: every
    /// segment is read with one large sequential read and every checksum
    /// verified once. A tail torn inside the last, unsynced batch is cut
    /// off; damage to synced data is an error naming the file and byte
    /// offset (see the module documentation).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        opts: LogOptions,
    ) -> Result<(SegmentLog, Recovered), StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let fsr: &dyn FileSystem = &*fs;
        if opts.sync {
            super::fs::create_dir_durable(fsr, &dir)
        } else {
            // `sync: false` promises no fsync at all (braft raft_sync=false).
            fsr.create_dir_all(&dir)
        }
        .map_err(|e| io_err("create log directory", e))?;
        let mut meta_first = read_log_meta(fsr, &dir)?;
        if meta_first.is_none() {
            // braft treats a log directory without `log_meta` as empty and
            // deletes every `log_*` file in it; record the first index
            // before any segment exists, as braft's own init does.
            let first = fsr
                .list_dir(&dir)
                .map_err(|e| io_err("list log directory", e))?
                .iter()
                .filter_map(|n| SegmentName::parse(n).map(|n| n.first()))
                .min()
                .unwrap_or(1);
            if opts.sync {
                write_log_meta(fsr, &dir, first)?;
            } else {
                // `sync: false` promises no fsync at all (braft writes its
                // meta files without one too).
                let b = log_meta_bytes(first)?;
                let tmp = dir.join(format!("{LOG_META}.tmp"));
                fsr.open(&tmp, OpenMode::Create)
                    .and_then(|f| f.write_at(&b, 0))
                    .and_then(|_| fsr.rename(&tmp, &dir.join(LOG_META)))
                    .map_err(|e| io_err("write log meta", e))?;
            }
            meta_first = Some(first);
        }
        let mut names: Vec<(SegmentName, String)> = Vec::new();
        for name in fsr
            .list_dir(&dir)
            .map_err(|e| io_err("list log directory", e))?
        {
            if let Some(n) = SegmentName::parse(&name) {
                names.push((n, name));
            } else if name.ends_with(".tmp") {
                let _ = fsr.remove_file(&dir.join(&name));
            }
        }
        names.sort_by_key(|(n, _)| n.first());

        // Shape checks from the names alone: closed segments, then open ones.
        let mut seen_open = false;
        for (n, name) in names.iter() {
            match *n {
                SegmentName::Open { .. } => seen_open = true,
                SegmentName::Closed { .. } if seen_open => {
                    return Err(StorageError::Io(format!(
                        "log {}: closed segment {name} follows an open segment",
                        dir.display()
                    )))
                }
                SegmentName::Closed { first, last } if last < first => {
                    return Err(StorageError::Io(format!(
                        "log {}: bad segment name {name}",
                        dir.display()
                    )))
                }
                _ => {}
            }
        }
        // Segments wholly before the recorded first index are leftovers of
        // an interrupted truncate_prefix.
        let mut first_index = meta_first.unwrap_or(1);
        names.retain(|(n, name)| match *n {
            SegmentName::Closed { last, .. } if last < first_index => {
                let _ = fsr.remove_file(&dir.join(name));
                false
            }
            _ => true,
        });
        for w in names.windows(2) {
            if let (SegmentName::Closed { last, .. }, next) = (w[0].0, w[1].0) {
                if next.first() != last + 1 {
                    return Err(StorageError::Io(format!(
                        "log {}: gap or overlap between segments {} and {}",
                        dir.display(),
                        w[0].1,
                        w[1].1
                    )));
                }
            }
        }
        if let Some((n, _)) = names.first() {
            first_index = first_index.max(n.first());
        }

        let mut terms = TermRuns::default();
        let mut configurations = Vec::new();
        let mut segments: Vec<Segment> = Vec::with_capacity(names.len());
        let mut prev_term = 0;
        let mut buf: Vec<u8> = Vec::new();
        let mut dir_changed = false;
        let mut may_have_lost_acked = false;
        let nsegs = names.len();
        for i in 0..nsegs {
            let (n, name) = (names[i].0, &names[i].1);
            let path = dir.join(name);
            let (kind, closed) = match n {
                SegmentName::Closed { last, .. } => (ScanKind::Closed { last }, true),
                SegmentName::Open { .. } => (ScanKind::Open, false),
            };
            let mode = if closed {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            };
            let f = fsr
                .open(&path, mode)
                .map_err(|e| io_err("open log segment", e))?;
            read_file(&*f, &path, &mut buf)?;
            let r = segment::scan(
                &path,
                &buf,
                n.first(),
                kind,
                first_index,
                prev_term,
                &mut terms,
                &mut configurations,
            )?;
            prev_term = r.last_term;
            let mut seg = Segment::new(n.first(), closed, None);
            seg.offsets = r.offsets;
            seg.size = r.size;
            seg.allocated = r.size;
            if closed {
                segments.push(seg);
                continue;
            }
            let cut_tail = |why: &str| -> Result<(), StorageError> {
                f.set_len(r.size)
                    .and_then(|_| f.sync_data())
                    .map_err(|e| io_err(format!("cut {why} of {}", path.display()), e))
            };
            let next = names.get(i + 1).map(|(n, _)| n.first());
            if next.is_some_and(|next| next <= seg.last()) {
                return Err(StorageError::Io(format!(
                    "log {}: segments {name} (ends at {}) and {} overlap",
                    dir.display(),
                    seg.last(),
                    names[i + 1].1
                )));
            }
            if !seg.is_empty() && next == Some(seg.last() + 1) {
                // Whole entries up to the next segment: sealed before a
                // crash that came before its rename. Whatever follows its
                // last entry is no entry (preallocated zeros whose cut did
                // not reach the disk). Close it now, once its data is
                // durable (after a process crash it may not be yet).
                if let Some(t) = &r.tail {
                    if !t.zeros {
                        log::warn!(
                            "log segment {}: cutting {} bytes after its last entry ({})",
                            path.display(),
                            buf.len() as u64 - r.size,
                            t.what
                        );
                    }
                    cut_tail("the tail")?;
                } else if opts.sync {
                    f.sync_data()
                        .map_err(|e| io_err(format!("sync {}", path.display()), e))?;
                }
                seg.sealed = true;
                seg.closed = true;
                fsr.rename(&path, &seg.path(&dir))
                    .map_err(|e| io_err("close log segment", e))?;
                dir_changed = true;
                segments.push(seg);
                continue;
            }
            // The last segment, or one after which entries are missing:
            // the log ends here. What follows is an unsynced batch torn by
            // a crash unless an entry that starts a sync batch comes after
            // it (that entry was written after everything before it was
            // synced): then it is damage to synced data.
            let lost_entries = next.is_some();
            if r.tail.is_some() || lost_entries {
                let (off, what) = match &r.tail {
                    Some(t) => (r.size, t.what.clone()),
                    None => (r.size, format!("entry {} is missing", seg.last() + 1)),
                };
                let refuse = |found: String| {
                    segment::corruption(
                        &path,
                        off,
                        &format!(
                            "{what}, but {found} starts a later sync batch, \
                             so the damaged bytes had been synced"
                        ),
                    )
                };
                let zeros = r.tail.as_ref().map_or(true, |t| t.zeros);
                if let Some(q) = (!zeros)
                    .then(|| segment::valid_entry_after(&buf, off as usize + 1, true))
                    .flatten()
                {
                    return Err(refuse(format!("the entry at byte offset {q}")));
                }
                let mut later_buf = Vec::new();
                let mut later_entries = false;
                for (_, later) in &names[i + 1..] {
                    let lp = dir.join(later);
                    let lf = fsr
                        .open(&lp, OpenMode::Read)
                        .map_err(|e| io_err("open log segment", e))?;
                    read_file(&*lf, &lp, &mut later_buf)?;
                    if let Some(q) = segment::valid_entry_after(&later_buf, 0, true) {
                        return Err(refuse(format!(
                            "the entry at byte offset {q} of {}",
                            lp.display()
                        )));
                    }
                    later_entries |= segment::valid_entry_after(&later_buf, 0, false).is_some();
                }
                if opts.strict_tail_mutation && !zeros {
                    if let Some(q) = segment::valid_entry_after(&buf, off as usize + 1, false) {
                        return Err(segment::corruption(
                            &path,
                            off,
                            &format!("{what} (a valid entry follows at byte offset {q})"),
                        ));
                    }
                }
                if zeros && !lost_entries {
                    log::debug!(
                        "log segment {}: {} bytes of zeros after byte offset {off}",
                        path.display(),
                        buf.len() as u64 - off
                    );
                } else {
                    log::warn!(
                        "log segment {}: the log ends at byte offset {off} ({what}): \
                         cutting {} bytes and {} later segments written by a batch \
                         that was not synced",
                        path.display(),
                        buf.len() as u64 - off,
                        nsegs - i - 1
                    );
                    may_have_lost_acked |= !zeros || later_entries;
                }
                if r.tail.is_some() {
                    cut_tail("the torn tail")?;
                }
                for (_, later) in &names[i + 1..] {
                    fsr.remove_file(&dir.join(later))
                        .map_err(|e| io_err("remove unsynced segment", e))?;
                    dir_changed = true;
                }
            }
            if seg.is_empty() {
                fsr.remove_file(&path)
                    .map_err(|e| io_err("remove empty segment", e))?;
                dir_changed = true;
                break;
            }
            if opts.sync {
                // After a process crash its data (or its name) may not be
                // durable yet, and the next entry written starts a sync
                // batch. A cut tail was synced already.
                if r.tail.is_none() {
                    f.sync_data()
                        .map_err(|e| io_err(format!("sync {}", path.display()), e))?;
                }
                dir_changed = true;
            }
            seg.set_file(f);
            segments.push(seg);
            break;
        }
        if dir_changed {
            fsr.sync_dir(&dir)
                .map_err(|e| io_err("sync log directory", e))?;
        }
        // An open segment holding only compacted entries.
        while matches!(segments.first(), Some(s) if s.last() < first_index) {
            let s = segments.remove(0);
            fsr.remove_file(&s.path(&dir))
                .map_err(|e| io_err("remove compacted segment", e))?;
        }
        let last_index = segments.last().map(|s| s.last()).unwrap_or(first_index - 1);
        if let Some(s) = segments.first() {
            first_index = first_index.max(s.first);
        }
        let state = State {
            first_index,
            last_index,
            segments,
            terms,
            cache: EntryCache::new(opts.cache_bytes),
        };
        let log = SegmentLog {
            fs,
            dir,
            opts,
            state: RwLock::new(state),
            writer: Mutex::new(Writer {
                batch_start_next: opts.sync,
                ..Writer::default()
            }),
        };
        let rec = Recovered {
            first_index,
            last_index,
            configurations,
            may_have_lost_acked,
        };
        Ok((log, rec))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> LogOptions {
        self.opts
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` under the writer lock, unless an earlier write failed.
    fn with_writer<T>(
        &self,
        op: impl FnOnce(&mut Writer) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut w = self.lock_writer();
        w.check()?;
        op(&mut w)
    }

    pub fn first_index(&self) -> u64 {
        self.read().first_index
    }

    pub fn last_index(&self) -> u64 {
        self.read().last_index
    }

    /// Term of the entry at `index` (from memory, never from disk).
    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        let st = self.read();
        if index < st.first_index {
            return Err(StorageError::Compacted);
        }
        if index > st.last_index {
            return Err(StorageError::Unavailable);
        }
        st.terms
            .get(index)
            .ok_or_else(|| StorageError::Io(format!("no term recorded for index {index}")))
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        let mut v = self.entries(index, index + 1, 0)?;
        v.pop().ok_or(StorageError::Unavailable)
    }

    /// Entries in `[lo, hi)`: as many as fit in `max_bytes` of data, at least
    /// one when `lo < hi`. Recent entries come from the cache; older ones are
    /// read from their segment with one read per segment.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let st = self.read();
        if lo < st.first_index {
            return Err(StorageError::Compacted);
        }
        if hi > st.last_index + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        let cache_first = st.cache.first_index().unwrap_or(st.last_index + 1);
        let mut index = lo;
        // From disk.
        while index < hi.min(cache_first) {
            let si = st
                .segment_of(index)
                .ok_or_else(|| StorageError::Io(format!("log index {index} is in no segment")))?;
            let seg = &st.segments[si];
            let end = hi.min(cache_first).min(seg.last() + 1);
            // How many entries to read, from their sizes on disk. A
            // configuration entry's data differs in size on disk (braft's
            // encoding) and in memory, so the first entry the estimate
            // leaves out is read too, and the budget is applied below to
            // the decoded data.
            let mut n = 0;
            let mut estimate = bytes;
            while index + n < end {
                let (s, e) = seg.byte_range(index + n);
                let len = e - s - entry_codec::HEADER_LEN as u64;
                n += 1;
                if !(out.is_empty() && n == 1) && estimate + len > max_bytes {
                    break;
                }
                estimate += len;
            }
            let start = seg.byte_range(index).0;
            let stop = seg.byte_range(index + n - 1).1;
            let f = seg.file(&*self.fs, &self.dir)?;
            let mut buf = vec![0u8; (stop - start) as usize];
            f.read_exact_at(&mut buf, start).map_err(|e| {
                StorageError::Io(format!(
                    "read {} at byte offset {start}: {e}",
                    seg.path(&self.dir).display()
                ))
            })?;
            let mut decoded = Vec::with_capacity(n as usize);
            seg.decode_range(&self.dir, index, n, Bytes::from(buf), &mut decoded)?;
            for e in decoded {
                let len = e.data.len() as u64;
                if !out.is_empty() && bytes + len > max_bytes {
                    return Ok(out);
                }
                bytes += len;
                out.push(e);
                index += 1;
            }
        }
        // From the cache.
        while index < hi {
            let e = st
                .cache
                .get(index)
                .ok_or_else(|| StorageError::Io(format!("log index {index} missing from cache")))?;
            let len = e.data.len() as u64;
            if !out.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(e.clone());
            index += 1;
        }
        Ok(out)
    }

    /// Appends `entries` (consecutive indexes), first dropping any entry at
    /// or after `entries[0].index`, as [`crate::core::MemStorage::append`].
    /// Not durable until [`SegmentLog::sync`].
    pub fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let mut w = self.lock_writer();
        w.check()?;
        let (first, last) = {
            let st = self.read();
            (st.first_index, st.last_index)
        };
        if head.index < first || head.index > last + 1 {
            return Err(StorageError::Io(format!(
                "append at {} outside [{first}, {}]",
                head.index,
                last + 1
            )));
        }
        let mut prev_term = if head.index > first {
            self.term(head.index - 1)?
        } else {
            0
        };
        for (i, e) in entries.iter().enumerate() {
            if e.index != head.index + i as u64 {
                return Err(StorageError::Io(format!(
                    "append: entry {} follows entry {} (indexes must be consecutive)",
                    e.index,
                    head.index + i as u64 - 1
                )));
            }
            if e.term < prev_term {
                return Err(StorageError::Io(format!(
                    "append: entry {} has term {} below the previous term {prev_term}",
                    e.index, e.term
                )));
            }
            if !(0..=255).contains(&e.entry_type) || e.data.len() >= u32::MAX as usize {
                return Err(StorageError::Io(format!(
                    "append: entry {} cannot be stored (type {}, {} bytes)",
                    e.index,
                    e.entry_type,
                    e.data.len()
                )));
            }
            prev_term = e.term;
        }
        if head.index <= last {
            self.truncate_suffix_locked(&mut w, head.index - 1)?;
        }
        let mut batch_start = std::mem::take(&mut w.batch_start_next);
        let mut i = 0;
        while i < entries.len() {
            let (file, seg_size, seg_len) = self.open_segment_for(&mut w, entries[i].index)?;
            let mut buf = std::mem::take(&mut w.buf);
            buf.clear();
            let mut offsets = Vec::new();
            let mut size = seg_size;
            let start = i;
            while i < entries.len() {
                let nonempty = seg_len > 0 || i > start;
                if nonempty && (size >= self.opts.segment_size || size > u32::MAX as u64) {
                    break;
                }
                offsets.push(size as u32);
                entry_codec::encode_flagged(&entries[i], batch_start, &mut buf)
                    .map_err(StorageError::Io)?;
                batch_start = false;
                size = seg_size + buf.len() as u64;
                i += 1;
            }
            if !buf.is_empty() {
                if let Err(e) = file.write_at(&buf, seg_size) {
                    w.buf = buf;
                    return Err(w.fail(io_err("append to log segment", e)));
                }
                w.mark_dirty(&file);
                w.batch_bytes += buf.len() as u64;
                let mut st = self.write();
                let seg = st.segments.last_mut().expect("open segment");
                seg.offsets.extend_from_slice(&offsets);
                seg.size = size;
                seg.allocated = seg.allocated.max(size);
                for e in &entries[start..i] {
                    st.terms.push(e.index, e.term);
                    st.cache.push(e);
                }
                st.last_index = entries[i - 1].index;
            }
            w.buf = buf;
            if i < entries.len() {
                self.roll(&mut w)?;
            }
        }
        Ok(())
    }

    /// The open segment to append `index` to, creating it if needed:
    /// (file, its size, its entry count).
    fn open_segment_for(
        &self,
        w: &mut Writer,
        index: u64,
    ) -> Result<(Arc<dyn File>, u64, u64), StorageError> {
        {
            let st = self.read();
            if let Some(seg) = st.segments.last() {
                if !seg.sealed {
                    debug_assert_eq!(seg.last() + 1, index);
                    let f = seg.file(&*self.fs, &self.dir)?;
                    return Ok((f, seg.size, seg.len()));
                }
            }
        }
        let path = self.dir.join(segment::inprogress_name(index));
        let f = match self.fs.open(&path, OpenMode::Create) {
            Ok(f) => f,
            Err(e) => return Err(w.fail(io_err("create log segment", e))),
        };
        w.dir_dirty = true;
        self.write()
            .segments
            .push(Segment::new(index, false, Some(f.clone())));
        Ok((f, 0, 0))
    }

    /// After a sync, off the commit path (the log writer calls it once the
    /// batch's acknowledgements left): keeps real, synced zeros ahead of the
    /// open segment's last entry (see [`LogOptions::preallocate_bytes`] and
    /// `storage::prezero`), topped up once less than half the window is
    /// left, so most syncs overwrite space whose blocks and length are
    /// durable already. Does nothing while appends wait for a sync, or
    /// after a large batch. An IO error is sticky, as for any write.
    pub fn prepare_ahead(&self) -> Result<(), StorageError> {
        let mut w = self.lock_writer();
        w.check()?;
        let batch = std::mem::take(&mut w.last_batch);
        if !self.opts.sync || !w.dirty.is_empty() {
            return Ok(());
        }
        let window = ZeroAhead {
            window: self.opts.preallocate_bytes,
            max_batch: PREALLOCATE_MAX_BATCH,
        };
        // Only this writer (holding `w`) changes the open segment, so its
        // state can be read, the zeros written and synced without blocking
        // readers, and the new length recorded after.
        let (f, from, to) = {
            let st = self.read();
            let Some(seg) = st.segments.last().filter(|s| !s.sealed) else {
                return Ok(());
            };
            let Some((from, to)) =
                window.wanted(seg.size, seg.allocated, self.opts.segment_size, batch)
            else {
                return Ok(());
            };
            (seg.file(&*self.fs, &self.dir)?, from, to)
        };
        if let Err(e) = prezero::write_zeros(&*f, from, to, true) {
            return Err(w.fail(io_err("preallocate log segment", e)));
        }
        if let Some(seg) = self.write().segments.last_mut() {
            seg.allocated = to;
        }
        Ok(())
    }

    /// A clean close: cuts the zeros after the open segment's last entry
    /// (durably, with `sync`), so the directory holds braft's layout and a
    /// braft process can open it. The log stays usable (a later sync
    /// preallocates again). Does nothing after a write error.
    pub fn close(&self) -> Result<(), StorageError> {
        let mut w = self.lock_writer();
        w.check()?;
        let (f, size) = {
            let st = self.read();
            let Some(seg) = st.segments.last().filter(|s| s.allocated > s.size) else {
                return Ok(());
            };
            (seg.file(&*self.fs, &self.dir)?, seg.size)
        };
        let cut = f.set_len(size).and_then(|_| {
            if self.opts.sync {
                f.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = cut {
            return Err(w.fail(io_err("trim log segment", e)));
        }
        if let Some(seg) = self.write().segments.last_mut() {
            seg.allocated = seg.size;
        }
        Ok(())
    }

    /// Seals the open segment: later appends go to a new one; the rename
    /// to `log_<first>_<last>` happens in `sync`, after its data is durable.
    /// Preallocated zeros are cut first, so a closed segment ends with its
    /// last entry (the cut is made durable by the same sync).
    fn roll(&self, w: &mut Writer) -> Result<(), StorageError> {
        let mut st = self.write();
        let seg = st.segments.last_mut().expect("open segment");
        if seg.allocated > seg.size {
            let f = seg.file(&*self.fs, &self.dir)?;
            if let Err(e) = f.set_len(seg.size) {
                return Err(w.fail(io_err("trim log segment", e)));
            }
            seg.allocated = seg.size;
            w.mark_dirty(&f);
        }
        seg.sealed = true;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync of each segment
    /// written to, then closing sealed segments and fsyncing the directory).
    /// With `sync: false` only the renames are done.
    pub fn sync(&self) -> Result<(), StorageError> {
        let mut w = self.lock_writer();
        w.check()?;
        w.last_batch = std::mem::take(&mut w.batch_bytes);
        let dirty = std::mem::take(&mut w.dirty);
        if self.opts.sync {
            for f in dirty {
                if let Err(e) = f.sync_data() {
                    return Err(w.fail(io_err("sync log segment", e)));
                }
            }
        }
        {
            let mut st = self.write();
            for seg in st.segments.iter_mut().filter(|s| s.sealed && !s.closed) {
                let from = seg.path(&self.dir);
                let to = self.dir.join(segment::closed_name(seg.first, seg.last()));
                if let Err(e) = self.fs.rename(&from, &to) {
                    return Err(w.fail(io_err("close log segment", e)));
                }
                seg.closed = true;
                w.dir_dirty = true;
            }
        }
        if w.dir_dirty && self.opts.sync {
            if let Err(e) = self.fs.sync_dir(&self.dir) {
                return Err(w.fail(io_err("sync log directory", e)));
            }
        }
        w.dir_dirty = false;
        w.batch_start_next = self.opts.sync;
        Ok(())
    }

    /// Drops every entry after `last_kept` (durably, at once: a truncation
    /// is rare and the entries that follow must not sit on stale ones).
    pub fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        self.with_writer(|w| self.truncate_suffix_locked(w, last_kept))
    }

    fn truncate_suffix_locked(&self, w: &mut Writer, last_kept: u64) -> Result<(), StorageError> {
        // Crash safety: the directory changes (removing the later segments,
        // giving a closed segment to cut its open name back) are made
        // durable before any data is cut. A crash before that directory
        // sync leaves the old log; after it, the old log up to the end of
        // the segment to cut; after the cut's fdatasync, the truncated log.
        // Cutting first could leave a closed name on a file shorter than
        // the name says, or a cut segment before a later one that came
        // back (a gap): either would stop the node from starting.
        let mut st = self.write();
        if last_kept >= st.last_index {
            return Ok(());
        }
        let last_kept = last_kept.max(st.first_index - 1);
        while matches!(st.segments.last(), Some(s) if s.first > last_kept) {
            let seg = st.segments.pop().unwrap();
            if let Err(e) = self.fs.remove_file(&seg.path(&self.dir)) {
                return Err(w.fail(io_err("remove log segment", e)));
            }
            w.dir_dirty = true;
        }
        let mut cut = None;
        if let Some(seg) = st.segments.last_mut() {
            if seg.last() > last_kept {
                let keep = (last_kept + 1 - seg.first) as usize;
                let new_size = seg.offsets[keep] as u64;
                if seg.closed {
                    let from = seg.path(&self.dir);
                    let to = self.dir.join(segment::inprogress_name(seg.first));
                    if let Err(e) = self.fs.rename(&from, &to) {
                        return Err(w.fail(io_err("reopen log segment", e)));
                    }
                    seg.closed = false;
                    w.dir_dirty = true;
                    match self.fs.open(&to, OpenMode::ReadWrite) {
                        Ok(f) => seg.set_file(f),
                        Err(e) => return Err(w.fail(io_err("reopen log segment", e))),
                    }
                }
                seg.sealed = false;
                let f = seg.file(&*self.fs, &self.dir)?;
                // Readers stop at the new end at once; the bytes after it
                // are cut below.
                seg.offsets.truncate(keep);
                seg.size = new_size;
                seg.allocated = new_size;
                cut = Some((f, new_size));
            }
        }
        st.last_index = last_kept;
        st.terms.truncate_after(last_kept);
        st.cache.truncate_after(last_kept);
        drop(st);
        // Durable at once, even with `sync: false`: truncations are rare,
        // and a stale suffix resurfacing after a crash would follow the new
        // entries on disk (and read as corruption).
        if w.dir_dirty {
            if let Err(e) = self.fs.sync_dir(&self.dir) {
                return Err(w.fail(io_err("sync log directory", e)));
            }
            w.dir_dirty = false;
        }
        if let Some((f, new_size)) = cut {
            if let Err(e) = f.set_len(new_size) {
                return Err(w.fail(io_err("truncate log segment", e)));
            }
            if let Err(e) = f.sync_data() {
                return Err(w.fail(io_err("sync truncated log segment", e)));
            }
        }
        Ok(())
    }

    /// Drops every entry before `first_kept` (it is in a snapshot now):
    /// records the new first index, then deletes whole segments that end
    /// before it (a segment is never rewritten). Beyond the last entry it
    /// is a [`SegmentLog::reset`].
    pub fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        let mut w = self.lock_writer();
        w.check()?;
        let (first, last) = {
            let st = self.read();
            (st.first_index, st.last_index)
        };
        if first_kept <= first {
            return Ok(());
        }
        if first_kept > last + 1 {
            return self.reset_locked(&mut w, first_kept);
        }
        if let Err(e) = write_log_meta(&*self.fs, &self.dir, first_kept) {
            return Err(w.fail(e));
        }
        let mut st = self.write();
        st.first_index = first_kept;
        st.terms.drop_before(first_kept);
        st.cache.drop_before(first_kept);
        while st.segments.len() > 1 && st.segments[0].last() < first_kept {
            let seg = st.segments.remove(0);
            // Not synced: a leftover is deleted again at the next open.
            if let Err(e) = self.fs.remove_file(&seg.path(&self.dir)) {
                log::warn!("could not remove compacted log segment: {e}");
            }
        }
        Ok(())
    }

    /// Drops everything (a snapshot was installed); the next append starts
    /// at `next_index`.
    pub fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        self.with_writer(|w| self.reset_locked(w, next_index))
    }

    fn reset_locked(&self, w: &mut Writer, next_index: u64) -> Result<(), StorageError> {
        let next_index = next_index.max(1);
        let mut st = self.write();
        while let Some(seg) = st.segments.pop() {
            if let Err(e) = self.fs.remove_file(&seg.path(&self.dir)) {
                return Err(w.fail(io_err("remove log segment", e)));
            }
        }
        st.first_index = next_index;
        st.last_index = next_index - 1;
        st.terms.clear();
        st.cache.clear();
        drop(st);
        w.dirty.clear();
        // The removals must be durable before log_meta says where the log
        // starts, or old entries past `next_index` could come back (done
        // even with `sync: false`, like truncations).
        if let Err(e) = self.fs.sync_dir(&self.dir) {
            return Err(w.fail(io_err("sync log directory", e)));
        }
        w.dir_dirty = false;
        if let Err(e) = write_log_meta(&*self.fs, &self.dir, next_index) {
            return Err(w.fail(e));
        }
        // No entry is left before the next one.
        w.batch_start_next = self.opts.sync;
        Ok(())
    }

    /// After recovery, makes the log agree with the latest snapshot at
    /// `snapshot_index`: a log that ends before it, or starts after the
    /// entry following it, is reset to start right after it; a log that
    /// holds it drops the entries it covers. Idempotent.
    pub fn align_with_snapshot(&self, snapshot_index: u64) -> Result<(), StorageError> {
        let (first, last) = (self.first_index(), self.last_index());
        if last < snapshot_index || first > snapshot_index + 1 {
            self.reset(snapshot_index + 1)
        } else {
            self.truncate_prefix(snapshot_index + 1)
        }
    }

    /// The sticky error, if a write or sync has failed.
    pub fn failure(&self) -> Option<StorageError> {
        self.lock_writer().failed.clone()
    }

    /// Number of segment files (for tests and status).
    pub fn segment_count(&self) -> usize {
        self.read().segments.len()
    }
}

impl LogStorage for SegmentLog {
    fn first_index(&self) -> u64 {
        SegmentLog::first_index(self)
    }
    fn last_index(&self) -> u64 {
        SegmentLog::last_index(self)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        SegmentLog::term(self, index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        SegmentLog::entries(self, lo, hi, max_bytes)
    }
}
