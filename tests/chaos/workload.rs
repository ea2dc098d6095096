//! The lin-kv workload: client tasks doing put / get / cas on a few keys
//! through the leader, each operation recorded with its invocation and
//! completion times and its outcome for the linearizability checker.
//!
//! Outcomes are classified strictly: `Fail` only when the operation surely
//! did not take effect (never sent, or refused by the server before or
//! instead of proposing it); a timeout, a connection lost after sending or
//! the server's "outcome unknown" is `Unknown`. After an unknown outcome a
//! client takes a new id, as a crashed Jepsen process would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rraft::transport::{codes, RpcClient, RpcError};

use super::checker::{Input, Op, Outcome, Output};
use super::cluster::GROUP;
use super::nemesis::Rng;

/// Keys `k0` .. `k{n-1}` for a run of `secs`: few enough that operations
/// on one key overlap, more in long runs so that no key's history grows
/// past what the checker searches comfortably (its memo holds a bit set of
/// the key's operations per state: quadratic in the key's history).
pub fn keys_for(secs: u64) -> u64 {
    8 * secs.div_ceil(300).max(1)
}
/// Each attempt of a call, and the whole call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);
const CALL_TIMEOUT: Duration = Duration::from_millis(2500);
/// A client's pause between operations (uniform in 0..THINK_MS).
const THINK_MS: u64 = 20;
/// The server's "outcome unknown" (RAFT_ERAFTTIMEDOUT).
const ERAFTTIMEDOUT: i32 = 10001;
const EBUSY: i32 = 16;

/// What a call came to.
pub enum Call {
    Ok(Bytes),
    /// Surely not carried out.
    Fail(String),
    /// May or may not have been carried out.
    Unknown(String),
}

/// The recorded history and its counters.
pub struct History {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
    next_client: AtomicU64,
    /// Reasons for fail/unknown outcomes, for the summary.
    reasons: Mutex<HashMap<String, u64>>,
}

impl History {
    pub fn new() -> History {
        History {
            t0: Instant::now(),
            ops: Mutex::new(Vec::new()),
            next_client: AtomicU64::new(1),
            reasons: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn new_client(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, op: Op) {
        self.ops.lock().expect("history").push(op);
    }

    fn reason(&self, kind: &str, why: &str) {
        // Keep the reason short and free of addresses so it aggregates.
        let short: String = why
            .split(['(', ':'])
            .next()
            .unwrap_or(why)
            .trim()
            .chars()
            .take(60)
            .collect();
        *self
            .reasons
            .lock()
            .expect("reasons")
            .entry(format!("{kind}: {short}"))
            .or_default() += 1;
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history").clone()
    }

    pub fn reasons(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .reasons
            .lock()
            .expect("reasons")
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.1));
        v
    }
}

/// A leader-following client over [`RpcClient`] that keeps track of
/// whether a request may have reached a server.
pub struct KvClient {
    rpc: RpcClient,
    peers: Vec<String>,
    addrs: Vec<String>,
    leader: Option<usize>,
    cursor: usize,
    /// Send gets to any node (for servers with `--stale_reads`).
    reads_anywhere: bool,
}

impl KvClient {
    pub fn new(rpc: RpcClient, peers: &[String], reads_anywhere: bool) -> KvClient {
        let addrs = peers
            .iter()
            .map(|p| rraft::transport::peer_id::peer_addr(p).expect("peer id"))
            .collect();
        KvClient {
            rpc,
            peers: peers.to_vec(),
            addrs,
            leader: None,
            cursor: 0,
            reads_anywhere,
        }
    }

    fn next_target(&mut self) -> usize {
        match self.leader {
            Some(l) => l,
            None => {
                self.cursor = (self.cursor + 1) % self.addrs.len();
                self.cursor
            }
        }
    }

    /// Calls `method` on the leader, following redirects. `write`: an
    /// unanswered request may have taken effect.
    pub async fn call(&mut self, method: &str, payload: Bytes, write: bool) -> Call {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut last = String::from("no attempt");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                // Every attempt was refused or never sent.
                return Call::Fail(format!("gave up: {last}"));
            }
            let target = if self.reads_anywhere && !write {
                self.cursor = (self.cursor + 1) % self.addrs.len();
                self.cursor
            } else {
                self.next_target()
            };
            let attempt = remaining.min(ATTEMPT_TIMEOUT);
            let result = self
                .rpc
                .call(&self.addrs[target], method, GROUP, payload.clone(), attempt)
                .await;
            match result {
                Ok(resp) => {
                    if write || !self.reads_anywhere {
                        self.leader = Some(target);
                    }
                    return Call::Ok(resp.payload);
                }
                Err(RpcError::Remote {
                    code, leader_hint, ..
                }) if code == codes::EPERM => {
                    // Not the leader (or the entry can never apply): follow
                    // the hint, or look around after a short pause.
                    self.leader = self.peers.iter().position(|p| *p == leader_hint);
                    if self.leader.is_none() || self.leader == Some(target) {
                        self.leader = None;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    last = "not leader".into();
                }
                Err(RpcError::Remote { code, text, .. }) if code == EBUSY => {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    last = format!("busy: {text}");
                }
                Err(RpcError::Remote { code, text, .. }) if code == ERAFTTIMEDOUT && write => {
                    self.leader = None;
                    return Call::Unknown(format!("server says outcome unknown ({text})"));
                }
                Err(RpcError::Remote { code, text, .. }) => {
                    // Refused by the server without proposing anything.
                    return Call::Fail(format!("server error {code}: {text}"));
                }
                Err(e @ (RpcError::Connect(_) | RpcError::BadAddress(_))) => {
                    self.leader = None;
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    // Timeout, lost after sending, or stopped: the request
                    // left and may still be carried out.
                    self.leader = None;
                    return if write {
                        Call::Unknown(e.to_string())
                    } else {
                        Call::Fail(e.to_string())
                    };
                }
            }
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32_le(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn key_name(key: u64) -> String {
    format!("k{key}")
}

/// The payload and method of `input` on `key`.
fn encode(key: u64, input: Input) -> (&'static str, Bytes) {
    let mut buf = BytesMut::new();
    let method = match input {
        Input::Read => {
            put_str(&mut buf, &key_name(key));
            "Kv.get"
        }
        Input::Write(v) => {
            buf.put_u8(b'P');
            put_str(&mut buf, &key_name(key));
            put_str(&mut buf, &v.to_string());
            "Kv.put"
        }
        Input::Cas(e, n) => {
            buf.put_u8(b'C');
            put_str(&mut buf, &key_name(key));
            put_str(&mut buf, &e.to_string());
            put_str(&mut buf, &n.to_string());
            "Kv.cas"
        }
    };
    (method, buf.freeze())
}

/// The output a successful reply of `input` carries.
fn decode(input: Input, reply: &[u8]) -> Output {
    match input {
        Input::Read => match reply.split_first() {
            Some((1, v)) => Output::Read(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("get returned a value that is not ours: {v:?}")),
            ),
            Some((0, [])) => Output::Read(0),
            _ => panic!("malformed get reply {reply:?}"),
        },
        Input::Write(_) => Output::Write,
        Input::Cas(..) => match reply {
            [b] => Output::Cas(*b == 1),
            _ => panic!("malformed cas reply {reply:?}"),
        },
    }
}

/// Runs one operation and records it under `client`; returns its outcome.
pub async fn run_op(
    history: &History,
    kv: &mut KvClient,
    client: u64,
    key: u64,
    input: Input,
) -> Outcome {
    let (method, payload) = encode(key, input);
    let write = input != Input::Read;
    let call = history.now();
    let result = kv.call(method, payload, write).await;
    let ret = history.now();
    let kind = method.trim_start_matches("Kv.");
    let outcome = match result {
        Call::Ok(reply) => Outcome::Ok(decode(input, &reply)),
        Call::Fail(why) => {
            history.reason(&format!("{kind} fail"), &why);
            Outcome::Fail
        }
        Call::Unknown(why) => {
            history.reason(&format!("{kind} unknown"), &why);
            Outcome::Unknown
        }
    };
    history.record(Op {
        client,
        key,
        input,
        outcome,
        call,
        ret,
    });
    outcome
}

/// One client task: random operations until `stop`.
pub async fn client_loop(
    history: Arc<History>,
    rpc: RpcClient,
    peers: Vec<String>,
    keys: u64,
    seed: u64,
    reads_anywhere: bool,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng::new(seed);
    let mut kv = KvClient::new(rpc, &peers, reads_anywhere);
    let mut client = history.new_client();
    let mut seq = 0u64;
    // The last value this client saw per key: what its cas expects.
    let mut seen: HashMap<u64, u64> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let key = rng.below(keys);
        seq += 1;
        // Unique and never 0 (0 is "no value" in the checker).
        let fresh = client * 1_000_000 + seq;
        let roll = rng.below(100);
        let input = match seen.get(&key) {
            Some(&e) if roll >= 80 => Input::Cas(e, fresh),
            _ if roll >= 50 => Input::Write(fresh),
            _ => Input::Read,
        };
        match run_op(&history, &mut kv, client, key, input).await {
            // A missing key (0) is never matched by the server's cas, while
            // the checker's register starts at 0: never expect 0.
            Outcome::Ok(Output::Read(0)) => {
                seen.remove(&key);
            }
            Outcome::Ok(Output::Read(v)) => {
                seen.insert(key, v);
            }
            Outcome::Ok(Output::Write) => {
                seen.insert(key, fresh);
            }
            Outcome::Ok(Output::Cas(true)) => {
                seen.insert(key, fresh);
            }
            Outcome::Ok(Output::Cas(false)) => {
                seen.remove(&key);
            }
            Outcome::Fail => {}
            Outcome::Unknown => {
                client = history.new_client();
                seq = 0;
                seen.clear();
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.below(THINK_MS))).await;
    }
}

/// After healing: one successful read of every key (retrying failures),
/// recorded like any other operation. `false` if some key stayed unreadable.
pub async fn final_reads(history: &History, rpc: RpcClient, peers: &[String], keys: u64) -> bool {
    let mut kv = KvClient::new(rpc, peers, false);
    let client = history.new_client();
    for key in 0..keys {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Outcome::Ok(_) = run_op(history, &mut kv, client, key, Input::Read).await {
                break;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    true
}

/// Keys and size of the filler values.
const FILLER_KEYS: u64 = 64;
const FILLER_BYTES: usize = 32 << 10;

/// Puts big values on keys of their own (`fill-N`, outside the checked
/// history) so the map weighs about 2 MiB: snapshots then travel in many
/// chunks, and transfers get cut by the faults. Only the final digests
/// judge these keys. Returns how many puts were acknowledged.
pub async fn filler_loop(
    rpc: RpcClient,
    peers: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut rng = Rng::new(seed);
    let mut kv = KvClient::new(rpc, &peers, false);
    let mut acked = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("fill-{}", rng.below(FILLER_KEYS));
        let fill = b'a' + rng.below(26) as u8;
        let mut buf = BytesMut::with_capacity(FILLER_BYTES + 64);
        buf.put_u8(b'P');
        put_str(&mut buf, &key);
        buf.put_u32_le(FILLER_BYTES as u32);
        buf.put_bytes(fill, FILLER_BYTES);
        if let Call::Ok(_) = kv.call("Kv.put", buf.freeze(), true).await {
            acked += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    acked
}
