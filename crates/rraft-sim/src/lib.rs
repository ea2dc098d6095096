//! The test harness of rraft, shared by the integration tests in `tests/`.
//!
//! - The deterministic simulator of the Raft core (see `README.md` beside
//!   this crate): [`cluster`] runs one seed over a simulated [`network`] and
//!   simulated [`disk`]s under a fault mix from [`faults`], driving a
//!   [`workload`] or [`kv`] clients, recording a [`trace`] and checking the
//!   Raft invariants with [`checker`] after every step.
//! - [`linearizability`]: a Wing–Gong/Porcupine checker for key-value
//!   histories, used by the simulator's KV option, the stepped-node runtime
//!   simulation and the chaos tests on real processes.
//! - [`seeds`]: running a batch of seeds on every core.
//! - [`native`] and [`examples`]: building librraft and the C examples, and
//!   running their processes with free ports and deadlines.

pub mod braft_counter;
pub mod checker;
pub mod cluster;
pub mod disk;
pub mod examples;
pub mod faults;
pub mod kv;
pub mod linearizability;
pub mod native;
pub mod network;
pub mod seeds;
pub mod trace;
pub mod workload;
