//! rraft: a Raft consensus engine with a braft-shaped C API.
//!
//! Layers (see ARCHITECTURE.md): `core` (sans-IO protocol, the
//! `rraft-core` crate), `storage`
//! (segmented log, meta, snapshots), `transport` (TCP), `node` (runtime that
//! drives the core), `ffi` (the C ABI). Only `ffi` reaches the C header.

/// The monotonic clock seam (Rust-only: kept out of the C header).
///
/// cbindgen:ignore
pub mod clock;
/// The sans-IO Raft protocol, the `rraft-core` crate (Rust-only: kept out
/// of the C header).
///
/// cbindgen:ignore
pub use rraft_core as core;
/// The hasher of the per-message lookup tables (Rust-only, internal).
///
/// cbindgen:ignore
mod fast_hash;
pub mod ffi;

/// Every Rust allocation of the library (see the `mimalloc` feature in
/// Cargo.toml); the C side's `malloc` is untouched.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the same place in the option
/// enum of mimalloc v2 and v3).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages go back to the OS at once instead of after mimalloc's
/// purge delay (1 s in mimalloc v3): with the delay a replica under 256
/// clients peaked at 54 to 64 MiB of RSS, without it at ~40 MiB, at the
/// same CPU per op. Called when a server starts.
pub(crate) fn return_freed_memory_promptly() {
    #[cfg(feature = "mimalloc")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mi_option_set stores an option value; mimalloc allows it
        // from any thread at any time.
        ONCE.call_once(|| unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) });
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod allocator_tests {
    #[test]
    fn a_started_library_purges_freed_memory_at_once() {
        super::return_freed_memory_promptly();
        // SAFETY: mi_option_get only reads an option value.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 0);
    }
}
/// Latency histograms for the status pages (Rust-only).
///
/// cbindgen:ignore
pub mod metrics;
/// The node runtime (Rust-only: kept out of the C header).
///
/// cbindgen:ignore
pub mod node;
/// The protobuf types shared by core, storage and wire (`rraft-core`).
///
/// cbindgen:ignore
pub use rraft_core::proto;
/// Per-stage timestamps of the write path, off unless asked (Rust-only).
///
/// cbindgen:ignore
pub mod stage_trace;
/// Durable storage (Rust-only: kept out of the C header).
///
/// cbindgen:ignore
pub mod storage;
/// The tokio TCP transport (Rust-only: kept out of the C header).
///
/// cbindgen:ignore
pub mod transport;
/// The queue between the library's threads (Rust-only, internal).
///
/// cbindgen:ignore
mod wake_queue;
/// The shared pools of log writer and FSM threads (Rust-only, internal).
///
/// cbindgen:ignore
mod worker_pool;
