//! rraft-bench: measurements of rraft's parts and of whole clusters.
//!
//! `rraft-bench storage` measures the durable log against the raw disk.
//! Further subcommands (cluster benchmarks) are added beside it.

use clap::{Parser, Subcommand};

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Storage(args) => storage::run(args),
    };
    if let Err(e) = result {
        eprintln!("rraft-bench: {e}");
        std::process::exit(1);
    }
}
