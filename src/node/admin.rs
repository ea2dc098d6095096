//! The `raft.admin` internal method: what `rraft-cli` (braft_cli) asks a
//! node, and braft's `CliService` (what braft's own `braft_cli` and route
//! table ask, over baidu_std). A node answers both on its server's port
//! unless `disable_cli` is set.
//!
//! Request: an [`AdminRequest`] (prost) after the usual internal prefix
//! (`u16 length + target peer id`, see `raft_server::internal_payload`). Reply:
//! UTF-8 text (status JSON, a peer list, or empty); errors carry the code,
//! the message and the leader's peer id when known, so a tool can follow it.

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;

use super::done::Done;
use super::errno::{self, Status};
use super::node::Node;
use super::node_status::NodeStatus;
use super::raft_server::{internal_body, internal_payload, METHOD_ADMIN};
use crate::transport::cli_service::{
    ChangePeersRequest, GetLeaderRequest, GetLeaderResponse, PeerRequest, PeersResponse,
    ResetPeerRequest, SnapshotRequest, TransferLeaderRequest,
};
use crate::transport::{cli_service, Request, Responder, RpcClient, RpcError};

/// One admin command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdminRequest {
    /// `status`, `list_peers`, `add_peer`, `remove_peer`, `change_peers`,
    /// `reset_peer`, `transfer_leader`, `snapshot` or `vote`.
    #[prost(string, tag = "1")]
    pub op: String,
    /// The peer (add/remove/transfer) or the peer list (change/reset).
    #[prost(string, tag = "2")]
    pub arg: String,
    /// How long the node may wait for a membership change or snapshot.
    #[prost(uint32, tag = "3")]
    pub timeout_ms: u32,
}

/// Operations that only the leader can carry out.
pub fn leader_only(op: &str) -> bool {
    matches!(
        op,
        "list_peers" | "add_peer" | "remove_peer" | "change_peers" | "transfer_leader"
    )
}

/// Client side: sends `req` to node `peer` (a canonical peer id) of `group`
/// and returns the reply text.
pub fn call(
    rpc: &RpcClient,
    group: &str,
    peer: &str,
    req: &AdminRequest,
    timeout: Duration,
) -> Result<String, RpcError> {
    let addr = crate::transport::peer_id::peer_addr(peer)
        .ok_or_else(|| RpcError::BadAddress(peer.to_string()))?;
    let payload = internal_payload(peer, &req.encode_to_vec());
    // The node may wait `timeout_ms` itself: give the call a little more.
    let resp = rpc.call_blocking(
        &addr,
        METHOD_ADMIN,
        group,
        payload,
        timeout + Duration::from_millis(500),
    )?;
    Ok(String::from_utf8_lossy(&resp.payload).into_owned())
}

/// Node side: runs the command (`raft.admin` or a `braft.CliService`
/// method) on a blocking thread (node queries wait for the driver) and
/// answers.
pub(crate) fn serve(method: &str, node: Node, request: Request, responder: Responder) {
    if let Some(cli) = method.strip_prefix(CLI_PREFIX) {
        let cli = cli.to_string();
        tokio::task::spawn_blocking(move || {
            log::info!("node {}:{} CliService.{cli}", node.group(), node.peer_id());
            match run_cli(&node, &cli, request.payload) {
                Ok(body) => responder.reply(body),
                Err(status) if status.code == errno::EPERM => {
                    let hint = node.leader_id().unwrap_or_default();
                    responder.reply_error(status.code, &status.message, &hint)
                }
                Err(status) => responder.reply_error(status.code, &status.message, ""),
            }
        });
        return;
    }
    let req = match AdminRequest::decode(internal_body(&request.payload)) {
        Ok(req) => req,
        Err(e) => {
            return responder.reply_error(errno::EINVAL, &format!("bad admin request: {e}"), "")
        }
    };
    tokio::task::spawn_blocking(move || {
        log::info!(
            "node {}:{} rraft-cli {} {}",
            node.group(),
            node.peer_id(),
            req.op,
            req.arg
        );
        match run(&node, &req) {
            Ok(text) => responder.reply(Bytes::from(text)),
            Err(status) => {
                let hint = node.leader_id().unwrap_or_default();
                responder.reply_error(status.code, &status.message, &hint)
            }
        }
    });
}

/// EPERM when `op` needs the leader and `node` is not it.
fn check_leader(node: &Node, op: &str) -> Result<(), Status> {
    if leader_only(op) && !node.is_leader() {
        return Err(Status::new(
            errno::EPERM,
            format!(
                "{} is not the leader of group {}",
                node.peer_id(),
                node.group()
            ),
        ));
    }
    Ok(())
}

fn run(node: &Node, req: &AdminRequest) -> Result<String, Status> {
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(100, 600_000)));
    check_leader(node, &req.op)?;
    match req.op.as_str() {
        "status" if req.arg == "json" => Ok(node.status()?.to_json()),
        "status" => Ok(status_text(&node.status()?)),
        "list_peers" => Ok(node.list_peers()?.join(",")),
        "add_peer" => wait(timeout, |done| node.add_peer(&req.arg, done)),
        "remove_peer" => wait(timeout, |done| node.remove_peer(&req.arg, done)),
        "change_peers" => wait(timeout, |done| node.change_peers(&req.arg, done)),
        "snapshot" => wait(timeout, |done| node.snapshot(Some(done))),
        "reset_peer" => node.reset_peers(&req.arg).map(|()| String::new()),
        "transfer_leader" => {
            let target = Some(req.arg.as_str()).filter(|a| !a.is_empty());
            node.transfer_leadership_to(target).map(|()| String::new())
        }
        "vote" => node.vote().map(|()| String::new()),
        other => Err(Status::new(
            errno::EINVAL,
            format!("unknown admin command {other:?}"),
        )),
    }
}

/// braft's `CliService` methods, each registered as
/// `braft.CliService.<method>`.
pub(crate) const CLI_METHODS: [&str; 7] = [
    "add_peer",
    "remove_peer",
    "change_peers",
    "reset_peer",
    "snapshot",
    "get_leader",
    "transfer_leader",
];

const CLI_PREFIX: &str = "braft.CliService.";

/// Whether `method` is one of the `CliService` methods a node serves.
pub(crate) fn is_cli_method(method: &str) -> bool {
    method
        .strip_prefix(CLI_PREFIX)
        .is_some_and(|m| CLI_METHODS.contains(&m))
}

/// The refusal of a node with `disable_cli`: EPERM for rraft-cli, braft's
/// EACCES for its CliService.
pub(crate) fn cli_disabled(method: &str, peer: &str, group: &str) -> Status {
    if is_cli_method(method) {
        Status::new(
            libc::EACCES,
            format!("CliService is not allowed to access node {group}:{peer} (disable_cli is set)"),
        )
    } else {
        Status::new(
            errno::EPERM,
            format!("{peer} of group {group} does not serve rraft-cli (disable_cli is set)"),
        )
    }
}

/// The group and node a `CliService` request names.
pub(crate) struct CliTarget {
    pub group: String,
    /// `leader_id` (membership and transfer) or `peer_id` (snapshot,
    /// reset, get_leader); `None` when empty or absent.
    pub peer: Option<String>,
}

fn bad_request(method: &str, e: prost::DecodeError) -> Status {
    Status::new(
        errno::EINVAL,
        format!("malformed braft.CliService.{method} request: {e}"),
    )
}

/// Reads the target of a `CliService` request (`method` without the
/// service prefix).
pub(crate) fn cli_target(method: &str, body: &[u8]) -> Result<CliTarget, Status> {
    fn read<T: prost::Message + Default + cli_service::Target>(
        method: &str,
        body: &[u8],
    ) -> Result<(String, Option<String>), Status> {
        Ok(T::decode(body)
            .map_err(|e| bad_request(method, e))?
            .target())
    }
    let (group, peer) = match method {
        "add_peer" | "remove_peer" => read::<PeerRequest>(method, body)?,
        "change_peers" => read::<ChangePeersRequest>(method, body)?,
        "transfer_leader" => read::<TransferLeaderRequest>(method, body)?,
        "reset_peer" => read::<ResetPeerRequest>(method, body)?,
        "snapshot" => read::<SnapshotRequest>(method, body)?,
        "get_leader" => read::<GetLeaderRequest>(method, body)?,
        other => {
            return Err(Status::new(
                errno::EINVAL,
                format!("no CliService method {other:?}"),
            ))
        }
    };
    if let Some(p) = &peer {
        crate::transport::peer_id::canonical(p)
            .map_err(|e| Status::new(errno::EINVAL, format!("Fail to parse {p}: {}", e.0)))?;
    }
    Ok(CliTarget { group, peer })
}

/// The body of a `get_leader` answer.
pub(crate) fn get_leader_response(leader: String) -> Bytes {
    Bytes::from(GetLeaderResponse { leader_id: leader }.encode_to_vec())
}

/// How long a CliService membership change or snapshot may take (braft_cli
/// waits without a limit by default).
const CLI_WAIT: Duration = Duration::from_secs(120);

/// Runs one `CliService` method on `node` (already chosen by the request's
/// target) and returns the response body. Errors are braft's: EPERM when
/// this node is not the leader (the leader's id goes in the answer's
/// text), the node's own codes otherwise.
fn run_cli(node: &Node, method: &str, body: Bytes) -> Result<Bytes, Status> {
    let bad = |e| bad_request(method, e);
    check_leader(node, method)?;
    let canonical = |p: &str| {
        crate::transport::peer_id::canonical(p)
            .map_err(|e| Status::new(errno::EINVAL, format!("Fail to parse {p}: {}", e.0)))
    };
    let empty = || Ok(Bytes::new());
    match method {
        "add_peer" | "remove_peer" => {
            let r = PeerRequest::decode(body).map_err(bad)?;
            let peer = canonical(&r.peer_id)?;
            let old = node.list_peers()?;
            let mut new: Vec<String> = old.iter().filter(|p| **p != peer).cloned().collect();
            // As braft: a change to the configuration in force succeeds at once.
            if method == "add_peer" {
                if !old.contains(&peer) {
                    wait(CLI_WAIT, |done| node.add_peer(&peer, done))?;
                }
                new.push(peer);
            } else if old.contains(&peer) || node.list_learners()?.contains(&peer) {
                wait(CLI_WAIT, |done| node.remove_peer(&peer, done))?;
            }
            Ok(peers_response(old, new))
        }
        "change_peers" => {
            let r = ChangePeersRequest::decode(body).map_err(bad)?;
            let new = r
                .new_peers
                .iter()
                .map(|p| canonical(p))
                .collect::<Result<Vec<_>, _>>()?;
            let old = node.list_peers()?;
            wait(CLI_WAIT, |done| node.change_peers(&new.join(","), done))?;
            Ok(peers_response(old, new))
        }
        "reset_peer" => {
            let r = ResetPeerRequest::decode(body).map_err(bad)?;
            node.reset_peers(&r.new_peers.join(","))?;
            empty()
        }
        "snapshot" => {
            wait(CLI_WAIT, |done| node.snapshot(Some(done)))?;
            empty()
        }
        "transfer_leader" => {
            let r = TransferLeaderRequest::decode(body).map_err(bad)?;
            node.transfer_leadership_to(r.peer_id.as_deref())
                .map_err(|s| {
                    Status::new(
                        s.code,
                        format!("Fail to invoke transfer_leadership_to : {}", s.message),
                    )
                })?;
            empty()
        }
        other => Err(Status::new(
            errno::EINVAL,
            format!("no CliService method {other:?}"),
        )),
    }
}

fn peers_response(old_peers: Vec<String>, new_peers: Vec<String>) -> Bytes {
    Bytes::from(
        PeersResponse {
            old_peers,
            new_peers,
        }
        .encode_to_vec(),
    )
}

/// `rraft-cli status`: one field a line, then one line per peer.
pub fn status_text(s: &NodeStatus) -> String {
    use std::fmt::Write;
    let c = &s.configuration;
    let fields: [(&str, Option<String>); 16] = [
        ("group", Some(s.group.clone())),
        ("peer", Some(s.peer_id.clone())),
        ("state", Some(s.state.to_string())),
        ("term", Some(s.term.to_string())),
        (
            "leader",
            Some(s.leader.clone().unwrap_or_else(|| "(none)".into())),
        ),
        ("committed_index", Some(s.committed_index.to_string())),
        ("applied_index", Some(s.applied_index.to_string())),
        ("persisted_index", Some(s.persisted_index.to_string())),
        ("first_index", Some(s.first_index.to_string())),
        ("last_index", Some(s.last_index.to_string())),
        (
            "snapshot",
            Some(format!(
                "index {} term {}",
                s.snapshot_index, s.snapshot_term
            )),
        ),
        ("voters", Some(c.voters.join(","))),
        (
            "learners",
            (!c.learners.is_empty()).then(|| c.learners.join(",")),
        ),
        (
            "old_voters",
            (!c.old_voters.is_empty()).then(|| format!("{} (joint)", c.old_voters.join(","))),
        ),
        ("transferring_to", s.transferring_to.clone()),
        ("error", s.error.clone()),
    ];
    let mut out = String::new();
    for (name, value) in fields {
        if let Some(value) = value {
            let _ = writeln!(out, "{:<17}{value}", format!("{name}:"));
        }
    }
    for p in &s.peers {
        let _ = writeln!(
            out,
            "peer {}{}: match_index {} next_index {} lag {} ({})",
            p.id,
            if p.learner { " (learner)" } else { "" },
            p.match_index,
            p.next_index,
            p.lag,
            p.state
        );
    }
    out
}

/// Starts a command with a done and waits for it up to `timeout`.
fn wait(timeout: Duration, start: impl FnOnce(Done)) -> Result<String, Status> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(Done::new(move |status| {
        let _ = tx.send(status);
    }));
    match rx.recv_timeout(timeout) {
        Ok(status) => status.into_result().map(|()| String::new()),
        Err(_) => Err(Status::new(
            errno::ERAFTTIMEDOUT,
            format!(
                "not finished within {} ms (it may still complete)",
                timeout.as_millis()
            ),
        )),
    }
}
