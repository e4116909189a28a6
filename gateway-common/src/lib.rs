//! Names and `#[repr(C)]` types shared by Airlock's eBPF programs
//! (`gateway-ebpf`, built for `bpfel-unknown-none`) and its userspace daemon
//! (`gateway`).
//!
//! Both sides must agree byte for byte on every map key and value, and on the
//! names the daemon uses to find programs and maps in the object file. This
//! crate is the single place those are defined. It is `no_std` and has no
//! dependencies on the kernel side; with the `user` feature it also implements
//! [`aya::Pod`] so the daemon can read and write these types through aya maps.
//!
//! # The transparent path, in one paragraph
//!
//! An agent's `connect()` to an intercepted port ([`MAP_PORTS`]) runs
//! [`PROG_CONNECT4`] / [`PROG_CONNECT6`] (attached to the agents' parent
//! cgroup): they record an [`OrigInfo`] under the socket cookie
//! ([`MAP_BY_COOKIE`]) and rewrite the destination to the transparent
//! listener ([`Config::listen_port`] on `127.0.0.1`, or `[::1]` for native
//! IPv6) of the connecting socket's own network namespace. Only namespaces
//! the daemon has opened a listener in ([`MAP_NETNS`], by netns cookie) are
//! redirected; in any other the connect is refused. When the connection is
//! established, [`PROG_SOCK_OPS`] moves the record to [`MAP_BY_TUPLE`],
//! keyed by the connection's [`TupleKey`] (its namespace and 4-tuple). The
//! gateway accepts and calls `getsockopt`: [`PROG_GETSOCKOPT`] (attached to
//! the gateway's own cgroup) answers `SO_ORIGINAL_DST` and
//! [`SO_AIRLOCK_ORIG_INFO`] from that map. UDP to an intercepted port is
//! refused ([`PROG_SENDMSG4`], [`PROG_SENDMSG6`] and the connect programs),
//! so QUIC clients fall back to TCP.
//!
//! Every refusal the programs make themselves (UDP, a fault that leaves a
//! connection unrecorded) is reported to the daemon as a [`KernelEvent`]
//! on the ring buffer [`MAP_EVENTS`], at most [`EVENTS_PER_WINDOW`] per
//! cgroup and CPU per [`EVENT_WINDOW_NS`] ([`MAP_EVENT_RATE`]); the
//! daemon files each as an audit record (`docs/kernel-events.md`).
//!
//! Every integer below is in host byte order unless its doc says otherwise;
//! IP addresses are 16 octets in network order (IPv4 as `::ffff:a.b.c.d`),
//! exactly `Ipv6Addr::octets()`.
#![no_std]
#![deny(unsafe_code)]
// See gateway/src/lib.rs, "Lints".
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::unchecked_time_subtraction
)]

/// `cgroup/connect4`: records and redirects agents' TCP connects; refuses UDP.
pub const PROG_CONNECT4: &str = "airlock_conn4";
/// `cgroup/connect6`: the same for IPv6 sockets (native and IPv4-mapped).
pub const PROG_CONNECT6: &str = "airlock_conn6";
/// `cgroup/sendmsg4`: refuses unconnected UDP sends to intercepted ports.
pub const PROG_SENDMSG4: &str = "airlock_send4";
/// `cgroup/sendmsg6`: the same for IPv6 sockets.
pub const PROG_SENDMSG6: &str = "airlock_send6";
/// `sock_ops`: re-keys the record by 4-tuple once the connection is up.
pub const PROG_SOCK_OPS: &str = "airlock_estab";
/// `cgroup/getsockopt` on the gateway's cgroup: answers `SO_ORIGINAL_DST`.
pub const PROG_GETSOCKOPT: &str = "airlock_getopt";

/// The programs attached to the agents' parent cgroup (and pinned).
pub const AGENT_PROGRAMS: [&str; 5] = [
    PROG_CONNECT4,
    PROG_CONNECT6,
    PROG_SENDMSG4,
    PROG_SENDMSG6,
    PROG_SOCK_OPS,
];

/// `Array<Config>` with one entry (index 0).
pub const MAP_CONFIG: &str = "AIRLOCK_CONFIG";
/// `HashMap<u16, u8>`: the intercepted destination ports (value 1).
pub const MAP_PORTS: &str = "AIRLOCK_PORTS";
/// `LruHashMap<u64, OrigInfo>`: socket cookie → original destination.
pub const MAP_BY_COOKIE: &str = "AIRLOCK_COOKIE";
/// `LruHashMap<TupleKey, OrigInfo>`: 4-tuple → original destination.
pub const MAP_BY_TUPLE: &str = "AIRLOCK_TUPLE";
/// `HashMap<u64, u8>`: the network namespaces (by netns cookie, value 1)
/// where a transparent listener of the daemon is open: the host's and each
/// agent namespace it reached. A connect from any other is refused.
pub const MAP_NETNS: &str = "AIRLOCK_NETNS";

/// `RingBuf` of [`KernelEvent`]s: the programs' refusals, for the audit.
pub const MAP_EVENTS: &str = "AIRLOCK_EVENTS";
/// `LruPerCpuHashMap<u64, EventWindow>`: agent cgroup id → this CPU's
/// event budget, so one cgroup's flood cannot fill [`MAP_EVENTS`].
pub const MAP_EVENT_RATE: &str = "AIRLOCK_EVRATE";
/// aya-log's ring buffer (its name is aya-log-ebpf's): the programs' own
/// diagnostics. Pinned with the others so the logs of adopted programs
/// still reach the daemon that adopts them.
pub const MAP_LOGS: &str = "AYA_LOGS";

/// Every map, all pinned under the daemon's pin directory.
pub const MAPS: [&str; 8] = [
    MAP_CONFIG,
    MAP_PORTS,
    MAP_BY_COOKIE,
    MAP_BY_TUPLE,
    MAP_NETNS,
    MAP_EVENTS,
    MAP_EVENT_RATE,
    MAP_LOGS,
];

/// Capacity of [`MAP_PORTS`].
pub const MAX_PORTS: u32 = 64;
/// Capacity of [`MAP_NETNS`]: the host plus the agent namespaces served at
/// once (each holds two listeners and a thread's worth of set-up).
pub const MAX_NETNS: u32 = 1024;
/// Capacity of the two LRU maps: connections in flight between `connect()`
/// and the gateway's `getsockopt`.
pub const MAX_CONNECTIONS: u32 = 65_536;

/// Size of [`MAP_EVENTS`] in bytes (a power of two, a multiple of the
/// page size): 4,096 events of 64 bytes (plus the kernel's 8-byte header
/// each), far more than the per-cgroup budget lets through between two
/// reads of the daemon.
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// Cgroups whose budget [`MAP_EVENT_RATE`] remembers; the least recently
/// refused is forgotten first (its next refusal starts a fresh window).
pub const EVENT_RATE_CGROUPS: u32 = 4_096;
/// The kernel's budget window, in nanoseconds of `CLOCK_BOOTTIME`.
pub const EVENT_WINDOW_NS: u64 = 1_000_000_000;
/// Events a cgroup may put on the ring per window and CPU; the refusals
/// past it are counted in [`EventWindow::suppressed`] and the count rides
/// on the next event that gets through ([`KernelEvent::suppressed`]).
pub const EVENTS_PER_WINDOW: u32 = 20;

/// `SOL_IP`.
pub const SOL_IP: i32 = 0;
/// `SOL_IPV6`.
pub const SOL_IPV6: i32 = 41;
/// `SO_ORIGINAL_DST` (level `SOL_IP`), answered with a `sockaddr_in`.
pub const SO_ORIGINAL_DST: i32 = 80;
/// `IP6T_SO_ORIGINAL_DST` (level `SOL_IPV6`), answered with a `sockaddr_in6`.
pub const IP6T_SO_ORIGINAL_DST: i32 = 80;
/// Airlock's own option (level `SOL_IP`, "AI" = 0x4149): answered with the
/// whole [`OrigInfo`] (48 bytes), so the gateway learns the agent's cgroup
/// and the record's age in the same call. The entry is removed once read.
pub const SO_AIRLOCK_ORIG_INFO: i32 = 0x4149;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// The daemon's settings for the programs (map [`MAP_CONFIG`], index 0).
///
/// Layout: 16 bytes, 4-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The transparent listener's port on `127.0.0.1` and `[::1]`. Zero
    /// means "not configured": intercepted connects are then refused.
    pub listen_port: u16,
    /// Explicit padding; always zero.
    pub _pad0: u16,
    /// The cgroup v2 level of agent cgroups (the agents' parent's level
    /// plus one): the record names the ancestor at this level, so
    /// sub-cgroups an agent creates still map to it.
    pub agent_level: u32,
    /// Reserved; always zero.
    pub flags: u32,
    /// Explicit padding; always zero.
    pub _pad1: u32,
}

/// The destination an agent asked to connect to, before the transparent
/// path redirected it to the gateway, and who asked.
///
/// A record is only as good as its freshness: the 4-tuple it is filed
/// under is reused by later connections. [`OrigInfo::recorded_ns`] lets the
/// daemon refuse records older than a connection can wait to be accepted,
/// and flush those left by an earlier daemon.
///
/// Layout: 48 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigInfo {
    /// cgroup v2 id of the agent cgroup: the connecting task's ancestor at
    /// [`Config::agent_level`], or its own cgroup when it has none there.
    pub cgroup_id: u64,
    /// The original address, 16 octets in network order; IPv4 as
    /// `::ffff:a.b.c.d` (then `family` is [`AF_INET`]).
    pub addr: [u8; 16],
    /// Thread-group id (userspace pid) of the connecting process.
    pub pid: u32,
    /// Real uid of the connecting process.
    pub uid: u32,
    /// The original TCP port.
    pub port: u16,
    /// [`AF_INET`] or [`AF_INET6`]: the family of the original address.
    pub family: u16,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds (`bpf_ktime_get_boot_ns`) when the
    /// record was made (connect) and again when it was filed by 4-tuple
    /// (established). Boot time, not monotonic time, so a suspend counts
    /// towards a record's age.
    pub recorded_ns: u64,
}

/// A TCP connection as both ends see it, the agent being the client, in
/// the network namespace both ends are in.
///
/// The namespace is part of the key because a 4-tuple is only unique
/// within one: two containers can both have `127.0.0.1:40000 →
/// 127.0.0.1:10256`, and without it the second record would overwrite
/// the first and lend its agent's identity to the other's connection.
///
/// Layout: 48 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TupleKey {
    /// The agent's address (16 octets, IPv4 mapped).
    pub client_addr: [u8; 16],
    /// The transparent listener's address (16 octets, IPv4 mapped).
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    /// Explicit padding; always zero.
    pub _pad: u32,
    /// The connection's network namespace (`bpf_get_netns_cookie`, the
    /// value `SO_NETNS_COOKIE` reads in userspace).
    pub netns_cookie: u64,
}

/// What a [`KernelEvent`] reports: the programs' own refusals.
/// Plain `u32` constants, not an enum: the value crosses from the kernel
/// and any number may arrive (a newer program, a corrupt record).
pub mod event_kind {
    /// UDP to an intercepted port (connect or sendmsg): QUIC, refused so
    /// the client falls back to TCP.
    pub const UDP_REFUSED: u32 = 1;
    /// A connect from a network namespace the gateway has not reached
    /// (no listener there yet): refused rather than let out.
    pub const NETNS_UNREACHED: u32 = 2;
    /// An intercepted connect while no daemon has configured the maps
    /// (no listener port): refused.
    pub const UNCONFIGURED: u32 = 3;
    /// An intercepted connect whose original destination could not be
    /// recorded (the record map refused it): refused.
    pub const NOT_RECORDED: u32 = 4;
}

/// One refusal made in the kernel, for the daemon's audit (map
/// [`MAP_EVENTS`]).
///
/// Layout: 64 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelEvent {
    /// One of [`event_kind`].
    pub kind: u32,
    /// Thread-group id (userspace pid) of the refused process.
    pub pid: u32,
    /// cgroup v2 id of the agent cgroup, as [`OrigInfo::cgroup_id`] has it.
    pub cgroup_id: u64,
    /// The refused socket's network namespace (`bpf_get_netns_cookie`).
    pub netns_cookie: u64,
    /// Real uid of the refused process.
    pub uid: u32,
    /// Refusals of this cgroup (on this CPU) that were not reported since
    /// the last event that was: over the budget, or the ring was full.
    pub suppressed: u32,
    /// The destination, 16 octets in network order; IPv4 mapped (then
    /// `family` is [`AF_INET`]).
    pub addr: [u8; 16],
    /// The destination port.
    pub port: u16,
    /// [`AF_INET`] or [`AF_INET6`]: the family of `addr`.
    pub family: u16,
    /// The socket type: 1 stream (TCP), 2 datagram (UDP).
    pub sock_type: u16,
    /// Explicit padding; always zero.
    pub _pad: u16,
    /// `CLOCK_BOOTTIME` in nanoseconds when the refusal was made.
    pub at_ns: u64,
}

/// A cgroup's event budget on one CPU (map [`MAP_EVENT_RATE`]).
///
/// Layout: 16 bytes, 8-byte aligned, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventWindow {
    /// `CLOCK_BOOTTIME` in nanoseconds when the current window began.
    pub start_ns: u64,
    /// Events put on the ring in the current window.
    pub sent: u32,
    /// Refusals not reported since the last event that was.
    pub suppressed: u32,
}

/// `addr` as 16 octets: IPv4 (network-order octets) mapped into IPv6.
pub const fn mapped_v4(octets: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

#[cfg(feature = "user")]
#[allow(unsafe_code)]
mod pod {
    // What makes each sound: `#[repr(C)]`, `Copy`, made only of integers
    // and byte arrays, with explicit padding so there are no uninitialised
    // bytes; any bit pattern is a valid value (the layout tests below).

    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OrigInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TupleKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::EventWindow {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 16);
        assert_eq!(offset_of!(Config, agent_level), 4);
        assert_eq!(offset_of!(Config, flags), 8);
        assert_eq!(size_of::<OrigInfo>(), 48);
        assert_eq!(align_of::<OrigInfo>(), 8);
        assert_eq!(offset_of!(OrigInfo, addr), 8);
        assert_eq!(offset_of!(OrigInfo, pid), 24);
        assert_eq!(offset_of!(OrigInfo, uid), 28);
        assert_eq!(offset_of!(OrigInfo, port), 32);
        assert_eq!(offset_of!(OrigInfo, family), 34);
        assert_eq!(offset_of!(OrigInfo, _pad), 36);
        assert_eq!(offset_of!(OrigInfo, recorded_ns), 40);
        assert_eq!(size_of::<TupleKey>(), 48);
        assert_eq!(align_of::<TupleKey>(), 8);
        assert_eq!(offset_of!(TupleKey, server_addr), 16);
        assert_eq!(offset_of!(TupleKey, client_port), 32);
        assert_eq!(offset_of!(TupleKey, server_port), 34);
        assert_eq!(offset_of!(TupleKey, _pad), 36);
        assert_eq!(offset_of!(TupleKey, netns_cookie), 40);
    }

    #[test]
    fn kernel_event_layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<KernelEvent>(), 64);
        assert_eq!(align_of::<KernelEvent>(), 8);
        assert_eq!(offset_of!(KernelEvent, kind), 0);
        assert_eq!(offset_of!(KernelEvent, pid), 4);
        assert_eq!(offset_of!(KernelEvent, cgroup_id), 8);
        assert_eq!(offset_of!(KernelEvent, netns_cookie), 16);
        assert_eq!(offset_of!(KernelEvent, uid), 24);
        assert_eq!(offset_of!(KernelEvent, suppressed), 28);
        assert_eq!(offset_of!(KernelEvent, addr), 32);
        assert_eq!(offset_of!(KernelEvent, port), 48);
        assert_eq!(offset_of!(KernelEvent, family), 50);
        assert_eq!(offset_of!(KernelEvent, sock_type), 52);
        assert_eq!(offset_of!(KernelEvent, _pad), 54);
        assert_eq!(offset_of!(KernelEvent, at_ns), 56);
        assert_eq!(size_of::<EventWindow>(), 16);
        assert_eq!(align_of::<EventWindow>(), 8);
        assert_eq!(offset_of!(EventWindow, sent), 8);
        assert_eq!(offset_of!(EventWindow, suppressed), 12);
    }

    #[test]
    fn the_event_ring_is_a_power_of_two_of_pages() {
        assert!(EVENTS_BYTES.is_power_of_two() && EVENTS_BYTES >= 4096);
        // Room for a full window of every remembered cgroup is not the
        // aim (the daemon reads as they come), but one window of a few
        // hundred cgroups on a few CPUs fits.
        let per_event = size_of::<KernelEvent>() as u32 + 8;
        assert!(EVENTS_BYTES / per_event >= 16 * EVENTS_PER_WINDOW);
    }

    #[test]
    fn names_are_kernel_object_names() {
        // ELF symbol names (what aya looks them up by) that also survive the
        // kernel's 15-byte object names intact, so listings tell them apart.
        for name in AGENT_PROGRAMS.iter().chain(&[PROG_GETSOCKOPT]).chain(&MAPS) {
            assert!(!name.is_empty() && name.len() <= 15, "{name}");
            assert!(!name.as_bytes()[0].is_ascii_digit());
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
    }

    #[test]
    fn mapped_addresses() {
        assert_eq!(
            mapped_v4([127, 0, 0, 1]),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
        );
    }
}
