//! rraft-cli against a live 3-node group in this process: status, list_peers,
//! snapshot, transfer_leader, remove_peer + add_peer, and the failures
//! (unreachable peer, unknown group, no leader, disable_cli).

use std::process::Command;
use std::time::Duration;

use super::common::{propose_many, start_member, stop, three_servers, wait_for};
use rraft::node::RaftServer;

const GROUP: &str = "cli";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_rraft-cli"))
        .args(args)
        .output()
        .expect("run rraft-cli");
    let res = Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    println!(
        "$ rraft-cli {}\n[exit {}]\n{}{}",
        args.join(" "),
        res.code,
        res.stdout,
        res.stderr
    );
    res
}

/// rraft-cli `op --group GROUP flags...`.
fn in_group(op: &str, flags: &[&str]) -> Out {
    cli(&[&[op, "--group", GROUP], flags].concat())
}

/// [`in_group`] that must succeed; its stdout.
fn ok(op: &str, flags: &[&str]) -> String {
    let out = in_group(op, flags);
    assert_eq!(
        out.code, 0,
        "rraft-cli {op} {flags:?} failed: {}",
        out.stderr
    );
    out.stdout
}

#[test]
fn cli_drives_a_live_group() {
    let c = three_servers(GROUP);
    let l = c.leader();
    assert_eq!(propose_many(&c.members[l].node, "x", 20, 8), 20);
    let leader = c.members[l].id.clone();
    let f = (l + 1) % 3;
    let follower = c.members[f].id.clone();

    // status of the leader, as text and as JSON (leader found from --conf).
    let text = ok("status", &["--peer", &leader]);
    assert!(text.contains("state:           Leader"), "{text}");
    assert!(text.contains("term:"), "{text}");
    assert!(text.contains("applied_index:"), "{text}");
    assert!(
        text.contains(&format!("peer {follower}: match_index")),
        "{text}"
    );
    assert!(text.contains(" lag "), "{text}");
    let json = ok("status", &["--conf", &c.conf, "--json"]);
    assert!(json.contains("\"state\":\"Leader\""), "{json}");
    assert!(
        json.contains(&format!("\"peer_id\":\"{leader}\"")),
        "{json}"
    );
    let text = ok("status", &["--peer", &follower]);
    assert!(text.contains("state:           Follower"), "{text}");

    // list_peers asked of a follower follows it to the leader.
    let peers = ok("list_peers", &["--peer", &follower]);
    let mut listed: Vec<&str> = peers.lines().collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = c.conf.split(',').collect();
    expected.sort_unstable();
    assert_eq!(listed, expected);

    // snapshot on a follower (once it applied the 20 entries).
    wait_for(Duration::from_secs(10), "the follower to apply 20", || {
        c.members[f].record.lock().unwrap().applied.len() >= 20
    });
    ok("snapshot", &["--peer", &follower]);
    let snap = c.members[f].node.status().unwrap().snapshot_index;
    assert!(snap >= 20, "snapshot index {snap}");

    // transfer_leader to the follower.
    let out = ok("transfer_leader", &["--conf", &c.conf, "--peer", &follower]);
    assert!(out.contains("moving to"), "{out}");
    wait_for(Duration::from_secs(10), "the transfer", || {
        c.members[f].node.is_leader()
    });

    // remove_peer then add_peer of a follower of the new leader.
    let r = (f + 1) % 3;
    let removed = c.members[r].id.clone();
    ok("remove_peer", &["--conf", &c.conf, "--peer", &removed]);
    let peers = ok("list_peers", &["--conf", &c.conf]);
    assert_eq!(peers.lines().count(), 2, "{peers}");
    assert!(!peers.contains(&removed), "{peers}");
    ok(
        "add_peer",
        &[
            "--conf",
            &c.conf,
            "--peer",
            &removed,
            "--timeout_ms",
            "10000",
        ],
    );
    let peers = ok("list_peers", &["--conf", &c.conf]);
    assert_eq!(peers.lines().count(), 3, "{peers}");

    // The group still works and every node converges.
    c.commit_everywhere("y", 10);

    // change_peers to the same voters succeeds at once.
    ok("change_peers", &["--conf", &c.conf, "--new_peers", &c.conf]);

    // Failures: an unknown group on a live node.
    let out = cli(&["status", "--group", "nosuch", "--peer", &leader]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("no node"), "{}", out.stderr);

    // remove a peer that is not a member: the node's refusal, exit 1.
    let out = in_group(
        "remove_peer",
        &["--conf", &c.conf, "--peer", "127.0.0.1:1:7"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("not a member"), "{}", out.stderr);

    for m in &c.members {
        stop(m);
    }
}

#[test]
fn cli_reports_unreachable_peers_and_leaders() {
    // Nothing listens on port 1.
    let out = in_group(
        "status",
        &["--peer", "127.0.0.1:1:0", "--timeout_ms", "2000"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach 127.0.0.1:1:0"),
        "{}",
        out.stderr
    );

    let out = in_group(
        "add_peer",
        &[
            "--conf",
            "127.0.0.1:1:0, 127.0.0.1:2:0",
            "--peer",
            "127.0.0.1:3:0",
            "--timeout_ms",
            "1000",
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("no leader of group"), "{}", out.stderr);

    // A malformed peer id is a usage error.
    let out = in_group("status", &["--peer", "not a peer"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("bad peer"), "{}", out.stderr);
}

#[test]
fn cli_is_refused_with_disable_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = RaftServer::start("127.0.0.1:0").unwrap();
    let id = format!("127.0.0.1:{}:0", server.port());
    let m = start_member(&server, "quiet", &id, dir.path(), &id, |o| {
        o.disable_cli = true
    });
    wait_for(Duration::from_secs(10), "the single node to lead", || {
        m.node.is_leader()
    });
    let out = cli(&["status", "--group", "quiet", "--peer", &id]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("disable_cli"), "{}", out.stderr);
    stop(&m);
}

#[test]
fn cli_reset_peer_recovers_a_group_that_lost_its_quorum() {
    let c = three_servers(GROUP);
    let survivor = c.lose_quorum();
    let out = in_group("transfer_leader", &["--conf", &c.conf]);
    assert_ne!(out.code, 0, "no leader to transfer from");
    let out = ok(
        "reset_peer",
        &["--peer", &survivor.id, "--new_peers", &survivor.id],
    );
    assert!(out.contains("reset to"), "{out}");
    wait_for(
        Duration::from_secs(10),
        "the survivor to lead alone",
        || survivor.node.is_leader(),
    );
    assert_eq!(propose_many(&survivor.node, "after-reset", 3, 3), 3);
    let peers = ok("list_peers", &["--peer", &survivor.id]);
    assert_eq!(peers.trim(), survivor.id);
    stop(survivor);
}
