//! Randomized schedules with safety checks: message loss, reordering and
//! duplication, partitions, crashes with restarts from the durable state,
//! asynchronous persistence, membership changes, transfers and reads. A
//! small cousin of the simulator, to catch bugs before it does.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::rng::Rng;
use crate::testing::*;
use crate::*;

struct Node {
    raft: Raft<MemStorage>,
    /// Readys taken but not yet durable, oldest first.
    pending: VecDeque<Ready>,
    hard_state: HardState,
    snapshot: Option<SnapshotMeta>,
    applied: u64,
    up: bool,
}

struct Sim {
    rng: Rng,
    ids: Vec<String>,
    nodes: BTreeMap<String, Node>,
    inflight: Vec<Message>,
    /// index → (term, data) of every entry applied anywhere.
    applied: BTreeMap<u64, (u64, Bytes)>,
    /// term → leader.
    leaders: BTreeMap<u64, String>,
    cut: Vec<(String, String)>,
    proposals: u64,
    /// (changes completed, changes failed, snapshots installed, reads served)
    stats: (u64, u64, u64, u64),
    cfg_tweak: fn(&mut Config),
}

impl Sim {
    fn new(seed: u64, voters: &[&str], extra: &[&str], cfg_tweak: fn(&mut Config)) -> Sim {
        let mut nodes = BTreeMap::new();
        for id in voters.iter().chain(extra.iter()) {
            let mut cfg = test_config(id);
            cfg.seed = seed;
            cfg_tweak(&mut cfg);
            let initial = if voters.contains(id) {
                conf(voters)
            } else {
                Configuration::default()
            };
            nodes.insert(
                id.to_string(),
                Node {
                    raft: new_raft_with(cfg, initial),
                    pending: VecDeque::new(),
                    hard_state: HardState::default(),
                    snapshot: None,
                    applied: 0,
                    up: true,
                },
            );
        }
        Sim {
            rng: Rng::new(seed),
            ids: voters
                .iter()
                .chain(extra.iter())
                .map(|s| s.to_string())
                .collect(),
            nodes,
            inflight: Vec::new(),
            applied: BTreeMap::new(),
            leaders: BTreeMap::new(),
            cut: Vec::new(),
            proposals: 0,
            stats: (0, 0, 0, 0),
            cfg_tweak,
        }
    }

    fn pick(&mut self) -> String {
        let i = self.rng.range(0, self.ids.len() as u64) as usize;
        self.ids[i].clone()
    }

    fn check_leaders(&mut self) {
        for (id, n) in &self.nodes {
            if n.up && n.raft.role() == Role::Leader {
                let t = n.raft.term();
                if let Some(other) = self.leaders.get(&t) {
                    assert_eq!(other, id, "two leaders in term {t}");
                }
                self.leaders.insert(t, id.clone());
            }
        }
    }

    /// Takes Readys of `id` into its pending queue; sends immediate messages.
    fn collect(&mut self, id: &str) {
        let n = self.nodes.get_mut(id).unwrap();
        while n.raft.has_ready() {
            let mut rd = n.raft.ready();
            self.inflight.append(&mut rd.messages);
            n.pending.push_back(rd);
        }
    }

    /// Persists the oldest pending Ready of `id` and applies its entries.
    fn persist_one(&mut self, id: &str) {
        let n = self.nodes.get_mut(id).unwrap();
        let Some(rd) = n.pending.pop_front() else {
            return;
        };
        persist_ready(&mut n.raft, &rd);
        if let Some(hs) = &rd.hard_state {
            n.hard_state = hs.clone();
        }
        for e in &rd.events {
            match e {
                Event::ConfChangeDone(Ok(_)) => self.stats.0 += 1,
                Event::ConfChangeDone(Err(_)) => self.stats.1 += 1,
                _ => {}
            }
        }
        self.stats.3 += rd.read_states.len() as u64;
        if let Some(s) = &rd.snapshot {
            self.stats.2 += 1;
            n.snapshot = Some(s.clone());
            n.applied = n.applied.max(s.last_index);
        }
        self.inflight.extend(rd.persisted_messages);
        for e in &rd.committed_entries {
            assert_eq!(e.index, n.applied + 1, "{id}: applied out of order");
            n.applied = e.index;
            match self.applied.get(&e.index) {
                Some((t, d)) => assert!(
                    *t == e.term && *d == e.data,
                    "{id}: state machine safety violated at {}: ({}, {:?}) vs ({t}, {d:?})",
                    e.index,
                    e.term,
                    e.data
                ),
                None => {
                    self.applied.insert(e.index, (e.term, e.data.clone()));
                }
            }
        }
        if let Some(e) = rd.committed_entries.last() {
            n.raft.on_applied(e.index);
        }
    }

    fn crash_restart(&mut self, id: &str) {
        let n = self.nodes.get_mut(id).unwrap();
        n.pending.clear();
        let storage = n.raft.storage().clone();
        let configurations = configuration_entries(&storage);
        let mut cfg = n.raft.config().clone();
        cfg.seed = cfg.seed.wrapping_add(1);
        (self.cfg_tweak)(&mut cfg);
        let initial = if self.ids.len() > 3 && ["d", "e"].contains(&id) {
            Configuration::default()
        } else {
            conf(&["a", "b", "c"])
        };
        let applied = n.snapshot.as_ref().map(|s| s.last_index).unwrap_or(0);
        let init = InitialState {
            hard_state: n.hard_state.clone(),
            snapshot: n.snapshot.clone(),
            configurations,
            initial_conf: initial,
            applied,
            lost_acknowledged: false,
        };
        n.raft = Raft::new(cfg, storage, init).expect("restart from durable state");
        n.applied = applied;
    }

    fn deliver(&mut self, i: usize) {
        let m = self.inflight.swap_remove(i);
        let snapshot = m.kind() == Some(MessageType::InstallSnapshot);
        let (from, to) = (m.from.clone(), m.to.clone());
        let ok = !self.cut.iter().any(|(a, b)| *a == m.from && *b == m.to)
            && self.nodes.get(m.to.as_str()).is_some_and(|n| n.up);
        if ok {
            let _ = self.nodes.get_mut(m.to.as_str()).unwrap().raft.step(m);
        }
        if snapshot {
            // The runtime reports how streaming the snapshot went.
            self.report_snapshot(&from, &to, ok);
        }
    }

    fn report_snapshot(&mut self, from: &str, to: &str, ok: bool) {
        if let Some(n) = self.nodes.get_mut(from) {
            n.raft.report_snapshot(to, ok);
        }
    }

    #[allow(clippy::collapsible_match)]
    fn step(&mut self, allow_faults: bool) {
        let mut roll = self.rng.range(0, 100);
        if !allow_faults && roll >= 75 {
            roll = 99;
        }
        let id = self.pick();
        match roll {
            0..=19 => {
                if self.nodes[&id].up {
                    self.nodes.get_mut(&id).unwrap().raft.tick();
                }
            }
            20..=54 => {
                if !self.inflight.is_empty() {
                    // Mostly oldest-first, sometimes any (reordering).
                    let i = if self.rng.chance(1, 4) {
                        self.rng.range(0, self.inflight.len() as u64) as usize
                    } else {
                        0
                    };
                    if allow_faults && self.rng.chance(1, 30) {
                        let m = self.inflight[i].clone();
                        self.inflight.push(m); // duplicate
                    }
                    if allow_faults && self.rng.chance(1, 20) {
                        let m = self.inflight.swap_remove(i); // loss
                        if m.kind() == Some(MessageType::InstallSnapshot) {
                            self.report_snapshot(&m.from, &m.to, false);
                        }
                    } else {
                        self.deliver(i);
                    }
                }
            }
            55..=74 => {
                if self.nodes[&id].up {
                    self.persist_one(&id);
                }
            }
            75..=84 => {
                let leader = self
                    .nodes
                    .iter()
                    .find(|(_, n)| n.up && n.raft.role() == Role::Leader)
                    .map(|(i, _)| i.clone());
                if let Some(l) = leader {
                    self.proposals += 1;
                    let data = Bytes::from(format!("p{}", self.proposals));
                    let _ = self
                        .nodes
                        .get_mut(&l)
                        .unwrap()
                        .raft
                        .propose_batch(vec![data]);
                }
            }
            85..=86 if allow_faults => {
                let other = self.pick();
                if other != id {
                    self.cut.push((id.clone(), other.clone()));
                    self.cut.push((other, id));
                }
            }
            87..=88 => self.cut.clear(),
            89 if allow_faults => {
                if self.nodes[&id].up && self.rng.chance(1, 2) {
                    self.crash_restart(&id);
                }
            }
            90 => {
                let r = &mut self.nodes.get_mut(&id).unwrap().raft;
                if r.is_leader() {
                    let _ = r.transfer_leader(None);
                }
            }
            91..=92 => {
                let _ = self
                    .nodes
                    .get_mut(&id)
                    .unwrap()
                    .raft
                    .read_index(Bytes::from_static(b"r"));
            }
            93 => {
                // Local snapshot + compaction on a node that applied enough.
                let n = self.nodes.get_mut(&id).unwrap();
                let idx = n.applied;
                if idx > 5 && n.pending.is_empty() {
                    if let Some(t) = n.raft.term_at(idx) {
                        let meta = SnapshotMeta {
                            last_index: idx,
                            last_term: t,
                            configuration: Some(conf_at(&n.raft, idx)),
                        };
                        n.raft.on_snapshot(meta.clone());
                        if n.raft.status().snapshot_index == idx {
                            n.raft.storage_mut().compact(idx + 1);
                            n.snapshot = Some(meta);
                        }
                    }
                }
            }
            94 => {
                if self.ids.len() > 3 {
                    let r = &mut self.nodes.get_mut(&id).unwrap().raft;
                    if r.is_leader() {
                        let targets = [
                            conf(&["a", "b", "c"]),
                            conf(&["a", "b", "c", "d"]),
                            conf(&["a", "b", "d", "e"]),
                            conf_with_learners(&["a", "b", "c"], &["d", "e"]),
                            conf(&["c", "d", "e"]),
                        ];
                        let t = targets[(self.proposals % 5) as usize].clone();
                        let _ = r.propose_conf_change(t);
                    }
                }
            }
            _ => {}
        }
        for id in self.ids.clone() {
            if self.nodes[&id].up {
                self.collect(&id);
            }
        }
        self.check_leaders();
    }

    /// Heals everything and runs until a leader serves a fresh proposal.
    fn converge(&mut self) {
        self.cut.clear();
        for n in self.nodes.values_mut() {
            n.up = true;
        }
        for _ in 0..20_000 {
            self.step(false);
            // Persist eagerly so progress is quick.
            for id in self.ids.clone() {
                self.persist_one(&id);
            }
        }
        let max = self.applied.keys().last().copied().unwrap_or(0);
        let voters: Vec<String> = {
            let l = self.nodes.values().find(|n| n.raft.is_leader());
            let l = l.expect("a leader after healing");
            l.raft.configuration().voters.clone()
        };
        for v in voters {
            let n = &self.nodes[&v];
            if n.applied < max {
                for (id, n) in &self.nodes {
                    eprintln!(
                        "{id}: applied {} pending {} status {:?}",
                        n.applied,
                        n.pending.len(),
                        n.raft.status()
                    );
                }
            }
            assert!(
                n.applied >= max,
                "{v} did not catch up: applied {} of {max}",
                n.applied
            );
        }
    }
}

fn conf_at(r: &Raft<MemStorage>, index: u64) -> Configuration {
    r.configuration_at(index).clone()
}

fn run(seed: u64, voters: &[&str], extra: &[&str], steps: usize, tweak: fn(&mut Config)) {
    eprintln!("seed {seed}");
    let mut sim = Sim::new(seed, voters, extra, tweak);
    for _ in 0..steps {
        sim.step(true);
    }
    sim.converge();
    let l = sim.nodes.values().find(|n| n.raft.is_leader()).unwrap();
    eprintln!(
        "seed {seed}: applied {} stats {:?} conf {:?} term {}",
        sim.applied.len(),
        sim.stats,
        l.raft.configuration(),
        l.raft.term()
    );
}

#[test]
fn chaos_three_nodes() {
    for seed in 0..40 {
        run(seed, &["a", "b", "c"], &[], 20_000, |_| {});
    }
}

#[test]
fn chaos_three_nodes_small_batches() {
    for seed in 100..130 {
        run(seed, &["a", "b", "c"], &[], 20_000, |c| {
            c.max_entries_per_msg = 2;
            c.max_inflight_msgs = 2;
            c.max_clock_drift_ticks = 3;
        });
    }
}

#[test]
fn chaos_membership_changes() {
    for seed in 200..230 {
        run(seed, &["a", "b", "c"], &["d", "e"], 20_000, |_| {});
    }
}
