//! Many groups on three servers (one replica of each group per server):
//! idle groups quiesce and stop sending, a write wakes its group, and when
//! a server stops, every group it led elects a new leader within a few
//! election timeouts (the transport's keepalive watch tells the nodes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rraft::node::options::Mutation;
use rraft::node::{Done, RaftServer, Status, Task};

use super::common::*;
use super::status_pages::get;

const LIMIT: Duration = Duration::from_secs(30);
const ELECTION_MS: u32 = 300;

struct Servers {
    servers: Vec<Arc<RaftServer>>,
    /// groups[g][s]: the replica of group g on server s.
    groups: Vec<Vec<Member>>,
    _dir: tempfile::TempDir,
}

fn start_servers(groups: usize, quiesce_after_ms: u32) -> Servers {
    start_servers_with(groups, quiesce_after_ms, None)
}

/// [`start_servers`] with leader leases on (when `lease` is given) and the
/// nodes told to have that mutation.
fn start_servers_with(groups: usize, quiesce_after_ms: u32, lease: Option<Mutation>) -> Servers {
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
                        if let Some(mutation) = lease {
                            o.enable_leader_lease = true;
                            o.max_clock_drift_ms = ELECTION_MS / 3;
                            o.mutation = mutation;
                        }
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

    /// Over `span`: Raft messages and frames the three servers wrote per
    /// second, keepalives written, and the process's CPU use (share of one
    /// core).
    fn traffic(&self, span: Duration) -> Traffic {
        let sum = |f: fn(&rraft::transport::Stats) -> u64| -> u64 {
            self.servers.iter().map(|s| f(&s.transport_stats())).sum()
        };
        let before = (
            sum(|s| s.messages_out),
            sum(|s| s.frames_out),
            sum(|s| s.keepalives_out),
            cpu_seconds(),
        );
        std::thread::sleep(span);
        let secs = span.as_secs_f64();
        Traffic {
            messages_per_s: (sum(|s| s.messages_out) - before.0) as f64 / secs,
            frames_per_s: (sum(|s| s.frames_out) - before.1) as f64 / secs,
            keepalives: sum(|s| s.keepalives_out) - before.2,
            cpu: (cpu_seconds() - before.3) / secs,
        }
    }

    fn stop_all(self) {
        for m in self.groups.iter().flatten() {
            if m.node.status().is_ok() {
                stop(m);
            }
        }
        for s in &self.servers {
            s.stop();
        }
    }
}

struct Traffic {
    messages_per_s: f64,
    frames_per_s: f64,
    keepalives: u64,
    cpu: f64,
}

/// User + system CPU time of this process so far (/proc/self/stat, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn group_count(default: usize) -> usize {
    std::env::var("RRAFT_QUIESCE_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let groups = group_count(24);
    let cluster = start_servers(groups, ELECTION_MS);
    cluster.wait_for_leaders();
    for replicas in &cluster.groups {
        let l = leader_of(replicas, LIMIT);
        assert!(write(&replicas[l], "first").is_ok());
    }
    wait_for(LIMIT, "every replica to quiesce", || {
        cluster.all_quiescent()
    });
    let port = cluster.servers[1].port();
    let (_, page) = get(port, "/raft_stat");
    assert_eq!(page.matches("quiescent: yes").count(), groups, "{page}");
    let (_, metrics) = get(port, "/metrics");
    let asleep = metrics
        .lines()
        .filter(|l| l.starts_with("rraft_node_quiescent{") && l.ends_with(" 1"))
        .count();
    assert_eq!(asleep, groups, "the quiescent gauge of every node");

    // Idle: no Raft message at all, only the keepalives of the server pairs.
    let t = cluster.traffic(Duration::from_secs(2));
    println!(
        "{groups} quiescent groups on 3 servers: {:.1} Raft messages/s, {:.1} frames/s \
         ({} keepalives in 2 s), CPU {:.1}% of a core",
        t.messages_per_s,
        t.frames_per_s,
        t.keepalives,
        100.0 * t.cpu
    );
    assert_eq!(
        t.messages_per_s, 0.0,
        "quiescent groups send no Raft message"
    );
    assert!(t.keepalives > 0, "the server pairs are watched");
    // Six ordered server pairs, one keepalive each per 250 ms.
    assert!(
        t.frames_per_s <= 6.0 * 5.0,
        "frames do not grow with the group count: {}/s",
        t.frames_per_s
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
    let groups = group_count(4);
    let cluster = start_servers(groups, 0);
    cluster.wait_for_leaders();
    let t = cluster.traffic(Duration::from_secs(2));
    println!(
        "{groups} groups on 3 servers without quiescence: {:.1} Raft messages/s, \
         {:.1} frames/s, CPU {:.1}% of a core",
        t.messages_per_s,
        t.frames_per_s,
        100.0 * t.cpu
    );
    // Per group, two heartbeats and two answers every 30 ms.
    let floor = groups as f64 * 4.0 * 10.0;
    assert!(
        t.messages_per_s > floor,
        "heartbeats and answers flow: {}/s",
        t.messages_per_s
    );
    assert!(!cluster.all_quiescent());
    cluster.stop_all();
}

/// Apply batches do not wake a node's driver: a follower's status still
/// reports every entry its state machine applied, also once the group
/// sleeps and no message reaches the follower any more.
#[test]
fn a_sleeping_followers_status_reports_what_its_state_machine_applied() {
    let cluster = start_servers(1, 200);
    cluster.wait_for_leaders();
    let replicas = &cluster.groups[0];
    let l = leader_of(replicas, LIMIT);
    for i in 0..5 {
        assert!(write(&replicas[l], &format!("w{i}")).is_ok());
    }
    wait_for(LIMIT, "every replica to apply the last write", || {
        replicas
            .iter()
            .all(|m| m.record.lock().unwrap().applied.last().map(Vec::as_slice) == Some(b"w4"))
    });
    wait_for(LIMIT, "the group to quiesce", || cluster.all_quiescent());
    let leader = replicas[l].node.status().unwrap();
    assert_eq!(leader.applied_index, leader.committed_index);
    for (i, m) in replicas.iter().enumerate().filter(|&(i, _)| i != l) {
        let status = m.node.status().unwrap();
        assert!(status.quiescent, "replica {i} sleeps");
        assert_eq!(
            status.applied_index, leader.applied_index,
            "replica {i} reports what its state machine applied"
        );
    }
    cluster.stop_all();
}

/// Over 10 election timeouts of an idle cluster of four groups with leases:
/// whether every replica kept its term and leader, and how many heartbeats
/// followers answered without a turn of their driver. Then a write to each
/// group must commit and reach every replica.
fn idle_followers_keep_their_leader(mutation: Mutation) -> (bool, u64) {
    let cluster = start_servers_with(4, 0, Some(mutation));
    cluster.wait_for_leaders();
    let terms = || -> Vec<Vec<(u64, Option<String>)>> {
        cluster
            .groups
            .iter()
            .map(|r| {
                r.iter()
                    .map(|m| (m.node.term(), m.node.leader_id()))
                    .collect()
            })
            .collect()
    };
    wait_for(LIMIT, "every replica to know its leader", || {
        terms().iter().flatten().all(|(_, l)| l.is_some())
    });
    let before = terms();
    let answered = rraft::node::quiet_beat_answers();
    std::thread::sleep(Duration::from_millis(10 * u64::from(ELECTION_MS)));
    let answered = rraft::node::quiet_beat_answers() - answered;
    let kept = terms() == before;
    for (g, replicas) in cluster.groups.iter().enumerate() {
        let l = leader_of(replicas, LIMIT);
        wait_for(LIMIT, "the leader's lease", || {
            replicas[l].node.is_leader_lease_valid()
        });
        assert!(write(&replicas[l], &format!("g{g}")).is_ok());
    }
    for (g, replicas) in cluster.groups.iter().enumerate() {
        let last = format!("g{g}");
        wait_for(LIMIT, "every replica to apply the write", || {
            replicas.iter().all(|m| {
                m.record.lock().unwrap().applied.last().map(Vec::as_slice) == Some(last.as_bytes())
            })
        });
    }
    cluster.stop_all();
    (kept, answered)
}

/// Idle followers answer the heartbeats that change nothing without a turn
/// of their driver, and still hand each contact to their core: no follower
/// campaigns, the leaders hold their leases, writes go on.
#[test]
fn idle_followers_answer_heartbeats_without_a_turn_and_keep_their_leader() {
    let (kept, answered) = idle_followers_keep_their_leader(Mutation::None);
    assert!(kept, "no follower campaigned");
    // Two followers per group, a heartbeat each every 30 ms: 800 over 3 s.
    assert!(
        answered > 200,
        "followers answer heartbeats without a turn: {answered}"
    );
}

/// The check above catches followers that answer without a turn but never
/// tell their core: their election timers fire under a live leader.
#[test]
fn followers_that_forget_the_contact_of_answered_heartbeats_campaign() {
    let (kept, answered) = idle_followers_keep_their_leader(Mutation::QuietBeatsForgetContact);
    assert!(answered > 0, "the mutation answers without a turn");
    assert!(!kept, "followers campaign when the contact is forgotten");
}

/// Writes to four groups, one at a time with pauses of a heartbeat period
/// or more, so that followers learn most commit indexes from heartbeats;
/// then whether every replica applied every write, in order, and how many
/// Append acks leaders queued for their next turn.
fn spaced_writes_reach_every_replica() -> (bool, u64) {
    let cluster = start_servers_with(4, 0, Some(Mutation::None));
    cluster.wait_for_leaders();
    let waited = rraft::node::acks_waited();
    let expected: Vec<Vec<Vec<u8>>> = (0..cluster.groups.len())
        .map(|g| (0..8).map(|i| format!("g{g}w{i}").into_bytes()).collect())
        .collect();
    for i in 0..8 {
        for (g, replicas) in cluster.groups.iter().enumerate() {
            let l = leader_of(replicas, LIMIT);
            assert!(write(&replicas[l], &format!("g{g}w{i}")).is_ok());
        }
        std::thread::sleep(Duration::from_millis(u64::from(ELECTION_MS) / 4));
    }
    let waited = rraft::node::acks_waited() - waited;
    let deadline = Instant::now() + LIMIT;
    let applied_all = || {
        cluster
            .groups
            .iter()
            .zip(&expected)
            .all(|(replicas, want)| {
                replicas
                    .iter()
                    .all(|m| m.record.lock().unwrap().applied == *want)
            })
    };
    while !applied_all() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let reached = applied_all();
    cluster.stop_all();
    (reached, waited)
}

/// Followers take the newer commit index of a heartbeat without a turn and
/// hand it to their core at the next one, and leaders queue the acks that
/// cannot move the commit index for their next turn: every write still
/// reaches every replica's state machine, in order, without a further
/// write to carry its commit index.
#[test]
fn commit_indexes_learned_without_a_turn_reach_every_state_machine() {
    let (reached, waited) = spaced_writes_reach_every_replica();
    assert!(reached, "every replica applied every write");
    assert!(waited > 0, "leaders queued acks for their next turn");
}
