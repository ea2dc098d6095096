//! A node as shipped — driver, log writer, FSM caller, recovery, snapshot
//! store — with no threads of its own: the caller steps each part, reads
//! the time from the clock it supplies and carries messages over the
//! network it supplies. A deterministic simulation runs many of these from
//! one thread and one seed; the parts are the ones [`super::Node`] runs on
//! its threads (built by the same `assemble`), not a model of them.

use std::sync::Arc;
use std::time::Duration;

use super::done::Done;
use super::driver::{Command, CommandSender, Driver, Task};
use super::errno::{self, Status};
use super::fsm_caller::SteppedFsm;
use super::network::Network;
use super::node::{assemble, Threads};
use super::options::NodeOptions;
use super::published::Published;
use super::state_machine::StateMachine;
use crate::clock::Clock;
use crate::core;
use crate::proto::Message;
use crate::storage::{SnapshotStore, SteppedWriter, WrittenBatch};

/// See the module documentation.
pub struct SteppedNode {
    driver: Driver,
    writer: SteppedWriter,
    fsm_steps: SteppedFsm,
    tx: CommandSender,
    published: Arc<Published>,
    snapshots: Option<Arc<SnapshotStore>>,
    stopped: bool,
    /// Acknowledgements a leader lets wait for its next turn, as a
    /// deliverer leaves them in the queue (`DriverCell::deliver_acks`):
    /// queued before anything else that reaches the driver, or when a
    /// tick is due.
    later: std::sync::Mutex<Vec<Message>>,
}

impl SteppedNode {
    /// Opens the node's storage (as `Node::init` does), recovers and wires
    /// the parts. `seed` drives the core's election jitter.
    pub fn open(
        group: &str,
        id: &str,
        opts: NodeOptions,
        sm: Box<dyn StateMachine>,
        clock: Arc<dyn Clock>,
        net: Arc<dyn Network>,
        seed: u64,
    ) -> Result<SteppedNode, Status> {
        opts.validate().map_err(|e| Status::new(errno::EINVAL, e))?;
        let published = Arc::new(Published::new(clock.clone()));
        let parts = assemble(
            group,
            id,
            opts,
            sm,
            Threads::Stepped,
            net,
            published.clone(),
            clock,
            seed,
        )?;
        let Some((writer, fsm_steps)) = parts.stepped else {
            return Err(Status::new(errno::EINTERNAL, "stepped parts missing"));
        };
        Ok(SteppedNode {
            driver: parts.driver,
            writer,
            fsm_steps,
            tx: parts.tx,
            published,
            snapshots: parts.storage.snapshots.clone(),
            stopped: false,
            later: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn command(&self, cmd: Command) {
        self.queue_later();
        if let Err(cmd) = self.tx.send(cmd) {
            super::driver::refuse(
                cmd,
                &Status::new(errno::ENODESHUTDOWN, "node is shut down"),
                None,
            );
        }
    }

    /// Queues the acknowledgements left waiting (see `later`).
    fn queue_later(&self) {
        let acks = std::mem::take(&mut *self.later.lock().unwrap_or_else(|p| p.into_inner()));
        if !acks.is_empty() {
            if let Err(cmd) = self.tx.send(Command::Messages(acks)) {
                super::driver::refuse(
                    cmd,
                    &Status::new(errno::ENODESHUTDOWN, "node is shut down"),
                    None,
                );
            }
        }
    }

    /// Raft messages from the network. Heartbeats that change nothing
    /// are answered at once without a turn when nothing is queued, as a
    /// deliverer that wins a free driver's claim answers them (see
    /// `quiet_beats`); the rest wait for the next turn.
    /// Acknowledgements a leader may let wait for its next turn
    /// (`Driver::acks_may_wait`) wait for the next command or tick.
    pub fn deliver(&mut self, msgs: Vec<Message>) {
        if !self.stopped
            && !self.tx.may_have_queued()
            && msgs
                .iter()
                .any(|m| m.kind() == Some(crate::proto::MessageType::AppendResponse) && !m.reject)
            && self.driver.acks_may_wait(&msgs)
        {
            super::driver::count_waited_acks(msgs.len());
            self.later
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(msgs);
            return;
        }
        self.queue_later();
        let mut msgs = Some(msgs);
        let beats = msgs
            .iter()
            .flatten()
            .all(|m| m.kind() == Some(crate::proto::MessageType::Heartbeat));
        if !self.stopped && beats && !self.tx.may_have_queued() {
            self.driver.answer_quiet_beats(&mut msgs);
        }
        if let Some(msgs) = msgs {
            self.command(Command::Messages(msgs));
        }
    }

    /// `Node::apply`.
    pub fn apply(&self, task: Task) {
        self.command(Command::Propose(task));
    }

    /// `Node::read_index`: `done` runs once the read may be served.
    pub fn read_index(&self, done: Done) {
        self.command(Command::ReadIndex(done));
    }

    /// `Node::lease_read`.
    pub fn lease_read(&self, done: Done) {
        self.command(Command::LeaseRead(done));
    }

    /// braft `change_peers`: the voters become `voters`; learners not named
    /// stay learners. `done` reports the outcome.
    pub fn change_voters(&self, voters: Vec<String>, done: Done) {
        self.command(Command::ConfChange {
            build: Box::new(move |conf| {
                let mut next = conf.clone();
                next.old_voters.clear();
                next.learners.retain(|l| !voters.contains(l));
                next.voters = voters;
                Ok(next)
            }),
            done,
        });
    }

    /// `Node::transfer_leadership_to`.
    pub fn transfer_leadership_to(&mut self, peer: &str) -> Result<(), Status> {
        self.driver
            .raft
            .transfer_leader(Some(peer))
            .map_err(Status::from)
    }

    /// The runtime's failure detector suspects `peer` (see
    /// `Raft::peer_suspected`; the transport's path is by server address).
    pub fn peer_suspected(&mut self, peer: &str) {
        self.driver.raft.peer_suspected(peer);
    }

    /// `Node::snapshot`.
    pub fn snapshot(&self, done: Option<Done>) {
        self.command(Command::Snapshot(done));
    }

    /// `Node::shutdown` (graceful): the node stops after this turn.
    pub fn shutdown(&self) {
        self.command(Command::Shutdown(None));
    }

    pub fn is_leader(&self) -> bool {
        self.published.is_leader()
    }

    /// `Node::is_leader_lease_valid`.
    pub fn lease_valid(&self) -> bool {
        self.published.lease_valid()
    }

    /// The core's status (role, term, commit, applied, ...).
    pub fn status(&self) -> core::Status {
        self.driver.raft.status()
    }

    /// The node's snapshot store, if it keeps snapshots.
    pub fn snapshot_store(&self) -> Option<Arc<SnapshotStore>> {
        self.snapshots.clone()
    }

    /// One driver turn: the clock's due ticks, every queued command, the
    /// Readys. False once the node has stopped (after `shutdown`).
    pub fn turn(&mut self) -> bool {
        if self.stopped {
            return false;
        }
        if self.driver.next_tick_due() <= self.driver.now() {
            self.queue_later();
        }
        if self.driver.poll() {
            self.stopped = true;
            self.driver.stop_stepped();
            return false;
        }
        true
    }

    /// When the driver's next tick is due on the node's clock.
    pub fn next_tick_due(&self) -> Duration {
        self.driver.next_tick_due()
    }

    /// The log writer's first half-step: appends everything queued (not
    /// yet durable).
    pub fn write(&mut self) -> Option<WrittenBatch> {
        self.writer.write()
    }

    /// The log writer's second half-step: sync, meta save, acknowledgements.
    pub fn finish_write(&mut self, batch: WrittenBatch) {
        self.writer.finish(batch);
    }

    /// Runs every queued FSM task (applies, dones, snapshot save and load).
    pub fn step_fsm(&mut self) -> bool {
        self.fsm_steps.step()
    }
}
