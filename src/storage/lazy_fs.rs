//! A test-only file system over the real one that makes a SIGKILL of the
//! process behave like a power loss: **it loses data on purpose and is
//! never for production.**
//!
//! A killed process keeps its writes in the kernel's page cache, so a
//! SIGKILL alone can never show that something was acknowledged before its
//! `fdatasync`. [`LazyFs`] keeps every write and length change made to a
//! file since the file's last [`File::sync_data`] in this process's memory
//! (reads through any handle see them) and writes them to the real file
//! only in `sync_data`, followed by a real `fdatasync`. Whatever was not
//! synced when the process dies is gone, as after a power loss.
//!
//! Rules:
//! - Pending data belongs to the file (its inode), not to a handle: every
//!   handle of the file sees it, a rename or a hard link keeps it, and a
//!   `sync_data` on any handle writes all of it. It survives closing the
//!   last handle (a later open sees it) and is dropped once the file has no
//!   name and no handle left.
//! - `set_len` is pending like a write: a shrink followed by growth reads
//!   zeros in between, and the real file is cut only at the next sync.
//! - Opening with [`OpenMode::Create`] truncates the real file at once (an
//!   existing file's pending data goes with it).
//! - Directory operations (create, rename, remove, link, mkdir) go to the
//!   real file system at once and survive a kill, as if every `sync_dir`
//!   had already happened. A power loss that takes back an un-synced
//!   directory entry is not modelled here; the simulated disk
//!   ([`super::SimFs`]) and the storage crash-point tests cover that.
//! - Safe for concurrent use: each file's state sits behind a read-write
//!   lock (reads in parallel, writes and the flush of a sync exclusive; the
//!   real `fdatasync` runs outside it).
//!
//! Selected for nodes opened without [`crate::node::NodeOptions::fs`] when
//! the environment variable `RRAFT_TEST_LAZY_FS` is set (to anything but
//! `0` or nothing); a warning is logged each time.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::fs::{DirLock, File, FileSystem, OpenMode, RealFs};

/// The environment variable that selects [`LazyFs`] for nodes opened
/// without an explicit file system.
pub const ENV_VAR: &str = "RRAFT_TEST_LAZY_FS";

/// A file's identity: (device, inode).
type Key = (u64, u64);

/// A file's content as this process sees it: the real file, cut at
/// `trunc_floor`, overlaid with `extents`, `len` bytes long.
#[derive(Debug)]
struct State {
    len: u64,
    /// Real bytes at or beyond this offset read as zeros (a pending
    /// shrink); `u64::MAX` when none is pending. Never above `len`.
    trunc_floor: u64,
    /// Pending writes, non-overlapping and non-adjacent, by offset.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Something is pending.
    dirty: bool,
    /// A descriptor open for writing, once a handle opened the file so;
    /// a sync through any handle writes through it.
    rw: Option<std::fs::File>,
}

impl State {
    fn write(&mut self, data: &[u8], off: u64) {
        let end = off + data.len() as u64;
        // The extent starting at or before `off` that reaches it, then every
        // extent starting inside (off, end]: all merge with the write.
        let first = self
            .extents
            .range(..=off)
            .next_back()
            .filter(|(s, v)| **s + v.len() as u64 >= off)
            .map(|(s, _)| *s);
        let inside: Vec<u64> = self
            .extents
            .range(off.saturating_add(1)..=end)
            .map(|(s, _)| *s)
            .collect();
        let (start, mut buf) = match first {
            Some(s) => (s, self.extents.remove(&s).expect("listed extent")),
            None => (off, Vec::new()),
        };
        let mut tail = Vec::new();
        for s in inside {
            let v = self.extents.remove(&s).expect("listed extent");
            let v_end = s + v.len() as u64;
            if v_end > end {
                tail = v[(end - s) as usize..].to_vec();
            }
        }
        let need = (end - start) as usize;
        if buf.len() < need {
            buf.resize(need, 0);
        }
        buf[(off - start) as usize..need].copy_from_slice(data);
        buf.extend_from_slice(&tail);
        self.extents.insert(start, buf);
        self.len = self.len.max(end);
        self.dirty = true;
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.trunc_floor = self.trunc_floor.min(len);
            self.extents.split_off(&len);
            if let Some((s, v)) = self.extents.range_mut(..len).next_back() {
                let keep = (len - *s) as usize;
                if v.len() > keep {
                    v.truncate(keep);
                }
            }
        }
        self.len = len;
        self.dirty = true;
    }

    /// Fills `out` (already clipped to `len`) from `off`: the real file
    /// below the pending cut, zeros beyond, pending writes on top.
    fn read(&self, real: &std::fs::File, out: &mut [u8], off: u64) -> io::Result<()> {
        let end = off + out.len() as u64;
        let real_end = end.min(self.trunc_floor).max(off);
        let want = (real_end - off) as usize;
        let mut done = 0;
        while done < want {
            match real.read_at(&mut out[done..want], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        out[done..].fill(0);
        let before = self.extents.range(..off).next_back().map(|(s, v)| (*s, v));
        for (s, v) in before
            .into_iter()
            .chain(self.extents.range(off..end).map(|(s, v)| (*s, v)))
        {
            let from = s.max(off);
            let to = (s + v.len() as u64).min(end);
            if from < to {
                out[(from - off) as usize..(to - off) as usize]
                    .copy_from_slice(&v[(from - s) as usize..(to - s) as usize]);
            }
        }
        Ok(())
    }

    /// Writes everything pending to the real file (not yet durable).
    fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let fd = self.rw.as_ref().ok_or_else(|| {
            io::Error::other("lazy fs: pending writes without a writable descriptor")
        })?;
        if self.trunc_floor != u64::MAX {
            fd.set_len(self.trunc_floor)?;
        }
        for (s, v) in &self.extents {
            fd.write_all_at(v, *s)?;
        }
        if fd.metadata()?.len() != self.len {
            fd.set_len(self.len)?;
        }
        self.extents.clear();
        self.trunc_floor = u64::MAX;
        self.dirty = false;
        Ok(())
    }
}

/// One file with handles or pending data.
#[derive(Debug)]
struct Node {
    /// Keeps the inode, and so its number, alive while the entry exists.
    keep: std::fs::File,
    state: RwLock<State>,
}

impl Node {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn unlinked(&self) -> bool {
        self.keep
            .metadata()
            .map(|m| m.nlink() == 0)
            .unwrap_or(false)
    }
}

#[derive(Debug)]
struct Entry {
    node: Arc<Node>,
    handles: usize,
}

/// Files by identity. Lock order: the registry, then a file's state.
#[derive(Debug, Default)]
struct Registry {
    files: Mutex<HashMap<Key, Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets files without a handle that lost their last name.
    fn sweep(&self) {
        self.lock()
            .retain(|_, e| e.handles > 0 || !e.node.unlinked());
    }
}

/// See the module documentation. Test-only: loses unsynced data when the
/// process dies.
#[derive(Debug, Default)]
pub struct LazyFs {
    registry: Arc<Registry>,
}

impl LazyFs {
    /// A fresh instance with nothing pending. Dropping it and every handle
    /// it opened without syncing loses the pending data (a crash).
    pub fn new() -> LazyFs {
        LazyFs::default()
    }

    /// The process-wide instance if `RRAFT_TEST_LAZY_FS` asks for it (set,
    /// not empty, not `0`), with a warning; `None` otherwise. Test-only.
    pub fn from_env() -> Option<Arc<dyn FileSystem>> {
        let on = std::env::var_os(ENV_VAR).is_some_and(|v| !v.is_empty() && v != "0");
        if !on {
            return None;
        }
        static SHARED: OnceLock<Arc<LazyFs>> = OnceLock::new();
        log::warn!(
            "{ENV_VAR} is set: storage keeps unsynced writes in memory only (lazy fs, for tests; \
             a crash of this process loses them as a power loss would)"
        );
        let fs: Arc<dyn FileSystem> = SHARED.get_or_init(|| Arc::new(LazyFs::new())).clone();
        Some(fs)
    }
}

/// A handle of a [`LazyFs`] file.
#[derive(Debug)]
struct LazyFile {
    fd: std::fs::File,
    writable: bool,
    key: Key,
    node: Arc<Node>,
    registry: Arc<Registry>,
}

impl Drop for LazyFile {
    fn drop(&mut self) {
        let mut files = self.registry.lock();
        if let Some(e) = files.get_mut(&self.key) {
            e.handles -= 1;
            if e.handles == 0 && (!e.node.read().dirty || e.node.unlinked()) {
                files.remove(&self.key);
            }
        }
    }
}

fn bad_fd(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{what} on a file opened read-only"),
    )
}

impl File for LazyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.node.read();
        if offset >= st.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(st.len - offset) as usize;
        st.read(&self.fd, &mut buf[..n], offset)?;
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !self.writable {
            return Err(bad_fd("write"));
        }
        if !buf.is_empty() {
            self.node.write().write(buf, offset);
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.node.read().len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if !self.writable {
            return Err(bad_fd("set_len"));
        }
        self.node.write().set_len(len);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.node.write().flush()?;
        // Any descriptor of the file makes its data durable.
        self.fd.sync_data()
    }
}

impl FileSystem for LazyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let o = mode.std_options();
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let fd = o.open(path).map_err(with_path)?;
        let md = fd.metadata().map_err(with_path)?;
        let key = (md.dev(), md.ino());
        let writable = mode != OpenMode::Read;
        // Nothing may fail while the registry is locked below: a handle
        // dropped there would lock it again.
        let rw = if writable {
            Some(fd.try_clone()?)
        } else {
            None
        };
        let mut files = self.registry.lock();
        let node = match files.get_mut(&key) {
            Some(e) => {
                e.handles += 1;
                e.node.clone()
            }
            None => {
                let node = Arc::new(Node {
                    keep: fd.try_clone()?,
                    state: RwLock::new(State {
                        len: md.len(),
                        trunc_floor: u64::MAX,
                        extents: BTreeMap::new(),
                        dirty: false,
                        rw: None,
                    }),
                });
                files.insert(
                    key,
                    Entry {
                        node: node.clone(),
                        handles: 1,
                    },
                );
                node
            }
        };
        let file = LazyFile {
            fd,
            writable,
            key,
            node,
            registry: self.registry.clone(),
        };
        {
            let mut st = file.node.write();
            if mode == OpenMode::Create {
                st.len = 0;
                st.trunc_floor = u64::MAX;
                st.extents.clear();
                st.dirty = false;
            }
            if st.rw.is_none() {
                st.rw = rw;
            }
        }
        drop(files);
        Ok(Arc::new(file))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.list_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let r = RealFs.rename(from, to);
        self.registry.sweep();
        r
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let r = RealFs.remove_file(path);
        self.registry.sweep();
        r
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let r = RealFs.remove_dir_all(path);
        self.registry.sweep();
        r
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.hard_link(from, to)
    }

    fn exists(&self, path: &Path) -> io::Result<Option<bool>> {
        RealFs.exists(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        RealFs.lock_dir(dir)
    }

    fn canonical(&self, path: &Path) -> io::Result<PathBuf> {
        RealFs.canonical(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path "f" in a fresh directory (removed when the guard drops).
    fn scratch_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        (dir, path)
    }

    fn real(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn read_all(f: &dyn File) -> Vec<u8> {
        let mut buf = vec![0u8; f.size().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn writes_are_visible_before_sync_and_reach_the_file_at_sync() {
        let (_dir, path) = scratch_file();
        let fs = LazyFs::new();
        let w = fs.open(&path, OpenMode::Create).unwrap();
        w.write_at(b"hello", 0).unwrap();
        w.write_at(b" world", 5).unwrap();
        let r = fs.open(&path, OpenMode::Read).unwrap();
        assert_eq!(read_all(&*r), b"hello world");
        assert_eq!(r.size().unwrap(), 11);
        assert_eq!(real(&path), b"");
        r.sync_data().unwrap();
        assert_eq!(real(&path), b"hello world");
        assert_eq!(read_all(&*w), b"hello world");
    }

    #[test]
    fn a_crash_loses_what_was_not_synced() {
        let (_dir, path) = scratch_file();
        {
            let fs = LazyFs::new();
            let w = fs.open(&path, OpenMode::Create).unwrap();
            w.write_at(b"durable", 0).unwrap();
            w.sync_data().unwrap();
            w.write_at(b"-lost", 7).unwrap();
            w.write_at(b"D", 0).unwrap();
            w.set_len(3).unwrap();
            assert_eq!(read_all(&*w), b"Dur");
            // Closed without a sync: still pending, still visible.
            drop(w);
            let r = fs.open(&path, OpenMode::Read).unwrap();
            assert_eq!(read_all(&*r), b"Dur");
        }
        assert_eq!(real(&path), b"durable");
        let fs = LazyFs::new();
        let r = fs.open(&path, OpenMode::ReadWrite).unwrap();
        assert_eq!(read_all(&*r), b"durable");
    }

    #[test]
    fn set_len_is_pending_and_a_regrown_file_reads_zeros() {
        let (_dir, path) = scratch_file();
        std::fs::write(&path, b"0123456789").unwrap();
        let fs = LazyFs::new();
        let f = fs.open(&path, OpenMode::ReadWrite).unwrap();
        f.set_len(4).unwrap();
        assert_eq!(f.size().unwrap(), 4);
        assert_eq!(real(&path), b"0123456789");
        f.set_len(8).unwrap();
        f.write_at(b"x", 9).unwrap();
        assert_eq!(read_all(&*f), b"0123\0\0\0\0\0x");
        f.sync_data().unwrap();
        assert_eq!(real(&path), b"0123\0\0\0\0\0x");
        f.set_len(2).unwrap();
        f.sync_data().unwrap();
        assert_eq!(real(&path), b"01");
        // Growth alone.
        f.set_len(5).unwrap();
        assert_eq!(real(&path), b"01");
        assert_eq!(read_all(&*f), b"01\0\0\0");
        f.sync_data().unwrap();
        assert_eq!(real(&path), b"01\0\0\0");
    }

    #[test]
    fn reads_span_synced_and_pending_bytes() {
        let (_dir, path) = scratch_file();
        std::fs::write(&path, b"aaaaaaaaaa").unwrap();
        let fs = LazyFs::new();
        let f = fs.open(&path, OpenMode::ReadWrite).unwrap();
        f.write_at(b"BB", 3).unwrap();
        f.write_at(b"CCC", 9).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(f.read_at(&mut buf, 2).unwrap(), 8);
        assert_eq!(&buf, b"aBBaaaaC");
        let mut tail = [0u8; 10];
        assert_eq!(f.read_at(&mut tail, 8).unwrap(), 4);
        assert_eq!(&tail[..4], b"aCCC");
        assert_eq!(f.read_at(&mut tail, 12).unwrap(), 0);
    }

    #[test]
    fn pending_data_follows_the_file_through_renames_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let fs = LazyFs::new();
        let w = fs.open(&a, OpenMode::Create).unwrap();
        w.write_at(b"data", 0).unwrap();
        drop(w);
        fs.rename(&a, &b).unwrap();
        fs.hard_link(&b, &c).unwrap();
        let r = fs.open(&c, OpenMode::Read).unwrap();
        assert_eq!(read_all(&*r), b"data");
        assert_eq!(real(&b), b"");
        // A sync through a read-only handle writes the file's pending data.
        r.sync_data().unwrap();
        assert_eq!(real(&b), b"data");
        drop(r);
        assert!(fs.registry.lock().is_empty());
    }

    #[test]
    fn a_removed_file_is_forgotten() {
        let (_dir, path) = scratch_file();
        let fs = LazyFs::new();
        let w = fs.open(&path, OpenMode::Create).unwrap();
        w.write_at(b"gone", 0).unwrap();
        drop(w);
        assert_eq!(fs.registry.lock().len(), 1);
        fs.remove_file(&path).unwrap();
        assert!(fs.registry.lock().is_empty());
        let w = fs.open(&path, OpenMode::Create).unwrap();
        assert_eq!(w.size().unwrap(), 0);
        // Create truncates at once, pending data included.
        w.write_at(b"abc", 0).unwrap();
        let again = fs.open(&path, OpenMode::Create).unwrap();
        assert_eq!(again.size().unwrap(), 0);
        assert_eq!(read_all(&*w), b"");
    }

    #[test]
    fn a_read_only_handle_cannot_write() {
        let (_dir, path) = scratch_file();
        std::fs::write(&path, b"x").unwrap();
        let fs = LazyFs::new();
        let r = fs.open(&path, OpenMode::Read).unwrap();
        assert!(r.write_at(b"y", 0).is_err());
        assert!(r.set_len(0).is_err());
        r.sync_data().unwrap();
        assert_eq!(read_all(&*r), b"x");
    }

    /// Random writes, length changes, syncs and reads against a model; the
    /// real file holds exactly the model's state at the last sync.
    #[test]
    fn random_operations_match_a_model() {
        let (_dir, path) = scratch_file();
        let fs = LazyFs::new();
        let f = fs.open(&path, OpenMode::Create).unwrap();
        let mut model: Vec<u8> = Vec::new();
        let mut synced: Vec<u8> = Vec::new();
        let mut rng = crate::core::rng::Rng::new(7);
        for step in 0..5000u32 {
            match rng.range(0, 10) {
                0..=4 => {
                    let off = rng.range(0, 300) as usize;
                    let len = 1 + rng.range(0, 40) as usize;
                    let data: Vec<u8> = (0..len).map(|i| (step as usize + i) as u8 | 1).collect();
                    f.write_at(&data, off as u64).unwrap();
                    if model.len() < off + len {
                        model.resize(off + len, 0);
                    }
                    model[off..off + len].copy_from_slice(&data);
                }
                5 => {
                    let len = rng.range(0, 320) as usize;
                    f.set_len(len as u64).unwrap();
                    model.resize(len, 0);
                }
                6 => {
                    f.sync_data().unwrap();
                    synced = model.clone();
                }
                _ => {
                    let off = rng.range(0, 330) as usize;
                    let mut buf = vec![0xee; rng.range(0, 80) as usize];
                    let n = f.read_at(&mut buf, off as u64).unwrap();
                    let want = model.get(off..).unwrap_or(&[]);
                    let want = &want[..want.len().min(buf.len())];
                    assert_eq!(&buf[..n], want, "step {step}");
                }
            }
            assert_eq!(f.size().unwrap(), model.len() as u64);
            assert_eq!(real(&path), synced, "step {step}");
        }
    }

    #[test]
    fn concurrent_writers_readers_and_syncs() {
        let (_dir, path) = scratch_file();
        let fs = Arc::new(LazyFs::new());
        let f = fs.open(&path, OpenMode::Create).unwrap();
        const CHUNK: usize = 64;
        const PER: usize = 200;
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let fs = fs.clone();
                let path = path.clone();
                std::thread::spawn(move || {
                    let w = fs.open(&path, OpenMode::ReadWrite).unwrap();
                    for i in 0..PER {
                        let off = ((i * 4 + t as usize) * CHUNK) as u64;
                        w.write_at(&[t + 1; CHUNK], off).unwrap();
                        let mut back = [0u8; CHUNK];
                        w.read_exact_at(&mut back, off).unwrap();
                        assert_eq!(back, [t + 1; CHUNK]);
                        if i % 50 == 0 {
                            w.sync_data().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        f.sync_data().unwrap();
        let data = real(&path);
        assert_eq!(data.len(), 4 * PER * CHUNK);
        for (k, chunk) in data.chunks(CHUNK).enumerate() {
            assert_eq!(chunk, [(k % 4) as u8 + 1; CHUNK]);
        }
    }
}
