//! Generates `include/rraft.h` from the `extern "C"` items under `src/ffi`.
//!
//! The header is committed; CI regenerates it and fails on any difference, so
//! the file people read is always the one the library was built with.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=build.rs");
    // The shared library's soname: `make install` installs librraft.so.<version>
    // with the librraft.so.0 and librraft.so links; programs record .so.0.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librraft.so.0");
        soname_link_in_target_dir();
    }

    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let header = crate_dir.join("include").join("rraft.h");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            // write_to_file only rewrites when the text changed, so the mtime
            // stays put and nothing downstream rebuilds for no reason.
            bindings.write_to_file(&header);
        }
        Err(err) => {
            // A parse error in src/ffi shows up as a compile error anyway; do
            // not fail the build twice, but say why the header is stale.
            println!("cargo:warning=include/rraft.h not regenerated: {err}");
        }
    }
}

/// Programs linked against target/<profile>/librraft.so record its soname
/// (librraft.so.0) and look for that name at run time: put the link beside
/// the library (OUT_DIR is target/<profile>/build/rraft-<hash>/out).
fn soname_link_in_target_dir() {
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    if let Some(profile_dir) = std::path::Path::new(&out).ancestors().nth(3) {
        let link = profile_dir.join("librraft.so.0");
        if std::fs::symlink_metadata(&link).is_err() {
            #[cfg(unix)]
            let _ = std::os::unix::fs::symlink("librraft.so", &link);
        }
    }
}
