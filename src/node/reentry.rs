//! Which node's own work the current thread is doing, so that a call back
//! into the library that would wait for that work fails at once instead of
//! waiting for itself.
//!
//! - A node's driver marks its thread while it takes a turn (a log line
//!   emitted there may reach a user log callback): a query, which the
//!   driver answers, or a join from there would never be answered.
//! - The thread finishing a node's shutdown marks itself while it runs the
//!   shutdown dones: a join from there would wait for its own return.
//! - A user log callback marks its thread: it may run on any library thread
//!   (the log writer, a driver), so it must not wait for a node to stop.
//!
//! - A thread of the FSM pool marks itself (`enter_fsm`) while it runs a
//!   node's callbacks and dones: the FSM threads are shared by the nodes of
//!   the process, so the rule keys on "this thread is running node X's
//!   callbacks now", not on a thread id. That mark is separate from the
//!   others: a callback may query its own node (the driver answers), but it
//!   must not join it.

use std::cell::{Cell, RefCell};

thread_local! {
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    static RUNNING_CALLBACKS_OF: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as running node `key`'s callbacks until dropped.
pub(crate) struct FsmScope(usize);

impl Drop for FsmScope {
    fn drop(&mut self) {
        RUNNING_CALLBACKS_OF.with(|c| c.set(self.0));
    }
}

/// Marks the thread as running the callbacks of the node whose key is `key`
/// (an FSM thread, for one batch of that node's tasks).
pub(crate) fn enter_fsm(key: usize) -> FsmScope {
    FsmScope(RUNNING_CALLBACKS_OF.with(|c| c.replace(key)))
}

/// True while the current thread runs node `key`'s callbacks or dones.
pub(crate) fn in_callbacks_of(key: usize) -> bool {
    key != 0 && RUNNING_CALLBACKS_OF.with(|c| c.get()) == key
}

/// The key of the log callback's mark (no node has it: node keys are
/// addresses of live allocations, never 1).
const LOG_CALLBACK: usize = 1;

/// Marks the current thread as doing node `key`'s own work until dropped.
pub struct Scope(usize);

impl Drop for Scope {
    fn drop(&mut self) {
        ACTIVE.with(|active| {
            let mut active = active.borrow_mut();
            if let Some(at) = active.iter().rposition(|k| *k == self.0) {
                active.remove(at);
            }
        });
    }
}

/// Marks the thread as working for the node whose key is `key` (see
/// [`node_key`]).
pub(crate) fn enter(key: usize) -> Scope {
    ACTIVE.with(|active| active.borrow_mut().push(key));
    Scope(key)
}

/// Marks the thread as running a user log callback.
pub fn enter_log_callback() -> Scope {
    enter(LOG_CALLBACK)
}

/// True while the current thread works for node `key`.
pub(crate) fn inside(key: usize) -> bool {
    ACTIVE.with(|active| active.borrow().contains(&key))
}

/// True while the current thread runs a user log callback.
pub(crate) fn in_log_callback() -> bool {
    inside(LOG_CALLBACK)
}

/// The key naming one node: the address of the state its driver and its
/// `Node` share, stable while either lives.
pub(crate) fn node_key<T>(shared: &std::sync::Arc<T>) -> usize {
    std::sync::Arc::as_ptr(shared) as *const u8 as usize
}
