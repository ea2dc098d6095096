//! The fault proxy: every connection to a node goes through it, and each
//! ordered link (A→B) can pass, drop, hold, delay or randomly lose frames,
//! or have its connections reset.
//!
//! One listener per node owns the address in the Raft configuration
//! (`127.0.0.1:P`); the real server listens on `127.0.0.2:P` (same port:
//! the library requires the peer id's port). A connection's destination is
//! the listener it arrived on. Its source is found by asking the kernel who
//! owns the other end: the connecting socket's inode comes from
//! `/proc/net/tcp` (local = the connection's peer address, remote = the
//! listener), and the process holding that inode among the node processes
//! (and this test process, whose clients are never faulted) is the sender.
//! That works for every connection kind — Raft batches, snapshot fetches,
//! admin calls — without any hook in the library, since the library never
//! binds outgoing sockets to a per-node address.
//!
//! Frames (`u32 length, u8 kind, body`) are forwarded whole, so dropping
//! one keeps the stream well-formed. Bytes from the connecting side travel
//! on the link (source → destination); answers on the same connection
//! (RPC responses) travel on the reverse link.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

/// Largest frame the proxy forwards (the library's default maximum).
const MAX_FRAME: usize = 64 << 20;

/// What happens to frames on one ordered link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Pass,
    /// Frames are read and thrown away (the sender sees a healthy socket).
    Drop,
    /// Frames stop moving until the link passes again (TCP back-pressure
    /// reaches the sender; what was held arrives late, in order).
    Hold,
}

/// The rule of one ordered link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkRule {
    pub mode: Mode,
    /// Added to every frame that passes.
    pub delay_ms: u64,
    /// Percentage of the frames that would pass which are dropped instead.
    pub loss_percent: u64,
}

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Node(usize),
    /// This test process (the workload and the nemesis): never faulted.
    Client,
}

/// Counters printed in the summary.
#[derive(Default)]
pub struct ProxyStats {
    pub conns: AtomicU64,
    pub conns_from_nodes: AtomicU64,
    pub unidentified: AtomicU64,
    pub frames: AtomicU64,
    pub dropped: AtomicU64,
    pub held: AtomicU64,
    pub delayed: AtomicU64,
    pub resets: AtomicU64,
}

struct Conn {
    src: Source,
    dst: usize,
    close: Arc<Notify>,
}

struct State {
    /// Per node: the advertised address (the proxy's) and the server's.
    public: Vec<SocketAddr>,
    private: Vec<SocketAddr>,
    /// Per node: the pid of its current process, if running.
    pids: Mutex<Vec<Option<u32>>>,
    rules: Mutex<HashMap<(usize, usize), LinkRule>>,
    /// Bumped on every rule change, so held frames look again.
    rules_changed: watch::Sender<u64>,
    conns: Mutex<HashMap<u64, Conn>>,
    next_conn: AtomicU64,
    listeners: Mutex<Vec<Option<tokio::task::JoinHandle<()>>>>,
    /// State of the loss dice (SplitMix64; which frames are lost depends
    /// on timing anyway, so this need not be seeded).
    dice: AtomicU64,
    stats: ProxyStats,
}

impl State {
    /// True with probability `percent`/100.
    fn roll(&self, percent: u64) -> bool {
        let mut z = self
            .dice
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 100 < percent
    }
}

/// The proxy of a cluster of `n` nodes.
#[derive(Clone)]
pub struct Proxy {
    rt: Handle,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy for nodes advertised at `public[i]` and served at
    /// `private[i]`; no listener runs until [`Proxy::set_up`].
    pub fn new(rt: Handle, public: Vec<SocketAddr>, private: Vec<SocketAddr>) -> Proxy {
        let n = public.len();
        let (rules_changed, _) = watch::channel(0);
        Proxy {
            rt,
            state: Arc::new(State {
                public,
                private,
                pids: Mutex::new(vec![None; n]),
                rules: Mutex::new(HashMap::new()),
                rules_changed,
                conns: Mutex::new(HashMap::new()),
                next_conn: AtomicU64::new(1),
                listeners: Mutex::new((0..n).map(|_| None).collect()),
                dice: AtomicU64::new(0),
                stats: ProxyStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.state.stats
    }

    /// Node `i` runs as process `pid` (`None`: it is down). Going down
    /// closes its listener, so callers get "connection refused" as from a
    /// dead server (not a connection that is accepted then dropped, which
    /// would make every call to a dead node an unknown outcome); coming up
    /// opens it again.
    pub fn set_up(&self, i: usize, pid: Option<u32>) {
        self.state.pids.lock().expect("pids")[i] = pid;
        let mut listeners = self.state.listeners.lock().expect("listeners");
        if let Some(task) = listeners[i].take() {
            task.abort();
        }
        if pid.is_some() {
            let _runtime = self.rt.enter();
            // An aborted listener task lets go of its socket at its next
            // poll: retry for a while rather than race it.
            let mut tries = 0;
            let listener = loop {
                match bind(self.state.public[i]) {
                    Ok(l) => break l,
                    Err(_) if tries < 250 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("proxy cannot listen on {}: {e}", self.state.public[i]),
                }
            };
            let state = self.state.clone();
            listeners[i] = Some(self.rt.spawn(accept_loop(state, i, listener)));
        } else {
            drop(listeners);
            self.reset_where(|c| c.dst == i || c.src == Source::Node(i));
        }
    }

    /// Sets the rule of the ordered link `from → to`.
    pub fn set_rule(&self, from: usize, to: usize, rule: LinkRule) {
        let mut rules = self.state.rules.lock().expect("rules");
        if rule == LinkRule::default() {
            rules.remove(&(from, to));
        } else {
            rules.insert((from, to), rule);
        }
        drop(rules);
        self.state.rules_changed.send_modify(|v| *v += 1);
    }

    /// Every link passes again, without delay.
    pub fn heal(&self) {
        self.state.rules.lock().expect("rules").clear();
        self.state.rules_changed.send_modify(|v| *v += 1);
    }

    /// Closes (RST) every connection between `a` and `b`, either way.
    pub fn reset_between(&self, a: usize, b: usize) {
        self.reset_where(|c| {
            (c.src == Source::Node(a) && c.dst == b) || (c.src == Source::Node(b) && c.dst == a)
        });
    }

    fn reset_where(&self, pick: impl Fn(&Conn) -> bool) {
        let conns = self.state.conns.lock().expect("conns");
        for c in conns.values().filter(|c| pick(c)) {
            c.close.notify_one();
            self.state.stats.resets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A listener with SO_REUSEADDR, so a node's address can be taken again
/// right after its listener was closed.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(state: Arc<State>, dst: usize, listener: TcpListener) {
    loop {
        let Ok((inbound, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = serve(state, dst, inbound, from).await;
        });
    }
}

async fn serve(
    state: Arc<State>,
    dst: usize,
    inbound: TcpStream,
    from: SocketAddr,
) -> io::Result<()> {
    state.stats.conns.fetch_add(1, Ordering::Relaxed);
    let listen = state.public[dst];
    let pids = state.pids.lock().expect("pids").clone();
    let src = tokio::task::spawn_blocking(move || identify(from, listen, &pids))
        .await
        .ok()
        .flatten();
    let Some(src) = src else {
        // The sender is gone already (or unknown): refuse the connection.
        state.stats.unidentified.fetch_add(1, Ordering::Relaxed);
        let _ = inbound.set_zero_linger();
        return Ok(());
    };
    if let Source::Node(_) = src {
        state.stats.conns_from_nodes.fetch_add(1, Ordering::Relaxed);
    }
    let backend = match tokio::time::timeout(
        Duration::from_secs(1),
        TcpStream::connect(state.private[dst]),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => {
            let _ = inbound.set_zero_linger();
            return Ok(());
        }
    };
    inbound.set_nodelay(true)?;
    backend.set_nodelay(true)?;
    // Every close is an RST: a reset fault must look like one, and what a
    // closing side still had in flight is lost either way.
    inbound.set_zero_linger()?;
    backend.set_zero_linger()?;

    let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let close = Arc::new(Notify::new());
    state.conns.lock().expect("conns").insert(
        id,
        Conn {
            src,
            dst,
            close: close.clone(),
        },
    );
    // Forward: source → destination; backward: destination → source.
    let links = match src {
        Source::Node(s) => (Some((s, dst)), Some((dst, s))),
        Source::Client => (None, None),
    };
    let (in_rd, in_wr) = inbound.into_split();
    let (back_rd, back_wr) = backend.into_split();
    let forward = pump(state.clone(), links.0, in_rd, back_wr);
    let backward = pump(state.clone(), links.1, back_rd, in_wr);
    // Whichever ends first ends the connection: dropping the pumps closes
    // both sockets.
    tokio::select! {
        _ = forward => {}
        _ = backward => {}
        _ = close.notified() => {}
    }
    state.conns.lock().expect("conns").remove(&id);
    Ok(())
}

/// Moves frames from `rd` to `wr` under the rule of `link` (`None`: pass).
/// Returns when either side closes or fails.
async fn pump(
    state: Arc<State>,
    link: Option<(usize, usize)>,
    mut rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
) {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = write_delayed(rx, wr);
    let reader = async {
        let mut changed = state.rules_changed.subscribe();
        loop {
            let mut header = [0u8; 5];
            if rd.read_exact(&mut header).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > MAX_FRAME {
                return;
            }
            let mut frame = vec![0u8; 5 + len];
            frame[..5].copy_from_slice(&header);
            if rd.read_exact(&mut frame[5..]).await.is_err() {
                return;
            }
            state.stats.frames.fetch_add(1, Ordering::Relaxed);
            let mut rule = rule_of(&state, link);
            if rule.mode == Mode::Hold {
                state.stats.held.fetch_add(1, Ordering::Relaxed);
                while rule.mode == Mode::Hold {
                    if changed.changed().await.is_err() {
                        return;
                    }
                    rule = rule_of(&state, link);
                }
            }
            if rule.mode == Mode::Drop || (rule.loss_percent > 0 && state.roll(rule.loss_percent)) {
                state.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if rule.delay_ms > 0 {
                state.stats.delayed.fetch_add(1, Ordering::Relaxed);
            }
            let at = Instant::now() + Duration::from_millis(rule.delay_ms);
            if tx.send((at, frame)).is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

fn rule_of(state: &State, link: Option<(usize, usize)>) -> LinkRule {
    match link {
        Some(l) => state
            .rules
            .lock()
            .expect("rules")
            .get(&l)
            .copied()
            .unwrap_or_default(),
        None => LinkRule::default(),
    }
}

/// Writes each frame once its time has come, in order.
async fn write_delayed(
    mut rx: mpsc::UnboundedReceiver<(Instant, Vec<u8>)>,
    mut wr: OwnedWriteHalf,
) {
    while let Some((at, frame)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        if wr.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// The owner of the socket connected from `from` to the proxy's `listen`:
/// a node (by its pid in `pids`) or this process.
fn identify(from: SocketAddr, listen: SocketAddr, pids: &[Option<u32>]) -> Option<Source> {
    let inode = socket_inode(from, listen)?;
    let target = format!("socket:[{inode}]");
    let owns = |pid: u32| -> bool {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|l| l.as_os_str() == target.as_str())
                .unwrap_or(false)
        })
    };
    for (i, pid) in pids.iter().enumerate() {
        if pid.is_some_and(owns) {
            return Some(Source::Node(i));
        }
    }
    owns(std::process::id()).then_some(Source::Client)
}

/// The inode of the TCP socket whose local end is `local` and remote end
/// `remote` (IPv4), from `/proc/net/tcp`.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| -> Option<String> {
        let IpAddr::V4(ip) = a.ip() else { return None };
        Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(ip.octets()),
            a.port()
        ))
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == local && f[2] == remote)
            .then(|| f[9].parse().ok())
            .flatten()
    })
}
