//! The C library from outside Rust: the C API test program (under valgrind
//! when present), the C++ wrapper, the Python binding, and `make install`.

mod c;
mod client_async;
mod cpp;
mod install;
mod python;
