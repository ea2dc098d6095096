//! `Node`: one replica of one group, braft's `braft::Node`.
//!
//! Every method is thread-safe. Cheap queries read state the driver
//! publishes; commands go to the driver task through a channel and report
//! through a [`Done`]; a few queries (status, list_peers) wait for the driver.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::done::Done;
use super::driver::{refuse, Command, CommandSender, Driver, DriverCell, Task};
use super::errno::{self, Status};
use super::fsm_caller::{FsmCaller, FsmEvent, FsmTask, FsmThread, SteppedFsm};
use super::network::Network;
use super::network::TcpNetwork;
use super::node_status::NodeStatus;
use super::options::{NodeOptions, ELECTION_TICKS};
use super::peer_id::{format_peer_list, parse_peer_list, PeerId};
use super::published::Published;
use super::raft_server::{HostedNode, RaftServer, METHOD_ADMIN};
use super::state_machine::StateMachine;
use super::storage_io::NodeStorage;
use crate::clock::Clock;
use crate::core::{self, Raft};
use crate::proto::{Configuration, Message};
use crate::transport::{self, Request, Responder};

enum Lifecycle {
    Created,
    /// `init` is opening the storage (without the lifecycle lock: recovery
    /// logs, and a log callback may call back in). A shutdown requested
    /// meanwhile is kept here and carried out when init ends.
    Starting {
        stop: Option<Vec<Option<Done>>>,
    },
    Running {
        tx: CommandSender,
        storage: NodeStorage,
    },
    ShuttingDown,
    Down,
}

pub(crate) struct NodeShared {
    server: Arc<RaftServer>,
    group: String,
    id: String,
    lifecycle: Mutex<Lifecycle>,
    published: Arc<Published>,
    /// The FSM thread, where user callbacks run (set by init).
    /// Set when shutdown has finished (threads joined, on_shutdown and every
    /// shutdown done run); the condition variable wakes joiners.
    down: (Mutex<DownState>, Condvar),
    /// This node, for internal methods that act through the public API.
    me: Weak<NodeShared>,
    /// `disable_cli`: refuse `raft.admin` (rraft-cli).
    cli_disabled: AtomicBool,
}

/// Whether the node is down, and the dones of later shutdown calls, which
/// run when it is.
#[derive(Default)]
struct DownState {
    down: bool,
    waiters: Vec<Done>,
}

/// A replica of one Raft group hosted on a [`RaftServer`].
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
}

fn shut_down_status() -> Status {
    Status::new(errno::ENODESHUTDOWN, "node is shut down")
}

/// Receives messages from the transport for the driver: the delivering
/// thread runs the driver's turn itself when the driver is free (see
/// [`DriverCell::deliver`]).
struct Inbox {
    cell: Arc<DriverCell>,
    tx: CommandSender,
    published: Arc<Published>,
}

impl transport::NodeHandle for Inbox {
    fn deliver(&self, msgs: Vec<Message>) {
        if msgs.iter().all(may_wait_for_a_tick) {
            self.cell.deliver_later(Command::Messages(msgs));
        } else if msgs
            .iter()
            .all(|m| m.kind() == Some(crate::proto::MessageType::Heartbeat))
        {
            self.cell.deliver_beats(msgs);
        } else if msgs
            .iter()
            .any(|m| m.kind() == Some(crate::proto::MessageType::AppendResponse) && !m.reject)
        {
            self.cell.deliver_acks(msgs);
        } else {
            self.cell.deliver(Command::Messages(msgs));
        }
    }

    fn leader_hint(&self) -> Option<String> {
        self.published.leader()
    }

    fn server_unreachable(&self, addr: &str) {
        let _ = self.tx.send(Command::ServerUnreachable(addr.to_string()));
    }
}

/// Whether `msg` may wait in the driver's queue for its next turn instead
/// of getting one: a plain answer to a heartbeat (no read's context, no
/// quiescence round). A leader that answers to it is woken at least once
/// per heartbeat period while it ticks, and what the answer tells it (the
/// peer is alive and has its log; the lease counts from the stamp of the
/// heartbeat, not from when the answer is stepped) loses nothing by
/// waiting: a wait is a network delay of at most a heartbeat period, which
/// only makes a lease renewal come later, never last longer. A read's
/// context and the quiescence round are stepped at once. Why: an idle
/// leader would otherwise run a whole turn per answer, two per heartbeat
/// period with three replicas, on top of its tick turn that takes them.
pub(crate) fn may_wait_for_a_tick(msg: &Message) -> bool {
    msg.kind() == Some(crate::proto::MessageType::HeartbeatResponse)
        && msg.context.is_empty()
        && !msg.quiesce
        && !msg.reject
}

impl Node {
    /// braft `Node(group, peer_id)`: a node not yet started. The peer id's
    /// port must be the server's (braft: the node's address must be the
    /// service's).
    pub fn new(server: &Arc<RaftServer>, group: &str, peer: &str) -> Result<Node, Status> {
        if group.is_empty() || group.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Status::new(
                errno::EINVAL,
                format!("bad group id {group:?}: empty or has spaces"),
            ));
        }
        let peer: PeerId = peer
            .parse()
            .map_err(|e: super::peer_id::ParseError| Status::new(errno::EINVAL, e.0))?;
        if peer.is_unspecified() {
            return Err(Status::new(
                errno::EINVAL,
                format!("peer {peer} uses the unspecified address, which no peer can reach"),
            ));
        }
        if peer.port != server.port() {
            return Err(Status::new(
                errno::EINVAL,
                format!(
                    "peer {peer} is not served by this server (it listens on port {}): start a server on {} first",
                    server.port(),
                    peer.addr()
                ),
            ));
        }
        let id = peer.to_string();
        Ok(Node {
            shared: Arc::new_cyclic(|me| NodeShared {
                server: server.clone(),
                group: group.to_string(),
                id,
                lifecycle: Mutex::new(Lifecycle::Created),
                published: Arc::new(Published::new(crate::clock::system())),
                down: (Mutex::new(DownState::default()), Condvar::new()),
                me: me.clone(),
                cli_disabled: AtomicBool::new(false),
            }),
        })
    }

    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// The canonical peer id `host:port:idx`.
    pub fn peer_id(&self) -> &str {
        &self.shared.id
    }

    /// braft `init`: opens (or creates) the storage, recovers, starts the
    /// node's threads and joins the group.
    pub fn init(&self, opts: NodeOptions, sm: Box<dyn StateMachine>) -> Result<(), Status> {
        opts.validate().map_err(|e| Status::new(errno::EINVAL, e))?;
        {
            let mut lifecycle = self.lifecycle();
            match *lifecycle {
                Lifecycle::Created => {}
                Lifecycle::Running { .. } => {
                    return Err(Status::new(errno::EINVAL, "node is already initialised"))
                }
                Lifecycle::Starting { .. } => {
                    return Err(Status::new(errno::EBUSY, "node is being initialised"))
                }
                _ => return Err(shut_down_status()),
            }
            *lifecycle = Lifecycle::Starting { stop: None };
        }
        // No library lock is held from here on: recovery logs, and a log
        // callback may call back into this node.
        let started = self.start(opts, sm);
        let mut lifecycle = self.lifecycle();
        let stop = match std::mem::replace(&mut *lifecycle, Lifecycle::Down) {
            Lifecycle::Starting { stop } => stop,
            _ => None,
        };
        match started {
            Ok((tx, storage)) => {
                *lifecycle = Lifecycle::Running { tx, storage };
                drop(lifecycle);
                log::info!("node {}:{} started", self.shared.group, self.shared.id);
                for done in stop.into_iter().flatten() {
                    self.shutdown(done);
                }
                Ok(())
            }
            Err(status) => {
                match stop {
                    None => *lifecycle = Lifecycle::Created,
                    Some(dones) => {
                        drop(lifecycle);
                        self.shared.mark_down(dones.into_iter().flatten().collect());
                    }
                }
                Err(status)
            }
        }
    }

    fn lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.shared.lock_lifecycle()
    }

    /// Opens the storage, recovers and starts the node's threads.
    fn start(
        &self,
        opts: NodeOptions,
        sm: Box<dyn StateMachine>,
    ) -> Result<(CommandSender, NodeStorage), Status> {
        if self.shared.server.is_stopped() {
            return Err(Status::new(errno::EINVAL, "the server is stopped"));
        }
        self.shared
            .cli_disabled
            .store(opts.disable_cli, Ordering::Relaxed);
        let shared = &self.shared;
        let braft_compat = opts.braft_compat;
        let net: Arc<dyn super::network::Network> = if braft_compat {
            super::braft_peer::network(
                shared.server.net().clone(),
                &shared.group,
                &shared.id,
                shared.published.clone(),
                opts.election_timeout_ms,
            )
        } else {
            Arc::new(TcpNetwork(shared.server.net().clone()))
        };
        let parts = assemble(
            &shared.group,
            &shared.id,
            opts,
            sm,
            Threads::Library,
            net,
            shared.published.clone(),
            crate::clock::system(),
            seed_for(&shared.id),
        )?;
        let (driver, tx, storage, fsm) = (parts.driver, parts.tx, parts.storage, parts.fsm);
        if braft_compat {
            super::braft_peer::attach_snapshots(
                &shared.group,
                &shared.id,
                storage.snapshots.clone(),
            );
        }
        let (cell, ticks) = DriverCell::start(driver);
        let inbox = Arc::new(Inbox {
            cell: cell.clone(),
            tx: tx.clone(),
            published: shared.published.clone(),
        });
        if let Err(status) = shared.server.register(
            &shared.group,
            &shared.id,
            shared.clone() as Arc<dyn HostedNode>,
            inbox,
        ) {
            storage.shutdown();
            fsm.shutdown_and_join();
            return Err(status);
        }
        super::runtime::handle().spawn(cell.run(ticks));
        Ok((tx, storage))
    }

    fn sender(&self) -> Result<CommandSender, Status> {
        match &*self.lifecycle() {
            Lifecycle::Running { tx, .. } => Ok(tx.clone()),
            Lifecycle::Created => Err(Status::new(
                errno::EINVAL,
                "node is not initialised: call init first",
            )),
            Lifecycle::Starting { stop: None } => Err(Status::new(
                errno::EBUSY,
                "node is being initialised: init has not returned",
            )),
            _ => Err(shut_down_status()),
        }
    }

    fn command(&self, cmd: Command) {
        match self.sender() {
            Ok(tx) => {
                if let Err(cmd) = tx.send(cmd) {
                    refuse(cmd, &shut_down_status(), None);
                }
            }
            Err(status) => refuse(cmd, &status, None),
        }
    }

    /// Runs `f` on the driver and waits for its answer.
    fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> T + Send + 'static,
    ) -> Result<T, Status> {
        if super::reentry::inside(self.key()) {
            return Err(Status::new(
                errno::EBUSY,
                "called on the node's own driver thread (from a log callback): the driver \
                 answers this query and cannot while it waits for the callback",
            ));
        }
        let tx = self.sender()?;
        let (answer_tx, answer_rx) = std::sync::mpsc::sync_channel(1);
        let query = Box::new(move |driver: &mut Driver| {
            let _ = answer_tx.send(f(driver));
        });
        tx.send(Command::Query(query))
            .map_err(|_| shut_down_status())?;
        super::runtime::block_on_wait(|| answer_rx.recv_timeout(Duration::from_secs(30))).map_err(
            |e| match e {
                std::sync::mpsc::RecvTimeoutError::Timeout => {
                    Status::new(errno::ERAFTTIMEDOUT, "node did not answer in 30 s")
                }
                std::sync::mpsc::RecvTimeoutError::Disconnected => shut_down_status(),
            },
        )
    }

    /// braft `apply`: proposes `task`; its done runs exactly once, with OK
    /// after the entry is applied, or with the error.
    pub fn apply(&self, task: Task) {
        self.command(Command::Propose(task));
    }

    /// braft `shutdown`: stops the node; `done` runs when it has stopped
    /// (after `on_shutdown`). Safe to call more than once, from any thread:
    /// every call's done runs once the node is down, before `join` returns.
    pub fn shutdown(&self, done: Option<Done>) {
        let mut lifecycle = self.lifecycle();
        match std::mem::replace(&mut *lifecycle, Lifecycle::ShuttingDown) {
            Lifecycle::Running { tx, .. } => {
                drop(lifecycle);
                self.shared
                    .server
                    .unregister(&self.shared.group, &self.shared.id);
                let shared = self.shared.clone();
                // The user's done runs before join returns; the thread running
                // it is marked so that a join from it fails instead of waiting
                // for itself.
                let both = Done::new(move |_: Status| {
                    let _own = super::reentry::enter(super::reentry::node_key(&shared.published));
                    if let Some(user) = done {
                        user.run(Status::ok());
                    }
                    shared.mark_down(Vec::new());
                });
                if let Err(cmd) = tx.send(Command::Shutdown(Some(both))) {
                    refuse(cmd, &shut_down_status(), None);
                }
            }
            Lifecycle::Created => {
                *lifecycle = Lifecycle::Down;
                drop(lifecycle);
                self.shared.mark_down(done.into_iter().collect());
            }
            Lifecycle::Starting { stop } => {
                let mut stop = stop.unwrap_or_default();
                stop.push(done);
                *lifecycle = Lifecycle::Starting { stop: Some(stop) };
            }
            previous => {
                // Shutting down or down already: the done waits for the end
                // of the shutdown under way (or runs now if it is over).
                *lifecycle = previous;
                drop(lifecycle);
                if let Some(done) = done {
                    self.shared.wait_down(done);
                }
            }
        }
    }

    /// braft `join`: waits until a requested shutdown has finished (every
    /// shutdown done has run). EINVAL when shutdown was never requested;
    /// EBUSY, without waiting, where waiting would never end: on the node's
    /// own threads (a callback, a done on its FSM thread or its shutdown
    /// done, its driver) or inside a log callback.
    pub fn join(&self) -> Result<(), Status> {
        if matches!(
            *self.lifecycle(),
            Lifecycle::Created | Lifecycle::Running { .. } | Lifecycle::Starting { stop: None }
        ) {
            return Err(Status::new(errno::EINVAL, "join called before shutdown"));
        }
        if self.in_callback() {
            return Err(Status::new(
                errno::EBUSY,
                "join from one of the node's own callbacks or dones would wait for itself: \
                 join from another thread",
            ));
        }
        if super::reentry::in_log_callback() {
            return Err(Status::new(
                errno::EBUSY,
                "join from a log callback may wait for the thread logging: join from another thread",
            ));
        }
        let (lock, cvar) = &self.shared.down;
        super::runtime::block_on_wait(|| {
            let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !state.down {
                state = cvar.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        });
        *self.lifecycle() = Lifecycle::Down;
        Ok(())
    }

    /// The key that marks threads doing this node's own work.
    fn key(&self) -> usize {
        super::reentry::node_key(&self.shared.published)
    }

    /// True on one of this node's own threads: its FSM thread (inside a
    /// callback or a done), the thread running its shutdown dones, or its
    /// driver's thread during a turn.
    pub fn in_callback(&self) -> bool {
        super::reentry::in_callbacks_of(self.key()) || super::reentry::inside(self.key())
    }

    /// Shuts down and waits until the node has stopped (on_shutdown and the
    /// shutdown dones have returned), except where [`Node::join`] refuses to
    /// wait (on the node's own threads, in a log callback).
    pub fn shutdown_and_wait(&self) {
        self.shutdown(None);
        let _ = self.join();
    }

    pub fn is_leader(&self) -> bool {
        self.shared.published.is_leader()
    }

    /// The leader's peer id, if one is known.
    pub fn leader_id(&self) -> Option<String> {
        self.shared.published.leader()
    }

    /// The current term as last published.
    pub fn term(&self) -> u64 {
        self.shared.published.term()
    }

    /// braft `is_leader_lease_valid`: true only on a leader whose lease holds
    /// (needs `enable_leader_lease`) and whose state machine has applied
    /// every entry it committed, so a local read right after it is
    /// linearizable. Under load that second condition often fails: use
    /// [`Node::lease_read`], which waits for the apply instead.
    pub fn is_leader_lease_valid(&self) -> bool {
        self.shared.published.lease_valid()
    }

    /// braft `list_peers`: the voters, leader only (EPERM elsewhere).
    pub fn list_peers(&self) -> Result<Vec<String>, Status> {
        self.query(|d| {
            let status = d.raft.status();
            if status.role != core::Role::Leader {
                return Err(Status::new(
                    errno::EPERM,
                    "list_peers is served by the leader only",
                ));
            }
            Ok(status.configuration.voters)
        })?
    }

    /// The learners of the configuration (any role).
    pub fn list_learners(&self) -> Result<Vec<String>, Status> {
        self.query(|d| d.raft.status().configuration.learners)
    }

    fn change(
        &self,
        build: impl FnOnce(&Configuration) -> Result<Configuration, Status> + Send + 'static,
        done: Done,
    ) {
        self.command(Command::ConfChange {
            build: Box::new(build),
            done,
        });
    }

    /// A change of one member: `peer` canonicalised (EINVAL through `done`
    /// when it does not parse), then `plan(configuration, peer)`.
    fn change_member(
        &self,
        peer: &str,
        done: Done,
        plan: impl FnOnce(&Configuration, String) -> Result<Configuration, Status> + Send + 'static,
    ) {
        match super::peer_id::canonical(peer) {
            Ok(peer) => self.change(move |conf| plan(conf, peer), done),
            Err(e) => done.run(Status::new(errno::EINVAL, e.0)),
        }
    }

    /// braft `add_peer`: adds a voter (a learner is promoted).
    pub fn add_peer(&self, peer: &str, done: Done) {
        self.change_member(peer, done, |conf, peer| {
            if conf.voters.contains(&peer) {
                return Err(Status::new(
                    errno::EEXIST,
                    format!("{peer} is already a voter"),
                ));
            }
            let mut next = stable(conf);
            next.learners.retain(|l| l != &peer);
            next.voters.push(peer);
            Ok(next)
        })
    }

    /// braft `remove_peer`: removes a voter or a learner.
    pub fn remove_peer(&self, peer: &str, done: Done) {
        self.change_member(peer, done, |conf, peer| {
            if !conf.voters.contains(&peer) && !conf.learners.contains(&peer) {
                return Err(Status::new(
                    errno::ENOENT,
                    format!("{peer} is not a member"),
                ));
            }
            let mut next = stable(conf);
            next.voters.retain(|v| v != &peer);
            next.learners.retain(|l| l != &peer);
            Ok(next)
        })
    }

    /// Adds a non-voting learner (beyond braft).
    pub fn add_learner(&self, peer: &str, done: Done) {
        self.change_member(peer, done, |conf, peer| {
            if conf.voters.contains(&peer) || conf.learners.contains(&peer) {
                return Err(Status::new(
                    errno::EEXIST,
                    format!("{peer} is already a member"),
                ));
            }
            let mut next = stable(conf);
            next.learners.push(peer);
            Ok(next)
        })
    }

    /// braft `change_peers`: the voters become `peers` (`"p1,p2,..."`);
    /// learners not listed stay learners.
    pub fn change_peers(&self, peers: &str, done: Done) {
        match parse_peer_list(peers) {
            Ok(list) if list.is_empty() => done.run(Status::new(
                errno::EINVAL,
                "change_peers to an empty configuration",
            )),
            Ok(list) => {
                let voters: Vec<String> = list.iter().map(ToString::to_string).collect();
                self.change(
                    move |conf| {
                        let mut next = stable(conf);
                        next.learners.retain(|l| !voters.contains(l));
                        next.voters = voters;
                        Ok(next)
                    },
                    done,
                )
            }
            Err(e) => done.run(Status::new(errno::EINVAL, e.0)),
        }
    }

    /// braft `reset_peers`: unsafe recovery of a group that lost its quorum:
    /// adopt `peers` locally without consensus.
    pub fn reset_peers(&self, peers: &str) -> Result<(), Status> {
        let list = parse_peer_list(peers).map_err(|e| Status::new(errno::EINVAL, e.0))?;
        if list.is_empty() {
            return Err(Status::new(
                errno::EINVAL,
                "reset_peers to an empty configuration",
            ));
        }
        let conf = Configuration {
            voters: list.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        log::warn!(
            "node {}:{} reset_peers to {} (unsafe recovery)",
            self.shared.group,
            self.shared.id,
            format_peer_list(&list)
        );
        self.query(move |d| d.raft.reset_configuration(conf).map_err(Status::from))?
    }

    /// braft `transfer_leadership_to`: `None` (or braft's ANY_PEER, "0.0.0.0:0")
    /// picks the most up-to-date voter.
    pub fn transfer_leadership_to(&self, peer: Option<&str>) -> Result<(), Status> {
        let target = match peer.map(str::trim) {
            None | Some("") | Some("0.0.0.0:0") | Some("0.0.0.0:0:0") => None,
            Some(p) => {
                Some(super::peer_id::canonical(p).map_err(|e| Status::new(errno::EINVAL, e.0))?)
            }
        };
        self.query(move |d| {
            d.raft
                .transfer_leader(target.as_deref())
                .map_err(Status::from)
        })?
    }

    /// braft `snapshot`: saves a snapshot now; `done` reports the outcome.
    pub fn snapshot(&self, done: Option<Done>) {
        self.command(Command::Snapshot(done));
    }

    /// braft `vote`: starts an election now if this node is a voter.
    pub fn vote(&self) -> Result<(), Status> {
        self.query(|d| d.raft.campaign().map_err(Status::from))?
    }

    /// ReadIndex (beyond braft): `done` runs with OK once this node's state
    /// machine has applied everything committed when the read was issued, so
    /// reading local state in `done` is linearizable.
    pub fn read_index(&self, done: Done) {
        self.command(Command::ReadIndex(done));
    }

    /// A read under the leader lease: on a leader whose lease holds, `done`
    /// runs with OK once this node's state machine has applied everything
    /// committed when the read was issued (no round trip to the followers);
    /// otherwise it is a `read_index`. Reading local state in `done` is
    /// linearizable. `is_leader_lease_valid` alone is not enough for that:
    /// a leader may have committed entries it has not applied yet.
    pub fn lease_read(&self, done: Done) {
        self.command(Command::LeaseRead(done));
    }

    /// braft `get_status`.
    pub fn status(&self) -> Result<NodeStatus, Status> {
        let group = self.shared.group.clone();
        self.query(move |d| NodeStatus::collect(&group, d))
    }

    /// The log writer thread's counters: (batches, requests). Each batch is
    /// one group commit (at most one fdatasync of the log). None unless the
    /// node is running.
    pub fn log_writer_stats(&self) -> Option<(u64, u64)> {
        self.shared.with_storage(NodeStorage::writer_stats)
    }

    /// True when the node failed (disk or state machine error) and stopped.
    pub fn has_failed(&self) -> bool {
        self.shared.published.failed()
    }
}

/// The non-joint view of a configuration (a change starts from the stable one).
fn stable(conf: &Configuration) -> Configuration {
    Configuration {
        voters: conf.voters.clone(),
        learners: conf.learners.clone(),
        old_voters: Vec::new(),
    }
}

/// Where a node's log writer and FSM caller run.
pub(crate) enum Threads {
    /// On threads: the process's shared pools, or a thread each where the
    /// node's options ask for one (the library as shipped).
    Library,
    /// No threads: the caller steps them (deterministic simulation).
    Stepped,
}

/// A node's pieces, recovered from its storage and wired together.
pub(crate) struct Parts {
    pub(crate) driver: Driver,
    pub(crate) tx: CommandSender,
    pub(crate) storage: NodeStorage,
    pub(crate) fsm: Arc<FsmCaller>,
    /// With `Threads::Stepped`: the writer and FSM caller to step.
    pub(crate) stepped: Option<(crate::storage::SteppedWriter, SteppedFsm)>,
}

/// Opens the storage named by `opts`, recovers, and builds the driver, the
/// log writer and the FSM caller of node `id` of `group`. Used by
/// [`Node::init`] and by the deterministic simulation alike.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    group: &str,
    id: &str,
    opts: NodeOptions,
    sm: Box<dyn StateMachine>,
    threads: Threads,
    net: Arc<dyn Network>,
    published: Arc<Published>,
    clock: Arc<dyn Clock>,
    seed: u64,
) -> Result<Parts, Status> {
    let stepped = matches!(threads, Threads::Stepped);
    let fsm_thread = match threads {
        Threads::Stepped => FsmThread::Stepped,
        Threads::Library if opts.dedicated_fsm_thread => FsmThread::Dedicated,
        Threads::Library => FsmThread::Shared,
    };
    let mut recovered = super::recovery::open(&opts, group, id, stepped)?;
    let storage = recovered.storage.clone();
    let (tx, rx) = CommandSender::channel();
    let notify_tx = tx.clone();
    let notify: Arc<dyn Fn(FsmEvent) + Send + Sync> = Arc::new(move |event| {
        let _ = notify_tx.send(Command::Fsm(event));
    });
    let start_conf = recovered
        .init
        .snapshot
        .as_ref()
        .and_then(|s| s.configuration.clone())
        .unwrap_or_default();
    // Also the FSM thread's log tag: it names the node.
    let name = format!("rraft-fsm node {group}:{id}");
    let (fsm, stepped_fsm) = FsmCaller::start(
        name,
        sm,
        storage.snapshots.clone(),
        start_conf,
        notify,
        published.applied_cell(),
        opts.apply_batch as usize,
        fsm_thread,
        super::reentry::node_key(&published),
    )
    .map_err(|e| {
        storage.shutdown();
        Status::new(
            errno::EINTERNAL,
            format!("cannot start the FSM thread: {e}"),
        )
    })?;
    let fsm = Arc::new(fsm);
    if let Some(meta) = recovered.init.snapshot.clone() {
        let _ = fsm.submit(FsmTask::LoadSnapshot(meta));
    }
    let applied = recovered.init.applied;
    let mut config = core_config(&opts, id);
    config.seed = seed;
    config.group_seed = core::Config::group_seed_of(group);
    let raft = match Raft::new(config, storage.log.clone(), recovered.init) {
        Ok(raft) => raft,
        Err(e) => {
            storage.shutdown();
            fsm.shutdown_and_join();
            return Err(Status::new(
                errno::EIO,
                format!("cannot start Raft from the stored state: {e}"),
            ));
        }
    };
    let driver = Driver::new(
        raft,
        group.to_string(),
        id.to_string(),
        opts,
        rx,
        tx.clone(),
        storage.clone(),
        fsm.clone(),
        net,
        published,
        applied,
        clock,
    );
    let stepped = match (recovered.stepped_writer.take(), stepped_fsm) {
        (Some(writer), Some(fsm)) => Some((writer, fsm)),
        _ => None,
    };
    Ok(Parts {
        driver,
        tx,
        storage,
        fsm,
        stepped,
    })
}

/// The core's settings from the node options.
fn core_config(opts: &NodeOptions, id: &str) -> core::Config {
    let mut config = core::Config::new(id);
    config.election_ticks = ELECTION_TICKS;
    config.heartbeat_ticks = (ELECTION_TICKS / 10).max(1);
    config.max_entries_per_msg = opts.max_entries_per_append as usize;
    config.max_bytes_per_msg = opts.max_body_size as u64;
    config.max_inflight_msgs = opts.max_inflight_appends as usize;
    config.catchup_margin = opts.catchup_margin;
    let catchup_ms = if opts.catchup_timeout_ms == 0 {
        opts.election_timeout_ms
    } else {
        opts.catchup_timeout_ms
    };
    config.catchup_ticks = opts.ms_to_ticks(catchup_ms);
    // braft's default drift equals the election timeout; the lease needs a
    // positive window, so the drift counted against it is capped at half.
    config.max_clock_drift_ticks = opts
        .ms_to_ticks(opts.max_clock_drift_ms)
        .min(ELECTION_TICKS / 2);
    if opts.braft_compat {
        // braft's follower takes appends in order, one at a time: braft's
        // own leader keeps one in flight (raft_max_parallel_append_entries_rpc_num).
        config.max_inflight_msgs = 1;
        // braft's followers vote while a leader is alive unless braft runs
        // with raft_enable_leader_lease, which this node cannot see: no
        // lease, reads take a ReadIndex round.
        config.leader_lease = false;
    }
    // braft replicas cannot take the quiescence marks: a mixed group never sleeps.
    if opts.quiesce_after_ms > 0 && !opts.braft_compat {
        config.quiesce_ticks = opts.ms_to_ticks(opts.quiesce_after_ms);
    }
    config
}

/// A per-node seed for election jitter (differs between nodes and restarts).
pub(crate) fn seed_for(id: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(id.as_bytes());
    h.finish()
}

impl NodeShared {
    fn lock_lifecycle(&self) -> std::sync::MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` of the running node's storage (under the lifecycle lock); None
    /// in any other state.
    fn with_storage<T>(&self, f: impl FnOnce(&NodeStorage) -> T) -> Option<T> {
        match &*self.lock_lifecycle() {
            Lifecycle::Running { storage, .. } => Some(f(storage)),
            _ => None,
        }
    }

    /// Runs `done` once the node is down: now if it is, else when the
    /// shutdown under way ends.
    fn wait_down(&self, done: Done) {
        let mut state = self.down.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.down {
            drop(state);
            let _own = super::reentry::enter(super::reentry::node_key(&self.published));
            done.run(Status::ok());
        } else {
            state.waiters.push(done);
        }
    }

    /// The node is down: runs `dones` and every waiting done (on this
    /// thread, marked as the node's own), then wakes the joiners.
    fn mark_down(&self, dones: Vec<Done>) {
        let _own = super::reentry::enter(super::reentry::node_key(&self.published));
        let mut pending = dones;
        loop {
            for done in pending.drain(..) {
                done.run(Status::ok());
            }
            let mut state = self.down.0.lock().unwrap_or_else(|p| p.into_inner());
            if state.waiters.is_empty() {
                state.down = true;
                self.down.1.notify_all();
                return;
            }
            pending = std::mem::take(&mut state.waiters);
        }
    }
}

impl HostedNode for NodeShared {
    fn view(&self) -> Option<super::status_pages::NodeView> {
        let node = Node {
            shared: self.me.upgrade()?,
        };
        let status = node.status().ok()?;
        let sync_latency = self.with_storage(NodeStorage::sync_latency);
        Some(super::status_pages::NodeView {
            status,
            writer: node.log_writer_stats(),
            sync_latency,
        })
    }

    fn serve_internal(&self, method: &str, request: Request, responder: Responder) {
        let Some(storage) = self.with_storage(NodeStorage::clone) else {
            return responder.reply_error(errno::ENODESHUTDOWN, "node is shut down", "");
        };
        if method == METHOD_ADMIN || super::admin::is_cli_method(method) {
            if self.cli_disabled.load(Ordering::Relaxed) {
                let refusal = super::admin::cli_disabled(method, &self.id, &self.group);
                return responder.reply_error(refusal.code, &refusal.message, "");
            }
            return match self.me.upgrade() {
                Some(shared) => super::admin::serve(method, Node { shared }, request, responder),
                None => responder.reply_error(errno::ENODESHUTDOWN, "node is shut down", ""),
            };
        }
        super::snapshot_fetch::serve(method, storage, request, responder);
    }
}

impl Drop for NodeShared {
    fn drop(&mut self) {
        if let Lifecycle::Running { tx, .. } = &*self.lock_lifecycle() {
            let _ = tx.send(Command::Shutdown(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::may_wait_for_a_tick;
    use crate::proto::{Message, MessageType};

    fn answer() -> Message {
        Message {
            msg_type: MessageType::HeartbeatResponse as i32,
            from: "127.0.0.1:2:0".into(),
            to: "127.0.0.1:1:0".into(),
            term: 3,
            index: 40,
            ..Default::default()
        }
    }

    #[test]
    fn only_plain_heartbeat_answers_wait_for_the_leaders_next_turn() {
        assert!(may_wait_for_a_tick(&answer()));
        let read = Message {
            context: bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 7]),
            ..answer()
        };
        assert!(
            !may_wait_for_a_tick(&read),
            "a read's round is stepped at once"
        );
        let quiesce = Message {
            quiesce: true,
            ..answer()
        };
        assert!(
            !may_wait_for_a_tick(&quiesce),
            "the quiescence round is stepped at once"
        );
        let reject = Message {
            reject: true,
            ..answer()
        };
        assert!(!may_wait_for_a_tick(&reject));
        let heartbeat = Message {
            msg_type: MessageType::Heartbeat as i32,
            ..answer()
        };
        assert!(
            !may_wait_for_a_tick(&heartbeat),
            "a follower answers at once"
        );
        let append_answer = Message {
            msg_type: MessageType::AppendResponse as i32,
            ..answer()
        };
        assert!(!may_wait_for_a_tick(&append_answer));
    }
}
