//! The storage layer on real and fault-injecting file systems: the segment
//! log, the meta and snapshot stores, the log writer, and crash points.

mod crash_points;
mod log;
mod meta_snapshot;
mod writer;
