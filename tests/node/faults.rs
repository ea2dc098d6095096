//! A disk error is fatal for the node that hits it: the write is never
//! acknowledged, the node stops (on_error, state "Error"), the fsync is not
//! retried, and the rest of the group carries on.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::common::*;
use rraft::node::{Done, RaftServer, Status, Task};
use rraft::storage::{FaultFs, RealFs};

const LIMIT: Duration = Duration::from_secs(20);

fn propose_one(member: &Member, payload: &str) -> Status {
    let (tx, rx) = std::sync::mpsc::channel();
    member.node.apply(Task {
        data: payload.to_string().into_bytes().into(),
        done: Some(Done::new(move |st| tx.send(st).unwrap())),
        expected_term: -1,
    });
    rx.recv_timeout(LIMIT).expect("the done runs")
}

/// One node on its own server, its storage going through `faults`.
fn single(dir: &std::path::Path, faults: &FaultFs) -> Member {
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let id = peer_ids(server.port(), 1).remove(0);
    let fs = faults.shared();
    let m = start_member(&server, "solo", &id, dir, &id, move |o| o.fs = Some(fs));
    wait_for(LIMIT, "the single node to lead", || m.node.is_leader());
    m
}

fn assert_stopped_by_disk(m: &Member, syncs_before_retry: u64, faults: &FaultFs) {
    wait_for(LIMIT, "on_error", || {
        !m.record.lock().unwrap().errors.is_empty()
    });
    assert_eq!(
        m.record.lock().unwrap().errors.len(),
        1,
        "on_error runs once"
    );
    assert!(m.node.has_failed());
    assert_eq!(m.node.status().unwrap().state, "Error");
    // The disk "comes back": the node stays stopped and never retries.
    faults.faults.fail_sync.store(false, Ordering::SeqCst);
    faults.faults.fail_write.store(false, Ordering::SeqCst);
    let again = propose_one(m, "after");
    assert!(
        !again.is_ok(),
        "a failed node acknowledges nothing: {again}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        faults.faults.file_syncs.load(Ordering::SeqCst),
        syncs_before_retry,
        "no fsync after the failure"
    );
}

#[test]
fn an_fsync_error_stops_the_node_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new(RealFs::shared());
    let m = single(dir.path(), &faults);
    for i in 0..10 {
        assert!(propose_one(&m, &format!("ok-{i}")).is_ok());
    }
    faults.faults.fail_sync.store(true, Ordering::SeqCst);
    let st = propose_one(&m, "doomed");
    assert_eq!(st.code, rraft::node::errno::EIO, "{st}");
    let syncs = faults.faults.file_syncs.load(Ordering::SeqCst);
    assert_stopped_by_disk(&m, syncs, &faults);
    assert!(
        !m.record
            .lock()
            .unwrap()
            .applied
            .iter()
            .any(|p| p == b"doomed"),
        "never applied"
    );
    stop(&m);
}

#[test]
fn a_write_error_stops_the_node_like_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultFs::new(RealFs::shared());
    let m = single(dir.path(), &faults);
    assert!(propose_one(&m, "ok").is_ok());
    faults.faults.fail_write.store(true, Ordering::SeqCst);
    let st = propose_one(&m, "doomed");
    assert!(!st.is_ok(), "{st}");
    let syncs = faults.faults.file_syncs.load(Ordering::SeqCst);
    assert_stopped_by_disk(&m, syncs, &faults);
    stop(&m);
}

#[test]
fn a_follower_losing_its_disk_does_not_stop_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let faults: Vec<FaultFs> = (0..3).map(|_| FaultFs::new(RealFs::shared())).collect();
    let Group { members, .. } = start_group("g", dir.path(), |i, o| {
        o.fs = Some(faults[i].shared());
    });
    let leader = leader_of(&members, LIMIT);
    let bad = (leader + 1) % 3;
    faults[bad].faults.fail_sync.store(true, Ordering::SeqCst);
    assert_eq!(
        propose_many(&members[leader].node, "x", 200, 32),
        200,
        "two healthy nodes are a quorum"
    );
    wait_for(LIMIT, "the follower to stop", || {
        members[bad].node.has_failed()
    });
    assert_eq!(members[bad].record.lock().unwrap().errors.len(), 1);
    for m in &members {
        stop(m);
    }
}

/// The done of a refused proposal runs on the node's FSM thread, like
/// every other callback, so it may call back into the node: a status
/// query from it answers at once instead of stalling the node's driver.
#[test]
fn a_refused_proposal_runs_its_done_on_the_fsm_thread() {
    let dir = tempfile::tempdir().unwrap();
    let Group {
        server, members, ..
    } = start_group("refused", dir.path(), |_, _| {});
    let leader = leader_of(&members, LIMIT);
    let follower = members[(leader + 1) % 3].node.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let queried = follower.clone();
    follower.apply(Task {
        data: b"refused".to_vec().into(),
        done: Some(Done::new(move |st| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            let started = std::time::Instant::now();
            let status = queried.status();
            let _ = tx.send((st.code, thread, status.is_ok(), started.elapsed()));
        })),
        expected_term: -1,
    });
    let (code, thread, status_ok, took) = rx.recv_timeout(LIMIT).expect("the done runs");
    assert_eq!(
        code,
        rraft::node::errno::EPERM,
        "a follower refuses proposals"
    );
    assert!(thread.starts_with("rraft-fsm"), "ran on {thread:?}");
    assert!(status_ok, "status from the done");
    assert!(took < Duration::from_secs(5), "status took {took:?}");
    for m in &members {
        stop(m);
    }
    server.stop();
}
