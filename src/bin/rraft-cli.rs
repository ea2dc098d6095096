//! rraft-cli: braft_cli for rraft groups. Talks to the `raft.admin` method a
//! node serves on its port (unless started with `disable_cli`).
//!
//! As in braft_cli, `--conf` is the group's configuration (where the
//! leader is looked for) and `--peer` names the peer a command is about: the one to add,
//! remove or hand leadership to, or the node to snapshot, reset or query.
//!
//! Exit codes: 0 success; 1 the node answered with an error; 2 bad
//! arguments; 3 the group, peer or leader could not be reached.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rraft::node::admin::{self, AdminRequest};
use rraft::node::errno;
use rraft::node::peer_id::{canonical, parse_peer_list};
use rraft::transport::{GroupClient, RpcClient, RpcError};

#[derive(Parser, Debug)]
#[command(
    name = "rraft-cli",
    version,
    about = "Administer a running rraft group (braft_cli's commands)",
    after_help = "Exit codes: 0 ok, 1 the node refused, 2 bad arguments, 3 unreachable."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// The group id.
    #[arg(long)]
    group: String,
    /// How long to wait for an answer, ms.
    #[arg(long = "timeout_ms", default_value_t = 5000)]
    timeout_ms: u32,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add --peer as a voter (through the leader found from --conf).
    #[command(name = "add_peer")]
    AddPeer {
        #[command(flatten)]
        group: ViaLeader,
        /// The peer to add.
        #[arg(long)]
        peer: String,
    },
    /// Remove --peer (through the leader found from --conf).
    #[command(name = "remove_peer")]
    RemovePeer {
        #[command(flatten)]
        group: ViaLeader,
        /// The peer to remove.
        #[arg(long)]
        peer: String,
    },
    /// Change the voters to --new_peers (through the leader found from --conf).
    #[command(name = "change_peers")]
    ChangePeers {
        #[command(flatten)]
        group: ViaLeader,
        #[arg(long = "new_peers")]
        new_peers: String,
    },
    /// Unsafe recovery: make --peer adopt --new_peers without consensus.
    #[command(name = "reset_peer")]
    ResetPeer {
        #[command(flatten)]
        common: Common,
        /// The node to reset.
        #[arg(long)]
        peer: String,
        #[arg(long = "new_peers")]
        new_peers: String,
    },
    /// Hand leadership to --peer (omitted: the most up-to-date voter).
    #[command(name = "transfer_leader")]
    TransferLeader {
        #[command(flatten)]
        group: ViaLeader,
        /// The new leader.
        #[arg(long)]
        peer: Option<String>,
    },
    /// Make --peer (or the leader found from --conf) save a snapshot now.
    Snapshot {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
    },
    /// Print the voters (asks the leader).
    #[command(name = "list_peers")]
    ListPeers {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
    },
    /// Print a node's status: role, term, indexes, per-peer replication.
    Status {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        /// Print the status as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// A group whose leader is found from --conf.
#[derive(Args, Debug)]
struct ViaLeader {
    #[command(flatten)]
    common: Common,
    /// The group's current configuration "ip:port:idx,...".
    #[arg(long)]
    conf: String,
}

impl ViaLeader {
    /// Sends `op` to the group's leader.
    fn send(&self, op: &str, arg: &str) -> Result<String, Failure> {
        AdminClient::new(&self.common).to_leader(&self.conf, op, arg)
    }

    fn name(&self) -> &str {
        &self.common.group
    }
}

/// The node to talk to: --peer, or the leader found from --conf.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = true)]
struct Target {
    /// The node to talk to.
    #[arg(long)]
    peer: Option<String>,
    /// The group's configuration (to find the leader).
    #[arg(long)]
    conf: Option<String>,
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    text: String,
}

fn unreachable_failure(text: String) -> Failure {
    Failure { code: 3, text }
}

fn usage(text: String) -> Failure {
    Failure { code: 2, text }
}

fn rpc_failure(peer: &str, e: &RpcError) -> Failure {
    match e {
        RpcError::Remote { code, text, .. } => Failure {
            code: 1,
            text: format!("{peer} answered: {text} ({})", errno::describe(*code)),
        },
        RpcError::Timeout => unreachable_failure(format!("{peer} did not answer in time")),
        RpcError::Connect(why) => unreachable_failure(format!("cannot reach {peer}: {why}")),
        other => unreachable_failure(format!("cannot reach {peer}: {other}")),
    }
}

/// Sends admin requests of one group to its nodes, all within one deadline.
struct AdminClient {
    rpc: RpcClient,
    group: String,
    deadline: Instant,
}

impl AdminClient {
    fn new(common: &Common) -> AdminClient {
        let timeout = Duration::from_millis(u64::from(common.timeout_ms.max(1)));
        AdminClient {
            rpc: RpcClient::new(rraft::node::runtime::handle()),
            group: common.group.clone(),
            deadline: Instant::now() + timeout,
        }
    }

    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    }

    fn request(&self, op: &str, arg: &str) -> AdminRequest {
        AdminRequest {
            op: op.to_string(),
            arg: arg.to_string(),
            timeout_ms: self.left().as_millis().min(u128::from(u32::MAX)) as u32,
        }
    }

    /// The leader of the group, asking each member of `conf` in turn.
    fn find_leader(&self, conf: &str) -> Result<String, Failure> {
        let peers =
            parse_peer_list(conf).map_err(|e| usage(format!("bad --conf {conf:?}: {}", e.0)))?;
        if peers.is_empty() {
            return Err(usage("--conf is empty".into()));
        }
        let client = GroupClient::with_rpc(
            self.rpc.clone(),
            &self.group,
            peers.iter().map(ToString::to_string).collect(),
        );
        client.refresh_leader_blocking(self.left()).map_err(|e| {
            unreachable_failure(format!(
                "no leader of group {} found among {conf}: {e}",
                self.group
            ))
        })
    }

    /// Sends `op` to `peer`; a leader-only op refused by a follower is sent
    /// again to the leader it names; EBUSY / EAGAIN are retried.
    fn send(&self, peer: &str, op: &str, arg: &str) -> Result<String, Failure> {
        let mut peer = canonical(peer).map_err(|e| usage(format!("bad peer {peer:?}: {}", e.0)))?;
        let mut redirects = 0;
        while redirects < 4 {
            match admin::call(
                &self.rpc,
                &self.group,
                &peer,
                &self.request(op, arg),
                self.left(),
            ) {
                Ok(text) => return Ok(text),
                // Transient: a new leader has not committed an entry of its
                // term yet, a change is in progress. Retry until the deadline.
                Err(RpcError::Remote { code, .. })
                    if (code == errno::EBUSY || code == errno::EAGAIN)
                        && self.deadline > Instant::now() + Duration::from_millis(100) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    redirects += 1;
                    let follow = e.code() == errno::EPERM && admin::leader_only(op);
                    match e.leader_hint() {
                        Some(leader) if follow && leader != peer => peer = leader.to_string(),
                        _ if follow => {
                            return Err(unreachable_failure(format!(
                                "{peer} is not the leader of group {} and knows no leader",
                                self.group
                            )))
                        }
                        _ => return Err(rpc_failure(&peer, &e)),
                    }
                }
            }
        }
        Err(unreachable_failure(format!(
            "the leader of group {} kept moving; try again",
            self.group
        )))
    }

    fn to_target(&self, target: &Target, op: &str, arg: &str) -> Result<String, Failure> {
        let peer = match (&target.peer, &target.conf) {
            (Some(peer), _) => peer.clone(),
            (None, Some(conf)) => self.find_leader(conf)?,
            (None, None) => return Err(usage("give --peer or --conf".into())),
        };
        self.send(&peer, op, arg)
    }

    fn to_leader(&self, conf: &str, op: &str, arg: &str) -> Result<String, Failure> {
        let leader = self.find_leader(conf)?;
        self.send(&leader, op, arg)
    }
}

fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::AddPeer { group, peer } => {
            group.send("add_peer", &peer)?;
            Ok(format!("added {peer} to group {}", group.name()))
        }
        Command::RemovePeer { group, peer } => {
            group.send("remove_peer", &peer)?;
            Ok(format!("removed {peer} from group {}", group.name()))
        }
        Command::ChangePeers { group, new_peers } => {
            group.send("change_peers", &new_peers)?;
            Ok(format!("group {} now has voters {new_peers}", group.name()))
        }
        Command::ResetPeer {
            common,
            peer,
            new_peers,
        } => {
            AdminClient::new(&common).send(&peer, "reset_peer", &new_peers)?;
            Ok(format!("{peer} reset to {new_peers}"))
        }
        Command::TransferLeader { group, peer } => {
            group.send("transfer_leader", peer.as_deref().unwrap_or_default())?;
            Ok(format!(
                "leadership of group {} is moving to {}",
                group.name(),
                peer.as_deref().unwrap_or("the most up-to-date peer")
            ))
        }
        Command::Snapshot { common, target } => {
            AdminClient::new(&common).to_target(&target, "snapshot", "")?;
            Ok("snapshot saved".into())
        }
        Command::ListPeers { common, target } => {
            let peers = AdminClient::new(&common).to_target(&target, "list_peers", "")?;
            Ok(peers.split(',').collect::<Vec<_>>().join("\n"))
        }
        Command::Status {
            common,
            target,
            json,
        } => {
            let text = AdminClient::new(&common).to_target(
                &target,
                "status",
                if json { "json" } else { "" },
            )?;
            Ok(text.trim_end().to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(text) => {
            // A closed stdout (`rraft-cli status | grep -q Leader`) is not
            // an error of the command: println! would panic on EPIPE.
            if !text.is_empty() {
                use std::io::Write;
                let _ = writeln!(std::io::stdout(), "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("rraft-cli: {}", f.text);
            ExitCode::from(f.code)
        }
    }
}
