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
//! - Every message queued for the task is queued under the same lock and
//!   ends the loan first, so a direct write never overtakes a queued
//!   message and the task never lends while its queue holds one.
//! - A direct write that the socket takes only in part leaves the rest
//!   here and ends the loan; the task, woken, writes the rest before
//!   anything else.

use std::io::{self, Write};
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

#[derive(Default)]
pub(super) struct DirectOut {
    state: Mutex<DirectState>,
    /// Tells the connection task that a sender left bytes in `rest`.
    rest_ready: Notify,
}

#[derive(Default)]
struct DirectState {
    /// A duplicate of the connected socket's descriptor (non-blocking, as
    /// the original), set while the task is connected.
    sock: Option<std::net::TcpStream>,
    /// The task waits with nothing to write: a sender may write.
    lent: bool,
    /// Bytes a sender could not write (the socket was full).
    rest: BytesMut,
}

/// Takes the socket back from the senders when the connection ends.
pub(super) struct Attached<'a>(&'a DirectOut);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.sock = None;
        st.lent = false;
        st.rest = BytesMut::new();
    }
}

impl DirectOut {
    pub(super) fn new() -> Arc<DirectOut> {
        Arc::new(DirectOut::default())
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

    /// The task is about to wait: lends the socket when nothing is queued
    /// (`queue_empty` read under the lock senders queue under).
    pub(super) fn lend(&self, queue_empty: impl FnOnce() -> bool) {
        let mut st = self.lock();
        st.lent = st.sock.is_some() && st.rest.is_empty() && queue_empty();
    }

    /// The task writes again: ends the loan and returns what a sender left
    /// unwritten, to be written before anything else.
    pub(super) fn reclaim(&self) -> BytesMut {
        let mut st = self.lock();
        st.lent = false;
        std::mem::take(&mut st.rest)
    }

    /// Resolves once a sender left bytes for the task to write.
    pub(super) async fn rest_ready(&self) {
        self.rest_ready.notified().await
    }

    /// Queues through `enqueue` (for the task), ending the loan first.
    pub(super) fn queue<T>(&self, enqueue: impl FnOnce() -> T) -> T {
        let mut st = self.lock();
        st.lent = false;
        enqueue()
    }

    /// Writes `msgs` of `group` as one batch frame now if the socket is
    /// lent; gives them back otherwise (the caller queues them).
    pub(super) fn write_now(
        &self,
        group: &str,
        msgs: Vec<Message>,
        max_frame: usize,
        counters: &Counters,
    ) -> Result<(), Vec<Message>> {
        let mut st = self.lock();
        let batch = RaftBatch {
            group: group.to_string(),
            messages: msgs,
        };
        if !st.lent || batch.encoded_len() > max_frame {
            // Not lent, or too large for one frame: the task splits it.
            return Err(batch.messages);
        }
        let Some(sock) = st.sock.take() else {
            return Err(batch.messages);
        };
        let n = batch.messages.len() as u64;
        let mut buf = std::mem::take(&mut st.rest);
        if let Err(e) = encode_frame(&Frame::RaftBatch(batch), &mut buf, max_frame) {
            st.sock = Some(sock);
            add(&counters.dropped_other, n);
            log::warn!("transport: batch for group {group:?} not sent: {e}");
            return Ok(());
        }
        let len = buf.len();
        let wrote = write_some(&sock, &mut buf);
        add(&counters.bytes_out, (len - buf.len()) as u64);
        match wrote {
            Ok(()) if buf.is_empty() => {
                inc(&counters.frames_out);
                add(&counters.messages_out, n);
                inc(&counters.flushes);
                buf.clear();
                if buf.capacity() <= KEEP_BUFFER {
                    st.rest = buf;
                }
                st.sock = Some(sock);
            }
            Ok(()) => {
                // The socket is full: the task writes the rest when it can.
                add(&counters.messages_out, n);
                st.lent = false;
                st.rest = buf;
                st.sock = Some(sock);
                self.rest_ready.notify_one();
            }
            Err(e) => {
                // The task sees the failure on its next read or write;
                // Raft retransmits what was lost.
                log::debug!("transport: direct write failed: {e}");
                add(&counters.dropped_peer_down, n);
                st.lent = false;
            }
        }
        Ok(())
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
