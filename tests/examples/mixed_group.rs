//! A counter group whose replicas run braft's `counter_server` or rraft's
//! (`examples-c/counter`, with `-braft_compat`), swapped one at a time on
//! the same port and data directory, under load from braft's own
//! `counter_client`; the harness of the rolling-upgrade and mixed-group
//! nemesis tests.
//!
//! Both servers answer braft's HTTP page `/raft_stat` and braft's
//! `CliService` on their port, so the harness asks them the same way: who
//! leads and how far each replica applied (the page), snapshots and leader
//! transfers (`braft_cli`). A replica's value is read from the snapshot it
//! takes at the end (braft's file `data`, which both servers write), so no
//! replica needs to lead to be checked.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rraft_sim::examples::*;

use super::braft_counter::{braft_bin, http, read_braft_client_log, BraftClientLog, Snapshot};
use super::counter::GROUP;

/// Which counter_server runs a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Braft,
    /// rraft with `-braft_compat`.
    Rraft,
    /// rraft without it (once no braft replica is left).
    RraftPlain,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Braft => "braft",
            Kind::Rraft => "rraft",
            Kind::RraftPlain => "rraft-plain",
        }
    }

    /// braft for rraft, rraft (with `-braft_compat`) for braft.
    pub(super) fn other(self) -> Kind {
        match self {
            Kind::Braft => Kind::Rraft,
            Kind::Rraft | Kind::RraftPlain => Kind::Braft,
        }
    }
}

/// How a replica is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// SIGINT: both servers shut their node down and exit 0 (brpc's quit
    /// signal; rraft's counter_server also stops cleanly on SIGTERM, which
    /// ends braft's at once).
    Interrupt,
    /// SIGTERM: rraft's counter_server stops cleanly, braft's dies.
    Term,
    /// SIGKILL.
    Kill,
}

/// The programs a mixed group runs.
pub(super) struct Binaries {
    pub(super) braft_server: PathBuf,
    pub(super) braft_client: PathBuf,
    pub(super) braft_cli: PathBuf,
    pub(super) rraft_server: PathBuf,
}

impl Binaries {
    /// braft's binaries from `braft` (fails when one is missing) and
    /// rraft's counter_server, built.
    pub(super) fn find(braft: &Path) -> Binaries {
        let example = build_example("counter");
        Binaries {
            braft_server: braft_bin(braft, "counter_server"),
            braft_client: braft_bin(braft, "counter_client"),
            braft_cli: braft_bin(braft, "braft_cli"),
            rraft_server: example.join("counter_server"),
        }
    }

    /// Why rraft's counter_server cannot join a braft group, or None when
    /// it can (it has the flag `-braft_compat`).
    pub(super) fn rraft_cannot_join_braft(&self) -> Option<String> {
        let out = Command::new(&self.rraft_server)
            .arg("--help")
            .output()
            .unwrap_or_else(|e| panic!("run {} --help: {e}", self.rraft_server.display()));
        let usage = rraft_sim::native::output_text(&out);
        if !usage.contains("--braft_compat") {
            return Some(
                "rraft's counter_server has no -braft_compat flag (braft's RaftService on \
                 rraft's port, so that an rraft node can be a member of a braft group)"
                    .to_string(),
            );
        }
        self.probe_braft_raft_service()
    }

    /// Starts rraft's counter_server with -braft_compat alone and asks its
    /// port for braft's `RaftService` over baidu_std: None when it answers
    /// (even if it refuses the empty request), else why not.
    fn probe_braft_raft_service(&self) -> Option<String> {
        let tmp = tempfile::Builder::new()
            .prefix("braft_compat_probe")
            .tempdir()
            .unwrap();
        let port = free_ports(1)[0];
        let peer = format!("127.0.0.1:{port}:0,");
        let log = tmp.path().join("probe.log");
        let child = Command::new(&self.rraft_server)
            .arg(format!("-port={port}"))
            .arg(format!("-conf={peer}"))
            .arg(format!("-data_path={}", tmp.path().join("data").display()))
            .arg("-braft_compat=true")
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(File::create(tmp.path().join("probe.err")).unwrap())
            .spawn()
            .expect("start rraft's counter_server");
        let _server = KillOnDrop(child);
        let rpc = rraft::transport::RpcClient::new(rraft::node::runtime::handle());
        let answer = wait_for(
            "the probe server to answer",
            Duration::from_secs(20),
            || {
                let call = rpc.call_with_protocol(
                    &format!("127.0.0.1:{port}"),
                    rraft::transport::Protocol::BaiduStd,
                    "braft.RaftService.pre_vote",
                    GROUP,
                    bytes::Bytes::new(),
                    Duration::from_secs(2),
                );
                match rraft::node::runtime::handle().block_on(call) {
                    Err(rraft::transport::RpcError::Connect(_)) => None,
                    other => Some(other),
                }
            },
        );
        match answer {
            // brpc's ENOSERVICE and ENOMETHOD.
            Err(rraft::transport::RpcError::Remote { code, text, .. })
                if code == 1001 || code == 1002 =>
            {
                Some(format!(
                    "rraft's port does not serve braft's RaftService.pre_vote ({code}: {text})"
                ))
            }
            _ => None,
        }
    }
}

/// What a replica's `/raft_stat` page says (braft's or rraft's form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Page {
    pub(super) leader: bool,
    pub(super) term: i64,
    pub(super) first_index: i64,
    pub(super) last_index: i64,
    pub(super) committed: i64,
    pub(super) applied: i64,
    pub(super) snapshot_index: i64,
}

/// The number after `prefix` on the line that starts with it.
fn line_num(page: &str, prefix: &str) -> Option<i64> {
    page.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(prefix)?;
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

/// Reads braft's page (`state: LEADER`, `known_applied_index: N`,
/// `storage: [first, last]`, `last_committed_index: N` on a leader,
/// `last_snapshot_index: N`) or rraft's (`state: Leader`,
/// `applied_index: N`, `log: first_index=F last_index=L`,
/// `committed_index: N`, `snapshot: index=N`).
pub(super) fn parse_page(page: &str) -> Option<Page> {
    let state = page
        .lines()
        .find_map(|l| l.trim().strip_prefix("state: "))?
        .trim()
        .to_ascii_lowercase();
    let term = line_num(page, "term: ")?;
    if let Some(applied) = line_num(page, "known_applied_index: ") {
        let storage = page
            .lines()
            .find_map(|l| l.trim().strip_prefix("storage: ["))?;
        let mut bounds = storage
            .trim_end_matches(']')
            .split(',')
            .map(|v| v.trim().parse::<i64>().ok());
        let first_index = bounds.next()??;
        let last_index = bounds.next()??;
        return Some(Page {
            leader: state == "leader",
            term,
            first_index,
            last_index,
            committed: line_num(page, "last_committed_index: ").unwrap_or(applied),
            applied,
            snapshot_index: line_num(page, "last_snapshot_index: ").unwrap_or(0),
        });
    }
    let log = page.lines().find(|l| l.trim().starts_with("log: "))?;
    Some(Page {
        leader: state == "leader",
        term,
        first_index: kv_num(log, "first_index")? as i64,
        last_index: kv_num(log, "last_index")? as i64,
        committed: line_num(page, "committed_index: ")?,
        applied: line_num(page, "applied_index: ")?,
        snapshot_index: page
            .lines()
            .find(|l| l.trim().starts_with("snapshot: "))
            .and_then(|l| kv_num(l, "index"))
            .unwrap_or(0.0) as i64,
    })
}

/// One replica: its port, data directory and what runs there now.
struct Replica {
    port: u16,
    dir: PathBuf,
    kind: Kind,
    running: bool,
    paused: bool,
    starts: usize,
    /// The user the replica's processes run as (partitions match it).
    uid: Option<u32>,
}

/// A 3-replica counter group on free ports, each replica started as braft
/// or rraft and swapped on the same port and data directory.
pub(super) struct MixedGroup {
    pub(super) bins: Binaries,
    tmp: tempfile::TempDir,
    pub(super) ports: Vec<u16>,
    pub(super) conf: String,
    replicas: Vec<Replica>,
    kids: Children,
    /// Ports of every replica that was ever stopped, killed, paused or cut
    /// off: calls to them may fail for those reasons.
    pub(super) disturbed: Vec<u16>,
    t0: Instant,
}

/// Election timeout of every replica (braft's example uses 5000 ms).
const ELECTION_TIMEOUT_MS: u64 = 1000;
/// Log entries an rraft replica keeps behind its snapshot, so that one
/// snapshot is enough for a follower that was down to need it.
const RRAFT_CATCHUP_MARGIN: u64 = 5;

impl MixedGroup {
    /// Starts replica i as `kinds[i]`, each as user `uids[i]` when given,
    /// and waits for a leader.
    pub(super) fn start(
        bins: Binaries,
        prefix: &str,
        kinds: &[Kind],
        uids: Option<Vec<u32>>,
    ) -> MixedGroup {
        let mut tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        // KEEP_TMP=1 keeps the servers' and the client's logs for a
        // post-mortem.
        tmp.disable_cleanup(std::env::var_os("KEEP_TMP").is_some());
        eprintln!("working in {}", tmp.path().display());
        // Replicas running as other users reach their directories.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let ports = free_ports(kinds.len());
        let conf: String = ports.iter().map(|p| format!("127.0.0.1:{p}:0,")).collect();
        let replicas = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let dir = tmp.path().join(format!("node{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                let uid = uids.as_ref().map(|u| u[i]);
                if let Some(uid) = uid {
                    chown(&dir, uid);
                }
                Replica {
                    port,
                    dir,
                    kind: kinds[i],
                    running: false,
                    paused: false,
                    starts: 0,
                    uid,
                }
            })
            .collect();
        let mut group = MixedGroup {
            bins,
            tmp,
            ports,
            conf,
            replicas,
            kids: Children::default(),
            disturbed: Vec::new(),
            t0: Instant::now(),
        };
        for (i, &kind) in kinds.iter().enumerate() {
            group.start_replica(i, kind);
        }
        group.wait_leader("the first leader", Duration::from_secs(30));
        group
    }

    /// Seconds since the group started, for the log lines.
    pub(super) fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub(super) fn len(&self) -> usize {
        self.replicas.len()
    }

    pub(super) fn kind(&self, i: usize) -> Kind {
        self.replicas[i].kind
    }

    pub(super) fn kinds(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.kind.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// braft's peer id of replica i.
    pub(super) fn peer(&self, i: usize) -> String {
        format!("127.0.0.1:{}:0", self.replicas[i].port)
    }

    fn name(i: usize) -> String {
        format!("node{i}")
    }

    /// Starts replica i as `kind` on its port and data directory.
    pub(super) fn start_replica(&mut self, i: usize, kind: Kind) {
        let r = &mut self.replicas[i];
        assert!(!r.running, "replica {i} is already running");
        r.kind = kind;
        r.starts += 1;
        let log = self
            .tmp
            .path()
            .join(format!("node{i}.{}.{}.log", r.starts, kind.name()));
        let out = File::create(&log).unwrap();
        let bin = match kind {
            Kind::Braft => &self.bins.braft_server,
            Kind::Rraft | Kind::RraftPlain => &self.bins.rraft_server,
        };
        let mut cmd = Command::new(bin);
        cmd.arg("-ip=127.0.0.1")
            .arg(format!("-port={}", r.port))
            .arg(format!("-conf={}", self.conf))
            .arg(format!("-group={GROUP}"))
            .arg(format!("-data_path={}", r.dir.join("data").display()))
            .arg(format!("-election_timeout_ms={ELECTION_TIMEOUT_MS}"))
            // Snapshots only when the test asks for one.
            .arg("-snapshot_interval=0");
        if kind == Kind::Rraft {
            cmd.arg("-braft_compat=true");
        }
        if kind != Kind::Braft {
            cmd.arg(format!("-catchup_margin={RRAFT_CATCHUP_MARGIN}"));
        }
        if let Some(uid) = r.uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .current_dir(&r.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        r.running = true;
        r.paused = false;
        self.kids.add(&Self::name(i), child);
        eprintln!(
            "[{:6.1}s] started node{i} ({}) on {}",
            self.elapsed(),
            kind.name(),
            self.replicas[i].port
        );
    }

    /// Stops replica i: SIGINT and a clean exit within 20 s, SIGTERM, or
    /// SIGKILL; panics when a SIGINT or SIGTERM does not stop it cleanly.
    pub(super) fn stop_replica(&mut self, i: usize, how: Stop) {
        self.try_stop_replica(i, how)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`MixedGroup::stop_replica`], answering why a SIGINT or SIGTERM did
    /// not stop the replica cleanly (it is then SIGKILLed: stopped either
    /// way).
    pub(super) fn try_stop_replica(&mut self, i: usize, how: Stop) -> Result<(), String> {
        let mut child = self
            .kids
            .take(&Self::name(i))
            .unwrap_or_else(|| panic!("replica {i} is not running"));
        let port = self.replicas[i].port;
        self.disturbed.push(port);
        if self.replicas[i].paused {
            signal(&child, libc::SIGCONT);
        }
        let kind = self.replicas[i].kind;
        let mut outcome = Ok(());
        match how {
            Stop::Interrupt | Stop::Term => {
                let sig = if how == Stop::Term {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                signal(&child, sig);
                match wait_exit(&mut child, Duration::from_secs(20)) {
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        outcome = Err(format!(
                            "node{i} ({}) did not exit within 20 s of {how:?}:\n{}",
                            kind.name(),
                            self.log_tail(i, 40)
                        ));
                    }
                    Some(st) => {
                        let clean = st.success()
                            || (how == Stop::Term
                                && kind == Kind::Braft
                                && std::os::unix::process::ExitStatusExt::signal(&st)
                                    == Some(libc::SIGTERM));
                        if !clean {
                            outcome = Err(format!(
                                "node{i} ({}) exited with {st}:\n{}",
                                kind.name(),
                                self.log_tail(i, 30)
                            ));
                        }
                    }
                }
            }
            Stop::Kill => {
                child.kill().unwrap();
                child.wait().unwrap();
            }
        }
        self.replicas[i].running = false;
        self.replicas[i].paused = false;
        eprintln!(
            "[{:6.1}s] stopped node{i} ({}) with {how:?}",
            self.elapsed(),
            kind.name()
        );
        outcome
    }

    /// SIGSTOP (`pause`) or SIGCONT a running replica.
    pub(super) fn set_paused(&mut self, i: usize, pause: bool) {
        let port = self.replicas[i].port;
        self.disturbed.push(port);
        let child = self.kids.get_mut(&Self::name(i)).expect("running replica");
        signal(child, if pause { libc::SIGSTOP } else { libc::SIGCONT });
        self.replicas[i].paused = pause;
    }

    /// Panics (with its output) if a replica exited by itself.
    pub(super) fn assert_none_exited(&mut self) {
        for i in 0..self.replicas.len() {
            if !self.replicas[i].running {
                continue;
            }
            let exited = self
                .kids
                .get_mut(&Self::name(i))
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(st) = exited {
                panic!(
                    "node{i} ({}) exited by itself with {st}:\n{}",
                    self.replicas[i].kind.name(),
                    self.log_tail(i, 40)
                );
            }
        }
    }

    /// The last `lines` lines of replica i's current output.
    pub(super) fn log_tail(&self, i: usize, lines: usize) -> String {
        let r = &self.replicas[i];
        let log = self
            .tmp
            .path()
            .join(format!("node{i}.{}.{}.log", r.starts, r.kind.name()));
        let text = read_text(&log);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Replica i's status page, if it answers.
    pub(super) fn page(&self, i: usize) -> Option<Page> {
        let r = &self.replicas[i];
        if !r.running || r.paused {
            return None;
        }
        parse_page(&http(r.port, "GET /raft_stat", "")?)
    }

    /// The replica that leads (of those that answer, the one of the highest
    /// term claiming it).
    pub(super) fn leader(&self) -> Option<usize> {
        (0..self.replicas.len())
            .filter_map(|i| self.page(i).filter(|p| p.leader).map(|p| (p.term, i)))
            .max()
            .map(|(_, i)| i)
    }

    /// Waits for a leader; panics with every replica's output tail.
    pub(super) fn wait_leader(&mut self, what: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_none_exited();
            if let Some(l) = self.leader() {
                return l;
            }
            if Instant::now() > deadline {
                panic!(
                    "no leader within {timeout:?} ({what}); kinds {}:\n{}",
                    self.kinds(),
                    self.tails(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every replica's output tail.
    pub(super) fn tails(&self, lines: usize) -> String {
        (0..self.replicas.len())
            .map(|i| {
                format!(
                    "--- node{i} ({}):\n{}",
                    self.replicas[i].kind.name(),
                    self.log_tail(i, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until replica i applied everything the leader had committed
    /// when the wait began; returns its page.
    pub(super) fn wait_caught_up(&mut self, i: usize, timeout: Duration) -> Page {
        let leader = self.wait_leader("a leader to catch up from", timeout);
        let target = wait_for("the leader's page", timeout, || self.page(leader)).committed;
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_none_exited();
            if let Some(p) = self.page(i).filter(|p| p.applied >= target) {
                return p;
            }
            if Instant::now() > deadline {
                panic!(
                    "node{i} ({}) did not apply up to {target} within {timeout:?}: {:?}\n{}",
                    self.replicas[i].kind.name(),
                    self.page(i),
                    self.tails(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `braft_cli` with `args`; its output, or the failure.
    pub(super) fn braft_cli(&self, args: &[String]) -> Result<String, String> {
        run_tool(
            Command::new(&self.bins.braft_cli)
                .args(args)
                .arg(format!("--group={GROUP}"))
                .arg("--timeout_ms=5000")
                .stdin(Stdio::null()),
        )
    }

    /// Asks the leader (found by braft_cli through get_leader) to hand its
    /// leadership to replica `to`; true once `to` leads.
    pub(super) fn transfer_leader(&mut self, to: usize, timeout: Duration) -> Result<(), String> {
        let args = [
            "transfer_leader".to_string(),
            format!("--conf={}", self.conf),
            format!("--peer={}", self.peer(to)),
        ];
        let deadline = Instant::now() + timeout;
        loop {
            if self.leader() == Some(to) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node{to} does not lead {timeout:?} after transfer_leader; leader {:?}",
                    self.leader()
                ));
            }
            // A transfer that is refused (the target is behind, a transfer
            // is already running) is asked again.
            let _ = self.braft_cli(&args);
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(3) && self.leader() != Some(to) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Makes replica i take a snapshot (braft_cli snapshot); returns its
    /// page once the snapshot covers what it had applied when asked.
    pub(super) fn snapshot(&mut self, i: usize) -> Page {
        let applied = wait_for("a page", Duration::from_secs(10), || self.page(i)).applied;
        let args = ["snapshot".to_string(), format!("--peer={}", self.peer(i))];
        self.braft_cli(&args)
            .unwrap_or_else(|e| panic!("braft_cli snapshot on node{i}: {e}"));
        wait_for("the snapshot to be saved", Duration::from_secs(20), || {
            self.page(i).filter(|p| p.snapshot_index >= applied)
        })
    }

    /// Replica i's newest snapshot on disk: (index, counter value), read
    /// from braft's file `data` (a ProtoBufFile of `Snapshot{value}`).
    pub(super) fn snapshot_on_disk(&self, i: usize) -> Option<(i64, i64)> {
        let dir = self.replicas[i].dir.join("data").join("snapshot");
        let (index, path) = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().to_string_lossy().into_owned();
                let index = name.strip_prefix("snapshot_")?.parse::<i64>().ok()?;
                Some((index, e.path()))
            })
            .max()?;
        let bytes = std::fs::read(path.join("data")).ok()?;
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let snap = Snapshot::decode(bytes.get(4..4 + len)?).ok()?;
        Some((index, snap.value))
    }

    /// Starts braft's counter_client against the group: `threads` senders,
    /// one add in flight each, every acknowledgement logged.
    pub(super) fn start_client(&mut self, threads: usize) -> LoadClient {
        let log = self.tmp.path().join("client.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(&self.bins.braft_client)
            .arg(format!("--conf={}", self.conf))
            .arg(format!("--group={GROUP}"))
            .arg(format!("--thread_num={threads}"))
            // One line per acknowledged call, with the value before the add
            // (each sender then pauses a second).
            .args(["--log_each_request=true", "--timeout_ms=1000"])
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start braft's counter_client");
        LoadClient {
            child: Some(KillOnDrop(child)),
            log,
            threads,
        }
    }

    /// After the load stopped: every replica applies the same last index;
    /// one more snapshot on each gives its value at that index. Returns the
    /// value (the same on every replica, or the test fails).
    pub(super) fn final_value(&mut self) -> i64 {
        let leader = self.wait_leader("the final leader", Duration::from_secs(30));
        let mut last = 0;
        wait_for(
            "every replica to apply the leader's log",
            Duration::from_secs(30),
            || {
                self.assert_none_exited();
                let pages: Vec<Page> = (0..self.len())
                    .map(|i| self.page(i))
                    .collect::<Option<_>>()?;
                last = pages[leader].last_index;
                pages
                    .iter()
                    .all(|p| p.applied == last && p.last_index == last)
                    .then_some(())
            },
        );
        let mut values = Vec::new();
        for i in 0..self.len() {
            let page = self.snapshot(i);
            let (index, value) = wait_for(
                "the final snapshot on disk",
                Duration::from_secs(10),
                || {
                    self.snapshot_on_disk(i)
                        .filter(|&(ix, _)| ix >= page.applied)
                },
            );
            eprintln!(
                "node{i} ({}): snapshot at {index}, value {value}",
                self.kind(i).name()
            );
            assert_eq!(index, last, "node{i}'s final snapshot is not at {last}");
            values.push(value);
        }
        assert!(
            values.iter().all(|&v| v == values[0]),
            "the replicas hold different values at index {last}: {values:?}"
        );
        values[0]
    }

    /// Stops every running replica with SIGINT (followers first).
    /// Returns why replicas did not stop cleanly (empty when all did).
    pub(super) fn stop_all(&mut self) -> Vec<String> {
        let leader = self.leader();
        let order: Vec<usize> = (0..self.len())
            .filter(|&i| Some(i) != leader)
            .chain(leader)
            .collect();
        let mut unclean = Vec::new();
        for i in order {
            if self.replicas[i].running {
                if let Err(e) = self.try_stop_replica(i, Stop::Interrupt) {
                    unclean.push(e);
                }
            }
        }
        unclean
    }
}

/// braft's counter_client under way.
pub(super) struct LoadClient {
    child: Option<KillOnDrop>,
    log: PathBuf,
    threads: usize,
}

/// What the load's acknowledgements allow the final value to be.
#[derive(Debug)]
pub(super) struct Acks {
    pub(super) log: BraftClientLog,
    /// Adds whose outcome is unknown: failed calls, redirects (braft's
    /// counter answers a failed apply with a redirect, and that entry may
    /// still commit) and the calls in flight when the client stopped.
    pub(super) unknown: usize,
}

impl LoadClient {
    /// Acknowledged adds so far.
    pub(super) fn acked(&self) -> usize {
        read_text(&self.log)
            .matches("Received response from ")
            .count()
    }

    /// Waits until `more` adds beyond `since` are acknowledged.
    pub(super) fn wait_acks(&self, group: &mut MixedGroup, since: usize, more: usize, what: &str) {
        let timeout = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        while self.acked() < since + more {
            group.assert_none_exited();
            assert!(
                Instant::now() < deadline,
                "{what}: fewer than {more} adds acknowledged in {timeout:?} (leader {:?}, kinds {});\n\
                 client:\n{}\n{}",
                group.leader(),
                group.kinds(),
                tail(&read_text(&self.log), 20),
                group.tails(20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the client with SIGINT (each sender finishes and logs its call
    /// in flight) and reads its log; `dead` are the ports that were
    /// stopped or disturbed during the run.
    pub(super) fn finish(mut self, dead: &[u16]) -> Acks {
        let mut child = self.child.take().unwrap();
        signal(&child.0, libc::SIGINT);
        let in_flight = match wait_exit(&mut child.0, Duration::from_secs(15)) {
            Some(st) => {
                assert!(st.success(), "braft's counter_client exited with {st}");
                0
            }
            None => self.threads,
        };
        drop(child);
        let log = read_braft_client_log(&read_text(&self.log), dead);
        let unknown = log.failed + log.redirected + in_flight;
        Acks { log, unknown }
    }
}

impl Acks {
    /// No acknowledged add is lost, none is applied twice, and no call
    /// failed for a protocol reason.
    pub(super) fn check(&self, value: i64) {
        let acked = self.log.acked.len() as i64;
        eprintln!(
            "acked {acked}, failed {}, redirected {}, unknown {}; final value {value}",
            self.log.failed, self.log.redirected, self.unknown
        );
        assert!(
            self.log.protocol_errors.is_empty(),
            "calls failed for a protocol reason:\n{}",
            self.log.protocol_errors.join("\n")
        );
        let mut befores = self.log.acked.clone();
        befores.sort_unstable();
        befores.dedup();
        assert_eq!(
            befores.len(),
            self.log.acked.len(),
            "two acknowledged adds saw the same value"
        );
        assert!(
            self.log.acked.iter().all(|&b| (0..value).contains(&b)),
            "an acknowledged add saw a value outside [0, {value})"
        );
        assert!(
            value >= acked,
            "lost acknowledged adds: value {value} < acked {acked}"
        );
        assert!(
            value <= acked + self.unknown as i64,
            "adds applied twice: value {value} > acked {acked} + unknown {}",
            self.unknown
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn chown(path: &Path, uid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: chown(2) on a NUL-terminated path that lives for the call.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, uid) };
    assert_eq!(
        rc,
        0,
        "chown {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

#[test]
fn status_pages_of_braft_and_rraft_are_read() {
    let braft = "\
peer_id: 127.0.0.1:8100:0
state: LEADER
readonly: 0
term: 3
conf_index: 1502
peers: 127.0.0.1:8101:0 127.0.0.1:8102:0
changing_conf: NO    stage: STAGE_NONE
election_timer: timeout(1000ms) STOPPED
last_committed_index: 1510
pending_index: 1511
pending_queue_size: 0
storage: [1002, 1510]
disk_index: 1510
known_applied_index: 1509
last_log_id: (index=1510,term=3)
state_machine: Idle
last_snapshot_index: 1001
last_snapshot_term: 2
snapshot_status: IDLE
";
    assert_eq!(
        parse_page(braft),
        Some(Page {
            leader: true,
            term: 3,
            first_index: 1002,
            last_index: 1510,
            committed: 1510,
            applied: 1509,
            snapshot_index: 1001,
        })
    );
    let rraft = "\
[Counter] 127.0.0.1:8101:0
state: Follower
term: 3
leader: 127.0.0.1:8100:0
voters: 127.0.0.1:8100:0,127.0.0.1:8101:0,127.0.0.1:8102:0
log: first_index=1002 last_index=1510 persisted_index=1510
committed_index: 1510
applied_index: 1510 (apply lag 0)
snapshot: index=1001 term=2
";
    assert_eq!(
        parse_page(rraft),
        Some(Page {
            leader: false,
            term: 3,
            first_index: 1002,
            last_index: 1510,
            committed: 1510,
            applied: 1510,
            snapshot_index: 1001,
        })
    );
    assert_eq!(parse_page("no nodes on this server\n"), None);
}
