//! braft's `CliService` on rraft servers: braft's own `braft_cli` binary
//! (from `$RRAFT_BRAFT_DIR/bin`) drives a group of rraft nodes: add_peer,
//! remove_peer, change_peers, transfer_leader, snapshot and reset_peer each
//! succeeds and shows in `rraft-cli status` or the nodes' status; braft's error codes for a
//! follower (EPERM naming the leader) and an unknown group (ENOENT), asked
//! with the library's own baidu_std client; braft's `counter_client`
//! finds an rraft leader through its route table and calls a user method
//! registered without its package.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use rraft::transport::cli_service::{self, GetLeaderRequest, GetLeaderResponse, PeerRequest};
use rraft::transport::{Protocol, RpcClient, RpcError};

use super::common::{propose_many, start_member, stop, three_servers, wait_for, Cluster};

const GROUP: &str = "braft_cli";
const T: Duration = Duration::from_secs(10);

/// `$RRAFT_BRAFT_DIR/bin/<name>`, or None (with a message) when the
/// variable is unset; a set variable without the binary fails the test.
fn braft_bin(name: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("RRAFT_BRAFT_DIR") else {
        println!("RRAFT_BRAFT_DIR is not set: skipping the test of braft's {name}");
        return None;
    };
    let bin = PathBuf::from(dir).join("bin").join(name);
    assert!(
        bin.is_file(),
        "RRAFT_BRAFT_DIR is set but {bin:?} is missing"
    );
    Some(bin)
}

/// Runs `braft_cli op --group=GROUP args...` and asserts it succeeds. A
/// refusal while the leader's own configuration entry commits (EBUSY,
/// right after an election) is tried again.
fn braft_cli(bin: &PathBuf, op: &str, args: &[String]) {
    for attempt in 0.. {
        let out = Command::new(bin)
            .arg(op)
            .arg(format!("--group={GROUP}"))
            .args(args)
            .arg("--timeout_ms=20000")
            .output()
            .expect("run braft_cli");
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("$ braft_cli {op} {args:?}\n[{}]\n{stderr}", out.status);
        if out.status.success() {
            return;
        }
        assert!(
            stderr.contains("membership change is in progress") && attempt < 20,
            "braft_cli {op} {args:?} failed: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The voters `rraft-cli status` shows for the group's leader, sorted
/// (empty while the tool cannot tell).
fn voters(c: &Cluster) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_rraft-cli"))
        .args(["status", "--group", GROUP, "--conf", &c.conf])
        .output()
        .expect("run rraft-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("voters:"))
        .map(|l| l.trim().split(',').map(str::to_string).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn sorted(peers: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    v.sort();
    v
}

#[test]
fn braft_cli_drives_an_rraft_group() {
    let Some(bin) = braft_bin("braft_cli") else {
        return;
    };
    let c = three_servers(GROUP);
    let l = c.leader();
    assert_eq!(propose_many(&c.members[l].node, "x", 20, 8), 20);
    let ids: Vec<&str> = c.members.iter().map(|m| m.id.as_str()).collect();
    let conf = format!("--conf={}", c.conf);

    // transfer_leader to a follower.
    let f = (l + 1) % 3;
    braft_cli(
        &bin,
        "transfer_leader",
        &[conf.clone(), format!("--peer={}", ids[f])],
    );
    wait_for(T, "the transfer", || c.members[f].node.is_leader());

    // snapshot on another node, once it applied the 20 entries.
    let s = (f + 1) % 3;
    wait_for(T, "node to apply 20", || {
        c.members[s].record.lock().unwrap().applied.len() >= 20
    });
    braft_cli(&bin, "snapshot", &[format!("--peer={}", ids[s])]);
    let snap = c.members[s].node.status().unwrap().snapshot_index;
    assert!(snap >= 20, "snapshot index {snap}");

    // remove_peer, then add_peer back.
    braft_cli(
        &bin,
        "remove_peer",
        &[conf.clone(), format!("--peer={}", ids[s])],
    );
    wait_for(T, "two voters", || voters(&c).len() == 2);
    assert!(!voters(&c).contains(&ids[s].to_string()));
    braft_cli(
        &bin,
        "add_peer",
        &[conf.clone(), format!("--peer={}", ids[s])],
    );
    wait_for(T, "three voters", || voters(&c) == sorted(&ids));

    // change_peers to two voters, then back to three.
    let two = format!("{},{}", ids[f], ids[(f + 2) % 3]);
    braft_cli(
        &bin,
        "change_peers",
        &[conf.clone(), format!("--new_peers={two}")],
    );
    wait_for(T, "the two new voters", || {
        voters(&c) == sorted(&[ids[f], ids[(f + 2) % 3]])
    });
    braft_cli(
        &bin,
        "change_peers",
        &[conf.clone(), format!("--new_peers={}", c.conf)],
    );
    wait_for(T, "three voters again", || voters(&c) == sorted(&ids));

    // The group still commits, and every node applies.
    c.commit_everywhere("y", 10);
    for m in &c.members {
        stop(m);
    }
}

#[test]
fn braft_cli_reset_peer_recovers_a_group_that_lost_its_quorum() {
    let Some(bin) = braft_bin("braft_cli") else {
        return;
    };
    let c = three_servers(GROUP);
    let survivor = c.lose_quorum();
    braft_cli(
        &bin,
        "reset_peer",
        &[
            format!("--peer={}", survivor.id),
            format!("--new_peers={}", survivor.id),
        ],
    );
    wait_for(T, "the survivor to lead alone", || {
        survivor.node.is_leader()
    });
    assert_eq!(
        survivor.node.status().unwrap().configuration.voters,
        vec![survivor.id.clone()]
    );
    assert_eq!(propose_many(&survivor.node, "after-reset", 3, 3), 3);
    stop(survivor);
}

/// What braft answers, asked over baidu_std with the library's client:
/// get_leader, EPERM from a follower naming the leader, ENOENT for an
/// unknown group or node, EINVAL for a malformed peer id, EACCES from a
/// node with `disable_cli`.
#[test]
fn cli_service_answers_like_braft() {
    let c = three_servers(GROUP);
    let l = c.leader();
    let f = (l + 1) % 3;
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    let addr = |i: usize| c.members[i].id.rsplit_once(':').unwrap().0.to_string();
    let call = |i: usize, method: &str, body: Vec<u8>| {
        rpc.call_with_protocol(
            &addr(i),
            Protocol::BaiduStd,
            &cli_service::method_name(method),
            "",
            Bytes::from(body),
            T,
        )
    };
    let blocking = |i: usize, method: &str, body: Vec<u8>| {
        rraft::node::runtime::handle().block_on(call(i, method, body))
    };
    let leader_id = c.members[l].id.clone();

    // get_leader from a follower, with and without its peer id.
    for peer_id in [None, Some(c.members[f].id.clone())] {
        let req = GetLeaderRequest {
            group_id: GROUP.into(),
            peer_id,
        };
        let resp = blocking(f, "get_leader", req.encode_to_vec()).unwrap();
        let got = GetLeaderResponse::decode(resp.payload).unwrap();
        assert_eq!(got.leader_id, leader_id);
    }
    // Unknown group: ENOENT.
    let req = GetLeaderRequest {
        group_id: "nosuch".into(),
        peer_id: None,
    };
    match blocking(f, "get_leader", req.encode_to_vec()) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, libc::ENOENT),
        other => panic!("{other:?}"),
    }

    // add_peer sent to a follower: EPERM, the leader in the text.
    let req = PeerRequest {
        group_id: GROUP.into(),
        leader_id: c.members[f].id.clone(),
        peer_id: "127.0.0.1:1:0".into(),
    };
    match blocking(f, "add_peer", req.encode_to_vec()) {
        Err(RpcError::Remote { code, text, .. }) => {
            assert_eq!(code, libc::EPERM);
            assert!(text.contains(&leader_id), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // A node the server does not host: ENOENT.
    let req = PeerRequest {
        group_id: GROUP.into(),
        leader_id: "127.0.0.1:1:0".into(),
        peer_id: "127.0.0.1:1:0".into(),
    };
    match blocking(f, "add_peer", req.encode_to_vec()) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, libc::ENOENT),
        other => panic!("{other:?}"),
    }
    // A malformed peer id: EINVAL.
    let req = PeerRequest {
        group_id: GROUP.into(),
        leader_id: leader_id.clone(),
        peer_id: "not a peer".into(),
    };
    match blocking(l, "add_peer", req.encode_to_vec()) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, libc::EINVAL),
        other => panic!("{other:?}"),
    }
    // Adding a member is a change to the configuration in force: success.
    let req = PeerRequest {
        group_id: GROUP.into(),
        leader_id: leader_id.clone(),
        peer_id: c.members[f].id.clone(),
    };
    let resp = blocking(l, "add_peer", req.encode_to_vec()).unwrap();
    let got = cli_service::PeersResponse::decode(resp.payload).unwrap();
    assert_eq!(
        (got.old_peers.len(), got.new_peers.len()),
        (3, 3),
        "{got:?}"
    );
    // remove_peer on the leader answers the old and new voters.
    let removed = c.members[f].id.clone();
    let req = PeerRequest {
        group_id: GROUP.into(),
        leader_id: leader_id.clone(),
        peer_id: removed.clone(),
    };
    // EBUSY while the new leader's own configuration entry commits.
    let mut tries = 0;
    let resp = loop {
        match blocking(l, "remove_peer", req.encode_to_vec()) {
            Err(RpcError::Remote { code, .. }) if code == libc::EBUSY && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => break other.unwrap(),
        }
    };
    let got = cli_service::PeersResponse::decode(resp.payload).unwrap();
    assert_eq!(got.old_peers.len(), 3, "{got:?}");
    assert_eq!(got.new_peers.len(), 2, "{got:?}");
    assert!(!got.new_peers.contains(&removed), "{got:?}");
    // disable_cli: braft's EACCES (get_leader is still answered, as braft's).
    let dir = tempfile::tempdir().unwrap();
    let server = rraft::node::RaftServer::start("127.0.0.1:0").unwrap();
    let id = format!("127.0.0.1:{}:0", server.port());
    let quiet = start_member(&server, "quiet", &id, dir.path(), &id, |o| {
        o.disable_cli = true
    });
    wait_for(T, "the single node to lead", || quiet.node.is_leader());
    let snapshot = cli_service::SnapshotRequest {
        group_id: "quiet".into(),
        peer_id: None,
    };
    let addr = format!("127.0.0.1:{}", server.port());
    let fut = rpc.call_with_protocol(
        &addr,
        Protocol::BaiduStd,
        &cli_service::method_name("snapshot"),
        "",
        Bytes::from(snapshot.encode_to_vec()),
        T,
    );
    match rraft::node::runtime::handle().block_on(fut) {
        Err(RpcError::Remote { code, text, .. }) => {
            assert_eq!(code, libc::EACCES, "{text}");
            assert!(text.contains("disable_cli"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    stop(&quiet);
    for m in &c.members {
        stop(m);
    }
}

use rraft_sim::braft_counter::{CounterResponse, FetchAddRequest};

#[test]
fn braft_counter_client_calls_a_user_method() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    use rraft::transport::{Request, Responder};
    use rraft_sim::examples::KillOnDrop;

    let Some(bin) = braft_bin("counter_client") else {
        return;
    };
    let c = three_servers(GROUP);
    let l = c.leader();
    // A counter that is not replicated: the protocol is under test.
    let total = Arc::new(AtomicI64::new(0));
    for server in c.servers() {
        let total = total.clone();
        server
            .add_method(
                "CounterService.fetch_add",
                Arc::new(move |req: Request, r: Responder| {
                    let Ok(add) = FetchAddRequest::decode(req.payload) else {
                        return r.reply_error(libc::EINVAL, "bad FetchAddRequest", "");
                    };
                    let prev = total.fetch_add(add.value, Ordering::SeqCst);
                    let resp = CounterResponse {
                        success: true,
                        value: Some(prev),
                        redirect: None,
                    };
                    r.reply(Bytes::from(resp.encode_to_vec()))
                }),
            )
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("client.log")).unwrap();
    let client = KillOnDrop(
        Command::new(&bin)
            .current_dir(dir.path())
            .args([
                format!("--conf={}", c.conf),
                format!("--group={GROUP}"),
                "--added_by=3".to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start counter_client"),
    );
    wait_for(T, "100 adds from counter_client", || {
        total.load(Ordering::SeqCst) >= 300
    });
    drop(client);
    let log = std::fs::read_to_string(dir.path().join("client.log")).unwrap();
    assert_eq!(total.load(Ordering::SeqCst) % 3, 0);
    assert!(!log.contains("Fail to"), "{log}");
    assert!(c.members[l].node.is_leader(), "the leader stayed");
    for m in &c.members {
        stop(m);
    }
}
