//! The Raft state machine: roles, timers, and one handler per message type.
//!
//! Sans-IO: inputs are `tick`, `step` and the proposal calls; outputs are
//! collected into a [`Ready`]. Each rule has its file, with its own
//! `impl Raft` block: `election.rs`, `lease.rs` (leader lease,
//! check-quorum, vote refusal while a leader is alive), `transfer.rs`,
//! `replication.rs`, `snapshot.rs`, `conf_change.rs`, `read_index.rs`. This
//! file holds the state, role transitions, dispatch and the rest of the
//! public API.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::api::*;
use super::membership::{same_id, ConfigHistory, ConfigurationExt};
use super::progress::Progress;
use super::quorum;
use super::raft_log::RaftLog;
use super::read_only::ReadOnly;
use super::rng::Rng;
use super::storage::LogStorage;
use super::transfer::Transfer;

/// Where a batch of proposals landed in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub first_index: u64,
    pub term: u64,
}

/// Byte budget of the committed entries of one Ready.
pub const MAX_COMMITTED_BYTES_PER_READY: u64 = 4 * 1024 * 1024;

/// Stage of a membership change driven by this leader.
#[derive(Clone, Debug)]
pub(crate) enum ChangeStage {
    /// New voters are replicated to, not counted, until caught up.
    CatchUp { started: u64, peers: Vec<PeerId> },
    /// The joint configuration is appended at `index`.
    Joint { index: u64 },
    /// The final configuration is appended at `index`.
    Final { index: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct ConfChange {
    pub target: Configuration,
    pub stage: ChangeStage,
}

/// One node's Raft state. Generic over the log it reads from.
pub struct Raft<S: LogStorage> {
    pub(crate) cfg: Config,
    pub(crate) log: RaftLog<S>,
    pub(crate) term: u64,
    pub(crate) vote: PeerId,
    pub(crate) role: Role,
    pub(crate) leader: Option<PeerId>,
    pub(crate) confs: ConfigHistory,
    /// Leader only: every other member (and catching-up peer).
    pub(crate) prs: BTreeMap<PeerId, Progress>,
    /// (Pre)candidate: votes received from voters.
    pub(crate) votes: BTreeMap<PeerId, bool>,
    pub(crate) rng: Rng,
    /// Logical clock: ticks since creation.
    pub(crate) now: u64,
    pub(crate) election_elapsed: u32,
    pub(crate) randomized_timeout: u32,
    pub(crate) heartbeat_elapsed: u32,
    /// Tick at which a current leader was last heard from (vote refusal).
    /// Starts at 0: a restarted node may have been a follower in lease a
    /// moment ago, so it refuses votes for one lease window after starting
    /// (braft does the same), which keeps leader leases safe across restarts.
    pub(crate) leader_contact: Option<u64>,
    pub(crate) leader_start: u64,
    /// Index of the first entry of this leader's term.
    pub(crate) term_start_index: u64,
    pub(crate) transfer: Option<Transfer>,
    /// Term in which this node sent TimeoutNow: the votes it triggers bypass
    /// the followers' lease, so this leader's lease is void for that term.
    pub(crate) timeout_now_term: u64,
    /// Leader: progress is kept for members removed by the uncommitted
    /// configuration entry (see `sync_progress`).
    pub(crate) keeping_removed: bool,
    /// See `InitialState::lost_acknowledged`: no votes, no campaigns until
    /// the log reaches a leader's commit index. Also set by a heartbeat
    /// whose commit index (at most what this node acknowledged) lies
    /// beyond the log: the node's storage was lost or wiped.
    pub(crate) lost_acknowledged: bool,
    /// Follower whose leader is suspected (see `election.rs`): the tick of
    /// its planned pre-vote, which replaces the randomized election timer.
    pub(crate) campaign_due: Option<u64>,
    /// Last tick at which an ignored planned pre-vote is repeated.
    pub(crate) campaign_retry_until: u64,
    /// Entry data a leader may have in flight to all peers together before
    /// it holds back further Appends (see `set_in_flight_limit`).
    pub(crate) in_flight_limit: u64,
    /// See `quiesce.rs`: timers stopped until the group wakes.
    pub(crate) quiescent: bool,
    /// Leader: consecutive ticks the group has been quiet (idle and fully
    /// replicated); it quiesces at `Config::quiesce_ticks`.
    pub(crate) quiet_ticks: u64,
    pub(crate) change: Option<ConfChange>,
    pub(crate) reads: ReadOnly,
    pub(crate) msgs: Vec<Message>,
    pub(crate) persisted_msgs: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) events: Vec<Event>,
    prev_soft: SoftState,
    prev_hard: HardState,
    /// `leader` or `vote` was assigned since the last Ready: only then can
    /// they differ from `prev_soft`/`prev_hard`, so the per-turn checks
    /// compare the strings only then.
    names_touched: bool,
    /// [`Raft::voter_status`] at a version of `confs`.
    voter_status_memo: std::cell::Cell<Option<(u64, bool, bool)>>,
    /// A committed index and its entry's term, as a heartbeat last named
    /// them (see `bcast_heartbeat_with`).
    pub(crate) heartbeat_term: Option<(u64, u64)>,
    /// Leader: the voter sets as the progress flags count them (see
    /// [`Raft::flag_voters`]).
    pub(crate) quorum_shape: Option<QuorumShape>,
}

/// The voter sets of the configuration in force at a version of `confs`,
/// as [`Raft::flag_voters`] flagged the progress set: the sets' sizes and
/// whether this node is in each. Check-quorum and the lease count the
/// flags while the version stays (each tick of an idle leader asks; the
/// voters' names are cold memory with many groups).
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuorumShape {
    pub(crate) version: u64,
    pub(crate) voters: usize,
    pub(crate) old_voters: usize,
    pub(crate) self_voter: bool,
    pub(crate) self_old_voter: bool,
}

pub(crate) fn hash_id(id: &str) -> u64 {
    // FNV-1a: stable across versions and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

impl<S: LogStorage> Raft<S> {
    /// Builds the core from what the runtime recovered. Fails on an
    /// inconsistent state (commit beyond the log, snapshot after the log, ...).
    pub fn new(config: Config, storage: S, init: InitialState) -> Result<Raft<S>, Error> {
        if config.id.is_empty() {
            return Err(Error::Invalid("empty node id".into()));
        }
        if config.election_ticks == 0 || config.heartbeat_ticks == 0 {
            return Err(Error::Invalid(
                "election_ticks and heartbeat_ticks must be > 0".into(),
            ));
        }
        let snap_index = init.snapshot.as_ref().map(|s| s.last_index).unwrap_or(0);
        if storage.first_index() > snap_index + 1 {
            return Err(Error::Invalid(format!(
                "log starts at {} but the snapshot ends at {snap_index}",
                storage.first_index()
            )));
        }
        let mut log = RaftLog::new(storage, init.snapshot.clone());
        let last = log.last_index();
        let hs = &init.hard_state;
        if hs.commit > last {
            return Err(Error::Invalid(format!(
                "commit {} beyond the last index {last}",
                hs.commit
            )));
        }
        log.committed = log.committed.max(hs.commit);
        let applied = init.applied.max(snap_index).min(log.committed);
        log.applied = applied;
        log.handed_committed = applied;

        let brand_new = init.snapshot.is_none() && last == 0 && init.configurations.is_empty();
        let snap_conf = init.snapshot.as_ref().and_then(|s| s.configuration.clone());
        let mut confs = match snap_conf {
            Some(c) => ConfigHistory::new(c, true),
            None if brand_new || init.configurations.is_empty() => {
                ConfigHistory::new(init.initial_conf.clone(), false)
            }
            None => ConfigHistory::new(Configuration::default(), true),
        };
        for e in &init.configurations {
            if e.index > snap_index && e.index <= last {
                confs.scan(std::slice::from_ref(e));
            }
        }

        let seed = config.seed ^ hash_id(&config.id);
        let mut r = Raft {
            log,
            term: hs.term,
            vote: hs.vote.clone(),
            role: Role::Follower,
            leader: None,
            confs,
            prs: BTreeMap::new(),
            votes: BTreeMap::new(),
            rng: Rng::new(seed),
            now: 0,
            election_elapsed: 0,
            randomized_timeout: config.election_ticks,
            heartbeat_elapsed: 0,
            leader_contact: Some(0),
            leader_start: 0,
            term_start_index: 0,
            transfer: None,
            timeout_now_term: 0,
            keeping_removed: false,
            lost_acknowledged: init.lost_acknowledged,
            campaign_due: None,
            in_flight_limit: u64::MAX,
            campaign_retry_until: 0,
            quiescent: false,
            quiet_ticks: 0,
            change: None,
            reads: ReadOnly::default(),
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            read_states: Vec::new(),
            events: Vec::new(),
            prev_soft: SoftState {
                role: Role::Follower,
                term: hs.term,
                leader: None,
            },
            prev_hard: HardState::default(),
            names_touched: false,
            voter_status_memo: std::cell::Cell::new(None),
            heartbeat_term: None,
            quorum_shape: None,
            cfg: config,
        };
        r.role = r.follower_role();
        r.prev_soft = r.soft_state();
        r.prev_hard = r.hard_state();
        r.reset_election_timer();
        Ok(r)
    }

    // ----- accessors -------------------------------------------------------

    pub fn id(&self) -> &str {
        &self.cfg.id
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn commit_index(&self) -> u64 {
        self.log.committed
    }
    pub fn applied_index(&self) -> u64 {
        self.log.applied
    }
    pub fn persisted_index(&self) -> u64 {
        self.log.persisted()
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }
    /// Term of the entry at `index`, if known.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index).ok()
    }
    /// The configuration in force (the last one appended).
    pub fn configuration(&self) -> &Configuration {
        self.confs.current()
    }
    /// Log index of the entry holding the configuration in force (0 when it
    /// comes from a snapshot, `initial_conf` or `reset_configuration`).
    pub fn configuration_index(&self) -> u64 {
        self.confs.current_index()
    }
    /// The configuration in force at log index `index` (for a snapshot's
    /// meta: pass the snapshot's last index). Exact for indices after the
    /// latest snapshot.
    pub fn configuration_at(&self, index: u64) -> &Configuration {
        self.confs.at(index)
    }
    /// True while this leader drives a membership change, or while the
    /// configuration in force is not committed yet.
    pub fn pending_conf_change(&self) -> bool {
        self.change.is_some() || self.confs.current_index() > self.log.committed
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    // ----- helpers ---------------------------------------------------------

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            term: self.term,
            leader: self.leader.clone(),
        }
    }

    pub(crate) fn set_leader(&mut self, leader: Option<PeerId>) {
        if self.leader != leader {
            self.leader = leader.map(|l| self.kept_id(l));
        }
        self.names_touched = true;
    }

    pub(crate) fn set_vote(&mut self, vote: PeerId) {
        if self.vote != vote {
            self.vote = self.kept_id(vote);
        }
        self.names_touched = true;
    }

    /// Swaps a message's sender for this core's copy of its id when it has
    /// one (a tracked peer, the leader), so that the handlers' lookups and
    /// comparisons (and those of later messages with what they keep) stop
    /// at the pointer check.
    fn reuse_sender_id(&self, from: &mut PeerId) {
        if let Some((own, _)) = self.prs.get_key_value(from) {
            *from = own.clone();
        } else if let Some(leader) = &self.leader {
            from.reuse(leader);
        }
    }

    /// `id` as this core keeps it (a leader, a vote): its own copy when
    /// `id` is this node or a peer it tracks, so that later comparisons
    /// with it stop at the pointer check.
    pub(crate) fn kept_id(&self, id: PeerId) -> PeerId {
        if id == self.cfg.id {
            return self.cfg.id.clone();
        }
        match self.prs.get_key_value(&id) {
            Some((own, _)) => own.clone(),
            None => id,
        }
    }

    fn soft_changed(&self) -> bool {
        self.role != self.prev_soft.role
            || self.term != self.prev_soft.term
            || (self.names_touched && self.leader != self.prev_soft.leader)
    }

    fn hard_changed(&self) -> bool {
        self.term != self.prev_hard.term
            || self.log.committed != self.prev_hard.commit
            || (self.names_touched && self.vote != self.prev_hard.vote)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote.clone(),
            commit: self.log.committed,
        }
    }

    /// A voter of the configuration in force (may campaign and vote).
    ///
    /// A node removed by a configuration entry that is not committed yet
    /// (as far as it knows) still campaigns: it may be needed to elect a
    /// leader that finishes the change (Raft thesis §4.2.2). It counts votes
    /// with its latest configuration, which need not include itself.
    pub(crate) fn promotable(&self) -> bool {
        let (current, before) = self.voter_status();
        current || (self.confs.current_index() > self.log.committed && before)
    }

    /// Whether this node is a voter of the configuration in force, and of
    /// the one before its entry (false when it has none). Every tick of a
    /// follower asks: the answer is kept while the history's version
    /// stays, so that the voters' names (cold memory with many groups) are
    /// read only after a change.
    fn voter_status(&self) -> (bool, bool) {
        let version = self.confs.version();
        if let Some((v, current, before)) = self.voter_status_memo.get() {
            if v == version {
                return (current, before);
            }
        }
        let current = self.confs.current().is_voter(&self.cfg.id);
        let index = self.confs.current_index();
        let before = index > 0 && self.confs.at(index - 1).is_voter(&self.cfg.id);
        self.voter_status_memo.set(Some((version, current, before)));
        (current, before)
    }

    /// The non-leader role this node has in the configuration in force.
    pub(crate) fn follower_role(&self) -> Role {
        if self.confs.current().is_learner(&self.cfg.id) {
            Role::Learner
        } else {
            Role::Follower
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        let t = self.cfg.election_ticks as u64;
        self.election_elapsed = 0;
        self.randomized_timeout = self.rng.range(t, 2 * t).min(u32::MAX as u64) as u32;
    }

    pub(crate) fn new_message(&self, to: &PeerId, kind: MessageType) -> Message {
        Message {
            msg_type: kind as i32,
            from: self.cfg.id.clone(),
            to: to.clone(),
            term: self.term,
            ..Default::default()
        }
    }

    pub(crate) fn send(&mut self, m: Message) {
        self.msgs.push(m);
    }

    /// Sent only once everything taken in the same Ready is durable.
    pub(crate) fn send_after_persist(&mut self, m: Message) {
        self.persisted_msgs.push(m);
    }

    /// The configuration in force changed (append, truncation, snapshot):
    /// refresh the role and, on a leader, the progress set.
    pub(crate) fn on_conf_changed(&mut self) {
        match self.role {
            Role::Follower | Role::Learner => self.role = self.follower_role(),
            Role::PreCandidate | Role::Candidate => {
                if !self.promotable() {
                    let term = self.term;
                    self.become_follower(term, None);
                }
            }
            Role::Leader => self.sync_progress(),
        }
    }

    /// Leader: one Progress per member other than self, plus catching-up
    /// peers; drops the others.
    pub(crate) fn sync_progress(&mut self) {
        let conf = self.confs.current().clone();
        let mut members: Vec<PeerId> = conf.members().into_iter().map(PeerId::from).collect();
        // Members removed by a configuration entry that is not committed yet
        // still get the log, so they learn of their removal (and stop
        // campaigning); they are dropped once it commits.
        let index = self.confs.current_index();
        self.keeping_removed = false;
        if index > self.log.committed {
            for m in self.confs.at(index - 1).members() {
                if !members.iter().any(|k| *k == m) {
                    members.push(PeerId::from(m));
                    self.keeping_removed = true;
                }
            }
        }
        if let Some(ConfChange {
            stage: ChangeStage::CatchUp { peers, .. },
            ..
        }) = &self.change
        {
            members.extend(peers.iter().cloned());
        }
        members.retain(|m| m != &self.cfg.id);
        self.prs.retain(|id, _| members.contains(id));
        let next = self.log.last_index() + 1;
        for m in members {
            // An id already tracked keeps its key (the copy messages to and
            // from it share).
            let is_learner = !conf.is_voter(&m);
            let pr = self
                .prs
                .entry(m)
                .or_insert_with(|| Progress::new(next, self.cfg.max_inflight_msgs, self.now));
            pr.is_learner = is_learner;
        }
        self.flag_voters();
    }

    /// Flags each progress with the voter sets of the configuration in
    /// force its peer is in, and notes the sets' shape at the history's
    /// version. Runs whenever the progress set changes (`sync_progress`)
    /// and when a leader's tick finds the version moved.
    pub(crate) fn flag_voters(&mut self) {
        let conf = self.confs.current();
        let within = |set: &[String], id: &str| set.iter().any(|v| same_id(v, id));
        for (id, pr) in self.prs.iter_mut() {
            pr.voter = within(&conf.voters, id);
            pr.old_voter = within(&conf.old_voters, id);
        }
        self.quorum_shape = Some(QuorumShape {
            version: self.confs.version(),
            voters: conf.voters.len(),
            old_voters: conf.old_voters.len(),
            self_voter: within(&conf.voters, &self.cfg.id),
            self_old_voter: within(&conf.old_voters, &self.cfg.id),
        });
    }

    /// The voter sets as the progress flags count them, while they hold
    /// (the history's version has not moved since they were set).
    pub(crate) fn quorum_shape(&self) -> Option<QuorumShape> {
        self.quorum_shape
            .filter(|shape| shape.version == self.confs.version())
    }

    /// Match index of a voter as the quorum sees it: the leader's own is its
    /// persisted index.
    pub(crate) fn match_of(&self, id: &str) -> u64 {
        if same_id(id, &self.cfg.id) {
            self.log.persisted()
        } else {
            self.prs.get(id).map(|p| p.matched).unwrap_or(0)
        }
    }

    // ----- role transitions --------------------------------------------------

    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<PeerId>) {
        self.end_quiescence();
        self.campaign_due = None;
        if self.role == Role::Leader {
            self.on_leadership_lost();
        }
        if term != self.term {
            self.term = term;
            self.set_vote(PeerId::empty());
        }
        self.role = self.follower_role();
        if leader.is_some() {
            self.leader_contact = Some(self.now);
        }
        self.set_leader(leader);
        self.votes.clear();
        self.reset_election_timer();
    }

    fn on_leadership_lost(&mut self) {
        if self.change.take().is_some() {
            self.events
                .push(Event::ConfChangeDone(Err(Error::LeadershipLost)));
        }
        self.transfer = None;
        self.reads.clear();
        self.prs.clear();
    }

    pub(crate) fn become_leader(&mut self) {
        self.end_quiescence();
        self.campaign_due = None;
        self.role = Role::Leader;
        self.set_leader(Some(self.cfg.id.clone()));
        self.votes.clear();
        self.transfer = None;
        self.change = None;
        self.reads.clear();
        self.prs.clear();
        self.leader_start = self.now;
        self.heartbeat_elapsed = self.heartbeat_phase();
        self.reset_election_timer();
        self.sync_progress();
        // The first entry of the term: a Noop, or the configuration in force
        // when it is not written anywhere yet (initial_conf, reset_peers), so
        // that it survives restarts.
        let index = self.log.last_index() + 1;
        let entry = if self.confs.in_log() {
            Entry {
                term: self.term,
                index,
                entry_type: EntryType::Noop as i32,
                data: Bytes::new(),
            }
        } else {
            let conf = self.confs.current().clone();
            self.confs.push(index, conf.clone());
            Entry {
                term: self.term,
                index,
                entry_type: EntryType::Configuration as i32,
                data: super::membership::encode_conf(&conf),
            }
        };
        self.term_start_index = index;
        self.log.append(vec![entry]);
        self.bcast_append();
        // A single voter commits as soon as its own write is durable
        // (on_persisted); nothing else to do here.
    }

    // ----- public API --------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.advance(1);
    }

    /// Advances logical time by `ticks` at once: a runtime that ticks from a
    /// monotonic clock and was late (a busy or paused process) catches up
    /// in one step, so leases and vote refusal measure the time that really
    /// passed. Timers that expired meanwhile fire once.
    pub fn advance(&mut self, ticks: u64) {
        if ticks == 0 {
            return;
        }
        self.now += ticks;
        if self.quiescent {
            // Time still passes (leases and vote refusal count it), but no
            // timer runs until the group wakes.
            return;
        }
        let ticks = ticks.min(u32::MAX as u64) as u32;
        if self.role == Role::Leader {
            self.tick_leader(ticks);
        } else {
            self.tick_election(ticks);
        }
    }

    /// Ticks since the last multiple of the heartbeat period on the
    /// logical clock. A leader counts its heartbeat interval from there, so
    /// it heartbeats at the multiples of `heartbeat_ticks`: the leaders of
    /// a process whose runtime starts every core's clock on such a multiple
    /// heartbeat in the same ticks, and their heartbeats to a server leave
    /// together (one coalesced frame). The interval between two heartbeats
    /// never exceeds `heartbeat_ticks`.
    pub(crate) fn heartbeat_phase(&self) -> u32 {
        (self.now % self.cfg.heartbeat_ticks.max(1) as u64) as u32
    }

    /// Bytes of entry data in Appends sent to peers and not acknowledged
    /// yet (leader; 0 otherwise). A runtime charges them to its memory
    /// budget.
    pub fn inflight_bytes(&self) -> u64 {
        self.prs.values().map(|p| p.inflights.bytes()).sum()
    }

    /// Limits the entry data in flight (`inflight_bytes`) of a leader, for
    /// a runtime's memory budget (`u64::MAX`: no limit, the default). At or
    /// over it, a leader sends a peer a new Append with entries only once
    /// the previous one was acknowledged (a pipelining window of one): the
    /// data in flight stops growing and replication goes on.
    pub fn set_in_flight_limit(&mut self, bytes: u64) {
        self.in_flight_limit = bytes;
    }

    /// Logical time: ticks since creation.
    pub fn now(&self) -> u64 {
        self.now
    }

    fn tick_election(&mut self, ticks: u32) {
        self.election_elapsed = self.election_elapsed.saturating_add(ticks);
        if !self.promotable() || self.lost_acknowledged {
            return;
        }
        match self.campaign_due {
            // A planned campaign replaces the randomized timer, so that the
            // followers of a suspected leader keep their order.
            Some(_) => self.campaign_if_due(),
            None if self.election_elapsed >= self.randomized_timeout => self.campaign_pre_vote(),
            None => {}
        }
    }

    fn tick_leader(&mut self, ticks: u32) {
        if self.quorum_shape().is_none() {
            self.flag_voters();
        }
        self.heartbeat_elapsed = self.heartbeat_elapsed.saturating_add(ticks);
        self.election_elapsed = self.election_elapsed.saturating_add(ticks);
        if self.step_down_without_quorum() {
            return;
        }
        self.check_transfer_timeout();
        self.check_catchup();
        if self.role != Role::Leader {
            return;
        }
        let quiet_long = self.count_quiet_ticks(ticks);
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = self.heartbeat_phase();
            if quiet_long {
                self.quiesce();
                return;
            }
            self.bcast_heartbeat();
            self.retry_stalled_snapshots();
        }
    }

    /// Handles a message from a peer. Stale or foreign messages are ignored
    /// (Ok); only a malformed message is an error.
    pub fn step(&mut self, mut m: Message) -> Result<(), Error> {
        let Some(kind) = m.kind() else {
            return Err(Error::Invalid(format!(
                "unknown message type {}",
                m.msg_type
            )));
        };
        if m.from.is_empty() {
            return Err(Error::Invalid("message without sender".into()));
        }
        if m.from == self.cfg.id || (!m.to.is_empty() && m.to != self.cfg.id) {
            return Ok(());
        }
        self.reuse_sender_id(&mut m.from);
        if m.term == 0 {
            return Err(Error::Invalid("message with term 0".into()));
        }
        Self::validate(&m, kind)?;
        if self.quiescent {
            self.wake_for_message(&m, kind);
        }
        if m.term > self.term {
            if self.ignores_vote_request_in_lease(&m, kind) {
                return Ok(());
            }
            match kind {
                MessageType::PreVote => {}
                MessageType::PreVoteResponse if !m.reject => {}
                MessageType::Append | MessageType::Heartbeat | MessageType::InstallSnapshot => {
                    self.become_follower(m.term, Some(m.from.clone()));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match kind {
                MessageType::Append | MessageType::Heartbeat => {
                    // A stale leader: tell it about the newer term.
                    let resp = self.new_message(&m.from, MessageType::AppendResponse);
                    self.send(resp);
                }
                MessageType::PreVote => {
                    let mut resp = self.new_message(&m.from, MessageType::PreVoteResponse);
                    resp.reject = true;
                    self.send(resp);
                }
                _ => {}
            }
            return Ok(());
        }

        match kind {
            MessageType::PreVote | MessageType::Vote => self.handle_vote_request(m, kind),
            MessageType::PreVoteResponse | MessageType::VoteResponse => {
                self.handle_vote_response(m, kind)
            }
            MessageType::Append => self.handle_append(m),
            MessageType::Heartbeat => self.handle_heartbeat(m),
            MessageType::InstallSnapshot => self.handle_install_snapshot(m),
            MessageType::AppendResponse => self.handle_append_response(m),
            MessageType::HeartbeatResponse => self.handle_heartbeat_response(m),
            MessageType::TimeoutNow => self.handle_timeout_now(m),
            MessageType::ReadIndex => self.handle_read_index(m),
            MessageType::ReadIndexResponse => self.handle_read_index_response(m),
        }?;
        if self.quiescent && self.role == Role::Leader && !self.is_quiet(false) {
            // An answer showed work to do (a peer lost entries, a rejection).
            self.wake();
        }
        Ok(())
    }

    /// Checks what a handler relies on before the message can change any
    /// state (the term included).
    fn validate(m: &Message, kind: MessageType) -> Result<(), Error> {
        match kind {
            MessageType::Append => {
                let mut expect_term = m.log_term;
                for (i, e) in m.entries.iter().enumerate() {
                    let contiguous = m.index.checked_add(1 + i as u64) == Some(e.index);
                    if !contiguous || e.term < expect_term || e.term > m.term {
                        return Err(Error::Invalid("Append entries are not contiguous".into()));
                    }
                    expect_term = e.term;
                }
            }
            MessageType::InstallSnapshot if m.snapshot.is_none() => {
                return Err(Error::Invalid("InstallSnapshot without snapshot".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// What a proposal (of data or of a configuration) needs: to be the
    /// leader (else NotLeader with the known leader) and not to be handing
    /// leadership over (else Busy).
    pub(crate) fn check_accepts_proposals(&self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader.clone(),
            });
        }
        if self.transfer.is_some() {
            return Err(Error::Busy("leadership transfer in progress"));
        }
        Ok(())
    }

    /// Leader only: appends one entry per item. Not leader → NotLeader;
    /// transferring → Busy.
    pub fn propose_batch(&mut self, data: Vec<Bytes>) -> Result<Proposal, Error> {
        self.check_accepts_proposals()?;
        self.wake();
        if data.is_empty() {
            return Err(Error::Invalid("empty batch".into()));
        }
        let first_index = self.log.last_index() + 1;
        let term = self.term;
        let entries: Vec<Entry> = data
            .into_iter()
            .enumerate()
            .map(|(i, d)| Entry {
                term,
                index: first_index + i as u64,
                entry_type: EntryType::Data as i32,
                data: d,
            })
            .collect();
        self.log.append(entries);
        self.bcast_append();
        Ok(Proposal { first_index, term })
    }

    /// Starts an election now (braft `vote`). Learners and non-members refuse.
    pub fn campaign(&mut self) -> Result<(), Error> {
        if !self.promotable() {
            return Err(Error::Invalid(
                "not a voter of the configuration in force".into(),
            ));
        }
        if self.lost_acknowledged {
            return Err(Error::Invalid(
                "recovery may have lost acknowledged entries: no campaign before catching up"
                    .into(),
            ));
        }
        if self.role == Role::Leader {
            return Ok(());
        }
        self.wake();
        self.campaign_pre_vote();
        Ok(())
    }

    /// braft `reset_peers`: unsafe recovery; adopts `conf` locally, no log entry.
    pub fn reset_configuration(&mut self, conf: Configuration) -> Result<(), Error> {
        if conf.voters.is_empty()
            || conf
                .voters
                .iter()
                .chain(conf.learners.iter())
                .any(|p| p.is_empty())
        {
            return Err(Error::Invalid(
                "reset configuration needs voters with non-empty ids".into(),
            ));
        }
        self.confs.reset(conf, false);
        let term = self.term;
        self.become_follower(term, None);
        self.leader_contact = None;
        Ok(())
    }

    /// Whether this leader waits for its own writes to be reported
    /// durable: they may move the commit index (counting its whole log as
    /// persisted commits more than its peers' acknowledgements do), or
    /// entries its peers committed wait for them to be applied (a node
    /// applies only what it holds durably). True on any other role (a
    /// candidate counts its own vote). While it is false, a runtime may
    /// keep its completed writes until the next input: only a peer's
    /// answer (which that input is, or precedes) can make them count.
    pub fn waits_for_own_write(&self) -> bool {
        if self.role != Role::Leader {
            return true;
        }
        let last = self.log.last_index();
        let persisted = self.log.persisted();
        if persisted >= last {
            return false;
        }
        if self.log.committed > persisted {
            return true;
        }
        let own = &self.cfg.id;
        let with_own_log = quorum::joint_committed_index(self.confs.current(), &|id: &str| {
            if same_id(id, own) {
                last
            } else {
                self.prs.get(id).map_or(0, |p| p.matched)
            }
        });
        with_own_log > self.log.committed
    }

    /// Entries up to `index` with `term` are durable (see [`Ready`]).
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        let before = self.log.persisted();
        let prev_commit = self.log.committed;
        self.log.stable_to(index, term);
        if self.role == Role::Leader && self.log.persisted() > before && self.maybe_commit() {
            self.after_commit(prev_commit);
        }
    }

    /// The state machine has applied everything up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        let index = index.min(self.log.handed_committed);
        if index > self.log.applied {
            self.log.applied = index;
        }
    }

    /// The runtime could not reach `peer`.
    pub fn report_unreachable(&mut self, peer: &str) {
        if self.role != Role::Leader || self.quiescent {
            return;
        }
        if let Some(pr) = self.prs.get_mut(peer) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    pub fn has_ready(&self) -> bool {
        self.soft_changed()
            || self.hard_changed()
            || self.log.has_unhanded()
            || !self.msgs.is_empty()
            || !self.persisted_msgs.is_empty()
            || self.log.has_committed_to_hand()
            || !self.read_states.is_empty()
            || !self.events.is_empty()
    }

    pub fn ready(&mut self) -> Ready {
        let mut rd = Ready::default();
        // Built (the strings cloned) only when they changed.
        if self.soft_changed() {
            let ss = self.soft_state();
            self.prev_soft = ss.clone();
            rd.soft_state = Some(ss);
        }
        if self.hard_changed() {
            let hs = self.hard_state();
            self.prev_hard = hs.clone();
            rd.hard_state = Some(hs);
        }
        self.names_touched = false;
        rd.snapshot = self.log.take_snapshot();
        rd.entries = self.log.take_unstable();
        rd.messages = std::mem::take(&mut self.msgs);
        rd.persisted_messages = std::mem::take(&mut self.persisted_msgs);
        rd.committed_entries = self.log.take_committed(MAX_COMMITTED_BYTES_PER_READY);
        rd.read_states = std::mem::take(&mut self.read_states);
        rd.events = std::mem::take(&mut self.events);
        rd
    }

    pub fn status(&self) -> Status {
        let peers = if self.role == Role::Leader {
            self.prs
                .iter()
                .map(|(id, p)| PeerStatus {
                    id: id.clone(),
                    is_learner: p.is_learner,
                    match_index: p.matched,
                    next_index: p.next,
                    state: p.state,
                    ticks_since_contact: self
                        .now
                        .saturating_sub(p.last_heard.unwrap_or(p.match_tick))
                        .min(u32::MAX as u64) as u32,
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: self.cfg.id.clone(),
            role: self.role,
            term: self.term,
            vote: if self.vote.is_empty() {
                None
            } else {
                Some(self.vote.clone())
            },
            leader: self.leader.clone(),
            commit: self.log.committed,
            applied: self.log.applied,
            persisted: self.log.persisted(),
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            snapshot_index: self.log.snapshot().last_index,
            snapshot_term: self.log.snapshot().last_term,
            configuration: self.confs.current().clone(),
            peers,
            transferring_to: self.transfer.as_ref().map(|t| t.target.clone()),
            quiescent: self.quiescent,
        }
    }

    pub fn storage(&self) -> &S {
        &self.log.storage
    }
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.log.storage
    }
}
