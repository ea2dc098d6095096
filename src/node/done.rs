//! A completion callback that runs exactly once: braft's `Closure`.

use super::errno::{self, Status};

/// Runs once with the outcome of a request. If dropped without being run
/// (a bug, or a thread that died), it runs with `EINTERNAL` so no caller
/// ever waits forever.
pub struct Done {
    run: Option<Run>,
    /// An opaque value the proposer attached (C: the task's `done_ctx`),
    /// shown to the state machine by `Iter::done_tag`.
    tag: usize,
}

/// A C completion callback (`raft_done_fn` once checked non-NULL): its
/// first argument is the context given with the request.
pub(crate) type CDoneFn =
    unsafe extern "C" fn(*mut std::ffi::c_void, *const crate::ffi::status::raft_status_t);

/// What a [`Done`] runs.
enum Run {
    Boxed(Box<dyn FnOnce(Status) + Send>),
    /// `call(f, tag, status)`: a done made of a C callback and its context
    /// (the tag) takes no allocation; `call` runs `f` with a C status.
    C {
        call: fn(CDoneFn, usize, Status),
        f: CDoneFn,
    },
}

impl Done {
    pub fn new(run: impl FnOnce(Status) + Send + 'static) -> Done {
        Done {
            run: Some(Run::Boxed(Box::new(run))),
            tag: 0,
        }
    }

    pub fn with_tag(tag: usize, run: impl FnOnce(Status) + Send + 'static) -> Done {
        Done {
            run: Some(Run::Boxed(Box::new(run))),
            tag,
        }
    }

    /// A done that runs `call(f, tag, status)`, without an allocation.
    pub(crate) fn with_c_fn(tag: usize, call: fn(CDoneFn, usize, Status), f: CDoneFn) -> Done {
        Done {
            run: Some(Run::C { call, f }),
            tag,
        }
    }

    pub fn tag(&self) -> usize {
        self.tag
    }

    pub fn run(mut self, status: Status) {
        self.finish(status);
    }

    fn finish(&mut self, status: Status) {
        match self.run.take() {
            Some(Run::Boxed(run)) => run(status),
            Some(Run::C { call, f }) => call(f, self.tag, status),
            None => {}
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.run.is_some() {
            self.finish(Status::new(
                errno::EINTERNAL,
                "request dropped without an answer",
            ));
        }
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Done(tag={:#x})", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static LAST: std::sync::Mutex<Option<(usize, usize, i32)>> = std::sync::Mutex::new(None);

    /// The C callback: counts its calls and keeps its context.
    unsafe extern "C" fn c_callback(
        ctx: *mut std::ffi::c_void,
        _status: *const crate::ffi::status::raft_status_t,
    ) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        LAST.lock().unwrap().get_or_insert((0, 0, 0)).0 = ctx as usize;
    }

    fn record(f: CDoneFn, tag: usize, status: Status) {
        *LAST.lock().unwrap() = Some((0, tag, status.code));
        // SAFETY: `c_callback` ignores its status pointer.
        unsafe { f(tag as *mut std::ffi::c_void, std::ptr::null()) };
    }

    #[test]
    fn a_c_done_runs_once_with_its_context_and_its_drop_answers_einternal() {
        let done = Done::with_c_fn(7, record, c_callback);
        assert_eq!(done.tag(), 7);
        done.run(Status::ok());
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(*LAST.lock().unwrap(), Some((7, 7, 0)));

        drop(Done::with_c_fn(8, record, c_callback));
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        assert_eq!(*LAST.lock().unwrap(), Some((8, 8, errno::EINTERNAL)));
    }
}
