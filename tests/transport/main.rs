//! The transport over real sockets: round trips, the RPC methods, the group
//! client, and robustness against hostile or broken peers.

mod baidu_std;
mod client;
mod direct_writes;
mod heartbeats;
mod methods;
mod peer_writes;
mod robustness;
mod roundtrip;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rraft::proto::{Entry, Message};
use rraft::transport::{NodeHandle, Server};

/// Polls `f` until it holds; panics naming `what` after `timeout`.
fn wait_until(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A two-worker runtime for one test's servers and clients.
fn runtime() -> tokio::runtime::Runtime {
    runtime_with(2)
}

/// A runtime with `workers` workers.
fn runtime_with(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// An Append of one entry (index and entry index `seq`) from `from` to `to`.
fn msg(from: &str, to: &str, seq: u64, payload: Bytes) -> Message {
    Message {
        msg_type: 4,
        from: from.into(),
        to: to.into(),
        term: 1,
        index: seq,
        entries: vec![Entry {
            term: 1,
            index: seq,
            entry_type: 1,
            data: payload,
        }],
        ..Default::default()
    }
}

/// A node that records every message delivered to it.
#[derive(Default)]
struct RecNode {
    got: Mutex<Vec<Message>>,
}

impl NodeHandle for RecNode {
    fn deliver(&self, msgs: Vec<Message>) {
        self.got.lock().unwrap().extend(msgs);
    }
    fn leader_hint(&self) -> Option<String> {
        None
    }
}

impl RecNode {
    fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// A recording node registered on `server` as peer `id` of group "g".
fn record_on(server: &Server, id: &str) -> Arc<RecNode> {
    let node = Arc::new(RecNode::default());
    server.register_node("g", id, node.clone()).unwrap();
    node
}
