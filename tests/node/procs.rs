//! Three nodes in three processes on three ports: elect, apply 10,000
//! entries, SIGKILL the leader, elect again and keep applying, restart the
//! killed process on its data, and check it catches up; once with each
//! node's log in braft's layout (`local://`), once on the process's shared
//! log (`shared://`).
//!
//! The test binary re-runs itself as the child processes (`RRAFT_CHILD`).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::*;
use bytes::Bytes;
use rraft::node::RaftServer;
use rraft::transport::{GroupClient, Handler, Request, Responder};
use rraft_sim::examples::{free_ports, KillOnDrop};

const GROUP: &str = "procs";

/// Child process body: one node plus two test methods on its port.
fn run_child(spec: &str) {
    let mut parts = spec.split('|');
    let (id, conf, dir, log) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let port: u16 = id.split(':').nth(1).unwrap().parse().unwrap();
    let server = RaftServer::start(&format!("127.0.0.1:{port}")).unwrap();
    let member = Arc::new(start_member(
        &server,
        GROUP,
        id,
        std::path::Path::new(dir),
        conf,
        |o| {
            if log == "shared" {
                o.log_uri = format!("shared://{dir}/wal");
            }
        },
    ));

    // test.propose: payload "prefix count"; the leader proposes count
    // entries and answers with how many succeeded.
    let m = member.clone();
    let propose: Handler = Arc::new(move |req: Request, responder: Responder| {
        if !m.node.is_leader() {
            let hint = m.node.leader_id().unwrap_or_default();
            return responder.reply_error(1, "not leader", &hint);
        }
        let text = String::from_utf8_lossy(&req.payload).to_string();
        let (prefix, count) = text.split_once(' ').unwrap();
        let count: usize = count.parse().unwrap();
        let node = m.node.clone();
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            let ok = propose_many(&node, &prefix, count, 256);
            responder.reply(Bytes::from(ok.to_string()));
        });
    });
    server.add_method("test.propose", propose).unwrap();
    // test.digest: "count hash" of the applied sequence.
    let m = member.clone();
    let digest: Handler = Arc::new(move |_req: Request, responder: Responder| {
        let digest = m.record.lock().unwrap().digest();
        responder.reply(Bytes::from(digest));
    });
    server.add_method("test.digest", digest).unwrap();
    println!("child {id} ready");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn child() {
    if let Ok(spec) = std::env::var("RRAFT_CHILD") {
        run_child(&spec);
    }
}

fn spawn_child(id: &str, conf: &str, dir: &std::path::Path, log: &str) -> KillOnDrop {
    let child = child_test(module_path!())
        .env(
            "RRAFT_CHILD",
            format!("{id}|{conf}|{}|{log}", dir.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

fn call(
    client: &GroupClient,
    method: &str,
    payload: &str,
    timeout: Duration,
) -> Result<String, String> {
    client
        .call_blocking(method, Bytes::from(payload.to_string()), timeout)
        .map(|r| String::from_utf8_lossy(&r.payload).to_string())
        .map_err(|e| e.to_string())
}

/// Asks one peer directly for its digest.
fn digest(peer: &str) -> Option<String> {
    let addr = rraft::transport::peer_id::peer_addr(peer).unwrap();
    let rpc = rraft::transport::RpcClient::new(rraft::node::runtime::handle());
    rpc.call_blocking(
        &addr,
        "test.digest",
        GROUP,
        Bytes::new(),
        Duration::from_secs(2),
    )
    .ok()
    .map(|r| String::from_utf8_lossy(&r.payload).to_string())
}

/// Proposes until `count` entries with `prefix` were acknowledged, retrying
/// through leader changes.
fn propose(client: &GroupClient, prefix: &str, count: usize) {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "could not propose {prefix}"
        );
        match call(
            client,
            "test.propose",
            &format!("{prefix} {count}"),
            Duration::from_secs(30),
        ) {
            Ok(ok) if ok == count.to_string() => return,
            other => {
                eprintln!("propose {prefix}: {other:?}, retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

#[test]
fn three_processes_replicate_survive_sigkill_and_catch_up() {
    if std::env::var("RRAFT_CHILD").is_ok() {
        return;
    }
    replicate_kill_and_catch_up("local");
}

#[test]
fn three_processes_on_shared_logs_survive_sigkill_and_catch_up() {
    if std::env::var("RRAFT_CHILD").is_ok() {
        return;
    }
    replicate_kill_and_catch_up("shared");
}

/// The test body, with each node's log in `log` ("local" or "shared").
fn replicate_kill_and_catch_up(log: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let ids: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}:0")).collect();
    let conf = ids.join(",");
    let dirs: Vec<_> = (0..3).map(|i| dir.path().join(format!("p{i}"))).collect();
    let mut procs: Vec<Option<KillOnDrop>> = (0..3)
        .map(|i| Some(spawn_child(&ids[i], &conf, &dirs[i], log)))
        .collect();
    let client = GroupClient::new(rraft::node::runtime::handle(), GROUP, ids.clone());

    propose(&client, "a", 10_000);
    let same = |expect: usize| {
        let digests: Vec<Option<String>> = ids.iter().map(|p| digest(p)).collect();
        digests.iter().all(|d| {
            d.as_ref()
                .is_some_and(|d| d.starts_with(&format!("{expect} ")))
        }) && digests.windows(2).all(|w| w[0] == w[1])
    };
    wait_for(
        Duration::from_secs(20),
        "three identical digests of 10,000 entries",
        || same(10_000),
    );

    // SIGKILL the leader; the other two elect a new one and go on.
    client
        .refresh_leader_blocking(Duration::from_secs(5))
        .unwrap();
    let leader = client.leader().unwrap();
    let victim = ids.iter().position(|p| *p == leader).unwrap();
    drop(procs[victim].take());
    let killed_at = Instant::now();
    propose(&client, "b", 1_000);
    eprintln!("writes resumed {:?} after the SIGKILL", killed_at.elapsed());

    // Restart it on its data: it catches up with the others.
    procs[victim] = Some(spawn_child(&ids[victim], &conf, &dirs[victim], log));
    wait_for(
        Duration::from_secs(30),
        "the restarted node to catch up",
        || same(11_000),
    );
    if log == "shared" {
        let files = std::fs::read_dir(dirs[victim].join("wal"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("shared_"))
            .count();
        assert!(files > 0, "the node's log is the shared one");
    }
    eprintln!(
        "digests: {:?}",
        ids.iter().map(|p| digest(p)).collect::<Vec<_>>()
    );
}
