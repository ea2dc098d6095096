//! Configuration tracking and change planning.
//!
//! A configuration takes effect as soon as its entry is appended (Raft
//! thesis §4.1), so the core keeps the history of configuration entries in
//! the log: a truncation that removes an entry reverts to the previous one.

use super::api::{Configuration, Entry, EntryType};

/// Helpers on a [`Configuration`].
pub trait ConfigurationExt {
    fn is_voter(&self, id: &str) -> bool;
    fn is_learner(&self, id: &str) -> bool;
    fn is_member(&self, id: &str) -> bool;
    fn is_joint(&self) -> bool;
    /// Every member id (voters, old voters, learners), sorted, deduplicated.
    fn members(&self) -> Vec<String>;
}

/// Whether two peer ids are equal. The ids of a group's peers usually
/// share a long prefix (the host) and differ near the end (port, index):
/// the last eight bytes are compared first, inline, so that telling peers
/// apart (every message and tick checks a few) makes no call.
#[inline]
pub fn same_id(a: &str, b: &str) -> bool {
    crate::id::same_text(a.as_bytes(), b.as_bytes())
}

impl ConfigurationExt for Configuration {
    fn is_voter(&self, id: &str) -> bool {
        self.voters.iter().any(|v| same_id(v, id)) || self.old_voters.iter().any(|v| same_id(v, id))
    }
    fn is_learner(&self, id: &str) -> bool {
        !self.is_voter(id) && self.learners.iter().any(|v| same_id(v, id))
    }
    fn is_member(&self, id: &str) -> bool {
        self.is_voter(id) || self.learners.iter().any(|v| same_id(v, id))
    }
    fn is_joint(&self) -> bool {
        !self.old_voters.is_empty()
    }
    fn members(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .voters
            .iter()
            .chain(self.old_voters.iter())
            .chain(self.learners.iter())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Decodes the configuration carried by a log entry.
pub fn decode_conf(e: &Entry) -> Option<Configuration> {
    if e.kind() != EntryType::Configuration {
        return None;
    }
    match <Configuration as prost::Message>::decode(e.data.clone()) {
        Ok(c) => Some(c),
        Err(err) => {
            log::warn!("undecodable configuration entry at {}: {err}", e.index);
            None
        }
    }
}

pub fn encode_conf(c: &Configuration) -> bytes::Bytes {
    bytes::Bytes::from(prost::Message::encode_to_vec(c))
}

/// Checks a change target: plain (not joint), non-empty voters, no
/// duplicates, no empty ids, no peer both voter and learner.
pub fn validate_target(c: &Configuration) -> Result<(), String> {
    if !c.old_voters.is_empty() {
        return Err("target configuration must not be joint (old_voters set)".into());
    }
    if c.voters.is_empty() {
        return Err("target configuration has no voter".into());
    }
    let mut all: Vec<&String> = c.voters.iter().chain(c.learners.iter()).collect();
    if all.iter().any(|s| s.is_empty()) {
        return Err("empty peer id".into());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    if all.len() != n {
        return Err("a peer is listed twice".into());
    }
    Ok(())
}

/// How to reach `target` from `current` (plain) configuration.
pub enum Plan {
    /// At most one voter added or removed: append the target directly.
    Direct(Configuration),
    /// Go through the joint configuration C(old, new) first.
    Joint(Configuration),
}

pub fn plan(current: &Configuration, target: &Configuration) -> Plan {
    let added = target
        .voters
        .iter()
        .filter(|v| !current.voters.contains(v))
        .count();
    let removed = current
        .voters
        .iter()
        .filter(|v| !target.voters.contains(v))
        .count();
    if added + removed <= 1 {
        Plan::Direct(target.clone())
    } else {
        Plan::Joint(Configuration {
            voters: target.voters.clone(),
            learners: target.learners.clone(),
            old_voters: current.voters.clone(),
        })
    }
}

/// Voters of `target` that are not voters now (they must catch up first).
pub fn new_voters(current: &Configuration, target: &Configuration) -> Vec<String> {
    target
        .voters
        .iter()
        .filter(|v| !current.is_voter(v))
        .cloned()
        .collect()
}

/// The configuration history.
#[derive(Clone, Debug, Default)]
pub struct ConfigHistory {
    /// The configuration before every entry of `entries`: from a snapshot,
    /// `initial_conf`, or `reset_configuration`.
    base: Configuration,
    /// False when `base` is not written in the log or a snapshot
    /// (initial_conf, reset): a new leader then writes it as its first entry.
    base_in_log: bool,
    /// Configuration entries of the log, ascending by index.
    entries: Vec<(u64, Configuration)>,
    /// Changes with every mutation (see [`ConfigHistory::version`]).
    version: u64,
}

impl ConfigHistory {
    pub fn new(base: Configuration, base_in_log: bool) -> ConfigHistory {
        ConfigHistory {
            base,
            base_in_log,
            entries: Vec::new(),
            version: 0,
        }
    }

    /// A number that changes whenever the history may have: what was
    /// derived from it at one version (the node's own voter status) holds
    /// while the version stays.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn current(&self) -> &Configuration {
        self.entries.last().map(|(_, c)| c).unwrap_or(&self.base)
    }

    /// The configuration in force at `index` (the last entry at or before it).
    pub fn at(&self, index: u64) -> &Configuration {
        let n = self.entries.partition_point(|(i, _)| *i <= index);
        if n == 0 {
            &self.base
        } else {
            &self.entries[n - 1].1
        }
    }

    /// Index of the entry of the current configuration (0 for the base).
    pub fn current_index(&self) -> u64 {
        self.entries.last().map(|(i, _)| *i).unwrap_or(0)
    }

    /// Whether the configuration in force is written in the log/snapshot.
    pub fn in_log(&self) -> bool {
        !self.entries.is_empty() || self.base_in_log
    }

    pub fn push(&mut self, index: u64, conf: Configuration) {
        self.truncate(index);
        self.entries.push((index, conf));
        self.version += 1;
    }

    /// Scans appended entries for configurations. True if one was found.
    pub fn scan(&mut self, entries: &[Entry]) -> bool {
        let mut found = false;
        for e in entries {
            if let Some(c) = decode_conf(e) {
                self.push(e.index, c);
                found = true;
            }
        }
        found
    }

    /// Drops configuration entries at or after `index` (log truncation).
    /// True if the configuration in force changed.
    pub fn truncate(&mut self, index: u64) -> bool {
        let before = self.entries.len();
        while matches!(self.entries.last(), Some((i, _)) if *i >= index) {
            self.entries.pop();
        }
        self.version += 1;
        before != self.entries.len()
    }

    /// Folds entries at or before a snapshot index into the base.
    pub fn compact(&mut self, index: u64) {
        let keep_from = self.entries.partition_point(|(i, _)| *i <= index);
        if keep_from > 0 {
            self.base = self.entries[keep_from - 1].1.clone();
            self.base_in_log = true;
            self.entries.drain(..keep_from);
            self.version += 1;
        }
    }

    /// Replaces the whole history (snapshot install, reset_peers).
    pub fn reset(&mut self, base: Configuration, in_log: bool) {
        self.base = base;
        self.base_in_log = in_log;
        self.entries.clear();
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: &[&str]) -> Configuration {
        Configuration {
            voters: v.iter().map(|s| s.to_string()).collect(),
            learners: vec![],
            old_voters: vec![],
        }
    }

    #[test]
    fn same_id_is_string_equality() {
        let ids = [
            "",
            "a",
            "127.0.0.1:8100:0",
            "127.0.0.1:8101:0",
            "127.0.0.2:8100:0",
            "127.0.0.1:8100:1",
            "127.0.0.1:8100:10",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(same_id(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn truncation_reverts_configuration() {
        let mut h = ConfigHistory::new(conf(&["a"]), true);
        h.push(3, conf(&["a", "b"]));
        h.push(7, conf(&["a", "b", "c"]));
        assert_eq!(h.current(), &conf(&["a", "b", "c"]));
        assert!(h.truncate(5));
        assert_eq!(h.current(), &conf(&["a", "b"]));
        assert!(h.truncate(1));
        assert_eq!(h.current(), &conf(&["a"]));
    }

    #[test]
    fn plan_single_step_or_joint() {
        let cur = conf(&["a", "b", "c"]);
        assert!(matches!(
            plan(&cur, &conf(&["a", "b", "c", "d"])),
            Plan::Direct(_)
        ));
        assert!(matches!(plan(&cur, &conf(&["a", "b"])), Plan::Direct(_)));
        match plan(&cur, &conf(&["a", "b", "d"])) {
            Plan::Joint(j) => {
                assert_eq!(j.old_voters, cur.voters);
                assert!(j.is_joint());
            }
            Plan::Direct(_) => panic!("replacing a voter needs joint consensus"),
        }
    }

    #[test]
    fn validation() {
        assert!(validate_target(&conf(&[])).is_err());
        assert!(validate_target(&conf(&["a", "a"])).is_err());
        let mut c = conf(&["a"]);
        c.learners.push("a".into());
        assert!(validate_target(&c).is_err());
        c.learners = vec!["b".into()];
        assert!(validate_target(&c).is_ok());
        c.old_voters = vec!["x".into()];
        assert!(validate_target(&c).is_err());
    }
}
