//! Library-wide setup.

use super::boundary::{fail_with, ffi_boundary};
use crate::node::errno;

/// Starts the library's IO runtime with `workers` threads (0 = the default,
/// 1). Optional: the first server or client starts it with the default.
/// Returns 0; EEXIST if the runtime already runs (the count is then fixed);
/// EINVAL for a negative count.
#[no_mangle]
pub extern "C" fn raft_global_init(workers: i32) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        super::logging::ensure_logger();
        if workers < 0 {
            return fail_with(errno::EINVAL, format!("worker count {workers} is negative"));
        }
        match crate::node::runtime::init(workers as usize) {
            Ok(true) => 0,
            Ok(false) => fail_with(errno::EEXIST, "the rraft runtime is already running"),
            Err(e) => fail_with(errno::EINTERNAL, format!("cannot start the runtime: {e}")),
        }
    })
}

/// Sets the sizes of the thread pools the nodes of the process share: the
/// log writers (`writer_threads`, default 8: each fdatasyncs one node's
/// batch at a time) and the FSM callers (`fsm_threads`, default 2: each
/// runs one node's callbacks at a time). 0 keeps a default. Call it before
/// the first `raft_node_init`. A node may have its own threads instead
/// (`raft_node_options_t.dedicated_log_writer`, `.dedicated_fsm_thread`).
/// Returns 0; EEXIST once a pool has started (the sizes are then fixed);
/// EINVAL for a negative count.
#[no_mangle]
pub extern "C" fn raft_global_set_threads(writer_threads: i32, fsm_threads: i32) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        if writer_threads < 0 || fsm_threads < 0 {
            return fail_with(
                errno::EINVAL,
                format!("thread counts {writer_threads}, {fsm_threads}: one is negative"),
            );
        }
        if crate::node::runtime::set_pool_threads(writer_threads as usize, fsm_threads as usize) {
            0
        } else {
            fail_with(
                errno::EEXIST,
                "the shared log writer and FSM threads are already running",
            )
        }
    })
}

/// Sets the process-wide memory budget, in bytes, of the recent-entry
/// caches of every node's log and of the entry data in flight (sent by a
/// leader, not yet acknowledged by the follower) (0 = the default,
/// 256 MiB). Each node's cache also stays within its own
/// `log_cache_bytes`; a node whose append takes the process over the
/// budget evicts its own oldest cached entries (they are then read from
/// disk), and while the process is over it a leader keeps one append with
/// entries in flight per follower instead of `max_inflight_appends`
/// (replication goes on, one round trip at a time). May be called at any
/// time; applies from each cache's next append and each leader's next
/// step. Returns 0.
#[no_mangle]
pub extern "C" fn raft_global_set_memory_budget(bytes: u64) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        crate::storage::set_cache_budget(bytes);
        0
    })
}
