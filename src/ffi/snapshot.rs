//! Snapshot writer, reader and save-done handles for the state machine's
//! snapshot callbacks (braft's SnapshotWriter / SnapshotReader).

use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex};

use super::boundary::{code, fail, ffi_boundary, opt_str_arg, str_arg};
use super::handles::{self, c_handle, Kind};
use crate::node::errno::{self, Status};
use crate::node::{SnapshotReaderRef, SnapshotSaveDone, SnapshotWriterRef};

/// Where `on_snapshot_save` writes; a handle valid until its done is run
/// (afterwards every call with it fails with EINVAL).
pub struct raft_snapshot_writer_t {
    _private: [u8; 0],
}

/// The completion of `on_snapshot_save`, a handle; run it exactly once with
/// `raft_snapshot_done_run` (a second run fails with EINVAL).
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

/// One save's completion: taken by the first `raft_snapshot_done_run`.
pub(crate) struct CSnapshotDone {
    done: Mutex<Option<SnapshotSaveDone>>,
    writer: usize,
}

c_handle!(
    raft_snapshot_writer_t,
    CSnapshotWriter,
    Kind::SnapshotWriter,
    "raft_snapshot_writer_t (unknown, or its save finished)",
    WRITERS
);

c_handle!(
    raft_snapshot_done_t,
    CSnapshotDone,
    Kind::SnapshotDone,
    "raft_snapshot_done_t (unknown, or already run)",
    DONES
);

impl CSnapshotDone {
    /// Handles for one save; `raft_snapshot_done_run` releases both.
    pub(crate) fn create(
        writer: SnapshotWriterRef,
        done: SnapshotSaveDone,
    ) -> (*mut raft_snapshot_writer_t, *mut raft_snapshot_done_t) {
        let path = CString::new(writer.path().to_string_lossy().into_owned()).unwrap_or_default();
        let writer: *mut raft_snapshot_writer_t =
            handles::register(Arc::new(CSnapshotWriter { writer, path }));
        let done = handles::register(Arc::new(CSnapshotDone {
            done: Mutex::new(Some(done)),
            writer: writer as usize,
        }));
        (writer, done)
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
/// `r` is NULL or the reader given to the `on_snapshot_load` call in progress.
unsafe fn reader<'a>(r: *const raft_snapshot_reader_t) -> Option<&'a CSnapshotReader> {
    // SAFETY: per the contract the pointer is a live CSnapshotReader.
    unsafe { (r as *const CSnapshotReader).as_ref() }
}

/// The directory to write snapshot files into; NULL (and EINVAL in
/// `raft_last_error`) for a NULL writer or one whose done has run.
///
/// Ownership: `w` is borrowed; the string belongs to the writer and stays
/// valid until the save's done runs.
#[no_mangle]
pub extern "C" fn raft_snapshot_writer_path(w: *const raft_snapshot_writer_t) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        match handles::lookup(w) {
            // The registry keeps the writer (and its path) until the done
            // runs, so the pointer outlives this reference.
            Ok(w) => w.path.as_ptr(),
            Err(status) => {
                fail(status);
                std::ptr::null()
            }
        }
    })
}

/// Registers `name`, a file written directly under the writer's path, as
/// part of the snapshot (its checksum is computed now). Returns 0, EINVAL
/// (bad name; NULL writer or one whose done has run), ENOENT (no such file)
/// or EIO.
///
/// Ownership: `w` and `name` are borrowed for the call.
#[no_mangle]
pub extern "C" fn raft_snapshot_writer_add_file(
    w: *mut raft_snapshot_writer_t,
    name: *const c_char,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let w = handles::lookup(w)?;
            // SAFETY: `name` is NULL or a valid C string for this call.
            w.writer.add_file(unsafe { str_arg(name, "name") }?)
        })
    })
}

/// Finishes `on_snapshot_save`: `code` 0 publishes the snapshot, anything
/// else abandons it with `message`. Call exactly once, from any thread.
/// Returns 0 once the outcome was handed over (a failure to publish is
/// reported to the snapshot's requester, not here); EINVAL for NULL, for a
/// done that has already run (a second call changes nothing) or any other
/// value that is no live done.
///
/// Ownership: consumes `done` and releases its writer; both handles are
/// invalid afterwards. `message` is borrowed (NULL allowed).
#[no_mangle]
pub extern "C" fn raft_snapshot_done_run(
    done: *mut raft_snapshot_done_t,
    code: i32,
    message: *const c_char,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let entry = match handles::release(done) {
            Ok(entry) => entry,
            Err(status) => return fail(status),
        };
        let _ = handles::release(entry.writer as *const raft_snapshot_writer_t);
        let Some(done) = entry.done.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return fail(Status::new(
                errno::EINVAL,
                "raft_snapshot_done_t was already run",
            ));
        };
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
        done(result);
        0
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
///
/// Ownership: `r` is the reader passed to `on_snapshot_load`, borrowed for that call.
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
///
/// Ownership: `r` is the reader passed to `on_snapshot_load`, borrowed for that call.
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_index(r: *const raft_snapshot_reader_t) -> i64 {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(0, { unsafe { reader(r) }.map_or(0, |r| r.index as i64) })
}

/// Term of the last entry the snapshot covers (0 for NULL).
///
/// Ownership: `r` is the reader passed to `on_snapshot_load`, borrowed for that call.
#[no_mangle]
pub extern "C" fn raft_snapshot_reader_term(r: *const raft_snapshot_reader_t) -> i64 {
    // SAFETY: `r` is the reader of the call in progress (the documented contract).
    ffi_boundary!(0, { unsafe { reader(r) }.map_or(0, |r| r.term as i64) })
}
