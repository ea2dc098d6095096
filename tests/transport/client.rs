//! GroupClient: finds the leader among three servers, follows redirects
//! when leadership moves, retries elsewhere when a peer dies, and honours the
//! overall timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rraft::proto::Message;
use rraft::transport::{codes, GroupClient, NodeHandle, Request, Responder, RpcError, Server};

use super::runtime;

const NONE: usize = usize::MAX;

/// Three servers of group "g"; `leader` holds the index of the leader (or
/// NONE). The leader's node hints itself; followers' nodes know nothing, but
/// their "put" handlers answer EPERM with the leader's peer id.
struct Cluster {
    servers: Vec<Arc<Server>>,
    ids: Vec<String>,
    leader: Arc<AtomicUsize>,
    hits: Arc<Mutex<Vec<usize>>>,
}

struct Node {
    me: usize,
    ids: Arc<Vec<String>>,
    leader: Arc<AtomicUsize>,
}

impl NodeHandle for Node {
    fn deliver(&self, _msgs: Vec<Message>) {}
    fn leader_hint(&self) -> Option<String> {
        let l = self.leader.load(Ordering::SeqCst);
        (l == self.me).then(|| self.ids[l].clone())
    }
}

fn cluster(rt: &tokio::runtime::Runtime) -> Cluster {
    let servers: Vec<_> = (0..3)
        .map(|_| Server::bind("127.0.0.1:0", rt.handle()).unwrap())
        .collect();
    let ids: Arc<Vec<String>> = Arc::new(
        servers
            .iter()
            .map(|s| format!("{}:0", s.local_addr()))
            .collect(),
    );
    let leader = Arc::new(AtomicUsize::new(1));
    let hits = Arc::new(Mutex::new(Vec::new()));
    for (i, s) in servers.iter().enumerate() {
        let node = Arc::new(Node {
            me: i,
            ids: ids.clone(),
            leader: leader.clone(),
        });
        s.register_node("g", &ids[i], node).unwrap();
        let (ids2, leader2, hits2) = (ids.clone(), leader.clone(), hits.clone());
        s.add_method(
            "put",
            Arc::new(move |req: Request, r: Responder| {
                hits2.lock().unwrap().push(i);
                let l = leader2.load(Ordering::SeqCst);
                assert_eq!(req.group, "g");
                if l == i {
                    let mut out = format!("{i}:").into_bytes();
                    out.extend_from_slice(&req.payload);
                    r.reply(Bytes::from(out));
                } else if l == NONE {
                    r.reply_error(codes::EPERM, "no leader", "");
                } else {
                    r.reply_error(codes::EPERM, "not leader", &ids2[l]);
                }
            }),
        )
        .unwrap();
        s.add_method(
            "app_error",
            Arc::new(|_req: Request, r: Responder| {
                r.reply_error(10002, "state machine says no", "")
            }),
        )
        .unwrap();
    }
    Cluster {
        servers,
        ids: ids.to_vec(),
        leader,
        hits,
    }
}

const T: Duration = Duration::from_secs(5);

#[test]
fn finds_and_follows_the_leader() {
    let rt = runtime();
    let c = cluster(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", c.ids.clone());
    assert_eq!(client.leader(), None);

    let r = client
        .call_blocking("put", Bytes::from_static(b"a"), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"1:a");
    assert_eq!(client.leader().as_deref(), Some(c.ids[1].as_str()));
    assert_eq!(
        *c.hits.lock().unwrap(),
        vec![1],
        "found through raft.get_leader, no wasted call"
    );

    // Leadership moves: the old leader redirects, the client follows.
    c.leader.store(2, Ordering::SeqCst);
    c.hits.lock().unwrap().clear();
    let r = client
        .call_blocking("put", Bytes::from_static(b"b"), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"2:b");
    assert_eq!(*c.hits.lock().unwrap(), vec![1, 2]);
    assert_eq!(client.leader().as_deref(), Some(c.ids[2].as_str()));

    // A wrong cached leader is corrected too.
    client.set_leader(Some(c.ids[0].clone()));
    let r = client
        .call_blocking("put", Bytes::from_static(b"c"), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"2:c");

    // Application errors are returned, not retried.
    c.hits.lock().unwrap().clear();
    match client.call_blocking("app_error", Bytes::new(), T) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, 10002),
        other => panic!("{other:?}"),
    }

    // refresh_leader asks the peers.
    client.set_leader(None);
    assert_eq!(client.refresh_leader_blocking(T).unwrap(), c.ids[2]);
    assert_eq!(client.leader().as_deref(), Some(c.ids[2].as_str()));

    // Async and callback variants.
    let r = rt
        .block_on(client.call("put", Bytes::from_static(b"d"), T))
        .unwrap();
    assert_eq!(&r.payload[..], b"2:d");
    let (tx, rx) = std::sync::mpsc::channel();
    client.call_with("put", Bytes::from_static(b"e"), T, move |res| {
        tx.send(res).unwrap()
    });
    assert_eq!(&rx.recv().unwrap().unwrap().payload[..], b"2:e");
}

#[test]
fn dead_leader_then_retry_elsewhere() {
    let rt = runtime();
    let c = cluster(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", c.ids.clone());
    assert!(client
        .call_blocking("put", Bytes::from_static(b"x"), T)
        .is_ok());
    assert_eq!(client.leader().as_deref(), Some(c.ids[1].as_str()));

    // The leader's process dies; a new leader is elected after a while. The
    // call may land on the dying connection (outcome unknown): "put" is
    // idempotent here, so the client may resend it.
    client.set_idempotent(true);
    c.servers[1].stop();
    c.leader.store(NONE, Ordering::SeqCst);
    let leader = c.leader.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        leader.store(0, Ordering::SeqCst);
    });
    let t0 = Instant::now();
    let r = client
        .call_blocking("put", Bytes::from_static(b"y"), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"0:y");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(t0.elapsed() < T);
    assert_eq!(client.leader().as_deref(), Some(c.ids[0].as_str()));

    // A peer list containing a dead peer and a garbage entry still works.
    let client2 = GroupClient::new(
        rt.handle().clone(),
        "g",
        vec![
            "bad".into(),
            c.ids[1].clone(),
            c.ids[2].clone(),
            c.ids[0].clone(),
        ],
    );
    let r = client2
        .call_blocking("put", Bytes::from_static(b"z"), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"0:z");
}

#[test]
fn total_timeout_is_honoured() {
    let rt = runtime();
    let c = cluster(&rt);
    c.leader.store(NONE, Ordering::SeqCst);
    let client = GroupClient::new(rt.handle().clone(), "g", c.ids.clone());
    for timeout in [Duration::from_millis(50), Duration::from_millis(300)] {
        let t0 = Instant::now();
        assert_eq!(
            client.call_blocking("put", Bytes::new(), timeout),
            Err(RpcError::Timeout)
        );
        let el = t0.elapsed();
        assert!(
            el >= timeout && el < timeout + Duration::from_millis(1000),
            "{el:?} for {timeout:?}"
        );
    }
    // The followers keep naming a leader that is dead: redirects to a
    // refused connection, again and again, still bounded by the deadline.
    c.leader.store(0, Ordering::SeqCst);
    c.servers[0].stop();
    let t0 = Instant::now();
    let res = client.call_blocking("put", Bytes::new(), Duration::from_millis(200));
    assert_eq!(res, Err(RpcError::Timeout));
    assert!(t0.elapsed() < Duration::from_millis(1200));

    // All peers down: connection failures until the deadline.
    for s in &c.servers {
        s.stop();
    }
    let t0 = Instant::now();
    assert_eq!(
        client.call_blocking("put", Bytes::new(), Duration::from_millis(200)),
        Err(RpcError::Timeout)
    );
    assert!(t0.elapsed() < Duration::from_millis(1200));

    // No peers at all: an immediate error.
    let empty = GroupClient::new(rt.handle().clone(), "g", vec![]);
    assert!(matches!(
        empty.call_blocking("put", Bytes::new(), T),
        Err(RpcError::BadAddress(_))
    ));
}

/// By default a request that left is never sent twice: when the leader dies
/// before answering, the caller gets the unknown outcome and the handler ran
/// exactly once.
#[test]
fn unknown_outcome_is_returned_not_resent() {
    let rt = runtime();
    let server = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (calls2, held2) = (calls.clone(), held.clone());
    server
        .add_method(
            "apply_once",
            Arc::new(
                move |_req: rraft::transport::Request, responder: rraft::transport::Responder| {
                    calls2.fetch_add(1, Ordering::SeqCst);
                    held2.lock().unwrap().push(responder); // never answered
                },
            ),
        )
        .unwrap();
    let id = format!("{}:0", server.local_addr());
    let client = GroupClient::new(rt.handle().clone(), "g", vec![id.clone()]);
    client.set_leader(Some(id));
    let stopper = server.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stopper.stop();
    });
    let outcome = client.call_blocking(
        "apply_once",
        Bytes::from_static(b"x"),
        Duration::from_secs(3),
    );
    assert!(matches!(outcome, Err(RpcError::Lost(_))), "{outcome:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the request was not resent"
    );
    assert_eq!(
        client.leader(),
        None,
        "the leader is forgotten for the next call"
    );
}

/// A server whose "hold" method never answers (its responders are kept)
/// and whose "echo" answers the payload; answers its peer id.
fn holding_server(
    rt: &tokio::runtime::Runtime,
) -> (Arc<Server>, String, Arc<Mutex<Vec<Responder>>>) {
    let server = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let held2 = held.clone();
    server
        .add_method(
            "hold",
            Arc::new(move |_req: Request, r: Responder| held2.lock().unwrap().push(r)),
        )
        .unwrap();
    server
        .add_method(
            "echo",
            Arc::new(|req: Request, r: Responder| r.reply(req.payload)),
        )
        .unwrap();
    let id = format!("{}:0", server.local_addr());
    (server, id, held)
}

type Outcome = Result<rraft::transport::Response, RpcError>;

fn call_with_channel(
    client: &GroupClient,
    method: &str,
    payload: &'static [u8],
    timeout: Duration,
) -> std::sync::mpsc::Receiver<(Outcome, std::thread::ThreadId, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    client.call_with(method, Bytes::from_static(payload), timeout, move |res| {
        let _ = tx.send((res, std::thread::current().id(), Instant::now()));
    });
    rx
}

/// A completion call on the cached leader ends at its own deadline, also
/// when it is earlier than that of a call already waiting on the same
/// connection, and the waiting call is not disturbed by it.
#[test]
fn completion_calls_end_at_their_deadlines() {
    let rt = runtime();
    let (_server, id, held) = holding_server(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", vec![id.clone()]);
    client.set_leader(Some(id.clone()));
    let long = call_with_channel(&client, "hold", b"long", Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let short = call_with_channel(&client, "hold", b"short", Duration::from_millis(150));
    let (res, on, at) = short
        .recv_timeout(Duration::from_secs(2))
        .expect("the short call ended");
    assert_eq!(res.unwrap_err(), RpcError::Timeout);
    let took = at - t0;
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    assert_ne!(
        on,
        std::thread::current().id(),
        "the completion ran on the runtime"
    );
    assert!(long.try_recv().is_err(), "the longer call still waits");
    // The held requests reached the server; answering the long one ends it.
    super::wait_until("both requests held", T, || held.lock().unwrap().len() == 2);
    let first = held.lock().unwrap().remove(0);
    first.reply(Bytes::from_static(b"late"));
    let (res, _, _) = long
        .recv_timeout(Duration::from_secs(2))
        .expect("the long call ended");
    assert_eq!(&res.unwrap().payload[..], b"late");
    // Answering the expired one is ignored.
    held.lock()
        .unwrap()
        .remove(0)
        .reply(Bytes::from_static(b"too late"));
    // The timeout made the client forget the leader (outcome unknown).
    assert_eq!(client.leader(), None);
    client.set_leader(Some(id));
    let (res, _, _) = call_with_channel(&client, "echo", b"after", T)
        .recv()
        .unwrap();
    assert_eq!(&res.unwrap().payload[..], b"after");
}

/// Many completion calls in flight on one connection each get their own
/// answer, exactly once.
#[test]
fn pipelined_completion_calls_each_get_their_answer() {
    let rt = runtime();
    let (_server, id, _held) = holding_server(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", vec![id.clone()]);
    client.set_leader(Some(id));
    let (tx, rx) = std::sync::mpsc::channel();
    const N: usize = 500;
    for i in 0..N {
        let tx = tx.clone();
        client.call_with("echo", Bytes::from(i.to_string()), T, move |res| {
            tx.send((i, res)).unwrap()
        });
    }
    drop(tx);
    let mut seen = vec![false; N];
    for (i, res) in rx.iter() {
        assert_eq!(res.unwrap().payload, Bytes::from(i.to_string()));
        assert!(
            !std::mem::replace(&mut seen[i], true),
            "call {i} completed twice"
        );
    }
    assert!(seen.iter().all(|s| *s), "every call completed");
}

/// A completion call on a cached leader that is not the leader follows
/// the redirect; one whose connection is lost after sending gets the
/// unknown outcome; both through the callback.
#[test]
fn completion_calls_follow_redirects_and_report_lost_connections() {
    let rt = runtime();
    let c = cluster(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", c.ids.clone());
    client.set_leader(Some(c.ids[0].clone()));
    let (res, _, _) = call_with_channel(&client, "put", b"r", T).recv().unwrap();
    assert_eq!(&res.unwrap().payload[..], b"1:r");
    assert_eq!(client.leader().as_deref(), Some(c.ids[1].as_str()));

    let (server, id, held) = holding_server(&rt);
    let client = GroupClient::new(rt.handle().clone(), "g", vec![id.clone()]);
    client.set_leader(Some(id));
    let rx = call_with_channel(&client, "hold", b"x", T);
    super::wait_until("the request held", T, || held.lock().unwrap().len() == 1);
    server.stop();
    let (res, _, _) = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the call ended");
    assert!(matches!(res, Err(RpcError::Lost(_))), "{res:?}");
    assert_eq!(client.leader(), None);
}

/// A completion waiting when the client's runtime shuts down still runs
/// (with `Shutdown`).
#[test]
fn completion_runs_when_the_runtime_shuts_down() {
    let server_rt = runtime();
    let (_server, id, held) = holding_server(&server_rt);
    let rt = runtime();
    let client = GroupClient::new(rt.handle().clone(), "g", vec![id.clone()]);
    client.set_leader(Some(id));
    let rx = call_with_channel(&client, "hold", b"x", T);
    super::wait_until("the request held", T, || held.lock().unwrap().len() == 1);
    drop(client);
    drop(rt);
    let (res, _, _) = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the completion ran");
    assert_eq!(res.unwrap_err(), RpcError::Shutdown);
}
