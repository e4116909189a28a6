//! Airlock's eBPF programs, loaded and attached by the daemon (`gateway`,
//! module `intercept`). Names, map layouts and the whole flow are described
//! in `gateway-common`, the one place both sides take them from.
//!
//! Byte orders differ field by field in the kernel's contexts (their
//! definitions are in the kernel's `include/uapi/linux/bpf.h`):
//! `bpf_sock_addr.user_port` is a big-endian u16 in a u32; in
//! `bpf_sock_ops` `local_port` is host order and `remote_port` network
//! order shifted; in `bpf_sock` `src_port` is host order and `dst_port`
//! big-endian. IP words are network order everywhere, so their native bytes
//! are the address octets. Context fields are read and written one at a
//! time with volatile accesses: the verifier refuses the merged or widened
//! accesses LLVM otherwise makes of neighbouring fields.
//!
//! Every program is a thin entry that turns its `try_` function's `Result`
//! into the verdict the kernel expects.
//!
//! Every refusal a program makes itself is reported ([`report`]) on the
//! event ring for the daemon's audit, within a per-cgroup budget kept in
//! the kernel (see `gateway_common::KernelEvent`). Diagnostics go through
//! aya-log at debug level, only on refusal and fault paths: the daemon
//! sets aya-log's level at load, so with debug off the verifier prunes
//! them and they cost nothing.
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::bindings::{bpf_sock, bpf_sock_addr, bpf_sockopt};
use aya_ebpf::helpers::{
    bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_ktime_get_boot_ns,
};
use aya_ebpf::macros::{cgroup_sock_addr, cgroup_sockopt, map, sock_ops};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, RingBuf};
use aya_ebpf::programs::{SockAddrContext, SockOpsContext, SockoptContext};
use aya_log_ebpf::debug;
use gateway_common::{
    AF_INET, AF_INET6, Config, EVENT_RATE_CGROUPS, EVENT_WINDOW_NS, EVENTS_BYTES,
    EVENTS_PER_WINDOW, EventWindow, IP6T_SO_ORIGINAL_DST, KernelEvent, MAX_CONNECTIONS, MAX_NETNS,
    MAX_PORTS, OrigInfo, SO_AIRLOCK_ORIG_INFO, SO_ORIGINAL_DST, SOL_IP, SOL_IPV6, TupleKey,
    event_kind, mapped_v4,
};

/// The cgroup sock_addr / sockopt verdict that lets the call proceed.
const ALLOW: i32 = 1;
/// The verdict that fails the call with EPERM.
const REFUSE: i32 = 0;

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB: u32 = 4;

/// `127.0.0.1` as the kernel stores it (network order).
const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// The last word of `::1`.
const LOOPBACK6_LAST: u32 = u32::from_ne_bytes([0, 0, 0, 1]);
/// The third word of an IPv4-mapped IPv6 address (`::ffff:0:0/96`).
const MAPPED_PREFIX: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The four words of an IPv6 address field of a context, each read on its
/// own at a constant offset (the verifier refuses reads through a
/// context pointer that was moved, as a loop over the index produces).
macro_rules! ip6_words {
    ($ptr:expr, $field:ident) => {
        [
            read_volatile(addr_of!((*$ptr).$field[0])),
            read_volatile(addr_of!((*$ptr).$field[1])),
            read_volatile(addr_of!((*$ptr).$field[2])),
            read_volatile(addr_of!((*$ptr).$field[3])),
        ]
    };
}

// Map statics are named exactly as `gateway_common::MAP_*` (checked below).
#[map]
static AIRLOCK_CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static AIRLOCK_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);
#[map]
static AIRLOCK_COOKIE: LruHashMap<u64, OrigInfo> = LruHashMap::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static AIRLOCK_TUPLE: LruHashMap<TupleKey, OrigInfo> =
    LruHashMap::with_max_entries(MAX_CONNECTIONS, 0);
#[map]
static AIRLOCK_NETNS: HashMap<u64, u8> = HashMap::with_max_entries(MAX_NETNS, 0);
#[map]
static AIRLOCK_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
#[map]
static AIRLOCK_EVRATE: LruPerCpuHashMap<u64, EventWindow> =
    LruPerCpuHashMap::with_max_entries(EVENT_RATE_CGROUPS, 0);

const _: () = {
    assert!(const_str_eq(gateway_common::MAP_CONFIG, "AIRLOCK_CONFIG"));
    assert!(const_str_eq(gateway_common::MAP_PORTS, "AIRLOCK_PORTS"));
    assert!(const_str_eq(
        gateway_common::MAP_BY_COOKIE,
        "AIRLOCK_COOKIE"
    ));
    assert!(const_str_eq(gateway_common::MAP_BY_TUPLE, "AIRLOCK_TUPLE"));
    assert!(const_str_eq(gateway_common::MAP_NETNS, "AIRLOCK_NETNS"));
    assert!(const_str_eq(gateway_common::MAP_EVENTS, "AIRLOCK_EVENTS"));
    assert!(const_str_eq(
        gateway_common::MAP_EVENT_RATE,
        "AIRLOCK_EVRATE"
    ));
    assert!(const_str_eq(gateway_common::PROG_CONNECT4, "airlock_conn4"));
    assert!(const_str_eq(gateway_common::PROG_CONNECT6, "airlock_conn6"));
    assert!(const_str_eq(gateway_common::PROG_SENDMSG4, "airlock_send4"));
    assert!(const_str_eq(gateway_common::PROG_SENDMSG6, "airlock_send6"));
    assert!(const_str_eq(gateway_common::PROG_SOCK_OPS, "airlock_estab"));
    assert!(const_str_eq(
        gateway_common::PROG_GETSOCKOPT,
        "airlock_getopt"
    ));
};

/// Why a program could not do its job. What that means is the entry's
/// call: a connect refuses, the others leave the kernel's own answer.
#[derive(Clone, Copy)]
enum Fault {
    /// `AIRLOCK_CONFIG` has no listener port: no daemon configured the maps.
    Unconfigured,
    /// A map refused the record (full): the connection would go unrecorded.
    NotRecorded,
    /// The option buffer is too small for the answer.
    NoRoom,
}

// ---------------------------------------------------------------- entries

#[cgroup_sock_addr(connect4)]
pub fn airlock_conn4(ctx: SockAddrContext) -> i32 {
    verdict(reported(&ctx, try_connect(&ctx, false), false))
}

#[cgroup_sock_addr(connect6)]
pub fn airlock_conn6(ctx: SockAddrContext) -> i32 {
    verdict(reported(&ctx, try_connect(&ctx, true), true))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn airlock_send4(ctx: SockAddrContext) -> i32 {
    verdict(try_sendmsg(&ctx, false))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn airlock_send6(ctx: SockAddrContext) -> i32 {
    verdict(try_sendmsg(&ctx, true))
}

#[sock_ops]
pub fn airlock_estab(ctx: SockOpsContext) -> u32 {
    // A record that cannot be re-keyed is not found by the gateway, which
    // then refuses the connection (and audits it): only a diagnostic here.
    if try_established(&ctx).is_err() {
        debug!(
            &ctx,
            "airlock: an established connection's record could not be filed"
        );
    }
    1
}

#[cgroup_sockopt(getsockopt)]
pub fn airlock_getopt(ctx: SockoptContext) -> i32 {
    // Always let the call complete: with our answer written into the
    // context, or untouched (the kernel's own answer) otherwise.
    let _ = try_getsockopt(&ctx);
    ALLOW
}

/// Only `Ok(ALLOW)` allows; anything else (a fault included) refuses.
/// Spelled out so the verifier sees a return value in [0, 1].
#[inline(always)]
fn verdict(r: Result<i32, Fault>) -> i32 {
    match r {
        Ok(ALLOW) => ALLOW,
        _ => REFUSE,
    }
}

// ---------------------------------------------------------------- connect

#[inline(always)]
fn is_intercepted(port: u16) -> bool {
    // SAFETY: a map lookup; the value is only tested for presence.
    unsafe { AIRLOCK_PORTS.get(port).is_some() }
}

/// Whether the daemon has a transparent listener in the network namespace
/// `netns` (a cookie): the rewrite to loopback lands on it only there.
#[inline(always)]
fn is_reached(netns: u64) -> bool {
    // SAFETY: a map lookup; the value is only tested for presence.
    unsafe { AIRLOCK_NETNS.get(netns).is_some() }
}

/// The destination port of a sock_addr call, host order.
#[inline(always)]
fn user_port(sa: *mut bpf_sock_addr) -> u16 {
    // SAFETY: `sa` is the context pointer the kernel passed in.
    let raw = unsafe { read_volatile(addr_of!((*sa).user_port)) };
    u16::from_be(raw as u16)
}

/// Records and redirects a TCP connect to an intercepted port; refuses UDP.
/// `Err` (no configuration, no room to record) refuses: a connection is
/// never let out unrecorded.
#[inline(always)]
fn try_connect(ctx: &SockAddrContext, v6: bool) -> Result<i32, Fault> {
    let sa = ctx.sock_addr;
    let port = user_port(sa);
    if !is_intercepted(port) {
        return Ok(ALLOW);
    }
    // SAFETY: the helper takes the context pointer.
    let netns = unsafe { bpf_get_netns_cookie(sa.cast()) };
    // A namespace the daemon has not reached (a container started a
    // moment ago, `unshare -n`, a daemon that is not running): refused,
    // never let through, and reported. The daemon reaches it within its
    // rescan period; the agent's retry then works.
    if !is_reached(netns) {
        report(ctx, event_kind::NETNS_UNREACHED, v6);
        return Ok(REFUSE);
    }
    // SAFETY: context reads.
    let sock_type = unsafe { read_volatile(addr_of!((*sa).type_)) };
    if sock_type == SOCK_DGRAM {
        report(ctx, event_kind::UDP_REFUSED, v6);
        return Ok(REFUSE);
    }
    if sock_type != SOCK_STREAM {
        return Ok(ALLOW);
    }
    let config = AIRLOCK_CONFIG.get(0).ok_or(Fault::Unconfigured)?;
    let listen_port = config.listen_port;
    if listen_port == 0 {
        return Err(Fault::Unconfigured);
    }

    let (addr, family, mapped) = destination(sa, v6);

    let info = OrigInfo {
        cgroup_id: agent_cgroup_id(config.agent_level),
        addr,
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        uid: bpf_get_current_uid_gid() as u32,
        port,
        family,
        _pad: 0,
        recorded_ns: boot_ns(),
    };
    // SAFETY: the helper takes the context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    AIRLOCK_COOKIE
        .insert(cookie, info, 0)
        .map_err(|_| Fault::NotRecorded)?;

    // SAFETY: writes of the destination fields the connect hooks may change.
    unsafe {
        if !v6 {
            write_volatile(addr_of_mut!((*sa).user_ip4), LOOPBACK4);
        } else if mapped {
            // ::ffff:127.0.0.1: the IPv4 listener.
            write_volatile(addr_of_mut!((*sa).user_ip6[3]), LOOPBACK4);
        } else {
            write_volatile(addr_of_mut!((*sa).user_ip6[0]), 0);
            write_volatile(addr_of_mut!((*sa).user_ip6[1]), 0);
            write_volatile(addr_of_mut!((*sa).user_ip6[2]), 0);
            write_volatile(addr_of_mut!((*sa).user_ip6[3]), LOOPBACK6_LAST);
        }
        write_volatile(
            addr_of_mut!((*sa).user_port),
            u32::from(listen_port.to_be()),
        );
    }
    Ok(ALLOW)
}

/// The destination of a sock_addr call: its 16 octets, family, and
/// whether it is IPv4-mapped. `v6` is the program's hook (connect6,
/// sendmsg6), a constant in each entry, so the hook never reads the
/// other family's fields (which its verifier refuses).
#[inline(always)]
fn destination(sa: *mut bpf_sock_addr, v6: bool) -> ([u8; 16], u16, bool) {
    if v6 {
        // SAFETY: 4-byte context reads of user_ip6[0..4].
        let words = unsafe { ip6_words!(sa, user_ip6) };
        let mapped = words[0] == 0 && words[1] == 0 && words[2] == MAPPED_PREFIX;
        let family = if mapped { AF_INET } else { AF_INET6 };
        (words_to_octets(words), family, mapped)
    } else {
        // SAFETY: context read.
        let ip = unsafe { read_volatile(addr_of!((*sa).user_ip4)) };
        (mapped_v4(ip.to_ne_bytes()), AF_INET, false)
    }
}

/// The agent cgroup of the current task: its ancestor at `level`, or its
/// own cgroup when it is not that deep (the gateway then finds no agent
/// and refuses the connection).
#[inline(always)]
fn agent_cgroup_id(level: u32) -> u64 {
    // SAFETY: helpers without pointer arguments.
    let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
    if id != 0 {
        id
    } else {
        // SAFETY: as above.
        unsafe { bpf_get_current_cgroup_id() }
    }
}

/// `CLOCK_BOOTTIME` now, in nanoseconds.
#[inline(always)]
fn boot_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Unconnected UDP (`sendto`) to an intercepted port: refused (QUIC).
#[inline(always)]
fn try_sendmsg(ctx: &SockAddrContext, v6: bool) -> Result<i32, Fault> {
    if is_intercepted(user_port(ctx.sock_addr)) {
        report(ctx, event_kind::UDP_REFUSED, v6);
        Ok(REFUSE)
    } else {
        Ok(ALLOW)
    }
}

// ---------------------------------------------------------------- events

/// Reports the connect faults (each refuses the connection) and passes
/// the result on.
#[inline(always)]
fn reported(ctx: &SockAddrContext, r: Result<i32, Fault>, v6: bool) -> Result<i32, Fault> {
    if let Err(fault) = r {
        let kind = match fault {
            Fault::Unconfigured => event_kind::UNCONFIGURED,
            Fault::NotRecorded => event_kind::NOT_RECORDED,
            Fault::NoRoom => return r,
        };
        report(ctx, kind, v6);
    }
    r
}

/// Puts a refusal of kind `kind` (`event_kind`) on the event ring for the
/// daemon's audit, if the refused task's agent cgroup has budget left in
/// this window on this CPU; otherwise, or when the ring is full, counts it
/// in the budget's `suppressed`, which the next event that gets through
/// carries. Never waits: a full ring drops the event, never the verdict.
/// Inlined at each refusal path, none of them the hot one: as a
/// BPF-to-BPF call LLVM moved the context pointer before its reads, which
/// the verifier refuses ("dereference of modified ctx ptr").
#[inline(always)]
fn report(ctx: &SockAddrContext, kind: u32, v6: bool) {
    let sa = ctx.sock_addr;
    let level = AIRLOCK_CONFIG.get(0).map_or(0, |c| c.agent_level);
    // Level 0 (no daemon configured the maps) would name the root cgroup.
    let cgroup_id = if level == 0 {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_cgroup_id() }
    } else {
        agent_cgroup_id(level)
    };
    let now = boot_ns();
    let Some(window) = budget(cgroup_id, now) else {
        return;
    };
    // SAFETY: this CPU's value in a per-CPU map, valid while the program
    // runs (an LRU eviction meanwhile reuses the memory for another key:
    // a count is then off by one, never unsafe). Programs of this kind
    // run with migration disabled, so no other CPU writes it.
    let w = unsafe { &mut *window };
    if now.wrapping_sub(w.start_ns) >= EVENT_WINDOW_NS {
        w.start_ns = now;
        w.sent = 0;
    }
    if w.sent >= EVENTS_PER_WINDOW {
        w.suppressed = w.suppressed.saturating_add(1);
        return;
    }
    let (addr, family, _) = destination(sa, v6);
    // SAFETY: a context read; the helper takes the context pointer.
    let (sock_type, netns_cookie) = unsafe {
        (
            read_volatile(addr_of!((*sa).type_)),
            bpf_get_netns_cookie(sa.cast()),
        )
    };
    let port = user_port(sa);
    let event = KernelEvent {
        kind,
        pid: (bpf_get_current_pid_tgid() >> 32) as u32,
        cgroup_id,
        netns_cookie,
        uid: bpf_get_current_uid_gid() as u32,
        suppressed: w.suppressed,
        addr,
        port,
        family,
        sock_type: sock_type as u16,
        _pad: 0,
        at_ns: now,
    };
    if AIRLOCK_EVENTS.output::<KernelEvent>(&event, 0).is_ok() {
        w.sent += 1;
        w.suppressed = 0;
        debug!(
            ctx,
            "airlock: refused (event kind {}) to port {}, cgroup {}", kind, port, cgroup_id
        );
    } else {
        w.suppressed = w.suppressed.saturating_add(1);
        debug!(
            ctx,
            "airlock: event ring full, refusal (kind {}) only counted", kind
        );
    }
}

/// This CPU's budget of `cgroup_id`, made (a fresh window from `now`)
/// when the cgroup has none yet.
#[inline(always)]
fn budget(cgroup_id: u64, now: u64) -> Option<*mut EventWindow> {
    if let Some(w) = AIRLOCK_EVRATE.get_ptr_mut(cgroup_id) {
        return Some(w);
    }
    let fresh = EventWindow {
        start_ns: now,
        sent: 0,
        suppressed: 0,
    };
    // An LRU map makes room by forgetting the least recently used cgroup.
    AIRLOCK_EVRATE.insert(cgroup_id, fresh, 0).ok()?;
    AIRLOCK_EVRATE.get_ptr_mut(cgroup_id)
}

// ---------------------------------------------------------------- sock_ops

/// On an agent's connection being established, moves its record from the
/// cookie map to the 4-tuple map, where the gateway's getsockopt finds it.
/// Other callbacks, and connections without a record (not redirected),
/// are left alone.
#[inline(always)]
fn try_established(ctx: &SockOpsContext) -> Result<(), Fault> {
    let ops = ctx.ops;
    // SAFETY: context reads.
    let op = unsafe { read_volatile(addr_of!((*ops).op)) };
    if op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return Ok(());
    }
    // SAFETY: the helper takes the context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(ops.cast()) };
    // SAFETY: the value is copied out at once.
    let Some(mut info) = (unsafe { AIRLOCK_COOKIE.get(cookie) }).copied() else {
        return Ok(());
    };
    // The age the gateway checks starts here: from now on the record can
    // be found by a 4-tuple, which later connections may reuse.
    info.recorded_ns = boot_ns();
    // SAFETY: context reads, 4 bytes each, all of them before any branch
    // (LLVM otherwise merges loads at different offsets into one through
    // a computed pointer, which the verifier refuses).
    let (family, local4, remote4, local6, remote6, local_port, remote_port) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)),
            read_volatile(addr_of!((*ops).local_ip4)),
            read_volatile(addr_of!((*ops).remote_ip4)),
            ip6_words!(ops, local_ip6),
            ip6_words!(ops, remote_ip6),
            read_volatile(addr_of!((*ops).local_port)),
            read_volatile(addr_of!((*ops).remote_port)),
        )
    };
    let (client_addr, server_addr) = if family == u32::from(AF_INET6) {
        (words_to_octets(local6), words_to_octets(remote6))
    } else {
        (
            mapped_v4(local4.to_ne_bytes()),
            mapped_v4(remote4.to_ne_bytes()),
        )
    };
    let key = TupleKey {
        client_addr,
        server_addr,
        client_port: local_port as u16,
        server_port: u32::from_be(remote_port) as u16,
        _pad: 0,
        // SAFETY: the helper takes the context pointer.
        netns_cookie: unsafe { bpf_get_netns_cookie(ops.cast()) },
    };
    let filed = AIRLOCK_TUPLE.insert(key, info, 0);
    // Gone either way: filed under its 4-tuple, or lost (the LRU would
    // evict it later).
    let _ = AIRLOCK_COOKIE.remove(cookie);
    filed.map_err(|_| Fault::NotRecorded)
}

// ---------------------------------------------------------------- getsockopt

/// `struct sockaddr_in`.
#[repr(C)]
struct SockaddrIn {
    family: u16,
    port_be: u16,
    addr: [u8; 4],
    zero: [u8; 8],
}

/// `struct sockaddr_in6`.
#[repr(C)]
struct SockaddrIn6 {
    family: u16,
    port_be: u16,
    flowinfo: u32,
    addr: [u8; 16],
    scope_id: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    OrigDst4,
    OrigDst6,
    Info,
}

/// Answers the gateway's getsockopt for an accepted, redirected connection
/// from the 4-tuple map. Anything else (another option, a socket without a
/// record, a family that does not match the question) is left as the
/// kernel answered it.
#[inline(always)]
fn try_getsockopt(ctx: &SockoptContext) -> Result<(), Fault> {
    let so: *mut bpf_sockopt = ctx.sockopt;
    // SAFETY: context reads.
    let (level, optname) = unsafe {
        (
            read_volatile(addr_of!((*so).level)),
            read_volatile(addr_of!((*so).optname)),
        )
    };
    let ask = match (level, optname) {
        (SOL_IP, SO_ORIGINAL_DST) => Ask::OrigDst4,
        (SOL_IPV6, IP6T_SO_ORIGINAL_DST) => Ask::OrigDst6,
        (SOL_IP, SO_AIRLOCK_ORIG_INFO) => Ask::Info,
        _ => return Ok(()),
    };
    // SAFETY: context read of the socket pointer.
    let sk: *mut bpf_sock = unsafe { read_volatile(addr_of!((*so).__bindgen_anon_1.sk)) };
    if sk.is_null() {
        return Ok(());
    }
    // The accepted socket's namespace: the listener's, the agent's too.
    // SAFETY: the helper takes the context pointer.
    let netns = unsafe { bpf_get_netns_cookie(so.cast()) };
    let key = accepted_key(sk, netns);
    // SAFETY: a reference into the map's value, read (never copied: the
    // stack is 512 bytes) before the entry is removed below.
    let Some(info) = (unsafe { AIRLOCK_TUPLE.get(key) }) else {
        return Ok(());
    };
    // SAFETY: context reads of the option buffer bounds.
    let (optval, optval_end) = unsafe {
        (
            read_volatile(addr_of!((*so).__bindgen_anon_2.optval)) as *mut u8,
            read_volatile(addr_of!((*so).__bindgen_anon_3.optval_end)) as *mut u8,
        )
    };
    let len = match ask {
        Ask::OrigDst4 => {
            if info.family != AF_INET {
                return Ok(());
            }
            let v = SockaddrIn {
                family: AF_INET,
                port_be: info.port.to_be(),
                addr: [info.addr[12], info.addr[13], info.addr[14], info.addr[15]],
                zero: [0; 8],
            };
            write_opt(optval, optval_end, &v)?
        }
        Ask::OrigDst6 => {
            if info.family != AF_INET6 {
                return Ok(());
            }
            let v = SockaddrIn6 {
                family: AF_INET6,
                port_be: info.port.to_be(),
                flowinfo: 0,
                addr: info.addr,
                scope_id: 0,
            };
            write_opt(optval, optval_end, &v)?
        }
        Ask::Info => write_opt(optval, optval_end, info)?,
    };
    // SAFETY: context writes, one field at a time (never merged).
    unsafe {
        write_volatile(addr_of_mut!((*so).optlen), len as i32);
        write_volatile(addr_of_mut!((*so).retval), 0);
    }
    if ask == Ask::Info {
        let _ = AIRLOCK_TUPLE.remove(key);
    }
    Ok(())
}

/// The 4-tuple of an accepted socket in namespace `netns_cookie`, as the
/// agent's side recorded it.
#[inline(always)]
fn accepted_key(sk: *mut bpf_sock, netns_cookie: u64) -> TupleKey {
    // SAFETY: reads of the kernel's `bpf_sock` fields, 4 bytes each
    // (dst_port 2), all before any branch (see `try_established`).
    let (family, src4, dst4, src6, dst6, src_port, dst_port) = unsafe {
        (
            read_volatile(addr_of!((*sk).family)),
            read_volatile(addr_of!((*sk).src_ip4)),
            read_volatile(addr_of!((*sk).dst_ip4)),
            ip6_words!(sk, src_ip6),
            ip6_words!(sk, dst_ip6),
            read_volatile(addr_of!((*sk).src_port)),
            read_volatile(addr_of!((*sk).dst_port)),
        )
    };
    let (server_addr, client_addr) = if family == u32::from(AF_INET6) {
        (words_to_octets(src6), words_to_octets(dst6))
    } else {
        (mapped_v4(src4.to_ne_bytes()), mapped_v4(dst4.to_ne_bytes()))
    };
    TupleKey {
        client_addr,
        server_addr,
        client_port: u16::from_be(dst_port),
        server_port: src_port as u16,
        _pad: 0,
        netns_cookie,
    }
}

/// Copies `value` into the option buffer if it fits; its length if so.
#[inline(always)]
fn write_opt<T>(optval: *mut u8, optval_end: *mut u8, value: &T) -> Result<usize, Fault> {
    let len = size_of::<T>();
    // The verifier needs this very comparison (pointer + constant against
    // the end pointer) before any write through `optval`.
    if optval.is_null() || optval.wrapping_add(len) > optval_end {
        return Err(Fault::NoRoom);
    }
    let src = (value as *const T).cast::<u8>();
    for i in 0..len {
        // SAFETY: `optval..optval + len` is inside the buffer (checked
        // above); `src` points at `len` bytes of `value`.
        unsafe { write_volatile(optval.add(i), *src.add(i)) };
    }
    Ok(len)
}

#[inline(always)]
fn words_to_octets(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
