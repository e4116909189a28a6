//! The eBPF programs' refusals, read from their ring buffer
//! (`gateway_common::MAP_EVENTS`) and filed in the audit trail, one
//! record per refusal within a per-cgroup budget; and the programs' own
//! aya-log diagnostics, read into the daemon's log.
//!
//! Two budgets bound what a flood leaves behind (`docs/kernel-events.md`):
//! the kernel lets [`gateway_common::EVENTS_PER_WINDOW`] events a second
//! through per agent cgroup and CPU, so one cgroup cannot fill the ring;
//! here [`Budget`] lets [`AUDIT_ROWS_PER_WINDOW`] rows per cgroup through
//! per [`AUDIT_WINDOW`], plus one summary row at the end of a window in
//! which more were refused. What neither lets through is counted, never
//! lost silently: the count rides on the next row that gets through, or on
//! the summary.
//!
//! A refusal names the agent whose cgroup it came from ([`AgentMap`]),
//! else the cgroup id; the pid, uid, network namespace cookie and the
//! destination are in its detail.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{MapData, MapError, RingBuf};
use aya_log::EbpfLogger;
use chrono::{DateTime, Utc};
use gateway_common::{KernelEvent, MAP_EVENTS, event_kind};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::agents::AgentMap;
use super::redirect;
use crate::audit::{AuditRecord, AuditSink, Decision};
use crate::model::AgentName;
use crate::model::net::CgroupId;
use crate::shutdown::Shutdown;
use crate::store::chain;

/// The audit's budget window per cgroup.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);
/// Rows a cgroup's kernel refusals may add to the audit per window; one
/// summary row more when some were refused past them.
pub const AUDIT_ROWS_PER_WINDOW: u32 = 10;
/// Cgroups with an open window at once; past it, refusals of further
/// cgroups are counted in the log only, until windows close.
const MAX_TRACKED: usize = 4096;
/// How often closed windows are summarised.
const TICK: Duration = Duration::from_secs(1);
/// The `log` target of the programs' aya-log records: the eBPF crate's
/// module path. `RUST_LOG=airlock_ebpf=debug` shows them.
pub const EBPF_LOG_TARGET: &str = "airlock_ebpf";

/// The daemon's ends of the programs' ring buffers, taken from the loaded
/// object by [`KernelEvents::take`] and read by [`run`].
pub struct KernelEvents {
    ring: RingBuf<MapData>,
    /// `None` when the object has no aya-log map (a build without log
    /// lines): the refusals are still read.
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
}

/// Why the refusals cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("the eBPF object has no map {MAP_EVENTS}")]
    NoRing,
    #[error("{MAP_EVENTS}: {0}")]
    Ring(#[source] MapError),
}

impl KernelEvents {
    /// Takes the event ring and aya-log's map out of `ebpf`.
    pub fn take(ebpf: &mut Ebpf) -> Result<KernelEvents, EventsError> {
        let map = ebpf.take_map(MAP_EVENTS).ok_or(EventsError::NoRing)?;
        let ring = RingBuf::try_from(map).map_err(EventsError::Ring)?;
        let logger = match EbpfLogger::init(ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "the eBPF programs' log cannot be read");
                None
            }
        };
        Ok(KernelEvents { ring, logger })
    }
}

/// aya-log's level for the programs (`AYA_LOG_LEVEL`, set at load): the
/// most verbose one the daemon's log shows for [`EBPF_LOG_TARGET`], so
/// the verifier prunes every log line that would be thrown away.
pub fn ebpf_log_level() -> u8 {
    use aya_log::Level;
    use tracing::Level as T;
    let level = if tracing::enabled!(target: EBPF_LOG_TARGET, T::TRACE) {
        Level::Trace
    } else if tracing::enabled!(target: EBPF_LOG_TARGET, T::DEBUG) {
        Level::Debug
    } else if tracing::enabled!(target: EBPF_LOG_TARGET, T::INFO) {
        Level::Info
    } else if tracing::enabled!(target: EBPF_LOG_TARGET, T::WARN) {
        Level::Warn
    } else if tracing::enabled!(target: EBPF_LOG_TARGET, T::ERROR) {
        Level::Error
    } else {
        return 0;
    };
    level as u8
}

// ---------------------------------------------------------------- events

/// What the kernel refused (`gateway_common::event_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Udp,
    NetnsUnreached,
    Unconfigured,
    NotRecorded,
}

impl Refused {
    fn from_kind(kind: u32) -> Option<Refused> {
        Some(match kind {
            event_kind::UDP_REFUSED => Refused::Udp,
            event_kind::NETNS_UNREACHED => Refused::NetnsUnreached,
            event_kind::UNCONFIGURED => Refused::Unconfigured,
            event_kind::NOT_RECORDED => Refused::NotRecorded,
            _ => return None,
        })
    }

    pub fn decision(self) -> Decision {
        match self {
            Refused::Udp => Decision::UdpRefused,
            Refused::NetnsUnreached => Decision::NetnsUnreached,
            Refused::Unconfigured => Decision::Unconfigured,
            Refused::NotRecorded => Decision::NotRecorded,
        }
    }

    fn why(self) -> &'static str {
        match self {
            Refused::Udp => "UDP to an intercepted port is refused (QUIC), so clients use TCP",
            Refused::NetnsUnreached => {
                "the gateway does not listen in its network namespace yet, so it is refused \
                 rather than let out"
            }
            Refused::Unconfigured => {
                "no daemon has configured interception (pinned programs without a running \
                 daemon), so it is refused rather than let out"
            }
            Refused::NotRecorded => {
                "its original destination could not be recorded (too many connections in \
                 flight), so it is refused rather than let out unidentified"
            }
        }
    }
}

/// One refusal as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Refused,
    pub cgroup: CgroupId,
    pub pid: u32,
    pub uid: u32,
    pub netns_cookie: u64,
    pub dest: SocketAddr,
    /// A datagram socket's (else a stream's).
    pub udp: bool,
    /// Refusals of the cgroup the kernel counted but did not report.
    pub suppressed: u32,
    /// `CLOCK_BOOTTIME` of the refusal.
    pub at_ns: u64,
}

/// Why a record on the ring is not a refusal this build knows.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a {0}-byte record, not {size}", size = size_of::<KernelEvent>())]
    Size(usize),
    #[error("unknown kind {0}")]
    Kind(u32),
}

/// Reads a [`KernelEvent`] field by field (host order, the layout
/// `gateway_common` tests), so no byte pattern is trusted as a value.
pub fn parse(b: &[u8]) -> Result<Refusal, ParseError> {
    if b.len() != size_of::<KernelEvent>() {
        return Err(ParseError::Size(b.len()));
    }
    fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&b[at..at + N]);
        out
    }
    let u16_at = |at| u16::from_ne_bytes(bytes(b, at));
    let u32_at = |at| u32::from_ne_bytes(bytes(b, at));
    let u64_at = |at| u64::from_ne_bytes(bytes(b, at));
    let kind = u32_at(0);
    Ok(Refusal {
        kind: Refused::from_kind(kind).ok_or(ParseError::Kind(kind))?,
        pid: u32_at(4),
        cgroup: CgroupId::new(u64_at(8)),
        netns_cookie: u64_at(16),
        uid: u32_at(24),
        suppressed: u32_at(28),
        dest: redirect::mapped_addr(bytes(b, 32), u16_at(50), u16_at(48)),
        udp: u16_at(52) == 2,
        at_ns: u64_at(56),
    })
}

// ---------------------------------------------------------------- budget

/// One cgroup's audit budget in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    rows: u32,
    /// Refusals counted since the last row, not yet in any row.
    pending: u64,
    /// The last of them, for the summary row.
    last: Refusal,
}

/// What the budget says of one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Record it, saying that `carried` more were counted since the last row.
    Row { carried: u64 },
    /// Over the budget: counted only.
    Counted,
}

/// The per-cgroup audit budget (see the module docs).
#[derive(Default)]
pub struct Budget {
    windows: HashMap<CgroupId, Window>,
    /// Refusals of cgroups beyond [`MAX_TRACKED`], since the last tick.
    untracked: u64,
}

impl Budget {
    /// Whether `r`, arriving at `now`, becomes a row.
    pub fn admit(&mut self, r: &Refusal, now: Instant) -> Admit {
        let kernel = u64::from(r.suppressed);
        if !self.windows.contains_key(&r.cgroup) && self.windows.len() >= MAX_TRACKED {
            self.untracked += 1 + kernel;
            return Admit::Counted;
        }
        let w = self.windows.entry(r.cgroup).or_insert(Window {
            start: now,
            rows: 0,
            pending: 0,
            last: *r,
        });
        if now.saturating_duration_since(w.start) >= AUDIT_WINDOW {
            w.start = now;
            w.rows = 0;
        }
        if w.rows < AUDIT_ROWS_PER_WINDOW {
            w.rows += 1;
            let carried = w.pending + kernel;
            w.pending = 0;
            Admit::Row { carried }
        } else {
            w.pending += 1 + kernel;
            w.last = *r;
            Admit::Counted
        }
    }

    /// Closes the windows that are over at `now` (all of them with
    /// `all`, at shutdown): the last refusal and the count of each that
    /// has refusals in no row yet, for a summary row.
    pub fn close(&mut self, now: Instant, all: bool) -> Vec<(Refusal, u64)> {
        let mut summaries = Vec::new();
        self.windows.retain(|_, w| {
            if !all && now.saturating_duration_since(w.start) < AUDIT_WINDOW {
                return true;
            }
            if w.pending > 0 {
                summaries.push((w.last, w.pending));
            }
            false
        });
        summaries
    }
}

// ---------------------------------------------------------------- records

/// The audit record of `r` (`agent` when its cgroup is an agent's);
/// `carried` more were counted since the cgroup's last row.
pub fn record(
    r: &Refusal,
    agent: Option<&AgentName>,
    carried: u64,
    boot_now_ns: u64,
) -> AuditRecord {
    let mut detail = format!(
        "{} to {} refused in the kernel: {} ({}pid {}, uid {}, cgroup id {}, netns cookie {})",
        if r.udp { "UDP" } else { "a connection" },
        r.dest,
        r.kind.why(),
        agent.map(|a| format!("agent {a}, ")).unwrap_or_default(),
        r.pid,
        r.uid,
        r.cgroup,
        r.netns_cookie,
    );
    if carried > 0 {
        detail.push_str(&format!(
            "; {carried} more refusals from this cgroup were counted, not recorded one by one"
        ));
    }
    base(r, agent, detail, boot_now_ns)
}

/// The summary row for `count` refusals of `last`'s cgroup that no row
/// recorded.
pub fn summary(
    last: &Refusal,
    agent: Option<&AgentName>,
    count: u64,
    boot_now_ns: u64,
) -> AuditRecord {
    let detail = format!(
        "{count} refusals in the kernel from cgroup id {} were counted, not recorded one by one \
         (the audit takes {AUDIT_ROWS_PER_WINDOW} per cgroup every {} s); the last: {} to {}, pid {}",
        last.cgroup,
        AUDIT_WINDOW.as_secs(),
        if last.udp { "UDP" } else { "a connection" },
        last.dest,
        last.pid,
    );
    base(last, agent, detail, boot_now_ns)
}

fn base(r: &Refusal, agent: Option<&AgentName>, detail: String, boot_now_ns: u64) -> AuditRecord {
    AuditRecord {
        at: chain::to_stored_precision(wall_time(r.at_ns, boot_now_ns)),
        agent: agent.map(|a| a.as_str().to_owned()),
        method: Some(if r.udp { "UDP" } else { "CONNECT" }.to_owned()),
        host: Some(r.dest.to_string()),
        decision: r.kind.decision(),
        detail: Some(detail),
        ..AuditRecord::begin()
    }
}

/// The wall-clock time of `at_ns` (`CLOCK_BOOTTIME`): an event that waited
/// in the pinned ring while no daemon ran is filed when it happened.
fn wall_time(at_ns: u64, boot_now_ns: u64) -> DateTime<Utc> {
    let now = Utc::now();
    let ago = i64::try_from(boot_now_ns.saturating_sub(at_ns)).unwrap_or(i64::MAX);
    now.checked_sub_signed(chrono::TimeDelta::nanoseconds(ago))
        .unwrap_or(now)
}

// ---------------------------------------------------------------- reader

/// Files the refusals in the audit and logs the programs' diagnostics
/// until shutdown.
/// Reads the ring until shutdown. `unreached` is woken by every refusal
/// from a namespace the gateway has not reached, so the namespace follower
/// reaches it now rather than at its next scan.
pub async fn run(
    events: KernelEvents,
    agents: Arc<AgentMap>,
    audit: AuditSink,
    unreached: Arc<tokio::sync::Notify>,
    shutdown: Shutdown,
) {
    let KernelEvents { ring, logger } = events;
    let mut ring = match register(ring) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "kernel refusals cannot be read: they are not audited");
            return;
        }
    };
    let mut logger = logger.and_then(|l| {
        register(l)
            .map_err(|e| tracing::warn!(error = %e, "the eBPF programs' log cannot be read"))
            .ok()
    });
    let mut filer = Filer {
        agents,
        audit,
        budget: Budget::default(),
        unreached,
    };
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            r = ring.readable_mut() => match r {
                Ok(mut guard) => {
                    filer.drain(guard.get_inner_mut());
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kernel refusals cannot be read any more");
                    break;
                }
            },
            ok = flush_log(&mut logger) => if !ok {
                logger = None;
            },
            _ = tick.tick() => filer.close(false),
            () = shutdown.wait() => break,
        }
    }
    filer.drain(ring.get_mut());
    filer.close(true);
}

/// Registers `fd` with the runtime for readability.
#[allow(unsafe_code)]
fn register<T: std::os::fd::AsRawFd>(fd: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: the AsyncFd owns `fd` (a ring buffer map's descriptor),
    // which stays open and the same until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Waits for the programs' log records and writes them to the log;
/// `false` when the log cannot be read any more. Pending forever without
/// a logger.
async fn flush_log(logger: &mut Option<AsyncFd<EbpfLogger<&'static dyn log::Log>>>) -> bool {
    let Some(fd) = logger else {
        return std::future::pending().await;
    };
    let mut guard = match fd.readable_mut().await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "the eBPF programs' log cannot be read any more");
            return false;
        }
    };
    // aya-log panics on a record it cannot decode: only a program of
    // another aya-log version writes one. Its log is then given up, not
    // the daemon.
    let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        guard.get_inner_mut().flush()
    }));
    guard.clear_ready();
    if flushed.is_err() {
        tracing::warn!(
            "the eBPF programs' log holds a record this build cannot read: not read any more"
        );
        return false;
    }
    true
}

/// Turns refusals into audit records within the budget.
struct Filer {
    agents: Arc<AgentMap>,
    audit: AuditSink,
    budget: Budget,
    unreached: Arc<tokio::sync::Notify>,
}

impl Filer {
    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        let boot_now = redirect::boot_time_ns();
        let now = Instant::now();
        while let Some(item) = ring.next() {
            let parsed = parse(&item);
            drop(item);
            match parsed {
                Ok(r) => self.file(&r, now, boot_now),
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable record on the kernel's event ring")
                }
            }
        }
    }

    fn file(&mut self, r: &Refusal, now: Instant, boot_now: u64) {
        tracing::debug!(kind = ?r.kind, cgroup = %r.cgroup, pid = r.pid, uid = r.uid,
            dest = %r.dest, udp = r.udp, suppressed = r.suppressed, netns = r.netns_cookie,
            "kernel refusal");
        if r.kind == Refused::NetnsUnreached {
            // Before the budget: a refusal only counted still needs the
            // namespace reached.
            self.unreached.notify_one();
        }
        if let Admit::Row { carried } = self.budget.admit(r, now) {
            let agent = self.agents.lookup(r.cgroup);
            self.audit
                .record(record(r, agent.as_ref(), carried, boot_now));
        }
    }

    fn close(&mut self, all: bool) {
        let boot_now = redirect::boot_time_ns();
        for (last, count) in self.budget.close(Instant::now(), all) {
            let agent = self.agents.lookup(last.cgroup);
            self.audit
                .record(summary(&last, agent.as_ref(), count, boot_now));
        }
        let untracked = std::mem::take(&mut self.budget.untracked);
        if untracked > 0 {
            tracing::warn!(
                untracked,
                max_cgroups = MAX_TRACKED,
                "kernel refusals from more cgroups than the audit tracks were counted only"
            );
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
