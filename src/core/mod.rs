//! The Raft protocol as a pure, deterministic state machine.
//!
//! No tokio, no clock, no files, no sockets: time is `tick()`, input is
//! `step(message)` and the proposal calls, output is a [`Ready`] batch that
//! the runtime (or the simulator) persists, sends and applies, reporting back
//! with `on_persisted` / `on_applied`. The same seed and the same schedule of
//! calls always produce the same outputs.
//!
//! This module must never import `node`, `storage`, `transport` or `ffi`.

mod api;
mod raft;
pub mod rng;
pub mod storage;

pub use api::*;
pub use raft::{Proposal, Raft};
pub use storage::{LogStorage, MemStorage};
