//! rraft's Raft protocol as a pure, deterministic state machine.
//!
//! No tokio, no clock, no files, no sockets: time is `tick()`, input is
//! `step(message)` and the proposal calls, output is a [`Ready`] batch that
//! the runtime (or the simulator) persists, sends and applies, reporting back
//! with `on_persisted` / `on_applied`. The same seed and the same schedule of
//! calls always produce the same outputs.
//!
//! This crate is the layer rule made concrete: it depends on `prost`,
//! `bytes` and `log` only, so it cannot reach tokio, a clock, sockets or
//! files. The `rraft` library re-exports it as `rraft::core` (and its
//! message types as `rraft::proto`).
//!
//! Layout, one file per rule: `raft.rs` (state, role transitions,
//! dispatch), `election.rs` (pre-vote, vote), `lease.rs` (leader lease and
//! lease reads, check-quorum, vote refusal while a leader is alive),
//! `transfer.rs` (leadership transfer), `replication.rs` (Append,
//! heartbeats, commit), `snapshot.rs` (InstallSnapshot, local snapshots),
//! `conf_change.rs` (driving a membership change), `read_index.rs`
//! (ReadIndex), `raft_log.rs` (unstable + durable log and cursors),
//! `progress.rs` / `inflights.rs` (per-peer replication state), `quorum.rs`
//! (majority and joint math), `membership.rs` (configuration history and
//! change planning), `read_only.rs` (ReadIndex queue). Tests: `tests/`
//! (one file per rule) and the transcripts in `testdata/`.
//!
//! Notes for runtimes (beyond the doc comment on [`Ready`]):
//! - `persisted_messages` of a Ready may only leave once that Ready *and
//!   every earlier one* is durable (an ack can refer to entries written by
//!   an earlier Ready).
//! - Vote requests of a candidate are in `persisted_messages` (its new term
//!   and self-vote must be durable first); pre-votes are in `messages`.
//! - The first entry of a leader's term is a `Noop`, except when the
//!   configuration in force is not written anywhere yet (`initial_conf` of a
//!   brand-new group, `reset_configuration`): then it is a `Configuration`
//!   entry carrying it, so it survives restarts.
//! - Non-members never campaign, except a node removed by a configuration
//!   entry that is not committed yet (as far as it knows): it may be needed
//!   to elect the leader that commits that entry (Raft thesis §4.2.2). Such
//!   a leader counts votes and commits with its latest configuration and
//!   steps down once that entry commits.
//! - A (re)started node refuses (pre-)votes for `election_ticks +
//!   max_clock_drift_ticks` ticks, as if it had just heard from a leader.
//! - `report_snapshot(peer, ok)` must be called for every `InstallSnapshot`
//!   sent (the progress stays paused in Snapshot state until then, or until
//!   the follower acknowledges the snapshot index).
//! - `configuration_at(index)` gives the configuration to store in a
//!   snapshot's meta.
//! - Heartbeat / HeartbeatResponse use `index` for the leader's tick stamp
//!   (the lease counts from when the heartbeat was sent); a Vote sent after
//!   TimeoutNow carries [`TRANSFER_CONTEXT`].

mod api;
mod conf_change;
mod election;
pub mod id;
mod inflights;
mod lease;
mod membership;
mod progress;
pub mod proto;
mod quiesce;
mod quorum;
mod raft;
mod raft_log;
mod read_index;
mod read_only;
mod replication;
pub mod rng;
mod snapshot;
pub mod storage;
mod transfer;

#[cfg(test)]
mod datadriven;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use api::*;
pub use id::Id;
pub use membership::ConfigurationExt;
pub use raft::{Proposal, Raft};
pub use replication::heartbeat_answer;
pub use storage::{LogStorage, MemStorage};
pub use transfer::TRANSFER_CONTEXT;
