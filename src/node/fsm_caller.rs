//! The FSM caller: runs every user callback of one node, in log order, one
//! at a time (braft's FSMCaller), on the node's lane of the process's shared
//! pool of FSM threads (or on a thread of its own), never on a tokio
//! worker: a slow `on_apply` never stalls the workers that carry heartbeats.
//!
//! On the shared pool, a log writer's thread that runs the driver's turn
//! for its report (a commit on the leader's own write) and so hands an
//! idle caller its work runs that batch itself, once the turn and the
//! writer's batch are done (`worker_pool::run_lanes_here`): no FSM thread
//! is woken on that commit's way to `on_apply`. The lane stays scheduled
//! meanwhile, so order and one batch at a time hold.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::worker_pool::{Lane, Pool};
use prost::Message as _;

use super::done::Done;
use super::errno::{self, Status};
use super::state_machine::{Iter, SnapshotReaderRef, SnapshotWriterRef, StateMachine};
use super::storage_io::storage_status;
use crate::proto::{Configuration, Entry, EntryType, SnapshotMeta};
use crate::stage_trace::{self, Stage};
use crate::storage::SnapshotStore;

/// Work for the FSM thread, processed strictly in order.
pub(crate) enum FsmTask {
    /// Committed entries, with the done of each entry this node proposed in
    /// the entry's term (aligned with `entries`).
    Apply {
        entries: Vec<Entry>,
        dones: Vec<Option<Done>>,
    },
    /// Run a done after everything queued before it (ReadIndex reads).
    Run(Done, Status),
    LeaderStart(u64),
    LeaderStop(Status),
    StartFollowing(String, u64),
    StopFollowing(String, u64),
    /// Save a snapshot of the applied state; `done` gets the published meta,
    /// or None when nothing was applied since the last snapshot.
    SaveSnapshot(Box<dyn FnOnce(Result<Option<SnapshotMeta>, Status>) + Send>),
    /// Replace the state with the published snapshot `meta`.
    LoadSnapshot(SnapshotMeta),
    /// The node failed (storage, ...): tell the user once.
    Error(Status),
    Shutdown,
}

/// What the FSM thread tells the node's driver.
#[derive(Debug)]
pub(crate) enum FsmEvent {
    SnapshotLoaded(SnapshotMeta),
    Failed(Status),
}

pub(crate) struct FsmCaller {
    lane: Arc<Lane<FsmTask>>,
}

/// Where an FSM caller runs its callbacks.
pub(crate) enum FsmThread {
    /// On the process's shared pool of FSM threads.
    Shared,
    /// On a thread of its own (`NodeOptions::dedicated_fsm_thread`).
    Dedicated,
    /// On whichever thread steps it (a deterministic simulation).
    Stepped,
}

/// Most tasks of one node run in one turn of a pool thread: then the other
/// nodes on the pool get their turn.
const MAX_TASKS_PER_TURN: usize = 128;

/// State owned by the FSM thread.
struct Applier {
    sm: Box<dyn StateMachine>,
    snapshots: Option<Arc<SnapshotStore>>,
    notify: Arc<dyn Fn(FsmEvent) + Send + Sync>,
    /// `applied_index` as the driver and the lease check read it
    /// (`Published::applied_index`): stored after each apply batch instead
    /// of a message that would wake the driver.
    applied_shared: Arc<AtomicU64>,
    applied_index: u64,
    applied_term: u64,
    /// Configuration in force at `applied_index` (joint included).
    applied_conf: Configuration,
    last_snapshot_index: u64,
    failed: Option<Status>,
    /// Entries per `on_apply` call at most (`NodeOptions::apply_batch`).
    apply_batch: usize,
    /// The thread's name (it names the node) for log lines.
    tag: String,
}

impl FsmCaller {
    /// Starts the caller: on the shared FSM pool, on a thread of its own,
    /// or (`Stepped`) without one, returning the half a deterministic
    /// simulation steps (callbacks then run on the stepping thread). `conf`
    /// is the configuration the machine starts from (a `LoadSnapshot` task
    /// is queued first after a restart). `on_apply` sees at most
    /// `apply_batch` entries a call. `node_key` marks the thread running the
    /// callbacks as running this node's (see `reentry::enter_fsm`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        name: String,
        sm: Box<dyn StateMachine>,
        snapshots: Option<Arc<SnapshotStore>>,
        conf: Configuration,
        notify: Arc<dyn Fn(FsmEvent) + Send + Sync>,
        applied: Arc<AtomicU64>,
        apply_batch: usize,
        thread: FsmThread,
        node_key: usize,
    ) -> std::io::Result<(FsmCaller, Option<SteppedFsm>)> {
        let mut applier = Applier {
            sm,
            snapshots,
            notify,
            applied_shared: applied,
            applied_index: 0,
            applied_term: 0,
            applied_conf: conf,
            last_snapshot_index: 0,
            failed: None,
            apply_batch: apply_batch.max(1),
            tag: name,
        };
        let (pool, on_sender): (Arc<Pool>, bool) = match thread {
            FsmThread::Stepped => {
                let lane = Lane::new(None, MAX_TASKS_PER_TURN, node_key, None);
                let steps = SteppedFsm {
                    applier,
                    lane: lane.clone(),
                    node_key,
                    done: false,
                };
                return Ok((FsmCaller { lane }, Some(steps)));
            }
            FsmThread::Shared => (crate::worker_pool::shared::fsm_callers()?, true),
            FsmThread::Dedicated => (Pool::start("rraft-fsm", 1)?, false),
        };
        let mut stopped = false;
        let handler = Box::new(move |tasks: Vec<FsmTask>| {
            if stopped {
                applier.refuse_all(tasks);
            } else {
                stopped = applier.run_batch(tasks);
            }
            stopped
        });
        // A node with a thread of its own runs every callback there; on the
        // shared pool the thread that hands an idle caller its work may run
        // it (see `FsmCaller`).
        let lane = if on_sender {
            Lane::new_on_sender(pool, MAX_TASKS_PER_TURN, node_key, handler)
        } else {
            Lane::new(Some(pool), MAX_TASKS_PER_TURN, node_key, Some(handler))
        };
        Ok((FsmCaller { lane }, None))
    }

    /// Queues a task. Returns it back if the caller has stopped.
    pub(crate) fn submit(&self, task: FsmTask) -> Result<(), FsmTask> {
        if let Some(last) = last_applied_entry(std::slice::from_ref(&task)) {
            stage_trace::record(Stage::ApplyQueued, last);
        }
        self.lane.send(task)
    }

    /// Queues `Shutdown` and waits until it ran (at once when called from
    /// one of the node's own callbacks, which cannot wait for itself).
    pub(crate) fn shutdown_and_join(&self) {
        let _ = self.lane.send(FsmTask::Shutdown);
        self.lane.wait_finished();
    }
}

/// The index of the last entry `tasks` apply, when the stage trace is on.
fn last_applied_entry(tasks: &[FsmTask]) -> Option<u64> {
    if !stage_trace::enabled() {
        return None;
    }
    tasks.iter().rev().find_map(|t| match t {
        FsmTask::Apply { entries, .. } => entries.last().map(|e| e.index),
        _ => None,
    })
}

/// The consumer side of a stepped [`FsmCaller`] (see `FsmCaller::start`).
pub(crate) struct SteppedFsm {
    applier: Applier,
    lane: Arc<Lane<FsmTask>>,
    node_key: usize,
    done: bool,
}

impl SteppedFsm {
    /// Runs every queued task; false if there was none (or after shutdown).
    pub(crate) fn step(&mut self) -> bool {
        if self.done {
            return false;
        }
        let tasks = self.lane.take(usize::MAX);
        if tasks.is_empty() {
            return false;
        }
        let _mark = super::reentry::enter_fsm(self.node_key);
        self.done = self.applier.run_batch(tasks);
        if self.done {
            self.applier.refuse_all(self.lane.close());
        }
        true
    }
}

impl Applier {
    /// Runs `tasks` in order; true once the shutdown task ran (the rest of
    /// the batch is answered, never dropped silently; so must be whatever
    /// the caller still holds: see `refuse_all`).
    fn run_batch(&mut self, tasks: Vec<FsmTask>) -> bool {
        let traced = last_applied_entry(&tasks);
        if let Some(last) = traced {
            stage_trace::record(Stage::ApplyStart, last);
        }
        let stopped = self.run_held(tasks);
        if let Some(last) = traced {
            stage_trace::record(Stage::ApplyEnd, last);
        }
        stopped
    }

    /// `run_batch` with the answers held until the batch ends.
    fn run_held(&mut self, tasks: Vec<FsmTask>) -> bool {
        // The answers the batch's callbacks and dones give to requests
        // leave together, one write per connection, when it ends.
        let _held = crate::transport::hold_replies();
        let mut batch = tasks.into_iter();
        while let Some(task) = batch.next() {
            if self.run_one(task) {
                self.refuse_all(batch);
                return true;
            }
        }
        false
    }

    /// Answers tasks that arrive after the shutdown task ran.
    fn refuse_all(&mut self, tasks: impl IntoIterator<Item = FsmTask>) {
        for task in tasks {
            self.refuse(task, Status::new(errno::ENODESHUTDOWN, "node is shut down"));
        }
    }

    /// Runs one task; true after the shutdown task.
    fn run_one(&mut self, task: FsmTask) -> bool {
        let shutdown = matches!(task, FsmTask::Shutdown);
        // A panicking user callback must not kill the thread silently: the
        // node fails with ESTATEMACHINE and every later done gets it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(task)));
        if let Err(payload) = outcome {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            self.fail(Status::new(
                errno::ESTATEMACHINE,
                format!("state machine callback panicked: {what}"),
            ));
        }
        shutdown
    }

    fn handle(&mut self, task: FsmTask) {
        if let Some(status) = self.failed.clone() {
            if !matches!(task, FsmTask::Shutdown) {
                return self.refuse(
                    task,
                    Status::new(errno::EBADNODE, format!("node failed earlier: {status}")),
                );
            }
        }
        match task {
            FsmTask::Apply { entries, dones } => self.apply(entries, dones),
            FsmTask::Run(done, status) => done.run(status),
            FsmTask::LeaderStart(term) => self.sm.on_leader_start(term),
            FsmTask::LeaderStop(status) => self.sm.on_leader_stop(&status),
            FsmTask::StartFollowing(leader, term) => self.sm.on_start_following(&leader, term),
            FsmTask::StopFollowing(leader, term) => self.sm.on_stop_following(&leader, term),
            FsmTask::SaveSnapshot(done) => self.save_snapshot(done),
            FsmTask::LoadSnapshot(meta) => self.load_snapshot(meta),
            FsmTask::Error(status) => self.fail(status),
            FsmTask::Shutdown => self.sm.on_shutdown(),
        }
    }

    /// Answers a task that will not be carried out.
    fn refuse(&mut self, task: FsmTask, status: Status) {
        match task {
            FsmTask::Apply { dones, .. } => dones
                .into_iter()
                .flatten()
                .for_each(|d| d.run(status.clone())),
            FsmTask::Run(done, _) => done.run(status),
            FsmTask::SaveSnapshot(done) => done(Err(status)),
            FsmTask::Shutdown if self.failed.is_some() => self.sm.on_shutdown(),
            _ => {}
        }
    }

    fn fail(&mut self, status: Status) {
        if self.failed.is_none() {
            log::error!("{}: state machine stopped: {status}", self.tag);
            self.failed = Some(status.clone());
            self.sm.on_error(&status);
            (self.notify)(FsmEvent::Failed(status));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>, mut dones: Vec<Option<Done>>) {
        dones.resize_with(entries.len(), || None);
        let mut start = 0;
        while start < entries.len() {
            let entry = &entries[start];
            if entry.kind() == EntryType::Configuration {
                match Configuration::decode(entry.data.clone()) {
                    Ok(conf) => {
                        if conf.old_voters.is_empty() {
                            self.sm.on_configuration_committed(&conf, entry.index);
                        }
                        self.applied_conf = conf;
                    }
                    Err(e) => {
                        log::error!(
                            "{}: configuration entry {} does not decode: {e}",
                            self.tag,
                            entry.index
                        )
                    }
                }
                if let Some(done) = dones[start].take() {
                    done.run(Status::ok());
                }
                self.mark_applied(entry);
                start += 1;
                continue;
            }
            // One on_apply call covers the entries up to the next
            // configuration entry, at most `apply_batch` of them.
            let end = entries[start..]
                .iter()
                .position(|e| e.kind() == EntryType::Configuration)
                .map_or(entries.len(), |p| start + p)
                .min(start + self.apply_batch);
            let segment = &entries[start..end];
            let consumed = if segment.iter().any(|e| e.kind() == EntryType::Data) {
                let mut it = Iter::new(segment, &dones[start..end]);
                self.sm.on_apply(&mut it);
                let (pos, rollback) = it.finish();
                let (stop, error) = match rollback {
                    Some((ntail, status)) => (pos.saturating_sub(ntail), Some(status)),
                    None if pos < segment.len() => (
                        pos,
                        Some(Status::new(
                            errno::ESTATEMACHINE,
                            format!(
                                "on_apply returned at index {} without consuming every entry",
                                segment[pos].index
                            ),
                        )),
                    ),
                    None => (segment.len(), None),
                };
                for done in dones[start..start + stop]
                    .iter_mut()
                    .filter_map(Option::take)
                {
                    done.run(Status::ok());
                }
                if let Some(status) = error {
                    if stop > 0 {
                        self.mark_applied(&segment[stop - 1]);
                    }
                    for done in dones[start + stop..].iter_mut().filter_map(Option::take) {
                        done.run(status.clone());
                    }
                    self.report_applied();
                    return self.fail(status);
                }
                stop
            } else {
                // Only no-ops: nothing for the user, but their dones still run.
                for done in dones[start..end].iter_mut().filter_map(Option::take) {
                    done.run(Status::ok());
                }
                segment.len()
            };
            if consumed > 0 {
                self.mark_applied(&segment[consumed - 1]);
            }
            start = end;
        }
        self.report_applied();
    }

    /// Publishes `applied_index` to the driver and the lease check.
    fn report_applied(&self) {
        self.applied_shared
            .store(self.applied_index, Ordering::Release);
    }

    fn mark_applied(&mut self, entry: &Entry) {
        self.applied_index = entry.index;
        self.applied_term = entry.term;
    }

    fn save_snapshot(
        &mut self,
        done: Box<dyn FnOnce(Result<Option<SnapshotMeta>, Status>) + Send>,
    ) {
        let Some(store) = self.snapshots.clone() else {
            return done(Err(Status::new(
                errno::EINVAL,
                "snapshots are disabled (no snapshot_uri)",
            )));
        };
        if self.applied_index == 0 || self.applied_index <= self.last_snapshot_index {
            return done(Ok(None));
        }
        let meta = SnapshotMeta {
            last_index: self.applied_index,
            last_term: self.applied_term,
            configuration: Some(self.applied_conf.clone()),
        };
        let writer = match store.create(meta.clone()) {
            Ok(writer) => writer,
            Err(e) => return done(Err(storage_status(e))),
        };
        let writer = SnapshotWriterRef::new(writer);
        let slot = writer.slot();
        self.last_snapshot_index = meta.last_index;
        // The user may finish the save later on another thread: publishing
        // (fsync, rename) then happens there, off the apply path.
        let finish = Box::new(move |result: Result<(), Status>| {
            let writer = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            let result = result.and_then(|()| match writer {
                Some(writer) => writer.finish().map(|_| ()).map_err(storage_status),
                None => Err(Status::new(errno::EINVAL, "snapshot done was run twice")),
            });
            done(result.map(|()| Some(meta)));
        });
        self.sm.on_snapshot_save(writer, finish);
    }

    fn load_snapshot(&mut self, meta: SnapshotMeta) {
        let Some(store) = self.snapshots.clone() else {
            return self.fail(Status::new(
                errno::EINVAL,
                "asked to load a snapshot but snapshots are disabled",
            ));
        };
        let reader = match store.latest() {
            Some(reader) if reader.meta().last_index == meta.last_index => reader,
            other => {
                let found = other.map_or(0, |r| r.meta().last_index);
                return self.fail(Status::new(
                    errno::EIO,
                    format!(
                        "snapshot {} to load is not the newest published one ({found})",
                        meta.last_index
                    ),
                ));
            }
        };
        let meta = reader.meta().clone();
        match self.sm.on_snapshot_load(&SnapshotReaderRef::new(reader)) {
            Ok(()) => {
                self.applied_index = meta.last_index;
                self.applied_term = meta.last_term;
                self.last_snapshot_index = meta.last_index;
                if let Some(conf) = &meta.configuration {
                    self.applied_conf = conf.clone();
                }
                self.report_applied();
                (self.notify)(FsmEvent::SnapshotLoaded(meta));
            }
            Err(status) => self.fail(Status::new(
                errno::ESTATEMACHINE,
                format!("on_snapshot_load failed: {status}"),
            )),
        }
    }
}
