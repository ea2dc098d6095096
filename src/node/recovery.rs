//! Opening a node's storage and rebuilding the core's starting state.

use std::sync::Arc;

use super::errno::{self, Status};
use super::options::{Mutation, NodeOptions};
use super::storage_io::{storage_status, NodeStorage};
use crate::core::{InitialState, LogStorage};
use crate::proto::Configuration;
use crate::storage::{
    fs::RealFs, uri::StorageUri, ClaimError, DirClaim, DurableLog, Identity, LogBackend,
    LogOptions, MetaStore, SnapshotStore,
};

pub(crate) struct Recovered {
    pub(crate) storage: NodeStorage,
    pub(crate) init: InitialState,
    /// With a stepped writer: its consumer side, for the caller to step.
    pub(crate) stepped_writer: Option<crate::storage::SteppedWriter>,
}

fn local_dir(uri: &str, what: &str) -> Result<std::path::PathBuf, Status> {
    match StorageUri::parse(uri) {
        Ok(StorageUri::Local(dir)) => Ok(dir),
        Ok(StorageUri::Memory | StorageUri::Shared(_)) => Err(Status::new(
            errno::EINVAL,
            format!("{what} {uri:?}: only local://DIR is supported"),
        )),
        Err(e) => Err(Status::new(
            errno::EINVAL,
            format!("{what} {uri:?}: {}", e.0),
        )),
    }
}

/// Locks the store directories of `opts` for node `peer` of `group` and
/// checks (or, on first use, records) that they are theirs.
fn claim_dirs(
    fs: &dyn crate::storage::FileSystem,
    opts: &NodeOptions,
    group: &str,
    peer: &str,
) -> Result<DirClaim, Status> {
    let mut dirs = Vec::new();
    if let Ok(StorageUri::Local(dir)) = StorageUri::parse(&opts.log_uri) {
        dirs.push(dir);
    }
    dirs.push(local_dir(&opts.raft_meta_uri, "raft_meta_uri")?);
    if !opts.snapshot_uri.is_empty() {
        dirs.push(local_dir(&opts.snapshot_uri, "snapshot_uri")?);
    }
    let who = Identity {
        group: group.to_string(),
        peer: peer.to_string(),
    };
    crate::storage::claim(fs, &dirs, &who).map_err(|e| {
        let code = match e {
            ClaimError::Busy { .. } => errno::EBUSY,
            ClaimError::Foreign { .. } => errno::EINVAL,
            ClaimError::Corrupt { .. } | ClaimError::Io { .. } => errno::EIO,
        };
        Status::new(code, e.to_string())
    })
}

/// Opens log, meta and snapshot store named by `opts` for node `peer` of
/// `group` and recovers. Each store directory is locked and its owner
/// checked first (see `storage::identity`). The log writer gets a thread,
/// or is left to the caller to step.
pub(crate) fn open(
    opts: &NodeOptions,
    group: &str,
    peer: &str,
    stepped_writer: bool,
) -> Result<Recovered, Status> {
    // Test-only: `RRAFT_TEST_LAZY_FS` loses unsynced writes on a crash.
    let fs = opts
        .fs
        .clone()
        .or_else(crate::storage::LazyFs::from_env)
        .unwrap_or_else(RealFs::shared);
    // A malformed URI is the caller's mistake (EINVAL), not an IO error.
    StorageUri::parse(&opts.log_uri).map_err(|e| {
        Status::new(
            errno::EINVAL,
            format!("log_uri {:?}: {}", opts.log_uri, e.0),
        )
    })?;
    let claim = claim_dirs(&*fs, opts, group, peer)?;
    let log_opts = LogOptions {
        strict_tail_mutation: opts.mutation == Mutation::StrictTailRecovery,
        unsynced_rounds_mutation: opts.mutation == Mutation::SharedLogRoundSkipsSync,
        segment_size: opts.max_segment_size,
        sync: opts.sync,
        cache_bytes: opts.log_cache_bytes,
        // Zeros ahead of the open segment: cheaper fdatasyncs. A node in a
        // group with braft replicas keeps braft's exact layout at every
        // instant, so a braft process can take its directory over even
        // after a crash.
        preallocate_bytes: if opts.braft_compat {
            0
        } else {
            crate::storage::PREALLOCATE_BYTES
        },
        // A stepped node's shared log has no syncer thread either.
        stepped_rounds: stepped_writer,
    };
    // A shared:// log is locked by the process's shared log; the node's
    // group in it is named by its group and peer id.
    let owner = format!("{group}/{peer}");
    let (log, found) = LogBackend::open_as(fs.clone(), &opts.log_uri, log_opts, Some(&owner))
        .map_err(|e| {
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
    if let Some(snap) = &snapshot {
        // Keep the log only where it agrees with the snapshot: it must reach
        // the snapshot's index and, if it holds that entry, with the same
        // term (then, by log matching, everything before is the committed
        // history). Otherwise (a crash after installing a snapshot or in the
        // middle of a reset) it starts right after the snapshot.
        let (first, last) = (log.first_index(), log.last_index());
        let reaches = first <= snap.last_index + 1 && last >= snap.last_index;
        let agrees = snap.last_index < first || log.term(snap.last_index) == Ok(snap.last_term);
        if !(reaches && agrees) {
            DurableLog::reset(&log, snapshot_index + 1).map_err(storage_status)?;
        }
    }
    let mut hard_state = hard_state;
    // The stored commit index was saved after the log up to it was synced:
    // a log that now ends before it lost synced, possibly acknowledged
    // entries (damaged media, a lost file). A torn tail cut by recovery
    // was never synced, so never acknowledged.
    let lost_acknowledged = hard_state.commit > log.last_index().max(snapshot_index);
    if lost_acknowledged {
        log::warn!(
            "log {}: it ends at {} but entries up to {} were committed here: the node \
             will not vote or campaign until it holds the log up to a leader's commit index",
            opts.log_uri,
            log.last_index(),
            hard_state.commit
        );
    } else if found.may_have_lost_acked {
        log::warn!(
            "log {}: recovery cut a damaged tail; taken for an unsynced batch torn by a crash",
            opts.log_uri
        );
    }
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
        lost_acknowledged,
    };
    let (storage, stepped_writer) = if stepped_writer {
        let (storage, writer) =
            NodeStorage::stepped(Arc::new(log), Arc::new(meta), snapshots, claim);
        (storage, Some(writer))
    } else {
        (
            NodeStorage::new(
                Arc::new(log),
                Arc::new(meta),
                snapshots,
                claim,
                opts.dedicated_log_writer,
            )?,
            None,
        )
    };
    Ok(Recovered {
        storage,
        stepped_writer,
        init,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Entry, EntryType, SnapshotMeta};
    use crate::storage::SegmentLog;

    fn write_log(dir: &std::path::Path, terms: &[u64]) {
        let (log, _) = SegmentLog::open(RealFs::shared(), dir, LogOptions::default()).unwrap();
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                term,
                index: i as u64 + 1,
                entry_type: EntryType::Data as i32,
                data: bytes::Bytes::from(vec![i as u8]),
            })
            .collect();
        log.append(&entries).unwrap();
        log.sync().unwrap();
    }

    fn publish_snapshot(dir: &std::path::Path, index: u64, term: u64) {
        let store = SnapshotStore::open(RealFs::shared(), dir).unwrap();
        let meta = SnapshotMeta {
            last_index: index,
            last_term: term,
            configuration: Some(Configuration::default()),
        };
        store.create(meta).unwrap().finish().unwrap();
    }

    fn opts(dir: &std::path::Path) -> NodeOptions {
        NodeOptions {
            log_uri: format!("local://{}", dir.join("log").display()),
            raft_meta_uri: format!("local://{}", dir.join("meta").display()),
            snapshot_uri: format!("local://{}", dir.join("snap").display()),
            ..NodeOptions::default()
        }
    }

    /// Protocol-aware recovery: a log that ends before the commit index
    /// stored with the vote lost synced entries, so the node must not vote
    /// until it caught up; an intact log votes at once.
    #[test]
    fn a_log_shorter_than_its_stored_commit_index_stops_the_node_voting() {
        let dir = tempfile::tempdir().unwrap();
        write_log(&dir.path().join("log"), &[1, 1, 1, 1]);
        let meta = MetaStore::open(RealFs::shared(), dir.path().join("meta")).unwrap();
        let hs = crate::proto::HardState {
            term: 1,
            vote: "a".into(),
            commit: 4,
        };
        meta.save(&hs).unwrap();
        let r = open(&opts(dir.path()), "g", "p", false).unwrap();
        assert!(!r.init.lost_acknowledged, "the whole log is there");
        r.storage.shutdown();
        drop(r);
        // The media lost the log's files (a damaged disk, a restore gone wrong).
        std::fs::remove_dir_all(dir.path().join("log")).unwrap();
        let r = open(&opts(dir.path()), "g", "p", false).unwrap();
        assert!(r.init.lost_acknowledged);
        assert_eq!(r.init.hard_state.commit, 0, "commit clamped to the log");
        r.storage.shutdown();
    }

    /// Recovers a node whose log holds entries of `terms` (from index 1)
    /// and whose snapshot ends at index 5, term 2; returns the log's
    /// (first, last) index, the applied index and the commit index.
    fn recover_beside_snapshot(terms: &[u64]) -> ((u64, u64), u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        write_log(&dir.path().join("log"), terms);
        publish_snapshot(&dir.path().join("snap"), 5, 2);
        let r = open(&opts(dir.path()), "g", "p", false).unwrap();
        let log = &r.storage.log;
        let found = (
            (log.first_index(), log.last_index()),
            r.init.applied,
            r.init.hard_state.commit,
        );
        r.storage.shutdown();
        found
    }

    #[test]
    fn a_log_that_agrees_with_the_snapshot_is_kept() {
        let (range, applied, commit) = recover_beside_snapshot(&[1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(range, (1, 8));
        assert_eq!(applied, 5);
        assert_eq!(commit, 5, "commit is at least the snapshot");
    }

    #[test]
    fn a_log_that_disagrees_with_the_snapshot_is_reset_after_it() {
        // Divergent entries (term 1 where the snapshot says term 2 at index 5):
        // what a crash in the middle of installing a snapshot can leave.
        let (range, _, _) = recover_beside_snapshot(&[1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(range, (6, 5));
    }

    #[test]
    fn a_log_that_stops_before_the_snapshot_is_reset_after_it() {
        let (range, _, _) = recover_beside_snapshot(&[1, 1, 1]);
        assert_eq!(range, (6, 5));
    }

    #[test]
    fn malformed_uris_are_invalid_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.log_uri = "ftp://x".into();
        assert_eq!(
            open(&o, "g", "p", false).err().map(|s| s.code),
            Some(errno::EINVAL)
        );
        let mut o = opts(dir.path());
        o.raft_meta_uri = "memory://".into();
        assert_eq!(
            open(&o, "g", "p", false).err().map(|s| s.code),
            Some(errno::EINVAL)
        );
    }
}
