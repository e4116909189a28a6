//! What a connection accepted on the transparent listener says about
//! itself: where the agent meant to go and which cgroup it came from.
//!
//! - eBPF: one `getsockopt(SOL_IP, SO_AIRLOCK_ORIG_INFO)`, answered by the
//!   gateway's getsockopt program from the record connect4/6 made
//!   (destination, cgroup id, pid, uid, when it was filed), then the client
//!   socket's own cgroup by its 4-tuple ([`super::diag`]), asked in the
//!   listener's network namespace (the host's, or an agent's own:
//!   [`super::netns`]).
//! - nftables: the standard `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST`,
//!   answered by conntrack from the REDIRECT, then the client socket's
//!   cgroup by its 4-tuple ([`super::diag`]).
//!
//! # Why an eBPF record is not trusted on its own
//!
//! The record is found by the accepted connection's 4-tuple, and a 4-tuple
//! is reused: a record left by a connection that was never accepted (a
//! daemon stopped or killed with connections in its backlog, a full accept
//! queue) would name its agent for any later connection from the same
//! source port, made by anyone. Three checks close that, each enough for
//! the case it covers:
//!
//! 1. a starting daemon flushes the records made before its listener
//!    existed ([`super::bpf::load`]);
//! 2. a record older than [`MAX_RECORD_AGE`] is refused
//!    ([`Unidentified::Stale`]): a connection is accepted within
//!    milliseconds of being established, so five seconds is generous, and a
//!    connection the gateway is too overloaded to accept that fast is
//!    closed (never served without identity);
//! 3. the client socket's own cgroup, from sock_diag, is returned beside
//!    the record's ([`Redirected::socket_cgroup_id`]) and the accepting
//!    side refuses a connection whose two cgroups are not the same agent's
//!    (`proxy::transparent`). A socket that cannot be found there is
//!    refused too.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use gateway_common::{
    AF_INET, IP6T_SO_ORIGINAL_DST, OrigInfo, SO_AIRLOCK_ORIG_INFO, SO_ORIGINAL_DST, SOL_IP,
    SOL_IPV6,
};
use nix::libc;

use super::diag::{self, NetnsDiag};
use crate::model::net::{CgroupId, ClientAddr, OrigDst};

/// Which mechanism redirected the connections a listener accepts.
#[derive(Debug, Clone)]
pub enum Redirector {
    Ebpf {
        /// The sock_diag socket of the listener's network namespace when
        /// it is an agent's own (`None`: the host's, the daemon's own).
        netns: Option<Arc<NetnsDiag>>,
    },
    Nftables,
}

/// A redirected agent connection, identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirected {
    /// Where the agent connected to: what the gateway dials, once the
    /// egress rules allow it.
    pub orig: OrigDst,
    /// The agent cgroup that made the connection, which names the agent:
    /// eBPF: the record's (the connecting task's ancestor at the agent
    /// level); nftables: the socket's.
    pub cgroup_id: CgroupId,
    /// The client socket's own cgroup, asked of the kernel by its 4-tuple
    /// when the connection is accepted (the same as `cgroup_id` in the
    /// nftables mode, which has nothing else). It must be the same agent's
    /// cgroup as `cgroup_id` (or one below it).
    pub socket_cgroup_id: CgroupId,
    /// The connecting task, for the operator's logs and refusals (eBPF
    /// only: nftables does not know it).
    pub pid: Option<u32>,
    /// The connecting user (eBPF: the task's; nftables: the socket's),
    /// likewise for the operator.
    pub uid: u32,
}

/// Why a connection on the transparent listener cannot be identified.
#[derive(Debug, thiserror::Error)]
pub enum Unidentified {
    #[error("no original destination ({0}): not redirected by Airlock")]
    NotRedirected(io::Error),
    #[error("it reached the listener directly, not through a redirect")]
    Direct,
    #[error("the connecting socket's cgroup is unknown ({0})")]
    NoOwner(io::Error),
    #[error(
        "its connection record is {} ms old (at most {} ms): left by an earlier connection \
         from the same address and port",
        .age.as_millis(),
        MAX_RECORD_AGE.as_millis()
    )]
    Stale { age: Duration },
}

/// How old an eBPF connection record may be when the gateway reads it:
/// the time from the connection being established to the gateway's
/// `getsockopt` after `accept`. See the module docs.
pub const MAX_RECORD_AGE: Duration = Duration::from_secs(5);

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock the eBPF programs stamp
/// records with (`bpf_ktime_get_boot_ns`).
#[allow(unsafe_code)]
pub fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every kernel this runs on (2.6.39+), so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// `Err` when a record stamped `recorded_ns` is too old at `now_ns` to
/// identify the connection being accepted now.
pub fn check_age(recorded_ns: u64, now_ns: u64) -> Result<(), Unidentified> {
    let age = Duration::from_nanos(now_ns.saturating_sub(recorded_ns));
    if age > MAX_RECORD_AGE {
        Err(Unidentified::Stale { age })
    } else {
        Ok(())
    }
}

impl Redirector {
    /// The original destination and identity of `stream`, accepted from
    /// `peer` on local address `local`.
    pub fn identify(
        &self,
        stream: &impl AsRawFd,
        peer: ClientAddr,
        local: SocketAddr,
    ) -> Result<Redirected, Unidentified> {
        let peer = peer.get();
        match self {
            Redirector::Ebpf { netns } => {
                let info = original_info(stream).map_err(Unidentified::NotRedirected)?;
                check_age(info.recorded_ns, boot_time_ns())?;
                // The client socket was redirected by rewriting its
                // destination: its own remote address is this listener.
                let owner = match netns {
                    Some(ns) => ns.tcp_socket_owner(peer, local),
                    None => diag::tcp_socket_owner(peer, local),
                }
                .map_err(Unidentified::NoOwner)?;
                Ok(Redirected {
                    orig: OrigDst::new(original_addr(&info)),
                    cgroup_id: CgroupId::new(info.cgroup_id),
                    socket_cgroup_id: CgroupId::new(owner.cgroup_id),
                    pid: Some(info.pid),
                    uid: info.uid,
                })
            }
            Redirector::Nftables => {
                let orig = original_dst(stream, local).map_err(Unidentified::NotRedirected)?;
                // conntrack answers for every tracked connection; one that
                // was not NATed names the listener itself.
                if orig == local {
                    return Err(Unidentified::Direct);
                }
                let owner = diag::tcp_socket_owner(peer, orig).map_err(Unidentified::NoOwner)?;
                let cgroup = CgroupId::new(owner.cgroup_id);
                Ok(Redirected {
                    orig: OrigDst::new(orig),
                    cgroup_id: cgroup,
                    socket_cgroup_id: cgroup,
                    pid: None,
                    uid: owner.uid,
                })
            }
        }
    }
}

/// `getsockopt` of a plain `#[repr(C)]` value of type `T`; the answer
/// must fill it exactly.
#[allow(unsafe_code)]
fn getsockopt_exact<T: Default>(fd: &impl AsRawFd, level: i32, name: i32) -> io::Result<T> {
    let mut value = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a plain value of exactly `len` bytes that the
    // kernel may overwrite; `len` is a valid socklen_t; the fd is an open
    // socket borrowed for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<T>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the original-destination answer has {len} bytes"),
        ));
    }
    Ok(value)
}

/// The eBPF record (`SO_AIRLOCK_ORIG_INFO`). `ENOENT`/`ENOPROTOOPT` when
/// the connection was not redirected by Airlock's programs.
pub fn original_info(stream: &impl AsRawFd) -> io::Result<OrigInfo> {
    getsockopt_exact(stream, SOL_IP, SO_AIRLOCK_ORIG_INFO)
}

/// The original destination in `info`.
pub fn original_addr(info: &OrigInfo) -> SocketAddr {
    mapped_addr(info.addr, info.family, info.port)
}

/// An address as the eBPF programs write it: 16 octets (IPv4 mapped,
/// then `family` is `AF_INET`) and a host-order port.
pub fn mapped_addr(addr: [u8; 16], family: u16, port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(addr);
    match (family, v6.to_ipv4_mapped()) {
        (AF_INET, Some(v4)) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        _ => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0)),
    }
}

/// conntrack's original destination of a NATed connection accepted on
/// `local` (`SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6).
pub fn original_dst(stream: &impl AsRawFd, local: SocketAddr) -> io::Result<SocketAddr> {
    // Read as bytes (`sockaddr_in` / `sockaddr_in6` layouts): port and
    // address in network order after the 2-byte family.
    Ok(match local {
        SocketAddr::V4(_) => {
            let sa: [u8; 16] = getsockopt_exact(stream, SOL_IP, SO_ORIGINAL_DST)?;
            let ip: [u8; 4] = sa[4..8].try_into().unwrap_or_default();
            SocketAddr::from((Ipv4Addr::from(ip), u16::from_be_bytes([sa[2], sa[3]])))
        }
        SocketAddr::V6(_) => {
            let sa: [u8; 28] = getsockopt_exact(stream, SOL_IPV6, IP6T_SO_ORIGINAL_DST)?;
            let ip: [u8; 16] = sa[8..24].try_into().unwrap_or_default();
            let scope: [u8; 4] = sa[24..28].try_into().unwrap_or_default();
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                u16::from_be_bytes([sa[2], sa[3]]),
                0,
                u32::from_ne_bytes(scope),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_addresses() {
        let mut info = OrigInfo {
            addr: gateway_common::mapped_v4([10, 1, 2, 3]),
            port: 443,
            family: AF_INET,
            ..Default::default()
        };
        assert_eq!(original_addr(&info).to_string(), "10.1.2.3:443");
        info.addr = Ipv6Addr::LOCALHOST.octets();
        info.family = gateway_common::AF_INET6;
        assert_eq!(original_addr(&info).to_string(), "[::1]:443");
    }

    #[test]
    fn records_older_than_the_bound_are_refused() {
        let s = 1_000_000_000u64;
        let now = 1_000 * s;
        // Fresh, at the bound, and from "the future" (same clock; never
        // seen, but no reason to refuse).
        for recorded in [now, now - 3 * s, now - 5 * s, now + s] {
            assert!(check_age(recorded, now).is_ok(), "{recorded}");
        }
        for recorded in [now - 5 * s - 1, now - 60 * s, 0] {
            let err = check_age(recorded, now).unwrap_err();
            assert!(matches!(err, Unidentified::Stale { .. }), "{err}");
        }
        let msg = check_age(now - 7 * s, now).unwrap_err().to_string();
        assert!(msg.contains("7000 ms old (at most 5000 ms)"), "{msg}");
        // The clock the kernel stamps with is running and past boot.
        let (a, b) = (boot_time_ns(), boot_time_ns());
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn a_direct_connection_is_not_a_redirect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(local).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        // Without conntrack: ENOENT; with it: the listener itself.
        let err = Redirector::Nftables
            .identify(&accepted, ClientAddr::new(peer), local)
            .unwrap_err();
        assert!(
            matches!(err, Unidentified::NotRedirected(_) | Unidentified::Direct),
            "{err}"
        );
    }
}
