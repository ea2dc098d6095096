//! The Python binding (`bindings/python`): runs its unittest suite (a 3-node
//! group in one Python process; scripts that exit with nodes open; the
//! README's example) against the freshly built librraft.so, and checks that
//! `pip install bindings/python` gives a working package.

use std::path::PathBuf;
use std::process::Command;

use super::missing;
use rraft_sim::native::{output, profile_dir as lib_dir, repo};

/// The freshly built librraft.so (Python loads the cdylib).
fn build_library() -> PathBuf {
    rraft_sim::native::build_library();
    lib_dir().join("librraft.so")
}

const PYTHON: &str = "python3";

#[test]
fn python_unittests_pass() {
    if missing(&[PYTHON]) {
        return;
    }
    let so = build_library();
    let (ok, text) = output(
        Command::new(PYTHON)
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(repo().join("bindings/python/tests"))
            .env("RRAFT_LIB", &so)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(repo()),
    );
    println!("{text}");
    assert!(ok, "python unittests failed:\n{text}");
    assert!(text.contains("\nOK"), "{text}");
}

#[test]
fn pip_install_gives_a_working_package() {
    if missing(&[PYTHON]) {
        return;
    }
    let so = build_library();
    let dir = tempfile::tempdir().unwrap();
    // Build from a copy so the source tree gets no build/ or egg-info.
    let src = dir.path().join("src");
    let (ok, text) = output(
        Command::new("cp")
            .arg("-r")
            .arg(repo().join("bindings/python"))
            .arg(&src),
    );
    assert!(ok, "{text}");
    let target = dir.path().join("site");
    let (ok, text) = output(
        Command::new(PYTHON)
            .args(["-m", "pip", "install", "--no-deps", "--quiet", "--target"])
            .arg(&target)
            .arg(&src)
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    );
    // pip builds the package with setuptools (from PyPI when missing).
    assert!(ok, "`pip install bindings/python` failed:\n{text}");
    let script = r#"
import os, tempfile, rraft
assert rraft.__file__.startswith(os.environ["SITE"]), rraft.__file__
class Sum(rraft.StateMachine):
    def __init__(self): self.total = 0
    def on_apply(self, it):
        for e in it:
            self.total += int(e.data)
            e.set_result(self.total)
with tempfile.TemporaryDirectory() as d, rraft.Server("127.0.0.1:0") as s:
    peer = "127.0.0.1:%d:0" % s.port
    with rraft.Node(s, "sum", peer) as n:
        n.init(Sum(), initial_conf=peer, data_dir=d, election_timeout_ms=200)
        import time
        end = time.time() + 10
        while not n.is_leader() and time.time() < end: time.sleep(0.01)
        assert n.apply(b"5").result(10) == 5
        assert n.apply(b"7").result(10) == 12
print("installed rraft", rraft.version(), "ok")
"#;
    let (ok, text) = output(
        Command::new(PYTHON)
            .args(["-c", script])
            .env("PYTHONPATH", &target)
            .env("SITE", &target)
            .env("RRAFT_LIB", &so)
            .current_dir(dir.path()),
    );
    assert!(ok, "installed package failed:\n{text}");
    assert!(text.contains("ok"), "{text}");
}
