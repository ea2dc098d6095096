//! Envelopes carried in transport frames. Hand-written prost derives like
//! `rraft::proto` (in `crates/rraft-core`); `wire.proto` beside this file is the same schema for other
//! languages (field tags are the contract).

use bytes::Bytes;

use crate::proto::Message;

/// Raft messages for nodes of one group hosted on the receiving server.
/// Each message's `to` names the node; order is kept per connection.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RaftBatch {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<Message>,
}

/// A call of a method registered on the server. `call_id` is chosen by the
/// caller and echoed in the [`Response`]; many calls may be in flight on one
/// connection and answers may come back in any order.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Request {
    #[prost(uint64, tag = "1")]
    pub call_id: u64,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(string, tag = "3")]
    pub group: String,
    #[prost(bytes = "bytes", tag = "4")]
    pub payload: Bytes,
}

/// The answer to a [`Request`]. `code` 0 is success; otherwise an errno or
/// braft code (see [`super::codes`]) with `error_text`, and on "not leader"
/// (EPERM) the leader's peer id in `leader_hint` when known.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Response {
    #[prost(uint64, tag = "1")]
    pub call_id: u64,
    #[prost(int32, tag = "2")]
    pub code: i32,
    #[prost(string, tag = "3")]
    pub error_text: String,
    #[prost(string, tag = "4")]
    pub leader_hint: String,
    #[prost(bytes = "bytes", tag = "5")]
    pub payload: Bytes,
}
