//! A rolling upgrade of a braft counter group to rraft and a rollback, with
//! braft's own binaries (`$RRAFT_BRAFT_DIR`) under load from braft's
//! `counter_client`: one replica at a time is stopped and started as
//! rraft's counter_server (`-braft_compat`) on the same port and data
//! directory; leadership moves from braft to rraft and back; a braft
//! follower installs a snapshot from an rraft leader and an rraft follower
//! one from a braft leader; then one replica goes back to braft. After each
//! step a leader exists, the client's adds are acknowledged again and the
//! swapped replica has caught up; at the end every replica holds the same
//! value, and it contains every acknowledged add.
//!
//! When rraft's counter_server has no `-braft_compat`, the mixed steps are
//! skipped with a message and every step runs braft on both sides (which
//! checks the harness alone).

use std::time::Duration;

use super::braft_counter::braft_dir;
use super::mixed_group::{Binaries, Kind, LoadClient, MixedGroup, Stop};

/// Senders of braft's counter_client (each has one add in flight and
/// pauses a second after each acknowledgement).
const CLIENT_THREADS: usize = 8;
/// Adds acknowledged after a step before the next one starts.
const ACKS_PER_STEP: usize = 5;
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// After a step: a leader exists, more adds are acknowledged, and the
/// replica the step touched (if any) applied what the leader committed.
fn check_step(g: &mut MixedGroup, client: &LoadClient, touched: Option<usize>, step: &str) {
    let acked = client.acked();
    let leader = g.wait_leader(step, STEP_TIMEOUT);
    client.wait_acks(g, acked, ACKS_PER_STEP, step);
    if let Some(i) = touched {
        g.wait_caught_up(i, STEP_TIMEOUT);
    }
    eprintln!(
        "[{:6.1}s] {step}: ok (leader node{leader} ({}), kinds {}, {} adds acknowledged)",
        g.elapsed(),
        g.kind(leader).name(),
        g.kinds(),
        client.acked()
    );
}

/// Stops replica `i` and starts it again as `kind` on the same port and
/// data directory.
fn swap(g: &mut MixedGroup, client: &LoadClient, i: usize, how: Stop, kind: Kind) {
    let from = g.kind(i);
    g.stop_replica(i, how);
    g.start_replica(i, kind);
    check_step(
        g,
        client,
        Some(i),
        &format!("node{i} {} -> {} ({how:?})", from.name(), kind.name()),
    );
}

/// Moves the leadership to replica `to`.
fn transfer(g: &mut MixedGroup, client: &LoadClient, to: usize) {
    let from = g.wait_leader("a leader to transfer from", STEP_TIMEOUT);
    g.transfer_leader(to, STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", g.tails(20)));
    check_step(
        g,
        client,
        None,
        &format!(
            "transfer_leader node{from} ({}) -> node{to} ({})",
            g.kind(from).name(),
            g.kind(to).name()
        ),
    );
    assert_eq!(g.leader(), Some(to), "node{to} lost the leadership");
}

/// Makes follower `f` need a snapshot from the leader: it is stopped, the
/// load goes on, the leader snapshots until its log starts after `f`'s
/// (braft drops the entries before its previous snapshot, rraft those more
/// than its catch-up margin behind the new one); then `f` starts as `kind`
/// and must catch up through the leader's snapshot.
fn install_snapshot_from_leader(g: &mut MixedGroup, client: &LoadClient, f: usize, kind: Kind) {
    let leader = g.wait_leader("a leader to send a snapshot", STEP_TIMEOUT);
    assert_ne!(leader, f, "node{f} leads; it cannot receive a snapshot");
    let f_last = g.wait_caught_up(f, STEP_TIMEOUT).last_index;
    g.stop_replica(f, Stop::Interrupt);
    let mut snapshot_index = 0;
    for round in 0.. {
        client.wait_acks(g, client.acked(), 10, "adds while a follower is down");
        let page = g.snapshot(leader);
        snapshot_index = page.snapshot_index;
        eprintln!(
            "[{:6.1}s] snapshot on the leader node{leader}: index {snapshot_index}, log from {}",
            g.elapsed(),
            page.first_index
        );
        if page.first_index > f_last + 1 {
            break;
        }
        assert!(
            round < 4,
            "the leader's log still starts at {} after {} snapshots; node{f} has up to {f_last}",
            page.first_index,
            round + 1
        );
    }
    g.start_replica(f, kind);
    check_step(
        g,
        client,
        Some(f),
        &format!(
            "node{f} ({}) installed a snapshot from the leader node{leader} ({})",
            kind.name(),
            g.kind(leader).name()
        ),
    );
    let page = g.page(f).expect("a caught-up replica answers");
    assert!(
        page.snapshot_index >= snapshot_index,
        "node{f} caught up without the leader's snapshot at {snapshot_index}: {page:?}"
    );
    assert_eq!(g.leader(), Some(leader), "the leadership moved meanwhile");
}

#[test]
fn rolling_upgrade_from_braft_to_rraft_and_back() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let bins = Binaries::find(&braft);
    let upgraded = match bins.rraft_cannot_join_braft() {
        None => Kind::Rraft,
        Some(why) => {
            eprintln!(
                "SKIPPED the mixed braft/rraft steps of the rolling upgrade: {why}. \
                 Every step runs braft's counter_server on both sides instead."
            );
            Kind::Braft
        }
    };
    let mut g = MixedGroup::start(bins, "rolling_upgrade", &[Kind::Braft; 3], None);
    let client = g.start_client(CLIENT_THREADS);
    check_step(&mut g, &client, None, "braft group under load");

    let z = g.wait_leader("the braft leader", STEP_TIMEOUT);
    let followers: Vec<usize> = (0..3).filter(|&i| i != z).collect();
    let (x, y) = (followers[0], followers[1]);
    // One follower, then the leadership, then the other follower (killed).
    swap(&mut g, &client, x, Stop::Interrupt, upgraded);
    transfer(&mut g, &client, x);
    swap(&mut g, &client, y, Stop::Kill, upgraded);
    // x (upgraded) leads; z (braft) installs x's snapshot, then leads and
    // sends its own snapshot to y (upgraded).
    install_snapshot_from_leader(&mut g, &client, z, Kind::Braft);
    transfer(&mut g, &client, z);
    install_snapshot_from_leader(&mut g, &client, y, upgraded);
    // The last braft replica, the leader, goes: every replica is upgraded.
    swap(&mut g, &client, z, Stop::Term, upgraded);
    // Roll one replica back to braft.
    let leader = g.wait_leader("a leader", STEP_TIMEOUT);
    let back = (0..3).find(|&i| i != leader).unwrap();
    swap(&mut g, &client, back, Stop::Interrupt, Kind::Braft);
    if upgraded == Kind::Rraft {
        // Forward again, then braft_compat off: a replica with it and one
        // without do not answer each other's calls (braft's RaftService
        // against rraft's frames), so every replica restarts at once.
        swap(&mut g, &client, back, Stop::Interrupt, Kind::Rraft);
        for i in 0..3 {
            g.stop_replica(i, Stop::Term);
        }
        for i in 0..3 {
            g.start_replica(i, Kind::RraftPlain);
        }
        check_step(
            &mut g,
            &client,
            None,
            "every replica restarted without braft_compat",
        );
        for i in 0..3 {
            g.wait_caught_up(i, STEP_TIMEOUT);
        }
    }

    let acks = client.finish(&g.disturbed.clone());
    let value = g.final_value();
    acks.check(value);
    let unclean = g.stop_all();
    assert!(unclean.is_empty(), "{}", unclean.join("\n"));
}

#[test]
#[ignore = "a replica with braft_compat and one without do not answer each other's Raft \
            calls (braft's RaftService against rraft's frames), so the option is cleared \
            on every replica at once; run with --ignored once a plain node serves both"]
fn braft_compat_is_cleared_one_replica_at_a_time() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let bins = Binaries::find(&braft);
    if let Some(why) = bins.rraft_cannot_join_braft() {
        eprintln!("SKIPPED clearing braft_compat: {why}");
        return;
    }
    let mut g = MixedGroup::start(bins, "compat_off", &[Kind::Rraft; 3], None);
    let client = g.start_client(CLIENT_THREADS);
    check_step(
        &mut g,
        &client,
        None,
        "rraft group with braft_compat under load",
    );
    for i in 0..3 {
        swap(&mut g, &client, i, Stop::Term, Kind::RraftPlain);
    }
    let acks = client.finish(&g.disturbed.clone());
    let value = g.final_value();
    acks.check(value);
    let unclean = g.stop_all();
    assert!(unclean.is_empty(), "{}", unclean.join("\n"));
}
