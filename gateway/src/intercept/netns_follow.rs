//! Which agent network namespaces the daemon serves, kept current.
//!
//! A namespace is an agent's when a process of an agent cgroup (any cgroup
//! below the agents' parent, containers' deeper ones included) is in it.
//! The follower scans that tree (each `cgroup.procs`, then `stat` of each
//! `/proc/PID/ns/net`), reaches the namespaces it has not reached
//! ([`super::netns::open_in`]), marks them in `AIRLOCK_NETNS` and hands
//! their listeners to the daemon to serve. It scans at start, every
//! [`RESCAN`], and at once (then a few times in quick succession:
//! [`FAST_RESCANS`]) when inotify reports a new cgroup directory or a
//! `cgroup.events` change (a cgroup becoming populated), so a new container
//! is reached within milliseconds of its first process. A process that
//! joins a populated cgroup and then changes namespace (`unshare -n`)
//! makes no event: the periodic scan finds it.
//!
//! A namespace no agent process is in any more, in two complete scans in
//! a row (one could miss a process moving between cgroups mid-scan), is
//! released: its cookie leaves the map and its listeners close, so the
//! gateway does not keep a dead container's namespace alive. A scan that
//! stopped at its bounds ([`MAX_DIRS`], [`MAX_PIDS`]) releases nothing.
//!
//! What one agent can make the daemon do is bounded: at most
//! [`MAX_NETNS_PER_AGENT`] of its namespaces are served (so one agent
//! making namespaces in a loop cannot use up [`MAX_NETNS`] for the
//! others), and a namespace that could not be reached is retried after a
//! growing delay ([`RETRY_FIRST`] doubling to [`RETRY_MAX`]), each retry
//! waking the loop, not on every scan.
//!
//! In the nftables mode nothing can be served (a REDIRECT in the host's
//! namespace never sees another namespace's traffic): the follower then
//! only warns, once per namespace, that its agents are not intercepted.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_common::MAX_NETNS;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::bpf::NetnsMap;
use super::diag::NetnsDiag;
use super::netns::{self, NetnsError, NetnsId};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How often the tree is scanned without an event.
pub const RESCAN: Duration = Duration::from_secs(1);
/// The scans after an inotify event, each this long after the one before:
/// a process often joins its cgroup a moment before it enters its
/// namespace (`ip netns exec`, runtimes that `setns` after the move).
pub const FAST_RESCANS: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
];
/// How long a namespace stays served with no agent process in it: one
/// process ending and the next starting (a shell running one client after
/// another in `ip netns exec`, a container between two execs) must not
/// find it released, its first connect refused.
pub const RELEASE_GRACE: Duration = Duration::from_secs(5);
/// Bounds of one scan: cgroup directories, and processes looked at.
pub const MAX_DIRS: usize = 16_384;
pub const MAX_PIDS: usize = 65_536;
/// Namespaces served at once for one agent (its cgroup and all below).
pub const MAX_NETNS_PER_AGENT: usize = 64;
/// The first retry of a namespace that could not be reached, and the
/// longest wait between retries. The first is short because the usual
/// failure is transient: Docker brings a container's loopback up in a
/// prestart hook, after its first process joined the cgroup, and that
/// process's first connect comes a few milliseconds later.
pub const RETRY_FIRST: Duration = Duration::from_millis(20);
pub const RETRY_MAX: Duration = Duration::from_secs(8);

/// A namespace's listeners, handed to the daemon to accept on until
/// `stop` fires (the namespace released, or the daemon stopping).
pub struct Served {
    pub netns: NetnsId,
    pub listeners: Vec<tokio::net::TcpListener>,
    pub diag: Arc<NetnsDiag>,
    pub stop: Shutdown,
}

/// A namespace being served.
struct Reached {
    cookie: u64,
    /// The agent cgroup (the parent's child) it was found under.
    agent: PathBuf,
    /// Dropped on release: the namespace's accept loops end.
    _stop: ShutdownTrigger,
    /// Complete scans in a row that did not find it.
    missed: u8,
    /// Since when no scan has found an agent process in it.
    empty_since: Option<Instant>,
}

/// A namespace a process of the agents' tree was found in.
#[derive(Debug, Clone)]
struct Found {
    pid: u32,
    cgroup: PathBuf,
    /// The agent-level cgroup `cgroup` is in or below.
    agent: PathBuf,
}

/// A namespace that could not be reached: warned about once per reason.
struct Failed {
    why: String,
    retry_at: Instant,
    backoff: Duration,
}

/// The outcome of one scan of the agents' tree.
#[derive(Debug, Default)]
struct Scan {
    found: HashMap<NetnsId, Found>,
    /// Every directory was read within the bounds.
    complete: bool,
}

/// Keeps the served namespaces current; see the module docs.
pub struct Follower {
    parent: PathBuf,
    port: u16,
    host: NetnsId,
    /// `None` in the nftables mode: warn, serve nothing.
    map: Option<NetnsMap>,
    reached: HashMap<NetnsId, Reached>,
    /// Namespaces that could not be reached (loopback brought up later,
    /// say, makes the next retry work).
    failed: HashMap<NetnsId, Failed>,
    served: Arc<AtomicUsize>,
}

impl Follower {
    /// For the agents' parent cgroup at `parent`, listeners on `port`,
    /// served namespaces marked in `map` (`None`: the nftables mode).
    pub fn new(parent: PathBuf, port: u16, map: Option<NetnsMap>) -> io::Result<Follower> {
        Ok(Follower {
            parent,
            port,
            host: NetnsId::own()?,
            map,
            reached: HashMap::new(),
            failed: HashMap::new(),
            served: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many agent namespaces are served now.
    pub fn served(&self) -> Arc<AtomicUsize> {
        self.served.clone()
    }

    /// Follows the tree until shutdown, handing each reached namespace to
    /// `serve`; then releases them all. `wake` (the kernel's report of a
    /// connect from a namespace not reached yet) starts a fast rescan, as
    /// a cgroup event does: a process that unshared a namespace in an
    /// already populated cgroup makes no cgroup event.
    pub async fn run(
        mut self,
        serve: impl Fn(Served) + Send,
        wake: Arc<tokio::sync::Notify>,
        shutdown: Shutdown,
    ) {
        let mut watch = match Watch::new() {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                tracing::warn!(error = %e, period_ms = RESCAN.as_millis(),
                    "cannot watch the agents' cgroups (inotify): new network namespaces are found by the periodic scan only");
                None
            }
        };
        let mut fast = FAST_RESCANS.len();
        loop {
            self.rescan(&serve, watch.clone()).await;
            let wait = FAST_RESCANS.get(fast).copied().unwrap_or(RESCAN);
            // A namespace due for a retry sooner wakes the loop for it.
            let now = Instant::now();
            let wait = self
                .failed
                .values()
                .map(|f| f.retry_at.saturating_duration_since(now))
                .fold(wait, Duration::min);
            fast = fast.saturating_add(1).min(FAST_RESCANS.len());
            let event = async {
                match &watch {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => fast = 0,
                r = event => match r {
                    Ok(()) => fast = 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "the cgroup watch failed: periodic scans only");
                        watch = None;
                    }
                },
                () = shutdown.wait() => break,
            }
        }
        for (id, r) in std::mem::take(&mut self.reached) {
            self.release(id, r);
        }
    }

    async fn rescan(&mut self, serve: &impl Fn(Served), watch: Option<Arc<Watch>>) {
        let (parent, host) = (self.parent.clone(), self.host);
        let scan = tokio::task::spawn_blocking(move || scan(&parent, host, watch.as_deref()))
            .await
            .unwrap_or_default();
        self.failed.retain(|id, _| scan.found.contains_key(id));
        let now = Instant::now();
        for (id, found) in &scan.found {
            if let Some(r) = self.reached.get_mut(id) {
                r.missed = 0;
                r.empty_since = None;
                continue;
            }
            if self.failed.get(id).is_some_and(|f| f.retry_at > now) {
                continue;
            }
            self.reach(*id, found.clone(), serve).await;
        }
        if !scan.complete {
            return;
        }
        let gone: Vec<NetnsId> = self
            .reached
            .iter_mut()
            .filter(|(id, _)| !scan.found.contains_key(id))
            .filter_map(|(id, r)| {
                r.missed = r.missed.saturating_add(1);
                let since = *r.empty_since.get_or_insert(now);
                (r.missed >= 2 && now.saturating_duration_since(since) >= RELEASE_GRACE)
                    .then_some(*id)
            })
            .collect();
        for id in gone {
            if let Some(r) = self.reached.remove(&id) {
                self.release(id, r);
            }
        }
    }

    /// Opens the listeners in namespace `id` (where `found.pid` is) and
    /// serves them; a failure is warned about once and retried next scan.
    async fn reach(&mut self, id: NetnsId, found: Found, serve: &impl Fn(Served)) {
        let found_at = Instant::now();
        if self.map.is_none() {
            return self.failed_once(
                id,
                &found,
                "its agents are NOT intercepted: the nftables fallback redirects in the host's \
                 network namespace only, so their connections are not redirected (run the eBPF \
                 mode, --transparent ebpf, to intercept containers)",
            );
        }
        // The host's own counts against the map's capacity.
        if self.reached.len() + 1 >= MAX_NETNS as usize {
            let why = format!(
                "the gateway already serves {} network namespaces, its limit: this one's agents' \
                 connections are refused",
                self.reached.len()
            );
            return self.failed_once(id, &found, &why);
        }
        let of_agent = self
            .reached
            .values()
            .filter(|r| r.agent == found.agent)
            .count();
        if of_agent >= MAX_NETNS_PER_AGENT {
            let why = format!(
                "the gateway already serves {of_agent} network namespaces of agent cgroup {}, \
                 the limit for one agent: this one's connections are refused",
                found.agent.display()
            );
            return self.failed_once(id, &found, &why);
        }
        let (pid, port) = (found.pid, self.port);
        let opened = tokio::task::spawn_blocking(move || netns::open_in(pid, id, port))
            .await
            .unwrap_or(Err(NetnsError::Panicked));
        let opened = match opened {
            Ok(o) => o,
            // Gone before it could be entered: nothing to serve.
            Err(NetnsError::Open { .. } | NetnsError::Moved { .. }) => return,
            Err(e) => return self.failed_once(id, &found, &e.to_string()),
        };
        let mut listeners = Vec::new();
        for l in opened.listeners {
            match l
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(l))
            {
                Ok(l) => listeners.push(l),
                Err(e) => return self.failed_once(id, &found, &e.to_string()),
            }
        }
        let (trigger, stop) = shutdown::channel();
        serve(Served {
            netns: id,
            listeners,
            diag: Arc::new(opened.diag),
            stop,
        });
        let marked = match self.map.as_mut() {
            Some(map) => map.insert(opened.cookie),
            None => Ok(()),
        };
        if let Err(e) = marked {
            return self.failed_once(id, &found, &e.to_string());
        }
        self.reached.insert(
            id,
            Reached {
                cookie: opened.cookie,
                agent: found.agent.clone(),
                _stop: trigger,
                missed: 0,
                empty_since: None,
            },
        );
        self.failed.remove(&id);
        let served = self.reached.len();
        self.served.store(served, Ordering::Relaxed);
        tracing::info!(
            netns = %id,
            ip_netns = netns::ip_netns_name(id),
            pid,
            cgroup = %found.cgroup.display(),
            open_us = opened.took.as_micros() as u64,
            found_to_open_us = found_at.elapsed().as_micros() as u64,
            served,
            "serving agents in network namespace"
        );
    }

    /// Records that `id` could not be reached and when to try again;
    /// warns unless this is the reason already warned about.
    fn failed_once(&mut self, id: NetnsId, found: &Found, why: &str) {
        let backoff = match self.failed.get(&id) {
            Some(f) => (f.backoff * 2).min(RETRY_MAX),
            None => RETRY_FIRST,
        };
        if self.failed.get(&id).is_none_or(|f| f.why != why) {
            tracing::warn!(
                netns = %id,
                ip_netns = netns::ip_netns_name(id),
                pid = found.pid,
                cgroup = %found.cgroup.display(),
                "cannot serve agents in network namespace {id}: {why}"
            );
        }
        self.failed.insert(
            id,
            Failed {
                why: why.to_owned(),
                retry_at: Instant::now() + backoff,
                backoff,
            },
        );
    }

    fn release(&mut self, id: NetnsId, r: Reached) {
        // First the map, so new connects are refused rather than sent to
        // a listener about to close.
        if let Some(Err(e)) = self.map.as_mut().map(|m| m.remove(r.cookie)) {
            tracing::warn!(netns = %id, error = %e, "cannot unmark a released network namespace");
        }
        drop(r);
        let served = self.reached.len();
        self.served.store(served, Ordering::Relaxed);
        tracing::info!(netns = %id, served, "no agent in network namespace any more: released");
    }
}

/// Walks the cgroups below `parent` (not `parent` itself: its own
/// processes are no agent's) for processes outside `host`'s namespace;
/// adds each directory to `watch`.
fn scan(parent: &Path, host: NetnsId, watch: Option<&Watch>) -> Scan {
    let mut out = Scan {
        complete: true,
        ..Scan::default()
    };
    // (directory, the agent-level cgroup it is in or below)
    let mut stack: Vec<(PathBuf, PathBuf)> = subdirs(parent)
        .into_iter()
        .map(|d| (d.clone(), d))
        .collect();
    if let Some(w) = watch {
        w.add(parent);
    }
    let (mut dirs, mut pids) = (0usize, 0usize);
    while let Some((dir, agent)) = stack.pop() {
        dirs += 1;
        if dirs > MAX_DIRS {
            out.complete = false;
            break;
        }
        if let Some(w) = watch {
            w.add(&dir);
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            pids += 1;
            if pids > MAX_PIDS {
                out.complete = false;
                return out;
            }
            match NetnsId::of_pid(pid) {
                Ok(id) if id != host => {
                    out.found.entry(id).or_insert_with(|| Found {
                        pid,
                        cgroup: dir.clone(),
                        agent: agent.clone(),
                    });
                }
                // The host's, or the process has exited.
                _ => {}
            }
        }
        stack.extend(subdirs(&dir).into_iter().map(|d| (d, agent.clone())));
    }
    out
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// inotify on the agents' tree: new cgroup directories and
/// `cgroup.events` changes.
struct Watch(AsyncFd<InotifyFd>);

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Watch {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Watch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the AsyncFd owns the Inotify and so its descriptor,
        // which stays open until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Watch(fd))
    }

    /// Watches `dir` (idempotent: the same directory keeps its watch).
    fn add(&self, dir: &Path) {
        let inotify = &self.0.get_ref().0;
        // A directory removed meanwhile: nothing to watch.
        let _ = inotify.add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR);
        let _ = inotify.add_watch(&dir.join("cgroup.events"), AddWatchFlags::IN_MODIFY);
    }

    /// Waits for events and drains them.
    async fn changed(&self) -> io::Result<()> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => {
                    // Drain what is queued behind them too.
                    while matches!(guard.get_inner().0.read_events(), Ok(e) if !e.is_empty()) {}
                    guard.clear_ready();
                    return Ok(());
                }
                Ok(_) | Err(nix::Error::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_of_nothing_is_complete_and_empty() {
        let dir = std::env::temp_dir().join(format!("airlock-scan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(
            dir.join("a/cgroup.procs"),
            format!("{}\n4294967290\n", std::process::id()),
        )
        .unwrap();
        let host = NetnsId::own().unwrap();
        let s = scan(&dir, host, None);
        assert!(s.complete);
        // This process is in the host's namespace; the other pid is none.
        assert!(s.found.is_empty(), "{s:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
