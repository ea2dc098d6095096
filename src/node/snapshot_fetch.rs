//! Snapshot transfer between peers: the follower pulls the leader's snapshot
//! files in chunks (braft's copier + file service) before its core sees the
//! InstallSnapshot message. Files it already holds with the same checksum
//! are reused, not fetched.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;

use super::errno::{self, Status};
use super::raft_server::{
    internal_body, internal_payload, METHOD_SNAPSHOT_FILES, METHOD_SNAPSHOT_READ,
};
use super::storage_io::{storage_status, NodeStorage};
use crate::proto::SnapshotMeta;
use crate::storage::{SnapshotFile, SnapshotStore};
use crate::transport::{self, Request, Responder};

#[derive(Clone, PartialEq, ::prost::Message)]
struct FilesRequest {
    #[prost(uint64, tag = "1")]
    index: u64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
struct FilesReply {
    #[prost(message, optional, tag = "1")]
    meta: Option<SnapshotMeta>,
    #[prost(message, repeated, tag = "2")]
    files: Vec<SnapshotFile>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
struct ReadRequest {
    #[prost(uint64, tag = "1")]
    index: u64,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint64, tag = "3")]
    offset: u64,
    #[prost(uint32, tag = "4")]
    len: u32,
}

/// Per-call timeout of the transfer RPCs.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn rpc_status(e: transport::RpcError) -> Status {
    Status::new(e.code(), e.to_string())
}

fn decode_status(e: prost::DecodeError) -> Status {
    Status::new(
        errno::EIO,
        format!("malformed snapshot transfer message: {e}"),
    )
}

/// Follower side: fetches snapshot `meta` from `leader` into `store` and
/// publishes it. Blocking file writes run on the blocking pool.
pub(crate) async fn fetch(
    net: Arc<transport::Server>,
    store: Arc<SnapshotStore>,
    group: &str,
    leader: &str,
    meta: &SnapshotMeta,
    chunk_bytes: u32,
) -> Result<(), Status> {
    let addr = transport::peer_id::peer_addr(leader).ok_or_else(|| {
        Status::new(
            errno::EINVAL,
            format!("leader id {leader:?} does not parse"),
        )
    })?;
    let call = |method: &'static str, body: Vec<u8>| {
        net.rpc().call(
            &addr,
            method,
            group,
            internal_payload(leader, &body),
            CALL_TIMEOUT,
        )
    };
    let reply = call(
        METHOD_SNAPSHOT_FILES,
        FilesRequest {
            index: meta.last_index,
        }
        .encode_to_vec(),
    )
    .await
    .map_err(rpc_status)?;
    let listing = FilesReply::decode(reply.payload).map_err(decode_status)?;
    if listing.meta.as_ref().map(|m| m.last_index) != Some(meta.last_index) {
        return Err(Status::new(
            errno::ENOENT,
            "the leader's snapshot changed during the transfer",
        ));
    }
    let (meta_owned, files) = (meta.clone(), listing.files);
    let mut writer = blocking(move || store.begin_receive(meta_owned, files)).await?;
    for file in writer.missing_files() {
        let mut offset = 0u64;
        loop {
            let request = ReadRequest {
                index: meta.last_index,
                name: file.name.clone(),
                offset,
                len: chunk_bytes,
            };
            let data = call(METHOD_SNAPSHOT_READ, request.encode_to_vec())
                .await
                .map_err(rpc_status)?
                .payload;
            if data.is_empty() && offset < file.size {
                return Err(Status::new(
                    errno::EIO,
                    format!("leader sent an empty chunk of {} at {offset}", file.name),
                ));
            }
            let name = file.name.clone();
            let len = data.len() as u64;
            writer =
                blocking(move || writer.write_chunk(&name, offset, &data).map(|()| writer)).await?;
            offset += len;
            if offset >= file.size {
                break;
            }
        }
    }
    blocking(move || writer.finish().map(|_| ())).await
}

/// The transfer of [`fetch`] from a leader's store in the same process,
/// through the same requests and answers, without a network or threads
/// (the deterministic simulation's transfer).
pub fn copy(
    source: &SnapshotStore,
    store: &SnapshotStore,
    meta: &SnapshotMeta,
    chunk_bytes: u32,
) -> Result<(), Status> {
    let call = |method: &str, body: Vec<u8>| answer(method, source, body.into());
    let reply = call(
        METHOD_SNAPSHOT_FILES,
        FilesRequest {
            index: meta.last_index,
        }
        .encode_to_vec(),
    )?;
    let listing = FilesReply::decode(reply).map_err(decode_status)?;
    if listing.meta.as_ref().map(|m| m.last_index) != Some(meta.last_index) {
        return Err(Status::new(
            errno::ENOENT,
            "the leader's snapshot changed during the transfer",
        ));
    }
    let mut writer = store
        .begin_receive(meta.clone(), listing.files)
        .map_err(storage_status)?;
    for file in writer.missing_files() {
        let mut offset = 0u64;
        while offset < file.size {
            let request = ReadRequest {
                index: meta.last_index,
                name: file.name.clone(),
                offset,
                len: chunk_bytes,
            };
            let data = call(METHOD_SNAPSHOT_READ, request.encode_to_vec())?;
            if data.is_empty() {
                return Err(Status::new(
                    errno::EIO,
                    format!("leader sent an empty chunk of {} at {offset}", file.name),
                ));
            }
            writer
                .write_chunk(&file.name, offset, &data)
                .map_err(storage_status)?;
            offset += data.len() as u64;
        }
    }
    writer.finish().map(|_| ()).map_err(storage_status)
}

/// Runs storage work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::core::StorageError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(storage_status),
        Err(e) => Err(Status::new(
            errno::EINTERNAL,
            format!("snapshot storage task failed: {e}"),
        )),
    }
}

/// Leader side: answers the transfer methods from the newest snapshot.
pub(crate) fn serve(method: &str, storage: NodeStorage, request: Request, responder: Responder) {
    let Some(store) = storage.snapshots.clone() else {
        return responder.reply_error(errno::ENOENT, "this node keeps no snapshots", "");
    };
    let body = internal_body(&request.payload);
    let method = method.to_string();
    // File reads block: run them on the blocking pool.
    tokio::task::spawn_blocking(move || match answer(&method, &store, body) {
        Ok(payload) => responder.reply(payload),
        Err(status) => responder.reply_error(status.code, &status.message, ""),
    });
}

fn answer(method: &str, store: &SnapshotStore, body: Bytes) -> Result<Bytes, Status> {
    let latest = store
        .latest()
        .ok_or_else(|| Status::new(errno::ENOENT, "no snapshot is published"))?;
    match method {
        METHOD_SNAPSHOT_FILES => {
            let request = FilesRequest::decode(body).map_err(decode_status)?;
            if request.index != latest.meta().last_index {
                return Err(Status::new(
                    errno::ENOENT,
                    format!(
                        "snapshot {} is gone; the newest is {}",
                        request.index,
                        latest.meta().last_index
                    ),
                ));
            }
            let reply = FilesReply {
                meta: Some(latest.meta().clone()),
                files: latest.files().to_vec(),
            };
            Ok(reply.encode_to_vec().into())
        }
        METHOD_SNAPSHOT_READ => {
            let request = ReadRequest::decode(body).map_err(decode_status)?;
            if request.index != latest.meta().last_index {
                return Err(Status::new(
                    errno::ENOENT,
                    format!("snapshot {} is gone", request.index),
                ));
            }
            let len = (request.len as usize).clamp(1, 4 << 20);
            let (data, _eof) = latest
                .read_chunk(&request.name, request.offset, len)
                .map_err(storage_status)?;
            Ok(data.into())
        }
        other => Err(Status::new(
            errno::EINVAL,
            format!("unknown internal method {other}"),
        )),
    }
}
