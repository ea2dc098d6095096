//! braft's `CliService` messages (braft's `cli.proto`, package `braft`):
//! what `braft_cli` and braft's route table send over baidu_std. Every
//! server serves the service (see `node::admin`); the group client asks
//! `get_leader` when it speaks baidu_std.

/// The service's full name; its methods are registered as
/// `braft.CliService.<method>`.
pub const SERVICE: &str = "braft.CliService";

/// The registered name of a CliService method.
pub fn method_name(method: &str) -> String {
    format!("{SERVICE}.{method}")
}

/// The group a request names and the node it is for (`leader_id` for
/// membership changes and transfers, `peer_id` otherwise; `None` when
/// empty or absent).
pub trait Target {
    fn target(self) -> (String, Option<String>);
}

macro_rules! target {
    ($ty:ty, |$r:ident| $peer:expr) => {
        impl Target for $ty {
            fn target(self) -> (String, Option<String>) {
                let $r = self;
                let peer: Option<String> = $peer;
                ($r.group_id, peer.filter(|p| !p.is_empty()))
            }
        }
    };
}

target!(PeerRequest, |r| Some(r.leader_id));
target!(ChangePeersRequest, |r| Some(r.leader_id));
target!(TransferLeaderRequest, |r| Some(r.leader_id));
target!(ResetPeerRequest, |r| Some(r.peer_id));
target!(SnapshotRequest, |r| r.peer_id);
target!(GetLeaderRequest, |r| r.peer_id);

/// `add_peer` and `remove_peer`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PeerRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub leader_id: String,
    #[prost(string, required, tag = "3")]
    pub peer_id: String,
}

/// The answer of `add_peer`, `remove_peer` and `change_peers`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PeersResponse {
    #[prost(string, repeated, tag = "1")]
    pub old_peers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub new_peers: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ChangePeersRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub leader_id: String,
    #[prost(string, repeated, tag = "3")]
    pub new_peers: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SnapshotRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, optional, tag = "2")]
    pub peer_id: Option<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ResetPeerRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub peer_id: String,
    #[prost(string, repeated, tag = "3")]
    pub old_peers: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub new_peers: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TransferLeaderRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub leader_id: String,
    #[prost(string, optional, tag = "3")]
    pub peer_id: Option<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GetLeaderRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, optional, tag = "2")]
    pub peer_id: Option<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct GetLeaderResponse {
    #[prost(string, required, tag = "1")]
    pub leader_id: String,
}
