//! `rraft-bench cluster`: a whole Raft group under a closed-loop write load.
//!
//! N replicas on 127.0.0.1, each with `local://` storage in a fresh directory
//! and fdatasync on (unless `--sync false`). `--mode procs` (default) runs
//! every replica in its own process (this binary re-executed with the hidden
//! `node` subcommand) and the clients in this process: each client calls the
//! user method `bench.write` on the leader through `GroupClient`; the
//! replica's handler does `Node::apply` and answers from the done, i.e. the
//! real client → leader → quorum fdatasync → apply → reply path.
//! `--mode inproc` runs every replica on one server in this process and the
//! clients call `Node::apply` directly.
//!
//! Each client keeps one request in flight. A write counts when its done
//! reports success. Reported: ops/s, MiB/s of payload, latency percentiles
//! (a sorted sample of every measured op), CPU seconds per 1,000 ops (the
//! replicas' and the client process's utime + stime), peak RSS per replica
//! (VmHWM), and log-writer group commits (fdatasyncs) per second.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use rraft::node::{Done, Iter, Node, NodeOptions, RaftServer, StateMachine, Status, Task};
use rraft::transport::{GroupClient, Handler, Request, Responder, RpcClient};

use super::replica::ReplicaKnobs;

const GROUP: &str = "bench";
const EPERM: i32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every replica in its own process (like a deployment).
    Procs,
    /// Every replica on one server in this process; clients call Node::apply.
    Inproc,
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Where the replicas run.
    #[arg(long, value_enum, default_value_t = Mode::Procs)]
    mode: Mode,
    /// Replicas in the group.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes of data per write.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Percentage of requests that are ReadIndex reads instead of writes.
    #[arg(long, default_value_t = 0)]
    reads: u32,
    /// Parent of the replicas' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    knobs: ReplicaKnobs,
    /// Logs on `local-prealloc://` (open segments preallocated with zeros)
    /// instead of `local://` (braft's files exactly).
    #[arg(long)]
    prealloc: bool,
    /// Also measure the raw sequential write + fdatasync bandwidth of the
    /// filesystem (1 MiB writes, 3 s) and print the run's share of it.
    #[arg(long)]
    raw_disk: bool,
    /// Print the result as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also record a timestamp at each stage of the write path in every
    /// process (`RRAFT_TRACE_STAGES`) and print the per-stage medians of
    /// the measured ops (meant for --clients 1: with more, ops overlap and
    /// the client's stages are matched by time only).
    #[arg(long)]
    trace_stages: bool,
}

/// The hidden per-replica process of `--mode procs`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    conf: String,
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    knobs: ReplicaKnobs,
    #[arg(long)]
    prealloc: bool,
}

/// The benchmark's state machine: counts what it applies.
struct Counter(Arc<AtomicU64>);

impl StateMachine for Counter {
    fn on_apply(&mut self, it: &mut Iter<'_>) {
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn node_options(dir: &Path, conf: &str, k: &ReplicaKnobs, prealloc: bool) -> NodeOptions {
    NodeOptions {
        election_timeout_ms: k.election_timeout_ms,
        log_cache_bytes: k.log_cache_mib << 20,
        initial_conf: rraft::node::peer_id::parse_peer_list(conf).expect("configuration"),
        log_uri: format!(
            "{}://{}",
            if prealloc { "local-prealloc" } else { "local" },
            dir.join("log").display()
        ),
        raft_meta_uri: format!("local://{}", dir.join("meta").display()),
        snapshot_uri: String::new(),
        snapshot_interval_s: 0,
        sync: k.sync,
        ..NodeOptions::default()
    }
}

fn start_node(
    server: &Arc<RaftServer>,
    id: &str,
    conf: &str,
    dir: &Path,
    knobs: &ReplicaKnobs,
    prealloc: bool,
) -> Result<(Node, Arc<AtomicU64>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let applied = Arc::new(AtomicU64::new(0));
    let node = Node::new(server, GROUP, id).map_err(|e| e.to_string())?;
    node.init(
        node_options(dir, conf, knobs, prealloc),
        Box::new(Counter(applied.clone())),
    )
    .map_err(|e| e.to_string())?;
    Ok((node, applied))
}

/// Proposes `data`; `reply` runs once with the outcome.
fn write(node: &Node, data: Bytes, reply: impl FnOnce(Status) + Send + 'static) {
    node.apply(Task {
        data,
        done: Some(Done::new(reply)),
        expected_term: -1,
    });
}

fn reply_status(responder: Responder, node: &Node, st: Status) {
    if st.is_ok() {
        responder.reply(Bytes::new());
    } else {
        let hint = node.leader_id().unwrap_or_default();
        responder.reply_error(st.code, &st.message, &hint);
    }
}

/// `rraft-bench node`: one replica plus the methods `bench.write`,
/// `bench.read` and `bench.stats`; prints "ready" and serves until killed.
pub fn run_node(args: NodeArgs) -> Result<(), String> {
    args.knobs.init_runtime();
    let port: u16 = args
        .id
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or("bad --id")?;
    let server = RaftServer::start(&format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let (node, applied) = start_node(
        &server,
        &args.id,
        &args.conf,
        &args.dir,
        &args.knobs,
        args.prealloc,
    )?;
    let n = node.clone();
    let on_write: Handler = Arc::new(move |req: Request, responder: Responder| {
        if !n.is_leader() {
            let hint = n.leader_id().unwrap_or_default();
            return responder.reply_error(EPERM, "not leader", &hint);
        }
        let n2 = n.clone();
        write(&n, req.payload, move |st| reply_status(responder, &n2, st));
    });
    server
        .add_method("bench.write", on_write)
        .map_err(|e| e.to_string())?;
    let n = node.clone();
    let on_read: Handler = Arc::new(move |_req: Request, responder: Responder| {
        if !n.is_leader() {
            let hint = n.leader_id().unwrap_or_default();
            return responder.reply_error(EPERM, "not leader", &hint);
        }
        let n2 = n.clone();
        n.read_index(Done::new(move |st| reply_status(responder, &n2, st)));
    });
    server
        .add_method("bench.read", on_read)
        .map_err(|e| e.to_string())?;
    let n = node.clone();
    let stats_server = server.clone();
    let on_stats: Handler = Arc::new(move |_req: Request, responder: Responder| {
        let (batches, requests) = n.log_writer_stats().unwrap_or((0, 0));
        let t = stats_server.transport_stats();
        let text = format!(
            "{batches} {requests} {} {} {} {} {}",
            applied.load(Ordering::Relaxed),
            t.messages_in,
            t.messages_out,
            t.flushes,
            t.frames_in
        );
        responder.reply(Bytes::from(text));
    });
    server
        .add_method("bench.stats", on_stats)
        .map_err(|e| e.to_string())?;
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// utime + stime of a process in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = text.rfind(')').map(|i| &text[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

/// Context switches (voluntary + involuntary) of every thread of a process:
/// each is a wake-up or a preemption, the main cost of hand-offs between
/// threads.
pub(crate) fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| {
            let text = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            text.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// Byte counts as "1.0, 2.5" MiB.
pub(crate) fn mib_list(bytes: &[u64]) -> String {
    let mib: Vec<String> = bytes
        .iter()
        .map(|b| format!("{:.1}", *b as f64 / (1024.0 * 1024.0)))
        .collect();
    mib.join(", ")
}

/// Peak resident set (VmHWM) of a process in bytes.
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Starts each command (this binary's hidden subcommands) and waits until
/// each has printed its first line, "ready".
pub(crate) fn spawn_ready(commands: Vec<Command>) -> Result<Vec<Proc>, String> {
    let mut procs = Vec::new();
    for mut cmd in commands {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn a process: {e}"))?;
        procs.push(Proc(child));
    }
    for p in &mut procs {
        let out = p.0.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("a process did not start: {line:?}"));
        }
    }
    Ok(procs)
}

/// Runs `run` in a fresh directory under `parent` (default: the system
/// temp dir), named after `what` and this process, removed afterwards.
pub(crate) fn in_temp_root<T>(
    parent: Option<PathBuf>,
    what: &str,
    run: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<T, String> {
    let parent = parent.unwrap_or_else(std::env::temp_dir);
    let root = parent.join(format!(
        "rraft-bench-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let result = run(&root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// What every client shares.
struct Load {
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Every successful op (for the per-second lines).
    done_ops: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<u32>>,
    reads: AtomicU64,
}

/// The cluster under test, whichever mode.
enum Cluster {
    Procs {
        procs: Vec<Proc>,
        ids: Vec<String>,
        client: GroupClient,
        rpc: RpcClient,
    },
    Inproc {
        nodes: Vec<(Node, Arc<AtomicU64>)>,
        server: Arc<RaftServer>,
    },
}

impl Cluster {
    fn pids(&self) -> Vec<u32> {
        match self {
            Cluster::Procs { procs, .. } => procs.iter().map(|p| p.0.id()).collect(),
            Cluster::Inproc { .. } => vec![std::process::id()],
        }
    }

    /// Each replica's counters: log-writer batches (group commits), writer
    /// requests, applied entries, Raft messages in and out, write syscalls
    /// (flushes) and frames in. In-process replicas share one transport, so
    /// their transport counters are the port's.
    fn counters(&self) -> Vec<[u64; COUNTERS]> {
        match self {
            Cluster::Procs { ids, rpc, .. } => ids
                .iter()
                .map(|id| {
                    let mut c = [0; COUNTERS];
                    let Some(addr) = rraft::transport::peer_id::peer_addr(id) else {
                        return c;
                    };
                    let Ok(r) = rpc.call_blocking(
                        &addr,
                        "bench.stats",
                        GROUP,
                        Bytes::new(),
                        Duration::from_secs(5),
                    ) else {
                        return c;
                    };
                    let text = String::from_utf8_lossy(&r.payload);
                    for (slot, v) in c.iter_mut().zip(text.split(' ')) {
                        *slot = v.parse().unwrap_or(0);
                    }
                    c
                })
                .collect(),
            Cluster::Inproc { nodes, server } => {
                let t = server.transport_stats();
                nodes
                    .iter()
                    .map(|(n, applied)| {
                        let (batches, requests) = n.log_writer_stats().unwrap_or((0, 0));
                        [
                            batches,
                            requests,
                            applied.load(Ordering::Relaxed),
                            t.messages_in,
                            t.messages_out,
                            t.flushes,
                            t.frames_in,
                        ]
                    })
                    .collect()
            }
        }
    }
}

impl Cluster {
    /// The client process's transport counters (procs mode).
    fn client_stats(&self) -> rraft::transport::Stats {
        match self {
            Cluster::Procs { rpc, .. } => rpc.stats(),
            Cluster::Inproc { .. } => rraft::transport::Stats::default(),
        }
    }
}

/// How many counters `bench.stats` reports (see [`Cluster::counters`]).
const COUNTERS: usize = 7;

fn start_cluster(args: &ClusterArgs, root: &Path) -> Result<Cluster, String> {
    match args.mode {
        Mode::Procs => {
            let ports = free_ports(args.nodes);
            let ids: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}:0")).collect();
            let conf = ids.join(",");
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut commands = Vec::new();
            // `RRAFT_BENCH_WRAP=<i>:<program> <args>` runs replica i under
            // a wrapper (a profiler such as valgrind's callgrind).
            let wrap = std::env::var("RRAFT_BENCH_WRAP").ok();
            let wrap = wrap.as_deref().and_then(|w| {
                let (i, cmd) = w.split_once(':')?;
                Some((
                    i.parse::<usize>().ok()?,
                    cmd.split_whitespace().collect::<Vec<_>>(),
                ))
            });
            for (i, id) in ids.iter().enumerate() {
                let mut cmd = match &wrap {
                    Some((w, prog)) if *w == i && !prog.is_empty() => {
                        let mut c = Command::new(prog[0]);
                        c.args(&prog[1..]).arg(&exe);
                        c
                    }
                    _ => Command::new(&exe),
                };
                cmd.arg("node")
                    .args(["--id", id, "--conf", &conf])
                    .arg("--dir")
                    .arg(root.join(format!("n{i}")))
                    .args(args.knobs.child_args());
                if args.prealloc {
                    cmd.arg("--prealloc");
                }
                commands.push(cmd);
            }
            let procs = spawn_ready(commands)?;
            let rpc = RpcClient::new(rraft::node::runtime::handle());
            let client = GroupClient::with_rpc(rpc.clone(), GROUP, ids.clone());
            client.set_attempt_timeout(Some(Duration::from_secs(2)));
            Ok(Cluster::Procs {
                procs,
                ids,
                client,
                rpc,
            })
        }
        Mode::Inproc => {
            let server = RaftServer::start("127.0.0.1:0").map_err(|e| e.to_string())?;
            let port = server.port();
            let ids: Vec<String> = (0..args.nodes)
                .map(|i| format!("127.0.0.1:{port}:{i}"))
                .collect();
            let conf = ids.join(",");
            let mut nodes = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                nodes.push(start_node(
                    &server,
                    id,
                    &conf,
                    &root.join(format!("n{i}")),
                    &args.knobs,
                    args.prealloc,
                )?);
            }
            Ok(Cluster::Inproc { nodes, server })
        }
    }
}

/// One op; Ok on success.
async fn one_op(cluster: &ClusterRef, read: bool, payload: &Bytes) -> Result<(), String> {
    match cluster {
        ClusterRef::Procs(client) => {
            let method = if read { "bench.read" } else { "bench.write" };
            client
                .call(method, payload.clone(), Duration::from_secs(10))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        ClusterRef::Inproc(nodes) => {
            let Some(node) = nodes.iter().find(|n| n.is_leader()) else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                return Err("no leader".into());
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            if read {
                node.read_index(Done::new(move |st| {
                    let _ = tx.send(st);
                }));
            } else {
                write(node, payload.clone(), move |st| {
                    let _ = tx.send(st);
                });
            }
            match rx.await {
                Ok(st) if st.is_ok() => Ok(()),
                Ok(st) => Err(st.to_string()),
                Err(_) => Err("dropped".into()),
            }
        }
    }
}

#[derive(Clone)]
enum ClusterRef {
    Procs(GroupClient),
    Inproc(Arc<Vec<Node>>),
}

fn wait_ready(cref: &ClusterRef, payload: &Bytes) -> Result<(), String> {
    let start = Instant::now();
    let handle = rraft::node::runtime::handle();
    loop {
        let c = cref.clone();
        let p = payload.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(one_op(&c, false, &p).await);
        });
        match rx.recv().unwrap_or(Err("lost".into())) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                return Err(format!("no leader accepted a write in 30 s: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as u64
}

/// Raw sequential 1 MiB write + fdatasync bandwidth in bytes/s (3 s).
fn raw_disk(parent: &Path) -> Result<f64, String> {
    let dir = parent.join(format!("rraft-bench-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let r = super::storage::raw_rate(&dir, 1 << 30, Duration::from_secs(3));
    let _ = std::fs::remove_dir_all(&dir);
    r.map_err(|e| format!("raw disk: {e}"))
}

pub fn run(args: ClusterArgs) -> Result<(), String> {
    if args.nodes == 0 || args.clients == 0 {
        return Err("--nodes and --clients must be positive".into());
    }
    args.knobs.init_runtime();
    let mut out = in_temp_root(args.dir.clone(), "cluster", |root| run_in(&args, root))?;
    if args.raw_disk {
        let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
        let raw = raw_disk(&parent)?;
        out.raw = Some(raw);
    }
    if args.json {
        println!("{}", out.json(&args));
    } else {
        out.print(&args);
    }
    Ok(())
}

struct Outcome {
    ops: u64,
    reads: u64,
    errors: u64,
    secs: f64,
    sorted: Vec<u32>,
    cpu: f64,
    /// Context switches of the replicas and the client process.
    switches: u64,
    /// Requests the client process wrote, and in how many write syscalls.
    client_frames_out: u64,
    client_flushes: u64,
    rss: Vec<u64>,
    /// Per replica, the measured window's growth of [`Cluster::counters`].
    counters: Vec<[u64; COUNTERS]>,
    raw: Option<f64>,
}

impl Outcome {
    /// Group commits (fdatasyncs) of all replicas.
    fn fsyncs(&self) -> u64 {
        self.counters.iter().map(|c| c[0]).sum()
    }

    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn bytes_per_s(&self, args: &ClusterArgs) -> f64 {
        (self.ops - self.reads) as f64 * args.payload as f64 / self.secs
    }
    fn mean_us(&self) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.iter().map(|&v| v as f64).sum::<f64>() / self.sorted.len() as f64
    }
    fn switches_per_op(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        self.switches as f64 / self.ops as f64
    }

    fn cpu_per_kop(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        self.cpu / (self.ops as f64 / 1000.0)
    }

    fn json(&self, args: &ClusterArgs) -> String {
        let rss: Vec<String> = self.rss.iter().map(|r| r.to_string()).collect();
        let mut s = format!(
            concat!(
                "{{\"mode\":\"{:?}\",\"nodes\":{},\"clients\":{},\"payload\":{},\"sync\":{},",
                "\"reads_pct\":{},\"secs\":{:.3},\"ops\":{},\"reads\":{},\"errors\":{},",
                "\"ops_per_s\":{:.1},\"mb_per_s\":{:.3},\"mean_us\":{:.1},",
                "\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},",
                "\"cpu_s_per_kop\":{:.5},\"rss_max_bytes\":{},\"rss_bytes\":[{}],",
                "\"fsyncs_per_s\":{:.1},\"switches_per_op\":{:.2}"
            ),
            args.mode,
            args.nodes,
            args.clients,
            args.payload,
            args.knobs.sync,
            args.reads,
            self.secs,
            self.ops,
            self.reads,
            self.errors,
            self.ops_per_s(),
            self.bytes_per_s(args) / (1024.0 * 1024.0),
            self.mean_us(),
            percentile(&self.sorted, 50.0),
            percentile(&self.sorted, 99.0),
            percentile(&self.sorted, 99.9),
            self.sorted.last().copied().unwrap_or(0),
            self.cpu_per_kop(),
            self.rss.iter().max().copied().unwrap_or(0),
            rss.join(","),
            self.fsyncs() as f64 / self.secs,
            self.switches_per_op(),
        );
        if let Some(raw) = self.raw {
            s += &format!(
                ",\"raw_disk_mb_per_s\":{:.3},\"of_raw_disk\":{:.4},\"replicas_of_raw_disk\":{:.4}",
                raw / (1024.0 * 1024.0),
                self.bytes_per_s(args) / raw,
                self.bytes_per_s(args) * args.nodes as f64 / raw
            );
        }
        s.push('}');
        s
    }

    fn print(&self, args: &ClusterArgs) {
        println!(
            "cluster: {:?}, {} replicas, {} clients, {} B payload, sync {}, {}% reads, {:.1} s measured",
            args.mode, args.nodes, args.clients, args.payload, args.knobs.sync, args.reads, self.secs
        );
        println!(
            "  ops/s {:.0}   MiB/s {:.2}   errors {}",
            self.ops_per_s(),
            self.bytes_per_s(args) / (1024.0 * 1024.0),
            self.errors
        );
        println!(
            "  latency us: mean {:.0}  p50 {}  p99 {}  p99.9 {}  max {}",
            self.mean_us(),
            percentile(&self.sorted, 50.0),
            percentile(&self.sorted, 99.0),
            percentile(&self.sorted, 99.9),
            self.sorted.last().copied().unwrap_or(0)
        );
        println!(
            "  CPU s per 1000 ops {:.4}   context switches per op {:.2}   peak RSS MiB per process [{}]   fsyncs/s {:.0}",
            self.cpu_per_kop(),
            self.switches_per_op(),
            mib_list(&self.rss),
            self.fsyncs() as f64 / self.secs
        );
        for (i, c) in self.counters.iter().enumerate() {
            let per_s = |v: u64| v as f64 / self.secs;
            println!(
                "  replica {i} per s: fsyncs {:.0}  msgs in {:.0}  msgs out {:.0}  write syscalls {:.0}  frames in {:.0}",
                per_s(c[0]),
                per_s(c[3]),
                per_s(c[4]),
                per_s(c[5]),
                per_s(c[6])
            );
        }
        if self.client_flushes > 0 {
            println!(
                "  client: {:.0} requests/s in {:.0} write syscalls/s",
                self.client_frames_out as f64 / self.secs,
                self.client_flushes as f64 / self.secs
            );
        }
        if let Some(raw) = self.raw {
            println!(
                "  raw disk (1 MiB write + fdatasync): {:.1} MiB/s; this run: {:.1}% of it ({:.1}% counting every replica's copy on this one disk)",
                raw / (1024.0 * 1024.0),
                100.0 * self.bytes_per_s(args) / raw,
                100.0 * self.bytes_per_s(args) * args.nodes as f64 / raw
            );
        }
    }
}

fn run_in(args: &ClusterArgs, root: &Path) -> Result<Outcome, String> {
    let trace_dir = root.join("stages");
    if args.trace_stages {
        std::fs::create_dir_all(&trace_dir).map_err(|e| e.to_string())?;
        // Before any thread records or a replica starts: they inherit it.
        std::env::set_var(rraft::stage_trace::ENV, &trace_dir);
    }
    let cluster = start_cluster(args, root)?;
    let cref = match &cluster {
        Cluster::Procs { client, .. } => ClusterRef::Procs(client.clone()),
        Cluster::Inproc { nodes, .. } => {
            ClusterRef::Inproc(Arc::new(nodes.iter().map(|(n, _)| n.clone()).collect()))
        }
    };
    let payload = Bytes::from(vec![0xABu8; args.payload]);
    wait_ready(&cref, &payload)?;

    let load = Arc::new(Load {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        done_ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
        reads: AtomicU64::new(0),
    });
    let handle = rraft::node::runtime::handle();
    let (fin_tx, fin_rx) = std::sync::mpsc::channel::<()>();
    for c in 0..args.clients {
        let load = load.clone();
        let cref = cref.clone();
        let payload = payload.clone();
        let fin = fin_tx.clone();
        let reads = args.reads.min(100) as u64;
        handle.spawn(async move {
            let mut local: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut rng = 0x9E3779B97F4A7C15u64 ^ (c as u64 + 1).wrapping_mul(0xD1B54A32D192ED03);
            let mut local_reads = 0;
            while !load.stop.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let read = rng % 100 < reads;
                let t = Instant::now();
                let r = one_op(&cref, read, &payload).await;
                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let measuring = load.measuring.load(Ordering::Relaxed);
                match r {
                    Ok(()) => {
                        load.done_ops.fetch_add(1, Ordering::Relaxed);
                        if measuring {
                            local.push(us);
                            local_reads += read as u64;
                        }
                    }
                    Err(_) => {
                        if measuring {
                            load.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if !measuring && !local.is_empty() {
                    // Measurement over: stop recording.
                    break;
                }
            }
            load.reads.fetch_add(local_reads, Ordering::Relaxed);
            load.samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&local);
            drop(fin);
        });
    }
    drop(fin_tx);

    let progress = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let start = Instant::now();
    let mut last_ops = 0;
    let mut second = 0u64;
    let tick = |second: &mut u64, last_ops: &mut u64, phase: &str| {
        *second += 1;
        let target = start + Duration::from_secs(*second);
        if let Some(wait) = target.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = load.done_ops.load(Ordering::Relaxed);
        progress(format!(
            "[{:>3} s {phase}] {} ops/s",
            second,
            now - *last_ops
        ));
        *last_ops = now;
    };
    let warm_until = Duration::from_secs_f64(args.warmup);
    while start.elapsed() + Duration::from_millis(500) < warm_until {
        tick(&mut second, &mut last_ops, "warmup");
    }
    if let Some(w) = warm_until.checked_sub(start.elapsed()) {
        std::thread::sleep(w);
    }
    let pids = cluster.pids();
    let me = std::process::id();
    let cpu_of = |pids: &[u32]| {
        let mut s: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
        if !pids.contains(&me) {
            s += cpu_seconds(me);
        }
        s
    };
    let counters0 = cluster.counters();
    let client0 = cluster.client_stats();
    let cpu0 = cpu_of(&pids);
    let switches_of = |pids: &[u32]| -> u64 {
        let mut s: u64 = pids.iter().map(|&p| context_switches(p)).sum();
        if !pids.contains(&me) {
            s += context_switches(me);
        }
        s
    };
    let switches0 = switches_of(&pids);
    let m_start = Instant::now();
    let m_start_ns = rraft::stage_trace::monotonic_ns();
    let ops0 = load.done_ops.load(Ordering::Relaxed);
    load.measuring.store(true, Ordering::Relaxed);
    let measure = Duration::from_secs_f64(args.duration);
    start_ticks(&mut second, start, m_start);
    while m_start.elapsed() + Duration::from_millis(500) < measure {
        tick(&mut second, &mut last_ops, "measure");
    }
    if let Some(w) = measure.checked_sub(m_start.elapsed()) {
        std::thread::sleep(w);
    }
    load.measuring.store(false, Ordering::Relaxed);
    let m_end_ns = rraft::stage_trace::monotonic_ns();
    let secs = m_start.elapsed().as_secs_f64();
    let cpu1 = cpu_of(&pids);
    let switches1 = switches_of(&pids);
    let ops1 = load.done_ops.load(Ordering::Relaxed);
    let counters1 = cluster.counters();
    let client1 = cluster.client_stats();
    let rss: Vec<u64> = pids.iter().map(|&p| peak_rss(p)).collect();
    load.stop.store(true, Ordering::Relaxed);
    // Clients finish their op in flight (each has at most one).
    let deadline = Instant::now() + Duration::from_secs(15);
    while fin_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
    {}
    let mut sorted = std::mem::take(&mut *load.samples.lock().unwrap_or_else(|p| p.into_inner()));
    sorted.sort_unstable();
    let _ = ops1 - ops0;
    let out = Outcome {
        ops: sorted.len() as u64,
        reads: load.reads.load(Ordering::Relaxed),
        errors: load.errors.load(Ordering::Relaxed),
        secs,
        sorted,
        cpu: cpu1 - cpu0,
        switches: switches1.saturating_sub(switches0),
        client_frames_out: client1.frames_out.saturating_sub(client0.frames_out),
        client_flushes: client1.flushes.saturating_sub(client0.flushes),
        rss,
        counters: counters1
            .iter()
            .zip(&counters0)
            .map(|(b, a)| std::array::from_fn(|i| b[i].saturating_sub(a[i])))
            .collect(),
        raw: None,
    };
    if let Cluster::Inproc { nodes, .. } = &cluster {
        for (n, _) in nodes {
            n.shutdown(None);
        }
        for (n, _) in nodes {
            let _ = n.join();
        }
    }
    if args.trace_stages {
        // Every process's trace thread appends its records every 200 ms.
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(cluster);
    if args.trace_stages {
        match super::stages::table(&trace_dir, m_start_ns, m_end_ns) {
            Ok(table) => eprint!("{table}"),
            Err(e) => eprintln!("stage trace: {e}"),
        }
    }
    Ok(out)
}

/// Realigns the per-second lines on the start of the measurement.
fn start_ticks(second: &mut u64, start: Instant, m_start: Instant) {
    *second = m_start.duration_since(start).as_secs();
}
