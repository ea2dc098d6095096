//! Linearizability of a key-value store on simulated rraft clusters.
//!
//! `lincheck/checker.rs` is a Wing–Gong/Porcupine-style checker (with its
//! self-tests: known-bad histories rejected, known-good ones accepted);
//! `lincheck/kvsim.rs` runs a KV workload (read / write / CAS, ReadIndex and
//! lease reads) on a faulty simulated cluster and records each client's
//! history; every seed's history must be linearizable.
//!
//! ```sh
//! cargo test --release --test lincheck                      # CI: 200 seeds
//! LIN_SEED=17 cargo test --release --test lincheck -- replay --nocapture
//! LIN_START=1000 LIN_SEEDS=100000 cargo test --release --test lincheck -- seeds --nocapture
//! ```

#[path = "lincheck/checker.rs"]
mod checker;
#[path = "lincheck/kvsim.rs"]
mod kvsim;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use checker::{check, Verdict};
use kvsim::{run_seed, Mutation, RunOptions};

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
    /// (seed, what went wrong)
    violations: Vec<(u64, String)>,
    inconclusive: Vec<u64>,
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "lincheck: {} seeds, {} ops, {} violations, {} inconclusive",
            self.seeds,
            self.ops,
            self.violations.len(),
            self.inconclusive.len()
        )
    }
}

fn check_seed(seed: u64, opts: &RunOptions, sum: &Mutex<Summary>) {
    let run = run_seed(seed, opts);
    let verdict = check(&run.history, STEP_LIMIT);
    let mut s = sum.lock().unwrap_or_else(|e| e.into_inner());
    s.seeds += 1;
    s.ops += run.history.len() as u64;
    s.lease_reads += run.lease_reads;
    s.index_reads += run.index_reads;
    s.crashes += run.crashes;
    s.elections += run.elections;
    if let Some(e) = run.error {
        s.violations.push((seed, format!("the run broke: {e}")));
        return;
    }
    match verdict {
        Verdict::Linearizable => {}
        Verdict::Violation { key, detail } => s
            .violations
            .push((seed, format!("key {key} not linearizable:{detail}"))),
        Verdict::Inconclusive { .. } => s.inconclusive.push(seed),
    }
}

fn run_many(start: u64, count: u64, opts: &RunOptions) -> Summary {
    let next = AtomicU64::new(start);
    let sum = Mutex::new(Summary::default());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(count.max(1) as usize);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    break;
                }
                check_seed(seed, opts, &sum);
            });
        }
    });
    let mut s = sum.into_inner().unwrap_or_else(|e| e.into_inner());
    s.violations.sort_by_key(|v| v.0);
    s.inconclusive.sort();
    s
}

/// Written to the raw stdout handle, which the harness does not capture.
fn publish(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// CI: 200 seeds (even: 3 voters, odd: 5), every history linearizable.
#[test]
fn seeds() {
    let start = env_u64("LIN_START").unwrap_or(0);
    let count = env_u64("LIN_SEEDS").unwrap_or(200);
    let t = Instant::now();
    let s = run_many(start, count, &RunOptions::default());
    publish(&s.line());
    publish(&format!(
        "lincheck: {:.1}s, {} ReadIndex reads, {} lease reads, {} crashes, {} elections",
        t.elapsed().as_secs_f64(),
        s.index_reads,
        s.lease_reads,
        s.crashes,
        s.elections
    ));
    assert!(s.index_reads > 0 && s.lease_reads > 0, "no reads served");
    if let Some((seed, why)) = s.violations.first() {
        let seeds: Vec<String> = s.violations.iter().map(|v| v.0.to_string()).collect();
        panic!(
            "{}\nfailing seeds: {}\nfirst: seed {seed}: {why}\n\
             replay: LIN_SEED={seed} cargo test --release --test lincheck -- replay --nocapture",
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

/// `LIN_SEED=<n>`: one seed, every client event printed, and the verdict.
#[test]
fn replay() {
    let Some(seed) = env_u64("LIN_SEED") else {
        return;
    };
    let opts = RunOptions {
        nodes: env_u64("LIN_NODES").map(|n| n as usize),
        verbose: true,
        ..RunOptions::default()
    };
    let run = run_seed(seed, &opts);
    if let Some(e) = &run.error {
        panic!("seed {seed}: the run broke: {e}");
    }
    let v = check(&run.history, STEP_LIMIT);
    println!("seed {seed}: {} ops: {v:?}", run.history.len());
    if let Verdict::Violation { key, detail } = v {
        panic!("seed {seed}: key {key} not linearizable:{detail}");
    }
}

/// The workload and checker together catch a broken read path: with
/// "lease" reads served from any node's local state, or ReadIndex reads served before the
/// state machine reached the read index, some seeds must fail.
#[test]
fn mutations_are_caught() {
    for m in [Mutation::LocalReads, Mutation::EagerReads] {
        let opts = RunOptions {
            mutation: Some(m),
            ..RunOptions::default()
        };
        let s = run_many(10_000, 100, &opts);
        assert!(
            !s.violations.is_empty(),
            "{m:?} went unnoticed: {}",
            s.line()
        );
        publish(&format!("lincheck mutation {m:?}: {}", s.line()));
    }
}
