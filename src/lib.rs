//! rraft: a Raft consensus engine with a braft-shaped C API.
//!
//! Layers (see ARCHITECTURE.md): `core` (sans-IO protocol), `storage`
//! (segmented log, meta, snapshots), `transport` (TCP), `node` (runtime that
//! drives the core), `ffi` (the C ABI).

pub mod core;
pub mod ffi;
pub mod proto;
/// The tokio TCP transport (Rust-only: kept out of the C header).
///
/// cbindgen:ignore
pub mod transport;
