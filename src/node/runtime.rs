//! The library-wide tokio runtime, created on first use or by
//! `raft_global_init` (worker count configurable, default
//! [`DEFAULT_WORKERS`]).

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Tokio workers of the runtime unless `raft_global_init` asks for more.
/// One: a write's path (request in, proposal, Appends out, answers in) is a
/// chain of short steps, and with a second worker most of them wake the
/// other worker (a futex and a context switch) instead of running on the
/// thread that is already awake; the blocking work (fdatasync, user
/// callbacks) has threads of its own. Measured on 2 cores: fewer context
/// switches and CPU per op on the C counter and on many groups, the same
/// on one group's Rust bench.
pub const DEFAULT_WORKERS: usize = 1;

/// Creates the runtime with `workers` threads (0: [`DEFAULT_WORKERS`]) if it
/// does not exist yet. Returns false when it already existed (the worker
/// count is then fixed).
pub fn init(workers: usize) -> std::io::Result<bool> {
    let workers = if workers == 0 {
        DEFAULT_WORKERS
    } else {
        workers
    };
    let mut created = false;
    let mut error = None;
    RUNTIME.get_or_init(|| match build(workers) {
        Ok(rt) => {
            created = true;
            rt
        }
        Err(e) => {
            error = Some(e);
            // A runtime that cannot start its workers is unusable; fall back
            // to a single worker, which needs only one thread.
            build(1).expect("cannot start even one tokio worker thread")
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(created),
    }
}

/// Most threads of tokio's blocking pool (snapshot file transfers, status
/// pages, admin commands): the default (512) would let a burst of them over
/// many groups grow the process's threads with its group count.
pub const MAX_BLOCKING_THREADS: usize = 3;

fn build(workers: usize) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("rraft-io")
        // Pool wake-ups held by driver turns leave before a worker sleeps.
        .on_thread_park(crate::worker_pool::release_held_wakes)
        .enable_all()
        .build()
}

/// The runtime's handle, creating it with [`DEFAULT_WORKERS`] on first use.
pub fn handle() -> Handle {
    if RUNTIME.get().is_none() {
        let _ = init(DEFAULT_WORKERS);
    }
    RUNTIME
        .get()
        .expect("runtime initialised above")
        .handle()
        .clone()
}

/// Sets the sizes of the log writer and FSM thread pools the nodes of the
/// process share (0 keeps a default). False once a pool has started.
pub fn set_pool_threads(writer_threads: usize, fsm_threads: usize) -> bool {
    crate::worker_pool::shared::configure(writer_threads, fsm_threads)
}

/// Runs a blocking wait without starving the runtime when called from one of
/// its worker threads (e.g. inside a user method handler).
pub fn block_on_wait<T>(wait: impl FnOnce() -> T) -> T {
    // Answers held back on this thread (a done's, see
    // `transport::hold_replies`) must not wait for this wait.
    crate::transport::release_held_replies();
    // So must the pool wake-ups this thread holds, and a worker that
    // blocks may come back as a blocking-pool thread that never parks
    // through the runtime (see `worker_pool::hold_wakes`).
    crate::worker_pool::release_held_wakes_before_blocking();
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
