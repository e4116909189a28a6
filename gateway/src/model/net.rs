//! The addresses and identities an agent connection carries, as distinct
//! types: an original destination can never be passed where the client's
//! address or the address the gateway dials is meant, nor a cgroup id
//! where any other number is.
//!
//! They live here, in [`crate::model`], because both sides of the eBPF
//! boundary name them: [`crate::intercept`] makes them from the kernel's
//! answers (the eBPF record, `getsockopt`, sock_diag) and
//! [`crate::proxy`] carries them through the session to the audit record.
//! `model` imports neither, so neither has to import the other for them.
//! Values are in host byte order; the conversions from the kernel's
//! layouts happen where the kernel is asked (`intercept::redirect`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A cgroup v2 id: the inode number of the cgroup's directory, which is
/// what the kernel stamps on sockets and what the eBPF programs record.
/// Agents are identified by it in the transparent mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupId(u64);

impl CgroupId {
    pub const fn new(id: u64) -> Self {
        CgroupId(id)
    }

    /// The number, for the kernel interfaces that take it.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CgroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an agent connected to before a redirect brought the connection
/// to the transparent listener (the eBPF record, or conntrack's
/// `SO_ORIGINAL_DST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrigDst(SocketAddr);

impl OrigDst {
    pub const fn new(addr: SocketAddr) -> Self {
        OrigDst(addr)
    }

    pub const fn get(self) -> SocketAddr {
        self.0
    }

    pub const fn ip(self) -> IpAddr {
        self.0.ip()
    }

    pub const fn port(self) -> u16 {
        self.0.port()
    }
}

impl fmt::Display for OrigDst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The agent side's address of an accepted connection (its peer address):
/// what sock_diag looks the client socket up by, and what a refusal names
/// when no agent can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(SocketAddr);

impl ClientAddr {
    pub const fn new(addr: SocketAddr) -> Self {
        ClientAddr(addr)
    }

    pub const fn get(self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The address the gateway dials for a session: the original destination
/// of a transparent connection, or what the explicit proxy resolved the
/// `CONNECT` host to; either way checked by the egress rules first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamAddr(SocketAddr);

impl UpstreamAddr {
    pub const fn new(addr: SocketAddr) -> Self {
        UpstreamAddr(addr)
    }

    pub const fn get(self) -> SocketAddr {
        self.0
    }
}

impl From<OrigDst> for UpstreamAddr {
    fn from(orig: OrigDst) -> Self {
        UpstreamAddr(orig.0)
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
