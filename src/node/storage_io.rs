//! The node's view of its storage: the log the core reads, the writer thread
//! that persists each Ready, the meta store and the snapshot store.

use std::sync::{Arc, Mutex};

use crate::core::StorageError;
use crate::node::errno::{self, Status};
use crate::proto::{Entry, HardState};
use crate::storage::{DirClaim, LogBackend, LogWriter, MetaStore, SnapshotStore, WriteRequest};

/// The log as the core reads it (shared with the writer thread).
pub(crate) type NodeLog = Arc<LogBackend>;

/// A storage error as a status: corruption and IO are EIO, a full disk ENOSPC.
pub(crate) fn storage_status(err: StorageError) -> Status {
    match err {
        StorageError::Io(text) if text.contains("No space left") => {
            Status::new(errno::ENOSPC, text)
        }
        StorageError::Io(text) => Status::new(errno::EIO, text),
        StorageError::Compacted => Status::new(errno::ELOGDELETED, "log entry was compacted"),
        StorageError::Unavailable => Status::new(errno::EIO, "log entry is not available"),
    }
}

#[derive(Clone)]
pub(crate) struct NodeStorage {
    pub(crate) log: Arc<LogBackend>,
    writer: Arc<Mutex<LogWriter>>,
    pub(crate) snapshots: Option<Arc<SnapshotStore>>,
    /// The locks of the store directories: held until `release_dirs`, or
    /// until the last clone is dropped.
    claim: Arc<Mutex<Option<DirClaim>>>,
}

impl NodeStorage {
    pub(crate) fn new(
        log: Arc<LogBackend>,
        meta: Arc<MetaStore>,
        snapshots: Option<Arc<SnapshotStore>>,
        claim: DirClaim,
        dedicated_writer: bool,
    ) -> Result<NodeStorage, Status> {
        let pool = if dedicated_writer {
            crate::worker_pool::Pool::start("rraft-log-writer", 1)
        } else {
            crate::worker_pool::shared::writers()
        }
        .map_err(|e| {
            Status::new(
                errno::EINTERNAL,
                format!("cannot start the log writer thread: {e}"),
            )
        })?;
        let writer = LogWriter::spawn_on(log.clone(), meta, pool);
        Ok(NodeStorage {
            log,
            writer: Arc::new(Mutex::new(writer)),
            snapshots,
            claim: Arc::new(Mutex::new(Some(claim))),
        })
    }

    /// Storage whose writer has no thread: the returned half is stepped by
    /// the caller.
    pub(crate) fn stepped(
        log: Arc<LogBackend>,
        meta: Arc<MetaStore>,
        snapshots: Option<Arc<SnapshotStore>>,
        claim: DirClaim,
    ) -> (NodeStorage, crate::storage::SteppedWriter) {
        let (writer, stepped) = LogWriter::stepped(log.clone(), meta);
        let storage = NodeStorage {
            log,
            writer: Arc::new(Mutex::new(writer)),
            snapshots,
            claim: Arc::new(Mutex::new(Some(claim))),
        };
        (storage, stepped)
    }

    /// Queues one Ready's writes; `done` runs on the writer thread once they
    /// are durable (or failed).
    pub(crate) fn submit(
        &self,
        reset_to: Option<u64>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        done: Box<dyn FnOnce(Result<(), Status>) + Send>,
    ) {
        let request = WriteRequest {
            reset_to,
            entries,
            hard_state,
            done: Box::new(move |result: Result<(), StorageError>| {
                done(result.map_err(storage_status))
            }),
        };
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .submit(request);
    }

    /// Drops log entries before `first_kept` (they are in a snapshot), on
    /// the writer thread after the writes queued before.
    pub(crate) fn truncate_prefix(&self, first_kept: u64) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .truncate_prefix(first_kept);
    }

    /// (batches, requests) the log writer thread has completed; each batch
    /// is at most one log fdatasync (plus one meta save if the term or vote
    /// changed).
    pub(crate) fn writer_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering;
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let s = w.stats();
        (
            s.batches.load(Ordering::Relaxed),
            s.requests.load(Ordering::Relaxed),
        )
    }

    /// How long the writer's batches took to become durable.
    pub(crate) fn sync_latency(&self) -> crate::metrics::HistogramSnapshot {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.stats().sync_latency.snapshot()
    }

    /// Drains and stops the writer thread (blocking), then closes the log
    /// cleanly (a `local://` log cuts its preallocated zeros, so a braft
    /// process can open the directory).
    pub(crate) fn shutdown(&self) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown();
        if let Err(e) = crate::storage::DurableLog::close(&*self.log) {
            log::warn!("closing the log: {e}");
        }
    }

    /// Unlocks the store directories: another node may open them now. Called
    /// once nothing of this node writes there any more.
    pub(crate) fn release_dirs(&self) {
        let claim = self.claim.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(claim);
    }
}
