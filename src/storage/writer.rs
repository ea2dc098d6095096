//! The group-commit writer of one node's log.
//!
//! Requests queue on the node's lane of the log writers' pool (see
//! `worker_pool`: the nodes of a process share a few writer threads, one
//! log handled by one thread at a time). A writer thread takes everything
//! the lane has queued, applies
//! it in order (reset, appends), then makes the whole batch durable with one
//! log sync and at most one meta save (the last hard state of the batch),
//! and only then runs each request's `done`, in submission order. While it
//! waits on the disk, new requests pile up and form the next batch (Raft
//! thesis §10.2.1: the leader writes in parallel with replication).
//!
//! On any error the batch and every later request fail with that error:
//! nothing is acknowledged that is not durable.
//!
//! On a shared log (`shared://`, [`DurableLog::syncs_later`]) the writer
//! does not wait for the disk: it appends the batch, saves a changed term
//! or vote (a vote may be durable early: nothing promises it before the
//! batch's dones; the commit index saved with it is capped at the log's
//! durable last index), then hands the rest of the batch to the shared
//! log's next sync round, whose syncer thread runs the dones, in order,
//! after the fdatasync that covers the batch. The lane is free for the
//! next batch meanwhile, so one fdatasync serves the batches of every group
//! that wrote during it.
//!
//! A shared log's append does not wait for the disk, so a request that only
//! appends (no reset, no term or vote to save) skips the lane: the
//! submitting thread (the node's driver) appends it and queues it for the
//! next sync round itself, saving a pool thread's wake-up per write. It
//! does so only while the lane holds no job not yet handed to the syncer,
//! so the log's writes and the dones stay in submission order. A reset or a
//! meta save (an fsync) still runs on the lane, off the driver's thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::backend::DurableLog;
use super::meta::MetaStore;
use crate::core::StorageError;
use crate::proto::{Entry, HardState};
use crate::stage_trace::{self, Stage};
use crate::worker_pool::{Lane, Pool};

/// Called once the request is durable (or has failed).
pub type WriteDone = Box<dyn FnOnce(Result<(), StorageError>) + Send>;

/// One unit of work for the writer thread (one core `Ready`).
pub struct WriteRequest {
    /// A snapshot was installed: `reset(next_index)` the log first.
    pub reset_to: Option<u64>,
    /// Appended after the reset (truncating any stored suffix from
    /// `entries[0].index`).
    pub entries: Vec<Entry>,
    /// Saved after the entries.
    pub hard_state: Option<HardState>,
    pub done: WriteDone,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteRequest")
            .field("reset_to", &self.reset_to)
            .field("entries", &self.entries.len())
            .field("hard_state", &self.hard_state)
            .finish()
    }
}

/// Most requests taken into one batch (bounds the latency of the first).
const MAX_BATCH_REQUESTS: usize = 4096;

/// What the writer thread has done so far.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches written (each: at most one log sync and one meta save).
    pub batches: AtomicU64,
    /// Requests acknowledged or failed.
    pub requests: AtomicU64,
    /// How long each batch took to become durable (log fdatasync and meta
    /// save), for batches that wrote anything.
    pub sync_latency: crate::metrics::Histogram,
}

/// Durability points (log syncs and meta saves, counted once per batch)
/// of every writer of the process.
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// How many batches the process's log writers made durable so far (each:
/// one log fdatasync and/or one meta save).
pub fn process_syncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// Counts one durability point (a shared log's sync round).
pub(crate) fn count_sync() {
    SYNCS.fetch_add(1, Ordering::Relaxed);
}

/// What the writer's queue carries.
enum Job {
    Write(WriteRequest),
    /// Log compaction after a snapshot: runs in order with the writes, on
    /// the writer's thread (it fsyncs and takes the log's writer lock).
    TruncatePrefix(u64),
}

/// Handle to the writer. Dropping it finishes every queued request.
pub struct LogWriter {
    lane: Arc<Lane<Job>>,
    stats: Arc<WriterStats>,
    reporter: Arc<Reporter>,
    /// On a log that syncs later: the writer's state, for requests the
    /// submitter writes itself (see the module documentation).
    direct: Option<WriterCore>,
    /// Jobs sent to the lane and not yet handed to the log's sync round.
    lane_jobs: Arc<AtomicUsize>,
    /// `shutdown` was called: later requests fail.
    shut: AtomicBool,
    /// The caller steps the writer ([`SteppedWriter`]): nothing runs
    /// unless it steps, so `shutdown` does not wait for handed-over batches.
    stepped: bool,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWriter")
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Write(req) => req.fmt(f),
            Job::TruncatePrefix(first) => write!(f, "TruncatePrefix({first})"),
        }
    }
}

impl LogWriter {
    /// Starts the writer of `log` and `meta` on the process's shared pool of
    /// log writer threads.
    pub fn spawn<L: DurableLog + 'static>(log: Arc<L>, meta: Arc<MetaStore>) -> LogWriter {
        let pool = crate::worker_pool::shared::writers().expect("start the log writer threads");
        LogWriter::spawn_on(log, meta, pool)
    }

    /// Starts the writer of `log` and `meta` on `pool` (the shared writers'
    /// pool, or a pool of one thread for a node that asks for its own).
    pub(crate) fn spawn_on<L: DurableLog + 'static>(
        log: Arc<L>,
        meta: Arc<MetaStore>,
        pool: Arc<Pool>,
    ) -> LogWriter {
        let stats = Arc::new(WriterStats::default());
        let core = WriterCore::new(log, meta, stats.clone());
        let reporter = core.reporter.clone();
        let direct = core.log.syncs_later().then(|| core.clone());
        let lane_jobs = Arc::new(AtomicUsize::new(0));
        let handed_over = lane_jobs.clone();
        let handler = Box::new(move |jobs: Vec<Job>| {
            let n = jobs.len();
            let batch = core.write(jobs);
            if core.log.syncs_later() {
                core.finish_later(batch);
            } else {
                core.finish(batch);
            }
            // Released after the batch is appended and queued for its sync
            // round: a direct write seeing zero comes after it in both.
            handed_over.fetch_sub(n, Ordering::Release);
            false
        });
        let lane = Lane::new(Some(pool), MAX_BATCH_REQUESTS, 0, Some(handler));
        LogWriter {
            lane,
            stats,
            reporter,
            direct,
            lane_jobs,
            shut: AtomicBool::new(false),
            stepped: false,
        }
    }

    /// A writer without a thread: the caller steps it ([`SteppedWriter`]),
    /// as a deterministic simulation does. On a log that syncs later the
    /// submitter appends directly as on a thread, and a step also runs
    /// half of the log's sync round when its owner steps them.
    pub fn stepped<L: DurableLog + 'static>(
        log: Arc<L>,
        meta: Arc<MetaStore>,
    ) -> (LogWriter, SteppedWriter) {
        let stats = Arc::new(WriterStats::default());
        let core = WriterCore::new(log, meta, stats.clone());
        let lane = Lane::new(None, MAX_BATCH_REQUESTS, 0, None);
        let lane_jobs = Arc::new(AtomicUsize::new(0));
        let writer = LogWriter {
            lane: lane.clone(),
            stats,
            reporter: core.reporter.clone(),
            direct: core.log.syncs_later().then(|| core.clone()),
            lane_jobs: lane_jobs.clone(),
            shut: AtomicBool::new(false),
            stepped: true,
        };
        let stepped = SteppedWriter {
            lane,
            core,
            lane_jobs,
        };
        (writer, stepped)
    }

    /// Counters of the writer.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues `req`. After `shutdown` its `done` runs at once with an error.
    pub fn submit(&self, req: WriteRequest) {
        if self.shut.load(Ordering::Relaxed) {
            (req.done)(Err(StorageError::Io("log writer is shut down".into())));
            return;
        }
        if let Some(core) = &self.direct {
            let appends_only = req.reset_to.is_none() && req.hard_state.is_none();
            if appends_only && self.lane_jobs.load(Ordering::Acquire) == 0 {
                let batch = core.write(vec![Job::Write(req)]);
                core.finish_later(batch);
                return;
            }
        }
        if let Err(Job::Write(req)) = self.send(Job::Write(req)) {
            (req.done)(Err(StorageError::Io("log writer is shut down".into())));
        }
    }

    /// Queues the removal of every entry before `first_kept` (after the
    /// writes queued before it). A failure is logged: compaction is an
    /// optimisation, the entries stay readable.
    pub fn truncate_prefix(&self, first_kept: u64) {
        let _ = self.send(Job::TruncatePrefix(first_kept));
    }

    fn send(&self, job: Job) -> Result<(), Job> {
        self.lane_jobs.fetch_add(1, Ordering::Relaxed);
        let sent = self.lane.send(job);
        if sent.is_err() {
            self.lane_jobs.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Refuses later requests and waits until every queued one is finished
    /// (at once when called from a write done, which runs on the writer or
    /// on a shared log's syncer thread).
    pub fn shutdown(&mut self) {
        self.shut.store(true, Ordering::Relaxed);
        self.lane.close_and_wait();
        if !self.stepped && !super::shared_log::on_syncer_thread() {
            self.reporter.in_flight.wait_idle();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The consumer side of a [`LogWriter::stepped`] writer. A step is two
/// halves, so that a simulated power loss can fall between them: `write`
/// takes everything queued and appends it (not yet durable), `finish`
/// makes it durable and reports each request.
pub struct SteppedWriter {
    lane: Arc<Lane<Job>>,
    core: WriterCore,
    /// Shared with the [`LogWriter`]: jobs queued and not yet handed over.
    lane_jobs: Arc<AtomicUsize>,
}

impl SteppedWriter {
    /// Takes every queued job and appends its entries; None if nothing was
    /// queued. On a log that syncs later the jobs are handed to its sync
    /// round as the writer's thread hands them, and, when its owner steps
    /// the rounds, the round's first half writes what is buffered.
    pub fn write(&mut self) -> Option<WrittenBatch> {
        let jobs = self.lane.take(MAX_BATCH_REQUESTS);
        if !self.core.log.syncs_later() {
            if jobs.is_empty() {
                return None;
            }
            return Some(WrittenBatch(Written::Batch(self.core.write(jobs))));
        }
        if !jobs.is_empty() {
            let n = jobs.len();
            let batch = self.core.write(jobs);
            self.core.finish_later(batch);
            self.lane_jobs.fetch_sub(n, Ordering::Release);
        }
        let log = self.core.log.stepped_rounds()?;
        log.write_round()
            .then_some(WrittenBatch(Written::SharedRound))
    }

    /// Syncs the batch, saves the meta, compacts, runs each request's done
    /// (on a stepped shared log: the round's fdatasync and continuations).
    pub fn finish(&mut self, batch: WrittenBatch) {
        match batch.0 {
            Written::Batch(batch) => self.core.finish(batch),
            Written::SharedRound => {
                if let Some(log) = self.core.log.stepped_rounds() {
                    log.finish_round();
                }
            }
        }
    }
}

impl Drop for SteppedWriter {
    /// A stepped node is dropped at a power loss: the shared log's round in
    /// progress and its queued continuations never run.
    fn drop(&mut self) {
        if let Some(log) = self.core.log.stepped_rounds() {
            log.abandon_rounds();
        }
    }
}

/// A batch appended by [`SteppedWriter::write`] and not yet durable.
pub struct WrittenBatch(Written);

enum Written {
    Batch(Batch),
    /// A stepped shared log's round, written and not yet synced.
    SharedRound,
}

struct Batch {
    jobs: Vec<Job>,
    /// Index of the batch's last entry, for the stage trace (0: none, or
    /// the trace is off).
    last_entry: u64,
    /// Appending failed (or an earlier batch did).
    result: Result<(), StorageError>,
    log_changed: bool,
}

/// The writer's state and its two steps, shared by the thread and the
/// stepped writer (and, on a log that syncs later, the submitter).
#[derive(Clone)]
struct WriterCore {
    log: Arc<dyn DurableLog>,
    meta: Arc<MetaStore>,
    reporter: Arc<Reporter>,
}

/// The part of a writer that reports batches: on the writer's thread, or
/// on a shared log's syncer thread.
struct Reporter {
    log: Arc<dyn DurableLog>,
    stats: Arc<WriterStats>,
    /// The first error: every later request fails with it.
    failed: Mutex<Option<StorageError>>,
    in_flight: Arc<InFlight>,
}

/// Batches handed to a shared log's sync round and not yet reported.
/// Counted with an atomic: the syncer finishes one per group per round,
/// and only `shutdown` waits for zero, so a finish takes the lock and
/// signals (a futex call even with nobody waiting) only while a waiter is
/// registered.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    idle: Condvar,
}

impl InFlight {
    fn start_one(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn finish_one(&self) {
        // SeqCst on both sides: either this finish sees the waiter, or the
        // waiter's check (under the lock) sees the count at zero.
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 && self.waiters.load(Ordering::SeqCst) > 0
        {
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.idle.notify_all();
        }
    }

    fn wait_idle(&self) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.count.load(Ordering::SeqCst) > 0 {
            g = self.idle.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        drop(g);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Reporter {
    fn failed(&self) -> Option<StorageError> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the batch's outcome, then compacts and runs each done in
    /// order.
    fn report(&self, jobs: Vec<Job>, result: Result<(), StorageError>) {
        if let Err(e) = &result {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.clone());
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        // The acknowledgements the dones send leave together, one write per
        // connection, when the batch is reported.
        let _acks = crate::transport::hold_peer_writes();
        for job in jobs {
            match job {
                Job::Write(req) => {
                    self.stats.requests.fetch_add(1, Ordering::Relaxed);
                    let r = result.clone();
                    // A panicking callback must not take the writer (and
                    // every later acknowledgement) down with it.
                    if catch_unwind(AssertUnwindSafe(move || (req.done)(r))).is_err() {
                        log::error!("a log write done callback panicked");
                    }
                }
                Job::TruncatePrefix(first_kept) => {
                    if self.failed().is_none() {
                        if let Err(e) = self.log.truncate_prefix(first_kept) {
                            log::warn!("log compaction before index {first_kept} failed: {e}");
                        }
                    }
                }
            }
        }
    }
}

/// The index of the last entry the jobs append (0: none).
fn last_entry_index(jobs: &[Job]) -> u64 {
    jobs.iter()
        .rev()
        .find_map(|job| match job {
            Job::Write(req) => req.entries.last().map(|e| e.index),
            Job::TruncatePrefix(_) => None,
        })
        .unwrap_or(0)
}

/// The hard state a batch saves: its last.
fn last_hard_state(jobs: &[Job]) -> Option<&HardState> {
    jobs.iter().rev().find_map(|job| match job {
        Job::Write(req) => req.hard_state.as_ref(),
        Job::TruncatePrefix(_) => None,
    })
}

impl WriterCore {
    fn new<L: DurableLog + 'static>(
        log: Arc<L>,
        meta: Arc<MetaStore>,
        stats: Arc<WriterStats>,
    ) -> WriterCore {
        let log: Arc<dyn DurableLog> = log;
        WriterCore {
            log: log.clone(),
            meta,
            reporter: Arc::new(Reporter {
                log,
                stats,
                failed: Mutex::new(None),
                in_flight: Arc::default(),
            }),
        }
    }

    /// Applies the batch in order (resets, appends); nothing is synced yet.
    fn write(&self, jobs: Vec<Job>) -> Batch {
        let mut log_changed = false;
        let last_entry = if stage_trace::enabled() {
            last_entry_index(&jobs)
        } else {
            0
        };
        if last_entry != 0 {
            stage_trace::record(Stage::WriteStart, last_entry);
        }
        let result = match self.reporter.failed() {
            Some(e) => Err(e),
            None => jobs.iter().try_for_each(|job| {
                let Job::Write(req) = job else {
                    return Ok(());
                };
                if let Some(next) = req.reset_to {
                    self.log.reset(next)?;
                    log_changed = true;
                }
                if !req.entries.is_empty() {
                    self.log.append(&req.entries)?;
                    log_changed = true;
                }
                Ok(())
            }),
        };
        Batch {
            jobs,
            last_entry,
            result,
            log_changed,
        }
    }

    /// Makes the batch durable (one log sync, at most one meta save: the
    /// batch's last hard state), then compacts and reports in order.
    fn finish(&self, batch: Batch) {
        let Batch {
            jobs,
            last_entry,
            mut result,
            log_changed,
        } = batch;
        let started = std::time::Instant::now();
        let mut synced = false;
        if result.is_ok() && log_changed {
            if last_entry != 0 {
                stage_trace::record(Stage::SyncStart, last_entry);
            }
            result = self.log.sync();
            if last_entry != 0 {
                stage_trace::record(Stage::SyncEnd, last_entry);
            }
            synced = true;
        }
        if result.is_ok() {
            if let Some(hs) = last_hard_state(&jobs) {
                result = self.meta.save(hs);
                synced = true;
            }
        }
        if synced {
            SYNCS.fetch_add(1, Ordering::Relaxed);
        }
        if synced && result.is_ok() {
            self.reporter.stats.sync_latency.observe(started.elapsed());
        }
        let prepare = synced && result.is_ok() && log_changed;
        self.reporter.report(jobs, result);
        if last_entry != 0 {
            stage_trace::record(Stage::Reported, last_entry);
        }
        if prepare {
            // Off the commit path: the batch's acknowledgements have left.
            // A failure is the log's sticky error: the next batch fails.
            if let Err(e) = self.log.prepare_ahead() {
                log::warn!("log preallocation failed: {e}");
            }
        }
    }

    /// The shared log's way (see the module documentation): saves a changed
    /// term or vote now, then leaves the batch to the log's next sync round.
    fn finish_later(&self, batch: Batch) {
        let Batch {
            jobs,
            mut result,
            log_changed,
            ..
        } = batch;
        let started = std::time::Instant::now();
        if result.is_ok() {
            if let Some(hs) = last_hard_state(&jobs) {
                let mut hs = hs.clone();
                hs.commit = hs.commit.min(self.log.durable_last_index());
                result = self.meta.save(&hs);
                SYNCS.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.reporter.in_flight.start_one();
        let reporter = self.reporter.clone();
        self.log.sync_then(Box::new(move |synced| {
            let result = result.and(synced);
            if log_changed && result.is_ok() {
                reporter.stats.sync_latency.observe(started.elapsed());
            }
            reporter.report(jobs, result);
            // The reporter (and through it the log) is released before
            // `shutdown` may return: the group closes with its writer.
            let in_flight = reporter.in_flight.clone();
            drop(reporter);
            in_flight.finish_one();
        }));
    }
}
