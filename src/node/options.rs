//! Per-node options: braft's `NodeOptions` plus the process-wide gflags braft
//! users tune, made per node. Defaults are braft's unless noted.

use super::peer_id::PeerId;

#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// braft election_timeout_ms: 1000. Timers draw in [t, 2t).
    pub election_timeout_ms: u32,
    /// braft catchup_timeout_ms: 0 = the election timeout.
    pub catchup_timeout_ms: u32,
    /// braft max_clock_drift_ms: 1000. Leases run on the monotonic clock;
    /// the bound they rely on is documented on `raft_node_options_t`.
    pub max_clock_drift_ms: u32,
    /// braft snapshot_interval_s: 3600; ≤ 0 disables timed snapshots.
    pub snapshot_interval_s: i32,
    /// braft catchup_margin: 1000 entries.
    pub catchup_margin: u64,
    /// Used only when the node's storage is empty.
    pub initial_conf: Vec<PeerId>,
    /// Beyond braft: non-voting members of the initial configuration.
    pub initial_learners: Vec<PeerId>,
    /// `local://DIR` (braft's segment files; while the node runs, with
    /// sync on and without `braft_compat`, its open segment is kept ahead
    /// with zeros for faster fsyncs, cut at a clean shutdown: braft refuses
    /// an open segment that ends in zeros), `local-prealloc://DIR` (the
    /// zeros even with `braft_compat`), `shared://DIR` (the process's log
    /// shared by every node naming DIR; see `storage::shared_log`) or
    /// `memory://`.
    pub log_uri: String,
    /// `local://DIR` (or `memory://`, for tests).
    pub raft_meta_uri: String,
    /// `local://DIR`; empty = snapshots disabled.
    pub snapshot_uri: String,
    /// braft disable_cli: false (the node answers rraft-cli on its port).
    pub disable_cli: bool,
    /// braft raft_sync: true (fdatasync each log batch).
    pub sync: bool,
    /// braft raft_enable_leader_lease: false (lease reads are opt-in).
    pub enable_leader_lease: bool,
    /// braft raft_max_segment_size: 8 MiB.
    pub max_segment_size: u64,
    /// braft raft_max_entries_size: 1024 entries per AppendEntries.
    pub max_entries_per_append: u32,
    /// braft raft_max_body_size: 512 KiB per AppendEntries.
    pub max_body_size: u32,
    /// braft raft_max_parallel_append_entries_rpc_num is 1 (no pipelining);
    /// rraft defaults to 256 AppendEntries in flight per follower.
    pub max_inflight_appends: u32,
    /// Recent log entries kept in memory, bounded in bytes (rraft: 8 MiB).
    pub log_cache_bytes: u64,
    /// braft raft_max_byte_count_per_rpc: 128 KiB per snapshot file chunk.
    pub snapshot_chunk_bytes: u32,
    /// braft raft_fsm_caller_commit_batch: 512 entries per on_apply call.
    pub apply_batch: u32,
    /// rraft: false. The node's log writes run on a thread of its own
    /// instead of the process's shared pool of log writer threads (for a
    /// log on a disk of its own, or a group whose fsyncs must not queue
    /// behind other groups').
    pub dedicated_log_writer: bool,
    /// rraft: false. The node's callbacks run on a thread of its own instead
    /// of the process's shared pool of FSM threads (for a state machine
    /// whose callbacks may block for long).
    pub dedicated_fsm_thread: bool,
    /// Beyond braft: a group idle this long with every replica caught up
    /// quiesces (no ticks, no heartbeats) until something wakes it; 0 =
    /// never (the default).
    pub quiesce_after_ms: u32,
    /// Beyond braft: false. The node may share its group with braft
    /// replicas (a rolling upgrade from braft): it speaks braft's
    /// `RaftService` to its peers and keeps to what braft understands (see
    /// `raft_node_options_t.braft_compat` for what works in a mixed group).
    pub braft_compat: bool,
    /// The file system under `local://` URIs (Rust only; None = the real
    /// one, or the test-only `LazyFs` when `RRAFT_TEST_LAZY_FS` is set).
    /// Tests put fault-injecting or simulated file systems here.
    pub fs: Option<std::sync::Arc<dyn crate::storage::FileSystem>>,
    /// Test-only: puts a known defect back, so that a test can prove it
    /// finds that defect. Always `Mutation::None` outside such tests.
    #[doc(hidden)]
    pub mutation: Mutation,
}

/// Test-only defects a node can be told to have (see `NodeOptions::mutation`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mutation {
    #[default]
    None,
    /// A follower sends acknowledgements and vote grants at once when the
    /// Ready that made them wrote nothing, even while earlier writes are
    /// still on their way to the disk.
    AckBeforeSync,
    /// The core gets one tick per driver turn (late ticks are lost) and the
    /// published lease is trusted for one tick from the last turn: a busy or
    /// paused leader's lease outlives the followers' vote refusal.
    TickCountLease,
    /// The published lease holds although the leader has not applied every
    /// entry it committed (a local read under it can be stale).
    LeaseIgnoresApplyLag,
    /// A `shared://` log's sync round counts its records durable and runs
    /// its continuations without the fdatasync
    /// (`LogOptions::unsynced_rounds_mutation`).
    SharedLogRoundSkipsSync,
    /// Recovery refuses a log whose last, unsynced batch was torn with a
    /// valid entry after the damage (`LogOptions::strict_tail_mutation`).
    StrictTailRecovery,
    /// A follower answers heartbeats that change nothing without a turn
    /// (as without a mutation) but never hands the leader's contact to its
    /// core: its election timer runs on as if the leader were silent.
    QuietBeatsForgetContact,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            election_timeout_ms: 1000,
            catchup_timeout_ms: 0,
            max_clock_drift_ms: 1000,
            snapshot_interval_s: 3600,
            catchup_margin: 1000,
            initial_conf: Vec::new(),
            initial_learners: Vec::new(),
            log_uri: String::new(),
            raft_meta_uri: String::new(),
            snapshot_uri: String::new(),
            disable_cli: false,
            sync: true,
            enable_leader_lease: false,
            max_segment_size: 8 * 1024 * 1024,
            max_entries_per_append: 1024,
            max_body_size: 512 * 1024,
            max_inflight_appends: 256,
            log_cache_bytes: 8 * 1024 * 1024,
            dedicated_log_writer: false,
            dedicated_fsm_thread: false,
            snapshot_chunk_bytes: 128 * 1024,
            apply_batch: 512,
            quiesce_after_ms: 0,
            braft_compat: false,
            fs: None,
            mutation: Mutation::None,
        }
    }
}

/// Ticks per election timeout: the core's logical clock runs at
/// election_timeout_ms / ELECTION_TICKS per tick.
pub const ELECTION_TICKS: u32 = 20;

impl NodeOptions {
    /// Checks the options that would make the node misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.election_timeout_ms < 20 {
            return Err(format!(
                "election_timeout_ms {} is below 20 ms",
                self.election_timeout_ms
            ));
        }
        if self.log_uri.is_empty() {
            return Err(
                "log_uri is required (local://DIR, local-prealloc://DIR, shared://DIR or memory://)"
                    .into(),
            );
        }
        if self.raft_meta_uri.is_empty() {
            return Err("raft_meta_uri is required (local://DIR)".into());
        }
        if self.max_entries_per_append == 0
            || self.max_body_size == 0
            || self.max_inflight_appends == 0
        {
            return Err(
                "max_entries_per_append, max_body_size and max_inflight_appends must be positive"
                    .into(),
            );
        }
        if self.snapshot_chunk_bytes == 0 || self.apply_batch == 0 {
            return Err("snapshot_chunk_bytes and apply_batch must be positive".into());
        }
        if let Some(p) = self
            .initial_conf
            .iter()
            .chain(&self.initial_learners)
            .find(|p| p.is_unspecified())
        {
            return Err(format!(
                "peer {p} uses the unspecified address, which no peer can reach"
            ));
        }
        if let Some(p) = self
            .initial_learners
            .iter()
            .find(|p| self.initial_conf.contains(p))
        {
            return Err(format!("peer {p} is both a voter and a learner"));
        }
        Ok(())
    }

    /// Milliseconds per core tick.
    pub fn tick_ms(&self) -> u64 {
        (self.election_timeout_ms / ELECTION_TICKS).max(1) as u64
    }

    /// Converts a duration in milliseconds to core ticks (at least 1).
    pub fn ms_to_ticks(&self, ms: u32) -> u32 {
        ((ms as u64).div_ceil(self.tick_ms())).clamp(1, u32::MAX as u64) as u32
    }
}
