//! `raft_client_call_async` through the C ABI, driven from one thread with
//! hundreds of calls in flight against examples-c/counter's servers (each
//! call a `CounterService.fetch_add(1)`, whose reply, braft's
//! `CounterResponse`, holds the counter before the add). Every completion
//! must arrive exactly once with the right reply:
//! while the group is healthy, while its leader is SIGKILLed (calls in
//! flight end with an error or their reply, later ones reach the new
//! leader), and when every server is gone.

use std::collections::HashSet;
use std::ffi::{c_void, CStr, CString};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;
use rraft::ffi::client::{
    raft_buffer_free, raft_buffer_t, raft_client_call, raft_client_call_async, raft_client_free,
    raft_client_leader, raft_client_new, raft_client_t,
};
use rraft::ffi::status::{raft_status_t, raft_string_free};
use rraft_sim::examples::*;

const GROUP: &str = "Counter";

pub(super) use rraft_sim::braft_counter::{CounterResponse, FetchAddRequest};

/// The value of a successful reply; None for success=false.
fn counter_value(reply: &[u8]) -> Option<i64> {
    let r = CounterResponse::decode(reply).expect("a CounterResponse");
    if r.success {
        Some(r.value.expect("a successful reply carries the value"))
    } else {
        None
    }
}

/// One call's context: counts how often its completion ran.
struct CallSlot {
    id: usize,
    runs: AtomicU32,
    tx: Mutex<Sender<Completion>>,
}

struct Completion {
    id: usize,
    code: i32,
    reply: Vec<u8>,
}

/// The completion callback: runs on the library's IO thread.
unsafe extern "C" fn on_done(
    ctx: *mut c_void,
    status: *const raft_status_t,
    data: *const u8,
    len: usize,
) {
    // SAFETY: `ctx` is a leaked `CallSlot` (lives for the whole process);
    // `status` and `data[..len]` are valid during this call.
    let (slot, code, reply) = unsafe {
        let slot = &*(ctx as *const CallSlot);
        let reply = if data.is_null() || len == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(data, len).to_vec()
        };
        (slot, (*status).code, reply)
    };
    slot.runs.fetch_add(1, Ordering::SeqCst);
    let tx = slot.tx.lock().unwrap_or_else(|e| e.into_inner());
    let _ = tx.send(Completion {
        id: slot.id,
        code,
        reply,
    });
}

/// Issues fetch_add(1) calls from the test thread, keeping `in_flight` of
/// them outstanding, and collects the completions.
struct Driver {
    client: *mut raft_client_t,
    tx: Sender<Completion>,
    rx: Receiver<Completion>,
    slots: Vec<&'static CallSlot>,
    /// Reply (the counter before the add) of each acknowledged call.
    acked: Vec<i64>,
    /// Calls that ended with an error (outcome unknown for an add).
    failed: usize,
    /// Calls answered success=false: not applied (a node that does not
    /// lead, or a new leader not serving yet); the raw client does not
    /// follow this redirect, so `run` makes another call instead.
    redirected: usize,
    outstanding: usize,
}

impl Driver {
    fn new(client: *mut raft_client_t) -> Driver {
        let (tx, rx) = channel();
        Driver {
            client,
            tx,
            rx,
            slots: Vec::new(),
            acked: Vec::new(),
            failed: 0,
            redirected: 0,
            outstanding: 0,
        }
    }

    fn start(&mut self, timeout_ms: i32) {
        let slot: &'static CallSlot = Box::leak(Box::new(CallSlot {
            id: self.slots.len(),
            runs: AtomicU32::new(0),
            tx: Mutex::new(self.tx.clone()),
        }));
        self.slots.push(slot);
        let method = CString::new("CounterService.fetch_add").unwrap();
        let delta = FetchAddRequest {
            value: 1,
            payload: None,
        }
        .encode_to_vec();
        let rc = raft_client_call_async(
            self.client,
            method.as_ptr(),
            delta.as_ptr(),
            delta.len(),
            timeout_ms,
            Some(on_done),
            slot as *const CallSlot as *mut c_void,
        );
        assert_eq!(rc, 0, "raft_client_call_async refused a call");
        self.outstanding += 1;
    }

    /// Waits for one completion and records it.
    fn collect_one(&mut self) {
        let c = self
            .rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a completion within 30 s");
        self.outstanding -= 1;
        assert_eq!(
            self.slots[c.id].runs.load(Ordering::SeqCst),
            1,
            "call {} completed more than once",
            c.id
        );
        if c.code == 0 {
            match counter_value(&c.reply) {
                Some(before) => self.acked.push(before),
                None => self.redirected += 1,
            }
        } else {
            assert!(c.reply.is_empty(), "a failed call carries no reply");
            self.failed += 1;
        }
    }

    /// Runs `total` more calls that end acknowledged or failed, with up to
    /// `in_flight` outstanding (calls started before count against it),
    /// until none is outstanding. A call answered success=false is
    /// replaced by a new one a millisecond later.
    fn run(&mut self, total: usize, in_flight: usize, timeout_ms: i32) {
        let first = self.slots.len();
        let redirected_before = self.redirected;
        // Calls started here, less the redirected ones (of any call) to replace.
        let counted =
            |d: &Driver| (d.slots.len() - first) as i64 - (d.redirected - redirected_before) as i64;
        let total = total as i64;
        while counted(self) < total || self.outstanding > 0 {
            while counted(self) < total && self.outstanding < in_flight {
                self.start(timeout_ms);
            }
            let redirected = self.redirected;
            self.collect_one();
            if self.redirected > redirected {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Every call completed exactly once, and no completion comes late.
    fn check_exactly_once(&self) {
        std::thread::sleep(Duration::from_millis(200));
        assert!(self.rx.try_recv().is_err(), "a completion after the last");
        for s in &self.slots {
            assert_eq!(
                s.runs.load(Ordering::SeqCst),
                1,
                "call {} ran {} times",
                s.id,
                s.runs.load(Ordering::SeqCst)
            );
        }
    }

    /// Acknowledged adds saw distinct counter values (none applied twice).
    fn check_distinct_replies(&self) {
        let distinct: HashSet<i64> = self.acked.iter().copied().collect();
        assert_eq!(distinct.len(), self.acked.len(), "two adds saw one value");
    }
}

struct Group {
    children: Children,
    ports: Vec<u16>,
    client: *mut raft_client_t,
    _dir: tempfile::TempDir,
}

impl Group {
    fn start() -> Group {
        let example = build_example("counter");
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(3);
        let conf: String = ports.iter().map(|p| format!("127.0.0.1:{p}:0,")).collect();
        let mut children = Children::default();
        for (i, port) in ports.iter().enumerate() {
            let out = std::fs::File::create(dir.path().join(format!("s{i}.log"))).unwrap();
            let child: Child = Command::new(example.join("counter_server"))
                .args(["--port", &port.to_string(), "--conf", &conf])
                .arg("--data_path")
                .arg(dir.path().join(format!("s{i}")))
                .args(["--election_timeout_ms", "500", "--sync", "true"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start counter_server");
            children.add(&port.to_string(), child);
        }
        let group = CString::new(GROUP).unwrap();
        let conf = CString::new(conf).unwrap();
        let client = raft_client_new(group.as_ptr(), conf.as_ptr());
        assert!(!client.is_null(), "raft_client_new failed");
        let g = Group {
            children,
            ports,
            client,
            _dir: dir,
        };
        wait_for("a leader", Duration::from_secs(30), || g.value().ok());
        g
    }

    /// CounterService.get through the blocking call (Err(-1): success=false).
    fn value(&self) -> Result<i64, i32> {
        let method = CString::new("CounterService.get").unwrap();
        let mut reply = raft_buffer_t {
            data: std::ptr::null_mut(),
            len: 0,
        };
        let rc = raft_client_call(
            self.client,
            method.as_ptr(),
            std::ptr::null(),
            0,
            1000,
            &mut reply,
        );
        let value = if rc == 0 {
            let bytes: &[u8] = if reply.data.is_null() {
                &[]
            } else {
                // SAFETY: the library filled `reply` with `len` bytes.
                unsafe { std::slice::from_raw_parts(reply.data, reply.len) }
            };
            counter_value(bytes).ok_or(-1)
        } else {
            Err(rc)
        };
        raft_buffer_free(&mut reply);
        value
    }

    /// The port of the leader the client follows.
    fn leader_port(&self) -> u16 {
        let leader = raft_client_leader(self.client);
        assert!(!leader.is_null(), "the client knows no leader");
        // SAFETY: a NUL-terminated string the library allocated.
        let text = unsafe { CStr::from_ptr(leader) }
            .to_string_lossy()
            .into_owned();
        raft_string_free(leader);
        text.split(':').nth(1).unwrap().parse().unwrap()
    }

    fn kill(&mut self, port: u16) {
        let mut child = self.children.take(&port.to_string()).expect("a server");
        let _ = child.kill();
        let _ = child.wait();
        self.ports.retain(|&p| p != port);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        raft_client_free(self.client);
    }
}

#[test]
fn many_calls_in_flight_from_one_thread_each_complete_once_with_their_reply() {
    let g = Group::start();
    let mut d = Driver::new(g.client);
    let total = 3000;
    d.run(total, 256, 5000);
    d.check_exactly_once();
    assert_eq!(d.failed, 0, "a call failed on a healthy group");
    // Each add saw a different value, and together they saw 0..total.
    let mut seen = d.acked.clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..total as i64).collect::<Vec<_>>());
    assert_eq!(g.value(), Ok(total as i64));
}

#[test]
fn killing_the_leader_or_every_server_completes_each_call_in_flight_once() {
    let mut g = Group::start();
    let mut d = Driver::new(g.client);
    let leader = g.leader_port();
    let started = Instant::now();
    // 500 calls on the healthy group, then 256 more in flight when the
    // leader dies, then 1500 that must reach the new leader.
    d.run(500, 256, 3000);
    assert_eq!(d.outstanding, 0);
    let before_kill = d.acked.len();
    for _ in 0..256 {
        d.start(3000);
    }
    g.kill(leader);
    d.run(1500, 256, 3000);
    d.check_exactly_once();
    d.check_distinct_replies();
    assert!(
        d.acked.len() > before_kill + 500,
        "too few adds succeeded after the leader died ({} of {} after {:?})",
        d.acked.len() - before_kill,
        1500 + 256,
        started.elapsed()
    );
    // acked <= value <= acked + unknown: no add counted twice or lost.
    let value = wait_for("the new leader's value", Duration::from_secs(20), || {
        g.value().ok()
    });
    let acked = d.acked.len() as i64;
    assert!(
        acked <= value && value <= acked + d.failed as i64,
        "value {value} outside [{acked}, {}]",
        acked + d.failed as i64
    );

    // With every server gone, each call in flight still completes once.
    for port in g.ports.clone() {
        g.kill(port);
    }
    let failed_before = d.failed;
    d.run(200, 200, 1000);
    d.check_exactly_once();
    assert_eq!(
        d.failed - failed_before,
        200,
        "a call succeeded without servers"
    );
}
