//! Majority and joint-majority math as a table (`testdata/quorum.txt`).
//!
//! - `committed voters=.. [old=..] match=id:index,..`: the joint committed
//!   index (a voter without a match has 0).
//! - `vote voters=.. [old=..] votes=id:y|n,..`: the joint election result.
//! - `majority voters=.. [old=..] ok=id,..`: whether `ok` holds for a
//!   majority of each set (check-quorum, ReadIndex confirmation).

use std::collections::BTreeMap;

use crate::datadriven::{run_file, Case};
use crate::quorum::{self, VoteResult};
use crate::Configuration;

fn configuration(c: &Case) -> Configuration {
    Configuration {
        voters: c.list("voters"),
        learners: Vec::new(),
        old_voters: c.list("old"),
    }
}

fn pairs(c: &Case, key: &str) -> BTreeMap<String, String> {
    c.list(key)
        .into_iter()
        .map(|p| {
            let (id, v) = p.split_once(':').expect("id:value");
            (id.to_string(), v.to_string())
        })
        .collect()
}

fn run(c: &Case) -> String {
    let conf = configuration(c);
    match c.command.as_str() {
        "committed" => {
            let matches: BTreeMap<String, u64> = pairs(c, "match")
                .into_iter()
                .map(|(id, v)| (id, v.parse().expect("index")))
                .collect();
            let index = quorum::joint_committed_index(&conf, &|id: &str| {
                matches.get(id).copied().unwrap_or(0)
            });
            index.to_string()
        }
        "vote" => {
            let votes: BTreeMap<crate::PeerId, bool> = pairs(c, "votes")
                .into_iter()
                .map(|(id, v)| (id.into(), v == "y"))
                .collect();
            match quorum::joint_vote_result(&conf, &votes) {
                VoteResult::Won => "won",
                VoteResult::Lost => "lost",
                VoteResult::Pending => "pending",
            }
            .to_string()
        }
        "majority" => {
            let ok = c.list("ok");
            quorum::joint_has_majority(&conf, &|id: &str| ok.iter().any(|o| o == id)).to_string()
        }
        other => panic!("line {}: unknown command {other}", c.line),
    }
}

#[test]
fn quorum_table() {
    run_file("quorum.txt", run);
}
