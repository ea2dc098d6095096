//! Deterministic simulation: every test here is driven by seeds and checked
//! by the harness in `crates/rraft-sim` (see its README for the commands).
//!
//! - `raft`: the Raft core under the simulated network and disks, all
//!   invariants after every step (`SIM_*` variables);
//! - `lincheck`: the same runs with key-value clients, every history checked
//!   linearizable (`LIN_*`);
//! - `runtime`: the node runtime (`SteppedNode`) on a simulated clock,
//!   network and file system, with linearizable client histories (`RSIM_*`).

mod lincheck;
mod raft;
mod runtime;
