//! `rraft-bench multi --timeline`: where the time of a re-election goes.
//!
//! Each replica process writes the library's election trace (log target
//! [`rraft::node::ELECTION_LOG`]: suspected servers, role changes, durable
//! votes, each line naming its group) with CLOCK_MONOTONIC stamps, which
//! every process on the machine shares, to a file in its directory. After
//! the kill the parent reads the survivors' files and prints, for the groups
//! that lost their leader, when each phase was reached (milliseconds after
//! the SIGKILL: percentiles and a histogram), how many pre-votes and
//! campaigns they took, and how late the parent's own polling saw the last
//! leader.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rraft::node::ELECTION_LOG;

struct TraceFile(Mutex<File>);

impl log::Log for TraceFile {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target() == ELECTION_LOG
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(
                f,
                "{} {}",
                rraft::stage_trace::monotonic_ns(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The trace file of the process whose directory is `dir`.
pub fn trace_path(dir: &Path) -> PathBuf {
    dir.join("election-trace.log")
}

/// Records this process's election trace in `trace_path(dir)`.
pub fn record(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let file = File::create(trace_path(dir)).map_err(|e| e.to_string())?;
    let logger: &'static TraceFile = Box::leak(Box::new(TraceFile(Mutex::new(file))));
    log::set_logger(logger).map_err(|e| e.to_string())?;
    log::set_max_level(log::LevelFilter::Debug);
    Ok(())
}

/// What one group went through after the kill (ms after it).
#[derive(Default)]
struct Group {
    first_suspect: Option<f64>,
    last_suspect: Option<f64>,
    first_pre_vote: Option<f64>,
    /// (ms, process, term) of the first leader.
    leader: Option<(f64, usize, u64)>,
    /// (ms, process, term) of every campaign.
    campaigns: Vec<(f64, usize, u64)>,
    /// (ms, process, term) of every durable vote.
    votes: Vec<(f64, usize, u64)>,
    pre_votes: usize,
}

fn ms_after(ns: u64, since: u64) -> f64 {
    (ns as f64 - since as f64) / 1e6
}

fn stats_line(name: &str, mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return format!("  {name:<34} (none)");
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[((v.len() - 1) as f64 * p / 100.0).round() as usize];
    let bucket = 250.0;
    let mut hist: BTreeMap<i64, usize> = BTreeMap::new();
    for x in &v {
        *hist.entry((x / bucket).floor() as i64).or_default() += 1;
    }
    let hist: Vec<String> = hist
        .iter()
        .map(|(b, n)| format!("{}:{n}", *b as f64 * bucket))
        .collect();
    format!(
        "  {name:<34} n={:<4} p50 {:>6.0}  p90 {:>6.0}  p99 {:>6.0}  max {:>6.0}  [{}]",
        v.len(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        v[v.len() - 1],
        hist.join(" ")
    )
}

/// The report on the survivors' traces (`dirs`), the kill at `killed_ns`
/// of the server at `killed_addr`, and the parent seeing every group led
/// again at `observed_ns`.
pub fn report(dirs: &[PathBuf], killed_ns: u64, killed_addr: &str, observed_ns: u64) -> String {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (p, dir) in dirs.iter().enumerate() {
        let text = std::fs::read_to_string(trace_path(dir)).unwrap_or_default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(ns), Some(group)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(ns) = ns.parse::<u64>() else { continue };
            if ns < killed_ns {
                continue;
            }
            let t = ms_after(ns, killed_ns);
            let rest: Vec<&str> = words.collect();
            let g = groups.entry(group.to_string()).or_default();
            let term = rest.last().and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
            match rest.as_slice() {
                ["suspects", addr] if *addr == killed_addr => {
                    g.first_suspect.get_or_insert(t);
                    g.last_suspect = Some(t);
                }
                ["PreCandidate", ..] => {
                    g.pre_votes += 1;
                    g.first_pre_vote.get_or_insert(t);
                }
                ["Candidate", ..] => g.campaigns.push((t, p, term)),
                ["Leader", ..] => {
                    g.leader.get_or_insert((t, p, term));
                }
                ["vote", "durable", ..] => g.votes.push((t, p, term)),
                _ => {}
            }
        }
    }
    let lost: Vec<&Group> = groups.values().filter(|g| g.leader.is_some()).collect();
    let mut notice = Vec::new();
    let mut pre_vote = Vec::new();
    let mut campaign = Vec::new();
    let mut own_vote = Vec::new();
    let mut voter_vote = Vec::new();
    let mut leader = Vec::new();
    let mut pre_to_campaign = Vec::new();
    let mut campaign_to_leader = Vec::new();
    let mut extra_pre_votes = 0;
    let mut extra_campaigns = 0;
    for g in &lost {
        let Some((lt, lp, term)) = g.leader else {
            continue;
        };
        leader.push(lt);
        notice.extend(g.first_suspect);
        pre_vote.extend(g.first_pre_vote);
        extra_pre_votes += g.pre_votes.saturating_sub(1);
        extra_campaigns += g.campaigns.len().saturating_sub(1);
        if let Some(&(ct, _, _)) = g.campaigns.iter().find(|c| c.1 == lp && c.2 == term) {
            campaign.push(ct);
            campaign_to_leader.push(lt - ct);
            if let Some(pt) = g.first_pre_vote {
                pre_to_campaign.push(ct - pt);
            }
        }
        if let Some(v) = g.votes.iter().find(|v| v.1 == lp && v.2 == term) {
            own_vote.push(v.0);
        }
        if let Some(v) = g.votes.iter().find(|v| v.1 != lp && v.2 == term) {
            voter_vote.push(v.0);
        }
    }
    let last_leader = leader.iter().copied().fold(0.0, f64::max);
    let lines = [
        format!(
            "re-election trace: {} groups got a new leader; ms after the SIGKILL (p50 p90 p99 max [histogram, 250 ms buckets])",
            lost.len()
        ),
        stats_line("a follower suspects the server", notice),
        stats_line("first pre-vote", pre_vote),
        stats_line("winner campaigns (vote request)", campaign),
        stats_line("winner's own vote durable", own_vote),
        stats_line("voter's grant durable", voter_vote),
        stats_line("leader", leader),
        stats_line("first pre-vote -> campaign", pre_to_campaign),
        stats_line("campaign -> leader", campaign_to_leader),
        format!(
            "  extra pre-votes {extra_pre_votes}, extra campaigns {extra_campaigns}; last leader at {last_leader:.0} ms, seen by the bench's polling at {:.0} ms",
            ms_after(observed_ns, killed_ns)
        ),
    ];
    lines.join("\n")
}
