//! The process's Raft server: braft's `add_service`. One listening port hosts
//! every node of the process (routed by group + peer id), the library's
//! internal methods (snapshot file transfer, leader lookup, admin), braft's
//! `CliService` (over baidu_std, see `admin`) and the user's own methods.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use crate::node::errno::{self, Status};
use crate::transport::{self, cli_service, Handler, Request, Responder};

/// What the server's internal methods need from a node.
pub(crate) trait HostedNode: Send + Sync {
    /// Answers an internal `raft.*` request addressed to this node.
    fn serve_internal(&self, method: &str, request: Request, responder: Responder);
    /// The node's status and log writer counters for the status pages
    /// (None unless it runs). May wait for the node's driver.
    fn view(&self) -> Option<super::status_pages::NodeView>;
}

pub struct RaftServer {
    net: Arc<transport::Server>,
    /// (group, canonical peer id) → node, for internal methods.
    nodes: RwLock<HashMap<(String, String), Weak<dyn HostedNode>>>,
}

/// Internal methods: the payload starts with the target peer id (see
/// `internal_target`).
pub(crate) const METHOD_SNAPSHOT_FILES: &str = "raft.snapshot.files";
pub(crate) const METHOD_SNAPSHOT_READ: &str = "raft.snapshot.read";
pub(crate) const METHOD_ADMIN: &str = "raft.admin";

/// The transport of a Raft server keeps its peer connections open with a
/// keepalive and fails them when data stays unacknowledged: that is the
/// failure detector of quiescent groups (see `transport::peers`). The
/// keepalive costs a few frames a second per server pair, whatever the
/// group count, and nothing on a connection that carries Raft traffic.
fn peer_watch_config() -> transport::TransportConfig {
    transport::TransportConfig {
        keepalive: std::time::Duration::from_millis(250),
        user_timeout: std::time::Duration::from_secs(5),
        ..transport::TransportConfig::default()
    }
}

impl RaftServer {
    /// Binds `addr` (`ip:port`, `host:port`; port 0 picks a free one) and
    /// starts serving on the library runtime.
    pub fn start(addr: &str) -> Result<Arc<RaftServer>, Status> {
        crate::return_freed_memory_promptly();
        if addr.trim().is_empty() {
            return Err(Status::new(errno::EINVAL, "empty listen address"));
        }
        let handle = super::runtime::handle();
        let net = transport::Server::bind_with(addr, &handle, peer_watch_config())
            .map_err(|e| Status::new(errno::EINVAL, format!("cannot listen on {addr}: {e}")))?;
        let server = Arc::new(RaftServer {
            net,
            nodes: RwLock::new(HashMap::new()),
        });
        for method in [METHOD_SNAPSHOT_FILES, METHOD_SNAPSHOT_READ, METHOD_ADMIN] {
            let weak = Arc::downgrade(&server);
            let handler: Handler = Arc::new(
                move |request: Request, responder: Responder| match weak.upgrade() {
                    Some(server) => server.route_internal(method, request, responder),
                    None => responder.reply_error(errno::ENODESHUTDOWN, "server is stopped", ""),
                },
            );
            server
                .net
                .add_internal_method(method, handler)
                .map_err(|e| Status::new(errno::EINTERNAL, e.to_string()))?;
        }
        for method in super::admin::CLI_METHODS {
            let weak = Arc::downgrade(&server);
            let name = cli_service::method_name(method);
            let handler: Handler = Arc::new(
                move |request: Request, responder: Responder| match weak.upgrade() {
                    Some(server) => server.route_cli(method, request, responder),
                    None => responder.reply_error(errno::ENODESHUTDOWN, "server is stopped", ""),
                },
            );
            server
                .net
                .add_internal_method(&name, handler)
                .map_err(|e| Status::new(errno::EINTERNAL, e.to_string()))?;
        }
        for method in transport::braft_raft::METHODS {
            let handler: Handler = Arc::new(move |request: Request, responder: Responder| {
                super::braft_peer::serve(method, request, responder)
            });
            server
                .net
                .add_internal_method(&transport::braft_raft::method_name(method), handler)
                .map_err(|e| Status::new(errno::EINTERNAL, e.to_string()))?;
        }
        let get_file: Handler = Arc::new(super::braft_files::serve);
        server
            .net
            .add_internal_method(super::braft_files::GET_FILE, get_file)
            .map_err(|e| Status::new(errno::EINTERNAL, e.to_string()))?;
        server
            .net
            .set_http_handler(Arc::new(super::status_pages::StatusPages {
                server: Arc::downgrade(&server),
            }));
        Ok(server)
    }

    /// Every running node's view, ordered by group and peer.
    pub(crate) fn node_views(&self) -> Vec<super::status_pages::NodeView> {
        let mut hosted: Vec<((String, String), Arc<dyn HostedNode>)> = self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(k, w)| w.upgrade().map(|n| (k.clone(), n)))
            .collect();
        hosted.sort_by(|a, b| a.0.cmp(&b.0));
        hosted.into_iter().filter_map(|(_, n)| n.view()).collect()
    }

    /// The port actually bound.
    /// The status of every node of this server, ordered by group and peer.
    /// A node whose status cannot be read now (starting, shutting down, or
    /// asked from its own driver thread) is left out.
    pub fn node_statuses(&self) -> Vec<super::NodeStatus> {
        self.node_views().into_iter().map(|v| v.status).collect()
    }

    pub fn port(&self) -> u16 {
        self.net.local_addr().port()
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.net.local_addr()
    }

    /// Counters of this port's transport: frames, write batches, Raft
    /// messages, connections (what braft shows as bvars).
    pub fn transport_stats(&self) -> transport::Stats {
        self.net.stats()
    }

    pub(crate) fn net(&self) -> &Arc<transport::Server> {
        &self.net
    }

    /// Adds a user method served on this port. Names starting with `raft.`
    /// are reserved.
    pub fn add_method(&self, name: &str, handler: Handler) -> Result<(), Status> {
        self.net.add_method(name, handler).map_err(|e| {
            let code = match e {
                transport::Error::DuplicateMethod(_) => errno::EEXIST,
                transport::Error::Stopped => errno::ENODESHUTDOWN,
                _ => errno::EINVAL,
            };
            Status::new(code, e.to_string())
        })
    }

    /// Stops listening and closes every connection. Nodes still running stop
    /// hearing from their peers; shut them down first.
    pub fn stop(&self) {
        self.net.stop();
    }

    pub fn is_stopped(&self) -> bool {
        self.net.is_stopped()
    }

    pub(crate) fn register(
        &self,
        group: &str,
        peer: &str,
        node: Arc<dyn HostedNode>,
        handle: Arc<dyn transport::NodeHandle>,
    ) -> Result<(), Status> {
        self.net.register_node(group, peer, handle).map_err(|e| {
            let code = if matches!(e, transport::Error::DuplicateNode { .. }) {
                errno::EEXIST
            } else {
                errno::EINVAL
            };
            Status::new(code, e.to_string())
        })?;
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((group.to_string(), peer.to_string()), Arc::downgrade(&node));
        Ok(())
    }

    pub(crate) fn unregister(&self, group: &str, peer: &str) {
        self.net.unregister_node(group, peer);
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(group.to_string(), peer.to_string()));
    }

    /// A `braft.CliService` call: `get_leader` is answered from the nodes'
    /// leader hints; the others go to the node the request names (its
    /// `leader_id` or `peer_id`), or to the group's only node here when it
    /// names none (braft's `get_node`: ENOENT when absent, EINVAL when the
    /// group has several nodes here).
    fn route_cli(&self, method: &'static str, mut request: Request, responder: Responder) {
        let target = match super::admin::cli_target(method, &request.payload) {
            Ok(t) => t,
            Err(status) => return responder.reply_error(status.code, &status.message, ""),
        };
        if method == "get_leader" {
            return match self.net.known_leader(&target.group, target.peer.as_deref()) {
                Ok(leader) => responder.reply(super::admin::get_leader_response(leader)),
                Err((code, text)) => responder.reply_error(code, &text, ""),
            };
        }
        let node = {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            let mut in_group = nodes
                .iter()
                .filter(|((g, _), _)| *g == target.group)
                .filter(|((_, p), _)| match &target.peer {
                    Some(want) => transport::peer_id::peer_key(want).as_deref() == Some(p.as_str()),
                    None => true,
                })
                .filter_map(|(_, w)| w.upgrade());
            match (in_group.next(), in_group.next()) {
                (Some(node), None) => Ok(node),
                (None, _) => Err(Status::new(
                    errno::ENOENT,
                    match &target.peer {
                        Some(p) => format!("Fail to find node {p} in group {}", target.group),
                        None => format!("Fail to find node in group {}", target.group),
                    },
                )),
                (Some(_), Some(_)) => Err(Status::new(
                    errno::EINVAL,
                    format!(
                        "peer must be specified since there are several nodes in group {}",
                        target.group
                    ),
                )),
            }
        };
        match node {
            Ok(node) => {
                request.group = target.group.into();
                node.serve_internal(&cli_service::method_name(method), request, responder)
            }
            Err(status) => responder.reply_error(status.code, &status.message, ""),
        }
    }

    fn route_internal(&self, method: &str, request: Request, responder: Responder) {
        let Some(peer) = internal_target(&request.payload) else {
            return responder.reply_error(
                errno::EINVAL,
                "internal request without a target peer id",
                "",
            );
        };
        let node = self
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(request.group.to_string(), peer.to_string()))
            .and_then(Weak::upgrade);
        match node {
            Some(node) => node.serve_internal(method, request, responder),
            None => responder.reply_error(
                errno::ENOENT,
                &format!("no node {peer} of group {} on this server", request.group),
                "",
            ),
        }
    }
}

impl Drop for RaftServer {
    fn drop(&mut self) {
        self.net.stop();
    }
}

/// Internal request payloads start with `u16 length + peer id`, then the
/// method's own prost body.
pub(crate) fn internal_payload(peer: &str, body: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(2 + peer.len() + body.len());
    out.extend_from_slice(&(peer.len() as u16).to_be_bytes());
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(body);
    out.into()
}

/// The peer id an internal request targets.
pub(crate) fn internal_target(payload: &[u8]) -> Option<&str> {
    let len = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]) as usize;
    std::str::from_utf8(payload.get(2..2 + len)?).ok()
}

/// The method-specific body of an internal request.
pub(crate) fn internal_body(payload: &bytes::Bytes) -> bytes::Bytes {
    let len = internal_target(payload).map_or(0, str::len);
    payload.slice((2 + len).min(payload.len())..)
}
