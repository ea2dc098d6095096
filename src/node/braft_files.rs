//! Snapshot files between braft and rraft replicas: braft's `FileService`
//! (braft's `file_service.proto`, `file_service.cpp`,
//! `remote_file_copier.cpp`, `snapshot.cpp`).
//!
//! - A leader offering its snapshot registers a reader (an id naming the
//!   snapshot it published) and names it in `install_snapshot` as
//!   `remote://ip:port/reader_id`; `get_file` serves the reader's files.
//!   `__raft_snapshot_meta` is the snapshot's manifest as one unframed
//!   `LocalSnapshotPbMeta`, whole, with `eof`; other files are read from
//!   `offset`, at most `count` bytes. A response's attachment holds the
//!   bytes as braft's `FileSegData`: `[u64 offset][u32 length]` (big-endian)
//!   then the bytes. The reader is dropped once the follower answered the
//!   `install_snapshot` (or the call failed); a repeated call for the same
//!   snapshot names the same reader.
//! - A follower given such a URI fetches the manifest, then every file it
//!   lists, chunk by chunk until `eof`, and publishes them in its store
//!   (each file is held in memory while it is fetched: braft's manifest
//!   carries no sizes or checksums this store could check against).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

use super::errno::{self, Status};
use super::network::{FetchDone, SnapshotFetch};
use super::storage_io::storage_status;
use crate::proto::Message;
use crate::storage::braft_pb::{
    snapshot_meta_to_braft, LocalFileMeta, LocalSnapshotFile, LocalSnapshotPbMeta,
};
use crate::storage::{SnapshotFile, SnapshotReader};
use crate::transport::peer_id::peer_addr;
use crate::transport::{self, CallInfo, Protocol, Request, Responder};

/// The service's full name; its one method is `braft.FileService.get_file`.
pub(crate) const GET_FILE: &str = "braft.FileService.get_file";
/// The manifest's name in braft's snapshots.
const MANIFEST: &str = "__raft_snapshot_meta";
/// Per-call timeout of a fetch's `get_file` calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// braft's `FileSegData` header: u64 offset, u32 length.
const SEGMENT_HEADER: usize = 12;

#[derive(Clone, PartialEq, ::prost::Message)]
pub(crate) struct GetFileRequest {
    #[prost(int64, required, tag = "1")]
    pub reader_id: i64,
    #[prost(string, required, tag = "2")]
    pub filename: String,
    #[prost(int64, required, tag = "3")]
    pub count: i64,
    #[prost(int64, required, tag = "4")]
    pub offset: i64,
    #[prost(bool, optional, tag = "5")]
    pub read_partly: Option<bool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub(crate) struct GetFileResponse {
    #[prost(bool, required, tag = "1")]
    pub eof: bool,
    #[prost(int64, optional, tag = "2")]
    pub read_size: Option<i64>,
}

/// A snapshot offered to followers, and how many `install_snapshot` calls
/// still name it.
struct Offered {
    reader: SnapshotReader,
    leader: String,
    calls: usize,
}

#[derive(Default)]
struct Readers {
    next: i64,
    open: HashMap<i64, Offered>,
}

fn readers() -> &'static Mutex<Readers> {
    static READERS: OnceLock<Mutex<Readers>> = OnceLock::new();
    READERS.get_or_init(|| {
        // Ids differ between processes and restarts, as braft's do, so a
        // follower never reads a stale id from a restarted leader.
        let seed = (std::process::id() as i64) << 32
            | (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
                & 0xffff_ffff);
        Mutex::new(Readers {
            next: seed,
            open: HashMap::new(),
        })
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers `reader` and returns braft's URI for it, served on the
/// address of the leader's peer id `leader`. A snapshot already offered by
/// that leader keeps its id: braft's follower keeps copying from the URI
/// of its first `install_snapshot` when the leader repeats the call.
pub(crate) fn offer(leader: &str, reader: SnapshotReader) -> Option<(String, i64)> {
    let addr = peer_addr(leader)?;
    let mut r = lock(readers());
    let index = reader.meta().last_index;
    let known = r
        .open
        .iter_mut()
        .find(|(_, o)| o.leader == leader && o.reader.meta().last_index == index);
    let id = match known {
        Some((&id, o)) => {
            o.calls += 1;
            id
        }
        None => {
            r.next += 1;
            let id = r.next;
            r.open.insert(
                id,
                Offered {
                    reader,
                    leader: leader.to_string(),
                    calls: 1,
                },
            );
            id
        }
    };
    Some((format!("remote://{addr}/{id}"), id))
}

/// One `install_snapshot` call naming reader `id` ended: the reader goes
/// with the last of them.
pub(crate) fn withdraw(id: i64) {
    let mut r = lock(readers());
    if let Some(o) = r.open.get_mut(&id) {
        o.calls = o.calls.saturating_sub(1);
        if o.calls == 0 {
            r.open.remove(&id);
        }
    }
}

/// braft's `FileSegData` of one segment.
fn segment(offset: u64, data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(SEGMENT_HEADER + data.len());
    out.put_u64(offset);
    out.put_u32(data.len() as u32);
    out.put_slice(data);
    out.freeze()
}

/// The segments of a `FileSegData` attachment, in order.
fn segments(mut att: &[u8]) -> Result<Vec<(u64, &[u8])>, String> {
    let mut out = Vec::new();
    while !att.is_empty() {
        if att.len() < SEGMENT_HEADER {
            return Err("a truncated segment header".into());
        }
        let offset = u64::from_be_bytes(att[..8].try_into().unwrap_or_default());
        let len = u32::from_be_bytes(att[8..12].try_into().unwrap_or_default()) as usize;
        let body = att
            .get(SEGMENT_HEADER..SEGMENT_HEADER + len)
            .ok_or("a segment longer than the attachment")?;
        out.push((offset, body));
        att = &att[SEGMENT_HEADER + len..];
    }
    Ok(out)
}

/// The manifest braft's copier reads first: `LocalSnapshotPbMeta`,
/// unframed, files sorted by name.
fn manifest(reader: &SnapshotReader) -> Result<Vec<u8>, String> {
    let meta = snapshot_meta_to_braft(reader.meta())?;
    let mut files: Vec<LocalSnapshotFile> = reader
        .files()
        .iter()
        .map(|f| LocalSnapshotFile {
            name: f.name.clone(),
            meta: Some(LocalFileMeta {
                checksum: Some(format!("crc32c:{:08x}", f.checksum)),
                ..LocalFileMeta::default()
            }),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(LocalSnapshotPbMeta {
        meta: Some(meta),
        files,
    }
    .encode_to_vec())
}

/// `braft.FileService.get_file`.
pub(crate) fn serve(request: Request, responder: Responder) {
    let req = match GetFileRequest::decode(&request.payload[..]) {
        Ok(r) => r,
        Err(e) => {
            return responder.reply_error(errno::EINVAL, &format!("malformed request: {e}"), "")
        }
    };
    if req.count <= 0 || req.offset < 0 {
        let text = format!("invalid count {} or offset {}", req.count, req.offset);
        return responder.reply_error(errno::EINVAL, &text, "");
    }
    let Some(reader) = lock(readers())
        .open
        .get(&req.reader_id)
        .map(|o| o.reader.clone())
    else {
        let text = format!("Fail to find reader={}", req.reader_id);
        return responder.reply_error(errno::ENOENT, &text, "");
    };
    // File reads block: run them on the blocking pool.
    tokio::task::spawn_blocking(move || {
        let answer = if req.filename == MANIFEST {
            manifest(&reader).map(|m| (m, true))
        } else {
            let count = (req.count as usize).min(4 << 20);
            reader
                .read_chunk(&req.filename, req.offset as u64, count)
                .map_err(|e| e.to_string())
        };
        match answer {
            Ok((data, eof)) => {
                let resp = GetFileResponse {
                    eof,
                    read_size: Some(data.len() as i64),
                };
                let offset = if req.filename == MANIFEST {
                    0
                } else {
                    req.offset as u64
                };
                responder.reply_with_attachment(resp.encode_to_vec().into(), segment(offset, &data))
            }
            Err(text) => responder.reply_error(errno::EIO, &text, ""),
        }
    });
}

/// The leader's side of an InstallSnapshot to a braft peer: its newest
/// snapshot, offered under a new reader id (None without a snapshot).
pub(crate) fn offer_latest(
    store: Option<&Arc<crate::storage::SnapshotStore>>,
    msg: &Message,
) -> Option<(String, i64)> {
    let reader = store?.latest()?;
    let wanted = msg.snapshot.as_ref().map_or(0, |s| s.last_index);
    if reader.meta().last_index < wanted {
        return None;
    }
    offer(&msg.from, reader)
}

/// Parses braft's `remote://ip:port/reader_id`.
fn parse_uri(uri: &str) -> Result<(String, i64), String> {
    let rest = uri
        .strip_prefix("remote://")
        .ok_or_else(|| format!("snapshot uri {uri:?} is not remote://"))?;
    let (addr, id) = rest
        .split_once('/')
        .ok_or_else(|| format!("snapshot uri {uri:?} has no reader id"))?;
    let id = id
        .parse::<i64>()
        .map_err(|_| format!("snapshot uri {uri:?}: bad reader id"))?;
    Ok((addr.to_string(), id))
}

/// Fetches the snapshot named by braft's `uri` into the follower's store
/// and publishes it, then calls `done`.
pub(crate) fn fetch(
    net: Arc<transport::Server>,
    uri: String,
    fetch: SnapshotFetch,
    done: FetchDone,
) {
    super::runtime::handle().spawn(async move {
        done(fetch_files(net, &uri, fetch).await);
    });
}

async fn get_whole_file(
    net: &transport::Server,
    addr: &str,
    reader_id: i64,
    name: &str,
    chunk: u32,
) -> Result<Vec<u8>, Status> {
    let mut data = Vec::new();
    loop {
        let req = GetFileRequest {
            reader_id,
            filename: name.to_string(),
            count: chunk.max(1) as i64,
            offset: data.len() as i64,
            read_partly: Some(true),
        };
        let info = CallInfo {
            protocol: Protocol::BaiduStd,
            ..Default::default()
        };
        let (resp, att) = net
            .rpc()
            .call_with_info(
                addr,
                GET_FILE,
                "",
                req.encode_to_vec().into(),
                info,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| Status::new(e.code(), format!("get_file {name}: {e}")))?;
        let answer = GetFileResponse::decode(&resp.payload[..])
            .map_err(|e| Status::new(errno::EIO, format!("get_file {name}: {e}")))?;
        let segs = segments(&att).map_err(|t| Status::new(errno::EIO, format!("{name}: {t}")))?;
        let before = data.len();
        for (offset, body) in segs {
            let end = offset as usize + body.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[offset as usize..end].copy_from_slice(body);
        }
        if answer.eof {
            return Ok(data);
        }
        if data.len() == before {
            // No progress and no end: the leader's file holds a hole braft
            // skipped, or the reader is broken; either way, stop.
            return Err(Status::new(
                errno::EIO,
                format!("get_file {name}: no data before the end of the file"),
            ));
        }
    }
}

async fn fetch_files(
    net: Arc<transport::Server>,
    uri: &str,
    fetch: SnapshotFetch,
) -> Result<(), Status> {
    let (addr, reader_id) = parse_uri(uri).map_err(|t| Status::new(errno::EINVAL, t))?;
    let chunk = fetch.chunk_bytes;
    let manifest = get_whole_file(&net, &addr, reader_id, MANIFEST, chunk).await?;
    let listed = LocalSnapshotPbMeta::decode(&manifest[..])
        .map_err(|e| Status::new(errno::EIO, format!("the leader's manifest: {e}")))?;
    if let Some(m) = &listed.meta {
        if m.last_included_index as u64 != fetch.meta.last_index {
            return Err(Status::new(
                errno::ENOENT,
                "the leader's snapshot changed during the transfer",
            ));
        }
    }
    let mut contents = Vec::with_capacity(listed.files.len());
    for f in &listed.files {
        let data = get_whole_file(&net, &addr, reader_id, &f.name, chunk).await?;
        contents.push((f.name.clone(), data));
    }
    let store = fetch.store.clone();
    let meta = fetch.meta.clone();
    let publish = move || -> Result<(), crate::core::StorageError> {
        let files = contents
            .iter()
            .map(|(name, data)| SnapshotFile {
                name: name.clone(),
                size: data.len() as u64,
                checksum: crc32c::crc32c(data),
            })
            .collect();
        let mut writer = store.begin_receive(meta, files)?;
        let missing: Vec<String> = writer.missing_files().into_iter().map(|f| f.name).collect();
        for (name, data) in &contents {
            if missing.contains(name) && !data.is_empty() {
                writer.write_chunk(name, 0, data)?;
            }
        }
        writer.finish().map(|_| ())
    };
    match tokio::task::spawn_blocking(publish).await {
        Ok(result) => result.map_err(storage_status),
        Err(e) => Err(Status::new(
            errno::EINTERNAL,
            format!("snapshot storage task failed: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_refuse_truncation() {
        let att = segment(7, b"hello");
        assert_eq!(segments(&att).unwrap(), vec![(7, &b"hello"[..])]);
        assert!(segment(0, b"").is_empty());
        assert!(segments(&att[..att.len() - 1]).is_err());
        assert!(segments(&att[..5]).is_err());
    }

    #[test]
    fn uris_parse_as_braft_writes_them() {
        assert_eq!(
            parse_uri("remote://127.0.0.1:8100/42").unwrap(),
            ("127.0.0.1:8100".to_string(), 42)
        );
        assert!(parse_uri("local://x/1").is_err());
        assert!(parse_uri("remote://127.0.0.1:8100").is_err());
        assert!(parse_uri("remote://127.0.0.1:8100/x").is_err());
    }
}
