//! Lanes on a shared pool of threads: the library's log writers and FSM
//! callers of every node of a process run on a few threads instead of a
//! thread each.
//!
//! A [`Lane`] is one node's ordered queue (its writes, or its callbacks).
//! Sending to an idle lane schedules it on its pool; a pool thread then takes
//! everything the lane has queued (up to the lane's batch size) and hands it
//! to the lane's handler in one call. A lane is scheduled at most once at a
//! time, so its items are handled in order and never on two threads at
//! once. A lane with more queued after a batch stays on its thread while no
//! other lane waits (no hand-off between threads for a busy node, as with a
//! thread of its own), and goes to the back of the pool's queue when one
//! does, so a busy lane cannot starve the others between batches. A slow
//! batch does hold its pool thread: the other lanes share the pool's
//! remaining threads meanwhile.
//!
//! A pool of one thread owned by a single lane is the dedicated thread a
//! node may ask for; a lane without a pool is stepped by its owner (the
//! deterministic simulation).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use crate::wake_queue::{queue, QueueSender};

/// Something a pool thread runs: a scheduled lane's next batch.
trait Scheduled: Send + Sync {
    fn run_batch(self: Arc<Self>);
    /// One batch on the current thread (see [`run_lanes_here`]).
    fn run_here(self: Arc<Self>);
    /// Queues the lane, kept for [`run_lanes_here`], on its pool instead.
    fn to_pool(self: Arc<Self>);
}

/// A set of threads running the batches of the lanes scheduled on it.
pub(crate) struct Pool {
    tx: QueueSender<Arc<dyn Scheduled>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pool")
    }
}

/// Most lanes a pool thread runs back to back under one hold of their
/// answers (so the first lane's replies wait for at most this many).
const LANES_PER_HOLD: usize = 16;

impl Pool {
    /// Starts `threads` threads named `name`. They end once the pool and
    /// every lane on it are gone (they are not joined: a lane's owner waits
    /// for the lane's work, see [`Lane::close_and_wait`], not for threads).
    pub(crate) fn start(name: &str, threads: usize) -> std::io::Result<Arc<Pool>> {
        let (tx, rx) = queue::<Arc<dyn Scheduled>>();
        let rx = Arc::new(rx);
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    // One lane at a time: the next idle thread takes the
                    // next lane.
                    let mut one = Vec::with_capacity(1);
                    while rx.recv_batch(&mut one, 1) {
                        // Lanes found queued after this one run under one
                        // hold of the answers they give: the replies of
                        // many groups' applies to one client connection
                        // leave in one write, not one per group.
                        let _answers = crate::transport::hold_replies();
                        let mut ran = 0;
                        while let Some(lane) = one.pop() {
                            lane.run_batch();
                            ran += 1;
                            if ran == LANES_PER_HOLD || !rx.try_recv_batch(&mut one, 1) {
                                break;
                            }
                        }
                    }
                })?;
        }
        Ok(Arc::new(Pool { tx }))
    }

    /// True when a scheduled lane waits for a thread.
    fn has_waiting(&self) -> bool {
        !self.tx.is_empty()
    }

    fn schedule(self: &Arc<Self>, lane: Arc<dyn Scheduled>) {
        // The receiver lives as long as any thread of the pool, and the
        // threads live as long as this sender: a send cannot fail.
        if !HELD.with(|h| h.borrow().depth > 0) {
            let _ = self.tx.send(lane);
            crate::stage_trace::record(crate::stage_trace::Stage::PoolWake, 0);
            return;
        }
        if let Ok(true) = self.tx.send_quiet(lane) {
            HELD.with(|h| h.borrow_mut().hold(self));
        }
    }
}

/// Wake-ups of pool threads held back on this thread (see [`hold_wakes`]).
#[derive(Default)]
struct Held {
    /// Open [`HeldWakes`] guards.
    depth: usize,
    /// Pools with work queued and a thread asleep, each once.
    pools: Vec<Arc<Pool>>,
    /// When the oldest held wake-up was due.
    since: Option<std::time::Instant>,
    /// This thread calls [`release_held_wakes`] before it sleeps (a tokio
    /// worker of the library's runtime).
    released_on_park: bool,
}

impl Held {
    fn hold(&mut self, pool: &Arc<Pool>) {
        if !self.pools.iter().any(|p| Arc::ptr_eq(p, pool)) {
            self.pools.push(pool.clone());
        }
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    fn release(&mut self) {
        self.since = None;
        if !self.pools.is_empty() {
            crate::stage_trace::record(crate::stage_trace::Stage::PoolWake, 0);
        }
        for pool in self.pools.drain(..) {
            pool.tx.wake_one();
        }
    }
}

thread_local! {
    static HELD: std::cell::RefCell<Held> = std::cell::RefCell::default();
    /// Lanes scheduled while a [`run_lanes_here`] guard lives, to run on
    /// this thread when it ends (None: no guard).
    static HERE: std::cell::RefCell<Option<Vec<Arc<dyn Scheduled>>>> =
        const { std::cell::RefCell::new(None) };
}

/// While the returned guard lives, a lane made to run on its sender
/// ([`Lane::new_on_sender`]) that this thread schedules from idle is not
/// queued on its pool: the guard's end runs its next batch on this thread
/// (after whatever the thread did meanwhile, such as a driver's turn that
/// holds the node's claim), saving a pool thread's wake-up. A batch that
/// leaves more queued hands the lane to its pool. Nested guards run the
/// lanes at the outermost's end.
pub(crate) fn run_lanes_here() -> RunHere {
    let outermost = HERE.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_some() {
            return false;
        }
        *h = Some(Vec::new());
        true
    });
    RunHere { outermost }
}

/// See [`run_lanes_here`].
pub(crate) struct RunHere {
    outermost: bool,
}

impl RunHere {
    /// Lanes wait for this guard's end.
    fn has_lanes(&self) -> bool {
        self.outermost && HERE.with(|h| h.borrow().as_ref().is_some_and(|l| !l.is_empty()))
    }
}

impl Drop for RunHere {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        // Taken first: what the lanes schedule while they run goes to the
        // pools as usual.
        let lanes = HERE.with(|h| h.borrow_mut().take()).unwrap_or_default();
        for lane in lanes {
            lane.run_here();
        }
    }
}

/// Keeps `lane` for this thread's [`run_lanes_here`] guard; false when
/// there is none.
fn offer_here(lane: Arc<dyn Scheduled>) -> Result<(), Arc<dyn Scheduled>> {
    HERE.with(|h| match h.borrow_mut().as_mut() {
        Some(lanes) => {
            lanes.push(lane);
            Ok(())
        }
        None => Err(lane),
    })
}

/// Longest a held wake-up waits for its thread's next [`HeldWakes`] to end
/// or for the thread to park.
const MAX_WAKE_HOLD: std::time::Duration = std::time::Duration::from_micros(100);

/// While the returned guard lives, work this thread schedules on a pool
/// wakes none of its sleeping threads: the wake-ups wait until the guard
/// ends (on a tokio worker that releases them before it parks: until
/// the oldest is [`MAX_WAKE_HOLD`] old or the worker runs out of work), and
/// then each pool is woken once. So a driver's turn is not preempted by the
/// pool thread it wakes, and the turns of many nodes that run back to back
/// share one wake-up of the FSM thread, which then takes their lanes one
/// after another.
pub(crate) fn hold_wakes() -> HeldWakes {
    HELD.with(|h| h.borrow_mut().depth += 1);
    HeldWakes(())
}

/// See [`hold_wakes`].
pub(crate) struct HeldWakes(());

impl Drop for HeldWakes {
    fn drop(&mut self) {
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            h.depth -= 1;
            let due = h.since.is_some_and(|t| t.elapsed() >= MAX_WAKE_HOLD);
            if h.depth == 0 && (due || !h.released_on_park) {
                h.release();
            }
        });
    }
}

/// Wakes the pools whose wake-ups this thread holds; a tokio worker calls
/// it before it parks (the runtime's `on_thread_park`), and from then on
/// holds wake-ups across guards.
pub(crate) fn release_held_wakes() {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.released_on_park = true;
        if h.depth == 0 {
            h.release();
        }
    });
}

/// Wakes the pools whose wake-ups this thread holds, now, inside a
/// [`hold_wakes`] guard or not; later work is held as before. For work
/// that is on a commit's path and whose thread would rather not wait for
/// the turn's end or the worker's park (a leader's own log write, once
/// its Appends have left).
pub(crate) fn wake_held_now() {
    HELD.with(|h| h.borrow_mut().release());
}

/// Wakes the pools whose wake-ups this thread holds, now, and stops
/// holding them past a guard's end until the thread parks through the
/// runtime again: called before a blocking wait. The wait may be for the
/// held work itself, and a tokio worker that blocks (`block_in_place`)
/// may come back as a thread of the blocking pool, which never calls the
/// runtime's park hook: a wake-up held there would never leave.
pub(crate) fn release_held_wakes_before_blocking() {
    // Lanes kept to run here go to their pools: the wait may be for them.
    let kept = HERE.with(|h| h.borrow_mut().as_mut().map(std::mem::take));
    for lane in kept.into_iter().flatten() {
        lane.to_pool();
    }
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.released_on_park = false;
        h.release();
    });
}

/// Handles one batch of a lane's items; true when the lane is finished (it
/// then refuses every later send, and the items still queued are handed
/// to the handler once more, to be answered).
pub(crate) type LaneHandler<T> = Box<dyn FnMut(Vec<T>) -> bool + Send>;

struct LaneState<T> {
    items: Vec<T>,
    /// In the pool's queue or running: not to be scheduled again.
    scheduled: bool,
    /// The thread running the lane's handler now, if any.
    running_on: Option<ThreadId>,
    accepting: bool,
    /// The handler reported the end, or the lane was closed and drained.
    finished: bool,
    /// Threads waiting on `idle` (only then is it signalled).
    waiters: usize,
}

/// One node's ordered queue on a pool (see the module documentation).
pub(crate) struct Lane<T> {
    state: Mutex<LaneState<T>>,
    /// Signalled when the lane goes idle or finishes.
    idle: Condvar,
    handler: Mutex<Option<LaneHandler<T>>>,
    pool: Option<Arc<Pool>>,
    max_batch: usize,
    /// Marks the running thread as doing this node's work (0: no mark).
    fsm_mark: usize,
    /// Scheduled from idle under [`run_lanes_here`], the lane runs its next
    /// batch on the sending thread.
    on_sender: bool,
}

impl<T: Send + 'static> Lane<T> {
    /// A lane on `pool` (None: stepped by its owner through [`Lane::take`]).
    /// `fsm_mark`: the node key a thread running the handler is marked with
    /// (see `node::reentry::enter_fsm`), 0 for none.
    pub(crate) fn new(
        pool: Option<Arc<Pool>>,
        max_batch: usize,
        fsm_mark: usize,
        handler: Option<LaneHandler<T>>,
    ) -> Arc<Lane<T>> {
        Arc::new(Lane {
            state: Mutex::new(LaneState {
                items: Vec::new(),
                scheduled: false,
                running_on: None,
                accepting: true,
                finished: false,
                waiters: 0,
            }),
            idle: Condvar::new(),
            handler: Mutex::new(handler),
            pool,
            max_batch: max_batch.max(1),
            fsm_mark,
            on_sender: false,
        })
    }

    /// [`Lane::new`] on `pool`, for a lane whose next batch may run on the
    /// thread that schedules it from idle, when that thread asks for it
    /// ([`run_lanes_here`]).
    pub(crate) fn new_on_sender(
        pool: Arc<Pool>,
        max_batch: usize,
        fsm_mark: usize,
        handler: LaneHandler<T>,
    ) -> Arc<Lane<T>> {
        let mut lane = Lane::new(Some(pool), max_batch, fsm_mark, Some(handler));
        if let Some(lane) = Arc::get_mut(&mut lane) {
            lane.on_sender = true;
        }
        lane
    }

    fn lock(&self) -> MutexGuard<'_, LaneState<T>> {
        // The state's invariants hold between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; gives it back once the lane no longer accepts.
    pub(crate) fn send(self: &Arc<Self>, item: T) -> Result<(), T> {
        let mut st = self.lock();
        if !st.accepting {
            return Err(item);
        }
        st.items.push(item);
        let schedule = !st.scheduled && self.pool.is_some();
        st.scheduled = true;
        drop(st);
        if schedule {
            let lane: Arc<dyn Scheduled> = self.clone();
            let lane = if self.on_sender {
                offer_here(lane).err()
            } else {
                Some(lane)
            };
            if let (Some(lane), Some(pool)) = (lane, &self.pool) {
                pool.schedule(lane);
            }
        }
        Ok(())
    }

    /// Takes up to `max` queued items (the oldest) without waiting: the
    /// stepped lane's consumer.
    pub(crate) fn take(&self, max: usize) -> Vec<T> {
        let mut st = self.lock();
        let n = st.items.len().min(max);
        st.items.drain(..n).collect()
    }

    /// Refuses every later send and takes whatever is queued, in one step.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut st = self.lock();
        st.accepting = false;
        std::mem::take(&mut st.items)
    }

    /// Refuses later sends and waits until everything queued was handled
    /// (or the handler finished the lane). Returns at once when called from
    /// the lane's own handler, which cannot wait for itself. Before it
    /// waits, the wake-ups and kept lanes this thread holds leave (see
    /// [`release_held_wakes_before_blocking`]): the awaited work may be
    /// among them.
    pub(crate) fn close_and_wait(&self) {
        let mut st = self.lock();
        st.accepting = false;
        self.wait_while(st, |st| st.scheduled || !st.items.is_empty());
    }

    /// Waits until the handler has finished the lane (not from the handler
    /// itself: returns at once there). Lets this thread's held wake-ups and
    /// kept lanes go first, as [`Lane::close_and_wait`] does.
    pub(crate) fn wait_finished(&self) {
        let st = self.lock();
        self.wait_while(st, |st| {
            st.accepting || st.scheduled || !st.items.is_empty()
        });
    }

    /// Waits while the lane is not finished and `busy` holds, releasing
    /// this thread's held wake-ups and kept lanes before the first wait;
    /// returns at once on a stepped lane or in the lane's own handler.
    fn wait_while<'a>(
        &'a self,
        mut st: MutexGuard<'a, LaneState<T>>,
        busy: impl Fn(&LaneState<T>) -> bool,
    ) {
        if self.pool.is_none() {
            return;
        }
        let me = std::thread::current().id();
        let mut released = false;
        while !st.finished && busy(&st) {
            if st.running_on == Some(me) {
                return;
            }
            if !released {
                released = true;
                drop(st);
                release_held_wakes_before_blocking();
                st = self.lock();
                continue;
            }
            st.waiters += 1;
            st = self.idle.wait(st).unwrap_or_else(|p| p.into_inner());
            st.waiters -= 1;
        }
    }
}

impl<T: Send + 'static> Scheduled for Lane<T> {
    fn run_batch(self: Arc<Self>) {
        while self.run_one(true) {}
    }

    fn run_here(self: Arc<Self>) {
        self.run_one(false);
    }

    fn to_pool(self: Arc<Self>) {
        if let Some(pool) = self.pool.clone() {
            pool.schedule(self);
        }
    }
}

impl<T: Send + 'static> Lane<T> {
    /// Runs the lane's next batch on this thread; true when the lane has
    /// more and stays on this thread (`stay`: while no other lane waits),
    /// else it is idle or handed to its pool.
    fn run_one(self: &Arc<Self>, stay: bool) -> bool {
        // Lanes the handler asks to run on this thread run once this lane
        // is idle or handed over, never while it waits for this thread:
        // their callbacks may wait for this lane's work.
        let here = run_lanes_here();
        let batch = {
            let mut st = self.lock();
            st.running_on = Some(std::thread::current().id());
            let n = st.items.len().min(self.max_batch);
            if n == st.items.len() {
                std::mem::take(&mut st.items)
            } else {
                st.items.drain(..n).collect()
            }
        };
        let finished = self.handle(batch);
        let mut st = self.lock();
        st.running_on = None;
        st.finished |= finished;
        let more = !st.finished && !st.items.is_empty();
        if st.finished {
            st.items.clear();
        }
        let stay = stay && !here.has_lanes();
        if more && stay && !self.pool.as_ref().is_some_and(|p| p.has_waiting()) {
            // Nobody else waits: go on here, without a hand-off.
            return true;
        }
        let hand_over = more && self.pool.is_some();
        st.scheduled = hand_over;
        let waiters = st.waiters > 0;
        drop(st);
        if waiters {
            self.idle.notify_all();
        }
        if hand_over {
            if let Some(pool) = &self.pool {
                pool.schedule(self.clone());
            }
        }
        false
    }
}

impl<T: Send + 'static> Lane<T> {
    /// Runs the handler on `batch`; true when it finished the lane.
    fn handle(&self, batch: Vec<T>) -> bool {
        let _mark = (self.fsm_mark != 0).then(|| crate::node::reentry::enter_fsm(self.fsm_mark));
        let mut handler = self.handler.lock().unwrap_or_else(|p| p.into_inner());
        match handler.as_mut() {
            Some(handle) if !batch.is_empty() => {
                let finished = handle(batch);
                if finished {
                    let rest = self.close();
                    if !rest.is_empty() {
                        handle(rest);
                    }
                    // Nothing runs on this lane any more: drop what the
                    // handler owns (the node's state machine, its log).
                    handler.take();
                }
                finished
            }
            _ => false,
        }
    }
}

/// The process's shared pools and their sizes.
pub(crate) mod shared {
    use super::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};

    /// Log writer threads shared by the nodes of the process (default).
    /// Elections after a server failure make every group that lost its
    /// leader save a vote (two fsyncs each) at once; concurrent fsyncs share
    /// the file system's journal commits, so more writer threads end such a
    /// storm sooner.
    pub const DEFAULT_WRITER_THREADS: usize = 8;
    /// FSM caller threads shared by the nodes of the process (default).
    pub const DEFAULT_FSM_THREADS: usize = 2;

    static WRITER_THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_WRITER_THREADS);
    static FSM_THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_FSM_THREADS);
    static WRITERS: OnceLock<Arc<Pool>> = OnceLock::new();
    static FSMS: OnceLock<Arc<Pool>> = OnceLock::new();

    /// Sets the sizes of the shared pools (0 keeps a default). False once
    /// either pool has started: the sizes are then fixed.
    pub fn configure(writer_threads: usize, fsm_threads: usize) -> bool {
        if WRITERS.get().is_some() || FSMS.get().is_some() {
            return false;
        }
        if writer_threads > 0 {
            WRITER_THREADS.store(writer_threads, Ordering::Relaxed);
        }
        if fsm_threads > 0 {
            FSM_THREADS.store(fsm_threads, Ordering::Relaxed);
        }
        true
    }

    fn get(
        cell: &'static OnceLock<Arc<Pool>>,
        name: &str,
        size: &AtomicUsize,
    ) -> std::io::Result<Arc<Pool>> {
        if let Some(pool) = cell.get() {
            return Ok(pool.clone());
        }
        let pool = Pool::start(name, size.load(Ordering::Relaxed))?;
        // A racing starter's pool loses: its threads end with it.
        Ok(cell.get_or_init(|| pool).clone())
    }

    /// The log writers' pool, started on first use.
    pub(crate) fn writers() -> std::io::Result<Arc<Pool>> {
        get(&WRITERS, "rraft-log-writer", &WRITER_THREADS)
    }

    /// The FSM callers' pool, started on first use.
    pub(crate) fn fsm_callers() -> std::io::Result<Arc<Pool>> {
        get(&FSMS, "rraft-fsm", &FSM_THREADS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn recording_lane(
        pool: &Arc<Pool>,
        seen: Arc<Mutex<Vec<u32>>>,
        max_batch: usize,
    ) -> Arc<Lane<u32>> {
        Lane::new(
            Some(pool.clone()),
            max_batch,
            0,
            Some(Box::new(move |items: Vec<u32>| {
                seen.lock().unwrap().extend(items);
                false
            })),
        )
    }

    #[test]
    fn each_lane_sees_its_items_in_order_on_a_shared_pool() {
        let pool = Pool::start("test-pool", 3).unwrap();
        let lanes: Vec<_> = (0..20)
            .map(|_| {
                let seen = Arc::new(Mutex::new(Vec::new()));
                (recording_lane(&pool, seen.clone(), 7), seen)
            })
            .collect();
        for i in 0..500 {
            for (lane, _) in &lanes {
                lane.send(i).unwrap();
            }
        }
        for (lane, seen) in &lanes {
            lane.close_and_wait();
            assert_eq!(*seen.lock().unwrap(), (0..500).collect::<Vec<_>>());
            assert_eq!(lane.send(1), Err(1));
        }
    }

    #[test]
    fn a_lane_never_runs_on_two_threads_at_once() {
        let pool = Pool::start("test-pool", 4).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let (i, o) = (inside.clone(), overlaps.clone());
        let lane = Lane::new(
            Some(pool),
            1,
            0,
            Some(Box::new(move |_items: Vec<u32>| {
                if i.fetch_add(1, Ordering::SeqCst) != 0 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
                i.fetch_sub(1, Ordering::SeqCst);
                false
            })),
        );
        for i in 0..200 {
            lane.send(i).unwrap();
        }
        lane.close_and_wait();
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_finishing_handler_answers_what_is_left_and_refuses_the_rest() {
        let pool = Pool::start("test-pool", 1).unwrap();
        let batches = Arc::new(Mutex::new(Vec::new()));
        let b = batches.clone();
        let lane = Lane::new(
            Some(pool),
            1,
            0,
            Some(Box::new(move |items: Vec<u32>| {
                let stop = items.contains(&0);
                b.lock().unwrap().push(items);
                stop
            })),
        );
        // Hold the lane's thread until everything is queued.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = gate.clone();
        let blocker = Lane::new(
            lane.pool.clone(),
            1,
            0,
            Some(Box::new(move |_: Vec<u32>| {
                drop(g.lock().unwrap());
                false
            })),
        );
        blocker.send(9).unwrap();
        for i in [0, 1, 2] {
            lane.send(i).unwrap();
        }
        drop(held);
        lane.wait_finished();
        assert_eq!(*batches.lock().unwrap(), vec![vec![0], vec![1, 2]]);
        assert_eq!(lane.send(3), Err(3));
    }

    /// Lanes a pool thread finds queued run back to back under one hold
    /// of the answers they give (one write per connection for them all).
    #[test]
    fn lanes_queued_together_hold_their_answers_together() {
        let pool = Pool::start("test-pool", 1).unwrap();
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let g = gate.clone();
        let blocker = Lane::new(
            Some(pool.clone()),
            1,
            0,
            Some(Box::new(move |_: Vec<u32>| {
                drop(g.lock().unwrap());
                false
            })),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let lanes: Vec<_> = (0..3u32)
            .map(|i| {
                let seen = seen.clone();
                Lane::new(
                    Some(pool.clone()),
                    1,
                    0,
                    Some(Box::new(move |_: Vec<u32>| {
                        seen.lock()
                            .unwrap()
                            .push((i, crate::transport::replies_held()));
                        false
                    })),
                )
            })
            .collect();
        blocker.send(0).unwrap();
        for lane in &lanes {
            lane.send(1).unwrap();
        }
        drop(held);
        for lane in &lanes {
            lane.close_and_wait();
        }
        assert_eq!(*seen.lock().unwrap(), vec![(0, true), (1, true), (2, true)]);
        blocker.close_and_wait();
    }

    /// A lane on a pool of one thread, asleep on its queue; the receiver
    /// gets each batch the lane's handler runs (`finishes`: the first
    /// batch finishes the lane).
    fn lane_on_a_sleeping_pool(
        finishes: bool,
    ) -> (Arc<Lane<u32>>, std::sync::mpsc::Receiver<Vec<u32>>) {
        let pool = Pool::start("test-pool", 1).unwrap();
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let lane = Lane::new(
            Some(pool.clone()),
            10,
            0,
            Some(Box::new(move |items: Vec<u32>| {
                ran_tx.send(items).unwrap();
                finishes
            })),
        );
        while pool.tx.sleeping_consumers() == 0 {
            std::thread::yield_now();
        }
        (lane, ran_rx)
    }

    #[test]
    fn a_held_wake_up_leaves_when_the_guard_ends() {
        let (lane, ran_rx) = lane_on_a_sleeping_pool(false);
        let held = hold_wakes();
        lane.send(1).unwrap();
        let quiet = std::time::Duration::from_millis(50);
        assert!(ran_rx.recv_timeout(quiet).is_err(), "held: not run yet");
        // A thread that never parks through the runtime releases at the
        // guard's end.
        drop(held);
        assert_eq!(ran_rx.recv().unwrap(), vec![1]);
        lane.close_and_wait();
    }

    /// A tokio worker (which holds wake-ups past a guard's end until it
    /// parks) that blocks in `block_on_wait` first lets its held wake-ups
    /// go: the wait may be for the held work, and the thread may come back
    /// as a blocking-pool thread that never parks through the runtime.
    #[test]
    fn a_blocking_wait_releases_the_wake_ups_its_thread_holds() {
        let (lane, ran_rx) = lane_on_a_sleeping_pool(false);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let got = rt.block_on(async move {
            tokio::spawn(async move {
                // As on a worker that parked once: wake-ups outlive guards.
                release_held_wakes();
                drop((hold_wakes(), lane.send(1).unwrap()));
                let got = crate::node::runtime::block_on_wait(|| {
                    ran_rx.recv_timeout(std::time::Duration::from_secs(5))
                });
                if got.is_ok() {
                    lane.close_and_wait();
                }
                got
            })
            .await
            .unwrap()
        });
        assert_eq!(got, Ok(vec![1]), "the held wake-up left before the wait");
    }

    /// Each batch a lane ran, with the name of the thread it ran on.
    type Batches = Arc<Mutex<Vec<(Vec<u32>, String)>>>;

    /// A lane that records the thread each of its batches ran on.
    fn thread_recording_lane(on_sender: bool, max_batch: usize) -> (Arc<Lane<u32>>, Batches) {
        let pool = Pool::start("test-pool", 1).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let handler: LaneHandler<u32> = Box::new(move |items: Vec<u32>| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            s.lock().unwrap().push((items, name));
            false
        });
        let lane = if on_sender {
            Lane::new_on_sender(pool, max_batch, 0, handler)
        } else {
            Lane::new(Some(pool), max_batch, 0, Some(handler))
        };
        (lane, seen)
    }

    /// Scheduled from idle under `run_lanes_here`, a lane made to run on
    /// its sender runs its batch on that thread when the guard ends, with
    /// everything sent meanwhile; a lane not made so goes to its pool.
    #[test]
    fn a_lane_scheduled_under_run_lanes_here_runs_on_the_sender_at_the_guards_end() {
        let me = "run-here-sender";
        let run = |on_sender: bool| {
            std::thread::Builder::new()
                .name(me.into())
                .spawn(move || {
                    let (lane, seen) = thread_recording_lane(on_sender, 10);
                    let here = run_lanes_here();
                    lane.send(1).unwrap();
                    lane.send(2).unwrap();
                    let before_end = seen.lock().unwrap().len();
                    drop(here);
                    lane.close_and_wait();
                    let seen = seen.lock().unwrap().clone();
                    (before_end, seen)
                })
                .unwrap()
                .join()
                .unwrap()
        };
        let (before_end, seen) = run(true);
        assert_eq!(before_end, 0, "nothing runs before the guard ends");
        assert_eq!(seen, vec![(vec![1, 2], me.to_string())]);
        let (_, seen) = run(false);
        let threads: Vec<_> = seen.iter().map(|(_, t)| t.as_str()).collect();
        assert!(threads.iter().all(|t| *t == "test-pool"), "{seen:?}");
    }

    /// The sender runs one batch: what is left after it goes to the pool.
    #[test]
    fn a_lane_run_on_its_sender_hands_the_rest_to_its_pool() {
        let (lane, seen) = thread_recording_lane(true, 2);
        let here = run_lanes_here();
        for i in 0..5 {
            lane.send(i).unwrap();
        }
        drop(here);
        lane.close_and_wait();
        let seen = seen.lock().unwrap().clone();
        let items: Vec<u32> = seen.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(items, vec![0, 1, 2, 3, 4]);
        assert_ne!(seen[0].1, "test-pool", "the first batch ran here");
        assert_eq!(seen[0].0, vec![0, 1]);
        assert!(seen[1..].iter().all(|(_, t)| t == "test-pool"), "{seen:?}");
    }

    /// Runs `wait` on a thread of its own; true when it returned within
    /// five seconds (false: it waits for work its own thread holds back).
    fn returns(wait: impl FnOnce() + Send + 'static) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            wait();
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok()
    }

    /// A thread that waits for a lane while it holds the wake-up of the
    /// lane's pool (a node started and stopped again from inside a
    /// transport pass) lets the wake-up go first: the pool's thread would
    /// sleep through the wait.
    #[test]
    fn a_wait_for_a_lane_lets_the_wake_ups_its_thread_holds_go_first() {
        let (lane, ran_rx) = lane_on_a_sleeping_pool(true);
        let finished = returns(move || {
            let _held = hold_wakes();
            lane.send(1).unwrap();
            lane.wait_finished();
        });
        assert!(finished, "the wait waited for its own held wake-up");
        assert_eq!(ran_rx.recv().unwrap(), vec![1]);
    }

    /// A lane kept to run at this thread's `run_lanes_here` guard's end
    /// goes to its pool when the thread waits for it (a node started and
    /// stopped again from inside a callback on a pool thread).
    #[test]
    fn a_wait_for_a_lane_kept_to_run_here_hands_it_to_its_pool() {
        let (lane, seen) = thread_recording_lane(true, 10);
        let finished = returns(move || {
            let _here = run_lanes_here();
            lane.send(1).unwrap();
            lane.send(2).unwrap();
            lane.close_and_wait();
        });
        assert!(
            finished,
            "the wait waited for a lane kept on its own thread"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![(vec![1, 2], "test-pool".to_string())]);
    }

    #[test]
    fn a_stepped_lane_is_taken_by_its_owner() {
        let lane = Lane::<u32>::new(None, 10, 0, None);
        lane.send(1).unwrap();
        lane.send(2).unwrap();
        assert_eq!(lane.take(1), vec![1]);
        assert_eq!(lane.close(), vec![2]);
        assert_eq!(lane.send(3), Err(3));
    }
}
