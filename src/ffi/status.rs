//! Status codes and error text for C: `raft_status_t`, `raft_strerror`,
//! `raft_last_error`, `raft_string_free`.

use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::sync::LazyLock;

use super::boundary::{ffi_boundary, last_error_ptr};
use crate::node::errno::{self, Status};

/// Success.
pub const RAFT_OK: i32 = 0;
/// braft error codes (errno.proto); plain errno values (EPERM, EBUSY,
/// EINVAL, ...) are used as well and come from <errno.h>.
pub const RAFT_ERAFTTIMEDOUT: i32 = 10001;
pub const RAFT_ESTATEMACHINE: i32 = 10002;
pub const RAFT_ECATCHUP: i32 = 10003;
pub const RAFT_ELEADERREMOVED: i32 = 10004;
pub const RAFT_ESETPEER: i32 = 10005;
pub const RAFT_ENODESHUTDOWN: i32 = 10006;
pub const RAFT_EHIGHERTERMREQUEST: i32 = 10007;
pub const RAFT_EHIGHERTERMRESPONSE: i32 = 10008;
pub const RAFT_EBADNODE: i32 = 10009;
pub const RAFT_EVOTEFORCANDIDATE: i32 = 10010;
pub const RAFT_ENEWLEADER: i32 = 10011;
pub const RAFT_ELEADERCONFLICT: i32 = 10012;
pub const RAFT_ETRANSFERLEADERSHIP: i32 = 10013;
pub const RAFT_ELOGDELETED: i32 = 10014;
pub const RAFT_ENOMOREUSERLOG: i32 = 10015;
pub const RAFT_EREADONLY: i32 = 10016;
/// rraft's own: a Rust panic was caught at the C boundary.
pub const RAFT_EPANIC: i32 = 20001;
/// rraft's own: an internal error (a bug, reported rather than hidden).
pub const RAFT_EINTERNAL: i32 = 20002;

// The header needs literals; these keep them equal to the runtime's codes.
const _: () = {
    assert!(RAFT_OK == errno::OK);
    assert!(RAFT_ERAFTTIMEDOUT == errno::ERAFTTIMEDOUT);
    assert!(RAFT_ESTATEMACHINE == errno::ESTATEMACHINE);
    assert!(RAFT_ECATCHUP == errno::ECATCHUP);
    assert!(RAFT_ELEADERREMOVED == errno::ELEADERREMOVED);
    assert!(RAFT_ESETPEER == errno::ESETPEER);
    assert!(RAFT_ENODESHUTDOWN == errno::ENODESHUTDOWN);
    assert!(RAFT_EHIGHERTERMREQUEST == errno::EHIGHERTERMREQUEST);
    assert!(RAFT_EHIGHERTERMRESPONSE == errno::EHIGHERTERMRESPONSE);
    assert!(RAFT_EBADNODE == errno::EBADNODE);
    assert!(RAFT_EVOTEFORCANDIDATE == errno::EVOTEFORCANDIDATE);
    assert!(RAFT_ENEWLEADER == errno::ENEWLEADER);
    assert!(RAFT_ELEADERCONFLICT == errno::ELEADERCONFLICT);
    assert!(RAFT_ETRANSFERLEADERSHIP == errno::ETRANSFERLEADERSHIP);
    assert!(RAFT_ELOGDELETED == errno::ELOGDELETED);
    assert!(RAFT_ENOMOREUSERLOG == errno::ENOMOREUSERLOG);
    assert!(RAFT_EREADONLY == errno::EREADONLY);
    assert!(RAFT_EPANIC == errno::EPANIC);
    assert!(RAFT_EINTERNAL == errno::EINTERNAL);
};

/// The outcome handed to a done callback. `message` is a NUL-terminated text:
/// empty on success; on failure "[code] text", the same form as
/// `raft_last_error` (e.g. "[1] not the leader; the leader is ...").
///
/// Ownership: the struct and its `message` are owned by the library and
/// valid only during the callback; copy what you need to keep.
#[repr(C)]
pub struct raft_status_t {
    /// 0 on success; otherwise a braft error code (`EPERM`, `RAFT_ENODESHUTDOWN`, ...).
    pub code: i32,
    pub message: *const c_char,
}

/// A done callback: `ctx` is the pointer given with the request; `status`
/// is valid only during the call.
pub type raft_done_fn =
    Option<unsafe extern "C" fn(ctx: *mut std::ffi::c_void, status: *const raft_status_t)>;

/// The text C sees for `status`: "" on success, otherwise the same
/// "[code] message" form `raft_last_error` gives.
pub fn c_status_text(status: &Status) -> String {
    if status.code == errno::OK {
        status.message.clone()
    } else {
        status.to_string()
    }
}

/// Runs `f(ctx, status)` with a C view of `status`.
pub fn with_c_status<R>(status: &Status, f: impl FnOnce(*const raft_status_t) -> R) -> R {
    if status.code == errno::OK && status.message.is_empty() {
        // The common success: its text is "", nothing to build.
        let c = raft_status_t {
            code: errno::OK,
            message: c"".as_ptr(),
        };
        return f(&c);
    }
    let text = CString::new(c_status_text(status).replace('\0', "\\0")).unwrap_or_default();
    let c = raft_status_t {
        code: status.code,
        message: text.as_ptr(),
    };
    f(&c)
}

static DESCRIPTIONS: LazyLock<BTreeMap<i32, CString>> = LazyLock::new(|| {
    let codes = [
        errno::OK,
        errno::EPERM,
        errno::ENOENT,
        errno::EIO,
        errno::EAGAIN,
        errno::ENOMEM,
        errno::EBUSY,
        errno::EEXIST,
        errno::EINVAL,
        errno::ENOSPC,
        errno::ECANCELED,
        errno::ETIMEDOUT,
        errno::EHOSTDOWN,
        errno::EPANIC,
        errno::EINTERNAL,
    ];
    codes
        .into_iter()
        .chain(errno::ERAFTTIMEDOUT..=errno::EREADONLY)
        .map(|code| {
            (
                code,
                CString::new(errno::describe(code)).unwrap_or_default(),
            )
        })
        .collect()
});

static UNKNOWN: &std::ffi::CStr = c"Unknown error code";

/// The text for a status code (braft's `berror`).
///
/// Ownership: the returned string is static; never free it.
#[no_mangle]
pub extern "C" fn raft_strerror(code: i32) -> *const c_char {
    ffi_boundary!(UNKNOWN.as_ptr(), {
        DESCRIPTIONS
            .get(&code)
            .map_or(UNKNOWN.as_ptr(), |text| text.as_ptr())
    })
}

/// The message of the last failed rraft call on this thread ("" if none):
/// every call that returns an error code, NULL or false records why here,
/// as "[code] text" (the form of a failed `raft_status_t.message`).
///
/// Ownership: owned by the library; valid until the next rraft call on this
/// thread. Copy it to keep it.
#[no_mangle]
pub extern "C" fn raft_last_error() -> *const c_char {
    ffi_boundary!(UNKNOWN.as_ptr(), { last_error_ptr() })
}

/// Frees a string the library returned as `char *` (status JSON, peer lists).
///
/// Ownership: takes ownership of `text`, which must come from rraft and not
/// be freed before; NULL is ignored.
#[no_mangle]
pub extern "C" fn raft_string_free(text: *mut c_char) {
    ffi_boundary!((), {
        if !text.is_null() {
            // SAFETY: the caller passes a string rraft made with CString::into_raw, once.
            drop(unsafe { CString::from_raw(text) });
        }
    })
}
