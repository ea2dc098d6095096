//! Dispatch and construction: `step` never panics and refuses malformed
//! messages, whatever a peer sends; `new` refuses an inconsistent state.

/// The whole core under randomized schedules and faults.
mod randomized;

use bytes::Bytes;

use crate::rng::Rng;
use crate::testing::*;
use crate::*;

fn random_message(rng: &mut Rng, ids: &[&str]) -> Message {
    let pick = |rng: &mut Rng| ids[rng.range(0, ids.len() as u64) as usize].to_string();
    let small = |rng: &mut Rng| match rng.range(0, 6) {
        0 => 0,
        1 => u64::MAX,
        2 => u64::MAX - 1,
        _ => rng.range(0, 30),
    };
    let n = rng.range(0, 4);
    let start = small(rng);
    let entries = (0..n)
        .map(|i| Entry {
            term: small(rng),
            index: if rng.chance(1, 2) {
                start.wrapping_add(i + 1)
            } else {
                small(rng)
            },
            entry_type: rng.range(0, 5) as i32 - 1,
            data: Bytes::from(vec![rng.range(0, 255) as u8; rng.range(0, 8) as usize]),
        })
        .collect();
    Message {
        msg_type: rng.range(0, 15) as i32 - 1,
        from: if rng.chance(1, 20) {
            PeerId::empty()
        } else {
            pick(rng).into()
        },
        to: if rng.chance(1, 10) {
            "zz".into()
        } else {
            pick(rng).into()
        },
        term: small(rng),
        log_term: small(rng),
        index: start,
        entries,
        commit: small(rng),
        reject: rng.chance(1, 2),
        reject_hint: small(rng),
        hint_term: small(rng),
        snapshot: if rng.chance(1, 3) {
            Some(SnapshotMeta {
                last_index: small(rng),
                last_term: small(rng),
                configuration: if rng.chance(1, 2) {
                    Some(conf(&["a", "b"]))
                } else {
                    None
                },
            })
        } else {
            None
        },
        context: if rng.chance(1, 2) {
            Bytes::from(vec![0u8; 8])
        } else {
            Bytes::new()
        },
        flight: small(rng),
        follower_last: if rng.chance(1, 2) {
            Some(small(rng))
        } else {
            None
        },
        quiesce: rng.chance(1, 4),
    }
}

/// `Message` as prost's derive writes it, with `String` ids: the schema
/// `Message`'s hand-written encoding must match byte for byte.
#[derive(Clone, PartialEq, ::prost::Message)]
struct DerivedMessage {
    #[prost(enumeration = "MessageType", tag = "1")]
    msg_type: i32,
    #[prost(string, tag = "2")]
    from: String,
    #[prost(string, tag = "3")]
    to: String,
    #[prost(uint64, tag = "4")]
    term: u64,
    #[prost(uint64, tag = "5")]
    log_term: u64,
    #[prost(uint64, tag = "6")]
    index: u64,
    #[prost(message, repeated, tag = "7")]
    entries: Vec<Entry>,
    #[prost(uint64, tag = "8")]
    commit: u64,
    #[prost(bool, tag = "9")]
    reject: bool,
    #[prost(uint64, tag = "10")]
    reject_hint: u64,
    #[prost(uint64, tag = "11")]
    hint_term: u64,
    #[prost(message, optional, tag = "12")]
    snapshot: Option<SnapshotMeta>,
    #[prost(bytes = "bytes", tag = "13")]
    context: Bytes,
    #[prost(uint64, tag = "14")]
    flight: u64,
    #[prost(uint64, optional, tag = "15")]
    follower_last: Option<u64>,
    #[prost(bool, tag = "16")]
    quiesce: bool,
}

/// `HardState` as prost's derive writes it.
#[derive(Clone, PartialEq, ::prost::Message)]
struct DerivedHardState {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(string, tag = "2")]
    vote: String,
    #[prost(uint64, tag = "3")]
    commit: u64,
}

impl DerivedMessage {
    fn of(m: &Message) -> DerivedMessage {
        DerivedMessage {
            msg_type: m.msg_type,
            from: m.from.to_string(),
            to: m.to.to_string(),
            term: m.term,
            log_term: m.log_term,
            index: m.index,
            entries: m.entries.clone(),
            commit: m.commit,
            reject: m.reject,
            reject_hint: m.reject_hint,
            hint_term: m.hint_term,
            snapshot: m.snapshot.clone(),
            context: m.context.clone(),
            flight: m.flight,
            follower_last: m.follower_last,
            quiesce: m.quiesce,
        }
    }
}

#[test]
fn messages_encode_and_decode_as_the_derived_schema() {
    use prost::Message as _;
    let mut rng = Rng::new(7);
    let ids = ["10.0.0.1:8100:0", "10.0.0.2:8100:0", "b", ""];
    for _ in 0..5000 {
        let m = random_message(&mut rng, &ids);
        let derived = DerivedMessage::of(&m);
        let bytes = m.encode_to_vec();
        assert_eq!(bytes, derived.encode_to_vec(), "{m:?}");
        assert_eq!(m.encoded_len(), bytes.len());
        let frame = Bytes::from(bytes);
        let back = Message::decode(frame.clone()).expect("decodes");
        assert_eq!(back, m);
        assert_eq!(
            DerivedMessage::of(&back),
            DerivedMessage::decode(frame.clone()).unwrap()
        );
        if !back.from.is_empty() {
            // Decoded ids are the decoding thread's copies, not slices of
            // the buffer (which they would keep alive).
            let start = back.from.as_bytes().as_ptr() as usize;
            let frame_start = frame.as_ptr() as usize;
            assert!(start < frame_start || start >= frame_start + frame.len());
            let twice = Message::decode(frame.clone()).expect("decodes");
            assert!(twice.from.same_bytes(&back.from));
        }
    }
    for (term, vote, commit) in [
        (0, "", 0),
        (7, "10.0.0.1:8100:0", 3),
        (u64::MAX, "b", u64::MAX),
    ] {
        let hs = HardState {
            term,
            vote: vote.into(),
            commit,
        };
        let derived = DerivedHardState {
            term,
            vote: vote.to_string(),
            commit,
        };
        let bytes = hs.encode_to_vec();
        assert_eq!(bytes, derived.encode_to_vec());
        assert_eq!(hs.encoded_len(), bytes.len());
        assert_eq!(HardState::decode(&bytes[..]).unwrap(), hs);
    }
    // An id that is not UTF-8 is refused, as prost refuses a `String`.
    let mut bad = DerivedMessage::of(&msg(MessageType::Heartbeat, "a", "b", 1)).encode_to_vec();
    let at = bad.iter().position(|&b| b == b'a').unwrap();
    bad[at] = 0xff;
    assert!(Message::decode(&bad[..]).is_err());
    assert!(DerivedMessage::decode(&bad[..]).is_err());
}

#[test]
fn step_never_panics_on_garbage() {
    let ids = ["a", "b", "c", "x", ""];
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let mut net = Network::new(&["a", "b", "c"]);
        if seed % 2 == 0 {
            net.elect("a");
            net.propose("a", "v").unwrap();
        }
        for _ in 0..200 {
            let m = random_message(&mut rng, &ids);
            let to = ["a", "b", "c"][rng.range(0, 3) as usize];
            let _ = net.raft_mut(to).step(m);
            // Keep the nodes' outputs flowing, including to each other.
            for id in ["a", "b", "c"] {
                drain_msgs(net.raft_mut(id));
            }
            if rng.chance(1, 5) {
                net.raft_mut(to).tick();
            }
            let _ = net.raft_mut(to).status();
        }
    }
}

#[test]
fn malformed_messages_are_refused() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut m = msg(MessageType::Append, "", "b", 1);
    assert!(matches!(b.step(m.clone()), Err(Error::Invalid(_))));
    m.from = "a".into();
    m.msg_type = 99;
    assert!(matches!(b.step(m.clone()), Err(Error::Invalid(_))));
    m.msg_type = MessageType::Append as i32;
    m.entries = vec![entry(5, 1)];
    assert!(
        matches!(b.step(m.clone()), Err(Error::Invalid(_))),
        "non-contiguous entries"
    );
    let mut s = msg(MessageType::InstallSnapshot, "a", "b", 1);
    s.snapshot = None;
    assert!(matches!(b.step(s), Err(Error::Invalid(_))));
    // Messages for someone else or from ourselves are ignored.
    let mut other = msg(MessageType::Vote, "a", "q", 5);
    other.index = 10;
    assert!(b.step(other).is_ok());
    assert_eq!(b.term(), 0);
}

#[test]
fn append_beyond_the_log_is_rejected_not_applied() {
    let mut b = new_raft("b", &["a", "b", "c"]);
    let mut m = msg(MessageType::Append, "a", "b", 1);
    m.index = 1_000_000;
    m.log_term = 1;
    m.commit = 2_000_000;
    b.step(m).unwrap();
    assert_eq!(b.commit_index(), 0);
    let out = drain_msgs(&mut b);
    assert!(out[0].reject);
    assert_eq!(out[0].reject_hint, 0);
}

#[test]
fn responses_from_strangers_are_ignored_by_the_leader() {
    let mut net = Network::three_led_by_a();
    let t = net.raft("a").term();
    let mut ack = msg(MessageType::AppendResponse, "zz", "a", t);
    ack.index = 1000;
    net.raft_mut("a").step(ack).unwrap();
    let mut ack = msg(MessageType::AppendResponse, "b", "a", t);
    ack.index = 1000;
    net.raft_mut("a").step(ack).unwrap();
    assert!(net.raft("a").commit_index() <= net.raft("a").last_index());
    let mut rej = msg(MessageType::AppendResponse, "b", "a", t);
    rej.reject = true;
    rej.index = 1;
    rej.reject_hint = u64::MAX;
    net.raft_mut("a").step(rej).unwrap();
    net.settle();
    net.propose("a", "still works").unwrap();
    net.tick();
    assert_eq!(net.applied_data("b"), vec!["still works"]);
}

#[test]
fn restart_with_an_inconsistent_state_is_refused() {
    let init = InitialState {
        hard_state: hard_state(1, 5),
        ..Default::default()
    };
    assert!(Raft::new(test_config("a"), MemStorage::new(), init).is_err());
    let mut storage = MemStorage::new();
    storage.reset(10);
    assert!(
        Raft::new(test_config("a"), storage, InitialState::default()).is_err(),
        "log starting after 1 without a snapshot"
    );
}

/// A log whose reads can be made to fail.
struct FlakyStorage {
    inner: MemStorage,
    fail: std::rc::Rc<std::cell::Cell<bool>>,
}

impl LogStorage for FlakyStorage {
    fn first_index(&self) -> u64 {
        self.inner.first_index()
    }
    fn last_index(&self) -> u64 {
        self.inner.last_index()
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if self.fail.get() {
            return Err(StorageError::Io("disk on fire".into()));
        }
        self.inner.term(index)
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if self.fail.get() {
            return Err(StorageError::Io("disk on fire".into()));
        }
        self.inner.entries(lo, hi, max_bytes)
    }
}

#[test]
fn storage_read_errors_are_retried_not_fatal() {
    let fail = std::rc::Rc::new(std::cell::Cell::new(false));
    let mut inner = MemStorage::new();
    inner
        .append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
        .unwrap();
    let init = InitialState {
        hard_state: hard_state(1, 10),
        initial_conf: conf(&["a", "b", "c"]),
        applied: 10,
        ..Default::default()
    };
    let storage = FlakyStorage {
        inner,
        fail: fail.clone(),
    };
    let mut a = Raft::new(test_config("a"), storage, init).unwrap();
    win_election(&mut a, "b", 2);
    assert!(a.is_leader());
    let take = |a: &mut Raft<FlakyStorage>| {
        let rd = a.ready();
        a.storage_mut().inner.append(&rd.entries).unwrap();
        if let Some(e) = rd.entries.last() {
            a.on_persisted(e.index, e.term);
        }
        rd.messages
    };
    take(&mut a);
    // b has nothing: it rejects, and the leader must read old entries.
    fail.set(true);
    let mut rej = msg(MessageType::AppendResponse, "b", "a", 2);
    rej.reject = true;
    rej.index = 10;
    rej.reject_hint = 0;
    a.step(rej).unwrap();
    let out = take(&mut a);
    assert!(
        out.iter()
            .all(|m| m.kind() != Some(MessageType::Append) || m.to != "b"),
        "nothing readable, nothing sent"
    );
    a.tick();
    take(&mut a);
    fail.set(false);
    a.step(msg(MessageType::HeartbeatResponse, "b", "a", 2))
        .unwrap();
    let out = take(&mut a);
    let app = out
        .iter()
        .find(|m| m.kind() == Some(MessageType::Append) && m.to == "b")
        .expect("retried once the disk answers");
    assert_eq!(app.index, 0);
    assert_eq!(app.entries.len(), 11);
}

const A: &str = "10.0.0.1:8100:0";
const B: &str = "10.0.0.2:8100:0";
const C: &str = "10.0.0.3:8100:0";

#[test]
fn a_leader_addresses_each_peer_with_one_copy_of_its_id() {
    let mut r = new_raft(A, &[A, B, C]);
    win_election(&mut r, B, 1);
    let mut sent = drain_msgs(&mut r);
    let last = r.status().last_index;
    // The answer names B in bytes of its own, as a decoded message does.
    r.step(append_ack(B, A, 1, last)).unwrap();
    propose_each(&mut r, ["x".to_string()]);
    sent.extend(drain_msgs(&mut r));
    // (The campaign's requests went out before the progress table was.)
    let to_b: Vec<&Message> = sent
        .iter()
        .filter(|m| m.to == B && m.kind() == Some(MessageType::Append))
        .collect();
    assert!(to_b.len() >= 2, "{sent:?}");
    assert!(to_b.iter().all(|m| m.to.same_bytes(&to_b[0].to)));
    assert!(sent.iter().all(|m| m.from.same_bytes(&sent[0].from)));
}

#[test]
fn a_follower_answers_its_leader_with_one_copy_of_its_id() {
    let mut r = new_raft(B, &[A, B, C]);
    let mut answers = Vec::new();
    for _ in 0..3 {
        // Each heartbeat names the leader in bytes of its own.
        let mut beat = msg(MessageType::Heartbeat, A, B, 1);
        beat.index = 1;
        r.step(beat).unwrap();
        answers.extend(drain_msgs(&mut r));
    }
    let to_a: Vec<&Message> = answers.iter().filter(|m| m.to == A).collect();
    assert_eq!(to_a.len(), 3, "{answers:?}");
    assert!(to_a.iter().all(|m| m.to.same_bytes(&to_a[0].to)));
}
