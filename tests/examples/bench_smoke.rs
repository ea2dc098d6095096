//! Smoke tests of `rraft-bench`: a short run of `cluster` (in-process) and
//! of `counter` (the C path: examples-c/counter's servers and client, in
//! each client mode) prints one JSON object with the documented keys as
//! numbers, a positive throughput and no error. No timing assertions (the
//! machine may be busy).

use std::ffi::OsString;
use std::process::Command;

use rraft_sim::examples;
use serde_json::Value;

/// Runs `rraft-bench ARGS --json`, checks it succeeded with one JSON object
/// holding each of `keys` as a number and a positive `ops_per_s`, and
/// returns the object.
fn bench_row(args: &[OsString], keys: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rraft-bench"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run rraft-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "rraft-bench failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let row: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    for key in keys.iter().chain(&["ops_per_s"]) {
        assert!(row[key].is_number(), "{key} is not a number: {stdout}");
    }
    assert!(
        row["ops_per_s"].as_f64().unwrap() > 0.0,
        "no op completed: {stdout}"
    );
    row
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn cluster_inproc_json_has_the_keys() {
    let args = os(&[
        "cluster",
        "--mode",
        "inproc",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--clients",
        "4",
    ]);
    let keys = [
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "cpu_s_per_kop",
        "rss_max_bytes",
        "fsyncs_per_s",
    ];
    bench_row(&args, &keys);
}

fn counter_row(extra: &[&str]) -> Value {
    let mut args = os(&[
        "counter",
        "--clients",
        "8",
        "--seconds",
        "2",
        "--warmup",
        "1",
    ]);
    args.push("--example-dir".into());
    args.push(examples::build_example("counter").into());
    args.extend(os(extra));
    let keys = [
        "mean_us",
        "p50_us",
        "p99_us",
        "cpu_us_per_op",
        "switches_per_op",
        "rss_max_bytes",
        "errors",
    ];
    let row = bench_row(&args, &keys);
    assert_eq!(row["errors"].as_f64(), Some(0.0), "{row}");
    row
}

#[test]
fn counter_with_a_thread_per_caller_reports_a_row() {
    assert_eq!(counter_row(&[])["async"], Value::Bool(false));
}

#[test]
fn counter_with_async_callers_reports_a_row() {
    assert_eq!(counter_row(&["--async"])["async"], Value::Bool(true));
}

#[test]
fn counter_on_preallocated_logs_reports_a_row() {
    assert_eq!(
        counter_row(&["--async", "--prealloc"])["prealloc"],
        Value::Bool(true)
    );
}
