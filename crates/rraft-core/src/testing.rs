//! A small in-memory cluster for unit tests: a `Network` of
//! `Raft<MemStorage>` that persists every Ready at once (or on demand) and
//! delivers messages in FIFO order, with links that can be cut; and the
//! setups and message builders the test files share (a network led by "a",
//! an election won by hand, Appends and acknowledgements, restarts).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::api::*;
use super::membership::ConfigurationExt;
use super::raft::{Proposal, Raft};
use super::storage::{LogStorage, MemStorage};

pub fn conf(voters: &[&str]) -> Configuration {
    Configuration {
        voters: voters.iter().map(|s| s.to_string()).collect(),
        learners: Vec::new(),
        old_voters: Vec::new(),
    }
}

pub fn conf_with_learners(voters: &[&str], learners: &[&str]) -> Configuration {
    let mut c = conf(voters);
    c.learners = learners.iter().map(|s| s.to_string()).collect();
    c
}

pub fn test_config(id: &str) -> Config {
    let mut c = Config::new(id);
    c.election_ticks = 10;
    c.heartbeat_ticks = 1;
    c.max_inflight_msgs = 16;
    c.catchup_margin = 0;
    c.catchup_ticks = 20;
    c.seed = 7;
    c
}

/// A fresh node whose initial configuration is `voters`.
pub fn new_raft(id: &str, voters: &[&str]) -> Raft<MemStorage> {
    new_raft_with(test_config(id), conf(voters))
}

pub fn new_raft_with(cfg: Config, initial: Configuration) -> Raft<MemStorage> {
    let init = InitialState {
        initial_conf: initial,
        ..Default::default()
    };
    let mut r = Raft::new(cfg, MemStorage::new(), init).expect("valid initial state");
    // Unit tests step votes into fresh nodes: start them out of the
    // startup lease (tested on its own in the election tests).
    r.clear_startup_lease();
    r
}

pub fn msg(kind: MessageType, from: &str, to: &str, term: u64) -> Message {
    Message {
        msg_type: kind as i32,
        from: from.into(),
        to: to.into(),
        term,
        ..Default::default()
    }
}

/// A hard state at `term`, commit index `commit`, with no vote.
pub fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: PeerId::empty(),
        commit,
    }
}

/// Makes `r` campaign and steps in the pre-vote of `voter` for `term`:
/// with a quorum of two, `r` is then a candidate.
pub fn campaign_with_pre_vote<S: LogStorage>(r: &mut Raft<S>, voter: &str, term: u64) {
    r.campaign().expect("voter");
    let id = r.id().to_string();
    r.step(msg(MessageType::PreVoteResponse, voter, &id, term))
        .expect("well-formed message");
}

/// Makes `r` campaign at term 1; asserts that the pre-vote of `first` alone
/// leaves it a pre-candidate (`why`) and that the pre-vote of `second` then
/// makes it a candidate.
pub fn assert_candidate_after_pre_votes(
    r: &mut Raft<MemStorage>,
    first: &str,
    second: &str,
    why: &str,
) {
    campaign_with_pre_vote(r, first, 1);
    assert_eq!(r.role(), Role::PreCandidate, "{why}");
    let id = r.id().to_string();
    r.step(msg(MessageType::PreVoteResponse, second, &id, 1))
        .expect("well-formed message");
    assert_eq!(r.role(), Role::Candidate);
}

/// Makes `r` campaign and steps in the pre-vote and the vote of `voter` for
/// `term`: with a quorum of two, `r` then leads.
pub fn win_election<S: LogStorage>(r: &mut Raft<S>, voter: &str, term: u64) {
    campaign_with_pre_vote(r, voter, term);
    let id = r.id().to_string();
    r.step(msg(MessageType::VoteResponse, voter, &id, term))
        .expect("well-formed message");
}

/// Proposes each of `data` on `r` in turn, one entry a proposal.
pub fn propose_each<S: LogStorage>(r: &mut Raft<S>, data: impl IntoIterator<Item = String>) {
    for d in data {
        r.propose_batch(vec![Bytes::from(d)])
            .expect("leader accepts");
    }
}

/// Whether `msgs` holds a granted answer of type `kind`.
pub fn has_grant(msgs: &[Message], kind: MessageType) -> bool {
    msgs.iter().any(|m| m.kind() == Some(kind) && !m.reject)
}

/// The configuration entries of `storage`, in log order.
pub fn configuration_entries(storage: &MemStorage) -> Vec<Entry> {
    storage
        .all()
        .iter()
        .filter(|e| e.kind() == EntryType::Configuration)
        .cloned()
        .collect()
}

/// The configurations written in `storage`'s log, in log order.
pub fn logged_configurations(storage: &MemStorage) -> Vec<Configuration> {
    configuration_entries(storage)
        .into_iter()
        .map(|e| <Configuration as prost::Message>::decode(e.data).expect("a Configuration"))
        .collect()
}

/// `id` restarted from the durable state of `node` (its log, its hard state
/// and the configurations in its log), `initial` as the bootstrap.
pub fn restarted(id: &str, node: &Node, initial: Configuration) -> Raft<MemStorage> {
    let storage = node.raft.storage().clone();
    let init = InitialState {
        hard_state: node.hard_state.clone(),
        configurations: configuration_entries(&storage),
        initial_conf: initial,
        ..Default::default()
    };
    Raft::new(test_config(id), storage, init).expect("a valid durable state")
}

/// An Append from `from` to `to` at `term` carrying `entries` after the
/// entry `prev` = (index, term).
pub fn append_msg(
    from: &str,
    to: &str,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
) -> Message {
    let mut app = msg(MessageType::Append, from, to, term);
    (app.index, app.log_term) = prev;
    app.entries = entries;
    app
}

/// An acknowledgement from `from` to `to` at `term` of the log up to `index`.
pub fn append_ack(from: &str, to: &str, term: u64, index: u64) -> Message {
    let mut ack = msg(MessageType::AppendResponse, from, to, term);
    ack.index = index;
    ack
}

/// The joint configuration moving from the voters `old` to `new`.
pub fn joint_conf(old: &[&str], new: &[&str]) -> Configuration {
    let mut c = conf(new);
    c.old_voters = old.iter().map(|s| s.to_string()).collect();
    c
}

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        entry_type: EntryType::Data as i32,
        data: Bytes::from(format!("e{index}")),
    }
}

/// What the runtime would do with a Ready, done synchronously: persist its
/// snapshot and entries, then report them durable.
pub fn persist_ready(r: &mut Raft<MemStorage>, rd: &Ready) {
    if let Some(s) = &rd.snapshot {
        r.storage_mut().reset(s.last_index);
    }
    if !rd.entries.is_empty() {
        r.storage_mut()
            .append(&rd.entries)
            .expect("append in range");
    }
    if let Some(e) = rd.entries.last() {
        r.on_persisted(e.index, e.term);
    } else if let Some(s) = &rd.snapshot {
        r.on_persisted(s.last_index, s.last_term);
    }
}

/// Takes a Ready, persists it at once, applies its committed entries, and
/// returns it.
pub fn drive(r: &mut Raft<MemStorage>) -> Ready {
    let rd = r.ready();
    persist_ready(r, &rd);
    if let Some(e) = rd.committed_entries.last() {
        r.on_applied(e.index);
    }
    rd
}

/// All messages (immediate and after-persist) of the Readys until quiet.
pub fn drain_msgs(r: &mut Raft<MemStorage>) -> Vec<Message> {
    let mut out = Vec::new();
    while r.has_ready() {
        let rd = drive(r);
        out.extend(rd.messages);
        out.extend(rd.persisted_messages);
    }
    out
}

pub fn kinds(msgs: &[Message]) -> Vec<(String, MessageType)> {
    msgs.iter()
        .map(|m| (m.to.to_string(), m.kind().expect("known type")))
        .collect()
}

pub struct Node {
    pub raft: Raft<MemStorage>,
    /// Committed entries handed to the state machine, in order.
    pub applied: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub events: Vec<Event>,
    pub hard_state: HardState,
    /// When false, Readys pile up un-persisted (see `Network::persist`).
    pub auto_persist: bool,
    pending: VecDeque<Ready>,
}

pub struct Network {
    pub nodes: BTreeMap<String, Node>,
    pub queue: VecDeque<Message>,
    /// Directed links that drop messages.
    pub cut: BTreeSet<(String, String)>,
    /// Nodes that are down (receive nothing, send nothing).
    pub down: BTreeSet<String>,
    /// Every message delivered, for assertions.
    pub delivered: Vec<Message>,
    /// Message types dropped everywhere.
    pub drop_kinds: BTreeSet<i32>,
}

impl Network {
    pub fn new(ids: &[&str]) -> Network {
        Self::with_config(ids, |_| {})
    }

    pub fn with_config(ids: &[&str], f: impl Fn(&mut Config)) -> Network {
        Self::from_conf(conf(ids), f)
    }

    /// Every member of `c` (voters and learners) starting with `c`.
    pub fn from_conf(c: Configuration, f: impl Fn(&mut Config)) -> Network {
        let mut net = Network {
            nodes: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            delivered: Vec::new(),
            drop_kinds: BTreeSet::new(),
        };
        for id in c.members() {
            let mut cfg = test_config(&id);
            f(&mut cfg);
            net.add(new_raft_with(cfg, c.clone()));
        }
        net
    }

    pub fn add(&mut self, raft: Raft<MemStorage>) {
        let id = raft.id().to_string();
        self.nodes.insert(
            id,
            Node {
                raft,
                applied: Vec::new(),
                read_states: Vec::new(),
                events: Vec::new(),
                hard_state: HardState::default(),
                auto_persist: true,
                pending: VecDeque::new(),
            },
        );
    }

    /// A new empty node that waits to be added (empty initial configuration).
    pub fn add_empty(&mut self, id: &str) {
        self.add(new_raft_with(test_config(id), Configuration::default()));
    }

    pub fn raft(&self, id: &str) -> &Raft<MemStorage> {
        &self.nodes[id].raft
    }

    pub fn raft_mut(&mut self, id: &str) -> &mut Raft<MemStorage> {
        &mut self.nodes.get_mut(id).expect("known node").raft
    }

    pub fn node(&self, id: &str) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes.get_mut(id).expect("known node")
    }

    /// Takes every Ready of `id`; persists it unless auto_persist is off.
    pub fn collect(&mut self, id: &str) {
        loop {
            let node = self.nodes.get_mut(id).expect("known node");
            if !node.raft.has_ready() {
                break;
            }
            let rd = node.raft.ready();
            if node.auto_persist && node.pending.is_empty() {
                self.finish_ready(id, rd);
            } else {
                // Immediate messages go out now; the rest waits for persist.
                let mut rd = rd;
                let msgs = std::mem::take(&mut rd.messages);
                node.pending.push_back(rd);
                self.queue.extend(msgs);
            }
        }
    }

    /// Persists the oldest `n` pending Readys of `id` (manual persistence).
    pub fn persist(&mut self, id: &str, n: usize) {
        for _ in 0..n {
            let Some(rd) = self.node_mut(id).pending.pop_front() else {
                break;
            };
            self.finish_ready(id, rd);
        }
    }

    fn finish_ready(&mut self, id: &str, rd: Ready) {
        let node = self.nodes.get_mut(id).expect("known node");
        persist_ready(&mut node.raft, &rd);
        if let Some(hs) = &rd.hard_state {
            node.hard_state = hs.clone();
        }
        self.queue.extend(rd.messages);
        self.queue.extend(rd.persisted_messages);
        if let Some(e) = rd.committed_entries.last() {
            node.raft.on_applied(e.index);
        }
        node.applied.extend(rd.committed_entries);
        node.read_states.extend(rd.read_states);
        node.events.extend(rd.events);
    }

    pub fn send(&mut self, m: Message) {
        self.queue.push_back(m);
    }

    /// Collects and delivers messages until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let ids: Vec<String> = self.nodes.keys().cloned().collect();
            for id in &ids {
                if !self.down.contains(id) {
                    self.collect(id);
                }
            }
            let Some(m) = self.queue.pop_front() else {
                return;
            };
            self.deliver(m);
        }
        panic!("network did not settle");
    }

    fn deliver(&mut self, m: Message) {
        if self.down.contains(m.from.as_str())
            || self.down.contains(m.to.as_str())
            || (!self.cut.is_empty() && self.cut.contains(&(m.from.to_string(), m.to.to_string())))
            || self.drop_kinds.contains(&m.msg_type)
        {
            return;
        }
        let Some(node) = self.nodes.get_mut(m.to.as_str()) else {
            return;
        };
        self.delivered.push(m.clone());
        node.raft.step(m).expect("well-formed message");
    }

    /// Ticks every live node once, then settles.
    pub fn tick(&mut self) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            if !self.down.contains(&id) {
                self.raft_mut(&id).tick();
            }
        }
        self.settle();
    }

    pub fn ticks(&mut self, n: usize) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Ticks `id` alone `n` times, delivering nothing.
    pub fn tick_alone(&mut self, id: &str, n: usize) {
        for _ in 0..n {
            self.raft_mut(id).tick();
        }
    }

    /// Makes `id` campaign and settles; asserts it won.
    pub fn elect(&mut self, id: &str) {
        self.raft_mut(id).campaign().expect("voter");
        self.settle();
        assert_eq!(self.raft(id).role(), Role::Leader, "{id} should have won");
    }

    /// {a,b,c} led by "a".
    pub fn three_led_by_a() -> Network {
        Network::led_by_a_with_empty(&[])
    }

    /// {a,b,c} led by "a", which has committed and applied the entry `data`.
    pub fn three_led_by_a_holding(data: &str) -> Network {
        let mut net = Network::three_led_by_a();
        net.propose("a", data).expect("leader accepts");
        net
    }

    /// {a,b,c} led by "a", which has committed `data` while `lagging` was
    /// cut off; the links are whole again and `lagging` is behind.
    pub fn three_led_by_a_behind<S: AsRef<str>>(
        lagging: &str,
        data: impl IntoIterator<Item = S>,
    ) -> Network {
        let mut net = Network::three_led_by_a();
        net.isolate(lagging);
        net.propose_all("a", data);
        net.heal();
        net
    }

    /// {a,b,c} led by "a", and the empty nodes `empty` waiting to be added.
    pub fn led_by_a_with_empty(empty: &[&str]) -> Network {
        let mut net = Network::new(&["a", "b", "c"]);
        for id in empty {
            net.add_empty(id);
        }
        net.elect("a");
        net
    }

    /// {a,b,c} led by "a", with the empty nodes `learners` added to it as
    /// learners (they answer, so they are caught up).
    pub fn led_by_a_with_learners(learners: &[&str]) -> Network {
        let mut net = Network::led_by_a_with_empty(learners);
        net.change_conf("a", conf_with_learners(&["a", "b", "c"], learners));
        net
    }

    /// Has the leader `id` propose the configuration `target`, and settles.
    pub fn change_conf(&mut self, id: &str, target: Configuration) {
        self.raft_mut(id)
            .propose_conf_change(target)
            .expect("a valid change");
        self.settle();
    }

    /// Proposes each of `data` on `id` in turn (each settled).
    pub fn propose_all<S: AsRef<str>>(&mut self, id: &str, data: impl IntoIterator<Item = S>) {
        for d in data {
            self.propose(id, d.as_ref()).expect("leader accepts");
        }
    }

    /// Steps a TimeoutNow from `from` into `to` at `to`'s term: `to`
    /// campaigns at once.
    pub fn timeout_now(&mut self, from: &str, to: &str) {
        let term = self.raft(to).term();
        self.raft_mut(to)
            .step(msg(MessageType::TimeoutNow, from, to, term))
            .expect("well-formed message");
    }

    /// The leader other than `old`; panics without one.
    pub fn leader_other_than(&self, old: &str) -> String {
        self.leaders()
            .into_iter()
            .find(|l| l != old)
            .expect("a new leader")
    }

    /// What leader `id` knows of `peer`.
    pub fn peer_status(&self, id: &str, peer: &str) -> PeerStatus {
        self.raft(id)
            .status()
            .peers
            .into_iter()
            .find(|p| p.id == peer)
            .expect("a known peer")
    }

    pub fn propose(&mut self, id: &str, data: &str) -> Result<Proposal, Error> {
        let r = self
            .raft_mut(id)
            .propose_batch(vec![Bytes::from(data.to_string())]);
        self.settle();
        r
    }

    pub fn isolate(&mut self, id: &str) {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for other in ids {
            if other != id {
                self.cut.insert((id.to_string(), other.clone()));
                self.cut.insert((other, id.to_string()));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.down.clear();
        self.drop_kinds.clear();
    }

    pub fn leaders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.role() == Role::Leader)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Data payloads applied by `id`, in order.
    pub fn applied_data(&self, id: &str) -> Vec<String> {
        self.nodes[id]
            .applied
            .iter()
            .filter(|e| e.kind() == EntryType::Data)
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }
}

/// A node of {a,b,c} configured by `cfg`, its durable log holding `terms`
/// (index 1..), its hard state at `term` with no vote.
pub fn node_with_log(cfg: Config, terms: &[u64], term: u64) -> Raft<MemStorage> {
    let mut storage = MemStorage::new();
    let ents: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    storage.append(&ents).expect("append to MemStorage");
    let init = InitialState {
        hard_state: hard_state(term, 0),
        initial_conf: conf(&["a", "b", "c"]),
        ..Default::default()
    };
    Raft::new(cfg, storage, init).expect("a valid test node")
}
