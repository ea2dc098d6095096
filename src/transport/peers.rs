//! The Raft message sender: fire-and-forget, one TCP connection per remote
//! address shared by every group.
//!
//! [`Transport::send`] never blocks: it puts the message on the bounded
//! queue of the address's connection task (created on first use) or drops
//! it when the queue is full. The task takes everything queued at once,
//! packs it into one `RaftBatch` frame per group (split at the maximum frame
//! size), and writes all frames with one `write_all` + flush (TCP_NODELAY
//! on). It never waits for anything from the peer before the next write.
//! [`Transport::send_now`] writes from the calling thread instead while
//! the task is idle (see `peer_direct`).
//!
//! When the peer is down, connects are retried with exponential back-off
//! (10 ms doubling to 1 s by default) and messages queued meanwhile are
//! dropped (counted) and reported once per (group, peer) through
//! `on_unreachable`: Raft retransmits, stale appends are worthless. A task
//! with nothing to send for `idle_timeout` closes its connection and exits,
//! unless `keepalive` is set: then an idle connection carries an empty
//! batch every `keepalive` and stays open, so the loss of the server behind
//! it (its end closes, a write fails, or with `user_timeout` data stays
//! unacknowledged) is seen even when no Raft message flows: quiescent
//! groups send none. Every lost or refused connection is reported once
//! through `on_server_lost(addr)`; the count of these frames per server
//! pair does not depend on how many groups the two servers share.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use super::frame::{Frame, FrameWriter, DEFAULT_MAX_FRAME, HEADER_LEN};
use super::owner::{owned, Owner, Stoppable};
use super::peer_direct::DirectOut;
use super::peer_id::peer_addr;
use super::stats::{add, inc, Counters, Gauge, Stats};
use super::wire::{Heartbeats, RaftBatch};
use crate::fast_hash::FastHashMap;
use crate::proto::Message;

/// Called as `(group, peer_id)` when messages to a peer could not be sent.
/// Runs on a tokio worker: must not block.
pub type UnreachableFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Called with the address (`ip:port`) of a server whose connection was
/// lost or refused. Runs on a tokio worker: must not block.
pub type ServerLostFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings of the transport (server, peer sender and RPC client).
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Largest frame body accepted or sent; 0 means [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// Messages queued per remote address before new ones are dropped.
    pub queue_capacity: usize,
    /// Reconnect back-off: first delay and cap (doubling in between).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Limit on one connect attempt (peer sender and RPC client).
    pub connect_timeout: Duration,
    /// A write that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    /// Stop draining the queue into one write after this many bytes.
    pub max_batch_bytes: usize,
    /// A peer connection idle this long is closed (and its task ends).
    pub idle_timeout: Duration,
    /// Server side: requests of one connection not yet answered before the
    /// server stops reading that connection (TCP back-pressure on the caller).
    pub max_inflight_requests: usize,
    /// An idle peer connection sends an empty batch this often and is never
    /// retired (the failure detector of quiescent groups); zero = off.
    pub keepalive: Duration,
    /// TCP_USER_TIMEOUT of peer connections: data unacknowledged this long
    /// fails the connection (a silent partition); zero = the kernel's.
    pub user_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame: DEFAULT_MAX_FRAME,
            queue_capacity: 4096,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
            max_batch_bytes: 4 << 20,
            idle_timeout: Duration::from_secs(60),
            max_inflight_requests: 8192,
            keepalive: Duration::ZERO,
            user_timeout: Duration::ZERO,
        }
    }
}

impl TransportConfig {
    pub(crate) fn max_frame(&self) -> usize {
        if self.max_frame == 0 {
            DEFAULT_MAX_FRAME
        } else {
            self.max_frame
        }
    }
}

type Queued = (String, Message);

struct PeerEntry {
    id: u64,
    tx: mpsc::Sender<Queued>,
    /// The connection's socket while lent to senders.
    direct: Arc<DirectOut>,
}

struct Inner {
    handle: Handle,
    config: TransportConfig,
    /// Senders take the read lock while queueing; a retiring task takes the
    /// write lock, so no message is queued to a task that is exiting.
    /// Hashed with foldhash: every message sent looks its server up.
    peers: RwLock<FastHashMap<String, PeerEntry>>,
    next_id: AtomicU64,
    on_unreachable: RwLock<Option<UnreachableFn>>,
    on_server_lost: RwLock<Option<ServerLostFn>>,
    counters: Arc<Counters>,
    stopped: AtomicBool,
    shutdown: watch::Sender<bool>,
}

/// The Raft message sender. Cheap to clone; when the last clone is dropped
/// it stops (connections closed, tasks end).
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    _owner: Arc<Owner<Inner>>,
}

impl Transport {
    /// A sender with default settings running its tasks on `handle`.
    pub fn new(handle: Handle) -> Transport {
        Self::with_config(handle, TransportConfig::default())
    }

    /// A sender with explicit settings.
    pub fn with_config(handle: Handle, config: TransportConfig) -> Transport {
        Self::with_counters(handle, config, Arc::new(Counters::default()))
    }

    pub(crate) fn with_counters(
        handle: Handle,
        config: TransportConfig,
        counters: Arc<Counters>,
    ) -> Transport {
        let (shutdown, _) = watch::channel(false);
        let (inner, _owner) = owned(Inner {
            handle,
            config,
            peers: RwLock::new(FastHashMap::default()),
            next_id: AtomicU64::new(1),
            on_unreachable: RwLock::new(None),
            on_server_lost: RwLock::new(None),
            counters,
            stopped: AtomicBool::new(false),
            shutdown,
        });
        Transport { inner, _owner }
    }

    /// Sets (or clears) the callback told about undeliverable messages.
    pub fn set_on_unreachable(&self, f: Option<UnreachableFn>) {
        *self
            .inner
            .on_unreachable
            .write()
            .unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Sets (or clears) the callback told about lost peer servers.
    pub fn set_on_server_lost(&self, f: Option<ServerLostFn>) {
        *self
            .inner
            .on_server_lost
            .write()
            .unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Queues `msg` for the node `msg.to` of `group`. Never blocks; drops
    /// (and counts) the message when the queue is full, `to` is malformed
    /// or the transport is stopped.
    pub fn send(&self, group: &str, msg: Message) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Acquire) {
            inc(&inner.counters.dropped_other);
            return;
        }
        let Some(addr) = cached_peer_addr(&msg.to) else {
            inc(&inner.counters.dropped_other);
            log::debug!(
                "transport: message to malformed peer id {:?} dropped",
                msg.to
            );
            return;
        };
        let item = (group.to_string(), msg);
        // Fast path: the connection task exists (read lock only).
        let item = {
            let peers = inner.peers.read().unwrap_or_else(|e| e.into_inner());
            match peers.get(&*addr) {
                Some(entry) => return inner.enqueue(entry, item),
                None => item,
            }
        };
        let mut peers = inner.peers.write().unwrap_or_else(|e| e.into_inner());
        if inner.stopped.load(Ordering::Acquire) {
            inc(&inner.counters.dropped_other);
            return;
        }
        let entry = peers.entry(addr.to_string()).or_insert_with_key(|addr| {
            let (tx, rx) = mpsc::channel(inner.config.queue_capacity.max(1));
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let direct = DirectOut::new(inner.counters.clone());
            inner.handle.spawn(peer_task(
                self.inner.clone(),
                addr.clone(),
                id,
                rx,
                direct.clone(),
            ));
            PeerEntry { id, tx, direct }
        });
        inner.enqueue(entry, item);
    }

    /// Sends `msgs` of `group` (all to one server), written by the calling
    /// thread at once, as one batch frame (inside [`hold_peer_writes`]:
    /// when the hold ends), when the connection's task waits with nothing
    /// to write; queued as by [`Transport::send`] otherwise. A log writer
    /// sends its acknowledgements with it, so they leave without waking a
    /// tokio worker, and a driver the Appends of a Ready that wakes its log
    /// writer next. Messages sent with [`Transport::send`] by the tasks of
    /// one worker share the connection task's writes instead. Never
    /// blocks.
    ///
    /// [`hold_peer_writes`]: super::hold_peer_writes
    pub fn send_now(&self, group: &str, msgs: Vec<Message>) {
        let inner = &self.inner;
        let msgs = match direct_addr(&msgs) {
            Some(addr) if !inner.stopped.load(Ordering::Acquire) => {
                let peers = inner.peers.read().unwrap_or_else(|e| e.into_inner());
                match peers.get(&*addr) {
                    Some(entry) => {
                        match entry
                            .direct
                            .write_now(group, msgs, inner.config.max_frame())
                        {
                            Ok(()) => return,
                            Err(msgs) => msgs,
                        }
                    }
                    None => msgs,
                }
            }
            _ => msgs,
        };
        self.send_all(group, msgs);
    }

    /// Sends each message of `msgs` (see [`Transport::send`]).
    pub fn send_all(&self, group: &str, msgs: impl IntoIterator<Item = Message>) {
        for m in msgs {
            self.send(group, m);
        }
    }

    /// Closes every connection; later sends are dropped. Idempotent.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Counters (shared with the owning server, if any).
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Addresses with a live connection task.
    pub fn peer_addrs(&self) -> Vec<String> {
        let peers = self.inner.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.keys().cloned().collect()
    }
}

impl Stoppable for Inner {
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Inner {
    fn enqueue(&self, entry: &PeerEntry, item: Queued) {
        let dropped = entry.direct.queue(
            || match entry.tx.try_send(item) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(_)) => Some(&self.counters.dropped_queue_full),
                Err(mpsc::error::TrySendError::Closed(_)) => Some(&self.counters.dropped_other),
            },
            || entry.tx.capacity() == entry.tx.max_capacity(),
        );
        if let Some(counter) = dropped {
            inc(counter);
        }
    }

    fn report_unreachable(&self, seen: &mut HashSet<(String, String)>, group: &str, peer: &str) {
        if seen.contains(&(group.to_string(), peer.to_string())) {
            return;
        }
        seen.insert((group.to_string(), peer.to_string()));
        if let Some(cb) = callback(&self.on_unreachable) {
            cb(group, peer);
        }
    }

    fn report_server_lost(&self, addr: &str) {
        inc(&self.counters.servers_lost);
        if let Some(cb) = callback(&self.on_server_lost) {
            cb(addr);
        }
    }

    /// Removes this task's entry if nothing is queued; returns whether the
    /// task may exit. Senders hold the same lock while queueing, so nothing
    /// is lost between the check and the removal.
    fn retire(&self, addr: &str, id: u64, rx: &mut mpsc::Receiver<Queued>) -> Option<Queued> {
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        if let Ok(m) = rx.try_recv() {
            return Some(m);
        }
        if peers.get(addr).is_some_and(|e| e.id == id) {
            peers.remove(addr);
        }
        rx.close();
        None
    }
}

/// The server address every message of `msgs` goes to; None when they
/// name different servers (or none, or a malformed peer id).
fn direct_addr(msgs: &[Message]) -> Option<Rc<str>> {
    let first = &msgs.first()?.to;
    let addr = cached_peer_addr(first)?;
    msgs[1..]
        .iter()
        .all(|m| m.to == *first || cached_peer_addr(&m.to).as_deref() == Some(&*addr))
        .then_some(addr)
}

/// Peer ids a thread remembers the server address of.
const PEER_ADDR_CACHE: usize = 16;

thread_local! {
    /// The server addresses of the peer ids this thread sent to last, so a
    /// send neither parses the id nor allocates the address (a server's
    /// groups name the same few peer ids, mostly sharing their bytes: an
    /// id is found by a pointer check).
    static PEER_ADDRS: RefCell<Vec<(crate::core::PeerId, Rc<str>)>> = const { RefCell::new(Vec::new()) };
}

/// [`peer_addr`] of `peer_id`, from the thread's cache when it is there.
/// Malformed ids are not cached.
fn cached_peer_addr(peer_id: &crate::core::PeerId) -> Option<Rc<str>> {
    PEER_ADDRS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((_, addr)) = cache.iter().find(|(id, _)| id.same_bytes(peer_id)) {
            return Some(addr.clone());
        }
        if let Some((id, addr)) = cache.iter_mut().find(|(id, _)| *id == *peer_id) {
            // The copy sent to now is likely the one sent to next.
            *id = peer_id.clone();
            return Some(addr.clone());
        }
        let addr: Rc<str> = peer_addr(peer_id)?.into();
        if cache.len() >= PEER_ADDR_CACHE {
            cache.remove(0);
        }
        cache.push((peer_id.clone(), addr.clone()));
        Some(addr)
    })
}

/// The callback set in `slot`, copied out so that it runs without the lock.
fn callback<F: ?Sized>(slot: &RwLock<Option<Arc<F>>>) -> Option<Arc<F>> {
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Waits for the next message, or retires the task after the idle timeout
/// (`None`: the task should exit).
async fn next_msg(
    inner: &Inner,
    addr: &str,
    id: u64,
    rx: &mut mpsc::Receiver<Queued>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Queued> {
    tokio::select! {
        _ = shutdown.changed() => None,
        r = tokio::time::timeout(inner.config.idle_timeout, rx.recv()) => match r {
            Ok(m) => m,
            Err(_) => inner.retire(addr, id, rx),
        }
    }
}

async fn connect(
    addr: &str,
    timeout: Duration,
    user_timeout: Duration,
) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => {
            let s = r?;
            s.set_nodelay(true)?;
            if !user_timeout.is_zero() {
                set_user_timeout(&s, user_timeout)?;
            }
            Ok(s)
        }
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

async fn peer_task(
    inner: Arc<Inner>,
    addr: String,
    id: u64,
    mut rx: mpsc::Receiver<Queued>,
    direct: Arc<DirectOut>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    if *shutdown.borrow() {
        return;
    }
    let cfg = inner.config.clone();
    let mut backoff = cfg.backoff_min;
    let mut ever_connected = false;
    loop {
        let Some(first) = next_msg(&inner, &addr, id, &mut rx, &mut shutdown).await else {
            return;
        };
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = connect(&addr, cfg.connect_timeout, cfg.user_timeout) => r,
        };
        let mut seen = HashSet::new();
        match stream {
            Ok(stream) => {
                if ever_connected {
                    inc(&inner.counters.reconnects);
                    log::info!("transport: reconnected to {addr}");
                } else {
                    log::debug!("transport: connected to {addr}");
                }
                ever_connected = true;
                let since = tokio::time::Instant::now();
                let conn = Conn {
                    inner: &inner,
                    addr: &addr,
                    id,
                    direct: &direct,
                };
                let run = run_connected(conn, stream, first, &mut rx, &mut shutdown).await;
                if matches!(run, Run::Lost) {
                    inner.report_server_lost(&addr);
                }
                match run {
                    Run::Exit => return,
                    Run::Lost if since.elapsed() >= cfg.backoff_max => {
                        backoff = cfg.backoff_min;
                        continue;
                    }
                    // Accepted then dropped at once (a peer refusing our
                    // frames, a proxy, a restarting server): back off too.
                    Run::Lost => {}
                }
            }
            Err(e) => {
                inc(&inner.counters.connect_failures);
                log::debug!("transport: connect to {addr} failed: {e} (retry in {backoff:?})");
                inc(&inner.counters.dropped_peer_down);
                inner.report_unreachable(&mut seen, &first.0, &first.1.to);
                inner.report_server_lost(&addr);
            }
        }
        // The peer is down: drop what is queued until the back-off has
        // passed, telling Raft once per (group, peer).
        if !drop_while_down(&inner, backoff, &mut seen, &mut rx, &mut shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

/// Drops (and reports) every message queued during `backoff`; `false` when
/// the task should exit.
async fn drop_while_down(
    inner: &Inner,
    backoff: Duration,
    seen: &mut HashSet<(String, String)>,
    rx: &mut mpsc::Receiver<Queued>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return false,
            _ = &mut sleep => return true,
            m = rx.recv() => match m {
                Some((g, m)) => {
                    inc(&inner.counters.dropped_peer_down);
                    inner.report_unreachable(seen, &g, &m.to);
                }
                None => return false,
            }
        }
    }
}

enum Run {
    Exit,
    Lost,
}

/// Who a connection belongs to: its transport, address, task id and the
/// slot that lends its socket to senders.
struct Conn<'a> {
    inner: &'a Inner,
    addr: &'a str,
    id: u64,
    direct: &'a DirectOut,
}

/// What ended a connection task's wait for something to write.
enum Woke {
    /// A message arrived on the queue.
    Msg,
    /// Nothing to write (bytes read, a sender's rest written, a loan to
    /// renew).
    Again,
    /// Nothing arrived for the idle period.
    Quiet,
    Exit,
    Lost,
}

async fn run_connected(
    conn: Conn<'_>,
    stream: TcpStream,
    first: Queued,
    rx: &mut mpsc::Receiver<Queued>,
    shutdown: &mut watch::Receiver<bool>,
) -> Run {
    let Conn {
        inner,
        addr,
        id,
        direct,
    } = conn;
    let _open = Gauge::up(&inner.counters.peer_connections_open);
    let _attached = direct.attach(&stream);
    let cfg = &inner.config;
    let max_frame = cfg.max_frame();
    let (mut rd, wr) = stream.into_split();
    let mut w = FrameWriter::new(wr, max_frame);
    let mut scratch = [0u8; 512];
    let mut next = Some(first);
    // The heartbeat frame of the last write, emptied: the next one fills
    // its lists (hundreds of beats, tens of KiB, that the allocator would
    // otherwise return to the system and fault in again every period).
    let mut spare_beats = Heartbeats::default();
    let keepalive = !cfg.keepalive.is_zero();
    let idle_wait = if keepalive {
        cfg.keepalive
    } else {
        cfg.idle_timeout
    };
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => {
                // While this task waits with nothing queued, a thread
                // outside the runtime may write itself (`send_now`).
                direct.lend(|| rx.is_empty());
                let mut got = None;
                let woke = tokio::select! {
                    biased;
                    _ = shutdown.changed() => Woke::Exit,
                    // The server never writes on this connection: readable
                    // means closed (or garbage, treated the same).
                    r = rd.read(&mut scratch) => match r {
                        Ok(0) | Err(_) => Woke::Lost,
                        Ok(_) => Woke::Again,
                    },
                    _ = direct.task_woken() => Woke::Again,
                    r = tokio::time::timeout(idle_wait, rx.recv()) => match r {
                        Ok(Some(m)) => {
                            got = Some(m);
                            Woke::Msg
                        }
                        Ok(None) => Woke::Exit,
                        Err(_) => Woke::Quiet,
                    }
                };
                let rest = direct.reclaim();
                if !rest.is_empty() {
                    if let Err(why) = write_rest(&mut w, &rest, cfg.write_timeout).await {
                        log::debug!("transport: write to {addr} failed: {why}");
                        return Run::Lost;
                    }
                }
                match (woke, got) {
                    (Woke::Msg, Some(m)) => m,
                    (Woke::Msg | Woke::Again, _) => continue,
                    (Woke::Exit, _) => return Run::Exit,
                    (Woke::Lost, _) => {
                        log::debug!("transport: connection to {addr} closed by the peer");
                        return Run::Lost;
                    }
                    (Woke::Quiet, _) if keepalive => {
                        if let Err(why) = send_keepalive(inner, &mut w, cfg.write_timeout).await {
                            log::debug!("transport: keepalive to {addr} failed: {why}");
                            return Run::Lost;
                        }
                        continue;
                    }
                    (Woke::Quiet, _) => match inner.retire(addr, id, rx) {
                        Some(m) => m,
                        None => return Run::Exit,
                    },
                }
            }
        };
        if is_beat(&first.1) {
            // The heartbeats of a process's leaders are due in the same
            // tick, and so are the answers to one coalesced frame; their
            // drivers run one after another on the runtime's workers, and
            // this task, woken by the first, would otherwise run between
            // them (tokio runs the task woken last next). Yielding until a
            // yield brings nothing new lets the other runnable drivers queue
            // theirs first: one frame, not one per group. Appends and other
            // messages never wait for this.
            let mut queued = rx.len();
            for _ in 0..MAX_BEAT_YIELDS {
                tokio::task::yield_now().await;
                if rx.len() == queued {
                    break;
                }
                queued = rx.len();
            }
        }
        // Take everything queued (up to the byte budget) into one write:
        // one batch frame per group, and the heartbeats of every group in
        // one frame after them. A write may carry hundreds of groups'
        // messages: they are sorted by group (stable, so each group's keep
        // their order), not matched against each other.
        let mut others: Vec<Queued> = Vec::new();
        let mut beats = std::mem::take(&mut spare_beats);
        let mut bytes = 0usize;
        let mut count = 0usize;
        let mut item = Some(first);
        while let Some((g, m)) = item {
            bytes += m.encoded_len() + 8;
            count += 1;
            if let Some(other) = beats.push_owned(g, m) {
                others.push(other);
            }
            if bytes >= cfg.max_batch_bytes {
                break;
            }
            item = rx.try_recv().ok();
        }
        others.sort_by(|a, b| a.0.cmp(&b.0));
        // The frames written, kept until the write succeeded: a failed one
        // reports every (group, peer) it carried as unreachable.
        let mut written: Vec<RaftBatch> = Vec::new();
        let mut others = others.into_iter().peekable();
        while let Some((g, m)) = others.next() {
            let mut msgs = vec![m];
            while let Some((_, m)) = others.next_if(|(next, _)| *next == g) {
                msgs.push(m);
            }
            count -= encode_batches(inner, &mut w, g, msgs, max_frame, &mut written);
        }
        let beat_frame = if beats.beats.is_empty() {
            spare_beats = beats;
            None
        } else {
            let n = beats.beats.len();
            let frame = Frame::Heartbeats(beats);
            if let Err(e) = w.push(&frame) {
                add(&inner.counters.dropped_other, n as u64);
                count -= n;
                log::warn!("transport: {n} heartbeats to {addr} not sent: {e}");
                None
            } else {
                inc(&inner.counters.heartbeat_frames_out);
                add(&inner.counters.beats_out, n as u64);
                Some(frame)
            }
        };
        let frames = w.buffered_frames();
        let res = tokio::time::timeout(cfg.write_timeout, w.flush()).await;
        match res {
            Ok(Ok((f, b))) => {
                add(&inner.counters.frames_out, f as u64);
                add(&inner.counters.bytes_out, b as u64);
                add(&inner.counters.messages_out, count as u64);
                inc(&inner.counters.flushes);
                if let Some(Frame::Heartbeats(mut sent)) = beat_frame {
                    if sent.beats.capacity() <= MAX_SPARE_BEATS {
                        sent.clear();
                        spare_beats = sent;
                    }
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "write timed out".to_string(),
                };
                log::debug!("transport: write of {frames} frame(s) to {addr} failed: {why}");
                add(&inner.counters.dropped_peer_down, count as u64);
                let mut seen = HashSet::new();
                for batch in &written {
                    for m in &batch.messages {
                        inner.report_unreachable(&mut seen, &batch.group, &m.to);
                    }
                }
                if let Some(Frame::Heartbeats(beats)) = &beat_frame {
                    for b in &beats.beats {
                        if let (Some(p), Some(g)) = (beats.peers.get(b.to as usize), b.group_name())
                        {
                            inner.report_unreachable(&mut seen, g, p);
                        }
                    }
                }
                return Run::Lost;
            }
        }
    }
}

/// Most yields a peer connection makes while heartbeats keep arriving
/// before it writes them (a bound on their delay under a steady stream).
const MAX_BEAT_YIELDS: usize = 16;

/// Most beats whose room a connection keeps for its next heartbeat frame.
const MAX_SPARE_BEATS: usize = 4096;

/// A heartbeat or heartbeat answer: what a coalesced frame carries.
fn is_beat(m: &Message) -> bool {
    matches!(
        m.kind(),
        Some(crate::proto::MessageType::Heartbeat | crate::proto::MessageType::HeartbeatResponse)
    )
}

/// Writes the bytes a direct sender left unwritten (whole frames once
/// complete), before anything else goes out.
async fn write_rest(
    w: &mut FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    rest: &[u8],
    write_timeout: Duration,
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    match tokio::time::timeout(write_timeout, w.get_mut().write_all(rest)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("write timed out".into()),
    }
}

/// Writes one empty batch: it keeps the connection, and so the watch on
/// the server behind it, alive.
async fn send_keepalive(
    inner: &Inner,
    w: &mut FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    write_timeout: Duration,
) -> Result<(), String> {
    w.push(&Frame::RaftBatch(RaftBatch::default()))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(write_timeout, w.flush()).await {
        Ok(Ok((f, b))) => {
            add(&inner.counters.frames_out, f as u64);
            add(&inner.counters.bytes_out, b as u64);
            inc(&inner.counters.keepalives_out);
            inc(&inner.counters.flushes);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("write timed out".into()),
    }
}

/// Sets TCP_USER_TIMEOUT: written data unacknowledged for `timeout` fails
/// the connection instead of being retransmitted for many minutes.
fn set_user_timeout(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: the descriptor belongs to `s`, alive for the call; the option
    // value is a c_uint read by the kernel during the call only, and its
    // size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Packs `msgs` of one group into as few frames as fit under `max_frame`,
/// keeping each frame pushed in `written`; returns how many messages were
/// dropped (each too large alone).
fn encode_batches(
    inner: &Inner,
    w: &mut FrameWriter<tokio::net::tcp::OwnedWriteHalf>,
    group: String,
    msgs: Vec<Message>,
    max_frame: usize,
    written: &mut Vec<RaftBatch>,
) -> usize {
    let mut dropped = 0;
    // Per message: tag + length varint (<= 6 bytes) + body.
    let overhead = group.len() + 16;
    // The usual case, everything in one frame: the batch takes `group` and
    // `msgs` as they are.
    let total: usize = msgs.iter().map(|m| m.encoded_len() + 6).sum();
    if !msgs.is_empty() && overhead + total + HEADER_LEN <= max_frame {
        let n = msgs.len();
        let frame = Frame::RaftBatch(RaftBatch {
            group,
            messages: msgs,
        });
        if let Err(e) = w.push(&frame) {
            add(&inner.counters.dropped_other, n as u64);
            if let Frame::RaftBatch(batch) = &frame {
                log::warn!("transport: batch for group {:?} not sent: {e}", batch.group);
            }
            return n;
        }
        if let Frame::RaftBatch(batch) = frame {
            written.push(batch);
        }
        return 0;
    }
    let mut cur: Vec<Message> = Vec::new();
    let mut cur_len = overhead;
    let flush_cur =
        |w: &mut FrameWriter<_>, cur: &mut Vec<Message>, written: &mut Vec<RaftBatch>| -> usize {
            if cur.is_empty() {
                return 0;
            }
            let batch = RaftBatch {
                group: group.clone(),
                messages: std::mem::take(cur),
            };
            let n = batch.messages.len();
            let frame = Frame::RaftBatch(batch);
            if let Err(e) = w.push(&frame) {
                add(&inner.counters.dropped_other, n as u64);
                log::warn!("transport: batch for group {group:?} not sent: {e}");
                return n;
            }
            if let Frame::RaftBatch(batch) = frame {
                written.push(batch);
            }
            0
        };
    for m in msgs {
        let len = m.encoded_len() + 6;
        if len + overhead + HEADER_LEN > max_frame {
            inc(&inner.counters.dropped_other);
            log::warn!(
                "transport: message of {len} bytes to {} exceeds the maximum frame size {max_frame}, dropped",
                m.to
            );
            dropped += 1;
            continue;
        }
        if cur_len + len > max_frame {
            dropped += flush_cur(w, &mut cur, written);
            cur_len = overhead;
        }
        cur_len += len;
        cur.push(m);
    }
    dropped + flush_cur(w, &mut cur, written)
}
