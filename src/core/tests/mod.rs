//! Unit tests that read like the rules of the Raft paper (and thesis).

mod election;
mod replication;
