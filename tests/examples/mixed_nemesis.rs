//! A seeded nemesis over a mixed braft/rraft counter group: braft's
//! `counter_client` adds while the schedule SIGKILLs and restarts replicas,
//! SIGSTOPs and resumes them, cuts them off (one link or every link of a
//! replica), restarts them cleanly, takes snapshots and moves the
//! leadership; at every phase boundary the middle replica is stopped and
//! started as the other kind, so the group alternates between two braft +
//! one rraft and one braft + two rraft. After healing, a leader is elected,
//! adds are acknowledged again, and every replica holds the same value,
//! which contains every acknowledged add.
//!
//! `MIXED_SEED=N` replays a schedule (the faults and their order; timing
//! still varies) and `MIXED_SECS=S` sets the length (default 60 s), e.g.
//! `MIXED_SECS=600 cargo test --release --test examples mixed_nemesis --
//! --nocapture`. Partitions need root and `iptables`: each replica runs as
//! a user of its own, and a chain of this test drops the packets of one
//! replica's user to another replica's port; without them the schedule
//! says so and pauses replicas instead.

use std::process::Command;
use std::time::{Duration, Instant};

use super::braft_counter::braft_dir;
use rraft_sim::examples::{env_u64, run_tool, wait_for};

use super::mixed_group::{Binaries, Kind, MixedGroup, Stop};

/// The schedule's random source (the core's SplitMix64).
struct Rng(rraft::core::rng::Rng);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.range(0, n)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Partitions between replicas with iptables: replica i's processes run as
/// user `uids[i]`, and a rule of this test's chain drops what that user
/// sends to another replica's port. The chain is unhooked and deleted when
/// dropped (and a chain left by a test process that died is removed by the
/// next one).
struct Partitions {
    chain: String,
    uids: Vec<u32>,
    ports: Vec<u16>,
}

const CHAIN_PREFIX: &str = "RRAFT_MIXED_";

fn iptables(args: &[&str]) -> Result<String, String> {
    run_tool(Command::new("iptables").args(args))
        .map_err(|e| format!("iptables {}: {e}", args.join(" ")))
}

impl Partitions {
    /// The users replicas run as (distinct per test process), and the
    /// chain, or why partitions are not available.
    fn new(n: usize) -> Result<Partitions, String> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (replicas run as users of their own)".into());
        }
        iptables(&["-S", "OUTPUT"])?;
        Self::remove_stale();
        let pid = std::process::id();
        let chain = format!("{CHAIN_PREFIX}{pid}");
        iptables(&["-N", &chain])?;
        iptables(&["-I", "OUTPUT", "-j", &chain])?;
        let base = 200_000 + (pid % 100_000) * 4;
        Ok(Partitions {
            chain,
            uids: (0..n as u32).map(|i| base + i).collect(),
            ports: Vec::new(),
        })
    }

    /// Removes the chains of test processes that no longer run.
    fn remove_stale() {
        let Ok(rules) = iptables(&["-S", "OUTPUT"]) else {
            return;
        };
        for line in rules.lines() {
            let Some(chain) = line.strip_prefix("-A OUTPUT -j ") else {
                continue;
            };
            let Some(pid) = chain.trim().strip_prefix(CHAIN_PREFIX) else {
                continue;
            };
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let chain = chain.trim();
            let _ = iptables(&["-D", "OUTPUT", "-j", chain]);
            let _ = iptables(&["-F", chain]);
            let _ = iptables(&["-X", chain]);
        }
    }

    /// Drops what replica `from` sends to replica `to`'s port.
    fn cut(&self, from: usize, to: usize) {
        let uid = self.uids[from].to_string();
        let port = self.ports[to].to_string();
        iptables(&[
            "-A",
            &self.chain,
            "-p",
            "tcp",
            "-m",
            "owner",
            "--uid-owner",
            &uid,
            "--dport",
            &port,
            "-j",
            "DROP",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn heal(&self) {
        iptables(&["-F", &self.chain]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}

/// The faults of the schedule.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    Pause,
    Isolate,
    CutLink,
    Restart,
    Snapshot,
    Transfer,
}

const FAULTS: [Fault; 7] = [
    Fault::Kill,
    Fault::Pause,
    Fault::Isolate,
    Fault::CutLink,
    Fault::Restart,
    Fault::Snapshot,
    Fault::Transfer,
];

/// Stops replica `i` with `how`; a replica that does not stop cleanly is
/// killed and counted in `unclean`, with a warning and its output (a
/// server that hangs in its shutdown loses no acknowledged add, which is
/// what this run checks).
fn stop_or_warn(g: &mut MixedGroup, i: usize, how: Stop, unclean: &mut Vec<String>) {
    if let Err(e) = g.try_stop_replica(i, how) {
        eprintln!("WARNING: {e}\n(killed; the run goes on)");
        unclean.push(format!("node{i} {how:?}"));
    }
}

/// Runs one fault of the schedule and heals it.
fn run_fault(
    g: &mut MixedGroup,
    rng: &mut Rng,
    parts: Option<&Partitions>,
    fault: Fault,
    unclean: &mut Vec<String>,
) {
    let n = g.len();
    let i = rng.below(n as u64) as usize;
    let hold = rng.millis(500, 4000);
    let t = g.elapsed();
    match fault {
        Fault::Kill => {
            eprintln!("[{t:6.1}s] nemesis: SIGKILL node{i} for {hold:?}");
            g.stop_replica(i, Stop::Kill);
            std::thread::sleep(hold);
            let kind = g.kind(i);
            g.start_replica(i, kind);
        }
        Fault::Restart => {
            eprintln!("[{t:6.1}s] nemesis: SIGTERM and restart node{i}");
            stop_or_warn(g, i, Stop::Term, unclean);
            let kind = g.kind(i);
            g.start_replica(i, kind);
        }
        Fault::Pause => {
            eprintln!("[{t:6.1}s] nemesis: SIGSTOP node{i} for {hold:?}");
            g.set_paused(i, true);
            std::thread::sleep(hold);
            g.set_paused(i, false);
        }
        Fault::Isolate | Fault::CutLink => {
            let Some(p) = parts else {
                eprintln!(
                    "[{t:6.1}s] nemesis: {fault:?} SKIPPED (no partitions); SIGSTOP node{i} \
                     for {hold:?} instead"
                );
                g.set_paused(i, true);
                std::thread::sleep(hold);
                g.set_paused(i, false);
                return;
            };
            if let Fault::Isolate = fault {
                eprintln!("[{t:6.1}s] nemesis: isolate node{i} for {hold:?}");
                for j in (0..n).filter(|&j| j != i) {
                    p.cut(i, j);
                    p.cut(j, i);
                }
            } else {
                let j = (i + 1 + rng.below(n as u64 - 1) as usize) % n;
                eprintln!("[{t:6.1}s] nemesis: cut node{i} -> node{j} for {hold:?}");
                p.cut(i, j);
            }
            g.disturbed.push(g.ports[i]);
            std::thread::sleep(hold);
            p.heal();
        }
        Fault::Snapshot => {
            eprintln!("[{t:6.1}s] nemesis: snapshot on node{i}");
            let args = ["snapshot".to_string(), format!("--peer={}", g.peer(i))];
            if let Err(e) = g.braft_cli(&args) {
                eprintln!("  snapshot on node{i} failed: {}", e.trim());
            }
        }
        Fault::Transfer => {
            eprintln!("[{t:6.1}s] nemesis: transfer the leadership to node{i}");
            if let Err(e) = g.transfer_leader(i, Duration::from_secs(5)) {
                eprintln!("  {e}");
            }
        }
    }
    g.assert_none_exited();
}

#[test]
fn mixed_braft_rraft_group_keeps_every_acknowledged_add_under_a_nemesis() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let secs = env_u64("MIXED_SECS").unwrap_or(60);
    let seed = env_u64("MIXED_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            % 1_000_000
    });
    eprintln!(
        "mixed nemesis seed={seed} secs={secs} (replay: MIXED_SEED={seed} MIXED_SECS={secs} \
         cargo test --release --test examples mixed_nemesis -- --nocapture)"
    );
    let mut rng = Rng(rraft::core::rng::Rng::new(seed));
    let bins = Binaries::find(&braft);
    let mixed = match bins.rraft_cannot_join_braft() {
        None => true,
        Some(why) => {
            eprintln!(
                "SKIPPED the mixed braft/rraft group: {why}. The schedule runs over three \
                 braft replicas instead."
            );
            false
        }
    };
    let middle_kinds = if mixed {
        [Kind::Braft, Kind::Rraft]
    } else {
        [Kind::Braft, Kind::Braft]
    };
    let kinds = [Kind::Braft, middle_kinds[0], middle_kinds[1]];
    let mut parts = match Partitions::new(kinds.len()) {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("partitions SKIPPED: {why}; the schedule pauses replicas instead");
            None
        }
    };
    let uids = parts.as_ref().map(|p| p.uids.clone());
    let mut g = MixedGroup::start(bins, "mixed_nemesis", &kinds, uids);
    if let Some(p) = parts.as_mut() {
        p.ports = g.ports.clone();
    }
    if let Some(p) = parts.as_ref() {
        // The rules take effect: the others elect a leader without the
        // isolated one.
        let leader = g.wait_leader("a leader to isolate", Duration::from_secs(30));
        for j in (0..g.len()).filter(|&j| j != leader) {
            p.cut(leader, j);
            p.cut(j, leader);
        }
        let other = wait_for(
            "a leader while the first one is isolated",
            Duration::from_secs(30),
            || {
                (0..g.len())
                    .filter(|&j| j != leader)
                    .find(|&j| g.page(j).is_some_and(|pg| pg.leader))
            },
        );
        p.heal();
        eprintln!(
            "[{:6.1}s] partitions work: node{other} leads while node{leader} is isolated",
            g.elapsed()
        );
    }
    let client = g.start_client(8);
    client.wait_acks(&mut g, 0, 5, "the group under load");

    // Phases of at least 20 s; at each boundary the middle replica changes
    // kind.
    let phases = (secs / 20).clamp(1, 10);
    let phase_len = Duration::from_secs(secs) / phases as u32;
    let started = Instant::now();
    let mut faults = 0;
    let mut unclean = Vec::new();
    for phase in 0..phases {
        let phase_end = started + phase_len * (phase as u32 + 1);
        eprintln!("[{:6.1}s] phase {phase}: kinds {}", g.elapsed(), g.kinds());
        while Instant::now() < phase_end {
            let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            run_fault(&mut g, &mut rng, parts.as_ref(), fault, &mut unclean);
            faults += 1;
            std::thread::sleep(rng.millis(300, 1500));
        }
        // Healed (every fault heals before the next): a leader, adds
        // acknowledged again.
        let acked = client.acked();
        let leader = g.wait_leader("after the phase", Duration::from_secs(30));
        client.wait_acks(&mut g, acked, 3, "after the phase");
        eprintln!(
            "[{:6.1}s] phase {phase} healed: leader node{leader} ({}), {} adds acknowledged",
            g.elapsed(),
            g.kind(leader).name(),
            client.acked()
        );
        if phase + 1 < phases {
            let kind = g.kind(1).other();
            let kind = if mixed { kind } else { Kind::Braft };
            stop_or_warn(&mut g, 1, Stop::Interrupt, &mut unclean);
            g.start_replica(1, kind);
            g.wait_caught_up(1, Duration::from_secs(30));
        }
    }
    let acked = client.acked();
    g.wait_leader("at the end", Duration::from_secs(30));
    client.wait_acks(&mut g, acked, 3, "at the end");
    let acks = client.finish(&g.ports.clone());
    let value = g.final_value();
    acks.check(value);
    eprintln!(
        "mixed nemesis: seed={seed} secs={secs} faults={faults} acked={} value={value} \
         partitions={} mixed={mixed} unclean_stops={} {unclean:?}",
        acks.log.acked.len(),
        if parts.is_some() { "yes" } else { "no" },
        unclean.len(),
    );
    for e in g.stop_all() {
        eprintln!("WARNING: {e}\n(killed)");
    }
    drop(parts);
}
