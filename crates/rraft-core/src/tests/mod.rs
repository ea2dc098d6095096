//! Unit tests that read like the rules of the Raft paper (and thesis), one
//! file per source file of the rule; `raft/randomized.rs` runs the whole core under
//! random faults. The rules that are tables also have transcripts in
//! `testdata/*.txt` (see `datadriven.rs`).

mod conf_change;
mod election;
mod lease;
mod membership;
mod quiesce;
mod quorum;
mod raft;
mod raft_log;
mod read_index;
mod replication;
mod snapshot;
mod transfer;
