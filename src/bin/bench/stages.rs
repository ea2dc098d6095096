//! `--trace-stages`: where one request's time goes, stage by stage.
//!
//! The library records a monotonic timestamp at each stage of the write
//! path when `RRAFT_TRACE_STAGES` names a directory (`rraft::stage_trace`);
//! every process of the run (client and replicas) writes its own file
//! there. This module lines the files up: a replica stage by the log index,
//! the client's request and answer and the leader's request read by time
//! (so the table is exact for one client, whose ops never overlap). It
//! prints, per stage, the median time since the client sent the request
//! and the median time since the stage the path came from.

use std::collections::HashMap;
use std::path::Path;

use rraft::stage_trace::Stage;

/// Where a stage happens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Client,
    Leader,
    /// The follower whose ack arrived first (the one that made the quorum).
    Follower,
}

/// How a row's time is found for one op.
#[derive(Clone, Copy)]
enum Find {
    /// The stage's first record at the op's log index.
    Index,
    /// The stage carries no index: its first record in the same process
    /// at or after the time of row `.0`.
    After(usize),
    /// Its last record at or before the time of row `.0`.
    Before(usize),
}

/// One row of the table: where, the stage, how it is found, the row its
/// time is counted from (None: the first row, or `COMMIT_ROW`), and what
/// the time since that row measures.
struct Row {
    who: Who,
    stage: Stage,
    find: Find,
    from: Option<usize>,
    what: &'static str,
}

const fn row(who: Who, stage: Stage, find: Find, from: Option<usize>, what: &'static str) -> Row {
    Row {
        who,
        stage,
        find,
        from,
        what,
    }
}

use Find::{After, Before, Index};
use Who::{Client, Follower, Leader};

/// The path of a write, in order. `After`, `Before` and `from` index this
/// list; a row is found after the rows it refers to.
const PATH: [Row; 22] = [
    row(
        Client,
        Stage::RequestSent,
        Before(1),
        None,
        "client encodes the request",
    ),
    row(
        Leader,
        Stage::RequestRead,
        Before(2),
        Some(0),
        "loopback, leader's IO thread reads it",
    ),
    row(
        Leader,
        Stage::AppendSent,
        Index,
        Some(1),
        "propose: driver turn, Appends encoded",
    ),
    row(
        Leader,
        Stage::PoolWake,
        After(2),
        Some(2),
        "Appends written, leader's log writer woken",
    ),
    row(
        Leader,
        Stage::WriteStart,
        Index,
        Some(3),
        "leader's log writer runs",
    ),
    row(
        Leader,
        Stage::SyncStart,
        Index,
        Some(4),
        "leader's append (write syscall)",
    ),
    row(Leader, Stage::SyncEnd, Index, Some(5), "leader's fdatasync"),
    row(
        Leader,
        Stage::Reported,
        Index,
        Some(6),
        "leader's write reported",
    ),
    row(
        Follower,
        Stage::AppendRead,
        Index,
        Some(2),
        "loopback, follower's IO thread reads it",
    ),
    row(
        Follower,
        Stage::PoolWake,
        After(8),
        Some(8),
        "follower turn, its log writer woken",
    ),
    row(
        Follower,
        Stage::WriteStart,
        Index,
        Some(9),
        "follower's log writer runs",
    ),
    row(
        Follower,
        Stage::SyncStart,
        Index,
        Some(10),
        "follower's append (write syscall)",
    ),
    row(
        Follower,
        Stage::SyncEnd,
        Index,
        Some(11),
        "follower's fdatasync",
    ),
    row(
        Follower,
        Stage::AckSent,
        Index,
        Some(12),
        "follower's done, ack encoded",
    ),
    row(
        Follower,
        Stage::PeerWritten,
        After(13),
        Some(13),
        "ack written (write syscall)",
    ),
    row(
        Follower,
        Stage::Reported,
        Index,
        Some(14),
        "follower's batch reported",
    ),
    row(
        Leader,
        Stage::AckRead,
        Index,
        Some(14),
        "loopback, leader's IO thread reads the ack",
    ),
    row(
        Leader,
        Stage::ApplyQueued,
        Index,
        None,
        "leader turn: commit, apply queued",
    ),
    row(
        Leader,
        Stage::PoolWake,
        After(17),
        Some(17),
        "FSM thread woken",
    ),
    row(
        Leader,
        Stage::ApplyStart,
        Index,
        Some(18),
        "FSM thread runs",
    ),
    row(
        Leader,
        Stage::ApplyEnd,
        Index,
        Some(19),
        "on_apply, done, answer written",
    ),
    // From the FSM thread's start: the client may read the answer before
    // the FSM thread, preempted by it, records the batch's end.
    row(
        Client,
        Stage::ResponseRead,
        After(19),
        Some(19),
        "client reads the answer",
    ),
];

/// Row of `ApplyQueued`: counted from the later of the leader's own write
/// report and the ack (whichever let the entry commit).
const COMMIT_ROW: usize = 17;
const LEADER_REPORTED: usize = 7;
const ACK_READ: usize = 16;
/// The follower row whose time picks the follower that made the quorum.
const FOLLOWER_ACK: usize = 13;
/// The last row: an op is complete when it is found.
const LAST: usize = PATH.len() - 1;

/// One process's records, by stage: (ns, index), in time order.
type Records = HashMap<u8, Vec<(u64, u64)>>;

fn load(dir: &Path, from_ns: u64, to_ns: u64) -> Result<Vec<Records>, String> {
    let mut procs = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
        let mut recs: Records = HashMap::new();
        for line in text.lines() {
            let mut f = line.split(' ').map(|v| v.parse::<u64>().unwrap_or(0));
            let (Some(ns), Some(stage), Some(index)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if (from_ns..to_ns).contains(&ns) {
                recs.entry(stage as u8).or_default().push((ns, index));
            }
        }
        for v in recs.values_mut() {
            v.sort_unstable();
        }
        procs.push(recs);
    }
    Ok(procs)
}

fn count(r: &Records, s: Stage) -> usize {
    r.get(&(s as u8)).map_or(0, Vec::len)
}

/// By index, the first time of `stage` (faster than `at` per op).
fn by_index(r: &Records, stage: Stage) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for &(ns, i) in r.get(&(stage as u8)).into_iter().flatten() {
        m.entry(i).or_insert(ns);
    }
    m
}

/// Last time of `stage` at or before `t`.
fn last_before(r: &Records, stage: Stage, t: u64) -> Option<u64> {
    let v = r.get(&(stage as u8))?;
    let i = v.partition_point(|(ns, _)| *ns <= t);
    i.checked_sub(1).map(|i| v[i].0)
}

/// First time of `stage` at or after `t`.
fn first_after(r: &Records, stage: Stage, t: u64) -> Option<u64> {
    let v = r.get(&(stage as u8))?;
    let i = v.partition_point(|(ns, _)| *ns < t);
    v.get(i).map(|x| x.0)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The table of the stage files in `dir` recorded in `[from_ns, to_ns)`.
pub fn table(dir: &Path, from_ns: u64, to_ns: u64) -> Result<String, String> {
    let procs = load(dir, from_ns, to_ns)?;
    let leader = procs
        .iter()
        .max_by_key(|r| count(r, Stage::RequestRead))
        .filter(|r| count(r, Stage::RequestRead) > 0)
        .ok_or("no process read a request")?;
    let client = procs
        .iter()
        .max_by_key(|r| count(r, Stage::RequestSent))
        .ok_or("no client")?;
    let followers: Vec<&Records> = procs
        .iter()
        .filter(|r| !std::ptr::eq(*r, leader) && count(r, Stage::AppendRead) > 0)
        .collect();
    let indexed = |r: &Records, who: Who| -> Vec<HashMap<u64, u64>> {
        PATH.iter()
            .map(|row| match (row.find, row.who == who) {
                (Index, true) => by_index(r, row.stage),
                _ => HashMap::new(),
            })
            .collect()
    };
    let leader_at = indexed(leader, Leader);
    let follower_at: Vec<Vec<HashMap<u64, u64>>> =
        followers.iter().map(|f| indexed(f, Follower)).collect();
    let mut offsets: Vec<Vec<f64>> = vec![Vec::new(); PATH.len()];
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); PATH.len()];
    let mut ops = 0;
    let mut leader_gated = 0;
    let written = leader
        .get(&(Stage::WriteStart as u8))
        .cloned()
        .unwrap_or_default();
    'ops: for &(_, index) in &written {
        // The follower whose ack was encoded first.
        let Some((_, fi)) = follower_at
            .iter()
            .enumerate()
            .filter_map(|(fi, f)| Some((f[FOLLOWER_ACK].get(&index).copied()?, fi)))
            .min()
        else {
            continue;
        };
        let mut t: Vec<Option<u64>> = vec![None; PATH.len()];
        // Index rows first, then rows found by time, until none is left.
        for (k, row) in PATH.iter().enumerate() {
            if let Index = row.find {
                t[k] = match row.who {
                    Leader => leader_at[k].get(&index).copied(),
                    Follower => follower_at[fi][k].get(&index).copied(),
                    Client => None,
                };
                if t[k].is_none() {
                    continue 'ops;
                }
            }
        }
        for _ in 0..PATH.len() {
            for (k, row) in PATH.iter().enumerate() {
                let recs = match row.who {
                    Leader => leader,
                    Follower => followers[fi],
                    Client => client,
                };
                t[k] = match (t[k], row.find) {
                    (None, After(j)) => t[j].and_then(|at| first_after(recs, row.stage, at)),
                    (None, Before(j)) => t[j].and_then(|at| last_before(recs, row.stage, at)),
                    (known, _) => known,
                };
            }
        }
        let Some(t) = t.into_iter().collect::<Option<Vec<u64>>>() else {
            continue;
        };
        if t[LAST].saturating_sub(t[0]) > 100_000_000 {
            continue;
        }
        ops += 1;
        if t[LEADER_REPORTED] > t[ACK_READ] {
            leader_gated += 1;
        }
        for k in 0..PATH.len() {
            offsets[k].push((t[k] as f64 - t[0] as f64) / 1000.0);
            let from = match PATH[k].from {
                Some(j) => Some(t[j]),
                None if k == COMMIT_ROW => Some(t[LEADER_REPORTED].max(t[ACK_READ])),
                None => None,
            };
            if let Some(from) = from {
                steps[k].push((t[k] as f64 - from as f64) / 1000.0);
            }
        }
    }
    if ops == 0 {
        return Err("no op had every stage recorded".into());
    }
    let mut out = format!(
        "stages of {ops} ops (medians, us; 'since' counts from the stage named in brackets; \
         the leader's own write was the later half of the quorum in {:.0}% of them)\n",
        100.0 * leader_gated as f64 / ops as f64
    );
    out += "  at     since  stage\n";
    for (k, row) in PATH.iter().enumerate() {
        let who = match row.who {
            Client => "client",
            Leader => "leader",
            Follower => "follower",
        };
        let since = if steps[k].is_empty() {
            "      ".to_string()
        } else {
            format!("{:6.1}", median(&mut steps[k]))
        };
        let from = match row.from {
            Some(j) => format!(" [{j}]"),
            None if k == COMMIT_ROW => format!(" [later of {LEADER_REPORTED}, {ACK_READ}]"),
            None => String::new(),
        };
        out += &format!(
            "{:6.1}  {since}  {k:>2} {who:<8} {:?}: {}{from}\n",
            median(&mut offsets[k]),
            row.stage,
            row.what
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes one process's trace file: (µs after `base`, stage, index).
    fn write(dir: &Path, name: &str, base: u64, recs: &[(u64, Stage, u64)]) {
        let text: String = recs
            .iter()
            .map(|(us, s, i)| format!("{} {} {i}\n", base + us * 1000, *s as u8))
            .collect();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn the_table_lines_up_the_processes_of_each_op() {
        let dir = tempfile::tempdir().unwrap();
        let (mut client, mut leader) = (Vec::new(), Vec::new());
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        for op in 0..3u64 {
            let at = op * 1000;
            let i = 10 + op;
            client.push((at, Stage::RequestSent, 0));
            client.push((at + 300, Stage::ResponseRead, 0));
            for (us, s, index) in [
                (20, Stage::RequestRead, 0),
                (25, Stage::AppendSent, i),
                (30, Stage::PoolWake, 0),
                (50, Stage::WriteStart, i),
                (55, Stage::SyncStart, i),
                (200, Stage::SyncEnd, i),
                (205, Stage::Reported, i),
                (240, Stage::AckRead, i),
                (245, Stage::ApplyQueued, i),
                (246, Stage::PoolWake, 0),
                (260, Stage::ApplyStart, i),
                (280, Stage::ApplyEnd, i),
            ] {
                leader.push((at + us, s, index));
            }
            for (us, s, index) in [
                (40, Stage::AppendRead, i),
                (45, Stage::PoolWake, 0),
                (60, Stage::WriteStart, i),
                (65, Stage::SyncStart, i),
                (220, Stage::SyncEnd, i),
                (221, Stage::AckSent, i),
                (230, Stage::PeerWritten, 0),
                (231, Stage::Reported, i),
            ] {
                fast.push((at + us, s, index));
                // The other follower acks later: not the one of the quorum.
                slow.push((at + us + 30, s, index));
            }
        }
        let base = 1_000_000_000;
        write(dir.path(), "stages.1", base, &client);
        write(dir.path(), "stages.2", base, &leader);
        write(dir.path(), "stages.3", base, &slow);
        write(dir.path(), "stages.4", base, &fast);
        let table = table(dir.path(), base, base + 10_000_000).unwrap();
        assert!(table.starts_with("stages of 3 ops"), "{table}");
        assert!(table.contains("quorum in 0% of them"), "{table}");
        let line = |stage: &str| -> Vec<String> {
            table
                .lines()
                .find(|l| l.contains(stage))
                .unwrap_or_else(|| panic!("no {stage} in {table}"))
                .split_whitespace()
                .take(2)
                .map(str::to_string)
                .collect()
        };
        // Offset from the client's send, and time since the row counted from.
        assert_eq!(line("follower AppendRead"), ["40.0", "15.0"]);
        assert_eq!(line("follower PeerWritten"), ["230.0", "9.0"]);
        assert_eq!(line("leader   AckRead"), ["240.0", "10.0"]);
        // Committed by the later of the leader's report (205) and the ack.
        assert_eq!(line("leader   ApplyQueued"), ["245.0", "5.0"]);
        assert_eq!(line("client   ResponseRead"), ["300.0", "40.0"]);
    }
}
