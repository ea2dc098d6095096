//! A key-value workload on simulated `rraft::core::Raft` clusters, for the
//! linearizability checker. Self-contained (the main simulator in
//! `tests/sim/` checks the Raft invariants; this one checks what clients
//! see): 3 or 5 voters, a lossy, duplicating, reordering network with
//! partitions, disks that make each Ready durable after a random delay,
//! crashes that lose the unwritten part and restarts from the durable state, snapshots and
//! log compaction (lagging peers catch up by InstallSnapshot), and clients
//! that issue read / write / compare-and-set on a few keys:
//!
//! - writes and CAS are proposed as log entries (to the leader, sometimes to
//!   a follower, which refuses); the proposer answers when it applies the
//!   entry's index: same term → ok (CAS with its comparison result), another
//!   term → failed; a crash or a timeout leaves the outcome unknown;
//! - reads go through ReadIndex on any node (followers forward) and are
//!   served once the node applied the read index; or, on the leader, as lease
//!   reads while `is_lease_valid()` (and an entry of its term committed).
//!
//! Every client event gets a logical time (tick, sequence number); the history goes to
//! `checker::check` at the end of the run.

use std::collections::BTreeMap;

use bytes::Bytes;
use rraft::core::rng::Rng;
use rraft::core::{
    Config, Configuration, Entry, EntryType, HardState, InitialState, LogStorage, MemStorage,
    Message, MessageType, Raft, Ready, Role, SnapshotMeta,
};

use super::checker::{Input, Op, Outcome, Output, Value};

/// A deliberate bug, to show the checker catches what it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Serve lease reads from any up node's local state, with no lease
    /// (stale follower reads).
    LocalReads,
    /// Serve ReadIndex reads at once, before applying up to the read index.
    EagerReads,
}

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub nodes: Option<usize>,
    pub mutation: Option<Mutation>,
    pub verbose: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Run {
    pub history: Vec<Op>,
    pub ticks: u64,
    pub lease_reads: u64,
    pub index_reads: u64,
    pub crashes: u64,
    pub elections: u64,
    /// Set when the run itself broke (a core error or panic).
    pub error: Option<String>,
}

/// The state machine: a map, the applied position, and CAS answers.
#[derive(Clone, Debug, Default)]
struct Kv {
    map: BTreeMap<u64, Value>,
    index: u64,
    term: u64,
}

const KEYS: u64 = 3;
const CLIENTS: u64 = 5;

enum Cmd {
    Write { key: u64, value: Value },
    Cas { key: u64, expect: Value, new: Value },
}

fn encode(op: u64, cmd: &Cmd) -> Bytes {
    let (kind, key, a, b) = match *cmd {
        Cmd::Write { key, value } => (1u8, key, value, 0),
        Cmd::Cas { key, expect, new } => (2u8, key, expect, new),
    };
    let mut v = vec![kind];
    for x in [op, key, a, b] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    Bytes::from(v)
}

/// Applies one entry; returns (op id, CAS result) for KV commands.
fn apply(kv: &mut Kv, e: &Entry) -> Option<(u64, bool)> {
    kv.index = e.index;
    kv.term = e.term;
    if e.entry_type != EntryType::Data as i32 || e.data.len() != 33 {
        return None;
    }
    let d = &e.data;
    let u = |i: usize| u64::from_le_bytes(d[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes"));
    let (op, key, a, b) = (u(0), u(1), u(2), u(3));
    match d[0] {
        1 => {
            kv.map.insert(key, a);
            Some((op, true))
        }
        2 => {
            let cur = kv.map.get(&key).copied().unwrap_or(0);
            let ok = cur == a;
            if ok {
                kv.map.insert(key, b);
            }
            Some((op, ok))
        }
        _ => None,
    }
}

struct Node {
    raft: Option<Raft<MemStorage>>,
    /// Durable state.
    hs: HardState,
    snap: Option<(SnapshotMeta, Kv)>,
    down_log: MemStorage,
    kv: Kv,
    incarnation: u64,
    role: Role,
    term: u64,
    /// Proposals of this incarnation: index → (term, op id).
    proposals: BTreeMap<u64, (u64, u64)>,
    /// Confirmed ReadIndex reads waiting for the state machine: (op, index).
    reads: Vec<(u64, u64)>,
    incoming: BTreeMap<(u64, u64), Kv>,
    /// Writes not yet durable.
    disk: Vec<Write>,
}

/// One Ready's persistence, completed at tick `at`.
struct Write {
    at: u64,
    snap: Option<(SnapshotMeta, Kv)>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    persisted_messages: Vec<Message>,
}

struct Env {
    at: u64,
    seq: u64,
    from: usize,
    to: usize,
    from_inc: u64,
    to_inc: u64,
    msg: Message,
    snap: Option<Kv>,
}

#[derive(Clone, Copy)]
enum Pending {
    /// A write or CAS; `ix` is the history entry.
    Update {
        ix: usize,
    },
    Read {
        ix: usize,
        key: u64,
    },
}

struct Client {
    busy: Option<(u64, Pending, u64)>, // (op id, what, deadline tick)
    last_seen: [Value; KEYS as usize],
}

struct Sim {
    rng: Rng,
    opts: RunOptions,
    ids: Vec<String>,
    genesis: Configuration,
    nodes: Vec<Node>,
    net: Vec<Env>,
    net_seq: u64,
    cut: Vec<Vec<bool>>,
    loss: u64,
    dup: u64,
    max_delay: u64,
    election_ticks: u32,
    snap_every: u64,
    disk_delay_max: u64,
    now: u64,
    clock: u64,
    next_op: u64,
    clients: Vec<Client>,
    /// op id → (client index, history index).
    ops: BTreeMap<u64, (usize, usize)>,
    run: Run,
    seed: u64,
}

/// Runs one seed and returns the history (to be checked by the caller).
pub fn run_seed(seed: u64, opts: &RunOptions) -> Run {
    let mut sim = Sim::new(seed, opts.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => sim.run.error = Some(e),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            sim.run.error = Some(format!("panic: {msg}"));
        }
    }
    sim.run.ticks = sim.now;
    std::mem::take(&mut sim.run)
}

impl Sim {
    fn new(seed: u64, opts: RunOptions) -> Sim {
        let mut rng = Rng::new(seed ^ 0x11C4_EC00_0000_0001);
        let voters = opts.nodes.unwrap_or(if seed % 2 == 0 { 3 } else { 5 });
        let ids: Vec<String> = (1..=voters).map(|i| format!("n{i}")).collect();
        let genesis = Configuration {
            voters: ids.clone(),
            learners: vec![],
            old_voters: vec![],
        };
        let nodes = (0..voters)
            .map(|_| Node {
                raft: None,
                hs: HardState::default(),
                snap: None,
                down_log: MemStorage::new(),
                kv: Kv::default(),
                incarnation: 0,
                role: Role::Follower,
                term: 0,
                proposals: BTreeMap::new(),
                reads: Vec::new(),
                incoming: BTreeMap::new(),
                disk: Vec::new(),
            })
            .collect();
        let loss = rng.range(0, 15);
        let dup = rng.range(0, 5);
        let max_delay = rng.range(1, 6);
        let election_ticks = rng.range(10, 21) as u32;
        let snap_every = rng.range(5, 40);
        let disk_delay_max = rng.range(0, 4);
        Sim {
            rng,
            opts,
            cut: vec![vec![false; voters]; voters],
            ids,
            genesis,
            nodes,
            net: Vec::new(),
            net_seq: 0,
            loss,
            dup,
            max_delay,
            election_ticks,
            snap_every,
            disk_delay_max,
            now: 0,
            clock: 0,
            next_op: 1,
            clients: (0..CLIENTS)
                .map(|_| Client {
                    busy: None,
                    last_seen: [0; KEYS as usize],
                })
                .collect(),
            ops: BTreeMap::new(),
            run: Run::default(),
            seed,
        }
    }

    fn log(&self, s: impl FnOnce() -> String) {
        if self.opts.verbose {
            println!("[{:5}] {}", self.now, s());
        }
    }

    /// Logical time of a client event: the tick in the high bits, a
    /// sequence number that orders events within (and across) ticks below.
    fn time(&mut self) -> u64 {
        self.clock += 1;
        self.now << 32 | self.clock
    }

    fn run(&mut self) -> Result<(), String> {
        for ix in 0..self.nodes.len() {
            self.restart(ix)?;
        }
        let chaos = self.rng.range(250, 500);
        for _ in 0..chaos {
            self.tick(true)?;
        }
        // Quiet phase: heal and restart everyone; outstanding ops finish.
        for row in &mut self.cut {
            row.iter_mut().for_each(|c| *c = false);
        }
        self.loss = 0;
        self.dup = 0;
        for ix in 0..self.nodes.len() {
            if self.nodes[ix].raft.is_none() {
                self.restart(ix)?;
            }
        }
        for _ in 0..(10 * u64::from(self.election_ticks)) {
            self.tick(false)?;
        }
        // Whatever is still pending is unknown (reads: dropped).
        for c in 0..self.clients.len() {
            self.give_up(c);
        }
        Ok(())
    }

    fn tick(&mut self, chaos: bool) -> Result<(), String> {
        self.now += 1;
        for ix in 0..self.nodes.len() {
            if let Some(r) = self.nodes[ix].raft.as_mut() {
                r.tick();
                self.drain(ix)?;
            }
        }
        self.deliver()?;
        self.complete_disks()?;
        if chaos {
            self.faults()?;
        }
        self.clients(chaos)?;
        Ok(())
    }

    // ----- faults ------------------------------------------------------

    fn faults(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        if self.rng.chance(1, 60) {
            let down = self.nodes.iter().filter(|x| x.raft.is_none()).count();
            let ix = self.rng.range(0, n as u64) as usize;
            if down < n / 2 {
                self.crash(ix);
            }
        }
        if self.rng.chance(1, 25) {
            let ix = self.rng.range(0, n as u64) as usize;
            if self.nodes[ix].raft.is_none() {
                self.restart(ix)?;
            }
        }
        if self.rng.chance(1, 50) {
            // Split into two sides at random (sometimes the leader alone).
            let side: Vec<bool> = match self.leader() {
                Some(l) if self.rng.chance(1, 2) => (0..n).map(|i| i == l).collect(),
                _ => (0..n).map(|_| self.rng.chance(1, 2)).collect(),
            };
            for a in 0..n {
                for b in 0..n {
                    self.cut[a][b] = side[a] != side[b];
                }
            }
            self.log(|| format!("partition {side:?}"));
        }
        if self.rng.chance(1, 40) {
            for row in &mut self.cut {
                row.iter_mut().for_each(|c| *c = false);
            }
            self.log(|| "heal".into());
        }
        Ok(())
    }

    fn crash(&mut self, ix: usize) {
        let node = &mut self.nodes[ix];
        let Some(raft) = node.raft.take() else {
            return;
        };
        node.down_log = raft.storage().clone();
        node.incarnation += 1;
        node.role = Role::Follower;
        node.proposals.clear();
        node.reads.clear();
        node.incoming.clear();
        node.disk.clear();
        self.run.crashes += 1;
        self.log(|| format!("crash n{}", ix + 1));
    }

    fn restart(&mut self, ix: usize) -> Result<(), String> {
        let config = Config {
            id: self.ids[ix].clone(),
            election_ticks: self.election_ticks,
            heartbeat_ticks: 2,
            max_entries_per_msg: 8,
            max_bytes_per_msg: 4096,
            max_inflight_msgs: 16,
            catchup_margin: 10,
            catchup_ticks: self.election_ticks * 3,
            max_clock_drift_ticks: 0,
            seed: self.seed ^ ((ix as u64) << 40) ^ self.nodes[ix].incarnation,
        };
        let node = &mut self.nodes[ix];
        let log = std::mem::take(&mut node.down_log);
        let si = node.snap.as_ref().map_or(0, |(m, _)| m.last_index);
        node.kv = node
            .snap
            .as_ref()
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        let init = InitialState {
            hard_state: node.hs.clone(),
            snapshot: node.snap.as_ref().map(|(m, _)| m.clone()),
            configurations: vec![],
            initial_conf: self.genesis.clone(),
            applied: si,
        };
        let raft = Raft::new(config, log, init).map_err(|e| format!("n{} restart: {e}", ix + 1))?;
        node.role = raft.role();
        node.term = raft.term();
        node.raft = Some(raft);
        self.log(|| format!("start n{} from snapshot {si}", ix + 1));
        self.drain(ix)
    }

    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.raft.is_some() && n.role == Role::Leader)
            .max_by_key(|(_, n)| n.term)
            .map(|(i, _)| i)
    }

    // ----- the Ready contract -------------------------------------------

    fn drain(&mut self, ix: usize) -> Result<(), String> {
        for _ in 0..10_000 {
            let Some(raft) = self.nodes[ix].raft.as_mut() else {
                return Ok(());
            };
            if !raft.has_ready() {
                return Ok(());
            }
            let rd = raft.ready();
            self.handle_ready(ix, rd)?;
        }
        Err(format!("n{} has_ready() stays true", ix + 1))
    }

    fn handle_ready(&mut self, ix: usize, rd: Ready) -> Result<(), String> {
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            read_states,
            events: _,
        } = rd;
        let node = &mut self.nodes[ix];
        if let Some(ss) = soft_state {
            if ss.role == Role::Leader && node.role != Role::Leader {
                self.run.elections += 1;
            }
            node.role = ss.role;
            node.term = node.term.max(ss.term);
        }
        let mut snap = None;
        if let Some(meta) = snapshot {
            let key = (meta.last_index, meta.last_term);
            let state = node
                .incoming
                .get(&key)
                .cloned()
                .ok_or_else(|| format!("n{} Ready.snapshot {key:?} never received", ix + 1))?;
            snap = Some((meta, state));
        }
        if let Some(hs) = &hard_state {
            node.term = node.term.max(hs.term);
        }
        for m in messages {
            self.send(ix, m)?;
        }
        // The disk: written after a delay, in order; lost on a crash.
        if snap.is_some()
            || !entries.is_empty()
            || hard_state.is_some()
            || !persisted_messages.is_empty()
        {
            let at = self.now + self.rng.range(0, self.disk_delay_max + 1);
            self.nodes[ix].disk.push(Write {
                at,
                snap,
                entries,
                hard_state,
                persisted_messages,
            });
        }
        if !committed_entries.is_empty() {
            self.apply(ix, committed_entries)?;
        }
        for rs in read_states {
            let b: [u8; 8] = rs.context.as_ref().try_into().map_err(|_| "bad ctx")?;
            self.nodes[ix].reads.push((u64::from_le_bytes(b), rs.index));
        }
        self.serve_reads(ix);
        Ok(())
    }

    /// Completes the disk writes due now, in order.
    fn complete_disks(&mut self) -> Result<(), String> {
        for ix in 0..self.nodes.len() {
            while self.nodes[ix].raft.is_some()
                && self.nodes[ix]
                    .disk
                    .first()
                    .is_some_and(|w| w.at <= self.now)
            {
                let w = self.nodes[ix].disk.remove(0);
                self.complete_write(ix, w)?;
                self.drain(ix)?;
            }
        }
        Ok(())
    }

    fn complete_write(&mut self, ix: usize, w: Write) -> Result<(), String> {
        let node = &mut self.nodes[ix];
        let raft = node.raft.as_mut().expect("up");
        let mut persisted = None;
        let mut installed = None;
        if let Some((meta, state)) = w.snap {
            let key = (meta.last_index, meta.last_term);
            if state.index < node.kv.index {
                return Err(format!("n{} installs a snapshot behind its state", ix + 1));
            }
            raft.storage_mut().reset(meta.last_index);
            node.kv = state.clone();
            node.snap = Some((meta, state));
            persisted = Some(key);
            installed = Some(key.0);
        }
        if let Some(last) = w.entries.last() {
            let storage = raft.storage_mut();
            let first = storage.first_index();
            let skip = w.entries.iter().take_while(|e| e.index < first).count();
            storage
                .append(&w.entries[skip..])
                .map_err(|e| format!("n{} append: {e}", ix + 1))?;
            persisted = Some((last.index, last.term));
        }
        if let Some(hs) = w.hard_state {
            node.hs = hs;
        }
        if let Some((i, t)) = persisted {
            raft.on_persisted(i, t);
        }
        if let Some(lo) = installed {
            raft.on_applied(lo);
            node.incoming.retain(|k, _| k.0 > lo);
            self.serve_reads(ix);
        }
        for m in w.persisted_messages {
            self.send(ix, m)?;
        }
        Ok(())
    }

    fn apply(&mut self, ix: usize, entries: Vec<Entry>) -> Result<(), String> {
        let last = entries[entries.len() - 1].index;
        for e in &entries {
            let node = &mut self.nodes[ix];
            if e.index != node.kv.index + 1 {
                return Err(format!(
                    "n{} applies {} after {}",
                    ix + 1,
                    e.index,
                    node.kv.index
                ));
            }
            let result = apply(&mut node.kv, e);
            if let Some((term, op)) = node.proposals.remove(&e.index) {
                match result {
                    Some((got, cas_ok)) if term == e.term && got == op => {
                        self.complete(op, Outcome::Ok(Output::Cas(cas_ok)))
                    }
                    _ if term == e.term => {
                        return Err(format!("n{} index {} changed payload", ix + 1, e.index))
                    }
                    _ => self.complete(op, Outcome::Fail),
                }
            }
        }
        let node = &mut self.nodes[ix];
        let raft = node.raft.as_mut().expect("up");
        raft.on_applied(last);
        // Snapshot now and then; compact a little behind it.
        let since = node.snap.as_ref().map_or(0, |(m, _)| m.last_index);
        if node.kv.index >= since + self.snap_every {
            let meta = SnapshotMeta {
                last_index: node.kv.index,
                last_term: node.kv.term,
                configuration: Some(self.genesis.clone()),
            };
            node.snap = Some((meta.clone(), node.kv.clone()));
            raft.on_snapshot(meta);
            let lag = self.rng.range(0, 8);
            let storage = raft.storage_mut();
            let upto = (node.kv.index + 1)
                .saturating_sub(lag)
                .min(storage.last_index() + 1);
            if upto > storage.first_index() {
                storage.compact(upto);
            }
        }
        Ok(())
    }

    fn serve_reads(&mut self, ix: usize) {
        let node = &mut self.nodes[ix];
        if node.reads.is_empty() {
            return;
        }
        let applied = node.kv.index;
        let eager = self.opts.mutation == Some(Mutation::EagerReads);
        let (ready, waiting): (Vec<_>, Vec<_>) = node
            .reads
            .drain(..)
            .partition(|&(_, i)| eager || i <= applied);
        node.reads = waiting;
        for (op, _) in ready {
            let Some(&(c, _)) = self.ops.get(&op) else {
                continue;
            };
            if let Some((id, Pending::Read { key, .. }, _)) = self.clients[c].busy {
                if id == op {
                    let v = self.nodes[ix].kv.map.get(&key).copied().unwrap_or(0);
                    self.run.index_reads += 1;
                    self.complete(op, Outcome::Ok(Output::Read(v)));
                }
            }
        }
    }

    // ----- network ------------------------------------------------------

    fn send(&mut self, from: usize, msg: Message) -> Result<(), String> {
        let to = self
            .ids
            .iter()
            .position(|x| *x == msg.to)
            .ok_or_else(|| format!("unknown peer {}", msg.to))?;
        let snap = if msg.kind() == Some(MessageType::InstallSnapshot) {
            let meta = msg.snapshot.clone().ok_or("snapshot without meta")?;
            match &self.nodes[from].snap {
                Some((m, s))
                    if m.last_index == meta.last_index && m.last_term == meta.last_term =>
                {
                    Some(s.clone())
                }
                _ => return Err(format!("n{} sends a snapshot it does not hold", from + 1)),
            }
        } else {
            None
        };
        let copies = if self.rng.chance(self.dup, 100) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range(0, self.max_delay + 1);
            self.net_seq += 1;
            self.net.push(Env {
                at,
                seq: self.net_seq,
                from,
                to,
                from_inc: self.nodes[from].incarnation,
                to_inc: self.nodes[to].incarnation,
                msg: msg.clone(),
                snap: snap.clone(),
            });
        }
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), String> {
        loop {
            // The earliest due message (ties: random among them).
            let due: Vec<usize> = (0..self.net.len())
                .filter(|&i| self.net[i].at <= self.now)
                .collect();
            if due.is_empty() {
                return Ok(());
            }
            let pick = due[self.rng.range(0, due.len() as u64) as usize];
            let env = self.net.swap_remove(pick);
            let _ = env.seq;
            let node = &self.nodes[env.to];
            let lost = node.raft.is_none()
                || node.incarnation != env.to_inc
                || self.cut[env.from][env.to]
                || self.rng.chance(self.loss, 100);
            let is_snap = env.msg.kind() == Some(MessageType::InstallSnapshot);
            let sender_same = self.nodes[env.from].incarnation == env.from_inc;
            if lost {
                if is_snap && sender_same {
                    if let Some(r) = self.nodes[env.from].raft.as_mut() {
                        r.report_snapshot(&self.ids[env.to], false);
                        self.drain(env.from)?;
                    }
                }
                continue;
            }
            let node = &mut self.nodes[env.to];
            if let (Some(s), Some(m)) = (env.snap, &env.msg.snapshot) {
                node.incoming.insert((m.last_index, m.last_term), s);
            }
            let raft = node.raft.as_mut().expect("up");
            raft.step(env.msg)
                .map_err(|e| format!("n{} step: {e}", env.to + 1))?;
            self.drain(env.to)?;
            if is_snap && sender_same {
                if let Some(r) = self.nodes[env.from].raft.as_mut() {
                    r.report_snapshot(&self.ids[env.to], true);
                    self.drain(env.from)?;
                }
            }
        }
    }

    // ----- clients -------------------------------------------------------

    fn complete(&mut self, op: u64, outcome: Outcome) {
        let Some(&(c, hix)) = self.ops.get(&op) else {
            return;
        };
        match self.clients[c].busy {
            Some((id, _, _)) if id == op => {}
            _ => return, // the client gave up on it already
        }
        let t = self.time();
        let h = &mut self.run.history[hix];
        // Outputs of updates are typed by their input.
        h.outcome = match (h.input, outcome) {
            (Input::Write(_), Outcome::Ok(_)) => Outcome::Ok(Output::Write),
            (_, o) => o,
        };
        h.ret = t;
        if let (Input::Read, Outcome::Ok(Output::Read(v))) = (h.input, outcome) {
            self.clients[c].last_seen[h.key as usize] = v;
        }
        if let (Input::Write(v), Outcome::Ok(_)) = (h.input, outcome) {
            self.clients[c].last_seen[h.key as usize] = v;
        }
        if let (Input::Cas(_, n), Outcome::Ok(Output::Cas(true))) = (h.input, outcome) {
            self.clients[c].last_seen[h.key as usize] = n;
        }
        let op_s = format!("{:?} -> {:?}", h.input, h.outcome);
        self.log(|| format!("client {c} op {op} done: {op_s}"));
        self.clients[c].busy = None;
    }

    /// The client stops waiting: updates become unknown, reads are dropped.
    fn give_up(&mut self, c: usize) {
        if let Some((_, p, _)) = self.clients[c].busy.take() {
            match p {
                Pending::Update { ix } => self.run.history[ix].outcome = Outcome::Unknown,
                Pending::Read { ix, .. } => self.run.history[ix].outcome = Outcome::Fail,
            }
        }
    }

    fn clients(&mut self, chaos: bool) -> Result<(), String> {
        let timeout = 4 * u64::from(self.election_ticks);
        for c in 0..self.clients.len() {
            if let Some((_, _, deadline)) = self.clients[c].busy {
                if self.now >= deadline {
                    self.give_up(c);
                }
                continue;
            }
            if !self.rng.chance(if chaos { 1 } else { 2 }, 3) {
                continue;
            }
            self.issue(c, timeout)?;
        }
        Ok(())
    }

    fn issue(&mut self, c: usize, timeout: u64) -> Result<(), String> {
        let n = self.nodes.len() as u64;
        let key = self.rng.range(0, KEYS);
        let op = self.next_op;
        self.next_op += 1;
        let kind = self.rng.range(0, 10);
        let input = match kind {
            0..=3 => Input::Read,
            4..=6 => Input::Write(op),
            _ => {
                let expect = if self.rng.chance(1, 4) {
                    0
                } else {
                    self.clients[c].last_seen[key as usize]
                };
                Input::Cas(expect, op)
            }
        };
        let call = self.time();
        let hix = self.run.history.len();
        self.run.history.push(Op {
            client: c as u64,
            key,
            input,
            outcome: Outcome::Fail,
            call,
            ret: call,
        });
        self.ops.insert(op, (c, hix));
        let deadline = self.now + timeout;
        let leader = self.leader();
        match input {
            Input::Read => {
                let lease = self.rng.chance(1, 3);
                self.clients[c].busy = Some((op, Pending::Read { ix: hix, key }, deadline));
                if lease {
                    // Any node that believes it leads (a deposed leader too).
                    let local = self.opts.mutation == Some(Mutation::LocalReads);
                    let leaders: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| {
                            self.nodes[i].raft.is_some()
                                && (local || self.nodes[i].role == Role::Leader)
                        })
                        .collect();
                    let l = if leaders.is_empty() {
                        None
                    } else {
                        Some(leaders[self.rng.range(0, leaders.len() as u64) as usize])
                    };
                    let Some(l) = l else {
                        self.give_up(c);
                        return Ok(());
                    };
                    let node = &self.nodes[l];
                    let raft = node.raft.as_ref().expect("up");
                    let commit = raft.commit_index();
                    let valid = raft.is_lease_valid()
                        && raft.term_at(commit) == Some(raft.term())
                        && node.kv.index >= commit;
                    if valid || local {
                        let v = node.kv.map.get(&key).copied().unwrap_or(0);
                        self.run.lease_reads += 1;
                        self.complete(op, Outcome::Ok(Output::Read(v)));
                    } else {
                        self.give_up(c);
                    }
                } else {
                    let ix = match leader {
                        Some(l) if self.rng.chance(1, 2) => l,
                        _ => self.rng.range(0, n) as usize,
                    };
                    let Some(raft) = self.nodes[ix].raft.as_mut() else {
                        self.give_up(c);
                        return Ok(());
                    };
                    if raft
                        .read_index(Bytes::copy_from_slice(&op.to_le_bytes()))
                        .is_err()
                    {
                        self.give_up(c);
                        return Ok(());
                    }
                    self.drain(ix)?;
                }
            }
            _ => {
                let cmd = match input {
                    Input::Write(value) => Cmd::Write { key, value },
                    Input::Cas(expect, new) => Cmd::Cas { key, expect, new },
                    Input::Read => unreachable!(),
                };
                let ix = match leader {
                    Some(l) if !self.rng.chance(1, 8) => l,
                    _ => self.rng.range(0, n) as usize,
                };
                self.clients[c].busy = Some((op, Pending::Update { ix: hix }, deadline));
                let Some(raft) = self.nodes[ix].raft.as_mut() else {
                    // Refused before it left: definitely not applied.
                    self.complete(op, Outcome::Fail);
                    return Ok(());
                };
                match raft.propose_batch(vec![encode(op, &cmd)]) {
                    Ok(p) => {
                        self.nodes[ix].proposals.insert(p.first_index, (p.term, op));
                        self.drain(ix)?;
                    }
                    Err(_) => self.complete(op, Outcome::Fail),
                }
            }
        }
        Ok(())
    }
}
