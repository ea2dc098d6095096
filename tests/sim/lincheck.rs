//! Linearizability of a key-value store on the simulated rraft cluster.
//!
//! `rraft_sim::linearizability` is a Wing–Gong/Porcupine-style checker (with its
//! self-tests: known-bad histories rejected, known-good ones accepted). The
//! cluster is the main simulator's (`rraft_sim::cluster`, see `crates/rraft-sim/README.md`) with its
//! KV option (`rraft_sim::kv`): clients issue read / write / CAS (ReadIndex and
//! lease reads) under the simulator's fault mix of each seed — loss,
//! duplication, reordering, partitions, crashes with torn writes, power
//! losses, snapshots, membership changes, leader transfers — and every seed's
//! history must be linearizable. The simulator's own invariants are checked
//! on the way; a run they stop counts as a violation ("the run broke").
//!
//! ```sh
//! cargo test --release --test sim -- lincheck::                    # CI: 200 seeds
//! LIN_SEED=17 cargo test --release --test sim -- lincheck::replay --nocapture
//! LIN_START=1000 LIN_SEEDS=100000 cargo test --release --test sim -- lincheck::seeds --nocapture
//! ```
//!
//! `LIN_NODES=3|5` forces the cluster size (default: even seeds 3 voters,
//! odd seeds 5); `LIN_PROFILE=<name>` picks one of the simulator's named
//! fault mixes (e.g. `membership`, `lease`, `power`) for a soak or a replay.
//! A seed runs the same faults as `SIM_SEED` does in `tests/sim/raft.rs`, with KV
//! clients instead of the plain workload.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use rraft_sim::cluster::{run_seed, Mutation, RunOptions};
use rraft_sim::faults;
use rraft_sim::linearizability::{check, Verdict};
use rraft_sim::seeds::run_parallel;

/// Search steps per key before a history is called inconclusive.
const STEP_LIMIT: u64 = 2_000_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[derive(Default)]
struct Summary {
    seeds: u64,
    ops: u64,
    lease_reads: u64,
    index_reads: u64,
    crashes: u64,
    elections: u64,
    conf_changes: u64,
    transfers: u64,
    quiescent_ticks: u64,
    /// (seed, key and operations): histories no order explains.
    not_linearizable: Vec<(u64, String)>,
    /// (seed, invariant and detail): runs the simulator's checks stopped.
    broken: Vec<(u64, String)>,
    inconclusive: Vec<u64>,
}

impl Summary {
    /// The failing seeds, each once (not linearizable first, then broken).
    fn violations(&self) -> Vec<&(u64, String)> {
        let mut all: Vec<_> = self.not_linearizable.iter().chain(&self.broken).collect();
        all.sort_by_key(|v| v.0);
        all.dedup_by_key(|v| v.0);
        all
    }

    fn line(&self) -> String {
        format!(
            "lincheck: {} seeds, {} ops, {} violations, {} inconclusive",
            self.seeds,
            self.ops,
            self.violations().len(),
            self.inconclusive.len()
        )
    }
}

fn check_seed(seed: u64, opts: &RunOptions, sum: &Mutex<Summary>) {
    let run = run_seed(seed, opts);
    let clients = run.kv.expect("a run with KV clients");
    // The history up to a broken run's stop is checked too: a stale read
    // the simulator caught is also what the checker must see.
    let verdict = check(&clients.history, STEP_LIMIT);
    let mut s = sum.lock().unwrap_or_else(|e| e.into_inner());
    s.seeds += 1;
    s.ops += clients.history.len() as u64;
    s.lease_reads += clients.lease_reads;
    s.index_reads += clients.index_reads;
    s.crashes += run.stats.crashes;
    s.elections += run.stats.leaders;
    s.conf_changes += run.stats.conf_changes_done;
    s.transfers += run.stats.transfers;
    s.quiescent_ticks += run.stats.quiescent_ticks;
    if let Some(f) = run.failure {
        let why = format!(
            "the run broke: {}: {}",
            f.violation.invariant, f.violation.detail
        );
        s.broken.push((seed, why));
    }
    match verdict {
        Verdict::Linearizable => {}
        Verdict::Violation { key, detail } => s
            .not_linearizable
            .push((seed, format!("key {key} not linearizable:{detail}"))),
        Verdict::Inconclusive { .. } => s.inconclusive.push(seed),
    }
}

fn run_many(start: u64, count: u64, opts: &RunOptions) -> Summary {
    let sum = Mutex::new(Summary::default());
    run_parallel(start, count, |seed| check_seed(seed, opts, &sum));
    let mut s = sum.into_inner().unwrap_or_else(|e| e.into_inner());
    s.not_linearizable.sort_by_key(|v| v.0);
    s.broken.sort_by_key(|v| v.0);
    s.inconclusive.sort();
    s
}

/// Written to the raw stdout handle, which the harness does not capture.
fn publish(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn kv_options() -> RunOptions {
    RunOptions {
        nodes: env_u64("LIN_NODES").map(|n| n as usize),
        tweak: faults::env_profile("LIN_PROFILE"),
        kv: true,
        ..RunOptions::default()
    }
}

/// CI: 200 seeds (even: 3 voters, odd: 5), every history linearizable.
#[test]
fn seeds() {
    let start = env_u64("LIN_START").unwrap_or(0);
    let count = env_u64("LIN_SEEDS").unwrap_or(200);
    let t = Instant::now();
    let s = run_many(start, count, &kv_options());
    publish(&s.line());
    publish(&format!(
        "lincheck: seeds {start}..{} in {:.1}s: {} ReadIndex reads, {} lease reads, {} crashes, \
         {} leader terms, {} membership changes, {} transfers; {} not linearizable, {} runs broken",
        start + count,
        t.elapsed().as_secs_f64(),
        s.index_reads,
        s.lease_reads,
        s.crashes,
        s.elections,
        s.conf_changes,
        s.transfers,
        s.not_linearizable.len(),
        s.broken.len()
    ));
    assert!(s.index_reads > 0 && s.lease_reads > 0, "no reads served");
    let violations = s.violations();
    if let Some((seed, why)) = violations.first() {
        let seeds: Vec<String> = violations.iter().map(|v| v.0.to_string()).collect();
        panic!(
            "{}\nfailing seeds: {}\nfirst: seed {seed}: {why}\n\
             replay: LIN_SEED={seed} cargo test --release --test sim -- lincheck::replay --nocapture",
            s.line(),
            seeds.join(", ")
        );
    }
    assert!(
        s.inconclusive.len() as u64 * 20 <= count,
        "too many inconclusive seeds: {:?}",
        s.inconclusive
    );
}

/// Quiescent groups (sparse clients, crashes, partitions, transfers, a
/// failure detector): ReadIndex and lease reads stay linearizable when
/// leaders sleep and wake.
#[test]
fn quiescent_groups() {
    let opts = RunOptions {
        tweak: Some(faults::profile_quiesce),
        ..kv_options()
    };
    let s = run_many(30_000, 120, &opts);
    publish(&format!(
        "lincheck quiescent: {}: {} node-ticks quiescent, {} ReadIndex reads, {} lease reads",
        s.line(),
        s.quiescent_ticks,
        s.index_reads,
        s.lease_reads
    ));
    assert!(s.quiescent_ticks > 0, "no group quiesced");
    assert!(s.index_reads > 0 && s.lease_reads > 0, "no reads served");
    if let Some((seed, why)) = s.violations().first() {
        panic!("seed {seed}: {why}\nreplay: LIN_PROFILE=quiesce LIN_SEED={seed} cargo test --release --test sim -- lincheck::replay --nocapture");
    }
}

/// `LIN_SEED=<n>`: one seed, every simulator event printed, the client
/// history, and the verdict.
#[test]
fn replay() {
    let Some(seed) = env_u64("LIN_SEED") else {
        return;
    };
    let opts = RunOptions {
        verbose: true,
        ..kv_options()
    };
    let run = run_seed(seed, &opts);
    let clients = run.kv.expect("a run with KV clients");
    for op in &clients.history {
        println!("{op:?}");
    }
    let v = check(&clients.history, STEP_LIMIT);
    println!("seed {seed}: {} ops: {v:?}", clients.history.len());
    if let Some(f) = run.failure {
        panic!("seed {seed}: the run broke: {f}");
    }
    if let Verdict::Violation { key, detail } = v {
        panic!("seed {seed}: key {key} not linearizable:{detail}");
    }
}

/// The workload and checker together catch a broken read path: with
/// "lease" reads served from any node's local state, or ReadIndex reads
/// served before the state machine reached the read index, some histories
/// must be found not linearizable (by the checker itself, whatever the
/// simulator's own invariants say).
#[test]
fn mutations_are_caught() {
    for m in [Mutation::LocalReads, Mutation::EagerReads] {
        let opts = RunOptions {
            mutation: Some(m),
            ..kv_options()
        };
        let s = run_many(10_000, 60, &opts);
        publish(&format!(
            "lincheck mutation {m:?}: {} ({} not linearizable)",
            s.line(),
            s.not_linearizable.len()
        ));
        assert!(
            !s.not_linearizable.is_empty(),
            "{m:?} went unnoticed: {}",
            s.line()
        );
    }
}
