//! The library-wide tokio runtime, created on first use or by
//! `raft_global_init` (worker count configurable, default 2).

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Creates the runtime with `workers` threads if it does not exist yet.
/// Returns false when it already existed (the worker count is then fixed).
pub fn init(workers: usize) -> std::io::Result<bool> {
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

fn build(workers: usize) -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name("rraft-io")
        .enable_all()
        .build()
}

/// The runtime's handle, creating it with 2 workers on first use.
pub fn handle() -> Handle {
    if RUNTIME.get().is_none() {
        let _ = init(2);
    }
    RUNTIME
        .get()
        .expect("runtime initialised above")
        .handle()
        .clone()
}

/// Runs a blocking wait without starving the runtime when called from one of
/// its worker threads (e.g. inside a user method handler).
pub fn block_on_wait<T>(wait: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
