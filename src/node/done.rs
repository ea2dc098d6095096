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
