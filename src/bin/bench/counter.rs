//! `rraft-bench counter`: the C path, end to end. Runs `examples-c/counter`
//! as a user would: three `counter_server` processes (the C API's server,
//! node and state machine) and one `counter_client` process (the C client,
//! a pthread per caller or, with `--async`, `raft_client_call_async` with
//! completion callbacks), every call a `CounterService.fetch_add`. The row is the
//! client's own summary over the measured window (ops/s, mean, p50, p99)
//! plus CPU per op and context switches per op of the four processes over
//! the same window (read from /proc), and the servers' peak RSS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;

use super::cluster::{context_switches, cpu_seconds, free_ports, mib_list, peak_rss, Proc};

#[derive(Args, Debug)]
pub struct CounterArgs {
    /// Concurrent callers, each with one fetch_add in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Drive the callers with `raft_client_call_async` (counter_client
    /// --use_async) instead of a pthread each.
    #[arg(long)]
    r#async: bool,
    /// The built example (counter_server and counter_client); default the
    /// examples-c/counter of the source tree this binary was built from.
    #[arg(long)]
    example_dir: Option<PathBuf>,
    /// Run `make -C <example-dir>` first.
    #[arg(long)]
    build: bool,
    /// Replicas in the group.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// fdatasync each log batch (counter_server --sync).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync: bool,
    /// Logs on `local-prealloc://` (counter_server --log_prealloc: the open
    /// segment kept ahead with zeros, so an fdatasync writes no inode).
    #[arg(long)]
    prealloc: bool,
    /// IO threads of the client process (counter_client --io_workers; 0:
    /// the library's default).
    #[arg(long, default_value_t = 0)]
    client_io_workers: usize,
    /// Election timeout of the servers in ms.
    #[arg(long, default_value_t = 1000)]
    election_timeout_ms: u32,
    /// Parent of the servers' temporary directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the result as one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also record a timestamp at each stage of the write path in every
    /// process (`RRAFT_TRACE_STAGES`) and print the per-stage medians of
    /// the measured window (meant for --clients 1, see `cluster`).
    #[arg(long)]
    trace_stages: bool,
}

/// The client's `summary:` line, over the measured window.
#[derive(Default, Debug)]
struct Summary {
    ops: u64,
    errors: u64,
    seconds: f64,
    qps: f64,
    avg_us: f64,
    p50_us: u64,
    p99_us: u64,
}

fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn parse_summary(line: &str) -> Option<Summary> {
    let line = line.strip_prefix("summary:")?;
    Some(Summary {
        ops: field(line, "ops")?,
        errors: field(line, "errors")?,
        seconds: field(line, "seconds")?,
        qps: field(line, "qps")?,
        avg_us: field(line, "avg_us")?,
        p50_us: field(line, "p50_us")?,
        p99_us: field(line, "p99_us")?,
    })
}

/// CPU seconds and context switches of the processes, summed.
fn usage(pids: &[u32]) -> (f64, u64) {
    (
        pids.iter().map(|&p| cpu_seconds(p)).sum(),
        pids.iter().map(|&p| context_switches(p)).sum(),
    )
}

struct Outcome {
    summary: Summary,
    /// Ops in the window the CPU was sampled over (from the per-second lines).
    window_ops: f64,
    server_cpu: f64,
    client_cpu: f64,
    switches: u64,
    rss: Vec<u64>,
}

impl Outcome {
    fn per_op_us(&self, cpu: f64) -> f64 {
        if self.window_ops <= 0.0 {
            return 0.0;
        }
        cpu * 1e6 / self.window_ops
    }

    fn switches_per_op(&self) -> f64 {
        if self.window_ops <= 0.0 {
            return 0.0;
        }
        self.switches as f64 / self.window_ops
    }

    fn json(&self, args: &CounterArgs) -> String {
        let s = &self.summary;
        let rss: Vec<String> = self.rss.iter().map(u64::to_string).collect();
        format!(
            concat!(
                "{{\"impl\":\"rraft-c\",\"async\":{},\"nodes\":{},\"clients\":{},\"sync\":{},\"prealloc\":{},",
                "\"secs\":{:.3},\"ops\":{},\"errors\":{},\"ops_per_s\":{:.1},\"mean_us\":{:.1},",
                "\"p50_us\":{},\"p99_us\":{},\"cpu_us_per_op\":{:.2},\"server_cpu_us_per_op\":{:.2},",
                "\"client_cpu_us_per_op\":{:.2},\"switches_per_op\":{:.2},\"rss_max_bytes\":{},",
                "\"rss_bytes\":[{}]}}"
            ),
            args.r#async,
            args.nodes,
            args.clients,
            args.sync,
            args.prealloc,
            s.seconds,
            s.ops,
            s.errors,
            s.qps,
            s.avg_us,
            s.p50_us,
            s.p99_us,
            self.per_op_us(self.server_cpu + self.client_cpu),
            self.per_op_us(self.server_cpu),
            self.per_op_us(self.client_cpu),
            self.switches_per_op(),
            self.rss.iter().max().copied().unwrap_or(0),
            rss.join(",")
        )
    }

    fn print(&self, args: &CounterArgs) {
        let s = &self.summary;
        println!(
            "counter (C API): {} servers, {} callers ({}), sync {}{}, {:.1} s measured",
            args.nodes,
            args.clients,
            if args.r#async {
                "raft_client_call_async"
            } else {
                "a pthread each"
            },
            args.sync,
            if args.prealloc {
                ", local-prealloc"
            } else {
                ""
            },
            s.seconds
        );
        println!(
            "  ops/s {:.0}   mean {:.0} us   p50 {} us   p99 {} us   errors {}",
            s.qps, s.avg_us, s.p50_us, s.p99_us, s.errors
        );
        println!(
            "  CPU us per op {:.1} (servers {:.1}, client {:.1})   context switches per op {:.2}   peak RSS MiB per server [{}]",
            self.per_op_us(self.server_cpu + self.client_cpu),
            self.per_op_us(self.server_cpu),
            self.per_op_us(self.client_cpu),
            self.switches_per_op(),
            mib_list(&self.rss)
        );
    }
}

fn default_example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-c/counter")
}

pub fn run(args: CounterArgs) -> Result<(), String> {
    if args.nodes == 0 || args.clients == 0 || args.seconds == 0 {
        return Err("--nodes, --clients and --seconds must be positive".into());
    }
    let example = args.example_dir.clone().unwrap_or_else(default_example_dir);
    if args.build {
        let st = Command::new("make")
            .arg("-C")
            .arg(&example)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("make: {e}"))?;
        if !st.success() {
            return Err(format!("make -C {} failed", example.display()));
        }
    }
    for bin in ["counter_server", "counter_client"] {
        if !example.join(bin).is_file() {
            return Err(format!(
                "{} is missing: build it with `make -C {}` (or pass --build)",
                example.join(bin).display(),
                example.display()
            ));
        }
    }
    let out = super::cluster::in_temp_root(args.dir.clone(), "counter", |root| {
        run_in(&args, &example, root)
    })?;
    if args.json {
        println!("{}", out.json(&args));
    } else {
        out.print(&args);
    }
    Ok(())
}

fn run_in(args: &CounterArgs, example: &Path, root: &Path) -> Result<Outcome, String> {
    let trace_dir = root.join("stages");
    if args.trace_stages {
        std::fs::create_dir_all(&trace_dir).map_err(|e| e.to_string())?;
        // Inherited by the servers and the client started below.
        std::env::set_var(rraft::stage_trace::ENV, &trace_dir);
    }
    let ports = free_ports(args.nodes);
    let conf: String = ports.iter().map(|p| format!("127.0.0.1:{p}:0,")).collect();
    let mut servers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let dir = root.join(format!("s{i}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("stdout.log")).map_err(|e| e.to_string())?;
        let mut server_cmd = Command::new(example.join("counter_server"));
        if args.prealloc {
            // Only when asked: an older counter_server (ab_counter.sh's
            // OLD_ROOT) does not know the flag.
            server_cmd.arg("--log_prealloc");
        }
        let child = server_cmd
            .args(["--port", &port.to_string(), "--conf", &conf])
            .arg("--data_path")
            .arg(dir.join("data"))
            .args(["--sync", &args.sync.to_string()])
            .args([
                "--election_timeout_ms",
                &args.election_timeout_ms.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start counter_server: {e}"))?;
        servers.push(Proc(child));
    }
    let mut client_cmd = Command::new(example.join("counter_client"));
    client_cmd
        .args(["--conf", &conf])
        .args(["--thread_num", &args.clients.to_string()])
        .args(["--add_percentage", "100"])
        .args(["--duration_s", &(args.warmup + args.seconds).to_string()])
        .args(["--warmup_s", &args.warmup.to_string()])
        .args(["--wait_leader_s", "60"]);
    if args.r#async {
        client_cmd.arg("--use_async");
    }
    if args.client_io_workers > 0 {
        // Only when asked, as --prealloc.
        client_cmd.args(["--io_workers", &args.client_io_workers.to_string()]);
    }
    let mut client = Proc(
        client_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start counter_client: {e}"))?,
    );
    let server_pids: Vec<u32> = servers.iter().map(|p| p.0.id()).collect();
    let client_pid = client.0.id();
    let out = client.0.stdout.take().ok_or("no client stdout")?;

    // The CPU window: from the end of the warm-up to the second-to-last
    // per-second line (the client exits right after its last one).
    let first = (args.warmup as usize).max(1);
    let last = ((args.warmup + args.seconds) as usize - 1).max(first + 1);
    let mut seconds_seen = 0usize;
    let mut window_ops = 0.0;
    let mut at_first = None;
    let mut at_last = None;
    let mut summary = None;
    let mut trace_window = (0, 0);
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        if line.starts_with("qps=") {
            seconds_seen += 1;
            if seconds_seen > first && seconds_seen <= last {
                window_ops += field::<f64>(&line, "qps").unwrap_or(0.0);
            }
            if seconds_seen == first {
                at_first = Some((usage(&server_pids), usage(&[client_pid])));
                trace_window.0 = rraft::stage_trace::monotonic_ns();
            }
            if seconds_seen == last {
                at_last = Some((usage(&server_pids), usage(&[client_pid])));
                trace_window.1 = rraft::stage_trace::monotonic_ns();
            }
        } else if let Some(s) = parse_summary(&line) {
            summary = Some(s);
        }
    }
    let rss: Vec<u64> = server_pids.iter().map(|&p| peak_rss(p)).collect();
    let _ = client.0.wait();
    if args.trace_stages {
        // Every process's trace thread appends its records every 200 ms.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    drop(servers);
    if args.trace_stages {
        match super::stages::table(&trace_dir, trace_window.0, trace_window.1) {
            Ok(table) => eprint!("{table}"),
            Err(e) => eprintln!("stage trace: {e}"),
        }
    }
    let summary = summary.ok_or("counter_client printed no summary (is a leader elected?)")?;
    let ((s0, c0), (s1, c1)) = match (at_first, at_last) {
        (Some(a), Some(b)) => (a, b),
        _ => (((0.0, 0), (0.0, 0)), ((0.0, 0), (0.0, 0))),
    };
    Ok(Outcome {
        summary,
        window_ops,
        server_cpu: s1.0 - s0.0,
        client_cpu: c1.0 - c0.0,
        switches: (s1.1 + c1.1).saturating_sub(s0.1 + c0.1),
        rss,
    })
}
