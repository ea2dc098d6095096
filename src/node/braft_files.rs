//! Snapshot files between braft and rraft replicas: braft's `FileService`.

use std::sync::Arc;

use super::errno::{self, Status};
use super::network::{FetchDone, SnapshotFetch};
use crate::proto::Message;
use crate::transport;

/// Registers the leader's current snapshot for `msg.to` to read and
/// returns braft's URI for it (`remote://ip:port/reader_id`).
pub(crate) fn offer(_net: &Arc<transport::Server>, _group: &str, _msg: &Message) -> Option<String> {
    None
}

/// Fetches the snapshot named by braft's `uri` into the follower's store.
pub(crate) fn fetch(
    _net: Arc<transport::Server>,
    uri: String,
    _fetch: SnapshotFetch,
    done: FetchDone,
) {
    done(Err(Status::new(
        errno::EIO,
        format!("fetching {uri} over braft's FileService is not supported"),
    )));
}
