//! `raft_iterator_t`: the committed entries handed to `on_apply`
//! (braft's `Iterator`). Valid only during that `on_apply` call.

use std::ffi::{c_char, c_void};

use super::boundary::{ffi_boundary, opt_str_arg};
use crate::node::errno::{self, Status};
use crate::node::Iter;

/// Opaque iterator over committed entries; valid only inside `on_apply`.
pub struct raft_iterator_t {
    _private: [u8; 0],
}

/// What a `raft_iterator_t *` points to: the runtime's iterator, with its
/// lifetime erased for the duration of one `on_apply` call.
pub(crate) struct CIterator {
    iter: *mut Iter<'static>,
}

impl CIterator {
    pub(crate) fn new(iter: &mut Iter<'_>) -> CIterator {
        CIterator {
            iter: (iter as *mut Iter<'_>).cast::<Iter<'static>>(),
        }
    }
}

/// Borrows the iterator behind a `const` C pointer, for reading only.
///
/// # Safety
/// `it` is NULL or the pointer passed to the `on_apply` call in progress.
unsafe fn iter<'a>(it: *const raft_iterator_t) -> Option<&'a Iter<'static>> {
    if it.is_null() {
        return None;
    }
    // SAFETY: per the contract, `it` points to a live CIterator whose `iter`
    // points to the runtime's iterator for the duration of on_apply; a
    // shared borrow is all a `const` pointer grants.
    unsafe { (*(it as *const CIterator)).iter.cast_const().as_ref() }
}

/// Borrows the iterator behind a mutable C pointer, to move or stop it.
///
/// # Safety
/// `it` is NULL or the pointer passed to the `on_apply` call in progress,
/// and no other borrow of the iterator is alive during the call.
unsafe fn iter_mut<'a>(it: *mut raft_iterator_t) -> Option<&'a mut Iter<'static>> {
    if it.is_null() {
        return None;
    }
    // SAFETY: as `iter`; the C caller passed the iterator as mutable, and
    // the borrow ends with this exported call.
    unsafe { (*(it as *const CIterator)).iter.as_mut() }
}

/// True while there is an entry to apply (false after an error was raised).
///
/// Ownership: `it` is the iterator passed to `on_apply`, borrowed.
#[no_mangle]
pub extern "C" fn raft_iterator_valid(it: *const raft_iterator_t) -> bool {
    // SAFETY: `it` is the on_apply iterator (the documented contract).
    ffi_boundary!(false, { unsafe { iter(it) }.is_some_and(|i| i.valid()) })
}

/// Moves to the next entry.
///
/// Ownership: `it` is the iterator passed to `on_apply`, borrowed.
#[no_mangle]
pub extern "C" fn raft_iterator_next(it: *mut raft_iterator_t) {
    // SAFETY: `it` is the on_apply iterator (the documented contract).
    ffi_boundary!((), {
        if let Some(i) = unsafe { iter_mut(it) } {
            i.next();
        }
    })
}

/// Log index of the current entry (0 when not valid).
///
/// Ownership: `it` is the iterator passed to `on_apply`, borrowed.
#[no_mangle]
pub extern "C" fn raft_iterator_index(it: *const raft_iterator_t) -> i64 {
    // SAFETY: `it` is the on_apply iterator (the documented contract).
    ffi_boundary!(0, { unsafe { iter(it) }.map_or(0, |i| i.index() as i64) })
}

/// Term of the current entry (0 when not valid).
///
/// Ownership: `it` is the iterator passed to `on_apply`, borrowed.
#[no_mangle]
pub extern "C" fn raft_iterator_term(it: *const raft_iterator_t) -> i64 {
    // SAFETY: `it` is the on_apply iterator (the documented contract).
    ffi_boundary!(0, { unsafe { iter(it) }.map_or(0, |i| i.term() as i64) })
}

/// The current entry's bytes; `*len` receives their length (0 and NULL when
/// not valid).
///
/// Ownership: the bytes belong to the library and stay valid until
/// `on_apply` returns. `len` is the caller's (may be NULL).
#[no_mangle]
pub extern "C" fn raft_iterator_data(it: *const raft_iterator_t, len: *mut usize) -> *const u8 {
    ffi_boundary!(std::ptr::null(), {
        // SAFETY: `it` is the on_apply iterator (the documented contract).
        let data = unsafe { iter(it) }.map(|i| i.data_slice()).unwrap_or(&[]);
        if !len.is_null() {
            // SAFETY: `len` is non-NULL and points to a size_t the caller owns.
            unsafe { len.write(data.len()) };
        }
        if data.is_empty() {
            std::ptr::null()
        } else {
            data.as_ptr()
        }
    })
}

/// The `done_ctx` of the task that proposed the current entry when this node
/// proposed it as leader in the entry's term; NULL otherwise (followers,
/// entries of other terms). The library runs that task's `done` (with
/// success) after `on_apply` returns: put the result where `done` will find
/// it; never run it yourself.
///
/// Ownership: `it` is the iterator passed to `on_apply`, borrowed.
#[no_mangle]
pub extern "C" fn raft_iterator_done(it: *const raft_iterator_t) -> *mut c_void {
    // SAFETY: `it` is the on_apply iterator (the documented contract).
    ffi_boundary!(std::ptr::null_mut(), {
        unsafe { iter(it) }
            .and_then(|i| i.done_tag())
            .map_or(std::ptr::null_mut(), |t| t as *mut c_void)
    })
}

/// braft `set_error_and_rollback`: stop applying; the current entry and the
/// `ntail` before it count as not applied; the node stops with `code` and
/// `message` (`on_error` follows).
///
/// Ownership: `message` is borrowed for the call (NULL allowed).
#[no_mangle]
pub extern "C" fn raft_iterator_set_error_and_rollback(
    it: *mut raft_iterator_t,
    ntail: usize,
    code: i32,
    message: *const c_char,
) {
    ffi_boundary!((), {
        // SAFETY: `message` is NULL or a valid C string for this call.
        let text = unsafe { opt_str_arg(message, "message") }
            .unwrap_or("")
            .to_string();
        let code = if code == 0 {
            errno::ESTATEMACHINE
        } else {
            code
        };
        // SAFETY: `it` is the on_apply iterator (the documented contract).
        if let Some(i) = unsafe { iter_mut(it) } {
            i.set_error_and_rollback(ntail, Status::new(code, text));
        }
    })
}
