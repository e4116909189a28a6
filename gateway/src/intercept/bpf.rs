//! Loading, attaching, pinning and adopting the eBPF programs (aya).
//!
//! Layout under the pin directory (default `/sys/fs/bpf/airlock`):
//! one pin per map (`AIRLOCK_CONFIG`, `AIRLOCK_PORTS`, `AIRLOCK_COOKIE`,
//! `AIRLOCK_TUPLE`) and one per agent-side link (`link_airlock_conn4`, ...).
//! Pinned links keep the programs attached to the agents' parent cgroup
//! when the daemon exits or crashes, so agents' connections to intercepted
//! ports then fail (nothing listens on the transparent port) instead of
//! going out directly: fail closed. A daemon that finds a complete pinned
//! set adopts it (no second attachment); only [`release`] removes it.
//!
//! The `cgroup/getsockopt` link on the gateway's own cgroup is not pinned
//! (aya 0.14 cannot convert it to an `FdLink`); it is only needed while the
//! gateway runs and is attached afresh at each start.
//!
//! Adopted maps keep what the programs recorded while no daemon ran, or
//! while the last one was stopped with connections in its backlog that it
//! never accepted. Such a record names an agent and is filed under a
//! 4-tuple that any later connection may reuse, so [`load`] flushes every
//! record older than the new listener before the daemon serves (see
//! [`flush_stale`]). A pinned set whose map layout is not this build's
//! (an upgrade) is replaced rather than adopted: its programs would keep
//! writing records of the old layout.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapInfo};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSockAddr, CgroupSockopt, SockOps, loaded_programs};
use aya::{Ebpf, EbpfLoader};
use gateway_common::{
    AGENT_PROGRAMS, Config, MAP_BY_COOKIE, MAP_BY_TUPLE, MAP_CONFIG, MAP_NETNS, MAP_PORTS, MAPS,
    OrigInfo, PROG_GETSOCKOPT, PROG_SOCK_OPS, TupleKey,
};

/// The kernel's `bpf_attach_type` values this module attaches with.
pub mod attach_type {
    pub const SOCK_OPS: u32 = 3;
    pub const INET4_CONNECT: u32 = 10;
    pub const INET6_CONNECT: u32 = 11;
    pub const UDP4_SENDMSG: u32 = 14;
    pub const UDP6_SENDMSG: u32 = 15;
    pub const GETSOCKOPT: u32 = 21;
}

/// The attach points on the agents' parent cgroup.
pub const AGENT_ATTACH_TYPES: [(u32, &str); 5] = [
    (attach_type::INET4_CONNECT, "connect4"),
    (attach_type::INET6_CONNECT, "connect6"),
    (attach_type::UDP4_SENDMSG, "sendmsg4"),
    (attach_type::UDP6_SENDMSG, "sendmsg6"),
    (attach_type::SOCK_OPS, "sock_ops"),
];

/// The loaded programs. Dropping this detaches only the getsockopt link;
/// the pinned agent-side links stay.
pub struct Loaded {
    _ebpf: Ebpf,
    _links: Vec<PinnedLink>,
    /// Whether the agent-side programs were adopted from pins (a restart)
    /// rather than attached now.
    pub adopted: bool,
    /// Records an earlier daemon left in the maps, removed before serving.
    pub flushed: usize,
    /// The reached namespaces (`AIRLOCK_NETNS`), taken by the daemon's
    /// namespace follower (`super::netns_follow`).
    pub netns: Option<NetnsMap>,
    /// The programs' refusals and log, for [`super::events::run`]; `None`
    /// when they cannot be read (said in the log), which stops nothing.
    /// Boxed: the ring readers are large, and held only until start-up
    /// hands them on.
    pub events: Option<Box<super::events::KernelEvents>>,
    /// Handles on the maps for `/metrics`' occupancy gauges; `None` when
    /// they cannot be opened (said in the log), which stops nothing.
    pub occupancy: Option<super::occupancy::MapOccupancy>,
}

/// `AIRLOCK_NETNS`: the network namespaces (by cookie) where a transparent
/// listener is open. Connects from any other are refused by connect4/6.
pub struct NetnsMap(BpfHashMap<MapData, u64, u8>);

impl NetnsMap {
    /// Marks namespace `cookie` as served.
    pub fn insert(&mut self, cookie: u64) -> Result<(), BpfError> {
        self.0.insert(cookie, 1, 0).map_err(map_err(MAP_NETNS))
    }

    /// Unmarks it (its listeners are closed or about to be).
    pub fn remove(&mut self, cookie: u64) -> Result<(), BpfError> {
        match self.0.remove(&cookie) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.kind() == io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(map_err(MAP_NETNS)(e)),
        }
    }
}

/// Leaves only the host's namespace (`host_cookie`) in `AIRLOCK_NETNS`:
/// the pinned map outlives a killed daemon, and the namespaces it served
/// have no listener until this one reaches them again. The host's is
/// written first, so host agents are never refused meanwhile.
fn reset_netns(ebpf: &mut Ebpf, host_cookie: u64) -> Result<(), BpfError> {
    let mut map: BpfHashMap<_, u64, u8> =
        BpfHashMap::try_from(ebpf.map_mut(MAP_NETNS).ok_or(BpfError::NoMap(MAP_NETNS))?)
            .map_err(map_err(MAP_NETNS))?;
    map.insert(host_cookie, 1, 0).map_err(map_err(MAP_NETNS))?;
    let stale: Vec<u64> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|c| *c != host_cookie)
        .collect();
    for c in stale {
        map.remove(&c).map_err(map_err(MAP_NETNS))?;
    }
    Ok(())
}

fn take_netns(ebpf: &mut Ebpf) -> Result<NetnsMap, BpfError> {
    let map = ebpf.take_map(MAP_NETNS).ok_or(BpfError::NoMap(MAP_NETNS))?;
    Ok(NetnsMap(
        BpfHashMap::try_from(map).map_err(map_err(MAP_NETNS))?,
    ))
}

/// Where the link of program `prog` is pinned.
pub fn link_pin(pin_dir: &Path, prog: &str) -> PathBuf {
    pin_dir.join(format!("link_{prog}"))
}

/// Why the programs could not be loaded, adopted or attached: each says
/// which object and which step, and carries aya's own error (for a program
/// the kernel refused, the verifier's log), which the daemon reports as
/// the reason eBPF did not start.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("cannot remove the incomplete pinned set: {0}")]
    ReleaseIncomplete(#[source] io::Error),
    #[error("cannot create the pin directory: {0}")]
    CreatePinDir(#[source] io::Error),
    #[error("cannot open {}: {source}", path.display())]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error("cannot load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program {0}")]
    NoProgram(&'static str),
    #[error("no map {0}")]
    NoMap(&'static str),
    #[error("{name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    /// The pinned map `name` has another build's key or value size.
    #[error(
        "{name} has {found_key}-byte keys and {found_value}-byte values, this build {key} and {value}"
    )]
    Layout {
        name: &'static str,
        found_key: usize,
        found_value: usize,
        key: usize,
        value: usize,
    },
    /// The object's program `name` is not of the kind expected.
    #[error("{name}: {source}")]
    ProgramKind {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("the kernel refused {name}: {source}")]
    Refused {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("cannot attach {name}: {source}")]
    Attach {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("{name}: {source}")]
    Link {
        name: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("cannot adopt {}: {source}", path.display())]
    Adopt {
        path: PathBuf,
        source: aya::programs::links::LinkError,
    },
    #[error("cannot pin {}: {source}", path.display())]
    Pin {
        path: PathBuf,
        source: aya::pin::PinError,
    },
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> BpfError {
    move |source| BpfError::Map { name, source }
}

/// Loads the object with its maps pinned under `pin_dir`, writes the
/// configuration, flushes the connection records made before
/// `not_before_ns` (`CLOCK_BOOTTIME`, taken before the transparent
/// listener was bound), and adopts or attaches the agent-side programs on
/// `parent` and the getsockopt program on `gateway`. `host_netns` is the
/// cookie of the daemon's own network namespace, the one served first.
#[allow(clippy::too_many_arguments)]
pub fn load(
    object: &[u8],
    pin_dir: &Path,
    parent: &Path,
    gateway: &Path,
    config: Config,
    ports: &[u16],
    not_before_ns: u64,
    host_netns: u64,
) -> Result<Loaded, BpfError> {
    let links_present = AGENT_PROGRAMS
        .iter()
        .filter(|p| link_pin(pin_dir, p).exists())
        .count();
    let maps_present = MAPS.iter().filter(|m| pin_dir.join(m).exists()).count();
    let complete = links_present == AGENT_PROGRAMS.len() && maps_present == MAPS.len();
    let layout = if complete {
        pinned_layout(pin_dir)
    } else {
        Ok(())
    };
    let adopt = complete && layout.is_ok();
    if let Err(why) = &layout {
        tracing::warn!(pin_dir = %pin_dir.display(), %why,
            "the pinned eBPF objects are of another Airlock version: replacing them");
    }
    if !adopt && links_present + maps_present > 0 {
        if layout.is_ok() {
            tracing::warn!(
                pin_dir = %pin_dir.display(),
                links_present,
                maps_present,
                "an incomplete set of pinned eBPF objects was found: replacing it"
            );
        }
        release(pin_dir).map_err(BpfError::ReleaseIncomplete)?;
        fs::create_dir_all(pin_dir).map_err(BpfError::CreatePinDir)?;
    }

    let log_level = super::events::ebpf_log_level();
    let mut loader = EbpfLoader::new();
    for m in MAPS {
        loader.map_pin_path(m, pin_dir.join(m));
    }
    loader.override_global(aya_log::LEVEL, &log_level, false);
    let mut ebpf = loader.load(object).map_err(BpfError::Load)?;
    configure(&mut ebpf, config, ports)?;
    reset_netns(&mut ebpf, host_netns)?;
    let flushed = flush_stale(&mut ebpf, not_before_ns)?;
    if flushed > 0 {
        tracing::info!(
            flushed,
            "removed connection records an earlier daemon left unaccepted"
        );
    }

    let links = if adopt {
        let mut links = Vec::new();
        for prog in AGENT_PROGRAMS {
            let path = link_pin(pin_dir, prog);
            let link =
                PinnedLink::from_pin(&path).map_err(|source| BpfError::Adopt { path, source })?;
            links.push(link);
        }
        links
    } else {
        match attach_agent_programs(&mut ebpf, pin_dir, parent) {
            Ok(links) => links,
            Err(e) => {
                // Nothing half-attached stays behind.
                let _ = release(pin_dir);
                return Err(e);
            }
        }
    };

    let gw_cgroup = open_cgroup(gateway)?;
    let name = PROG_GETSOCKOPT;
    let prog: &mut CgroupSockopt = ebpf
        .program_mut(name)
        .ok_or(BpfError::NoProgram(name))?
        .try_into()
        .map_err(|source| BpfError::ProgramKind { name, source })?;
    prog.load()
        .map_err(|source| BpfError::Refused { name, source })?;
    prog.attach(&gw_cgroup, CgroupAttachMode::Single)
        .map_err(|source| BpfError::Attach { name, source })?;
    let netns = Some(take_netns(&mut ebpf)?);
    let events = super::events::KernelEvents::take(&mut ebpf)
        .map_err(|e| tracing::warn!(error = %e, "kernel refusals cannot be audited"))
        .ok()
        .map(Box::new);
    let occupancy = super::occupancy::MapOccupancy::open(pin_dir)
        .map_err(|(map, error)| {
            tracing::warn!(map, %error, "eBPF map occupancy will be missing from /metrics")
        })
        .ok();
    Ok(Loaded {
        _ebpf: ebpf,
        _links: links,
        adopted: adopt,
        flushed,
        netns,
        events,
        occupancy,
    })
}

/// `Err` (what differs) unless the pinned record maps have this build's
/// key and value sizes.
fn pinned_layout(pin_dir: &Path) -> Result<(), BpfError> {
    let expect = [
        (MAP_BY_COOKIE, size_of::<u64>(), size_of::<OrigInfo>()),
        (MAP_BY_TUPLE, size_of::<TupleKey>(), size_of::<OrigInfo>()),
    ];
    for (name, key, value) in expect {
        let info = MapInfo::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
        let (found_key, found_value) = (info.key_size() as usize, info.value_size() as usize);
        if (found_key, found_value) != (key, value) {
            return Err(BpfError::Layout {
                name,
                found_key,
                found_value,
                key,
                value,
            });
        }
    }
    Ok(())
}

/// Removes from the cookie and 4-tuple maps every record made before
/// `not_before_ns`; returns how many. Such a record belongs to a
/// connection to an earlier listener (every connection to this one was
/// made after it was bound), and left in the tuple map it would name an
/// agent for whichever later connection reuses its 4-tuple.
fn flush_stale(ebpf: &mut Ebpf, not_before_ns: u64) -> Result<usize, BpfError> {
    Ok(flush_map::<u64>(ebpf, MAP_BY_COOKIE, not_before_ns)?
        + flush_map::<TupleKey>(ebpf, MAP_BY_TUPLE, not_before_ns)?)
}

fn flush_map<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    not_before_ns: u64,
) -> Result<usize, BpfError> {
    let mut map: BpfHashMap<&mut MapData, K, OrigInfo> =
        BpfHashMap::try_from(ebpf.map_mut(name).ok_or(BpfError::NoMap(name))?)
            .map_err(map_err(name))?;
    let stale: Vec<K> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, info)| is_stale(info, not_before_ns))
        .map(|(k, _)| k)
        .collect();
    let mut removed = 0;
    for key in &stale {
        match map.remove(key) {
            Ok(()) => removed += 1,
            // Taken meanwhile (read by getsockopt, evicted): gone either way.
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(map_err(name)(e)),
        }
    }
    Ok(removed)
}

/// Whether `info` was recorded before `not_before_ns`.
fn is_stale(info: &OrigInfo, not_before_ns: u64) -> bool {
    info.recorded_ns < not_before_ns
}

/// Writes the listener port, the agent level and the intercepted ports
/// into the (pinned, shared) maps.
fn configure(ebpf: &mut Ebpf, config: Config, ports: &[u16]) -> Result<(), BpfError> {
    let mut cfg: Array<_, Config> = Array::try_from(
        ebpf.map_mut(MAP_CONFIG)
            .ok_or(BpfError::NoMap(MAP_CONFIG))?,
    )
    .map_err(map_err(MAP_CONFIG))?;
    cfg.set(0, config, 0).map_err(map_err(MAP_CONFIG))?;
    let mut map: BpfHashMap<_, u16, u8> =
        BpfHashMap::try_from(ebpf.map_mut(MAP_PORTS).ok_or(BpfError::NoMap(MAP_PORTS))?)
            .map_err(map_err(MAP_PORTS))?;
    let stale: Vec<u16> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|p| !ports.contains(p))
        .collect();
    for p in stale {
        map.remove(&p).map_err(map_err(MAP_PORTS))?;
    }
    for &p in ports {
        map.insert(p, 1, 0).map_err(map_err(MAP_PORTS))?;
    }
    Ok(())
}

fn attach_agent_programs(
    ebpf: &mut Ebpf,
    pin_dir: &Path,
    parent: &Path,
) -> Result<Vec<PinnedLink>, BpfError> {
    let cgroup = open_cgroup(parent)?;
    let mut links = Vec::new();
    for name in AGENT_PROGRAMS {
        let program = ebpf.program_mut(name).ok_or(BpfError::NoProgram(name))?;
        let kind = |source| BpfError::ProgramKind { name, source };
        let refused = |source| BpfError::Refused { name, source };
        let link = |source| BpfError::Link { name, source };
        let link: FdLink = if name == PROG_SOCK_OPS {
            let prog: &mut SockOps = program.try_into().map_err(kind)?;
            prog.load().map_err(refused)?;
            let id = prog
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(refused)?;
            prog.take_link(id)
                .map_err(refused)?
                .try_into()
                .map_err(link)?
        } else {
            let prog: &mut CgroupSockAddr = program.try_into().map_err(kind)?;
            prog.load().map_err(refused)?;
            let id = prog
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(refused)?;
            prog.take_link(id)
                .map_err(refused)?
                .try_into()
                .map_err(link)?
        };
        let path = link_pin(pin_dir, name);
        let pinned = link
            .pin(&path)
            .map_err(|source| BpfError::Pin { path, source })?;
        links.push(pinned);
    }
    Ok(links)
}

fn open_cgroup(path: &Path) -> Result<File, BpfError> {
    File::open(path).map_err(|source| BpfError::OpenCgroup {
        path: path.to_owned(),
        source,
    })
}

/// Removes every pinned link and map under `pin_dir`, and the directory:
/// the agent-side programs detach and interception ends. Returns the
/// paths removed. Missing pins are not an error.
pub fn release(pin_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let paths = AGENT_PROGRAMS
        .iter()
        .map(|p| link_pin(pin_dir, p))
        .chain(MAPS.iter().map(|m| pin_dir.join(m)));
    for path in paths {
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    match fs::remove_dir(pin_dir) {
        Ok(()) => removed.push(pin_dir.to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", pin_dir.display()),
            ));
        }
    }
    Ok(removed)
}

/// The ids of the programs attached to the cgroup at `dir` for
/// `attach_type` (the kernel's `BPF_PROG_QUERY`, what `bpftool cgroup
/// show` prints).
#[allow(unsafe_code)]
pub fn attached_program_ids(dir: &Path, attach_type: u32) -> io::Result<Vec<u32>> {
    #[repr(C)]
    #[derive(Default)]
    struct QueryAttr {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
        prog_attach_flags: u64,
        link_ids: u64,
        link_attach_flags: u64,
        revision: u64,
    }
    const BPF_PROG_QUERY: nix::libc::c_long = 16;
    let cgroup = File::open(dir)?;
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..QueryAttr::default()
    };
    // SAFETY: `attr` is a valid, fully initialised `bpf_attr` prefix for
    // BPF_PROG_QUERY (64 bytes, through `revision`); `prog_ids` points at
    // `prog_cnt` writable u32s that outlive the call; `cgroup` stays open.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            size_of::<QueryAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (attr.prog_cnt as usize).min(ids.len());
    Ok(ids[..n].to_vec())
}

/// The kernel's name of each program id (15 bytes at most).
pub fn program_names(ids: &[u32]) -> Vec<String> {
    let mut names: Vec<(u32, String)> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_owned()))
        .collect();
    names.sort_by_key(|(id, _)| ids.iter().position(|i| i == id));
    names.into_iter().map(|(_, n)| n).collect()
}

/// Every program attached to the agents' parent cgroup, as
/// `(attach point, program name)`: one of each of Airlock's when all is well.
pub fn list_agent_side(parent: &Path) -> io::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for (ty, label) in AGENT_ATTACH_TYPES {
        for name in program_names(&attached_program_ids(parent, ty)?) {
            out.push((label, name));
        }
    }
    Ok(out)
}
