//! The C ABI. One file per exported object; no Raft logic here.

#![allow(non_camel_case_types)]

pub(crate) mod boundary;
pub(crate) mod handles;
pub mod log;
pub mod status;
pub mod version;
