//! Bridges the `log` crate to a C callback (`raft_set_log_callback`).

use std::ffi::{c_char, c_void, CString};
use std::io::Write;
use std::sync::{Once, RwLock};

use super::boundary::{fail_with, ffi_boundary};

/// A log sink: `level` is a `raft_log_level_t`; `target` names the module;
/// `message` is one line. Both strings are valid only during the call. May be
/// called from any thread, concurrently (the caller's, an IO thread, a
/// node's FSM or log writer thread), never while the library holds a lock
/// a call back in needs. From inside it every function may be called and
/// returns promptly, except that waiting for a node to stop is refused:
/// `raft_node_join` returns EBUSY, `raft_node_free` shuts the node down
/// without waiting for it; a node query (status, list_peers, vote,
/// transfer, reset_peers) made while that node's own driver is logging
/// returns EBUSY at once.
pub type raft_log_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// Log levels, most severe first (the `log` crate's numbering).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum raft_log_level_t {
    RAFT_LOG_OFF = 0,
    RAFT_LOG_ERROR = 1,
    RAFT_LOG_WARN = 2,
    RAFT_LOG_INFO = 3,
    RAFT_LOG_DEBUG = 4,
    RAFT_LOG_TRACE = 5,
}

struct Sink {
    callback: raft_log_fn,
    ctx: usize,
}

static SINK: RwLock<Sink> = RwLock::new(Sink {
    callback: None,
    ctx: 0,
});
static INSTALL: Once = Once::new();

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Copied out so that no lock is held during the callback: it may
        // call back into the library, even raft_set_log_callback.
        let (callback, ctx) = {
            let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
            (sink.callback, sink.ctx)
        };
        match callback {
            Some(callback) => {
                let _marked = crate::node::reentry::enter_log_callback();
                let target = CString::new(record.target()).unwrap_or_default();
                let message = CString::new(record.args().to_string().replace('\0', "\\0"))
                    .unwrap_or_default();
                // SAFETY: the callback was registered by the C user for exactly
                // this signature; the strings outlive the call.
                unsafe {
                    callback(
                        ctx as *mut c_void,
                        record.level() as i32,
                        target.as_ptr(),
                        message.as_ptr(),
                    )
                };
            }
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "rraft {} {}: {}",
                    record.level(),
                    record.target(),
                    record.args()
                );
            }
        }
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Installs the bridge as the process's logger once (unless the host program
/// installed its own Rust logger first). The level comes from `RRAFT_LOG`
/// (error, warn, info, debug, trace) and defaults to warn.
pub fn ensure_logger() {
    INSTALL.call_once(|| {
        if log::set_logger(&BRIDGE).is_ok() {
            let level = std::env::var("RRAFT_LOG")
                .ok()
                .and_then(|l| l.parse().ok())
                .unwrap_or(log::LevelFilter::Warn);
            log::set_max_level(level);
        }
    });
}

fn level_filter(level: i32) -> Option<log::LevelFilter> {
    Some(match level {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        5 => log::LevelFilter::Trace,
        _ => return None,
    })
}

fn set_level(level: i32) -> i32 {
    match level_filter(level) {
        Some(filter) => {
            log::set_max_level(filter);
            0
        }
        None => fail_with(
            crate::node::errno::EINVAL,
            format!("log level {level} is not a raft_log_level_t (0..5)"),
        ),
    }
}

/// Routes the library's log lines to `callback` (NULL: back to stderr) and
/// sets the level (a `raft_log_level_t`). Returns 0, or EINVAL for a bad level.
///
/// Ownership: `ctx` is borrowed and passed back to every call; it must stay
/// valid until the callback is replaced or the process ends.
#[no_mangle]
pub extern "C" fn raft_set_log_callback(
    callback: raft_log_fn,
    ctx: *mut c_void,
    level: i32,
) -> i32 {
    ffi_boundary!(crate::node::errno::EPANIC, {
        ensure_logger();
        if level_filter(level).is_none() {
            return set_level(level);
        }
        *SINK.write().unwrap_or_else(|p| p.into_inner()) = Sink {
            callback,
            ctx: ctx as usize,
        };
        set_level(level)
    })
}

/// Sets the log level (a `raft_log_level_t`) only. Returns 0, or EINVAL.
#[no_mangle]
pub extern "C" fn raft_set_log_level(level: i32) -> i32 {
    ffi_boundary!(crate::node::errno::EPANIC, {
        ensure_logger();
        set_level(level)
    })
}
