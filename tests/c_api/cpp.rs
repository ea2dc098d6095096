//! The C++ wrapper (`include/rraft.hpp`): compiles `tests/cpp/wrapper_test.cpp`
//! with g++ `-std=c++17 -Wall -Wextra -Werror` and runs it (a 3-node group
//! in one process: applies, every node applies the same, snapshots, leader
//! transfer); builds `examples-c/counter_cpp` with its Makefile and runs a
//! 3-process counter cluster with its client.

use super::{check_text_compiles, flags, missing, CXX_FLAGS};
use rraft_sim::examples::{free_ports, signal, KillOnDrop};
use rraft_sim::native::{build_library, build_program, profile_dir as lib_dir, repo, run};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn cpp_wrapper_program_passes() {
    if missing(&["g++"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("wrapper_test");
    build_program(
        "g++",
        &flags(&CXX_FLAGS, &["-g", "-pthread"]),
        &repo().join("tests/cpp/wrapper_test.cpp"),
        &bin,
    );
    let out = run(Command::new(&bin).arg(dir.path().join("data")));
    assert!(out.contains("checks, 0 failed"), "{out}");
    println!("{}", out.lines().last().unwrap_or_default());
}

#[test]
fn header_compiles_with_pedantic_flags() {
    if missing(&["g++"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    check_text_compiles(
        "g++",
        &flags(
            &CXX_FLAGS,
            &["-Wpedantic", "-Wshadow", "-Wnon-virtual-dtor"],
        ),
        dir.path(),
        "include_only.cpp",
        "#include \"rraft.hpp\"\n#include \"rraft.hpp\"\nint main() { return 0; }\n",
    );
}

#[test]
fn cpp_counter_example_builds_and_counts() {
    if missing(&["g++", "make"]) {
        return;
    }
    build_library();
    let dir = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    run(Command::new("make")
        .arg("-C")
        .arg(repo().join("examples-c/counter_cpp"))
        .arg(format!("BUILD={}", dir.path().display()))
        .arg(format!("RRAFT_LIB={}", lib.display())));
    let server = dir.path().join("counter_server");
    let client = dir.path().join("counter_client");
    assert!(server.exists() && client.exists());

    let ids: Vec<String> = free_ports(3)
        .iter()
        .map(|port| format!("127.0.0.1:{port}:0"))
        .collect();
    let conf = ids.join(",");
    let mut procs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        procs.push(KillOnDrop(
            Command::new(&server)
                .args(["--peer", id, "--conf", &conf, "--data"])
                .arg(dir.path().join(format!("n{i}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    let call = |args: &[&str]| -> Option<String> {
        let out = Command::new(&client)
            .args(["--conf", &conf])
            .args(args)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // The first call also waits for the group to elect a leader.
    let start = Instant::now();
    let first = loop {
        if let Some(v) = call(&["fetch_add", "5"]) {
            break v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "counter never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first, "0", "fetch_add answers the previous value");
    assert_eq!(call(&["fetch_add", "7"]).as_deref(), Some("5"));
    assert_eq!(call(&["get"]).as_deref(), Some("12"));
    assert!(call(&["fetch_add", "not-a-number"]).is_none());

    // SIGTERM: each server shuts its node down and exits 0.
    for c in &procs {
        signal(&c.0, libc::SIGTERM);
    }
    for c in &mut procs {
        let status = c.0.wait().unwrap();
        assert!(status.success(), "counter_server exited with {status}");
    }
}
