//! Shared fixtures for the node-level integration tests: a recording state
//! machine with snapshots, and a cluster of nodes on one or more servers.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rraft::node::peer_id::PeerId;
use rraft::node::{
    Done, Iter, Node, NodeOptions, RaftServer, SnapshotReaderRef, SnapshotSaveDone,
    SnapshotWriterRef, StateMachine, Status, Task,
};

/// What a recording state machine has seen.
#[derive(Default)]
pub struct Record {
    /// Applied payloads, in order (restored from snapshots).
    pub applied: Vec<Vec<u8>>,
    pub last_index: u64,
    pub leader_terms: Vec<u64>,
    pub loads: usize,
    pub errors: Vec<String>,
    pub shutdown: bool,
}

/// A state machine that records every payload; its snapshot is the list.
pub struct Recorder(pub Arc<Mutex<Record>>);

impl StateMachine for Recorder {
    fn on_apply(&mut self, it: &mut Iter<'_>) {
        let mut r = self.0.lock().unwrap();
        while it.valid() {
            r.applied.push(it.data().to_vec());
            r.last_index = it.index();
            it.next();
        }
    }

    fn on_shutdown(&mut self) {
        self.0.lock().unwrap().shutdown = true;
    }

    fn on_snapshot_save(&mut self, writer: SnapshotWriterRef, done: SnapshotSaveDone) {
        let r = self.0.lock().unwrap();
        let mut bytes = Vec::new();
        for item in &r.applied {
            bytes.extend_from_slice(&(item.len() as u32).to_le_bytes());
            bytes.extend_from_slice(item);
        }
        drop(r);
        let result = std::fs::write(writer.path().join("data"), &bytes)
            .map_err(|e| Status::new(5, e.to_string()))
            .and_then(|()| writer.add_file("data"));
        done(result);
    }

    fn on_snapshot_load(&mut self, reader: &SnapshotReaderRef) -> Result<(), Status> {
        let bytes =
            std::fs::read(reader.path().join("data")).map_err(|e| Status::new(5, e.to_string()))?;
        let mut applied = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            applied.push(bytes[at + 4..at + 4 + len].to_vec());
            at += 4 + len;
        }
        let mut r = self.0.lock().unwrap();
        r.applied = applied;
        r.last_index = reader.index();
        r.loads += 1;
        Ok(())
    }

    fn on_leader_start(&mut self, term: u64) {
        self.0.lock().unwrap().leader_terms.push(term);
    }

    fn on_error(&mut self, status: &Status) {
        self.0.lock().unwrap().errors.push(status.to_string());
    }
}

impl Record {
    /// "count hash" of the applied payloads, in order (FNV-1a over each
    /// payload and a newline): equal digests mean equal histories.
    pub fn digest(&self) -> String {
        let mut hash: u64 = 0xcbf29ce484222325;
        for item in &self.applied {
            for b in item.iter().chain(b"\n") {
                hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
            }
        }
        format!("{} {hash:x}", self.applied.len())
    }
}

/// `count` servers on free ports of 127.0.0.1 and the peer id of the first
/// node of each ("127.0.0.1:port:0").
pub fn start_servers(count: usize) -> (Vec<Arc<RaftServer>>, Vec<String>) {
    let servers: Vec<Arc<RaftServer>> = (0..count)
        .map(|_| RaftServer::start("127.0.0.1:0").unwrap())
        .collect();
    let ids = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}:0", s.port()))
        .collect();
    (servers, ids)
}

/// Options for a test node under `dir`.
pub fn options(dir: &Path, conf: &str) -> NodeOptions {
    NodeOptions {
        election_timeout_ms: 300,
        initial_conf: rraft::node::peer_id::parse_peer_list(conf).unwrap(),
        log_uri: format!("local://{}", dir.join("log").display()),
        raft_meta_uri: format!("local://{}", dir.join("meta").display()),
        snapshot_uri: format!("local://{}", dir.join("snapshot").display()),
        snapshot_interval_s: 0,
        catchup_margin: 100,
        ..NodeOptions::default()
    }
}

pub struct Member {
    pub id: String,
    pub dir: PathBuf,
    pub node: Node,
    pub record: Arc<Mutex<Record>>,
}

/// Starts one node of `group` on `server` with its storage in `dir`.
pub fn start_member(
    server: &Arc<RaftServer>,
    group: &str,
    id: &str,
    dir: &Path,
    conf: &str,
    tweak: impl FnOnce(&mut NodeOptions),
) -> Member {
    let record = Arc::new(Mutex::new(Record::default()));
    let node = Node::new(server, group, id).expect("node");
    let mut opts = options(dir, conf);
    tweak(&mut opts);
    node.init(opts, Box::new(Recorder(record.clone())))
        .expect("init");
    Member {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        node,
        record,
    }
}

/// This test binary re-run as a child process: only the test `child` of the
/// test module `module` (pass `module_path!()`), output not captured.
pub fn child_test(module: &str) -> std::process::Command {
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        &format!("{module}::child"),
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The index of the single leader among `members`, waiting for one.
pub fn leader_of<M: Borrow<Member>>(members: &[M], limit: Duration) -> usize {
    let mut found = 0;
    wait_for(limit, "a leader", || {
        let leaders: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].borrow().node.is_leader())
            .collect();
        if leaders.len() == 1 {
            found = leaders[0];
            true
        } else {
            false
        }
    });
    found
}

/// Proposes `count` payloads `prefix-i` on `node`, `window` in flight, and
/// returns how many were acknowledged OK.
pub fn propose_many(node: &Node, prefix: &str, count: usize, window: usize) -> usize {
    let (tx, rx) = std::sync::mpsc::channel::<Status>();
    let mut in_flight = 0;
    let mut ok = 0;
    for i in 0..count {
        if in_flight >= window {
            if rx
                .recv_timeout(Duration::from_secs(20))
                .expect("done in time")
                .is_ok()
            {
                ok += 1;
            }
            in_flight -= 1;
        }
        let tx = tx.clone();
        node.apply(Task {
            data: format!("{prefix}-{i}").into_bytes().into(),
            done: Some(Done::new(move |st| {
                let _ = tx.send(st);
            })),
            expected_term: -1,
        });
        in_flight += 1;
    }
    for _ in 0..in_flight {
        if rx
            .recv_timeout(Duration::from_secs(20))
            .expect("done in time")
            .is_ok()
        {
            ok += 1;
        }
    }
    ok
}

/// Shuts a node down and waits for it.
pub fn stop(member: &Member) {
    member.node.shutdown(None);
    member.node.join().expect("join");
}

/// "127.0.0.1:port:idx" for each idx.
pub fn peer_ids(port: u16, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| {
            PeerId {
                host: "127.0.0.1".into(),
                port,
                idx: i,
                witness: false,
            }
            .to_string()
        })
        .collect()
}

/// A server on a free port and three voters of one group in one
/// configuration.
pub struct Group {
    pub server: Arc<RaftServer>,
    pub ids: Vec<String>,
    pub conf: String,
    pub members: Vec<Member>,
}

/// Starts [`Group`]: voter `i` of `group` stores under `dir/n<i>`, with
/// `tweak(i, options)` applied to its options.
pub fn start_group(
    group: &str,
    dir: &Path,
    mut tweak: impl FnMut(usize, &mut NodeOptions),
) -> Group {
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let ids = peer_ids(server.port(), 3);
    let conf = ids.join(",");
    let members = (0..3)
        .map(|i| {
            let dir = dir.join(format!("n{i}"));
            start_member(&server, group, &ids[i], &dir, &conf, |o| tweak(i, o))
        })
        .collect();
    Group {
        server,
        ids,
        conf,
        members,
    }
}

/// Three voters of one group, each on its own server (its own port, as
/// braft's tools expect one node per address).
pub struct Cluster {
    servers: Vec<Arc<RaftServer>>,
    pub members: Vec<Member>,
    pub conf: String,
    _dir: tempfile::TempDir,
}

/// Starts a [`Cluster`] of `group` in a fresh temporary directory.
pub fn three_servers(group: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let (servers, ids) = start_servers(3);
    let conf = ids.join(",");
    let members = servers
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (server, id))| {
            start_member(
                server,
                group,
                id,
                &dir.path().join(format!("n{i}")),
                &conf,
                |_| {},
            )
        })
        .collect();
    Cluster {
        servers,
        members,
        conf,
        _dir: dir,
    }
}

impl Cluster {
    /// The servers, one per member.
    pub fn servers(&self) -> &[Arc<RaftServer>] {
        &self.servers
    }

    /// The index of the single leader, waiting up to 10 s for one.
    pub fn leader(&self) -> usize {
        leader_of(&self.members, Duration::from_secs(10))
    }

    /// Commits `count` entries `prefix-i` through the leader and waits
    /// until every node applied the last.
    pub fn commit_everywhere(&self, prefix: &str, count: usize) {
        let l = self.leader();
        assert_eq!(propose_many(&self.members[l].node, prefix, count, 4), count);
        let last = format!("{prefix}-{}", count - 1).into_bytes();
        wait_for(Duration::from_secs(10), "every node to apply", || {
            self.members
                .iter()
                .all(|m| m.record.lock().unwrap().applied.last() == Some(&last))
        });
    }

    /// Commits a few entries, then stops every node but one follower for
    /// good, so the survivor cannot elect itself; returns the survivor.
    pub fn lose_quorum(&self) -> &Member {
        let l = self.leader();
        assert_eq!(propose_many(&self.members[l].node, "r", 5, 5), 5);
        let s = (l + 1) % 3;
        for (i, m) in self.members.iter().enumerate() {
            if i != s {
                stop(m);
            }
        }
        let survivor = &self.members[s];
        std::thread::sleep(Duration::from_millis(700));
        assert!(!survivor.node.is_leader());
        survivor
    }
}
