//! The task that owns one node's core: it feeds the core messages, ticks and
//! proposals, and carries out every `Ready` (disk through the log writer
//! thread, network through the transport, applies through the FSM caller).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

use super::claim::{Claim, Ran};
use super::pending::IndexQueue;

use super::done::Done;
use super::errno::{self, Status};
use super::fsm_caller::{FsmCaller, FsmEvent, FsmTask};
use super::network::{Network, SnapshotFetch};
use super::options::Mutation;
use super::published::Published;
use super::quiet_beats::{Armed, QuietBeats};
use super::storage_io::{NodeLog, NodeStorage};
use crate::clock::Clock;
use crate::core::{
    self, ConfigurationExt, Event, Message, MessageType, Raft, Ready, Role, SoftState,
};
use crate::proto::{Configuration, Entry, SnapshotMeta};
use crate::storage::LogBackend;

/// A proposal: braft's `Task`.
pub struct Task {
    pub data: Bytes,
    pub done: Option<Done>,
    /// Refuse (EPERM) unless the leader's term is this one; -1 = any term.
    pub expected_term: i64,
}

/// Computes a membership change's target from the configuration in force.
pub(crate) type ConfBuilder =
    Box<dyn FnOnce(&Configuration) -> Result<Configuration, Status> + Send>;

/// A sync query answered by the driver with access to its state.
pub(crate) type Query = Box<dyn FnOnce(&mut Driver) + Send>;

/// Everything the driver reacts to.
pub(crate) enum Command {
    Propose(Task),
    Messages(Vec<Message>),
    /// The log writer posted write completions (see [`WriteReports`]).
    Persisted,
    Fsm(FsmEvent),
    ConfChange {
        build: ConfBuilder,
        done: Done,
    },
    ReadIndex(Done),
    /// A read served at the commit index under the leader lease (ReadIndex
    /// without a valid lease).
    LeaseRead(Done),
    Snapshot(Option<Done>),
    SnapshotSaved {
        result: Result<Option<SnapshotMeta>, Status>,
        done: Option<Done>,
    },
    SnapshotFetched {
        /// Boxed: the other commands, queued per message, stay small.
        msg: Box<Message>,
        result: Result<(), Status>,
    },
    Query(Query),
    /// The transport lost the server at this address (`ip:port`): its
    /// replicas are suspected to have failed (quiescent groups wake).
    ServerUnreachable(String),
    Shutdown(Option<Done>),
}

/// Queues commands for a node's driver and wakes the driver's task for
/// them. Every sender but the transport's deliverers uses it (see
/// [`DriverCell::deliver`]).
#[derive(Clone)]
pub(crate) struct CommandSender {
    tx: UnboundedSender<Command>,
    shared: Arc<SenderShared>,
}

/// What every sender of one driver shares with it.
struct SenderShared {
    /// The task's wake-up: a permit is kept when the task is not waiting,
    /// so none is lost.
    wake: Notify,
    /// Commands queued and not yet taken, counted after each is queued and
    /// before anyone is woken for it: a turn looks into the channel only
    /// when this is not zero (an empty channel's `try_recv` reads several
    /// cache lines of the channel; most turns of an idle node find it
    /// empty). It may briefly read one low (the driver took a command
    /// whose sender has not counted it yet): it is signed, and the
    /// sender's wake-up follows its count.
    queued: AtomicI64,
}

impl CommandSender {
    /// A sender and the receiving end the driver takes its commands from.
    pub(crate) fn channel() -> (CommandSender, UnboundedReceiver<Command>) {
        let (tx, rx) = unbounded_channel();
        let sender = CommandSender {
            tx,
            shared: Arc::new(SenderShared {
                wake: Notify::new(),
                queued: AtomicI64::new(0),
            }),
        };
        (sender, rx)
    }

    /// Queues `cmd` and wakes the driver's task; gives it back when the
    /// driver has stopped.
    pub(crate) fn send(&self, cmd: Command) -> Result<(), Command> {
        self.queue(cmd)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queues `cmd` without waking anyone.
    fn queue(&self, cmd: Command) -> Result<(), Command> {
        self.tx.send(cmd).map_err(|e| e.0)?;
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn wake(&self) -> &Notify {
        &self.shared.wake
    }

    /// Whether a command may be queued (see [`SenderShared::queued`]).
    pub(crate) fn may_have_queued(&self) -> bool {
        self.shared.queued.load(Ordering::SeqCst) > 0
    }

    /// Takes the next queued command of `rx` (this sender's channel).
    fn take(&self, rx: &mut UnboundedReceiver<Command>) -> Option<Command> {
        let cmd = rx.try_recv().ok()?;
        self.shared.queued.fetch_sub(1, Ordering::SeqCst);
        Some(cmd)
    }
}

/// Turns of drivers run by the thread that delivered their messages.
static INLINE_TURNS: AtomicU64 = AtomicU64::new(0);

/// How many driver turns of this process ran on the thread that delivered
/// the driver's messages (the transport's), not on the driver's task.
pub fn inline_turns() -> u64 {
    INLINE_TURNS.load(Ordering::Relaxed)
}

/// Acknowledgements queued for their leader's next turn without one.
static ACKS_WAITED: AtomicU64 = AtomicU64::new(0);

/// How many Append acknowledgements this process's leaders queued for
/// their next turn instead of running one (see [`Driver::acks_may_wait`]).
pub fn acks_waited() -> u64 {
    ACKS_WAITED.load(Ordering::Relaxed)
}

/// Counts `n` acknowledgements queued for their leader's next turn.
pub(crate) fn count_waited_acks(n: usize) {
    ACKS_WAITED.fetch_add(n as u64, Ordering::Relaxed);
}

/// Turns of drivers run by their own tasks.
static TASK_TURNS_RUN: AtomicU64 = AtomicU64::new(0);

/// How many driver turns of this process ran on the drivers' own tasks
/// (woken for a command, a tick or a deliverer's hand-off).
pub fn task_turns() -> u64 {
    TASK_TURNS_RUN.load(Ordering::Relaxed)
}

/// Most turns of one node a deliverer runs in one delivery (commands keep
/// arriving for a busy node): then it hands the node to its task, so one
/// busy node does not hold up the rest of a frame.
const DELIVERER_TURNS: usize = 2;

/// Most turns of one node the ticker runs in one pass (commands that
/// arrive meanwhile are the task's).
const TICKER_TURNS: usize = 2;

/// Most turns the driver's task runs before it lets the worker's other
/// tasks run.
const TASK_TURNS: usize = 16;

/// Who runs a turn of a [`DriverCell`], and why.
#[derive(Clone, Copy)]
enum TurnBy {
    /// The transport's thread that delivers the driver's messages.
    Deliverer,
    /// The process's ticker, the node's tick being due: a whole turn.
    Ticker,
    /// The driver's task, woken for a queued command.
    TaskWoken,
    /// The driver's task, woken by the ticker or handed a deliverer's
    /// pending work (which may be a tick): a whole turn.
    TaskTicked,
}

/// A node's driver on the real runtime, run by whichever thread claims it
/// (see `node::claim`): the transport's thread that delivers its messages
/// and the ticker when its tick is due, each when the driver is free; its
/// own task for every other command and for the ticks the ticker could
/// not run.
pub(crate) struct DriverCell {
    claim: Claim<Driver>,
    tx: CommandSender,
    /// The driver stopped (or its turn panicked): the task ends.
    stopped: AtomicBool,
    /// A deliverer left pending work to the task (see `deliver`).
    handed_off: AtomicBool,
}

impl DriverCell {
    /// Registers `driver` with the ticker; the task is then spawned with
    /// [`DriverCell::run`] and the returned handle.
    pub(crate) fn start(mut driver: Driver) -> (Arc<DriverCell>, Arc<super::ticker::ClockHandle>) {
        let ticks = driver.attach_ticker();
        let tx = driver.tx.clone();
        let cell = Arc::new_cyclic(|cell| {
            driver.cell = Some(cell.clone());
            DriverCell {
                claim: Claim::new(driver),
                tx,
                stopped: AtomicBool::new(false),
                handed_off: AtomicBool::new(false),
            }
        });
        let turn: Arc<dyn super::ticker::TickTurn> = cell.clone();
        ticks.set_turn(Arc::downgrade(&turn));
        (cell, ticks)
    }

    /// Hands `cmd` (messages from the network) to the driver: queued, then
    /// run at once on this thread when the driver is free (first what was
    /// queued before it, so each sender's order holds); when another
    /// thread runs a turn, that thread runs it after. Never blocks. After
    /// the driver stopped, `cmd` is dropped.
    pub(crate) fn deliver(&self, cmd: Command) {
        self.deliver_turns(cmd, DELIVERER_TURNS);
    }

    /// [`DriverCell::deliver`] running at most `most` turns (at least one
    /// when the driver is free) on this thread.
    fn deliver_turns(&self, cmd: Command, most: usize) {
        // The driver is free: `cmd` needs no queue, the turn handles it
        // after what is queued.
        let mut cmd = Some(cmd);
        let turns = if self
            .claim
            .try_turn(|slot| self.turn(slot, cmd.take(), TurnBy::Deliverer))
        {
            most.saturating_sub(1)
        } else {
            match cmd.take().map(|cmd| self.tx.queue(cmd)) {
                Some(Ok(())) => self.claim.mark_pending(),
                // Stopped: dropped, as a closed channel drops it.
                _ => return,
            }
            most
        };
        if self
            .claim
            .run(turns, |slot| self.turn(slot, None, TurnBy::Deliverer))
            == Ran::MorePending
        {
            // What is pending may be a tick the task could not run: the
            // task runs a whole turn for it.
            self.handed_off.store(true, Ordering::SeqCst);
            self.tx.wake().notify_one();
        }
    }

    /// [`DriverCell::deliver`] for messages that may all be heartbeats a
    /// follower answers without a turn (see `quiet_beats`): when the driver
    /// is free and nothing else is pending, they are answered from its
    /// record; otherwise they take a turn as any message does.
    pub(crate) fn deliver_beats(&self, msgs: Vec<Message>) {
        self.deliver_unless_quiet(msgs, |slot, msgs| {
            slot.as_mut().is_some_and(|d| d.answer_quiet_beats(msgs))
        });
    }

    /// [`DriverCell::deliver`] for acknowledgements that may all wait for
    /// the leader's next turn (see [`Driver::acks_may_wait`]): when the
    /// driver is free and nothing else is pending, they are queued as
    /// [`DriverCell::deliver_later`] queues (while the claim is held, so
    /// no turn runs between the look at the leader's state and the
    /// queueing); otherwise they take a turn as any message does.
    pub(crate) fn deliver_acks(&self, msgs: Vec<Message>) {
        self.deliver_unless_quiet(msgs, |slot, msgs| {
            let may_wait = match (slot.as_ref(), msgs.as_deref()) {
                (Some(driver), Some(acks)) => driver.acks_may_wait(acks),
                _ => false,
            };
            if may_wait {
                if let Some(acks) = msgs.take() {
                    count_waited_acks(acks.len());
                    self.deliver_later(Command::Messages(acks));
                }
            }
            may_wait
        });
    }

    /// Runs `quiet` on the driver if it is free with nothing pending
    /// (`Claim::try_quiet`); `quiet` takes the messages it handles without
    /// a turn. Messages left take a turn as any message does; when `quiet`
    /// took them, work queued while the claim was held is run here, as
    /// after any turn of a deliverer.
    fn deliver_unless_quiet(
        &self,
        msgs: Vec<Message>,
        quiet: impl FnOnce(&mut Option<Driver>, &mut Option<Vec<Message>>) -> bool,
    ) {
        let mut msgs = Some(msgs);
        let took = self.claim.try_quiet(|slot| quiet(slot, &mut msgs));
        if let Some(msgs) = msgs {
            self.deliver(Command::Messages(msgs));
            return;
        }
        if took
            && self.claim.run(DELIVERER_TURNS, |slot| {
                self.turn(slot, None, TurnBy::Deliverer)
            }) == Ran::MorePending
        {
            self.handed_off.store(true, Ordering::SeqCst);
            self.tx.wake().notify_one();
        }
    }

    /// Queues `cmd` for the driver's next turn without running or asking
    /// for one: it waits for a turn that something else brings (a tick, a
    /// message, a command). Only for what may wait as long as a leader's
    /// heartbeat period (see [`super::node`]'s `Inbox::deliver`).
    pub(crate) fn deliver_later(&self, cmd: Command) {
        // Stopped: dropped, as a closed channel drops it.
        let _ = self.tx.queue(cmd);
    }

    /// [`DriverCell::deliver`] from a log writer's thread (a completed
    /// write the driver waits for): the turn runs here when the driver is
    /// free, and so does the FSM caller's next batch when the turn hands an
    /// idle caller its work (`worker_pool::run_lanes_here`), after the
    /// claim is released. A commit that waited for the leader's own write
    /// thus reaches `on_apply` and the client's answer with no thread
    /// woken on the way.
    fn deliver_from_writer(&self, cmd: Command) {
        let _here = crate::worker_pool::run_lanes_here();
        self.deliver(cmd);
    }

    /// [`DriverCell::deliver`] from a shared log's syncer reporting a round
    /// (a completed write the driver waits for): one turn runs here when
    /// the driver is free, and nothing more, so the syncer's next round
    /// waits for one turn per such group at most; a busy driver, or more
    /// work after the turn, goes to its task. The FSM caller's work goes
    /// to its pool: a user's callback never runs on, and never holds up,
    /// the syncer. This saves the task's wake-up on the worker (and the
    /// worker's core the turn) for each leader whose quorum waited for its
    /// own write.
    fn deliver_from_syncer(&self, cmd: Command) {
        self.deliver_turns(cmd, 1);
    }

    /// One turn of the driver in `slot`, with `last` after what is queued;
    /// stops it for good when the turn says so (or panics), exactly once:
    /// the slot is empty after.
    fn turn(&self, slot: &mut Option<Driver>, last: Option<Command>, by: TurnBy) {
        let Some(driver) = slot.as_mut() else {
            return;
        };
        match by {
            TurnBy::Deliverer => {
                INLINE_TURNS.fetch_add(1, Ordering::Relaxed);
            }
            // Its commands were taken by a turn run meanwhile: a turn
            // without a command or a tick due would change nothing.
            TurnBy::TaskWoken if last.is_none() && !driver.tx.may_have_queued() => return,
            TurnBy::TaskWoken | TurnBy::TaskTicked => {
                TASK_TURNS_RUN.fetch_add(1, Ordering::Relaxed);
            }
            // Counted by the ticker (`ticker::ticker_turns`).
            TurnBy::Ticker => {}
        }
        let stop = match catch_unwind(AssertUnwindSafe(|| driver.turn_queued(last))) {
            Ok(stop) => stop,
            Err(_) => {
                log::error!(
                    "node {}:{} driver panicked: the node stops",
                    driver.group,
                    driver.id
                );
                *slot = None;
                self.end();
                return;
            }
        };
        if stop {
            let Some(mut driver) = slot.take() else {
                return;
            };
            // Later commands are refused by their senders.
            driver.rx.close();
            driver.tick_source = None;
            driver.stop();
            self.end();
        } else if driver.tx.may_have_queued() {
            // The turn took its most commands: the rest needs another.
            self.claim.mark_pending();
        }
    }

    fn end(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.tx.wake().notify_one();
    }

    /// The driver's task: waits for a command or for the process's ticker
    /// (its next tick is due), then claims the driver and takes a turn;
    /// when another thread holds it, that thread runs the turn after its
    /// own. Never blocks the worker on the claim.
    pub(crate) async fn run(self: Arc<Self>, ticks: Arc<super::ticker::ClockHandle>) {
        // One registration with the tick's Notify across turns, renewed only
        // after it fired: a turn costs no register/unregister.
        let tick = ticks.tick();
        tokio::pin!(tick);
        loop {
            let by = tokio::select! {
                biased;
                _ = self.tx.wake().notified() => {
                    if self.handed_off.swap(false, Ordering::SeqCst) {
                        TurnBy::TaskTicked
                    } else {
                        TurnBy::TaskWoken
                    }
                }
                _ = &mut tick => {
                    tick.set(ticks.tick());
                    TurnBy::TaskTicked
                }
            };
            loop {
                if self.stopped.load(Ordering::SeqCst) {
                    return;
                }
                self.claim.mark_pending();
                match self.claim.run(TASK_TURNS, |slot| self.turn(slot, None, by)) {
                    Ran::Settled => break,
                    Ran::MorePending => tokio::task::yield_now().await,
                }
            }
        }
    }
}

/// The ticker runs a node's tick turn itself when the driver is free, as a
/// deliverer runs a turn for its messages (see `ticker`).
impl super::ticker::TickTurn for DriverCell {
    fn tick_turn(&self) -> bool {
        if !self
            .claim
            .try_turn(|slot| self.turn(slot, None, TurnBy::Ticker))
        {
            return false;
        }
        if self.claim.run(TICKER_TURNS - 1, |slot| {
            self.turn(slot, None, TurnBy::Ticker)
        }) == Ran::MorePending
        {
            self.handed_off.store(true, Ordering::SeqCst);
            self.tx.wake().notify_one();
        }
        true
    }
}

/// A completed log write: the last entry it made durable (if any) and how
/// it ended.
type WriteReport = (Option<(u64, u64)>, Result<(), Status>);

/// The log writer's completions of one node, in completion order, waiting
/// for the driver's next turn (which takes them all before anything else).
///
/// A follower that has a leader needs no turn for a completion: its acks
/// already left from the writer, and what the report tells its core (the
/// entries are durable, so they may be applied once committed) matters
/// only with the next commit index, which arrives in a message and so in
/// a turn that takes the reports first. Nor does a leader's completion
/// while it does not wait for it (`Raft::waits_for_own_write`: no peer
/// acknowledged entries beyond the commit index, and nothing committed
/// waits for this write to be applied): the answer that could make it
/// count arrives in a turn that takes the reports first (with 1,000
/// groups this saves a turn of the leader per write). Every other node
/// (a candidate counts its vote), a leader that waits for its write, and
/// every failure wake the driver at once.
pub(crate) struct WriteReports {
    reports: std::sync::Mutex<Vec<WriteReport>>,
    /// Each report wakes the driver (see above for the nodes that are not
    /// woken).
    wake_each: std::sync::atomic::AtomicBool,
}

impl WriteReports {
    fn new() -> WriteReports {
        WriteReports {
            reports: std::sync::Mutex::new(Vec::new()),
            wake_each: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<WriteReport>> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `report`; true when the driver must be woken for it.
    fn post(&self, report: WriteReport) -> bool {
        let failed = report.1.is_err();
        self.lock().push(report);
        failed || self.wake_each.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Swaps the posted reports into `out` (empty), which leaves its
    /// allocation behind for the next posts: a report costs no allocation
    /// on the writer's thread and no free of it on the driver's.
    fn take_into(&self, out: &mut Vec<WriteReport>) {
        std::mem::swap(&mut *self.lock(), out);
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// A proposal waiting for its entry to be applied.
struct Pending {
    term: u64,
    done: Done,
}

pub(crate) struct Driver {
    pub(crate) raft: Raft<NodeLog>,
    pub(crate) group: Arc<str>,
    pub(crate) id: String,
    pub(crate) opts: super::options::NodeOptions,
    rx: UnboundedReceiver<Command>,
    pub(crate) tx: CommandSender,
    storage: NodeStorage,
    fsm: Arc<FsmCaller>,
    net: Arc<dyn Network>,
    pub(crate) published: Arc<Published>,
    /// Proposals of this node, by log index, until their entry is applied.
    pending: IndexQueue<Pending>,
    proposals: Vec<Task>,
    /// Highest committed index handed to the FSM caller.
    handed_out: u64,
    /// ReadIndex requests by context id, with when they were asked (clock).
    reads_by_ctx: BTreeMap<u64, (Duration, Done)>,
    next_read: u64,
    /// Confirmed reads waiting for their index to be handed to the FSM.
    reads_waiting: VecDeque<(u64, Done)>,
    conf_change: Option<Done>,
    /// Term whose first applied entry fires `on_leader_start`.
    leader_start: Option<u64>,
    soft: SoftState,
    snapshotting: bool,
    fetching_snapshot: bool,
    /// Peers sent an InstallSnapshot, and when (the leader gives up on a
    /// transfer that does not finish).
    snapshot_sent: BTreeMap<core::PeerId, Duration>,
    pub(crate) failed: Option<Status>,
    shutdown_dones: Vec<Done>,
    /// Term and vote of the last hard state sent to disk. Only a change of
    /// either is saved: the commit index alone is not worth a meta save
    /// (temp file, two fsyncs, rename) per batch. A stale commit on disk is
    /// safe (it is only a lower bound, re-learned from the leader; braft
    /// does not store it at all).
    saved_term: u64,
    saved_vote: core::PeerId,
    /// Write requests handed to the log writer and not yet reported
    /// persisted. While any is outstanding, messages that must follow the
    /// disk (acks, vote grants) queue behind them in the writer, even when
    /// the Ready that produced them wrote nothing itself.
    unpersisted_writes: u64,
    /// Completions of those writes not yet handed to the core.
    write_reports: Arc<WriteReports>,
    /// An empty vector swapped with the posted reports (see
    /// [`WriteReports::take_into`]).
    report_buffer: Vec<WriteReport>,
    /// The node's monotonic clock, and its reading when the driver started:
    /// tick `n` of the core is due at `started + n × tick`.
    clock: Arc<dyn Clock>,
    started: Duration,
    tick: Duration,
    /// Ticks due so far by the clock (the core got them all unless failed).
    ticks: u64,
    next_snapshot: Duration,
    next_sweep: Duration,
    /// Entry data of this leader's Appends in flight, as last charged to
    /// the process's memory budget.
    in_flight_charged: u64,
    /// The node's registration with the process's ticker (real runtime
    /// only; a simulation asks `next_tick_due` instead).
    pub(crate) tick_source: Option<Arc<super::ticker::ClockHandle>>,
    /// The stride last asked of the ticker, and whether the ticker was
    /// told to pause this node (see [`Driver::after_turn`]).
    stride: u32,
    ticks_paused: bool,
    /// What [`Driver::publish`] last stored.
    last_published: Option<PublishedState>,
    /// The cell this driver runs in (real runtime only): the log writer
    /// hands it a completion the driver waits for (see `carry_out`).
    cell: Option<std::sync::Weak<DriverCell>>,
    /// What a deliverer answers a heartbeat that changes nothing from,
    /// without a turn (see `quiet_beats`).
    quiet: QuietBeats,
    /// The term and commit index through which Append acknowledgements
    /// may wait for the next turn, as of the last turn (see
    /// [`Driver::acks_may_wait`]).
    acks_wait: Option<(u64, u64)>,
}

/// The values of a node's published state that [`Driver::publish`]
/// compares before storing them.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PublishedState {
    role: Role,
    term: u64,
    knows_leader: bool,
    lease_until: Option<Duration>,
    needs_applied: u64,
    failed: bool,
}

/// Log target of the lines that trace elections (role changes, suspected
/// servers, durable votes), each naming the group first: `rraft-bench
/// multi --timeline` reads them to tell where re-election time goes.
pub const ELECTION_LOG: &str = "rraft::election";

/// Most commands handled in one turn before the Readys are carried out.
const MAX_COMMANDS_PER_TURN: usize = 4096;

/// How often reads and snapshot transfers are checked for timeouts.
const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// The start of a driver's clock: `now` rounded down to a multiple of
/// `heartbeat` (the heartbeat period) on the process's clock. Every node of
/// the process with the same tick then ticks at the same instants, and its
/// leaders heartbeat in the same ticks (see `Raft::heartbeat_phase`): the
/// ticker wakes them together and their heartbeats to a server share one
/// frame. The core's time starts less than one heartbeat period early,
/// which only shortens the vote refusal after a restart by that much (it
/// lasts election + drift, the lease it protects election − drift).
fn aligned_start(now: Duration, heartbeat: Duration) -> Duration {
    let period = heartbeat.as_nanos().max(1);
    let start = now.as_nanos() / period * period;
    Duration::from_nanos(start.min(u64::MAX as u128) as u64)
}

fn snapshot_period(opts: &super::options::NodeOptions) -> Duration {
    Duration::from_secs(opts.snapshot_interval_s.max(1) as u64)
}

/// Runs `done` on the FSM thread, after every callback queued before it:
/// a done may call back into the library (status, apply, even join) from
/// there. Only when the FSM thread is gone does it run here.
fn finish(fsm: &FsmCaller, done: Done, status: Status) {
    if let Err(FsmTask::Run(done, status)) = fsm.submit(FsmTask::Run(done, status)) {
        done.run(status);
    }
}

/// How long a ReadIndex waits for confirmation before it fails.
fn read_timeout(opts: &super::options::NodeOptions) -> Duration {
    Duration::from_millis(2 * opts.election_timeout_ms as u64)
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raft: Raft<NodeLog>,
        group: String,
        id: String,
        opts: super::options::NodeOptions,
        rx: UnboundedReceiver<Command>,
        tx: CommandSender,
        storage: NodeStorage,
        fsm: Arc<FsmCaller>,
        net: Arc<dyn Network>,
        published: Arc<Published>,
        applied: u64,
        clock: Arc<dyn Clock>,
    ) -> Driver {
        let status = raft.status();
        let soft = SoftState {
            role: status.role,
            term: status.term,
            leader: status.leader,
        };
        let saved_term = status.term;
        let saved_vote = status.vote.unwrap_or_default();
        let tick = Duration::from_millis(opts.tick_ms());
        let started = aligned_start(clock.now(), tick * raft.config().heartbeat_ticks.max(1));
        let next_snapshot = started + snapshot_period(&opts);
        let group: Arc<str> = group.into();
        let quiet = QuietBeats::new(
            &id,
            group.clone(),
            net.clone(),
            clock.clone(),
            started,
            tick,
        );
        Driver {
            raft,
            group,
            id,
            opts,
            rx,
            tx,
            storage,
            fsm,
            net,
            published,
            pending: IndexQueue::default(),
            proposals: Vec::new(),
            handed_out: applied,
            reads_by_ctx: BTreeMap::new(),
            next_read: 1,
            reads_waiting: VecDeque::new(),
            conf_change: None,
            leader_start: None,
            soft,
            snapshotting: false,
            fetching_snapshot: false,
            snapshot_sent: BTreeMap::new(),
            failed: None,
            shutdown_dones: Vec::new(),
            saved_term,
            saved_vote,
            unpersisted_writes: 0,
            write_reports: Arc::new(WriteReports::new()),
            report_buffer: Vec::new(),
            clock,
            started,
            tick,
            ticks: 0,
            next_snapshot,
            next_sweep: started + SWEEP_PERIOD,
            in_flight_charged: 0,
            tick_source: None,
            stride: 1,
            ticks_paused: false,
            last_published: None,
            cell: None,
            quiet,
            acks_wait: None,
        }
    }

    /// Registers the driver with the process's ticker (real runtime only)
    /// and publishes its state; returns the ticker's handle for the task.
    fn attach_ticker(&mut self) -> Arc<super::ticker::ClockHandle> {
        self.publish();
        let first = self.next_tick_due().saturating_sub(self.clock.now());
        let ticks = Arc::new(super::ticker::ticker().register(self.tick, first));
        self.tick_source = Some(ticks.clone());
        ticks
    }

    /// The first queued command, if the count says there may be one.
    fn next_queued(&mut self) -> Option<Command> {
        if self.tx.may_have_queued() {
            self.tx.take(&mut self.rx)
        } else {
            None
        }
    }

    /// A turn with whatever is queued, then what every turn on the real
    /// runtime is followed by (see [`Driver::after_turn`]). True means the
    /// node stops (then call `stop`).
    fn turn_queued(&mut self, last: Option<Command>) -> bool {
        let first = self.next_queued();
        if self.turn_then(first, last) {
            return true;
        }
        self.after_turn();
        false
    }

    /// Tells the ticker when this driver next needs a look, whichever
    /// thread ran the turn: a quiescent group costs the ticker nothing
    /// until a command wakes it (that turn hands the core every tick that
    /// passed); a node whose ticks change nothing soon is woken every few
    /// ticks.
    fn after_turn(&mut self) {
        // Borrowed, not cloned: most turns change nothing here, and a
        // clone's reference count is a write to memory the node's task
        // shares.
        let Some(ticks) = self.tick_source.as_ref() else {
            return;
        };
        if self.needs_ticks() {
            if self.ticks_paused {
                ticks.resume();
                self.ticks_paused = false;
                // Set the stride again: a leader's wake-ups must find its
                // heartbeat ticks.
                self.stride = 0;
            }
            let wanted = self.tick_stride();
            if wanted != self.stride {
                self.stride = wanted;
                if wanted > 1 && self.soft.role == Role::Leader {
                    ticks.set_stride_from(wanted, self.next_heartbeat_in());
                } else {
                    ticks.set_stride(wanted);
                }
            }
        } else if !self.ticks_paused {
            ticks.pause();
            self.ticks_paused = true;
        }
    }

    /// One turn: catch the core up with the clock, handle `first` and what
    /// else is queued (proposals batch into one append), carry out the
    /// Readys. True means the node stops (then call `stop`).
    pub(crate) fn turn(&mut self, first: Option<Command>) -> bool {
        self.turn_then(first, None)
    }

    /// [`Driver::turn`], handling `last` after everything queued (a
    /// deliverer's messages, which were never queued). When the turn takes
    /// its most commands before the queue is empty, `last` is queued
    /// behind them instead, so each sender's order holds.
    fn turn_then(&mut self, first: Option<Command>, mut last: Option<Command>) -> bool {
        let _own = super::reentry::enter(super::reentry::node_key(&self.published));
        let _held = crate::worker_pool::hold_wakes();
        // A heartbeat answered from the record since the last turn: the
        // core notes the contact in the tick it was answered in, and the
        // commit index it carried, before anything else (see
        // `quiet_beats`).
        if let Some(heard) = self.quiet.take_heard() {
            self.advance_to(heard.tick);
            if self.opts.mutation != Mutation::QuietBeatsForgetContact {
                self.raft.heard_from_leader();
            }
            if let Some(commit) = heard.commit {
                self.raft.commit_from_leader(commit);
            }
        }
        // Apply batches do not wake the driver, nor do a follower's
        // completed writes: learn them here.
        self.raft.on_applied(self.published.applied_index());
        self.take_write_reports();
        self.catch_up_clock();
        // This leader may add to its data in flight what the process's
        // memory budget has left (see `storage::cache`).
        self.raft
            .set_in_flight_limit(crate::storage::in_flight_allowance(self.in_flight_charged));
        if let Some(cmd) = first {
            if self.handle(cmd) {
                return true;
            }
            let mut drained = false;
            for _ in 0..MAX_COMMANDS_PER_TURN {
                match self.tx.take(&mut self.rx) {
                    Some(cmd) => {
                        if self.handle(cmd) {
                            return true;
                        }
                    }
                    None => {
                        drained = true;
                        break;
                    }
                }
            }
            if !drained {
                if let Some(cmd) = last.take() {
                    let _ = self.tx.queue(cmd);
                }
            }
        }
        if let Some(cmd) = last {
            if self.handle(cmd) {
                return true;
            }
        }
        self.flush_proposals();
        self.process_ready();
        self.charge_in_flight(self.raft.inflight_bytes());
        self.publish();
        self.set_write_report_wakes();
        self.arm_quiet_beats();
        self.acks_wait = (self.failed.is_none() && self.opts.mutation == Mutation::None)
            .then(|| self.raft.acks_may_wait_through())
            .flatten()
            .map(|commit| (self.raft.term(), commit));
        false
    }

    /// Whether `msgs`, as of the last turn, may all wait in the queue for
    /// this leader's next turn instead of getting one: acknowledgements of
    /// this term, not rejections, of entries up to the commit index, while
    /// the core says such an ack changes nothing that cannot wait
    /// (`Raft::acks_may_wait_through`), and plain heartbeat answers. With
    /// three replicas the second ack of every write is one (the first
    /// committed it). The next turn comes with the next proposal, message
    /// or command, at the latest with the leader's tick turn one heartbeat
    /// period later.
    pub(crate) fn acks_may_wait(&self, msgs: &[Message]) -> bool {
        let Some((term, commit)) = self.acks_wait else {
            return false;
        };
        msgs.iter().all(|m| match m.kind() {
            Some(MessageType::AppendResponse) => {
                m.term == term
                    && !m.reject
                    && m.index <= commit
                    && (m.to.is_empty() || m.to == self.id)
            }
            Some(MessageType::HeartbeatResponse) => super::node::may_wait_for_a_tick(m),
            _ => false,
        })
    }

    /// Writes what a heartbeat that changes nothing is answered from until
    /// the next turn (see `quiet_beats`), or disarms it.
    fn arm_quiet_beats(&mut self) {
        let armed = (self.failed.is_none()
            && matches!(
                self.opts.mutation,
                Mutation::None | Mutation::QuietBeatsForgetContact
            )
            && self.soft.role == Role::Follower
            && !self.raft.is_quiescent())
        .then(|| {
            let leader = self.raft.leader()?;
            let left = self.raft.ticks_until_timeout()?;
            Some(Armed {
                term: self.raft.term(),
                leader,
                committed: self.raft.commit_index(),
                last: self.raft.last_index(),
                commit_may_wait: self.reads_by_ctx.is_empty() && self.reads_waiting.is_empty(),
                fires_at: self.ticks.saturating_add(left),
            })
        })
        .flatten();
        self.quiet.arm(armed);
    }

    /// A deliverer holding the claim answers `msgs` from the record when
    /// every one is a heartbeat that changes nothing (see `quiet_beats`).
    pub(crate) fn answer_quiet_beats(&mut self, msgs: &mut Option<Vec<Message>>) -> bool {
        self.quiet.answer(msgs)
    }

    /// Hands the core every write completion posted since the last turn.
    fn take_write_reports(&mut self) {
        let mut reports = std::mem::take(&mut self.report_buffer);
        self.write_reports.take_into(&mut reports);
        for (last, result) in reports.drain(..) {
            self.on_persisted(last, result);
        }
        self.report_buffer = reports;
    }

    /// Decides whether the writer wakes this driver for each completion
    /// (see [`WriteReports`]); a node that just stopped being a follower
    /// with a leader takes a turn for the completions it left waiting.
    fn set_write_report_wakes(&self) {
        let quiet_follower = self.soft.role == Role::Follower && self.soft.leader.is_some();
        let quiet = quiet_follower || !self.raft.waits_for_own_write();
        let before = self
            .write_reports
            .wake_each
            .swap(!quiet, std::sync::atomic::Ordering::AcqRel);
        if !quiet && !before && !self.write_reports.is_empty() {
            let _ = self.tx.send(Command::Persisted);
        }
    }

    /// Charges the process's memory budget with `bytes` of this node's
    /// Appends in flight (replacing what it charged before).
    fn charge_in_flight(&mut self, bytes: u64) {
        if bytes != self.in_flight_charged {
            crate::storage::charge_in_flight(bytes as i64 - self.in_flight_charged as i64);
            self.in_flight_charged = bytes;
        }
    }

    /// Takes a turn with whatever is queued (the simulator's entry point).
    pub(crate) fn poll(&mut self) -> bool {
        let first = self.next_queued();
        self.turn(first)
    }

    /// When the next core tick is due on the node's clock.
    pub(crate) fn next_tick_due(&self) -> Duration {
        self.tick_at(self.ticks + 1)
    }

    /// Whether the driver needs its ticks: not while its group is quiescent
    /// (ticks change nothing but the core's clock, and the turn a command
    /// starts hands the core every tick that passed), unless a read or a
    /// snapshot transfer waits for the sweep that times it out. A timed
    /// snapshot of a quiescent group waits until it wakes: its log does
    /// not grow meanwhile.
    pub(crate) fn needs_ticks(&self) -> bool {
        !self.raft.is_quiescent() || !self.reads_by_ctx.is_empty() || !self.snapshot_sent.is_empty()
    }

    /// Ticks the ticker may let pass between two turns: a follower that
    /// has a leader and waits for nothing of its own (no read, no snapshot
    /// transfer) runs only its election timer on ticks, and the leader's
    /// messages reset it (each in a turn that catches the core up with the
    /// clock first). So while that timer is at least half an election
    /// timeout from firing, the follower is woken once per half election
    /// timeout; nearer, every tick, so it campaigns at most one tick late.
    ///
    /// A leader with nothing of its own to time (no read, snapshot
    /// transfer, leadership transfer or membership change) acts on ticks
    /// only at its heartbeats, which fall on the multiples of the heartbeat
    /// period on its core's clock: it is woken once per heartbeat period,
    /// at those ticks (see [`Driver::next_heartbeat_in`]). Its other timers
    /// (check-quorum, quiescence) run at most a heartbeat period minus a
    /// tick late.
    ///
    /// Everyone else: every tick.
    fn tick_stride(&self) -> u32 {
        let idle =
            self.failed.is_none() && self.reads_by_ctx.is_empty() && self.snapshot_sent.is_empty();
        let cfg = self.raft.config();
        if self.is_idle_leader() && idle {
            return cfg.heartbeat_ticks.max(1);
        }
        let quiet_follower = idle && self.soft.role == Role::Follower && self.soft.leader.is_some();
        if !quiet_follower {
            return 1;
        }
        let far = (cfg.election_ticks / 2).max(cfg.heartbeat_ticks).max(1);
        match self.raft.ticks_until_timeout() {
            Some(left) if left >= u64::from(far) => far,
            _ => 1,
        }
    }

    /// Whether this node's Appends and acks are written to the peers'
    /// sockets by the thread that has them (the driver, the log writer):
    /// not on a shared log, whose syncer serves many groups in one round
    /// and whose groups' messages share the connection tasks' writes.
    fn writes_peers_directly(&self) -> bool {
        !matches!(*self.storage.log, LogBackend::Shared(_))
    }

    /// A leader awake and driving no transfer or membership change.
    fn is_idle_leader(&self) -> bool {
        self.soft.role == Role::Leader
            && !self.raft.is_quiescent()
            && self.raft.transferring_to().is_none()
            && self.conf_change.is_none()
            && !self.raft.pending_conf_change()
    }

    /// How long from now until this leader's next heartbeat tick (the next
    /// multiple of the heartbeat period on its core's clock).
    fn next_heartbeat_in(&self) -> Duration {
        let period = u64::from(self.raft.config().heartbeat_ticks.max(1));
        let ahead = period - self.raft.now() % period;
        self.tick_at(self.ticks + ahead)
            .saturating_sub(self.clock.now())
    }

    /// The node's clock.
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    fn tick_at(&self, tick: u64) -> Duration {
        let ticks = u32::try_from(tick).unwrap_or(u32::MAX);
        self.started.saturating_add(self.tick.saturating_mul(ticks))
    }

    /// Delivers every tick that is due by the clock in one step, however
    /// late this turn is: the core's time never runs slower than the
    /// clock's, so a busy or paused driver cannot stretch a lease.
    fn catch_up_clock(&mut self) {
        let now = self.clock.now();
        let elapsed = now.saturating_sub(self.started);
        let due = (elapsed.as_nanos() / self.tick.as_nanos().max(1)) as u64;
        self.advance_to(due);
        if self.opts.snapshot_interval_s > 0 && now >= self.next_snapshot {
            self.next_snapshot = now + snapshot_period(&self.opts);
            self.start_snapshot(None);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_PERIOD;
            self.sweep(now);
        }
    }

    /// Hands the core the ticks due up to tick `due` of the clock.
    fn advance_to(&mut self, due: u64) {
        let behind = due.saturating_sub(self.ticks);
        self.ticks += behind;
        if behind > 0 && self.failed.is_none() {
            let behind = if self.opts.mutation == Mutation::TickCountLease {
                // The old rule: one tick per timer wake-up, late ticks lost.
                1
            } else {
                behind
            };
            self.raft.advance(behind);
        }
    }

    /// Handles one command; true means stop the node.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Propose(task) => self.proposals.push(task),
            Command::Messages(msgs) => self.step_messages(msgs),
            Command::Persisted => self.take_write_reports(),
            Command::Fsm(event) => self.on_fsm_event(event),
            Command::ConfChange { build, done } => self.change_configuration(build, done),
            Command::ReadIndex(done) => self.read_index(done, false),
            Command::LeaseRead(done) => self.read_index(done, self.opts.enable_leader_lease),
            Command::Snapshot(done) => self.start_snapshot(done),
            Command::SnapshotSaved { result, done } => self.on_snapshot_saved(result, done),
            Command::SnapshotFetched { msg, result } => {
                self.fetching_snapshot = false;
                match result {
                    Ok(()) => self.step(*msg),
                    Err(status) => {
                        log::warn!(
                            "node {}:{} snapshot fetch from {} failed: {status}",
                            self.group,
                            self.id,
                            msg.from
                        );
                        if self.failed.is_none() {
                            self.raft.reject_snapshot(&msg);
                        }
                    }
                }
            }
            Command::Query(query) => query(self),
            Command::ServerUnreachable(addr) => self.suspect_server(&addr),
            Command::Shutdown(done) => {
                self.shutdown_dones.extend(done);
                return true;
            }
        }
        false
    }

    /// Tells the core that every member hosted at `addr` may have failed:
    /// a quiescent group wakes, a follower of a leader there plans its
    /// campaign (see the core's `peer_suspected`).
    fn suspect_server(&mut self, addr: &str) {
        log::debug!(target: ELECTION_LOG, "{} suspects {addr}", self.group);
        if self.failed.is_some() {
            return;
        }
        if !self.raft.is_quiescent() && self.soft.role == Role::Leader {
            // An awake leader's check-quorum needs no hint.
            return;
        }
        let conf = self.raft.configuration().clone();
        for peer in conf.members() {
            if peer != self.id
                && crate::transport::peer_id::peer_addr(&peer).as_deref() == Some(addr)
            {
                self.raft.peer_suspected(&peer);
            }
        }
    }

    fn refuse_status(&self) -> Option<Status> {
        self.failed.clone()
    }

    fn step_messages(&mut self, msgs: Vec<Message>) {
        if self.failed.is_some() {
            return;
        }
        for msg in msgs {
            if msg.kind() == Some(MessageType::InstallSnapshot) {
                self.fetch_snapshot(msg);
            } else {
                self.step(msg);
            }
        }
    }

    fn step(&mut self, msg: Message) {
        if let Err(e) = self.raft.step(msg) {
            log::debug!("node {}:{} message refused: {e}", self.group, self.id);
        }
    }

    /// A follower pulls the leader's snapshot files before its core sees the
    /// InstallSnapshot message.
    fn fetch_snapshot(&mut self, msg: Message) {
        if self.fetching_snapshot {
            return;
        }
        let (Some(meta), Some(store)) = (msg.snapshot.clone(), self.storage.snapshots.clone())
        else {
            log::warn!(
                "node {}:{} InstallSnapshot from {} without meta or without a snapshot store",
                self.group,
                self.id,
                msg.from
            );
            return;
        };
        self.fetching_snapshot = true;
        let tx = self.tx.clone();
        let fetch = SnapshotFetch {
            store,
            group: self.group.clone(),
            leader: msg.from.to_string(),
            meta,
            chunk_bytes: self.opts.snapshot_chunk_bytes,
        };
        self.net.fetch_snapshot(
            fetch,
            Box::new(move |result| {
                let _ = tx.send(Command::SnapshotFetched {
                    msg: Box::new(msg),
                    result,
                });
            }),
        );
    }

    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let tasks = std::mem::take(&mut self.proposals);
        if let Some(status) = self.refuse_status() {
            return tasks
                .into_iter()
                .filter_map(|t| t.done)
                .for_each(|d| finish(&self.fsm, d, status.clone()));
        }
        let term = self.soft.term;
        let mut data = Vec::with_capacity(tasks.len());
        let mut dones = Vec::with_capacity(tasks.len());
        for task in tasks {
            if task.expected_term >= 0 && task.expected_term as u64 != term {
                if let Some(done) = task.done {
                    finish(
                        &self.fsm,
                        done,
                        Status::new(
                            errno::EPERM,
                            format!(
                                "expected_term {} does not match the current term {term}",
                                task.expected_term
                            ),
                        ),
                    );
                }
                continue;
            }
            data.push(task.data);
            dones.push(task.done);
        }
        if data.is_empty() {
            return;
        }
        match self.raft.propose_batch(data) {
            Ok(at) => {
                for (i, done) in dones.into_iter().enumerate() {
                    let Some(done) = done else { continue };
                    let index = at.first_index + i as u64;
                    // A pending proposal at the same index was truncated away
                    // (this node appended a new entry there): it is lost.
                    if let Some(old) = self.pending.insert(
                        index,
                        Pending {
                            term: at.term,
                            done,
                        },
                    ) {
                        finish(
                            &self.fsm,
                            old.done,
                            Status::new(errno::EPERM, "entry was overwritten by a new leader"),
                        );
                    }
                }
            }
            Err(e) => {
                let status = Status::from(e);
                dones
                    .into_iter()
                    .flatten()
                    .for_each(|d| finish(&self.fsm, d, status.clone()));
            }
        }
    }

    fn process_ready(&mut self) {
        while self.failed.is_none() && self.raft.has_ready() {
            let rd = self.raft.ready();
            self.carry_out(rd);
        }
    }

    fn carry_out(&mut self, rd: Ready) {
        if let Some(ss) = rd.soft_state {
            self.on_soft_state(ss);
        }
        // A Ready that writes entries wakes its log writer first (below,
        // after the submit), then writes its Appends here, one write per
        // connection, rather than leaving them to the connection tasks,
        // which could wait behind the writer for this worker's core (not on
        // a shared log, whose groups' messages share the tasks' writes).
        let appends_now = !rd.entries.is_empty() && self.writes_peers_directly();
        let mut appends = Vec::new();
        if appends_now {
            appends = rd.messages;
        } else {
            for msg in rd.messages {
                self.send(msg);
            }
        }
        let hard_state = rd.hard_state.filter(|hs| {
            let changed = hs.term != self.saved_term || hs.vote != self.saved_vote;
            if changed {
                self.saved_term = hs.term;
                self.saved_vote.clone_from(&hs.vote);
            }
            changed
        });
        let needs_disk = rd.snapshot.is_some() || !rd.entries.is_empty() || hard_state.is_some();
        // Acks and vote grants promise what is on disk: they follow every
        // write handed to the writer before them, not only this Ready's.
        let behind_disk = !rd.persisted_messages.is_empty()
            && self.unpersisted_writes > 0
            && self.opts.mutation != Mutation::AckBeforeSync;
        if needs_disk || behind_disk {
            let last = rd
                .entries
                .last()
                .map(|e| (e.index, e.term))
                .or_else(|| rd.snapshot.as_ref().map(|s| (s.last_index, s.last_term)));
            let tx = self.tx.clone();
            let reports = self.write_reports.clone();
            let messages = rd.persisted_messages;
            let reset_to = rd.snapshot.as_ref().map(|s| s.last_index + 1);
            let net = self.net.clone();
            let group = self.group.clone();
            let votes = hard_state.as_ref().map(|hs| hs.term);
            // A log writer's thread writes its answers to the socket
            // itself (see `writes_peers_directly`).
            let acks_now = self.writes_peers_directly();
            // The same thread hands a completion the driver waits for to the
            // driver itself (a shared log's syncer, which reports many
            // groups a round, runs one turn at most, see
            // `DriverCell::deliver_from_syncer`).
            let cell = self.cell.clone();
            self.unpersisted_writes += 1;
            // The writer completes requests in order, so an empty request
            // completes once every earlier write is durable.
            self.storage.submit(
                reset_to,
                rd.entries,
                hard_state,
                Box::new(move |result| {
                    // Posted before the answers leave: the commit index they
                    // lead to arrives in a turn that finds this report.
                    let ok = result.is_ok();
                    let wake = reports.post((last, result));
                    // A follower's answers leave from the writer thread as
                    // soon as the entries are durable: the driver's turn is
                    // not on the commit path.
                    if ok {
                        if let Some(term) = votes {
                            log::debug!(target: ELECTION_LOG, "{group} vote durable term {term}");
                        }
                        if acks_now {
                            net.send_now(&group, messages);
                        } else {
                            for msg in messages {
                                net.send(&group, msg);
                            }
                        }
                    }
                    if wake {
                        // The acks first: the driver's turn is not on the
                        // follower's commit path.
                        crate::transport::after_peer_writes(move || {
                            match cell.as_ref().and_then(std::sync::Weak::upgrade) {
                                Some(cell) if ok && acks_now => {
                                    cell.deliver_from_writer(Command::Persisted)
                                }
                                Some(cell) if ok => cell.deliver_from_syncer(Command::Persisted),
                                _ => {
                                    let _ = tx.send(Command::Persisted);
                                }
                            }
                        });
                    }
                }),
            );
        } else {
            for msg in rd.persisted_messages {
                self.send(msg);
            }
        }
        if appends_now {
            // The own write starts at once, then the Appends leave, one
            // write per connection: both are on the commit's path.
            crate::worker_pool::wake_held_now();
            let _one_write = crate::transport::hold_peer_writes();
            for msg in appends {
                self.send_with(msg, true);
            }
        }
        if let Some(meta) = rd.snapshot {
            self.install_snapshot(meta);
        }
        if !rd.committed_entries.is_empty() {
            self.hand_out(rd.committed_entries);
        }
        for rs in rd.read_states {
            let id = ctx_id(&rs.context);
            if let Some((_, done)) = self.reads_by_ctx.remove(&id) {
                self.serve_read_at(rs.index, done);
            }
        }
        for event in rd.events {
            match event {
                Event::ConfChangeDone(result) => {
                    if let Some(done) = self.conf_change.take() {
                        finish(
                            &self.fsm,
                            done,
                            result.map_or_else(Status::from, |_| Status::ok()),
                        );
                    }
                }
                Event::TransferFailed(e) => {
                    log::warn!(
                        "node {}:{} leadership transfer failed: {e}",
                        self.group,
                        self.id
                    )
                }
            }
        }
    }

    fn send(&mut self, msg: Message) {
        self.send_with(msg, false);
    }

    /// Sends `msg`, written to the socket by this thread when `write_now`
    /// and the connection's task is idle (see `Network::send_now`).
    fn send_with(&mut self, msg: Message, write_now: bool) {
        if msg.kind() == Some(MessageType::InstallSnapshot) {
            let now = self.clock.now();
            self.snapshot_sent.entry(msg.to.clone()).or_insert(now);
        }
        if write_now {
            self.net.send_now(&self.group, vec![msg]);
        } else {
            self.net.send(&self.group, msg);
        }
    }

    fn on_persisted(&mut self, last: Option<(u64, u64)>, result: Result<(), Status>) {
        self.unpersisted_writes = self.unpersisted_writes.saturating_sub(1);
        match result {
            Ok(()) => {
                if let Some((index, term)) = last {
                    self.raft.on_persisted(index, term);
                }
            }
            Err(status) => self.fail(Status::new(
                status.code,
                format!("log write failed: {}", status.message),
            )),
        }
    }

    /// The node cannot go on (disk error, state machine error): stop taking
    /// part, answer everything with the error, tell the user once.
    fn fail(&mut self, status: Status) {
        if self.failed.is_some() {
            return;
        }
        log::error!("node {}:{} stopped: {status}", self.group, self.id);
        self.failed = Some(status.clone());
        // Visible (has_failed, status "Error") before any done or on_error
        // tells the user.
        self.publish();
        self.fail_outstanding(&status);
        let _ = self.fsm.submit(FsmTask::Error(status));
    }

    fn fail_outstanding(&mut self, status: &Status) {
        for (_, p) in self.pending.take_all() {
            finish(&self.fsm, p.done, status.clone());
        }
        for task in std::mem::take(&mut self.proposals) {
            if let Some(done) = task.done {
                finish(&self.fsm, done, status.clone());
            }
        }
        for (_, (_, done)) in std::mem::take(&mut self.reads_by_ctx) {
            finish(&self.fsm, done, status.clone());
        }
        for (_, done) in self.reads_waiting.drain(..) {
            finish(&self.fsm, done, status.clone());
        }
        if let Some(done) = self.conf_change.take() {
            finish(&self.fsm, done, status.clone());
        }
    }

    fn on_soft_state(&mut self, ss: SoftState) {
        log::debug!(target: ELECTION_LOG, "{} {:?} term {}", self.group, ss.role, ss.term);
        let old = std::mem::replace(&mut self.soft, ss.clone());
        let was_leader = old.role == Role::Leader;
        let is_leader = ss.role == Role::Leader;
        if was_leader && (!is_leader || old.term != ss.term) {
            let _ = self.fsm.submit(FsmTask::LeaderStop(Status::new(
                errno::EPERM,
                "leader stepped down",
            )));
            let lost = Status::new(
                errno::EPERM,
                format!("not the leader any more (term {})", ss.term),
            );
            for (_, (_, done)) in std::mem::take(&mut self.reads_by_ctx) {
                finish(&self.fsm, done, lost.clone());
            }
        }
        if is_leader && (!was_leader || old.term != ss.term) {
            self.leader_start = Some(ss.term);
        }
        let following =
            |s: &SoftState| matches!(s.role, Role::Follower | Role::Learner) && s.leader.is_some();
        if following(&old) && (!following(&ss) || old.leader != ss.leader || old.term != ss.term) {
            let leader = old.leader.as_deref().unwrap_or_default().to_string();
            let _ = self.fsm.submit(FsmTask::StopFollowing(leader, old.term));
        }
        if following(&ss) && (!following(&old) || old.leader != ss.leader || old.term != ss.term) {
            let leader = ss.leader.as_deref().unwrap_or_default().to_string();
            let _ = self.fsm.submit(FsmTask::StartFollowing(leader, ss.term));
        }
    }

    /// Sends committed entries to the FSM caller with the dones of this
    /// node's own proposals.
    fn hand_out(&mut self, entries: Vec<Entry>) {
        let mut dones = Vec::with_capacity(entries.len());
        let mut leader_started = None;
        for e in &entries {
            let done = match self.pending.remove(e.index) {
                Some(p) if p.term == e.term => Some(p.done),
                Some(p) => {
                    finish(
                        &self.fsm,
                        p.done,
                        Status::new(errno::EPERM, "entry was overwritten by a new leader"),
                    );
                    None
                }
                None => None,
            };
            dones.push(done);
            if self.leader_start == Some(e.term) && self.soft.role == Role::Leader {
                leader_started = self.leader_start.take();
            }
        }
        self.handed_out = entries.last().map_or(self.handed_out, |e| e.index);
        if self.fsm.submit(FsmTask::Apply { entries, dones }).is_err() {
            log::error!("node {}:{} FSM caller is gone", self.group, self.id);
        }
        if let Some(term) = leader_started {
            let _ = self.fsm.submit(FsmTask::LeaderStart(term));
        }
        while self
            .reads_waiting
            .front()
            .is_some_and(|(index, _)| *index <= self.handed_out)
        {
            if let Some((_, done)) = self.reads_waiting.pop_front() {
                let _ = self.fsm.submit(FsmTask::Run(done, Status::ok()));
            }
        }
    }

    fn install_snapshot(&mut self, meta: SnapshotMeta) {
        // Proposals the snapshot covers: whether they are in it is unknown.
        for (_, p) in self.pending.take_through(meta.last_index) {
            finish(
                &self.fsm,
                p.done,
                Status::new(
                    errno::ERAFTTIMEDOUT,
                    "outcome unknown: covered by an installed snapshot",
                ),
            );
        }
        self.handed_out = self.handed_out.max(meta.last_index);
        let _ = self.fsm.submit(FsmTask::LoadSnapshot(meta));
    }

    fn serve_read_at(&mut self, index: u64, done: Done) {
        if index <= self.handed_out {
            let _ = self.fsm.submit(FsmTask::Run(done, Status::ok()));
        } else {
            // Confirmations arrive in request order with non-decreasing indexes.
            self.reads_waiting.push_back((index, done));
        }
    }

    /// A linearizable read point: `done` runs once the state machine has
    /// applied the commit index as of the request, confirmed by a quorum or
    /// (`lease`) by the leader lease.
    fn read_index(&mut self, done: Done, lease: bool) {
        if let Some(status) = self.refuse_status() {
            return finish(&self.fsm, done, status);
        }
        let id = self.next_read;
        self.next_read += 1;
        let context = Bytes::copy_from_slice(&id.to_be_bytes());
        let asked = if lease {
            self.raft.lease_read(context)
        } else {
            self.raft.read_index(context)
        };
        match asked {
            Ok(()) => {
                let now = self.clock.now();
                self.reads_by_ctx.insert(id, (now, done));
            }
            Err(e) => finish(&self.fsm, done, Status::from(e)),
        }
    }

    fn change_configuration(&mut self, build: ConfBuilder, done: Done) {
        if let Some(status) = self.refuse_status() {
            return finish(&self.fsm, done, status);
        }
        if self.conf_change.is_some() {
            return finish(
                &self.fsm,
                done,
                Status::new(errno::EBUSY, "a membership change is already in progress"),
            );
        }
        let current = self.raft.status().configuration;
        let target = match build(&current) {
            Ok(target) => target,
            Err(status) => return finish(&self.fsm, done, status),
        };
        if current.old_voters.is_empty()
            && same_members(&current.voters, &target.voters)
            && same_members(&current.learners, &target.learners)
        {
            // braft: changing to the configuration in force succeeds at once.
            return finish(&self.fsm, done, Status::ok());
        }
        match self.raft.propose_conf_change(target) {
            Ok(()) => self.conf_change = Some(done),
            Err(e) => finish(&self.fsm, done, Status::from(e)),
        }
    }

    fn start_snapshot(&mut self, done: Option<Done>) {
        if let Some(status) = self.refuse_status() {
            return done
                .into_iter()
                .for_each(|d| finish(&self.fsm, d, status.clone()));
        }
        if self.storage.snapshots.is_none() {
            let status = Status::new(errno::EINVAL, "snapshots are disabled: no snapshot_uri");
            return done
                .into_iter()
                .for_each(|d| finish(&self.fsm, d, status.clone()));
        }
        if self.snapshotting {
            let status = Status::new(errno::EBUSY, "a snapshot is already being saved");
            return done
                .into_iter()
                .for_each(|d| finish(&self.fsm, d, status.clone()));
        }
        self.snapshotting = true;
        let tx = self.tx.clone();
        let task = FsmTask::SaveSnapshot(Box::new(move |result| {
            let _ = tx.send(Command::SnapshotSaved { result, done });
        }));
        if let Err(FsmTask::SaveSnapshot(callback)) = self.fsm.submit(task) {
            callback(Err(Status::new(errno::ENODESHUTDOWN, "node is shut down")));
        }
    }

    fn on_snapshot_saved(
        &mut self,
        result: Result<Option<SnapshotMeta>, Status>,
        done: Option<Done>,
    ) {
        self.snapshotting = false;
        let status = match result {
            Ok(Some(meta)) => {
                let index = meta.last_index;
                self.raft.on_snapshot(meta);
                // Keep a tail of the log so slightly lagging followers catch
                // up from the log rather than by a whole snapshot.
                let keep = self.opts.catchup_margin.max(1);
                if index > keep {
                    self.storage.truncate_prefix(index - keep + 1);
                }
                log::info!(
                    "node {}:{} snapshot saved at index {index}",
                    self.group,
                    self.id
                );
                Status::ok()
            }
            Ok(None) => Status::ok(),
            Err(status) => {
                log::warn!("node {}:{} snapshot failed: {status}", self.group, self.id);
                status
            }
        };
        if let Some(done) = done {
            finish(&self.fsm, done, status);
        }
    }

    fn on_fsm_event(&mut self, event: FsmEvent) {
        match event {
            FsmEvent::SnapshotLoaded(meta) => self.raft.on_applied(meta.last_index),
            FsmEvent::Failed(status) => {
                if self.failed.is_none() {
                    log::error!(
                        "node {}:{} stopped by its state machine: {status}",
                        self.group,
                        self.id
                    );
                    self.failed = Some(status.clone());
                    self.fail_outstanding(&status);
                }
            }
        }
    }

    /// Once a second: time out reads and stuck snapshot transfers.
    fn sweep(&mut self, now: Duration) {
        let limit = read_timeout(&self.opts);
        let expired: Vec<u64> = self
            .reads_by_ctx
            .iter()
            .filter(|(_, (at, _))| now.saturating_sub(*at) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, done)) = self.reads_by_ctx.remove(&id) {
                finish(
                    &self.fsm,
                    done,
                    Status::new(errno::ERAFTTIMEDOUT, "read index was not confirmed in time"),
                );
            }
        }
        if self.snapshot_sent.is_empty() {
            return;
        }
        let status = self.raft.status();
        let in_snapshot: Vec<core::PeerId> = status
            .peers
            .iter()
            .filter(|p| p.state == core::ProgressState::Snapshot)
            .map(|p| p.id.clone())
            .collect();
        self.snapshot_sent
            .retain(|peer, _| in_snapshot.contains(peer));
        let transfer_limit =
            Duration::from_millis(30_000u64.max(20 * self.opts.election_timeout_ms as u64));
        let stuck: Vec<core::PeerId> = self
            .snapshot_sent
            .iter()
            .filter(|(_, at)| now.saturating_sub(**at) > transfer_limit)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in stuck {
            self.snapshot_sent.remove(&peer);
            self.raft.report_snapshot(&peer, false);
        }
    }

    /// Publishes what cheap queries (is_leader, leader_id, lease) read
    /// without a round trip to this task.
    fn publish(&mut self) {
        let lease_until = if self.opts.enable_leader_lease && self.failed.is_none() {
            if self.opts.mutation == Mutation::TickCountLease {
                // The old rule: trusted for one tick from now.
                self.raft
                    .is_lease_valid()
                    .then(|| self.clock.now() + self.tick)
            } else {
                self.raft.lease_expiry().map(|tick| self.tick_at(tick))
            }
        } else {
            None
        };
        // A local read under the lease must not miss a committed entry: the
        // lease holds once the state machine applied the commit index (the
        // reader checks the FSM's applied index, so no turn is needed).
        let needs_applied = match self.opts.mutation {
            Mutation::TickCountLease | Mutation::LeaseIgnoresApplyLag => 0,
            _ => self.raft.commit_index(),
        };
        // Only this driver writes its published state: when nothing in it
        // changed since the last store (most turns of an idle node), the
        // store, a lock on memory other threads read, is skipped. A term
        // has at most one leader, so whether one is known stands for its
        // name (as in `Published::update`).
        let stored = PublishedState {
            role: self.soft.role,
            term: self.soft.term,
            knows_leader: self.soft.leader.is_some(),
            lease_until,
            needs_applied,
            failed: self.failed.is_some(),
        };
        if self.last_published == Some(stored) {
            return;
        }
        self.last_published = Some(stored);
        self.published.update(
            &self.soft,
            lease_until,
            needs_applied,
            self.failed.is_some(),
        );
    }

    fn stop_parts(&mut self) -> impl FnOnce() + Send + 'static {
        self.charge_in_flight(0);
        let status = Status::new(errno::ENODESHUTDOWN, "node is shut down");
        self.fail_outstanding(&status);
        while let Some(cmd) = self.tx.take(&mut self.rx) {
            refuse(cmd, &status, Some(&self.fsm));
        }
        self.published.shut_down();
        if self.soft.role == Role::Leader {
            let _ = self.fsm.submit(FsmTask::LeaderStop(Status::new(
                errno::ENODESHUTDOWN,
                "node is shut down",
            )));
        }
        let fsm = self.fsm.clone();
        let storage = self.storage.clone();
        let dones = std::mem::take(&mut self.shutdown_dones);
        move || {
            storage.shutdown();
            fsm.shutdown_and_join();
            // Nothing of this node touches its directories any more.
            storage.release_dirs();
            for done in dones {
                done.run(Status::ok());
            }
        }
    }

    /// Stops the node: answers everything outstanding, then (off the
    /// runtime's workers, since joining threads blocks) drains the writer,
    /// stops the FSM thread and runs the shutdown dones.
    fn stop(&mut self) {
        let _own = super::reentry::enter(super::reentry::node_key(&self.published));
        let finish = self.stop_parts();
        std::thread::spawn(finish);
    }

    /// `stop` for a stepped node: the writer and FSM caller have no threads
    /// to join; the FSM's shutdown task runs at its next step.
    pub(crate) fn stop_stepped(&mut self) {
        let finish = self.stop_parts();
        finish();
    }
}

impl Drop for Driver {
    /// A driver dropped without stopping (a simulated crash) gives back
    /// its charge on the process's memory budget too.
    fn drop(&mut self) {
        self.charge_in_flight(0);
    }
}

/// Answers a command that arrives after the node stopped: on the FSM
/// thread while it still runs, else on the calling thread.
pub(crate) fn refuse(cmd: Command, status: &Status, fsm: Option<&FsmCaller>) {
    let answer = |done: Done, status: Status| match fsm {
        Some(fsm) => finish(fsm, done, status),
        None => done.run(status),
    };
    match cmd {
        Command::Propose(task) => task
            .done
            .into_iter()
            .for_each(|d| answer(d, status.clone())),
        Command::ConfChange { done, .. } | Command::ReadIndex(done) | Command::LeaseRead(done) => {
            answer(done, status.clone())
        }
        Command::Snapshot(done) | Command::SnapshotSaved { done, .. } => {
            done.into_iter().for_each(|d| answer(d, status.clone()));
        }
        // Shutting down a node that is already down succeeds.
        Command::Shutdown(done) => done.into_iter().for_each(|d| answer(d, Status::ok())),
        Command::Query(_)
        | Command::Messages(_)
        | Command::Persisted
        | Command::Fsm(_)
        | Command::ServerUnreachable(_) => {}
        Command::SnapshotFetched { .. } => {}
    }
}

fn same_members(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn ctx_id(ctx: &Bytes) -> u64 {
    let mut id = [0u8; 8];
    if ctx.len() == 8 {
        id.copy_from_slice(ctx);
    }
    u64::from_be_bytes(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_clocks_start_on_multiples_of_the_heartbeat_period() {
        let beat = Duration::from_millis(100);
        let at = |ms| aligned_start(Duration::from_millis(ms), beat);
        assert_eq!(at(1234), Duration::from_millis(1200));
        assert_eq!(at(1200), Duration::from_millis(1200));
        assert_eq!(at(99), Duration::ZERO);
    }
}
