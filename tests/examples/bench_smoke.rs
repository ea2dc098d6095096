//! Smoke test of `rraft-bench cluster`: a short in-process run prints one
//! JSON object with the documented keys and a positive throughput. No timing
//! assertions (the machine may be busy).

use std::process::Command;

#[test]
fn cluster_inproc_json_has_the_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_rraft-bench"))
        .args([
            "cluster",
            "--mode",
            "inproc",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--clients",
            "4",
            "--json",
        ])
        .output()
        .expect("run rraft-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rraft-bench failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout.trim();
    assert!(
        json.starts_with('{') && json.ends_with('}'),
        "not one JSON object: {json}"
    );
    for key in [
        "ops_per_s",
        "mb_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "cpu_s_per_kop",
        "rss_max_bytes",
        "fsyncs_per_s",
    ] {
        assert!(
            json.contains(&format!("\"{key}\":")),
            "missing {key}: {json}"
        );
    }
    let ops: f64 = json
        .split("\"ops_per_s\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .expect("ops_per_s is a number");
    assert!(ops > 0.0, "no op completed: {json}");
}
