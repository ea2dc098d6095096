//! The shared log (`shared://DIR`): one append stream for every group of a
//! process that names the same directory, made durable by one fdatasync per
//! round for all of them.
//!
//! Layout: files `shared_<seq>` (20 digits) in DIR, appended in sequence
//! order; a file is rolled once it reaches the segment size. Each holds
//! records:
//!
//! ```text
//! offset size field (little endian)
//!      0    4 magic "RRSL"
//!      4    1 kind   (1 entry, 2 truncate suffix, 3 truncate prefix,
//!                     4 reset, 5 group name)
//!      5    3 zero
//!      8    4 group  (a number, named by a name record)
//!     12    4 body length
//!     16    8 argument (entry: its index; truncate suffix: the last index
//!                       kept; truncate prefix: the first index kept;
//!                       reset: the next index)
//!     24    8 durable mark: the stream position synced when the record was
//!                           written (file sequence << 40 | byte offset)
//!     32    4 CRC32C of the body
//!     36    4 CRC32C of bytes 0..36
//! body: entry: term (8), entry type (1), data; name: the group's name;
//!       others: empty.
//! ```
//!
//! Rules:
//! - Every file starts with a name record and a truncate-prefix record (the
//!   first index) of every group known when it was created, so the files
//!   from any one on replay to the same live entries: the oldest file can
//!   be deleted as soon as none of its entries is live.
//! - An entry is live until a truncation, compaction or reset of its group
//!   drops it. Each file counts its live entries; after a sync round the
//!   oldest files without live entries (never the file being appended)
//!   are deleted. Records that made them dead were synced first.
//! - A group whose old entries pin the oldest file keeps it (and the files
//!   after it) until they are compacted, or rewritten:
//!   [`SharedLog::rewrite_oldest`] copies the live entries of the groups
//!   holding entries in the oldest file to the end of the stream (a reset
//!   record, then the entries), which frees it at the next round. The
//!   syncer does so by itself after a round when those groups' live
//!   records take at most half the oldest file's size (idle groups' last
//!   entries pinning a file of other groups' dead ones), so a rewrite frees
//!   at least twice what it writes.
//! - Records are buffered: an append, truncation, compaction, reset or name
//!   record is encoded into the current file's buffer under the log's lock
//!   (no IO); the syncer's round writes every file's buffer with one pwrite
//!   per file, in stream order (also into files it then deletes), before
//!   its fdatasyncs. Reads of records not written yet come from the buffer
//!   or from the bytes being written. Closing the log writes what is
//!   still buffered.
//! - Appends, truncations and resets are records, durable with the next
//!   sync round that covers them. A crash before it leaves the log as it
//!   was before them (the stream is cut at its first damaged record, so
//!   nothing written after a lost record survives): no truncated entry comes
//!   back once the round that wrote its truncation has completed.
//! - Group commit across groups: [`SharedGroupLog::sync_then`] queues a
//!   continuation; the log's syncer thread takes every queued one, fdatasyncs
//!   each file written since its last round (and the directory if files
//!   came or went), then runs them in queue order. A group's continuations
//!   therefore run in its submission order, each after a sync that covers
//!   every record it wrote before queueing.
//! - Any write or sync error is sticky: every later mutation and sync of
//!   every group fails with it.
//!
//! Recovery replays every file in order. At the first record that does not
//! read whole (a bad header or body checksum, or a short record), recovery
//! looks for any later record (found by its magic and header checksum)
//! whose durable mark lies beyond the damaged spot. If there is none, the
//! spot lies in the last, unsynced round: the stream is cut there (later
//! files removed) and every group recovers what came before. If there is
//! one, the spot was synced data, and:
//! - a record whose header reads (its group and length are known) but
//!   whose body is damaged makes that group fail to open, naming the file
//!   and offset; replay skips the record and every other group opens with
//!   all its entries;
//! - a record whose header is damaged names no group: the directory fails
//!   to open for every group (nothing is cut silently).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use super::cache::EntryCache;
use super::fs::{create_dir_durable, io_err, read_whole, DirLock, File, FileSystem, OpenMode};
use super::segment_log::{LogOptions, Recovered};
use crate::core::{LogStorage, StorageError};
use crate::fast_hash::FastHashMap;
use crate::proto::{Entry, EntryType};

/// File name prefix of the shared log's files.
pub const SHARED_FILE_PREFIX: &str = "shared_";
/// Record magic, "RRSL" as bytes.
const MAGIC: [u8; 4] = *b"RRSL";
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 40;
/// Bits of a stream position that hold the byte offset in its file.
const OFFSET_BITS: u32 = 40;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE_SUFFIX: u8 = 2;
const KIND_TRUNCATE_PREFIX: u8 = 3;
const KIND_RESET: u8 = 4;
const KIND_NAME: u8 = 5;

/// Called once a sync round covering the caller's records is done.
pub type SyncDone = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

fn position(seq: u64, offset: u64) -> u64 {
    (seq << OFFSET_BITS) | offset
}

fn file_name(seq: u64) -> String {
    format!("{SHARED_FILE_PREFIX}{seq:020}")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SHARED_FILE_PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u8,
    pub group: u32,
    pub body_len: u32,
    pub arg: u64,
    pub durable: u64,
    pub body_crc: u32,
}

fn encode_record(kind: u8, group: u32, arg: u64, durable: u64, body: &[&[u8]], out: &mut Vec<u8>) {
    let len: usize = body.iter().map(|b| b.len()).sum();
    let mut crc = 0u32;
    for part in body {
        crc = crc32c::crc32c_append(crc, part);
    }
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = kind;
    h[8..12].copy_from_slice(&group.to_le_bytes());
    h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    h[16..24].copy_from_slice(&arg.to_le_bytes());
    h[24..32].copy_from_slice(&durable.to_le_bytes());
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    let hcrc = crc32c::crc32c(&h[0..36]);
    h[36..40].copy_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&h);
    for part in body {
        out.extend_from_slice(part);
    }
}

/// Decodes and verifies the header at the start of `b`.
pub fn decode_record_header(b: &[u8]) -> Option<RecordHeader> {
    if b.len() < RECORD_HEADER_LEN || b[0..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    if crc32c::crc32c(&b[0..36]) != u32_at(36) {
        return None;
    }
    let kind = b[4];
    if !(KIND_ENTRY..=KIND_NAME).contains(&kind) || b[5..8] != [0, 0, 0] {
        return None;
    }
    Some(RecordHeader {
        kind,
        group: u32_at(8),
        body_len: u32_at(12),
        arg: u64_at(16),
        durable: u64_at(24),
        body_crc: u32_at(32),
    })
}

/// Where an entry's record is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
    term: u64,
    is_conf: bool,
}

impl Loc {
    fn end(&self) -> u64 {
        position(self.seq, self.offset + u64::from(self.len))
    }
}

#[derive(Debug)]
struct SegFile {
    file: Arc<dyn File>,
    /// Bytes of the file's records, written to it or buffered.
    size: u64,
    /// The records from this offset on are not handed to the file yet:
    /// they are in `buffer`, written by the next sync round.
    buffered_from: u64,
    buffer: Vec<u8>,
    /// Records the syncer is writing now (their offset and bytes): read
    /// from here until the write is done.
    writing: Option<(u64, Arc<Vec<u8>>)>,
    /// Live entries recorded in this file, per group (no zero counts).
    live: FastHashMap<u32, u64>,
}

impl SegFile {
    /// A file whose first `size` bytes are in it.
    fn new(file: Arc<dyn File>, size: u64) -> SegFile {
        SegFile {
            file,
            size,
            buffered_from: size,
            buffer: Vec::new(),
            writing: None,
            live: FastHashMap::default(),
        }
    }

    /// Buffers the records `encode` writes at the end of the file; returns
    /// their offset and length.
    fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> (u64, u32) {
        let start = self.buffer.len();
        encode(&mut self.buffer);
        let len = (self.buffer.len() - start) as u64;
        let offset = self.size;
        self.size += len;
        (offset, len as u32)
    }

    /// The `len` bytes at `offset`: from the buffer, the round being
    /// written, or the file.
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        if offset >= self.buffered_from {
            let at = (offset - self.buffered_from) as usize;
            if let Some(b) = self.buffer.get(at..at + len) {
                return Ok(b.to_vec());
            }
        } else if let Some((from, bytes)) = &self.writing {
            if offset >= *from {
                let at = (offset - from) as usize;
                if let Some(b) = bytes.get(at..at + len) {
                    return Ok(b.to_vec());
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

#[derive(Debug)]
struct Group {
    id: u32,
    name: String,
    /// Bytes of the records of its live entries.
    bytes: u64,
    first: u64,
    /// The first index as the group's compactions and resets set it. On
    /// replay `first` may lie above it: an entry whose predecessors were in
    /// deleted files (dead, so a later record drops it too) starts the
    /// group at its own index; a truncation that then empties the group
    /// brings `first` back down, to the floor at the lowest.
    floor: u64,
    locs: VecDeque<Loc>,
    cache: EntryCache,
    /// While the group is open: its first index and terms, shared with its
    /// [`SharedGroupLog`], which reads them without the log's lock.
    terms: Option<Arc<Mutex<Terms>>>,
    open: bool,
    /// Why the group cannot open (a damaged synced record of it).
    damaged: Option<String>,
}

impl Group {
    fn new(id: u32, name: String) -> Group {
        Group {
            id,
            name,
            bytes: 0,
            first: 1,
            floor: 1,
            locs: VecDeque::new(),
            cache: EntryCache::new(0),
            terms: None,
            open: false,
            damaged: None,
        }
    }

    fn last(&self) -> u64 {
        self.first + self.locs.len() as u64 - 1
    }

    /// Brings the terms an open group's handle reads in line with `locs`
    /// after entries were dropped from either end (`from_front`: how many
    /// from the front).
    fn trim_terms(&self, from_front: usize) {
        if let Some(t) = &self.terms {
            let mut t = lock(t);
            let n = from_front.min(t.terms.len());
            t.terms.drain(..n);
            t.terms.truncate(self.locs.len());
            t.first = self.first;
        }
    }
}

/// An open group's first index and the term of each of its entries.
#[derive(Debug, Default)]
struct Terms {
    first: u64,
    terms: VecDeque<u64>,
}

impl Terms {
    fn last(&self) -> u64 {
        self.first + self.terms.len() as u64 - 1
    }
}

impl Group {
    /// Counts the entry at `loc` dead (in its file and in the group).
    fn release(&mut self, files: &mut BTreeMap<u64, SegFile>, loc: &Loc) {
        self.bytes -= u64::from(loc.len);
        if let Some(f) = files.get_mut(&loc.seq) {
            if let Some(n) = f.live.get_mut(&self.id) {
                *n -= 1;
                if *n == 0 {
                    f.live.remove(&self.id);
                }
            }
        }
    }

    fn truncate_after(&mut self, last_kept: u64, files: &mut BTreeMap<u64, SegFile>) {
        while self.last() > last_kept && !self.locs.is_empty() {
            let loc = self.locs.pop_back().unwrap();
            self.release(files, &loc);
        }
        if self.locs.is_empty() && last_kept < self.last() {
            self.first = self.floor.max(last_kept + 1);
        }
        self.trim_terms(0);
        self.cache.truncate_after(last_kept);
    }

    fn drop_before(&mut self, first_kept: u64, files: &mut BTreeMap<u64, SegFile>) {
        if first_kept > self.last() + 1 {
            self.reset(first_kept, files);
            return;
        }
        let before = self.first;
        while self.first < first_kept {
            let loc = self.locs.pop_front().unwrap();
            self.release(files, &loc);
            self.first += 1;
        }
        self.trim_terms((self.first - before) as usize);
        self.floor = self.first;
        self.cache.drop_before(first_kept);
    }

    /// A compaction to `first_kept`: drops the entries before it and keeps
    /// the floor at least there. Replay meets the record when `first` may
    /// already lie above it (the group restarted at a surviving entry whose
    /// predecessors were in deleted files); the floor still rises, or a
    /// later truncation would bring `first` below the compaction.
    fn compact_to(&mut self, first_kept: u64, files: &mut BTreeMap<u64, SegFile>) {
        if first_kept > self.first {
            self.drop_before(first_kept, files);
        } else {
            self.floor = self.floor.max(first_kept);
        }
    }

    fn reset(&mut self, next: u64, files: &mut BTreeMap<u64, SegFile>) {
        self.restart_at(next, files);
        self.floor = self.first;
    }

    /// Drops every entry; the next one is `next` (the floor stays).
    fn restart_at(&mut self, next: u64, files: &mut BTreeMap<u64, SegFile>) {
        while let Some(loc) = self.locs.pop_front() {
            self.release(files, &loc);
        }
        self.first = next.max(1);
        self.trim_terms(usize::MAX);
        self.cache.clear();
    }

    /// Records the entry `index` at `loc` with append semantics: an index at
    /// or before the last drops the entries from it on; one past a gap (or
    /// before the first) starts the group over there.
    fn put(&mut self, index: u64, loc: Loc, files: &mut BTreeMap<u64, SegFile>) {
        if index < self.first || index > self.last() + 1 {
            self.restart_at(index, files);
        } else if index <= self.last() {
            self.truncate_after(index - 1, files);
        }
        self.locs.push_back(loc);
        if let Some(t) = &self.terms {
            let mut t = lock(t);
            t.terms.push_back(loc.term);
            t.first = self.first;
        }
        self.bytes += u64::from(loc.len);
        if let Some(f) = files.get_mut(&loc.seq) {
            *f.live.entry(self.id).or_default() += 1;
        }
    }

    /// Moves the record of the `i`-th entry to `loc` (a copy of it): its
    /// index and term stay.
    fn relocate(&mut self, i: usize, loc: Loc, files: &mut BTreeMap<u64, SegFile>) {
        let old = self.locs[i];
        self.release(files, &old);
        self.locs[i] = loc;
        self.bytes += u64::from(loc.len);
        if let Some(f) = files.get_mut(&loc.seq) {
            *f.live.entry(self.id).or_default() += 1;
        }
    }
}

#[derive(Debug)]
struct State {
    files: BTreeMap<u64, SegFile>,
    /// The file being appended.
    current: u64,
    groups: FastHashMap<u32, Group>,
    by_name: HashMap<String, u32>,
    next_group: u32,
    /// Stream position up to which everything is synced.
    durable: u64,
    /// Files written since the syncer last took them.
    unsynced: BTreeSet<u64>,
    /// A file was created since the syncer last synced the directory.
    dir_dirty: bool,
    failed: Option<StorageError>,
    /// Recovery cut bytes other than zeros (see [`Recovered`]).
    cut_damage: bool,
    /// A written round's buffer, kept for the next one (no allocation per
    /// round).
    spare: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<SyncDone>,
    closed: bool,
    /// The syncer sleeps on the condition variable: only then does a new
    /// continuation wake it (a busy syncer takes it in its next round).
    sleeping: bool,
}

struct Inner {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: LogOptions,
    state: Mutex<State>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Sync rounds that ran an fdatasync.
    syncs: std::sync::atomic::AtomicU64,
    /// With [`LogOptions::stepped_rounds`]: the round written by
    /// [`SharedLog::write_round`] and not yet finished, with its
    /// continuations, and the rounds finished so far.
    stepped: Mutex<Stepped>,
}

#[derive(Default)]
struct Stepped {
    written: Option<(Result<WrittenRound, StorageError>, Vec<SyncDone>)>,
    rounds: u64,
}

/// One file's buffer, written at `offset` by a round.
struct BufferWrite {
    seq: u64,
    file: Arc<dyn File>,
    offset: u64,
    bytes: Arc<Vec<u8>>,
}

/// A sync round whose buffered records are written and not yet synced.
struct WrittenRound {
    /// The files to fdatasync.
    files: Vec<(u64, Arc<dyn File>)>,
    /// What was written.
    writes: Vec<BufferWrite>,
    dir_dirty: bool,
    /// The stream position the round makes durable.
    target: u64,
    /// Files without live entries, deleted once the round is synced.
    dead: Vec<u64>,
    /// The first write's failure.
    result: Result<(), StorageError>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedLog({})", self.dir.display())
    }
}

thread_local! {
    /// Set on a shared log's syncer thread.
    static ON_SYNCER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a shared log's syncer thread (whose
/// continuations must not wait for the syncer).
pub fn on_syncer_thread() -> bool {
    ON_SYNCER.with(|c| c.get())
}

/// The log of every group that names one `shared://` directory. See the
/// module documentation.
pub struct SharedLog {
    inner: Arc<Inner>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: DirLock,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sync rounds between two checks for an oldest file worth rewriting (a
/// check sums the live bytes of every group holding entries in it).
const RECLAIM_EVERY_ROUNDS: u64 = 8;

/// How long opening waits for a group or a log of this process that is
/// being released.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The process's open shared logs, by directory.
static REGISTRY: Mutex<BTreeMap<PathBuf, Weak<SharedLog>>> = Mutex::new(BTreeMap::new());

impl SharedLog {
    /// The shared log of `dir` in this process: the open one, or one opened
    /// now with `fs` and `opts` (the first opener's options hold for all).
    pub fn open_shared(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: LogOptions,
    ) -> Result<Arc<SharedLog>, StorageError> {
        if opts.stepped_rounds {
            // A stepped log belongs to its one opener: a simulated node has
            // a file system of its own, whose paths other nodes' repeat.
            return SharedLog::open(fs, dir, opts);
        }
        create_dir_durable(&*fs, dir).map_err(|e| io_err("create shared log directory", e))?;
        let key = fs
            .canonical(dir)
            .map_err(|e| io_err("shared log directory", e))?;
        let mut reg = lock(&REGISTRY);
        let closing = match reg.get(&key) {
            Some(weak) => match weak.upgrade() {
                Some(log) => return Ok(log),
                None => true,
            },
            None => false,
        };
        // A log of this process that is closing holds the directory's lock
        // until its drop completes (its last group may have been released
        // on another thread a moment ago).
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        let log = loop {
            match SharedLog::open(fs.clone(), dir, opts) {
                Err(e) if closing && std::time::Instant::now() < deadline => {
                    log::debug!("shared log {}: waiting for its release: {e}", dir.display());
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        };
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(key, Arc::downgrade(&log));
        Ok(log)
    }

    /// Opens (recovering) the shared log in `dir`, which it locks while open.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        opts: LogOptions,
    ) -> Result<Arc<SharedLog>, StorageError> {
        create_dir_durable(&*fs, dir).map_err(|e| io_err("create shared log directory", e))?;
        let dir_lock = fs.lock_dir(dir).map_err(|e| {
            StorageError::Io(format!(
                "shared log {} is in use by another process or log: {e}",
                dir.display()
            ))
        })?;
        let state = recover(&*fs, dir)?;
        let inner = Arc::new(Inner {
            fs,
            dir: dir.to_path_buf(),
            opts,
            state: Mutex::new(state),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            syncs: std::sync::atomic::AtomicU64::new(0),
            stepped: Mutex::new(Stepped::default()),
        });
        // Everything kept is made durable before any new record relies on
        // it; new records go to a new file.
        inner.sync_round_now()?;
        {
            let mut st = lock(&inner.state);
            inner.start_file(&mut st)?;
        }
        let syncer = if opts.stepped_rounds {
            None
        } else {
            let worker = inner.clone();
            let thread = std::thread::Builder::new()
                .name("rraft-shared-log".into())
                .spawn(move || {
                    no_wakeup_preemption();
                    worker.run_syncer()
                })
                .map_err(|e| io_err("start the shared log's syncer thread", e))?;
            Some(thread)
        };
        Ok(Arc::new(SharedLog {
            inner,
            syncer: Mutex::new(syncer),
            _lock: dir_lock,
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Sync rounds so far that fdatasynced at least one file.
    pub fn sync_rounds(&self) -> u64 {
        self.inner.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// With [`LogOptions::stepped_rounds`], a sync round's first half: takes
    /// the continuations queued so far and writes every buffered record
    /// (not yet synced). False if no continuation waits or a written round
    /// is not finished yet.
    pub fn write_round(&self) -> bool {
        let inner = &self.inner;
        let mut stepped = lock(&inner.stepped);
        if stepped.written.is_some() {
            return false;
        }
        let pending = std::mem::take(&mut lock(&inner.queue).pending);
        if pending.is_empty() {
            return false;
        }
        stepped.written = Some((inner.write_round(), pending));
        true
    }

    /// With [`LogOptions::stepped_rounds`], the second half of the round
    /// [`SharedLog::write_round`] wrote: fdatasync, then the continuations.
    /// False if no round was written.
    pub fn finish_round(&self) -> bool {
        let inner = &self.inner;
        let (written, rounds) = {
            let mut stepped = lock(&inner.stepped);
            let Some(written) = stepped.written.take() else {
                return false;
            };
            stepped.rounds += 1;
            (written, stepped.rounds)
        };
        let (round, pending) = written;
        let result = round.and_then(|r| inner.finish_round(r));
        inner.after_round(rounds, result, pending);
        true
    }

    /// With [`LogOptions::stepped_rounds`], a power loss: the written round
    /// and every queued continuation are dropped, never run (their writes
    /// were not acknowledged). The records still buffered are dropped with
    /// the log.
    pub fn abandon_rounds(&self) {
        let inner = &self.inner;
        let written = lock(&inner.stepped).written.take();
        let pending = std::mem::take(&mut lock(&inner.queue).pending);
        drop((written, pending));
    }

    /// The names of the groups the log knows, sorted.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.inner.state).by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// The files of the log, oldest first.
    pub fn file_names(&self) -> Vec<String> {
        lock(&self.inner.state)
            .files
            .keys()
            .map(|&s| file_name(s))
            .collect()
    }

    /// Opens the log of the group `name` (created empty on first use). A
    /// group is open at most once at a time.
    pub fn open_group(
        self: &Arc<Self>,
        name: &str,
        cache_bytes: u64,
    ) -> Result<(SharedGroupLog, Recovered), StorageError> {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        let id = match st.by_name.get(name) {
            Some(&id) => id,
            None => {
                let id = st.next_group;
                st.next_group += 1;
                st.groups.insert(id, Group::new(id, name.to_string()));
                st.by_name.insert(name.to_string(), id);
                let mut buf = Vec::new();
                let durable = st.durable;
                encode_record(KIND_NAME, id, 0, durable, &[name.as_bytes()], &mut buf);
                inner.write(&mut st, &buf)?;
                id
            }
        };
        // A node restarting in this process: its old log may be released
        // on another thread a moment after its shutdown returned.
        let deadline = std::time::Instant::now() + RELEASE_WAIT;
        while st.groups[&id].open && std::time::Instant::now() < deadline {
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(5));
            st = lock(&inner.state);
        }
        let cut_damage = st.cut_damage;
        let g = st.groups.get_mut(&id).unwrap();
        if g.open {
            return Err(StorageError::Io(format!(
                "shared log {}: group {name:?} is already open",
                inner.dir.display()
            )));
        }
        if let Some(why) = &g.damaged {
            return Err(StorageError::Io(why.clone()));
        }
        g.open = true;
        g.cache = EntryCache::new(cache_bytes);
        let terms = Arc::new(Mutex::new(Terms {
            first: g.first,
            terms: g.locs.iter().map(|l| l.term).collect(),
        }));
        g.terms = Some(terms.clone());
        let (first, last) = (g.first, g.last());
        let conf_indexes: Vec<u64> = g
            .locs
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_conf)
            .map(|(i, _)| first + i as u64)
            .collect();
        drop(st);
        let log = SharedGroupLog {
            log: self.clone(),
            id,
            terms,
        };
        let mut configurations = Vec::new();
        for index in conf_indexes {
            configurations.push(log.entry(index)?);
        }
        Ok((
            log,
            Recovered {
                first_index: first,
                last_index: last,
                configurations,
                may_have_lost_acked: cut_damage,
            },
        ))
    }

    /// Copies the live entries of the groups that still hold entries in the
    /// oldest file (if it is not the one being appended) to the end of the
    /// stream, so that the next sync round deletes it. Returns whether
    /// there was such a file.
    pub fn rewrite_oldest(&self) -> Result<bool, StorageError> {
        let mut st = lock(&self.inner.state);
        self.inner.rewrite_oldest(&mut st)
    }

    /// Runs a sync round on the calling thread and waits for it (tests).
    pub fn sync_now(&self) -> Result<(), StorageError> {
        wait_for(|done| self.inner.enqueue(done))
    }
}

impl Drop for SharedLog {
    fn drop(&mut self) {
        lock(&self.inner.queue).closed = true;
        self.inner.wake.notify_all();
        if let Some(h) = lock(&self.syncer).take() {
            if !on_syncer_thread() {
                let _ = h.join();
            }
        }
    }
}

/// Buffers the entry record of `e` at the end of file `seq`; returns its
/// location.
fn buffer_entry(group: u32, e: &Entry, durable: u64, seq: u64, f: &mut SegFile) -> Loc {
    let mut body_head = [0u8; 9];
    body_head[0..8].copy_from_slice(&e.term.to_le_bytes());
    body_head[8] = e.entry_type as u8;
    let (offset, len) = f.push(|out| {
        encode_record(
            KIND_ENTRY,
            group,
            e.index,
            durable,
            &[&body_head, &e.data],
            out,
        )
    });
    Loc {
        seq,
        offset,
        len,
        term: e.term,
        is_conf: e.entry_type == EntryType::Configuration as i32,
    }
}

fn decode_entry(index: u64, h: &RecordHeader, body: Bytes) -> Result<Entry, String> {
    if body.len() < 9 || body.len() != h.body_len as usize {
        return Err(format!("entry {index}: short record body"));
    }
    if crc32c::crc32c(&body) != h.body_crc {
        return Err(format!("entry {index}: body checksum mismatch"));
    }
    let term = u64::from_le_bytes(body[0..8].try_into().unwrap());
    Ok(Entry {
        term,
        index,
        entry_type: i32::from(body[8]),
        data: body.slice(9..),
    })
}

/// Makes the calling thread (the syncer) a batch thread for the kernel's
/// scheduler (Linux `SCHED_BATCH`, same priority): a driver that queues a
/// write and wakes it is not preempted at once, so it finishes its turn,
/// and the round the syncer then runs takes more groups' writes; its dones
/// wake the drivers without being switched out for each. Only the syncer:
/// a batch thread also waits behind other processes' threads for a core,
/// which on the commit path of one group (the log writers, the FSM
/// threads) costs more than the switches it saves.
fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the duration of the
        // call; pid 0 names the calling thread. A failure leaves the policy
        // as it was, which is only slower.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}

/// Runs `start` with a completion and blocks until it is called.
fn wait_for(start: impl FnOnce(SyncDone)) -> Result<(), StorageError> {
    let (tx, rx) = std::sync::mpsc::channel();
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv()
        .unwrap_or_else(|_| Err(StorageError::Io("the shared log closed".into())))
}

impl Inner {
    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(file_name(seq))
    }

    fn fail(&self, st: &mut State, e: StorageError) -> StorageError {
        log::error!(
            "shared log {} failed, refusing every later write: {e}",
            self.dir.display()
        );
        st.failed.get_or_insert(e).clone()
    }

    /// Starts a new file with the name and first index of every known group.
    fn start_file(&self, st: &mut State) -> Result<(), StorageError> {
        let seq = st.files.keys().next_back().map_or(1, |s| s + 1);
        let path = self.path(seq);
        let file = match self.fs.open(&path, OpenMode::Create) {
            Ok(f) => f,
            Err(e) => return Err(self.fail(st, io_err("create shared log file", e))),
        };
        st.files.insert(seq, SegFile::new(file, 0));
        st.current = seq;
        st.dir_dirty = true;
        st.unsynced.insert(seq);
        let mut buf = Vec::new();
        let mut ids: Vec<u32> = st.groups.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let g = &st.groups[&id];
            encode_record(KIND_NAME, id, 0, st.durable, &[g.name.as_bytes()], &mut buf);
            encode_record(KIND_TRUNCATE_PREFIX, id, g.first, st.durable, &[], &mut buf);
        }
        if !buf.is_empty() {
            self.write_at_end(st, &buf)?;
        }
        Ok(())
    }

    /// Rolls to a new file if the current one is full; returns the (file,
    /// offset) where `len` more bytes will be written.
    fn append_offset(&self, st: &mut State, len: usize) -> Result<(u64, u64), StorageError> {
        let size = st.files[&st.current].size;
        if size > 0 && size + len as u64 > self.opts.segment_size {
            self.start_file(st)?;
        }
        Ok((st.current, st.files[&st.current].size))
    }

    /// Buffers `buf` (whole records) at the end of the stream: the next
    /// sync round writes it.
    fn write_at_end(&self, st: &mut State, buf: &[u8]) -> Result<(), StorageError> {
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        let seq = st.current;
        let f = st.files.get_mut(&seq).unwrap();
        f.push(|out| out.extend_from_slice(buf));
        st.unsynced.insert(seq);
        Ok(())
    }

    /// Writes `buf` (records not holding entries) at the end of the stream.
    fn write(&self, st: &mut State, buf: &[u8]) -> Result<(), StorageError> {
        self.append_offset(st, buf.len())?;
        self.write_at_end(st, buf)
    }

    fn enqueue(&self, done: SyncDone) {
        let mut q = lock(&self.queue);
        q.pending.push(done);
        if q.sleeping {
            q.sleeping = false;
            drop(q);
            self.wake.notify_one();
        }
    }

    fn run_syncer(self: Arc<Self>) {
        ON_SYNCER.with(|c| c.set(true));
        let mut rounds = 0u64;
        loop {
            let pending = {
                let mut q = lock(&self.queue);
                while q.pending.is_empty() && !q.closed {
                    q.sleeping = true;
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                q.sleeping = false;
                if q.pending.is_empty() {
                    drop(q);
                    // Closing: records no round wrote yet reach the files
                    // (not acknowledged, but a reopen finds them, as it
                    // finds a segment log's unsynced writes).
                    if !lock(&self.state).unsynced.is_empty() {
                        let _ = self.sync_round_now();
                    }
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let result = self.sync_round_now();
            rounds += 1;
            self.after_round(rounds, result, pending);
        }
    }

    /// After the `rounds`-th round: sometimes a rewrite of the oldest file,
    /// then the round's continuations, in order.
    fn after_round(&self, rounds: u64, result: Result<(), StorageError>, pending: Vec<SyncDone>) {
        if result.is_ok() && rounds % RECLAIM_EVERY_ROUNDS == 0 {
            self.reclaim();
        }
        for done in pending {
            let r = result.clone();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || done(r))).is_err() {
                log::error!("a shared log sync continuation panicked");
            }
        }
    }

    /// One sync round: fdatasyncs every file written since the last round
    /// (and the directory if a file was created), then deletes the oldest
    /// files without live entries.
    fn sync_round_now(&self) -> Result<(), StorageError> {
        let round = self.write_round()?;
        self.finish_round(round)
    }

    /// A round's first half: takes every file's buffer and writes it (in
    /// stream order), and takes the files to sync and to delete.
    fn write_round(&self) -> Result<WrittenRound, StorageError> {
        let (files, writes, dir_dirty, target, dead) = {
            let mut st = lock(&self.state);
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            let unsynced = std::mem::take(&mut st.unsynced);
            let files: Vec<(u64, Arc<dyn File>)> = unsynced
                .iter()
                .filter_map(|s| st.files.get(s).map(|f| (*s, f.file.clone())))
                .collect();
            // Every buffered record is written, in stream order, before the
            // fdatasyncs, also in files about to be deleted: the stream on
            // disk stays whole if the deletion does not happen.
            let mut writes = Vec::new();
            let State {
                files: segs, spare, ..
            } = &mut *st;
            for (seq, f) in segs.iter_mut() {
                if f.buffer.is_empty() {
                    continue;
                }
                let next = std::mem::take(spare);
                let bytes = Arc::new(std::mem::replace(&mut f.buffer, next));
                f.writing = Some((f.buffered_from, bytes.clone()));
                writes.push(BufferWrite {
                    seq: *seq,
                    file: f.file.clone(),
                    offset: f.buffered_from,
                    bytes,
                });
                f.buffered_from = f.size;
            }
            let target = st
                .files
                .get(&st.current)
                .map_or(st.durable, |f| position(st.current, f.size));
            let mut dead = Vec::new();
            while let Some((&seq, f)) = st.files.iter().next() {
                if seq == st.current || !f.live.is_empty() {
                    break;
                }
                st.files.remove(&seq);
                dead.push(seq);
            }
            (
                files,
                writes,
                std::mem::take(&mut st.dir_dirty),
                target,
                dead,
            )
        };
        let mut result = Ok(());
        for w in &writes {
            if let Err(e) = w.file.write_at(&w.bytes, w.offset) {
                result = Err(io_err(format!("write {}", self.path(w.seq).display()), e));
                break;
            }
        }
        Ok(WrittenRound {
            files,
            writes,
            dir_dirty,
            target,
            dead,
            result,
        })
    }

    /// A round's second half: fdatasyncs what the first half wrote, then
    /// counts it durable and deletes the dead files.
    fn finish_round(&self, round: WrittenRound) -> Result<(), StorageError> {
        let WrittenRound {
            files,
            writes,
            dir_dirty,
            target,
            dead,
            mut result,
        } = round;
        if result.is_ok() {
            result = self.sync_files(&files, dir_dirty);
        }
        let mut st = lock(&self.state);
        match result {
            Ok(()) => {
                st.durable = st.durable.max(target);
                for BufferWrite { seq, bytes, .. } in writes {
                    if let Some(f) = st.files.get_mut(&seq) {
                        f.writing = None;
                    }
                    // Readers copy under the state lock: the buffer is no
                    // longer shared.
                    if let Ok(mut b) = Arc::try_unwrap(bytes) {
                        if b.capacity() > st.spare.capacity() {
                            b.clear();
                            st.spare = b;
                        }
                    }
                }
                drop(st);
                // The records that made these files dead are synced now.
                for seq in dead {
                    if let Err(e) = self.fs.remove_file(&self.path(seq)) {
                        log::warn!("shared log: removing {}: {e}", self.path(seq).display());
                    }
                }
                Ok(())
            }
            Err(e) => Err(self.fail(&mut st, e)),
        }
    }

    /// fdatasyncs `files` (unless syncing is off) and, if `dir_dirty`, the
    /// directory.
    fn sync_files(
        &self,
        files: &[(u64, Arc<dyn File>)],
        dir_dirty: bool,
    ) -> Result<(), StorageError> {
        let mut result = Ok(());
        if self.opts.sync && !files.is_empty() {
            self.syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            super::writer::count_sync();
        }
        for (seq, f) in files {
            if !self.opts.sync || self.opts.unsynced_rounds_mutation {
                break;
            }
            if let Err(e) = f.sync_data() {
                result = Err(io_err(format!("sync {}", self.path(*seq).display()), e));
                break;
            }
        }
        if result.is_ok() && dir_dirty {
            if let Err(e) = self.fs.sync_dir(&self.dir) {
                result = Err(io_err("sync shared log directory", e));
            }
        }
        result
    }

    /// See [`SharedLog::rewrite_oldest`].
    fn rewrite_oldest(&self, st: &mut State) -> Result<bool, StorageError> {
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        let Some((&oldest, f)) = st.files.iter().next() else {
            return Ok(false);
        };
        if oldest == st.current {
            return Ok(false);
        }
        let mut pinned: Vec<u32> = f.live.keys().copied().collect();
        pinned.sort_unstable();
        for id in pinned {
            let (first, last) = {
                let g = &st.groups[&id];
                (g.first, g.last())
            };
            let entries = self.read_entries(st, id, first, last + 1, u64::MAX)?;
            let durable = st.durable;
            let mut reset = Vec::new();
            encode_record(KIND_RESET, id, first, durable, &[], &mut reset);
            self.write(st, &reset)?;
            let seq = st.current;
            let State { groups, files, .. } = &mut *st;
            let g = groups.get_mut(&id).unwrap();
            // As replay will read it: reset to `first`, then the entries
            // (moved in place: the group's open handle sees no change).
            g.floor = first;
            for (i, e) in entries.iter().enumerate() {
                let loc = buffer_entry(id, e, durable, seq, files.get_mut(&seq).unwrap());
                g.relocate(i, loc, files);
            }
        }
        Ok(true)
    }

    /// Rewrites the oldest file when its live entries are few: the groups
    /// holding them have at most half the file's size of live records (so a
    /// rewrite frees at least twice what it writes), and a file other than
    /// it and the current one exists.
    fn reclaim(&self) {
        let mut st = lock(&self.state);
        if st.failed.is_some() || st.files.len() < 3 {
            return;
        }
        let (&oldest, f) = st.files.iter().next().unwrap();
        if oldest == st.current || f.live.is_empty() {
            return;
        }
        let pinned: u64 = f.live.keys().map(|id| st.groups[id].bytes).sum();
        if pinned * 2 > f.size {
            return;
        }
        if let Err(e) = self.rewrite_oldest(&mut st) {
            log::warn!(
                "shared log {}: rewriting the oldest file: {e}",
                self.dir.display()
            );
        }
    }

    /// Entries `[lo, hi)` of group `id`, within `max_bytes` of data (at
    /// least one).
    fn read_entries(
        &self,
        st: &State,
        id: u32,
        lo: u64,
        hi: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let g = &st.groups[&id];
        if lo < g.first {
            return Err(StorageError::Compacted);
        }
        if hi > g.last() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for index in lo..hi {
            let e = match g.cache.get(index) {
                Some(e) => e.clone(),
                None => {
                    let loc = g.locs[(index - g.first) as usize];
                    self.read_one(st, index, &loc)?
                }
            };
            let len = e.data.len() as u64;
            if !out.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(e);
        }
        Ok(out)
    }

    fn read_one(&self, st: &State, index: u64, loc: &Loc) -> Result<Entry, StorageError> {
        let path = self.path(loc.seq);
        let f = st
            .files
            .get(&loc.seq)
            .ok_or_else(|| StorageError::Io(format!("{} is gone", path.display())))?;
        let buf = f
            .read(loc.offset, loc.len as usize)
            .map_err(|e| io_err(format!("read {}", path.display()), e))?;
        let h = decode_record_header(&buf).filter(|h| h.kind == KIND_ENTRY && h.arg == index);
        let Some(h) = h else {
            return Err(StorageError::Io(format!(
                "{} byte offset {}: damaged record header of entry {index}",
                path.display(),
                loc.offset
            )));
        };
        let body = Bytes::from(buf).slice(RECORD_HEADER_LEN..);
        decode_entry(index, &h, body).map_err(|why| {
            StorageError::Io(format!(
                "{} byte offset {}: {why}",
                path.display(),
                loc.offset
            ))
        })
    }
}

/// Whether some valid record header after `from` in `files[at..]` carries
/// a durable mark beyond `damaged` (the damaged spot was synced).
fn synced_after(files: &[(u64, Vec<u8>)], at: usize, from: usize, damaged: u64) -> bool {
    for (i, (_, data)) in files.iter().enumerate().skip(at) {
        let start = if i == at { from } else { 0 };
        let mut p = start;
        while p + RECORD_HEADER_LEN <= data.len() {
            if data[p..p + 4] == MAGIC {
                if let Some(h) = decode_record_header(&data[p..]) {
                    if h.durable > damaged {
                        return true;
                    }
                }
            }
            p += 1;
        }
    }
    false
}

/// Replays every file of `dir` (see the module documentation).
fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<State, StorageError> {
    let mut seqs: Vec<u64> = fs
        .list_dir(dir)
        .map_err(|e| io_err("list shared log directory", e))?
        .iter()
        .filter_map(|n| parse_file_name(n))
        .collect();
    seqs.sort_unstable();
    let mut data = Vec::new();
    for &seq in &seqs {
        let path = dir.join(file_name(seq));
        let b = read_whole(fs, &path)
            .map_err(|e| io_err(format!("read {}", path.display()), e))?
            .unwrap_or_default();
        data.push((seq, b));
    }
    let mut st = State {
        files: BTreeMap::new(),
        current: 0,
        groups: FastHashMap::default(),
        by_name: HashMap::new(),
        next_group: 1,
        durable: 0,
        unsynced: BTreeSet::new(),
        dir_dirty: false,
        failed: None,
        cut_damage: false,
        spare: Vec::new(),
    };
    let mut cut: Option<(usize, usize)> = None;
    'files: for (fi, (seq, bytes)) in data.iter().enumerate() {
        let path = dir.join(file_name(*seq));
        let file = fs
            .open(&path, OpenMode::ReadWrite)
            .map_err(|e| io_err(format!("open {}", path.display()), e))?;
        st.files
            .insert(*seq, SegFile::new(file, bytes.len() as u64));
        let mut off = 0usize;
        while off < bytes.len() {
            let rest = &bytes[off..];
            let header = decode_record_header(rest);
            let whole = header.filter(|h| rest.len() >= RECORD_HEADER_LEN + h.body_len as usize);
            let body_ok = whole.is_some_and(|h| {
                let body = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + h.body_len as usize];
                crc32c::crc32c(body) == h.body_crc
            });
            if body_ok {
                let h = whole.unwrap();
                let body = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + h.body_len as usize];
                replay(&mut st, *seq, off as u64, &h, body);
                off += RECORD_HEADER_LEN + h.body_len as usize;
                continue;
            }
            let damaged = position(*seq, off as u64);
            if !synced_after(&data, fi, off + 1, damaged) {
                cut = Some((fi, off));
                break 'files;
            }
            match whole {
                Some(h) => {
                    // The group is known: it alone fails to open.
                    let why = format!(
                        "shared log {} byte offset {off}: a synced record of this group \
                         (index {}) is damaged; refusing to open the group",
                        path.display(),
                        h.arg
                    );
                    log::error!("{why}");
                    if let Some(g) = st.groups.get_mut(&h.group) {
                        g.damaged.get_or_insert(why);
                        off += RECORD_HEADER_LEN + h.body_len as usize;
                        continue;
                    }
                    return Err(StorageError::Io(format!(
                        "shared log {} byte offset {off}: a synced record of an unnamed \
                         group is damaged; refusing to open any group",
                        path.display()
                    )));
                }
                None => {
                    return Err(StorageError::Io(format!(
                        "shared log {} byte offset {off}: a synced record is damaged and \
                         names no group; refusing to open any group",
                        path.display()
                    )));
                }
            }
        }
    }
    if let Some((fi, off)) = cut {
        let (seq, bytes) = &data[fi];
        let tail = &bytes[off..];
        st.cut_damage = tail.iter().any(|&b| b != 0)
            || data[fi + 1..]
                .iter()
                .any(|(_, b)| b.iter().any(|&x| x != 0));
        log::warn!(
            "shared log {}: cutting a torn tail at {} byte offset {off}",
            dir.display(),
            file_name(*seq)
        );
        let f = &st.files[seq];
        f.file
            .set_len(off as u64)
            .and_then(|_| f.file.sync_data())
            .map_err(|e| io_err("cut shared log tail", e))?;
        let f = st.files.get_mut(seq).unwrap();
        f.size = off as u64;
        f.buffered_from = off as u64;
        for (later, _) in &data[fi + 1..] {
            fs.remove_file(&dir.join(file_name(*later)))
                .map_err(|e| io_err("remove shared log file after a torn tail", e))?;
        }
        fs.sync_dir(dir)
            .map_err(|e| io_err("sync shared log directory", e))?;
    }
    // Every kept file is synced by the first round after open.
    st.unsynced = st.files.keys().copied().collect();
    st.current = st.files.keys().next_back().copied().unwrap_or(0);
    Ok(st)
}

fn replay(st: &mut State, seq: u64, offset: u64, h: &RecordHeader, body: &[u8]) {
    if h.kind == KIND_NAME {
        let name = String::from_utf8_lossy(body).into_owned();
        st.next_group = st.next_group.max(h.group + 1);
        st.by_name.insert(name.clone(), h.group);
        st.groups
            .entry(h.group)
            .or_insert_with(|| Group::new(h.group, name));
        return;
    }
    let State { groups, files, .. } = st;
    // Records of a group named in no remaining file cannot occur (every
    // file names every group it follows); they are skipped.
    let Some(g) = groups.get_mut(&h.group) else {
        return;
    };
    match h.kind {
        KIND_ENTRY if body.len() >= 9 => {
            let loc = Loc {
                seq,
                offset,
                len: (RECORD_HEADER_LEN + body.len()) as u32,
                term: u64::from_le_bytes(body[0..8].try_into().unwrap()),
                is_conf: i32::from(body[8]) == EntryType::Configuration as i32,
            };
            g.put(h.arg, loc, files);
        }
        KIND_TRUNCATE_SUFFIX => g.truncate_after(h.arg, files),
        KIND_TRUNCATE_PREFIX => g.compact_to(h.arg, files),
        KIND_RESET => g.reset(h.arg, files),
        _ => {}
    }
}

/// One group's view of a [`SharedLog`]: the node's log. Dropping it closes
/// the group (its entries stay).
#[derive(Debug)]
pub struct SharedGroupLog {
    log: Arc<SharedLog>,
    id: u32,
    /// The group's first index and terms, kept by every mutation of the
    /// group under the log's lock: bounds and term lookups (the core's, on
    /// every message) take only this group's lock.
    terms: Arc<Mutex<Terms>>,
}

impl Drop for SharedGroupLog {
    fn drop(&mut self) {
        let mut st = lock(&self.log.inner.state);
        if let Some(g) = st.groups.get_mut(&self.id) {
            g.open = false;
            g.cache = EntryCache::new(0);
            g.terms = None;
        }
    }
}

impl SharedGroupLog {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.log.inner.state)
    }

    /// The shared log this group writes to.
    pub fn shared(&self) -> &Arc<SharedLog> {
        &self.log
    }

    pub fn first_index(&self) -> u64 {
        lock(&self.terms).first
    }

    pub fn last_index(&self) -> u64 {
        lock(&self.terms).last()
    }

    pub fn term(&self, index: u64) -> Result<u64, StorageError> {
        let t = lock(&self.terms);
        if index < t.first {
            return Err(StorageError::Compacted);
        }
        if index > t.last() {
            return Err(StorageError::Unavailable);
        }
        Ok(t.terms[(index - t.first) as usize])
    }

    pub fn entry(&self, index: u64) -> Result<Entry, StorageError> {
        let mut v = self.entries(index, index + 1, 0)?;
        v.pop().ok_or(StorageError::Unavailable)
    }

    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        let st = self.state();
        self.log.inner.read_entries(&st, self.id, lo, hi, max_bytes)
    }

    /// The shared log, if its owner steps its sync rounds
    /// ([`LogOptions::stepped_rounds`]).
    pub fn stepped_rounds(&self) -> Option<&SharedLog> {
        self.log.inner.opts.stepped_rounds.then_some(&*self.log)
    }

    /// The last index whose record is covered by a completed sync round.
    pub fn durable_last_index(&self) -> u64 {
        let st = self.state();
        let g = &st.groups[&self.id];
        let synced = g.locs.partition_point(|l| l.end() <= st.durable);
        g.first + synced as u64 - 1
    }

    /// Appends `entries` (consecutive), first dropping any entry at or after
    /// `entries[0].index` (with a truncation record). Durable once a sync
    /// round covers it.
    pub fn append(&self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let inner = &self.log.inner;
        let mut st = self.state();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        let (first, last) = {
            let g = &st.groups[&self.id];
            (g.first, g.last())
        };
        if head.index < first || head.index > last + 1 {
            return Err(StorageError::Io(format!(
                "append at {} outside [{first}, {}]",
                head.index,
                last + 1
            )));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.index != head.index + i as u64 {
                return Err(StorageError::Io(format!(
                    "append: entry {} follows entry {} (indexes must be consecutive)",
                    e.index,
                    head.index + i as u64 - 1
                )));
            }
            if EntryType::try_from(e.entry_type).is_err() {
                return Err(StorageError::Io(format!(
                    "entry {} has type {}, which the log cannot store",
                    e.index, e.entry_type
                )));
            }
        }
        let size: usize = entries
            .iter()
            .map(|e| RECORD_HEADER_LEN + 9 + e.data.len())
            .sum::<usize>()
            + RECORD_HEADER_LEN;
        let (seq, _) = inner.append_offset(&mut st, size)?;
        let durable = st.durable;
        let State {
            groups,
            files,
            unsynced,
            ..
        } = &mut *st;
        unsynced.insert(seq);
        let g = groups.get_mut(&self.id).unwrap();
        if head.index <= last {
            files.get_mut(&seq).unwrap().push(|out| {
                encode_record(
                    KIND_TRUNCATE_SUFFIX,
                    self.id,
                    head.index - 1,
                    durable,
                    &[],
                    out,
                )
            });
            g.truncate_after(head.index - 1, files);
        }
        for e in entries {
            let loc = buffer_entry(self.id, e, durable, seq, files.get_mut(&seq).unwrap());
            g.put(e.index, loc, files);
            g.cache.push(e);
        }
        Ok(())
    }

    fn control(&self, kind: u8, arg: u64) -> Result<(), StorageError> {
        let inner = &self.log.inner;
        let mut st = self.state();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        let mut buf = Vec::new();
        encode_record(kind, self.id, arg, st.durable, &[], &mut buf);
        inner.write(&mut st, &buf)?;
        let State { groups, files, .. } = &mut *st;
        let g = groups.get_mut(&self.id).unwrap();
        match kind {
            KIND_TRUNCATE_SUFFIX => g.truncate_after(arg, files),
            KIND_TRUNCATE_PREFIX => g.compact_to(arg, files),
            _ => g.reset(arg, files),
        }
        Ok(())
    }

    /// Drops every entry after `last_kept` (durable with the next round).
    pub fn truncate_suffix(&self, last_kept: u64) -> Result<(), StorageError> {
        if last_kept >= self.last_index() {
            return Ok(());
        }
        self.control(KIND_TRUNCATE_SUFFIX, last_kept)
    }

    /// Drops every entry before `first_kept`.
    pub fn truncate_prefix(&self, first_kept: u64) -> Result<(), StorageError> {
        if first_kept <= self.first_index() {
            return Ok(());
        }
        self.control(KIND_TRUNCATE_PREFIX, first_kept)
    }

    /// Drops everything; the next append starts at `next_index`.
    pub fn reset(&self, next_index: u64) -> Result<(), StorageError> {
        self.control(KIND_RESET, next_index.max(1))
    }

    /// Queues `done` for the next sync round (see the module
    /// documentation).
    pub fn sync_then(&self, done: SyncDone) {
        self.log.inner.enqueue(done);
    }

    /// Makes every record written so far durable, sharing the round with
    /// every other group that syncs meanwhile.
    pub fn sync(&self) -> Result<(), StorageError> {
        wait_for(|done| self.sync_then(done))
    }
}

impl LogStorage for SharedGroupLog {
    fn first_index(&self) -> u64 {
        SharedGroupLog::first_index(self)
    }
    fn last_index(&self) -> u64 {
        SharedGroupLog::last_index(self)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        SharedGroupLog::term(self, index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        SharedGroupLog::entries(self, lo, hi, max_bytes)
    }
}
