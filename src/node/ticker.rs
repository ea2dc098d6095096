//! The process's one tick source: a single task on the library's runtime
//! wakes every node's driver when its next tick is due, instead of a timer
//! per node. The driver still counts the ticks itself from the clock (see
//! `Driver::catch_up_clock`); the ticker only decides when it looks.
//!
//! Each registered node has a period (its tick) and a next due time, kept in
//! the list of its due time's slot (due times are rounded to a slot, see
//! [`GRANULARITY`]; the slots are ordered): the ticker sleeps until the
//! earliest slot, looks at every node due by then and schedules each one
//! period later. A node moves from one slot's list to another's with a
//! push, where a heap of every node would cost a sift through a thousand
//! items, each a cache miss. A node that needs no ticks
//! (a quiescent group) pauses its registration and resumes it when it
//! wakes: a paused node costs the ticker nothing.
//!
//! A due node with a [`TickTurn`] has its turn run by the ticker itself
//! when no other thread runs one (the node's claim, see `node::claim`): no
//! wake-up of the node's task, no poll of it. The turns of one pass hold
//! their peer writes and pool wake-ups until the pass ends, so the
//! heartbeats of every group leave together. A node whose claim is taken,
//! or that has no turn, is woken instead (a `Notify` permit, so a wake-up
//! is never lost) and its task runs the turn.

use std::collections::btree_map::Entry as SlotEntry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use tokio::time::Instant;

/// A node's turn, run by the ticker on its own thread.
pub(crate) trait TickTurn: Send + Sync {
    /// Runs the node's turn on this thread when no other thread runs one
    /// (the turn catches the node up with the clock); false, without
    /// running anything, when another thread holds the node.
    fn tick_turn(&self) -> bool;
}

/// Turns the ticker ran itself (see [`TickTurn`]).
static TICKER_TURNS: AtomicU64 = AtomicU64::new(0);

/// How many node turns of this process the ticker ran on its own thread
/// instead of waking the node's task for them.
pub fn ticker_turns() -> u64 {
    TICKER_TURNS.load(Ordering::Relaxed)
}

/// One registered node.
struct Registration {
    period: Duration,
    /// Periods between two wake-ups (see [`ClockHandle::set_stride`]).
    stride: u32,
    wake: Arc<Notify>,
    /// The node's turn (see [`ClockHandle::set_turn`]); weak: the node
    /// owns its registration, not the other way round.
    turn: Option<Weak<dyn TickTurn>>,
    /// Bumped by every pause and resume: wake-ups of another generation
    /// are stale and skipped.
    generation: u64,
    paused: bool,
}

#[derive(Default)]
struct Schedule {
    due: DueTimes,
    nodes: Registrations,
}

/// The wake-ups to come: (registration id, generation) by due time, each
/// due time a slot (see [`Ticker::slot`]), so that the nodes due together
/// share one list.
#[derive(Default)]
struct DueTimes {
    slots: BTreeMap<Instant, Vec<(u64, u64)>>,
    /// Lists emptied, kept for the next slots.
    spare: Vec<Vec<(u64, u64)>>,
}

/// Most emptied lists kept for reuse.
const SPARE_LISTS: usize = 64;

impl DueTimes {
    fn push(&mut self, due: Instant, id: u64, generation: u64) {
        match self.slots.entry(due) {
            SlotEntry::Occupied(list) => list.into_mut().push((id, generation)),
            SlotEntry::Vacant(slot) => {
                let mut list = self.spare.pop().unwrap_or_default();
                list.push((id, generation));
                slot.insert(list);
            }
        }
    }

    /// The earliest due time.
    fn first(&self) -> Option<Instant> {
        self.slots.first_key_value().map(|(at, _)| *at)
    }

    /// Takes the earliest slot's wake-ups, in the order they were added.
    fn take_first(&mut self) -> Option<Vec<(u64, u64)>> {
        self.slots.pop_first().map(|(_, list)| list)
    }

    /// Keeps a list taken by [`DueTimes::take_first`] for reuse.
    fn recycle(&mut self, mut list: Vec<(u64, u64)>) {
        if self.spare.len() < SPARE_LISTS {
            list.clear();
            self.spare.push(list);
        }
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (Instant, u64, u64)> + '_ {
        self.slots
            .iter()
            .flat_map(|(at, list)| list.iter().map(move |&(id, g)| (*at, id, g)))
    }
}

/// The registrations by id, an id being a position in one vector: every
/// wake-up of every node looks its registration up, and a position costs
/// one load where a hash table's probe costs two, each a cache miss with
/// 1,000 nodes. A position freed is reused; the generations of its
/// registrations keep counting across them, so the wake-ups of one
/// never match the next.
#[derive(Default)]
struct Registrations {
    entries: Vec<Entry>,
    free: Vec<u64>,
}

#[derive(Default)]
struct Entry {
    /// The generation the next registration here starts at.
    next_generation: u64,
    node: Option<Registration>,
}

impl Registrations {
    /// Stores `node` (its generation set to its position's next) and
    /// returns its id and generation.
    fn insert(&mut self, mut node: Registration) -> (u64, u64) {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.entries.push(Entry::default());
                (self.entries.len() - 1) as u64
            }
        };
        let entry = &mut self.entries[id as usize];
        node.generation = entry.next_generation;
        let generation = node.generation;
        entry.node = Some(node);
        (id, generation)
    }

    fn get(&self, id: &u64) -> Option<&Registration> {
        self.entries.get(*id as usize)?.node.as_ref()
    }

    fn get_mut(&mut self, id: &u64) -> Option<&mut Registration> {
        self.entries.get_mut(*id as usize)?.node.as_mut()
    }

    fn remove(&mut self, id: &u64) {
        let Some(entry) = self.entries.get_mut(*id as usize) else {
            return;
        };
        if let Some(node) = entry.node.take() {
            entry.next_generation = node.generation + 1;
            self.free.push(*id);
        }
    }

    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = &Registration> {
        self.entries.iter().filter_map(|e| e.node.as_ref())
    }
}

/// Wake-ups are rounded up to a multiple of this from the ticker's start,
/// so that nodes with the same period fire together: one ticker wake-up
/// serves many nodes. A tick is late by less than this (ticks are
/// `election_timeout_ms / 20`, at least 1 ms; the driver catches up on the
/// clock anyway).
const GRANULARITY: Duration = Duration::from_millis(2);

/// The tick source (one per process, see [`ticker`]).
pub(crate) struct Ticker {
    epoch: Instant,
    schedule: Mutex<Schedule>,
    /// Wakes the ticker's task when an earlier deadline was added.
    changed: Notify,
}

static TICKER: OnceLock<Arc<Ticker>> = OnceLock::new();

/// The process's ticker, its task started on the library's runtime on first
/// use.
pub(crate) fn ticker() -> Arc<Ticker> {
    TICKER
        .get_or_init(|| {
            let ticker = Arc::new(Ticker {
                epoch: Instant::now(),
                schedule: Mutex::new(Schedule::default()),
                changed: Notify::new(),
            });
            super::runtime::handle().spawn(ticker.clone().run());
            ticker
        })
        .clone()
}

impl Ticker {
    fn lock(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `at`, rounded up to the ticker's granularity.
    fn slot(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let g = GRANULARITY.as_nanos();
        let slots = since.div_ceil(g);
        self.epoch + Duration::from_nanos((slots * g).min(u64::MAX as u128) as u64)
    }

    /// Registers a node ticking every `period`, first due after `first`.
    pub(crate) fn register(self: &Arc<Self>, period: Duration, first: Duration) -> ClockHandle {
        let wake = Arc::new(Notify::new());
        let mut s = self.lock();
        let (id, generation) = s.nodes.insert(Registration {
            period: period.max(Duration::from_millis(1)),
            stride: 1,
            wake: wake.clone(),
            turn: None,
            generation: 0,
            paused: false,
        });
        let due = self.slot(Instant::now() + first);
        s.due.push(due, id, generation);
        drop(s);
        self.changed.notify_one();
        ClockHandle {
            ticker: self.clone(),
            id,
            wake,
        }
    }

    /// Runs the turn of (or wakes) every node that is due, and returns when
    /// the next one is.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let next = self.take_due(now, &mut due);
        if due.is_empty() {
            return next;
        }
        // One write per connection and one wake-up per pool for all the
        // turns of this pass (the guards end after the last turn).
        let _held = (
            crate::transport::hold_peer_writes(),
            crate::worker_pool::hold_wakes(),
        );
        let mut ran = 0;
        for (turn, id) in due {
            if turn
                .and_then(|t| t.upgrade())
                .is_some_and(|t| t.tick_turn())
            {
                ran += 1;
            } else if let Some(node) = self.lock().nodes.get(&id) {
                node.wake.notify_one();
            }
        }
        TICKER_TURNS.fetch_add(ran, Ordering::Relaxed);
        next
    }

    /// Moves every node due by `now` into `due` (its turn and its id) and
    /// schedules its next time; returns when the next node is due. The
    /// turns run after the schedule's lock is released: a turn changes its
    /// node's registration.
    fn take_due(
        &self,
        now: Instant,
        due_nodes: &mut Vec<(Option<Weak<dyn TickTurn>>, u64)>,
    ) -> Option<Instant> {
        let mut s = self.lock();
        loop {
            let due = s.due.first()?;
            if due > now {
                return Some(due);
            }
            let list = s.due.take_first()?;
            for &(id, generation) in &list {
                let Some(node) = s.nodes.get(&id) else {
                    continue;
                };
                if node.paused || node.generation != generation {
                    continue;
                }
                due_nodes.push((node.turn.clone(), id));
                // A late ticker does not fire a burst: the wake-ups that
                // passed are skipped (the driver counts the missed ticks
                // itself), and the next keeps the node's phase. It is
                // later than `now`: never in the slot being taken.
                let every = node.period.saturating_mul(node.stride.max(1));
                let mut next = due + every;
                if next <= now {
                    let missed = now.duration_since(due).as_nanos() / every.as_nanos().max(1);
                    let skip = u32::try_from(missed + 1).unwrap_or(u32::MAX);
                    next = due + every.saturating_mul(skip);
                }
                let next = self.slot(next);
                s.due.push(next, id, generation);
            }
            s.due.recycle(list);
        }
    }

    async fn run(self: Arc<Self>) {
        loop {
            let next = self.fire_due(Instant::now());
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }

    /// Nodes registered and not paused.
    #[cfg(test)]
    fn active(&self) -> usize {
        self.lock().nodes.values().filter(|n| !n.paused).count()
    }
}

/// A node's registration with the process's ticker; dropping it
/// unregisters the node.
///
/// The seam for quiescence: a group that needs no ticks calls
/// [`ClockHandle::pause`] (the ticker then never wakes it; it still wakes
/// on any command, such as a message or a proposal), and
/// [`ClockHandle::resume`] when it wakes up, before it relies on ticks
/// again. The driver counts ticks from the clock, so the ticks of the
/// paused span are all delivered at its next turn: a quiescent group that
/// resumes must be ready for `Raft::advance(n)` with a large `n`.
pub struct ClockHandle {
    ticker: Arc<Ticker>,
    id: u64,
    wake: Arc<Notify>,
}

impl ClockHandle {
    /// Has the ticker run `turn` when this node is due instead of waking
    /// its task (which it still does while another thread holds the node).
    pub(crate) fn set_turn(&self, turn: Weak<dyn TickTurn>) {
        if let Some(node) = self.ticker.lock().nodes.get_mut(&self.id) {
            node.turn = Some(turn);
        }
    }

    /// Stops the ticker from waking this node until [`ClockHandle::resume`].
    pub fn pause(&self) {
        let mut s = self.ticker.lock();
        if let Some(node) = s.nodes.get_mut(&self.id) {
            if !node.paused {
                node.paused = true;
                node.generation += 1;
            }
        }
    }

    /// Wakes this node again every period, the first time one period from
    /// now. Does nothing unless paused.
    pub fn resume(&self) {
        let mut s = self.ticker.lock();
        let Some(node) = s.nodes.get_mut(&self.id) else {
            return;
        };
        if !node.paused {
            return;
        }
        node.paused = false;
        self.wake_one_period_from_now(s);
    }

    /// Wakes the node once every `stride` periods (1: every period): a
    /// longer stride from the next wake-up on, a shorter one from one
    /// period from now. The node still counts every tick by the clock; a
    /// stride only lets a node whose ticks change nothing soon (a
    /// follower's election timer) sleep through them.
    pub fn set_stride(&self, stride: u32) {
        let stride = stride.max(1);
        let mut s = self.ticker.lock();
        let Some(node) = s.nodes.get_mut(&self.id) else {
            return;
        };
        let shorter = stride < node.stride;
        node.stride = stride;
        if !shorter || node.paused {
            return;
        }
        self.wake_one_period_from_now(s);
    }

    /// Wakes the node every `stride` periods, the first time after `first`
    /// (a node whose wake-ups must fall on given ticks, such as a leader's
    /// heartbeats, starts its stride on one).
    pub fn set_stride_from(&self, stride: u32, first: Duration) {
        let mut s = self.ticker.lock();
        let Some(node) = s.nodes.get_mut(&self.id) else {
            return;
        };
        node.stride = stride.max(1);
        if node.paused {
            return;
        }
        node.generation += 1;
        let generation = node.generation;
        let due = self.ticker.slot(Instant::now() + first);
        s.due.push(due, self.id, generation);
        drop(s);
        self.ticker.changed.notify_one();
    }

    /// Schedules this node's next wake-up one period from now, under a new
    /// generation (its earlier wake-ups go stale), and has the ticker
    /// look again.
    fn wake_one_period_from_now(&self, mut s: MutexGuard<'_, Schedule>) {
        let Some(node) = s.nodes.get_mut(&self.id) else {
            return;
        };
        node.generation += 1;
        let generation = node.generation;
        let due = self.ticker.slot(Instant::now() + node.period);
        s.due.push(due, self.id, generation);
        drop(s);
        self.ticker.changed.notify_one();
    }

    /// True while paused.
    pub fn is_paused(&self) -> bool {
        self.ticker
            .lock()
            .nodes
            .get(&self.id)
            .is_some_and(|n| n.paused)
    }

    /// Completes when the ticker wakes this node (at once if it did since
    /// the last wait).
    pub(crate) fn tick(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }
}

impl Drop for ClockHandle {
    fn drop(&mut self) {
        self.ticker.lock().nodes.remove(&self.id);
    }
}

impl std::fmt::Debug for ClockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockHandle").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh ticker (not started) and a current-thread runtime with time.
    fn ticker_on_a_runtime() -> (Arc<Ticker>, tokio::runtime::Runtime) {
        let ticker = Arc::new(Ticker {
            epoch: Instant::now(),
            schedule: Mutex::new(Schedule::default()),
            changed: Notify::new(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        (ticker, rt)
    }

    #[test]
    fn due_nodes_are_woken_and_paused_ones_are_not() {
        let (ticker, rt) = ticker_on_a_runtime();
        rt.block_on(async {
            let a = ticker.register(Duration::from_millis(10), Duration::ZERO);
            let b = ticker.register(Duration::from_millis(10), Duration::ZERO);
            b.pause();
            assert!(b.is_paused());
            assert_eq!(ticker.active(), 1);
            let next = ticker.fire_due(Instant::now() + Duration::from_millis(5));
            assert!(next.is_some());
            // a was notified: its wait returns at once; b's would not.
            tokio::time::timeout(Duration::from_millis(100), a.tick())
                .await
                .expect("a is woken");
            assert!(
                tokio::time::timeout(Duration::from_millis(30), b.tick())
                    .await
                    .is_err(),
                "a paused node is not woken"
            );
            b.resume();
            assert_eq!(ticker.active(), 2);
            ticker.fire_due(Instant::now() + Duration::from_millis(20));
            tokio::time::timeout(Duration::from_millis(100), b.tick())
                .await
                .expect("b is woken after resume");
            drop(a);
            assert_eq!(ticker.active(), 1);
        });
    }

    #[test]
    fn a_registration_in_a_reused_place_is_not_woken_by_its_predecessors_wake_ups() {
        let (ticker, rt) = ticker_on_a_runtime();
        rt.block_on(async {
            let first = ticker.register(Duration::from_millis(10), Duration::ZERO);
            let id = first.id;
            drop(first);
            let next = ticker.register(Duration::from_millis(10), Duration::from_secs(3600));
            assert_eq!(next.id, id, "the place is reused");
            ticker.fire_due(Instant::now() + Duration::from_millis(20));
            assert!(
                tokio::time::timeout(Duration::from_millis(30), next.tick())
                    .await
                    .is_err(),
                "the wake-up due for the dropped registration is not the new one's"
            );
        });
    }

    #[test]
    fn a_node_with_a_stride_is_woken_once_every_stride_periods() {
        let (ticker, rt) = ticker_on_a_runtime();
        rt.block_on(async {
            let period = Duration::from_millis(10);
            let every = ticker.register(period, Duration::ZERO);
            let strided = ticker.register(period, Duration::ZERO);
            strided.set_stride(3);
            let woken = |h: &ClockHandle| {
                let h = h.wake.clone();
                async move {
                    tokio::time::timeout(Duration::from_millis(1), h.notified())
                        .await
                        .is_ok()
                }
            };
            let base = Instant::now();
            let (mut every_wakes, mut strided_wakes) = (0, 0);
            for k in 0..12u32 {
                ticker.fire_due(base + period * k + period / 2);
                every_wakes += u32::from(woken(&every).await);
                strided_wakes += u32::from(woken(&strided).await);
            }
            assert_eq!(every_wakes, 12, "stride 1: every period");
            assert!(
                (3..=5).contains(&strided_wakes),
                "stride 3: about one in three periods, got {strided_wakes}"
            );
            // Back to every period: woken within the next two periods.
            strided.set_stride(1);
            let now = Instant::now();
            ticker.fire_due(now + period * 2);
            assert!(woken(&strided).await, "a shorter stride applies at once");
        });
    }

    /// The due times of `id`'s live wake-ups.
    fn due_times(ticker: &Ticker, id: u64) -> Vec<Instant> {
        let s = ticker.lock();
        let generation = s.nodes.get(&id).unwrap().generation;
        let mut due: Vec<Instant> = s
            .due
            .iter()
            .filter(|&(_, i, g)| i == id && g == generation)
            .map(|(at, _, _)| at)
            .collect();
        due.sort();
        due
    }

    #[test]
    fn a_stride_started_from_a_given_time_keeps_that_phase_even_when_the_ticker_is_late() {
        let (ticker, rt) = ticker_on_a_runtime();
        rt.block_on(async {
            let period = Duration::from_millis(10);
            let node = ticker.register(period, Duration::from_secs(3600));
            let from = Duration::from_millis(35);
            let asked = Instant::now();
            node.set_stride_from(2, from);
            let first = due_times(&ticker, node.id);
            assert_eq!(first.len(), 1, "one live wake-up, the old one stale");
            let first = first[0];
            assert!(first >= asked + from && first <= Instant::now() + from + GRANULARITY);
            // The ticker fires it 55 ms late (more than two strides): the
            // next wake-up is still a whole number of strides after it.
            ticker.fire_due(first + Duration::from_millis(55));
            let next = due_times(&ticker, node.id);
            assert_eq!(next.len(), 1);
            let gap = next[0] - first;
            assert!(gap > Duration::from_millis(55), "in the future: {gap:?}");
            assert_eq!(
                gap.as_nanos() % (period * 2).as_nanos(),
                0,
                "on the node's phase: {gap:?}"
            );
        });
    }
}
