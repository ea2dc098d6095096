//! A follower restarted on an empty data directory (a lost or replaced
//! disk) catches up: the leader sees from its heartbeat answers that it
//! holds less than it acknowledged, resets its progress and replicates to
//! it again, by log or, once the log was compacted, by snapshot. The
//! leader's status shows the follower's real match index throughout.

use std::time::Duration;

use super::common::*;
use rraft::node::Done;

const LIMIT: Duration = Duration::from_secs(30);

fn snapshot_and_wait(member: &Member) {
    let (tx, rx) = std::sync::mpsc::channel();
    member.node.snapshot(Some(Done::new(move |st| {
        let _ = tx.send(st);
    })));
    let st = rx.recv_timeout(LIMIT).expect("snapshot done");
    assert!(st.is_ok(), "snapshot: {st}");
}

fn follower_restarted_empty_catches_up(compact: bool) {
    let dir = tempfile::tempdir().unwrap();
    let tweak = |o: &mut rraft::node::NodeOptions| {
        if compact {
            o.catchup_margin = 0;
        }
    };
    let Group {
        server,
        ids,
        conf,
        mut members,
    } = start_group("lost", dir.path(), |_, o| tweak(o));
    let leader = leader_of(&members, LIMIT);
    assert_eq!(propose_many(&members[leader].node, "a", 50, 16), 50);
    let follower = (leader + 1) % 3;
    let applied = |m: &Member| m.record.lock().unwrap().last_index;
    let leader_last = members[leader].node.status().unwrap().last_index;
    wait_for(LIMIT, "the follower applied everything", || {
        applied(&members[follower]) == leader_last
    });

    // The follower's disk is lost: stop it, wipe its directories, restart
    // it with the same options.
    stop(&members[follower]);
    for store in ["log", "meta", "snapshot"] {
        std::fs::remove_dir_all(dir.path().join(format!("n{follower}")).join(store)).unwrap();
    }
    assert_eq!(propose_many(&members[leader].node, "b", 20, 16), 20);
    if compact {
        snapshot_and_wait(&members[leader]);
        wait_for(LIMIT, "the leader's log compacted", || {
            members[leader].node.status().unwrap().first_index > 1
        });
    }
    members[follower] = start_member(
        &server,
        "lost",
        &ids[follower],
        &dir.path().join(format!("n{follower}")),
        &conf,
        tweak,
    );

    let leader_node = &members[leader].node;
    let target = leader_node.status().unwrap().last_index;
    wait_for(LIMIT, "the wiped follower applied everything again", || {
        applied(&members[follower]) >= target
    });
    assert_eq!(
        members[follower].record.lock().unwrap().applied,
        members[leader].record.lock().unwrap().applied,
        "the same state"
    );
    wait_for(
        LIMIT,
        "the leader's status shows the follower matched",
        || {
            let st = leader_node.status().unwrap();
            st.peers
                .iter()
                .find(|p| p.id == ids[follower])
                .is_some_and(|p| p.match_index == st.last_index && p.lag == 0)
        },
    );
    // It takes part again: a write commits with the other follower stopped.
    let other = 3 - leader - follower;
    stop(&members[other]);
    assert_eq!(propose_many(leader_node, "c", 5, 5), 5);
    wait_for(LIMIT, "the restarted follower applies new writes", || {
        applied(&members[follower]) == leader_node.status().unwrap().last_index
    });
    for (i, m) in members.iter().enumerate() {
        if i != other {
            stop(m);
        }
    }
}

#[test]
fn a_follower_restarted_on_an_empty_directory_catches_up_by_log() {
    follower_restarted_empty_catches_up(false);
}

#[test]
fn a_follower_restarted_on_an_empty_directory_catches_up_by_snapshot() {
    follower_restarted_empty_catches_up(true);
}
