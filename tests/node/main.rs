//! Nodes and servers in one process and in child processes: clusters, data
//! directories, durability under disk faults, lost disks, status pages, and
//! the admin CLI.

mod braft_cli;
mod cli_admin;
mod cluster;
mod common;
mod data_dirs;
mod durability;
mod faults;
mod lost_disk;
mod procs;
mod status_pages;
