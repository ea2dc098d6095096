//! Unit tests that read like the rules of the Raft paper (and thesis).

mod chaos;
mod election;
mod membership;
mod read_index;
mod regressions;
mod replication;
mod robustness;
mod snapshot;
mod transfer;
