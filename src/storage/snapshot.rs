//! The snapshot store, in braft's layout (`snapshot.cpp`).
//!
//! Layout under the snapshot directory:
//! ```text
//! temp/                       work directories of snapshots being built
//!                             (exists only while one is)
//! snapshot_<index, 20 digits>/
//!     __raft_snapshot_meta    manifest: braft's ProtoBufFile of
//!                             LocalSnapshotPbMeta {SnapshotMeta, files}
//!     <user files>
//! ```
//! Each file's `LocalFileMeta.checksum` holds `crc32c:<8 hex digits>` of
//! the file (braft treats the text as opaque and compares it to decide
//! whether a follower's copy can be reused); a file listed without one (a
//! snapshot braft wrote) gets its CRC32C computed when the store opens.
//! Sizes are the files' lengths.
//!
//! A snapshot is built in a directory under `temp/`, its files and
//! manifest fsynced, then the directory is renamed into place and the
//! parent fsynced: a crash leaves the old snapshot or the new one, never a
//! mix. `temp/` is removed when no snapshot is being built and at open (as
//! braft deletes it at init). Older snapshots are deleted once a newer one
//! is published (after the last reader of one lets go); at open every
//! snapshot but the newest is deleted, as braft does.
//!
//! Followers receive a snapshot with [`SnapshotStore::begin_receive`]: files
//! the current snapshot already holds with the same name, size and checksum
//! are hard-linked instead of fetched again; the rest arrive as chunks and
//! every file is verified against the leader's checksums before publishing.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::braft_pb::{self, LocalFileMeta, LocalSnapshotFile, LocalSnapshotPbMeta};
use super::fs::{io_err, read_whole, File, FileSystem, OpenMode};
use crate::core::StorageError;
use crate::proto::SnapshotMeta;

/// Name of the manifest inside a snapshot directory.
pub const MANIFEST: &str = "__raft_snapshot_meta";
/// Name of the directory holding snapshots being built.
pub const TEMP_DIR: &str = "temp";
const IO_CHUNK: usize = 1 << 20;

/// One user file of a snapshot.
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct SnapshotFile {
    /// Path relative to the snapshot directory (`/`-separated).
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// CRC32C of the whole file.
    #[prost(uint32, tag = "3")]
    pub checksum: u32,
}

fn snapshot_dir_name(index: u64) -> String {
    format!("snapshot_{index:020}")
}

fn parse_snapshot_dir_name(name: &str) -> Option<u64> {
    let d = name.strip_prefix("snapshot_")?;
    (d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| d.parse().ok())
        .flatten()
}

fn err(msg: impl Into<String>) -> StorageError {
    StorageError::Io(msg.into())
}

/// Refuses names that could escape the snapshot directory or hit the manifest.
pub fn check_file_name(name: &str) -> Result<(), StorageError> {
    let bad = |why: &str| err(format!("snapshot file name {name:?} refused: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.contains('\0') || name.contains('\\') {
        return Err(bad("NUL or backslash"));
    }
    if name == MANIFEST {
        return Err(bad("reserved for the manifest"));
    }
    let p = Path::new(name);
    if p.is_absolute() {
        return Err(bad("absolute path"));
    }
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            _ => return Err(bad("'..', '.' or root component")),
        }
    }
    if name.split('/').any(|s| s.is_empty()) {
        return Err(bad("empty path component"));
    }
    Ok(())
}

fn open_for_read(fs: &dyn FileSystem, path: &Path) -> Result<Arc<dyn File>, StorageError> {
    fs.open(path, OpenMode::Read)
        .map_err(|e| io_err("open snapshot file", e))
}

/// Reads `f` (opened from `path`) sequentially in large chunks, handing
/// each with its offset to `chunk`; returns the file's size.
fn read_chunks(
    f: &dyn File,
    path: &Path,
    mut chunk: impl FnMut(&[u8], u64) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let mut buf = vec![0u8; IO_CHUNK];
    let mut off = 0u64;
    loop {
        let n = f
            .read_at(&mut buf, off)
            .map_err(|e| io_err(format!("read {}", path.display()), e))?;
        if n == 0 {
            return Ok(off);
        }
        chunk(&buf[..n], off)?;
        off += n as u64;
    }
}

/// Size and CRC32C of a file.
fn checksum_file(fs: &dyn FileSystem, path: &Path) -> Result<(u64, u32), StorageError> {
    let mut crc = 0u32;
    let f = open_for_read(fs, path)?;
    let size = read_chunks(&*f, path, |data, _| {
        crc = crc32c::crc32c_append(crc, data);
        Ok(())
    })?;
    Ok((size, crc))
}

fn copy_file(fs: &dyn FileSystem, from: &Path, to: &Path) -> Result<(), StorageError> {
    let src = open_for_read(fs, from)?;
    let dst = fs
        .open(to, OpenMode::Create)
        .map_err(|e| io_err("create snapshot file", e))?;
    read_chunks(&*src, from, |data, off| {
        dst.write_at(data, off)
            .map_err(|e| io_err(format!("write {}", to.display()), e))
    })?;
    Ok(())
}

/// Creates `path` as an empty directory, removing what a crash left there.
fn make_empty_dir(fs: &dyn FileSystem, path: &Path, what: &str) -> Result<(), StorageError> {
    if fs.exists(path).map_err(|e| io_err(what, e))?.is_some() {
        fs.remove_dir_all(path)
            .map_err(|e| io_err(format!("clean {what}"), e))?;
    }
    fs.create_dir_all(path)
        .map_err(|e| io_err(format!("create {what}"), e))
}

/// A snapshot's meta and files, as its manifest lists them.
struct Manifest {
    meta: SnapshotMeta,
    files: Vec<SnapshotFile>,
}

const CHECKSUM_PREFIX: &str = "crc32c:";

fn checksum_text(crc: u32) -> String {
    format!("{CHECKSUM_PREFIX}{crc:08x}")
}

fn parse_checksum_text(text: &str) -> Option<u32> {
    let hex = text.strip_prefix(CHECKSUM_PREFIX)?;
    (hex.len() == 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

fn load_manifest(fs: &dyn FileSystem, dir: &Path) -> Result<Manifest, StorageError> {
    let path = dir.join(MANIFEST);
    let corrupt = |what: &str| {
        err(format!(
            "corrupt snapshot manifest {}: {what}",
            path.display()
        ))
    };
    let b = read_whole(fs, &path)
        .map_err(|e| io_err("read snapshot manifest", e))?
        .ok_or_else(|| corrupt("missing"))?;
    let m: LocalSnapshotPbMeta = braft_pb::unframe(&b).map_err(|why| corrupt(&why))?;
    let meta = m.meta.as_ref().ok_or_else(|| corrupt("no snapshot meta"))?;
    let meta = braft_pb::snapshot_meta_from_braft(meta).map_err(|why| corrupt(&why))?;
    let mut files = Vec::with_capacity(m.files.len());
    for f in &m.files {
        check_file_name(&f.name)?;
        let listed = f
            .meta
            .as_ref()
            .and_then(|m| m.checksum.as_deref())
            .and_then(parse_checksum_text);
        let file_path = dir.join(&f.name);
        let (size, checksum) = match listed {
            Some(crc) => {
                let h = open_for_read(fs, &file_path)?;
                let size = h
                    .size()
                    .map_err(|e| io_err(format!("stat {}", file_path.display()), e))?;
                (size, crc)
            }
            None => checksum_file(fs, &file_path)?,
        };
        files.push(SnapshotFile {
            name: f.name.clone(),
            size,
            checksum,
        });
    }
    Ok(Manifest { meta, files })
}

fn encode_manifest(meta: &SnapshotMeta, files: &[SnapshotFile]) -> Result<Vec<u8>, StorageError> {
    let meta = braft_pb::snapshot_meta_to_braft(meta).map_err(err)?;
    // braft keeps the files in a map, so it writes them sorted by name.
    let mut listed: Vec<LocalSnapshotFile> = files
        .iter()
        .map(|f| LocalSnapshotFile {
            name: f.name.clone(),
            meta: Some(LocalFileMeta {
                checksum: Some(checksum_text(f.checksum)),
                ..LocalFileMeta::default()
            }),
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(braft_pb::frame(&LocalSnapshotPbMeta {
        meta: Some(meta),
        files: listed,
    }))
}

/// A published snapshot directory, shared by the store and its readers.
#[derive(Debug)]
struct SnapDir {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    meta: SnapshotMeta,
    files: Vec<SnapshotFile>,
    /// Replaced by a newer snapshot: deleted once the last reader lets go.
    obsolete: AtomicBool,
}

impl Drop for SnapDir {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            if let Err(e) = self.fs.remove_dir_all(&self.path) {
                log::warn!("could not remove old snapshot: {e}");
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    latest: Mutex<Option<Arc<SnapDir>>>,
    seq: AtomicU64,
    /// Snapshots being built: `temp/` is removed when the count drops to 0.
    building: Mutex<usize>,
}

impl Shared {
    fn lock_building(&self) -> std::sync::MutexGuard<'_, usize> {
        self.building.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One snapshot less is being built; removes `temp/` after the last.
    fn done_building(&self) {
        let mut n = self.lock_building();
        *n = n.saturating_sub(1);
        if *n == 0 {
            let temp = self.dir.join(TEMP_DIR);
            if let Err(e) = self.fs.remove_dir_all(&temp) {
                if self.fs.exists(&temp).ok().flatten().is_some() {
                    log::warn!("could not remove {}: {e}", temp.display());
                }
            }
        }
    }
}

/// The snapshot store of one node (`local://DIR` snapshot URI).
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    shared: Arc<Shared>,
}

impl SnapshotStore {
    /// Opens (creating if needed) the store in `dir`: removes leftover work
    /// directories, loads the newest snapshot and deletes older ones. A
    /// newest snapshot with a bad manifest is an error.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
    ) -> Result<SnapshotStore, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        super::fs::create_dir_durable(&*fs, &dir)
            .map_err(|e| io_err("create snapshot directory", e))?;
        let temp = dir.join(TEMP_DIR);
        if fs
            .exists(&temp)
            .map_err(|e| io_err("snapshot temp directory", e))?
            .is_some()
        {
            fs.remove_dir_all(&temp)
                .map_err(|e| io_err("clean snapshot temp directory", e))?;
        }
        let mut found: Vec<(u64, String)> = fs
            .list_dir(&dir)
            .map_err(|e| io_err("list snapshot directory", e))?
            .into_iter()
            .filter_map(|n| parse_snapshot_dir_name(&n).map(|i| (i, n)))
            .collect();
        found.sort();
        let mut latest = None;
        if let Some((index, name)) = found.pop() {
            let path = dir.join(&name);
            let m = load_manifest(&*fs, &path)?;
            let meta = m.meta;
            if meta.last_index != index {
                return Err(err(format!(
                    "snapshot {}: manifest says index {}",
                    path.display(),
                    meta.last_index
                )));
            }
            latest = Some(Arc::new(SnapDir {
                fs: fs.clone(),
                path,
                meta,
                files: m.files,
                obsolete: AtomicBool::new(false),
            }));
            for (_, old) in found {
                if let Err(e) = fs.remove_dir_all(&dir.join(&old)) {
                    log::warn!("could not remove old snapshot {old}: {e}");
                }
            }
        }
        Ok(SnapshotStore {
            shared: Arc::new(Shared {
                fs,
                dir,
                latest: Mutex::new(latest),
                seq: AtomicU64::new(0),
                building: Mutex::new(0),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The newest published snapshot.
    pub fn latest(&self) -> Option<SnapshotReader> {
        self.shared
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|dir| SnapshotReader { dir })
    }

    fn new_work_dir(&self, index: u64) -> Result<PathBuf, StorageError> {
        let n = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let work = self
            .shared
            .dir
            .join(TEMP_DIR)
            .join(format!("{}.{n}", snapshot_dir_name(index)));
        let mut building = self.shared.lock_building();
        make_empty_dir(&*self.shared.fs, &work, "snapshot work directory")?;
        *building += 1;
        Ok(work)
    }

    /// Starts a local snapshot at `meta`: write files under
    /// [`SnapshotWriter::path`], record each with `add_file`, then `finish`.
    pub fn create(&self, meta: SnapshotMeta) -> Result<SnapshotWriter, StorageError> {
        let work = self.new_work_dir(meta.last_index)?;
        Ok(SnapshotWriter {
            store: self.shared.clone(),
            meta,
            work,
            files: Vec::new(),
            receive: None,
            published: false,
        })
    }

    /// Starts receiving the leader's snapshot `meta` made of `files`. Files
    /// the current snapshot holds with the same name, size and checksum are
    /// linked (or copied) at once; fetch the rest
    /// ([`SnapshotWriter::missing_files`]) with `write_chunk`, then `finish`.
    pub fn begin_receive(
        &self,
        meta: SnapshotMeta,
        files: Vec<SnapshotFile>,
    ) -> Result<SnapshotWriter, StorageError> {
        let mut names = BTreeSet::new();
        for f in &files {
            check_file_name(&f.name)?;
            if !names.insert(f.name.clone()) {
                return Err(err(format!("snapshot file {:?} listed twice", f.name)));
            }
        }
        let work = self.new_work_dir(meta.last_index)?;
        let mut w = SnapshotWriter {
            store: self.shared.clone(),
            meta,
            work,
            files: files.clone(),
            receive: Some(Receive {
                missing: BTreeSet::new(),
                open: HashMap::new(),
            }),
            published: false,
        };
        let current = self.latest();
        let fs = &*self.shared.fs;
        for f in &files {
            let reusable = current
                .as_ref()
                .is_some_and(|c| c.dir.files.iter().any(|have| have == f));
            let rx = w.receive.as_mut().unwrap();
            if !reusable {
                rx.missing.insert(f.name.clone());
                continue;
            }
            let from = current.as_ref().unwrap().dir.path.join(&f.name);
            let to = w.work.join(&f.name);
            make_parent(fs, &w.work, &to)?;
            if fs.hard_link(&from, &to).is_err() {
                copy_file(fs, &from, &to)?;
            }
        }
        Ok(w)
    }
}

fn make_parent(fs: &dyn FileSystem, root: &Path, path: &Path) -> Result<(), StorageError> {
    match path.parent() {
        Some(p) if p != root => fs
            .create_dir_all(p)
            .map_err(|e| io_err("create snapshot subdirectory", e)),
        _ => Ok(()),
    }
}

#[derive(Debug)]
struct Receive {
    /// Files still to be written with `write_chunk`.
    missing: BTreeSet<String>,
    open: HashMap<String, Arc<dyn File>>,
}

/// A snapshot being built (locally or from the leader's chunks). Dropped
/// without `finish`, its work directory is removed.
#[derive(Debug)]
pub struct SnapshotWriter {
    store: Arc<Shared>,
    meta: SnapshotMeta,
    work: PathBuf,
    /// Local: files recorded by `add_file`; receive: the leader's list.
    files: Vec<SnapshotFile>,
    receive: Option<Receive>,
    published: bool,
}

impl SnapshotWriter {
    /// The working directory to write the snapshot's files into.
    pub fn path(&self) -> &Path {
        &self.work
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Records the file `name` written under [`SnapshotWriter::path`]
    /// (computes its size and checksum). Local snapshots only.
    pub fn add_file(&mut self, name: &str) -> Result<SnapshotFile, StorageError> {
        if self.receive.is_some() {
            return Err(err("add_file on a received snapshot; use write_chunk"));
        }
        check_file_name(name)?;
        let (size, checksum) = checksum_file(&*self.store.fs, &self.work.join(name))?;
        let f = SnapshotFile {
            name: name.to_string(),
            size,
            checksum,
        };
        self.files.retain(|have| have.name != name);
        self.files.push(f.clone());
        Ok(f)
    }

    /// Received snapshot: the files still to fetch (not reused locally).
    pub fn missing_files(&self) -> Vec<SnapshotFile> {
        match &self.receive {
            Some(rx) => self
                .files
                .iter()
                .filter(|f| rx.missing.contains(&f.name))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    /// Received snapshot: writes `data` at `offset` of file `name`.
    pub fn write_chunk(
        &mut self,
        name: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let fs = self.store.fs.clone();
        let Some(rx) = self.receive.as_mut() else {
            return Err(err("write_chunk on a local snapshot; write under path()"));
        };
        check_file_name(name)?;
        if !rx.missing.contains(name) {
            return Err(err(format!(
                "snapshot file {name:?} is not one this snapshot expects"
            )));
        }
        let expected = self.files.iter().find(|f| f.name == name).unwrap();
        if offset + data.len() as u64 > expected.size {
            return Err(err(format!(
                "chunk [{offset}, {}) of {name:?} runs past its size {}",
                offset + data.len() as u64,
                expected.size
            )));
        }
        let f = match rx.open.get(name) {
            Some(f) => f.clone(),
            None => {
                let path = self.work.join(name);
                make_parent(&*fs, &self.work, &path)?;
                let f = fs
                    .open(&path, OpenMode::Create)
                    .map_err(|e| io_err("create snapshot file", e))?;
                rx.open.insert(name.to_string(), f.clone());
                f
            }
        };
        f.write_at(data, offset)
            .map_err(|e| io_err(format!("write snapshot file {name}"), e))
    }

    /// Publishes the snapshot: verifies (received) files, fsyncs them,
    /// writes the manifest, renames the directory into place, fsyncs the
    /// parent and lets older snapshots go. Publishing an index already
    /// published keeps the existing one; an older index is refused.
    pub fn finish(mut self) -> Result<SnapshotReader, StorageError> {
        let fs = self.store.fs.clone();
        let fs = &*fs;
        if let Some(rx) = self.receive.take() {
            drop(rx);
            for f in &self.files {
                let path = self.work.join(&f.name);
                if fs
                    .exists(&path)
                    .map_err(|e| io_err("snapshot file", e))?
                    .is_none()
                {
                    return Err(err(format!(
                        "snapshot file {:?} was never received",
                        f.name
                    )));
                }
                let (size, checksum) = checksum_file(fs, &path)?;
                if size != f.size || checksum != f.checksum {
                    return Err(err(format!(
                        "snapshot file {:?}: got {size} bytes with CRC32C {checksum:#010x}, expected {} bytes with {:#010x}",
                        f.name, f.size, f.checksum
                    )));
                }
            }
        }
        // Every file durable (received, linked, copied or written by the user).
        for f in &self.files {
            let h = fs
                .open(&self.work.join(&f.name), OpenMode::Read)
                .map_err(|e| io_err("open snapshot file", e))?;
            h.sync_data()
                .map_err(|e| io_err(format!("sync snapshot file {}", f.name), e))?;
        }
        let manifest = encode_manifest(&self.meta, &self.files)?;
        let mf = fs
            .open(&self.work.join(MANIFEST), OpenMode::Create)
            .map_err(|e| io_err("create snapshot manifest", e))?;
        mf.write_at(&manifest, 0)
            .and_then(|_| mf.sync_data())
            .map_err(|e| io_err("write snapshot manifest", e))?;
        drop(mf);
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        dirs.insert(self.work.clone());
        for f in &self.files {
            if let Some(p) = self.work.join(&f.name).parent() {
                dirs.insert(p.to_path_buf());
            }
        }
        for d in &dirs {
            fs.sync_dir(d)
                .map_err(|e| io_err("sync snapshot directory", e))?;
        }

        let shared = self.store.clone();
        let mut latest = shared.latest.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cur) = latest.as_ref() {
            if cur.meta.last_index == self.meta.last_index {
                // Same index, same state: keep what is published.
                return Ok(SnapshotReader { dir: cur.clone() });
            }
            if cur.meta.last_index > self.meta.last_index {
                return Err(err(format!(
                    "snapshot at {} is older than the published one at {}",
                    self.meta.last_index, cur.meta.last_index
                )));
            }
        }
        let target = shared.dir.join(snapshot_dir_name(self.meta.last_index));
        fs.rename(&self.work, &target)
            .map_err(|e| io_err("publish snapshot", e))?;
        self.published = true;
        fs.sync_dir(&shared.dir)
            .map_err(|e| io_err("sync snapshot directory", e))?;
        let dir = Arc::new(SnapDir {
            fs: shared.fs.clone(),
            path: target,
            meta: self.meta.clone(),
            files: std::mem::take(&mut self.files),
            obsolete: AtomicBool::new(false),
        });
        if let Some(old) = latest.replace(dir.clone()) {
            old.obsolete.store(true, Ordering::Release);
        }
        Ok(SnapshotReader { dir })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.published {
            let _ = self.store.fs.remove_dir_all(&self.work);
        }
        self.store.done_building();
    }
}

/// A published snapshot, kept on disk while any reader holds it.
#[derive(Clone, Debug)]
pub struct SnapshotReader {
    dir: Arc<SnapDir>,
}

impl SnapshotReader {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.dir.meta
    }

    /// The snapshot's directory (for `on_snapshot_load`).
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    pub fn files(&self) -> &[SnapshotFile] {
        &self.dir.files
    }

    /// Up to `max_len` bytes of file `name` from `offset`, and whether the
    /// chunk reaches the end of the file. Only files in the manifest can be
    /// read.
    pub fn read_chunk(
        &self,
        name: &str,
        offset: u64,
        max_len: usize,
    ) -> Result<(Vec<u8>, bool), StorageError> {
        check_file_name(name)?;
        let f = self
            .dir
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| err(format!("snapshot has no file {name:?}")))?;
        if offset > f.size {
            return Err(err(format!(
                "offset {offset} past the end of {name:?} ({} bytes)",
                f.size
            )));
        }
        let len = (max_len as u64).min(f.size - offset) as usize;
        let h = self
            .dir
            .fs
            .open(&self.dir.path.join(name), OpenMode::Read)
            .map_err(|e| io_err("open snapshot file", e))?;
        let mut buf = vec![0u8; len];
        h.read_exact_at(&mut buf, offset)
            .map_err(|e| io_err(format!("read snapshot file {name}"), e))?;
        Ok((buf, offset + len as u64 >= f.size))
    }
}
