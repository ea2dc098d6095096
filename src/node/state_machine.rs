//! The user's state machine as the runtime sees it (braft's `StateMachine`),
//! and the iterator over committed entries handed to `on_apply`.
//!
//! The FFI implements [`StateMachine`] over a C vtable; Rust users implement
//! it directly. Every method runs on the node's FSM caller thread, one at a
//! time, in log order.

use bytes::Bytes;

use super::done::Done;
use super::errno::{self, Status};
use crate::proto::{Configuration, Entry, EntryType};

/// A finished snapshot save hands the runtime this; see
/// [`StateMachine::on_snapshot_save`].
pub type SnapshotSaveDone = Box<dyn FnOnce(Result<(), Status>) + Send>;

pub trait StateMachine: Send {
    /// Applies committed entries. Walk them with `while it.valid() { ...; it.next() }`.
    /// Entries not consumed when this returns are a state machine error
    /// (braft's contract), unless `set_error_and_rollback` was called.
    fn on_apply(&mut self, it: &mut Iter<'_>);

    /// The node is shutting down; no callback follows.
    fn on_shutdown(&mut self) {}

    /// Save the state as of the last applied entry into `writer` (files under
    /// `writer.path()`, each registered with `add_file`), then call `done`
    /// exactly once — from this thread or later from another one, so a long
    /// save need not block applies. braft's default reports an error.
    fn on_snapshot_save(&mut self, writer: SnapshotWriterRef, done: SnapshotSaveDone) {
        drop(writer);
        done(Err(Status::new(
            errno::EINVAL,
            "on_snapshot_save is not implemented by this state machine",
        )));
    }

    /// Replace the state with the snapshot at `reader.path()`. braft's
    /// default fails.
    fn on_snapshot_load(&mut self, reader: &SnapshotReaderRef) -> Result<(), Status> {
        let _ = reader;
        Err(Status::new(
            errno::EINVAL,
            "on_snapshot_load is not implemented by this state machine",
        ))
    }

    /// This node became leader of `term` and its first entry of the term is applied.
    fn on_leader_start(&mut self, term: u64) {
        let _ = term;
    }

    /// This node stopped being leader.
    fn on_leader_stop(&mut self, status: &Status) {
        let _ = status;
    }

    /// The node hit an error it cannot recover from and stopped working.
    fn on_error(&mut self, status: &Status) {
        let _ = status;
    }

    /// A (non-joint) configuration was committed at `index`.
    fn on_configuration_committed(&mut self, conf: &Configuration, index: u64) {
        let _ = (conf, index);
    }

    fn on_start_following(&mut self, leader: &str, term: u64) {
        let _ = (leader, term);
    }

    fn on_stop_following(&mut self, leader: &str, term: u64) {
        let _ = (leader, term);
    }
}

/// Where the user writes a snapshot: a directory plus the files registered.
pub struct SnapshotWriterRef {
    path: std::path::PathBuf,
    index: u64,
    term: u64,
    writer: std::sync::Arc<std::sync::Mutex<Option<crate::storage::SnapshotWriter>>>,
}

impl SnapshotWriterRef {
    pub(crate) fn new(writer: crate::storage::SnapshotWriter) -> SnapshotWriterRef {
        SnapshotWriterRef {
            path: writer.path().to_path_buf(),
            index: writer.meta().last_index,
            term: writer.meta().last_term,
            writer: std::sync::Arc::new(std::sync::Mutex::new(Some(writer))),
        }
    }

    /// The writer, shared with the save's completion.
    pub(crate) fn slot(
        &self,
    ) -> std::sync::Arc<std::sync::Mutex<Option<crate::storage::SnapshotWriter>>> {
        self.writer.clone()
    }

    /// The directory to write files into.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Registers a file written under `path()` (its checksum is taken now).
    /// ENOENT when there is no such file, EINVAL for a name that leaves the
    /// directory, EIO when it cannot be read.
    pub fn add_file(&self, name: &str) -> Result<(), Status> {
        crate::storage::snapshot::check_file_name(name).map_err(|e| {
            Status::new(errno::EINVAL, super::storage_io::storage_status(e).message)
        })?;
        let mut slot = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let writer = slot
            .as_mut()
            .ok_or_else(|| Status::new(errno::EINVAL, "the snapshot was already finished"))?;
        writer.add_file(name).map(|_| ()).map_err(|e| {
            let status = super::storage_io::storage_status(e);
            // The file system's "not found" keeps its own code: the caller
            // named a file it did not write.
            if status.code == errno::EIO
                && status.message.starts_with("open snapshot file")
                && (status.message.contains("(os error 2)")
                    || status.message.contains("No such file")
                    || status.message.contains("not found"))
            {
                Status::new(
                    errno::ENOENT,
                    format!(
                        "{name} is not a file under the snapshot's path: {}",
                        status.message
                    ),
                )
            } else {
                status
            }
        })
    }

    /// Last log index and term the snapshot covers.
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn term(&self) -> u64 {
        self.term
    }
}

/// A published snapshot to load: a directory and its files.
pub struct SnapshotReaderRef {
    reader: crate::storage::SnapshotReader,
    names: Vec<String>,
}

impl SnapshotReaderRef {
    pub(crate) fn new(reader: crate::storage::SnapshotReader) -> SnapshotReaderRef {
        let names = reader.files().iter().map(|f| f.name.clone()).collect();
        SnapshotReaderRef { reader, names }
    }

    pub fn path(&self) -> &std::path::Path {
        self.reader.path()
    }

    /// The user files of the snapshot, relative to `path()`.
    pub fn files(&self) -> &[String] {
        &self.names
    }

    pub fn index(&self) -> u64 {
        self.reader.meta().last_index
    }

    pub fn term(&self) -> u64 {
        self.reader.meta().last_term
    }
}

/// The committed entries of one `on_apply` call. Only data entries are
/// shown: `valid()` skips no-ops (configuration entries never reach it).
pub struct Iter<'a> {
    entries: &'a [Entry],
    dones: &'a [Option<Done>],
    pos: usize,
    rollback: Option<(usize, Status)>,
}

impl<'a> Iter<'a> {
    pub(crate) fn new(entries: &'a [Entry], dones: &'a [Option<Done>]) -> Iter<'a> {
        let mut it = Iter {
            entries,
            dones,
            pos: 0,
            rollback: None,
        };
        it.skip_non_data();
        it
    }

    fn skip_non_data(&mut self) {
        while self.pos < self.entries.len() && self.entries[self.pos].kind() != EntryType::Data {
            self.pos += 1;
        }
    }

    /// True while there is an entry to apply and no error was raised.
    pub fn valid(&self) -> bool {
        self.rollback.is_none() && self.pos < self.entries.len()
    }

    /// Moves to the next data entry.
    pub fn next(&mut self) {
        if self.valid() {
            self.pos += 1;
            self.skip_non_data();
        }
    }

    fn current(&self) -> Option<&'a Entry> {
        if self.valid() {
            self.entries.get(self.pos)
        } else {
            None
        }
    }

    /// Log index of the current entry (0 when not valid).
    pub fn index(&self) -> u64 {
        self.current().map_or(0, |e| e.index)
    }

    pub fn term(&self) -> u64 {
        self.current().map_or(0, |e| e.term)
    }

    /// The current entry's payload (empty when not valid).
    pub fn data(&self) -> Bytes {
        self.current().map_or_else(Bytes::new, |e| e.data.clone())
    }

    /// The current entry's payload, borrowed for as long as the iterator's
    /// entries live (empty when not valid).
    pub fn data_slice(&self) -> &'a [u8] {
        self.current().map_or(&[], |e| &e.data[..])
    }

    /// The tag of the done attached when this node proposed the entry as
    /// leader in this term, or None. The runtime runs that done (with OK)
    /// once the iterator moves past the entry: the user never runs it.
    pub fn done_tag(&self) -> Option<usize> {
        if !self.valid() {
            return None;
        }
        self.dones
            .get(self.pos)
            .and_then(|d| d.as_ref())
            .map(Done::tag)
    }

    /// braft `set_error_and_rollback(ntail, st)`: stop applying; the current
    /// entry and `ntail` entries before it are not applied. The node stops
    /// with `status` (on_error follows).
    pub fn set_error_and_rollback(&mut self, ntail: usize, status: Status) {
        if self.rollback.is_none() {
            self.rollback = Some((ntail, status));
        }
    }

    /// Position reached: entries before it count as applied.
    pub(crate) fn finish(self) -> (usize, Option<(usize, Status)>) {
        (self.pos, self.rollback)
    }
}
