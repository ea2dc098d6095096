//! End to end: examples-c/coffee driven through stdin (a pipe, not a tty):
//! boot, boot, list, down, list, set, get, transfer, list, quit.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rraft_sim::examples::*;

/// The `list` blocks of a transcript: (name, state) rows, one Vec per list.
fn list_blocks(out: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
    for line in out.lines() {
        let Some(row) = line.strip_prefix("  ") else {
            continue;
        };
        let f: Vec<&str> = row.split_whitespace().collect();
        if f.len() != 3 || !f[1].starts_with("127.0.0.1:") {
            continue;
        }
        if f[0] == "ming" {
            blocks.push(Vec::new());
        }
        blocks
            .last_mut()
            .expect("a list starts with ming")
            .push((f[0].to_string(), f[2].to_string()));
    }
    blocks
}

fn state_of<'a>(block: &'a [(String, String)], name: &str) -> &'a str {
    &block
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
        .1
}

fn leader_in(block: &[(String, String)]) -> String {
    let leaders: Vec<&String> = block
        .iter()
        .filter(|(_, s)| s == "Leader")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader expected in {block:?}");
    leaders[0].clone()
}

/// The text after `prefix` on the first line (prompts stripped) that has it.
fn line_after<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .map(|l| l.trim_start_matches("coffee> "))
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with '{prefix}' in:\n{out}"))
}

/// Runs coffee on free ports with `script` on its stdin; returns its exit
/// status, stdout and stderr (read on threads so a full pipe never blocks
/// it). Panics if it does not exit within `timeout`.
fn run_coffee(script: &str, timeout: Duration) -> (ExitStatus, String, String) {
    let dir = build_example("coffee");
    let tmp = tempfile::Builder::new()
        .prefix("examples_coffee")
        .tempdir()
        .unwrap();
    let base = free_port_range(5);
    let mut kids = Children::default();
    let child = Command::new(dir.join("coffee"))
        .args(["--base_port", &base.to_string(), "--timeout_ms", "15000"])
        .arg("--dir")
        .arg(tmp.path().join("nodes"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coffee");
    kids.add("coffee", child);
    let c = kids.get_mut("coffee").unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            pipe.read_to_string(&mut s).unwrap();
            s
        })
    };
    let out_t = read_all(Box::new(c.stdout.take().unwrap()));
    let err_t = read_all(Box::new(c.stderr.take().unwrap()));
    let status = wait_exit(c, timeout).expect("coffee exits at the end of its input");
    (status, out_t.join().unwrap(), err_t.join().unwrap())
}

#[test]
fn coffee_scripted_run() {
    let started = Instant::now();
    let script = "boot\nboot\nlist\ndown\nlist\nset\nget\ntransfer\nlist\nquit\n";
    let (status, out, err) = run_coffee(script, Duration::from_secs(90));
    eprintln!(
        "{out}\n--- stderr ---\n{err}\n--- took {:?}",
        started.elapsed()
    );
    assert!(status.success(), "coffee exited with {status}");
    assert!(
        !out.contains("error:") && !out.contains("warning:"),
        "a command failed:\n{out}"
    );

    let blocks = list_blocks(&out);
    assert_eq!(blocks.len(), 3, "three lists expected:\n{out}");

    // After two boots: ming leads, hong and peng follow.
    let names: Vec<&str> = blocks[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ming", "hong", "peng"]);
    assert_eq!(state_of(&blocks[0], "ming"), "Leader");
    assert_eq!(state_of(&blocks[0], "hong"), "Follower");
    assert_eq!(state_of(&blocks[0], "peng"), "Follower");

    // down: ming leaves and shuts down; hong or peng leads, the other follows.
    assert_eq!(state_of(&blocks[1], "ming"), "Shutdown");
    let after_down = leader_in(&blocks[1]);
    assert!(
        after_down == "hong" || after_down == "peng",
        "new leader {after_down}"
    );
    let follower = if after_down == "hong" { "peng" } else { "hong" };
    assert_eq!(state_of(&blocks[1], follower), "Follower");
    assert!(
        line_after(&out, "ming left the cluster and shut down; new leader: ")
            .starts_with(&after_down)
    );

    // set / get: the value read back is the value written.
    let set: i64 = line_after(&out, "set value=")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let got: i64 = line_after(&out, "get value=")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0..100).contains(&set));
    assert_eq!(got, set, "get returned another value than set wrote");

    // transfer: the leadership moves to the other voter.
    let moved = line_after(&out, "leadership transferred: ");
    assert_eq!(moved, format!("{after_down} -> {follower}"));
    assert_eq!(state_of(&blocks[2], "ming"), "Shutdown");
    assert_eq!(leader_in(&blocks[2]), follower);
    assert_eq!(state_of(&blocks[2], &after_down), "Follower");

    assert!(out.contains("all branches shut down; bye"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn coffee_reports_errors_and_treats_eof_as_quit() {
    // No quit: the end of input ends the client.
    let script = "espresso\ntransfer\ndown\nget\nlist\nboot\nboot\nboot\nboot\nboot\nlist\n";
    let (status, out, err) = run_coffee(script, Duration::from_secs(60));
    eprintln!("{out}\n--- stderr ---\n{err}");
    assert!(status.success(), "coffee exited with {status}");
    assert!(out.contains("error: unknown command 'espresso'"), "{out}");
    assert!(out.contains("error: ming is the only voter"), "{out}");
    assert!(out.contains("error: ming is the last voter"), "{out}");
    assert!(out.contains("get: no value set yet"), "{out}");
    let blocks = list_blocks(&out);
    assert_eq!(blocks.len(), 2, "{out}");
    assert_eq!(blocks[0], vec![("ming".to_string(), "Leader".to_string())]);
    // Four boots fill the shop; the fifth has nothing left to start.
    assert!(
        out.contains("error: all 5 branches are already booted"),
        "{out}"
    );
    let names: Vec<&str> = blocks[1].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ming", "hong", "peng", "long", "hu"]);
    assert_eq!(leader_in(&blocks[1]), "ming");
    assert!(
        blocks[1].iter().filter(|(_, s)| s == "Follower").count() == 4,
        "{out}"
    );
    assert!(out.contains("quit (end of input)"), "{out}");
    assert!(out.contains("all branches shut down; bye"), "{out}");
}
