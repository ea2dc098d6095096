//! The group-commit writer thread of one node.
//!
//! Requests queue on a channel. The thread takes everything queued, applies
//! it in order (reset, appends), then makes the whole batch durable with one
//! log sync and at most one meta save (the last hard state of the batch),
//! and only then runs each request's `done`, in submission order. While it
//! waits on the disk, new requests pile up and form the next batch (Raft
//! thesis §10.2.1: the leader writes in parallel with replication).
//!
//! On any error the batch and every later request fail with that error:
//! nothing is acknowledged that is not durable.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::backend::DurableLog;
use super::meta::MetaStore;
use crate::core::StorageError;
use crate::proto::{Entry, HardState};
use crate::wake_queue::{queue, QueueReceiver, QueueSender};

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
}

/// Handle to the writer thread. Dropping it drains the queue and joins.
#[derive(Debug)]
pub struct LogWriter {
    tx: Option<QueueSender<WriteRequest>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
}

impl LogWriter {
    /// Starts the writer thread for `log` and `meta`.
    pub fn spawn<L: DurableLog + 'static>(log: Arc<L>, meta: Arc<MetaStore>) -> LogWriter {
        let (tx, rx) = queue();
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("rraft-log-writer".into())
            .spawn(move || run(&*log, &meta, rx, &st))
            .expect("spawn the log writer thread");
        LogWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        }
    }

    /// Counters of the writer thread.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Queues `req`. After `shutdown` its `done` runs at once with an error.
    pub fn submit(&self, req: WriteRequest) {
        let Some(tx) = &self.tx else {
            (req.done)(Err(StorageError::Io("log writer is shut down".into())));
            return;
        };
        if let Err(req) = tx.send(req) {
            (req.done)(Err(StorageError::Io("log writer is shut down".into())));
        }
    }

    /// Finishes every queued request and joins the thread.
    pub fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    log: &dyn DurableLog,
    meta: &MetaStore,
    rx: QueueReceiver<WriteRequest>,
    stats: &WriterStats,
) {
    let mut failed: Option<StorageError> = None;
    let mut batch: Vec<WriteRequest> = Vec::new();
    while rx.recv_batch(&mut batch, MAX_BATCH_REQUESTS) {
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => write_batch(log, meta, &batch),
        };
        if let Err(e) = &result {
            failed.get_or_insert_with(|| e.clone());
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for req in batch.drain(..) {
            let r = result.clone();
            // A panicking callback must not take the writer (and every
            // later acknowledgement) down with it.
            if catch_unwind(AssertUnwindSafe(move || (req.done)(r))).is_err() {
                log::error!("a log write done callback panicked");
            }
        }
    }
}

/// Applies the batch and makes it durable.
fn write_batch(
    log: &dyn DurableLog,
    meta: &MetaStore,
    batch: &[WriteRequest],
) -> Result<(), StorageError> {
    let mut log_changed = false;
    let mut hard_state = None;
    for req in batch {
        if let Some(next) = req.reset_to {
            log.reset(next)?;
            log_changed = true;
        }
        if !req.entries.is_empty() {
            log.append(&req.entries)?;
            log_changed = true;
        }
        if let Some(hs) = &req.hard_state {
            hard_state = Some(hs);
        }
    }
    if log_changed {
        log.sync()?;
    }
    if let Some(hs) = hard_state {
        meta.save(hs)?;
    }
    Ok(())
}
