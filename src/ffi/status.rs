//! Status codes and error text for C: `raft_status_t`, `raft_strerror`,
//! `raft_last_error`, `raft_string_free`.

use std::collections::BTreeMap;
use std::ffi::{c_char, CString};
use std::sync::LazyLock;

use super::boundary::{ffi_boundary, last_error_ptr};
use crate::node::errno::{self, Status};

/// The outcome handed to a done callback. `message` is a NUL-terminated text
/// (empty on success).
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
pub type raft_done_fn = Option<unsafe extern "C" fn(ctx: *mut std::ffi::c_void, status: *const raft_status_t)>;

/// Runs `f(ctx, status)` with a C view of `status`.
pub fn with_c_status<R>(status: &Status, f: impl FnOnce(*const raft_status_t) -> R) -> R {
    let text = CString::new(status.message.replace('\0', "\\0")).unwrap_or_default();
    let c = raft_status_t { code: status.code, message: text.as_ptr() };
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
        .map(|code| (code, CString::new(errno::describe(code)).unwrap_or_default()))
        .collect()
});

static UNKNOWN: &std::ffi::CStr = c"Unknown error code";

/// The text for a status code (braft's `berror`).
///
/// Ownership: the returned string is static; never free it.
#[no_mangle]
pub extern "C" fn raft_strerror(code: i32) -> *const c_char {
    ffi_boundary!(UNKNOWN.as_ptr(), {
        DESCRIPTIONS.get(&code).map_or(UNKNOWN.as_ptr(), |text| text.as_ptr())
    })
}

/// The message of the last failed rraft call on this thread ("" if none):
/// every call that returns an error code, NULL or false records why here.
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
