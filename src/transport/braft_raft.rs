//! braft's `RaftService` messages (braft's `raft.proto`, package `braft`)
//! and their translation to and from the core's [`Message`]s, for nodes
//! sharing a group with braft replicas (`NodeOptions::braft_compat`).
//!
//! The translation is pure: no IO, no state beyond the request a response
//! answers (the caller keeps it). Every decoder checks what braft's own
//! handlers check and refuses the rest with an error text, never a panic.
//!
//! Field rules (braft ab0017f, `node.cpp`, `replicator.cpp`):
//! - peer ids travel in braft's form `ip:port:idx:role`; the core uses the
//!   canonical `ip:port:idx`.
//! - `append_entries` carries one `EntryMeta` per entry (term, type, the
//!   configuration's peers, `data_len`); the entries' data follow one after
//!   the other in the attachment. Entry `i` has index `prev_log_index + 1 + i`.
//! - A heartbeat or probe is an `append_entries` without entries; the
//!   follower commits `min(committed_index, prev_log_index + entries)` only
//!   when it holds `prev_log_index` at `prev_log_term`.
//! - A pre-vote asks at the candidate's term + 1; a grant answers with the
//!   voter's own term, which braft's candidate must not see above its own.

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use super::peer_id::{from_braft_form, to_braft_form};
use crate::proto::{Configuration, Entry, EntryType, Message, MessageType};
use crate::storage::braft_pb::{
    snapshot_meta_from_braft, snapshot_meta_to_braft, BraftSnapshotMeta,
};

/// The service's full name; methods are `braft.RaftService.<method>`.
pub const SERVICE: &str = "braft.RaftService";
pub const PRE_VOTE: &str = "pre_vote";
pub const REQUEST_VOTE: &str = "request_vote";
pub const APPEND_ENTRIES: &str = "append_entries";
pub const INSTALL_SNAPSHOT: &str = "install_snapshot";
pub const TIMEOUT_NOW: &str = "timeout_now";
/// Every method of the service.
pub const METHODS: [&str; 5] = [
    PRE_VOTE,
    REQUEST_VOTE,
    APPEND_ENTRIES,
    INSTALL_SNAPSHOT,
    TIMEOUT_NOW,
];

/// Context the core puts on a Vote that a leadership transfer triggered.
pub use rraft_core::TRANSFER_CONTEXT;

/// The registered name of a RaftService method.
pub fn method_name(method: &str) -> String {
    format!("{SERVICE}.{method}")
}

/// braft's `EntryType`.
pub mod entry_type {
    pub const UNKNOWN: i32 = 0;
    pub const NO_OP: i32 = 1;
    pub const DATA: i32 = 2;
    pub const CONFIGURATION: i32 = 3;
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct EntryMeta {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(int32, required, tag = "2")]
    pub r#type: i32,
    #[prost(string, repeated, tag = "3")]
    pub peers: Vec<String>,
    #[prost(int64, optional, tag = "4")]
    pub data_len: Option<i64>,
    #[prost(string, repeated, tag = "5")]
    pub old_peers: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TermLeader {
    #[prost(string, required, tag = "1")]
    pub peer_id: String,
    #[prost(int64, required, tag = "2")]
    pub term: i64,
}

/// `pre_vote` and `request_vote`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RequestVoteRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub server_id: String,
    #[prost(string, required, tag = "3")]
    pub peer_id: String,
    #[prost(int64, required, tag = "4")]
    pub term: i64,
    #[prost(int64, required, tag = "5")]
    pub last_log_term: i64,
    #[prost(int64, required, tag = "6")]
    pub last_log_index: i64,
    #[prost(message, optional, tag = "7")]
    pub disrupted_leader: Option<TermLeader>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct RequestVoteResponse {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(bool, required, tag = "2")]
    pub granted: bool,
    #[prost(bool, optional, tag = "3")]
    pub disrupted: Option<bool>,
    #[prost(int64, optional, tag = "4")]
    pub previous_term: Option<i64>,
    #[prost(bool, optional, tag = "5")]
    pub rejected_by_lease: Option<bool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AppendEntriesRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub server_id: String,
    #[prost(string, required, tag = "3")]
    pub peer_id: String,
    #[prost(int64, required, tag = "4")]
    pub term: i64,
    #[prost(int64, required, tag = "5")]
    pub prev_log_term: i64,
    #[prost(int64, required, tag = "6")]
    pub prev_log_index: i64,
    #[prost(message, repeated, tag = "7")]
    pub entries: Vec<EntryMeta>,
    #[prost(int64, required, tag = "8")]
    pub committed_index: i64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct AppendEntriesResponse {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
    #[prost(int64, optional, tag = "3")]
    pub last_log_index: Option<i64>,
    #[prost(bool, optional, tag = "4")]
    pub readonly: Option<bool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InstallSnapshotRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub server_id: String,
    #[prost(string, required, tag = "3")]
    pub peer_id: String,
    #[prost(int64, required, tag = "4")]
    pub term: i64,
    #[prost(message, required, tag = "5")]
    pub meta: BraftSnapshotMeta,
    #[prost(string, required, tag = "6")]
    pub uri: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InstallSnapshotResponse {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TimeoutNowRequest {
    #[prost(string, required, tag = "1")]
    pub group_id: String,
    #[prost(string, required, tag = "2")]
    pub server_id: String,
    #[prost(string, required, tag = "3")]
    pub peer_id: String,
    #[prost(int64, required, tag = "4")]
    pub term: i64,
    #[prost(bool, optional, tag = "5")]
    pub old_leader_stepped_down: Option<bool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct TimeoutNowResponse {
    #[prost(int64, required, tag = "1")]
    pub term: i64,
    #[prost(bool, required, tag = "2")]
    pub success: bool,
}

/// The group and the addressed peer (canonical form) of a request, read
/// before anything else so that it can be routed.
pub fn target(method: &str, body: &[u8]) -> Result<(String, String), String> {
    let (group, peer) = match method {
        PRE_VOTE | REQUEST_VOTE => {
            let r = decode::<RequestVoteRequest>(body)?;
            (r.group_id, r.peer_id)
        }
        APPEND_ENTRIES => {
            let r = decode::<AppendEntriesRequest>(body)?;
            (r.group_id, r.peer_id)
        }
        INSTALL_SNAPSHOT => {
            let r = decode::<InstallSnapshotRequest>(body)?;
            (r.group_id, r.peer_id)
        }
        TIMEOUT_NOW => {
            let r = decode::<TimeoutNowRequest>(body)?;
            (r.group_id, r.peer_id)
        }
        other => return Err(format!("no method {SERVICE}.{other}")),
    };
    Ok((group, from_braft_form(&peer)))
}

fn decode<M: prost::Message + Default>(body: &[u8]) -> Result<M, String> {
    M::decode(body).map_err(|e| format!("malformed request: {e}"))
}

fn index(v: i64, what: &str) -> Result<u64, String> {
    u64::try_from(v).map_err(|_| format!("negative {what} {v}"))
}

fn term(v: i64) -> Result<u64, String> {
    match index(v, "term")? {
        0 => Err("term 0".into()),
        t => Ok(t),
    }
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn peer(text: &str, what: &str) -> Result<String, String> {
    if text.parse::<super::peer_id::PeerId>().is_err() {
        return Err(format!("{what} {text:?} is not a peer id"));
    }
    Ok(from_braft_form(text))
}

fn message(
    kind: MessageType,
    from: impl Into<crate::core::PeerId>,
    to: impl Into<crate::core::PeerId>,
    term: u64,
) -> Message {
    Message {
        msg_type: kind as i32,
        from: from.into(),
        to: to.into(),
        term,
        ..Default::default()
    }
}

// ----- a braft peer's request, for the core ---------------------------------

/// A `pre_vote` (`pre`) or `request_vote` as the core's PreVote / Vote. A
/// vote naming the leader this node follows as disrupted (braft's candidate
/// after TimeoutNow, or after that leader stepped down for it) bypasses the
/// vote refusal of a live leader, as the core's transfer votes do.
pub fn vote_request_in(
    body: &[u8],
    pre: bool,
    followed_leader: Option<&str>,
) -> Result<Message, String> {
    let r = decode::<RequestVoteRequest>(body)?;
    let kind = if pre {
        MessageType::PreVote
    } else {
        MessageType::Vote
    };
    let mut m = message(
        kind,
        peer(&r.server_id, "server_id")?,
        peer(&r.peer_id, "peer_id")?,
        term(r.term)?,
    );
    m.index = index(r.last_log_index, "last_log_index")?;
    m.log_term = index(r.last_log_term, "last_log_term")?;
    if !pre {
        if let (Some(d), Some(leader)) = (&r.disrupted_leader, followed_leader) {
            if from_braft_form(&d.peer_id) == leader {
                m.context = Bytes::from_static(TRANSFER_CONTEXT);
            }
        }
    }
    Ok(m)
}

/// An `append_entries` (entries, heartbeat or probe) as the core's Append;
/// `attachment` holds the entries' data.
pub fn append_request_in(body: &[u8], attachment: &Bytes) -> Result<Message, String> {
    let r = decode::<AppendEntriesRequest>(body)?;
    let mut m = message(
        MessageType::Append,
        peer(&r.server_id, "server_id")?,
        peer(&r.peer_id, "peer_id")?,
        term(r.term)?,
    );
    m.index = index(r.prev_log_index, "prev_log_index")?;
    m.log_term = index(r.prev_log_term, "prev_log_term")?;
    m.commit = index(r.committed_index, "committed_index")?;
    let mut offset = 0usize;
    for (i, meta) in r.entries.iter().enumerate() {
        let len = usize::try_from(meta.data_len.unwrap_or(0))
            .map_err(|_| format!("entry {i}: negative data_len"))?;
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= attachment.len())
            .ok_or_else(|| {
                format!(
                    "entry {i}: data_len {len} runs past the attachment ({} bytes)",
                    attachment.len()
                )
            })?;
        let data = attachment.slice(offset..end);
        offset = end;
        let (entry_type, data) = match meta.r#type {
            entry_type::NO_OP => (EntryType::Noop, data),
            entry_type::DATA => (EntryType::Data, data),
            entry_type::CONFIGURATION => {
                let c = Configuration {
                    voters: meta.peers.iter().map(|p| from_braft_form(p)).collect(),
                    learners: Vec::new(),
                    old_voters: meta.old_peers.iter().map(|p| from_braft_form(p)).collect(),
                };
                (EntryType::Configuration, Bytes::from(c.encode_to_vec()))
            }
            other => return Err(format!("entry {i}: unknown entry type {other}")),
        };
        m.entries.push(Entry {
            term: term(meta.term)?,
            index: m
                .index
                .checked_add(1 + i as u64)
                .ok_or("entry index overflows")?,
            entry_type: entry_type as i32,
            data,
        });
    }
    if offset != attachment.len() {
        return Err(format!(
            "the entries take {offset} bytes of a {}-byte attachment",
            attachment.len()
        ));
    }
    Ok(m)
}

/// A `timeout_now` as the core's TimeoutNow.
pub fn timeout_now_in(body: &[u8]) -> Result<(Message, TimeoutNowRequest), String> {
    let r = decode::<TimeoutNowRequest>(body)?;
    let m = message(
        MessageType::TimeoutNow,
        peer(&r.server_id, "server_id")?,
        peer(&r.peer_id, "peer_id")?,
        term(r.term)?,
    );
    Ok((m, r))
}

/// An `install_snapshot` as the core's InstallSnapshot, with the URI the
/// files are fetched from.
pub fn install_snapshot_in(body: &[u8]) -> Result<(Message, String), String> {
    let r = decode::<InstallSnapshotRequest>(body)?;
    let mut m = message(
        MessageType::InstallSnapshot,
        peer(&r.server_id, "server_id")?,
        peer(&r.peer_id, "peer_id")?,
        term(r.term)?,
    );
    let meta = snapshot_meta_from_braft(&r.meta)?;
    m.commit = meta.last_index;
    m.snapshot = Some(meta);
    Ok((m, r.uri))
}

// ----- the core's answer, for a braft peer ----------------------------------

/// The core's PreVoteResponse / VoteResponse to a request of `request_term`.
/// A pre-vote grant names the candidate's current term (one below the
/// asked one): braft's candidate steps down on any answer above its term.
pub fn vote_response_out(resp: &Message, request_term: u64, pre: bool) -> RequestVoteResponse {
    let granted = !resp.reject && resp.term == request_term;
    let term = if pre && granted {
        request_term.saturating_sub(1)
    } else {
        resp.term
    };
    RequestVoteResponse {
        term: as_i64(term),
        granted,
        disrupted: None,
        previous_term: None,
        rejected_by_lease: None,
    }
}

/// Whether `resp` (an AppendResponse) can answer an Append of
/// `request_term` at `prev` whose entries end at `end`: an acknowledgement
/// covers every entry of the request (so no late acknowledgement of an
/// earlier request passes for this one), a rejection names `prev`, a
/// higher term answers anything.
pub fn answers_append(resp: &Message, prev: u64, end: u64, request_term: u64) -> bool {
    if resp.term > request_term {
        return true;
    }
    if resp.term < request_term {
        return false;
    }
    if resp.reject {
        resp.index == prev
    } else {
        resp.index >= end
    }
}

/// The core's AppendResponse as braft's answer: `last_log_index` is the
/// follower's last index (braft's leader sets its next index from it after
/// a rejection; an rraft leader checks a heartbeat's answer against what
/// the follower acknowledged).
pub fn append_response_out(resp: &Message, request_term: u64) -> AppendEntriesResponse {
    let success = !resp.reject && resp.term == request_term;
    let last = if resp.reject {
        resp.reject_hint
    } else {
        resp.follower_last.unwrap_or(resp.index)
    };
    AppendEntriesResponse {
        term: as_i64(resp.term),
        success,
        last_log_index: Some(as_i64(last)),
        readonly: None,
    }
}

// ----- the core's request, for a braft peer ---------------------------------

/// The core's PreVote / Vote as braft's request; `disrupted` names the
/// leader (and its term) a transfer vote disrupts.
pub fn vote_request_out(
    group: &str,
    m: &Message,
    disrupted: Option<(&str, u64)>,
) -> RequestVoteRequest {
    RequestVoteRequest {
        group_id: group.to_string(),
        server_id: to_braft_form(&m.from),
        peer_id: to_braft_form(&m.to),
        term: as_i64(m.term),
        last_log_term: as_i64(m.log_term),
        last_log_index: as_i64(m.index),
        disrupted_leader: disrupted.map(|(peer_id, term)| TermLeader {
            peer_id: to_braft_form(peer_id),
            term: as_i64(term),
        }),
    }
}

/// The core's Append, or its Heartbeat as an empty Append at the peer's
/// commit point (`commit`, whose term the core puts in `log_term`), as
/// braft's request and attachment.
pub fn append_request_out(group: &str, m: &Message) -> (AppendEntriesRequest, Bytes) {
    let heartbeat = m.kind() == Some(MessageType::Heartbeat);
    let (prev, prev_term) = if heartbeat {
        (m.commit, m.log_term)
    } else {
        (m.index, m.log_term)
    };
    let mut attachment = BytesMut::new();
    let entries = m
        .entries
        .iter()
        .map(|e| {
            let mut meta = EntryMeta {
                term: as_i64(e.term),
                r#type: entry_type::DATA,
                peers: Vec::new(),
                data_len: Some(0),
                old_peers: Vec::new(),
            };
            match e.kind() {
                EntryType::Noop => meta.r#type = entry_type::NO_OP,
                EntryType::Data => {
                    meta.data_len = Some(e.data.len() as i64);
                    attachment.extend_from_slice(&e.data);
                }
                EntryType::Configuration => {
                    meta.r#type = entry_type::CONFIGURATION;
                    let c = Configuration::decode(e.data.clone()).unwrap_or_default();
                    meta.peers = c.voters.iter().map(|p| to_braft_form(p)).collect();
                    meta.old_peers = c.old_voters.iter().map(|p| to_braft_form(p)).collect();
                }
            }
            meta
        })
        .collect();
    let req = AppendEntriesRequest {
        group_id: group.to_string(),
        server_id: to_braft_form(&m.from),
        peer_id: to_braft_form(&m.to),
        term: as_i64(m.term),
        prev_log_term: as_i64(prev_term),
        prev_log_index: as_i64(prev),
        entries,
        committed_index: as_i64(m.commit),
    };
    (req, attachment.freeze())
}

/// The core's TimeoutNow as braft's: the old leader counts as stepped
/// down, so the target names it disrupted in its votes and its followers
/// stop refusing votes for it.
pub fn timeout_now_out(group: &str, m: &Message) -> TimeoutNowRequest {
    TimeoutNowRequest {
        group_id: group.to_string(),
        server_id: to_braft_form(&m.from),
        peer_id: to_braft_form(&m.to),
        term: as_i64(m.term),
        old_leader_stepped_down: Some(true),
    }
}

/// The core's InstallSnapshot as braft's, naming `uri` for the files.
pub fn install_snapshot_out(group: &str, m: &Message, uri: &str) -> InstallSnapshotRequest {
    let meta = m.snapshot.clone().unwrap_or_default();
    InstallSnapshotRequest {
        group_id: group.to_string(),
        server_id: to_braft_form(&m.from),
        peer_id: to_braft_form(&m.to),
        term: as_i64(m.term),
        // Indexes and terms past i64::MAX cannot occur in a log.
        meta: snapshot_meta_to_braft(&meta).unwrap_or_default(),
        uri: uri.to_string(),
    }
}

// ----- a braft peer's answer, for the core ----------------------------------

/// braft's answer to the core's PreVote / Vote `req`, as the core's
/// response. A grant carries the asked term (the core checks it); a
/// refusal carries the higher of the voter's term and the candidate's.
pub fn vote_response_in(req: &Message, body: &[u8]) -> Result<Message, String> {
    let r = decode::<RequestVoteResponse>(body)?;
    let pre = req.kind() == Some(MessageType::PreVote);
    let kind = if pre {
        MessageType::PreVoteResponse
    } else {
        MessageType::VoteResponse
    };
    let voter_term = index(r.term, "term")?;
    let own_term = if pre {
        req.term.saturating_sub(1)
    } else {
        req.term
    };
    let mut m = message(kind, req.to.clone(), req.from.clone(), req.term);
    if !r.granted || (!pre && voter_term != req.term) {
        m.reject = true;
        m.term = voter_term.max(own_term).max(1);
    }
    Ok(m)
}

/// braft's answer to the core's Append or Heartbeat `req`, as the core's
/// AppendResponse or HeartbeatResponse. A heartbeat's answer echoes the
/// request's stamp and read context (kept on this side: braft's message
/// has no field for them) and reports the follower's last index.
pub fn append_response_in(req: &Message, body: &[u8]) -> Result<Message, String> {
    let r = decode::<AppendEntriesResponse>(body)?;
    let resp_term = index(r.term, "term")?;
    let last = r
        .last_log_index
        .map(|l| index(l, "last_log_index"))
        .transpose()?;
    let higher = resp_term > req.term;
    let term = resp_term.max(req.term);
    if req.kind() == Some(MessageType::Heartbeat) {
        let mut m = message(
            MessageType::HeartbeatResponse,
            req.to.clone(),
            req.from.clone(),
            term,
        );
        if !higher {
            m.index = req.index;
            m.context = req.context.clone();
            m.follower_last = last;
        }
        return Ok(m);
    }
    let mut m = message(
        MessageType::AppendResponse,
        req.to.clone(),
        req.from.clone(),
        term,
    );
    if higher {
        return Ok(m);
    }
    m.flight = req.flight;
    if r.success {
        m.index = req.index + req.entries.len() as u64;
    } else {
        m.reject = true;
        m.index = req.index;
        m.reject_hint = last.unwrap_or(0).min(req.index);
    }
    Ok(m)
}

/// braft's answer to the core's InstallSnapshot `req`, as the core's
/// AppendResponse (what the core answers a snapshot with).
pub fn install_snapshot_response_in(req: &Message, body: &[u8]) -> Result<Message, String> {
    let r = decode::<InstallSnapshotResponse>(body)?;
    let resp_term = index(r.term, "term")?;
    let mut m = message(
        MessageType::AppendResponse,
        req.to.clone(),
        req.from.clone(),
        resp_term.max(req.term),
    );
    if resp_term > req.term {
        return Ok(m);
    }
    m.flight = req.flight;
    let last = req.snapshot.as_ref().map_or(0, |s| s.last_index);
    m.index = last;
    if !r.success {
        m.reject = true;
        m.reject_hint = last;
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append_body(entries: Vec<EntryMeta>) -> Vec<u8> {
        AppendEntriesRequest {
            group_id: "g".into(),
            server_id: "127.0.0.1:1:0:0".into(),
            peer_id: "127.0.0.1:2:0:0".into(),
            term: 3,
            prev_log_term: 2,
            prev_log_index: 10,
            entries,
            committed_index: 9,
        }
        .encode_to_vec()
    }

    fn data_meta(len: i64) -> EntryMeta {
        EntryMeta {
            term: 3,
            r#type: entry_type::DATA,
            peers: vec![],
            data_len: Some(len),
            old_peers: vec![],
        }
    }

    #[test]
    fn append_entries_split_the_attachment_in_order() {
        let body = append_body(vec![data_meta(2), data_meta(3)]);
        let m = append_request_in(&body, &Bytes::from_static(b"abcde")).unwrap();
        assert_eq!(m.kind(), Some(MessageType::Append));
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("127.0.0.1:1:0", "127.0.0.1:2:0")
        );
        assert_eq!((m.term, m.index, m.log_term, m.commit), (3, 10, 2, 9));
        assert_eq!(m.entries.len(), 2);
        assert_eq!(
            (m.entries[0].index, &m.entries[0].data[..]),
            (11, &b"ab"[..])
        );
        assert_eq!(
            (m.entries[1].index, &m.entries[1].data[..]),
            (12, &b"cde"[..])
        );
    }

    #[test]
    fn malformed_append_bodies_are_errors() {
        // Not protobuf, no fields (term 0), data past the attachment,
        // bytes left over, a negative length, an unknown type, term 0.
        assert!(append_request_in(b"\xff\xff\xff", &Bytes::new()).is_err());
        assert!(append_request_in(&[], &Bytes::new()).is_err());
        let body = append_body(vec![data_meta(4)]);
        assert!(append_request_in(&body, &Bytes::from_static(b"abc")).is_err());
        let body = append_body(vec![data_meta(1)]);
        assert!(append_request_in(&body, &Bytes::from_static(b"ab")).is_err());
        let body = append_body(vec![data_meta(-1)]);
        assert!(append_request_in(&body, &Bytes::new()).is_err());
        let mut odd = data_meta(0);
        odd.r#type = 9;
        assert!(append_request_in(&append_body(vec![odd]), &Bytes::new()).is_err());
        let mut zero = data_meta(0);
        zero.term = 0;
        assert!(append_request_in(&append_body(vec![zero]), &Bytes::new()).is_err());
        let mut bad_peer = AppendEntriesRequest::decode(&append_body(vec![])[..]).unwrap();
        bad_peer.server_id = "nonsense".into();
        assert!(append_request_in(&bad_peer.encode_to_vec(), &Bytes::new()).is_err());
        for method in METHODS {
            assert!(target(method, b"\x08").is_err(), "{method}");
        }
        assert!(vote_request_in(b"\x0a\xff", true, None).is_err());
        assert!(timeout_now_in(&[]).is_err());
        assert!(install_snapshot_in(b"junk").is_err());
    }

    #[test]
    fn entries_round_trip_through_braft_form() {
        let conf = Configuration {
            voters: vec!["127.0.0.1:1:0".into(), "127.0.0.1:2:0".into()],
            learners: vec![],
            old_voters: vec!["127.0.0.1:1:0".into()],
        };
        let m = Message {
            msg_type: MessageType::Append as i32,
            from: "127.0.0.1:1:0".into(),
            to: "127.0.0.1:2:0".into(),
            term: 4,
            index: 7,
            log_term: 3,
            commit: 6,
            entries: vec![
                Entry {
                    term: 4,
                    index: 8,
                    entry_type: EntryType::Noop as i32,
                    data: Bytes::new(),
                },
                Entry {
                    term: 4,
                    index: 9,
                    entry_type: EntryType::Data as i32,
                    data: Bytes::from_static(b"xyz"),
                },
                Entry {
                    term: 4,
                    index: 10,
                    entry_type: EntryType::Configuration as i32,
                    data: Bytes::from(conf.encode_to_vec()),
                },
            ],
            ..Default::default()
        };
        let (req, att) = append_request_out("g", &m);
        assert_eq!(req.server_id, "127.0.0.1:1:0:0");
        let back = append_request_in(&req.encode_to_vec(), &att).unwrap();
        assert_eq!(back.entries, m.entries);
        assert_eq!((back.index, back.log_term, back.commit), (7, 3, 6));
    }

    #[test]
    fn heartbeats_go_as_empty_appends_at_the_commit_point() {
        let hb = Message {
            msg_type: MessageType::Heartbeat as i32,
            from: "127.0.0.1:1:0".into(),
            to: "127.0.0.1:2:0".into(),
            term: 5,
            index: 77, // the leader's tick stamp
            commit: 12,
            log_term: 4,
            context: Bytes::from_static(b"ctx"),
            ..Default::default()
        };
        let (req, att) = append_request_out("g", &hb);
        assert!(req.entries.is_empty() && att.is_empty());
        assert_eq!(
            (req.prev_log_index, req.prev_log_term, req.committed_index),
            (12, 4, 12)
        );
        let answer = AppendEntriesResponse {
            term: 5,
            success: true,
            last_log_index: Some(20),
            readonly: None,
        };
        let m = append_response_in(&hb, &answer.encode_to_vec()).unwrap();
        assert_eq!(m.kind(), Some(MessageType::HeartbeatResponse));
        assert_eq!(
            (m.index, m.follower_last, &m.context[..]),
            (77, Some(20), &b"ctx"[..])
        );
        assert_eq!(
            (m.from.as_str(), m.to.as_str()),
            ("127.0.0.1:2:0", "127.0.0.1:1:0")
        );
    }

    #[test]
    fn append_answers_translate_both_ways() {
        let req = Message {
            msg_type: MessageType::Append as i32,
            from: "a:1:0".into(),
            to: "b:1:0".into(),
            term: 5,
            index: 10,
            flight: 3,
            entries: vec![Entry::default(); 2],
            ..Default::default()
        };
        let ok = AppendEntriesResponse {
            term: 5,
            success: true,
            last_log_index: Some(12),
            readonly: None,
        };
        let m = append_response_in(&req, &ok.encode_to_vec()).unwrap();
        assert!(!m.reject);
        assert_eq!((m.index, m.flight), (12, 3));
        let no = AppendEntriesResponse {
            success: false,
            last_log_index: Some(4),
            ..ok.clone()
        };
        let m = append_response_in(&req, &no.encode_to_vec()).unwrap();
        assert!(m.reject);
        assert_eq!((m.index, m.reject_hint), (10, 4));
        let newer = AppendEntriesResponse {
            term: 9,
            success: false,
            ..ok
        };
        let m = append_response_in(&req, &newer.encode_to_vec()).unwrap();
        assert_eq!((m.term, m.reject), (9, false));
        assert!(
            append_response_in(&req, b"\x08").is_err(),
            "a truncated varint"
        );

        // The core's answers as braft's.
        let mut core = message(MessageType::AppendResponse, "b:1:0", "a:1:0", 5);
        core.index = 12;
        assert!(answers_append(&core, 10, 12, 5));
        assert!(
            !answers_append(&core, 12, 14, 5),
            "an earlier request's acknowledgement does not answer a later one"
        );
        let out = append_response_out(&core, 5);
        assert!(out.success);
        assert_eq!(out.last_log_index, Some(12));
        core.follower_last = Some(15);
        assert_eq!(
            append_response_out(&core, 5).last_log_index,
            Some(15),
            "the follower's last index, beyond what this append covered"
        );
        core.reject = true;
        core.index = 10;
        core.reject_hint = 7;
        assert!(answers_append(&core, 10, 12, 5) && !answers_append(&core, 11, 12, 5));
        let out = append_response_out(&core, 5);
        assert!(!out.success);
        assert_eq!(out.last_log_index, Some(7));
        core.term = 4;
        assert!(!answers_append(&core, 10, 12, 5));
    }

    #[test]
    fn votes_translate_both_ways() {
        let body = RequestVoteRequest {
            group_id: "g".into(),
            server_id: "127.0.0.1:1:0:0".into(),
            peer_id: "127.0.0.1:2:0:0".into(),
            term: 8,
            last_log_term: 7,
            last_log_index: 30,
            disrupted_leader: Some(TermLeader {
                peer_id: "127.0.0.1:3:0:0".into(),
                term: 7,
            }),
        }
        .encode_to_vec();
        let pre = vote_request_in(&body, true, Some("127.0.0.1:3:0")).unwrap();
        assert_eq!(pre.kind(), Some(MessageType::PreVote));
        assert!(pre.context.is_empty());
        let vote = vote_request_in(&body, false, Some("127.0.0.1:3:0")).unwrap();
        assert_eq!(&vote.context[..], TRANSFER_CONTEXT);
        let other = vote_request_in(&body, false, Some("127.0.0.1:4:0")).unwrap();
        assert!(other.context.is_empty());
        assert_eq!((vote.term, vote.index, vote.log_term), (8, 30, 7));

        // A pre-vote grant names the candidate's current term.
        let grant = message(MessageType::PreVoteResponse, "b", "a", 8);
        let out = vote_response_out(&grant, 8, true);
        assert!(out.granted);
        assert_eq!(out.term, 7);
        let mut refusal = grant.clone();
        refusal.reject = true;
        refusal.term = 6;
        assert!(!vote_response_out(&refusal, 8, true).granted);

        // braft's answers as the core's.
        let req = message(MessageType::PreVote, "a", "b", 8);
        let yes = RequestVoteResponse {
            term: 7,
            granted: true,
            ..Default::default()
        };
        let m = vote_response_in(&req, &yes.encode_to_vec()).unwrap();
        assert_eq!(
            (m.kind(), m.term, m.reject),
            (Some(MessageType::PreVoteResponse), 8, false)
        );
        let no = RequestVoteResponse {
            term: 9,
            granted: false,
            ..Default::default()
        };
        let m = vote_response_in(&req, &no.encode_to_vec()).unwrap();
        assert_eq!((m.term, m.reject), (9, true));
        let vreq = message(MessageType::Vote, "a", "b", 8);
        let m = vote_response_in(&vreq, &yes.encode_to_vec()).unwrap();
        assert!(m.reject, "a vote granted in another term is no vote");
        assert!(vote_response_in(&vreq, b"garbage").is_err());
    }
}
