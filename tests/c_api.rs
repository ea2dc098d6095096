//! Compiles tests/c/api_test.c against include/rraft.h and librraft.so, runs
//! it, runs it again under valgrind (no invalid access, no definite leak),
//! and checks that the header compiles as C99 and as C++.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "common/fresh_library.rs"]
mod fresh_library;

/// target/<profile>, where cargo put librraft.so for this test build.
fn lib_dir() -> PathBuf {
    fresh_library::profile_dir()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

fn build_api_test(dir: &Path) -> PathBuf {
    fresh_library::build();
    let bin = dir.join("api_test");
    let lib = lib_dir();
    assert!(
        lib.join("librraft.so").exists(),
        "librraft.so not found in {}",
        lib.display()
    );
    run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c/api_test.c"))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lrraft", "-o"])
        .arg(&bin));
    bin
}

#[test]
fn c_api_program_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_api_test(dir.path());
    let out = run(Command::new(&bin).arg(dir.path().join("data")));
    assert!(out.contains(" 0 failed"), "{out}");
    println!("{}", out.lines().last().unwrap_or_default());
}

#[test]
fn c_api_program_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        panic!("valgrind is required for this test (apt-get install valgrind)");
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build_api_test(dir.path());
    let out = run(Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite",
            "-q",
        ])
        .arg(&bin)
        .arg(dir.path().join("data")));
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn header_compiles_as_c99_and_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("h.c");
    std::fs::write(
        &c,
        "#include \"rraft.h\"\nint main(void) { return raft_version() == 0; }\n",
    )
    .unwrap();
    run(Command::new("cc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-c",
            "-o",
        ])
        .arg(dir.path().join("h.o"))
        .arg("-I")
        .arg(repo().join("include"))
        .arg(&c));
    let cpp = dir.path().join("h.cpp");
    std::fs::write(
        &cpp,
        "#include \"rraft.h\"\nint main() { return raft_version() == nullptr; }\n",
    )
    .unwrap();
    run(Command::new("c++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", "-o"])
        .arg(dir.path().join("hpp.o"))
        .arg("-I")
        .arg(repo().join("include"))
        .arg(&cpp));
}
