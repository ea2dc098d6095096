//! The server's HTTP status pages, served on its port by the transport:
//! `/raft_stat` (braft's page: every node of the server) and `/metrics`
//! (Prometheus text format).

use std::fmt::Write as _;
use std::sync::Weak;

use super::node_status::NodeStatus;
use super::raft_server::RaftServer;
use crate::transport::{HttpHandler, HttpReply};

pub(crate) struct StatusPages {
    pub(crate) server: Weak<RaftServer>,
}

impl HttpHandler for StatusPages {
    fn get(&self, path: &str) -> HttpReply {
        let Some(server) = self.server.upgrade() else {
            return HttpReply::text(404, "the server is stopped\n");
        };
        match path {
            "/" | "/raft_stat" => HttpReply::text(200, raft_stat(&server.node_views())),
            "/metrics" => HttpReply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics(&server),
            },
            _ => HttpReply::text(404, "pages: /raft_stat, /metrics\n"),
        }
    }
}

/// What the pages show of one node: its status and log writer counters.
pub(crate) struct NodeView {
    pub(crate) status: NodeStatus,
    pub(crate) writer: Option<(u64, u64)>,
    pub(crate) sync_latency: Option<crate::metrics::HistogramSnapshot>,
}

fn raft_stat(nodes: &[NodeView]) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str("no nodes on this server\n");
    }
    for v in nodes {
        let s = &v.status;
        let _ = writeln!(out, "[{}] {}", s.group, s.peer_id);
        let _ = writeln!(out, "state: {}", s.state);
        if s.quiescent {
            let _ = writeln!(out, "quiescent: yes");
        }
        let _ = writeln!(out, "term: {}", s.term);
        let _ = writeln!(out, "leader: {}", s.leader.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "voters: {}", s.configuration.voters.join(","));
        if !s.configuration.learners.is_empty() {
            let _ = writeln!(out, "learners: {}", s.configuration.learners.join(","));
        }
        if !s.configuration.old_voters.is_empty() {
            let _ = writeln!(out, "old_voters: {}", s.configuration.old_voters.join(","));
        }
        let _ = writeln!(
            out,
            "log: first_index={} last_index={} persisted_index={}",
            s.first_index, s.last_index, s.persisted_index
        );
        let _ = writeln!(out, "committed_index: {}", s.committed_index);
        let _ = writeln!(
            out,
            "applied_index: {} (apply lag {})",
            s.applied_index,
            s.committed_index.saturating_sub(s.applied_index)
        );
        let _ = writeln!(
            out,
            "snapshot: index={} term={}",
            s.snapshot_index, s.snapshot_term
        );
        for p in &s.peers {
            let _ = writeln!(
                out,
                "replicator {}: match_index={} next_index={} state={} lag={}{}",
                p.id,
                p.match_index,
                p.next_index,
                p.state,
                p.lag,
                if p.learner { " learner" } else { "" }
            );
        }
        if let Some(e) = &s.error {
            let _ = writeln!(out, "error: {e}");
        }
        out.push('\n');
    }
    out
}

/// A Prometheus label value (backslash, quote and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its help, type and one sample per row.
fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// One number of a node for a metric (None: the node has none).
type ValueOf = dyn Fn(&NodeView) -> Option<u64>;

fn metrics(server: &RaftServer) -> String {
    let nodes = server.node_views();
    let mut out = String::new();
    let per_node = |f: &ValueOf| -> Vec<(String, u64)> {
        nodes
            .iter()
            .filter_map(|v| {
                let labels = format!(
                    "{{group=\"{}\",peer=\"{}\"}}",
                    label(&v.status.group),
                    label(&v.status.peer_id)
                );
                f(v).map(|value| (labels, value))
            })
            .collect()
    };
    let node_gauges: [(&str, &str, &ValueOf); 10] = [
        ("rraft_node_term", "Current term.", &|v| Some(v.status.term)),
        (
            "rraft_node_quiescent",
            "1 while the group sleeps on this node (no ticks, no heartbeats).",
            &|v| Some(u64::from(v.status.quiescent)),
        ),
        ("rraft_node_is_leader", "1 on the leader.", &|v| {
            Some(u64::from(v.status.state == "Leader"))
        }),
        ("rraft_node_committed_index", "Commit index.", &|v| {
            Some(v.status.committed_index)
        }),
        (
            "rraft_node_applied_index",
            "Index applied by the state machine.",
            &|v| Some(v.status.applied_index),
        ),
        (
            "rraft_node_apply_lag",
            "Committed entries not yet applied.",
            &|v| {
                Some(
                    v.status
                        .committed_index
                        .saturating_sub(v.status.applied_index),
                )
            },
        ),
        (
            "rraft_node_persisted_index",
            "Last index durable on this node.",
            &|v| Some(v.status.persisted_index),
        ),
        (
            "rraft_node_first_log_index",
            "First index in the log.",
            &|v| Some(v.status.first_index),
        ),
        (
            "rraft_node_last_log_index",
            "Last index in the log.",
            &|v| Some(v.status.last_index),
        ),
        (
            "rraft_node_snapshot_index",
            "Index of the latest snapshot.",
            &|v| Some(v.status.snapshot_index),
        ),
    ];
    for (name, help, f) in node_gauges {
        family(&mut out, name, "gauge", help, per_node(f));
    }
    family(
        &mut out,
        "rraft_log_writer_batches_total",
        "counter",
        "Log write batches (each at most one fdatasync).",
        per_node(&|v| v.writer.map(|w| w.0)),
    );
    family(
        &mut out,
        "rraft_log_writer_requests_total",
        "counter",
        "Log write requests acknowledged or failed.",
        per_node(&|v| v.writer.map(|w| w.1)),
    );
    let _ = writeln!(
        out,
        "# HELP rraft_log_sync_seconds Time for a log write batch to become durable (fdatasync, meta save)."
    );
    let _ = writeln!(out, "# TYPE rraft_log_sync_seconds histogram");
    for v in &nodes {
        let Some(h) = &v.sync_latency else {
            continue;
        };
        let labels = format!(
            "group=\"{}\",peer=\"{}\"",
            label(&v.status.group),
            label(&v.status.peer_id)
        );
        for (bound, count) in crate::metrics::BUCKETS_US.iter().zip(&h.cumulative) {
            let le = if *bound == u64::MAX {
                "+Inf".to_string()
            } else {
                format!("{}", *bound as f64 / 1e6)
            };
            let _ = writeln!(
                out,
                "rraft_log_sync_seconds_bucket{{{labels},le=\"{le}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "rraft_log_sync_seconds_sum{{{labels}}} {}",
            h.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "rraft_log_sync_seconds_count{{{labels}}} {}", h.count);
    }
    let mut lag_rows = Vec::new();
    for v in &nodes {
        for p in &v.status.peers {
            lag_rows.push((
                format!(
                    "{{group=\"{}\",peer=\"{}\",follower=\"{}\"}}",
                    label(&v.status.group),
                    label(&v.status.peer_id),
                    label(&p.id)
                ),
                p.lag,
            ));
        }
    }
    family(
        &mut out,
        "rraft_replication_lag",
        "gauge",
        "Entries a follower lacks, as its leader sees it.",
        lag_rows,
    );
    let t = server.transport_stats();
    let transport: [(&str, &str, u64); 12] = [
        (
            "rraft_transport_frames_in_total",
            "Frames read.",
            t.frames_in,
        ),
        ("rraft_transport_bytes_in_total", "Bytes read.", t.bytes_in),
        (
            "rraft_transport_frames_out_total",
            "Frames written.",
            t.frames_out,
        ),
        (
            "rraft_transport_bytes_out_total",
            "Bytes written.",
            t.bytes_out,
        ),
        (
            "rraft_transport_messages_in_total",
            "Raft messages received.",
            t.messages_in,
        ),
        (
            "rraft_transport_messages_out_total",
            "Raft messages sent.",
            t.messages_out,
        ),
        (
            "rraft_transport_messages_dropped_total",
            "Raft messages dropped (queue full, peer down, unknown target, other).",
            t.dropped_queue_full + t.dropped_peer_down + t.dropped_unknown_target + t.dropped_other,
        ),
        (
            "rraft_transport_reconnects_total",
            "Reconnects to a peer.",
            t.reconnects,
        ),
        (
            "rraft_transport_heartbeat_frames_out_total",
            "Coalesced heartbeat frames written (one per server pair and flush).",
            t.heartbeat_frames_out,
        ),
        (
            "rraft_transport_beats_out_total",
            "Heartbeats and answers of any group carried by coalesced heartbeat frames.",
            t.beats_out,
        ),
        (
            "rraft_transport_keepalives_out_total",
            "Keepalives written on idle peer connections.",
            t.keepalives_out,
        ),
        (
            "rraft_transport_servers_lost_total",
            "Peer connections lost or refused (each wakes quiescent groups there).",
            t.servers_lost,
        ),
    ];
    for (name, help, value) in transport {
        family(
            &mut out,
            name,
            "counter",
            help,
            vec![(String::new(), value)],
        );
    }
    out
}
