//! Unit tests that read like the rules of the Raft paper (and thesis).

mod election;
mod membership;
mod read_index;
mod replication;
mod snapshot;
mod transfer;
