//! Smoke test of `rraft-bench counter` (the C path: examples-c/counter's
//! servers and client): a short run in each client mode prints one JSON
//! object with the documented keys, a positive throughput and no error.
//! No timing assertions (the machine may be busy).

use std::process::Command;

use rraft_sim::examples;

fn json_number(json: &str, key: &str) -> f64 {
    json.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {json}"))
}

fn run_counter_bench(extra: &[&str]) -> String {
    let example = examples::build_example("counter");
    let out = Command::new(env!("CARGO_BIN_EXE_rraft-bench"))
        .args([
            "counter",
            "--clients",
            "8",
            "--seconds",
            "2",
            "--warmup",
            "1",
        ])
        .arg("--example-dir")
        .arg(&example)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run rraft-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "rraft-bench counter failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with('{') && stdout.ends_with('}'),
        "not one JSON object: {stdout}"
    );
    for key in [
        "ops_per_s",
        "mean_us",
        "p50_us",
        "p99_us",
        "cpu_us_per_op",
        "switches_per_op",
        "rss_max_bytes",
    ] {
        json_number(&stdout, key);
    }
    assert!(json_number(&stdout, "ops_per_s") > 0.0, "no op: {stdout}");
    assert_eq!(json_number(&stdout, "errors"), 0.0, "{stdout}");
    stdout
}

#[test]
fn counter_with_a_thread_per_caller_reports_a_row() {
    let json = run_counter_bench(&[]);
    assert!(json.contains("\"async\":false"), "{json}");
}

#[test]
fn counter_with_async_callers_reports_a_row() {
    let json = run_counter_bench(&["--async"]);
    assert!(json.contains("\"async\":true"), "{json}");
}
