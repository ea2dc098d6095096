//! A peer connection's socket lent to the threads that send while its
//! task has nothing to write (see [`super::peers::Transport::send_now`]).
//!
//! A follower's acknowledgement is sent by the log writer thread that made
//! its entries durable. Queued to the connection's task, it would wait for
//! a tokio worker to wake (tens of µs on a parked worker) before its bytes
//! leave; written here, it leaves from the writer thread at once.
//!
//! Rules that keep one byte stream per connection:
//! - The connection task lends the socket ([`DirectOut::lend`]) only while
//!   it waits with nothing queued and nothing buffered, and takes it back
//!   ([`DirectOut::reclaim`]) before it writes anything itself.
//! - A sender that queues a message for the task ends the loan after
//!   queueing it (it takes the lock only when the socket is lent); the
//!   task announces a loan before it checks that its queue is empty, and
//!   withdraws it when it is not. With a fence on both sides, either the
//!   task sees the message or the sender sees the loan and ends it, so a
//!   message a thread queued is never overtaken by a direct write that
//!   thread makes after it, and no loan outlives a queued message.
//! - A direct write that the socket takes only in part leaves the rest
//!   here and ends the loan; the task, woken, writes the rest before
//!   anything else.
//! - Inside [`hold_peer_writes`] (a log writer reporting one batch) the
//!   frames are encoded but not written: when the hold ends, each
//!   connection's frames leave in one write, so the acknowledgements of
//!   one fdatasync share a system call as they shared a frame when queued.
//!   Held bytes go out before any later write on the connection.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BytesMut};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::frame::{encode_frame, Frame};
use super::stats::{add, inc, Counters};
use super::wire::RaftBatch;
use crate::proto::Message;

/// A write buffer kept for the next direct write up to this capacity.
const KEEP_BUFFER: usize = 16 << 10;

pub(super) struct DirectOut {
    counters: Arc<Counters>,
    state: Mutex<DirectState>,
    /// The task waits with nothing to write: a sender may write. Changed
    /// only under the `state` lock; read without it by queueing senders.
    lent: AtomicBool,
    /// Wakes the connection task: a sender left bytes in `rest`, or ended
    /// a loan the task should renew.
    wake_task: Notify,
}

#[derive(Default)]
struct DirectState {
    /// A duplicate of the connected socket's descriptor (non-blocking, as
    /// the original), set while the task is connected.
    sock: Option<std::net::TcpStream>,
    /// Bytes a sender could not write (the socket was full).
    rest: BytesMut,
    /// Frames encoded inside a hold, written when it ends (or before the
    /// next write).
    held: BytesMut,
}

/// Takes the socket back from the senders when the connection ends.
pub(super) struct Attached<'a>(&'a DirectOut);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.sock = None;
        self.0.lent.store(false, Ordering::SeqCst);
        st.rest = BytesMut::new();
        st.held = BytesMut::new();
    }
}

impl DirectOut {
    pub(super) fn new(counters: Arc<Counters>) -> Arc<DirectOut> {
        Arc::new(DirectOut {
            counters,
            state: Mutex::default(),
            lent: AtomicBool::new(false),
            wake_task: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DirectState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the senders a duplicate of the connected `stream` (not yet
    /// lent); it is taken back when the returned guard drops. Without a
    /// duplicate (no descriptor left) every message goes through the task.
    pub(super) fn attach(&self, stream: &TcpStream) -> Attached<'_> {
        use std::os::fd::AsFd;
        match stream.as_fd().try_clone_to_owned() {
            Ok(fd) => self.lock().sock = Some(std::net::TcpStream::from(fd)),
            Err(e) => log::debug!("transport: no direct writes on this connection: {e}"),
        }
        Attached(self)
    }

    /// The task is about to wait: lends the socket when nothing is queued.
    pub(super) fn lend(&self, queue_empty: impl FnOnce() -> bool) {
        let st = self.lock();
        if !st.rest.is_empty() || !st.held.is_empty() {
            // Bytes wait for the task: it writes them before lending.
            self.lent.store(false, Ordering::SeqCst);
            self.wake_task.notify_one();
            return;
        }
        if st.sock.is_none() {
            return;
        }
        // Announced before the check (see the module's rules).
        self.lent.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !queue_empty() {
            self.lent.store(false, Ordering::SeqCst);
        }
    }

    /// The task writes again: ends the loan and returns what a sender left
    /// unwritten, to be written before anything else.
    pub(super) fn reclaim(&self) -> BytesMut {
        let mut st = self.lock();
        self.lent.store(false, Ordering::SeqCst);
        let mut rest = std::mem::take(&mut st.rest);
        if !st.held.is_empty() {
            rest.extend_from_slice(&st.held);
            st.held.clear();
        }
        rest
    }

    /// Resolves once a sender left bytes for the task to write or ended a
    /// loan the task should renew.
    pub(super) async fn task_woken(&self) {
        self.wake_task.notified().await
    }

    /// Queues through `enqueue` (for the task), then ends the loan if the
    /// socket is lent. `queue_empty` tells whether the task took
    /// everything queued.
    pub(super) fn queue<T>(
        &self,
        enqueue: impl FnOnce() -> T,
        queue_empty: impl FnOnce() -> bool,
    ) -> T {
        let queued = enqueue();
        fence(Ordering::SeqCst);
        if self.lent.load(Ordering::SeqCst) {
            let _st = self.lock();
            self.lent.store(false, Ordering::SeqCst);
            if queue_empty() {
                // The task took the message and may have lent the socket
                // again since: woken, it lends again once it is idle.
                self.wake_task.notify_one();
            }
        }
        queued
    }

    /// Writes `msgs` of `group` as one batch frame now (or when this
    /// thread's hold ends) if the socket is lent; gives them back otherwise
    /// (the caller queues them).
    pub(super) fn write_now(
        self: &Arc<Self>,
        group: &str,
        msgs: Vec<Message>,
        max_frame: usize,
    ) -> Result<(), Vec<Message>> {
        let counters = &*self.counters;
        let mut st = self.lock();
        let batch = RaftBatch {
            group: group.to_string(),
            messages: msgs,
        };
        if !self.lent.load(Ordering::SeqCst) || batch.encoded_len() > max_frame {
            // Not lent, or too large for one frame: the task splits it.
            return Err(batch.messages);
        }
        let Some(sock) = st.sock.take() else {
            return Err(batch.messages);
        };
        let n = batch.messages.len() as u64;
        let held = held_here(self);
        // Frames held earlier go first.
        let mut buf = std::mem::take(&mut st.held);
        let encoded = encode_frame(&Frame::RaftBatch(batch), &mut buf, max_frame);
        if let Err(e) = &encoded {
            add(&counters.dropped_other, n);
            log::warn!("transport: batch for group {group:?} not sent: {e}");
        } else {
            add(&counters.messages_out, n);
        }
        if held || buf.is_empty() {
            st.held = buf;
            st.sock = Some(sock);
            return Ok(());
        }
        self.write_locked(&mut st, sock, buf);
        Ok(())
    }

    /// Writes the frames held on this connection (the end of a hold).
    fn write_held(&self) {
        let mut st = self.lock();
        if st.held.is_empty() {
            return;
        }
        let sock = if self.lent.load(Ordering::SeqCst) {
            st.sock.take()
        } else {
            None
        };
        let Some(sock) = sock else {
            // The task took the socket back: it writes them first.
            self.wake_task.notify_one();
            return;
        };
        let buf = std::mem::take(&mut st.held);
        self.write_locked(&mut st, sock, buf);
    }

    /// Writes `buf` to `sock` (taken out of the lent state), leaving what
    /// the socket did not take for the task.
    fn write_locked(&self, st: &mut DirectState, sock: std::net::TcpStream, mut buf: BytesMut) {
        let counters = &*self.counters;
        let len = buf.len();
        let wrote = write_some(&sock, &mut buf);
        crate::stage_trace::record(crate::stage_trace::Stage::PeerWritten, 0);
        add(&counters.bytes_out, (len - buf.len()) as u64);
        match wrote {
            Ok(()) if buf.is_empty() => {
                inc(&counters.frames_out);
                inc(&counters.flushes);
                buf.clear();
                if buf.capacity() <= KEEP_BUFFER {
                    st.held = buf;
                }
                st.sock = Some(sock);
            }
            Ok(()) => {
                // The socket is full: the task writes the rest when it can.
                self.lent.store(false, Ordering::SeqCst);
                st.rest = buf;
                st.sock = Some(sock);
                self.wake_task.notify_one();
            }
            Err(e) => {
                // The task sees the failure on its next read or write;
                // Raft retransmits what was lost.
                log::debug!("transport: direct write failed: {e}");
                self.lent.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Writes `buf` until it is empty or the socket is full, advancing it past
/// what was written.
fn write_some(mut sock: &std::net::TcpStream, buf: &mut BytesMut) -> io::Result<()> {
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a hold on one thread keeps until it ends.
#[derive(Default)]
struct Held {
    /// Connections with frames held.
    conns: Vec<Arc<DirectOut>>,
    /// Run once the frames are written (see [`after_peer_writes`]).
    after: Vec<Box<dyn FnOnce()>>,
}

thread_local! {
    /// This thread's hold (see [`hold_peer_writes`]); None when no hold is
    /// active.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Registers `out` as holding frames of this thread; false when no hold is
/// active.
fn held_here(out: &Arc<DirectOut>) -> bool {
    HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(held) => {
            if !held.conns.iter().any(|c| Arc::ptr_eq(c, out)) {
                held.conns.push(out.clone());
            }
            true
        }
        None => false,
    })
}

/// Runs `f` once the frames held on this thread are written: when its
/// hold ends, or now without a hold. A log writer's done tells its driver
/// that the write is durable through it, so that the acknowledgements on
/// the commit path leave before the wake-up of a driver that only records
/// the fact.
pub fn after_peer_writes(f: impl FnOnce() + 'static) {
    let f: Box<dyn FnOnce()> = Box::new(f);
    let f = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(held) => {
            held.after.push(f);
            None
        }
        None => Some(f),
    });
    if let Some(f) = f {
        f();
    }
}

/// While the returned guard lives, Raft messages this thread sends with
/// [`super::Transport::send_now`] are encoded but not written; when it
/// drops, each connection's frames leave in one write. A log writer holds
/// them while it reports one batch, so the acknowledgements made durable
/// by one fdatasync share a system call per connection. Nested holds end
/// with the outermost.
pub fn hold_peer_writes() -> HeldPeerWrites {
    HeldPeerWrites {
        outermost: super::codec::begin_hold(&HELD),
    }
}

/// Ends a hold of peer writes (see [`hold_peer_writes`]).
pub struct HeldPeerWrites {
    outermost: bool,
}

impl Drop for HeldPeerWrites {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let Some(held) = HELD.with(|held| held.borrow_mut().take()) else {
            return;
        };
        for out in held.conns {
            out.write_held();
        }
        for f in held.after {
            // One panicking callback must not keep the others from running.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
                log::error!("a callback run after the held peer writes panicked");
            }
        }
    }
}
