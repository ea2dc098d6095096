//! A completion callback that runs exactly once: braft's `Closure`.

use super::errno::{self, Status};

/// Runs once with the outcome of a request. If dropped without being run
/// (a bug, or a thread that died), it runs with `EINTERNAL` so no caller
/// ever waits forever.
pub struct Done {
    run: Option<Box<dyn FnOnce(Status) + Send>>,
    /// An opaque value the proposer attached (C: the task's `done_ctx`),
    /// shown to the state machine by `Iter::done_tag`.
    tag: usize,
}

impl Done {
    pub fn new(run: impl FnOnce(Status) + Send + 'static) -> Done {
        Done {
            run: Some(Box::new(run)),
            tag: 0,
        }
    }

    pub fn with_tag(tag: usize, run: impl FnOnce(Status) + Send + 'static) -> Done {
        Done {
            run: Some(Box::new(run)),
            tag,
        }
    }

    pub fn tag(&self) -> usize {
        self.tag
    }

    pub fn run(mut self, status: Status) {
        if let Some(run) = self.run.take() {
            run(status);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run(Status::new(
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
