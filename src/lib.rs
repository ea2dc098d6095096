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
