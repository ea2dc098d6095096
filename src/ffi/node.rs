//! `raft_node_t`: braft's `Node` — one replica of one group.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::boundary::{bytes_arg, code, fail, ffi_boundary, opt_str_arg, owned_c_string, str_arg};
use super::fsm::{raft_fsm_vtable_t, CStateMachine};
use super::handles::{self, c_handle, Kind};
use super::options::{raft_node_options_t, to_node_options};
use super::server::raft_server_t;
use super::status::{raft_done_fn, with_c_status};
use crate::node::done::CDoneFn;
use crate::node::errno::{self, Status};
use crate::node::{Done, Node, Task};

/// Opaque node handle: a typed id, never an address. Every function refuses
/// a NULL, freed, foreign or wrongly typed handle with EINVAL (ids are never
/// reused, so a freed handle never names a later node).
pub struct raft_node_t {
    _private: [u8; 0],
}

/// A proposal (braft's `Task`).
///
/// Ownership: `data` is copied by `raft_node_apply` (taken without a copy
/// by `raft_node_apply_owned`); `done_ctx` is borrowed until `done` runs.
#[repr(C)]
pub struct raft_task_t {
    pub data: *const u8,
    pub len: usize,
    /// Runs exactly once: with status 0 after the entry is applied on this
    /// node (after `on_apply` passed it), or with the error. May be NULL.
    pub done: raft_done_fn,
    pub done_ctx: *mut c_void,
    /// Fail with EPERM unless the current term is this one; -1 = any term.
    pub expected_term: i64,
}

c_handle!(raft_node_t, Node, Kind::Node, "raft_node_t", NODES);

fn node_from(node: *const raft_node_t) -> Result<Arc<Node>, Status> {
    handles::lookup(node)
}

/// A C done callback as a runtime `Done` (its ctx becomes the tag the
/// iterator shows).
pub(crate) fn c_done(done: raft_done_fn, ctx: *mut c_void) -> Option<Done> {
    // A plain done (no allocation): the callback and its context.
    Some(Done::with_c_fn(ctx as usize, run_c_done, done?))
}

/// Runs the C callback `f` (kept by [`c_done`]) with `ctx`.
fn run_c_done(f: CDoneFn, ctx: usize, status: Status) {
    // SAFETY: the user registered `f` with this signature; `ctx` is theirs
    // and valid until this one call; the status lives for the call.
    with_c_status(&status, |st| unsafe { f(ctx as *mut c_void, st) });
}

/// Creates a node of `group` with peer id `peer_id` ("ip:port:idx", host
/// names allowed) on `server`; the port must be the server's. Returns NULL
/// on error (`raft_last_error`).
///
/// Ownership: the strings are copied; `server` is borrowed and must outlive
/// the node. Release the node with `raft_node_free`.
#[no_mangle]
pub extern "C" fn raft_node_new(
    server: *mut raft_server_t,
    group: *const c_char,
    peer_id: *const c_char,
) -> *mut raft_node_t {
    ffi_boundary!(std::ptr::null_mut(), {
        let created = (|| {
            let server = handles::lookup(server)?;
            // SAFETY: NULL or valid C strings for this call.
            let (group, peer) = unsafe { (str_arg(group, "group")?, str_arg(peer_id, "peer_id")?) };
            Node::new(&server, group, peer)
        })();
        match created {
            Ok(node) => handles::register(Arc::new(node)),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// braft `init`: opens the storage, recovers and starts the node. Returns 0,
/// or EINVAL (bad options, peer ids, URIs), EIO (storage, corruption), ...
///
/// Ownership: `opts` and `vtable` are copied. `user_ctx` is borrowed and
/// passed to every callback until `on_shutdown` has returned.
#[no_mangle]
pub extern "C" fn raft_node_init(
    node: *mut raft_node_t,
    opts: *const raft_node_options_t,
    vtable: *const raft_fsm_vtable_t,
    user_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let node = node_from(node)?;
            if opts.is_null() || vtable.is_null() {
                return Err(Status::new(errno::EINVAL, "NULL options or vtable"));
            }
            // SAFETY: non-NULL; the caller passes initialised structs valid for the call.
            let (opts, vtable) = unsafe { (&*opts, *vtable) };
            // SAFETY: forwarded: the option strings are valid for the call.
            let options = unsafe { to_node_options(opts) }?;
            let sm = CStateMachine::new(vtable, user_ctx)?;
            node.init(options, Box::new(sm))
        })
    })
}

/// braft `apply`: proposes `task->data`. Returns 0 when the task was taken:
/// its `done` then runs exactly once (maybe before this returns, maybe on
/// another thread), with 0 once applied or with the error (EPERM not leader
/// or term mismatch, EBUSY transferring, RAFT_ENODESHUTDOWN, ...). Returns
/// EINVAL without running `done` for a NULL/freed node or task.
///
/// Ownership: `task` and its data are borrowed for the call (data copied).
#[no_mangle]
pub extern "C" fn raft_node_apply(node: *mut raft_node_t, task: *const raft_task_t) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let node = node_from(node)?;
            if task.is_null() {
                return Err(Status::new(errno::EINVAL, "NULL raft_task_t"));
            }
            // SAFETY: non-NULL; the caller's task is valid for the call.
            let task = unsafe { &*task };
            // SAFETY: `data` points to `len` readable bytes (or len is 0).
            let data = unsafe { bytes_arg(task.data, task.len, "task.data") }?;
            node.apply(Task {
                data: bytes::Bytes::copy_from_slice(data),
                done: c_done(task.done, task.done_ctx),
                expected_term: task.expected_term,
            });
            Ok(())
        })
    })
}

/// Releases bytes handed to `raft_node_apply_owned`: `data` and `len` are
/// the task's, `ctx` the `free_ctx` given with them.
pub type raft_free_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, data: *mut u8, len: usize)>;

/// Task bytes the library owns until it drops its last reference, then
/// gives back through the user's free function.
struct OwnedData {
    data: *mut u8,
    len: usize,
    free: unsafe extern "C" fn(ctx: *mut c_void, data: *mut u8, len: usize),
    ctx: usize,
}

// SAFETY: the caller handed the bytes over (`raft_node_apply_owned`): nothing
// else writes them until `free` runs, and the caller allows `free` on any
// thread; reading them from several threads is what shared bytes allow.
unsafe impl Send for OwnedData {}

impl AsRef<[u8]> for OwnedData {
    fn as_ref(&self) -> &[u8] {
        if self.data.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: `data` points to `len` readable bytes the library owns
        // until `free` runs in `drop`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for OwnedData {
    fn drop(&mut self) {
        // SAFETY: the user's function with this signature, called once, with
        // the pointer, length and context they gave.
        unsafe { (self.free)(self.ctx as *mut c_void, self.data, self.len) };
    }
}

/// `raft_node_apply` without copying the data: the library takes
/// `task->data` and calls `free_data(free_ctx, data, len)` exactly once,
/// when it no longer needs the bytes (the entry was written, sent and
/// applied and has left the log cache; or the task was refused). It may
/// run on any library thread, before or after `done`, even before this
/// returns; it must not call back into the library. Returns 0 when the
/// task was taken: the bytes are the library's until `free_data` and must
/// not change; `done` runs exactly once, as with `raft_node_apply`. A
/// non-zero return (EINVAL: a NULL, freed or foreign node, a NULL task or
/// `free_data`, NULL data with a non-zero length) leaves the bytes the
/// caller's: neither `done` nor `free_data` runs.
///
/// Ownership: `task` is borrowed for the call; on 0, `task->data` passes to
/// the library until `free_data` runs; `free_ctx` is borrowed until then,
/// `done_ctx` until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_apply_owned(
    node: *mut raft_node_t,
    task: *const raft_task_t,
    free_data: raft_free_fn,
    free_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let node = node_from(node)?;
            if task.is_null() {
                return Err(Status::new(errno::EINVAL, "NULL raft_task_t"));
            }
            let free = free_data.ok_or_else(|| Status::new(errno::EINVAL, "NULL free_data"))?;
            // SAFETY: non-NULL; the caller's task is valid for the call.
            let task = unsafe { &*task };
            if task.data.is_null() && task.len > 0 {
                return Err(Status::new(errno::EINVAL, "task.data is NULL"));
            }
            let data = bytes::Bytes::from_owner(OwnedData {
                data: task.data.cast_mut(),
                len: task.len,
                free,
                ctx: free_ctx as usize,
            });
            node.apply(Task {
                data,
                done: c_done(task.done, task.done_ctx),
                expected_term: task.expected_term,
            });
            Ok(())
        })
    })
}

/// braft `shutdown`: stops the node; `done` (may be NULL) runs once it has
/// stopped (after `on_shutdown`). Calling it again, from any thread and any
/// number of times, is harmless: every call's `done` runs once the node is
/// down, before `raft_node_join` returns. A shutdown done may call back in
/// (as any done); `raft_node_join` of this node returns EBUSY there. Returns
/// 0, or EINVAL for a NULL, freed or foreign handle (`done` then never runs).
///
/// Ownership: `node` is borrowed; `done_ctx` is borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_shutdown(
    node: *mut raft_node_t,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            node_from(node)?.shutdown(c_done(done, done_ctx));
            Ok(())
        })
    })
}

/// braft `join`: blocks until a requested shutdown has finished: the node's
/// threads stopped, `on_shutdown` and every shutdown done ran. Returns 0;
/// EINVAL when shutdown was not requested, or for a NULL, freed or foreign
/// handle; EBUSY, at once, where waiting would never end: from one of the
/// node's own callbacks or dones (its FSM thread, its shutdown dones) and
/// from inside a log callback. Any other thread may join, also several at
/// once (a method handler's IO thread is held while it waits).
///
/// Ownership: `node` is borrowed.
#[no_mangle]
pub extern "C" fn raft_node_join(node: *mut raft_node_t) -> i32 {
    ffi_boundary!(errno::EPANIC, { code(|| node_from(node)?.join()) })
}

/// Releases the handle. A node still running is shut down first and waited
/// for as `raft_node_join` does (also after earlier `raft_node_shutdown`
/// calls): once this returns, no callback or done of the node runs any more
/// and `user_ctx` may be freed. Where join would return EBUSY (the node's
/// own callbacks and dones, a log callback) it does not wait: the node stops
/// after the callback returns, and `user_ctx` must live until `on_shutdown`. NULL is ignored; a freed, foreign or wrongly typed handle is
/// ignored too and `raft_last_error` says EINVAL.
///
/// Ownership: consumes `node`.
#[no_mangle]
pub extern "C" fn raft_node_free(node: *mut raft_node_t) {
    ffi_boundary!((), { handles::free(node, |node| node.shutdown_and_wait()) })
}

/// True when this node is the leader.
///
/// Ownership: `node` is borrowed (a handle from `raft_node_new`).
#[no_mangle]
pub extern "C" fn raft_node_is_leader(node: *const raft_node_t) -> bool {
    ffi_boundary!(false, {
        node_from(node).map(|n| n.is_leader()).unwrap_or(false)
    })
}

/// The current term as last seen (0 for a bad handle).
///
/// Ownership: `node` is borrowed (a handle from `raft_node_new`).
#[no_mangle]
pub extern "C" fn raft_node_term(node: *const raft_node_t) -> i64 {
    ffi_boundary!(0, { node_from(node).map(|n| n.term() as i64).unwrap_or(0) })
}

/// The leader's peer id, or NULL when none is known (or a bad handle).
///
/// Ownership: the caller frees the string with `raft_string_free`.
#[no_mangle]
pub extern "C" fn raft_node_leader_id(node: *const raft_node_t) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        match node_from(node) {
            Ok(n) => n
                .leader_id()
                .map_or(std::ptr::null_mut(), |l| owned_c_string(&l)),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// braft `list_peers` (leader only): writes "p1,p2,..." of the voters to
/// `*out`. Returns 0, EPERM on a non-leader, EINVAL.
///
/// Ownership: on success the caller frees `*out` with `raft_string_free`.
#[no_mangle]
pub extern "C" fn raft_node_list_peers(node: *mut raft_node_t, out: *mut *mut c_char) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            if out.is_null() {
                return Err(Status::new(errno::EINVAL, "NULL out pointer"));
            }
            let peers = node_from(node)?.list_peers()?;
            // SAFETY: `out` is non-NULL and points to the caller's char *.
            unsafe { out.write(owned_c_string(&peers.join(","))) };
            Ok(())
        })
    })
}

/// Membership changes run asynchronously and report through `done`; the
/// return value is 0 once the request was taken (EINVAL for a bad handle
/// or NULL string, in which case `done` does not run).
fn change(
    node: *mut raft_node_t,
    text: *const c_char,
    name: &str,
    done: raft_done_fn,
    ctx: *mut c_void,
    op: impl FnOnce(&Node, &str, Done),
) -> i32 {
    code(|| {
        let node = node_from(node)?;
        // SAFETY: `text` is NULL or a valid C string for this call.
        let text = unsafe { str_arg(text, name) }?;
        let done = c_done(done, ctx).unwrap_or_else(|| Done::new(|_| {}));
        op(&node, text, done);
        Ok(())
    })
}

/// braft `add_peer`: adds `peer` as a voter (after it catches up).
///
/// Ownership: `peer` is copied; `done_ctx` borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_add_peer(
    node: *mut raft_node_t,
    peer: *const c_char,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        change(node, peer, "peer", done, done_ctx, Node::add_peer)
    })
}

/// braft `remove_peer`: removes a voter or learner.
///
/// Ownership: `peer` is copied; `done_ctx` borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_remove_peer(
    node: *mut raft_node_t,
    peer: *const c_char,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        change(node, peer, "peer", done, done_ctx, Node::remove_peer)
    })
}

/// Adds a non-voting learner (beyond braft); promote it with `raft_node_add_peer`.
///
/// Ownership: `peer` is copied; `done_ctx` borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_add_learner(
    node: *mut raft_node_t,
    peer: *const c_char,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        change(node, peer, "peer", done, done_ctx, Node::add_learner)
    })
}

/// braft `change_peers`: the voters become `conf` ("p1,p2,..."), through
/// joint consensus when more than one voter changes.
///
/// Ownership: `conf` is copied; `done_ctx` borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_change_peers(
    node: *mut raft_node_t,
    conf: *const c_char,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        change(node, conf, "conf", done, done_ctx, Node::change_peers)
    })
}

/// braft `reset_peers`: unsafe recovery of a group that lost its quorum;
/// this node adopts `conf` without consensus. Returns 0 or an error.
///
/// Ownership: `conf` is borrowed for the call.
#[no_mangle]
pub extern "C" fn raft_node_reset_peers(node: *mut raft_node_t, conf: *const c_char) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let node = node_from(node)?;
            // SAFETY: `conf` is NULL or a valid C string for this call.
            node.reset_peers(unsafe { str_arg(conf, "conf") }?)
        })
    })
}

/// braft `transfer_leadership_to`: hands leadership to `peer` (NULL, "" or
/// "0.0.0.0:0": the most up-to-date voter). Returns 0 when the transfer
/// started; EPERM when not leader; EINVAL for an unknown peer; EBUSY.
///
/// Ownership: `peer` is borrowed for the call.
#[no_mangle]
pub extern "C" fn raft_node_transfer_leadership_to(
    node: *mut raft_node_t,
    peer: *const c_char,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            let node = node_from(node)?;
            // SAFETY: `peer` is NULL or a valid C string for this call.
            let peer = unsafe { opt_str_arg(peer, "peer") }?;
            node.transfer_leadership_to(Some(peer))
        })
    })
}

/// braft `snapshot`: saves a snapshot now; `done` (may be NULL) reports it.
///
/// Ownership: `done_ctx` is borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_snapshot(
    node: *mut raft_node_t,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            node_from(node)?.snapshot(c_done(done, done_ctx));
            Ok(())
        })
    })
}

/// braft `vote`: starts an election now (this node must be a voter).
///
/// Ownership: `node` is borrowed (a handle from `raft_node_new`).
#[no_mangle]
pub extern "C" fn raft_node_vote(node: *mut raft_node_t) -> i32 {
    ffi_boundary!(errno::EPANIC, { code(|| node_from(node)?.vote()) })
}

/// ReadIndex (beyond braft): `done` runs with 0 once this node has applied
/// everything committed when the read was issued; reading the local state
/// machine inside `done` is then linearizable. Works on followers too
/// (confirmed through the leader). Returns 0 when taken.
///
/// Ownership: `done_ctx` is borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_read_index(
    node: *mut raft_node_t,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        submit_read(node, done, done_ctx, "read_index", Node::read_index)
    })
}

/// A read under the leader lease (beyond braft): on a leader whose lease
/// holds (`enable_leader_lease`), `done` runs with 0 once this node has
/// applied everything committed when the read was issued, without a round
/// trip to the followers; otherwise it is `raft_node_read_index`. Reading
/// the local state machine inside `done` is linearizable. Returns 0 when
/// taken.
///
/// Ownership: `done_ctx` is borrowed until `done` runs.
#[no_mangle]
pub extern "C" fn raft_node_lease_read(
    node: *mut raft_node_t,
    done: raft_done_fn,
    done_ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        submit_read(node, done, done_ctx, "lease_read", Node::lease_read)
    })
}

/// Starts a read through `read` with the C done (shared by the read calls).
fn submit_read(
    node: *mut raft_node_t,
    done: raft_done_fn,
    done_ctx: *mut c_void,
    what: &str,
    read: fn(&Node, Done),
) -> i32 {
    code(|| {
        let node = node_from(node)?;
        let done = c_done(done, done_ctx)
            .ok_or_else(|| Status::new(errno::EINVAL, format!("NULL done for {what}")))?;
        read(&node, done);
        Ok(())
    })
}

/// braft `is_leader_lease_valid`: true on a leader whose lease holds
/// (requires `enable_leader_lease`) and whose state machine has applied
/// every entry it committed; a local read right after it is then
/// linearizable. Under load the second condition often fails: prefer
/// `raft_node_lease_read`, which waits for the apply instead.
///
/// Ownership: `node` is borrowed (a handle from `raft_node_new`).
#[no_mangle]
pub extern "C" fn raft_node_is_leader_lease_valid(node: *const raft_node_t) -> bool {
    ffi_boundary!(false, {
        node_from(node)
            .map(|n| n.is_leader_lease_valid())
            .unwrap_or(false)
    })
}

/// braft `get_status` as one JSON object (state, term, leader, indexes,
/// configuration, per-peer replication). NULL on error (`raft_last_error`):
/// EINVAL (bad handle, not initialised), EBUSY while `raft_node_init` has
/// not returned or when called from a log callback on the node's own
/// driver thread (the driver answers this query), RAFT_ENODESHUTDOWN, or
/// RAFT_ERAFTTIMEDOUT after 30 s without an answer. Queries that wait for
/// the driver the same way (list_peers, transfer_leadership_to, vote,
/// reset_peers) fail the same way.
///
/// Ownership: the caller frees the string with `raft_string_free`.
#[no_mangle]
pub extern "C" fn raft_node_status_json(node: *mut raft_node_t) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        match node_from(node).and_then(|n| n.status()) {
            Ok(status) => owned_c_string(&status.to_json()),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}
