//! The nemesis: a seeded schedule of faults, one episode at a time (quiet
//! gap, a fault — a quarter of the time with a second one on top — hold,
//! heal), printed with timestamps as it runs.
//!
//! The servers' storage is lazy (see `cluster.rs`), so every SIGKILL is a
//! power loss of that node: one node (`kill`), several at once (`crash`:
//! 2 to all 5) or the whole cluster (`power_loss`). Every run has at least
//! one power loss of the whole cluster: if none came by half the run, the
//! next episode is one.
//!
//! The seed fixes every choice (fault kinds, nodes, sides, durations);
//! which node leads at a given moment still depends on timing, so a replay
//! runs the same schedule against what the cluster does this time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::proxy::{LinkRule, Mode};

/// The schedule's random source: the core's SplitMix64 with the helpers a
/// schedule needs.
pub struct Rng(rraft::core::rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // The offset keeps every recorded chaos seed on its schedule.
        Rng(rraft::core::rng::Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15))
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.range(0, n)
    }

    /// Uniform in `lo..=hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.0.chance(percent, 100)
    }

    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
        v
    }
}

/// The kinds of fault, in the order of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    IsolateLeader,
    OneWay,
    Bridge,
    Delay,
    Loss,
    Reset,
    Crash,
    PowerLoss,
    Membership,
    Transfer,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Partition => "partition",
            Kind::IsolateLeader => "isolate_leader",
            Kind::OneWay => "one_way",
            Kind::Bridge => "bridge",
            Kind::Delay => "delay",
            Kind::Loss => "loss",
            Kind::Reset => "reset",
            Kind::Crash => "crash",
            Kind::PowerLoss => "power_loss",
            Kind::Membership => "membership",
            Kind::Transfer => "transfer",
        }
    }
}

/// How to end a fault.
enum Undo {
    /// The fault was skipped (e.g. a pause of a dead node).
    Nothing,
    /// Carried out, nothing to undo (a leadership transfer).
    Done,
    Restart(usize),
    RestartAll,
    Resume(usize),
    HealNetwork(&'static str),
    StopResets(usize),
    AddBack,
}

/// The kinds and their weights.
const KINDS: [(Kind, u64); 13] = [
    (Kind::Kill, 3),
    (Kind::Pause, 2),
    (Kind::Partition, 2),
    (Kind::IsolateLeader, 2),
    (Kind::OneWay, 1),
    (Kind::Bridge, 1),
    (Kind::Delay, 1),
    (Kind::Loss, 1),
    (Kind::Reset, 1),
    (Kind::Crash, 1),
    (Kind::PowerLoss, 1),
    (Kind::Membership, 2),
    (Kind::Transfer, 2),
];

pub struct Nemesis {
    rng: Rng,
    t0: Instant,
    pub counts: BTreeMap<Kind, u64>,
    /// Admin commands that did not go through (no leader, catch-up, ...).
    pub admin_failures: u64,
    /// Nodes removed from the configuration and not added back yet.
    removed: Vec<usize>,
    /// Processes SIGKILLed (each a power loss of its node).
    pub power_losses: u64,
    /// Faults that SIGKILLed every node at once.
    pub cluster_power_losses: u64,
}

impl Nemesis {
    pub fn new(seed: u64, t0: Instant) -> Nemesis {
        Nemesis {
            rng: Rng::new(seed.wrapping_mul(31).wrapping_add(7)),
            t0,
            counts: BTreeMap::new(),
            admin_failures: 0,
            removed: Vec::new(),
            power_losses: 0,
            cluster_power_losses: 0,
        }
    }

    pub fn log(&self, what: &str) {
        println!("chaos: [{:8.3}s] {what}", self.t0.elapsed().as_secs_f64());
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Episodes until `until`, then everything healed.
    pub fn run(&mut self, cluster: &mut Cluster, until: Instant) {
        let half = self.t0 + until.saturating_duration_since(self.t0) / 2;
        loop {
            let quiet = self.rng.millis(500, 2000);
            if Instant::now() + quiet >= until {
                break;
            }
            std::thread::sleep(quiet);
            // Drawn either way, so forcing leaves the rest of the schedule.
            let picked = self.pick();
            let kind = if self.cluster_power_losses == 0 && Instant::now() >= half {
                Kind::PowerLoss
            } else {
                picked
            };
            // Mostly long enough for an election, sometimes just around
            // the election timeout (a leader that comes back believing
            // it still leads, a partition that flaps).
            let hold = if self.rng.chance(25) {
                self.rng.millis(200, 1200)
            } else {
                self.rng.millis(1500, 5000)
            };
            self.episode(
                cluster,
                kind,
                hold.min(until.saturating_duration_since(Instant::now())),
            );
        }
        self.heal_all(cluster);
    }

    fn pick(&mut self) -> Kind {
        let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.below(total);
        for (kind, w) in KINDS {
            if roll < w {
                return kind;
            }
            roll -= w;
        }
        unreachable!("weights cover the roll")
    }

    /// The leader half the time (when there is one), else a random node.
    fn victim(&mut self, cluster: &Cluster) -> (usize, &'static str) {
        let random = self.rng.below(cluster.len() as u64) as usize;
        if self.rng.chance(50) {
            if let Some(l) = cluster.leader() {
                return (l, " (leader)");
            }
        }
        (random, "")
    }

    fn mode(&mut self) -> Mode {
        if self.rng.chance(30) {
            Mode::Hold
        } else {
            Mode::Drop
        }
    }

    /// Cuts every link between `a` and `b` (both ways) with `mode`.
    fn cut(cluster: &Cluster, a: &[usize], b: &[usize], mode: Mode) {
        for &x in a {
            for &y in b {
                cluster.proxy.set_rule(
                    x,
                    y,
                    LinkRule {
                        mode,
                        ..LinkRule::default()
                    },
                );
                cluster.proxy.set_rule(
                    y,
                    x,
                    LinkRule {
                        mode,
                        ..LinkRule::default()
                    },
                );
            }
        }
    }

    /// One episode: the fault of `kind`, sometimes a second one on top
    /// (faults overlap in real life), held for `hold`, then undone in
    /// reverse order.
    fn episode(&mut self, cluster: &mut Cluster, kind: Kind, hold: Duration) {
        let mut undo = vec![self.start(cluster, kind)];
        if self.rng.chance(25) {
            const EXTRA: [Kind; 5] = [
                Kind::Kill,
                Kind::Pause,
                Kind::Delay,
                Kind::Reset,
                Kind::Transfer,
            ];
            let extra = EXTRA[self.rng.below(EXTRA.len() as u64) as usize];
            std::thread::sleep(self.rng.millis(0, 1000));
            undo.push(self.start(cluster, extra));
        }
        let resetting: Vec<usize> = undo
            .iter()
            .filter_map(|u| match u {
                Undo::StopResets(v) => Some(*v),
                _ => None,
            })
            .collect();
        let end = Instant::now() + hold;
        while Instant::now() < end {
            for &v in &resetting {
                for o in (0..cluster.len()).filter(|&x| x != v) {
                    cluster.proxy.reset_between(v, o);
                }
            }
            let nap = if resetting.is_empty() {
                end.saturating_duration_since(Instant::now())
            } else {
                self.rng.millis(100, 600)
            };
            std::thread::sleep(nap);
        }
        for u in undo.into_iter().rev() {
            self.undo(cluster, u);
        }
    }

    /// Starts a fault; returns how to end it.
    fn start(&mut self, cluster: &mut Cluster, kind: Kind) -> Undo {
        let undo = self.start_uncounted(cluster, kind);
        // Count what was carried out, not what was skipped.
        if !matches!(undo, Undo::Nothing) {
            *self.counts.entry(kind).or_default() += 1;
        }
        undo
    }

    fn start_uncounted(&mut self, cluster: &mut Cluster, kind: Kind) -> Undo {
        let n = cluster.len();
        match kind {
            Kind::Kill => {
                let (v, note) = self.victim(cluster);
                if !cluster.is_running(v) {
                    return Undo::Nothing;
                }
                self.log(&format!("power loss of n{v}{note} (SIGKILL)"));
                self.power_off(cluster, &[v]);
                Undo::Restart(v)
            }
            Kind::Pause => {
                let (v, note) = self.victim(cluster);
                if !cluster.is_live(v) {
                    return Undo::Nothing;
                }
                self.log(&format!("pause n{v}{note} (SIGSTOP)"));
                cluster.pause(v);
                Undo::Resume(v)
            }
            Kind::Partition => {
                let order = self.rng.shuffled(n);
                let (a, b) = order.split_at(n / 2);
                let mode = self.mode();
                self.log(&format!("partition {a:?} | {b:?} ({mode:?})"));
                Self::cut(cluster, a, b, mode);
                Undo::HealNetwork("partition")
            }
            Kind::IsolateLeader => {
                let (l, note) = match cluster.leader() {
                    Some(l) => (l, " (leader)"),
                    None => (self.rng.below(n as u64) as usize, " (no leader seen)"),
                };
                let others: Vec<usize> = (0..n).filter(|&x| x != l).collect();
                let mode = self.mode();
                self.log(&format!("isolate n{l}{note} ({mode:?})"));
                Self::cut(cluster, &[l], &others, mode);
                Undo::HealNetwork("isolation")
            }
            Kind::OneWay => {
                let (v, note) = self.victim(cluster);
                let outgoing = self.rng.chance(50);
                let rule = LinkRule {
                    mode: Mode::Drop,
                    ..LinkRule::default()
                };
                for o in (0..n).filter(|&x| x != v) {
                    if outgoing {
                        cluster.proxy.set_rule(v, o, rule);
                    } else {
                        cluster.proxy.set_rule(o, v, rule);
                    }
                }
                let dir = if outgoing { "out of" } else { "into" };
                self.log(&format!("one-way: drop everything {dir} n{v}{note}"));
                Undo::HealNetwork("one-way")
            }
            Kind::Bridge => {
                // Two sides that only the bridge node connects.
                let order = self.rng.shuffled(n);
                let bridge = order[n / 2];
                let (a, b) = (&order[..n / 2], &order[n / 2 + 1..]);
                let mode = self.mode();
                self.log(&format!("bridge {a:?} <n{bridge}> {b:?} ({mode:?})"));
                Self::cut(cluster, a, b, mode);
                Undo::HealNetwork("bridge")
            }
            Kind::Delay => {
                let base = 10 + self.rng.below(150);
                for x in 0..n {
                    for y in (0..n).filter(|&y| y != x) {
                        let delay_ms = base + self.rng.below(base);
                        cluster.proxy.set_rule(
                            x,
                            y,
                            LinkRule {
                                delay_ms,
                                ..LinkRule::default()
                            },
                        );
                    }
                }
                self.log(&format!("delay every link {base}..{} ms", 2 * base));
                Undo::HealNetwork("delay")
            }
            Kind::Loss => {
                let loss_percent = 5 + self.rng.below(26);
                for x in 0..n {
                    for y in (0..n).filter(|&y| y != x) {
                        cluster.proxy.set_rule(
                            x,
                            y,
                            LinkRule {
                                loss_percent,
                                ..LinkRule::default()
                            },
                        );
                    }
                }
                self.log(&format!("lose {loss_percent}% of the frames on every link"));
                Undo::HealNetwork("loss")
            }
            Kind::Crash => {
                // Several processes at once, up to the whole cluster: only
                // what they had fsynced survives.
                let k = 2 + self.rng.below(n as u64 - 1) as usize;
                let mut victims = self.rng.shuffled(n);
                victims.truncate(k);
                victims.retain(|&v| cluster.is_running(v));
                if victims.is_empty() {
                    return Undo::Nothing;
                }
                self.log(&format!("power loss of {victims:?} at once (SIGKILL)"));
                self.power_off(cluster, &victims);
                Undo::RestartAll
            }
            Kind::PowerLoss => {
                let victims: Vec<usize> = (0..n).filter(|&v| cluster.is_running(v)).collect();
                if victims.is_empty() {
                    return Undo::Nothing;
                }
                self.log(&format!(
                    "power loss of the whole cluster: {victims:?} at once (SIGKILL)"
                ));
                self.power_off(cluster, &victims);
                Undo::RestartAll
            }
            Kind::Reset => {
                let (v, note) = self.victim(cluster);
                self.log(&format!("reset n{v}{note}'s connections repeatedly"));
                Undo::StopResets(v)
            }
            Kind::Membership => self.remove_member(cluster),
            Kind::Transfer => {
                let Some(l) = cluster.leader() else {
                    self.log("transfer: no leader seen, skipped");
                    return Undo::Nothing;
                };
                let to = (l + 1 + self.rng.below(n as u64 - 1) as usize) % n;
                let result = cluster.admin(l, "transfer_leader", &cluster.peers[to]);
                self.log(&format!(
                    "transfer leadership n{l} -> n{to}: {}",
                    show(&result)
                ));
                if result.is_err() {
                    self.admin_failures += 1;
                }
                Undo::Done
            }
        }
    }

    /// SIGKILLs `victims` back to back: with lazy storage, each loses what
    /// it had not fsynced.
    fn power_off(&mut self, cluster: &mut Cluster, victims: &[usize]) {
        for &v in victims {
            cluster.kill(v);
        }
        self.power_losses += victims.len() as u64;
        if victims.len() == cluster.len() {
            self.cluster_power_losses += 1;
        }
    }

    fn undo(&mut self, cluster: &mut Cluster, undo: Undo) {
        match undo {
            Undo::Nothing | Undo::Done => {}
            Undo::Restart(v) => {
                if !cluster.is_running(v) {
                    cluster.spawn(v);
                    self.log(&format!("restart n{v}"));
                }
            }
            Undo::RestartAll => {
                let down: Vec<usize> = (0..cluster.len())
                    .filter(|&v| !cluster.is_running(v))
                    .collect();
                for &v in &down {
                    cluster.spawn(v);
                }
                self.log(&format!("restart {down:?}"));
            }
            Undo::Resume(v) => {
                if cluster.is_paused(v) {
                    cluster.resume(v);
                    self.log(&format!("resume n{v} (SIGCONT)"));
                }
            }
            Undo::HealNetwork(what) => {
                cluster.proxy.heal();
                self.log(&format!("heal {what}"));
            }
            Undo::StopResets(v) => self.log(&format!("stop resetting n{v}")),
            Undo::AddBack => {
                self.restore_members(cluster, Duration::from_secs(3));
            }
        }
    }

    /// Removes one voter (never below 3 voters); it is added back when
    /// the episode ends.
    fn remove_member(&mut self, cluster: &Cluster) -> Undo {
        let Some(l) = cluster.leader() else {
            self.log("membership: no leader seen, skipped");
            return Undo::Nothing;
        };
        let Some(voters) = cluster.voters(l) else {
            self.log(&format!("membership: no configuration from n{l}, skipped"));
            return Undo::Nothing;
        };
        if voters.len() <= 3 {
            self.log(&format!("membership: only voters {voters:?}, skipped"));
            return Undo::Nothing;
        }
        let v = if self.rng.chance(30) {
            l
        } else {
            voters[self.rng.below(voters.len() as u64) as usize]
        };
        let result = cluster.admin(l, "remove_peer", &cluster.peers[v]);
        let note = if v == l { " (the leader)" } else { "" };
        self.log(&format!(
            "remove n{v}{note} from the configuration: {}",
            show(&result)
        ));
        if result.is_err() {
            self.admin_failures += 1;
        }
        self.removed.push(v);
        Undo::AddBack
    }

    /// Adds back every removed node; gives up after `patience` (the final
    /// heal tries again).
    fn restore_members(&mut self, cluster: &Cluster, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while !self.removed.is_empty() {
            let v = self.removed[0];
            let result = match cluster.leader() {
                Some(l) => match cluster.voters(l) {
                    Some(voters) if voters.contains(&v) => Ok("already a voter".to_string()),
                    _ => cluster.admin(l, "add_peer", &cluster.peers[v]),
                },
                None => Err("no leader".to_string()),
            };
            match result {
                Ok(_) => {
                    self.log(&format!("add n{v} back: {}", show(&result)));
                    self.removed.remove(0);
                }
                Err(e) => {
                    self.admin_failures += 1;
                    if Instant::now() > deadline {
                        self.log(&format!("add n{v} back failed for now: {e}"));
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
        true
    }

    /// Every link passes, every node runs, every node is a voter again.
    pub fn heal_all(&mut self, cluster: &mut Cluster) {
        cluster.proxy.heal();
        for i in 0..cluster.len() {
            if cluster.is_paused(i) {
                cluster.resume(i);
            }
            if !cluster.is_running(i) {
                cluster.spawn(i);
            }
        }
        self.log("heal everything");
        assert!(
            self.restore_members(cluster, Duration::from_secs(30)),
            "could not add the removed nodes back within 30 s"
        );
        // A removal that committed while its admin call failed: add back
        // whatever the leader does not count as a voter.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let missing: Vec<usize> = match cluster.leader().and_then(|l| cluster.voters(l)) {
                Some(voters) => (0..cluster.len()).filter(|i| !voters.contains(i)).collect(),
                None => vec![usize::MAX],
            };
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the configuration did not get all {} voters back within 30 s (missing {missing:?})",
                cluster.len()
            );
            if missing[0] != usize::MAX {
                self.removed = missing;
                self.restore_members(cluster, Duration::from_secs(5));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.log(&format!(
            "all {} nodes up, linked and voting",
            cluster.len()
        ));
    }
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("failed ({e})"),
    }
}
