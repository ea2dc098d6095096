//! Many groups on three servers (one replica of each group per server):
//! idle groups quiesce and stop sending, a write wakes its group, and when
//! a server stops, every group it led elects a new leader within a few
//! election timeouts (the transport's keepalive watch tells the nodes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rraft::node::{Done, RaftServer, Status, Task};

use super::common::*;

const LIMIT: Duration = Duration::from_secs(30);
const ELECTION_MS: u32 = 300;

struct Servers {
    servers: Vec<Arc<RaftServer>>,
    /// groups[g][s]: the replica of group g on server s.
    groups: Vec<Vec<Member>>,
    _dir: tempfile::TempDir,
}

fn start_servers(groups: usize, quiesce_after_ms: u32) -> Servers {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<Arc<RaftServer>> = (0..3)
        .map(|_| RaftServer::start("127.0.0.1:0").unwrap())
        .collect();
    let ids: Vec<String> = servers
        .iter()
        .map(|s| peer_ids(s.port(), 1).remove(0))
        .collect();
    let conf = ids.join(",");
    let groups = (0..groups)
        .map(|g| {
            (0..3)
                .map(|s| {
                    let path = dir.path().join(format!("g{g}-s{s}"));
                    start_member(&servers[s], &format!("g{g}"), &ids[s], &path, &conf, |o| {
                        o.election_timeout_ms = ELECTION_MS;
                        o.quiesce_after_ms = quiesce_after_ms;
                        o.sync = false;
                    })
                })
                .collect()
        })
        .collect();
    Servers {
        servers,
        groups,
        _dir: dir,
    }
}

impl Servers {
    fn wait_for_leaders(&self) {
        for replicas in &self.groups {
            leader_of(replicas, LIMIT);
        }
    }

    fn all_quiescent(&self) -> bool {
        self.groups
            .iter()
            .flatten()
            .all(|m| m.node.status().is_ok_and(|s| s.quiescent))
    }

    /// Raft messages and frames the three servers wrote, per second, over
    /// `span`.
    fn traffic(&self, span: Duration) -> (f64, f64, u64) {
        let sum = |f: fn(&rraft::transport::Stats) -> u64| -> u64 {
            self.servers.iter().map(|s| f(&s.transport_stats())).sum()
        };
        let (m0, f0, k0) = (
            sum(|s| s.messages_out),
            sum(|s| s.frames_out),
            sum(|s| s.keepalives_out),
        );
        std::thread::sleep(span);
        let (m1, f1, k1) = (
            sum(|s| s.messages_out),
            sum(|s| s.frames_out),
            sum(|s| s.keepalives_out),
        );
        let secs = span.as_secs_f64();
        ((m1 - m0) as f64 / secs, (f1 - f0) as f64 / secs, k1 - k0)
    }

    fn stop_all(self) {
        for m in self.groups.iter().flatten() {
            if !m.node.status().is_err() {
                stop(m);
            }
        }
        for s in &self.servers {
            s.stop();
        }
    }
}

fn write(member: &Member, payload: &str) -> Status {
    let (tx, rx) = std::sync::mpsc::channel();
    member.node.apply(Task {
        data: payload.as_bytes().to_vec().into(),
        done: Some(Done::new(move |st| {
            let _ = tx.send(st);
        })),
        expected_term: -1,
    });
    rx.recv_timeout(LIMIT).expect("done in time")
}

fn leader_index(replicas: &[Member]) -> Option<usize> {
    replicas.iter().position(|m| m.node.is_leader())
}

#[test]
fn idle_groups_quiesce_wake_on_a_write_and_fail_over_when_a_server_stops() {
    let groups = std::env::var("RRAFT_QUIESCE_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let cluster = start_servers(groups, ELECTION_MS);
    cluster.wait_for_leaders();
    for replicas in &cluster.groups {
        let l = leader_of(replicas, LIMIT);
        assert!(write(&replicas[l], "first").is_ok());
    }
    wait_for(LIMIT, "every replica to quiesce", || {
        cluster.all_quiescent()
    });

    // Idle: no Raft message at all, only the keepalives of the server pairs.
    let (msgs, frames, keepalives) = cluster.traffic(Duration::from_secs(2));
    println!(
        "{groups} quiescent groups on 3 servers: {msgs:.1} Raft messages/s, \
         {frames:.1} frames/s ({keepalives} keepalives in 2 s)"
    );
    assert_eq!(msgs, 0.0, "quiescent groups send no Raft message");
    assert!(keepalives > 0, "the server pairs are watched");
    assert!(
        frames <= 6.0 * 5.0,
        "frames do not grow with the group count: {frames}/s"
    );

    // A write wakes its group; it applies everywhere and sleeps again.
    let g0 = &cluster.groups[0];
    let l = leader_of(g0, LIMIT);
    assert!(write(&g0[l], "wake").is_ok());
    wait_for(LIMIT, "the write to apply on every replica", || {
        g0.iter()
            .all(|m| m.record.lock().unwrap().applied.last().map(Vec::as_slice) == Some(b"wake"))
    });
    wait_for(LIMIT, "the group to quiesce again", || {
        cluster.all_quiescent()
    });

    // Stop server 0: every group it led elects a leader elsewhere.
    let led: Vec<usize> = (0..groups)
        .filter(|&g| leader_index(&cluster.groups[g]) == Some(0))
        .collect();
    let stopped = Instant::now();
    for replicas in &cluster.groups {
        replicas[0].node.shutdown(None);
    }
    cluster.servers[0].stop();
    let bound = Duration::from_millis(6 * ELECTION_MS as u64);
    let mut slowest = Duration::ZERO;
    for &g in &led {
        let rest = &cluster.groups[g][1..];
        wait_for(LIMIT, "a new leader", || leader_index(rest).is_some());
        slowest = slowest.max(stopped.elapsed());
    }
    println!(
        "{} groups led by the stopped server: all have a new leader after {slowest:?}",
        led.len()
    );
    assert!(
        slowest <= bound,
        "new leaders took {slowest:?}, more than {bound:?} (election timeout {ELECTION_MS} ms)"
    );
    for &g in &led {
        let rest = &cluster.groups[g][1..];
        let l = leader_index(rest).expect("a leader");
        assert!(write(&rest[l], "after").is_ok());
    }
    for replicas in &cluster.groups {
        replicas[0].node.join().expect("join");
    }
    cluster.stop_all();
}

/// Without quiescence, idle groups keep heartbeating: the traffic grows
/// with the group count (the baseline of the measurement above).
#[test]
fn idle_groups_without_quiescence_keep_heartbeating() {
    let cluster = start_servers(4, 0);
    cluster.wait_for_leaders();
    let (msgs, _, _) = cluster.traffic(Duration::from_secs(1));
    println!("4 groups on 3 servers without quiescence: {msgs:.1} Raft messages/s");
    assert!(
        msgs > 4.0 * 2.0 * 5.0,
        "heartbeats and answers flow: {msgs}/s"
    );
    assert!(!cluster.all_quiescent());
    cluster.stop_all();
}
