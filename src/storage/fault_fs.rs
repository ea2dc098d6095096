//! A [`FileSystem`] wrapper for tests: counts syncs, injects errors, and
//! simulates a crash after a given number of mutating operations (every
//! later operation fails, as if the process had died there).
//!
//! The crash model is "operations before the crash point took effect,
//! nothing after it did", which is what checks the ordering of temp writes,
//! fsyncs and renames. (Losing unsynced writes is the later simulated file
//! system's job.)

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::fs::{DirLock, File, FileSystem, OpenMode};

/// Counters and switches shared by a [`FaultFs`] and the files it opened.
#[derive(Debug)]
pub struct Faults {
    /// `File::sync_data` calls that succeeded.
    pub file_syncs: AtomicU64,
    /// `sync_dir` calls that succeeded.
    pub dir_syncs: AtomicU64,
    /// Mutating operations attempted (writes, set_len, syncs, creates,
    /// renames, removals, links, mkdirs).
    pub mutations: AtomicU64,
    /// Mutations allowed before the simulated crash (`u64::MAX`: never).
    pub crash_after: AtomicU64,
    /// Every `sync_data` / `sync_dir` fails while set.
    pub fail_sync: AtomicBool,
    /// Every `write_at` fails while set.
    pub fail_write: AtomicBool,
    /// Each `sync_data` sleeps this many microseconds first (a slow disk).
    pub sync_delay_us: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            file_syncs: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            mutations: AtomicU64::new(0),
            crash_after: AtomicU64::new(u64::MAX),
            fail_sync: AtomicBool::new(false),
            fail_write: AtomicBool::new(false),
            sync_delay_us: AtomicU64::new(0),
        }
    }
}

impl Faults {
    fn mutate(&self, what: &str) -> io::Result<()> {
        let n = self.mutations.fetch_add(1, Ordering::SeqCst);
        if n >= self.crash_after.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!("injected crash before {what}")));
        }
        Ok(())
    }

    fn sync(&self, what: &str) -> io::Result<()> {
        self.mutate(what)?;
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other(format!("injected {what} failure")));
        }
        Ok(())
    }
}

/// Wraps another file system with [`Faults`].
#[derive(Debug, Clone)]
pub struct FaultFs {
    inner: Arc<dyn FileSystem>,
    pub faults: Arc<Faults>,
}

impl FaultFs {
    pub fn new(inner: Arc<dyn FileSystem>) -> FaultFs {
        FaultFs {
            inner,
            faults: Arc::new(Faults::default()),
        }
    }

    /// The same wrapper as a shareable trait object.
    pub fn shared(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn File>,
    faults: Arc<Faults>,
}

impl File for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.faults.mutate("write")?;
        if self.faults.fail_write.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        self.inner.write_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.mutate("set_len")?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.sync("fdatasync")?;
        let d = self.faults.sync_delay_us.load(Ordering::Relaxed);
        if d > 0 {
            std::thread::sleep(Duration::from_micros(d));
        }
        self.inner.sync_data()?;
        self.faults.file_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl FileSystem for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        if mode == OpenMode::Create {
            self.faults.mutate("create")?;
        }
        Ok(Arc::new(FaultFile {
            inner: self.inner.open(path, mode)?,
            faults: self.faults.clone(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate("mkdir")?;
        self.inner.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.mutate("rename")?;
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate("remove")?;
        self.inner.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate("rmdir")?;
        self.inner.remove_dir_all(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.mutate("link")?;
        self.inner.hard_link(from, to)
    }

    fn exists(&self, path: &Path) -> io::Result<Option<bool>> {
        self.inner.exists(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.sync("directory fsync")?;
        self.inner.sync_dir(path)?;
        self.faults.dir_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        self.inner.lock_dir(dir)
    }

    fn canonical(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.canonical(path)
    }
}
