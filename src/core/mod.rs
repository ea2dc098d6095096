//! The Raft protocol as a pure, deterministic state machine.
//!
//! No tokio, no clock, no files, no sockets: time is `tick()`, input is
//! `step(message)` and the proposal calls, output is a [`Ready`] batch that
//! the runtime (or the simulator) persists, sends and applies, reporting back
//! with `on_persisted` / `on_applied`. The same seed and the same schedule of
//! calls always produce the same outputs.
//!
//! This module must never import `node`, `storage`, `transport` or `ffi`.
//!
//! Layout: `raft.rs` (state, roles, dispatch, public API), `election.rs`,
//! `replication.rs`, `conf_change.rs`, `read.rs` (handlers by concern),
//! `log.rs` (unstable + durable log and cursors), `progress.rs` /
//! `inflights.rs` (per-peer replication state), `quorum.rs` (majority math),
//! `membership.rs` (configuration history and change planning),
//! `read_only.rs` (ReadIndex queue).

mod api;
mod conf_change;
mod election;
mod inflights;
mod log;
mod membership;
mod progress;
mod quorum;
mod raft;
mod read;
mod read_only;
mod replication;
pub mod rng;
pub mod storage;

#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use api::*;
pub use membership::ConfigurationExt;
pub use raft::{Proposal, Raft, TRANSFER_CONTEXT};
pub use storage::{LogStorage, MemStorage};
