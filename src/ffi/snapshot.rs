//! Snapshot writer, reader and save-done handles for the state machine's
//! snapshot callbacks (braft's SnapshotWriter / SnapshotReader).

use std::ffi::{c_char, CString};

use super::boundary::{fail, ffi_boundary, opt_str_arg, str_arg};
use crate::node::errno::{self, Status};
use crate::node::{SnapshotReaderRef, SnapshotSaveDone, SnapshotWriterRef};

/// Where `on_snapshot_save` writes; valid until its done is run.
pub struct raft_snapshot_writer_t {
    _private: [u8; 0],
}

/// The completion of `on_snapshot_save`; run it exactly once with
/// `raft_snapshot_done_run`.
pub struct raft_snapshot_done_t {
    _private: [u8; 0],
}

/// The snapshot `on_snapshot_load` reads; valid during that call.
pub struct raft_snapshot_reader_t {
    _private: [u8; 0],
}

pub(crate) struct CSnapshotWriter {
    writer: SnapshotWriterRef,
    path: CString,
}

pub(crate) struct CSnapshotDone {
    done: SnapshotSaveDone,
    writer: *mut CSnapshotWriter,
}

impl CSnapshotDone {
    /// Heap handles for one save; both are freed by `raft_snapshot_done_run`.
    pub(crate) fn create(
        writer: SnapshotWriterRef,
        done: SnapshotSaveDone,
    ) -> (*mut raft_snapshot_writer_t, *mut raft_snapshot_done_t) {
        let path = CString::new(writer.path().to_string_lossy().into_owned()).unwrap_or_default();
        let writer = Box::into_raw(Box::new(CSnapshotWriter { writer, path }));
        let done = Box::into_raw(Box::new(CSnapshotDone { done, writer }));
        (writer.cast(), done.cast())
    }
}

pub(crate) struct CSnapshotReader {
    path: CString,
    names: Vec<CString>,
    index: u64,
    term: u64,
}

impl CSnapshotReader {
    pub(crate) fn new(reader: &SnapshotReaderRef) -> CSnapshotReader {
        CSnapshotReader {
            path: CString::new(reader.path().to_string_lossy().into_owned()).unwrap_or_default(),
            names: reader
                .files()
                .iter()
                .map(|n| CString::new(n.as_str()).unwrap_or_default())
                .collect(),
            index: reader.index(),
            term: reader.term(),
        }
    }
}

/// # Safety
/// `w` is NULL or a writer given to `on_snapshot_save` whose done has not run.
unsafe fn writer<'a>(w: *const raft_snapshot_writer_t) -> Option<&'a CSnapshotWriter> {
    // SAFETY: per the contract the pointer is a live CSnapshotWriter.
    unsafe { (w as *const CSnapshotWriter).as_ref() }
}

/// # Safety
/// `r` is NULL or the reader given to the `on_snapshot_load` call in progress.
unsafe fn reader<'a>(r: *const raft_snapshot_reader_t) -> Option<&'a CSnapshotReader> {
    // SAFETY: per the contract the pointer is a live CSnapshotReader.
    unsafe { (r as *const CSnapshotReader).as_ref() }
}

/// The directory to write snapshot files into (NULL for a NULL writer).
///
/// Ownership: the string belongs to the writer; valid until the done runs.
#[no_mangle]
pub extern "C" fn raft_snapshot_writer_path(w: *const raft_snapshot_writer_t) -> *const c_char {
    // SAFETY: `w` is a live writer (the documented contract).
    ffi_boundary!(std::ptr::null(), {
        unsafe { writer(w) }.map_or(std::ptr::null(), |w| w.path.as_ptr())
    })
}

/// Registers `name`, a file written directly under the writer's path, as
/// part of the snapshot (its checksum is computed now). Returns 0, EINVAL
/// (bad name), ENOENT (no such file) or EIO.
///
/// Ownership: `name` is borrowed for the call.
#[no_mangle]
pub extern "C" fn raft_snapshot_writer_add_file(
    w: *mut raft_snapshot_writer_t,
    name: *const c_char,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        // SAFETY: `w` is a live writer (the documented contract).
        let Some(w) = (unsafe { writer(w) }) else {
            return fail(Status::new(errno::EINVAL, "NULL raft_snapshot_writer_t"));
        };
        // SAFETY: `name` is a valid C string for this call.
        let result = unsafe { str_arg(name, "name") }.and_then(|name| w.writer.add_file(name));
        match result {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// Finishes `on_snapshot_save`: `code` 0 publishes the snapshot, anything
/// else abandons it with `message`. Call exactly once, from any thread.
///
/// Ownership: consumes `done` and frees its writer; both pointers are
/// invalid afterwards. `message` is borrowed (NULL allowed).
#[no_mangle]
pub extern "C" fn raft_snapshot_done_run(
    done: *mut raft_snapshot_done_t,
    code: i32,
    message: *const c_char,
) {
    ffi_boundary!((), {
        if done.is_null() {
            super::boundary::fail_with(errno::EINVAL, "NULL raft_snapshot_done_t");
            return;
        }
        // SAFETY: `done` came from CSnapshotDone::create and is run once (the contract).
        let done = unsafe { Box::from_raw(done as *mut CSnapshotDone) };
        // SAFETY: the writer was created with the done and is freed only here.
        drop(unsafe { Box::from_raw(done.writer) });
        // SAFETY: `message` is NULL or a valid C string for this call.
        let text = unsafe { opt_str_arg(message, "message") }.unwrap_or("");
        let result = if code == 0 {
            Ok(())
        } else {
            Err(Status::new(
                code,
                if text.is_empty() {
                    "on_snapshot_save failed".to_string()
                } else {
                    text.to_string()
                },
            ))
        };
        (done.done)(result);
    })
}

/// The directory of the snapshot to load.
///
/// Ownership: the string belongs to the reader; valid during `on_snapshot_load`.
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_path(r: *const raft_snapshot_reader_t) -> *const c_char {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(std::ptr::null(), {
        unsafe { reader(r) }.map_or(std::ptr::null(), |r| r.path.as_ptr())
    })
}

/// Number of files in the snapshot.
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_file_count(r: *const raft_snapshot_reader_t) -> usize {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(0, { unsafe { reader(r) }.map_or(0, |r| r.names.len()) })
}

/// Name of file `i` (relative to the path), or NULL when out of range.
///
/// Ownership: the string belongs to the reader; valid during `on_snapshot_load`.
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_file_name(
    r: *const raft_snapshot_reader_t,
    i: usize,
) -> *const c_char {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(std::ptr::null(), {
        unsafe { reader(r) }
            .and_then(|r| r.names.get(i))
            .map_or(std::ptr::null(), |n| n.as_ptr())
    })
}

/// Last log index the snapshot covers (0 for NULL).
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_index(r: *const raft_snapshot_reader_t) -> i64 {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(0, { unsafe { reader(r) }.map_or(0, |r| r.index as i64) })
}

/// Term of the last entry the snapshot covers (0 for NULL).
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_term(r: *const raft_snapshot_reader_t) -> i64 {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(0, { unsafe { reader(r) }.map_or(0, |r| r.term as i64) })
}
