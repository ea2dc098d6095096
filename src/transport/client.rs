//! [`GroupClient`]: calls a method on the leader of a Raft group, finding
//! and following the leader (braft's route table + channel; backs the C
//! `raft_client_t`).
//!
//! A call goes to the cached leader, or first asks the peers
//! (`raft.get_leader`, all at once, first answer wins). A "not leader"
//! answer (EPERM, or ENODESHUTDOWN) with a `leader_hint` is followed at once;
//! without a hint, or when the leader cannot be connected to, the client
//! forgets the leader, waits a short back-off and asks again, until the
//! overall timeout. Any other remote error is the application's answer and
//! is returned as is.
//!
//! The client speaks rraft's frames by default, or brpc's baidu_std
//! ([`GroupClient::set_protocol`]) to call a braft service: it then finds
//! the leader with braft's `CliService.get_leader`, and method names are
//! `package.Service.method`.
//!
//! Calls are **at most once** by default: once a request has left, a timeout
//! or a connection lost before the answer is returned to the caller
//! (outcome unknown: the request may have been carried out), never resent.
//! A client of idempotent methods can opt into resending with
//! [`GroupClient::set_idempotent`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cli_service::{self, GetLeaderRequest, GetLeaderResponse};
use super::codes;
use super::peer_id::peer_addr;
use super::rpc::{block_on_spawned, RpcClient, RpcError};
use super::wire::{Request, Response};
use super::wire_str::WireStr;
use super::{CallInfo, Protocol, METHOD_GET_LEADER};

/// How many method names a client keeps to send without a copy.
const KEPT_METHODS: usize = 16;

struct Inner {
    rpc: RpcClient,
    group: WireStr,
    /// The names of the methods called so far (up to [`KEPT_METHODS`]):
    /// every call of one shares its bytes instead of copying them.
    methods: Mutex<Vec<WireStr>>,
    peers: Mutex<Vec<String>>,
    leader: Mutex<Option<Arc<Leader>>>,
    cursor: AtomicUsize,
    attempt_timeout: Mutex<Option<Duration>>,
    /// Resend after an unknown outcome (only for idempotent methods).
    idempotent: std::sync::atomic::AtomicBool,
    protocol: Mutex<Protocol>,
}

/// The cached leader: its peer id and the address parsed from it once
/// (every call goes there; `None` when the id names no address).
struct Leader {
    id: String,
    addr: Option<String>,
}

impl Leader {
    fn new(id: String) -> Arc<Leader> {
        let addr = peer_addr(&id);
        Arc::new(Leader { id, addr })
    }
}

/// Leader-following client of one group. Cheap to clone.
#[derive(Clone)]
pub struct GroupClient {
    inner: Arc<Inner>,
}

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

impl GroupClient {
    /// A client of `group` whose members are `peers` (peer ids
    /// `host:port[:idx]`), with its own [`RpcClient`] on `handle`.
    pub fn new(handle: Handle, group: &str, peers: Vec<String>) -> GroupClient {
        Self::with_rpc(RpcClient::new(handle), group, peers)
    }

    /// A client sharing an existing [`RpcClient`] (e.g. a server's).
    pub fn with_rpc(rpc: RpcClient, group: &str, peers: Vec<String>) -> GroupClient {
        GroupClient {
            inner: Arc::new(Inner {
                rpc,
                group: WireStr::from(group),
                methods: Mutex::new(Vec::new()),
                peers: Mutex::new(peers),
                leader: Mutex::new(None),
                cursor: AtomicUsize::new(0),
                attempt_timeout: Mutex::new(None),
                idempotent: std::sync::atomic::AtomicBool::new(false),
                protocol: Mutex::new(Protocol::Rraft),
            }),
        }
    }

    /// The group id.
    pub fn group(&self) -> &str {
        &self.inner.group
    }

    /// Replaces the member list (the cached leader is kept).
    pub fn set_peers(&self, peers: Vec<String>) {
        *self.inner.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// The member list.
    pub fn peers(&self) -> Vec<String> {
        self.inner
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Declares the methods called through this client idempotent: after a
    /// timeout or a connection lost mid-call the request is sent again
    /// (to the new leader) instead of returning the unknown outcome.
    pub fn set_idempotent(&self, idempotent: bool) {
        self.inner.idempotent.store(idempotent, Ordering::Relaxed);
    }

    /// Selects the protocol of later calls (default [`Protocol::Rraft`]).
    pub fn set_protocol(&self, protocol: Protocol) {
        *self
            .inner
            .protocol
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = protocol;
    }

    /// The protocol calls use.
    pub fn protocol(&self) -> Protocol {
        self.inner.protocol()
    }

    /// Caps each attempt of a call (default: the whole remaining time), so a
    /// leader that hangs without closing its connection is given up earlier.
    /// Without [`GroupClient::set_idempotent`] an attempt that times out ends
    /// the call (outcome unknown).
    pub fn set_attempt_timeout(&self, t: Option<Duration>) {
        *self
            .inner
            .attempt_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// The cached leader peer id, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner.cached().map(|l| l.id.clone())
    }

    /// Sets the cached leader (e.g. from an out-of-band hint).
    pub fn set_leader(&self, leader: Option<String>) {
        self.inner.set(leader);
    }

    /// Asks the peers who leads (all at once; the first answer wins) and
    /// caches it.
    pub fn refresh_leader(
        &self,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<String, RpcError>> + Send + 'static {
        let inner = self.inner.clone();
        async move { inner.refresh(Instant::now() + timeout).await }
    }

    /// [`GroupClient::refresh_leader`] for threads outside the runtime.
    pub fn refresh_leader_blocking(&self, timeout: Duration) -> Result<String, RpcError> {
        block_on_spawned(self.inner.rpc.handle(), self.refresh_leader(timeout))
    }

    /// Calls `method` on the group's leader within `timeout` overall.
    pub fn call(
        &self,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, RpcError>> + Send + 'static {
        // Built from `Inner::call` directly, not by wrapping
        // `call_with_attachment`: a future that awaits a future it captured
        // holds it twice, and every move of the call (into its task, into
        // a caller's future) copies all of it.
        let inner = self.inner.clone();
        let method = inner.method(method);
        async move {
            inner
                .call(method, payload, 0, Bytes::new(), timeout)
                .await
                .map(|(resp, _)| resp)
        }
    }

    /// [`GroupClient::call`] with brpc's log id and a request attachment
    /// (sent over baidu_std only); answers the response and its attachment
    /// (empty over rraft's frames).
    pub fn call_with_attachment(
        &self,
        method: &str,
        payload: Bytes,
        log_id: i64,
        attachment: Bytes,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Response, Bytes), RpcError>> + Send + 'static
    {
        let inner = self.inner.clone();
        let method = inner.method(method);
        async move {
            inner
                .call(method, payload, log_id, attachment, timeout)
                .await
        }
    }

    /// [`GroupClient::call`] for threads outside the runtime (never call it
    /// from a tokio worker).
    pub fn call_blocking(
        &self,
        method: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        block_on_spawned(self.inner.rpc.handle(), self.call(method, payload, timeout))
    }

    /// [`GroupClient::call_with_attachment`] for threads outside the
    /// runtime (never call it from a tokio worker).
    pub fn call_with_attachment_blocking(
        &self,
        method: &str,
        payload: Bytes,
        log_id: i64,
        attachment: Bytes,
        timeout: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        block_on_spawned(
            self.inner.rpc.handle(),
            self.call_with_attachment(method, payload, log_id, attachment, timeout),
        )
    }

    /// [`GroupClient::call`] with a completion callback, run exactly once on
    /// a tokio worker (it must not block), never on the calling thread.
    ///
    /// With a cached leader the call is a completion registered on the
    /// leader's connection (no task, no timer of its own); only a call
    /// that must wait or try again (no leader known, a redirect, a
    /// connection failure) continues as a task.
    pub fn call_with<F>(&self, method: &str, payload: Bytes, timeout: Duration, done: F)
    where
        F: FnOnce(Result<Response, RpcError>) + Send + 'static,
    {
        let now = Instant::now();
        let deadline = now + timeout;
        // Runs `done` even if the runtime drops the call (shutdown).
        let done = DoneOnce(Some(done));
        match self.inner.cached() {
            Some(leader) if leader.addr.is_some() => Inner::attempt_then(
                self.inner.clone(),
                leader,
                self.inner.method(method),
                payload,
                (now, deadline),
                done,
            ),
            _ => Inner::resume(
                self.inner.clone(),
                self.inner.method(method),
                payload,
                deadline,
                None,
                done,
            ),
        }
    }
}

/// Holds a completion; if dropped before running, runs it with
/// [`RpcError::Shutdown`], so the callback runs exactly once.
struct DoneOnce<F: FnOnce(Result<Response, RpcError>)>(Option<F>);

impl<F: FnOnce(Result<Response, RpcError>)> DoneOnce<F> {
    fn run(mut self, res: Result<Response, RpcError>) {
        if let Some(f) = self.0.take() {
            f(res);
        }
    }
}

impl<F: FnOnce(Result<Response, RpcError>)> Drop for DoneOnce<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(RpcError::Shutdown));
        }
    }
}

/// What a call does after an attempt.
enum Next {
    /// The call's outcome.
    Done(Result<(Response, Bytes), RpcError>),
    /// Try again now (the leader moved).
    Again,
    /// Try again after a back-off; the error is the call's last.
    Pause(RpcError),
}

fn is_redirect(code: i32) -> bool {
    code == codes::EPERM || code == codes::ENODESHUTDOWN || code == codes::ESHUTDOWN
}

impl Inner {
    /// `name` as sent: the kept copy when it was called before.
    fn method(&self, name: &str) -> WireStr {
        let mut kept = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = kept.iter().find(|m| m.as_str() == name) {
            return m.clone();
        }
        let m = WireStr::from(name);
        if kept.len() < KEPT_METHODS {
            kept.push(m.clone());
        }
        m
    }

    fn protocol(&self) -> Protocol {
        *self.protocol.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks `peer` who leads, in the client's protocol.
    fn ask_leader(
        &self,
        addr: &str,
        peer: &str,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<String, RpcError>> + Send + 'static {
        let protocol = self.protocol();
        let (method, payload) = match protocol {
            Protocol::Rraft => (METHOD_GET_LEADER.to_string(), self.group.as_bytes().clone()),
            Protocol::BaiduStd => (
                cli_service::method_name("get_leader"),
                Bytes::from(prost::Message::encode_to_vec(&GetLeaderRequest {
                    group_id: self.group.to_string(),
                    peer_id: Some(peer.to_string()),
                })),
            ),
        };
        let call =
            self.rpc
                .call_with_protocol(addr, protocol, &method, &self.group, payload, timeout);
        async move {
            let resp = call.await?;
            Ok(match protocol {
                Protocol::Rraft if !resp.leader_hint.is_empty() => resp.leader_hint,
                Protocol::Rraft => String::from_utf8_lossy(&resp.payload).into_owned(),
                Protocol::BaiduStd => {
                    <GetLeaderResponse as prost::Message>::decode(resp.payload)
                        .map_err(|e| RpcError::Lost(format!("bad GetLeaderResponse: {e}")))?
                        .leader_id
                }
            })
        }
    }

    fn cached(&self) -> Option<Arc<Leader>> {
        self.leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, l: Option<String>) {
        *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = l.map(Leader::new);
    }

    /// Forgets `bad` if it is still the cached leader.
    fn forget(&self, bad: &str) {
        let mut l = self.leader.lock().unwrap_or_else(|e| e.into_inner());
        if l.as_ref().is_some_and(|l| l.id == bad) {
            *l = None;
        }
    }

    async fn refresh(&self, deadline: Instant) -> Result<String, RpcError> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if peers.is_empty() {
            return Err(RpcError::BadAddress("no peers configured".into()));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(RpcError::Timeout);
        }
        // Ask everyone at once, starting the rotation elsewhere each time.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(peers.len());
        let mut asked = 0;
        for i in 0..peers.len() {
            let peer = &peers[(start + i) % peers.len()];
            let Some(addr) = peer_addr(peer) else {
                continue;
            };
            asked += 1;
            let fut = self.ask_leader(&addr, peer, remaining);
            let tx = tx.clone();
            self.rpc.handle().spawn(async move {
                let _ = tx.send(fut.await).await;
            });
        }
        drop(tx);
        if asked == 0 {
            return Err(RpcError::BadAddress("no valid peer id".into()));
        }
        let mut last = RpcError::Timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(RpcError::Timeout),
                Ok(None) => return Err(last),
                Ok(Some(Ok(leader))) => {
                    if peer_addr(&leader).is_some() {
                        self.set(Some(leader.clone()));
                        return Ok(leader);
                    }
                }
                Ok(Some(Err(e))) => last = e,
            }
        }
    }

    async fn call(
        &self,
        method: WireStr,
        payload: Bytes,
        log_id: i64,
        attachment: Bytes,
        timeout: Duration,
    ) -> Result<(Response, Bytes), RpcError> {
        // One clock read serves the first attempt (the common case): the
        // clock is read again only after something waited.
        let now = Instant::now();
        self.call_until(
            method,
            payload,
            log_id,
            attachment,
            now,
            now + timeout,
            None,
        )
        .await
    }

    /// The attempts of a call until `deadline`, the clock being `now`;
    /// `paused`: an attempt failed with this error and the next one waits
    /// a back-off first.
    #[allow(clippy::too_many_arguments)]
    async fn call_until(
        &self,
        method: WireStr,
        payload: Bytes,
        log_id: i64,
        attachment: Bytes,
        mut now: Instant,
        deadline: Instant,
        paused: Option<RpcError>,
    ) -> Result<(Response, Bytes), RpcError> {
        let mut first = true;
        let mut backoff = BACKOFF_MIN;
        let mut last: Option<RpcError> = None;
        if let Some(e) = paused {
            last = Some(e);
            backoff = self.pause(backoff, deadline).await;
            first = false;
        }
        loop {
            if !std::mem::take(&mut first) {
                now = Instant::now();
            }
            if now >= deadline {
                log::debug!(
                    "transport: group {} call {method} timed out (last error: {last:?})",
                    self.group
                );
                return Err(RpcError::Timeout);
            }
            let leader = match self.cached() {
                Some(l) => l,
                None => match self.refresh(deadline).await {
                    Ok(l) => {
                        now = Instant::now();
                        Leader::new(l)
                    }
                    Err(RpcError::Timeout) => return Err(RpcError::Timeout),
                    Err(e @ RpcError::BadAddress(_)) => return Err(e),
                    Err(RpcError::Shutdown) => return Err(RpcError::Shutdown),
                    Err(e) => {
                        last = Some(e);
                        backoff = self.pause(backoff, deadline).await;
                        continue;
                    }
                },
            };
            let Some(addr) = leader.addr.as_deref() else {
                self.forget(&leader.id);
                continue;
            };
            let info = CallInfo {
                protocol: self.protocol(),
                log_id,
                attachment: attachment.clone(),
            };
            let res = self
                .rpc
                .call_names(
                    addr,
                    method.clone(),
                    self.group.clone(),
                    payload.clone(),
                    info,
                    self.attempt_time(deadline.saturating_duration_since(now)),
                )
                .await;
            match self.after_attempt(&leader, res) {
                Next::Done(res) => return res,
                Next::Again => {}
                Next::Pause(e) => {
                    last = Some(e);
                    backoff = self.pause(backoff, deadline).await;
                }
            }
        }
    }

    /// How long the next attempt may take, `remaining` of the call left.
    fn attempt_time(&self, remaining: Duration) -> Duration {
        match *self
            .attempt_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(cap) => remaining.min(cap),
            None => remaining,
        }
    }

    /// Judges an attempt on `leader`: follows a redirect, forgets a leader
    /// that failed, and says whether the call is over.
    fn after_attempt(&self, leader: &Leader, res: Result<(Response, Bytes), RpcError>) -> Next {
        match res {
            Ok(answer) => Next::Done(Ok(answer)),
            Err(RpcError::Remote {
                code,
                text,
                leader_hint,
            }) if is_redirect(code) => {
                if !leader_hint.is_empty()
                    && leader_hint != leader.id
                    && peer_addr(&leader_hint).is_some()
                {
                    log::debug!(
                        "transport: group {} leader moved {} → {leader_hint}",
                        self.group,
                        leader.id
                    );
                    self.set(Some(leader_hint));
                    return Next::Again;
                }
                self.forget(&leader.id);
                Next::Pause(RpcError::Remote {
                    code,
                    text,
                    leader_hint,
                })
            }
            Err(e @ RpcError::Remote { .. }) => Next::Done(Err(e)),
            Err(RpcError::Shutdown) => Next::Done(Err(RpcError::Shutdown)),
            Err(e @ (RpcError::Lost(_) | RpcError::Timeout))
                if !self.idempotent.load(Ordering::Relaxed) =>
            {
                // The request left: resending could apply it twice.
                self.forget(&leader.id);
                Next::Done(Err(e))
            }
            Err(e) => {
                // Connection failure or attempt timeout: try elsewhere.
                log::debug!(
                    "transport: group {} leader {} unreachable: {e}",
                    self.group,
                    leader.id
                );
                self.forget(&leader.id);
                Next::Pause(e)
            }
        }
    }

    /// The first attempt of [`GroupClient::call_with`] on the cached
    /// `leader` (which has an address), as a completion on its connection;
    /// `clock` is (now, the call's deadline). What follows the attempt, if
    /// anything, continues as a task ([`Inner::resume`]).
    fn attempt_then<F>(
        this: Arc<Inner>,
        leader: Arc<Leader>,
        method: WireStr,
        payload: Bytes,
        (now, deadline): (Instant, Instant),
        done: DoneOnce<F>,
    ) where
        F: FnOnce(Result<Response, RpcError>) + Send + 'static,
    {
        let req = Request {
            call_id: 0,
            method: method.clone(),
            group: this.group.clone(),
            payload: payload.clone(),
        };
        let info = CallInfo {
            protocol: this.protocol(),
            ..Default::default()
        };
        let attempt_deadline = now + this.attempt_time(deadline.saturating_duration_since(now));
        let inner = this.clone();
        let on_leader = leader.clone();
        let addr = leader.addr.as_deref().unwrap_or_default();
        this.rpc.call_then(
            addr,
            req,
            info,
            attempt_deadline,
            Box::new(move |res| match inner.after_attempt(&on_leader, res) {
                Next::Done(res) => done.run(res.map(|(resp, _)| resp)),
                Next::Again => Inner::resume(inner, method, payload, deadline, None, done),
                Next::Pause(e) => Inner::resume(inner, method, payload, deadline, Some(e), done),
            }),
        );
    }

    /// Continues [`GroupClient::call_with`] as a task: its attempts until
    /// `deadline` (after a back-off when `paused`), then `done`.
    fn resume<F>(
        this: Arc<Inner>,
        method: WireStr,
        payload: Bytes,
        deadline: Instant,
        paused: Option<RpcError>,
        done: DoneOnce<F>,
    ) where
        F: FnOnce(Result<Response, RpcError>) + Send + 'static,
    {
        let handle = this.rpc.handle().clone();
        // The call's future is made inside the task's (see `call`).
        handle.spawn(async move {
            let res = this
                .call_until(
                    method,
                    payload,
                    0,
                    Bytes::new(),
                    Instant::now(),
                    deadline,
                    paused,
                )
                .await
                .map(|(resp, _)| resp);
            done.run(res);
        });
    }

    /// Sleeps `backoff` (not past the deadline); returns the next back-off.
    async fn pause(&self, backoff: Duration, deadline: Instant) -> Duration {
        let until = (Instant::now() + backoff).min(deadline);
        tokio::time::sleep_until(until).await;
        (backoff * 2).min(BACKOFF_MAX)
    }
}
