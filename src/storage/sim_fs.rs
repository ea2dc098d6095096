//! A simulated file system for crash tests: everything in memory, with the
//! durability rules of a POSIX disk and a crash that applies them.
//!
//! - A file's data is durable up to its last `sync_data`; writes and length
//!   changes after it are pending.
//! - A directory's entries (creations, renames, removals, links) are durable
//!   up to its last `sync_dir`; a file or directory whose entry was never
//!   made durable is lost in a crash, with everything under it.
//! - `crash(seed)` keeps what was synced plus a random subset of the pending
//!   writes, possibly tearing one of them at a 512 B or 4 KiB boundary, then
//!   lets the file system be used again (for recovery). Handles opened before
//!   the crash stop working.
//! - `crash_after(n)` makes every operation after the n-th mutation fail, as
//!   if the process had died there: a test runs a workload up to each crash
//!   point in turn.
//!
//! The root directory (`/`) always exists.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::fs::{DirLock, File, FileSystem, OpenMode};
use crate::core::rng::Rng;

type Ino = u64;
const ROOT: Ino = 0;

/// A pending change to a file's data, in the order it was made.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
enum Inode {
    File {
        data: Vec<u8>,
        synced: Vec<u8>,
        pending: Vec<Pending>,
    },
    Dir {
        live: BTreeMap<String, Ino>,
        durable: BTreeMap<String, Ino>,
    },
}

#[derive(Debug)]
struct State {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    /// Bumped by each crash; handles of an older epoch fail.
    epoch: u64,
    mutations: u64,
    crash_after: u64,
    /// One line per mutation, for diagnosing a failing crash point.
    journal: Vec<String>,
    /// Locked directories (by inode) and the token of the lock holding each.
    /// A crash empties it: the process that held the locks is gone.
    locks: HashMap<Ino, u64>,
    next_lock: u64,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

impl Default for SimFs {
    fn default() -> SimFs {
        SimFs::new()
    }
}

impl SimFs {
    pub fn new() -> SimFs {
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode::Dir {
                live: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        SimFs {
            state: Arc::new(Mutex::new(State {
                inodes,
                next_ino: 1,
                epoch: 0,
                mutations: 0,
                crash_after: u64::MAX,
                journal: Vec::new(),
                locks: HashMap::new(),
                next_lock: 1,
            })),
        }
    }

    /// The same file system as a shareable trait object.
    pub fn shared(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutations made so far (each write, set_len, sync, create, rename,
    /// removal, link and mkdir counts one).
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// The mutations so far, one line each (`<n> <operation> <path>`).
    pub fn journal(&self) -> Vec<String> {
        self.lock().journal.clone()
    }

    /// Every operation after the `n`-th mutation (counted from the start)
    /// fails, as if the process died there.
    pub fn crash_after(&self, n: u64) {
        self.lock().crash_after = n;
    }

    /// Simulates power loss: keeps synced data and durable directory entries,
    /// plus a random subset of pending writes (one maybe torn), chosen by
    /// `seed`. Afterwards the file system works again.
    pub fn crash(&self, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut st = self.lock();
        st.epoch += 1;
        st.crash_after = u64::MAX;
        st.locks.clear();
        // Directory entries: only the durable ones survive.
        let reachable = st.reachable_durable();
        st.inodes.retain(|ino, _| reachable.contains(ino));
        let mut inos: Vec<Ino> = st.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            match st.inodes.get_mut(&ino) {
                Some(Inode::Dir { live, durable }) => *live = durable.clone(),
                Some(Inode::File {
                    data,
                    synced,
                    pending,
                }) => {
                    let mut kept = synced.clone();
                    let ops = std::mem::take(pending);
                    let torn = if ops.is_empty() {
                        usize::MAX
                    } else {
                        rng.range(0, ops.len() as u64 * 2) as usize
                    };
                    for (i, op) in ops.into_iter().enumerate() {
                        if !rng.chance(1, 2) {
                            continue;
                        }
                        match op {
                            Pending::SetLen(len) => kept.resize(len as usize, 0),
                            Pending::Write { offset, mut data } => {
                                if i == torn {
                                    let unit = if rng.chance(1, 2) { 512 } else { 4096 };
                                    let end_abs = offset as usize + data.len();
                                    let cut = (end_abs / unit) * unit;
                                    data.truncate(cut.saturating_sub(offset as usize));
                                }
                                write_into(&mut kept, offset, &data);
                            }
                        }
                    }
                    *data = kept.clone();
                    *synced = kept;
                }
                None => {}
            }
        }
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset as usize..end].copy_from_slice(data);
}

fn components(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::Prefix(_) => {
                return Err(io::Error::other("path prefixes are not simulated"))
            }
        }
    }
    Ok(out)
}

impl State {
    fn mutate(&mut self, what: impl FnOnce() -> String) -> io::Result<()> {
        if self.mutations >= self.crash_after {
            return Err(crashed());
        }
        self.mutations += 1;
        let line = format!("{} {}", self.mutations, what());
        self.journal.push(line);
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.mutations >= self.crash_after {
            return Err(crashed());
        }
        Ok(())
    }

    fn children(&self, dir: Ino) -> Option<&BTreeMap<String, Ino>> {
        match self.inodes.get(&dir) {
            Some(Inode::Dir { live, .. }) => Some(live),
            _ => None,
        }
    }

    fn children_mut(&mut self, dir: Ino) -> Option<&mut BTreeMap<String, Ino>> {
        match self.inodes.get_mut(&dir) {
            Some(Inode::Dir { live, .. }) => Some(live),
            _ => None,
        }
    }

    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        let mut ino = ROOT;
        for name in components(path)? {
            ino = *self
                .children(ino)
                .and_then(|c| c.get(&name))
                .ok_or_else(|| not_found(path))?;
        }
        Ok(ino)
    }

    /// The parent directory's inode and the last name of `path`.
    fn parent_of(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut names = components(path)?;
        let name = names
            .pop()
            .ok_or_else(|| io::Error::other("the root has no parent"))?;
        let mut ino = ROOT;
        for n in names {
            ino = *self
                .children(ino)
                .and_then(|c| c.get(&n))
                .ok_or_else(|| not_found(path))?;
        }
        if self.children(ino).is_none() {
            return Err(io::Error::other(format!(
                "{}: parent is not a directory",
                path.display()
            )));
        }
        Ok((ino, name))
    }

    fn new_inode(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    fn reachable_durable(&self) -> std::collections::HashSet<Ino> {
        let mut seen = std::collections::HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Inode::Dir { durable, .. }) = self.inodes.get(&ino) {
                for child in durable.values() {
                    if self.inodes.contains_key(child) && seen.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        seen
    }

    /// Inodes no live or durable entry names any more (and no handle could
    /// reach after a crash) are kept: open handles may still use them.
    fn file_mut(&mut self, ino: Ino) -> io::Result<(&mut Vec<u8>, &mut Vec<Pending>)> {
        match self.inodes.get_mut(&ino) {
            Some(Inode::File { data, pending, .. }) => Ok((data, pending)),
            _ => Err(io::Error::other("not a file")),
        }
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: Ino,
    epoch: u64,
    writable: bool,
}

impl SimFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.fs.lock();
        if st.epoch != self.epoch {
            return Err(io::Error::other("file handle from before a crash"));
        }
        Ok(st)
    }

    /// The state, locked for a change of this file's data (`what` names it
    /// for the crash-point counter); refused on a read-only handle.
    fn mutation(&self, what: impl FnOnce() -> String) -> io::Result<MutexGuard<'_, State>> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let mut st = self.state()?;
        st.mutate(what)?;
        Ok(st)
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.state()?;
        st.check_alive()?;
        let Some(Inode::File { data, .. }) = st.inodes.get(&self.ino) else {
            return Err(io::Error::other("not a file"));
        };
        if offset as usize >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - offset as usize);
        buf[..n].copy_from_slice(&data[offset as usize..offset as usize + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let ino = self.ino;
        let mut st = self.mutation(|| format!("write ino {ino} at {offset} len {}", buf.len()))?;
        let (data, pending) = st.file_mut(self.ino)?;
        write_into(data, offset, buf);
        pending.push(Pending::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let st = self.state()?;
        st.check_alive()?;
        match st.inodes.get(&self.ino) {
            Some(Inode::File { data, .. }) => Ok(data.len() as u64),
            _ => Err(io::Error::other("not a file")),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let ino = self.ino;
        let mut st = self.mutation(|| format!("set_len ino {ino} to {len}"))?;
        let (data, pending) = st.file_mut(self.ino)?;
        data.resize(len as usize, 0);
        pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state()?;
        let ino = self.ino;
        st.mutate(|| format!("sync_data ino {ino}"))?;
        match st.inodes.get_mut(&self.ino) {
            Some(Inode::File {
                data,
                synced,
                pending,
            }) => {
                *synced = data.clone();
                pending.clear();
                Ok(())
            }
            _ => Err(io::Error::other("not a file")),
        }
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let mut st = self.lock();
        let ino = match mode {
            OpenMode::Read | OpenMode::ReadWrite => {
                st.check_alive()?;
                let ino = st.lookup(path)?;
                if !matches!(st.inodes.get(&ino), Some(Inode::File { .. })) {
                    return Err(io::Error::other(format!(
                        "{}: is a directory",
                        path.display()
                    )));
                }
                ino
            }
            OpenMode::Create => {
                st.mutate(|| format!("create {}", path.display()))?;
                let (parent, name) = st.parent_of(path)?;
                let existing = st.children(parent).and_then(|c| c.get(&name)).copied();
                match existing {
                    Some(ino) if matches!(st.inodes.get(&ino), Some(Inode::File { .. })) => {
                        let (data, pending) = st.file_mut(ino)?;
                        data.clear();
                        pending.push(Pending::SetLen(0));
                        ino
                    }
                    Some(_) => {
                        return Err(io::Error::other(format!(
                            "{}: is a directory",
                            path.display()
                        )))
                    }
                    None => {
                        let ino = st.new_inode(Inode::File {
                            data: Vec::new(),
                            synced: Vec::new(),
                            pending: Vec::new(),
                        });
                        st.children_mut(parent)
                            .expect("parent is a directory")
                            .insert(name, ino);
                        ino
                    }
                }
            }
        };
        let epoch = st.epoch;
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            epoch,
            writable: mode != OpenMode::Read,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.check_alive()?;
        let mut ino = ROOT;
        for name in components(path)? {
            let next = st.children(ino).and_then(|c| c.get(&name)).copied();
            ino = match next {
                Some(child) if st.children(child).is_some() => child,
                Some(_) => {
                    return Err(io::Error::other(format!(
                        "{}: a file is in the way",
                        path.display()
                    )))
                }
                None => {
                    st.mutate(|| format!("mkdir {name} in {}", path.display()))?;
                    let child = st.new_inode(Inode::Dir {
                        live: BTreeMap::new(),
                        durable: BTreeMap::new(),
                    });
                    st.children_mut(ino)
                        .expect("a directory")
                        .insert(name, child);
                    child
                }
            };
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        st.check_alive()?;
        let ino = st.lookup(path)?;
        st.children(ino)
            .map(|c| c.keys().cloned().collect())
            .ok_or_else(|| io::Error::other(format!("{}: not a directory", path.display())))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutate(|| format!("rename {} -> {}", from.display(), to.display()))?;
        let (from_dir, from_name) = st.parent_of(from)?;
        let (to_dir, to_name) = st.parent_of(to)?;
        let ino = st
            .children_mut(from_dir)
            .and_then(|c| c.remove(&from_name))
            .ok_or_else(|| not_found(from))?;
        st.children_mut(to_dir)
            .expect("a directory")
            .insert(to_name, ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutate(|| format!("remove {}", path.display()))?;
        let (dir, name) = st.parent_of(path)?;
        st.children_mut(dir)
            .and_then(|c| c.remove(&name))
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.remove_file(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutate(|| format!("link {} -> {}", from.display(), to.display()))?;
        let ino = st.lookup(from)?;
        let (dir, name) = st.parent_of(to)?;
        if st.children(dir).is_some_and(|c| c.contains_key(&name)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: exists", to.display()),
            ));
        }
        st.children_mut(dir).expect("a directory").insert(name, ino);
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<Option<bool>> {
        let st = self.lock();
        st.check_alive()?;
        Ok(st.lookup(path).ok().map(|ino| st.children(ino).is_some()))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.mutate(|| format!("sync_dir {}", path.display()))?;
        let ino = st.lookup(path)?;
        match st.inodes.get_mut(&ino) {
            Some(Inode::Dir { live, durable }) => {
                *durable = live.clone();
                Ok(())
            }
            _ => Err(io::Error::other(format!(
                "{}: not a directory",
                path.display()
            ))),
        }
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let mut st = self.lock();
        st.check_alive()?;
        let ino = st.lookup(dir)?;
        if st.children(ino).is_none() {
            return Err(io::Error::other(format!(
                "{}: not a directory",
                dir.display()
            )));
        }
        if st.locks.contains_key(&ino) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another user", dir.display()),
            ));
        }
        let token = st.next_lock;
        st.next_lock += 1;
        st.locks.insert(ino, token);
        Ok(DirLock::new(Box::new(SimLock {
            state: self.state.clone(),
            ino,
            token,
        })))
    }
}

/// A directory lock of a [`SimFs`]: dropping it releases the lock unless a
/// crash did already.
struct SimLock {
    state: Arc<Mutex<State>>,
    ino: Ino,
    token: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.locks.get(&self.ino) == Some(&self.token) {
            st.locks.remove(&self.ino);
        }
    }
}

/// Paths for tests: `/` joined with `parts`.
pub fn sim_path(parts: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/");
    p.extend(parts);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fs: &SimFs, path: &str, data: &[u8], sync: bool) {
        let f = fs.open(Path::new(path), OpenMode::Create).unwrap();
        f.write_at(data, 0).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
    }

    fn read(fs: &SimFs, path: &str) -> Option<Vec<u8>> {
        let f = fs.open(Path::new(path), OpenMode::Read).ok()?;
        let mut buf = vec![0; f.size().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        Some(buf)
    }

    #[test]
    fn a_file_whose_directory_entry_was_not_synced_is_lost() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        write(&fs, "/d/a", b"hello", true);
        fs.crash(1);
        assert_eq!(
            read(&fs, "/d/a"),
            None,
            "the entry of /d/a was never synced"
        );
        write(&fs, "/d/b", b"hello", true);
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.crash(2);
        assert_eq!(read(&fs, "/d/b").as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn synced_data_survives_and_unsynced_data_may_not() {
        let fs = SimFs::new();
        write(&fs, "/a", b"durable", true);
        fs.sync_dir(Path::new("/")).unwrap();
        let f = fs.open(Path::new("/a"), OpenMode::ReadWrite).unwrap();
        f.write_at(&[7u8; 8192], 7).unwrap();
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let copy = SimFs {
                state: Arc::new(Mutex::new(clone_state(&fs))),
            };
            copy.crash(seed);
            let data = read(&copy, "/a").unwrap();
            assert_eq!(&data[..7], b"durable");
            outcomes.insert(data.len());
        }
        assert!(outcomes.contains(&7), "the write may be lost");
        assert!(
            outcomes.contains(&(7 + 8192)),
            "the write may survive whole"
        );
        assert!(
            outcomes.iter().any(|&n| n != 7 && n != 7 + 8192),
            "the write may be torn: {outcomes:?}"
        );
    }

    #[test]
    fn renames_are_durable_only_after_the_directory_sync() {
        let fs = SimFs::new();
        write(&fs, "/tmp1", b"new", true);
        write(&fs, "/cur", b"old", true);
        fs.sync_dir(Path::new("/")).unwrap();
        fs.rename(Path::new("/tmp1"), Path::new("/cur")).unwrap();
        fs.crash(3);
        assert_eq!(read(&fs, "/cur").as_deref(), Some(&b"old"[..]));
        fs.rename(Path::new("/tmp1"), Path::new("/cur")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.crash(4);
        assert_eq!(read(&fs, "/cur").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn operations_after_the_crash_point_fail_and_old_handles_die() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/a"), OpenMode::Create).unwrap();
        fs.crash_after(fs.mutations() + 1);
        f.write_at(b"x", 0).unwrap();
        assert!(f.write_at(b"y", 1).is_err());
        assert!(fs.sync_dir(Path::new("/")).is_err());
        fs.crash(5);
        assert!(f.size().is_err(), "a handle from before the crash");
    }

    fn clone_state(fs: &SimFs) -> State {
        let st = fs.lock();
        let inodes = st
            .inodes
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Inode::File {
                        data,
                        synced,
                        pending,
                    } => Inode::File {
                        data: data.clone(),
                        synced: synced.clone(),
                        pending: pending.clone(),
                    },
                    Inode::Dir { live, durable } => Inode::Dir {
                        live: live.clone(),
                        durable: durable.clone(),
                    },
                };
                (*k, v)
            })
            .collect();
        State {
            inodes,
            next_ino: st.next_ino,
            epoch: st.epoch,
            mutations: st.mutations,
            crash_after: st.crash_after,
            journal: st.journal.clone(),
            locks: HashMap::new(),
            next_lock: st.next_lock,
        }
    }
}
