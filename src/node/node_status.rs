//! braft's `get_status`, and its JSON form for tools (`raft_node_status_json`,
//! rraft-cli).

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::driver::Driver;
use crate::core::{ProgressState, Role};
use crate::proto::Configuration;

#[derive(Clone, Debug, Serialize)]
pub struct PeerLine {
    pub id: String,
    pub learner: bool,
    pub match_index: u64,
    pub next_index: u64,
    pub state: &'static str,
    /// Entries the peer is behind the leader's last index.
    pub lag: u64,
}

/// Serialised by [`NodeStatus::to_json`] with these field names, in this
/// order (tools, the C API and the Python binding parse them).
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub group: String,
    pub peer_id: String,
    /// Leader / Follower / Candidate / PreCandidate / Learner / Error.
    pub state: &'static str,
    pub term: u64,
    pub leader: Option<String>,
    pub committed_index: u64,
    pub applied_index: u64,
    pub persisted_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    #[serde(serialize_with = "configuration_json")]
    pub configuration: Configuration,
    pub peers: Vec<PeerLine>,
    pub transferring_to: Option<String>,
    /// The group sleeps on this node (no ticks, no heartbeats) until it
    /// wakes on a write, a read, a message or a suspected peer failure.
    pub quiescent: bool,
    pub error: Option<String>,
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "Leader",
        Role::Follower => "Follower",
        Role::Candidate => "Candidate",
        Role::PreCandidate => "PreCandidate",
        Role::Learner => "Learner",
    }
}

impl NodeStatus {
    pub(crate) fn collect(group: &str, d: &Driver) -> NodeStatus {
        let s = d.raft.status();
        let peers = s
            .peers
            .iter()
            .map(|p| PeerLine {
                id: p.id.to_string(),
                learner: p.is_learner,
                match_index: p.match_index,
                next_index: p.next_index,
                state: match p.state {
                    ProgressState::Probe => "probe",
                    ProgressState::Replicate => "replicate",
                    ProgressState::Snapshot => "snapshot",
                },
                lag: s.last_index.saturating_sub(p.match_index),
            })
            .collect();
        NodeStatus {
            group: group.to_string(),
            peer_id: s.id.to_string(),
            state: if d.failed.is_some() {
                "Error"
            } else {
                role_name(s.role)
            },
            term: s.term,
            leader: s.leader.as_deref().map(String::from),
            committed_index: s.commit,
            applied_index: s.applied,
            persisted_index: s.persisted,
            first_index: s.first_index,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            snapshot_term: s.snapshot_term,
            configuration: s.configuration.clone(),
            peers,
            transferring_to: s.transferring_to.as_deref().map(String::from),
            quiescent: s.quiescent,
            error: d.failed.as_ref().map(ToString::to_string),
        }
    }

    /// One JSON object. serde_json escapes every string (peer ids, group
    /// names and error texts may hold any character).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status serialises to JSON")
    }
}

/// `{"voters":[..],"learners":[..],"old_voters":[..]}`.
fn configuration_json<S: Serializer>(c: &Configuration, s: S) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_struct("Configuration", 3)?;
    out.serialize_field("voters", &c.voters)?;
    out.serialize_field("learners", &c.learners)?;
    out.serialize_field("old_voters", &c.old_voters)?;
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_keeps_its_field_names_and_escapes_every_string() {
        let status = NodeStatus {
            group: "g\"1\\\n".into(),
            peer_id: "127.0.0.1:8100:0".into(),
            state: "Leader",
            term: 3,
            leader: Some("127.0.0.1:8100:0".into()),
            committed_index: 7,
            applied_index: 6,
            persisted_index: 7,
            first_index: 1,
            last_index: 7,
            snapshot_index: 0,
            snapshot_term: 0,
            configuration: Configuration {
                voters: vec!["127.0.0.1:8100:0".into(), "127.0.0.1:8101:0".into()],
                learners: vec!["127.0.0.1:8102:0".into()],
                ..Default::default()
            },
            peers: vec![PeerLine {
                id: "127.0.0.1:8101:0".into(),
                learner: false,
                match_index: 5,
                next_index: 6,
                state: "replicate",
                lag: 2,
            }],
            transferring_to: None,
            quiescent: true,
            error: Some("disk \u{1} full".into()),
        };
        let json = status.to_json();
        assert!(
            json.starts_with("{\"group\":\"g\\\"1\\\\\\n\",\"peer_id\":"),
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["group"], "g\"1\\\n");
        assert_eq!(v["term"], 3);
        assert_eq!(v["quiescent"], true);
        assert_eq!(v["committed_index"], 7);
        assert_eq!(v["configuration"]["voters"][1], "127.0.0.1:8101:0");
        assert_eq!(v["configuration"]["learners"][0], "127.0.0.1:8102:0");
        assert_eq!(v["configuration"]["old_voters"], serde_json::json!([]));
        assert_eq!(v["peers"][0]["lag"], 2);
        assert_eq!(v["peers"][0]["learner"], false);
        assert_eq!(v["transferring_to"], serde_json::Value::Null);
        assert_eq!(v["error"], "disk \u{1} full");
    }
}
