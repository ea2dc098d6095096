//! braft's `get_status`, and its JSON form for tools (`raft_node_status_json`,
//! rraft-cli).

use std::fmt::Write;

use super::driver::Driver;
use crate::core::{ProgressState, Role};
use crate::proto::Configuration;

#[derive(Clone, Debug)]
pub struct PeerLine {
    pub id: String,
    pub learner: bool,
    pub match_index: u64,
    pub next_index: u64,
    pub state: &'static str,
    /// Entries the peer is behind the leader's last index.
    pub lag: u64,
}

#[derive(Clone, Debug)]
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
    pub configuration: Configuration,
    pub peers: Vec<PeerLine>,
    pub transferring_to: Option<String>,
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
                id: p.id.clone(),
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
            peer_id: s.id.clone(),
            state: if d.failed.is_some() {
                "Error"
            } else {
                role_name(s.role)
            },
            term: s.term,
            leader: s.leader.clone(),
            committed_index: s.commit,
            applied_index: s.applied,
            persisted_index: s.persisted,
            first_index: s.first_index,
            last_index: s.last_index,
            snapshot_index: s.snapshot_index,
            snapshot_term: s.snapshot_term,
            configuration: s.configuration.clone(),
            peers,
            transferring_to: s.transferring_to.clone(),
            error: d.failed.as_ref().map(ToString::to_string),
        }
    }

    /// One JSON object (no external serializer needed for this flat shape).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push('{');
        field_str(&mut out, "group", &self.group);
        field_str(&mut out, "peer_id", &self.peer_id);
        field_str(&mut out, "state", self.state);
        field_num(&mut out, "term", self.term);
        field_opt(&mut out, "leader", self.leader.as_deref());
        field_num(&mut out, "committed_index", self.committed_index);
        field_num(&mut out, "applied_index", self.applied_index);
        field_num(&mut out, "persisted_index", self.persisted_index);
        field_num(&mut out, "first_index", self.first_index);
        field_num(&mut out, "last_index", self.last_index);
        field_num(&mut out, "snapshot_index", self.snapshot_index);
        field_num(&mut out, "snapshot_term", self.snapshot_term);
        out.push_str("\"configuration\":{");
        list(&mut out, "voters", &self.configuration.voters);
        list(&mut out, "learners", &self.configuration.learners);
        list(&mut out, "old_voters", &self.configuration.old_voters);
        close(&mut out);
        out.push_str(",\"peers\":[");
        for (i, p) in self.peers.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            field_str(&mut out, "id", &p.id);
            let _ = write!(out, "\"learner\":{},", p.learner);
            field_num(&mut out, "match_index", p.match_index);
            field_num(&mut out, "next_index", p.next_index);
            field_str(&mut out, "state", p.state);
            field_num(&mut out, "lag", p.lag);
            close(&mut out);
        }
        out.push_str("],");
        field_opt(&mut out, "transferring_to", self.transferring_to.as_deref());
        field_opt(&mut out, "error", self.error.as_deref());
        close(&mut out);
        out
    }
}

fn escape(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn field_str(out: &mut String, key: &str, value: &str) {
    escape(out, key);
    out.push(':');
    escape(out, value);
    out.push(',');
}

fn field_num(out: &mut String, key: &str, value: u64) {
    let _ = write!(out, "\"{key}\":{value},");
}

fn field_opt(out: &mut String, key: &str, value: Option<&str>) {
    match value {
        Some(v) => field_str(out, key, v),
        None => {
            let _ = write!(out, "\"{key}\":null,");
        }
    }
}

fn list(out: &mut String, key: &str, values: &[String]) {
    escape(out, key);
    out.push_str(":[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape(out, v);
    }
    out.push_str("],");
}

/// Replaces a trailing comma with the closing brace.
fn close(out: &mut String) {
    if out.ends_with(',') {
        out.pop();
    }
    out.push('}');
}
