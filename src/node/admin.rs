//! The `raft.admin` internal method: what `rraft-cli` (braft_cli) asks a
//! node. A node answers it on its server's port unless `disable_cli` is set.
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
use crate::transport::{Request, Responder, RpcClient, RpcError};

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

/// Node side: runs the command on a blocking thread (node queries wait for
/// the driver) and answers.
pub(crate) fn serve(node: Node, request: Request, responder: Responder) {
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

fn run(node: &Node, req: &AdminRequest) -> Result<String, Status> {
    let timeout = Duration::from_millis(u64::from(req.timeout_ms.clamp(100, 600_000)));
    if leader_only(&req.op) && !node.is_leader() {
        return Err(Status::new(
            errno::EPERM,
            format!(
                "{} is not the leader of group {}",
                node.peer_id(),
                node.group()
            ),
        ));
    }
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
