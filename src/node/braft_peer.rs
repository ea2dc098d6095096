//! A node in a group with braft replicas (`NodeOptions::braft_compat`):
//! its Raft traffic is braft's `RaftService` over baidu_std, both ways.
//!
//! - **In**: the server's `braft.RaftService.*` methods (registered by
//!   `RaftServer::start`) translate a request into a core message
//!   (`transport::braft_raft`) and hand it to the node like any other; the
//!   RPC stays pending until the core answers that message, and the answer
//!   leaves as the RPC's response. The core's answers come out of
//!   [`BraftNetwork::send`]; they are matched to the pending RPC of the same
//!   group, node pair and kind. An append's answer leaves when the core
//!   sends it, i.e. after the fdatasync (acknowledged means durable). The
//!   appends of one leader are handed to the core one at a time (the next
//!   once the previous one is answered), so an answer always names the
//!   request it belongs to; braft's leader keeps one append in flight
//!   anyway. What the core leaves unanswered (a vote refused under a live
//!   leader's lease, a stale message) fails with ETIMEDOUT after an
//!   election timeout, which braft's callers treat as a lost RPC.
//! - **Out**: [`BraftNetwork`] sends the core's requests as braft calls
//!   (to every peer: rraft peers in this mode serve the service too) and
//!   hands braft's answers back to the node as core messages. Messages
//!   braft has no form for (ReadIndex forwarding) are not sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;

use super::errno;
use super::network::{FetchDone, Network, SnapshotFetch, TcpNetwork};
use super::published::Published;
use crate::proto::{Message, MessageType};
use crate::transport::braft_raft as wire;
use crate::transport::peer_id::{peer_addr, peer_key};
use crate::transport::{self, CallInfo, Protocol, Request, Responder};

/// How long an `install_snapshot` call may take: braft's follower answers
/// once it fetched and installed the snapshot.
const SNAPSHOT_CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// (group, local peer, remote peer), canonical peer ids.
type LinkKey = (String, String, String);

struct PendingVote {
    id: u64,
    term: u64,
    responder: Responder,
}

struct PendingAppend {
    id: u64,
    prev: u64,
    /// The index of the request's last entry (`prev` when it has none).
    end: u64,
    term: u64,
    /// The request, until it is handed to the core.
    msg: Option<Message>,
    responder: Responder,
}

struct PendingSnapshot {
    id: u64,
    last_index: u64,
    term: u64,
    responder: Responder,
}

/// The RPCs of one remote peer to one local node that await the core.
#[derive(Default)]
struct Link {
    pre_votes: Vec<PendingVote>,
    votes: Vec<PendingVote>,
    appends: VecDeque<PendingAppend>,
    snapshots: Vec<PendingSnapshot>,
}

/// A node in braft mode, as the service sees it.
struct CompatNode {
    net: Arc<transport::Server>,
    published: Arc<Published>,
    /// How long an RPC waits for the core's answer.
    answer_timeout: Duration,
    /// The node's snapshot store, once its storage is open: what it offers
    /// braft followers.
    snapshots: OnceLock<Option<Arc<crate::storage::SnapshotStore>>>,
    /// The leader and term named by the last TimeoutNow this node received:
    /// its transfer votes name them as disrupted (braft's form).
    disrupted: Mutex<Option<(String, u64)>>,
}

#[derive(Default)]
struct Registry {
    nodes: Mutex<HashMap<(String, String), Arc<CompatNode>>>,
    links: Mutex<HashMap<LinkKey, Link>>,
    next_id: AtomicU64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    fn node(&self, group: &str, peer: &str) -> Option<Arc<CompatNode>> {
        lock(&self.nodes)
            .get(&(group.to_string(), peer.to_string()))
            .cloned()
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// What to do once the registry's lock is released.
enum Then {
    Deliver(Message),
    Reply(Responder, Bytes),
    Fail(Responder, i32, String),
}

fn run(node: &CompatNode, group: &str, key: &LinkKey, actions: Vec<(Then, Option<u64>)>) {
    for (action, timer) in actions {
        match action {
            Then::Deliver(m) => node.net.deliver_local(group, vec![m]),
            Then::Reply(r, body) => r.reply(body),
            Then::Fail(r, code, text) => r.reply_error(code, &text, ""),
        }
        if let Some(id) = timer {
            expire_after(node.answer_timeout, key.clone(), id);
        }
    }
}

fn expire_after(after: Duration, key: LinkKey, id: u64) {
    super::runtime::handle().spawn(async move {
        tokio::time::sleep(after).await;
        expire(&key, id);
    });
}

/// The RPC `id` got no answer in time: fail it (and hand the next queued
/// append to the core).
fn expire(key: &LinkKey, id: u64) {
    let reg = registry();
    let Some(node) = reg.node(&key.0, &key.1) else {
        return;
    };
    let mut actions = Vec::new();
    {
        let mut links = lock(&reg.links);
        let Some(link) = links.get_mut(key) else {
            return;
        };
        let text = "no answer from the node in time".to_string();
        for list in [&mut link.pre_votes, &mut link.votes] {
            if let Some(i) = list.iter().position(|p| p.id == id) {
                let p = list.remove(i);
                actions.push((
                    Then::Fail(p.responder, errno::ETIMEDOUT, text.clone()),
                    None,
                ));
            }
        }
        if let Some(i) = link.snapshots.iter().position(|p| p.id == id) {
            let p = link.snapshots.remove(i);
            actions.push((
                Then::Fail(p.responder, errno::ETIMEDOUT, text.clone()),
                None,
            ));
        }
        if link.appends.front().is_some_and(|p| p.id == id) {
            if let Some(p) = link.appends.pop_front() {
                actions.push((Then::Fail(p.responder, errno::ETIMEDOUT, text), None));
            }
            actions.extend(next_append(link));
        }
    }
    run(&node, &key.0, key, actions);
}

/// Hands the queue's head to the core if it has not been yet.
fn next_append(link: &mut Link) -> Option<(Then, Option<u64>)> {
    let head = link.appends.front_mut()?;
    let msg = head.msg.take()?;
    Some((Then::Deliver(msg), Some(head.id)))
}

/// Serves a `braft.RaftService` call (`method` is the method's short name).
pub(crate) fn serve(method: &str, request: Request, responder: Responder) {
    let (group, local) = match wire::target(method, &request.payload) {
        Ok(t) => t,
        Err(text) => return responder.reply_error(errno::EINVAL, &text, ""),
    };
    let reg = registry();
    let Some(node) = reg.node(&group, &local) else {
        let text = format!("no node {local} of group {group} in braft mode here");
        return responder.reply_error(errno::ENOENT, &text, "");
    };
    let body = request.payload;
    let parsed = match method {
        wire::PRE_VOTE | wire::REQUEST_VOTE => {
            let leader = node.published.leader();
            wire::vote_request_in(&body, method == wire::PRE_VOTE, leader.as_deref())
        }
        wire::APPEND_ENTRIES => wire::append_request_in(&body, responder.request_attachment()),
        wire::TIMEOUT_NOW => wire::timeout_now_in(&body).map(|(m, _)| m),
        wire::INSTALL_SNAPSHOT => wire::install_snapshot_in(&body).map(|(m, uri)| {
            remember_snapshot_uri(&group, &local, &m.from, uri);
            m
        }),
        other => Err(format!("no method {}", wire::method_name(other))),
    };
    let msg = match parsed {
        Ok(m) => m,
        Err(text) => return responder.reply_error(errno::EINVAL, &text, ""),
    };
    let key: LinkKey = (group.clone(), local, msg.from.to_string());
    let id = reg.id();
    let mut actions = Vec::new();
    let mut snapshot_timer = None;
    {
        let mut links = lock(&reg.links);
        let link = links.entry(key.clone()).or_default();
        match msg.kind() {
            Some(MessageType::PreVote) | Some(MessageType::Vote) => {
                let list = if msg.kind() == Some(MessageType::PreVote) {
                    &mut link.pre_votes
                } else {
                    &mut link.votes
                };
                list.push(PendingVote {
                    id,
                    term: msg.term,
                    responder,
                });
                actions.push((Then::Deliver(msg), Some(id)));
            }
            Some(MessageType::Append) => {
                link.appends.push_back(PendingAppend {
                    id,
                    prev: msg.index,
                    end: msg.index + msg.entries.len() as u64,
                    term: msg.term,
                    msg: Some(msg),
                    responder,
                });
                actions.extend(next_append(link));
            }
            Some(MessageType::InstallSnapshot) => {
                link.snapshots.push(PendingSnapshot {
                    id,
                    last_index: msg.snapshot.as_ref().map_or(0, |s| s.last_index),
                    term: msg.term,
                    responder,
                });
                // braft's leader waits for the whole install: the fetch
                // may take much longer than any other answer.
                snapshot_timer = Some(id);
                actions.push((Then::Deliver(msg), None));
            }
            _ => {
                // TimeoutNow: braft's follower answers at once and campaigns;
                // its answer names the next term so that braft's leader
                // steps down (braft without leader leases does the same).
                *lock(&node.disrupted) = Some((msg.from.to_string(), msg.term));
                let answer = wire::TimeoutNowResponse {
                    term: msg.term.saturating_add(1) as i64,
                    success: true,
                };
                actions.push((Then::Deliver(msg), None));
                actions.push((Then::Reply(responder, answer.encode_to_vec().into()), None));
            }
        }
    }
    run(&node, &group, &key, actions);
    if let Some(id) = snapshot_timer {
        expire_after(SNAPSHOT_CALL_TIMEOUT, key, id);
    }
}

/// The core's answer to a braft peer's request: the response of the
/// pending RPC it answers.
fn answer(group: &str, msg: Message) {
    let reg = registry();
    let key: LinkKey = (group.to_string(), msg.from.to_string(), msg.to.to_string());
    let Some(node) = reg.node(group, &msg.from) else {
        return;
    };
    let mut actions = Vec::new();
    {
        let mut links = lock(&reg.links);
        let Some(link) = links.get_mut(&key) else {
            log::debug!("braft: no pending call for {:?} to {}", msg.kind(), msg.to);
            return;
        };
        match msg.kind() {
            Some(kind @ (MessageType::PreVoteResponse | MessageType::VoteResponse)) => {
                // One answer settles every pending request of that kind
                // from the peer: a grant only the request of its term.
                let pre = kind == MessageType::PreVoteResponse;
                let list = if pre {
                    &mut link.pre_votes
                } else {
                    &mut link.votes
                };
                for p in list.drain(..) {
                    let out = wire::vote_response_out(&msg, p.term, pre);
                    actions.push((Then::Reply(p.responder, out.encode_to_vec().into()), None));
                }
            }
            Some(MessageType::AppendResponse) => {
                let installed = !msg.reject
                    && link
                        .snapshots
                        .iter()
                        .any(|p| msg.term == p.term && msg.index == p.last_index);
                if !installed
                    && link.appends.front().is_some_and(|p| {
                        p.msg.is_none() && wire::answers_append(&msg, p.prev, p.end, p.term)
                    })
                {
                    if let Some(p) = link.appends.pop_front() {
                        let out = wire::append_response_out(&msg, p.term);
                        actions.push((Then::Reply(p.responder, out.encode_to_vec().into()), None));
                    }
                    actions.extend(next_append(link));
                } else if link.snapshots.iter().any(|p| answers_snapshot(&msg, p)) {
                    // A repeated install_snapshot (the follower was still
                    // fetching) is answered with the first.
                    let (done, waiting) = std::mem::take(&mut link.snapshots)
                        .into_iter()
                        .partition(|p| answers_snapshot(&msg, p));
                    link.snapshots = waiting;
                    for p in done {
                        let out = wire::InstallSnapshotResponse {
                            term: msg.term as i64,
                            success: !msg.reject && msg.term == p.term,
                        };
                        actions.push((Then::Reply(p.responder, out.encode_to_vec().into()), None));
                    }
                } else {
                    log::debug!(
                        "braft: an answer at {} for {} matches no pending call",
                        msg.index,
                        msg.to
                    );
                }
            }
            _ => {}
        }
    }
    run(&node, group, &key, actions);
}

/// Whether the core's AppendResponse `msg` answers the pending
/// install_snapshot `p`: an acknowledgement at or past its index, a
/// rejection of it, or a higher term.
fn answers_snapshot(msg: &Message, p: &PendingSnapshot) -> bool {
    msg.term > p.term || (msg.term == p.term && msg.index >= p.last_index)
}

fn snapshot_uris() -> &'static Mutex<HashMap<LinkKey, String>> {
    static URIS: OnceLock<Mutex<HashMap<LinkKey, String>>> = OnceLock::new();
    URIS.get_or_init(Default::default)
}

fn remember_snapshot_uri(group: &str, local: &str, leader: &str, uri: String) {
    lock(snapshot_uris()).insert(
        (group.to_string(), local.to_string(), leader.to_string()),
        uri,
    );
}

/// The URI of the snapshot `leader` last offered to `local` in braft's
/// `install_snapshot` (`remote://ip:port/reader_id`).
pub(crate) fn snapshot_uri(group: &str, local: &str, leader: &str) -> Option<String> {
    lock(snapshot_uris())
        .get(&(group.to_string(), local.to_string(), leader.to_string()))
        .cloned()
}

/// The network of a node in braft mode: braft's `RaftService` both ways.
pub(crate) struct BraftNetwork {
    tcp: TcpNetwork,
    group: String,
    id: String,
    node: Arc<CompatNode>,
}

/// The network of a node with `braft_compat`; registers the node with the
/// service until the network is dropped.
pub(crate) fn network(
    net: Arc<transport::Server>,
    group: &str,
    id: &str,
    published: Arc<Published>,
    election_timeout_ms: u32,
) -> Arc<dyn Network> {
    let id = peer_key(id).unwrap_or_else(|| id.to_string());
    let node = Arc::new(CompatNode {
        net: net.clone(),
        published,
        answer_timeout: Duration::from_millis(election_timeout_ms.max(100) as u64),
        snapshots: OnceLock::new(),
        disrupted: Mutex::new(None),
    });
    lock(&registry().nodes).insert((group.to_string(), id.clone()), node.clone());
    Arc::new(BraftNetwork {
        tcp: TcpNetwork(net),
        group: group.to_string(),
        id,
        node,
    })
}

/// Gives the node `id` of `group` in braft mode its snapshot store (once
/// its storage is open).
pub(crate) fn attach_snapshots(
    group: &str,
    id: &str,
    store: Option<Arc<crate::storage::SnapshotStore>>,
) {
    let id = peer_key(id).unwrap_or_else(|| id.to_string());
    if let Some(node) = registry().node(group, &id) {
        let _ = node.snapshots.set(store);
    }
}

impl Drop for BraftNetwork {
    fn drop(&mut self) {
        let reg = registry();
        let key = (self.group.clone(), self.id.clone());
        let mut nodes = lock(&reg.nodes);
        if nodes.get(&key).is_some_and(|n| Arc::ptr_eq(n, &self.node)) {
            nodes.remove(&key);
            drop(nodes);
            // Pending calls fail when their responders drop.
            lock(&reg.links).retain(|k, _| !(k.0 == key.0 && k.1 == key.1));
        }
    }
}

impl BraftNetwork {
    /// Sends the core's request `msg` as a braft call; braft's answer goes
    /// back to the node as a core message.
    fn call(&self, method: &'static str, msg: Message, payload: Vec<u8>, attachment: Bytes) {
        let timeout = self.node.answer_timeout;
        self.call_then(method, msg, payload, attachment, timeout, || {});
    }

    /// [`BraftNetwork::call`] with a timeout, running `finished` once the
    /// call ended (answered or not).
    fn call_then(
        &self,
        method: &'static str,
        msg: Message,
        payload: Vec<u8>,
        attachment: Bytes,
        timeout: Duration,
        finished: impl FnOnce() + Send + 'static,
    ) {
        let Some(addr) = peer_addr(&msg.to) else {
            return finished();
        };
        let rpc = self.tcp.0.rpc().clone();
        let server = self.tcp.0.clone();
        let group = self.group.clone();
        let info = CallInfo {
            protocol: Protocol::BaiduStd,
            attachment,
            ..Default::default()
        };
        let call = rpc.call_with_info(
            &addr,
            &wire::method_name(method),
            &group,
            payload.into(),
            info,
            timeout,
        );
        super::runtime::handle().spawn(async move {
            let result = call.await;
            finished();
            let body = match result {
                Ok((resp, _)) => resp.payload,
                Err(e) => {
                    log::debug!("braft: {method} to {} failed: {e}", msg.to);
                    return;
                }
            };
            let answer = match msg.kind() {
                Some(MessageType::PreVote | MessageType::Vote) => {
                    wire::vote_response_in(&msg, &body)
                }
                Some(MessageType::Append | MessageType::Heartbeat) => {
                    wire::append_response_in(&msg, &body)
                }
                Some(MessageType::InstallSnapshot) => {
                    wire::install_snapshot_response_in(&msg, &body)
                }
                _ => return,
            };
            match answer {
                Ok(m) => server.deliver_local(&group, vec![m]),
                Err(text) => log::warn!("braft: bad answer to {method} from {}: {text}", msg.to),
            }
        });
    }
}

impl Network for BraftNetwork {
    fn send(&self, group: &str, msg: Message) {
        let Some(kind) = msg.kind() else {
            return;
        };
        match kind {
            MessageType::PreVoteResponse
            | MessageType::VoteResponse
            | MessageType::AppendResponse
            | MessageType::HeartbeatResponse => answer(group, msg),
            MessageType::PreVote | MessageType::Vote => {
                let transfer = msg.context.as_ref() == wire::TRANSFER_CONTEXT;
                let disrupted = transfer
                    .then(|| lock(&self.node.disrupted).clone())
                    .flatten();
                let req = wire::vote_request_out(
                    group,
                    &msg,
                    disrupted.as_ref().map(|(p, t)| (p.as_str(), *t)),
                );
                let method = if kind == MessageType::PreVote {
                    wire::PRE_VOTE
                } else {
                    wire::REQUEST_VOTE
                };
                self.call(method, msg, req.encode_to_vec(), Bytes::new());
            }
            MessageType::Append | MessageType::Heartbeat => {
                let (req, attachment) = wire::append_request_out(group, &msg);
                self.call(wire::APPEND_ENTRIES, msg, req.encode_to_vec(), attachment);
            }
            MessageType::TimeoutNow => {
                let req = wire::timeout_now_out(group, &msg);
                self.call(wire::TIMEOUT_NOW, msg, req.encode_to_vec(), Bytes::new());
            }
            MessageType::InstallSnapshot => {
                let store = self.node.snapshots.get().cloned().flatten();
                match super::braft_files::offer_latest(store.as_ref(), &msg) {
                    Some((uri, reader)) => {
                        // braft's follower answers once it installed the
                        // snapshot: the call may take as long as the copy.
                        let req = wire::install_snapshot_out(group, &msg, &uri);
                        self.call_then(
                            wire::INSTALL_SNAPSHOT,
                            msg,
                            req.encode_to_vec(),
                            Bytes::new(),
                            SNAPSHOT_CALL_TIMEOUT,
                            move || super::braft_files::withdraw(reader),
                        );
                    }
                    None => log::warn!("braft: no snapshot to offer {} for group {group}", msg.to),
                }
            }
            MessageType::ReadIndex | MessageType::ReadIndexResponse => {
                log::debug!("braft: {kind:?} has no braft form: not sent to {}", msg.to);
            }
        }
    }

    fn fetch_snapshot(&self, fetch: SnapshotFetch, done: FetchDone) {
        match snapshot_uri(&self.group, &self.id, &fetch.leader) {
            Some(uri) => super::braft_files::fetch(self.tcp.0.clone(), uri, fetch, done),
            None => self.tcp.fetch_snapshot(fetch, done),
        }
    }
}
