//! The knobs every replica process of a benchmark runs with: the parent
//! takes them as flags, applies them to itself (in-process replicas) and
//! hands them on to its replica processes unchanged.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct ReplicaKnobs {
    /// fdatasync each log batch (braft raft_sync).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sync: bool,
    /// Election timeout of the replicas in ms.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout_ms: u32,
    /// Log cache cap of each replica in MiB (NodeOptions::log_cache_bytes;
    /// the process-wide budget caps all of a process's caches together).
    #[arg(long, default_value_t = 8)]
    pub log_cache_mib: u64,
    /// Tokio worker threads per process (0: rraft's default, 1).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Shared log writer threads per process (0: rraft's default).
    #[arg(long, default_value_t = 0)]
    pub writer_threads: usize,
    /// Shared FSM threads per process (0: rraft's default).
    #[arg(long, default_value_t = 0)]
    pub fsm_threads: usize,
}

impl ReplicaKnobs {
    /// Starts this process's runtime and sizes its shared thread pools.
    pub fn init_runtime(&self) {
        let _ = rraft::node::runtime::init(self.workers);
        rraft::node::runtime::set_pool_threads(self.writer_threads, self.fsm_threads);
    }

    /// The flags that give a replica process the same knobs.
    pub fn child_args(&self) -> Vec<String> {
        [
            ("--sync", self.sync.to_string()),
            (
                "--election-timeout-ms",
                self.election_timeout_ms.to_string(),
            ),
            ("--log-cache-mib", self.log_cache_mib.to_string()),
            ("--workers", self.workers.to_string()),
            ("--writer-threads", self.writer_threads.to_string()),
            ("--fsm-threads", self.fsm_threads.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}
