//! The C ABI. One file per exported object; no Raft logic here.

pub mod version;
