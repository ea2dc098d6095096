//! What can go wrong, and how often: a seed's fault profile and the fault
//! schedule it drives (crashes, restarts, partitions, link cuts, heals).

use rraft::core::rng::Rng;
use rraft::core::Config;

use crate::network::NetConfig;

/// The rates of one run. Per-tick chances are per 10,000 unless noted.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Ticks of the chaotic phase; then the quiet phase heals everything.
    pub chaos_ticks: u64,
    pub net: NetConfig,
    /// Disk write latency in ticks, uniform in [0, disk_delay_max].
    pub disk_delay_max: u64,
    /// Extra latency of a leader's disk writes: its followers' acks then
    /// outrun its own write and the commit moves in `on_persisted`.
    pub leader_disk_extra: u64,
    pub crash: u64,
    /// A crashed node restarts after [lo, hi) ticks.
    pub down_ticks: (u64, u64),
    /// The state machine applies handed-out entries after [0, n] ticks.
    pub apply_lag_max: u64,
    /// Per 100 crashes: the first queued write is torn.
    pub torn: u64,
    pub partition: u64,
    /// A partition heals after [lo, hi) ticks.
    pub partition_ticks: (u64, u64),
    /// Per 100 drops on a cut link or to a crashed node: report_unreachable.
    pub unreachable: u64,
    /// A node snapshots once it applied this many entries past its last one.
    pub snapshot_every: u64,
    /// Entries kept in the log below a snapshot, [0, n].
    pub compact_lag: u64,
    // Workload rates (per 10,000 per tick).
    pub propose: u64,
    pub propose_to_follower: u64,
    pub conf_change: u64,
    pub transfer: u64,
    pub read: u64,
    pub campaign: u64,
    /// Core configuration of every node; `id` and `seed` are set per node.
    pub core: Config,
    /// Bytes of padding on some payloads (exercises byte limits).
    pub big_payload: usize,
    /// The failure detector of a runtime with quiescent groups: a node
    /// calls `peer_suspected` for a peer it could not reach (down, or a
    /// link cut either way) for this many ticks. 0 = no detector.
    pub suspect_ticks: u64,
}

impl Profile {
    /// A random mix, drawn from the seed.
    pub fn random(rng: &mut Rng) -> Profile {
        let pick = |rng: &mut Rng, xs: &[u64]| xs[rng.range(0, xs.len() as u64) as usize];
        let election_ticks = pick(rng, &[8, 10, 12]) as u32;
        Profile {
            chaos_ticks: rng.range(300, 1000),
            net: NetConfig {
                loss: pick(rng, &[0, 10, 30, 80]),
                dup: pick(rng, &[0, 10, 40]),
                delay_max: pick(rng, &[1, 2, 3]),
                long_delay: pick(rng, &[0, 5, 20]),
                long_delay_max: pick(rng, &[10, 30]),
                fifo: false,
            },
            disk_delay_max: pick(rng, &[0, 1, 2, 4]),
            crash: pick(rng, &[0, 10, 30, 60]),
            down_ticks: (5, pick(rng, &[20, 60, 120])),
            torn: pick(rng, &[0, 30]),
            partition: pick(rng, &[0, 20, 50, 100]),
            partition_ticks: (10, pick(rng, &[40, 100])),
            unreachable: 25,
            snapshot_every: pick(rng, &[5, 15, 40, 1000]),
            compact_lag: pick(rng, &[0, 2, 8]),
            propose: pick(rng, &[1000, 3000, 6000]),
            propose_to_follower: 800,
            conf_change: pick(rng, &[0, 30, 100]),
            transfer: pick(rng, &[0, 20, 60]),
            read: pick(rng, &[200, 1000, 3000]),
            campaign: pick(rng, &[0, 10, 30]),
            core: Config {
                election_ticks,
                heartbeat_ticks: pick(rng, &[1, 2, 3]) as u32,
                max_entries_per_msg: pick(rng, &[4, 16, 64]) as usize,
                max_bytes_per_msg: pick(rng, &[1024, 8192, 512 * 1024]),
                max_inflight_msgs: pick(rng, &[2, 8, 64]) as usize,
                catchup_margin: pick(rng, &[2, 10, 1000]),
                catchup_ticks: election_ticks * 3,
                ..Config::new("")
            },
            big_payload: pick(rng, &[0, 0, 100, 400]) as usize,
            // New knobs go last: earlier draws (and so old seeds' profiles) stay put.
            leader_disk_extra: pick(rng, &[0, 0, 3]),
            apply_lag_max: pick(rng, &[0, 0, 2, 6]),
            suspect_ticks: 0,
        }
    }

    /// No faults at all: the happy path.
    pub fn calm(mut self) -> Profile {
        self.net = NetConfig::reliable();
        self.crash = 0;
        self.partition = 0;
        self
    }
}

/// A fault to inject now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Crash {
        node: usize,
        torn: Option<usize>,
    },
    Restart {
        node: usize,
    },
    /// Symmetric split into two sides.
    Split {
        a: Vec<usize>,
        b: Vec<usize>,
    },
    /// One directed link drops everything.
    CutOneWay {
        from: usize,
        to: usize,
    },
    /// The leader is cut off from everyone, both ways.
    IsolateLeader,
    Heal,
}

/// Decides, tick by tick, which faults happen.
pub struct Faults {
    rng: Rng,
    pub profile: Profile,
    /// node → tick it restarts at (crashed nodes only).
    down_until: Vec<Option<u64>>,
    heal_at: Option<u64>,
    pub crashes: u64,
    pub partitions: u64,
}

impl Faults {
    /// The fault schedule of `seed` for `nodes` nodes under `profile`.
    pub fn new(seed: u64, profile: Profile, nodes: usize) -> Faults {
        Faults {
            rng: Rng::new(seed),
            profile,
            down_until: vec![None; nodes],
            heal_at: None,
            crashes: 0,
            partitions: 0,
        }
    }

    /// Faults for tick `now`, given which nodes are up.
    pub fn plan(&mut self, now: u64, up: &[bool]) -> Vec<Fault> {
        let p = &self.profile;
        let mut out = Vec::new();
        for (node, until) in self.down_until.iter_mut().enumerate() {
            if matches!(until, Some(t) if *t <= now) {
                *until = None;
                out.push(Fault::Restart { node });
            }
        }
        if p.crash > 0 && self.rng.chance(p.crash, 10_000) {
            let node = self.rng.range(0, up.len() as u64) as usize;
            if up[node] && self.down_until[node].is_none() {
                let torn = if self.rng.chance(p.torn, 100) {
                    Some(self.rng.range(0, 4) as usize)
                } else {
                    None
                };
                let (lo, hi) = p.down_ticks;
                self.down_until[node] = Some(now + self.rng.range(lo, hi));
                self.crashes += 1;
                out.push(Fault::Crash { node, torn });
            }
        }
        // Power loss: every up node crashes at once.
        if p.crash > 0 && self.rng.chance(p.crash, 200_000) {
            for (node, &is_up) in up.iter().enumerate() {
                if is_up && self.down_until[node].is_none() {
                    let torn = if self.rng.chance(p.torn, 100) {
                        Some(self.rng.range(0, 4) as usize)
                    } else {
                        None
                    };
                    let (lo, hi) = p.down_ticks;
                    self.down_until[node] = Some(now + self.rng.range(lo, hi));
                    self.crashes += 1;
                    out.push(Fault::Crash { node, torn });
                }
            }
        }
        match self.heal_at {
            Some(t) if t <= now => {
                self.heal_at = None;
                out.push(Fault::Heal);
            }
            Some(_) => {}
            None => {
                if p.partition > 0 && self.rng.chance(p.partition, 10_000) {
                    let (lo, hi) = p.partition_ticks;
                    self.heal_at = Some(now + self.rng.range(lo, hi));
                    self.partitions += 1;
                    let n = up.len();
                    out.push(match self.rng.range(0, 4) {
                        0 | 1 => {
                            let mut a = Vec::new();
                            let mut b = Vec::new();
                            for i in 0..n {
                                if self.rng.chance(1, 2) {
                                    a.push(i)
                                } else {
                                    b.push(i)
                                }
                            }
                            Fault::Split { a, b }
                        }
                        2 => {
                            let from = self.rng.range(0, n as u64) as usize;
                            let to = (from + 1 + self.rng.range(0, n as u64 - 1) as usize) % n;
                            Fault::CutOneWay { from, to }
                        }
                        _ => Fault::IsolateLeader,
                    });
                }
            }
        }
        out
    }

    /// The quiet phase: restart everyone now and heal the network.
    pub fn quiet(&mut self) -> Vec<Fault> {
        let mut out = vec![Fault::Heal];
        self.heal_at = None;
        for (node, until) in self.down_until.iter_mut().enumerate() {
            if until.take().is_some() {
                out.push(Fault::Restart { node });
            }
        }
        out
    }
}

/// Named fault mixes: the invariant families below, and `SIM_PROFILE=<name>`
/// for soaks and replays.
pub type Tweak = fn(&mut Profile);

/// Every named fault mix, by name.
pub const PROFILES: &[(&str, Tweak)] = &[
    ("elections", profile_elections),
    ("logs", profile_logs),
    ("snapshots", profile_snapshots),
    ("acks", profile_acks),
    ("reads", profile_reads),
    ("liveness", profile_liveness),
    ("lease", profile_lease),
    ("membership", profile_membership),
    ("power", profile_power),
    ("calm", profile_calm),
    ("quiesce", profile_quiesce),
];

/// Partitions and campaigns: election safety and liveness.
pub fn profile_elections(p: &mut Profile) {
    p.partition = 300;
    p.campaign = 100;
    p.transfer = 60;
}

/// Loss, delay and crashes with torn writes: log matching and repair.
pub fn profile_logs(p: &mut Profile) {
    p.net.loss = 100;
    p.net.dup = 50;
    p.net.long_delay = 30;
    p.crash = 60;
    p.torn = 50;
    p.core.max_entries_per_msg = 2;
}

/// Frequent snapshots and compaction: catching up by snapshot.
pub fn profile_snapshots(p: &mut Profile) {
    p.snapshot_every = 5;
    p.compact_lag = 0;
    p.crash = 60;
    p.down_ticks = (20, 120);
    p.propose = 6000;
}

/// Crashes with slow, torn disks: acknowledged means durable.
pub fn profile_acks(p: &mut Profile) {
    p.crash = 80;
    p.torn = 50;
    p.disk_delay_max = 4;
    p.propose = 8000;
}

/// Many reads under partitions and transfers: no stale read.
pub fn profile_reads(p: &mut Profile) {
    p.read = 5000;
    p.propose = 5000;
    p.partition = 60;
    p.transfer = 40;
}

/// Heavy crashes, partitions and loss before the quiet phase.
pub fn profile_liveness(p: &mut Profile) {
    p.crash = 100;
    p.partition = 150;
    p.net.loss = 100;
}

/// Transfers, campaigns and partitions: lease safety.
pub fn profile_lease(p: &mut Profile) {
    p.transfer = 100;
    p.campaign = 50;
    p.partition = 100;
    p.net.delay_max = 3;
}

/// Membership changes with a slow leader disk.
pub fn profile_membership(p: &mut Profile) {
    p.conf_change = 200;
    p.leader_disk_extra = 3;
    p.crash = 30;
    p.core.catchup_margin = 5;
}

/// Whole-cluster power losses with slow disks and apply lag.
pub fn profile_power(p: &mut Profile) {
    p.crash = 400;
    p.torn = 50;
    p.disk_delay_max = 4;
    p.apply_lag_max = 4;
}

/// Quiescent groups: sparse writes and reads, so the group often sleeps,
/// with crashes, partitions, transfers and a failure detector that wakes
/// followers whose leader is unreachable.
pub fn profile_quiesce(p: &mut Profile) {
    p.core.quiesce_ticks = 3 * p.core.heartbeat_ticks;
    p.suspect_ticks = u64::from(p.core.election_ticks / 2).max(1);
    p.propose = 150;
    p.propose_to_follower = 40;
    p.read = 150;
    p.crash = 60;
    p.partition = 20;
    p.transfer = 10;
    p.campaign = 5;
    p.conf_change = 10;
}

/// No faults at all.
pub fn profile_calm(p: &mut Profile) {
    *p = p.clone().calm();
}

/// The profile named by the environment variable `var`, if set (panics on
/// an unknown name).
pub fn env_profile(var: &str) -> Option<Tweak> {
    let name = std::env::var(var).ok()?;
    match PROFILES.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => Some(*f),
        None => panic!(
            "{var}={name}: unknown; one of {:?}",
            PROFILES.iter().map(|p| p.0).collect::<Vec<_>>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashed_nodes_restart_and_partitions_heal() {
        let mut rng = Rng::new(5);
        let mut p = Profile::random(&mut rng);
        p.crash = 2000;
        p.partition = 2000;
        let mut f = Faults::new(9, p, 3);
        let mut up = vec![true; 3];
        let (mut crashes, mut restarts, mut heals, mut parts) = (0, 0, 0, 0);
        for now in 0..2000 {
            for fault in f.plan(now, &up) {
                match fault {
                    Fault::Crash { node, .. } => {
                        assert!(up[node]);
                        up[node] = false;
                        crashes += 1;
                    }
                    Fault::Restart { node } => {
                        assert!(!up[node]);
                        up[node] = true;
                        restarts += 1;
                    }
                    Fault::Heal => heals += 1,
                    _ => parts += 1,
                }
            }
        }
        assert!(crashes > 10 && restarts + 3 >= crashes);
        assert!(parts > 10 && heals + 1 >= parts);
        for fault in f.quiet() {
            if let Fault::Restart { node } = fault {
                up[node] = true;
            }
        }
        assert!(up.iter().all(|&u| u));
    }
}
