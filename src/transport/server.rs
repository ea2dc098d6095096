//! The server side: one listening port hosting every Raft node of the
//! process (any number of groups) and the user's methods.
//!
//! Each accepted connection gets one task that reads frames and dispatches
//! them; a [`Responder`]'s answer is written to the socket by the thread
//! that gives it (answers given meanwhile share the write; see
//! `codec::ConnOut`). A connection speaks rraft's frames,
//! brpc's baidu_std (it starts with `PRPC`) or HTTP (status pages); its
//! first four bytes tell which. A malformed frame closes that
//! connection only (with a `warn` log line); nothing read from the network
//! can panic the server or make it allocate more than the maximum frame size.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::baidu_std::{self, BaiduMessage};
use super::codec::{ConnOut, ConnReader, Incoming, ReadError, ReplyRef};
use super::frame::{Frame, DEFAULT_MAX_FRAME};
use super::peer_id::peer_key;
use super::peers::{Transport, TransportConfig};
use super::rpc::RpcClient;
use super::stats::{add, inc, Counters, Gauge, Stats};
use super::wire::{Heartbeats, RaftBatch, Request, Response};
use super::wire_str::WireStr;
use super::{codes, Error, Protocol, METHOD_GET_LEADER, RESERVED_PREFIX};
use crate::fast_hash::FastHashMap;
use crate::proto::Message;

/// What the server needs from a Raft node registered on it.
pub trait NodeHandle: Send + Sync {
    /// Raft messages addressed to this node, in arrival order. Called on a
    /// tokio worker: must not block (it may handle them on this thread when
    /// that needs no wait, else queue them to the node's task). Peer writes
    /// and pool wake-ups are held across the deliveries of one frame.
    fn deliver(&self, msgs: Vec<Message>);
    /// The peer id of the leader this node knows of, if any.
    fn leader_hint(&self) -> Option<String>;
    /// The server's connection to `addr` (`ip:port`) was lost or could not
    /// be made: the replicas there may have failed. Called on a tokio
    /// worker: must not block. Nodes that never quiesce run their own
    /// timers and may ignore it.
    fn server_unreachable(&self, _addr: &str) {}
}

/// A method handler. Called on a tokio worker: must not block; answer later
/// through the [`Responder`] from any thread.
pub type Handler = Arc<dyn Fn(Request, Responder) + Send + Sync>;

/// What a call carries beyond its [`Request`]: the protocol it came by
/// and, over baidu_std, brpc's `log_id` and the request's attachment
/// (over rraft's frames both are empty).
#[derive(Clone, Debug, Default)]
pub struct CallInfo {
    pub protocol: Protocol,
    pub log_id: i64,
    pub attachment: Bytes,
}

/// Answers one request, exactly once: [`Responder::reply`] or
/// [`Responder::reply_error`] consume it. Dropping it unanswered sends
/// [`codes::EINTERNAL`] "handler dropped the request", so a caller never
/// hangs. Answering after the connection closed is silently a no-op.
pub struct Responder {
    call_id: u64,
    info: CallInfo,
    tx: Option<Arc<ConnOut>>,
    /// One of the connection's in-flight slots, released with the answer.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Responder {
    /// The caller's call id.
    pub fn call_id(&self) -> u64 {
        self.call_id
    }

    /// The protocol the call came by.
    pub fn protocol(&self) -> Protocol {
        self.info.protocol
    }

    /// brpc's `log_id` of a baidu_std call (0 when none was sent).
    pub fn log_id(&self) -> i64 {
        self.info.log_id
    }

    /// The attachment of a baidu_std request (empty otherwise).
    pub fn request_attachment(&self) -> &Bytes {
        &self.info.attachment
    }

    /// Success with `payload`.
    pub fn reply(self, payload: Bytes) {
        self.reply_with_attachment(payload, Bytes::new());
    }

    /// Success with `payload` and, over baidu_std, an attachment (rraft's
    /// frames have no field for it: there it is dropped).
    pub fn reply_with_attachment(self, payload: Bytes, attachment: Bytes) {
        self.reply_slices(&payload, &attachment);
    }

    /// [`Responder::reply_with_attachment`] with borrowed bytes: they are
    /// encoded into the connection's buffer before this returns.
    pub fn reply_slices(mut self, payload: &[u8], attachment: &[u8]) {
        self.send(ReplyRef {
            call_id: self.call_id,
            code: codes::OK,
            payload,
            attachment,
            ..Default::default()
        });
    }

    /// Failure with a code (see [`codes`]), a text and, on "not leader", the
    /// leader's peer id (empty if unknown).
    pub fn reply_error(mut self, code: i32, text: &str, leader_hint: &str) {
        self.send(ReplyRef {
            call_id: self.call_id,
            code,
            error_text: text,
            leader_hint,
            ..Default::default()
        });
    }

    /// Sends a whole response (its `call_id` is overwritten).
    pub fn reply_response(mut self, resp: Response) {
        self.send(ReplyRef {
            call_id: self.call_id,
            ..ReplyRef::of(&resp, &[])
        });
    }

    fn send(&mut self, reply: ReplyRef<'_>) {
        if let Some(tx) = self.tx.take() {
            // The connection may be gone: nothing to do then.
            let _ = tx.send_reply(reply);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.send(ReplyRef {
                call_id: self.call_id,
                code: codes::EINTERNAL,
                error_text: "handler dropped the request",
                ..Default::default()
            });
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("call_id", &self.call_id)
            .finish()
    }
}

/// group → canonical peer key → node.
type NodeTable = FastHashMap<GroupName, HashMap<String, Arc<dyn NodeHandle>>>;

/// Longest group name a [`GroupName`] holds in itself.
const INLINE_NAME: usize = 30;

/// A routing table key: a group's name, held in the key itself when it is
/// short. Every message routed looks its group up, and the lookup compares
/// the name: held inline, it lies in the bucket the lookup reads anyway,
/// not behind a pointer in memory no other lookup touched (with 1,000
/// groups those loads were 5% of an idle server's CPU).
#[derive(Clone)]
enum GroupName {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

impl GroupName {
    fn new(name: &str) -> GroupName {
        if name.len() <= INLINE_NAME {
            let mut bytes = [0u8; INLINE_NAME];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            GroupName::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            GroupName::Heap(name.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            GroupName::Inline { len, bytes } => {
                let bytes = &bytes[..usize::from(*len).min(INLINE_NAME)];
                // SAFETY: `bytes` is a copy of a whole `&str` (see `new`),
                // so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            GroupName::Heap(name) => name,
        }
    }
}

impl PartialEq for GroupName {
    fn eq(&self, other: &GroupName) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for GroupName {}

/// Hashes as the `str` it holds, so that the table is looked up by `&str`.
impl std::hash::Hash for GroupName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Routing tables shared by the listener and connection tasks.
struct Shared {
    /// group → canonical peer key → node.
    nodes: RwLock<NodeTable>,
    /// Bumped (under the write lock) by every change of `nodes`: routes
    /// cached from an older table are looked up again.
    nodes_version: AtomicU64,
    /// Each handler with its name, shared (a panicking handler is logged
    /// by name without copying the request's).
    methods: RwLock<FastHashMap<String, (Arc<str>, Handler)>>,
    counters: Arc<Counters>,
    max_frame: usize,
    max_inflight: usize,
    stopped: AtomicBool,
    /// Status pages served to HTTP clients on this port.
    http: RwLock<Option<Arc<dyn super::http::HttpHandler>>>,
}

/// A listening port hosting Raft nodes and methods. Also owns the
/// process's outgoing [`Transport`] and [`RpcClient`], which share its
/// counters and stop with it.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    handle: Handle,
    shutdown: watch::Sender<bool>,
    transport: Transport,
    rpc: RpcClient,
}

impl Server {
    /// Binds `addr` (`ip:port` or `host:port`; port 0 picks one) now and
    /// starts accepting on `handle`, with the default maximum frame size.
    pub fn bind(addr: &str, handle: &Handle) -> io::Result<Arc<Server>> {
        Self::bind_with(addr, handle, TransportConfig::default())
    }

    /// [`Server::bind`] with explicit settings (max frame size, queues, ...),
    /// also used by the server's own [`Transport`].
    pub fn bind_with(
        addr: &str,
        handle: &Handle,
        config: TransportConfig,
    ) -> io::Result<Arc<Server>> {
        let _enter = handle.enter();
        let mut last_err = io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr:?} resolves to no address"),
        );
        let mut bound = None;
        for sa in addr.to_socket_addrs()? {
            match listen(sa) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last_err = e,
            }
        }
        let listener = bound.ok_or(last_err)?;
        let local_addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let max_frame = if config.max_frame == 0 {
            DEFAULT_MAX_FRAME
        } else {
            config.max_frame
        };
        let shared = Arc::new(Shared {
            nodes: RwLock::new(NodeTable::default()),
            nodes_version: AtomicU64::new(0),
            methods: RwLock::new(FastHashMap::default()),
            counters: counters.clone(),
            max_frame,
            max_inflight: config.max_inflight_requests.max(1),
            stopped: AtomicBool::new(false),
            http: RwLock::new(None),
        });
        let (shutdown, rx) = watch::channel(false);
        handle.spawn(accept_loop(listener, shared.clone(), rx));
        let transport = Transport::with_counters(handle.clone(), config.clone(), counters.clone());
        let nodes = Arc::downgrade(&shared);
        transport.set_on_server_lost(Some(Arc::new(move |addr: &str| {
            if let Some(shared) = nodes.upgrade() {
                tell_server_lost(&shared, addr);
            }
        })));
        let rpc = RpcClient::with_counters(handle.clone(), config, counters);
        log::info!("transport: listening on {local_addr}");
        Ok(Arc::new(Server {
            shared,
            local_addr,
            handle: handle.clone(),
            shutdown,
            transport,
            rpc,
        }))
    }

    /// Serves HTTP GET requests on this port through `handler` (status
    /// pages); replaces any earlier handler.
    pub fn set_http_handler(&self, handler: Arc<dyn super::http::HttpHandler>) {
        *self.shared.http.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The runtime the server runs on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The outgoing Raft message sender sharing this server's counters.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The RPC client sharing this server's counters.
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// Registers a node so batches for `group` addressed to `peer_id`
    /// reach it. `peer_id` is `host:port[:idx[:role]]` (role ignored).
    pub fn register_node(
        &self,
        group: &str,
        peer_id: &str,
        node: Arc<dyn NodeHandle>,
    ) -> Result<(), Error> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        let key = peer_key(peer_id).ok_or_else(|| Error::BadPeerId(peer_id.to_string()))?;
        let mut nodes = self.shared.nodes.write().unwrap_or_else(|e| e.into_inner());
        let g = nodes.entry(GroupName::new(group)).or_default();
        if g.contains_key(&key) {
            return Err(Error::DuplicateNode {
                group: group.to_string(),
                peer_id: peer_id.to_string(),
            });
        }
        g.insert(key, node);
        self.shared.nodes_version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Hands Raft messages of `group` to the nodes registered here that
    /// they address, as if they had arrived from the network (a protocol
    /// translated outside the transport, such as braft's RaftService).
    pub fn deliver_local(&self, group: &str, messages: Vec<Message>) {
        route_batch(
            &self.shared,
            RaftBatch {
                group: group.to_string(),
                messages,
            },
        );
    }

    /// Removes a node; returns whether it was registered.
    pub fn unregister_node(&self, group: &str, peer_id: &str) -> bool {
        let Some(key) = peer_key(peer_id) else {
            return false;
        };
        let mut nodes = self.shared.nodes.write().unwrap_or_else(|e| e.into_inner());
        let Some(g) = nodes.get_mut(group) else {
            return false;
        };
        let found = g.remove(&key).is_some();
        if g.is_empty() {
            nodes.remove(group);
        }
        self.shared.nodes_version.fetch_add(1, Ordering::AcqRel);
        found
    }

    /// Whether a node is registered (for the node layer's `init` check).
    pub fn has_node(&self, group: &str, peer_id: &str) -> bool {
        let Some(key) = peer_key(peer_id) else {
            return false;
        };
        let nodes = self.shared.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.get(group).is_some_and(|g| g.contains_key(&key))
    }

    /// Adds a user method. Names starting with `raft.` are reserved.
    pub fn add_method(&self, name: &str, handler: Handler) -> Result<(), Error> {
        if name.starts_with(RESERVED_PREFIX) {
            return Err(Error::ReservedMethod(name.to_string()));
        }
        self.add_internal_method(name, handler)
    }

    /// Adds a method without the reserved-name check (the library's own
    /// `raft.*` methods).
    pub fn add_internal_method(&self, name: &str, handler: Handler) -> Result<(), Error> {
        if name.is_empty() {
            return Err(Error::EmptyName);
        }
        if name == METHOD_GET_LEADER {
            return Err(Error::DuplicateMethod(name.to_string()));
        }
        let mut methods = self
            .shared
            .methods
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if methods.contains_key(name) {
            return Err(Error::DuplicateMethod(name.to_string()));
        }
        methods.insert(name.to_string(), (Arc::from(name), handler));
        Ok(())
    }

    /// The leader known to the nodes of `group` on this server (only to
    /// node `peer`, when given): `Err((ENOENT, text))` when no such node is
    /// here, `Err((EAGAIN, text))` when none of them knows a leader.
    pub fn known_leader(&self, group: &str, peer: Option<&str>) -> Result<String, (i32, String)> {
        known_leader(&self.shared, group, peer)
    }

    /// Removes a method; returns whether it existed.
    pub fn remove_method(&self, name: &str) -> bool {
        let mut methods = self
            .shared
            .methods
            .write()
            .unwrap_or_else(|e| e.into_inner());
        methods.remove(name).is_some()
    }

    /// Closes the listener and every connection (in and out); later sends
    /// are dropped and later calls fail at once. Idempotent.
    pub fn stop(&self) {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info!("transport: stopping server on {}", self.local_addr);
        self.shutdown.send_replace(true);
        self.transport.stop();
        self.rpc.stop();
    }

    /// Whether [`Server::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Counters of the server, its transport and its RPC client.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listen(sa: SocketAddr) -> io::Result<TcpListener> {
    let socket = if sa.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Restart on the same port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(sa)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    inc(&shared.counters.connections_accepted);
                    tokio::spawn(serve_conn(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: do not spin.
                    log::warn!("transport: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    log::debug!("transport: listener closed");
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    if *shutdown.borrow() {
        return;
    }
    let _open = Gauge::up(&shared.counters.connections_open);
    let _ = stream.set_nodelay(true);
    // HTTP or frames: the first four bytes tell (see `http`).
    let mut prefix = [0u8; 4];
    let mut stopping_first = std::pin::pin!(stopped(shutdown.clone()));
    for _ in 0..100 {
        let n = tokio::select! {
            _ = &mut stopping_first => return,
            n = stream.peek(&mut prefix) => match n {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        if n == 0 {
            return;
        }
        if n >= prefix.len() {
            break;
        }
        // Fewer than four bytes so far: wait for the rest.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    if super::http::is_http(&prefix) {
        let handler = shared
            .http
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        return super::http::serve(stream, handler).await;
    }
    let protocol = if baidu_std::is_baidu_std(&prefix) {
        Protocol::BaiduStd
    } else {
        Protocol::Rraft
    };
    let (rd, wr) = stream.into_split();
    let mut reader = ConnReader::new(protocol, rd, shared.max_frame);
    // Answers are written by the threads that give them (see `ConnOut`).
    let tx = ConnOut::new(
        protocol,
        shared.max_frame,
        Handle::current(),
        shared.counters.clone(),
        None,
    );
    tx.attach(wr);
    let slots = Arc::new(Semaphore::new(shared.max_inflight));
    // One shutdown waiter for the connection's life: a fresh `changed()`
    // per frame would register and drop a waiter each time.
    let mut stopping = std::pin::pin!(stopped(shutdown.clone()));
    let mut beat_routes = HeartbeatRoutes::default();
    loop {
        let r = tokio::select! {
            _ = &mut stopping => break,
            r = reader.next() => r,
        };
        let incoming = match r {
            Ok(None) => break,
            Ok(Some((incoming, n))) => {
                inc(&shared.counters.frames_in);
                add(&shared.counters.bytes_in, n as u64);
                incoming
            }
            Err(ReadError::Io(e)) => {
                log::debug!("transport: connection from {peer} failed: {e}");
                tx.close();
                return;
            }
            Err(e @ ReadError::Malformed(_)) => {
                inc(&shared.counters.bad_frames);
                log::warn!("transport: closing connection from {peer}: {e}");
                tx.close();
                return;
            }
        };
        let call = match incoming {
            Incoming::Frame(Frame::RaftBatch(b)) => {
                route_batch(&shared, b);
                continue;
            }
            Incoming::Frame(Frame::Heartbeats(h)) => {
                route_heartbeats(&shared, h, &mut beat_routes);
                continue;
            }
            Incoming::Frame(Frame::Response(r)) => {
                log::debug!(
                    "transport: unexpected response (call {}) from {peer}, ignored",
                    r.call_id
                );
                continue;
            }
            Incoming::Baidu(msg) if msg.meta.request.is_none() => {
                inc(&shared.counters.bad_frames);
                log::warn!("transport: closing connection from {peer}: baidu_std message without a request meta");
                tx.close();
                return;
            }
            Incoming::Frame(Frame::Request(req)) => Call::Rraft(req),
            Incoming::Baidu(msg) => Call::Baidu(msg),
        };
        // Too many unanswered requests: stop reading until some are
        // answered.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => Some(s),
            Err(_) => tokio::select! {
                _ = &mut stopping => break,
                s = slots.clone().acquire_owned() => s.ok(),
            },
        };
        match call {
            Call::Rraft(req) => dispatch(&shared, req, CallInfo::default(), &tx, slot),
            Call::Baidu(msg) => dispatch_baidu(&shared, msg, &tx, slot),
        }
    }
    if *shutdown.borrow() {
        tx.close();
    }
    // Otherwise the connection's writing side stays open until every
    // outstanding Responder has answered (or been dropped).
}

/// A request read from a connection.
enum Call {
    Rraft(Request),
    Baidu(BaiduMessage),
}

/// Resolves once `shutdown` changes (or its sender is gone).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.changed().await;
}

/// Tells every registered node that the server at `addr` was lost. The
/// lock is released before the calls.
fn tell_server_lost(shared: &Shared, addr: &str) {
    let targets: Vec<Arc<dyn NodeHandle>> = {
        let nodes = shared.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.values().flat_map(|g| g.values().cloned()).collect()
    };
    for node in targets {
        node.server_unreachable(addr);
    }
}

/// The nodes the beats of one connection's heartbeat frames went to, in
/// the order they came. A sender's leaders heartbeat in the same order
/// every period (its ticker runs their turns in one pass), and its
/// followers answer in the order our heartbeats reached them: each kind
/// comes as a cycle that repeats, cut into frames wherever the sender's
/// writes fall. A beat that is the next one of its kind's cycle (the one
/// after the last beat routed, or a few further on) goes to the same node
/// without a look into the routing table, whose buckets and keys, spread
/// over a table of 1,000 groups, cost a cache miss each; a beat further on
/// in its cycle is found in the cycle's own map of routes.
#[derive(Default)]
struct HeartbeatRoutes {
    /// The routing table's version the routes were found in.
    version: u64,
    /// The peer list of the frames the routes were found for (beats name
    /// peers by position in it).
    peers: Vec<crate::core::PeerId>,
    /// Heartbeats, answers.
    cycles: [RouteCycle; 2],
    /// Where each beat of the frame being routed goes.
    found: Vec<Routed>,
}

/// One kind of beat's routes, linked in the order they came, and where the
/// next beat is expected. A route stays where it was linked: a beat found
/// further on (a sender that skipped many groups this period, as leaders
/// busy with Appends do) moves the expectation there, and only a beat never
/// seen is looked up and linked in, after the last one routed; so a cycle
/// holds each route once and no beat moves the others.
#[derive(Default)]
struct RouteCycle {
    /// The routes by slot; `BeatRoute::succ` orders them into a cycle.
    routes: Vec<BeatRoute>,
    /// The slot of each route.
    slots: FastHashMap<(GroupName, u32), u32>,
    /// The slot of the last route taken (the next is its successor).
    last: Option<u32>,
    /// The cycle holds [`MAX_ROUTES`]: it starts over at the next frame
    /// (not within one, whose beats name their routes by slot).
    full: bool,
}

struct BeatRoute {
    group: GroupName,
    /// The beat's `to`, a position in [`HeartbeatRoutes::peers`].
    to: u32,
    /// None: no such node here.
    node: Option<Arc<dyn NodeHandle>>,
    /// The slot of the route after this one in the cycle.
    succ: u32,
}

/// Where a beat of a frame goes: a route of a cycle, or (a cycle being
/// full) a node looked up for this beat alone.
enum Routed {
    Slot { response: bool, slot: u32 },
    Alone(Option<Arc<dyn NodeHandle>>),
}

/// How far past the expected position a beat is looked for in its cycle
/// before its slot is (the groups between were skipped: their leaders
/// moved, had Appends to send or their heartbeats were dropped).
const ROUTE_LOOKAHEAD: usize = 4;

/// Most routes a cycle keeps (a bound on what a sender that never repeats
/// itself costs).
const MAX_ROUTES: usize = 1 << 14;

impl RouteCycle {
    /// The node of the beat of `group` to `to` (see [`RouteCycle::route_slot`]).
    #[cfg(test)]
    fn route(
        &mut self,
        group: &str,
        to: u32,
        lookup: impl FnOnce() -> Option<Arc<dyn NodeHandle>>,
    ) -> Option<Arc<dyn NodeHandle>> {
        if self.full {
            self.start_over();
        }
        match self.route_slot(group, to, lookup) {
            Ok(slot) => self.routes[slot as usize].node.clone(),
            Err(node) => node,
        }
    }

    /// The slot of the route of the beat of `group` to `to`: from the cycle
    /// when it is next (or nearly) or was seen before, otherwise from
    /// `lookup`, and then linked in after the last route taken. A full
    /// cycle links nothing: the node looked up comes back as `Err`.
    fn route_slot(
        &mut self,
        group: &str,
        to: u32,
        lookup: impl FnOnce() -> Option<Arc<dyn NodeHandle>>,
    ) -> Result<u32, Option<Arc<dyn NodeHandle>>> {
        let n = self.routes.len();
        if n > 0 {
            let mut at = self.last.map_or(0, |l| self.routes[l as usize].succ);
            for _ in 0..ROUTE_LOOKAHEAD.min(n) {
                let r = &self.routes[at as usize];
                if r.to == to && r.group.as_str() == group {
                    self.last = Some(at);
                    return Ok(at);
                }
                at = r.succ;
            }
        }
        let key = (GroupName::new(group), to);
        if let Some(&at) = self.slots.get(&key) {
            self.last = Some(at);
            return Ok(at);
        }
        let node = lookup();
        if n >= MAX_ROUTES {
            self.full = true;
            return Err(node);
        }
        let at = self.routes.len() as u32;
        let succ = match self.last {
            Some(l) => std::mem::replace(&mut self.routes[l as usize].succ, at),
            None => at,
        };
        self.routes.push(BeatRoute {
            group: key.0.clone(),
            to,
            node,
            succ,
        });
        self.slots.insert(key, at);
        self.last = Some(at);
        Ok(at)
    }

    fn start_over(&mut self) {
        self.routes.clear();
        self.slots.clear();
        self.last = None;
        self.full = false;
    }
}

impl HeartbeatRoutes {
    /// Finds where each beat of `beats` goes, in order, into `self.found`
    /// (reused from frame to frame: no list per frame, and no count of a
    /// node's handle touched to route a beat to it).
    fn resolve(&mut self, shared: &Shared, beats: &Heartbeats) {
        let version = shared.nodes_version.load(Ordering::Acquire);
        if version != self.version || self.peers != beats.peers {
            self.cycles = Default::default();
            self.version = version;
            self.peers.clone_from(&beats.peers);
        }
        for cycle in &mut self.cycles {
            if cycle.full {
                cycle.start_over();
            }
        }
        self.found.clear();
        let mut table = None;
        for beat in &beats.beats {
            let Some(group) = beat.group_name() else {
                self.found.push(Routed::Alone(None));
                continue;
            };
            let lookup = || {
                let table = table
                    .get_or_insert_with(|| shared.nodes.read().unwrap_or_else(|e| e.into_inner()));
                let to = beats.peers.get(beat.to as usize)?;
                table.get(group).and_then(|t| target_of(t, to)).cloned()
            };
            let response = beat.response;
            let cycle = &mut self.cycles[usize::from(response)];
            self.found
                .push(match cycle.route_slot(group, beat.to, lookup) {
                    Ok(slot) => Routed::Slot { response, slot },
                    Err(node) => Routed::Alone(node),
                });
        }
    }

    /// The node a beat was routed to by [`HeartbeatRoutes::resolve`].
    fn node<'a>(&'a self, routed: &'a Routed) -> Option<&'a Arc<dyn NodeHandle>> {
        match routed {
            Routed::Slot { response, slot } => self.cycles[usize::from(*response)].routes
                [*slot as usize]
                .node
                .as_ref(),
            Routed::Alone(node) => node.as_ref(),
        }
    }
}

/// Hands each coalesced heartbeat to its node, in order (see
/// [`HeartbeatRoutes`]); consecutive beats of one node are delivered
/// together, and a node named again later gets a delivery of its own,
/// after the first.
fn route_heartbeats(shared: &Shared, beats: Heartbeats, routes: &mut HeartbeatRoutes) {
    routes.resolve(shared, &beats);
    let Heartbeats { peers, mut beats } = beats;
    let mut unknown: Vec<(String, String)> = Vec::new();
    let mut malformed = 0u64;
    let mut delivered = 0u64;
    {
        let routes = &*routes;
        let _held = hold_deliveries();
        let mut pending: Option<(&Arc<dyn NodeHandle>, Vec<Message>)> = None;
        for (beat, routed) in beats.drain(..).zip(&routes.found) {
            let group_ok = beat.group_name().is_some();
            let node = routes.node(routed);
            let unknown_group = match (node, group_ok) {
                (None, true) => beat.group_name().map(str::to_string),
                _ => None,
            };
            let Some(msg) = beat.into_message(&peers).filter(|_| group_ok) else {
                malformed += 1;
                continue;
            };
            let Some(node) = node else {
                unknown.push((unknown_group.unwrap_or_default(), msg.to.to_string()));
                continue;
            };
            match &mut pending {
                Some((last, v)) if Arc::ptr_eq(last, node) => v.push(msg),
                _ => {
                    if let Some((last, msgs)) = pending.replace((node, vec![msg])) {
                        delivered += msgs.len() as u64;
                        last.deliver(msgs);
                    }
                }
            }
        }
        if let Some((last, msgs)) = pending {
            delivered += msgs.len() as u64;
            last.deliver(msgs);
        }
    }
    routes.found.clear();
    Heartbeats::recycle(beats);
    add(&shared.counters.messages_in, delivered);
    if malformed > 0 {
        add(&shared.counters.dropped_other, malformed);
    }
    if !unknown.is_empty() {
        add(
            &shared.counters.dropped_unknown_target,
            unknown.len() as u64,
        );
        for (group, to) in unknown {
            log::debug!("transport: heartbeat for unknown node {to:?} of group {group:?} dropped");
        }
    }
}

/// The node of a group's `targets` (canonical peer key → node) that the
/// peer id `to` names.
fn target_of<'a>(
    targets: &'a HashMap<String, Arc<dyn NodeHandle>>,
    to: &str,
) -> Option<&'a Arc<dyn NodeHandle>> {
    // One node of the group on this server (the usual case): a message
    // naming it by its canonical key needs no parse.
    if targets.len() == 1 {
        if let Some((key, node)) = targets.iter().next() {
            if key == to {
                return Some(node);
            }
        }
    }
    peer_key(to).and_then(|k| targets.get(&k))
}

/// Held across the deliveries of one frame: nodes may run their turns on
/// this thread as their messages are delivered (see [`NodeHandle::deliver`]),
/// and the answers of all of them leave in one write per connection, the
/// pool threads they wake are woken once per pool, when the frame is done.
fn hold_deliveries() -> (super::HeldPeerWrites, crate::worker_pool::HeldWakes) {
    (super::hold_peer_writes(), crate::worker_pool::hold_wakes())
}

fn route_batch(shared: &Shared, batch: RaftBatch) {
    let RaftBatch { group, messages } = batch;
    if messages.is_empty() {
        // A keepalive: it only keeps the sender's connection watched.
        inc(&shared.counters.keepalives_in);
        return;
    }
    let n = messages.len() as u64;
    // Split by target under the read lock, keeping arrival order per
    // target; the lock is released before logging and delivering (a log
    // callback or a node may call back in). Only the handles are cloned.
    let mut per_target: Vec<(Arc<dyn NodeHandle>, Vec<Message>)> = Vec::new();
    let mut unknown_peers: Vec<String> = Vec::new();
    {
        let nodes = shared.nodes.read().unwrap_or_else(|e| e.into_inner());
        let Some(targets) = nodes.get(group.as_str()) else {
            drop(nodes);
            add(&shared.counters.dropped_unknown_target, n);
            log::debug!("transport: {n} message(s) for unknown group {group:?} dropped");
            return;
        };
        // The usual batch names one node (a group has one replica here):
        // it is delivered as it came, without a vector per target.
        let single = target_of(targets, &messages[0].to).filter(|first| {
            messages[1..]
                .iter()
                .all(|m| target_of(targets, &m.to).is_some_and(|t| Arc::ptr_eq(t, first)))
        });
        if let Some(node) = single.cloned() {
            drop(nodes);
            let _held = hold_deliveries();
            add(&shared.counters.messages_in, n);
            node.deliver(messages);
            return;
        }
        for m in messages {
            let Some(node) = target_of(targets, &m.to) else {
                unknown_peers.push(m.to.to_string());
                continue;
            };
            match per_target.iter_mut().find(|(t, _)| Arc::ptr_eq(t, node)) {
                Some((_, v)) => v.push(m),
                None => per_target.push((node.clone(), vec![m])),
            }
        }
    }
    if !unknown_peers.is_empty() {
        add(
            &shared.counters.dropped_unknown_target,
            unknown_peers.len() as u64,
        );
        for to in unknown_peers {
            log::debug!("transport: message for unknown peer {to:?} of group {group:?} dropped");
        }
    }
    let _held = hold_deliveries();
    for (node, msgs) in per_target {
        add(&shared.counters.messages_in, msgs.len() as u64);
        node.deliver(msgs);
    }
}

fn dispatch(
    shared: &Shared,
    req: Request,
    info: CallInfo,
    tx: &Arc<ConnOut>,
    slot: Option<OwnedSemaphorePermit>,
) {
    inc(&shared.counters.requests_in);
    let responder = Responder {
        call_id: req.call_id,
        info,
        tx: Some(tx.clone()),
        _slot: slot,
    };
    if shared.stopped.load(Ordering::Acquire) {
        responder.reply_error(codes::ESHUTDOWN, "server is stopping", "");
        return;
    }
    if req.method == METHOD_GET_LEADER {
        get_leader(shared, req, responder);
        return;
    }
    let handler = {
        let methods = shared.methods.read().unwrap_or_else(|e| e.into_inner());
        methods.get(req.method.as_str()).cloned()
    };
    match handler {
        Some((method, h)) => {
            // A panicking handler drops the Responder while unwinding, which
            // answers EINTERNAL; the connection keeps serving.
            if catch_unwind(AssertUnwindSafe(|| h(req, responder))).is_err() {
                log::warn!("transport: handler of method {method:?} panicked");
            }
        }
        None => {
            let text = format!("no method {:?}", req.method);
            responder.reply_error(codes::ENOMETHOD, &text, "");
        }
    }
}

/// A baidu_std request: finds the method by its full name, then without
/// the package (brpc's own lookup also accepts a service name without
/// its package); unknown names get brpc's ENOSERVICE or ENOMETHOD, a
/// compressed body brpc's EREQUEST. The library's `raft.*` methods are not
/// reachable this way.
fn dispatch_baidu(
    shared: &Shared,
    msg: BaiduMessage,
    tx: &Arc<ConnOut>,
    slot: Option<OwnedSemaphorePermit>,
) {
    let BaiduMessage {
        meta,
        payload,
        attachment,
    } = msg;
    let call_id = meta.correlation_id.unwrap_or(0) as u64;
    let compress = meta.compress_type.unwrap_or(baidu_std::compress::NONE);
    let request = meta.request.unwrap_or_default();
    let names = baidu_std::method_names(&request);
    let found = {
        let methods = shared.methods.read().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .find(|n| !n.starts_with(RESERVED_PREFIX) && methods.contains_key(*n))
            .cloned()
            .ok_or_else(|| {
                // brpc: ENOMETHOD when the service exists, ENOSERVICE when not.
                let has_service = names.iter().any(|n| {
                    let service = &n[..n.len() - request.method_name.len()];
                    !service.starts_with(RESERVED_PREFIX)
                        && methods.keys().any(|k| k.starts_with(service))
                });
                if has_service {
                    (
                        baidu_std::errors::ENOMETHOD,
                        format!(
                            "Fail to find method={}/{}",
                            request.service_name, request.method_name
                        ),
                    )
                } else {
                    (
                        baidu_std::errors::ENOSERVICE,
                        format!("Fail to find service={}", request.service_name),
                    )
                }
            })
    };
    let info = CallInfo {
        protocol: Protocol::BaiduStd,
        log_id: request.log_id.unwrap_or(0),
        attachment,
    };
    let method = match found {
        Ok(_) if compress != baidu_std::compress::NONE => Err((
            baidu_std::errors::EREQUEST,
            format!(
                "Fail to parse request of {}.{}: CompressType={} ({compress}) is not supported",
                request.service_name,
                request.method_name,
                baidu_std::compress::name(compress)
            ),
        )),
        other => other,
    };
    match method {
        Ok(method) => {
            let req = Request {
                call_id,
                method: method.into(),
                group: WireStr::default(),
                payload,
            };
            dispatch(shared, req, info, tx, slot)
        }
        Err((code, text)) => {
            inc(&shared.counters.requests_in);
            Responder {
                call_id,
                info,
                tx: Some(tx.clone()),
                _slot: slot,
            }
            .reply_error(code, &text, "");
        }
    }
}

fn get_leader(shared: &Shared, req: Request, responder: Responder) {
    let group = match std::str::from_utf8(&req.payload) {
        Ok(g) if !g.is_empty() => g.to_string(),
        _ if !req.group.is_empty() => req.group.to_string(),
        _ => {
            responder.reply_error(
                codes::EINVAL,
                "raft.get_leader: payload must be a group id",
                "",
            );
            return;
        }
    };
    match known_leader(shared, &group, None) {
        Ok(leader) => responder.reply_response(Response {
            leader_hint: leader.clone(),
            payload: Bytes::from(leader),
            ..Default::default()
        }),
        Err((code, text)) => responder.reply_error(code, &text, ""),
    }
}

/// The leader known to the nodes of `group` on this server (only to node
/// `peer`, when given). Errors: ENOENT when no such node is here, EAGAIN
/// when none of them knows a leader.
fn known_leader(shared: &Shared, group: &str, peer: Option<&str>) -> Result<String, (i32, String)> {
    let nodes: Vec<Arc<dyn NodeHandle>> = {
        let all = shared.nodes.read().unwrap_or_else(|e| e.into_inner());
        let in_group = all.get(group);
        match peer {
            Some(p) => peer_key(p)
                .and_then(|k| in_group.and_then(|g| g.get(&k)))
                .into_iter()
                .cloned()
                .collect(),
            None => in_group.map_or_else(Vec::new, |g| g.values().cloned().collect()),
        }
    };
    if nodes.is_empty() {
        let whom = peer.map_or_else(String::new, |p| format!(" {p}"));
        return Err((
            codes::ENOENT,
            format!("no node{whom} of group {group:?} here"),
        ));
    }
    nodes
        .iter()
        .find_map(|n| n.leader_hint().filter(|l| !l.is_empty()))
        .ok_or_else(|| {
            (
                codes::EAGAIN,
                format!("no leader known for group {group:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named;

    impl NodeHandle for Named {
        fn deliver(&self, _msgs: Vec<Message>) {}
        fn leader_hint(&self) -> Option<String> {
            None
        }
    }

    /// A node per group name, keyed by the name.
    fn named_nodes(names: &[String]) -> HashMap<&str, Arc<dyn NodeHandle>> {
        names
            .iter()
            .map(|g| (g.as_str(), Arc::new(Named) as Arc<dyn NodeHandle>))
            .collect()
    }

    /// Routes each group of `order` through `cycle`; returns how many were
    /// looked up, checking that each got its own node.
    fn route_all(
        cycle: &mut RouteCycle,
        nodes: &HashMap<&str, Arc<dyn NodeHandle>>,
        order: &[&str],
    ) -> usize {
        let mut lookups = 0;
        for g in order {
            let node = cycle.route(g, 1, || {
                lookups += 1;
                Some(nodes[g].clone())
            });
            assert!(Arc::ptr_eq(&node.unwrap(), &nodes[g]), "{g} routed wrong");
        }
        lookups
    }

    #[test]
    fn a_repeating_cycle_of_beats_is_routed_without_lookups_as_groups_come_and_go() {
        let nodes: HashMap<&str, Arc<dyn NodeHandle>> = ["a", "b", "c", "d", "x"]
            .into_iter()
            .map(|g| (g, Arc::new(Named) as Arc<dyn NodeHandle>))
            .collect();
        let mut cycle = RouteCycle::default();
        assert_eq!(route_all(&mut cycle, &nodes, &["a", "b", "c", "d"]), 4);
        // The same cycle again, cut into frames anywhere: no lookup.
        assert_eq!(route_all(&mut cycle, &nodes, &["a", "b"]), 0);
        assert_eq!(route_all(&mut cycle, &nodes, &["c", "d", "a"]), 0);
        assert_eq!(route_all(&mut cycle, &nodes, &["b", "c", "d"]), 0);
        // A group leaves the cycle: the rest are still found.
        assert_eq!(route_all(&mut cycle, &nodes, &["a", "c", "d"]), 0);
        // A group joins: one lookup, then it is part of the cycle.
        assert_eq!(route_all(&mut cycle, &nodes, &["a", "x", "c", "d"]), 1);
        assert_eq!(route_all(&mut cycle, &nodes, &["a", "x", "c", "d"]), 0);
        // The same group to another peer position is another route.
        let mut lookups = 0;
        cycle.route("a", 2, || {
            lookups += 1;
            None
        });
        assert_eq!(lookups, 1);
    }

    /// Leaders with Appends to send skip their heartbeats: each period a
    /// different run of groups, longer than the lookahead, is missing.
    #[test]
    fn beats_that_skip_long_runs_of_the_cycle_are_routed_without_lookups_or_new_routes() {
        let names: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        let nodes = named_nodes(&names);
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut cycle = RouteCycle::default();
        assert_eq!(route_all(&mut cycle, &nodes, &all), 200);
        for period in 0..50usize {
            let skip = (period * 37) % 180..(period * 37) % 180 + 5 + period % 15;
            let order: Vec<&str> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| !skip.contains(i))
                .map(|(_, g)| *g)
                .collect();
            assert_eq!(route_all(&mut cycle, &nodes, &order), 0, "period {period}");
        }
        assert_eq!(cycle.routes.len(), 200, "each route is held once");
    }

    /// A full cycle links no more routes within a frame: the slots of the
    /// beats routed earlier in the frame still name their nodes. The next
    /// frame starts the cycle over.
    #[test]
    fn a_full_cycle_keeps_the_routes_of_the_frame_being_routed() {
        let names: Vec<String> = (0..=MAX_ROUTES).map(|i| format!("f{i}")).collect();
        let nodes = named_nodes(&names);
        let mut cycle = RouteCycle::default();
        let mut slots = Vec::new();
        for g in &names[..MAX_ROUTES] {
            let slot = cycle.route_slot(g, 1, || Some(nodes[g.as_str()].clone()));
            slots.push(slot.ok().expect("linked"));
        }
        let last = names[MAX_ROUTES].as_str();
        let alone = cycle.route_slot(last, 1, || Some(nodes[last].clone()));
        assert!(Arc::ptr_eq(&alone.err().flatten().unwrap(), &nodes[last]));
        for (g, slot) in names.iter().zip(&slots) {
            let routed = cycle.routes[*slot as usize].node.as_ref().unwrap();
            assert!(Arc::ptr_eq(routed, &nodes[g.as_str()]), "{g} routed wrong");
        }
        assert!(cycle.full);
        assert_eq!(route_all(&mut cycle, &nodes, &[last]), 1);
        assert_eq!(cycle.routes.len(), 1, "the next frame starts over");
    }

    #[test]
    fn beats_that_come_out_of_their_place_are_routed_right_and_the_cycle_keeps_its_size() {
        let names: Vec<String> = (0..500).map(|i| format!("g{i}")).collect();
        let nodes = named_nodes(&names);
        let mut order: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut cycle = RouteCycle::default();
        assert_eq!(route_all(&mut cycle, &nodes, &order), 500);
        let mut rng = 7u64;
        let mut lookups = 0;
        for _ in 0..200 {
            // Each period a few beats move far from their place.
            for _ in 0..5 {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = (rng >> 33) as usize % order.len();
                let g = order.remove(from);
                let to = (rng >> 13) as usize % order.len();
                order.insert(to, g);
            }
            lookups += route_all(&mut cycle, &nodes, &order);
        }
        assert!(lookups <= 200 * 5 * 2, "{lookups} lookups");
        assert!(
            cycle.routes.len() <= 500 + 5 * 2,
            "{} routes",
            cycle.routes.len()
        );
    }
}
