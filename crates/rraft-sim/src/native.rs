//! For tests that build and run native programs (C, C++, Python over the
//! C library): the repo and target paths, running a command, and building a
//! fresh librraft.
//!
//! `cargo test` links the tests against the rlib and leaves librraft.so and
//! librraft.a as the last `cargo build` made them, so tests that load the C
//! library build it first (nested cargo is fine: the build lock is free
//! while tests run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// The repository root (this crate lives in `crates/rraft-sim`).
pub fn repo() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// target/<profile> of the running test binary (where librraft.so is).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Runs `cmd`; returns whether it succeeded and its stdout + stderr.
pub fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (out.status.success(), output_text(&out))
}

/// A finished process's stdout followed by its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, panicking with its output when it fails; returns
/// stdout + stderr.
pub fn run(cmd: &mut Command) -> String {
    let (ok, text) = output(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

/// Compiles `source` with `compiler` and `flags` against `include/` and the
/// freshly built librraft (found at run time through the rpath) into `bin`.
pub fn build_program(compiler: &str, flags: &[&str], source: &Path, bin: &Path) {
    build_library();
    let lib = profile_dir();
    run(Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(repo().join("include"))
        .arg(source)
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lrraft", "-o"])
        .arg(bin));
}

/// Checks that `source` compiles (syntax and types only) with `compiler`
/// and `flags` against `include/`.
pub fn check_compiles(compiler: &str, flags: &[&str], source: &Path) {
    run(Command::new(compiler)
        .args(flags)
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(repo().join("include"))
        .arg(source));
}

/// Builds the library once per test binary, for `release` (the examples'
/// Makefiles link target/release) and for this test's own profile.
pub fn build_library() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut profiles = vec![true];
        if !profile_dir().ends_with("release") {
            profiles.push(false);
        }
        for release in profiles {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "-p", "rraft", "--lib", "--quiet"])
                .current_dir(repo());
            if release {
                cmd.arg("--release");
            }
            run(&mut cmd);
        }
        assert!(
            profile_dir().join("librraft.so").exists(),
            "librraft.so was not built"
        );
    });
}
