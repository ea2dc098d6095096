//! Handles given to C: the address of an `Arc<T>` kept in a registry.
//!
//! C never sees a dereferenceable Rust pointer: every call looks its handle
//! up in the registry first, so a NULL, freed (stale) or foreign pointer is
//! answered with an error instead of undefined behaviour.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The live handles of one kind, keyed by the address handed to C.
pub struct Registry<T> {
    live: Mutex<BTreeMap<usize, Arc<T>>>,
}

impl<T> Registry<T> {
    pub const fn new() -> Registry<T> {
        Registry {
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<usize, Arc<T>>> {
        // A panic while the lock was held cannot leave the map half-updated
        // (insert/remove are single calls), so a poisoned lock is still usable.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `value` and returns its handle (never 0).
    pub fn insert(&self, value: Arc<T>) -> usize {
        let key = Arc::as_ptr(&value) as usize;
        self.lock().insert(key, value);
        key
    }

    /// The value behind a live handle.
    pub fn get(&self, handle: usize) -> Option<Arc<T>> {
        self.lock().get(&handle).cloned()
    }

    /// Unregisters a handle; later lookups fail.
    pub fn remove(&self, handle: usize) -> Option<Arc<T>> {
        self.lock().remove(&handle)
    }
}
