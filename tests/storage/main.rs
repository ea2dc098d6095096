//! The storage layer on real and fault-injecting file systems: the segment
//! log, the shared log, the meta and snapshot stores, the log writer, crash points, and
//! braft's on-disk format.

mod braft_format;
mod crash_points;
mod log;
mod meta_snapshot;
mod shared_log;
mod writer;
