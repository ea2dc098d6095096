//! The C library from outside Rust: the C API test program (under valgrind
//! when present), the C++ wrapper, the Python binding, and `make install`.

mod braft_counter;
mod c;
mod client_async;
mod cpp;
mod install;
mod python;

use std::path::Path;

/// The strict C dialect and warnings every C program here compiles with.
const C_FLAGS: [&str; 4] = ["-std=c99", "-Wall", "-Wextra", "-Werror"];

/// The strict C++ dialect and warnings every C++ program here compiles with.
const CXX_FLAGS: [&str; 4] = ["-std=c++17", "-Wall", "-Wextra", "-Werror"];

/// `base` followed by `extra`.
fn flags<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    [base, extra].concat()
}

/// Writes `text` to `dir/name` and checks that it compiles against
/// `include/` with `compiler` and `flags`.
fn check_text_compiles(compiler: &str, flags: &[&str], dir: &Path, name: &str, text: &str) {
    let src = dir.join(name);
    std::fs::write(&src, text).unwrap();
    rraft_sim::native::check_compiles(compiler, flags, &src);
}

/// Whether any of `tools` cannot run (then the test is skipped, saying so).
fn missing(tools: &[&str]) -> bool {
    let missing = tools.iter().any(|tool| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_err()
    });
    if missing {
        eprintln!("SKIPPED: {} is not installed", tools.join(" or "));
    }
    missing
}
