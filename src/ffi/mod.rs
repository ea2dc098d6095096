//! The C ABI. One file per exported object; no Raft logic here.
//!
//! Every exported function runs inside `ffi_boundary!` (a panic becomes an
//! error code), checks its pointers, and says in its doc comment (copied
//! into include/rraft.h) who owns each pointer and for how long.
#![allow(non_camel_case_types)]
// The entry points are called from C only: handles are looked up in
// registries, other pointers are checked for NULL and their remaining
// contract (valid for the call, right type) is stated in each doc comment,
// as for any C function. Marking them `unsafe fn` would say nothing to C.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub(crate) mod boundary;
pub mod client;
pub(crate) mod deadlines;
pub mod fsm;
pub mod global;
pub(crate) mod handles;
pub mod iterator;
pub mod logging;
pub mod node;
pub mod options;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod version;
