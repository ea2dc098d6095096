//! `cargo test` links the tests against the rlib and leaves librraft.so and
//! librraft.a as the last `cargo build` made them. Tests that load the C
//! library build it first (nested cargo is fine: the build lock is free
//! while tests run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// target/<profile> of the running test binary.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf()
}

/// Builds the library once per test binary, for `release` (examples' Makefiles
/// link target/release) and for this test's own profile.
pub fn build() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut profiles = vec![true];
        if !profile_dir().ends_with("release") {
            profiles.push(false);
        }
        for release in profiles {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args(["build", "--lib", "--quiet"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cmd.arg("--release");
            }
            let out = cmd.output().expect("run cargo build");
            assert!(
                out.status.success(),
                "cargo build --lib failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
