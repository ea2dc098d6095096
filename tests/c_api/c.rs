//! Compiles tests/c/api_test.c (every function, error paths, stale handles)
//! and tests/c/reentry_test.c (calls back in from every callback and done,
//! repeated shutdowns, method timeouts, apply_batch) against
//! include/rraft.h and librraft.so, runs each, runs each again under
//! valgrind (no invalid access, no definite leak), and checks that the
//! header compiles as C99 and as C++.

use super::{check_text_compiles, flags, CXX_FLAGS, C_FLAGS};
use rraft_sim::native::{build_program, repo, run};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds tests/c/<name>.c and runs it with a data directory; it must
/// report no failed check.
fn c_program_passes(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_c_program(dir.path(), name);
    let out = run(Command::new(&bin).arg(dir.path().join("data")));
    assert!(out.contains(" 0 failed"), "{out}");
    println!("{}", out.lines().last().unwrap_or_default());
}

/// Compiles tests/c/<name>.c against the header and the library.
fn build_c_program(dir: &Path, name: &str) -> PathBuf {
    let bin = dir.join(name);
    build_program(
        "cc",
        &flags(&C_FLAGS, &["-g", "-pthread"]),
        &repo().join(format!("tests/c/{name}.c")),
        &bin,
    );
    bin
}

#[test]
fn c_api_program_passes_every_check() {
    c_program_passes("api_test");
}

#[test]
fn c_api_program_is_clean_under_valgrind() {
    c_program_is_clean_under_valgrind("api_test");
}

/// Builds tests/c/<name>.c and runs it under valgrind: no failed check, no
/// invalid access, no definite leak.
fn c_program_is_clean_under_valgrind(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_c_program(dir.path(), name);
    let out = valgrind(&bin, &dir.path().join("data"));
    assert!(out.contains(" 0 failed"), "{out}");
}

fn valgrind(bin: &Path, data: &Path) -> String {
    if Command::new("valgrind").arg("--version").output().is_err() {
        panic!("valgrind is required for this test (apt-get install valgrind)");
    }
    run(Command::new("valgrind")
        .env("API_TEST_ELECTION_MS", "1500")
        // Valgrind slows every thread tens of times; the plain run holds
        // the 1 s bound.
        .env("API_TEST_MAX_CALL_MS", "10000")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
            "-q",
        ])
        .arg(bin)
        .arg(data))
}

#[test]
fn every_call_from_every_callback_returns_within_a_second() {
    c_program_passes("reentry_test");
}

#[test]
fn calls_from_callbacks_are_clean_under_valgrind() {
    c_program_is_clean_under_valgrind("reentry_test");
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let dir = tempfile::tempdir().unwrap();
    check_text_compiles(
        "cc",
        &flags(&C_FLAGS, &["-pedantic"]),
        dir.path(),
        "h.c",
        "#include \"rraft.h\"\nint main(void) { return raft_version() == 0; }\n",
    );
    check_text_compiles(
        "c++",
        &CXX_FLAGS,
        dir.path(),
        "h.cpp",
        "#include \"rraft.h\"\nint main() { return raft_version() == nullptr; }\n",
    );
}

/// The README's "C quick start" block, as printed, compiles with
/// `-std=c99 -Wall -Wextra -Werror` and the README's link flags, and runs
/// (its node inits, shuts down and is freed; the port is a free one).
#[test]
fn readme_c_quick_start_compiles_and_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let block = readme
        .split("## C quick start")
        .nth(1)
        .and_then(|s| s.split("```c\n").nth(1))
        .and_then(|s| s.split("\n```").next())
        .expect("README has a C quick start code block");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("app.c");
    std::fs::write(&src, block).unwrap();
    let bin = dir.path().join("app");
    build_program("cc", &C_FLAGS, &src, &bin);

    // Run it on a free port instead of 8100.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moved = block.replace("127.0.0.1:8100", &format!("127.0.0.1:{port}"));
    assert_ne!(moved, block, "the quick start no longer uses port 8100");
    std::fs::write(&src, moved).unwrap();
    build_program("cc", &C_FLAGS, &src, &bin);
    run(Command::new(&bin).current_dir(dir.path()));
    assert!(
        dir.path().join("data").is_dir(),
        "the node made no data dir"
    );
}
