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

/// What a [`Done`] runs.
enum Run {
    Boxed(Box<dyn FnOnce(Status) + Send>),
    /// `call(arg, tag, status)`: a done made of a plain function and two
    /// words (a C callback and its context) takes no allocation.
    Plain {
        call: fn(usize, usize, Status),
        arg: usize,
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

    /// A done that runs `call(arg, tag, status)`, without an allocation.
    pub fn with_fn(tag: usize, call: fn(usize, usize, Status), arg: usize) -> Done {
        Done {
            run: Some(Run::Plain { call, arg }),
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
            Some(Run::Plain { call, arg }) => call(arg, self.tag, status),
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

    fn record(arg: usize, tag: usize, status: Status) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        *LAST.lock().unwrap() = Some((arg, tag, status.code));
    }

    #[test]
    fn a_plain_done_runs_once_with_its_words_and_its_drop_answers_einternal() {
        let done = Done::with_fn(7, record, 11);
        assert_eq!(done.tag(), 7);
        done.run(Status::ok());
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(*LAST.lock().unwrap(), Some((11, 7, 0)));

        drop(Done::with_fn(8, record, 12));
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        assert_eq!(*LAST.lock().unwrap(), Some((12, 8, errno::EINTERNAL)));
    }
}
