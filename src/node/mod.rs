//! The runtime of one node: drives the core on real storage and transport,
//! and runs the user's callbacks on its FSM caller thread.

pub mod done;
pub mod errno;
pub(crate) mod fsm_caller;
pub mod options;
pub mod peer_id;
pub mod state_machine;
