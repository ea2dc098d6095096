//! examples-c/kv as its README shows it: the README's sh block (three
//! kv_server processes started with data directories that do not exist yet,
//! kv_client put / get / cas, rraft-cli status, then kill) run as a script
//! on free ports.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rraft_sim::examples::*;

/// Kills the script's process group (its background servers) when the test
/// ends, passed or not.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

#[test]
fn readme_sequence_runs_as_printed() {
    let dir = build_example("kv");
    let readme = read_text(&dir.join("README.md"));
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("the kv README has a sh block");
    let cli = rraft_sim::native::repo().join("target/release/rraft-cli");
    assert!(cli.exists(), "make did not build {}", cli.display());

    let base = free_port_range(3);
    let conf = (0..3)
        .map(|i| format!("127.0.0.1:{}:0", base + i))
        .collect::<Vec<_>>()
        .join(",");
    let mut script = String::from("set -e\n");
    for line in block.lines().filter(|l| !l.starts_with("make")) {
        let mut l = line.to_string();
        for i in 0..3u16 {
            l = l.replace(&format!("82{:02}", i), &(base + i).to_string());
        }
        l = l
            .replace(
                "./kv_server ",
                &format!("{}/kv_server --conf {conf} ", dir.display()),
            )
            .replace(
                "./kv_client ",
                &format!("{}/kv_client --conf {conf} ", dir.display()),
            )
            .replace("../../target/release/rraft-cli", &cli.display().to_string());
        script.push_str(&l);
        script.push('\n');
    }
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run bash");
    let _group = KillGroup(child.id() as i32);
    let out = child.wait_with_output().unwrap();
    let text = rraft_sim::native::output_text(&out);
    eprintln!("{script}\n{text}");
    assert!(out.status.success(), "the README sequence failed:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    for want in ["ok", "hello", "swapped"] {
        assert!(lines.contains(&want), "no line {want:?} in:\n{text}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("state:") && l.contains("Leader")),
        "rraft-cli status did not print the leader:\n{text}"
    );
    let finals = lines
        .iter()
        .filter(|l| l.starts_with("final: keys=1 "))
        .count();
    assert_eq!(finals, 3, "each server prints its final line:\n{text}");
    for i in 0..3 {
        let data = tmp.path().join(format!("data/{}", base + i));
        assert!(data.is_dir(), "{} was not created", data.display());
    }
}
