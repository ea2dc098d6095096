//! A value that whichever thread claims it works on, and a flag that says
//! work is waiting: a driver runs its turns on the thread that delivers
//! its messages when nobody else runs one (see ARCHITECTURE.md "Threads").
//!
//! The protocol, free of lost wake-ups: a thread with work for the value
//! first queues it (elsewhere), then marks the claim pending, then calls
//! [`Claim::run`]. `run` claims the value without blocking (a thread that
//! finds it taken leaves at once: the holder will see the mark), clears
//! the mark while holding it, runs a turn (which takes everything queued),
//! releases it, and looks at the mark again. A mark set while the holder
//! ran is thus seen either by the holder's turn (set before the holder
//! cleared it) or by its look after releasing (set after).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, TryLockError};

/// See the module documentation.
pub(crate) struct Claim<T> {
    value: Mutex<Option<T>>,
    pending: AtomicBool,
    /// Look at the mark again after releasing the value. Always on, except
    /// in the test that shows a command is lost without it.
    recheck: bool,
}

/// How a call of [`Claim::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// Nothing is pending, or another thread holds the value and will see
    /// the mark when it releases it.
    Settled,
    /// Still pending after the most turns this caller may run: the caller
    /// hands the rest to someone else (the driver's task).
    MorePending,
}

impl<T> Claim<T> {
    pub(crate) fn new(value: T) -> Claim<T> {
        Claim {
            value: Mutex::new(Some(value)),
            pending: AtomicBool::new(false),
            recheck: true,
        }
    }

    /// A claim whose holder does not look at the mark after releasing
    /// (shows what that look is for).
    #[cfg(test)]
    pub(crate) fn without_recheck(value: T) -> Claim<T> {
        Claim {
            recheck: false,
            ..Claim::new(value)
        }
    }

    /// Says that work for the value is queued.
    pub(crate) fn mark_pending(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Claims the value if it is free and runs `turn` on it, which takes
    /// everything queued (so the mark is cleared first); false, without
    /// running `turn`, when another thread holds it. Follow with
    /// [`Claim::run`] (the look after releasing).
    pub(crate) fn try_turn(&self, turn: impl FnOnce(&mut Option<T>)) -> bool {
        let mut slot = match self.value.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        self.pending.store(false, Ordering::SeqCst);
        if slot.is_some() {
            turn(&mut slot);
        }
        true
    }

    /// Runs `turn` on the value while work is marked pending and the value
    /// is free, at most `max_turns` times. `turn` gets the slot: taking
    /// the value out of it ends the value (later turns are not run). Never
    /// blocks on the value.
    /// Runs `f` on the value when the claim is free and nothing is pending
    /// (the pending work must come first, in a turn); the flag is left as
    /// it was. False when the claim is taken or work is pending, and
    /// otherwise what `f` returns. The caller looks again with [`Claim::run`]
    /// after, for work a sender left while `f` held the claim.
    pub(crate) fn try_quiet(&self, f: impl FnOnce(&mut Option<T>) -> bool) -> bool {
        if self.pending.load(Ordering::SeqCst) {
            return false;
        }
        let mut slot = match self.value.try_lock() {
            Ok(slot) => slot,
            Err(TryLockError::WouldBlock) => return false,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if self.pending.load(Ordering::SeqCst) {
            return false;
        }
        f(&mut slot)
    }

    pub(crate) fn run(&self, max_turns: usize, mut turn: impl FnMut(&mut Option<T>)) -> Ran {
        let mut turns = 0;
        while self.pending.load(Ordering::SeqCst) {
            if turns == max_turns {
                return Ran::MorePending;
            }
            let mut slot = match self.value.try_lock() {
                Ok(slot) => slot,
                Err(TryLockError::WouldBlock) => return Ran::Settled,
                // A turn panicked while holding the value: its owner
                // removed it (see the caller), nothing is left to run.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
            };
            self.pending.store(false, Ordering::SeqCst);
            if slot.is_none() {
                return Ran::Settled;
            }
            turn(&mut slot);
            turns += 1;
            drop(slot);
            if !self.recheck {
                return Ran::Settled;
            }
        }
        Ran::Settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Thread A holds the claim in a long turn while thread B queues an
    /// item and finds the claim taken; returns whether B's item was taken
    /// by the time A's `run` returned.
    fn queued_while_held_is_taken(claim: Claim<Vec<u32>>) -> bool {
        let claim = Arc::new(claim);
        let queue = Arc::new(Mutex::new(Vec::new()));
        let in_turn = Arc::new(Barrier::new(2));
        let queued = Arc::new(Barrier::new(2));
        let holder = {
            let (claim, queue, in_turn, queued) = (
                claim.clone(),
                queue.clone(),
                in_turn.clone(),
                queued.clone(),
            );
            std::thread::spawn(move || {
                queue.lock().unwrap().push(1);
                claim.mark_pending();
                let mut first = true;
                claim.run(usize::MAX, |slot| {
                    let taken: Vec<u32> = std::mem::take(&mut *queue.lock().unwrap());
                    slot.as_mut().unwrap().extend(taken);
                    if first {
                        first = false;
                        in_turn.wait();
                        queued.wait();
                    }
                });
            })
        };
        in_turn.wait();
        queue.lock().unwrap().push(2);
        claim.mark_pending();
        assert_eq!(claim.run(usize::MAX, |_| unreachable!()), Ran::Settled);
        queued.wait();
        holder.join().unwrap();
        let slot = claim.value.lock().unwrap();
        slot.as_ref().unwrap().contains(&2)
    }

    #[test]
    fn work_queued_while_another_thread_holds_the_claim_runs_before_it_leaves() {
        assert!(queued_while_held_is_taken(Claim::new(Vec::new())));
    }

    #[test]
    fn without_the_look_after_releasing_work_queued_meanwhile_is_lost() {
        assert!(!queued_while_held_is_taken(Claim::without_recheck(
            Vec::new()
        )));
    }

    #[test]
    fn a_turn_that_takes_the_value_ends_it() {
        let claim = Claim::new(5);
        claim.mark_pending();
        let mut seen = Vec::new();
        claim.run(usize::MAX, |slot| seen.push(slot.take().unwrap()));
        claim.mark_pending();
        assert_eq!(claim.run(usize::MAX, |_| unreachable!()), Ran::Settled);
        assert_eq!(seen, vec![5]);
        assert!(claim.value.lock().unwrap().is_none());
    }

    #[test]
    fn a_caller_runs_at_most_its_turns_and_says_more_is_pending() {
        let claim = Claim::new(0u32);
        claim.mark_pending();
        let ran = claim.run(2, |slot| {
            *slot.as_mut().unwrap() += 1;
            // Work keeps arriving during each turn.
            claim.mark_pending();
        });
        assert_eq!(ran, Ran::MorePending);
        assert_eq!(*claim.value.lock().unwrap(), Some(2));
    }
}
