//! The simulated cluster: N voters plus one spare peer, each a
//! `Raft<MemStorage>` with its own disk, state machine and network links,
//! driven tick by tick from one seed. This file implements the Ready
//! contract and reports every fact to the checker.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use rraft::core::rng::Rng;
use rraft::core::{
    Config, Configuration, Entry, EntryType, Error, Event, InitialState, LogStorage, MemStorage,
    Message, MessageType, Raft, Ready, Role,
};

use crate::checker::{self, violation, Check, Checker, LogView, Violation};
use crate::disk::{append_trimmed, configurations_after, Disk, PendingWrite, SmState};
use crate::faults::{Fault, Faults, Profile};
use crate::kv::{self, Cmd, Request};
use crate::network::{DropReason, Envelope, NetConfig, Network};
use crate::trace::{Ev, MsgSummary, Trace};
use crate::workload::{Op, Workload};

/// How to run one seed.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// 3 or 5 voters; `None`: from the seed (even → 3, odd → 5).
    pub nodes: Option<usize>,
    /// Adjusts the seed's random profile (the named invariant tests).
    pub tweak: Option<fn(&mut Profile)>,
    /// Print every event (a replay).
    pub verbose: bool,
    /// Break the runtime on purpose (the simulator's own self-test).
    pub mutation: Option<Mutation>,
    /// Key-value clients (read / write / CAS) instead of the plain
    /// proposals and reads; their history comes back in `Outcome::kv`.
    pub kv: bool,
}

/// A deliberate runtime bug: the checker must catch its consequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Send `persisted_messages` at once, before the write is durable.
    EarlyAcks,
    /// Never make the HardState durable (votes and terms lost on crash).
    ForgetHardState,
    /// Serve ReadIndex reads at once, before the state machine caught up.
    EagerReads,
    /// KV lease reads served by any up node from its local state, with no
    /// lease (stale follower reads).
    LocalReads,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ticks: u64,
    pub steps: u64,
    pub messages: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub leaders: u64,
    pub acks: u64,
    pub reads: u64,
    pub snapshots_installed: u64,
    pub conf_changes_done: u64,
    pub transfers: u64,
    /// Node-ticks spent quiescent.
    pub quiescent_ticks: u64,
    /// Quiescent leaders that crashed and were replaced in time.
    pub quiescent_leaders_replaced: u64,
    /// Digest of the whole applied history (same seed ⇒ same digest).
    pub history_digest: u64,
}

/// A failed run: the seed, the invariant and the last events.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub nodes: usize,
    pub violation: Violation,
    pub trace: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sim violation: seed {} ({} voters): {}: {}\n\
             replay: SIM_SEED={} cargo test --release --test sim -- raft::replay --nocapture\n\
             last events:\n{}",
            self.seed,
            self.nodes,
            self.violation.invariant,
            self.violation.detail,
            self.seed,
            self.trace
        )
    }
}

/// What [`run_seed`] returns: the run's totals and its failure, if any.
pub struct Outcome {
    pub stats: Stats,
    pub failure: Option<Failure>,
    /// The KV clients and their history (`RunOptions::kv`).
    pub kv: Option<kv::Clients>,
}

/// Runs one seed to the end (or to its first violation).
pub fn run_seed(seed: u64, opts: &RunOptions) -> Outcome {
    let voters = opts.nodes.unwrap_or(if seed % 2 == 0 { 3 } else { 5 });
    let mut prng = Rng::new(seed ^ 0x5EED_0000_0000_0001);
    let mut profile = Profile::random(&mut prng);
    if let Some(t) = opts.tweak {
        t(&mut profile);
    }
    let mut cluster = Cluster::new(seed, voters, profile, opts.verbose);
    cluster.mutation = opts.mutation;
    if opts.kv {
        let mut clients = kv::Clients::new(mix(seed, 5));
        if cluster.profile.core.quiesce_ticks > 0 {
            clients.chaos_rate = (1, 60);
        }
        cluster.kv = Some(clients);
    }
    let result = catch_unwind(AssertUnwindSafe(|| cluster.run()));
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(violation("core panic", msg))
        }
    };
    let stats = cluster.stats();
    let failure = result.err().map(|v| Failure {
        seed,
        nodes: voters,
        violation: v,
        trace: cluster.trace.dump(),
    });
    let mut kv = cluster.kv.take();
    if let Some(clients) = kv.as_mut() {
        clients.finish();
    }
    Outcome { stats, failure, kv }
}

/// One peer.
struct Node {
    id: String,
    raft: Option<Raft<MemStorage>>,
    /// The durable log while the node is down.
    down_log: MemStorage,
    disk: Disk,
    sm: SmState,
    /// Snapshot the state machine last saved at (or restored from).
    last_snap: u64,
    /// Last committed index handed out by a Ready.
    handed: u64,
    /// Handed-out entries waiting for the state machine: (due tick, entry).
    apply_queue: VecDeque<(u64, Entry)>,
    /// The log as the core sees it: durable plus queued writes.
    shadow: MemStorage,
    shadow_snap: (u64, u64),
    incarnation: u64,
    role: Role,
    term: u64,
    /// Snapshots received out of band: (index, term) → state.
    incoming: BTreeMap<(u64, u64), SmState>,
    /// Confirmed reads waiting for the state machine: (read id, index).
    reads: Vec<(u64, u64)>,
    /// KV updates proposed by this incarnation: index → (term, op id).
    kv_proposals: BTreeMap<u64, (u64, u64)>,
    initial_conf: Configuration,
}

impl Node {
    fn up(&self) -> bool {
        self.raft.is_some()
    }

    fn view(&self) -> LogView<'_> {
        LogView {
            snapshot_index: self.shadow_snap.0,
            snapshot_term: self.shadow_snap.1,
            log: &self.shadow,
        }
    }
}

/// Quiet-phase bookkeeping: the probe proposals that must commit.
#[derive(Default)]
struct Probe {
    /// (index, payload) of the last probe accepted.
    last: Option<(u64, Bytes)>,
    /// The leader the last probe went to.
    leader: Option<usize>,
    /// Highest index proposed before the quiet phase: must be decided.
    target: u64,
}

/// The simulated cluster of one seed: nodes, network, disks, faults, workload and checker.
pub struct Cluster {
    seed: u64,
    voters: usize,
    ids: Vec<String>,
    nodes: Vec<Node>,
    genesis: Configuration,
    profile: Profile,
    net: Network,
    net_rng: Rng,
    disk_rng: Rng,
    misc_rng: Rng,
    faults: Faults,
    workload: Workload,
    checker: Checker,
    trace: Trace,
    now: u64,
    steps: u64,
    snapshots_installed: u64,
    conf_changes_done: u64,
    probe: Probe,
    mutation: Option<Mutation>,
    kv: Option<kv::Clients>,
    /// Failure detector: `[i][j]` is the last tick node i could reach j.
    reachable_at: Vec<Vec<u64>>,
    /// A quiescent leader crashed with a majority up and no partition:
    /// (deadline tick, its term). A leader of a later term must appear by
    /// the deadline unless another fault intervenes.
    election_due: Option<(u64, u64)>,
    quiescent_ticks: u64,
    quiescent_leaders_replaced: u64,
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.rotate_left(29)).next_u64()
}

impl Cluster {
    /// The configuration in force at node `ix`, which must be up.
    fn configuration_of(&self, ix: usize) -> Configuration {
        self.nodes[ix]
            .raft
            .as_ref()
            .expect("up")
            .status()
            .configuration
    }

    /// Boots `voters` voters and one spare peer for `seed` under `profile`.
    pub fn new(seed: u64, voters: usize, profile: Profile, verbose: bool) -> Cluster {
        let ids: Vec<String> = (1..=voters + 1).map(|i| format!("n{i}")).collect();
        let genesis = Configuration {
            voters: ids[..voters].to_vec(),
            learners: vec![],
            old_voters: vec![],
        };
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Node {
                id: id.clone(),
                raft: None,
                down_log: MemStorage::new(),
                disk: Disk::default(),
                sm: SmState::genesis(genesis.clone()),
                last_snap: 0,
                handed: 0,
                apply_queue: VecDeque::new(),
                shadow: MemStorage::new(),
                shadow_snap: (0, 0),
                incarnation: 0,
                role: Role::Follower,
                term: 0,
                incoming: BTreeMap::new(),
                reads: Vec::new(),
                kv_proposals: BTreeMap::new(),
                initial_conf: if i < voters {
                    genesis.clone()
                } else {
                    Configuration::default()
                },
            })
            .collect();
        let n = voters + 1;
        Cluster {
            seed,
            voters,
            ids,
            nodes,
            net: Network::new(profile.net.clone()),
            faults: Faults::new(mix(seed, 1), profile.clone(), n),
            workload: Workload::new(seed),
            checker: Checker::new(n),
            trace: Trace::new(verbose),
            genesis,
            profile,
            net_rng: Rng::new(mix(seed, 2)),
            disk_rng: Rng::new(mix(seed, 3)),
            misc_rng: Rng::new(mix(seed, 4)),
            now: 0,
            steps: 0,
            snapshots_installed: 0,
            conf_changes_done: 0,
            probe: Probe::default(),
            mutation: None,
            kv: None,
            reachable_at: vec![vec![0; n]; n],
            election_due: None,
            quiescent_ticks: 0,
            quiescent_leaders_replaced: 0,
        }
    }

    /// The run's totals so far.
    pub fn stats(&self) -> Stats {
        Stats {
            ticks: self.now,
            steps: self.steps,
            messages: self.net.sent,
            crashes: self.faults.crashes,
            partitions: self.faults.partitions,
            leaders: self.checker_leaders(),
            acks: self.checker.acks,
            reads: self.checker.reads_served,
            snapshots_installed: self.snapshots_installed,
            conf_changes_done: self.conf_changes_done,
            transfers: self.workload.transfers,
            quiescent_ticks: self.quiescent_ticks,
            quiescent_leaders_replaced: self.quiescent_leaders_replaced,
            history_digest: self.checker.final_digest(),
        }
    }

    fn checker_leaders(&self) -> u64 {
        self.checker.leader_terms()
    }

    fn note(&mut self, node: Option<usize>, text: String) {
        self.trace.push(self.now, Ev::Note { node, text });
    }

    /// The whole run: boot, chaos, quiet phase until live, final checks.
    pub fn run(&mut self) -> Check {
        self.note(
            None,
            format!(
                "seed {} voters {} profile {:?}",
                self.seed, self.voters, self.profile
            ),
        );
        for ix in 0..self.nodes.len() {
            self.restart(ix)?;
        }
        for _ in 0..self.profile.chaos_ticks {
            self.tick_once(true)?;
        }
        // Quiet phase: everyone up, reliable network, until live.
        self.note(
            None,
            "quiet phase: heal, restart all, reliable network".into(),
        );
        let quiet = self.faults.quiet();
        for f in quiet {
            self.apply_fault(f)?;
        }
        self.net.cfg = NetConfig::reliable();
        self.probe.target = self.checker.max_proposed_index;
        let start = self.now;
        // 50 election timeouts, plus 2 ticks per entry still undecided (a
        // leader keeps accepting proposals it cannot commit during the chaos:
        // deciding that backlog is proportional to its size).
        let backlog = self.probe.target.saturating_sub(self.checker.history_len());
        let bound = 50 * u64::from(self.profile.core.election_ticks) + 2 * backlog;
        loop {
            self.tick_once(false)?;
            if self.live() {
                break;
            }
            if self.now - start > bound {
                return Err(violation(
                    checker::LIVENESS,
                    format!(
                        "not live {} ticks after the faults healed: {}",
                        bound,
                        self.liveness_report()
                    ),
                ));
            }
        }
        self.checker.check_acked()
    }

    fn tick_once(&mut self, chaos: bool) -> Check {
        self.now += 1;
        self.deliver_due()?;
        self.complete_disks()?;
        for ix in 0..self.nodes.len() {
            self.apply_due(ix)?;
            self.drain(ix)?;
            if let Some(raft) = self.nodes[ix].raft.as_mut() {
                self.quiescent_ticks += u64::from(raft.is_quiescent());
                raft.tick();
                self.steps += 1;
                self.drain(ix)?;
            }
        }
        self.check_leases()?;
        self.detect_failures()?;
        self.check_election_due()?;
        if self.now % 8 == 0 {
            self.check_status()?;
        }
        if chaos {
            let up: Vec<bool> = self.nodes.iter().map(Node::up).collect();
            for f in self.faults.plan(self.now, &up) {
                self.apply_fault(f)?;
            }
            for op in self.workload.ops(&self.profile, self.nodes.len()) {
                // With KV clients, theirs are the only writes and reads.
                let plain = matches!(op, Op::Propose { .. } | Op::Read { .. });
                if !(plain && self.kv.is_some()) {
                    self.execute(op)?;
                }
            }
        } else {
            self.quiet_ops()?;
        }
        self.run_kv_clients(chaos)?;
        self.complete_disks()
    }

    // ----- the Ready contract --------------------------------------------

    /// Takes and handles Readys until the core has nothing more.
    fn drain(&mut self, ix: usize) -> Check {
        for _ in 0..10_000 {
            let Some(raft) = self.nodes[ix].raft.as_mut() else {
                return Ok(());
            };
            if !raft.has_ready() {
                return Ok(());
            }
            let rd = raft.ready();
            self.steps += 1;
            self.handle_ready(ix, rd)?;
        }
        Err(violation(
            checker::CONTRACT,
            format!("n{} has_ready() stays true after 10000 Readys", ix + 1),
        ))
    }

    fn handle_ready(&mut self, ix: usize, rd: Ready) -> Check {
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            read_states,
            events,
        } = rd;
        if let Some(ss) = soft_state {
            let node = &mut self.nodes[ix];
            let changed = node.role != ss.role || node.term != ss.term;
            node.role = ss.role;
            node.term = node.term.max(ss.term);
            if changed {
                self.note(
                    Some(ix),
                    format!("{:?} term {} leader {:?}", ss.role, ss.term, ss.leader),
                );
            }
            if ss.role == Role::Leader {
                // A node may lead while the entry removing it is not
                // committed (Raft thesis §4.2.2), never after.
                let st = self.nodes[ix].raft.as_ref().expect("up").status();
                let conf = st.configuration;
                let id = &self.ids[ix];
                let conf_index = self.nodes[ix]
                    .shadow
                    .all()
                    .iter()
                    .rev()
                    .find(|e| e.kind() == EntryType::Configuration)
                    .map_or(0, |e| e.index);
                if !conf.voters.contains(id)
                    && !conf.old_voters.contains(id)
                    && st.commit >= conf_index
                {
                    return Err(violation(
                        checker::CONTRACT,
                        format!(
                            "n{} became leader of term {} but is not a voter of its committed \
                             configuration {:?}/{:?} (entry {conf_index}, commit {})",
                            ix + 1,
                            ss.term,
                            conf.voters,
                            conf.old_voters,
                            st.commit
                        ),
                    ));
                }
                self.checker.on_leader(ix, ss.term)?;
                self.checker
                    .check_new_leader_log(ix, ss.term, &self.nodes[ix].view())?;
            }
        }
        if let Some(hs) = &hard_state {
            let node = &mut self.nodes[ix];
            node.term = node.term.max(hs.term);
        }
        let mut snap = None;
        if let Some(meta) = snapshot {
            let key = (meta.last_index, meta.last_term);
            let node = &mut self.nodes[ix];
            let state = match node.incoming.get(&key) {
                Some(s) => s.clone(),
                None => {
                    return Err(violation(
                        checker::CONTRACT,
                        format!(
                            "n{} Ready.snapshot {}/{} was never received",
                            ix + 1,
                            key.0,
                            key.1
                        ),
                    ))
                }
            };
            node.shadow.reset(meta.last_index);
            node.shadow_snap = key;
            self.note(Some(ix), format!("Ready.snapshot {}/{}", key.0, key.1));
            snap = Some((meta, state));
        }
        if !entries.is_empty() {
            self.check_entries(ix, &entries)?;
        }
        if let Some(hs) = &hard_state {
            let before = self.checker.committed_len();
            let node = &self.nodes[ix];
            self.checker
                .on_commit(ix, node.term, hs.commit, &node.view())?;
            if self.checker.committed_len() > before {
                self.check_leaders_hold(before + 1)?;
            }
        }
        for m in messages {
            self.send(ix, m)?;
        }
        let persisted_messages = if self.mutation == Some(Mutation::EarlyAcks) {
            for m in persisted_messages {
                self.send(ix, m)?;
            }
            Vec::new()
        } else {
            persisted_messages
        };
        let hard_state = if self.mutation == Some(Mutation::ForgetHardState) {
            None
        } else {
            hard_state
        };
        if snap.is_some()
            || !entries.is_empty()
            || hard_state.is_some()
            || !persisted_messages.is_empty()
        {
            let mut delay = self.disk_rng.range(0, self.profile.disk_delay_max + 1);
            if self.nodes[ix].role == Role::Leader {
                delay += self.profile.leader_disk_extra;
            }
            self.nodes[ix].disk.enqueue(PendingWrite {
                complete_at: self.now + delay,
                snapshot: snap,
                entries,
                hard_state,
                persisted_messages,
            });
        }
        if !committed_entries.is_empty() {
            self.hand_out(ix, committed_entries)?;
        }
        for rs in read_states {
            let id = decode_read(&rs.context).ok_or_else(|| {
                violation(
                    checker::CONTRACT,
                    format!(
                        "n{} ReadState with a foreign context {:?}",
                        ix + 1,
                        rs.context
                    ),
                )
            })?;
            self.nodes[ix].reads.push((id, rs.index));
        }
        self.serve_reads(ix)?;
        for ev in events {
            if let Event::ConfChangeDone(Ok(done)) = &ev {
                self.conf_changes_done += 1;
                let cur = self.configuration_of(ix);
                if !same_members(&cur.voters, &done.voters)
                    || !same_members(&cur.learners, &done.learners)
                    || !cur.old_voters.is_empty()
                    || !done.old_voters.is_empty()
                {
                    return Err(violation(
                        checker::CONTRACT,
                        format!(
                            "n{} reports ConfChangeDone({done:?}) while its configuration is {cur:?}",
                            ix + 1
                        ),
                    ));
                }
            }
            self.note(Some(ix), format!("event {ev:?}"));
        }
        Ok(())
    }

    /// Entries to persist: contiguous, appended after the held prefix, and
    /// never rewriting a leader's own log.
    fn check_entries(&mut self, ix: usize, entries: &[Entry]) -> Check {
        let node = &mut self.nodes[ix];
        for w in entries.windows(2) {
            if w[1].index != w[0].index + 1 || w[1].term < w[0].term {
                return Err(violation(
                    checker::CONTRACT,
                    format!(
                        "n{} Ready.entries not contiguous: {}/{} then {}/{}",
                        ix + 1,
                        w[0].index,
                        w[0].term,
                        w[1].index,
                        w[1].term
                    ),
                ));
            }
        }
        let head = entries[0].index;
        if node.role == Role::Leader && head <= node.shadow.last_index() {
            return Err(violation(
                checker::LEADER_APPEND_ONLY,
                format!(
                    "n{} leads term {} and rewrites its log from {} (last {})",
                    ix + 1,
                    node.term,
                    head,
                    node.shadow.last_index()
                ),
            ));
        }
        append_trimmed(&mut node.shadow, entries).map_err(|e| {
            violation(
                checker::CONTRACT,
                format!("n{} Ready.entries cannot be appended: {e}", ix + 1),
            )
        })?;
        Ok(())
    }

    /// Leaders of a later term hold the entries committed from `from` on.
    fn check_leaders_hold(&self, from: u64) -> Check {
        for (j, n) in self.nodes.iter().enumerate() {
            if n.up() && n.role == Role::Leader {
                self.checker
                    .check_leader_holds_committed(j, n.term, &n.view(), from)?;
            }
        }
        Ok(())
    }

    /// Committed entries handed out by a Ready: they must follow the last
    /// handed-out one and be durable locally; the state machine applies them
    /// after its own lag (the FSM thread).
    fn hand_out(&mut self, ix: usize, entries: Vec<Entry>) -> Check {
        let lag = if self.profile.apply_lag_max > 0 {
            self.misc_rng.range(0, self.profile.apply_lag_max + 1)
        } else {
            0
        };
        let node = &mut self.nodes[ix];
        let raft = node.raft.as_mut().expect("node is up");
        let (snap_index, _) = node.disk.snapshot_index_term();
        for e in &entries {
            if e.index != node.handed + 1 {
                return Err(violation(
                    checker::CONTRACT,
                    format!(
                        "n{} committed entry {} follows handed-out {} (applied {})",
                        ix + 1,
                        e.index,
                        node.handed,
                        node.sm.index
                    ),
                ));
            }
            let durable = e.index <= snap_index || raft.storage().term(e.index) == Ok(e.term);
            if !durable {
                return Err(violation(
                    checker::CONTRACT,
                    format!(
                        "n{} hands out committed {}/{} that is not durable locally (durable log {}..={})",
                        ix + 1,
                        e.index,
                        e.term,
                        raft.storage().first_index(),
                        raft.storage().last_index()
                    ),
                ));
            }
            node.handed = e.index;
        }
        let due = (self.now + lag).max(node.apply_queue.back().map_or(0, |b| b.0));
        node.apply_queue
            .extend(entries.into_iter().map(|e| (due, e)));
        self.apply_due(ix)
    }

    /// The state machine applies what is due.
    fn apply_due(&mut self, ix: usize) -> Check {
        let node = &mut self.nodes[ix];
        if !node.up() {
            return Ok(());
        }
        let first = node.sm.index + 1;
        let mut any = false;
        // KV updates this node proposed: (op id, CAS result or None: failed).
        let mut updates = Vec::new();
        while node.apply_queue.front().is_some_and(|f| f.0 <= self.now) {
            let (_, e) = node.apply_queue.pop_front().expect("checked");
            let command = node.sm.apply(&e);
            if let Some((term, op)) = node.kv_proposals.remove(&e.index) {
                match command {
                    Some((applied, ok)) if term == e.term && applied == op => {
                        updates.push((op, Some(ok)))
                    }
                    _ if term == e.term => {
                        return Err(violation(
                            checker::CONTRACT,
                            format!(
                                "n{} applies another command at {}/{} than it proposed there",
                                ix + 1,
                                e.index,
                                e.term
                            ),
                        ))
                    }
                    _ => updates.push((op, None)),
                }
            }
            self.checker
                .on_apply(ix, node.incarnation, &e, node.sm.digest)?;
            any = true;
        }
        if let Some(clients) = self.kv.as_mut() {
            for (op, result) in updates {
                clients.update_done(self.now, op, result);
            }
        }
        let node = &mut self.nodes[ix];
        let Some(raft) = node.raft.as_mut() else {
            return Ok(());
        };
        if !any {
            return Ok(());
        }
        let last = node.sm.index;
        raft.on_applied(last);
        self.trace.push(
            self.now,
            Ev::Applied {
                node: ix,
                from: first,
                to: last,
            },
        );
        self.maybe_snapshot(ix);
        self.serve_reads(ix)
    }

    /// Serves the confirmed reads the state machine has caught up with.
    fn serve_reads(&mut self, ix: usize) -> Check {
        let node = &mut self.nodes[ix];
        if node.reads.is_empty() {
            return Ok(());
        }
        let applied = node.sm.index;
        let eager = self.mutation == Some(Mutation::EagerReads);
        let (ready, waiting): (Vec<_>, Vec<_>) = node
            .reads
            .drain(..)
            .partition(|&(_, i)| eager || i <= applied);
        node.reads = waiting;
        for (id, index) in ready {
            // The client hears its answer before the checks (a stale one too,
            // for the linearizability checker to see).
            if let Some(clients) = self.kv.as_mut() {
                if let Some(key) = clients.read_key(id) {
                    let value = self.nodes[ix].sm.registers.get(&key).copied();
                    clients.read_done(self.now, id, value.unwrap_or(0), false);
                }
            }
            self.checker.on_read_served(ix, id, index, applied)?;
        }
        Ok(())
    }

    /// The state machine saves a snapshot now and then; the log is
    /// compacted up to a little before it.
    fn maybe_snapshot(&mut self, ix: usize) {
        let p = &self.profile;
        let node = &mut self.nodes[ix];
        if node.sm.index < node.last_snap + p.snapshot_every
            || node.sm.index <= node.disk.snapshot_index_term().0
        {
            return;
        }
        let meta = node.sm.meta();
        node.disk.snapshot = Some((meta.clone(), node.sm.clone()));
        node.last_snap = node.sm.index;
        let raft = node.raft.as_mut().expect("node is up");
        raft.on_snapshot(meta);
        let lag = self.misc_rng.range(0, p.compact_lag + 1);
        let storage = raft.storage_mut();
        let upto = (node.sm.index + 1)
            .saturating_sub(lag)
            .min(storage.last_index() + 1);
        if upto > storage.first_index() {
            storage.compact(upto);
        }
        let text = format!("snapshot at {}, log compacted to {}", node.sm.index, upto);
        self.note(Some(ix), text);
    }

    /// Completes the disk writes due now, in order.
    fn complete_disks(&mut self) -> Check {
        for ix in 0..self.nodes.len() {
            while self.nodes[ix].up() {
                let Some(w) = self.nodes[ix].disk.pop_due(self.now) else {
                    break;
                };
                self.steps += 1;
                self.complete_write(ix, w)?;
                self.drain(ix)?;
            }
        }
        Ok(())
    }

    fn complete_write(&mut self, ix: usize, w: PendingWrite) -> Check {
        let node = &mut self.nodes[ix];
        let raft = node.raft.as_mut().expect("node is up");
        let mut persisted = None;
        let mut installed = None;
        if let Some((meta, state)) = w.snapshot {
            if state.index < node.handed {
                return Err(violation(
                    checker::CONTRACT,
                    format!(
                        "n{} installs snapshot {} behind the committed entries it handed out ({})",
                        ix + 1,
                        state.index,
                        node.handed
                    ),
                ));
            }
            // Handed-out entries still queued are covered by the snapshot;
            // so are KV updates proposed there (their clients time out).
            node.apply_queue.clear();
            node.kv_proposals.retain(|&i, _| i > state.index);
            node.handed = state.index;
            if state.index < node.sm.index {
                return Err(violation(
                    checker::CONTRACT,
                    format!(
                        "n{} installs snapshot {} behind its applied index {}",
                        ix + 1,
                        state.index,
                        node.sm.index
                    ),
                ));
            }
            raft.storage_mut().reset(meta.last_index);
            persisted = Some((meta.last_index, meta.last_term));
            installed = Some(meta.last_index);
            node.sm = state.clone();
            node.last_snap = state.index;
            node.disk.snapshot = Some((meta, state.clone()));
            self.checker.on_restore(ix, &state)?;
            self.snapshots_installed += 1;
        }
        if let Some(last) = w.entries.last() {
            persisted = Some((last.index, last.term));
            for e in &w.entries {
                if let Ok(old) = raft.storage().term(e.index) {
                    self.checker
                        .check_not_overwriting_committed(ix, e.index, old, e.term)?;
                }
            }
            let storage = raft.storage_mut();
            let skipped = append_trimmed(storage, &w.entries).map_err(|e| {
                violation(
                    checker::CONTRACT,
                    format!("n{} durable append failed: {e}", ix + 1),
                )
            })?;
            for s in &skipped {
                if s.index <= self.checker.history_len() && !self.checker.history_has(s.index, s) {
                    return Err(violation(
                        checker::LOG_MATCHING,
                        format!(
                            "n{} rewrites compacted index {} with another entry (term {})",
                            ix + 1,
                            s.index,
                            s.term
                        ),
                    ));
                }
            }
            let (si, st) = node.disk.snapshot_index_term();
            for e in &w.entries[skipped.len()..] {
                let p = e.index - 1;
                let prev = if p == si {
                    Some(st)
                } else {
                    storage.term(p).ok()
                };
                self.checker.on_durable(ix, e, prev)?;
            }
        }
        if let Some(hs) = w.hard_state {
            node.disk.hard_state = hs;
        }
        if let Some((i, t)) = persisted {
            raft.on_persisted(i, t);
            self.trace.push(
                self.now,
                Ev::Persisted {
                    node: ix,
                    index: i,
                    term: t,
                },
            );
        }
        if let Some(i) = installed {
            raft.on_applied(i);
            let (lo, keep) = (i, &mut node.incoming);
            keep.retain(|k, _| k.0 > lo);
            self.serve_reads(ix)?;
        }
        for m in w.persisted_messages {
            self.send(ix, m)?;
        }
        Ok(())
    }

    // ----- network -------------------------------------------------------

    fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    fn send(&mut self, from: usize, msg: Message) -> Check {
        let Some(to) = self.index_of(&msg.to) else {
            return Err(violation(
                checker::CONTRACT,
                format!("n{} sends to unknown peer {:?}", from + 1, msg.to),
            ));
        };
        // An acknowledgement of log entries must not outrun the disk.
        // (Not under the EarlyAcks mutation: there the safety invariants
        // themselves must catch the consequences.)
        if msg.kind() == Some(MessageType::AppendResponse)
            && !msg.reject
            && self.mutation != Some(Mutation::EarlyAcks)
        {
            if let Some(raft) = &self.nodes[from].raft {
                let durable = raft.storage().last_index();
                if msg.index > durable {
                    return Err(violation(
                        checker::CONTRACT,
                        format!(
                            "n{} acknowledges index {} to {} but its durable log ends at {}",
                            from + 1,
                            msg.index,
                            msg.to,
                            durable
                        ),
                    ));
                }
            }
        }
        let snapshot = if msg.kind() == Some(MessageType::InstallSnapshot) {
            let Some(meta) = &msg.snapshot else {
                return Err(violation(
                    checker::CONTRACT,
                    format!("n{} sends InstallSnapshot without meta", from + 1),
                ));
            };
            match &self.nodes[from].disk.snapshot {
                Some((m, s))
                    if m.last_index == meta.last_index && m.last_term == meta.last_term =>
                {
                    Some(s.clone())
                }
                other => {
                    return Err(violation(
                        checker::CONTRACT,
                        format!(
                            "n{} sends snapshot {}/{} but holds {:?}",
                            from + 1,
                            meta.last_index,
                            meta.last_term,
                            other.as_ref().map(|(m, _)| (m.last_index, m.last_term))
                        ),
                    ))
                }
            }
        } else {
            None
        };
        let env = Envelope {
            from,
            to,
            from_incarnation: self.nodes[from].incarnation,
            to_incarnation: self.nodes[to].incarnation,
            msg,
            snapshot,
            lost: false,
        };
        self.net.send(self.now, env, &mut self.net_rng);
        Ok(())
    }

    fn deliver_due(&mut self) -> Check {
        while let Some(env) = self.net.pop_due(self.now) {
            self.steps += 1;
            let to = &self.nodes[env.to];
            let verdict = if !to.up() || to.incarnation != env.to_incarnation {
                Err(DropReason::ReceiverDown)
            } else {
                self.net.verdict(&env)
            };
            let summary = MsgSummary::of(env.from, env.to, &env.msg);
            match verdict {
                Err(why) => {
                    let why_s = match why {
                        DropReason::Lost => "lost",
                        DropReason::Cut => "cut",
                        DropReason::ReceiverDown => "down",
                    };
                    self.trace.push(self.now, Ev::Drop(summary, why_s));
                    self.on_drop(&env, why)?;
                }
                Ok(()) => {
                    self.trace.push(self.now, Ev::Deliver(summary));
                    // A transport may also report a reachable peer as unreachable.
                    if self.misc_rng.chance(1, 2000) {
                        let id = self.ids[env.to].clone();
                        if let Some(raft) = self.sender(env.from, env.from_incarnation) {
                            raft.report_unreachable(&id);
                        }
                    }
                    let is_snap = env.msg.kind() == Some(MessageType::InstallSnapshot);
                    let node = &mut self.nodes[env.to];
                    if let (Some(state), Some(meta)) = (env.snapshot, &env.msg.snapshot) {
                        node.incoming
                            .insert((meta.last_index, meta.last_term), state);
                    }
                    let raft = node.raft.as_mut().expect("checked up");
                    if let Err(e) = raft.step(env.msg) {
                        return Err(violation(
                            checker::CONTRACT,
                            format!("n{} step failed: {e}", env.to + 1),
                        ));
                    }
                    self.drain(env.to)?;
                    if is_snap {
                        let id = self.ids[env.to].clone();
                        // Sometimes the stream's final ack is lost: the
                        // sender hears "failed" although it arrived.
                        let ok = !self.misc_rng.chance(1, 10);
                        if let Some(raft) = self.sender(env.from, env.from_incarnation) {
                            raft.report_snapshot(&id, ok);
                            self.drain(env.from)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The sender of `env`, if it is still the same incarnation.
    fn sender(&mut self, from: usize, incarnation: u64) -> Option<&mut Raft<MemStorage>> {
        let n = &mut self.nodes[from];
        if n.incarnation == incarnation {
            n.raft.as_mut()
        } else {
            None
        }
    }

    fn on_drop(&mut self, env: &Envelope, why: DropReason) -> Check {
        let id = self.ids[env.to].clone();
        let report_unreachable =
            why != DropReason::Lost && self.misc_rng.chance(self.profile.unreachable, 100);
        let is_snap = env.msg.kind() == Some(MessageType::InstallSnapshot);
        let Some(raft) = self.sender(env.from, env.from_incarnation) else {
            return Ok(());
        };
        if is_snap {
            raft.report_snapshot(&id, false);
        } else if report_unreachable {
            raft.report_unreachable(&id);
        } else {
            return Ok(());
        }
        self.drain(env.from)
    }

    // ----- faults --------------------------------------------------------

    fn apply_fault(&mut self, f: Fault) -> Check {
        self.note(None, format!("fault {f:?}"));
        self.election_due = None;
        match f {
            Fault::Crash { node, torn } => {
                self.watch_quiescent_leader_crash(node);
                self.crash(node, torn)
            }
            Fault::Restart { node } => self.restart(node)?,
            Fault::Split { a, b } => self.net.split(&a, &b),
            Fault::CutOneWay { from, to } => self.net.cut_one_way(from, to),
            Fault::IsolateLeader => {
                if let Some(l) = self.leader() {
                    let others: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != l).collect();
                    self.net.split(&[l], &others);
                }
            }
            Fault::Heal => self.net.heal(),
        }
        Ok(())
    }

    fn crash(&mut self, ix: usize, torn: Option<usize>) {
        let node = &mut self.nodes[ix];
        let Some(raft) = node.raft.take() else {
            return;
        };
        let mut log = raft.storage().clone();
        drop(raft);
        node.disk.crash(&mut log, torn);
        node.down_log = log;
        node.incarnation += 1;
        node.role = Role::Follower;
        node.reads.clear();
        node.kv_proposals.clear();
        node.incoming.clear();
        node.apply_queue.clear();
        self.checker.on_crash(ix);
    }

    /// (Re)starts a node from its durable state.
    fn restart(&mut self, ix: usize) -> Check {
        let p = &self.profile;
        let config = Config {
            id: self.ids[ix].as_str().into(),
            seed: mix(self.seed, (ix as u64) << 32 | self.nodes[ix].incarnation),
            ..p.core.clone()
        };
        let node = &mut self.nodes[ix];
        let log = std::mem::take(&mut node.down_log);
        let log = if log.first_index() == 0 {
            MemStorage::new()
        } else {
            log
        };
        let (si, st) = node.disk.snapshot_index_term();
        node.sm = match &node.disk.snapshot {
            Some((_, s)) => s.clone(),
            None => SmState::genesis(self.genesis.clone()),
        };
        node.last_snap = node.sm.index;
        node.handed = node.sm.index;
        node.apply_queue.clear();
        node.shadow = log.clone();
        node.shadow_snap = (si, st);
        let init = InitialState {
            hard_state: node.disk.hard_state.clone(),
            snapshot: node.disk.snapshot.as_ref().map(|(m, _)| m.clone()),
            configurations: configurations_after(&log, si),
            initial_conf: node.initial_conf.clone(),
            applied: si,
            lost_acknowledged: false,
        };
        let raft = Raft::new(config, log, init).map_err(|e| {
            violation(
                checker::CONTRACT,
                format!("n{} cannot restart from its durable state: {e}", ix + 1),
            )
        })?;
        let st = raft.status();
        node.role = st.role;
        node.term = st.term;
        node.raft = Some(raft);
        let sm = node.sm.clone();
        self.checker.on_restore(ix, &sm)?;
        self.note(
            Some(ix),
            format!("started, snapshot {si}/{st:?}", st = st.term),
        );
        self.drain(ix)
    }

    // ----- clients -------------------------------------------------------

    /// The up node that leads the highest term, if any.
    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.up() && n.role == Role::Leader)
            .max_by_key(|(_, n)| n.term)
            .map(|(i, _)| i)
    }

    fn execute(&mut self, op: Op) -> Check {
        match op {
            Op::Propose { node, payloads } => {
                let Some(ix) = node.or_else(|| self.leader()) else {
                    return Ok(());
                };
                self.propose(ix, payloads, None).map(|_| ())
            }
            Op::Read { node, id } => {
                let Some(raft) = self.nodes[node].raft.as_mut() else {
                    return Ok(());
                };
                self.checker.on_read_request(id);
                let r = raft.read_index(Bytes::copy_from_slice(&id.to_le_bytes()));
                if let Err(e) = r {
                    self.note(Some(node), format!("read {id}: {e}"));
                }
                self.drain(node)
            }
            Op::ConfChange => {
                let Some(l) = self.leader() else {
                    return Ok(());
                };
                let conf = self.configuration_of(l);
                let Some(target) = self.workload.plan_conf_change(&conf, &self.ids) else {
                    return Ok(());
                };
                let raft = self.nodes[l].raft.as_mut().expect("up");
                let r = raft.propose_conf_change(target.clone());
                self.note(
                    Some(l),
                    format!(
                        "conf change {:?}+{:?} -> {:?}+{:?}: {r:?}",
                        conf.voters, conf.learners, target.voters, target.learners
                    ),
                );
                self.drain(l)
            }
            Op::Transfer { target } => {
                let Some(l) = self.leader() else {
                    return Ok(());
                };
                let target = target.map(|t| self.ids[t].clone());
                let raft = self.nodes[l].raft.as_mut().expect("up");
                let r = raft.transfer_leader(target.as_deref());
                self.note(Some(l), format!("transfer to {target:?}: {r:?}"));
                self.drain(l)
            }
            Op::Campaign { node } => {
                let Some(raft) = self.nodes[node].raft.as_mut() else {
                    return Ok(());
                };
                let r = raft.campaign();
                self.note(Some(node), format!("campaign: {r:?}"));
                self.drain(node)
            }
        }
    }

    /// Proposes on `ix`; returns the index of the last payload if accepted.
    /// `kv_op`: the KV update the (single) payload carries.
    fn propose(
        &mut self,
        ix: usize,
        payloads: Vec<Bytes>,
        kv_op: Option<u64>,
    ) -> Result<Option<u64>, Violation> {
        let node = &mut self.nodes[ix];
        let Some(raft) = node.raft.as_mut() else {
            return Ok(None);
        };
        let n = payloads.len() as u64;
        let r = raft.propose_batch(payloads.clone());
        let out = match r {
            Ok(p) => {
                if node.role != Role::Leader {
                    return Err(violation(
                        checker::CONTRACT,
                        format!("n{} accepted a proposal as {:?}", ix + 1, node.role),
                    ));
                }
                if let Some(op) = kv_op {
                    node.kv_proposals.insert(p.first_index, (p.term, op));
                }
                let inc = node.incarnation;
                for (k, payload) in payloads.into_iter().enumerate() {
                    self.checker
                        .on_propose(ix, inc, p.first_index + k as u64, p.term, payload);
                }
                self.note(
                    Some(ix),
                    format!("proposed {n} at {}/{}", p.first_index, p.term),
                );
                Some(p.first_index + n - 1)
            }
            Err(Error::NotLeader { .. }) | Err(Error::Busy(_)) => None,
            Err(e) => {
                self.note(Some(ix), format!("propose: {e}"));
                None
            }
        };
        self.drain(ix)?;
        Ok(out)
    }

    /// (8) Every node with a valid lease: nobody committed in a later term.
    /// The core's own view agrees with what its Readys said.
    fn check_status(&self) -> Check {
        for (ix, n) in self.nodes.iter().enumerate() {
            let Some(raft) = &n.raft else { continue };
            let st = raft.status();
            let bad = if st.role != n.role || st.term != n.term {
                Some(format!(
                    "status says {:?} t{}, the Readys said {:?} t{}",
                    st.role, st.term, n.role, n.term
                ))
            } else if st.applied > st.commit || st.commit > st.last_index {
                Some(format!(
                    "applied {} commit {} last {}",
                    st.applied, st.commit, st.last_index
                ))
            } else if n.handed > st.commit {
                Some(format!(
                    "handed out {} beyond commit {}",
                    n.handed, st.commit
                ))
            } else if st.persisted > st.last_index || st.first_index > st.last_index + 1 {
                Some(format!(
                    "persisted {} first {} last {}",
                    st.persisted, st.first_index, st.last_index
                ))
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(violation(
                    checker::CONTRACT,
                    format!("n{} status inconsistent: {why}", ix + 1),
                ));
            }
        }
        Ok(())
    }

    /// The runtime's failure detector, simulated: a node that could not
    /// reach a peer for `suspect_ticks` suspects it (a quiescent one wakes,
    /// a follower of that leader plans its campaign).
    fn detect_failures(&mut self) -> Check {
        let limit = self.profile.suspect_ticks;
        if limit == 0 {
            return Ok(());
        }
        for i in 0..self.nodes.len() {
            for j in 0..self.nodes.len() {
                if i == j {
                    continue;
                }
                if self.nodes[j].up() && !self.net.is_cut(i, j) && !self.net.is_cut(j, i) {
                    self.reachable_at[i][j] = self.now;
                    continue;
                }
                if self.now - self.reachable_at[i][j] < limit {
                    continue;
                }
                let peer = self.ids[j].clone();
                if let Some(raft) = self.nodes[i].raft.as_mut() {
                    raft.peer_suspected(&peer);
                    self.drain(i)?;
                }
            }
        }
        Ok(())
    }

    /// Called before node `ix` crashes: if it is a quiescent leader and the
    /// rest of its voters form a majority on a whole network, a new leader
    /// is due within a few election timeouts of the failure detector's.
    fn watch_quiescent_leader_crash(&mut self, ix: usize) {
        let Some(raft) = self.nodes[ix].raft.as_ref() else {
            return;
        };
        if !raft.is_leader() || !raft.is_quiescent() || self.net.partitioned() {
            return;
        }
        let conf = raft.status().configuration;
        let term = raft.term();
        if !conf.old_voters.is_empty() {
            return;
        }
        let up = conf
            .voters
            .iter()
            .filter(|id| {
                **id != self.ids[ix] && self.index_of(id).is_some_and(|j| self.nodes[j].up())
            })
            .count();
        if 2 * up <= conf.voters.len() {
            return;
        }
        let election = u64::from(self.profile.core.election_ticks);
        let deadline = self.now + self.profile.suspect_ticks + 10 * election;
        self.note(
            Some(ix),
            format!("quiescent leader crashes: a new leader is due by tick {deadline}"),
        );
        self.election_due = Some((deadline, term));
    }

    fn check_election_due(&mut self) -> Check {
        let Some((deadline, term)) = self.election_due else {
            return Ok(());
        };
        let elected = self
            .nodes
            .iter()
            .any(|n| n.up() && n.role == Role::Leader && n.term > term);
        if elected {
            self.election_due = None;
            self.quiescent_leaders_replaced += 1;
        } else if self.now > deadline {
            return Err(violation(
                checker::LIVENESS,
                format!(
                    "no leader after term {term} by tick {deadline}, after a quiescent leader \
                     crashed: {}",
                    self.liveness_report()
                ),
            ));
        }
        Ok(())
    }

    fn check_leases(&self) -> Check {
        for (ix, n) in self.nodes.iter().enumerate() {
            if n.role == Role::Leader {
                if let Some(raft) = &n.raft {
                    if raft.is_lease_valid() {
                        self.checker.check_lease(ix, n.term)?;
                    }
                }
            }
        }
        Ok(())
    }

    // ----- KV clients ----------------------------------------------------

    /// The KV clients' requests of this tick, if the run has KV clients.
    fn run_kv_clients(&mut self, chaos: bool) -> Check {
        let timeout = 4 * u64::from(self.profile.core.election_ticks);
        let Some(clients) = self.kv.as_mut() else {
            return Ok(());
        };
        for request in clients.requests(self.now, timeout, chaos) {
            self.kv_request(request)?;
        }
        Ok(())
    }

    fn kv_clients(&mut self) -> &mut kv::Clients {
        self.kv.as_mut().expect("a run with KV clients")
    }

    /// The leader, or a random node when the client does not know it.
    fn kv_target(&mut self, any: bool) -> usize {
        let n = self.nodes.len() as u64;
        match self.leader() {
            Some(l) if !any => l,
            _ => self.kv_clients().rng().range(0, n) as usize,
        }
    }

    fn kv_request(&mut self, request: Request) -> Check {
        let now = self.now;
        match request {
            Request::Update { op, cmd, any } => {
                let ix = self.kv_target(any);
                let payload = kv::encode(op, cmd);
                let accepted = self.propose(ix, vec![payload], Some(op))?;
                let what = match cmd {
                    Cmd::Write { key, value } => format!("write k{key}={value}"),
                    Cmd::Cas { key, expect, new } => format!("cas k{key} {expect}->{new}"),
                };
                self.note(Some(ix), format!("kv op {op}: {what}: {accepted:?}"));
                if accepted.is_none() {
                    // Refused before it went anywhere: definitely not applied.
                    self.kv_clients().refused(now, op);
                }
                Ok(())
            }
            Request::IndexRead { op, key, any } => {
                let ix = self.kv_target(any);
                self.note(Some(ix), format!("kv op {op}: read k{key} (ReadIndex)"));
                let Some(raft) = self.nodes[ix].raft.as_mut() else {
                    self.kv_clients().abandon(op);
                    return Ok(());
                };
                self.checker.on_read_request(op);
                if raft
                    .read_index(Bytes::copy_from_slice(&op.to_le_bytes()))
                    .is_err()
                {
                    self.kv_clients().abandon(op);
                    return Ok(());
                }
                self.drain(ix)
            }
            Request::LeaseRead { op, key } => {
                // Any node that believes it leads (a deposed leader too).
                let local = self.mutation == Some(Mutation::LocalReads);
                let candidates: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| {
                        let n = &self.nodes[i];
                        n.up() && (local || n.role == Role::Leader)
                    })
                    .collect();
                if candidates.is_empty() {
                    self.kv_clients().abandon(op);
                    return Ok(());
                }
                let pick = self.kv_clients().rng().range(0, candidates.len() as u64) as usize;
                let ix = candidates[pick];
                let node = &self.nodes[ix];
                let raft = node.raft.as_ref().expect("up");
                let commit = raft.commit_index();
                let valid = raft.is_lease_valid()
                    && raft.term_at(commit) == Some(raft.term())
                    && node.sm.index >= commit;
                let value = node.sm.registers.get(&key).copied().unwrap_or(0);
                self.note(
                    Some(ix),
                    format!("kv op {op}: lease read k{key}: valid {valid} value {value}"),
                );
                if valid || local {
                    self.kv_clients().read_done(now, op, value, true);
                } else {
                    self.kv_clients().abandon(op);
                }
                Ok(())
            }
        }
    }

    // ----- the quiet phase -----------------------------------------------

    /// Keeps a probe proposal in flight until everything pending is decided.
    fn quiet_ops(&mut self) -> Check {
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let (settled, acked) = match &self.probe.last {
            None => (true, false),
            Some((i, p)) => {
                let acked = self.checker.is_acked(*i, p);
                let settled =
                    acked || self.checker.history_len() >= *i || self.probe.leader != Some(l);
                (settled, acked)
            }
        };
        let need = !acked || self.checker.history_len() < self.probe.target;
        let probe_done = settled;
        if probe_done && need {
            // Enough entries to decide every pending proposal's index.
            let gap = self.probe.target.saturating_sub(self.checker.history_len());
            let n = gap.clamp(1, 64);
            let payloads: Vec<Bytes> = (0..n).map(|_| self.workload.payload(0)).collect();
            let last = payloads[payloads.len() - 1].clone();
            if let Some(i) = self.propose(l, payloads, None)? {
                self.probe.last = Some((i, last));
                self.probe.leader = Some(l);
            }
        }
        Ok(())
    }

    /// (7) Live: a leader of the highest term among the members, the last
    /// probe acknowledged, every proposal decided, the configuration not
    /// joint, and every member caught up with the probe.
    fn live(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let Some((pi, payload)) = &self.probe.last else {
            return false;
        };
        if !self.checker.is_acked(*pi, payload) || self.checker.history_len() < self.probe.target {
            return false;
        }
        let conf = self.configuration_of(l);
        if !conf.old_voters.is_empty() {
            return false;
        }
        conf.voters.iter().chain(conf.learners.iter()).all(|id| {
            self.index_of(id).is_some_and(|j| {
                let n = &self.nodes[j];
                n.up() && n.sm.index >= *pi && n.term <= self.nodes[l].term
            })
        })
    }

    fn liveness_report(&self) -> String {
        let mut s = format!(
            "history {} max proposed {} probe {:?}; ",
            self.checker.history_len(),
            self.checker.max_proposed_index,
            self.probe.last.as_ref().map(|p| p.0)
        );
        for n in &self.nodes {
            match &n.raft {
                Some(r) => {
                    let st = r.status();
                    s.push_str(&format!(
                        "{} {:?} t{} commit {} applied {} last {} conf {:?}/{:?}/{:?}; ",
                        n.id,
                        st.role,
                        st.term,
                        st.commit,
                        n.sm.index,
                        st.last_index,
                        st.configuration.voters,
                        st.configuration.learners,
                        st.configuration.old_voters
                    ));
                }
                None => s.push_str(&format!("{} down; ", n.id)),
            }
        }
        s
    }
}

fn same_members(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

fn decode_read(ctx: &Bytes) -> Option<u64> {
    let b: [u8; 8] = ctx.as_ref().try_into().ok()?;
    Some(u64::from_le_bytes(b))
}
