//! User methods on the server and the RPC client: late replies from other
//! threads, dropped responders, unknown and reserved names, pipelining,
//! `raft.get_leader`, error kinds, and stop().

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rraft::proto::Message;
use rraft::transport::{codes, Error, NodeHandle, Request, Responder, RpcClient, RpcError, Server};

use super::runtime;

const T: Duration = Duration::from_secs(5);

struct Leader(Option<String>);

impl NodeHandle for Leader {
    fn deliver(&self, _msgs: Vec<Message>) {}
    fn leader_hint(&self) -> Option<String> {
        self.0.clone()
    }
}

fn setup(rt: &tokio::runtime::Runtime) -> (Arc<Server>, String, Arc<Mutex<Vec<Responder>>>) {
    let s = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let addr = s.local_addr().to_string();
    s.add_method(
        "echo",
        Arc::new(|req: Request, r: Responder| r.reply(req.payload)),
    )
    .unwrap();
    s.add_method(
        "later",
        Arc::new(|req: Request, r: Responder| {
            // Answer from another thread, after a delay derived from the payload.
            std::thread::spawn(move || {
                let ms = req.payload.first().copied().unwrap_or(0) as u64;
                std::thread::sleep(Duration::from_millis(ms));
                let mut out = b"late:".to_vec();
                out.extend_from_slice(&req.payload);
                r.reply(Bytes::from(out));
            });
        }),
    )
    .unwrap();
    s.add_method("drop", Arc::new(|_req: Request, r: Responder| drop(r)))
        .unwrap();
    s.add_method(
        "panic",
        Arc::new(|_req: Request, _r: Responder| panic!("handler bug")),
    )
    .unwrap();
    s.add_method(
        "fail",
        Arc::new(|req: Request, r: Responder| {
            r.reply_error(
                codes::EPERM,
                &format!("not leader of {}", req.group),
                "10.0.0.1:80:0",
            )
        }),
    )
    .unwrap();
    let parked = Arc::new(Mutex::new(Vec::new()));
    let p2 = parked.clone();
    s.add_method(
        "never",
        Arc::new(move |_req: Request, r: Responder| p2.lock().unwrap().push(r)),
    )
    .unwrap();
    (s, addr, parked)
}

#[test]
fn method_registration_rules() {
    let rt = runtime();
    let (s, _addr, _) = setup(&rt);
    let h = Arc::new(|_req: Request, r: Responder| r.reply(Bytes::new()));
    assert_eq!(
        s.add_method("echo", h.clone()),
        Err(Error::DuplicateMethod("echo".into()))
    );
    assert_eq!(
        s.add_method("raft.mine", h.clone()),
        Err(Error::ReservedMethod("raft.mine".into()))
    );
    assert_eq!(s.add_method("", h.clone()), Err(Error::EmptyName));
    s.add_internal_method("raft.mine", h.clone()).unwrap();
    assert!(s.add_internal_method("raft.mine", h.clone()).is_err());
    assert!(
        s.add_internal_method("raft.get_leader", h.clone()).is_err(),
        "built-in"
    );
    assert!(s.remove_method("raft.mine"));
    assert!(!s.remove_method("raft.mine"));
}

#[test]
fn calls_replies_and_errors() {
    let rt = runtime();
    let (s, addr, parked) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());

    let r = c
        .call_blocking(&addr, "echo", "g", Bytes::from_static(b"hi"), T)
        .unwrap();
    assert_eq!(r.payload, Bytes::from_static(b"hi"));
    assert_eq!(r.code, 0);

    let r = c
        .call_blocking(&addr, "later", "g", Bytes::from_static(&[30]), T)
        .unwrap();
    assert_eq!(&r.payload[..], b"late:\x1e");

    match c.call_blocking(&addr, "drop", "g", Bytes::new(), T) {
        Err(RpcError::Remote { code, text, .. }) => {
            assert_eq!(code, codes::EINTERNAL);
            assert!(text.contains("dropped"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match c.call_blocking(&addr, "panic", "g", Bytes::new(), T) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, codes::EINTERNAL),
        other => panic!("{other:?}"),
    }
    match c.call_blocking(&addr, "nosuch", "g", Bytes::new(), T) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, codes::ENOMETHOD),
        other => panic!("{other:?}"),
    }
    match c.call_blocking(&addr, "fail", "grp", Bytes::new(), T) {
        Err(e @ RpcError::Remote { .. }) => {
            assert_eq!(e.code(), codes::EPERM);
            assert_eq!(e.leader_hint(), Some("10.0.0.1:80:0"));
            assert!(e.to_string().contains("not leader of grp"));
        }
        other => panic!("{other:?}"),
    }

    // Timeout: the handler keeps the responder; answering later is harmless.
    let t0 = Instant::now();
    assert_eq!(
        c.call_blocking(
            &addr,
            "never",
            "g",
            Bytes::new(),
            Duration::from_millis(100)
        ),
        Err(RpcError::Timeout)
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    parked
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .reply(Bytes::from_static(b"too late"));
    // The connection still works after the stray answer.
    assert!(c.call_blocking(&addr, "echo", "g", Bytes::new(), T).is_ok());

    // Connection failure: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match c.call_blocking(&format!("127.0.0.1:{port}"), "echo", "g", Bytes::new(), T) {
        Err(RpcError::Connect(_)) => {}
        other => panic!("{other:?}"),
    }
    let st = c.stats();
    assert!(
        st.rpc_timeouts >= 1 && st.rpc_conn_failures >= 1 && st.connect_failures >= 1,
        "{st:?}"
    );
    assert!(s.stats().requests_in >= 8);
}

#[test]
fn many_calls_in_flight_on_one_connection() {
    let rt = runtime();
    let (s, addr, _) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let n = 300u32;
    let results: Vec<_> = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..n {
            // Delays in reverse order, so answers come back out of order.
            let delay = (20 - (i % 20)) as u8;
            let payload = Bytes::from(vec![delay, (i % 256) as u8, (i / 256) as u8]);
            tasks.push(tokio::spawn(c.call(&addr, "later", "g", payload, T)));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        assert_eq!(
            r.payload[6] as usize + 256 * r.payload[7] as usize,
            i,
            "matched by call id"
        );
    }
    assert_eq!(s.stats().connections_accepted, 1, "one pooled connection");
    let st = c.stats();
    assert!(st.flushes < n as u64, "requests are batched: {st:?}");
}

#[test]
fn get_leader_builtin() {
    let rt = runtime();
    let (s, addr, _) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let leader = "127.0.0.1:9999:1".to_string();
    s.register_node("g", "127.0.0.1:1:0", Arc::new(Leader(None)))
        .unwrap();
    s.register_node("g", "127.0.0.1:1:1", Arc::new(Leader(Some(leader.clone()))))
        .unwrap();
    s.register_node("h", "127.0.0.1:1:0", Arc::new(Leader(None)))
        .unwrap();
    let r = c
        .call_blocking(&addr, "raft.get_leader", "", Bytes::from_static(b"g"), T)
        .unwrap();
    assert_eq!(r.payload, Bytes::from(leader.clone()));
    assert_eq!(r.leader_hint, leader);
    match c.call_blocking(&addr, "raft.get_leader", "", Bytes::from_static(b"h"), T) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, codes::EAGAIN),
        other => panic!("{other:?}"),
    }
    match c.call_blocking(&addr, "raft.get_leader", "", Bytes::from_static(b"zz"), T) {
        Err(RpcError::Remote { code, .. }) => assert_eq!(code, codes::ENOENT),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stop_fails_fast() {
    let rt = runtime();
    let (s, addr, parked) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());
    assert!(c.call_blocking(&addr, "echo", "g", Bytes::new(), T).is_ok());
    // A call in flight when the server stops fails at once, not at its
    // timeout, as "lost": it had arrived, so its outcome is unknown.
    let pending = rt.spawn(c.call(&addr, "never", "g", Bytes::new(), Duration::from_secs(30)));
    while parked.lock().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    s.stop();
    assert!(matches!(
        rt.block_on(pending).unwrap(),
        Err(RpcError::Lost(_))
    ));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // New calls: refused (listener closed).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.call_blocking(&addr, "echo", "g", Bytes::new(), T) {
            Err(RpcError::Connect(_)) => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "server still answering: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // The server's own clients are stopped too.
    assert_eq!(
        s.rpc().call_blocking(&addr, "echo", "g", Bytes::new(), T),
        Err(RpcError::Shutdown)
    );
    assert_eq!(
        s.register_node("g", "127.0.0.1:1:0", Arc::new(Leader(None))),
        Err(Error::Stopped)
    );
    // Late replies after stop are no-ops.
    parked
        .lock()
        .unwrap()
        .drain(..)
        .for_each(|r| r.reply(Bytes::new()));
}

#[test]
fn unanswered_requests_push_back_on_the_caller() {
    let rt = runtime();
    let cfg = rraft::transport::TransportConfig {
        max_inflight_requests: 2,
        ..Default::default()
    };
    let s = Server::bind_with("127.0.0.1:0", rt.handle(), cfg).unwrap();
    let addr = s.local_addr().to_string();
    let parked = Arc::new(Mutex::new(Vec::<Responder>::new()));
    let p2 = parked.clone();
    s.add_method(
        "park",
        Arc::new(move |_req: Request, r: Responder| p2.lock().unwrap().push(r)),
    )
    .unwrap();
    let c = RpcClient::new(rt.handle().clone());
    let calls: Vec<_> = (0..5)
        .map(|_| rt.spawn(c.call(&addr, "park", "g", Bytes::new(), T)))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        parked.lock().unwrap().len(),
        2,
        "server stopped reading at the limit"
    );
    // Answer as they come: the rest get in.
    let deadline = Instant::now() + T;
    let mut answered = 0;
    while answered < 5 {
        assert!(Instant::now() < deadline);
        let batch: Vec<Responder> = parked.lock().unwrap().drain(..).collect();
        answered += batch.len();
        batch
            .into_iter()
            .for_each(|r| r.reply(Bytes::from_static(b"ok")));
        std::thread::sleep(Duration::from_millis(5));
    }
    for t in calls {
        assert_eq!(&rt.block_on(t).unwrap().unwrap().payload[..], b"ok");
    }
}

#[test]
fn sequential_calls_do_not_wait_for_delayed_acks() {
    // With Nagle's algorithm left on, each small request would wait for the
    // peer's delayed ACK (~40 ms): 2000 calls would take over a minute.
    let rt = runtime();
    let (_s, addr, _) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let t0 = Instant::now();
    rt.block_on(async {
        for i in 0..2000u32 {
            let r = c
                .call(&addr, "echo", "g", Bytes::from(i.to_be_bytes().to_vec()), T)
                .await
                .unwrap();
            assert_eq!(&r.payload[..], &i.to_be_bytes());
        }
    });
    let el = t0.elapsed();
    eprintln!("2000 sequential calls in {el:?}");
    assert!(el < Duration::from_secs(20), "{el:?}");
}

#[test]
fn dropping_the_client_keeps_calls_in_flight_then_stops() {
    let rt = runtime();
    let (s, addr, _) = setup(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let fut = c.call(&addr, "later", "g", Bytes::from_static(&[50]), T);
    let stats_of = c.clone();
    drop(c);
    let r = rt.block_on(fut).unwrap();
    assert_eq!(&r.payload[..], b"late:\x32");
    assert_eq!(stats_of.stats().rpc_connections_open, 1);
    assert_eq!(s.stats().connections_open, 1);
    // The last handle gone: stopped, its connection closed.
    drop(stats_of);
    let deadline = Instant::now() + T;
    while s.stats().connections_open != 0 {
        assert!(Instant::now() < deadline, "connection left open");
        std::thread::sleep(Duration::from_millis(5));
    }
    let c2 = RpcClient::new(rt.handle().clone());
    let probe = c2.clone();
    c2.stop();
    assert_eq!(
        probe.call_blocking(&addr, "echo", "g", Bytes::new(), T),
        Err(RpcError::Shutdown)
    );
}
