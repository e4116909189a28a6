//! Transparent listeners inside agents' own network namespaces
//! (containers, `ip netns`, `unshare -n`).
//!
//! connect4/6 rewrite an agent's connection to loopback of the *connecting
//! socket's* namespace. For a process in a namespace of its own that
//! loopback is not the host's, so the daemon opens the transparent
//! listener there too: on a short-lived thread it `setns`es into
//! `/proc/PID/ns/net`, binds `127.0.0.1:PORT` and `[::1]:PORT` and opens a
//! sock_diag socket ([`super::diag::NetnsDiag`]); a socket keeps the
//! namespace it was made in, so the thread exits and every other thread of
//! the daemon stays in the host's namespace. The upstream leg is dialled
//! by the ordinary tasks, from the host. The namespace's cookie
//! (`SO_NETNS_COOKIE`) then goes into the programs' `AIRLOCK_NETNS` map:
//! until it is there, connects from that namespace are refused (EPERM),
//! never let through. Which namespaces to reach, and when to let them go:
//! [`super::netns_follow`]. Why this design: docs/containers.md.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::libc;
use nix::net::if_::InterfaceFlags;
use nix::sched::CloneFlags;

use super::diag::NetnsDiag;

/// A network namespace as `stat` of its `/proc/PID/ns/net` names it: the
/// pair is unique while the namespace lives (and a namespace the daemon
/// holds a listener in lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    /// The namespace of process `pid`.
    pub fn of_pid(pid: u32) -> io::Result<NetnsId> {
        Self::of_path(&ns_path(pid))
    }

    /// The daemon's own (the host's) namespace.
    pub fn own() -> io::Result<NetnsId> {
        Self::of_path(Path::new("/proc/self/ns/net"))
    }

    fn of_path(path: &Path) -> io::Result<NetnsId> {
        let m = std::fs::metadata(path)?;
        Ok(NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn of_file(file: &File) -> io::Result<NetnsId> {
        let m = file.metadata()?;
        Ok(NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

impl fmt::Display for NetnsId {
    /// As `ls -l /proc/PID/ns/net` and `lsns` name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

fn ns_path(pid: u32) -> std::path::PathBuf {
    Path::new("/proc").join(pid.to_string()).join("ns/net")
}

/// The name `ip netns` gave namespace `id`, if it has one (a bind mount
/// under `/run/netns`): for the operator's messages.
pub fn ip_netns_name(id: NetnsId) -> Option<String> {
    std::fs::read_dir("/run/netns")
        .ok()?
        .filter_map(Result::ok)
        .find(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.dev() == id.dev && m.ino() == id.ino))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// What was opened inside a namespace, for the daemon to serve.
#[derive(Debug)]
pub struct Opened {
    /// `127.0.0.1:PORT` and, where the namespace has IPv6, `[::1]:PORT`;
    /// blocking std sockets (the caller registers them with its runtime).
    pub listeners: Vec<TcpListener>,
    /// sock_diag of that namespace, for the accepted connections' checks.
    pub diag: NetnsDiag,
    /// The namespace's cookie, as the programs' `bpf_get_netns_cookie`.
    pub cookie: u64,
    /// From opening `/proc/PID/ns/net` to the listeners being open.
    pub took: Duration,
}

/// Why a namespace could not be reached. Its connects stay refused.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open /proc/{pid}/ns/net: {source}")]
    Open { pid: u32, source: io::Error },
    /// The process exited and its pid was reused meanwhile, or it moved.
    #[error("process {pid} is no longer in that namespace")]
    Moved { pid: u32 },
    #[error("cannot start the thread that enters it: {0}")]
    Thread(io::Error),
    #[error("the thread that enters it panicked")]
    Panicked,
    #[error("cannot enter it (setns): {0}")]
    Enter(nix::Error),
    #[error("cannot list its interfaces: {0}")]
    Interfaces(nix::Error),
    /// Nothing can connect to loopback there until `ip link set lo up`.
    #[error(
        "its loopback interface is down, so the transparent listener cannot be reached there \
         (bring it up inside the namespace: ip link set lo up); its agents' connections are \
         refused until then"
    )]
    LoopbackDown,
    #[error("cannot listen on {addr} inside it: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("cannot read its cookie (SO_NETNS_COOKIE needs Linux 5.14): {0}")]
    Cookie(io::Error),
    #[error("cannot open a sock_diag socket inside it: {0}")]
    Diag(io::Error),
}

/// Opens the transparent listeners on `port` in the namespace of process
/// `pid`, which must still be `expect`.
pub fn open_in(pid: u32, expect: NetnsId, port: u16) -> Result<Opened, NetnsError> {
    let started = Instant::now();
    let file = File::open(ns_path(pid)).map_err(|source| NetnsError::Open { pid, source })?;
    // The file pins the namespace from here on; check it is the one found.
    if NetnsId::of_file(&file).ok() != Some(expect) {
        return Err(NetnsError::Moved { pid });
    }
    let mut opened = std::thread::Builder::new()
        .name("airlock-netns".into())
        .spawn(move || enter_and_open(&file, port))
        .map_err(NetnsError::Thread)?
        .join()
        .map_err(|_| NetnsError::Panicked)??;
    opened.took = started.elapsed();
    Ok(opened)
}

/// On a thread of its own, which ends right after: enters `ns` and opens
/// there what [`Opened`] holds.
fn enter_and_open(ns: &File, port: u16) -> Result<Opened, NetnsError> {
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)?;
    if !loopback_up()? {
        return Err(NetnsError::LoopbackDown);
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listen =
        |addr| TcpListener::bind(addr).map_err(|source| NetnsError::Listen { addr, source });
    let mut listeners = vec![listen(v4)?];
    // No `::1` (IPv6 disabled there): native-IPv6 connects then find no
    // listener and fail, which is closed.
    match listen(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
        Ok(v6) => listeners.push(v6),
        Err(e) => tracing::debug!(error = %e, "no IPv6 transparent listener in this namespace"),
    }
    let cookie = netns_cookie(&listeners[0]).map_err(NetnsError::Cookie)?;
    let diag = NetnsDiag::open().map_err(NetnsError::Diag)?;
    Ok(Opened {
        listeners,
        diag,
        cookie,
        took: Duration::ZERO,
    })
}

/// Whether the calling thread's namespace has its `lo` up.
fn loopback_up() -> Result<bool, NetnsError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(NetnsError::Interfaces)?;
    Ok(addrs
        .filter(|a| a.flags.contains(InterfaceFlags::IFF_LOOPBACK))
        .any(|a| a.flags.contains(InterfaceFlags::IFF_UP)))
}

/// The cookie of the network namespace `socket` lives in
/// (`SO_NETNS_COOKIE`): what `bpf_get_netns_cookie` returns there.
#[allow(unsafe_code)]
pub fn netns_cookie(socket: &impl AsRawFd) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is a writable u64 of `len` bytes; the fd is an open
    // socket borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_and_cookie() {
        let own = NetnsId::own().unwrap();
        assert_eq!(NetnsId::of_pid(std::process::id()).unwrap(), own);
        assert_eq!(own.to_string(), format!("net:[{}]", own.ino));
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Same namespace, same cookie; and it is set (cookies start at 1).
        let (ca, cb) = (netns_cookie(&a).unwrap(), netns_cookie(&b).unwrap());
        assert_eq!(ca, cb);
        assert_ne!(ca, 0);
    }

    #[test]
    fn a_process_that_is_gone_is_reported() {
        let own = NetnsId::own().unwrap();
        // Pid numbers this high are above the kernel's maximum.
        let err = open_in(u32::MAX - 1, own, 0).unwrap_err();
        assert!(matches!(err, NetnsError::Open { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot open /proc/"), "{err}");
    }

    /// Root only: a fresh namespace (unshare on a thread of this test),
    /// loopback down then up.
    #[test]
    fn opens_listeners_inside_another_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let mut child = std::process::Command::new("unshare")
            .args(["-n", "sleep", "30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let own = NetnsId::own().unwrap();
        let id = (0..200)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(10));
                NetnsId::of_pid(pid).ok().filter(|id| *id != own)
            })
            .expect("the child's namespace");
        let err = open_in(pid, id, 0).unwrap_err();
        assert!(matches!(err, NetnsError::LoopbackDown), "{err}");
        let up = std::process::Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ])
            .status()
            .unwrap();
        assert!(up.success());
        let opened = open_in(pid, id, 0).unwrap();
        assert!(!opened.listeners.is_empty());
        let host = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_ne!(opened.cookie, netns_cookie(&host).unwrap());
        // Still in the host's namespace here.
        assert_eq!(NetnsId::of_pid(std::process::id()).unwrap(), own);
        let _ = child.kill();
        let _ = child.wait();
    }
}
