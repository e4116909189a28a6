//! The processes the benchmark starts (nginx, airlock, the embedded
//! PostgreSQL, the peers), stopped by PID however the run ends: success,
//! error, panic or Ctrl-C, followed by the undo steps registered with
//! [`on_cleanup`]. Also bounded runs, and CPU-time and memory sampling
//! from `/proc`.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cmd;

/// A process to stop at the end.
#[derive(Debug, Clone)]
struct Tracked {
    name: &'static str,
    pid: i32,
    /// The process's start time (field 22 of `/proc/PID/stat`, unchanged by
    /// exec): guards against PID reuse.
    started: Option<u64>,
    /// Signal asking for a fast, clean stop.
    signal: i32,
    /// Lower stops first.
    order: u8,
}

static TRACKED: Mutex<Vec<Tracked>> = Mutex::new(Vec::new());

/// Undo steps that run once the processes are stopped (last registered
/// first): releasing eBPF pins and cgroups, restoring a sysctl.
type Hook = Box<dyn FnOnce() + Send>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Registers `undo` to run at cleanup, after the tracked processes stop.
pub fn on_cleanup(undo: impl FnOnce() + Send + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(undo));
}

/// Stop order: the gateway first (it shuts its PostgreSQL down itself), then
/// whatever PostgreSQL is left, then the upstream.
pub const ORDER_GATEWAY: u8 = 0;
pub const ORDER_POSTGRES: u8 = 1;
pub const ORDER_UPSTREAM: u8 = 2;
/// The peers (mitmproxy, squid) and helpers stop with the gateway.
pub const ORDER_PEER: u8 = 0;

fn lock() -> std::sync::MutexGuard<'static, Vec<Tracked>> {
    TRACKED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers `pid` to be stopped with `signal` at cleanup.
/// Starts `command` in a process group of its own (so Ctrl-C reaches it
/// only through the cleanup), its output to `log`, no standard input, and
/// tracks it for the cleanup. Returns its PID.
pub fn start(
    name: &'static str,
    command: &mut Command,
    log: &Path,
    signal: i32,
    order: u8,
) -> Result<u32> {
    let file = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    std::os::unix::process::CommandExt::process_group(command, 0);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", shown(command)))?;
    let pid = child.id();
    track(name, pid, signal, order);
    Ok(pid)
}

pub fn track(name: &'static str, pid: u32, signal: i32, order: u8) {
    let Ok(pid) = i32::try_from(pid) else { return };
    let started = start_time(pid);
    let mut tracked = lock();
    if tracked.iter().any(|t| t.pid == pid) {
        return;
    }
    tracked.push(Tracked {
        name,
        pid,
        started,
        signal,
        order,
    });
}

/// Installs the Ctrl-C / SIGTERM handler: stop everything, then exit.
// The handler runs on its own thread while the bench blocks elsewhere:
// exiting from it, once everything it started is stopped, is the point.
#[allow(clippy::exit)]
pub fn install_signal_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        eprintln!("\nbench: interrupted; stopping what it started");
        cleanup();
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")
}

/// Stops every tracked process (idempotent). Safe to call from the signal
/// handler thread and from the main thread's guard.
pub fn cleanup() {
    let mut tracked: Vec<Tracked> = std::mem::take(&mut *lock());
    tracked.sort_by_key(|t| t.order);
    for t in tracked {
        stop(&t);
    }
    let hooks: Vec<Hook> = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
    for undo in hooks.into_iter().rev() {
        undo();
    }
}

/// Calls [`cleanup`] when dropped (also on panic unwinding).
pub struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        cleanup();
    }
}

/// Fields of `/proc/PID/stat` after the command name (which is in
/// parentheses and may hold spaces): index 0 is field 3 (state).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is still the process we registered. Reaps it if it is our
/// child and has exited.
#[allow(unsafe_code)]
fn alive(t: &Tracked) -> bool {
    // SAFETY: waitpid with WNOHANG on a pid only reaps it if it is our own
    // exited child; it never blocks.
    let reaped = unsafe { libc::waitpid(t.pid, std::ptr::null_mut(), libc::WNOHANG) };
    if reaped == t.pid {
        return false;
    }
    // A zombie that is not ours (reparented and not yet reaped) counts as
    // gone; so does another process that got the same PID.
    match stat_fields(t.pid) {
        None => false,
        Some(f) if f.first().is_some_and(|s| s == "Z") => false,
        Some(f) => t.started.is_none() || f.get(19).and_then(|s| s.parse().ok()) == t.started,
    }
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a positive pid we started (checked by `alive`).
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_gone(t: &Tracked, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(t) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    !alive(t)
}

fn stop(t: &Tracked) {
    if !alive(t) {
        return;
    }
    signal(t.pid, t.signal);
    if wait_gone(t, Duration::from_secs(20)) {
        eprintln!("bench: stopped {} (pid {})", t.name, t.pid);
        return;
    }
    eprintln!(
        "bench: {} (pid {}) did not stop in 20s; killing it",
        t.name, t.pid
    );
    signal(t.pid, libc::SIGKILL);
    wait_gone(t, Duration::from_secs(5));
}

/// Runs `c` with its output captured, killing it if it has not finished
/// within `limit`: every run the benchmark makes is bounded in time.
pub fn output_within(c: &mut Command, limit: Duration) -> Result<Output> {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", shown(c)))?;
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = pipe(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = pipe(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{}` did not finish within {}s; killed",
                shown(c),
                limit.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Waits for `child` up to `limit`, then kills it.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Ok(child.wait()?);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd::display` with credentials masked: the agent's token travels in
/// `Proxy-Authorization` headers and `user:token@` proxy URLs, and a
/// failed run's message must not repeat it.
pub fn shown(c: &Command) -> String {
    mask(&cmd::display(c))
}

fn mask(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("Proxy-Authorization: ") {
            // The value runs to the closing quote (it holds a space, so
            // `display` quoted it); keep the scheme word, drop the rest.
            let end = after.find('\'').unwrap_or(after.len());
            let scheme = after[..end].split(' ').next().unwrap_or_default();
            out.push_str("Proxy-Authorization: ");
            out.push_str(scheme);
            out.push_str(" ***");
            rest = &after[end..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("http://")
            && let Some(at) = after.find('@')
            && !after[..at].contains(['/', ' ', '\''])
        {
            out.push_str("http://***@");
            rest = &after[at + 1..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(ch) = chars.next() {
            out.push(ch);
        }
        rest = chars.as_str();
    }
    out
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory of `pid` and its direct children, in KiB.
pub fn tree_rss_kib(pid: u32) -> u64 {
    let Ok(id) = i32::try_from(pid) else {
        return 0;
    };
    all_stats()
        .iter()
        .filter(|(p, (ppid, _))| **p == id || *ppid == id)
        .filter_map(|(p, _)| u32::try_from(*p).ok().and_then(rss_kib))
        .sum()
}

/// Clock ticks per second for `/proc/PID/stat` times.
#[allow(unsafe_code)]
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// (ppid, utime + stime in ticks) of every process, from `/proc/*/stat`.
fn all_stats() -> HashMap<i32, (i32, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(stat) = stat_of(pid) {
            out.insert(pid, stat);
        }
    }
    out
}

fn stat_of(pid: i32) -> Option<(i32, u64)> {
    // ppid (field 4) is index 1, utime (14) is 11 and stime (15) is 12.
    let fields = stat_fields(pid)?;
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// CPU ticks used so far by `pid` alone.
pub fn cpu_ticks(pid: u32) -> u64 {
    i32::try_from(pid)
        .ok()
        .and_then(stat_of)
        .map_or(0, |(_, t)| t)
}

/// CPU ticks used so far by `pid` and its direct children (nginx workers,
/// PostgreSQL backends).
pub fn tree_ticks(pid: u32) -> u64 {
    let Ok(pid) = i32::try_from(pid) else {
        return 0;
    };
    all_stats()
        .iter()
        .filter(|(p, (ppid, _))| **p == pid || *ppid == pid)
        .map(|(_, (_, t))| t)
        .sum()
}

/// User+system CPU seconds of our waited-for children so far (oha).
#[allow(unsafe_code)]
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_in_shown_commands() {
        let mut c = Command::new("oha");
        c.args([
            "--proxy-header",
            "Proxy-Authorization: Basic Ym90OnNlY3JldA==",
            "-x",
        ])
        .arg("http://127.0.0.1:1")
        .arg("--proxy")
        .arg("http://bot:tok3n@127.0.0.1:2")
        .arg("https://bench.local:3/v1/bench");
        let s = shown(&c);
        assert!(!s.contains("Ym90OnNlY3JldA") && !s.contains("tok3n"), "{s}");
        assert!(
            s.contains("http://***@127.0.0.1:2") && s.contains("http://127.0.0.1:1"),
            "{s}"
        );
        assert!(s.contains("https://bench.local:3/v1/bench"), "{s}");
    }

    #[test]
    fn reads_own_stat() {
        let me = std::process::id();
        assert!(stat_of(i32::try_from(me).unwrap()).is_some());
        assert!(clock_ticks() > 0.0);
        assert!(start_time(i32::try_from(me).unwrap()).is_some());
        // Our own tree holds at least ourselves.
        let _ = tree_ticks(me);
    }
}
