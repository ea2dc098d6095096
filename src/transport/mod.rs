//! The tokio TCP transport: one port per process hosts every Raft node of
//! every group plus the user's own request/response methods.
//!
//! - [`frame`]: the wire framing (`[u32 BE length][u8 kind][prost body]`)
//!   and a codec over any `AsyncRead` / `AsyncWrite`.
//! - [`peer_id`]: braft peer ids (`host:port[:idx[:role]]`), the one
//!   parser, and the addresses and routing keys derived from them.
//! - [`wire`]: the prost envelopes carried in frames (see `wire.proto`).
//! - [`server`]: [`Server`] accepts connections, routes Raft batches to the
//!   registered [`NodeHandle`]s and requests to method handlers.
//! - [`peers`]: [`Transport`], the fire-and-forget Raft message sender: one
//!   TCP connection per remote address, batched writes, reconnect back-off,
//!   drops under pressure (Raft tolerates loss).
//! - [`rpc`]: [`RpcClient`], pipelined request/response calls over pooled
//!   connections.
//! - [`client`]: [`GroupClient`], finds and follows the leader of a group
//!   (braft's route table + channel).
//! - [`stats`]: counters shown in the node status.
//! - [`http`]: status pages over HTTP on the same port (a connection that
//!   starts with `GET ` is HTTP, not frames).
//! - [`baidu_std`]: brpc's protocol on the same port (a connection that
//!   starts with `PRPC`), so brpc clients call the user's methods and
//!   braft's [`cli_service`]; the RPC client speaks it too.
//! - [`braft_raft`]: braft's `RaftService` messages and their translation
//!   to and from core messages (nodes sharing a group with braft).
//!
//! # Design notes
//!
//! - **Batching.** Each per-address sender task takes everything queued at
//!   wake-up (up to `max_batch_bytes`, 4 MiB), packs it into one
//!   `RaftBatch` frame per group (split below the frame limit), puts the
//!   heartbeats and heartbeat answers of every group into one `Heartbeats`
//!   frame after them (peer ids listed once), and writes all frames with
//!   one `write_all` + flush. Under load the batch grows by
//!   itself (100k heartbeats went out in 3 writes in the sanity test);
//!   when idle a single message is written at once (TCP_NODELAY). Server
//!   responses and RPC requests are batched the same way. A log writer's
//!   acknowledgements and a leader's Appends ahead of its log write skip
//!   the task while it is idle: the sending thread writes them itself,
//!   one write per connection per batch (`Transport::send_now`,
//!   `hold_peer_writes`).
//! - **Back-pressure.** Raft traffic is lossy by design: a bounded queue
//!   per address (`queue_capacity`, 4096 messages); when full, or while the
//!   peer is down (connect failed, back-off 10 ms doubling to 1 s), messages
//!   are dropped and counted, and `on_unreachable(group, peer)` fires once
//!   per back-off window. A write stalled for `write_timeout` closes the
//!   connection. Requests are not lossy: a server connection stops reading
//!   when `max_inflight_requests` of its requests are unanswered, which
//!   pushes back through TCP onto the caller.
//! - **Zero copy in.** Frame bodies are frozen slices of the read buffer;
//!   `Entry.data` and payloads are sub-slices of them. A long-lived small
//!   slice keeps its read chunk (64 KiB or the frame) alive; copy it out if
//!   you keep it for long.
//! - **Safety against the network.** A length above `max_frame` (default
//!   64 MiB) or an unknown kind is refused from the 5 header bytes; the
//!   body is buffered only as fast as it arrives; prost validates every
//!   length against the bytes present. Any error closes that connection
//!   with a `warn` line and bumps `bad_frames`.
//! - **Watching peer servers.** With `keepalive` set (a Raft server sets
//!   it), an idle peer connection carries an empty batch every interval
//!   instead of closing, and TCP_USER_TIMEOUT fails it when data stays
//!   unacknowledged; a lost or refused connection calls
//!   `on_server_lost(addr)`, which the server passes to every node
//!   (`NodeHandle::server_unreachable`): the failure detector of
//!   quiescent groups, per server pair rather than per group.
//!
//! Nothing here creates a runtime: every constructor takes a
//! `tokio::runtime::Handle`. Callbacks (`NodeHandle::deliver`, method
//! handlers, `on_unreachable`, `GroupClient::call_with` completions) run on
//! a tokio worker and must not block.

pub mod baidu_std;
pub mod braft_raft;
pub mod cli_service;
pub mod client;
mod codec;
pub mod frame;
pub mod http;
mod owner;
mod peer_direct;
pub mod peer_id;
pub mod peers;
pub mod rpc;
pub mod server;
pub mod stats;
pub mod wire;
pub mod wire_str;

pub use client::GroupClient;
#[cfg(test)]
pub(crate) use codec::replies_held;
pub use codec::{hold_replies, release_held_replies, HeldReplies};
pub use frame::{Frame, FrameError, FrameKind, DEFAULT_MAX_FRAME};
pub use http::{HttpHandler, HttpReply};
pub use peer_direct::{after_peer_writes, hold_peer_writes, HeldPeerWrites};
pub use peers::{ServerLostFn, Transport, TransportConfig, UnreachableFn};
pub use rpc::{RpcClient, RpcError};
pub use server::{CallInfo, Handler, NodeHandle, Responder, Server};
pub use stats::Stats;
pub use wire::{Beat, Heartbeats, RaftBatch, Request, Response};
pub use wire_str::WireStr;

use std::fmt;

/// Status codes carried in [`Response::code`]: 0 is success, otherwise a
/// plain errno value or a braft code (the node layer's codes pass through
/// unchanged).
pub mod codes {
    /// Success.
    pub const OK: i32 = 0;
    /// The handler dropped its [`super::Responder`] without answering, or
    /// panicked.
    pub const EINTERNAL: i32 = -1;
    /// Not the leader; `leader_hint` names the leader if known (braft's code).
    pub const EPERM: i32 = 1;
    /// No such group on this server.
    pub const ENOENT: i32 = 2;
    /// No leader known yet: retry later.
    pub const EAGAIN: i32 = 11;
    /// Malformed request.
    pub const EINVAL: i32 = 22;
    /// The server is stopping.
    pub const ESHUTDOWN: i32 = 108;
    /// No such method (brpc's ENOMETHOD).
    pub const ENOMETHOD: i32 = 1002;
    /// braft: the node is shutting down; try another peer.
    pub const ENODESHUTDOWN: i32 = 10006;
}

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// rraft's own frames (see [`frame`]).
    #[default]
    Rraft,
    /// brpc's baidu_std (see [`baidu_std`]).
    BaiduStd,
}

/// Reserved prefix of the library's own methods.
pub const RESERVED_PREFIX: &str = "raft.";

/// Built-in method: payload = group id, answer payload = leader peer id.
pub const METHOD_GET_LEADER: &str = "raft.get_leader";

/// Registration errors of the [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A node with this group and peer id is already registered.
    DuplicateNode { group: String, peer_id: String },
    /// The peer id does not parse as `host:port[:idx[:role]]`.
    BadPeerId(String),
    /// A method with this name is already registered.
    DuplicateMethod(String),
    /// User methods may not start with `raft.`.
    ReservedMethod(String),
    /// An empty method name.
    EmptyName,
    /// The server was stopped.
    Stopped,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DuplicateNode { group, peer_id } => {
                write!(f, "node {peer_id} of group {group} is already registered")
            }
            Error::BadPeerId(p) => write!(f, "malformed peer id {p:?} (want host:port[:idx])"),
            Error::DuplicateMethod(m) => write!(f, "method {m:?} is already registered"),
            Error::ReservedMethod(m) => {
                write!(
                    f,
                    "method names starting with {RESERVED_PREFIX:?} are reserved ({m:?})"
                )
            }
            Error::EmptyName => write!(f, "empty method name"),
            Error::Stopped => write!(f, "the server is stopped"),
        }
    }
}

impl std::error::Error for Error {}
