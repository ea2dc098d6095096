//! The meta store: the node's [`HardState`] (term, vote, commit), replaced
//! atomically on every save.
//!
//! File `raft_meta` in the meta directory, as braft writes it: a
//! `ProtoBufFile` (4-byte big-endian length, then the message) of
//! `StablePBMeta` {term, votedfor}, the vote as braft's peer id text
//! (`0.0.0.0:0:0:0` for none). rraft adds the commit index in a field braft
//! does not use (see `braft_pb`); braft reads the file unchanged, and a
//! file braft wrote reads with commit 0. A save writes `raft_meta.tmp`,
//! fsyncs it, renames it over `raft_meta` and fsyncs the directory, so a
//! crash leaves the old or the new state, never a mix.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::braft_pb::{self, StablePbMeta};
use super::fs::{io_err, read_whole, write_atomic, FileSystem};
use crate::core::StorageError;
use crate::proto::HardState;

/// Name of the meta file.
pub const META_FILE: &str = "raft_meta";

#[derive(Debug)]
pub struct MetaStore {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// The first save error: every later save fails with it.
    failed: Mutex<Option<StorageError>>,
}

impl MetaStore {
    /// Opens (creating the directory if needed) the meta store in `dir`.
    pub fn open(fs: Arc<dyn FileSystem>, dir: impl AsRef<Path>) -> Result<MetaStore, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        super::fs::create_dir_durable(&*fs, &dir)
            .map_err(|e| io_err("create meta directory", e))?;
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        if fs
            .exists(&tmp)
            .map_err(|e| io_err("meta directory", e))?
            .is_some()
        {
            // An interrupted save: the rename never happened, the old file holds.
            let _ = fs.remove_file(&tmp);
        }
        Ok(MetaStore {
            fs,
            dir,
            failed: Mutex::new(None),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state; the default (term 0, no vote) when nothing was saved.
    pub fn load(&self) -> Result<HardState, StorageError> {
        let path = self.dir.join(META_FILE);
        let Some(b) = read_whole(&*self.fs, &path).map_err(|e| io_err("read raft meta", e))? else {
            return Ok(HardState::default());
        };
        let corrupt =
            |what: &str| StorageError::Io(format!("corrupt raft meta {}: {what}", path.display()));
        let m: StablePbMeta = braft_pb::unframe(&b).map_err(|why| corrupt(&why))?;
        braft_pb::hard_state_from_braft(&m).map_err(|why| corrupt(&why))
    }

    /// Saves `hs` durably and atomically.
    pub fn save(&self, hs: &HardState) -> Result<(), StorageError> {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = &*failed {
            return Err(e.clone());
        }
        let m = braft_pb::hard_state_to_braft(hs).map_err(StorageError::Io)?;
        let b = braft_pb::frame(&m);
        if let Err(e) = write_atomic(&*self.fs, &self.dir, META_FILE, &b) {
            let e = io_err("save raft meta", e);
            log::error!("meta store failed, refusing every later save: {e}");
            *failed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }
}
