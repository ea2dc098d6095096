//! Status codes, matching braft's (errno.proto plus plain errno values), and
//! the `Status` every done callback receives.

use std::fmt;

use crate::core;

/// Success.
pub const OK: i32 = 0;
/// Not the leader, or `expected_term` does not match (braft EPERM).
pub const EPERM: i32 = libc::EPERM;
pub const ENOENT: i32 = libc::ENOENT;
pub const EIO: i32 = libc::EIO;
pub const EAGAIN: i32 = libc::EAGAIN;
pub const ENOMEM: i32 = libc::ENOMEM;
/// A leadership transfer or membership change is in progress.
pub const EBUSY: i32 = libc::EBUSY;
pub const EEXIST: i32 = libc::EEXIST;
/// A bad argument: NULL where a value is needed, a malformed peer id, ...
pub const EINVAL: i32 = libc::EINVAL;
pub const ENOSPC: i32 = libc::ENOSPC;
pub const ECANCELED: i32 = libc::ECANCELED;
pub const ETIMEDOUT: i32 = libc::ETIMEDOUT;
pub const EHOSTDOWN: i32 = libc::EHOSTDOWN;

pub const ERAFTTIMEDOUT: i32 = 10001;
pub const ESTATEMACHINE: i32 = 10002;
pub const ECATCHUP: i32 = 10003;
pub const ELEADERREMOVED: i32 = 10004;
pub const ESETPEER: i32 = 10005;
pub const ENODESHUTDOWN: i32 = 10006;
pub const EHIGHERTERMREQUEST: i32 = 10007;
pub const EHIGHERTERMRESPONSE: i32 = 10008;
pub const EBADNODE: i32 = 10009;
pub const EVOTEFORCANDIDATE: i32 = 10010;
pub const ENEWLEADER: i32 = 10011;
pub const ELEADERCONFLICT: i32 = 10012;
pub const ETRANSFERLEADERSHIP: i32 = 10013;
pub const ELOGDELETED: i32 = 10014;
pub const ENOMOREUSERLOG: i32 = 10015;
pub const EREADONLY: i32 = 10016;

/// rraft's own: a Rust panic was caught at the C boundary.
pub const EPANIC: i32 = 20001;
/// rraft's own: an internal channel or thread is gone (a bug, reported not hidden).
pub const EINTERNAL: i32 = 20002;

/// The text for a code, as `raft_strerror` returns it.
pub fn describe(code: i32) -> &'static str {
    match code {
        OK => "OK",
        EPERM => "Operation not permitted (not the leader or term mismatch)",
        ENOENT => "No such entity",
        EIO => "I/O error",
        EAGAIN => "Try again",
        ENOMEM => "Out of memory",
        EBUSY => "Busy (leadership transfer or membership change in progress)",
        EEXIST => "Already exists",
        EINVAL => "Invalid argument",
        ENOSPC => "No space left on device",
        ECANCELED => "Canceled",
        ETIMEDOUT => "Timed out",
        EHOSTDOWN => "Host is down",
        ERAFTTIMEDOUT => "Raft operation timed out",
        ESTATEMACHINE => "State machine error",
        ECATCHUP => "New peer failed to catch up",
        ELEADERREMOVED => "Leader was removed from the group",
        ESETPEER => "Peer configuration was reset",
        ENODESHUTDOWN => "Node is shut down",
        EHIGHERTERMREQUEST => "Request with a higher term",
        EHIGHERTERMRESPONSE => "Response with a higher term",
        EBADNODE => "Node is in a bad state",
        EVOTEFORCANDIDATE => "Voted for a candidate",
        ENEWLEADER => "A new leader was elected",
        ELEADERCONFLICT => "Leader conflict",
        ETRANSFERLEADERSHIP => "Leadership transfer failed",
        ELOGDELETED => "Log entry was deleted",
        ENOMOREUSERLOG => "No more user log entries",
        EREADONLY => "Node is read-only",
        EPANIC => "Internal panic caught at the C boundary",
        EINTERNAL => "Internal error",
        _ => "Unknown error code",
    }
}

/// The outcome of an operation: braft's `butil::Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

impl Status {
    pub fn ok() -> Status {
        Status {
            code: OK,
            message: String::new(),
        }
    }

    pub fn new(code: i32, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.code == OK
    }

    /// `Ok(())` for success, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Status> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "[{}] {}", self.code, describe(self.code))
        } else {
            write!(f, "[{}] {}", self.code, self.message)
        }
    }
}

impl std::error::Error for Status {}

impl From<core::Error> for Status {
    fn from(err: core::Error) -> Status {
        let code = match &err {
            core::Error::NotLeader { .. } => EPERM,
            core::Error::Busy(_) => EBUSY,
            core::Error::Invalid(_) => EINVAL,
            core::Error::CatchupTimeout(_) => ECATCHUP,
            core::Error::LeadershipLost => EPERM,
            core::Error::TransferTimeout(_) => ETRANSFERLEADERSHIP,
            core::Error::Storage(core::StorageError::Compacted) => ELOGDELETED,
            core::Error::Storage(_) => EIO,
        };
        Status::new(code, err.to_string())
    }
}
