//! runtime-sim: the node as shipped under deterministic simulation.
//!
//! Each node is a `rraft::node::stepped::SteppedNode`: the real driver, log
//! writer (two half-steps, so a power loss can fall between append and
//! fdatasync), FSM caller, recovery, segment log (or, in the `shared`
//! profile, a `shared://` log whose sync rounds are stepped the same way)
//! and snapshot store, on a `SimFs` of its own, with a clock of its own. One thread steps everything
//! in 1 ms quanta from one seed:
//!
//! - time: each node's monotonic clock runs at its own rate (within the
//!   drift bound), and a paused node takes no steps while its clock runs on;
//! - membership: the spare node is added, voters are removed, leadership
//!   is transferred;
//! - network: delays, loss, duplication, reordering, partitions; snapshot
//!   files are pulled from the leader's store through the same requests
//!   as over TCP (`network::copy_snapshot`), and fail if the leader is down
//!   or published a newer snapshot;
//! - disk: fdatasync latency (sometimes slow), and **power loss** of one
//!   node, a minority or all nodes at once (`SimFs::crash` drops or tears
//!   every unsynced write), followed by recovery from what survived.
//!
//! Clients write registers, read them through ReadIndex and through the
//! leader lease, and the history must be linearizable. Invariants checked
//! on every step: at most one leader per term; no two nodes apply
//! different data at one index (a lost acknowledged write shows up here:
//! the entry is overwritten after the power loss); a node always restarts
//! after a power loss. At the end the faults heal and every node converges
//! on the same state, holding every acknowledged write.
//!
//! ```sh
//! cargo test --release --test sim -- runtime::                    # CI seeds
//! RSIM_SEEDS=100000 RSIM_START=1000 cargo test --release --test sim -- runtime::seeds --nocapture
//! RSIM_SEED=42 cargo test --release --test sim -- runtime::replay --nocapture
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rraft::clock::Clock;
use rraft::core::rng::Rng;
use rraft::node::network::{copy_snapshot, FetchDone, Network, SnapshotFetch};
use rraft::node::options::Mutation;
use rraft::node::peer_id::PeerId;
use rraft::node::state_machine::{
    Iter, SnapshotReaderRef, SnapshotSaveDone, SnapshotWriterRef, StateMachine,
};
use rraft::node::stepped::SteppedNode;
use rraft::node::{Done, NodeOptions, Status, Task};
use rraft::proto::Message;
use rraft::storage::{FileSystem, OpenMode, SimFs, WrittenBatch};
use rraft_sim::linearizability::{self, Input, Op, Outcome, Output, Verdict};

/// Simulated time per step.
const STEP_US: u64 = 1_000;
const ELECTION_TIMEOUT_MS: u32 = 200;
/// Clock rates differ by at most this many parts per thousand (the header's
/// bound is far wider; see `max_clock_drift_ms`).
const DRIFT_PERMILLE: u64 = 100;
const GROUP: &str = "rsim";

// ----- time -----------------------------------------------------------------

/// A node's monotonic clock, advanced by the simulation.
#[derive(Default)]
struct SimClock(AtomicU64);

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

// ----- network --------------------------------------------------------------

enum Outgoing {
    Message(Message),
    Fetch(SnapshotFetch, FetchDone),
}

/// What the nodes hand to the network during a step; the world routes it.
#[derive(Default)]
struct Outbox(Mutex<Vec<(String, Outgoing)>>);

/// One node's view of the network: it stamps the sender.
struct NodeNet {
    me: String,
    outbox: Arc<Outbox>,
}

impl Network for NodeNet {
    fn send(&self, _group: &str, msg: Message) {
        self.outbox
            .0
            .lock()
            .unwrap()
            .push((self.me.clone(), Outgoing::Message(msg)));
    }

    fn fetch_snapshot(&self, fetch: SnapshotFetch, done: FetchDone) {
        self.outbox
            .0
            .lock()
            .unwrap()
            .push((self.me.clone(), Outgoing::Fetch(fetch, done)));
    }
}

// ----- the state machine ------------------------------------------------------

/// Shared between a node's state machine and the world.
#[derive(Default)]
struct Registers {
    map: BTreeMap<u64, u64>,
}

/// Writes one register: [key u64][value u64].
fn encode_write(key: u64, value: u64) -> Bytes {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&key.to_be_bytes());
    b.extend_from_slice(&value.to_be_bytes());
    b.into()
}

fn decode_write(data: &[u8]) -> Option<(u64, u64)> {
    if data.len() != 16 {
        return None;
    }
    Some((
        u64::from_be_bytes(data[..8].try_into().ok()?),
        u64::from_be_bytes(data[8..].try_into().ok()?),
    ))
}

/// Data applied at each index by any node (first one wins); a different
/// payload at a known index is a safety violation.
#[derive(Default)]
struct AppliedLog {
    at: BTreeMap<u64, Bytes>,
    violation: Option<String>,
}

struct KvMachine {
    id: String,
    regs: Arc<Mutex<Registers>>,
    applied: Arc<Mutex<AppliedLog>>,
    fs: SimFs,
}

impl StateMachine for KvMachine {
    fn on_apply(&mut self, it: &mut Iter<'_>) {
        while it.valid() {
            let data = it.data();
            {
                let mut log = self.applied.lock().unwrap();
                match log.at.get(&it.index()) {
                    Some(seen) if *seen != data => {
                        if log.violation.is_none() {
                            log.violation = Some(format!(
                                "{} applied {:?} at index {}, another node applied {:?}",
                                self.id,
                                decode_write(&data),
                                it.index(),
                                decode_write(seen)
                            ));
                        }
                    }
                    Some(_) => {}
                    None => {
                        log.at.insert(it.index(), data.clone());
                    }
                }
            }
            if let Some((k, v)) = decode_write(&data) {
                self.regs.lock().unwrap().map.insert(k, v);
            }
            it.next();
        }
    }

    fn on_snapshot_save(&mut self, writer: SnapshotWriterRef, done: SnapshotSaveDone) {
        let regs = self.regs.lock().unwrap();
        let mut bytes = Vec::new();
        for (k, v) in &regs.map {
            bytes.extend_from_slice(&encode_write(*k, *v));
        }
        let path = writer.path().join("registers");
        let written = self
            .fs
            .open(&path, OpenMode::Create)
            .and_then(|f| {
                f.write_at(&bytes, 0)?;
                f.sync_data()
            })
            .map_err(|e| Status::new(rraft::node::errno::EIO, e.to_string()));
        done(written.and_then(|()| writer.add_file("registers")));
    }

    fn on_snapshot_load(&mut self, reader: &SnapshotReaderRef) -> Result<(), Status> {
        let path = reader.path().join("registers");
        let bytes = rraft::storage::fs::read_whole(&*self.fs.shared(), &path)
            .map_err(|e| Status::new(rraft::node::errno::EIO, e.to_string()))?
            .unwrap_or_default();
        let mut regs = self.regs.lock().unwrap();
        regs.map = bytes
            .chunks(16)
            .filter_map(decode_write)
            .collect::<BTreeMap<_, _>>();
        Ok(())
    }
}

// ----- clients and history ----------------------------------------------------

#[derive(Default)]
struct History {
    ops: Vec<Op>,
    /// Operations in flight: op index → (done arrived).
    open: BTreeMap<usize, bool>,
}

struct Client {
    id: u64,
    seq: u64,
    /// (history index, give-up time in µs) of the operation in flight.
    in_flight: Option<(usize, u64)>,
    next_at: u64,
}

// ----- the world ----------------------------------------------------------------

/// A fault mix.
#[derive(Clone, Copy, Debug)]
struct Profile {
    /// Per step, in parts per million.
    power_loss_ppm: u64,
    pause_ppm: u64,
    partition_ppm: u64,
    snapshot_ppm: u64,
    /// Per message, percent.
    loss_pct: u64,
    dup_pct: u64,
    /// Per sync: percent that take 50–300 ms.
    slow_sync_pct: u64,
    /// Longest pause, in ms.
    max_pause_ms: u64,
    lease_reads: bool,
    /// Per step, in parts per million: a membership change (add the spare
    /// node, or remove a voter) and a leadership transfer.
    membership_ppm: u64,
    transfer_ppm: u64,
    /// Percent of client operations sent to a node believed to lead (the
    /// rest go to any node: followers forward reads and refuse writes).
    to_leader_pct: u64,
    /// Registers the clients use, and how many clients.
    keys: u64,
    clients: u64,
    /// A client waits up to this long (µs) between operations.
    think_us: u64,
    /// `NodeOptions::quiesce_after_ms` (0: groups never quiesce), and how
    /// long a node must not reach a peer (down or cut off; a paused
    /// process keeps its connections) before it suspects it.
    quiesce_after_ms: u32,
    suspect_us: u64,
    /// Each node's log is a `shared://` log (its sync rounds stepped like
    /// the segment log's writer) instead of `local://`.
    shared_log: bool,
    mutation: Mutation,
}

const DEFAULT_PROFILE: Profile = Profile {
    power_loss_ppm: 1_500,
    pause_ppm: 600,
    partition_ppm: 600,
    snapshot_ppm: 2_000,
    loss_pct: 2,
    dup_pct: 1,
    slow_sync_pct: 4,
    max_pause_ms: 3 * ELECTION_TIMEOUT_MS as u64,
    lease_reads: true,
    membership_ppm: 400,
    transfer_ppm: 400,
    to_leader_pct: 90,
    keys: 4,
    clients: 4,
    think_us: 20_000,
    quiesce_after_ms: 0,
    suspect_us: 0,
    shared_log: false,
    mutation: Mutation::None,
};

/// More and slower unsynced writes and more power losses: acknowledgements
/// that run ahead of a follower's disk turn into lost writes.
const DURABILITY_PROFILE: Profile = Profile {
    power_loss_ppm: 6_000,
    slow_sync_pct: 30,
    ..DEFAULT_PROFILE
};

/// Slow fsyncs and little else: a leader whose own disk lags commits
/// entries (a quorum of followers has them) before it can apply them.
const APPLY_LAG_PROFILE: Profile = Profile {
    slow_sync_pct: 50,
    power_loss_ppm: 200,
    pause_ppm: 0,
    partition_ppm: 0,
    membership_ppm: 0,
    transfer_ppm: 0,
    to_leader_pct: 50,
    keys: 1,
    clients: 16,
    ..DEFAULT_PROFILE
};

/// The durability mix on `shared://` logs: power losses between a sync
/// round's write and its fdatasync, records of the driver's direct appends
/// still buffered, torn unsynced rounds.
const SHARED_LOG_PROFILE: Profile = Profile {
    shared_log: true,
    ..DURABILITY_PROFILE
};

/// Many pauses of isolated nodes and lease reads.
const LEASE_PROFILE: Profile = Profile {
    pause_ppm: 3_000,
    max_pause_ms: 10 * ELECTION_TIMEOUT_MS as u64,
    power_loss_ppm: 300,
    membership_ppm: 0,
    transfer_ppm: 0,
    ..DEFAULT_PROFILE
};

/// Quiescent groups: clients that think long enough for the group to
/// sleep between operations, with power losses, partitions, pauses, clock
/// drift and transfers, and a failure detector that wakes quiescent nodes.
const QUIESCE_PROFILE: Profile = Profile {
    think_us: 400_000,
    clients: 3,
    quiesce_after_ms: ELECTION_TIMEOUT_MS / 4,
    suspect_us: ELECTION_TIMEOUT_MS as u64 * 1000 / 2,
    power_loss_ppm: 1_000,
    partition_ppm: 800,
    ..DEFAULT_PROFILE
};

struct Slot {
    id: String,
    fs: SimFs,
    clock: Arc<SimClock>,
    /// Clock rate in parts per thousand of simulated time.
    rate: u64,
    node: Option<SteppedNode>,
    regs: Arc<Mutex<Registers>>,
    /// A written, not yet durable batch and when its sync returns.
    writing: Option<(WrittenBatch, u64)>,
    paused_until: u64,
    down_until: u64,
    /// Messages that arrived while paused (delivered on resume).
    held: Vec<Message>,
    isolated_until: u64,
    clock_frac: u64,
    /// Failure detector: when this node last reached each peer (µs).
    reached_at: Vec<u64>,
}

struct InFlightMsg {
    at: u64,
    seq: u64,
    to: String,
    msg: Message,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    steps: u64,
    power_losses: u64,
    whole_cluster_losses: u64,
    acked_writes: u64,
    reads: u64,
    lease_reads: u64,
    snapshots_sent: u64,
    pauses: u64,
    membership_changes: u64,
    transfers: u64,
    quiescent_steps: u64,
}

struct World {
    seed: u64,
    rng: Rng,
    now: Arc<AtomicU64>,
    slots: Vec<Slot>,
    outbox: Arc<Outbox>,
    wire: Vec<InFlightMsg>,
    fetches: Vec<(u64, String, SnapshotFetch, FetchDone)>,
    msg_seq: u64,
    applied: Arc<Mutex<AppliedLog>>,
    history: Arc<Mutex<History>>,
    clients: Vec<Client>,
    leaders: BTreeMap<u64, String>,
    profile: Profile,
    stats: Stats,
    trace: VecDeque<String>,
    verbose: bool,
    violation: Option<String>,
    /// Faults stop (heal) from this time on.
    heal_at: u64,
    /// Size of the initial group.
    voters: usize,
}

fn peer(i: usize) -> String {
    format!("127.0.0.1:7000:{i}")
}

/// Options of node `i`: the first `voters` nodes start as the group, the
/// others (the spare) wait to be added.
fn options(i: usize, voters: usize, mutation: Mutation) -> NodeOptions {
    let initial_conf = if i < voters {
        (0..voters)
            .map(|v| peer(v).parse::<PeerId>().unwrap())
            .collect()
    } else {
        Vec::new()
    };
    NodeOptions {
        election_timeout_ms: ELECTION_TIMEOUT_MS,
        max_clock_drift_ms: ELECTION_TIMEOUT_MS / 2,
        initial_conf,
        log_uri: "local:///node/log".into(),
        raft_meta_uri: "local:///node/meta".into(),
        snapshot_uri: "local:///node/snapshot".into(),
        snapshot_interval_s: 0,
        catchup_margin: 20,
        max_segment_size: 16 * 1024,
        enable_leader_lease: true,
        mutation,
        ..NodeOptions::default()
    }
}

impl World {
    /// `voters` nodes form the group; one more, the spare, waits to be added.
    fn new(seed: u64, voters: usize, profile: Profile, verbose: bool) -> World {
        let mut rng = Rng::new(seed);
        let nodes = voters + 1;
        let slots = (0..nodes)
            .map(|i| {
                let fs = SimFs::new();
                fs.create_dir_all(Path::new("/node")).unwrap();
                fs.sync_dir(Path::new("/")).unwrap();
                Slot {
                    id: peer(i),
                    fs,
                    clock: Arc::new(SimClock(AtomicU64::new(rng.range(0, 1_000_000)))),
                    rate: 1000 - DRIFT_PERMILLE / 2 + rng.range(0, DRIFT_PERMILLE + 1),
                    node: None,
                    regs: Arc::default(),
                    writing: None,
                    paused_until: 0,
                    down_until: 0,
                    held: Vec::new(),
                    isolated_until: 0,
                    clock_frac: 0,
                    reached_at: vec![0; nodes],
                }
            })
            .collect();
        let clients = (0..profile.clients)
            .map(|id| Client {
                id,
                seq: 0,
                in_flight: None,
                next_at: 0,
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            now: Arc::default(),
            slots,
            outbox: Arc::default(),
            wire: Vec::new(),
            fetches: Vec::new(),
            msg_seq: 0,
            applied: Arc::default(),
            history: Arc::default(),
            clients,
            leaders: BTreeMap::new(),
            profile,
            stats: Stats::default(),
            trace: VecDeque::new(),
            verbose,
            violation: None,
            heal_at: u64::MAX,
            voters,
        };
        for i in 0..nodes {
            w.start(i);
        }
        w
    }

    fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    fn log(&mut self, line: String) {
        let line = format!("{:>8.3}s {line}", self.now() as f64 / 1e6);
        if self.verbose {
            println!("{line}");
        }
        self.trace.push_back(line);
        if self.trace.len() > 300 {
            self.trace.pop_front();
        }
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.log(format!("VIOLATION {what}"));
            self.violation = Some(what);
        }
    }

    fn start(&mut self, i: usize) {
        let seed = self.seed.wrapping_mul(31).wrapping_add(i as u64) ^ self.now();
        let slot = &mut self.slots[i];
        let sm = KvMachine {
            id: slot.id.clone(),
            regs: slot.regs.clone(),
            applied: self.applied.clone(),
            fs: slot.fs.clone(),
        };
        slot.regs.lock().unwrap().map.clear();
        let mut opts = options(i, self.voters, self.profile.mutation);
        opts.quiesce_after_ms = self.profile.quiesce_after_ms;
        if self.profile.shared_log {
            opts.log_uri = "shared:///node/wal".into();
        }
        opts.fs = Some(slot.fs.shared());
        let net = Arc::new(NodeNet {
            me: slot.id.clone(),
            outbox: self.outbox.clone(),
        });
        match SteppedNode::open(
            GROUP,
            &slot.id,
            opts,
            Box::new(sm),
            slot.clock.clone(),
            net,
            seed,
        ) {
            Ok(node) => slot.node = Some(node),
            Err(status) => {
                let id = slot.id.clone();
                self.fail(format!("{id} cannot start after a power loss: {status}"));
            }
        }
    }

    /// Power loss of node `i`: unsynced writes are dropped or torn; the
    /// node's threads die with whatever they held.
    fn power_loss(&mut self, i: usize, down_for: u64) {
        let crash_seed = self.rng.next_u64();
        let slot = &mut self.slots[i];
        slot.writing = None;
        slot.node = None;
        slot.held.clear();
        slot.fs.crash(crash_seed);
        slot.down_until = self.now.load(Ordering::Relaxed) + down_for;
        self.stats.power_losses += 1;
        let id = self.slots[i].id.clone();
        self.log(format!("power loss {id} (down {} ms)", down_for / 1000));
    }

    fn alive(&self, i: usize) -> bool {
        self.slots[i].node.is_some()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    fn faults(&mut self) {
        let now = self.now();
        if now >= self.heal_at {
            return;
        }
        let n = self.slots.len();
        let p = self.profile;
        if self.rng.range(0, 1_000_000) < p.power_loss_ppm {
            let kind = self.rng.range(0, 10);
            let victims: Vec<usize> = match kind {
                0 => (0..n).collect(),
                1..=2 => {
                    let first = self.rng.range(0, n as u64) as usize;
                    (0..n / 2).map(|k| (first + k) % n).collect()
                }
                _ => {
                    // Prefer the leader: its followers' acks are what a
                    // power loss tests.
                    let leader = (0..n)
                        .find(|&i| self.slots[i].node.as_ref().is_some_and(|x| x.is_leader()));
                    let pick = self.rng.range(0, n as u64) as usize;
                    vec![if self.rng.chance(1, 2) {
                        leader.unwrap_or(pick)
                    } else {
                        pick
                    }]
                }
            };
            if victims.len() == n {
                self.stats.whole_cluster_losses += 1;
            }
            for v in victims {
                if self.alive(v) {
                    let down = self.rng.range(20_000, 400_000);
                    self.power_loss(v, down);
                }
            }
        }
        let someone_paused = self.slots.iter().any(|s| s.paused_until > now);
        if !someone_paused && self.rng.range(0, 1_000_000) < p.pause_ppm {
            // Mostly the leader: a paused leader's lease must end with the
            // time that passed, not with the turns its driver took.
            let leader =
                (0..n).find(|&i| self.slots[i].node.as_ref().is_some_and(|x| x.is_leader()));
            let pick = self.rng.range(0, n as u64) as usize;
            let v = match leader {
                Some(l) if self.rng.chance(3, 4) => l,
                _ => pick,
            };
            let d = self.rng.range(50_000, p.max_pause_ms * 1000);
            self.slots[v].paused_until = now + d;
            if self.rng.chance(1, 2) {
                // A process paused while cut off (its lease must not
                // outlive the pause).
                self.slots[v].isolated_until = now + d + self.rng.range(0, 300_000);
            }
            self.stats.pauses += 1;
            let id = self.slots[v].id.clone();
            let cut = self.slots[v].isolated_until > now;
            self.log(format!("pause {id} for {} ms (isolated: {cut})", d / 1000));
        }
        if self.rng.range(0, 1_000_000) < p.partition_ppm {
            let v = self.rng.range(0, n as u64) as usize;
            let d = self.rng.range(100_000, 1_500_000);
            self.slots[v].isolated_until = now + d;
            let id = self.slots[v].id.clone();
            self.log(format!("isolate {id} for {} ms", d / 1000));
        }
        if self.rng.range(0, 1_000_000) < p.membership_ppm {
            self.change_membership();
        }
        if self.rng.range(0, 1_000_000) < p.transfer_ppm {
            if let Some(l) = self.current_leader() {
                let members = self.voters_seen_by(l);
                let to = members[self.rng.range(0, members.len() as u64) as usize].clone();
                if let Some(node) = self.slots[l].node.as_mut() {
                    let result = node.transfer_leadership_to(&to);
                    self.stats.transfers += 1;
                    let from = self.slots[l].id.clone();
                    self.log(format!("transfer {from} -> {to}: {result:?}"));
                }
            }
        }
        if self.rng.range(0, 1_000_000) < p.snapshot_ppm {
            let v = self.rng.range(0, n as u64) as usize;
            if let Some(node) = &self.slots[v].node {
                node.snapshot(None);
            }
        }
    }

    fn current_leader(&self) -> Option<usize> {
        (0..self.slots.len()).find(|&i| self.slots[i].node.as_ref().is_some_and(|x| x.is_leader()))
    }

    /// The voters in force on node `i` (empty when it is down).
    fn voters_seen_by(&self, i: usize) -> Vec<String> {
        self.slots[i]
            .node
            .as_ref()
            .map(|n| n.status().configuration.voters)
            .unwrap_or_default()
    }

    /// Adds the node that is not a voter, or removes a voter other than the
    /// leader, keeping at least as many voters as the group started with.
    fn change_membership(&mut self) {
        let Some(l) = self.current_leader() else {
            return;
        };
        let conf = self.slots[l].node.as_ref().unwrap().status().configuration;
        if !conf.old_voters.is_empty() {
            return;
        }
        let leader_id = self.slots[l].id.clone();
        let mut voters = conf.voters.clone();
        if voters.len() > self.voters {
            let candidates: Vec<String> = voters
                .iter()
                .filter(|v| **v != leader_id)
                .cloned()
                .collect();
            let out = candidates[self.rng.range(0, candidates.len() as u64) as usize].clone();
            voters.retain(|v| *v != out);
        } else {
            let Some(outsider) = self
                .slots
                .iter()
                .map(|s| s.id.clone())
                .find(|id| !voters.contains(id))
            else {
                return;
            };
            voters.push(outsider);
        }
        self.stats.membership_changes += 1;
        self.log(format!("change voters to {voters:?}"));
        let node = self.slots[l].node.as_ref().unwrap();
        node.change_voters(voters, Done::new(|_| {}));
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        let now = self.now();
        self.slots[a].isolated_until > now || self.slots[b].isolated_until > now
    }

    /// Routes what the nodes sent during the last step.
    fn route(&mut self) {
        let sent = std::mem::take(&mut *self.outbox.0.lock().unwrap());
        let now = self.now();
        let healed = now >= self.heal_at;
        for (from, out) in sent {
            match out {
                Outgoing::Message(msg) => {
                    let (Some(a), Some(b)) = (self.index_of(&from), self.index_of(&msg.to)) else {
                        continue;
                    };
                    if self.cut(a, b) || (!healed && self.rng.range(0, 100) < self.profile.loss_pct)
                    {
                        continue;
                    }
                    let copies = if !healed && self.rng.range(0, 100) < self.profile.dup_pct {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let delay = STEP_US * self.rng.range(0, 4);
                        self.msg_seq += 1;
                        self.wire.push(InFlightMsg {
                            at: now + delay,
                            seq: self.msg_seq,
                            to: msg.to.to_string(),
                            msg: msg.clone(),
                        });
                    }
                }
                Outgoing::Fetch(fetch, done) => {
                    let delay = STEP_US * self.rng.range(1, 20);
                    self.fetches.push((now + delay, from, fetch, done));
                }
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wire)
            .into_iter()
            .partition(|m| m.at <= now);
        self.wire = later;
        let mut due = due;
        due.sort_by_key(|m| (m.at, m.seq));
        for m in due {
            let Some(i) = self.index_of(&m.to) else {
                continue;
            };
            let slot = &mut self.slots[i];
            if slot.node.is_none() {
                continue;
            }
            if slot.paused_until > now {
                slot.held.push(m.msg);
            } else if let Some(node) = &mut slot.node {
                node.deliver(vec![m.msg]);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.fetches)
            .into_iter()
            .partition(|f| f.0 <= now);
        self.fetches = later;
        for (_, from, fetch, done) in due {
            let source = self
                .index_of(&fetch.leader)
                .filter(|&l| {
                    let f = self.index_of(&from).unwrap_or(l);
                    !self.cut(l, f)
                })
                .and_then(|l| self.slots[l].node.as_ref())
                .and_then(|n| n.snapshot_store());
            let result = match source {
                Some(source) => {
                    copy_snapshot(&source, &fetch.store, &fetch.meta, fetch.chunk_bytes)
                }
                None => Err(Status::new(
                    rraft::node::errno::EHOSTDOWN,
                    "leader unreachable",
                )),
            };
            if result.is_ok() {
                self.stats.snapshots_sent += 1;
            }
            let line = format!(
                "snapshot {} from {} to {from}: {:?}",
                fetch.meta.last_index,
                fetch.leader,
                result.as_ref().map_err(|s| s.to_string())
            );
            self.log(line);
            done(result);
        }
    }

    fn step_nodes(&mut self) {
        let now = self.now();
        let n = self.slots.len();
        // Clocks run, paused or not.
        for slot in &mut self.slots {
            let ticks = STEP_US * slot.rate + slot.clock_frac;
            slot.clock_frac = ticks % 1000;
            slot.clock.0.fetch_add(ticks / 1000, Ordering::Relaxed);
        }
        let mut order: Vec<usize> = (0..n).collect();
        for k in (1..n).rev() {
            let j = self.rng.range(0, k as u64 + 1) as usize;
            order.swap(k, j);
        }
        for i in order {
            if self.slots[i].node.is_none() {
                if self.slots[i].down_until <= now {
                    let id = self.slots[i].id.clone();
                    self.log(format!("restart {id}"));
                    self.start(i);
                }
                continue;
            }
            if self.slots[i].paused_until > now {
                continue;
            }
            let slow = self.profile.slow_sync_pct;
            let latency = if self.rng.range(0, 100) < slow {
                self.rng.range(50_000, 300_000)
            } else {
                self.rng.range(0, 3 * STEP_US)
            };
            let first_fsm = self.rng.chance(1, 2);
            let slot = &mut self.slots[i];
            let Some(node) = slot.node.as_mut() else {
                continue;
            };
            if !slot.held.is_empty() {
                node.deliver(std::mem::take(&mut slot.held));
            }
            if first_fsm {
                node.step_fsm();
            }
            node.turn();
            match slot.writing.take() {
                Some((batch, at)) if at <= now => node.finish_write(batch),
                Some(pending) => slot.writing = Some(pending),
                None => {
                    if let Some(batch) = node.write() {
                        if latency < STEP_US {
                            node.finish_write(batch);
                        } else {
                            slot.writing = Some((batch, now + latency));
                        }
                    }
                }
            }
            node.step_fsm();
            node.turn();
        }
    }

    fn check_leaders(&mut self) {
        for i in 0..self.slots.len() {
            let Some(node) = &self.slots[i].node else {
                continue;
            };
            let st = node.status();
            self.stats.quiescent_steps += u64::from(st.quiescent);
            if node.lease_valid() && st.applied < st.commit {
                // A user reading its state machine under this lease would
                // miss committed entries.
                let what = format!(
                    "{} publishes a valid lease with commit {} but applied {}",
                    self.slots[i].id, st.commit, st.applied
                );
                self.fail(what);
            }
            if st.role != rraft::core::Role::Leader {
                continue;
            }
            let id = self.slots[i].id.clone();
            match self.leaders.get(&st.term) {
                Some(other) if *other != id => {
                    let what = format!("two leaders in term {}: {other} and {id}", st.term);
                    self.fail(what);
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(st.term, id.clone());
                    self.log(format!("{id} leads term {}", st.term));
                }
            }
        }
        let broken = self.applied.lock().unwrap().violation.clone();
        if let Some(what) = broken {
            self.fail(what);
        }
    }

    fn leader_guess(&mut self) -> usize {
        let n = self.slots.len();
        let leaders: Vec<usize> = (0..n)
            .filter(|&i| self.slots[i].node.as_ref().is_some_and(|x| x.is_leader()))
            .collect();
        if !leaders.is_empty() && self.rng.range(0, 100) < self.profile.to_leader_pct {
            leaders[self.rng.range(0, leaders.len() as u64) as usize]
        } else {
            self.rng.range(0, n as u64) as usize
        }
    }

    fn clients(&mut self, issue: bool) {
        let now = self.now();
        for c in 0..self.clients.len() {
            if let Some((op, give_up)) = self.clients[c].in_flight {
                let answered = self.history.lock().unwrap().open.get(&op) == Some(&true);
                if answered {
                    let op = self.history.lock().unwrap().ops[op].clone();
                    self.log(format!(
                        "c{} {:?} k{} done: {:?}",
                        op.client, op.input, op.key, op.outcome
                    ));
                    self.clients[c].in_flight = None;
                    self.clients[c].next_at = now + self.rng.range(0, self.profile.think_us);
                } else if now >= give_up {
                    // The outcome stays unknown: the op is left open.
                    self.clients[c].in_flight = None;
                    self.clients[c].next_at = now;
                }
                continue;
            }
            if !issue || now < self.clients[c].next_at {
                continue;
            }
            let target = self.leader_guess();
            let Some(node) = self.slots[target].node.as_ref() else {
                self.clients[c].next_at = now + 5_000;
                continue;
            };
            let key = self.rng.range(0, self.profile.keys);
            // Writes half the time; reads by ReadIndex, by `lease_read`, or
            // straight from the state machine after `is_leader_lease_valid`.
            let kind = self.rng.range(0, 6);
            if kind == 5 && self.profile.lease_reads {
                if node.lease_valid() {
                    let value = self.slots[target]
                        .regs
                        .lock()
                        .unwrap()
                        .map
                        .get(&key)
                        .copied();
                    let client = &self.clients[c];
                    self.history.lock().unwrap().ops.push(Op {
                        client: client.id,
                        key,
                        input: Input::Read,
                        outcome: Outcome::Ok(Output::Read(value.unwrap_or(0))),
                        call: now,
                        ret: now,
                    });
                    self.stats.lease_reads += 1;
                    let st = node.status();
                    let line = format!(
                        "c{} local read k{key} at {} under its lease: {value:?} (commit {} applied {})",
                        client.id, self.slots[target].id, st.commit, st.applied
                    );
                    self.log(line);
                }
                self.clients[c].next_at = now + self.rng.range(0, 20_000);
                continue;
            }
            let client = &mut self.clients[c];
            client.seq += 1;
            let value = (client.id + 1) << 32 | client.seq;
            let mut history = self.history.lock().unwrap();
            let index = history.ops.len();
            let input = if kind < 3 {
                Input::Write(value)
            } else {
                Input::Read
            };
            history.ops.push(Op {
                client: client.id,
                key,
                input,
                outcome: Outcome::Unknown,
                call: now,
                ret: 0,
            });
            history.open.insert(index, false);
            drop(history);
            client.in_flight = Some((index, now + 1_000_000));
            let hist = self.history.clone();
            let clock = self.now.clone();
            let regs = self.slots[target].regs.clone();
            let done = Done::new(move |status: Status| {
                let mut h = hist.lock().unwrap();
                h.open.insert(index, true);
                let op = &mut h.ops[index];
                if status.is_ok() {
                    op.outcome = Outcome::Ok(match input {
                        Input::Read => {
                            Output::Read(regs.lock().unwrap().map.get(&key).copied().unwrap_or(0))
                        }
                        _ => Output::Write,
                    });
                    op.ret = clock.load(Ordering::Relaxed);
                }
            });
            let how = match input {
                Input::Write(_) => "apply",
                _ if kind == 4 && self.profile.lease_reads => "lease_read",
                _ => "read_index",
            };
            let line = format!(
                "c{} {input:?} k{key} -> {} by {how}",
                client.id, self.slots[target].id
            );
            match input {
                Input::Write(v) => node.apply(Task {
                    data: encode_write(key, v),
                    done: Some(done),
                    expected_term: -1,
                }),
                _ if kind == 4 && self.profile.lease_reads => {
                    self.stats.lease_reads += 1;
                    node.lease_read(done)
                }
                _ => node.read_index(done),
            }
            self.log(line);
        }
    }

    /// One simulated millisecond.
    fn step(&mut self, issue: bool) {
        let now = self.now() + STEP_US;
        self.now.store(now, Ordering::Relaxed);
        self.stats.steps += 1;
        self.faults();
        self.deliver();
        self.step_nodes();
        self.route();
        self.clients(issue);
        self.detect_failures();
        self.check_leaders();
    }

    /// The transport's failure detector, simulated: a node that could not
    /// reach a peer (down, or either one isolated) for `suspect_us`
    /// suspects it (a quiescent one wakes, a follower of that leader plans
    /// its campaign). A paused peer keeps its connections, so it
    /// is not suspected.
    fn detect_failures(&mut self) {
        if self.profile.suspect_us == 0 {
            return;
        }
        let now = self.now();
        let n = self.slots.len();
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                if self.slots[j].node.is_some() && !self.cut(i, j) {
                    self.slots[i].reached_at[j] = now;
                    continue;
                }
                if now - self.slots[i].reached_at[j] < self.profile.suspect_us
                    || self.slots[i].paused_until > now
                {
                    continue;
                }
                let peer = self.slots[j].id.clone();
                let Some(node) = self.slots[i].node.as_mut() else {
                    continue;
                };
                let quiescent = node.status().quiescent;
                // Awake followers plan their campaign on it too.
                node.peer_suspected(&peer);
                if quiescent {
                    let line = format!("{} suspects {peer}", self.slots[i].id);
                    self.log(line);
                }
            }
        }
    }

    fn run(&mut self, fault_ms: u64, settle_ms: u64) -> Result<(), String> {
        self.heal_at = fault_ms * 1000;
        for _ in 0..fault_ms {
            self.step(true);
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
        }
        for slot in &mut self.slots {
            slot.paused_until = 0;
            slot.isolated_until = 0;
            slot.down_until = slot.down_until.min(self.now.load(Ordering::Relaxed));
        }
        self.log("heal".into());
        for _ in 0..settle_ms {
            self.step(false);
            if let Some(v) = &self.violation {
                return Err(v.clone());
            }
        }
        self.final_checks()
    }

    fn final_checks(&mut self) -> Result<(), String> {
        // Every member of the final configuration converges on the same
        // applied state (a removed node stops hearing from the group).
        let leader = self
            .current_leader()
            .ok_or_else(|| "no leader after healing".to_string())?;
        let conf = self.slots[leader]
            .node
            .as_ref()
            .unwrap()
            .status()
            .configuration;
        let mut views = Vec::new();
        for slot in &self.slots {
            if !conf.voters.contains(&slot.id) && !conf.learners.contains(&slot.id) {
                continue;
            }
            let node = slot.node.as_ref().ok_or(format!("{} is down", slot.id))?;
            let st = node.status();
            views.push((st.applied, st.commit, slot.regs.lock().unwrap().map.clone()));
        }
        if views.windows(2).any(|w| w[0] != w[1]) {
            let states: Vec<String> = self
                .slots
                .iter()
                .filter(|s| conf.voters.contains(&s.id) || conf.learners.contains(&s.id))
                .filter_map(|s| s.node.as_ref())
                .map(|n| {
                    let st = n.status();
                    format!(
                        "{} {:?} term {} leader {:?} log {}..={} snapshot {} commit {} applied {} peers {:?}",
                        st.id, st.role, st.term, st.leader, st.first_index, st.last_index,
                        st.snapshot_index, st.commit, st.applied, st.peers
                    )
                })
                .collect();
            return Err(format!(
                "replicas did not converge: {views:?}\n{}",
                states.join("\n")
            ));
        }
        // Every acknowledged write was applied (at one index, by everyone).
        let applied: std::collections::BTreeSet<u64> = self
            .applied
            .lock()
            .unwrap()
            .at
            .values()
            .filter_map(|d| decode_write(d).map(|(_, v)| v))
            .collect();
        let history = self.history.lock().unwrap();
        for op in &history.ops {
            if let (Input::Write(v), Outcome::Ok(_)) = (op.input, op.outcome) {
                if !applied.contains(&v) {
                    return Err(format!(
                        "acknowledged write {v:#x} of key {} is lost",
                        op.key
                    ));
                }
            }
        }
        // The history, with a final read of every key, is linearizable.
        let mut ops = history.ops.clone();
        let end = self.now.load(Ordering::Relaxed) + 1;
        for (key, value) in &views[0].2 {
            ops.push(Op {
                client: 1000,
                key: *key,
                input: Input::Read,
                outcome: Outcome::Ok(Output::Read(*value)),
                call: end,
                ret: end,
            });
        }
        drop(history);
        self.stats.acked_writes = ops
            .iter()
            .filter(|o| matches!((o.input, o.outcome), (Input::Write(_), Outcome::Ok(_))))
            .count() as u64;
        self.stats.reads = ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(Output::Read(_))))
            .count() as u64;
        match linearizability::check(&ops, 2_000_000) {
            Verdict::Linearizable | Verdict::Inconclusive { .. } => Ok(()),
            Verdict::Violation { key, detail } => Err(format!(
                "history of key {key} is not linearizable:\n{detail}"
            )),
        }
    }
}

// ----- runs ---------------------------------------------------------------------

const FAULT_MS: u64 = 3_000;
const SETTLE_MS: u64 = 3_000;

fn nodes_for(seed: u64) -> usize {
    if seed % 2 == 0 {
        3
    } else {
        5
    }
}

/// Runs one seed; Err carries the violation and the trace.
fn run_seed(seed: u64, profile: Profile, verbose: bool) -> (Stats, Result<(), String>) {
    let mut world = World::new(seed, nodes_for(seed), profile, verbose);
    let result = world.run(FAULT_MS, SETTLE_MS);
    let result = result.map_err(|v| {
        let trace: Vec<String> = world.trace.iter().cloned().collect();
        format!(
            "seed {seed}: {v}\nreplay: RSIM_SEED={seed} cargo test --release --test sim -- runtime::replay --nocapture\n{}",
            trace[trace.len().saturating_sub(60)..].join("\n")
        )
    });
    (world.stats, result)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// Runs `count` seeds from `start` on two threads; returns the totals and
/// the failures.
fn run_seeds(start: u64, count: u64, profile: Profile) -> (Stats, Vec<String>) {
    let next = Arc::new(AtomicU64::new(start));
    let totals = Arc::new(Mutex::new((Stats::default(), Vec::new())));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let next = next.clone();
            let totals = totals.clone();
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    break;
                }
                let (stats, result) = run_seed(seed, profile, false);
                let mut t = totals.lock().unwrap();
                t.0.steps += stats.steps;
                t.0.power_losses += stats.power_losses;
                t.0.whole_cluster_losses += stats.whole_cluster_losses;
                t.0.acked_writes += stats.acked_writes;
                t.0.reads += stats.reads;
                t.0.lease_reads += stats.lease_reads;
                t.0.snapshots_sent += stats.snapshots_sent;
                t.0.pauses += stats.pauses;
                t.0.membership_changes += stats.membership_changes;
                t.0.transfers += stats.transfers;
                t.0.quiescent_steps += stats.quiescent_steps;
                if let Err(e) = result {
                    t.1.push(e);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let t = totals.lock().unwrap();
    (t.0.clone(), t.1.clone())
}

/// `RSIM_PROFILE=durability|lease|apply-lag|quiesce|shared` picks a fault mix; `RSIM_MUTATION=ack|lease|tail|apply-lag|shared-skip-sync` puts a known defect back (for
/// exploring how fast the seeds find it).
fn profile_from_env() -> Profile {
    let base = match std::env::var("RSIM_PROFILE").as_deref() {
        Ok("durability") => DURABILITY_PROFILE,
        Ok("lease") => LEASE_PROFILE,
        Ok("apply-lag") => APPLY_LAG_PROFILE,
        Ok("quiesce") => QUIESCE_PROFILE,
        Ok("shared") => SHARED_LOG_PROFILE,
        Ok(other) if !other.is_empty() => panic!("unknown RSIM_PROFILE {other:?}"),
        _ => DEFAULT_PROFILE,
    };
    let mutation = match std::env::var("RSIM_MUTATION").as_deref() {
        Ok("ack") => Mutation::AckBeforeSync,
        Ok("lease") => Mutation::TickCountLease,
        Ok("tail") => Mutation::StrictTailRecovery,
        Ok("apply-lag") => Mutation::LeaseIgnoresApplyLag,
        Ok("shared-skip-sync") => Mutation::SharedLogRoundSkipsSync,
        Ok("quiet-beats") => Mutation::QuietBeatsForgetContact,
        Ok(other) if !other.is_empty() => panic!("unknown RSIM_MUTATION {other:?}"),
        _ => Mutation::None,
    };
    Profile { mutation, ..base }
}

#[test]
fn seeds() {
    let start = env_u64("RSIM_START").unwrap_or(1);
    let count = env_u64("RSIM_SEEDS").unwrap_or(300);
    let began = std::time::Instant::now();
    let (stats, failures) = run_seeds(start, count, profile_from_env());
    let line = format!(
        "runtime-sim: {count} seeds, {} steps, {} violations, {} power losses",
        stats.steps,
        failures.len(),
        stats.power_losses
    );
    let detail = format!(
        "  seeds {start}..{}, {:.1} s wall, whole-cluster power losses {}, pauses {}, \
         acknowledged writes {}, reads {} (lease reads asked {}), snapshots installed {}, \
         membership changes {}, leader transfers {}, heartbeats answered without a turn {}",
        start + count,
        began.elapsed().as_secs_f64(),
        stats.whole_cluster_losses,
        stats.pauses,
        stats.acked_writes,
        stats.reads,
        stats.lease_reads,
        stats.snapshots_sent,
        stats.membership_changes,
        stats.transfers,
        rraft::node::quiet_beat_answers()
    );
    // The raw stdout handle: the harness does not capture it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}\n{detail}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::write(
        dir.join("runtime-sim-summary.txt"),
        format!("{line}\n{detail}\n"),
    );
    for f in &failures {
        let _ = writeln!(out, "FAILED {}", f.lines().next().unwrap_or_default());
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds; the first:\n{}",
        failures.len(),
        failures[0]
    );
    assert!(stats.power_losses > 0, "no power loss was simulated");
}

#[test]
fn replay() {
    let Some(seed) = env_u64("RSIM_SEED") else {
        return;
    };
    let (stats, result) = run_seed(seed, profile_from_env(), true);
    println!("{stats:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Runs seeds from 1 up to `budget` (two at a time) until one fails in a
/// way `matches` accepts; returns that failure.
fn first_failure(profile: Profile, budget: u64, matches: fn(&str) -> bool) -> Option<String> {
    let next = Arc::new(AtomicU64::new(1));
    let found: Arc<Mutex<Option<String>>> = Arc::default();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (next, found) = (next.clone(), found.clone());
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed > budget || found.lock().unwrap().is_some() {
                    break;
                }
                if let (_, Err(e)) = run_seed(seed, profile, false) {
                    if matches(&e) {
                        found.lock().unwrap().get_or_insert(e);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let found = found.lock().unwrap().clone();
    found
}

/// A lost or overwritten acknowledged write, or diverged replicas.
fn is_lost_write(failure: &str) -> bool {
    failure.contains("another node applied")
        || failure.contains("is lost")
        || failure.contains("did not converge")
        || failure.contains("not linearizable")
}

/// `mutation` over the `base` fault mix must make one of seeds 1..=`budget`
/// fail in a way `matches` accepts; `unnoticed` says what it would mean if
/// none did.
fn assert_mutation_found(
    mutation: Mutation,
    base: Profile,
    budget: u64,
    matches: fn(&str) -> bool,
    unnoticed: &str,
) {
    let found = first_failure(Profile { mutation, ..base }, budget, matches);
    assert!(found.is_some(), "{unnoticed} in {budget} seeds");
}

#[test]
fn mutation_ack_before_sync_is_found() {
    assert_mutation_found(
        Mutation::AckBeforeSync,
        DURABILITY_PROFILE,
        100,
        is_lost_write,
        "followers that acknowledge ahead of their disk lose no write",
    );
}

#[test]
fn mutation_tick_count_lease_is_found() {
    assert_mutation_found(
        Mutation::TickCountLease,
        LEASE_PROFILE,
        300,
        |f| f.contains("not linearizable"),
        "a lease counted in delivered ticks serves no stale read",
    );
}

#[test]
fn mutation_lease_ignores_apply_lag_is_found() {
    assert_mutation_found(
        Mutation::LeaseIgnoresApplyLag,
        APPLY_LAG_PROFILE,
        100,
        |f| f.contains("publishes a valid lease") || f.contains("not linearizable"),
        "a lease published while committed entries await their apply goes unnoticed",
    );
}

#[test]
fn mutation_strict_tail_recovery_is_found() {
    assert_mutation_found(
        Mutation::StrictTailRecovery,
        DURABILITY_PROFILE,
        100,
        |f| f.contains("cannot start"),
        "refusing a torn unsynced batch stops no node from starting",
    );
}

#[test]
fn mutation_ack_before_sync_is_found_on_a_shared_log() {
    assert_mutation_found(
        Mutation::AckBeforeSync,
        SHARED_LOG_PROFILE,
        100,
        is_lost_write,
        "followers on shared logs that acknowledge ahead of their disk lose no write",
    );
}

#[test]
fn mutation_shared_log_round_skips_sync_is_found() {
    assert_mutation_found(
        Mutation::SharedLogRoundSkipsSync,
        SHARED_LOG_PROFILE,
        100,
        is_lost_write,
        "a shared log that acknowledges rounds it never synced loses no write",
    );
}

/// The fault mixes the mutation checks use pass without the mutation.
#[test]
fn durability_and_lease_profiles_pass() {
    for (profile, seeds) in [
        (DURABILITY_PROFILE, 24),
        (LEASE_PROFILE, 24),
        (SHARED_LOG_PROFILE, 24),
    ] {
        let (_, failures) = run_seeds(1000, seeds, profile);
        assert!(failures.is_empty(), "{}", failures[0]);
    }
}

/// Quiescent groups under power losses, partitions, pauses and clock
/// drift: linearizable ReadIndex and lease reads, no lost write, and the
/// group recovers.
#[test]
fn quiescent_groups_pass() {
    let (stats, failures) = run_seeds(2000, 24, QUIESCE_PROFILE);
    assert!(failures.is_empty(), "{}", failures[0]);
    assert!(stats.quiescent_steps > 0, "no node ever quiesced");
    println!(
        "runtime-sim quiescent: 24 seeds, {} of {} node-steps quiescent, {} reads, {} writes",
        stats.quiescent_steps,
        stats.steps * 4,
        stats.reads,
        stats.acked_writes
    );
}

/// The same seed gives the same run.
#[test]
fn runs_are_deterministic() {
    for profile in [DEFAULT_PROFILE, SHARED_LOG_PROFILE] {
        let a = run_seed(7, profile, false);
        let b = run_seed(7, profile, false);
        assert_eq!(format!("{:?}", a.0), format!("{:?}", b.0));
        assert_eq!(a.1, b.1);
    }
}
