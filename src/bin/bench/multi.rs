//! `rraft-bench multi`: many Raft groups in three processes, each process
//! holding one replica of every group (this binary re-executed with the
//! hidden `multi-node` subcommand), `local://` storage (with `--shared`:
//! each process's logs on one `shared://` log), fdatasync on unless
//! `--sync false`.
//!
//! Phases and what each reports:
//! 1. start: the seconds until every process has started its nodes, and
//!    until every group has a leader;
//! 2. idle (`--idle-secs`): CPU % of one core per process (utime + stime
//!    from /proc/PID/stat over the window), threads (/proc/PID/status) and
//!    resident memory (VmRSS) per process;
//! 3. load: `--clients` closed-loop clients, each with one `multi.write` in
//!    flight to a group drawn uniformly at random (through one
//!    `GroupClient` per group, sharing one connection per process): ops/s,
//!    latency percentiles, errors, and the processes' log-writer
//!    durability points (fdatasync batches) per second, CPU microseconds
//!    per op (utime + stime of the three processes and of this one, whose
//!    clients load them, over the measured window / ops) and context
//!    switches per op (every thread of the four processes); peak RSS (VmHWM);
//! 4. kill: SIGKILL of the first process (`--kill-after-secs` after the
//!    load), then the seconds from the signal until every group has a
//!    leader again among the other two (`--timeline`: where that time went).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use rraft::node::{Done, Iter, Node, NodeOptions, RaftServer, StateMachine, Task};
use rraft::transport::{GroupClient, Handler, Request, Responder, RpcClient};

use super::cluster::{
    context_switches, cpu_seconds, free_ports, in_temp_root, peak_rss, percentile, spawn_ready,
    Proc,
};
use super::replica::ReplicaKnobs;

const EPERM: i32 = 1;
/// Replicas of each group, one per process.
const PROCESSES: usize = 3;

#[derive(Args, Debug)]
pub struct MultiArgs {
    /// Raft groups (each with one replica in every process).
    #[arg(long, default_value_t = 100)]
    groups: usize,
    /// Concurrent clients, each with one write in flight to a random group.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes of data per write.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Seconds of load measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds of the idle CPU measurement (after every group has a leader).
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
    /// Parent of the processes' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    knobs: ReplicaKnobs,
    /// Quiesce a group idle this long in ms (0: never, rraft's default).
    #[arg(long, default_value_t = 0)]
    quiesce_ms: u32,
    /// Every group's log of a process on one shared log (`shared://DIR`):
    /// one append stream and one fdatasync per round for all groups.
    #[arg(long)]
    shared: bool,
    /// Skip the SIGKILL phase.
    #[arg(long)]
    no_kill: bool,
    /// Seconds to wait between the load and the SIGKILL (with
    /// --quiesce-ms, long enough lets the groups quiesce first).
    #[arg(long, default_value_t = 0.0)]
    kill_after_secs: f64,
    /// Trace the re-election after the SIGKILL and print where its time
    /// went, phase by phase (see `bench/timeline.rs`).
    #[arg(long)]
    timeline: bool,
    /// Print the result as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

/// The hidden per-process body of `multi`.
#[derive(Args, Debug)]
pub struct MultiNodeArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    conf: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    groups: usize,
    #[command(flatten)]
    knobs: ReplicaKnobs,
    #[arg(long, default_value_t = 0)]
    quiesce_ms: u32,
    #[arg(long)]
    shared: bool,
    #[arg(long)]
    timeline: bool,
}

fn group_name(g: usize) -> String {
    format!("m{g}")
}

/// The state machine: applies nothing, counts nothing (the cost measured
/// is the library's).
struct Sink;

impl StateMachine for Sink {
    fn on_apply(&mut self, it: &mut Iter<'_>) {
        while it.valid() {
            it.next();
        }
    }
}

/// `rraft-bench multi-node`: one replica of every group plus the methods
/// `multi.write` (to the request's group), `multi.led` (the groups led
/// here) and `multi.stats` (durability points so far); prints "ready" once
/// every node started and serves until killed.
pub fn run_node(args: MultiNodeArgs) -> Result<(), String> {
    if args.timeline {
        super::timeline::record(&args.dir)?;
    }
    args.knobs.init_runtime();
    let port: u16 = args
        .id
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or("bad --id")?;
    let server = RaftServer::start(&format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let conf = rraft::node::peer_id::parse_peer_list(&args.conf).map_err(|e| e.0)?;
    let mut nodes = std::collections::HashMap::new();
    let mut order = Vec::new();
    for g in 0..args.groups {
        let name = group_name(g);
        let dir = args.dir.join(&name);
        let node = Node::new(&server, &name, &args.id).map_err(|e| e.to_string())?;
        let opts = NodeOptions {
            election_timeout_ms: args.knobs.election_timeout_ms,
            log_cache_bytes: args.knobs.log_cache_mib << 20,
            initial_conf: conf.clone(),
            log_uri: if args.shared {
                format!("shared://{}", args.dir.join("wal").display())
            } else {
                format!("local://{}", dir.join("log").display())
            },
            raft_meta_uri: format!("local://{}", dir.join("meta").display()),
            snapshot_uri: String::new(),
            snapshot_interval_s: 0,
            sync: args.knobs.sync,
            quiesce_after_ms: args.quiesce_ms,
            ..NodeOptions::default()
        };
        node.init(opts, Box::new(Sink))
            .map_err(|e| format!("{name}: {e}"))?;
        nodes.insert(name, node.clone());
        order.push(node);
    }
    let nodes = Arc::new(nodes);
    let on_write: Handler = Arc::new(move |req: Request, responder: Responder| {
        let Some(node) = nodes.get(req.group.as_str()) else {
            return responder.reply_error(EPERM, "no such group", "");
        };
        if !node.is_leader() {
            let hint = node.leader_id().unwrap_or_default();
            return responder.reply_error(EPERM, "not leader", &hint);
        }
        let n = node.clone();
        node.apply(Task {
            data: req.payload,
            done: Some(Done::new(move |st| {
                if st.is_ok() {
                    responder.reply(Bytes::new());
                } else {
                    let hint = n.leader_id().unwrap_or_default();
                    responder.reply_error(st.code, &st.message, &hint);
                }
            })),
            expected_term: -1,
        });
    });
    server
        .add_method("multi.write", on_write)
        .map_err(|e| e.to_string())?;
    let on_led: Handler = Arc::new(move |_req: Request, responder: Responder| {
        let led: Vec<String> = (0..order.len())
            .filter(|&g| order[g].is_leader())
            .map(|g| g.to_string())
            .collect();
        responder.reply(Bytes::from(led.join(",")));
    });
    server
        .add_method("multi.led", on_led)
        .map_err(|e| e.to_string())?;
    let on_stats: Handler = Arc::new(move |_req: Request, responder: Responder| {
        let text = format!(
            "{} {} {} {} {} {}",
            rraft::storage::process_syncs(),
            rraft::node::inline_turns(),
            rraft::node::task_turns(),
            rraft::node::ticker::ticker_turns(),
            rraft::node::quiet_beat_answers(),
            rraft::node::acks_waited()
        );
        responder.reply(Bytes::from(text));
    });
    server
        .add_method("multi.stats", on_stats)
        .map_err(|e| e.to_string())?;
    let stats_server = server.clone();
    let on_beats: Handler = Arc::new(move |_req: Request, responder: Responder| {
        let t = stats_server.transport_stats();
        let text = format!("{} {}", t.beats_out, t.heartbeat_frames_out);
        responder.reply(Bytes::from(text));
    });
    server
        .add_method("multi.beats", on_beats)
        .map_err(|e| e.to_string())?;
    println!("ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Threads of a process (/proc/PID/status).
fn threads_of(pid: u32) -> u64 {
    status_field(pid, "Threads:")
}

/// Resident memory of a process in bytes (VmRSS).
fn rss_of(pid: u32) -> u64 {
    status_field(pid, "VmRSS:") * 1024
}

fn status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Procs {
    procs: Vec<Option<Proc>>,
    ids: Vec<String>,
    rpc: RpcClient,
}

impl Procs {
    fn start(args: &MultiArgs, root: &Path) -> Result<Procs, String> {
        let ports = free_ports(PROCESSES);
        let ids: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}:0")).collect();
        let conf = ids.join(",");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut commands = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let mut cmd = Command::new(&exe);
            cmd.arg("multi-node")
                .args(["--id", id, "--conf", &conf])
                .arg("--dir")
                .arg(root.join(format!("p{i}")))
                .args(["--groups", &args.groups.to_string()])
                .args(args.knobs.child_args())
                .args(["--quiesce-ms", &args.quiesce_ms.to_string()]);
            if args.shared {
                cmd.arg("--shared");
            }
            if args.timeline {
                cmd.arg("--timeline");
            }
            commands.push(cmd);
        }
        let procs = spawn_ready(commands)?.into_iter().map(Some).collect();
        Ok(Procs {
            procs,
            ids,
            rpc: RpcClient::new(rraft::node::runtime::handle()),
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.procs.iter().flatten().map(|p| p.0.id()).collect()
    }

    fn call(&self, i: usize, method: &str) -> Option<String> {
        let addr = rraft::transport::peer_id::peer_addr(&self.ids[i])?;
        self.rpc
            .call_blocking(
                &addr,
                method,
                &group_name(0),
                Bytes::new(),
                Duration::from_secs(5),
            )
            .ok()
            .map(|r| String::from_utf8_lossy(&r.payload).to_string())
    }

    /// Groups with a leader in one of the live processes.
    fn led(&self) -> usize {
        let mut led = std::collections::BTreeSet::new();
        for i in 0..self.ids.len() {
            if self.procs[i].is_none() {
                continue;
            }
            if let Some(list) = self.call(i, "multi.led") {
                led.extend(list.split(',').filter_map(|g| g.parse::<usize>().ok()));
            }
        }
        led.len()
    }

    /// Waits until every group has a leader; the seconds since `since`.
    fn wait_for_leaders(
        &self,
        groups: usize,
        since: Instant,
        limit: Duration,
    ) -> Result<f64, String> {
        loop {
            let led = self.led();
            if led == groups {
                return Ok(since.elapsed().as_secs_f64());
            }
            if since.elapsed() > limit {
                return Err(format!(
                    "{led} of {groups} groups have a leader after {limit:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Heartbeats (and answers) sent so far by the live processes, and the
    /// coalesced frames that carried them.
    fn beats(&self) -> (u64, u64) {
        (0..self.ids.len())
            .filter(|&i| self.procs[i].is_some())
            .filter_map(|i| {
                let text = self.call(i, "multi.beats")?;
                let mut v = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                Some((v.next()??, v.next()??))
            })
            .fold((0, 0), |(beats, frames), (more_beats, more_frames)| {
                (beats + more_beats, frames + more_frames)
            })
    }

    /// Durability points, driver turns run by deliverers and driver turns
    /// run by the drivers' tasks, of the live processes so far.
    fn counters(&self) -> Counters {
        (0..self.ids.len())
            .filter(|&i| self.procs[i].is_some())
            .filter_map(|i| {
                let text = self.call(i, "multi.stats")?;
                let mut v = text.split_whitespace().map(|w| w.parse::<u64>().ok());
                Some(Counters {
                    syncs: v.next()??,
                    inline_turns: v.next()??,
                    task_turns: v.next()??,
                    ticker_turns: v.next()??,
                    quiet_beats: v.next()??,
                    acks_waited: v.next()??,
                })
            })
            .fold(Counters::default(), |a, b| Counters {
                syncs: a.syncs + b.syncs,
                inline_turns: a.inline_turns + b.inline_turns,
                task_turns: a.task_turns + b.task_turns,
                ticker_turns: a.ticker_turns + b.ticker_turns,
                quiet_beats: a.quiet_beats + b.quiet_beats,
                acks_waited: a.acks_waited + b.acks_waited,
            })
    }
}

/// Counters of the server processes (see [`Procs::counters`]).
#[derive(Clone, Copy, Default)]
struct Counters {
    syncs: u64,
    inline_turns: u64,
    task_turns: u64,
    ticker_turns: u64,
    /// Heartbeats answered without a turn (`node::quiet_beat_answers`).
    quiet_beats: u64,
    /// Append acks queued for the leader's next turn (`node::acks_waited`).
    acks_waited: u64,
}

impl Counters {
    fn since(self, before: Counters) -> Counters {
        Counters {
            syncs: self.syncs.saturating_sub(before.syncs),
            inline_turns: self.inline_turns.saturating_sub(before.inline_turns),
            task_turns: self.task_turns.saturating_sub(before.task_turns),
            ticker_turns: self.ticker_turns.saturating_sub(before.ticker_turns),
            quiet_beats: self.quiet_beats.saturating_sub(before.quiet_beats),
            acks_waited: self.acks_waited.saturating_sub(before.acks_waited),
        }
    }
}

struct Outcome {
    startup_s: f64,
    leaders_s: f64,
    idle_cpu_pct: Vec<f64>,
    threads: Vec<u64>,
    rss_idle: Vec<u64>,
    rss_peak: Vec<u64>,
    ops: u64,
    errors: u64,
    secs: f64,
    sorted: Vec<u32>,
    fsyncs_per_s: f64,
    cost: LoadCost,
    /// Driver turns during the measured load.
    turns: Counters,
    reelect_s: Option<f64>,
}

/// What the measured load cost the three processes and the bench process
/// (its clients), as the cluster bench counts it.
#[derive(Clone, Copy, Default)]
struct LoadCost {
    /// CPU seconds (utime + stime) of the servers.
    servers_cpu_s: f64,
    /// CPU seconds of this process (the clients).
    client_cpu_s: f64,
    /// Context switches of every thread of the servers and of this process.
    switches: u64,
}

impl LoadCost {
    fn now(pids: &[u32]) -> LoadCost {
        let me = std::process::id();
        LoadCost {
            servers_cpu_s: pids.iter().map(|&p| cpu_seconds(p)).sum(),
            client_cpu_s: cpu_seconds(me),
            switches: pids.iter().map(|&p| context_switches(p)).sum::<u64>() + context_switches(me),
        }
    }

    fn since(self, before: LoadCost) -> LoadCost {
        LoadCost {
            servers_cpu_s: self.servers_cpu_s - before.servers_cpu_s,
            client_cpu_s: self.client_cpu_s - before.client_cpu_s,
            switches: self.switches.saturating_sub(before.switches),
        }
    }

    /// (CPU us per op of everything, of the servers, context switches per op).
    fn per_op(&self, ops: u64) -> (f64, f64, f64) {
        let ops = ops.max(1) as f64;
        (
            (self.servers_cpu_s + self.client_cpu_s) * 1e6 / ops,
            self.servers_cpu_s * 1e6 / ops,
            self.switches as f64 / ops,
        )
    }
}

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

impl Outcome {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    /// Driver turns of the three processes per op: (run by the threads
    /// delivering messages, run by the drivers' tasks, run by the ticker).
    fn turns_per_op(&self) -> (f64, f64, f64) {
        let ops = self.ops.max(1) as f64;
        (
            self.turns.inline_turns as f64 / ops,
            self.turns.task_turns as f64 / ops,
            self.turns.ticker_turns as f64 / ops,
        )
    }

    fn json(&self, args: &MultiArgs) -> String {
        let cpu: Vec<String> = self
            .idle_cpu_pct
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect();
        let (cpu_us, server_cpu_us, switches) = self.cost.per_op(self.ops);
        format!(
            concat!(
                "{{\"groups\":{},\"clients\":{},\"payload\":{},\"sync\":{},\"shared\":{},",
                "\"election_timeout_ms\":{},\"startup_s\":{:.3},\"leaders_s\":{:.3},",
                "\"idle_cpu_pct\":[{}],\"threads\":[{}],\"rss_idle_bytes\":[{}],",
                "\"rss_max_bytes\":[{}],\"secs\":{:.3},\"ops\":{},\"errors\":{},",
                "\"ops_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},",
                "\"fsyncs_per_s\":{:.1},\"cpu_us_per_op\":{:.2},\"server_cpu_us_per_op\":{:.2},",
                "\"cpu_s_per_kop\":{:.5},\"switches_per_op\":{:.3},",
                "\"inline_turns_per_op\":{:.3},\"task_turns_per_op\":{:.3},\"ticker_turns_per_op\":{:.3},",
                "\"quiet_beats_per_op\":{:.3},\"acks_waited_per_op\":{:.3},\"reelect_s\":{}}}"
            ),
            args.groups,
            args.clients,
            args.payload,
            args.knobs.sync,
            args.shared,
            args.knobs.election_timeout_ms,
            self.startup_s,
            self.leaders_s,
            cpu.join(","),
            list(&self.threads),
            list(&self.rss_idle),
            list(&self.rss_peak),
            self.secs,
            self.ops,
            self.errors,
            self.ops_per_s(),
            percentile(&self.sorted, 50.0),
            percentile(&self.sorted, 99.0),
            self.sorted.last().copied().unwrap_or(0),
            self.fsyncs_per_s,
            cpu_us,
            server_cpu_us,
            cpu_us / 1000.0,
            switches,
            self.turns_per_op().0,
            self.turns_per_op().1,
            self.turns_per_op().2,
            self.turns.quiet_beats as f64 / self.ops.max(1) as f64,
            self.turns.acks_waited as f64 / self.ops.max(1) as f64,
            self.reelect_s
                .map_or("null".to_string(), |s| format!("{s:.3}")),
        )
    }

    fn print(&self, args: &MultiArgs) {
        let mib = |v: &[u64]| super::cluster::mib_list(v);
        println!(
            "{} groups x {PROCESSES} replicas in {PROCESSES} processes, sync {}, {} logs, election timeout {} ms",
            args.groups,
            args.knobs.sync,
            if args.shared { "shared://" } else { "local://" },
            args.knobs.election_timeout_ms
        );
        println!(
            "start: nodes started in {:.2} s, every group has a leader after {:.2} s",
            self.startup_s, self.leaders_s
        );
        let cpu: Vec<String> = self
            .idle_cpu_pct
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect();
        println!(
            "idle: CPU % of one core per process [{}], threads [{}], RSS MiB [{}]",
            cpu.join(", "),
            list(&self.threads),
            mib(&self.rss_idle)
        );
        println!(
            "load: {} clients, {} B: {:.0} ops/s, p50 {} us, p99 {} us, max {} us, {} errors, {:.0} fsyncs/s, peak RSS MiB [{}]",
            args.clients,
            args.payload,
            self.ops_per_s(),
            percentile(&self.sorted, 50.0),
            percentile(&self.sorted, 99.0),
            self.sorted.last().copied().unwrap_or(0),
            self.errors,
            self.fsyncs_per_s,
            mib(&self.rss_peak)
        );
        let (cpu_us, server_cpu_us, switches) = self.cost.per_op(self.ops);
        println!(
            "load: CPU us per op {cpu_us:.1} (servers {server_cpu_us:.1}, clients {:.1}), CPU s per 1000 ops {:.4}, context switches per op {switches:.2}",
            cpu_us - server_cpu_us,
            cpu_us / 1000.0
        );
        let (inline, task, ticker) = self.turns_per_op();
        println!(
            "load: driver turns per op {:.2} (by deliverers {inline:.2}, by tasks {task:.2}, by the ticker {ticker:.2})",
            inline + task + ticker
        );
        match self.reelect_s {
            Some(s) => println!("kill: every group has a leader again {s:.2} s after the SIGKILL"),
            None => println!("kill: skipped"),
        }
    }
}

/// Runs the clients for warmup + duration; (ops, errors, seconds, sorted
/// latencies in us, durability points per second, cost of the measured
/// window, the servers' counters over it).
#[allow(clippy::type_complexity)]
fn load(args: &MultiArgs, procs: &Procs) -> (u64, u64, f64, Vec<u32>, f64, LoadCost, Counters) {
    let clients: Arc<Vec<GroupClient>> = Arc::new(
        (0..args.groups)
            .map(|g| {
                let c = GroupClient::with_rpc(procs.rpc.clone(), &group_name(g), procs.ids.clone());
                c.set_attempt_timeout(Some(Duration::from_secs(2)));
                c
            })
            .collect(),
    );
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let payload = Bytes::from(vec![0xABu8; args.payload]);
    let handle = rraft::node::runtime::handle();
    let (fin_tx, fin_rx) = std::sync::mpsc::channel::<()>();
    for c in 0..args.clients {
        let (clients, measuring, stop, errors, samples, payload, fin) = (
            clients.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
            samples.clone(),
            payload.clone(),
            fin_tx.clone(),
        );
        handle.spawn(async move {
            let mut local: Vec<u32> = Vec::new();
            let mut rng = 0x9E3779B97F4A7C15u64 ^ (c as u64 + 1).wrapping_mul(0xD1B54A32D192ED03);
            while !stop.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let client = &clients[(rng % clients.len() as u64) as usize];
                let t = Instant::now();
                let r = client
                    .call("multi.write", payload.clone(), Duration::from_secs(10))
                    .await;
                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                if measuring.load(Ordering::Relaxed) {
                    match r {
                        Ok(_) => local.push(us),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if !local.is_empty() {
                    break;
                }
            }
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&local);
            drop(fin);
        });
    }
    drop(fin_tx);
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    let counters_before = procs.counters();
    let pids = procs.pids();
    let cost_before = LoadCost::now(&pids);
    let started = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(args.duration));
    measuring.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let cost = LoadCost::now(&pids).since(cost_before);
    let counted = procs.counters().since(counters_before);
    stop.store(true, Ordering::Relaxed);
    let _ = fin_rx.recv_timeout(Duration::from_secs(15));
    let mut sorted = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    sorted.sort_unstable();
    (
        sorted.len() as u64,
        errors.load(Ordering::Relaxed),
        secs,
        sorted,
        counted.syncs as f64 / secs,
        cost,
        counted,
    )
}

fn run_in(args: &MultiArgs, root: &Path) -> Result<Outcome, String> {
    let progress = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let spawned = Instant::now();
    let mut procs = Procs::start(args, root)?;
    let startup_s = spawned.elapsed().as_secs_f64();
    progress(format!(
        "every process started its nodes after {startup_s:.2} s"
    ));
    let leaders_s = procs.wait_for_leaders(args.groups, spawned, Duration::from_secs(120))?;
    progress(format!("every group has a leader after {leaders_s:.2} s"));

    // Idle: let the first heartbeats and the connection set-up settle.
    std::thread::sleep(Duration::from_secs(2));
    let pids = procs.pids();
    let cpu_before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let beats_before = procs.beats();
    let idle_started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.idle_secs));
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let beats_after = procs.beats();
    let beats_per_s = beats_after.0.saturating_sub(beats_before.0) as f64 / idle_secs;
    let beat_frames_per_s = beats_after.1.saturating_sub(beats_before.1) as f64 / idle_secs;
    let idle_cpu_pct: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .map(|(&p, before)| (cpu_seconds(p) - before) / idle_secs * 100.0)
        .collect();
    let threads: Vec<u64> = pids.iter().map(|&p| threads_of(p)).collect();
    let rss_idle: Vec<u64> = pids.iter().map(|&p| rss_of(p)).collect();
    progress(format!(
        "idle: {beats_per_s:.0} heartbeats/s in {beat_frames_per_s:.0} frames/s ({:.1} a frame)",
        beats_per_s / beat_frames_per_s.max(1e-9)
    ));
    progress(format!(
        "idle: CPU % [{}], threads [{}]",
        list(
            &idle_cpu_pct
                .iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
        ),
        list(&threads)
    ));

    let (ops, errors, secs, sorted, fsyncs_per_s, cost, turns) = load(args, &procs);
    let rss_peak: Vec<u64> = pids.iter().map(|&p| peak_rss(p)).collect();
    progress(format!("load: {:.0} ops/s", ops as f64 / secs));

    let reelect_s = if args.no_kill {
        None
    } else {
        std::thread::sleep(Duration::from_secs_f64(args.kill_after_secs));
        // From the signal: reaping the killed process (its sockets close as
        // it exits) takes a while, which the time until new leaders includes.
        let killed_ns = rraft::stage_trace::monotonic_ns();
        let killed = Instant::now();
        drop(procs.procs[0].take());
        let s = procs.wait_for_leaders(args.groups, killed, Duration::from_secs(120))?;
        if args.timeline {
            let observed_ns = rraft::stage_trace::monotonic_ns();
            // Let the survivors finish writing their traces.
            std::thread::sleep(Duration::from_millis(200));
            let dirs: Vec<PathBuf> = (1..PROCESSES).map(|i| root.join(format!("p{i}"))).collect();
            let killed_addr =
                rraft::transport::peer_id::peer_addr(&procs.ids[0]).unwrap_or_default();
            progress(super::timeline::report(
                &dirs,
                killed_ns,
                &killed_addr,
                observed_ns,
            ));
        }
        Some(s)
    };
    Ok(Outcome {
        startup_s,
        leaders_s,
        idle_cpu_pct,
        threads,
        rss_idle,
        rss_peak,
        ops,
        errors,
        secs,
        sorted,
        fsyncs_per_s,
        cost,
        turns,
        reelect_s,
    })
}

pub fn run(args: MultiArgs) -> Result<(), String> {
    if args.groups == 0 || args.clients == 0 {
        return Err("--groups and --clients must be positive".into());
    }
    args.knobs.init_runtime();
    let out = in_temp_root(args.dir.clone(), "multi", |root| run_in(&args, root))?;
    if args.json {
        println!("{}", out.json(&args));
    } else {
        out.print(&args);
    }
    Ok(())
}
