//! Opening a node's storage and rebuilding the core's starting state.

use std::sync::Arc;

use super::errno::{self, Status};
use super::options::NodeOptions;
use super::storage_io::{storage_status, NodeStorage};
use crate::core::{InitialState, LogStorage};
use crate::proto::Configuration;
use crate::storage::{
    fs::RealFs, uri::StorageUri, DurableLog, LogBackend, LogOptions, MetaStore, SnapshotStore,
};

pub(crate) struct Recovered {
    pub(crate) storage: NodeStorage,
    pub(crate) init: InitialState,
}

fn local_dir(uri: &str, what: &str) -> Result<std::path::PathBuf, Status> {
    match StorageUri::parse(uri) {
        Ok(StorageUri::Local(dir)) => Ok(dir),
        Ok(StorageUri::Memory) => Err(Status::new(
            errno::EINVAL,
            format!("{what} {uri:?}: only local://DIR is supported"),
        )),
        Err(e) => Err(Status::new(
            errno::EINVAL,
            format!("{what} {uri:?}: {}", e.0),
        )),
    }
}

/// Opens log, meta and snapshot store named by `opts` and recovers.
pub(crate) fn open(opts: &NodeOptions) -> Result<Recovered, Status> {
    let fs = RealFs::shared();
    // A malformed URI is the caller's mistake (EINVAL), not an IO error.
    StorageUri::parse(&opts.log_uri).map_err(|e| {
        Status::new(
            errno::EINVAL,
            format!("log_uri {:?}: {}", opts.log_uri, e.0),
        )
    })?;
    let log_opts = LogOptions {
        segment_size: opts.max_segment_size,
        sync: opts.sync,
        cache_bytes: opts.log_cache_bytes,
    };
    let (log, found) = LogBackend::open(fs.clone(), &opts.log_uri, log_opts).map_err(|e| {
        Status::new(
            errno::EIO,
            format!("log {}: {}", opts.log_uri, storage_status(e).message),
        )
    })?;
    let meta_dir = local_dir(&opts.raft_meta_uri, "raft_meta_uri")?;
    let meta = MetaStore::open(fs.clone(), &meta_dir).map_err(|e| {
        Status::new(
            errno::EIO,
            format!("meta {}: {}", opts.raft_meta_uri, storage_status(e).message),
        )
    })?;
    let hard_state = meta.load().map_err(storage_status)?;
    let snapshots = if opts.snapshot_uri.is_empty() {
        None
    } else {
        let dir = local_dir(&opts.snapshot_uri, "snapshot_uri")?;
        Some(Arc::new(SnapshotStore::open(fs, &dir).map_err(|e| {
            Status::new(
                errno::EIO,
                format!(
                    "snapshot store {}: {}",
                    opts.snapshot_uri,
                    storage_status(e).message
                ),
            )
        })?))
    };
    let snapshot = match &snapshots {
        Some(store) => store.latest().map(|r| r.meta().clone()),
        None => None,
    };
    let snapshot_index = snapshot.as_ref().map_or(0, |s| s.last_index);
    if snapshot.is_some()
        && (log.last_index() < snapshot_index || log.first_index() > snapshot_index + 1)
    {
        // The log does not reach the snapshot (a crash after installing it):
        // it starts right after the snapshot.
        DurableLog::reset(&log, snapshot_index + 1).map_err(storage_status)?;
    }
    let mut hard_state = hard_state;
    hard_state.commit = hard_state.commit.min(log.last_index()).max(snapshot_index);
    let configurations = found
        .configurations
        .into_iter()
        .filter(|e| e.index > snapshot_index)
        .collect();
    let init = InitialState {
        hard_state,
        snapshot,
        configurations,
        initial_conf: Configuration {
            voters: opts.initial_conf.iter().map(ToString::to_string).collect(),
            learners: opts
                .initial_learners
                .iter()
                .map(ToString::to_string)
                .collect(),
            old_voters: Vec::new(),
        },
        applied: snapshot_index,
    };
    Ok(Recovered {
        storage: NodeStorage::new(Arc::new(log), Arc::new(meta), snapshots),
        init,
    })
}
