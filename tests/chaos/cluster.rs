//! Five `kv_server` processes behind the fault proxy: start, SIGKILL and
//! restart, SIGSTOP/SIGCONT, status and admin calls, and the servers' logs
//! when something fails.
//!
//! Every server runs with `RRAFT_TEST_LAZY_FS=1`: its storage keeps writes
//! made since the last `fdatasync` in the process's memory, so a SIGKILL
//! loses them as a power loss of that machine would.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rraft::node::admin::{self, AdminRequest};
use rraft::transport::RpcClient;
use tokio::runtime::Handle;

use super::proxy::Proxy;

pub const GROUP: &str = "Kv";
/// Where the proxy listens (the addresses in the Raft configuration).
const PUBLIC_IP: &str = "127.0.0.1";
/// Where the servers really listen.
const PRIVATE_IP: &str = "127.0.0.2";
/// Short timeouts keep a 60 s run busy with elections and recoveries.
const ELECTION_TIMEOUT_MS: u32 = 1000;
const SNAPSHOT_INTERVAL_S: u32 = 5;
/// Small, so a node that was away for a few seconds catches up by snapshot.
const CATCHUP_MARGIN: u32 = 50;
/// The library's test-only lazy storage: a SIGKILL is a power loss.
const LAZY_FS_ENV: &str = "RRAFT_TEST_LAZY_FS";
/// What a server logs when its storage is lazy.
const LAZY_FS_WARNING: &str = "RRAFT_TEST_LAZY_FS is set";

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Peer ids `127.0.0.1:P:0`, index = node number.
    pub peers: Vec<String>,
    ports: Vec<u16>,
    procs: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Servers run with `--stale_reads` (the deliberate bug).
    stale_reads: bool,
    pub proxy: Proxy,
    pub rpc: RpcClient,
}

/// `n` ports free on both the public and the private address, below the
/// kernel's ephemeral range: a node's address is released while the node
/// is down, and an outgoing connection must not take it as its local port
/// meanwhile (a restart could not listen there again).
fn free_ports(n: usize) -> Vec<u16> {
    let (low, high) = rraft_sim::examples::probe_range();
    let span = u64::from(high - low);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let mut ports = Vec::new();
    let mut probe = seed % span;
    while ports.len() < n {
        probe = (probe + 1) % span;
        let p = low + probe as u16;
        if !ports.contains(&p)
            && TcpListener::bind((PUBLIC_IP, p)).is_ok()
            && TcpListener::bind((PRIVATE_IP, p)).is_ok()
        {
            ports.push(p);
        }
    }
    ports
}

impl Cluster {
    /// Builds the library and kv_server, then starts `n` servers
    /// (`stale_reads`: with the deliberately broken gets).
    pub fn start(n: usize, rt: Handle, stale_reads: bool) -> Cluster {
        let bin = rraft_sim::examples::build_example("kv").join("kv_server");
        let dir = tempfile::Builder::new()
            .prefix("rraft-chaos-")
            .tempdir()
            .expect("temp dir");
        let ports = free_ports(n);
        let peers: Vec<String> = ports.iter().map(|p| format!("{PUBLIC_IP}:{p}:0")).collect();
        let addr = |ip: &str, p: &u16| -> SocketAddr { format!("{ip}:{p}").parse().expect("addr") };
        let public = ports.iter().map(|p| addr(PUBLIC_IP, p)).collect();
        let private = ports.iter().map(|p| addr(PRIVATE_IP, p)).collect();
        let proxy = Proxy::new(rt.clone(), public, private);
        let rpc = RpcClient::new(rt);
        let mut cluster = Cluster {
            dir,
            bin,
            peers,
            ports,
            procs: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            stale_reads,
            proxy,
            rpc,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    /// Starts node `i`'s process (its data dir survives restarts).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "n{i} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open server log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(&self.bin)
            .arg("--ip")
            .arg(PUBLIC_IP)
            .arg("--listen_ip")
            .arg(PRIVATE_IP)
            .arg("--port")
            .arg(self.ports[i].to_string())
            .arg("--conf")
            .arg(self.peers.join(","))
            .arg("--data_path")
            .arg(self.dir.path().join(format!("n{i}")))
            .arg("--group")
            .arg(GROUP)
            .arg("--election_timeout_ms")
            .arg(ELECTION_TIMEOUT_MS.to_string())
            .arg("--snapshot_interval")
            .arg(SNAPSHOT_INTERVAL_S.to_string())
            .arg("--catchup_margin")
            .arg(CATCHUP_MARGIN.to_string())
            .arg("--stale_reads")
            .arg(self.stale_reads.to_string())
            // Explicit: a power loss only means something if the log is
            // fsynced before acknowledging.
            .arg("--sync")
            .arg("true")
            .env(LAZY_FS_ENV, "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start kv_server");
        // Owned before anything else can panic, so Drop kills it.
        let pid = child.id();
        self.procs[i] = Some(child);
        self.paused[i] = false;
        self.proxy.set_up(i, Some(pid));
    }

    /// Nodes whose process ended although nobody killed it (a crash of
    /// the server or the library), with how it ended.
    pub fn exited_by_themselves(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, proc) in self.procs.iter_mut().enumerate() {
            if let Some(child) = proc {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((i, status.to_string()));
                }
            }
        }
        out
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.paused[i]
    }

    /// Running and not paused: it can answer.
    pub fn is_live(&self, i: usize) -> bool {
        self.is_running(i) && !self.is_paused(i)
    }

    /// SIGKILL: the process dies without a chance to clean up.
    pub fn kill(&mut self, i: usize) {
        self.proxy.set_up(i, None);
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused[i] = false;
    }

    fn signal(&self, i: usize, sig: i32) {
        let child = self.procs[i].as_ref().expect("running node");
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill(n{i}, {sig}) failed");
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.paused[i] = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.paused[i] = false;
    }

    /// Node `i`'s `Kv.digest` JSON (its map digest and Raft status).
    pub fn digest(&self, i: usize) -> Option<String> {
        if !self.is_live(i) {
            return None;
        }
        let addr = rraft::transport::peer_id::peer_addr(&self.peers[i])?;
        rraft_sim::examples::ask_text(&self.rpc, &addr, "Kv.digest", GROUP, Duration::from_secs(1))
    }

    /// The live node that says it leads, in the highest term.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter_map(|i| {
                let d = self.digest(i)?;
                let leads = rraft_sim::examples::json_str(&d, "state") == Some("Leader");
                leads.then(|| (rraft_sim::examples::json_num(&d, "term").unwrap_or(0), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// The voters in node `i`'s configuration.
    pub fn voters(&self, i: usize) -> Option<Vec<usize>> {
        let d = self.digest(i)?;
        let at = d.find("\"voters\":[")? + "\"voters\":[".len();
        let list = &d[at..at + d[at..].find(']')?];
        Some(
            list.split(',')
                .map(|p| p.trim().trim_matches('"'))
                .filter_map(|p| self.peers.iter().position(|q| q == p))
                .collect(),
        )
    }

    /// Runs admin `op` (`add_peer`, `remove_peer`, `transfer_leader`) with
    /// `arg` on node `on` (the leader, for those).
    pub fn admin(&self, on: usize, op: &str, arg: &str) -> Result<String, String> {
        let req = AdminRequest {
            op: op.to_string(),
            arg: arg.to_string(),
            timeout_ms: 4000,
        };
        admin::call(
            &self.rpc,
            GROUP,
            &self.peers[on],
            &req,
            Duration::from_secs(4),
        )
        .map_err(|e| e.to_string())
    }

    /// Nodes whose log does not show the lazy storage warning (their
    /// SIGKILLs would not lose unsynced writes).
    pub fn without_lazy_fs(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| {
                !std::fs::read_to_string(self.log_path(i))
                    .unwrap_or_default()
                    .contains(LAZY_FS_WARNING)
            })
            .collect()
    }

    /// The last `lines` lines of every server's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "----- n{i} ({}) log, last {lines} lines -----\n",
                self.peers[i]
            ));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Prints the logs' tails and keeps the data dirs and full logs.
    pub fn keep_for_inspection(&mut self) {
        eprintln!("{}", self.log_tails(40));
        self.dir.disable_cleanup(true);
        eprintln!(
            "chaos: data dirs and full server logs kept in {}",
            self.dir.path().display()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            if let Some(mut child) = self.procs[i].take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            self.keep_for_inspection();
        } else if std::env::var_os("CHAOS_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            println!(
                "chaos: CHAOS_KEEP: data dirs and server logs kept in {}",
                self.dir.path().display()
            );
        }
    }
}
