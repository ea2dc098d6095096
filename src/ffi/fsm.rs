//! `raft_fsm_vtable_t`: the user's state machine as C function pointers,
//! bridged to the runtime's `StateMachine` trait. Every callback runs on the
//! node's FSM thread, one at a time, in log order (braft's contract).

use std::ffi::{c_char, c_void, CString};

use super::iterator::{raft_iterator_t, CIterator};
use super::snapshot::{
    raft_snapshot_done_t, raft_snapshot_reader_t, raft_snapshot_writer_t, CSnapshotDone,
    CSnapshotReader,
};
use super::status::{raft_status_t, with_c_status};
use crate::node::errno::{self, Status};
use crate::node::{Iter, SnapshotReaderRef, SnapshotSaveDone, SnapshotWriterRef, StateMachine};
use crate::proto::Configuration;

/// The state machine callbacks. Only `on_apply` is required; a NULL entry
/// gets braft's default (`on_snapshot_save` fails the snapshot,
/// `on_snapshot_load` fails the load, the rest do nothing).
///
/// Threads: a node's callbacks and dones run in order, one at a time, on
/// one of the process's shared FSM threads (`raft_global_set_threads`), or
/// on a thread of the node's own (`raft_node_options_t.dedicated_fsm_thread`).
/// A shared thread runs one node's queued callbacks, then another node's:
/// a callback that blocks (a slow disk, a lock, a wait for another node)
/// holds up the nodes queued behind it on that thread, and a process whose
/// every shared FSM thread is blocked applies nothing on any node (braft's
/// rule for its bthreads). Keep callbacks short, hand long work to a thread
/// of your own, or give such a node a dedicated FSM thread. In particular,
/// a wait for another node's shutdown (`raft_node_join` or `raft_node_free`
/// of another node) from a callback needs a free shared FSM thread for that
/// node's last callbacks.
///
/// Calling back in: every callback, and every done the node runs (tasks,
/// reads, membership changes, snapshots: all on the node's FSM thread, as
/// is a shutdown done), may call any library function on any node and gets
/// an answer promptly (the library's tests bound each call to 1 s), never a
/// hang. Calls that would wait for the calling thread itself are refused
/// at once instead: on this node, `raft_node_join` returns EBUSY and
/// `raft_node_free` releases the handle and shuts the node down without
/// waiting (the node's later callbacks still run; keep `user_ctx` until
/// `on_shutdown`). Queries (status, list_peers, transfer, vote, reset_peers)
/// are answered by the node's driver, which never waits for this thread.
/// After `raft_node_free` (from anywhere) the handle is invalid, so
/// callbacks still running get EINVAL for it. A callback should not block
/// for long: the node applies nothing meanwhile.
///
/// Ownership: the table is copied by `raft_node_init`. `ctx` (the
/// `user_ctx` given there) is borrowed until `on_shutdown` has returned.
/// Pointer arguments are valid only during the call unless said otherwise.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct raft_fsm_vtable_t {
    /// Apply committed entries: `for (; raft_iterator_valid(it); raft_iterator_next(it)) {...}`.
    /// One call sees at most `apply_batch` entries (`raft_node_options_t`).
    pub on_apply: Option<unsafe extern "C" fn(ctx: *mut c_void, it: *mut raft_iterator_t)>,
    /// The node stopped; no callback follows. `raft_node_join` of this node
    /// returns EBUSY here; queries return RAFT_ENODESHUTDOWN.
    pub on_shutdown: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Write the state into files under `raft_snapshot_writer_path(writer)`,
    /// register each with `raft_snapshot_writer_add_file`, then call
    /// `raft_snapshot_done_run(done, 0, NULL)` exactly once (from any thread,
    /// now or later). `writer` stays valid until then.
    pub on_snapshot_save: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            writer: *mut raft_snapshot_writer_t,
            done: *mut raft_snapshot_done_t,
        ),
    >,
    /// Replace the state with the snapshot in `raft_snapshot_reader_path(reader)`.
    /// Return 0 on success.
    pub on_snapshot_load: Option<
        unsafe extern "C" fn(ctx: *mut c_void, reader: *const raft_snapshot_reader_t) -> i32,
    >,
    /// This node leads `term`; its first entry of the term is applied.
    pub on_leader_start: Option<unsafe extern "C" fn(ctx: *mut c_void, term: i64)>,
    pub on_leader_stop:
        Option<unsafe extern "C" fn(ctx: *mut c_void, status: *const raft_status_t)>,
    /// The node stopped working (disk or state machine error).
    pub on_error: Option<unsafe extern "C" fn(ctx: *mut c_void, status: *const raft_status_t)>,
    /// A configuration committed: voters and learners as "p1,p2,...".
    pub on_configuration_committed: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            voters: *const c_char,
            learners: *const c_char,
            index: i64,
        ),
    >,
    pub on_start_following:
        Option<unsafe extern "C" fn(ctx: *mut c_void, leader: *const c_char, term: i64)>,
    pub on_stop_following:
        Option<unsafe extern "C" fn(ctx: *mut c_void, leader: *const c_char, term: i64)>,
}

/// A C state machine: the copied vtable and the user's context.
pub(crate) struct CStateMachine {
    vtable: raft_fsm_vtable_t,
    ctx: usize,
}

impl CStateMachine {
    pub(crate) fn new(
        vtable: raft_fsm_vtable_t,
        ctx: *mut c_void,
    ) -> Result<CStateMachine, Status> {
        if vtable.on_apply.is_none() {
            return Err(Status::new(
                errno::EINVAL,
                "raft_fsm_vtable_t.on_apply is required",
            ));
        }
        Ok(CStateMachine {
            vtable,
            ctx: ctx as usize,
        })
    }

    fn ctx(&self) -> *mut c_void {
        self.ctx as *mut c_void
    }
}

fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

// SAFETY (every `unsafe` call below): the function pointers come from the
// user's vtable with these exact signatures; `ctx` is the user's context,
// valid until on_shutdown returns; every pointer passed lives for the call.
impl StateMachine for CStateMachine {
    fn on_apply(&mut self, it: &mut Iter<'_>) {
        let mut citer = CIterator::new(it);
        if let Some(f) = self.vtable.on_apply {
            // SAFETY: see the impl comment; `citer` outlives the call.
            unsafe { f(self.ctx(), (&mut citer as *mut CIterator).cast()) };
        }
    }

    fn on_shutdown(&mut self) {
        if let Some(f) = self.vtable.on_shutdown {
            // SAFETY: see the impl comment.
            unsafe { f(self.ctx()) };
        }
    }

    fn on_snapshot_save(&mut self, writer: SnapshotWriterRef, done: SnapshotSaveDone) {
        let Some(f) = self.vtable.on_snapshot_save else {
            return done(Err(Status::new(
                errno::EINVAL,
                "on_snapshot_save is not implemented by this state machine",
            )));
        };
        let (writer_ptr, done_ptr) = CSnapshotDone::create(writer, done);
        // SAFETY: see the impl comment; both pointers stay valid until the
        // user runs `done`, which frees them.
        unsafe { f(self.ctx(), writer_ptr, done_ptr) };
    }

    fn on_snapshot_load(&mut self, reader: &SnapshotReaderRef) -> Result<(), Status> {
        let Some(f) = self.vtable.on_snapshot_load else {
            return Err(Status::new(
                errno::EINVAL,
                "on_snapshot_load is not implemented by this state machine",
            ));
        };
        let creader = CSnapshotReader::new(reader);
        // SAFETY: see the impl comment; `creader` outlives the call.
        let code = unsafe { f(self.ctx(), (&creader as *const CSnapshotReader).cast()) };
        if code == 0 {
            Ok(())
        } else {
            Err(Status::new(
                code,
                format!("on_snapshot_load returned {code}"),
            ))
        }
    }

    fn on_leader_start(&mut self, term: u64) {
        if let Some(f) = self.vtable.on_leader_start {
            // SAFETY: see the impl comment.
            unsafe { f(self.ctx(), term as i64) };
        }
    }

    fn on_leader_stop(&mut self, status: &Status) {
        if let Some(f) = self.vtable.on_leader_stop {
            // SAFETY: see the impl comment; the status view lives for the call.
            with_c_status(status, |st| unsafe { f(self.ctx(), st) });
        }
    }

    fn on_error(&mut self, status: &Status) {
        if let Some(f) = self.vtable.on_error {
            // SAFETY: see the impl comment.
            with_c_status(status, |st| unsafe { f(self.ctx(), st) });
        }
    }

    fn on_configuration_committed(&mut self, conf: &Configuration, index: u64) {
        if let Some(f) = self.vtable.on_configuration_committed {
            let voters = c_text(&conf.voters.join(","));
            let learners = c_text(&conf.learners.join(","));
            // SAFETY: see the impl comment.
            unsafe { f(self.ctx(), voters.as_ptr(), learners.as_ptr(), index as i64) };
        }
    }

    fn on_start_following(&mut self, leader: &str, term: u64) {
        if let Some(f) = self.vtable.on_start_following {
            let leader = c_text(leader);
            // SAFETY: see the impl comment.
            unsafe { f(self.ctx(), leader.as_ptr(), term as i64) };
        }
    }

    fn on_stop_following(&mut self, leader: &str, term: u64) {
        if let Some(f) = self.vtable.on_stop_following {
            let leader = c_text(leader);
            // SAFETY: see the impl comment.
            unsafe { f(self.ctx(), leader.as_ptr(), term as i64) };
        }
    }
}
