//! The C boundary: panic containment, NULL checks, and the per-thread text of
//! the last error (`raft_last_error`).
//!
//! Every exported function runs its body inside [`ffi_boundary!`], so a Rust
//! panic becomes an error code (`EPANIC`) or NULL/false instead of unwinding
//! into C, which would be undefined behaviour.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

use crate::node::errno::{self, Status};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error text.
pub fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = text);
}

/// Records `status` as the last error and returns its code.
pub fn fail(status: Status) -> i32 {
    log::debug!("C API call failed: {status}");
    set_last_error(&status.to_string());
    status.code
}

/// Runs `body` and turns its status into a return code (0 or the failure's,
/// recorded as the last error).
pub fn code(body: impl FnOnce() -> Result<(), Status>) -> i32 {
    match body() {
        Ok(()) => 0,
        Err(status) => fail(status),
    }
}

/// Records a failure built from a code and message; returns the code.
pub fn fail_with(code: i32, message: impl Into<String>) -> i32 {
    fail(Status::new(code, message))
}

/// Pointer to this thread's last error text; valid until the next rraft call
/// on this thread.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// Turns a caught panic into an error record.
pub fn report_panic(payload: Box<dyn std::any::Any + Send>) {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    log::error!("panic caught at the C boundary: {what}");
    set_last_error(&format!("[{}] internal panic: {what}", errno::EPANIC));
}

/// Runs `$body` (which returns the function's value) and turns a panic into
/// `$on_panic`. Every exported function is wrapped in it.
macro_rules! ffi_boundary {
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                $crate::ffi::boundary::report_panic(payload);
                $on_panic
            }
        }
    };
}
pub(crate) use ffi_boundary;

/// Returns `$ret` (after recording an EINVAL "NULL <name>" error) when the
/// pointer is NULL.
macro_rules! require_non_null {
    ($ptr:expr, $ret:expr) => {
        if $ptr.is_null() {
            $crate::ffi::boundary::fail_with(
                $crate::node::errno::EINVAL,
                concat!("NULL pointer passed as `", stringify!($ptr), "`"),
            );
            return $ret;
        }
    };
}
pub(crate) use require_non_null;

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for this call.
pub unsafe fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Status> {
    if ptr.is_null() {
        return Err(Status::new(
            errno::EINVAL,
            format!("NULL pointer passed as `{name}`"),
        ));
    }
    // SAFETY: the caller guarantees `ptr` is a valid NUL-terminated string for this call.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map_err(|_| Status::new(errno::EINVAL, format!("`{name}` is not valid UTF-8")))
}

/// Like [`str_arg`] but NULL reads as the empty string.
///
/// # Safety
/// As [`str_arg`].
pub unsafe fn opt_str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Status> {
    if ptr.is_null() {
        return Ok("");
    }
    // SAFETY: forwarded from the caller.
    unsafe { str_arg(ptr, name) }
}

/// Borrows `len` bytes at `ptr` (NULL allowed when `len` is 0).
///
/// # Safety
/// When `len > 0`, `ptr` points to `len` readable bytes valid for this call.
pub unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Status::new(
            errno::EINVAL,
            format!("NULL pointer passed as `{name}` with length {len}"),
        ));
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Copies `text` into a fresh heap string the caller frees with `raft_string_free`.
pub fn owned_c_string(text: &str) -> *mut c_char {
    CString::new(text.replace('\0', "\\0"))
        .unwrap_or_default()
        .into_raw()
}
