//! `raft_server_t`: braft's `add_service` — one port for every node of the
//! process and for the user's own methods (`raft_request_t`).

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::boundary::{
    bytes_arg, code, fail, fail_with, ffi_boundary, opt_str_arg, owned_c_string, str_arg,
};
use super::deadlines::RequestDeadlines;
use super::handles::{self, c_handle, Kind};
use crate::node::errno::{self, Status};
use crate::node::RaftServer;
use crate::transport::{CallInfo, Request, Responder};

/// Opaque server handle: a typed id, never an address (see `raft_node_t`).
pub struct raft_server_t {
    _private: [u8; 0],
}

/// Opaque handle of one incoming user request, a typed id (see
/// `raft_node_t`); answer it exactly once. Once answered or timed out, every
/// function refuses it with EINVAL.
pub struct raft_request_t {
    _private: [u8; 0],
}

/// A user method handler: called on an IO thread; must not block. Answer
/// `req` with `raft_request_reply` / `raft_request_reply_error`, now or later
/// from any thread (e.g. from a task's done callback after `on_apply`),
/// within the method's timeout (default 30 s), after which the library
/// answers ETIMEDOUT itself. Every library function may be called from it
/// and returns promptly; the blocking ones (`raft_client_call`,
/// `raft_node_join`, `raft_node_free` of a running node) hold this IO
/// thread while they wait.
pub type raft_method_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, req: *mut raft_request_t)>;

c_handle!(
    raft_server_t,
    RaftServer,
    Kind::Server,
    "raft_server_t",
    SERVERS
);

/// A request until it is answered.
pub(crate) struct PendingRequest {
    request: Request,
    /// The group as a C string, made on the first `raft_request_group`.
    group: OnceLock<CString>,
    /// brpc's log id and the request's attachment (baidu_std calls).
    info: CallInfo,
    /// One lock for what answering takes: the FSM thread that answers
    /// touches one more cache line of a request the transport thread made.
    answer: Mutex<Answer>,
}

/// What answering a request takes.
struct Answer {
    /// `None` once answered.
    responder: Option<Responder>,
    /// Sent with a successful answer over baidu_std.
    reply_attachment: bytes::Bytes,
}

impl PendingRequest {
    fn answer(&self) -> std::sync::MutexGuard<'_, Answer> {
        // Single assignments and takes cannot leave it half-updated.
        self.answer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

c_handle!(
    raft_request_t,
    PendingRequest,
    Kind::Request,
    "raft_request_t (unknown, answered or timed out)",
    REQUESTS
);

/// The server behind a handle, or why not.
fn server_from(server: *const raft_server_t) -> Result<Arc<RaftServer>, Status> {
    handles::lookup(server)
}

fn request_from(req: *const raft_request_t) -> Result<Arc<PendingRequest>, Status> {
    handles::lookup(req)
}

/// Starts a server listening on `addr` ("ip:port" or "host:port"; port 0
/// picks a free port, see `raft_server_port`). Returns NULL on error
/// (`raft_last_error` says why). The port speaks rraft's protocol, brpc's
/// baidu_std (user methods, see `raft_server_add_method`, and braft's
/// `CliService` for the server's nodes, so braft's `braft_cli` and route
/// table work unchanged) and HTTP GET (`/raft_stat`, `/metrics`).
///
/// Ownership: `addr` is borrowed for the call. The returned handle is the
/// caller's; release it with `raft_server_free`.
#[no_mangle]
pub extern "C" fn raft_server_start(addr: *const c_char) -> *mut raft_server_t {
    ffi_boundary!(std::ptr::null_mut(), {
        super::logging::ensure_logger();
        // SAFETY: `addr` is NULL or a valid C string for this call.
        let started = unsafe { str_arg(addr, "addr") }.and_then(RaftServer::start);
        match started {
            Ok(server) => handles::register(server),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// The port the server listens on (0 for a bad handle).
///
/// Ownership: `server` is borrowed.
#[no_mangle]
pub extern "C" fn raft_server_port(server: *const raft_server_t) -> i32 {
    ffi_boundary!(0, {
        match server_from(server) {
            Ok(s) => s.port() as i32,
            Err(status) => {
                fail(status);
                0
            }
        }
    })
}

/// How long a request may wait for its answer unless the method says
/// otherwise (`raft_server_add_method_with_timeout`): 30 s.
pub const RAFT_METHOD_TIMEOUT_MS_DEFAULT: i32 = 30_000;

/// Registers a user method served on the server's port (braft: a service
/// sharing the port), with the default answer timeout
/// (`RAFT_METHOD_TIMEOUT_MS_DEFAULT`, 30 s). Returns 0; EEXIST for a
/// duplicate name; EINVAL for a NULL handler, a bad handle, or a name
/// starting with "raft.".
///
/// The method is callable by `raft_client_t` and by any brpc client over
/// brpc's baidu_std protocol (same port). A baidu_std request for service
/// `package.Service` and method `m` runs the method registered as
/// `package.Service.m`, or else `Service.m` (so either name may be
/// registered); the request and response bodies are the user's bytes
/// (e.g. protobuf), uncompressed. `raft_request_log_id` and
/// `raft_request_attachment` give brpc's log id and request attachment,
/// `raft_request_set_reply_attachment` the response's attachment. An
/// error answer (`raft_request_reply_error`) reaches a brpc client as
/// `error_code` = `code` and `error_text` = `message`, with
/// " [leader: <leader_hint>]" appended when a hint is given; code 0 (and
/// the library's internal errors) become brpc's EINTERNAL (2001), and a
/// stopping server answers brpc's ELOGOFF (2003). A name no method has
/// gets brpc's ENOSERVICE (1001) or, when the service has other methods,
/// ENOMETHOD (1002); a compressed body gets EREQUEST (1003).
///
/// Ownership: `server` is borrowed; `name` is copied. `ctx` is borrowed
/// and passed to every call of `handler`; keep it valid until the server
/// is stopped.
#[no_mangle]
pub extern "C" fn raft_server_add_method(
    server: *mut raft_server_t,
    name: *const c_char,
    handler: raft_method_fn,
    ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        raft_server_add_method_with_timeout(
            server,
            name,
            handler,
            ctx,
            RAFT_METHOD_TIMEOUT_MS_DEFAULT,
        )
    })
}

/// Like `raft_server_add_method`, with the time a request may wait for its
/// answer: a request not answered within `timeout_ms` (> 0) is answered by
/// the library with ETIMEDOUT ("the method handler did not answer in time"),
/// its connection's slot is freed, and its handle becomes invalid (a late
/// `raft_request_reply` returns EINVAL; the bytes from `raft_request_data`
/// must no longer be read). EINVAL for `timeout_ms` <= 0.
///
/// Ownership: as `raft_server_add_method`.
#[no_mangle]
pub extern "C" fn raft_server_add_method_with_timeout(
    server: *mut raft_server_t,
    name: *const c_char,
    handler: raft_method_fn,
    ctx: *mut c_void,
    timeout_ms: i32,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let result = (|| {
            let server = server_from(server)?;
            // SAFETY: `name` is NULL or a valid C string for this call.
            let name = unsafe { str_arg(name, "name") }?;
            let handler =
                handler.ok_or_else(|| Status::new(errno::EINVAL, "NULL method handler"))?;
            if timeout_ms <= 0 {
                return Err(Status::new(
                    errno::EINVAL,
                    format!("method timeout_ms must be positive ({timeout_ms})"),
                ));
            }
            let timeout = Duration::from_millis(timeout_ms as u64);
            let ctx = ctx as usize;
            let method = name.to_string();
            let deadlines = RequestDeadlines::start(
                timeout,
                move |key| time_out(key as *const raft_request_t, &method, timeout),
                |key| handles::is_live(key as *const raft_request_t),
            );
            server.add_method(
                name,
                Arc::new(move |request: Request, responder: Responder| {
                    let info = CallInfo {
                        protocol: responder.protocol(),
                        log_id: responder.log_id(),
                        attachment: responder.request_attachment().clone(),
                    };
                    let pending = Arc::new(PendingRequest {
                        request,
                        group: OnceLock::new(),
                        info,
                        answer: Mutex::new(Answer {
                            responder: Some(responder),
                            reply_attachment: bytes::Bytes::new(),
                        }),
                    });
                    let handle: *mut raft_request_t = handles::register(pending);
                    deadlines.push(handle as usize);
                    // SAFETY: the handler was registered with this signature;
                    // `ctx` is the user's, valid while the server runs.
                    unsafe { handler(ctx as *mut c_void, handle) };
                }),
            )
        })();
        match result {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// Answers a request still unanswered after its method's timeout.
fn time_out(req: *const raft_request_t, method: &str, timeout: Duration) {
    let Ok(pending) = handles::release(req) else {
        return; // answered in time
    };
    let responder = pending.answer().responder.take();
    if let Some(responder) = responder {
        log::warn!(
            "method {method}: the handler did not answer within {} ms; the caller gets ETIMEDOUT",
            timeout.as_millis()
        );
        responder.reply_error(
            errno::ETIMEDOUT,
            &format!(
                "the method handler did not answer in time ({} ms)",
                timeout.as_millis()
            ),
            "",
        );
    }
}

/// The request's payload; `*len` receives its length.
///
/// Ownership: the bytes belong to the request; valid until it is answered
/// or times out.
/// `len` is the caller's (may be NULL).
#[no_mangle]
pub extern "C" fn raft_request_data(req: *const raft_request_t, len: *mut usize) -> *const u8 {
    ffi_boundary!(std::ptr::null(), {
        request_bytes(req, len, |p| &p.request.payload)
    })
}

/// Bytes `pick` chooses of a request, their length in `*len`.
fn request_bytes(
    req: *const raft_request_t,
    len: *mut usize,
    pick: impl FnOnce(&PendingRequest) -> &bytes::Bytes,
) -> *const u8 {
    let pending = match request_from(req) {
        Ok(p) => p,
        Err(status) => {
            fail(status);
            return std::ptr::null();
        }
    };
    let data = pick(&pending);
    if !len.is_null() {
        // SAFETY: `len` is non-NULL and points to a size_t the caller owns.
        unsafe { len.write(data.len()) };
    }
    // The registry keeps the request alive until it is answered, so the
    // pointer stays valid after `pending` (one reference) is dropped.
    data.as_ptr()
}

/// The group id the caller addressed (may be empty; always empty for a
/// baidu_std request, which names no group).
///
/// Ownership: belongs to the request; valid until it is answered or times
/// out.
#[no_mangle]
pub extern "C" fn raft_request_group(req: *const raft_request_t) -> *const c_char {
    ffi_boundary!(std::ptr::null(), {
        match request_from(req) {
            Ok(p) => p
                .group
                .get_or_init(|| CString::new(p.request.group.as_str()).unwrap_or_default())
                .as_ptr(),
            Err(status) => {
                fail(status);
                std::ptr::null()
            }
        }
    })
}

/// brpc's `log_id` of a baidu_std request; 0 when none was sent (always 0
/// over rraft's own protocol). 0 for a bad handle too (`raft_last_error`
/// says EINVAL).
///
/// Ownership: `req` is borrowed.
#[no_mangle]
pub extern "C" fn raft_request_log_id(req: *const raft_request_t) -> i64 {
    ffi_boundary!(0, {
        match request_from(req) {
            Ok(p) => p.info.log_id,
            Err(status) => {
                fail(status);
                0
            }
        }
    })
}

/// The attachment of a baidu_std request (brpc's `request_attachment`);
/// `*len` receives its length (0, and a non-NULL pointer or NULL, when
/// there is none, as over rraft's own protocol). NULL for a bad handle.
///
/// Ownership: the bytes belong to the request; valid until it is answered
/// or times out. `len` is the caller's (may be NULL).
#[no_mangle]
pub extern "C" fn raft_request_attachment(
    req: *const raft_request_t,
    len: *mut usize,
) -> *const u8 {
    ffi_boundary!(std::ptr::null(), {
        request_bytes(req, len, |p| &p.info.attachment)
    })
}

/// Sets the attachment sent with the successful answer of a baidu_std
/// request (brpc's `response_attachment`; `len` bytes of `data`, copied,
/// replacing any earlier one). rraft's own protocol has no attachments:
/// there it is not sent. An error answer carries none. Returns 0; EINVAL
/// for a bad or answered handle.
///
/// Ownership: `req` is borrowed (still to be answered); `data` is borrowed.
#[no_mangle]
pub extern "C" fn raft_request_set_reply_attachment(
    req: *mut raft_request_t,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let pending = match request_from(req) {
            Ok(p) => p,
            Err(status) => return fail(status),
        };
        // SAFETY: `data` points to `len` readable bytes (or len is 0).
        let bytes = match unsafe { bytes_arg(data, len, "data") } {
            Ok(b) => bytes::Bytes::copy_from_slice(b),
            Err(status) => return fail(status),
        };
        pending.answer().reply_attachment = bytes;
        0
    })
}

/// Releases `req` and hands its responder and reply attachment to `reply`.
fn answer(req: *mut raft_request_t, reply: impl FnOnce(Responder, bytes::Bytes)) -> i32 {
    let pending = match handles::release(req) {
        Ok(p) => p,
        Err(status) => return fail(status),
    };
    let taken = {
        let mut a = pending.answer();
        let attachment = std::mem::take(&mut a.reply_attachment);
        a.responder.take().map(|r| (r, attachment))
    };
    match taken {
        Some((responder, attachment)) => {
            reply(responder, attachment);
            0
        }
        None => fail_with(errno::EINVAL, "raft_request_t was already answered"),
    }
}

/// Answers `req` with success and `len` bytes of `data` (copied). Returns 0.
///
/// The answer is written to the caller's connection by the calling thread.
/// From a node's callback or done (its FSM thread) it is written when that
/// batch of callbacks and dones ends, together with the batch's other
/// answers on the same connection (one write each), or earlier when the
/// thread enters a blocking library call (`raft_client_call`, a query,
/// `raft_node_join`). The same holds for `raft_request_reply_error`.
///
/// Ownership: consumes `req` (invalid afterwards); `data` is borrowed.
#[no_mangle]
pub extern "C" fn raft_request_reply(req: *mut raft_request_t, data: *const u8, len: usize) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        // SAFETY: `data` points to `len` readable bytes (or len is 0).
        let bytes = match unsafe { bytes_arg(data, len, "data") } {
            Ok(b) => b,
            Err(status) => return fail(status),
        };
        // Encoded into the connection's buffer (the copy) before this returns.
        answer(req, |r, attachment| r.reply_slices(bytes, &attachment))
    })
}

/// Answers `req` with an error: `code` (e.g. EPERM for "not the leader"),
/// a message, and the leader's peer id when known so the client can follow
/// it (NULL allowed for both strings). Returns 0.
///
/// Ownership: consumes `req`; the strings are borrowed.
#[no_mangle]
pub extern "C" fn raft_request_reply_error(
    req: *mut raft_request_t,
    code: i32,
    message: *const c_char,
    leader_hint: *const c_char,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        // SAFETY: both are NULL or valid C strings for this call.
        let (message, hint) = unsafe {
            (
                opt_str_arg(message, "message"),
                opt_str_arg(leader_hint, "leader_hint"),
            )
        };
        let (message, hint) = match (message, hint) {
            (Ok(m), Ok(h)) => (m.to_string(), h.to_string()),
            (Err(status), _) | (_, Err(status)) => return fail(status),
        };
        let code = if code == 0 { errno::EINTERNAL } else { code };
        answer(req, |r, _| r.reply_error(code, &message, &hint))
    })
}

/// The status of every node of the server in one JSON array: one object per
/// node, as `raft_node_status_json` gives it, ordered by group and peer id.
/// A node whose status cannot be read now (initialising, shutting down, or
/// asked from a log callback on its own driver thread) is left out. The
/// call asks each node's driver in turn: with 1,000 nodes it takes tens of
/// milliseconds. NULL on error (`raft_last_error`): EINVAL for a bad
/// handle.
///
/// Ownership: `server` is borrowed; the caller frees the string with
/// `raft_string_free`.
#[no_mangle]
pub extern "C" fn raft_server_status_json(server: *const raft_server_t) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        match server_from(server) {
            Ok(server) => {
                let statuses = server.node_statuses();
                match serde_json::to_string(&statuses) {
                    Ok(json) => owned_c_string(&json),
                    Err(e) => {
                        fail_with(errno::EINTERNAL, format!("status does not serialise: {e}"));
                        std::ptr::null_mut()
                    }
                }
            }
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// Stops listening and closes every connection. Shut nodes down first.
/// Returns 0 (also when already stopped).
///
/// Ownership: `server` is borrowed; free it with `raft_server_free`.
#[no_mangle]
pub extern "C" fn raft_server_stop(server: *mut raft_server_t) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        code(|| {
            server_from(server)?.stop();
            Ok(())
        })
    })
}

/// Stops the server if needed and releases the handle. NULL is ignored; a
/// freed, foreign or wrongly typed handle is ignored too and
/// `raft_last_error` says EINVAL.
///
/// Ownership: consumes `server`.
#[no_mangle]
pub extern "C" fn raft_server_free(server: *mut raft_server_t) {
    ffi_boundary!((), { handles::free(server, |s| s.stop()) })
}
