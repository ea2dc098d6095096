//! The C ABI. One file per exported object; no Raft logic here.

pub(crate) mod boundary;
pub(crate) mod handles;
pub mod log;
pub mod status;
pub mod version;
