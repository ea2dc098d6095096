//! rraft-bench: measurements of rraft's parts and of whole clusters.
//!
//! `rraft-bench storage` measures the durable log against the raw disk.
//! `rraft-bench cluster` measures a whole group (3 replicas by default, in
//! separate processes) under a closed-loop client load: ops/s, latency
//! percentiles, CPU per op, peak RSS and fsyncs per second.

use clap::{Parser, Subcommand};

#[path = "bench/cluster.rs"]
mod cluster;
#[path = "bench/storage.rs"]
mod storage;

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
    /// A replicated group under a closed-loop write load (see the module docs).
    Cluster(cluster::ClusterArgs),
    /// One replica of `cluster --mode procs` (internal).
    #[command(hide = true)]
    Node(cluster::NodeArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Storage(args) => storage::run(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Node(args) => cluster::run_node(args),
    };
    if let Err(e) = result {
        eprintln!("rraft-bench: {e}");
        std::process::exit(1);
    }
}
