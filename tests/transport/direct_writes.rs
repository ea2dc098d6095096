//! Answers and requests written by the thread that sends them: answers
//! held on a thread leave together when the hold ends (or is released
//! early), answers too big for the socket buffer arrive whole, and
//! blocking calls from plain threads share one connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rraft::transport::{hold_replies, release_held_replies, Request, Responder, RpcClient, Server};

use super::{runtime, wait_until};

const T: Duration = Duration::from_secs(10);

/// A server whose method "park" keeps every Responder for the test to answer.
fn parking_server(
    rt: &tokio::runtime::Runtime,
) -> (Arc<Server>, String, Arc<Mutex<Vec<Responder>>>) {
    let s = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let addr = s.local_addr().to_string();
    let parked = Arc::new(Mutex::new(Vec::new()));
    let p = parked.clone();
    s.add_method(
        "park",
        Arc::new(move |_req: Request, r: Responder| p.lock().unwrap().push(r)),
    )
    .unwrap();
    (s, addr, parked)
}

/// Starts `n` calls of "park"; the counter counts the ones answered.
fn start_calls(
    rt: &tokio::runtime::Runtime,
    c: &RpcClient,
    addr: &str,
    n: usize,
) -> Arc<AtomicUsize> {
    let answered = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let call = c.call(addr, "park", "g", Bytes::new(), T);
        let answered = answered.clone();
        rt.spawn(async move {
            call.await.unwrap();
            answered.fetch_add(1, Ordering::SeqCst);
        });
    }
    answered
}

#[test]
fn answers_held_on_a_thread_leave_together_when_the_hold_ends() {
    let rt = runtime();
    let (s, addr, parked) = parking_server(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let n = 20;
    let answered = start_calls(&rt, &c, &addr, n);
    wait_until("every call parked", T, || parked.lock().unwrap().len() == n);
    let responders: Vec<Responder> = std::mem::take(&mut *parked.lock().unwrap());
    let flushes_before = s.stats().flushes;
    std::thread::spawn(move || {
        let held = hold_replies();
        for r in responders {
            r.reply(Bytes::from_static(b"ok"));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            answered.load(Ordering::SeqCst),
            0,
            "held answers are not written while the hold lasts"
        );
        drop(held);
        wait_until("every held answer arrived", T, || {
            answered.load(Ordering::SeqCst) == n
        });
    })
    .join()
    .unwrap();
    assert_eq!(
        s.stats().flushes - flushes_before,
        1,
        "the answers of one hold leave in one write"
    );
}

#[test]
fn releasing_held_answers_writes_them_and_keeps_the_hold() {
    let rt = runtime();
    let (_s, addr, parked) = parking_server(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let answered = start_calls(&rt, &c, &addr, 2);
    wait_until("both calls parked", T, || parked.lock().unwrap().len() == 2);
    let mut responders: Vec<Responder> = std::mem::take(&mut *parked.lock().unwrap());
    std::thread::spawn(move || {
        let held = hold_replies();
        responders.pop().unwrap().reply(Bytes::new());
        // What a blocking library call does before it waits.
        release_held_replies();
        wait_until("the released answer arrived", T, || {
            answered.load(Ordering::SeqCst) == 1
        });
        responders.pop().unwrap().reply(Bytes::new());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            answered.load(Ordering::SeqCst),
            1,
            "the hold is still active after a release"
        );
        drop(held);
        wait_until("the second answer arrived", T, || {
            answered.load(Ordering::SeqCst) == 2
        });
    })
    .join()
    .unwrap();
}

#[test]
fn answers_larger_than_the_socket_buffer_arrive_whole_from_plain_threads() {
    let rt = runtime();
    let (_s, addr, parked) = parking_server(&rt);
    let c = RpcClient::new(rt.handle().clone());
    let n = 8;
    let size = 3 << 20;
    let results = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..n {
        let call = c.call(&addr, "park", "g", Bytes::new(), T);
        let results = results.clone();
        rt.spawn(async move {
            let r = call.await;
            results.lock().unwrap().push(r);
        });
    }
    wait_until("every call parked", T, || parked.lock().unwrap().len() == n);
    let responders: Vec<Responder> = std::mem::take(&mut *parked.lock().unwrap());
    // Four threads answer at once, each with answers far over the socket
    // buffer: writers meet a full socket and a write in progress.
    let mut threads = Vec::new();
    let mut chunks: Vec<Vec<Responder>> = (0..4).map(|_| Vec::new()).collect();
    for (i, r) in responders.into_iter().enumerate() {
        chunks[i % 4].push(r);
    }
    for chunk in chunks {
        threads.push(std::thread::spawn(move || {
            for r in chunk {
                let fill = (r.call_id() % 251) as u8;
                r.reply(Bytes::from(vec![fill; size]));
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    wait_until("every big answer arrived", T, || {
        results.lock().unwrap().len() == n
    });
    for r in results.lock().unwrap().drain(..) {
        let resp = r.unwrap();
        assert_eq!(resp.payload.len(), size);
        let fill = (resp.call_id % 251) as u8;
        assert!(
            resp.payload.iter().all(|&b| b == fill),
            "answer to call {} is whole and its own",
            resp.call_id
        );
    }
}

#[test]
fn blocking_calls_from_plain_threads_share_one_connection() {
    let rt = runtime();
    let s = Server::bind("127.0.0.1:0", rt.handle()).unwrap();
    let addr = s.local_addr().to_string();
    s.add_method(
        "echo",
        Arc::new(|req: Request, r: Responder| r.reply(req.payload)),
    )
    .unwrap();
    let c = RpcClient::new(rt.handle().clone());
    let threads: Vec<_> = (0..16u8)
        .map(|t| {
            let c = c.clone();
            let addr = addr.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    let payload = Bytes::from(vec![t, i]);
                    let r = c.call_blocking(&addr, "echo", "g", payload.clone(), T);
                    assert_eq!(r.unwrap().payload, payload);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.stats().connections_accepted, 1, "one pooled connection");
    assert_eq!(s.stats().requests_in, 16 * 50);
}
