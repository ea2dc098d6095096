//! The task that owns one node's core: it feeds the core messages, ticks and
//! proposals, and carries out every `Ready` (disk through the log writer
//! thread, network through the transport, applies through the FSM caller).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::done::Done;
use super::errno::{self, Status};
use super::fsm_caller::{FsmCaller, FsmEvent, FsmTask};
use super::published::Published;
use super::storage_io::{NodeLog, NodeStorage};
use crate::core::{self, Event, Message, MessageType, Raft, Ready, Role, SoftState};
use crate::proto::{Configuration, Entry, SnapshotMeta};

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
    Propose(Vec<Task>),
    Messages(Vec<Message>),
    /// The log writer finished a request (its messages already left).
    Persisted {
        last: Option<(u64, u64)>,
        result: Result<(), Status>,
    },
    Fsm(FsmEvent),
    ConfChange {
        build: ConfBuilder,
        done: Done,
    },
    ReadIndex(Done),
    Snapshot(Option<Done>),
    SnapshotSaved {
        result: Result<Option<SnapshotMeta>, Status>,
        done: Option<Done>,
    },
    SnapshotFetched {
        msg: Message,
        result: Result<(), Status>,
    },
    Query(Query),
    Shutdown(Option<Done>),
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
    pub(crate) tx: UnboundedSender<Command>,
    storage: NodeStorage,
    fsm: Arc<FsmCaller>,
    net: Arc<crate::transport::Server>,
    pub(crate) published: Arc<Published>,
    /// Proposals of this node, by log index, until their entry is applied.
    pending: BTreeMap<u64, Pending>,
    proposals: Vec<Task>,
    /// Highest committed index handed to the FSM caller.
    handed_out: u64,
    reads_by_ctx: HashMap<u64, (Instant, Done)>,
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
    snapshot_sent: HashMap<String, Instant>,
    pub(crate) failed: Option<Status>,
    shutdown_dones: Vec<Done>,
    /// Term and vote of the last hard state sent to disk. Only a change of
    /// either is saved: the commit index alone is not worth a meta save
    /// (temp file, two fsyncs, rename) per batch. A stale commit on disk is
    /// safe (it is only a lower bound, re-learned from the leader; braft
    /// does not store it at all).
    saved_term: u64,
    saved_vote: String,
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
        tx: UnboundedSender<Command>,
        storage: NodeStorage,
        fsm: Arc<FsmCaller>,
        net: Arc<crate::transport::Server>,
        published: Arc<Published>,
        applied: u64,
    ) -> Driver {
        let status = raft.status();
        let soft = SoftState {
            role: status.role,
            term: status.term,
            leader: status.leader,
        };
        let saved_term = status.term;
        let saved_vote = status.vote.unwrap_or_default();
        Driver {
            raft,
            group: group.into(),
            id,
            opts,
            rx,
            tx,
            storage,
            fsm,
            net,
            published,
            pending: BTreeMap::new(),
            proposals: Vec::new(),
            handed_out: applied,
            reads_by_ctx: HashMap::new(),
            next_read: 1,
            reads_waiting: VecDeque::new(),
            conf_change: None,
            leader_start: None,
            soft,
            snapshotting: false,
            fetching_snapshot: false,
            snapshot_sent: HashMap::new(),
            failed: None,
            shutdown_dones: Vec::new(),
            saved_term,
            saved_vote,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(Duration::from_millis(self.opts.tick_ms()));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let snapshot_period = Duration::from_secs(self.opts.snapshot_interval_s.max(1) as u64);
        let mut next_snapshot = Instant::now() + snapshot_period;
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        self.publish();
        'run: loop {
            tokio::select! {
                biased;
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break 'run };
                    if self.handle(cmd) {
                        break 'run;
                    }
                    // Drain what else is queued so proposals batch into one append.
                    for _ in 0..4096 {
                        match self.rx.try_recv() {
                            Ok(cmd) => if self.handle(cmd) { break 'run },
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    if self.failed.is_none() {
                        self.raft.tick();
                    }
                    let now = Instant::now();
                    if self.opts.snapshot_interval_s > 0 && now >= next_snapshot {
                        next_snapshot = now + snapshot_period;
                        self.start_snapshot(None);
                    }
                    if now >= next_sweep {
                        next_sweep = now + Duration::from_secs(1);
                        self.sweep(now);
                    }
                }
            }
            self.flush_proposals();
            self.process_ready();
            self.publish();
        }
        self.stop();
    }

    /// Handles one command; true means stop the node.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Propose(tasks) => self.proposals.extend(tasks),
            Command::Messages(msgs) => self.step_messages(msgs),
            Command::Persisted { last, result } => self.on_persisted(last, result),
            Command::Fsm(event) => self.on_fsm_event(event),
            Command::ConfChange { build, done } => self.change_configuration(build, done),
            Command::ReadIndex(done) => self.read_index(done),
            Command::Snapshot(done) => self.start_snapshot(done),
            Command::SnapshotSaved { result, done } => self.on_snapshot_saved(result, done),
            Command::SnapshotFetched { msg, result } => {
                self.fetching_snapshot = false;
                match result {
                    Ok(()) => self.step(msg),
                    Err(status) => log::warn!(
                        "node {}:{} snapshot fetch from {} failed: {status}",
                        self.group,
                        self.id,
                        msg.from
                    ),
                }
            }
            Command::Query(query) => query(self),
            Command::Shutdown(done) => {
                self.shutdown_dones.extend(done);
                return true;
            }
        }
        false
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
        let net = self.net.clone();
        let group = self.group.clone();
        let chunk = self.opts.snapshot_chunk_bytes;
        tokio::spawn(async move {
            let result =
                super::snapshot_fetch::fetch(net, store, &group, &msg.from, &meta, chunk).await;
            let _ = tx.send(Command::SnapshotFetched { msg, result });
        });
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
                .for_each(|d| d.run(status.clone()));
        }
        let term = self.soft.term;
        let mut data = Vec::with_capacity(tasks.len());
        let mut dones = Vec::with_capacity(tasks.len());
        for task in tasks {
            if task.expected_term >= 0 && task.expected_term as u64 != term {
                if let Some(done) = task.done {
                    done.run(Status::new(
                        errno::EPERM,
                        format!(
                            "expected_term {} does not match the current term {term}",
                            task.expected_term
                        ),
                    ));
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
                        old.done.run(Status::new(
                            errno::EPERM,
                            "entry was overwritten by a new leader",
                        ));
                    }
                }
            }
            Err(e) => {
                let status = Status::from(e);
                dones
                    .into_iter()
                    .flatten()
                    .for_each(|d| d.run(status.clone()));
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
        for msg in rd.messages {
            self.send(msg);
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
        if needs_disk {
            let last = rd
                .entries
                .last()
                .map(|e| (e.index, e.term))
                .or_else(|| rd.snapshot.as_ref().map(|s| (s.last_index, s.last_term)));
            let tx = self.tx.clone();
            let messages = rd.persisted_messages;
            let reset_to = rd.snapshot.as_ref().map(|s| s.last_index + 1);
            let net = self.net.clone();
            let group = self.group.clone();
            self.storage.submit(
                reset_to,
                rd.entries,
                hard_state,
                Box::new(move |result| {
                    // A follower's answers leave from the writer thread as
                    // soon as the entries are durable: the driver's turn is
                    // not on the commit path.
                    if result.is_ok() {
                        let transport = net.transport();
                        for msg in messages {
                            transport.send(&group, msg);
                        }
                    }
                    let _ = tx.send(Command::Persisted { last, result });
                }),
            );
        } else {
            for msg in rd.persisted_messages {
                self.send(msg);
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
                        done.run(result.map_or_else(Status::from, |_| Status::ok()));
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
        if msg.kind() == Some(MessageType::InstallSnapshot) {
            self.snapshot_sent
                .entry(msg.to.clone())
                .or_insert_with(Instant::now);
        }
        self.net.transport().send(&self.group, msg);
    }

    fn on_persisted(&mut self, last: Option<(u64, u64)>, result: Result<(), Status>) {
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
        for (_, p) in std::mem::take(&mut self.pending) {
            p.done.run(status.clone());
        }
        for task in std::mem::take(&mut self.proposals) {
            if let Some(done) = task.done {
                done.run(status.clone());
            }
        }
        for (_, (_, done)) in self.reads_by_ctx.drain() {
            done.run(status.clone());
        }
        for (_, done) in self.reads_waiting.drain(..) {
            done.run(status.clone());
        }
        if let Some(done) = self.conf_change.take() {
            done.run(status.clone());
        }
    }

    fn on_soft_state(&mut self, ss: SoftState) {
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
            for (_, (_, done)) in self.reads_by_ctx.drain() {
                done.run(lost.clone());
            }
        }
        if is_leader && (!was_leader || old.term != ss.term) {
            self.leader_start = Some(ss.term);
        }
        let following =
            |s: &SoftState| matches!(s.role, Role::Follower | Role::Learner) && s.leader.is_some();
        if following(&old) && (!following(&ss) || old.leader != ss.leader || old.term != ss.term) {
            let leader = old.leader.clone().unwrap_or_default();
            let _ = self.fsm.submit(FsmTask::StopFollowing(leader, old.term));
        }
        if following(&ss) && (!following(&old) || old.leader != ss.leader || old.term != ss.term) {
            let leader = ss.leader.clone().unwrap_or_default();
            let _ = self.fsm.submit(FsmTask::StartFollowing(leader, ss.term));
        }
    }

    /// Sends committed entries to the FSM caller with the dones of this
    /// node's own proposals.
    fn hand_out(&mut self, entries: Vec<Entry>) {
        let mut dones = Vec::with_capacity(entries.len());
        let mut leader_started = None;
        for e in &entries {
            let done = match self.pending.remove(&e.index) {
                Some(p) if p.term == e.term => Some(p.done),
                Some(p) => {
                    p.done.run(Status::new(
                        errno::EPERM,
                        "entry was overwritten by a new leader",
                    ));
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
        let covered: Vec<u64> = self
            .pending
            .range(..=meta.last_index)
            .map(|(i, _)| *i)
            .collect();
        for index in covered {
            if let Some(p) = self.pending.remove(&index) {
                p.done.run(Status::new(
                    errno::ERAFTTIMEDOUT,
                    "outcome unknown: covered by an installed snapshot",
                ));
            }
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

    fn read_index(&mut self, done: Done) {
        if let Some(status) = self.refuse_status() {
            return done.run(status);
        }
        let id = self.next_read;
        self.next_read += 1;
        match self
            .raft
            .read_index(Bytes::copy_from_slice(&id.to_be_bytes()))
        {
            Ok(()) => {
                self.reads_by_ctx.insert(id, (Instant::now(), done));
            }
            Err(e) => done.run(Status::from(e)),
        }
    }

    fn change_configuration(&mut self, build: ConfBuilder, done: Done) {
        if let Some(status) = self.refuse_status() {
            return done.run(status);
        }
        if self.conf_change.is_some() {
            return done.run(Status::new(
                errno::EBUSY,
                "a membership change is already in progress",
            ));
        }
        let current = self.raft.status().configuration;
        let target = match build(&current) {
            Ok(target) => target,
            Err(status) => return done.run(status),
        };
        if current.old_voters.is_empty()
            && same_members(&current.voters, &target.voters)
            && same_members(&current.learners, &target.learners)
        {
            // braft: changing to the configuration in force succeeds at once.
            return done.run(Status::ok());
        }
        match self.raft.propose_conf_change(target) {
            Ok(()) => self.conf_change = Some(done),
            Err(e) => done.run(Status::from(e)),
        }
    }

    fn start_snapshot(&mut self, done: Option<Done>) {
        if let Some(status) = self.refuse_status() {
            return done.into_iter().for_each(|d| d.run(status.clone()));
        }
        if self.storage.snapshots.is_none() {
            let status = Status::new(errno::EINVAL, "snapshots are disabled: no snapshot_uri");
            return done.into_iter().for_each(|d| d.run(status.clone()));
        }
        if self.snapshotting {
            let status = Status::new(errno::EBUSY, "a snapshot is already being saved");
            return done.into_iter().for_each(|d| d.run(status.clone()));
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
                    if let Err(status) = self.storage.truncate_prefix(index - keep + 1) {
                        log::warn!(
                            "node {}:{} log compaction after snapshot {index} failed: {status}",
                            self.group,
                            self.id
                        );
                    }
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
            done.run(status);
        }
    }

    fn on_fsm_event(&mut self, event: FsmEvent) {
        match event {
            FsmEvent::Applied { index } => self.raft.on_applied(index),
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
    fn sweep(&mut self, now: Instant) {
        let limit = read_timeout(&self.opts);
        let expired: Vec<u64> = self
            .reads_by_ctx
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, done)) = self.reads_by_ctx.remove(&id) {
                done.run(Status::new(
                    errno::ERAFTTIMEDOUT,
                    "read index was not confirmed in time",
                ));
            }
        }
        if self.snapshot_sent.is_empty() {
            return;
        }
        let status = self.raft.status();
        let in_snapshot: Vec<String> = status
            .peers
            .iter()
            .filter(|p| p.state == core::ProgressState::Snapshot)
            .map(|p| p.id.clone())
            .collect();
        self.snapshot_sent
            .retain(|peer, _| in_snapshot.contains(peer));
        let transfer_limit =
            Duration::from_millis(30_000u64.max(20 * self.opts.election_timeout_ms as u64));
        let stuck: Vec<String> = self
            .snapshot_sent
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > transfer_limit)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in stuck {
            self.snapshot_sent.remove(&peer);
            self.raft.report_snapshot(&peer, false);
        }
    }

    /// Publishes what cheap queries (is_leader, leader_id, lease) read
    /// without a round trip to this task.
    fn publish(&self) {
        let lease =
            self.opts.enable_leader_lease && self.failed.is_none() && self.raft.is_lease_valid();
        self.published.update(
            &self.soft,
            lease,
            self.opts.tick_ms(),
            self.failed.is_some(),
        );
    }

    fn stop(&mut self) {
        let status = Status::new(errno::ENODESHUTDOWN, "node is shut down");
        self.fail_outstanding(&status);
        while let Ok(cmd) = self.rx.try_recv() {
            refuse(cmd, &status);
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
        // Joining threads blocks: do it off the runtime's workers.
        std::thread::spawn(move || {
            storage.shutdown();
            fsm.shutdown_and_join();
            for done in dones {
                done.run(Status::ok());
            }
        });
    }
}

/// Answers a command that arrives after the node stopped.
pub(crate) fn refuse(cmd: Command, status: &Status) {
    match cmd {
        Command::Propose(tasks) => tasks
            .into_iter()
            .filter_map(|t| t.done)
            .for_each(|d| d.run(status.clone())),
        Command::ConfChange { done, .. } | Command::ReadIndex(done) => done.run(status.clone()),
        Command::Snapshot(done) | Command::SnapshotSaved { done, .. } => {
            done.into_iter().for_each(|d| d.run(status.clone()));
        }
        // Shutting down a node that is already down succeeds.
        Command::Shutdown(done) => done.into_iter().for_each(|d| d.run(Status::ok())),
        Command::Query(_) | Command::Messages(_) | Command::Persisted { .. } | Command::Fsm(_) => {}
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
