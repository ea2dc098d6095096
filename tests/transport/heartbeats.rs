//! Coalesced heartbeats (one frame for the heartbeats of every group two
//! servers share) and the keepalive watch of idle peer connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rraft::proto::{Entry, Message, MessageType};
use rraft::transport::{Heartbeats, Server, Transport, TransportConfig};

use super::{runtime, wait_until, RecNode};

/// A heartbeat as the core sends it (naming its commit point's term), or
/// the answer to one.
fn heartbeat(from: &str, to: &str, term: u64, response: bool) -> Message {
    Message {
        msg_type: if response {
            MessageType::HeartbeatResponse
        } else {
            MessageType::Heartbeat
        } as i32,
        from: from.into(),
        to: to.into(),
        term,
        commit: term * 10,
        index: term * 100,
        context: Bytes::from(term.to_be_bytes().to_vec()),
        follower_last: response.then_some(term * 7),
        quiesce: term % 2 == 0,
        log_term: if response { 0 } else { term },
        ..Default::default()
    }
}

#[test]
fn heartbeats_round_trip_through_a_beat_and_other_messages_are_refused() {
    let mut beats = Heartbeats::default();
    let sent = vec![
        ("g1".to_string(), heartbeat("a:1:0", "b:1:0", 3, false)),
        ("g2".to_string(), heartbeat("b:1:0", "a:1:0", 4, true)),
        ("g3".to_string(), heartbeat("a:1:0", "b:1:0", 5, false)),
    ];
    for (g, m) in &sent {
        assert!(beats.push(g, m.clone()).is_none(), "a plain heartbeat fits");
    }
    assert_eq!(beats.peers.len(), 2, "each peer id listed once");
    let mut append = heartbeat("a:1:0", "b:1:0", 3, false);
    append.msg_type = MessageType::Append as i32;
    assert!(beats.push("g1", append).is_some());
    let mut rejected = heartbeat("a:1:0", "b:1:0", 3, true);
    rejected.reject = true;
    assert!(beats.push("g1", rejected).is_some(), "not representable");
    let mut answer_with_term = heartbeat("b:1:0", "a:1:0", 4, true);
    answer_with_term.log_term = 2;
    assert!(
        beats.push("g1", answer_with_term).is_some(),
        "an answer names no term of an entry"
    );
    assert_eq!(beats.into_messages(), sent);
}

#[test]
fn heartbeats_of_many_groups_travel_in_few_frames() {
    let rt = runtime();
    let b = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let to = format!("{}:0", b.local_addr());
    let groups = 200;
    let nodes: Vec<Arc<RecNode>> = (0..groups)
        .map(|g| {
            let node = Arc::new(RecNode::default());
            b.register_node(&format!("g{g}"), &to, node.clone())
                .unwrap();
            node
        })
        .collect();
    let t = Transport::new(rt.handle().clone());
    // The first message opens the connection; the rest queue meanwhile and
    // leave together.
    let mut append = heartbeat("127.0.0.1:1:0", &to, 1, false);
    append.msg_type = MessageType::Append as i32;
    append.entries = vec![Entry {
        term: 1,
        index: 1,
        entry_type: 1,
        data: Bytes::from_static(b"x"),
    }];
    t.send("g0", append.clone());
    for g in 0..groups {
        t.send(
            &format!("g{g}"),
            heartbeat("127.0.0.1:1:0", &to, g + 1, g % 3 == 0),
        );
    }
    wait_until("every heartbeat", Duration::from_secs(10), || {
        nodes.iter().map(|n| n.len()).sum::<usize>() == groups as usize + 1
    });
    for (g, node) in nodes.iter().enumerate() {
        let got = node.got.lock().unwrap();
        let beat = heartbeat("127.0.0.1:1:0", &to, g as u64 + 1, g % 3 == 0);
        assert_eq!(got.last(), Some(&beat), "group g{g}");
    }
    assert_eq!(nodes[0].got.lock().unwrap()[0], append, "the Append first");
    let s = t.stats();
    assert_eq!(s.messages_out, groups + 1);
    assert!(
        s.frames_out <= 4,
        "heartbeats are coalesced: {} frames for {} messages",
        s.frames_out,
        s.messages_out
    );
    t.stop();
    b.stop();
}

#[test]
fn keepalives_watch_an_idle_connection_and_a_stopped_server_is_reported() {
    let rt = runtime();
    let b = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let to = format!("{}:0", b.local_addr());
    let node = Arc::new(RecNode::default());
    b.register_node("g", &to, node.clone()).unwrap();
    let t = Transport::with_config(
        rt.handle().clone(),
        TransportConfig {
            keepalive: Duration::from_millis(20),
            idle_timeout: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let lost = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lost.clone();
    t.set_on_server_lost(Some(Arc::new(move |addr: &str| {
        seen.lock().unwrap().push(addr.to_string());
    })));
    t.send("g", heartbeat("127.0.0.1:1:0", &to, 1, false));
    wait_until("the heartbeat", Duration::from_secs(5), || node.len() == 1);
    // Idle far beyond idle_timeout: keepalives flow, the connection stays.
    wait_until("keepalives", Duration::from_secs(5), || {
        b.stats().keepalives_in >= 5
    });
    assert_eq!(t.stats().peer_connections_open, 1, "never retired");
    assert_eq!(node.len(), 1, "keepalives reach no node");
    assert!(lost.lock().unwrap().is_empty());
    b.stop();
    wait_until("the lost server reported", Duration::from_secs(5), || {
        !lost.lock().unwrap().is_empty()
    });
    assert_eq!(lost.lock().unwrap()[0], b.local_addr().to_string());
    assert!(t.stats().servers_lost >= 1);
    t.stop();
}
