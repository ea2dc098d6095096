//! One connection's reader and writer in the protocol it speaks: rraft's
//! frames or brpc's baidu_std. The server's connection loop and the RPC
//! client's are written once against these. The writer ([`ConnOut`]) is
//! written by the threads that send, not by a task of its own.

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncRead;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::baidu_std::{self, BaiduError, BaiduMessage, BaiduReader};
use super::codes;
use super::frame::{encode_frame, FastPut, Frame, FrameError, FrameKind, FrameReader, HEADER_LEN};
use super::stats::{add, inc, Counters};
use super::wire::{Request, Response};
use super::Protocol;

/// An answer queued for a connection's writer.
pub(crate) struct Reply {
    pub resp: Response,
    /// Sent over baidu_std with a successful answer; rraft's frames have
    /// no field for it.
    pub attachment: Bytes,
}

/// A request queued for a client connection's writer.
pub(crate) struct Outgoing {
    pub req: Request,
    /// brpc's log id and request attachment (baidu_std only).
    pub log_id: i64,
    pub attachment: Bytes,
}

/// What a connection read.
pub(crate) enum Incoming {
    Frame(Frame),
    Baidu(BaiduMessage),
}

/// Why a connection stops reading.
pub(crate) enum ReadError {
    /// The socket failed (a reset from a crashed peer is not a protocol
    /// error).
    Io(io::Error),
    /// The peer sent something that is not the protocol.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Malformed(text) => f.write_str(text),
        }
    }
}

impl From<FrameError> for ReadError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ReadError::Io(e),
            other => ReadError::Malformed(other.to_string()),
        }
    }
}

impl From<BaiduError> for ReadError {
    fn from(e: BaiduError) -> Self {
        match e {
            BaiduError::Io(e) => ReadError::Io(e),
            other => ReadError::Malformed(other.to_string()),
        }
    }
}

pub(crate) enum ConnReader<R> {
    Rraft(FrameReader<R>),
    Baidu(BaiduReader<R>),
}

impl<R: AsyncRead + Unpin> ConnReader<R> {
    pub fn new(protocol: Protocol, inner: R, max: usize) -> Self {
        match protocol {
            Protocol::Rraft => ConnReader::Rraft(FrameReader::new(inner, max)),
            Protocol::BaiduStd => ConnReader::Baidu(BaiduReader::new(inner, max)),
        }
    }

    /// The next message with its size on the wire; `Ok(None)` on a clean
    /// end of stream. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<(Incoming, usize)>, ReadError> {
        Ok(match self {
            ConnReader::Rraft(r) => r.read_frame().await?.map(|(f, n)| {
                trace_read(&f);
                (Incoming::Frame(f), n)
            }),
            ConnReader::Baidu(r) => r
                .read_message()
                .await?
                .map(|(m, n)| (Incoming::Baidu(m), n)),
        })
    }
}

/// Records a frame's stages as read ([`crate::stage_trace`]).
fn trace_read(frame: &Frame) {
    use crate::stage_trace::{record, Stage};
    match frame {
        Frame::Request(_) => record(Stage::RequestRead, 0),
        Frame::Response(_) => record(Stage::ResponseRead, 0),
        Frame::RaftBatch(batch) => super::frame::trace_raft_batch(batch, false),
        Frame::Heartbeats(_) => {}
    }
}

/// Encodes a server's answer into `dst`. Over baidu_std the code becomes
/// brpc's (see [`baidu_std::brpc_error_code`]) and a leader hint is appended
/// to the error text as ` [leader: <peer id>]`; a failed call carries
/// neither payload nor attachment (as brpc's servers answer). Fails,
/// leaving `dst` untouched, when the answer exceeds `max`.
/// An answer to encode, every part borrowed: the fields of a [`Response`]
/// and, over baidu_std, the attachment of a successful one.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReplyRef<'a> {
    pub call_id: u64,
    pub code: i32,
    pub error_text: &'a str,
    pub leader_hint: &'a str,
    pub payload: &'a [u8],
    pub attachment: &'a [u8],
}

impl<'a> ReplyRef<'a> {
    pub fn of(resp: &'a Response, attachment: &'a [u8]) -> ReplyRef<'a> {
        ReplyRef {
            call_id: resp.call_id,
            code: resp.code,
            error_text: &resp.error_text,
            leader_hint: &resp.leader_hint,
            payload: &resp.payload,
            attachment,
        }
    }
}

/// Appends an rraft Response frame of `r`'s fields to `dst`: the bytes
/// prost encodes for the [`Response`] holding them, without building one.
fn encode_response_frame(r: &ReplyRef<'_>, dst: &mut BytesMut, max: usize) -> Result<(), String> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    let delimited = |tag: u32, len: usize| {
        if len == 0 {
            0
        } else {
            key_len(tag) + encoded_len_varint(len as u64) + len
        }
    };
    // An int32 is encoded as its sign extension to 64 bits.
    let code = i64::from(r.code) as u64;
    let len = (if r.call_id != 0 {
        key_len(1) + encoded_len_varint(r.call_id)
    } else {
        0
    }) + (if code != 0 {
        key_len(2) + encoded_len_varint(code)
    } else {
        0
    }) + delimited(3, r.error_text.len())
        + delimited(4, r.leader_hint.len())
        + delimited(5, r.payload.len());
    if len > max || len > u32::MAX as usize {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        }
        .to_string());
    }
    dst.reserve(HEADER_LEN + len);
    let dst = &mut FastPut(dst);
    dst.put_u32(len as u32);
    dst.put_u8(FrameKind::Response as u8);
    if r.call_id != 0 {
        encode_key(1, WireType::Varint, dst);
        encode_varint(r.call_id, dst);
    }
    if code != 0 {
        encode_key(2, WireType::Varint, dst);
        encode_varint(code, dst);
    }
    for (tag, field) in [
        (3, r.error_text.as_bytes()),
        (4, r.leader_hint.as_bytes()),
        (5, r.payload),
    ] {
        if !field.is_empty() {
            encode_key(tag, WireType::LengthDelimited, dst);
            encode_varint(field.len() as u64, dst);
            dst.put_slice(field);
        }
    }
    Ok(())
}

fn encode_reply(
    protocol: Protocol,
    resp: &ReplyRef<'_>,
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), String> {
    match protocol {
        Protocol::Rraft => encode_response_frame(resp, dst, max),
        Protocol::BaiduStd => {
            let code = baidu_std::brpc_error_code(resp.code);
            let (meta, payload, attachment) = if code == 0 {
                let meta = baidu_std::response_meta(resp.call_id, 0, "", resp.attachment.len());
                (meta, resp.payload, resp.attachment)
            } else {
                let text = if resp.leader_hint.is_empty() {
                    resp.error_text.to_string()
                } else {
                    format!("{} [leader: {}]", resp.error_text, resp.leader_hint)
                };
                let meta = baidu_std::response_meta(resp.call_id, code, &text, 0);
                (meta, &[][..], &[][..])
            };
            baidu_std::encode(&meta, payload, attachment, dst, max)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// Encodes a client's request into `dst` (over baidu_std, `req.method` is
/// `package.Service.method`; rraft's frames carry no log id or
/// attachment). Fails, leaving `dst` untouched, when it exceeds `max`.
fn encode_request(
    protocol: Protocol,
    out: Outgoing,
    dst: &mut BytesMut,
    max: usize,
) -> Result<(), String> {
    let Outgoing {
        req,
        log_id,
        attachment,
    } = out;
    crate::stage_trace::record(crate::stage_trace::Stage::RequestSent, 0);
    match protocol {
        Protocol::Rraft => encode_frame(&Frame::Request(req), dst, max)
            .map(drop)
            .map_err(|e| e.to_string()),
        Protocol::BaiduStd => {
            let meta = baidu_std::request_meta(req.call_id, &req.method, log_id, attachment.len());
            baidu_std::encode(&meta, &req.payload, &attachment, dst, max)
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

/// A buffer kept between writes up to this capacity (a larger one, grown
/// by a big answer, is dropped once written).
const KEEP_BUFFER: usize = 64 << 10;

/// Why [`ConnOut`] did not take a message.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection is closed: nothing was sent.
    Closed,
    /// The message does not encode (too large); nothing was sent.
    Encode(String),
}

/// The outgoing side of one connection, written by the thread that sends.
///
/// A sender encodes its message into the connection's buffer and, unless
/// another thread is writing already, writes the buffer to the socket
/// itself, without blocking (`try_write`): an answer given on a node's FSM
/// thread, or a request made on a caller's thread, reaches the socket
/// without waking a tokio worker. Senders that arrive while a write is in
/// progress only append, and the writer takes their bytes in its next
/// write, so writes batch under load. When the socket is full, a task on
/// the runtime finishes the buffer once the socket is writable. Bytes sent
/// before the socket is attached (a client still connecting) wait in the
/// buffer.
pub(crate) struct ConnOut {
    protocol: Protocol,
    max: usize,
    handle: Handle,
    counters: Arc<Counters>,
    /// How long the socket may stay full before the connection is closed
    /// (None: no limit).
    write_timeout: Option<Duration>,
    state: Mutex<OutState>,
    /// Wakes every [`ConnOut::closed`] waiter when the connection closes.
    closed_signal: Notify,
}

#[derive(Default)]
struct OutState {
    buf: BytesMut,
    /// Messages in `buf`.
    messages: usize,
    sock: Option<Arc<OwnedWriteHalf>>,
    /// A thread or the flush task writes: others only append.
    writing: bool,
    closed: bool,
}

/// What one write attempt left.
enum Wrote {
    /// Everything written.
    All,
    /// The socket is full; the unwritten rest is still in the buffer.
    Blocked,
    Failed(io::Error),
}

/// Writes `buf` until it is empty or the socket is full, advancing it past
/// what was written.
fn write_some(sock: &OwnedWriteHalf, buf: &mut BytesMut) -> Wrote {
    while !buf.is_empty() {
        match sock.try_write(buf) {
            Ok(0) => return Wrote::Failed(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Wrote::Failed(e),
        }
    }
    Wrote::All
}

impl ConnOut {
    pub fn new(
        protocol: Protocol,
        max: usize,
        handle: Handle,
        counters: Arc<Counters>,
        write_timeout: Option<Duration>,
    ) -> Arc<ConnOut> {
        Arc::new(ConnOut {
            protocol,
            max,
            handle,
            counters,
            write_timeout,
            state: Mutex::new(OutState::default()),
            closed_signal: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches the connected socket and writes what waited for it.
    pub fn attach(self: &Arc<Self>, sock: OwnedWriteHalf) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.sock = Some(Arc::new(sock));
        self.write_out(st);
    }

    /// Queues a server's answer. Inside [`hold_replies`] on this thread it
    /// is written when the hold ends; otherwise now. False when the
    /// connection is closed (the answer is dropped).
    pub fn send_reply(self: &Arc<Self>, reply: ReplyRef<'_>) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        if let Err(e) = encode_reply(self.protocol, &reply, &mut st.buf, self.max) {
            // Too large: the caller gets an error instead of a hang.
            log::warn!("transport: response not sent: {e}");
            let text = format!("response not sent: {e}");
            let error = ReplyRef {
                call_id: reply.call_id,
                code: codes::EINVAL,
                error_text: &text,
                ..Default::default()
            };
            if encode_reply(self.protocol, &error, &mut st.buf, self.max).is_err() {
                return true;
            }
        }
        st.messages += 1;
        if held_here(self) {
            return true;
        }
        if tokio::task::try_id().is_some() {
            // A tokio task: the other tasks woken with it may answer too.
            self.write_later(st);
        } else {
            self.write_out(st);
        }
        true
    }

    /// Queues a client's request and writes it now (or after the connect);
    /// `now` false leaves the write to a task (`write_later`), so that
    /// requests sent together share it.
    pub fn send_request(self: &Arc<Self>, out: Outgoing, now: bool) -> Result<(), SendError> {
        let mut st = self.lock();
        if st.closed {
            return Err(SendError::Closed);
        }
        encode_request(self.protocol, out, &mut st.buf, self.max).map_err(SendError::Encode)?;
        st.messages += 1;
        if now {
            self.write_out(st);
        } else {
            self.write_later(st);
        }
        Ok(())
    }

    /// Closes the connection's outgoing side: queued bytes are dropped,
    /// later sends refused, and the socket is released once a write in
    /// progress ends.
    pub fn close(&self) {
        let mut st = self.lock();
        let writing = st.writing;
        self.close_locked(&mut st);
        // A writer in progress still owns the flag; it sees `closed` after
        // its write.
        st.writing = writing;
    }

    /// Resolves once the connection is closed.
    pub async fn closed(&self) {
        let notified = self.closed_signal.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the check, so a close in between still wakes it.
        notified.as_mut().enable();
        if self.lock().closed {
            return;
        }
        notified.await;
    }

    /// Makes the caller the buffer's one writer and hands it the socket;
    /// None when someone writes already, nothing waits, or the connection
    /// is not up yet (`attach` writes the buffer then).
    fn claim_writing(mut st: MutexGuard<'_, OutState>) -> Option<Arc<OwnedWriteHalf>> {
        if st.writing || st.buf.is_empty() {
            return None;
        }
        let sock = st.sock.clone()?;
        st.writing = true;
        Some(sock)
    }

    /// Writes the buffer now unless someone else does; the rest goes to a
    /// task when the socket is full.
    fn write_out(self: &Arc<Self>, st: MutexGuard<'_, OutState>) {
        let Some(sock) = Self::claim_writing(st) else {
            return;
        };
        loop {
            match self.write_once(&sock) {
                Next::Idle | Next::Closed => return,
                Next::More => continue,
                Next::Blocked => {
                    let this = self.clone();
                    self.handle.spawn(async move {
                        if this.writable(&sock).await {
                            this.finish(sock).await
                        }
                    });
                    return;
                }
            }
        }
    }

    /// Leaves the buffer to a task that writes it after the tasks woken
    /// meanwhile had their turn (unless someone writes already): their
    /// messages share one write.
    fn write_later(self: &Arc<Self>, st: MutexGuard<'_, OutState>) {
        let Some(sock) = Self::claim_writing(st) else {
            return;
        };
        let this = self.clone();
        self.handle.spawn(async move {
            tokio::task::yield_now().await;
            this.finish(sock).await
        });
    }

    /// Puts the outcome of a write back into the state.
    fn after_write(
        &self,
        st: &mut OutState,
        mut out: BytesMut,
        messages: usize,
        wrote: Wrote,
    ) -> Next {
        if st.closed {
            st.writing = false;
            return Next::Closed;
        }
        match wrote {
            Wrote::All => {
                add(&self.counters.frames_out, messages as u64);
                inc(&self.counters.flushes);
                if st.buf.is_empty() {
                    st.writing = false;
                    out.clear();
                    if out.capacity() <= KEEP_BUFFER {
                        st.buf = out;
                    }
                    Next::Idle
                } else {
                    Next::More
                }
            }
            Wrote::Blocked => {
                // The rest first, then what was appended meanwhile.
                out.extend_from_slice(&st.buf);
                st.buf = out;
                st.messages += messages;
                Next::Blocked
            }
            Wrote::Failed(e) => {
                log::debug!("transport: write failed: {e}");
                self.close_locked(st);
                Next::Closed
            }
        }
    }

    fn close_locked(&self, st: &mut OutState) {
        st.writing = false;
        if !st.closed {
            st.closed = true;
            st.sock = None;
            st.buf = BytesMut::new();
            st.messages = 0;
            self.closed_signal.notify_waiters();
        }
    }

    /// Waits until the socket takes bytes again; false (and the connection
    /// closed) when it fails or stays full past the write timeout.
    async fn writable(&self, sock: &OwnedWriteHalf) -> bool {
        let wait = async {
            match self.write_timeout {
                Some(t) => match tokio::time::timeout(t, sock.writable()).await {
                    Ok(r) => r,
                    Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
                },
                None => sock.writable().await,
            }
        };
        let ready = tokio::select! {
            r = wait => r,
            _ = self.closed() => return false,
        };
        if let Err(e) = ready {
            log::debug!("transport: write failed: {e}");
            self.close_locked(&mut self.lock());
            return false;
        }
        true
    }

    /// As the writer (`writing` is set), writes the buffer until it is
    /// empty (then senders write again) or the connection fails, waiting
    /// while the socket is full.
    async fn finish(self: Arc<Self>, sock: Arc<OwnedWriteHalf>) {
        loop {
            match self.write_once(&sock) {
                Next::Idle | Next::Closed => return,
                Next::More => {}
                Next::Blocked => {
                    if !self.writable(&sock).await {
                        return;
                    }
                }
            }
        }
    }

    /// One write of the whole buffer by the writer.
    fn write_once(&self, sock: &OwnedWriteHalf) -> Next {
        let mut st = self.lock();
        let mut out = std::mem::take(&mut st.buf);
        let messages = std::mem::take(&mut st.messages);
        drop(st);
        let len = out.len();
        let wrote = write_some(sock, &mut out);
        add(&self.counters.bytes_out, (len - out.len()) as u64);
        self.after_write(&mut self.lock(), out, messages, wrote)
    }
}

/// What a writer does after a write.
enum Next {
    /// The buffer is empty; the next sender writes.
    Idle,
    /// More was appended meanwhile: write again.
    More,
    /// The socket is full.
    Blocked,
    Closed,
}

thread_local! {
    /// Connections with answers held on this thread (see [`hold_replies`]);
    /// None when no hold is active.
    static HELD: RefCell<Option<Vec<Arc<ConnOut>>>> = const { RefCell::new(None) };
}

/// Registers `out` as holding answers of this thread; false when no hold
/// is active.
fn held_here(out: &Arc<ConnOut>) -> bool {
    HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(list) => {
            if !list.iter().any(|c| Arc::ptr_eq(c, out)) {
                list.push(out.clone());
            }
            true
        }
        None => false,
    })
}

/// While the returned guard lives, answers given on this thread
/// ([`super::Responder`]) are encoded but not written; when it drops (or
/// [`release_held_replies`] runs), each connection's held answers leave in
/// one write. A node's FSM thread holds them across a batch of callbacks
/// and dones, so the answers of one batch share a system call per
/// connection. Nested holds end with the outermost.
pub fn hold_replies() -> HeldReplies {
    HeldReplies {
        outermost: begin_hold(&HELD),
    }
}

/// Starts a hold of this thread in `slot` unless one is active; true for
/// the outermost hold (whose end releases what was held).
pub(super) fn begin_hold<T: Default>(
    slot: &'static std::thread::LocalKey<RefCell<Option<T>>>,
) -> bool {
    slot.with(|held| {
        let mut held = held.borrow_mut();
        if held.is_none() {
            *held = Some(T::default());
            true
        } else {
            false
        }
    })
}

/// Whether answers given on this thread now are held (see [`hold_replies`]).
#[cfg(test)]
pub(crate) fn replies_held() -> bool {
    HELD.with(|held| held.borrow().is_some())
}

/// Writes the answers held on this thread now; the hold stays active.
/// Called before a thread waits (a blocking call from a done), so that a
/// wait never holds back an answer given before it.
pub fn release_held_replies() {
    let list = HELD.with(|held| held.borrow_mut().as_mut().map(std::mem::take));
    for out in list.into_iter().flatten() {
        let st = out.lock();
        out.write_out(st);
    }
}

/// Ends a hold of answers (see [`hold_replies`]).
pub struct HeldReplies {
    outermost: bool,
}

impl Drop for HeldReplies {
    fn drop(&mut self) {
        if self.outermost {
            release_held_replies();
            HELD.with(|held| *held.borrow_mut() = None);
        }
    }
}

/// A baidu_std response as the transport's [`Response`] (the correlation
/// id, brpc's error code and text, the payload) and its attachment. `Err`
/// when the message is not a response; a compressed payload is the call's
/// ERESPONSE.
pub(crate) fn baidu_response(msg: BaiduMessage) -> Result<Reply, String> {
    let call_id = msg.call_id();
    let compress = msg.compress_type();
    let Some(meta) = msg.meta.response else {
        return Err("baidu_std: a request where a response was expected".into());
    };
    let code = meta.error_code.unwrap_or(0);
    if code == 0 && compress != baidu_std::compress::NONE {
        return Ok(Reply {
            resp: Response {
                call_id,
                code: baidu_std::errors::ERESPONSE,
                error_text: format!(
                    "response compressed with {} ({compress}), which this client does not decode",
                    baidu_std::compress::name(compress)
                ),
                ..Default::default()
            },
            attachment: Bytes::new(),
        });
    }
    Ok(Reply {
        resp: Response {
            call_id,
            code,
            error_text: meta.error_text.unwrap_or_default(),
            leader_hint: String::new(),
            payload: msg.payload,
        },
        attachment: msg.attachment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_encodes_as_the_prost_response_frame() {
        let cases = [
            Response::default(),
            Response {
                call_id: 42,
                payload: Bytes::from_static(b"\x08\x01\x10\x02"),
                ..Default::default()
            },
            Response {
                call_id: u64::MAX,
                code: codes::EPERM,
                error_text: "not leader".into(),
                leader_hint: "127.0.0.1:8100:0".into(),
                ..Default::default()
            },
            Response {
                call_id: 3,
                code: -1,
                error_text: "x".repeat(200),
                payload: Bytes::from(vec![9u8; 1000]),
                ..Default::default()
            },
        ];
        for resp in cases {
            let mut want = BytesMut::new();
            encode_frame(&Frame::Response(resp.clone()), &mut want, 1 << 20).unwrap();
            let mut got = BytesMut::new();
            encode_reply(
                Protocol::Rraft,
                &ReplyRef::of(&resp, b"ignored"),
                &mut got,
                1 << 20,
            )
            .unwrap();
            assert_eq!(got, want, "{resp:?}");
        }
    }

    #[test]
    fn an_answer_larger_than_the_frame_limit_is_refused_and_not_written() {
        let resp = Response {
            call_id: 1,
            payload: Bytes::from(vec![0u8; 100]),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        assert!(encode_reply(Protocol::Rraft, &ReplyRef::of(&resp, &[]), &mut buf, 50).is_err());
        assert!(buf.is_empty());
    }
}
