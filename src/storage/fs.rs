//! The file system seam: every byte the log, the meta store and the snapshot
//! store read or write goes through [`FileSystem`] and [`File`].
//!
//! The traits are narrow and object-safe on purpose: a simulated file system
//! (crash points, injected `EIO`, lost unsynced writes) only has to implement
//! these few calls. [`RealFs`] maps them onto `std::fs` with positional IO.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How [`FileSystem::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Create the file (truncating an existing one), read and write.
    Create,
}

impl OpenMode {
    /// The `std::fs` options that open a real file this way.
    pub fn std_options(self) -> std::fs::OpenOptions {
        let mut o = std::fs::OpenOptions::new();
        match self {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::Create => o.read(true).write(true).create(true).truncate(true),
        };
        o
    }
}

/// An open file. Positional IO only, so one handle can be shared between a
/// writer and readers without a seek position to fight over.
pub trait File: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at EOF).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset` (extending the file as needed).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the data written so far (and the length) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, failing with
    /// `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at offset {}", offset + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// Directory-level operations plus opening files.
pub trait FileSystem: Send + Sync + fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>>;
    /// Creates a directory and its missing parents (no error if it exists).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of a directory, in no order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Atomically renames a file or a directory (replacing a file `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Hard-links `to` to the existing file `from`.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `Some(is_dir)` if something exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<Option<bool>>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of the existing directory `dir`, held until
    /// the returned [`DirLock`] is dropped (and, on a real disk, released by
    /// the operating system when the process dies). Fails with
    /// [`io::ErrorKind::WouldBlock`] while anyone else holds it, including
    /// another lock taken in this process.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock>;
    /// A name for `path` that is the same for every path of the same
    /// directory (`std::fs::canonicalize` on a real disk). The default
    /// drops `.` components and resolves `..` lexically.
    fn canonical(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        Ok(lexical_normal(path))
    }
}

/// Name of the lock file [`RealFs::lock_dir`] creates in a directory.
pub const LOCK_FILE: &str = "raft_lock";

/// An exclusive hold on a directory (see [`FileSystem::lock_dir`]); dropping
/// it releases the lock.
pub struct DirLock {
    _held: Box<dyn Send + Sync>,
}

impl DirLock {
    /// A lock whose release is dropping `held`.
    pub fn new(held: Box<dyn Send + Sync>) -> DirLock {
        DirLock { _held: held }
    }
}

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// `path` with `.` dropped and `..` applied to the components before it.
pub fn lexical_normal(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Locks `dir/raft_lock` with `flock(LOCK_EX | LOCK_NB)`. The lock belongs
/// to the open file description: a second lock in the same process fails
/// as one from another process does, and closing the descriptor (or the
/// process dying) releases it.
pub fn flock_dir(dir: &Path) -> io::Result<DirLock> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| with_path(e, &path))?;
    loop {
        // SAFETY: `file` owns the descriptor for the whole call; flock only
        // takes an integer descriptor and flags and touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(DirLock::new(Box::new(file)));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another user", path.display()),
                ))
            }
            _ => return Err(with_path(e, &path)),
        }
    }
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl RealFs {
    /// A shareable handle, the form the stores take.
    pub fn shared() -> Arc<dyn FileSystem> {
        Arc::new(RealFs)
    }
}

#[derive(Debug)]
struct RealFile(std::fs::File);

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.0.write_all_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let f = mode
            .std_options()
            .open(path)
            .map_err(|e| with_path(e, path))?;
        Ok(Arc::new(RealFile(f)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path).map_err(|e| with_path(e, path))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for ent in std::fs::read_dir(path).map_err(|e| with_path(e, path))? {
            out.push(ent?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to).map_err(|e| with_path(e, from))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path).map_err(|e| with_path(e, path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path).map_err(|e| with_path(e, path))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to).map_err(|e| with_path(e, from))
    }

    fn exists(&self, path: &Path) -> io::Result<Option<bool>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(m.is_dir())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(with_path(e, path)),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let d = std::fs::File::open(path).map_err(|e| with_path(e, path))?;
        d.sync_all().map_err(|e| with_path(e, path))
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        flock_dir(dir)
    }

    fn canonical(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        std::fs::canonicalize(path).map_err(|e| with_path(e, path))
    }
}

/// Prefixes an IO error with the path it concerns.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Writes `data` to `dir/name` atomically: write `dir/name.tmp`, fsync it,
/// rename it over `dir/name`, fsync `dir`. A crash leaves the old or the new
/// content, never a mix.
pub fn write_atomic(fs: &dyn FileSystem, dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let f = fs.open(&tmp, OpenMode::Create)?;
    f.write_at(data, 0)?;
    f.sync_data()?;
    drop(f);
    fs.rename(&tmp, &dir.join(name))?;
    fs.sync_dir(dir)
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub fn read_whole(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<Vec<u8>>> {
    if fs.exists(path)?.is_none() {
        return Ok(None);
    }
    let f = fs.open(path, OpenMode::Read)?;
    let len = f.size()? as usize;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, 0)?;
    Ok(Some(buf))
}

/// Turns an IO error into the storage error the rest of rraft speaks.
pub(crate) fn io_err(what: impl fmt::Display, e: io::Error) -> crate::core::StorageError {
    crate::core::StorageError::Io(format!("{what}: {e}"))
}

/// Creates `path` and any missing parents, and makes the new directory
/// entries durable: the parent of each directory created is fsynced, so a
/// power loss cannot take a store's directory (and all it holds) away.
pub fn create_dir_durable(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = path;
    while fs.exists(at)?.is_none() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    fs.create_dir_all(path)?;
    for dir in missing.iter().rev() {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs.sync_dir(parent)?;
    }
    Ok(())
}
