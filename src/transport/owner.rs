//! The ownership of the transport's senders ([`super::Transport`],
//! [`super::RpcClient`]): the public clones and the sender's tasks share
//! its state through an `Arc`; the public clones alone also share an
//! [`Owner`], whose drop stops that state. So a sender stops when its user
//! drops the last clone, although its tasks still hold the state.

use std::sync::Arc;

/// State that can be told to stop (close connections, end tasks).
pub(crate) trait Stoppable {
    fn stop(&self);
}

/// Held by the public clones only (never by tasks): stops on last drop.
pub(crate) struct Owner<T: Stoppable>(Arc<T>);

impl<T: Stoppable> Drop for Owner<T> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Shares `state` and makes the owner that stops it.
pub(crate) fn owned<T: Stoppable>(state: T) -> (Arc<T>, Arc<Owner<T>>) {
    let state = Arc::new(state);
    let owner = Arc::new(Owner(state.clone()));
    (state, owner)
}
