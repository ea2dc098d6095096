//! Library-wide setup.

use super::boundary::{fail_with, ffi_boundary};
use crate::node::errno;

/// Starts the library's IO runtime with `workers` threads (0 = the default,
/// 2). Optional: the first server or client starts it with the default.
/// Returns 0; EEXIST if the runtime already runs (the count is then fixed);
/// EINVAL for a negative count.
#[no_mangle]
pub extern "C" fn raft_global_init(workers: i32) -> i32 {
    ffi_boundary!(errno::EPANIC, {
        super::logging::ensure_logger();
        if workers < 0 {
            return fail_with(errno::EINVAL, format!("worker count {workers} is negative"));
        }
        let count = if workers == 0 { 2 } else { workers as usize };
        match crate::node::runtime::init(count) {
            Ok(true) => 0,
            Ok(false) => fail_with(errno::EEXIST, "the rraft runtime is already running"),
            Err(e) => fail_with(errno::EINTERNAL, format!("cannot start the runtime: {e}")),
        }
    })
}
