//! The HTTP status pages on a server's port: `/raft_stat` lists every node
//! of the server and `/metrics` exports them in Prometheus text format; both
//! agree with the node's status. Frames and HTTP share the port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::common::*;

const LIMIT: Duration = Duration::from_secs(20);

/// One HTTP GET over a plain socket: (status code, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (code, body.to_string())
}

fn metric(body: &str, name: &str, peer: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("peer=\"{peer}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no {name} for {peer} in:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn raft_stat_and_metrics_describe_every_node_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let Group {
        server, members, ..
    } = start_group("pages", dir.path(), |_, _| {});
    let port = server.port();
    let leader = leader_of(&members, LIMIT);
    assert_eq!(propose_many(&members[leader].node, "w", 20, 4), 20);
    let leader_id = &members[leader].id;
    wait_for(LIMIT, "every node to apply the writes", || {
        members
            .iter()
            .all(|m| m.node.status().unwrap().applied_index >= 21)
    });

    let (code, stat) = get(port, "/raft_stat");
    assert_eq!(code, 200);
    for m in &members {
        assert!(stat.contains(&format!("[pages] {}", m.id)), "{stat}");
    }
    assert!(stat.contains("state: Leader"), "{stat}");
    assert!(stat.contains(&format!("leader: {leader_id}")), "{stat}");
    assert_eq!(stat.matches("replicator ").count(), 2, "{stat}");

    let (code, metrics) = get(port, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE rraft_node_term gauge"),
        "{metrics}"
    );
    for m in &members {
        let st = m.node.status().unwrap();
        assert_eq!(metric(&metrics, "rraft_node_term", &m.id), st.term);
        assert!(metric(&metrics, "rraft_node_applied_index", &m.id) >= 21);
        assert_eq!(
            metric(&metrics, "rraft_node_is_leader", &m.id),
            u64::from(m.id == *leader_id)
        );
        assert!(metric(&metrics, "rraft_log_writer_batches_total", &m.id) > 0);
    }
    assert!(
        metrics.contains("rraft_transport_messages_in_total "),
        "{metrics}"
    );

    let (code, _) = get(port, "/nope");
    assert_eq!(code, 404);
    // The port still speaks frames after the HTTP connections.
    assert_eq!(propose_many(&members[leader].node, "after", 5, 1), 5);

    // A real HTTP client, where one is installed.
    match std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/raft_stat")])
        .output()
    {
        Ok(out) if out.status.success() => {
            assert!(String::from_utf8_lossy(&out.stdout).contains("[pages]"));
        }
        Ok(out) => panic!("curl failed: {out:?}"),
        Err(_) => eprintln!("curl is not installed: checked with the plain socket client only"),
    }
    for m in &members {
        stop(m);
    }
    server.stop();
}
