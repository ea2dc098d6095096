//! An acknowledged write is on a quorum's disks. With both followers'
//! fdatasync slowed down, a write commits only after a follower's sync
//! returned: no acknowledgement (Append answer, tail probe answer, vote)
//! leaves a follower ahead of the writes queued before it.
//!
//! The same holds on `shared://` logs (each member's own shared log on its
//! own slowed disk), where a follower's driver appends to the shared stream
//! itself and its answers leave from the log's sync round.
//!
//! The mutation check puts the defect back (a follower answering at once
//! when the Ready that produced the answer wrote nothing, while earlier
//! writes are still being synced) and asserts that this test finds it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::common::*;
use rraft::node::options::Mutation;
use rraft::node::{Done, Status, Task};
use rraft::storage::{FaultFs, RealFs};

const LIMIT: Duration = Duration::from_secs(30);
/// The followers' fdatasync takes at least this long.
const FOLLOWER_SYNC: Duration = Duration::from_millis(300);
const WRITES: usize = 16;

fn apply_and_wait(member: &Member, payload: String) -> (Status, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    member.node.apply(Task {
        data: payload.into_bytes().into(),
        done: Some(Done::new(move |st| {
            let _ = tx.send((st, start.elapsed()));
        })),
        expected_term: -1,
    });
    rx.recv_timeout(LIMIT).expect("the done runs")
}

/// Which log the members write.
#[derive(Clone, Copy)]
enum Log {
    Local,
    Shared,
}

/// Starts three nodes, slows the followers' syncs, writes after idle gaps
/// of different lengths and returns the latency of each acknowledged write.
fn acknowledged_latencies(mutation: Mutation, log: Log) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<FaultFs> = (0..3).map(|_| FaultFs::new(RealFs::shared())).collect();
    let Group {
        server, members, ..
    } = start_group("durable", dir.path(), |i, o| {
        o.fs = Some(disks[i].shared());
        o.mutation = mutation;
        if let Log::Shared = log {
            let wal = dir.path().join(format!("wal{i}"));
            o.log_uri = format!("shared://{}", wal.display());
        }
    });
    let leader = leader_of(&members, LIMIT);
    // Settle: the leader's first entry is committed before the disks slow.
    assert!(apply_and_wait(&members[leader], "warm-up".into()).0.is_ok());
    for (i, disk) in disks.iter().enumerate() {
        if i != leader {
            disk.faults
                .sync_delay_us
                .store(FOLLOWER_SYNC.as_micros() as u64, Ordering::SeqCst);
        }
    }
    let mut latencies = Vec::new();
    for i in 0..WRITES {
        // Idle gaps from none to several heartbeat periods: after a gap the
        // leader probes its followers' tails.
        std::thread::sleep(Duration::from_millis(40 * (i as u64 % 5)));
        let (status, latency) = apply_and_wait(&members[leader], format!("w{i}"));
        if status.is_ok() {
            latencies.push(latency);
        }
    }
    for disk in &disks {
        disk.faults.sync_delay_us.store(0, Ordering::SeqCst);
    }
    for m in &members {
        stop(m);
    }
    server.stop();
    latencies
}

/// Asserts that every write was acknowledged only after a follower's slow
/// sync could have returned.
fn assert_no_write_before_a_follower_sync(latencies: &[Duration]) {
    assert!(
        latencies.len() >= WRITES / 2,
        "most writes are acknowledged: {latencies:?}"
    );
    for latency in latencies {
        assert!(
            *latency >= FOLLOWER_SYNC,
            "a write was acknowledged after {latency:?}, before any follower's \
             {FOLLOWER_SYNC:?} sync could return (all: {latencies:?})"
        );
    }
}

/// Asserts that the mutation let some write commit early.
fn assert_some_write_before_a_follower_sync(latencies: &[Duration]) {
    assert!(
        latencies.iter().any(|l| *l < FOLLOWER_SYNC),
        "with followers acknowledging ahead of their disk, some write must \
         commit before a follower sync returned: {latencies:?}"
    );
}

#[test]
fn no_write_commits_before_a_follower_sync_returned() {
    assert_no_write_before_a_follower_sync(&acknowledged_latencies(Mutation::None, Log::Local));
}

#[test]
fn mutation_ack_before_sync_is_found() {
    assert_some_write_before_a_follower_sync(&acknowledged_latencies(
        Mutation::AckBeforeSync,
        Log::Local,
    ));
}

#[test]
fn on_a_shared_log_no_write_commits_before_a_follower_sync_returned() {
    assert_no_write_before_a_follower_sync(&acknowledged_latencies(Mutation::None, Log::Shared));
}

#[test]
fn on_a_shared_log_mutation_ack_before_sync_is_found() {
    assert_some_write_before_a_follower_sync(&acknowledged_latencies(
        Mutation::AckBeforeSync,
        Log::Shared,
    ));
}
