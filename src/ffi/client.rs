//! `raft_client_t`: finds and follows the leader of a group and calls a user
//! method on it (braft's route table + channel).

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{bytes_arg, fail, ffi_boundary, owned_c_string, str_arg};
use super::handles::{self, c_handle, Kind};
use super::status::{raft_status_t, with_c_status};
use crate::node::errno::{self, Status};
use crate::node::peer_id::parse_peer_list;
use crate::transport::{GroupClient, Protocol, RpcError};

/// Opaque client handle: a typed id, never an address (see `raft_node_t`).
pub struct raft_client_t {
    _private: [u8; 0],
}

/// Bytes handed to the caller.
///
/// Ownership: the caller releases them with `raft_buffer_free`.
#[repr(C)]
pub struct raft_buffer_t {
    pub data: *mut u8,
    pub len: usize,
}

/// Completion of `raft_client_call_async`: `status->code` 0 with the reply's
/// bytes, or the error. Everything is valid only during the call. It runs
/// on an IO thread: every library function may be called from it and
/// returns promptly, but a blocking one (`raft_client_call`,
/// `raft_node_join`) holds that thread while it waits.
pub type raft_client_done_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        status: *const raft_status_t,
        data: *const u8,
        len: usize,
    ),
>;

c_handle!(
    raft_client_t,
    GroupClient,
    Kind::Client,
    "raft_client_t",
    CLIENTS
);

fn client_from(client: *const raft_client_t) -> Result<Arc<GroupClient>, Status> {
    handles::lookup(client)
}

fn rpc_status(e: RpcError) -> Status {
    let mut text = e.to_string();
    if let Some(hint) = e.leader_hint() {
        text = format!("{text} (leader: {hint})");
    }
    Status::new(e.code(), text)
}

fn timeout_of(ms: i32) -> Result<Duration, Status> {
    if ms <= 0 {
        return Err(Status::new(
            errno::EINVAL,
            format!("timeout_ms must be positive ({ms})"),
        ));
    }
    Ok(Duration::from_millis(ms as u64))
}

/// Creates a client for `group` whose members are `conf` ("ip:port:idx,...").
/// Returns NULL on error (`raft_last_error`).
///
/// Ownership: the strings are copied; free the client with `raft_client_free`.
#[no_mangle]
pub extern "C" fn raft_client_new(group: *const c_char, conf: *const c_char) -> *mut raft_client_t {
    ffi_boundary!(std::ptr::null_mut(), {
        super::logging::ensure_logger();
        let created = (|| {
            // SAFETY: NULL or valid C strings for this call.
            let (group, conf) = unsafe { (str_arg(group, "group")?, str_arg(conf, "conf")?) };
            let peers = parse_peer_list(conf).map_err(|e| Status::new(errno::EINVAL, e.0))?;
            if peers.is_empty() {
                return Err(Status::new(errno::EINVAL, "conf lists no peer"));
            }
            let peers = peers.iter().map(ToString::to_string).collect();
            Ok(GroupClient::new(
                crate::node::runtime::handle(),
                group,
                peers,
            ))
        })();
        match created {
            Ok(client) => handles::register(Arc::new(client)),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// Calls `method` on the group's leader with `len` bytes of `request`,
/// following redirects and retrying other peers until `timeout_ms` passes.
/// On 0, `*reply` holds the answer. Blocks; do not call from a method handler.
///
/// At most once: a request is resent only when it surely did not arrive
/// (no connection, or a "not leader" answer). A timeout (ETIMEDOUT) or a
/// connection lost after sending (ECONNRESET) means the outcome is unknown:
/// the method may have run. `raft_client_set_idempotent` allows resending.
///
/// Ownership: `method` and `request` are borrowed; on success the caller
/// frees `reply` with `raft_buffer_free` (it is left empty on error).
#[no_mangle]
pub extern "C" fn raft_client_call(
    client: *mut raft_client_t,
    method: *const c_char,
    request: *const u8,
    len: usize,
    timeout_ms: i32,
    reply: *mut raft_buffer_t,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        match call_into(client, method, request, len, timeout_ms, reply, None) {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// What a baidu_std call carries beyond its bytes (brpc's `log_id` and
/// attachments); see `raft_client_call_with_extras`.
#[repr(C)]
pub struct raft_call_extras_t {
    /// brpc's log id of the request (0: none).
    pub log_id: i64,
    /// The request's attachment: `attachment_len` bytes (NULL when 0).
    pub attachment: *const u8,
    pub attachment_len: usize,
    /// Filled with the reply's attachment on success (empty otherwise).
    pub reply_attachment: raft_buffer_t,
}

/// `raft_client_call` with brpc's log id and attachments: `extras->log_id`
/// and `extras->attachment` go with the request, and on 0
/// `extras->reply_attachment` holds the reply's attachment. Only baidu_std
/// carries them (`raft_client_set_protocol`); over rraft's own protocol
/// they are not sent and the reply attachment stays empty.
///
/// Ownership: as `raft_client_call`; `extras` is the caller's and its
/// `attachment` is borrowed for the call; on success the caller frees
/// `extras->reply_attachment` with `raft_buffer_free`.
#[no_mangle]
pub extern "C" fn raft_client_call_with_extras(
    client: *mut raft_client_t,
    method: *const c_char,
    request: *const u8,
    len: usize,
    timeout_ms: i32,
    reply: *mut raft_buffer_t,
    extras: *mut raft_call_extras_t,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        if extras.is_null() {
            return fail(Status::new(errno::EINVAL, "NULL extras"));
        }
        // SAFETY: `extras` is non-NULL and the caller's for this call.
        let extras = unsafe { &mut *extras };
        extras.reply_attachment = buffer_of(&[]);
        match call_into(
            client,
            method,
            request,
            len,
            timeout_ms,
            reply,
            Some(extras),
        ) {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// The blocking call behind `raft_client_call` and
/// `raft_client_call_with_extras`.
fn call_into(
    client: *mut raft_client_t,
    method: *const c_char,
    request: *const u8,
    len: usize,
    timeout_ms: i32,
    reply: *mut raft_buffer_t,
    extras: Option<&mut raft_call_extras_t>,
) -> Result<(), Status> {
    let client = client_from(client)?;
    if reply.is_null() {
        return Err(Status::new(errno::EINVAL, "NULL reply buffer"));
    }
    // SAFETY: `reply` is non-NULL and the caller's.
    unsafe { reply.write(buffer_of(&[])) };
    // SAFETY: NULL or a valid C string / byte ranges for this call.
    let (method, payload) = unsafe {
        (
            str_arg(method, "method")?,
            bytes_arg(request, len, "request")?,
        )
    };
    let (log_id, attachment) = match &extras {
        Some(x) => (
            x.log_id,
            // SAFETY: `attachment` points to `attachment_len` readable bytes
            // (or the length is 0).
            bytes::Bytes::copy_from_slice(unsafe {
                bytes_arg(x.attachment, x.attachment_len, "attachment")?
            }),
        ),
        None => (0, bytes::Bytes::new()),
    };
    let timeout = timeout_of(timeout_ms)?;
    let payload = bytes::Bytes::copy_from_slice(payload);
    let (response, reply_attachment) = crate::node::runtime::block_on_wait(|| {
        client.call_with_attachment_blocking(method, payload, log_id, attachment, timeout)
    })
    .map_err(rpc_status)?;
    // SAFETY: as above.
    unsafe { reply.write(buffer_of(&response.payload)) };
    if let Some(x) = extras {
        x.reply_attachment = buffer_of(&reply_attachment);
    }
    Ok(())
}

fn buffer_of(bytes: &[u8]) -> raft_buffer_t {
    if bytes.is_empty() {
        return raft_buffer_t {
            data: std::ptr::null_mut(),
            len: 0,
        };
    }
    let boxed: Box<[u8]> = bytes.into();
    let len = boxed.len();
    raft_buffer_t {
        data: Box::into_raw(boxed).cast::<u8>(),
        len,
    }
}

/// Like `raft_client_call` but returns at once; `done` runs exactly once on
/// an IO thread with the outcome. Returns 0 when the call was started
/// (EINVAL otherwise, and `done` does not run).
///
/// Ownership: `method` and `request` are copied; `ctx` is borrowed until
/// `done` runs.
#[no_mangle]
pub extern "C" fn raft_client_call_async(
    client: *mut raft_client_t,
    method: *const c_char,
    request: *const u8,
    len: usize,
    timeout_ms: i32,
    done: raft_client_done_fn,
    ctx: *mut c_void,
) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let result = (|| {
            let client = client_from(client)?;
            let done = done.ok_or_else(|| Status::new(errno::EINVAL, "NULL done"))?;
            // SAFETY: NULL or a valid C string / byte range for this call.
            let (method, payload) = unsafe {
                (
                    str_arg(method, "method")?,
                    bytes_arg(request, len, "request")?,
                )
            };
            let timeout = timeout_of(timeout_ms)?;
            let ctx = ctx as usize;
            client.call_with(
                method,
                bytes::Bytes::copy_from_slice(payload),
                timeout,
                move |outcome| {
                    let (status, data) = match outcome {
                        Ok(response) => (Status::ok(), response.payload),
                        Err(e) => (rpc_status(e), bytes::Bytes::new()),
                    };
                    // SAFETY: `done` has this signature; `ctx` is the user's until
                    // this one call; status and data live for the call.
                    with_c_status(&status, |st| unsafe {
                        done(ctx as *mut c_void, st, data.as_ptr(), data.len())
                    });
                },
            );
            Ok(())
        })();
        match result {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// Declares the client's methods idempotent (`true`): after a timeout or a
/// connection lost mid-call the request is resent to the (new) leader
/// instead of returning the unknown outcome. Default `false`. Returns 0.
///
/// Ownership: `client` is borrowed (a handle from `raft_client_new`).
#[no_mangle]
pub extern "C" fn raft_client_set_idempotent(client: *mut raft_client_t, idempotent: bool) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        match client_from(client) {
            Ok(c) => {
                c.set_idempotent(idempotent);
                0
            }
            Err(status) => fail(status),
        }
    })
}

/// `raft_client_set_protocol`: rraft's own protocol (the default).
pub const RAFT_PROTOCOL_RRAFT: i32 = 0;
/// `raft_client_set_protocol`: brpc's baidu_std, to call a braft (brpc)
/// service.
pub const RAFT_PROTOCOL_BAIDU_STD: i32 = 1;

/// Selects the protocol of the client's later calls: `RAFT_PROTOCOL_RRAFT`
/// (default) or `RAFT_PROTOCOL_BAIDU_STD`. Over baidu_std the client
/// calls a braft service: it finds the leader with braft's
/// `CliService.get_leader`, `method` is the full `package.Service.method`
/// (e.g. "example.CounterService.fetch_add"), request and reply are the
/// method's protobuf bytes, and an error is brpc's `error_code` and
/// `error_text`. A braft service that answers "not leader" inside its own
/// response (as braft's counter does with `redirect`) returns success:
/// the caller reads its response. Returns 0; EINVAL for another value or
/// a bad handle.
///
/// Ownership: `client` is borrowed (a handle from `raft_client_new`).
#[no_mangle]
pub extern "C" fn raft_client_set_protocol(client: *mut raft_client_t, protocol: i32) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let result = (|| {
            let client = client_from(client)?;
            let protocol = match protocol {
                RAFT_PROTOCOL_RRAFT => Protocol::Rraft,
                RAFT_PROTOCOL_BAIDU_STD => Protocol::BaiduStd,
                other => {
                    return Err(Status::new(
                        errno::EINVAL,
                        format!("unknown protocol {other}"),
                    ))
                }
            };
            client.set_protocol(protocol);
            Ok(())
        })();
        match result {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// The leader the client currently believes in, or NULL.
///
/// Ownership: the caller frees the string with `raft_string_free`.
#[no_mangle]
pub extern "C" fn raft_client_leader(client: *const raft_client_t) -> *mut c_char {
    ffi_boundary!(std::ptr::null_mut(), {
        match client_from(client) {
            Ok(c) => c
                .leader()
                .map_or(std::ptr::null_mut(), |l| owned_c_string(&l)),
            Err(status) => {
                fail(status);
                std::ptr::null_mut()
            }
        }
    })
}

/// Asks the group who leads now (blocking up to `timeout_ms`). Returns 0.
///
/// Ownership: `client` is borrowed (a handle from `raft_client_new`).
#[no_mangle]
pub extern "C" fn raft_client_refresh_leader(client: *mut raft_client_t, timeout_ms: i32) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        let result = (|| {
            let client = client_from(client)?;
            let timeout = timeout_of(timeout_ms)?;
            crate::node::runtime::block_on_wait(|| client.refresh_leader_blocking(timeout))
                .map_err(rpc_status)?;
            Ok(())
        })();
        match result {
            Ok(()) => 0,
            Err(status) => fail(status),
        }
    })
}

/// Releases the client. NULL is ignored; a freed, foreign or wrongly typed
/// handle is ignored too and `raft_last_error` says EINVAL.
///
/// Ownership: consumes `client`.
#[no_mangle]
pub extern "C" fn raft_client_free(client: *mut raft_client_t) {
    ffi_boundary!((), {
        if client.is_null() {
            return;
        }
        if let Err(status) = handles::release(client) {
            fail(status);
        }
    })
}

/// Frees the bytes of a buffer the library filled and empties it. NULL or an
/// empty buffer is ignored.
///
/// Ownership: consumes `buf->data`.
#[no_mangle]
pub extern "C" fn raft_buffer_free(buf: *mut raft_buffer_t) {
    ffi_boundary!((), {
        if buf.is_null() {
            return;
        }
        // SAFETY: `buf` is the caller's buffer, filled by rraft (or empty).
        let b = unsafe { &mut *buf };
        if !b.data.is_null() {
            // SAFETY: data/len come from `buffer_of`'s Box<[u8]>, freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(b.data, b.len)) });
        }
        b.data = std::ptr::null_mut();
        b.len = 0;
    })
}
