//! Library version, the first exported symbol.

use std::os::raw::c_char;

use super::boundary::ffi_boundary;

/// The library version as a NUL-terminated string, e.g. "0.1.0".
///
/// Ownership: the returned pointer is static; never free it.
#[no_mangle]
pub extern "C" fn raft_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    ffi_boundary!(VERSION.as_ptr().cast(), { VERSION.as_ptr().cast() })
}
