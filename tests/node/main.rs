//! Nodes and servers in one process and in child processes: clusters, data
//! directories, durability under disk faults, lost disks, many groups per
//! process, logs shared by groups, status pages, and the admin CLI.

mod braft_cli;
mod braft_raft;
mod cli_admin;
mod cluster;
mod common;
mod data_dirs;
mod durability;
mod faults;
mod lost_disk;
mod multi_group;
mod procs;
mod quiescence;
mod shared_log;
mod status_pages;
