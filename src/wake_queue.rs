//! A many-producer, many-consumer queue for the library's own threads (the
//! queue of lanes in front of the log writer and FSM pools).
//!
//! Why not a crossbeam channel there: its blocking `recv` spins and then
//! calls `sched_yield` several times before it parks. On a small machine
//! that runs several replicas, every such yield hands the core to another
//! process: profiles of a 3-replica group on 2 cores showed 9% of the
//! leader's time in `sched_yield` and dozens of context switches per
//! write. This queue parks at once on a condition variable, a sender wakes
//! one consumer only when one sleeps (and not yet woken), and a consumer
//! takes what is queued in one lock. Every consumer parks on the queue
//! itself: a pool thread that takes an item hands nothing over to another.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    items: Vec<T>,
    senders: usize,
    receiver_alive: bool,
    /// Consumers parked and not woken yet.
    sleeping: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The queue's invariants hold between statements: a panic elsewhere
        // while the lock was held leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producing side; clone it for more producers.
pub(crate) struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming side (share it between consumer threads).
pub(crate) struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A new unbounded queue.
pub(crate) fn queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: Vec::new(),
            senders: 1,
            receiver_alive: true,
            sleeping: 0,
        }),
        wake: Condvar::new(),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

impl<T> QueueSender<T> {
    /// Queues `item`; gives it back when the receiver is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let mut st = self.shared.lock();
        if !st.receiver_alive {
            return Err(item);
        }
        st.items.push(item);
        let wake = st.sleeping > 0;
        if wake {
            st.sleeping -= 1;
        }
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl<T> QueueSender<T> {
    /// Queues `item` without waking anyone; true when a consumer sleeps,
    /// to be woken later with [`QueueSender::wake_one`]. Gives the item
    /// back when the receiver is gone.
    pub(crate) fn send_quiet(&self, item: T) -> Result<bool, T> {
        let mut st = self.shared.lock();
        if !st.receiver_alive {
            return Err(item);
        }
        st.items.push(item);
        Ok(st.sleeping > 0)
    }

    /// Wakes one sleeping consumer if anything is queued.
    pub(crate) fn wake_one(&self) {
        let mut st = self.shared.lock();
        let wake = st.sleeping > 0 && !st.items.is_empty();
        if wake {
            st.sleeping -= 1;
        }
        drop(st);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Consumers parked and not woken yet (tests).
    #[cfg(test)]
    pub(crate) fn sleeping_consumers(&self) -> usize {
        self.shared.lock().sleeping
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }
}

impl<T> std::fmt::Debug for QueueSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueSender")
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        QueueSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.senders -= 1;
        let last = st.senders == 0;
        drop(st);
        if last {
            self.shared.wake.notify_all();
        }
    }
}

impl<T> QueueReceiver<T> {
    /// Waits until something is queued, then moves up to `max` items (the
    /// oldest) into `out`. False once every sender is gone and the queue is
    /// empty.
    pub(crate) fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> bool {
        let mut st = self.shared.lock();
        loop {
            if !st.items.is_empty() {
                if st.items.len() <= max && out.is_empty() {
                    std::mem::swap(out, &mut st.items);
                } else {
                    let n = st.items.len().min(max);
                    out.extend(st.items.drain(..n));
                }
                return true;
            }
            if st.senders == 0 {
                return false;
            }
            // A spurious wake-up leaves the count one too high: a later
            // sender then wakes nobody in vain, never too few.
            st.sleeping += 1;
            st = self.shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<T> QueueReceiver<T> {
    /// Moves up to `max` queued items (the oldest) into `out` without
    /// waiting; false when nothing was queued.
    pub(crate) fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> bool {
        let mut st = self.shared.lock();
        if st.items.is_empty() {
            return false;
        }
        let n = st.items.len().min(max);
        out.extend(st.items.drain(..n));
        true
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiver_alive = false;
        // Items left behind are dropped with the queue; the owners answer
        // them before dropping the receiver (see the FSM caller).
        let _ = std::mem::take(&mut st.items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_in_batches() {
        let (tx, rx) = queue();
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        let mut out = Vec::new();
        assert!(rx.recv_batch(&mut out, 4));
        assert_eq!(out, vec![0, 1, 2, 3]);
        out.clear();
        assert!(rx.recv_batch(&mut out, 100));
        assert_eq!(out, (4..10).collect::<Vec<_>>());
    }

    #[test]
    fn receiver_ends_when_every_sender_is_gone() {
        let (tx, rx) = queue::<u32>();
        let tx2 = tx.clone();
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut out = Vec::new();
            while rx.recv_batch(&mut out, usize::MAX) {
                got.append(&mut out);
            }
            got
        });
        for i in 0..1000 {
            if i % 2 == 0 { &tx } else { &tx2 }.send(i).unwrap();
        }
        drop(tx);
        drop(tx2);
        let got = t.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn several_consumers_share_the_items_and_all_end() {
        let (tx, rx) = queue::<u32>();
        let rx = std::sync::Arc::new(rx);
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    let (mut got, mut out) = (Vec::new(), Vec::new());
                    while rx.recv_batch(&mut out, 1) {
                        got.append(&mut out);
                    }
                    got
                })
            })
            .collect();
        for i in 0..3000 {
            tx.send(i).unwrap();
        }
        drop(tx);
        let mut all: Vec<u32> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn send_fails_once_the_receiver_is_gone() {
        let (tx, rx) = queue::<u32>();
        drop(rx);
        assert_eq!(tx.send(7), Err(7));
    }

    #[test]
    fn a_quiet_send_waits_for_its_wake() {
        let (tx, rx) = queue::<u32>();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            assert!(rx.recv_batch(&mut out, 10));
            seen_tx.send(out).unwrap();
        });
        while tx.shared.lock().sleeping == 0 {
            std::thread::yield_now();
        }
        assert_eq!(tx.send_quiet(5), Ok(true), "the consumer sleeps");
        let quiet = std::time::Duration::from_millis(50);
        assert!(seen_rx.recv_timeout(quiet).is_err(), "not woken yet");
        tx.wake_one();
        assert_eq!(seen_rx.recv().unwrap(), vec![5]);
        t.join().unwrap();
    }

    #[test]
    fn a_sleeping_receiver_is_woken() {
        let (tx, rx) = queue::<u32>();
        let t = std::thread::spawn(move || {
            let mut out = Vec::new();
            assert!(rx.recv_batch(&mut out, 10));
            out
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        tx.send(5).unwrap();
        assert_eq!(t.join().unwrap(), vec![5]);
    }
}
