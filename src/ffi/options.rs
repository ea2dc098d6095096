//! `raft_node_options_t`: braft's `NodeOptions` plus the per-node tuning
//! braft keeps in process-wide flags.

use std::ffi::c_char;

use super::boundary::{ffi_boundary, opt_str_arg};
use crate::node::errno::{self, Status};
use crate::node::peer_id::parse_peer_list;
use crate::node::NodeOptions;

/// Options of one node. Always fill it with `raft_node_options_init` first,
/// then change what you need: fields added in later versions keep their
/// defaults that way.
///
/// What a node costs (many groups in one process): no thread of its own by
/// default. The nodes of a process share the IO runtime's workers
/// (`raft_global_init`), a pool of log writer threads and a pool of FSM
/// threads (`raft_global_set_threads`), and one tick source; the
/// process's thread count does not grow with its node count. Per node: a
/// driver task woken every election_timeout_ms / 20 by the shared tick
/// source, heartbeats to each follower while leader, one fdatasync per
/// write batch of its own log; memory: its log index (a few bytes per
/// entry in the log), its entry cache (at most `log_cache_bytes`) and, as
/// leader, the entries sent and not yet acknowledged (all caches and all
/// data in flight of the process together at most the budget of
/// `raft_global_set_memory_budget`), plus about 40 KiB of state (1,000
/// idle nodes: about 42 MiB resident); disk: its log's open segment (up
/// to `max_segment_size`, default 8 MiB, plus up to 256 KiB of zeros kept
/// ahead of its last entry on "local://").
///
/// Ownership: the strings are borrowed; they only need to stay valid during
/// `raft_node_init`, which copies them.
#[repr(C)]
pub struct raft_node_options_t {
    /// Set by `raft_node_options_init`; lets the library detect an options
    /// struct that was not initialised.
    pub struct_size: usize,
    /// Election timeout in ms (braft default 1000). Elections fire in [t, 2t).
    pub election_timeout_ms: i32,
    /// Time a new peer has to catch up before a membership change fails with
    /// ECATCHUP; 0 = the election timeout (braft default 0).
    pub catchup_timeout_ms: i32,
    /// Clock drift allowed between peers, ms (braft default 1000); counted
    /// as D = min(max_clock_drift_ms, election_timeout_ms / 2). Leases run on
    /// each node's monotonic clock (CLOCK_MONOTONIC), never on a count of
    /// timer wake-ups: a leader's lease ends election_timeout − D after it
    /// sent the heartbeat a quorum answered, and a follower refuses votes
    /// for election_timeout + D − one tick (election_timeout / 20) after it
    /// heard from the leader. Lease reads are therefore linearizable while
    /// the clocks of any two nodes advance at rates whose ratio stays below
    /// (E + D − E/20) / (E − D), E = election_timeout_ms: 2.9 with the
    /// defaults, 1.17 with E = 1000 and max_clock_drift_ms = 100. A paused
    /// or overloaded leader's lease expires with the time that passed.
    pub max_clock_drift_ms: i32,
    /// Seconds between automatic snapshots; <= 0 disables them (default 3600).
    pub snapshot_interval_s: i32,
    /// A new peer counts once it is this close to the leader's log (default 1000).
    pub catchup_margin: i64,
    /// "ip:port:idx,ip:port:idx,..." used only when the storage is empty. NULL
    /// or "" starts a node that waits to be added by a leader.
    pub initial_conf: *const c_char,
    /// Non-voting learners of the initial configuration (beyond braft).
    pub initial_learners: *const c_char,
    /// "local://DIR" (braft's segment files, readable by braft after a
    /// clean shutdown: while the node runs, with sync on and without
    /// braft_compat, the open segment is kept ahead with zeros for faster
    /// fsyncs on ext4, and braft refuses an open segment that ends in
    /// zeros; with braft_compat, readable by braft at every instant),
    /// "local-prealloc://DIR" (the zeros even with braft_compat),
    /// "shared://DIR" (one log shared
    /// by every node of the process that names DIR: one fdatasync per round
    /// for all of them; rraft's own format) or "memory://" (required).
    pub log_uri: *const c_char,
    /// "local://DIR" (required).
    pub raft_meta_uri: *const c_char,
    /// "local://DIR"; NULL or "" disables snapshots.
    pub snapshot_uri: *const c_char,
    /// Do not answer rraft-cli requests (braft default false).
    pub disable_cli: bool,
    /// fdatasync every log batch (braft raft_sync, default true).
    pub sync: bool,
    /// Enable the leader lease for `raft_node_is_leader_lease_valid`
    /// (braft raft_enable_leader_lease, default false); see
    /// `max_clock_drift_ms` for the clock bound it relies on.
    pub enable_leader_lease: bool,
    /// Log segment size in bytes (default 8 MiB).
    pub max_segment_size: u64,
    /// Entries per AppendEntries (default 1024).
    pub max_entries_per_append: u32,
    /// Payload bytes per AppendEntries (default 512 KiB).
    pub max_body_size: u32,
    /// AppendEntries in flight per follower (default 256; braft uses 1).
    pub max_inflight_appends: u32,
    /// Bytes of recent log entries kept in memory (default 8 MiB).
    pub log_cache_bytes: u64,
    /// Snapshot file chunk size in bytes (default 128 KiB).
    pub snapshot_chunk_bytes: u32,
    /// Entries per `on_apply` call at most (default 512).
    pub apply_batch: u32,
    /// The node's log writes get a thread of their own instead of the
    /// process's shared log writer threads (default false: shared; see
    /// `raft_global_set_threads`).
    pub dedicated_log_writer: bool,
    /// The node's callbacks get a thread of their own instead of the
    /// process's shared FSM threads (default false: shared). Set it for a
    /// state machine whose callbacks may block for long: on a shared
    /// thread they hold up the callbacks of other nodes meanwhile.
    pub dedicated_fsm_thread: bool,
    /// A group idle this long (ms) with every replica caught up quiesces:
    /// no ticks, no heartbeats until a write, a read, a message or a
    /// suspected server failure wakes it. 0 (the default) = never. The
    /// server's transport then watches each peer server with one keepalive
    /// per connection, so idle groups cost no messages. Recommended for a
    /// process hosting hundreds of groups (for example 2 × the election
    /// timeout): 1,000 idle groups cost about 15 % of a core per process
    /// awake and almost nothing asleep, and re-elect as fast after a
    /// server dies. Off by default because a quiescent leader holds no
    /// lease (`raft_node_is_leader_lease_valid` is false on an idle group)
    /// and a sleeping group notices a silent partition only through the
    /// transport's TCP timeout.
    pub quiesce_after_ms: i32,
    /// The node may share its group with braft replicas, for a rolling
    /// upgrade from braft to rraft (or back) one replica at a time
    /// (default false). The node then serves braft's `RaftService` and
    /// `FileService` on its port and sends its own Raft messages to every
    /// peer as braft's `RaftService` calls over baidu_std (rraft peers with
    /// this option serve them too). Set it on every rraft replica of a
    /// group while any braft replica remains; clear it (restart) once none
    /// does.
    ///
    /// Works in a mixed group: elections either way (pre-vote and vote in
    /// braft's form; this node refuses votes for election_timeout + drift
    /// after it heard from a leader, braft's replicas only when they run
    /// with raft_enable_leader_lease); replication and commit under a braft
    /// or an rraft leader, an append acknowledged only once it is durable;
    /// snapshots installed either way (braft's `remote://ip:port/reader_id`
    /// and `FileService.get_file`; a file fetched from a braft leader is
    /// held in memory until it is complete); leadership transfer either way
    /// (braft_cli / CliService `transfer_leader`, TimeoutNow); braft's
    /// CliService and clients; `raft_node_apply`, and `raft_node_read_index`
    /// on the leader.
    ///
    /// Different in a mixed group: the leader holds no lease (braft's
    /// followers may vote while a leader is alive unless braft runs with
    /// raft_enable_leader_lease, which this node cannot see):
    /// `raft_node_is_leader_lease_valid` is false and every read takes a
    /// ReadIndex round of heartbeats. One append in flight per follower
    /// (braft's own default), and one heartbeat call per follower and group
    /// (no coalescing): lower throughput than an all-rraft group.
    ///
    /// Waits until every replica is rraft: `raft_node_read_index` on a
    /// follower (its request to the leader has no braft form: it fails with
    /// ERAFTTIMEDOUT after two election timeouts); quiescence
    /// (`quiesce_after_ms` is ignored); learners (braft's configuration
    /// entries carry voters only: no `raft_node_add_learner` in a mixed
    /// group).
    pub braft_compat: bool,
}

/// Fills `opts` with braft's defaults. Returns 0, or EINVAL for NULL.
///
/// Ownership: `opts` is the caller's; the library keeps no reference.
#[no_mangle]
pub extern "C" fn raft_node_options_init(opts: *mut raft_node_options_t) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        super::boundary::require_non_null!(opts, errno::EINVAL);
        let d = NodeOptions::default();
        let value = raft_node_options_t {
            struct_size: std::mem::size_of::<raft_node_options_t>(),
            election_timeout_ms: d.election_timeout_ms as i32,
            catchup_timeout_ms: d.catchup_timeout_ms as i32,
            max_clock_drift_ms: d.max_clock_drift_ms as i32,
            snapshot_interval_s: d.snapshot_interval_s,
            catchup_margin: d.catchup_margin as i64,
            initial_conf: std::ptr::null(),
            initial_learners: std::ptr::null(),
            log_uri: std::ptr::null(),
            raft_meta_uri: std::ptr::null(),
            snapshot_uri: std::ptr::null(),
            disable_cli: d.disable_cli,
            sync: d.sync,
            enable_leader_lease: d.enable_leader_lease,
            max_segment_size: d.max_segment_size,
            max_entries_per_append: d.max_entries_per_append,
            max_body_size: d.max_body_size,
            max_inflight_appends: d.max_inflight_appends,
            log_cache_bytes: d.log_cache_bytes,
            snapshot_chunk_bytes: d.snapshot_chunk_bytes,
            apply_batch: d.apply_batch,
            dedicated_log_writer: d.dedicated_log_writer,
            dedicated_fsm_thread: d.dedicated_fsm_thread,
            quiesce_after_ms: d.quiesce_after_ms as i32,
            braft_compat: d.braft_compat,
        };
        // SAFETY: `opts` is non-NULL and points to a raft_node_options_t the
        // caller owns; writing a whole value needs no prior initialisation.
        unsafe { opts.write(value) };
        0
    })
}

fn non_negative(value: i32, name: &str) -> Result<u32, Status> {
    u32::try_from(value)
        .map_err(|_| Status::new(errno::EINVAL, format!("{name} is negative ({value})")))
}

/// Converts C options to the runtime's, checking every field.
///
/// # Safety
/// `opts` points to an initialised `raft_node_options_t` whose strings are
/// NULL or valid NUL-terminated strings for this call.
pub(crate) unsafe fn to_node_options(opts: &raft_node_options_t) -> Result<NodeOptions, Status> {
    if opts.struct_size != std::mem::size_of::<raft_node_options_t>() {
        return Err(Status::new(
            errno::EINVAL,
            "raft_node_options_t was not filled by raft_node_options_init (or comes from another rraft version)",
        ));
    }
    // SAFETY (all str reads below): forwarded from the caller's guarantee.
    let text = |ptr, name| unsafe { opt_str_arg(ptr, name) };
    let parse_list = |ptr, name| -> Result<_, Status> {
        parse_peer_list(text(ptr, name)?)
            .map_err(|e| Status::new(errno::EINVAL, format!("{name}: {}", e.0)))
    };
    Ok(NodeOptions {
        election_timeout_ms: non_negative(opts.election_timeout_ms, "election_timeout_ms")?,
        catchup_timeout_ms: non_negative(opts.catchup_timeout_ms, "catchup_timeout_ms")?,
        max_clock_drift_ms: non_negative(opts.max_clock_drift_ms, "max_clock_drift_ms")?,
        snapshot_interval_s: opts.snapshot_interval_s,
        catchup_margin: u64::try_from(opts.catchup_margin)
            .map_err(|_| Status::new(errno::EINVAL, "catchup_margin is negative"))?,
        initial_conf: parse_list(opts.initial_conf, "initial_conf")?,
        initial_learners: parse_list(opts.initial_learners, "initial_learners")?,
        log_uri: text(opts.log_uri, "log_uri")?.to_string(),
        raft_meta_uri: text(opts.raft_meta_uri, "raft_meta_uri")?.to_string(),
        snapshot_uri: text(opts.snapshot_uri, "snapshot_uri")?.to_string(),
        disable_cli: opts.disable_cli,
        sync: opts.sync,
        enable_leader_lease: opts.enable_leader_lease,
        max_segment_size: opts.max_segment_size,
        max_entries_per_append: opts.max_entries_per_append,
        max_body_size: opts.max_body_size,
        max_inflight_appends: opts.max_inflight_appends,
        log_cache_bytes: opts.log_cache_bytes,
        snapshot_chunk_bytes: opts.snapshot_chunk_bytes,
        apply_batch: opts.apply_batch,
        dedicated_log_writer: opts.dedicated_log_writer,
        dedicated_fsm_thread: opts.dedicated_fsm_thread,
        quiesce_after_ms: non_negative(opts.quiesce_after_ms, "quiesce_after_ms")?,
        braft_compat: opts.braft_compat,
        ..NodeOptions::default()
    })
}
