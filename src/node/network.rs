//! The network as the driver sees it: Raft messages out, snapshot files in.
//! The real one is the TCP transport; a deterministic simulation supplies
//! its own.

use std::sync::Arc;

use super::errno::Status;
pub use super::snapshot_fetch::copy as copy_snapshot;
use crate::proto::{Message, SnapshotMeta};
use crate::storage::SnapshotStore;

/// Called once with the outcome of a snapshot fetch, from any thread.
pub type FetchDone = Box<dyn FnOnce(Result<(), Status>) + Send>;

/// A follower's request to pull the leader's snapshot files into its store.
pub struct SnapshotFetch {
    pub store: Arc<SnapshotStore>,
    pub group: Arc<str>,
    pub leader: String,
    pub meta: SnapshotMeta,
    pub chunk_bytes: u32,
}

pub trait Network: Send + Sync {
    /// Sends a Raft message of `group` to `msg.to`; never blocks (a message
    /// that cannot leave is dropped, as a lost packet is).
    fn send(&self, group: &str, msg: Message);
    /// Sends messages of `group`, written to the socket by the calling
    /// thread when it can (a log writer's acknowledgements, a driver's
    /// Appends ahead of its log writer's wake-up); never blocks.
    fn send_now(&self, group: &str, msgs: Vec<Message>) {
        for msg in msgs {
            self.send(group, msg);
        }
    }
    /// Fetches and publishes the snapshot, then calls `done`; never blocks.
    fn fetch_snapshot(&self, fetch: SnapshotFetch, done: FetchDone);
}

/// The TCP transport of the node's server.
pub(crate) struct TcpNetwork(pub(crate) Arc<crate::transport::Server>);

impl Network for TcpNetwork {
    fn send(&self, group: &str, msg: Message) {
        self.0.transport().send(group, msg);
    }

    fn send_now(&self, group: &str, msgs: Vec<Message>) {
        self.0.transport().send_now(group, msgs);
    }

    fn fetch_snapshot(&self, fetch: SnapshotFetch, done: FetchDone) {
        let net = self.0.clone();
        super::runtime::handle().spawn(async move {
            let result = super::snapshot_fetch::fetch(
                net,
                fetch.store,
                &fetch.group,
                &fetch.leader,
                &fetch.meta,
                fetch.chunk_bytes,
            )
            .await;
            done(result);
        });
    }
}
