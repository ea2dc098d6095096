//! rraft-bench: measurements of rraft's parts and of whole clusters.
//!
//! `rraft-bench storage` measures the durable log against the raw disk.
//! `rraft-bench cluster` measures a whole group (3 replicas by default, in
//! separate processes) under a closed-loop client load: ops/s, latency
//! percentiles, CPU per op, peak RSS and fsyncs per second.
//! `rraft-bench counter` measures the same through the C API: the
//! `examples-c/counter` servers and client.
//! `rraft-bench multi` measures many groups in three processes: start,
//! idle cost, load spread over the groups, and re-election after a kill.

use clap::{Parser, Subcommand};

#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/counter.rs"]
mod counter;
#[path = "bench/multi.rs"]
mod multi;
#[path = "bench/replica.rs"]
mod replica;
#[path = "bench/stages.rs"]
mod stages;
#[path = "bench/storage.rs"]
mod storage;
#[path = "bench/timeline.rs"]
mod timeline;

#[derive(Parser, Debug)]
#[command(name = "rraft-bench", about = "Benchmarks for rraft", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log append throughput with fdatasync (vs the raw disk) and log reopen time.
    Storage(storage::StorageArgs),
    /// A replicated group under a closed-loop write load.
    ///
    /// Starts --nodes replicas on 127.0.0.1 with local:// storage in a fresh
    /// temporary directory (fdatasync on unless --sync false). --mode procs
    /// (default) runs each replica in its own process (this binary
    /// re-executed) and --clients clients in this one, each with one
    /// `bench.write` call in flight through GroupClient (the replica's
    /// handler does Node::apply and answers from the done: client -> leader
    /// -> quorum fdatasync -> apply -> reply). --mode inproc hosts every
    /// replica on one server here and calls Node::apply directly.
    ///
    /// Prints a line per second, then: ops/s, MiB/s of payload, latency
    /// mean/p50/p99/p99.9/max (every measured op, sorted), CPU seconds per
    /// 1,000 ops (utime+stime of the replicas and of this process), peak RSS
    /// (VmHWM) per replica process, and log-writer group commits (one
    /// fdatasync each) per second summed over the replicas. --raw-disk adds
    /// the raw 1 MiB write + fdatasync bandwidth of the same filesystem and
    /// the run's share of it. --json prints one object with the keys
    /// ops_per_s, mb_per_s (MiB/s), mean_us, p50_us, p99_us, p999_us,
    /// max_us, cpu_s_per_kop, rss_max_bytes, rss_bytes, fsyncs_per_s (and
    /// raw_disk_mb_per_s, of_raw_disk with --raw-disk).
    Cluster(cluster::ClusterArgs),
    /// The C path: examples-c/counter's servers and client under a fetch_add load.
    ///
    /// Starts --nodes counter_server processes on free ports of 127.0.0.1
    /// (fdatasync on unless --sync false) in a fresh temporary directory and
    /// one counter_client with --clients callers, each with one
    /// CounterService.fetch_add in flight: a pthread each, or with --async all
    /// driven by raft_client_call_async completion callbacks. The binaries
    /// come from --example-dir (default: this source tree's
    /// examples-c/counter; `make -C examples-c/counter` or --build builds
    /// them). Prints the client's per-second lines, then ops/s, latency
    /// mean/p50/p99 (the client's, over the measured window), CPU
    /// microseconds per op of the servers and the client, context switches
    /// per op, and the servers' peak RSS. --json prints one object with the
    /// keys ops_per_s, mean_us, p50_us, p99_us, errors, cpu_us_per_op,
    /// server_cpu_us_per_op, client_cpu_us_per_op, switches_per_op,
    /// rss_max_bytes.
    Counter(counter::CounterArgs),
    /// Many groups in three processes, each holding one replica of every group.
    ///
    /// Starts 3 processes (this binary re-executed) on 127.0.0.1, each with
    /// one replica of each of --groups groups, local:// storage in a fresh
    /// temporary directory, fdatasync on unless --sync false. Reports: the
    /// seconds until the processes started their nodes and until every
    /// group has a leader; idle CPU % of one core, threads and RSS per
    /// process over --idle-secs; under --clients closed-loop clients, each
    /// writing to a group drawn uniformly at random: ops/s, latency
    /// p50/p99/max, errors, log-writer fdatasync batches per second (all
    /// processes) and peak RSS; then (unless --no-kill) the seconds until
    /// every group has a leader again after a SIGKILL of one process.
    /// --json prints one object with the keys groups, clients, payload,
    /// sync, election_timeout_ms, startup_s, leaders_s, idle_cpu_pct[],
    /// threads[], rss_idle_bytes[], rss_max_bytes[], secs, ops, errors,
    /// ops_per_s, p50_us, p99_us, max_us, fsyncs_per_s, reelect_s.
    Multi(multi::MultiArgs),
    /// One process of `multi` (internal).
    #[command(hide = true)]
    MultiNode(multi::MultiNodeArgs),
    /// One replica of `cluster --mode procs` (internal).
    #[command(hide = true)]
    Node(cluster::NodeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Storage(args) => storage::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Counter(args) => counter::run(args),
        Command::Node(args) => cluster::run_node(args),
        Command::Multi(args) => multi::run(args),
        Command::MultiNode(args) => multi::run_node(args),
    };
    if let Err(e) = result {
        eprintln!("rraft-bench: {e}");
        std::process::exit(1);
    }
}
