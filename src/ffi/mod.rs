//! The C ABI. One file per exported object; no Raft logic here.
//!
//! Every exported function runs inside `ffi_boundary!` (a panic becomes an
//! error code), checks its pointers, and says in its doc comment (copied
//! into include/rraft.h) who owns each pointer and for how long.
#![allow(non_camel_case_types)]

pub(crate) mod boundary;
pub mod client;
pub mod fsm;
pub mod global;
pub(crate) mod handles;
pub mod iterator;
pub mod log;
pub mod node;
pub mod options;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod version;
