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
