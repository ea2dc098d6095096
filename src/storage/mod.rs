//! Durable storage of one node: the segmented log, the meta store (term,
//! vote, commit), the snapshot store and the group-commit writer thread.
//!
//! All file IO goes through [`fs::FileSystem`] so tests (and a later crash
//! simulator) can interpose. Errors are [`crate::core::StorageError`]; `Io`
//! messages name the file and, for corruption, the byte offset.
//!
//! Recovery of a node, in order:
//! 1. `SnapshotStore::open` → `latest()` (index S, configuration);
//! 2. `LogBackend::open` (or `SegmentLog::open`) → `Recovered`;
//!    then `align_with_snapshot(S)` so the log starts right after S;
//! 3. `MetaStore::open` → `load()`;
//! 4. hand the log (shared through an `Arc`) to the core and spawn the
//!    `LogWriter` on the same `Arc`.
//!
//! With `shared://DIR` the log of step 2 is a group's view of the process's
//! shared log of DIR (`shared_log`): one stream and one fdatasync per round
//! for every group on it.

mod backend;
pub mod braft_pb;
mod cache;
pub mod entry_codec;
pub mod fault_fs;
pub mod fs;
pub mod identity;
pub mod lazy_fs;
pub mod meta;
pub mod prezero;
pub mod segment;
mod segment_log;
pub mod shared_log;
pub mod sim_fs;
pub mod snapshot;
pub mod uri;
pub mod writer;

pub use backend::{DurableLog, LogBackend, MemLog};
pub use cache::{
    cache_budget, charge_in_flight, in_flight_allowance, in_flight_bytes, memory_over_budget,
    set_cache_budget, DEFAULT_CACHE_BUDGET,
};
pub use fault_fs::{FaultFs, Faults};
pub use fs::{DirLock, File, FileSystem, OpenMode, RealFs};
pub use identity::{claim, ClaimError, DirClaim, Identity};
pub use lazy_fs::LazyFs;
pub use meta::MetaStore;
pub use segment_log::{LogOptions, Recovered, SegmentLog, LOG_META, PREALLOCATE_BYTES};
pub use shared_log::{SharedGroupLog, SharedLog, SyncDone};
pub use sim_fs::SimFs;
pub use snapshot::{SnapshotFile, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use uri::{StorageUri, UriError};
pub use writer::{
    process_syncs, LogWriter, SteppedWriter, WriteDone, WriteRequest, WriterStats, WrittenBatch,
};
