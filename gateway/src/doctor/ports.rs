//! The ports `serve` listens on: free, or held by this data directory's
//! daemon.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::Check;
use crate::config::Settings;
use crate::intercept::TransparentMode;

pub(super) fn checks(settings: &Settings, daemon: Option<u32>) -> Vec<Check> {
    let mut ports = vec![
        ("proxy port", settings.proxy.listen, "--proxy-listen"),
        (
            "dashboard port",
            settings.dashboard.listen,
            "--dashboard-listen",
        ),
    ];
    let intercept = &settings.intercept;
    if intercept.mode != TransparentMode::Off {
        ports.push((
            "transparent port",
            SocketAddr::from((Ipv4Addr::LOCALHOST, intercept.port)),
            "--transparent-port",
        ));
    }
    ports
        .into_iter()
        .map(|(name, addr, flag)| port(name, addr, flag, daemon))
        .collect()
}

fn port(name: &'static str, addr: SocketAddr, flag: &str, daemon: Option<u32>) -> Check {
    if addr.port() == 0 {
        return Check::ok(
            name,
            format!("{addr}: the kernel picks a free port at start"),
        );
    }
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            match daemon {
                None => Check::ok(name, format!("{addr} is free")),
                Some(pid) => Check::warn(
                    name,
                    format!(
                        "{addr} is free, but the daemon (pid {pid}) runs: it was started with \
                         other settings than these"
                    ),
                    "run doctor with the daemon's flags, environment and config file",
                ),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let holder = listener_pid(addr.port());
            match (daemon, holder) {
                (Some(d), Some(h)) if d == h => {
                    Check::ok(name, format!("{addr}: the daemon (pid {d}) listens"))
                }
                (Some(d), None) => {
                    Check::ok(name, format!("{addr} is in use, the daemon (pid {d}) runs"))
                }
                (_, holder) => Check::fail(
                    name,
                    format!(
                        "{addr} is in use by {}",
                        holder.map_or("another program".to_owned(), describe)
                    ),
                    format!("stop that program or give airlock another address with {flag}"),
                ),
            }
        }
        Err(e) => Check::fail(
            name,
            format!("cannot listen on {addr}: {e}"),
            format!("choose an address of this host with {flag}"),
        ),
    }
}

fn describe(pid: u32) -> String {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    format!("pid {pid} ({})", comm.trim())
}

/// The process with a TCP socket listening on `port`: its inode from
/// /proc/net/tcp{,6}, then the process with that inode among its fds.
/// `None` when not found (another user's process, without root).
fn listener_pid(port: u16) -> Option<u32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
                && inodes.contains(&inode)
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The inodes of the sockets in a /proc/net/tcp table listening on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *fields.get(3)? == LISTEN)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_socket_of_a_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:2816 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n   \
             1: 0100007F:2816 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0\n";
        assert_eq!(listening_inodes(table, 10262), vec![4242]);
        assert!(listening_inodes(table, 443).is_empty());
    }

    #[test]
    fn a_port_held_by_this_process_names_it() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listener_pid(addr.port()), Some(std::process::id()));
        let c = port("p", addr, "--x", None);
        assert_eq!(c.status, super::super::Status::Fail);
        assert!(
            c.detail.contains(&format!("pid {}", std::process::id())),
            "{}",
            c.detail
        );
        let c = port("p", addr, "--x", Some(std::process::id()));
        assert_eq!(c.status, super::super::Status::Ok);
    }
}
