//! The transport over real sockets: round trips, the RPC methods, the group
//! client, and robustness against hostile or broken peers.

mod client;
mod methods;
mod robustness;
mod roundtrip;
