//! End-to-end runs of the C examples (`examples-c/`) and the benchmark tool.

mod bench_smoke;
mod braft_counter;
mod braft_raft;
mod coffee;
mod counter;
mod kv;
