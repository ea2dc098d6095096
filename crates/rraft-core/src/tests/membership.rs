//! Membership change planning as a table (`testdata/membership.txt`): what
//! a change target must satisfy, whether it is one step or goes through the
//! joint configuration, and which voters must catch up first.
//!
//! `plan voters=.. [learners=..] target=.. [target_learners=..] [target_old=..]`
//! prints `invalid: <why>`, or the plan (`direct` / `joint` and the
//! configuration to append first) and `catch up: <new voters>`.

use crate::datadriven::{run_file, Case};
use crate::membership::{self, Plan};
use crate::Configuration;

fn show(c: &Configuration) -> String {
    let mut s = format!("voters={}", c.voters.join(","));
    if !c.old_voters.is_empty() {
        s += &format!(" old={}", c.old_voters.join(","));
    }
    if !c.learners.is_empty() {
        s += &format!(" learners={}", c.learners.join(","));
    }
    s
}

fn run(c: &Case) -> String {
    assert_eq!(c.command, "plan", "line {}: unknown command", c.line);
    let current = Configuration {
        voters: c.list("voters"),
        learners: c.list("learners"),
        old_voters: Vec::new(),
    };
    let target = Configuration {
        voters: c.list("target"),
        learners: c.list("target_learners"),
        old_voters: c.list("target_old"),
    };
    if let Err(why) = membership::validate_target(&target) {
        return format!("invalid: {why}");
    }
    let first = match membership::plan(&current, &target) {
        Plan::Direct(conf) => format!("direct {}", show(&conf)),
        Plan::Joint(conf) => format!("joint {}", show(&conf)),
    };
    let catch_up = membership::new_voters(&current, &target);
    if catch_up.is_empty() {
        format!("{first}\ncatch up: none")
    } else {
        format!("{first}\ncatch up: {}", catch_up.join(","))
    }
}

#[test]
fn membership_planning_table() {
    run_file("membership.txt", run);
}
