//! `make install PREFIX=<tmp>`: the library (with its soname links), the
//! static library, both headers, rraft-cli and rraft.pc land in place; a C
//! program builds from the flags in rraft.pc (through pkg-config when it is
//! installed, else read from the file) and runs (with an rpath, or
//! LD_LIBRARY_PATH); so do a build with librraft.a, a fully static one from
//! `pkg-config --static`, and a C++ one through rraft.hpp. The installed
//! binaries carry no debug info.

use super::{CXX_FLAGS, C_FLAGS};
use rraft_sim::native::{profile_dir as lib_dir, repo, run};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The value of `field` in a .pc file, with ${var} expanded.
fn pc_field(pc: &str, field: &str) -> String {
    let mut vars: HashMap<String, String> = HashMap::new();
    let expand = |text: &str, vars: &HashMap<String, String>| {
        let mut out = text.to_string();
        for _ in 0..4 {
            for (k, v) in vars {
                out = out.replace(&format!("${{{k}}}"), v);
            }
        }
        out
    };
    for line in pc.lines() {
        if let Some((k, v)) = line.split_once('=') {
            if !k.contains(':') && !k.contains(' ') {
                let v = expand(v.trim(), &vars);
                vars.insert(k.trim().to_string(), v);
            }
        }
        if let Some(v) = line.strip_prefix(&format!("{field}:")) {
            return expand(v.trim(), &vars);
        }
    }
    panic!("{field} not in rraft.pc:\n{pc}");
}

const PROGRAM: &str = r#"
#include <rraft.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    raft_node_options_t opts;
    if (raft_node_options_init(&opts) != 0 || opts.election_timeout_ms != 1000) return 1;
    raft_server_t *s = raft_server_start("127.0.0.1:0");
    if (!s || raft_server_port(s) <= 0) { fprintf(stderr, "%s\n", raft_last_error()); return 2; }
    raft_server_free(s);
    if (raft_server_start("") != NULL || strlen(raft_last_error()) == 0) return 3;
    printf("rraft %s ok\n", raft_version());
    return 0;
}
"#;

#[test]
fn make_install_then_build_with_the_pc_file() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let profile = if lib_dir().ends_with("release") {
        "release"
    } else {
        "debug"
    };
    let target_dir = lib_dir().parent().unwrap().to_path_buf();
    run(Command::new("make")
        .arg("-C")
        .arg(repo())
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("PROFILE={profile}"))
        .arg(format!("CARGO={}", env!("CARGO")))
        .arg(format!("CARGO_TARGET_DIR={}", target_dir.display())));

    let lib = prefix.join("lib");
    let version = env!("CARGO_PKG_VERSION");
    for f in [
        format!("lib/librraft.so.{version}"),
        "lib/librraft.a".into(),
        "include/rraft.h".into(),
        "include/rraft.hpp".into(),
        "bin/rraft-cli".into(),
        "lib/pkgconfig/rraft.pc".into(),
    ] {
        assert!(prefix.join(&f).is_file(), "{f} not installed");
    }
    assert_eq!(
        std::fs::read_link(lib.join("librraft.so.0")).unwrap(),
        PathBuf::from(format!("librraft.so.{version}"))
    );
    assert_eq!(
        std::fs::read_link(lib.join("librraft.so")).unwrap(),
        PathBuf::from("librraft.so.0")
    );
    if let Ok(out) = Command::new("readelf")
        .arg("-d")
        .arg(lib.join("librraft.so.0"))
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[librraft.so.0]"), "soname:\n{text}");
    }
    let out = run(Command::new(prefix.join("bin/rraft-cli")).arg("--help"));
    assert!(
        out.contains("add_peer") && out.contains("transfer_leader"),
        "{out}"
    );

    // Flags: pkg-config when present (and it must agree with the file).
    let pc = std::fs::read_to_string(lib.join("pkgconfig/rraft.pc")).unwrap();
    assert!(pc.contains(&format!("Version: {version}")), "{pc}");
    let mut flags = format!("{} {}", pc_field(&pc, "Cflags"), pc_field(&pc, "Libs"));
    match Command::new("pkg-config")
        .args(["--cflags", "--libs", "rraft"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
    {
        Ok(out) if out.status.success() => {
            flags = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("pkg-config --cflags --libs rraft: {flags}");
            assert!(flags.contains(&format!("-I{}", prefix.join("include").display())));
            assert!(flags.contains("-lrraft"), "{flags}");
        }
        _ => println!("pkg-config is not installed: using the flags read from rraft.pc: {flags}"),
    }
    // Builds `src` into `app` with the installed flags and an rpath.
    let build_with_rpath = |compiler: &str, std_flags: &[&str], src: &Path, app: &Path| {
        run(Command::new(compiler)
            .args(std_flags)
            .arg(src)
            .args(flags.split_whitespace())
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(app));
    };
    let src = dir.path().join("app.c");
    std::fs::write(&src, PROGRAM).unwrap();
    let app = dir.path().join("app");
    build_with_rpath("cc", &C_FLAGS, &src, &app);
    let out = run(&mut Command::new(&app));
    assert!(out.contains(&format!("rraft {version} ok")), "{out}");

    // Without an rpath the program finds the library through LD_LIBRARY_PATH.
    let app_env = dir.path().join("app_env");
    run(Command::new("cc")
        .arg(&src)
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&app_env));
    let out = run(Command::new(&app_env).env("LD_LIBRARY_PATH", &lib));
    assert!(out.contains("ok"), "{out}");
    if let Ok(o) = Command::new("readelf").arg("-d").arg(&app).output() {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("[librraft.so.0]"),
            "app should need librraft.so.0:\n{text}"
        );
    }

    // Static: librraft.a with Libs.private.
    let app_static = dir.path().join("app_static");
    run(Command::new("cc")
        .arg(&src)
        .arg(format!("-I{}", prefix.join("include").display()))
        .arg(lib.join("librraft.a"))
        .args(pc_field(&pc, "Libs.private").split_whitespace())
        .arg("-o")
        .arg(&app_static));
    let out = run(&mut Command::new(&app_static));
    assert!(out.contains("ok"), "{out}");

    // Fully static: cc -static with `pkg-config --static --libs rraft`.
    let static_flags = match Command::new("pkg-config")
        .args(["--cflags", "--static", "--libs", "rraft"])
        .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
        .output()
    {
        Ok(out) if out.status.success() => {
            let f = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("pkg-config --cflags --static --libs rraft: {f}");
            f
        }
        _ => format!(
            "{} {} {}",
            pc_field(&pc, "Cflags"),
            pc_field(&pc, "Libs"),
            pc_field(&pc, "Libs.private")
        ),
    };
    let app_full_static = dir.path().join("app_full_static");
    run(Command::new("cc")
        .arg("-static")
        .arg(&src)
        .args(static_flags.split_whitespace())
        .arg("-o")
        .arg(&app_full_static));
    let out = run(&mut Command::new(&app_full_static));
    assert!(out.contains(&format!("rraft {version} ok")), "{out}");
    if let Ok(o) = Command::new("readelf")
        .arg("-d")
        .arg(&app_full_static)
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(!text.contains("librraft"), "not static:\n{text}");
    }

    // Installed without debug info (the build tree keeps it).
    for f in [
        format!("lib/librraft.so.{version}"),
        "lib/librraft.a".into(),
        "bin/rraft-cli".into(),
    ] {
        if let Ok(o) = Command::new("readelf")
            .arg("-S")
            .arg(prefix.join(&f))
            .output()
        {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "readelf -S {f}: {text}");
            assert!(!text.contains(".debug_info"), "{f} has debug info");
        }
    }

    // C++ through the installed rraft.hpp.
    if Command::new("g++").arg("--version").output().is_ok() {
        let cpp = dir.path().join("app.cpp");
        std::fs::write(
            &cpp,
            "#include <rraft.hpp>\n#include <cstdio>\nint main() { rraft::Server s; \
             if (s.start(\"127.0.0.1:0\") != 0) return 1; rraft::NodeOptions o; \
             std::printf(\"%d ok\\n\", o.election_timeout_ms); return 0; }\n",
        )
        .unwrap();
        let app_cpp = dir.path().join("app_cpp");
        build_with_rpath("g++", &CXX_FLAGS, &cpp, &app_cpp);
        let out = run(&mut Command::new(&app_cpp));
        assert!(out.contains("1000 ok"), "{out}");
    }
}
