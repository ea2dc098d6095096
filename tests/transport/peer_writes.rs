//! Raft messages written by the thread that sends them
//! (`Transport::send_now`): they leave while every worker of the sender's
//! runtime is busy, keep their order with messages queued for the
//! connection's task, arrive whole when the socket fills, and inside a
//! hold leave together when it ends, before what waits for them runs.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rraft::proto::Message;
use rraft::transport::{after_peer_writes, hold_peer_writes, Server, Transport};

use super::{record_on, runtime_with, wait_until, RecNode};

const T: Duration = Duration::from_secs(10);

fn msg(to: &str, seq: u64, data: Bytes) -> Message {
    super::msg("127.0.0.1:1:0", to, seq, data)
}

/// Occupies the only worker of `rt` until the returned sender is dropped
/// or sent to.
fn block_worker(rt: &tokio::runtime::Runtime) -> std_mpsc::Sender<()> {
    let (release, wait) = std_mpsc::channel::<()>();
    let (started, running) = std_mpsc::channel::<()>();
    rt.spawn(async move {
        started.send(()).unwrap();
        let _ = wait.recv();
    });
    running.recv_timeout(T).unwrap();
    release
}

/// A sender on a one-worker runtime connected to a recording receiver on
/// another, with the connection's task idle after a first message (index
/// 0). Stops both when dropped.
struct Connected {
    rt_send: tokio::runtime::Runtime,
    rt_recv: tokio::runtime::Runtime,
    server: Arc<Server>,
    to: String,
    node: Arc<RecNode>,
    t: Transport,
}

impl Connected {
    fn new() -> Connected {
        let rt_send = runtime_with(1);
        let rt_recv = runtime_with(1);
        let server = Server::bind("127.0.0.1:0", rt_recv.handle()).unwrap();
        let to = format!("{}:0", server.local_addr());
        let node = record_on(&server, &to);
        let t = Transport::new(rt_send.handle().clone());
        t.send("g", msg(&to, 0, Bytes::new()));
        wait_until("the first message", T, || node.len() == 1);
        std::thread::sleep(Duration::from_millis(50));
        Connected {
            rt_send,
            rt_recv,
            server,
            to,
            node,
            t,
        }
    }

    fn indexes(&self) -> Vec<u64> {
        self.node
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.index)
            .collect()
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.t.stop();
        self.server.stop();
    }
}

#[test]
fn messages_sent_now_leave_while_the_senders_runtime_is_busy_and_keep_their_order() {
    let c = Connected::new();
    let (t, to, node) = (&c.t, &c.to, &c.node);

    let release = block_worker(&c.rt_send);
    t.send_now("g", vec![msg(to, 1, Bytes::from_static(b"now"))]);
    wait_until("a message sent now, with no worker free", T, || {
        node.len() == 2
    });
    // Queued behind the busy worker; what is sent now after it waits too.
    t.send("g", msg(to, 2, Bytes::new()));
    t.send_now(
        "g",
        vec![msg(to, 3, Bytes::new()), msg(to, 4, Bytes::new())],
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        c.indexes(),
        vec![0, 1],
        "nothing overtakes a queued message"
    );
    release.send(()).unwrap();
    wait_until("the queued messages", T, || node.len() == 5);
    assert_eq!(c.indexes(), vec![0, 1, 2, 3, 4]);

    // Inside the runtime too.
    std::thread::sleep(Duration::from_millis(50));
    let t2 = t.clone();
    let to2 = to.clone();
    c.rt_send
        .block_on(async move { t2.send_now("g", vec![msg(&to2, 5, Bytes::new())]) });
    wait_until("a message sent now from a task", T, || node.len() == 6);
    let stats = t.stats();
    assert_eq!(stats.messages_out, 6);
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_peer_down + stats.dropped_other,
        0
    );
}

#[test]
fn messages_sent_now_into_a_full_socket_arrive_whole_and_in_order() {
    let c = Connected::new();
    let (t, to, node) = (&c.t, &c.to, &c.node);

    // Nobody reads on the receiving side: the socket buffers fill, a
    // direct write is taken in part, and the rest goes through the task.
    let release = block_worker(&c.rt_recv);
    let big = Bytes::from((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let n = 24u64;
    for seq in 1..=n {
        t.send_now("g", vec![msg(to, seq, big.clone())]);
    }
    release.send(()).unwrap();
    wait_until("every large message", Duration::from_secs(30), || {
        node.len() == n as usize + 1
    });
    assert_eq!(c.indexes(), (0..=n).collect::<Vec<_>>());
    for m in node.got.lock().unwrap().iter().skip(1) {
        assert_eq!(m.entries[0].data, big, "payload intact");
    }
}

#[test]
fn messages_sent_now_inside_a_hold_leave_in_one_write_when_it_ends() {
    let c = Connected::new();
    let (t, to, node) = (&c.t, &c.to, &c.node);
    let before = t.stats();

    // The sender's worker is busy too: only the holding thread can write.
    let release = block_worker(&c.rt_send);
    {
        let _hold = hold_peer_writes();
        for seq in 1..=3 {
            t.send_now("g", vec![msg(to, seq, Bytes::new())]);
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(node.len(), 1, "nothing leaves while the hold lasts");
    }
    wait_until("the held messages", T, || node.len() == 4);
    assert_eq!(c.indexes(), vec![0, 1, 2, 3]);
    let after = t.stats();
    assert_eq!(after.messages_out - before.messages_out, 3);
    assert_eq!(after.flushes - before.flushes, 1, "one write for the hold");
    release.send(()).unwrap();
}

#[test]
fn what_runs_after_held_writes_runs_once_they_are_written() {
    let c = Connected::new();
    let (t, to, node) = (&c.t, &c.to, &c.node);

    // Without a hold it runs at once.
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = ran.clone();
    after_peer_writes(move || {
        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);

    let flushes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let before = t.stats().flushes;
    {
        let _hold = hold_peer_writes();
        for seq in 1..=2 {
            t.send_now("g", vec![msg(to, seq, Bytes::new())]);
            let (t2, f) = (t.clone(), flushes.clone());
            after_peer_writes(move || f.lock().unwrap().push(t2.stats().flushes));
        }
        assert!(flushes.lock().unwrap().is_empty(), "deferred while held");
    }
    let seen = flushes.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "each runs once");
    assert_eq!(seen, vec![before + 1; 2], "both run after the one write");
    wait_until("the held messages", T, || node.len() == 3);
    assert_eq!(c.indexes(), vec![0, 1, 2]);
}
