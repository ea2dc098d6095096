//! Running many independent seeds on every core.

use std::sync::atomic::{AtomicU64, Ordering};

/// Calls `run(seed)` for every seed in `start..start + count`, on as many
/// threads as there are cores. Every seed is independent and deterministic,
/// so the thread schedule changes nothing but the order of the calls.
pub fn run_parallel(start: u64, count: u64, run: impl Fn(u64) + Sync) {
    let next = AtomicU64::new(start);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(count.max(1) as usize);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= start + count {
                    break;
                }
                run(seed);
            });
        }
    });
}
