//! Which cgroup owns a TCP socket, asked of the kernel by the socket's
//! 4-tuple (`NETLINK_SOCK_DIAG`, the interface `ss` uses).
//!
//! The nftables fallback needs it: a REDIRECT keeps the original
//! destination (conntrack answers `SO_ORIGINAL_DST`) but not who
//! connected. The client's socket still exists while the gateway holds
//! the accepted one, and its own view of the connection is
//! `local = the accepted socket's peer`, `remote = the original
//! destination`, so one exact lookup (`inet_diag_req_v2` without
//! `NLM_F_DUMP`) finds it; the answer carries `INET_DIAG_CGROUP_ID`
//! (Linux 5.7+) and the owner's uid. One netlink socket per calling
//! thread is kept open, so a lookup is a `send` and a `recv`.
//!
//! sock_diag sees only the sockets of the namespace its netlink socket was
//! made in. A listener opened in an agent's network namespace
//! ([`super::netns`]) therefore comes with a [`NetnsDiag`] made there too.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use nix::libc;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDR_LEN: usize = 16;
const INET_DIAG_MSG_LEN: usize = 72;
const INET_DIAG_CGROUP_ID: u16 = 21;
const INET_DIAG_NOCOOKIE: u32 = !0;

/// The owner of a socket, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    /// The cgroup v2 id of the socket (the cgroup of the task that
    /// created it).
    pub cgroup_id: u64,
    pub uid: u32,
}

/// `struct inet_diag_req_v2` behind its `nlmsghdr`, as the kernel reads it.
#[repr(C)]
struct Request {
    nlmsg_len: u32,
    nlmsg_type: u16,
    nlmsg_flags: u16,
    nlmsg_seq: u32,
    nlmsg_pid: u32,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    // struct inet_diag_sockid: ports and addresses in network order.
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    ifindex: u32,
    cookie: [u32; 2],
}

fn octets(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

/// The owner of the TCP socket whose local address is `local` and whose
/// remote address is `remote`. `NotFound` when no such socket exists
/// (e.g. the client already closed it).
pub fn tcp_socket_owner(local: SocketAddr, remote: SocketAddr) -> io::Result<SocketOwner> {
    let req = request(local, remote)?;
    with_socket(|fd| exchange(fd, &req))
}

/// A sock_diag socket of one network namespace: lookups through it find
/// that namespace's sockets. Shared by the namespace's accepting tasks; a
/// lookup holds it for one `send` and one `recv`.
pub struct NetnsDiag {
    fd: Mutex<OwnedFd>,
}

impl NetnsDiag {
    /// A socket in the calling thread's current network namespace.
    pub fn open() -> io::Result<NetnsDiag> {
        Ok(NetnsDiag {
            fd: Mutex::new(open_socket()?),
        })
    }

    /// [`tcp_socket_owner`], asked in this socket's namespace.
    pub fn tcp_socket_owner(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<SocketOwner> {
        let req = request(local, remote)?;
        // Nothing between a lookup's send and recv can panic, so a
        // poisoned lock still guards a socket with no reply pending.
        let fd = self.fd.lock().unwrap_or_else(|e| e.into_inner());
        exchange(fd.as_raw_fd(), &req)
    }
}

impl std::fmt::Debug for NetnsDiag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetnsDiag")
    }
}

/// The exact-match request for the socket `local` → `remote`.
fn request(local: SocketAddr, remote: SocketAddr) -> io::Result<Request> {
    // An IPv4-mapped client socket is found by its IPv4 tuple: that is
    // how the kernel hashes it.
    let (local, remote) = (unmap(local), unmap(remote));
    let family = match (local, remote) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) => libc::AF_INET,
        (SocketAddr::V6(_), SocketAddr::V6(_)) => libc::AF_INET6,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{local} and {remote} are of different address families"),
            ));
        }
    };
    Ok(Request {
        nlmsg_len: size_of::<Request>() as u32,
        nlmsg_type: SOCK_DIAG_BY_FAMILY,
        nlmsg_flags: NLM_F_REQUEST,
        nlmsg_seq: 1,
        nlmsg_pid: 0,
        family: family as u8,
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: !0,
        sport: local.port().to_be_bytes(),
        dport: remote.port().to_be_bytes(),
        src: octets(local.ip()),
        dst: octets(remote.ip()),
        ifindex: 0,
        cookie: [INET_DIAG_NOCOOKIE; 2],
    })
}

/// One request and its reply on the netlink socket `fd`.
#[allow(unsafe_code)]
fn exchange(fd: i32, req: &Request) -> io::Result<SocketOwner> {
    let mut buf = [0u8; 1024];
    // SAFETY: `req` is a plain #[repr(C)] value read for its full size;
    // `fd` is an open netlink socket.
    let sent = unsafe { libc::send(fd, (req as *const Request).cast(), size_of::<Request>(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `buf` is writable for its full length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_reply(&buf[..n as usize])
}

/// A new sock_diag socket in the calling thread's network namespace.
#[allow(unsafe_code)]
fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

thread_local! {
    static SOCKET: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's netlink socket, opening it on first use
/// and dropping it after an error (a fresh one next time).
fn with_socket<T>(f: impl FnOnce(i32) -> io::Result<T>) -> io::Result<T> {
    SOCKET.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fd = match slot.as_ref() {
            Some(fd) => fd.as_raw_fd(),
            None => slot.insert(open_socket()?).as_raw_fd(),
        };
        let r = f(fd);
        if r.is_err() {
            *slot = None;
        }
        r
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed sock_diag reply: {what}"),
    )
}

/// Reads one reply message: an error, or an `inet_diag_msg` and its
/// attributes.
fn parse_reply(b: &[u8]) -> io::Result<SocketOwner> {
    let len = u32_at(b, 0).ok_or_else(|| malformed("short header"))? as usize;
    let kind = u16_at(b, 4).ok_or_else(|| malformed("short header"))?;
    let msg = b
        .get(NLMSG_HDR_LEN..len)
        .ok_or_else(|| malformed("length beyond the reply"))?;
    if kind == NLMSG_ERROR {
        let errno = u32_at(msg, 0).ok_or_else(|| malformed("short error"))? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(malformed(&format!("message type {kind}")));
    }
    let uid = u32_at(msg, 64).ok_or_else(|| malformed("short inet_diag_msg"))?;
    let mut at = INET_DIAG_MSG_LEN;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at).unwrap_or(0) as usize;
        let atype = u16_at(msg, at + 2).unwrap_or(0) & 0x3fff;
        if alen < 4 {
            break;
        }
        if atype == INET_DIAG_CGROUP_ID {
            let v = msg
                .get(at + 4..at + 12)
                .ok_or_else(|| malformed("short cgroup id"))?;
            let cgroup_id = u64::from_ne_bytes(v.try_into().map_err(|_| malformed("cgroup id"))?);
            return Ok(SocketOwner { cgroup_id, uid });
        }
        at += (alen + 3) & !3;
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the kernel does not report socket cgroups (INET_DIAG_CGROUP_ID needs Linux 5.7 and \
         CONFIG_SOCK_CGROUP_DATA)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn finds_the_cgroup_of_a_connected_socket_by_its_tuple() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let owner =
            tcp_socket_owner(peer, accepted.local_addr().unwrap()).expect("the client's socket");
        assert_eq!(owner.uid, nix::unistd::geteuid().as_raw());
        // The socket was made in this process's cgroup.
        if let Ok(cg) = super::super::cgroup::Cgroup2::find()
            && let Ok(rel) = cg.of_pid(std::process::id())
        {
            let id = std::fs::metadata(cg.path(&rel)).unwrap().ino();
            assert_eq!(owner.cgroup_id, id);
        }
        drop(client);
        drop(accepted);
        let gone = tcp_socket_owner(SocketAddr::from(([127, 0, 0, 1], 1)), peer).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
    }

    /// The per-connection cost of the lookup (BENCHMARKS.md):
    /// `cargo test -p airlock --lib diag -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn lookup_cost() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let local = accepted.local_addr().unwrap();
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            tcp_socket_owner(peer, local).unwrap();
        }
        let each = start.elapsed() / n;
        println!("sock_diag lookup: {each:?} per connection ({n} lookups)");
    }

    #[test]
    fn refuses_malformed_replies() {
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[200, 0, 0, 0, 20, 0]).is_err());
        let mut err = vec![0u8; 20];
        err[0] = 20;
        err[4] = NLMSG_ERROR as u8;
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(
            parse_reply(&err).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
