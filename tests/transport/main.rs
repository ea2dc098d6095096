//! The transport over real sockets: round trips, the RPC methods, the group
//! client, and robustness against hostile or broken peers.

mod client;
mod methods;
mod robustness;
mod roundtrip;

/// A two-worker runtime for one test's servers and clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
