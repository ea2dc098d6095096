//! Nodes with `braft_compat` among themselves: every Raft message travels
//! as braft's `RaftService` calls over baidu_std (none as rraft frames),
//! and the group still elects, replicates, transfers leadership, answers
//! ReadIndex on the leader and catches a member up by snapshot through
//! braft's `FileService`. Malformed RaftService calls get errors. (The
//! same against braft's own binaries: tests/examples/braft_raft.rs.)

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use rraft::node::{Done, NodeOptions};
use rraft::transport::braft_raft::{self, AppendEntriesRequest};
use rraft::transport::{Protocol, RpcClient, RpcError};

use super::common::*;

const GROUP: &str = "braft_mixed";

fn compat(o: &mut NodeOptions) {
    o.braft_compat = true;
    // Snapshot files travel in many get_file calls.
    o.snapshot_chunk_bytes = 512;
}

fn wait_done(what: &str) -> (Done, impl FnOnce()) {
    let (tx, rx) = mpsc::channel();
    let done = Done::new(move |st| {
        let _ = tx.send(st);
    });
    let what = what.to_string();
    (done, move || {
        let st = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what}: no answer"));
        assert!(st.is_ok(), "{what}: {st}");
    })
}

#[test]
fn compat_nodes_replicate_elect_transfer_and_catch_up_over_braft_raft_service() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, ids) = start_servers(3);
    let conf = ids.join(",");
    let start = |i: usize| {
        start_member(
            &servers[i],
            GROUP,
            &ids[i],
            &dir.path().join(format!("n{i}")),
            &conf,
            compat,
        )
    };
    let mut members: Vec<Member> = (0..3).map(start).collect();
    let l = leader_of(&members, Duration::from_secs(10));
    assert_eq!(propose_many(&members[l].node, "a", 50, 1), 50);
    wait_for(Duration::from_secs(10), "every node to apply", || {
        members
            .iter()
            .all(|m| m.record.lock().unwrap().applied.len() == 50)
    });
    for (i, s) in servers.iter().enumerate() {
        let st = s.transport_stats();
        assert_eq!(st.messages_out, 0, "no Raft message left as an rraft frame");
        // A leader elected without a contest may have received no call.
        assert!(
            i == l || st.requests_in > 0,
            "the leader's RaftService calls arrive at follower {i}"
        );
    }
    assert!(
        !members[l].node.is_leader_lease_valid(),
        "no lease in a group that may hold braft replicas"
    );
    let (done, wait) = wait_done("read_index on the leader");
    members[l].node.read_index(done);
    wait();

    // Leadership transfer (TimeoutNow in braft's form).
    let to = (l + 1) % 3;
    members[l]
        .node
        .transfer_leadership_to(Some(&ids[to]))
        .expect("transfer");
    wait_for(Duration::from_secs(10), "the transfer", || {
        members[to].node.is_leader()
    });

    // A follower misses entries the leader compacts after a snapshot
    // (catchup_margin 100), and is caught up by the leader's snapshot.
    let behind = (to + 1) % 3;
    stop(&members[behind]);
    assert_eq!(propose_many(&members[to].node, "b", 300, 1), 300);
    let (done, wait) = wait_done("snapshot");
    members[to].node.snapshot(Some(done));
    wait();
    assert_eq!(propose_many(&members[to].node, "c", 20, 1), 20);
    members[behind] = start(behind);
    wait_for(
        Duration::from_secs(20),
        "the restarted node to catch up",
        || members[behind].record.lock().unwrap().applied.len() == 370,
    );
    assert!(
        members[behind].record.lock().unwrap().loads >= 1,
        "caught up by the snapshot"
    );
    let digests: Vec<String> = members
        .iter()
        .map(|m| m.record.lock().unwrap().digest())
        .collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");

    // The leader stops: the other two elect one of themselves.
    stop(&members[to]);
    let rest: Vec<&Member> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != to)
        .map(|(_, m)| m)
        .collect();
    let l2 = leader_of(&rest, Duration::from_secs(10));
    assert_eq!(propose_many(&rest[l2].node, "d", 10, 1), 10);
    for m in &members {
        if !m.record.lock().unwrap().shutdown {
            stop(m);
        }
    }
}

#[test]
fn malformed_raft_service_calls_get_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, ids) = start_servers(1);
    let member = start_member(&servers[0], GROUP, &ids[0], dir.path(), &ids[0], compat);
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    let addr = format!("127.0.0.1:{}", servers[0].port());
    let call = |method: &str, body: Vec<u8>| -> Result<Bytes, i32> {
        let fut = rpc.call_with_protocol(
            &addr,
            Protocol::BaiduStd,
            method,
            "",
            body.into(),
            Duration::from_secs(5),
        );
        match rraft::node::runtime::handle().block_on(fut) {
            Ok(resp) => Ok(resp.payload),
            Err(RpcError::Remote { code, .. }) => Err(code),
            Err(e) => panic!("{method}: {e}"),
        }
    };
    for method in braft_raft::METHODS {
        let name = braft_raft::method_name(method);
        assert_eq!(
            call(&name, b"\xff\xff\xff\xff".to_vec()),
            Err(libc::EINVAL),
            "{name}"
        );
    }
    let mut req = AppendEntriesRequest {
        group_id: "no_such_group".into(),
        server_id: "127.0.0.1:1:0:0".into(),
        peer_id: format!("{}:0", ids[0]),
        term: 1,
        prev_log_term: 0,
        prev_log_index: 0,
        entries: vec![],
        committed_index: 0,
    };
    let append = braft_raft::method_name(braft_raft::APPEND_ENTRIES);
    assert_eq!(
        call(&append, req.encode_to_vec()),
        Err(libc::ENOENT),
        "unknown group"
    );
    req.group_id = GROUP.into();
    req.entries.push(braft_raft::EntryMeta {
        term: 1,
        r#type: braft_raft::entry_type::DATA,
        peers: vec![],
        data_len: Some(10),
        old_peers: vec![],
    });
    assert_eq!(
        call(&append, req.encode_to_vec()),
        Err(libc::EINVAL),
        "data past the attachment"
    );
    assert_eq!(
        call("braft.FileService.get_file", b"\x08\x01".to_vec()),
        Err(libc::EINVAL),
        "no count"
    );
    // The node still works.
    wait_for(Duration::from_secs(10), "the single node to lead", || {
        member.node.is_leader()
    });
    assert_eq!(propose_many(&member.node, "x", 5, 1), 5);
    stop(&member);
}
