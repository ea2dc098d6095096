//! End to end: examples-c/counter. Three counter_server processes, two
//! counter_client processes recording every acknowledged fetch_add; the
//! leader is SIGKILLed mid-run, the clients fail over, the killed server is
//! restarted after the others compacted their logs past it, so it catches up
//! by snapshot. At the end every server holds the same value, and
//! acked <= value <= acked + unknown (an add is counted exactly once).
//!
//! The messages are braft's counter's (example/counter/counter.proto),
//! defined here with prost for this file and the braft_* tests.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rraft::transport::RpcClient;
use rraft_sim::examples::*;

pub(crate) const GROUP: &str = "Counter";

pub(crate) use rraft_sim::braft_counter::{CounterResponse, FetchAddRequest};

/// Calls `method` of the counter on the server at `port` (rraft's framing)
/// and decodes its CounterResponse; None when the call fails.
pub(crate) fn counter_call(
    rpc: &RpcClient,
    port: u16,
    method: &str,
    request: Vec<u8>,
) -> Option<CounterResponse> {
    let resp = rpc
        .call_blocking(
            &format!("127.0.0.1:{port}"),
            method,
            GROUP,
            bytes::Bytes::from(request),
            Duration::from_millis(2000),
        )
        .ok()?;
    Some(CounterResponse::decode(&resp.payload[..]).expect("a CounterResponse"))
}

/// fetch_add(`value`) on the server at `port`: the value before the add,
/// or None (not the leader, or the call failed).
pub(crate) fn fetch_add(
    rpc: &RpcClient,
    port: u16,
    value: i64,
    payload: Option<Vec<u8>>,
) -> Option<i64> {
    let req = FetchAddRequest { value, payload }.encode_to_vec();
    let r = counter_call(rpc, port, "CounterService.fetch_add", req)?;
    r.success
        .then(|| r.value.expect("a successful fetch_add carries the value"))
}

/// `get` on the server at `port`: the value, or None (not the leader, or
/// the call failed).
pub(crate) fn get(rpc: &RpcClient, port: u16) -> Option<i64> {
    let r = counter_call(rpc, port, "CounterService.get", Vec::new())?;
    r.success
        .then(|| r.value.expect("a successful get carries the value"))
}
/// Entries a server keeps behind its snapshot (its --catchup_margin).
const MARGIN: i64 = 50;

struct Server {
    name: String,
    port: u16,
    data: PathBuf,
    out: PathBuf,
}

fn start_server(dir: &Path, s: &Server, conf: &str, run: usize) -> Child {
    let out = std::fs::File::create(s.out.with_extension(format!("{run}.log"))).unwrap();
    Command::new(dir.join("counter_server"))
        .args([
            "--port",
            &s.port.to_string(),
            "--conf",
            conf,
            "--group",
            GROUP,
        ])
        .arg("--data_path")
        .arg(&s.data)
        .args(["--election_timeout_ms", "1000", "--snapshot_interval", "1"])
        .args(["--catchup_margin", &MARGIN.to_string(), "--sync", "true"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start counter_server")
}

fn start_client(
    dir: &Path,
    conf: &str,
    threads: u32,
    add_pct: u32,
    acks: &Path,
    out: &Path,
) -> Child {
    let out = std::fs::File::create(out).unwrap();
    Command::new(dir.join("counter_client"))
        .args(["--conf", conf, "--group", GROUP])
        .args([
            "--thread_num",
            &threads.to_string(),
            "--add_percentage",
            &add_pct.to_string(),
        ])
        .args(["--duration_s", "0", "--timeout_ms", "3000"])
        .arg("--log_acks")
        .arg(acks)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start counter_client")
}

/// CounterService.status of the node on `port`: the reply's JSON, or None.
pub(crate) fn status(rpc: &RpcClient, port: u16) -> Option<String> {
    let addr = format!("127.0.0.1:{port}");
    ask_text(
        rpc,
        &addr,
        "CounterService.status",
        GROUP,
        Duration::from_millis(500),
    )
}

pub(crate) fn is_leader(st: &str) -> bool {
    json_str(st, "state") == Some("Leader")
}

/// (port, status) of the leader among `ports`.
pub(crate) fn leader_of(rpc: &RpcClient, ports: &[u16]) -> Option<(u16, String)> {
    ports
        .iter()
        .find_map(|&p| status(rpc, p).filter(|s| is_leader(s)).map(|s| (p, s)))
}

/// Lines `ack CLIENT SEQ BEFORE` / `unknown CLIENT SEQ CODE` of the clients.
fn read_acks(paths: &[PathBuf]) -> (Vec<i64>, usize) {
    let mut befores = Vec::new();
    let mut unknown = 0;
    for p in paths {
        for line in read_text(p).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.first() {
                Some(&"ack") => befores.push(f[3].parse().unwrap()),
                Some(&"unknown") => unknown += 1,
                _ => panic!("bad line in {}: {line}", p.display()),
            }
        }
    }
    (befores, unknown)
}

#[test]
fn counter_survives_leader_kill_and_catches_up_by_snapshot() {
    let started = Instant::now();
    let dir = build_example("counter");
    let mut tmp = tempfile::Builder::new()
        .prefix("examples_counter")
        .tempdir()
        .unwrap();
    // KEEP_TMP=1 keeps the servers' and clients' logs for a post-mortem.
    tmp.disable_cleanup(std::env::var_os("KEEP_TMP").is_some());
    eprintln!("working in {}", tmp.path().display());
    let ports = free_ports(3);
    let conf = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}:0"))
        .collect::<Vec<_>>()
        .join(",");
    let servers: Vec<Server> = ports
        .iter()
        .map(|&port| Server {
            name: format!("server{port}"),
            port,
            data: tmp.path().join(format!("data{port}")),
            out: tmp.path().join(format!("server{port}")),
        })
        .collect();
    let mut kids = Children::default();
    for s in &servers {
        kids.add(&s.name, start_server(&dir, s, &conf, 0));
    }
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    let (leader_port, _) = wait_for("a first leader", Duration::from_secs(20), || {
        leader_of(&rpc, &ports)
    });

    // A follower answers the leader-only methods as braft's counter does:
    // success=false and the leader's peer id in braft's form.
    let leader_id = format!("127.0.0.1:{leader_port}:0:0");
    for &p in ports.iter().filter(|&&p| p != leader_port) {
        for method in ["CounterService.fetch_add", "CounterService.get"] {
            let request = if method == "CounterService.get" {
                vec![]
            } else {
                FetchAddRequest {
                    value: 1,
                    payload: None,
                }
                .encode_to_vec()
            };
            wait_for(
                "a redirect from a follower",
                Duration::from_secs(10),
                || {
                    let r = counter_call(&rpc, p, method, request.clone())?;
                    assert!(!r.success, "follower {p} served {method}");
                    assert_eq!(r.value, None, "a redirect carries no value");
                    (r.redirect.as_deref() == Some(leader_id.as_str())).then_some(())
                },
            );
        }
    }

    // Two clients: 8 threads of adds, 2 threads of half adds, half gets.
    let acks = [tmp.path().join("acks_a"), tmp.path().join("acks_b")];
    let client_out = [
        tmp.path().join("client_a.log"),
        tmp.path().join("client_b.log"),
    ];
    kids.add(
        "client_a",
        start_client(&dir, &conf, 8, 100, &acks[0], &client_out[0]),
    );
    kids.add(
        "client_b",
        start_client(&dir, &conf, 2, 50, &acks[1], &client_out[1]),
    );
    wait_for("300 applied adds", Duration::from_secs(20), || {
        status(&rpc, leader_port)
            .and_then(|s| json_num(&s, "value"))
            .filter(|&v| v >= 300)
    });

    // SIGKILL the leader mid-run.
    let victim = servers.iter().find(|s| s.port == leader_port).unwrap();
    let last_seen = status(&rpc, victim.port)
        .and_then(|s| json_num(&s, "last_index"))
        .unwrap_or(0);
    let mut killed = kids.take(&victim.name).unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let kill_value = status(
        &rpc,
        ports.iter().copied().find(|&p| p != victim.port).unwrap(),
    )
    .and_then(|s| json_num(&s, "value"))
    .unwrap_or(0);
    eprintln!(
        "killed leader {} (last_index >= {last_seen}) at {:?}",
        victim.port,
        started.elapsed()
    );

    // The clients fail over to a new leader, whose log moves on and is
    // compacted well past anything the victim can hold.
    let others: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|&p| p != victim.port)
        .collect();
    let (new_leader, _) = wait_for("a new leader", Duration::from_secs(20), || {
        leader_of(&rpc, &others)
    });
    wait_for(
        "the log compacted past the killed server",
        Duration::from_secs(30),
        || {
            let st = status(&rpc, new_leader)?;
            let first = json_num(&st, "first_index")?;
            let value = json_num(&st, "value")?;
            (first > last_seen + 3000 && value > kill_value + 300).then_some(())
        },
    );
    eprintln!(
        "new leader {new_leader}; restarting {} at {:?}",
        victim.port,
        started.elapsed()
    );

    // Restart it: its log ends before the leader's first entry, so it can
    // only catch up by installing a snapshot.
    kids.add(&victim.name, start_server(&dir, victim, &conf, 1));
    let restart_log = victim.out.with_extension("1.log");
    let recovered_last = wait_for(
        "the restarted server to start",
        Duration::from_secs(20),
        || {
            let text = read_text(&restart_log);
            let line = text
                .lines()
                .find(|l| l.starts_with("counter_server started:"))?;
            json_num(line, "last_index")
        },
    );
    wait_for(
        "the restarted server to install a snapshot",
        Duration::from_secs(30),
        || {
            read_text(&restart_log)
                .lines()
                .filter_map(|l| l.strip_prefix("snapshot loaded: index="))
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<i64>().ok())
                .find(|&index| index > recovered_last)
        },
    );
    wait_for(
        "the restarted server to apply new adds",
        Duration::from_secs(20),
        || {
            let mine = json_num(&status(&rpc, victim.port)?, "applied_index")?;
            let leader = json_num(&leader_of(&rpc, &ports)?.1, "applied_index")?;
            (mine + 50 >= leader && mine > 0).then_some(())
        },
    );

    // Stop the clients (SIGINT: they finish their calls and print a summary).
    for name in ["client_a", "client_b"] {
        let mut c = kids.take(name).unwrap();
        signal(&c, libc::SIGINT);
        let st = wait_exit(&mut c, Duration::from_secs(15)).expect("client exits after SIGINT");
        assert!(st.success(), "{name} exited with {st}");
    }
    let mut summaries = Vec::new();
    for out in &client_out {
        let text = read_text(out);
        let line = text
            .lines()
            .find(|l| l.starts_with("summary:"))
            .expect("a summary line")
            .to_string();
        eprintln!("{line}");
        summaries.push(line);
    }

    // Every server converges on the same state.
    let (value, applied) = wait_for("all servers to agree", Duration::from_secs(20), || {
        let sts: Vec<String> = ports
            .iter()
            .map(|&p| status(&rpc, p))
            .collect::<Option<_>>()?;
        let vals: Vec<(i64, i64)> = sts
            .iter()
            .map(|s| Some((json_num(s, "value")?, json_num(s, "applied_index")?)))
            .collect::<Option<_>>()?;
        vals.windows(2).all(|w| w[0] == w[1]).then_some(vals[0])
    });
    let (befores, unknown) = read_acks(&acks);
    let acked = befores.len() as i64;
    eprintln!(
        "value={value} applied_index={applied} acked={acked} unknown={unknown} in {:?}",
        started.elapsed()
    );

    let summed_acked: f64 = summaries.iter().map(|l| kv_num(l, "acked").unwrap()).sum();
    let summed_unknown: f64 = summaries
        .iter()
        .map(|l| kv_num(l, "unknown").unwrap())
        .sum();
    assert_eq!(
        summed_acked as i64, acked,
        "summary lines and ack logs disagree"
    );
    assert_eq!(
        summed_unknown as usize, unknown,
        "summary lines and ack logs disagree"
    );
    assert!(acked > 600, "too few acknowledged adds ({acked})");
    // Each acknowledged add of 1 saw its own predecessor value: no add was
    // lost or applied twice among the acknowledged ones.
    let distinct: HashSet<i64> = befores.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        befores.len(),
        "two acknowledged adds saw the same value"
    );
    assert!(
        befores.iter().all(|&b| b >= 0 && b < value),
        "an acknowledged add saw a value beyond the final one"
    );
    assert!(
        value >= acked,
        "lost acknowledged adds: value {value} < acked {acked}"
    );
    assert!(
        value <= acked + unknown as i64,
        "adds applied twice: value {value} > acked {acked} + unknown {unknown}"
    );

    // Clean shutdown on SIGTERM; each prints the same final value.
    for s in &servers {
        let mut c = kids.take(&s.name).unwrap();
        signal(&c, libc::SIGTERM);
        let st = wait_exit(&mut c, Duration::from_secs(15)).expect("server exits after SIGTERM");
        assert!(st.success(), "{} exited with {st}", s.name);
        let run = if s.port == victim.port { 1 } else { 0 };
        let text = read_text(&s.out.with_extension(format!("{run}.log")));
        let want = format!("final: value={value} ");
        assert!(
            text.lines().any(|l| l.starts_with(&want)),
            "{}: no '{want}' in:\n{text}",
            s.name
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// The README's "Two commands" main command (make, run_server.sh --clean,
/// run_client.sh, stop.sh), extracted from README.md and run with free
/// ports, a private runtime directory, a 1 s election timeout and a 3 s run.
/// It waits for the first leader before its timed calls, prints no errors,
/// and ends with the summary and every replica's final value, all equal to
/// the acknowledged adds.
#[test]
fn readme_main_command_ends_with_summary_and_equal_final_values() {
    let readme = read_text(&rraft_sim::native::repo().join("README.md"));
    let section = readme
        .split("## Two commands")
        .nth(1)
        .expect("README has a \"Two commands\" section");
    let command = section
        .split("```sh\n")
        .nth(1)
        .and_then(|block| block.lines().next())
        .expect("a sh block in \"Two commands\"")
        .to_string();
    build_example("counter");
    let tmp = tempfile::Builder::new()
        .prefix("counter_readme")
        .tempdir()
        .unwrap();
    let runtime = tmp.path().join("runtime");
    let _cleanup = KillPidFiles(runtime.clone());
    let port = free_port_range(3);
    let rt = runtime.display().to_string();
    let mut run = command.clone();
    for (from, to) in [
        (
            "./run_server.sh --clean",
            format!(
                "./run_server.sh --clean --port {port} --runtime {rt} --election_timeout_ms 1000"
            ),
        ),
        ("--duration_s 15", format!("--duration_s 3 --port {port}")),
        ("./stop.sh", format!("./stop.sh --runtime {rt}")),
    ] {
        assert!(
            run.contains(from),
            "README command lacks {from:?}: {command}"
        );
        run = run.replacen(from, &to, 1);
    }
    let out = Command::new("bash")
        .args(["-c", &run])
        .current_dir(rraft_sim::native::repo())
        .stdin(Stdio::null())
        .output()
        .expect("run the README command");
    let text = rraft_sim::native::output_text(&out);
    eprintln!("{run}\n{text}");
    assert!(out.status.success(), "the command failed:\n{text}");
    assert!(
        text.lines().any(|l| l.starts_with("leader 127.0.0.1:")),
        "the client did not report the leader it waited for:\n{text}"
    );
    for bad in ["failed", "error:", "unknown outcome", "did not"] {
        assert!(
            !text.contains(bad),
            "{bad:?} printed on a healthy run:\n{text}"
        );
    }
    let summary = text
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    let acked = kv_num(summary, "acked").unwrap() as i64;
    assert!(acked > 0, "{summary}");
    assert_eq!(kv_num(summary, "errors"), Some(0.0), "{summary}");
    assert_eq!(kv_num(summary, "unknown"), Some(0.0), "{summary}");
    let finals: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with("stopped counter_server"))
        .map(|l| {
            let v = l
                .split("final: value=")
                .nth(1)
                .unwrap_or_else(|| panic!("{l}"));
            v.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(finals, vec![acked; 3], "final values:\n{text}");
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(last, format!("all 3 replicas stopped at value={acked}"));
}

/// Kills the servers whose pid files are under a run_server.sh runtime
/// directory (when a test fails before stop.sh ran).
struct KillPidFiles(PathBuf);

impl Drop for KillPidFiles {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.0) else {
            return;
        };
        for dir in dirs.flatten() {
            let pid = read_text(&dir.path().join("pid"));
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) with a pid read from our own pid file.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// `counter_server --log_prealloc` logs on `local-prealloc://`: its open
/// segment is kept ahead with zeros (so an fdatasync writes no inode), and
/// it counts as it does without.
#[test]
fn counter_server_with_a_preallocated_log_counts_with_its_segment_kept_ahead() {
    let dir = build_example("counter");
    let tmp = tempfile::Builder::new()
        .prefix("examples_counter_prealloc")
        .tempdir()
        .unwrap();
    let port = free_ports(1)[0];
    let conf = format!("127.0.0.1:{port}:0");
    let data = tmp.path().join("data");
    let out = std::fs::File::create(tmp.path().join("server.log")).unwrap();
    let _server = KillOnDrop(
        Command::new(dir.join("counter_server"))
            .args(["--port", &port.to_string(), "--conf", &conf])
            .args(["--group", GROUP, "--log_prealloc"])
            .arg("--data_path")
            .arg(&data)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start counter_server"),
    );
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    // The first add succeeds once the server leads (and its on_leader_start ran).
    let first = wait_for("a first add", Duration::from_secs(20), || {
        fetch_add(&rpc, port, 1, None)
    });
    assert_eq!(first, 0);
    for before in 1..10 {
        assert_eq!(fetch_add(&rpc, port, 1, None), Some(before));
    }
    assert_eq!(get(&rpc, port), Some(10));
    let largest = std::fs::read_dir(data.join("log"))
        .expect("the log directory")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    assert!(
        largest >= 64 * 1024,
        "ten small entries in a segment kept ahead with zeros: {largest} bytes"
    );
}
