//! The monotonic clock the node runtime reads: timers, leases and timeouts
//! compare its readings, never wall-clock time and never a count of timer
//! wake-ups (a busy or paused process delivers fewer of those than the time
//! that passed). A deterministic simulation gives each node its own clock,
//! with drift and pauses.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic clock: time since an arbitrary origin, never going back.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// `std::time::Instant` (CLOCK_MONOTONIC on Linux), measured from the first
/// use in this process.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The process's system clock, shared by every node.
pub fn system() -> Arc<dyn Clock> {
    static SYSTEM: OnceLock<Arc<SystemClock>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            Arc::new(SystemClock {
                origin: Instant::now(),
            })
        })
        .clone()
}
