//! Names and `#[repr(C)]` types shared by Airlock's eBPF programs
//! (`gateway-ebpf`, built for `bpfel-unknown-none`) and its userspace daemon
//! (`gateway`).
//!
//! Both sides must agree byte for byte on every map key and value, and on the
//! names the daemon uses to find programs and maps in the object file. This
//! crate is the single place those are defined. It is `no_std` and has no
//! dependencies on the kernel side; with the `user` feature it also implements
//! [`aya::Pod`] so the daemon can read and write these types through aya maps.
#![no_std]
#![deny(unsafe_code)]

/// Name of the `cgroup/connect4` program that records and redirects agent
/// connections.
pub const PROG_CONNECT4: &str = "airlock_connect4";

/// Name of the map from socket cookie to the agent's original destination.
pub const MAP_ORIG_DST: &str = "ORIG_DST";

/// The destination an agent asked to connect to, before the transparent path
/// redirected it to the gateway, and who asked.
///
/// Layout: 24 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDst {
    /// IPv4 address, host byte order.
    pub ip: u32,
    /// TCP port, host byte order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
    /// cgroup v2 id of the connecting socket's cgroup.
    pub cgroup_id: u64,
    /// Thread-group id (userspace pid) of the connecting process.
    pub pid: u32,
    /// Real uid of the connecting process.
    pub uid: u32,
}

#[cfg(feature = "user")]
#[allow(unsafe_code)]
// SAFETY: `OrigDst` is `#[repr(C)]`, `Copy`, made only of integers, and has
// explicit padding so it has no uninitialised bytes; any bit pattern is valid.
unsafe impl aya::Pod for OrigDst {}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn orig_dst_layout_has_no_implicit_padding() {
        assert_eq!(size_of::<OrigDst>(), 24);
        assert_eq!(align_of::<OrigDst>(), 8);
        assert_eq!(offset_of!(OrigDst, ip), 0);
        assert_eq!(offset_of!(OrigDst, port), 4);
        assert_eq!(offset_of!(OrigDst, _pad), 6);
        assert_eq!(offset_of!(OrigDst, cgroup_id), 8);
        assert_eq!(offset_of!(OrigDst, pid), 16);
        assert_eq!(offset_of!(OrigDst, uid), 20);
    }

    #[test]
    fn names_are_symbol_names() {
        // They are ELF symbol names (Rust item names on the kernel side), which
        // is what aya looks programs and maps up by. The kernel itself keeps
        // only the first 15 bytes (what bpftool shows).
        for name in [PROG_CONNECT4, MAP_ORIG_DST] {
            assert!(!name.is_empty());
            assert!(!name.as_bytes()[0].is_ascii_digit());
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }
}
