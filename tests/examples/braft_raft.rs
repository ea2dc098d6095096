//! An rraft node as a full member of a braft group: two of braft's own
//! `counter_server`s (`$RRAFT_BRAFT_DIR/bin`) and examples-c/counter's
//! `counter_server -braft_compat`, on free ports, speaking braft's
//! RaftService to each other.
//!
//! One run goes through every role the rraft node can take: a follower of
//! a braft leader, the leader of braft followers (after braft's
//! `transfer_leader` to it), back to braft by a transfer, a braft leader
//! SIGKILLed with the rraft node among the survivors, a snapshot installed
//! from braft onto the rraft node and one from the rraft leader onto a
//! braft node. Writes are braft's `fetch_add` over baidu_std; every
//! acknowledged add is in the value every replica holds at the end, read
//! from each replica's own snapshot (braft's file `data`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use rraft::transport::{Protocol, RpcClient};
use rraft_sim::braft_counter::{CounterResponse, FetchAddRequest};
use rraft_sim::examples::*;

use super::braft_counter::{braft_bin, braft_dir, conf_of, http, stop, Snapshot};
use super::counter::GROUP;

/// One replica of the mixed group.
struct Replica {
    name: String,
    port: u16,
    bin: PathBuf,
    braft: bool,
    data: PathBuf,
    log: PathBuf,
}

impl Replica {
    fn start(&self, conf: &str) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-ip=127.0.0.1")
            .arg(format!("-port={}", self.port))
            .arg(format!("-conf={conf}"))
            .arg(format!("-group={GROUP}"))
            .arg(format!("-data_path={}", self.data.display()))
            .args(["-election_timeout_ms=1000", "-snapshot_interval=0"]);
        if !self.braft {
            // A small margin, so that a snapshot compacts the log far
            // enough for a lagging braft peer to need it.
            cmd.args(["-braft_compat", "-catchup_margin=50"]);
        }
        cmd.current_dir(self.data.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()))
    }

    fn peer(&self) -> String {
        format!("127.0.0.1:{}:0", self.port)
    }
}

/// The line of a status page (braft's or rraft's `/raft_stat`) starting
/// with `key`, after it.
fn field<'a>(page: &'a str, key: &str) -> Option<&'a str> {
    page.lines().find_map(|l| l.trim().strip_prefix(key))
}

fn number(text: &str) -> Option<i64> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|t| !t.is_empty())?
        .parse()
        .ok()
}

/// (is leader, applied index, snapshot index) from a replica's status page.
fn state(port: u16) -> Option<(bool, i64, i64)> {
    let page = http(port, "GET /raft_stat", "")?;
    let leader = field(&page, "state: ")?.eq_ignore_ascii_case("leader");
    let applied = field(&page, "known_applied_index: ")
        .or_else(|| field(&page, "applied_index: "))
        .and_then(number)?;
    let snapshot = field(&page, "last_snapshot_index: ")
        .or_else(|| field(&page, "snapshot: index="))
        .and_then(number)?;
    Some((leader, applied, snapshot))
}

fn leader_among(replicas: &[&Replica]) -> Option<u16> {
    replicas
        .iter()
        .find(|r| state(r.port).is_some_and(|s| s.0))
        .map(|r| r.port)
}

/// braft's fetch_add over baidu_std: Ok(value before) when acknowledged,
/// Err(true) when refused (not the leader: not applied), Err(false) when
/// the call failed (outcome unknown).
fn fetch_add(rpc: &RpcClient, port: u16) -> Result<i64, bool> {
    let req = FetchAddRequest {
        value: 1,
        payload: None,
    };
    let call = rpc.call_with_protocol(
        &format!("127.0.0.1:{port}"),
        Protocol::BaiduStd,
        "example.CounterService.fetch_add",
        "",
        req.encode_to_vec().into(),
        Duration::from_secs(3),
    );
    let resp = rraft::node::runtime::handle()
        .block_on(call)
        .map_err(|_| false)?;
    let answer = CounterResponse::decode(&resp.payload[..]).map_err(|_| false)?;
    match (answer.success, answer.value) {
        (true, Some(before)) => Ok(before),
        _ => Err(true),
    }
}

/// Every add acknowledged so far: each answer is the value before it, so
/// the value after the last one bounds what every replica must hold.
#[derive(Default)]
struct Acks {
    /// The counter after the last acknowledged add.
    value: i64,
    acked: usize,
    unknown: usize,
}

impl Acks {
    /// `n` adds through whichever of `replicas` leads.
    fn add(&mut self, rpc: &RpcClient, replicas: &[&Replica], n: usize) {
        for _ in 0..n {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(Instant::now() < deadline, "no leader took an add for 30 s");
                let Some(leader) = leader_among(replicas) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                match fetch_add(rpc, leader) {
                    Ok(before) => {
                        assert!(
                            before >= self.value,
                            "an acknowledged add is lost: the value before this add is \
                             {before}, below the {} acknowledged already",
                            self.value
                        );
                        self.value = before + 1;
                        self.acked += 1;
                        break;
                    }
                    Err(true) => std::thread::sleep(Duration::from_millis(20)),
                    Err(false) => {
                        self.unknown += 1;
                        break;
                    }
                }
            }
        }
    }
}

/// Waits until `replicas` applied the same index; returns it.
fn all_applied(replicas: &[&Replica]) -> i64 {
    wait_for(
        "every replica to apply the same index",
        Duration::from_secs(30),
        || {
            let applied: Vec<i64> = replicas
                .iter()
                .map(|r| state(r.port).map(|s| s.1))
                .collect::<Option<_>>()?;
            applied.iter().all(|&a| a == applied[0]).then(|| applied[0])
        },
    )
}

fn braft_cli(cli: &Path, args: &[String]) {
    let out = Command::new(cli)
        .args(args)
        .output()
        .expect("run braft_cli");
    assert!(
        out.status.success(),
        "braft_cli {args:?}: {}",
        rraft_sim::native::output_text(&out)
    );
}

fn transfer(cli: &Path, conf: &str, to: &Replica, replicas: &[&Replica]) {
    if leader_among(replicas) == Some(to.port) {
        return;
    }
    wait_for(
        &format!("leadership to move to {}", to.name),
        Duration::from_secs(20),
        || {
            let out = Command::new(cli)
                .arg("transfer_leader")
                .arg(format!("--group={GROUP}"))
                .arg(format!("--peer={}", to.peer()))
                .arg(format!("--conf={conf}"))
                .output()
                .expect("run braft_cli");
            if !out.status.success() {
                std::thread::sleep(Duration::from_millis(300));
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if leader_among(replicas) == Some(to.port) {
                    return Some(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        },
    );
}

/// A snapshot on `r` (braft's CliService `snapshot`), then the value its
/// newest snapshot holds: (snapshot index, value).
fn snapshot(cli: &Path, r: &Replica) -> (i64, i64) {
    braft_cli(
        cli,
        &[
            "snapshot".into(),
            format!("--group={GROUP}"),
            format!("--peer={}", r.peer()),
        ],
    );
    let dir = r.data.join("snapshot");
    let newest = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("snapshot_")?.parse::<i64>().ok()
        })
        .max()
        .unwrap_or_else(|| panic!("{} holds no snapshot", r.name));
    let file = dir.join(format!("snapshot_{newest:020}")).join("data");
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // braft's ProtoBufFile: a 4-byte big-endian length, then the message.
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let value = Snapshot::decode(&bytes[4..4 + len])
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .value;
    (newest, value)
}

#[test]
fn rraft_node_follows_leads_and_snapshots_in_a_braft_group() {
    let Some(braft) = braft_dir() else {
        return;
    };
    let braft_server = braft_bin(&braft, "counter_server");
    let cli = braft_bin(&braft, "braft_cli");
    let example = build_example("counter");
    let rpc = RpcClient::new(rraft::node::runtime::handle());
    let tmp = tempfile::Builder::new()
        .prefix("braft_mixed")
        .tempdir()
        .unwrap();
    let ports = free_ports(3);
    let conf = conf_of(&ports);
    let replica = |i: usize, braft: bool| {
        let name = format!("{}{i}", if braft { "braft" } else { "rraft" });
        let data = tmp.path().join(&name).join("data");
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        Replica {
            log: tmp.path().join(format!("{name}.log")),
            name,
            port: ports[i],
            bin: if braft {
                braft_server.clone()
            } else {
                example.join("counter_server")
            },
            braft,
            data,
        }
    };
    let (b0, b1, r2) = (replica(0, true), replica(1, true), replica(2, false));
    let all = [&b0, &b1, &r2];
    let mut kids = Children::default();
    for r in all {
        kids.add(&r.name, r.start(&conf));
    }
    let logs = || {
        all.iter()
            .map(|r| format!("--- {}:\n{}", r.name, read_text(&r.log)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut acks = Acks::default();

    // Elected by the three, whoever wins; writes replicate everywhere.
    wait_for("a leader", Duration::from_secs(30), || leader_among(&all));
    acks.add(&rpc, &all, 100);
    all_applied(&all);

    // braft → rraft: the rraft node leads two braft followers.
    transfer(&cli, &conf, &r2, &all);
    acks.add(&rpc, &all, 100);
    all_applied(&all);
    assert_eq!(leader_among(&all), Some(r2.port), "{}", logs());

    // rraft → braft, then that braft leader dies: the survivors (one braft,
    // one rraft) elect a leader and take writes; the rraft node leads them
    // after a transfer if braft won.
    transfer(&cli, &conf, &b0, &all);
    acks.add(&rpc, &all, 50);
    let mut killed = kids.take(&b0.name).unwrap();
    let _ = killed.kill();
    let _ = killed.wait();
    let survivors = [&b1, &r2];
    wait_for("a new leader", Duration::from_secs(30), || {
        leader_among(&survivors)
    });
    acks.add(&rpc, &survivors, 50);
    transfer(&cli, &conf, &r2, &survivors);
    acks.add(&rpc, &survivors, 50);
    kids.add(&b0.name, b0.start(&conf));
    all_applied(&all);

    // braft → rraft snapshot: the rraft node misses entries braft's
    // leader compacted (braft drops the log before its second-to-last
    // snapshot) and installs the leader's snapshot.
    transfer(&cli, &conf, &b0, &all);
    stop(&r2.name, kids.take(&r2.name).unwrap());
    let braft_only = [&b0, &b1];
    for _ in 0..2 {
        acks.add(&rpc, &braft_only, 50);
        snapshot(&cli, &b0);
        snapshot(&cli, &b1);
    }
    acks.add(&rpc, &braft_only, 20);
    kids.add(&r2.name, r2.start(&conf));
    wait_for(
        "the rraft node to load braft's snapshot",
        Duration::from_secs(30),
        || read_text(&r2.log).contains("snapshot loaded").then_some(()),
    );
    all_applied(&all);

    // rraft → braft snapshot: a braft follower misses entries the rraft
    // leader compacted and installs its snapshot.
    transfer(&cli, &conf, &r2, &all);
    stop(&b1.name, kids.take(&b1.name).unwrap());
    let without_b1 = [&b0, &r2];
    acks.add(&rpc, &without_b1, 150);
    let (rraft_snapshot, _) = snapshot(&cli, &r2);
    acks.add(&rpc, &without_b1, 20);
    kids.add(&b1.name, b1.start(&conf));
    wait_for(
        "the braft node to install the rraft leader's snapshot",
        Duration::from_secs(30),
        || {
            state(b1.port)
                .is_some_and(|s| s.2 >= rraft_snapshot)
                .then_some(())
        },
    );
    acks.add(&rpc, &all, 20);
    let applied = all_applied(&all);

    // Every replica holds the same value, with every acknowledged add.
    let values: Vec<(i64, i64)> = all.iter().map(|r| snapshot(&cli, r)).collect();
    for (r, &(index, value)) in all.iter().zip(&values) {
        assert_eq!(index, applied, "{}'s snapshot index\n{}", r.name, logs());
        assert!(
            value >= acks.value && value <= acks.value + acks.unknown as i64,
            "{} holds {value}; acknowledged adds reach {} ({} calls of unknown outcome)",
            r.name,
            acks.value,
            acks.unknown
        );
    }
    assert!(
        values.iter().all(|v| v.1 == values[0].1),
        "the replicas differ: {values:?}"
    );
    eprintln!(
        "mixed group: {} adds acknowledged, {} unknown, value {} at index {applied} everywhere",
        acks.acked, acks.unknown, values[0].1
    );
    for r in all {
        stop(&r.name, kids.take(&r.name).unwrap());
    }
}
