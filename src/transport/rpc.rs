//! Request/response calls: [`RpcClient::call`] sends a `Request` frame on
//! the pooled connection to an address and awaits the `Response` with the
//! same call id; [`RpcClient::call_with_protocol`] does the same in brpc's
//! baidu_std (one pool of connections per protocol and address). Calls are pipelined: many may be in flight on one
//! connection, answered in any order.
//!
//! One connection task per address connects and reads: it resolves
//! pending calls from what it reads. A caller writes its request itself
//! (requests sent meanwhile share the write; see `codec::ConnOut`). When
//! the connection fails, every pending call on it fails at once with
//! [`RpcError::Connect`] and the next call opens a new connection.
//!
//! A call is either a future that awaits its answer (with a timer of its
//! own), or a completion registered in the connection's pending table
//! ([`RpcClient::call_then`]): the connection task runs it with the answer,
//! and one timer per connection, armed at the earliest deadline of its
//! pending completions, fails those whose deadline passed. Such a call
//! costs no task and no timer of its own, which is what a client with many
//! calls in flight spends most of its CPU on otherwise.

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use super::codec::{
    baidu_response, ConnOut, ConnReader, Incoming, Outgoing, ReadError, Reply, SendError,
};
use super::codes;
use super::frame::Frame;
use super::owner::{owned, Owner, Stoppable};
use super::peers::TransportConfig;
use super::stats::{add, inc, Counters, Gauge, Stats};
use super::wire::{Request, Response};
use super::wire_str::WireStr;
use super::{CallInfo, Protocol};

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcError {
    /// No response within the timeout (the request may still run remotely).
    Timeout,
    /// Could not connect, or the request could not be queued: it was never
    /// sent, so trying again (elsewhere) is safe.
    Connect(String),
    /// The connection broke after the request was sent: it may or may not
    /// have been carried out (outcome unknown).
    Lost(String),
    /// The server answered with an error code.
    Remote {
        code: i32,
        text: String,
        leader_hint: String,
    },
    /// The address (or peer id) does not parse.
    BadAddress(String),
    /// The client (or its server) was stopped.
    Shutdown,
}

impl RpcError {
    /// The status code: the remote one, or a local errno-like code
    /// (ETIMEDOUT 110, ECONNREFUSED-ish EHOSTDOWN 112, EINVAL, ESHUTDOWN).
    pub fn code(&self) -> i32 {
        match self {
            RpcError::Timeout => 110,
            RpcError::Connect(_) => 112,
            RpcError::Lost(_) => 104,
            RpcError::Remote { code, .. } => *code,
            RpcError::BadAddress(_) => codes::EINVAL,
            RpcError::Shutdown => codes::ESHUTDOWN,
        }
    }

    /// The leader hint of a remote error, if any.
    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            RpcError::Remote { leader_hint, .. } if !leader_hint.is_empty() => Some(leader_hint),
            _ => None,
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Timeout => write!(f, "call timed out"),
            RpcError::Connect(e) => write!(f, "connection failed: {e}"),
            RpcError::Lost(e) => write!(
                f,
                "connection lost after the request was sent (outcome unknown): {e}"
            ),
            RpcError::Remote {
                code,
                text,
                leader_hint,
            } if leader_hint.is_empty() => {
                write!(f, "remote error {code}: {text}")
            }
            RpcError::Remote {
                code,
                text,
                leader_hint,
            } => {
                write!(f, "remote error {code}: {text} (leader {leader_hint})")
            }
            RpcError::BadAddress(a) => write!(f, "bad address {a:?}"),
            RpcError::Shutdown => write!(f, "client stopped"),
        }
    }
}

impl std::error::Error for RpcError {}

/// The completion of a call made with [`RpcClient::call_then`].
pub(crate) type CallDone = Box<dyn FnOnce(Result<(Response, Bytes), RpcError>) + Send>;

/// A call waiting for its answer on a connection.
enum Pending {
    /// A call future (it keeps its own timer).
    Waiter(oneshot::Sender<Result<Reply, RpcError>>),
    /// A completion, run by whoever takes it from the table; failed with
    /// [`RpcError::Timeout`] by the connection's sweep after `deadline`.
    Callback { deadline: Instant, done: CallDone },
}

impl Pending {
    /// Hands `res` to the call. A completion runs here, on this thread.
    fn complete(self, res: Result<Reply, RpcError>, counters: &Counters) {
        match self {
            Pending::Waiter(tx) => {
                let _ = tx.send(res);
            }
            Pending::Callback { done, .. } => {
                let outcome = outcome(res, counters);
                // A panicking completion must not take the connection down.
                if catch_unwind(AssertUnwindSafe(move || done(outcome))).is_err() {
                    log::warn!("transport: a call's completion panicked");
                }
            }
        }
    }
}

/// A call's result from what its connection gave it.
fn outcome(
    res: Result<Reply, RpcError>,
    counters: &Counters,
) -> Result<(Response, Bytes), RpcError> {
    match res {
        Ok(Reply { resp, attachment }) if resp.code == codes::OK => Ok((resp, attachment)),
        Ok(Reply { resp, .. }) => Err(RpcError::Remote {
            code: resp.code,
            text: resp.error_text,
            leader_hint: resp.leader_hint,
        }),
        Err(e) => {
            if matches!(e, RpcError::Connect(_) | RpcError::Lost(_)) {
                inc(&counters.rpc_conn_failures);
            }
            Err(e)
        }
    }
}

/// Hashes a call id (ids are consecutive): one multiplication, where the
/// default hasher would spend more than the table's other work.
#[derive(Default)]
struct CallIdHasher(u64);

impl std::hash::Hasher for CallIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type CallMap = HashMap<u64, Pending, std::hash::BuildHasherDefault<CallIdHasher>>;

/// The calls waiting on a live connection.
#[derive(Default)]
struct PendingTable {
    calls: CallMap,
    /// When the sweep wakes: at or before the earliest deadline of the
    /// completions in `calls` (None when there is none).
    armed: Option<Instant>,
}

struct Conn {
    id: u64,
    /// Written by the calling thread (see `ConnOut`).
    out: Arc<ConnOut>,
    /// `None` once the connection is dead: no new call may register.
    pending: Mutex<Option<PendingTable>>,
    /// Wakes the sweep when a completion's deadline comes before the one
    /// it sleeps to.
    rearm: Notify,
    counters: Arc<Counters>,
}

impl Conn {
    fn table(&self) -> std::sync::MutexGuard<'_, Option<PendingTable>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail_all(&self, err: RpcError) {
        let pending = self.table().take();
        for (_, p) in pending.into_iter().flat_map(|t| t.calls) {
            p.complete(Err(err.clone()), &self.counters);
        }
    }

    fn resolve(&self, reply: Reply) {
        let call_id = reply.resp.call_id;
        let p = self.take(call_id);
        match p {
            Some(p) => p.complete(Ok(reply), &self.counters),
            None => log::debug!("transport: response to unknown or expired call {call_id}"),
        }
    }

    /// Removes a call from the table (None when it is gone already).
    fn take(&self, call_id: u64) -> Option<Pending> {
        self.table().as_mut().and_then(|t| t.calls.remove(&call_id))
    }

    fn forget(&self, call_id: u64) {
        drop(self.take(call_id));
    }

    /// Fails the completions whose deadline passed.
    fn expire(&self, now: Instant) {
        let expired: Vec<Pending> = {
            let mut table = self.table();
            let Some(t) = table.as_mut() else {
                return;
            };
            let mut next: Option<Instant> = None;
            let mut ids = Vec::new();
            for (id, p) in &t.calls {
                if let Pending::Callback { deadline, .. } = p {
                    if *deadline <= now {
                        ids.push(*id);
                    } else if next.map_or(true, |n| *deadline < n) {
                        next = Some(*deadline);
                    }
                }
            }
            t.armed = next;
            ids.iter().filter_map(|id| t.calls.remove(id)).collect()
        };
        for p in expired {
            inc(&self.counters.rpc_timeouts);
            p.complete(Err(RpcError::Timeout), &self.counters);
        }
    }

    /// Fails each completion at its deadline, for as long as the
    /// connection lives: one timer, re-armed at the earliest deadline.
    async fn sweep(&self) -> std::convert::Infallible {
        loop {
            let armed = self.table().as_ref().and_then(|t| t.armed);
            match armed {
                None => self.rearm.notified().await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => self.expire(Instant::now()),
                        _ = self.rearm.notified() => {}
                    }
                }
            }
        }
    }
}

struct ForgetOnDrop<'a>(&'a Conn, u64);

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// Owned by a connection's task: when the task ends or is dropped (the
/// runtime shutting down) the connection closes and its calls fail, so
/// every completion runs.
struct ConnGuard {
    conn: Arc<Conn>,
    err: Option<RpcError>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conn.out.close();
        self.conn
            .fail_all(self.err.take().unwrap_or(RpcError::Shutdown));
    }
}

struct Inner {
    handle: Handle,
    config: TransportConfig,
    /// Per protocol (`slot`), by address.
    conns: Mutex<[HashMap<String, Arc<Conn>>; 2]>,
    next_call: AtomicU64,
    next_conn: AtomicU64,
    counters: Arc<Counters>,
    stopped: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// Pipelined RPC over pooled connections. Cheap to clone; when the last
/// clone is dropped the client stops (connections closed, calls still in
/// flight fail with [`RpcError::Shutdown`]).
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
    _owner: Arc<Owner<Inner>>,
}

impl RpcClient {
    pub fn new(handle: Handle) -> RpcClient {
        Self::with_config(handle, TransportConfig::default())
    }

    pub fn with_config(handle: Handle, config: TransportConfig) -> RpcClient {
        Self::with_counters(handle, config, Arc::new(Counters::default()))
    }

    pub(crate) fn with_counters(
        handle: Handle,
        config: TransportConfig,
        counters: Arc<Counters>,
    ) -> RpcClient {
        let (shutdown, _) = watch::channel(false);
        let (inner, _owner) = owned(Inner {
            handle,
            config,
            conns: Mutex::new([HashMap::new(), HashMap::new()]),
            next_call: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            counters,
            stopped: AtomicBool::new(false),
            shutdown,
        });
        RpcClient { inner, _owner }
    }

    /// The runtime the client's tasks run on.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Calls `method` on the server at `addr` (`host:port`). A response with
    /// a non-zero code becomes [`RpcError::Remote`]. The future is `'static`
    /// and must be polled inside the client's runtime (it uses tokio timers).
    pub fn call(
        &self,
        addr: &str,
        method: &str,
        group: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, RpcError>> + Send + 'static {
        self.call_with_protocol(addr, Protocol::Rraft, method, group, payload, timeout)
    }

    /// [`RpcClient::call`] in `protocol`. Over baidu_std `method` is
    /// `package.Service.method` (the text after the last dot is the
    /// method), `group` is not sent, and the answer's code and text are
    /// brpc's `error_code` and `error_text`.
    pub fn call_with_protocol(
        &self,
        addr: &str,
        protocol: Protocol,
        method: &str,
        group: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, RpcError>> + Send + 'static {
        let info = CallInfo {
            protocol,
            ..Default::default()
        };
        let call = self.call_with_info(addr, method, group, payload, info, timeout);
        async move { call.await.map(|(resp, _)| resp) }
    }

    /// [`RpcClient::call`] in `info.protocol`, with brpc's log id and a
    /// request attachment (sent over baidu_std only); answers the response
    /// and its attachment (empty over rraft's frames).
    pub fn call_with_info(
        &self,
        addr: &str,
        method: &str,
        group: &str,
        payload: Bytes,
        info: CallInfo,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Response, Bytes), RpcError>> + Send + 'static
    {
        self.call_names(addr, method.into(), group.into(), payload, info, timeout)
    }

    /// [`RpcClient::call_with_info`] with the names as [`WireStr`]s (shared,
    /// not copied).
    pub(crate) fn call_names(
        &self,
        addr: &str,
        method: WireStr,
        group: WireStr,
        payload: Bytes,
        info: CallInfo,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Response, Bytes), RpcError>> + Send + 'static
    {
        let inner = self.inner.clone();
        let addr = addr.to_string();
        // The call keeps the client alive until it finishes.
        let owner = self._owner.clone();
        async move {
            // Made inside: a future awaiting one it captured holds it twice.
            let out = Outgoing {
                req: Request {
                    call_id: 0,
                    method,
                    group,
                    payload,
                },
                log_id: info.log_id,
                attachment: info.attachment,
            };
            let res = inner.call(addr, info.protocol, out, timeout).await;
            drop(owner);
            res
        }
    }

    /// [`RpcClient::call_with_info`] without a future: `done` runs exactly
    /// once with the outcome, on a runtime thread (the connection's task
    /// when the answer comes, a task of its own when the request could not
    /// be sent), never on the calling thread. No answer by `deadline` is
    /// [`RpcError::Timeout`]. `done` must not block. Callable from any
    /// thread.
    pub(crate) fn call_then(
        &self,
        addr: &str,
        req: Request,
        info: CallInfo,
        deadline: Instant,
        done: CallDone,
    ) {
        let out = Outgoing {
            req,
            log_id: info.log_id,
            attachment: info.attachment,
        };
        self.inner
            .call_then(addr, info.protocol, out, deadline, done);
    }

    /// [`RpcClient::call`] for threads outside the runtime: spawns the call on
    /// the client's runtime and blocks until it finishes. Never call it from
    /// a tokio worker.
    pub fn call_blocking(
        &self,
        addr: &str,
        method: &str,
        group: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let fut = self.call(addr, method, group, payload, timeout);
        block_on_spawned(&self.inner.handle, fut)
    }

    /// Closes every connection and fails pending and later calls with
    /// [`RpcError::Shutdown`]. Idempotent.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Counters (shared with the owning server, if any).
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }
}

/// Blocking calls in progress in the process (see [`block_on_spawned`]).
static BLOCKING_CALLS: AtomicUsize = AtomicUsize::new(0);

/// Counts one blocking call while it lives.
struct BlockingCall;

impl BlockingCall {
    /// Starts counting; true when no other blocking call was in progress.
    fn start() -> (BlockingCall, bool) {
        let before = BLOCKING_CALLS.fetch_add(1, Ordering::AcqRel);
        (BlockingCall, before == 0)
    }
}

impl Drop for BlockingCall {
    fn drop(&mut self) {
        BLOCKING_CALLS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `fut` to completion for a thread outside the runtime. The only
/// blocking call of the process, on a thread with no runtime entered,
/// polls its future itself (its IO is driven by the runtime's workers): the
/// caller writes its request and the answer wakes the caller directly.
/// Otherwise it runs as a task of `handle`: with many callers (a thread
/// each), the workers write their requests in batches and keep their
/// timers, where a timer set from a thread of its own would wake a parked
/// worker to re-arm the timer wheel.
pub(crate) fn block_on_spawned<T: Send + 'static>(
    handle: &Handle,
    fut: impl std::future::Future<Output = Result<T, RpcError>> + Send + 'static,
) -> Result<T, RpcError> {
    let (_counted, alone) = BlockingCall::start();
    if alone && Handle::try_current().is_err() {
        return handle.block_on(fut);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or(Err(RpcError::Shutdown))
}

impl Stoppable for Inner {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        let conns: Vec<Arc<Conn>> = {
            let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            c.iter_mut()
                .flat_map(|m| m.drain().map(|(_, v)| v))
                .collect()
        };
        for c in conns {
            c.fail_all(RpcError::Shutdown);
        }
    }
}

/// The index of a protocol's connections in `Inner::conns`.
fn slot(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Rraft => 0,
        Protocol::BaiduStd => 1,
    }
}

/// Why a request could not be sent: the error its call ends with.
fn send_error(e: SendError, counters: &Counters) -> RpcError {
    match e {
        SendError::Closed => {
            inc(&counters.rpc_conn_failures);
            RpcError::Connect("connection closed".into())
        }
        SendError::Encode(e) => RpcError::Remote {
            code: codes::EINVAL,
            text: format!("request not sent: {e}"),
            leader_hint: String::new(),
        },
    }
}

impl Inner {
    async fn call(
        self: Arc<Self>,
        addr: String,
        protocol: Protocol,
        mut out: Outgoing,
        timeout: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(RpcError::Shutdown);
        }
        inc(&self.counters.rpc_calls);
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        out.req.call_id = call_id;
        let (otx, orx) = oneshot::channel();
        let (conn, in_flight) = self
            .register(&addr, protocol, call_id, Pending::Waiter(otx))
            .map_err(|(e, _)| e)?;
        // A call future dropped early (cancelled, timed out) leaves nothing
        // behind in the pending table.
        let _forget = ForgetOnDrop(&conn, call_id);
        // Alone on the connection, the caller writes its request now (also
        // from a tokio task); with other calls in flight, their requests
        // are about to follow (their answers woke them together): one task
        // writes them in one batch.
        if let Err(e) = conn.out.send_request(out, in_flight == 1) {
            return Err(send_error(e, &self.counters));
        }
        let res = match tokio::time::timeout(timeout, orx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RpcError::Lost("connection closed".into())),
            Err(_) => {
                inc(&self.counters.rpc_timeouts);
                return Err(RpcError::Timeout);
            }
        };
        outcome(res, &self.counters)
    }

    /// The call of [`RpcClient::call_then`]: registers `done` and sends.
    /// `done` runs on a task, never on this thread, when the call fails
    /// before its request left.
    fn call_then(
        self: &Arc<Self>,
        addr: &str,
        protocol: Protocol,
        mut out: Outgoing,
        deadline: Instant,
        done: CallDone,
    ) {
        let failed = |done: CallDone, e: RpcError| {
            self.handle.spawn(async move { done(Err(e)) });
        };
        if self.stopped.load(Ordering::Acquire) {
            return failed(done, RpcError::Shutdown);
        }
        inc(&self.counters.rpc_calls);
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        out.req.call_id = call_id;
        let pending = Pending::Callback { deadline, done };
        let (conn, in_flight) = match self.register(addr, protocol, call_id, pending) {
            Ok(registered) => registered,
            Err((e, Some(Pending::Callback { done, .. }))) => return failed(done, e),
            Err((_, _)) => return,
        };
        if let Err(e) = conn.out.send_request(out, in_flight == 1) {
            let e = send_error(e, &self.counters);
            if let Some(Pending::Callback { done, .. }) = conn.take(call_id) {
                failed(done, e);
            }
        }
    }

    /// Finds or opens the connection to `addr` and registers the call on
    /// it; answers the connection and its calls in flight (this one
    /// included). On error the call comes back unregistered.
    fn register(
        self: &Arc<Self>,
        addr: &str,
        protocol: Protocol,
        call_id: u64,
        p: Pending,
    ) -> Result<(Arc<Conn>, usize), (RpcError, Option<Pending>)> {
        let mut p = Some(p);
        let slot = slot(protocol);
        for _ in 0..2 {
            let conn = {
                let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
                if self.stopped.load(Ordering::Acquire) {
                    return Err((RpcError::Shutdown, p));
                }
                match conns[slot].get(addr) {
                    Some(c) => c.clone(),
                    None => {
                        let c = self.open(addr, protocol);
                        conns[slot].insert(addr.to_string(), c.clone());
                        c
                    }
                }
            };
            let mut pending = conn.table();
            match pending.as_mut() {
                Some(t) => {
                    let call = p.take().expect("registered once");
                    // The sweep sleeps to `armed`: wake it when this
                    // deadline comes first.
                    let mut rearm = false;
                    if let Pending::Callback { deadline, .. } = &call {
                        if t.armed.map_or(true, |a| *deadline < a) {
                            t.armed = Some(*deadline);
                            rearm = true;
                        }
                    }
                    t.calls.insert(call_id, call);
                    let in_flight = t.calls.len();
                    drop(pending);
                    if rearm {
                        conn.rearm.notify_one();
                    }
                    return Ok((conn, in_flight));
                }
                None => {
                    // Dead but not yet removed: remove it and open anew.
                    drop(pending);
                    self.remove(slot, addr, &conn);
                }
            }
        }
        Err((RpcError::Connect("connection closed".into()), p))
    }

    fn open(self: &Arc<Self>, addr: &str, protocol: Protocol) -> Arc<Conn> {
        let out = ConnOut::new(
            protocol,
            self.config.max_frame(),
            self.handle.clone(),
            self.counters.clone(),
            Some(self.config.write_timeout),
        );
        let conn = Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            out,
            pending: Mutex::new(Some(PendingTable::default())),
            rearm: Notify::new(),
            counters: self.counters.clone(),
        });
        self.handle.spawn(conn_task(
            self.clone(),
            addr.to_string(),
            protocol,
            ConnGuard {
                conn: conn.clone(),
                err: None,
            },
        ));
        conn
    }

    fn remove(&self, slot: usize, addr: &str, conn: &Conn) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns[slot].get(addr).is_some_and(|c| c.id == conn.id) {
            conns[slot].remove(addr);
        }
    }
}

/// Runs a connection until it fails; the guard (dropped also when the
/// task is) closes it and fails its calls.
async fn conn_task(inner: Arc<Inner>, addr: String, protocol: Protocol, mut guard: ConnGuard) {
    let conn = guard.conn.clone();
    let err = run_conn(&inner, &addr, protocol, &conn).await;
    conn.out.close();
    inner.remove(slot(protocol), &addr, &conn);
    guard.err = Some(err);
}

/// Connects, then reads answers until the connection fails; requests are
/// written by the callers (`ConnOut`).
async fn run_conn(inner: &Inner, addr: &str, protocol: Protocol, conn: &Conn) -> RpcError {
    let mut shutdown = inner.shutdown.subscribe();
    if *shutdown.borrow() {
        return RpcError::Shutdown;
    }
    let max_frame = inner.config.max_frame();
    let mut sweep = std::pin::pin!(conn.sweep());
    let stream = tokio::select! {
        never = &mut sweep => match never {},
        _ = shutdown.changed() => return RpcError::Shutdown,
        r = tokio::time::timeout(inner.config.connect_timeout, TcpStream::connect(addr)) => r,
    };
    let stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inc(&inner.counters.connect_failures);
            return RpcError::Connect(format!("{addr}: {e}"));
        }
        Err(_) => {
            inc(&inner.counters.connect_failures);
            return RpcError::Connect(format!("{addr}: connect timed out"));
        }
    };
    let _open = Gauge::up(&inner.counters.rpc_connections_open);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut reader = ConnReader::new(protocol, rd, max_frame);
    conn.out.attach(wr);
    let mut stopping = std::pin::pin!(super::server::stopped(shutdown.clone()));
    loop {
        tokio::select! {
            never = &mut sweep => match never {},
            _ = &mut stopping => return RpcError::Shutdown,
            _ = conn.out.closed() => return RpcError::Lost(format!("{addr}: writing failed")),
            r = reader.next() => match r {
                Ok(Some((incoming, n))) => {
                    inc(&inner.counters.frames_in);
                    add(&inner.counters.bytes_in, n as u64);
                    let resp = match incoming {
                        Incoming::Frame(Frame::Response(resp)) => Ok(Reply { resp, attachment: Bytes::new() }),
                        Incoming::Frame(other) => Err(format!("unexpected {:?} frame", other.kind())),
                        Incoming::Baidu(msg) => baidu_response(msg),
                    };
                    match resp {
                        Ok(resp) => conn.resolve(resp),
                        Err(e) => {
                            log::warn!("transport: {e} from {addr}, closing");
                            inc(&inner.counters.bad_frames);
                            return RpcError::Lost(format!("{addr}: protocol error"));
                        }
                    }
                }
                Ok(None) => return RpcError::Lost(format!("{addr}: connection closed by peer")),
                Err(ReadError::Io(e)) => return RpcError::Lost(format!("{addr}: {e}")),
                Err(e) => {
                    log::warn!("transport: closing connection to {addr}: {e}");
                    inc(&inner.counters.bad_frames);
                    return RpcError::Lost(format!("{addr}: {e}"));
                }
            },
        }
    }
}
