//! The runtime of one node: drives the core on real storage and transport,
//! and runs the user's callbacks on its FSM caller (a lane of the process's
//! FSM pool).

pub mod admin;
mod braft_files;
mod braft_peer;
pub(crate) mod claim;
pub mod done;
pub(crate) mod driver;
pub mod errno;
pub(crate) mod fsm_caller;
/// The network seam (Rust-only; the simulation implements it).
#[doc(hidden)]
pub mod network;
#[allow(clippy::module_inception)]
mod node;
pub mod node_status;
pub mod options;
pub(crate) mod pending;
pub(crate) mod published;
pub(crate) mod quiet_beats;
pub mod raft_server;
mod recovery;
/// Marks of a thread doing a node's own work (re-entrant calls).
#[doc(hidden)]
pub mod reentry;
pub mod runtime;
pub(crate) mod snapshot_fetch;
pub mod state_machine;
pub(crate) mod status_pages;
/// A node whose threads a deterministic simulation steps (test support).
#[doc(hidden)]
pub mod stepped;
pub(crate) mod storage_io;
pub mod ticker;

/// Peer ids are parsed by the transport, which routes by them.
pub use crate::transport::peer_id;

pub use done::Done;
pub use driver::{acks_waited, inline_turns, task_turns, Task, ELECTION_LOG};
pub use errno::Status;
pub use node::Node;
pub use node_status::NodeStatus;
pub use options::NodeOptions;
pub use quiet_beats::quiet_beat_answers;
pub use raft_server::RaftServer;
pub use state_machine::{
    Iter, SnapshotReaderRef, SnapshotSaveDone, SnapshotWriterRef, StateMachine,
};
