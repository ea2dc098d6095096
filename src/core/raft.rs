//! The Raft state machine. (Contract only: bodies are being written.)

use bytes::Bytes;

use super::api::*;
use super::storage::LogStorage;

/// Where a batch of proposals landed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub first_index: u64,
    pub term: u64,
}

/// One node's Raft state. Generic over the log it reads from.
pub struct Raft<S: LogStorage> {
    storage: S,
}

#[allow(unused_variables)]
impl<S: LogStorage> Raft<S> {
    /// Builds the core from what the runtime recovered. Fails on an
    /// inconsistent state (commit beyond the log, snapshot after the log, ...).
    pub fn new(config: Config, storage: S, init: InitialState) -> Result<Raft<S>, Error> {
        todo!()
    }
    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        todo!()
    }
    /// Handles a message from a peer. Stale or foreign messages are ignored
    /// (Ok); only a malformed message is an error.
    pub fn step(&mut self, msg: Message) -> Result<(), Error> {
        todo!()
    }
    /// Leader only: appends one entry per item. Not leader → NotLeader;
    /// transferring → Busy.
    pub fn propose_batch(&mut self, data: Vec<Bytes>) -> Result<super::Proposal, Error> {
        todo!()
    }
    /// Leader only: moves the group to `target` (voters + learners; old_voters
    /// must be empty). New voters catch up first; one voter changed → one
    /// step, more → joint consensus. Completion comes as `Event::ConfChangeDone`.
    pub fn propose_conf_change(&mut self, target: Configuration) -> Result<(), Error> {
        todo!()
    }
    /// Leader only: hands leadership to `target` (None: the most up-to-date voter).
    pub fn transfer_leader(&mut self, target: Option<&str>) -> Result<(), Error> {
        todo!()
    }
    /// Asks for a linearizable read point; the answer is a `ReadState` with
    /// the same `context` in a later Ready. A follower forwards to its leader.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), Error> {
        todo!()
    }
    /// Leader lease: true while a quorum was heard from within the lease.
    pub fn is_lease_valid(&self) -> bool {
        todo!()
    }
    /// Starts an election now (braft `vote`). Learners and non-members refuse.
    pub fn campaign(&mut self) -> Result<(), Error> {
        todo!()
    }
    /// braft `reset_peers`: unsafe recovery; adopts `conf` locally, no log entry.
    pub fn reset_configuration(&mut self, conf: Configuration) -> Result<(), Error> {
        todo!()
    }
    /// Entries up to `index` with `term` are durable (see [`Ready`]).
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        todo!()
    }
    /// The state machine has applied everything up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        todo!()
    }
    /// The state machine saved a snapshot covering `meta`; the runtime may
    /// now compact the stored log up to `meta.last_index`.
    pub fn on_snapshot(&mut self, meta: SnapshotMeta) {
        todo!()
    }
    /// The runtime finished (or failed) streaming a snapshot to `peer`.
    pub fn report_snapshot(&mut self, peer: &str, ok: bool) {
        todo!()
    }
    /// The runtime could not reach `peer`.
    pub fn report_unreachable(&mut self, peer: &str) {
        todo!()
    }
    pub fn has_ready(&self) -> bool {
        todo!()
    }
    pub fn ready(&mut self) -> Ready {
        todo!()
    }
    pub fn status(&self) -> Status {
        todo!()
    }
    pub fn storage(&self) -> &S {
        &self.storage
    }
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }
}
