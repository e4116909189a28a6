//! `cargo xtask profile`: how many instructions the gateway executes per
//! proxied request, counted by valgrind's callgrind.
//!
//! Wall-clock figures on this shared 2-core machine swing by 2× between
//! runs; instruction counts do not. This runs the bench's set-up (a local
//! nginx that refuses requests without the injected key, `airlock serve`
//! with one secret and one agent), but with the daemon under `valgrind
//! --tool=callgrind`. After a warm-up it counts three intervals: idle
//! (timers, the audit writer's ticks), a set-up run of one request per
//! connection (CONNECT, the TLS handshake, the first request), and the
//! load: a fixed number of keep-alive HTTPS requests through the explicit
//! proxy on as many new connections. The figure is the marginal cost of a
//! keep-alive request: `(load − setup) / (requests − connections)`, each
//! interval less the idle rate times its length. The top functions by
//! inclusive and by self cost, per request, come from `callgrind_annotate`.
//! Results go to `bench/results/profile-<UTC>.json`.
//!
//! Allocations per request come from the same intervals: callgrind
//! records how often each function was called, and the daemon uses the
//! system allocator, so the calls to `malloc`, `calloc` and the aligned
//! allocators are its heap allocations (`realloc` is reported apart: it
//! grows a buffer, which may or may not move it).
//!
//! valgrind runs the daemon ~50× slower, so the request count is small and
//! every step is bounded in time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::bench::{gateway, load, procs, report, tools, upstream};
use crate::cmd;

#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Requests counted (after the warm-up).
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Requests sent first and not counted (leaf certificate, pool, caches).
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// Seconds of idle counted, to subtract the daemon's background work.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    idle: f64,
    /// Functions listed, by inclusive and by self cost.
    #[arg(long, default_value_t = 40)]
    top: usize,
    /// Keep the temporary directory (configs, logs, callgrind files).
    #[arg(long)]
    keep: bool,
    /// Profile this `airlock` binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    airlock: Option<PathBuf>,
}

/// How long any one oha run may take under valgrind before it is a failure.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a callgrind_control command may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize)]
struct Profile {
    schema: &'static str,
    timestamp: String,
    git: String,
    airlock_binary: String,
    valgrind: String,
    requests: u64,
    connections: u32,
    warmup_requests: u32,
    load_seconds: f64,
    load_ir: u64,
    idle_seconds: f64,
    idle_ir: u64,
    /// The set-up run: one request on each of `connections` new connections.
    setup_seconds: f64,
    setup_ir: u64,
    /// Set-up less idle, per connection: CONNECT, both TLS handshakes' share,
    /// one request.
    ir_per_connection: f64,
    /// Load less set-up (each less idle) per keep-alive request beyond
    /// the first on each connection.
    ir_per_request: f64,
    /// Heap allocations (malloc, calloc, the aligned allocators) per
    /// keep-alive request, computed like `ir_per_request`.
    allocations_per_request: f64,
    /// `realloc` calls per keep-alive request.
    reallocs_per_request: f64,
    /// Heap allocations per new connection (CONNECT, handshakes, one
    /// request), like `ir_per_connection`.
    allocations_per_connection: f64,
    /// Inclusive cost per request of the top functions (load interval,
    /// divided by `requests`, set-up included).
    top_inclusive: Vec<FunctionCost>,
    /// Self cost per request of the top functions (same interval).
    top_self: Vec<FunctionCost>,
}

#[derive(Debug, Serialize)]
struct FunctionCost {
    function: String,
    ir_per_request: f64,
    percent: f64,
}

pub fn run(args: &ProfileArgs) -> Result<()> {
    if args.requests == 0 || args.connections == 0 || args.idle < 1.0 {
        bail!("need --requests ≥ 1, --connections ≥ 1 and --idle ≥ 1");
    }
    if args.requests <= args.connections {
        bail!("--requests must be more than --connections");
    }
    procs::install_signal_handler()?;
    let _cleanup = procs::CleanupGuard;

    let root = cmd::workspace_root()?;
    crate::timed("profile: valgrind", ensure_valgrind)?;
    let oha = crate::timed("profile: oha", tools::ensure_oha)?;
    crate::timed("profile: packages", tools::ensure_packages)?;
    let airlock = tools::release_airlock(args.airlock.as_deref(), "profile")?;

    let (timestamp, file_stamp) = report::utc_now();
    let dir = std::env::temp_dir().join(format!(
        "airlock-profile-{file_stamp}-{}",
        std::process::id()
    ));
    fs::create_dir_all(&dir)?;
    eprintln!("profile: working in {}", dir.display());

    let outcome = measure(args, &oha, &airlock, &dir);
    procs::cleanup();
    match &outcome {
        Ok(_) if !args.keep => {
            let _ = fs::remove_dir_all(&dir);
        }
        _ => eprintln!(
            "profile: logs and callgrind files kept in {}",
            dir.display()
        ),
    }
    let mut profile = outcome?;
    profile.timestamp = timestamp;
    profile.git = tools::git_describe(&root);

    println!("{}", summary(&profile));
    let out_dir = root.join("bench").join("results");
    fs::create_dir_all(&out_dir)?;
    let path = out_dir.join(format!("profile-{file_stamp}.json"));
    fs::write(&path, serde_json::to_string_pretty(&profile)? + "\n")?;
    eprintln!("profile: results in {}", path.display());
    Ok(())
}

/// Debian's `valgrind`, if it is missing.
fn ensure_valgrind() -> Result<()> {
    let present = ["valgrind", "callgrind_control", "callgrind_annotate"]
        .iter()
        .all(|p| cmd::on_path(p));
    if present {
        return Ok(());
    }
    if !cmd::on_path("apt-get") {
        bail!("valgrind is missing and there is no apt-get: install valgrind");
    }
    let install = || {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args([
            "install",
            "-y",
            "--no-install-recommends",
            "valgrind",
        ]);
        c
    };
    if cmd::run(&mut install()).is_err() {
        // A fresh machine may have no package lists yet.
        cmd::run(Command::new("apt-get").arg("update"))?;
        cmd::run(&mut install())?;
    }
    Ok(())
}

/// A wrapper the bench's gateway start-up runs in place of `airlock`: it
/// execs `airlock serve` under callgrind (same PID) and every other
/// subcommand (`status`, `secret add`, …) natively.
fn write_wrapper(dir: &Path, airlock: &Path, out_file: &Path) -> Result<PathBuf> {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\n\
         # Generated by `cargo xtask profile`.\n\
         if [ \"$1\" = serve ]; then\n\
         \x20 exec valgrind --tool=callgrind --collect-atstart=yes --dump-instr=no \
         --callgrind-out-file={out} {airlock} \"$@\"\n\
         fi\n\
         exec {airlock} \"$@\"\n",
        out = quote(out_file),
        airlock = quote(airlock),
    );
    let path = dir.join("airlock-under-callgrind");
    fs::write(&path, script)?;
    let mut perms = fs::metadata(&path)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&path, perms)?;
    Ok(path)
}

fn measure(args: &ProfileArgs, oha: &PathBuf, airlock: &Path, dir: &Path) -> Result<Profile> {
    let out_base = dir.join("callgrind.out");
    let wrapper = write_wrapper(dir, airlock, &out_base)?;
    let up = upstream::start(dir)?;
    eprintln!("profile: nginx on 127.0.0.1:{} (pid {})", up.port, up.pid);
    let gw = crate::timed("profile: airlock under callgrind", || {
        gateway::start(
            &wrapper,
            dir,
            &up.ca_pem,
            &[up.port],
            gateway::Interception::Off,
        )
    })?;
    eprintln!(
        "profile: airlock proxy on {} (pid {} under callgrind)",
        gw.proxy_addr, gw.pid
    );
    let route = gw.explicit_route();
    let run = load::Run {
        oha,
        route: &route,
        port: up.port,
        mode: load::Mode::KeepAlive,
        connections: args.connections,
        duration: LOAD_TIMEOUT,
    };

    // nginx answers 401 without the key, and any non-200 fails the run:
    // every counted request proves the injection.
    crate::timed("profile: warm-up", || {
        counted(&run, args.warmup.max(args.connections))
    })?;
    // Let the warm-up's audit batch go out before counting the idle.
    thread::sleep(Duration::from_secs(1));

    let control = Control {
        pid: gw.pid,
        base: out_base,
    };
    let (idle_file, idle_seconds) = control.interval("idle", || {
        thread::sleep(Duration::from_secs_f64(args.idle));
        Ok(())
    })?;

    let (setup_file, setup_seconds) = control.interval("setup", || {
        crate::timed("profile: set-up requests", || {
            counted(&run, args.connections)
        })
    })?;
    let (load_file, load_seconds) = control.interval("load", || {
        crate::timed("profile: counted requests", || counted(&run, args.requests))
    })?;

    let idle_ir = total_ir(&idle_file)?;
    let setup_ir = total_ir(&setup_file)?;
    let load_ir = total_ir(&load_file)?;
    let requests = u64::from(args.requests);
    let idle_rate = idle_ir as f64 / idle_seconds;
    let setup = setup_ir as f64 - idle_rate * setup_seconds;
    let load = load_ir as f64 - idle_rate * load_seconds;
    let ir_per_connection = setup / f64::from(args.connections);
    let ir_per_request = (load - setup) / (requests - u64::from(args.connections)).max(1) as f64;
    if ir_per_request <= 0.0 || ir_per_connection <= 0.0 {
        bail!(
            "the intervals do not add up (idle {idle_ir} Ir in {idle_seconds:.1}s, set-up \
             {setup_ir} Ir in {setup_seconds:.1}s, load {load_ir} Ir in {load_seconds:.1}s): \
             nothing to attribute to the requests"
        );
    }
    let per_request = |ir: u64| ir as f64 / requests as f64;
    // The same arithmetic for allocation calls.
    let [idle_calls, setup_calls, load_calls] =
        [&idle_file, &setup_file, &load_file].map(|f| alloc_calls(f));
    let (idle_calls, setup_calls, load_calls) = (idle_calls?, setup_calls?, load_calls?);
    let marginal = |pick: fn(&AllocCalls) -> u64| {
        let rate = pick(&idle_calls) as f64 / idle_seconds;
        let setup = pick(&setup_calls) as f64 - rate * setup_seconds;
        let load = pick(&load_calls) as f64 - rate * load_seconds;
        (
            (load - setup) / (requests - u64::from(args.connections)).max(1) as f64,
            setup / f64::from(args.connections),
        )
    };
    let (allocations_per_request, allocations_per_connection) = marginal(|c| c.allocations);
    let (reallocs_per_request, _) = marginal(|c| c.reallocs);
    Ok(Profile {
        schema: "airlock-profile/1",
        timestamp: String::new(),
        git: String::new(),
        airlock_binary: airlock.display().to_string(),
        valgrind: cmd::probe(Command::new("valgrind").arg("--version"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default(),
        requests,
        connections: args.connections,
        warmup_requests: args.warmup,
        load_seconds,
        load_ir,
        idle_seconds,
        idle_ir,
        setup_seconds,
        setup_ir,
        ir_per_connection,
        ir_per_request,
        allocations_per_request,
        reallocs_per_request,
        allocations_per_connection,
        top_inclusive: annotate(&load_file, true, args.top, load_ir, &per_request)?,
        top_self: annotate(&load_file, false, args.top, load_ir, &per_request)?,
    })
}

/// Sends exactly `requests` requests on `run`'s connections with oha.
fn counted(run: &load::Run<'_>, requests: u32) -> Result<()> {
    let mut c = run.counted_command(u64::from(requests));
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::display(&c)))?;
    let out = wait_bounded(child, LOAD_TIMEOUT)
        .with_context(|| format!("`{}` did not finish", cmd::display(&c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd::display(&c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`{}` printed no JSON", cmd::display(&c)))?;
    let measured =
        load::parse(&json).with_context(|| format!("in the results of `{}`", cmd::display(&c)))?;
    if measured.ok != u64::from(requests) {
        bail!("oha got {} answers for {requests} requests", measured.ok);
    }
    Ok(())
}

/// Waits for `child` at most `within`; kills it (by its PID) after that.
fn wait_bounded(mut child: std::process::Child, within: Duration) -> Result<std::process::Output> {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(child.wait_with_output()?);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {}s", within.as_secs());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `callgrind_control` on the daemon.
struct Control {
    pid: u32,
    /// `--callgrind-out-file`; dumps are written as `<base>.<n>`.
    base: PathBuf,
}

impl Control {
    fn call(&self, flag: &str) -> Result<()> {
        let mut c = Command::new("callgrind_control");
        c.arg(flag)
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c
            .spawn()
            .with_context(|| format!("cannot start `{}`", cmd::display(&c)))?;
        let out = wait_bounded(child, CONTROL_TIMEOUT)
            .with_context(|| format!("`{}` did not finish", cmd::display(&c)))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}{}",
                cmd::display(&c),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Counts `step` alone: zero, run, dump. Returns the dump and seconds.
    fn interval(&self, hint: &str, step: impl FnOnce() -> Result<()>) -> Result<(PathBuf, f64)> {
        self.call("--zero")?;
        let start = Instant::now();
        step()?;
        let file = self.dump(hint)?;
        Ok((file, start.elapsed().as_secs_f64()))
    }

    /// Dumps the counters since the last zero; returns the new file.
    fn dump(&self, hint: &str) -> Result<PathBuf> {
        let before = self.dumps()?;
        self.call(&format!("--dump={hint}"))?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            if let Some(new) = self.dumps()?.into_iter().find(|d| !before.contains(d)) {
                // callgrind writes the file whole before answering; a
                // moment more in case the answer came first.
                thread::sleep(Duration::from_millis(200));
                return Ok(new);
            }
            if Instant::now() > deadline {
                bail!(
                    "callgrind wrote no dump file next to {}",
                    self.base.display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn dumps(&self) -> Result<Vec<PathBuf>> {
        let dir = self.base.parent().context("no directory")?;
        let prefix = format!(
            "{}.",
            self.base
                .file_name()
                .and_then(|n| n.to_str())
                .context("no file name")?
        );
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                found.push(entry.path());
            }
        }
        Ok(found)
    }
}

/// The `summary:` (or `totals:`) line of a callgrind file: all Ir counted.
fn total_ir(file: &Path) -> Result<u64> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    parse_total(&text).with_context(|| format!("no summary line in {}", file.display()))
}

fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Calls to the allocator in one callgrind dump.
#[derive(Debug, Default, PartialEq)]
struct AllocCalls {
    /// malloc, calloc, posix_memalign, aligned_alloc, memalign.
    allocations: u64,
    reallocs: u64,
}

fn alloc_calls(file: &Path) -> Result<AllocCalls> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(parse_alloc_calls(&text))
}

/// Sums the `calls=` lines whose callee (`cfn=`) is an allocator. With
/// callgrind's name compression a name is given once, as `(id) name`,
/// and afterwards as `(id)` alone, in `fn=` and `cfn=` lines alike.
fn parse_alloc_calls(text: &str) -> AllocCalls {
    use std::collections::HashMap;
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut callee: Option<&str> = None;
    let mut out = AllocCalls::default();
    for line in text.lines() {
        let named = line
            .strip_prefix("cfn=")
            .map(|r| (true, r))
            .or_else(|| line.strip_prefix("fn=").map(|r| (false, r)));
        if let Some((is_callee, rest)) = named {
            let name = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
                Some((id, name)) if !name.trim().is_empty() => {
                    names.insert(id, name.trim());
                    name.trim()
                }
                Some((id, _)) => names.get(id).copied().unwrap_or(""),
                None => rest.trim(),
            };
            callee = is_callee.then_some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("calls=") {
            let count: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            // The callee's name, without callgrind's `'2` recursion suffix.
            match callee.map(|n| n.split('\'').next().unwrap_or(n)) {
                Some("malloc" | "calloc" | "posix_memalign" | "aligned_alloc" | "memalign") => {
                    out.allocations += count
                }
                Some("realloc") => out.reallocs += count,
                _ => {}
            }
            callee = None;
        }
    }
    out
}

/// The top `top` functions of `file` by inclusive or self cost.
fn annotate(
    file: &Path,
    inclusive: bool,
    top: usize,
    total: u64,
    per_request: &dyn Fn(u64) -> f64,
) -> Result<Vec<FunctionCost>> {
    let mut c = Command::new("callgrind_annotate");
    c.arg(format!(
        "--inclusive={}",
        if inclusive { "yes" } else { "no" }
    ))
    .arg("--threshold=100")
    .arg("--auto=no")
    .arg(file);
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::display(&c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            cmd::display(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(parse_annotate(&text)
        .into_iter()
        // Functions on a thread's stack when the counters were zeroed (the
        // worker loop, thread start) come out with their callees' cost as
        // their own; no real function has half of the total to itself.
        .filter(|(ir, _)| inclusive || ir.saturating_mul(2) < total)
        .take(top)
        .map(|(ir, label)| FunctionCost {
            function: short(&label),
            ir_per_request: per_request(ir),
            percent: if total == 0 {
                0.0
            } else {
                ir as f64 * 100.0 / total as f64
            },
        })
        .collect())
}

/// `(Ir, function)` rows of callgrind_annotate's function table, in its
/// order (highest first), without the program total.
fn parse_annotate(text: &str) -> Vec<(u64, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (count, rest) = line.split_once(char::is_whitespace)?;
            let ir: u64 = count.replace(',', "").parse().ok()?;
            let rest = rest.trim_start();
            // 3.19 prints `(12.34%)` after the count; older ones do not.
            let rest = match rest.strip_prefix('(') {
                Some(r) => r.split_once(')').map_or(r, |(_, tail)| tail).trim_start(),
                None => rest,
            };
            if rest.is_empty() || rest == "PROGRAM TOTALS" {
                return None;
            }
            Some((ir, rest.to_owned()))
        })
        .collect()
}

fn summary(p: &Profile) -> String {
    let mut out = format!(
        "profile: {:.0} Ir per keep-alive request, {:.0} Ir per new connection \
         ({} requests on {} connections in {:.1}s: {} Ir; set-up {} Ir in {:.1}s; \
         idle {} Ir in {:.1}s)\n",
        p.ir_per_request,
        p.ir_per_connection,
        p.requests,
        p.connections,
        p.load_seconds,
        p.load_ir,
        p.setup_ir,
        p.setup_seconds,
        p.idle_ir,
        p.idle_seconds
    );
    out.push_str(&format!(
        "profile: {:.1} heap allocations and {:.1} reallocs per keep-alive request, {:.0} \
         allocations per new connection\n",
        p.allocations_per_request, p.reallocs_per_request, p.allocations_per_connection
    ));
    for (title, rows) in [("inclusive", &p.top_inclusive), ("self", &p.top_self)] {
        out.push_str(&format!("\ntop functions by {title} Ir per request:\n"));
        for f in rows.iter().take(25) {
            out.push_str(&format!(
                "{:>12.0} {:>6.2}%  {}\n",
                f.ir_per_request, f.percent, f.function
            ));
        }
    }
    out
}

/// A `file:function [object]` label as the function alone, cut to a
/// readable width. The file ends at the first lone `:` (Rust paths use
/// `::`).
fn short(label: &str) -> String {
    let label = label.rsplit_once(" [").map_or(label, |(name, _)| name);
    let bytes = label.as_bytes();
    let lone = (0..bytes.len()).find(|&i| {
        bytes[i] == b':'
            && (i == 0 || bytes[i - 1] != b':')
            && bytes.get(i + 1).is_none_or(|&b| b != b':')
    });
    let label = lone.map_or(label, |i| &label[i + 1..]);
    let mut s: String = label.chars().take(140).collect();
    if label.chars().count() > 140 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_to_the_allocator_through_name_compression() {
        let text = "fn=(1) main\n\
                    cfn=(2) malloc\n\
                    calls=3 0\n\
                    0 40\n\
                    cfn=(3) realloc\n\
                    calls=2 0\n\
                    0 10\n\
                    fn=(4) hyper::proto::h1::role::parse\n\
                    cfn=(2)\n\
                    calls=5 0\n\
                    0 80\n\
                    cfn=(5) calloc'2\n\
                    calls=1 0\n\
                    cfn=(6) free\n\
                    calls=9 0\n\
                    fn=(2)\n\
                    0 7\n";
        assert_eq!(
            parse_alloc_calls(text),
            AllocCalls {
                allocations: 9,
                reallocs: 2
            }
        );
    }

    #[test]
    fn reads_callgrind_totals_and_annotate_rows() {
        assert_eq!(parse_total("events: Ir\nsummary: 123456\n"), Some(123_456));
        assert_eq!(parse_total("events: Ir\ntotals: 42\n"), Some(42));
        assert_eq!(parse_total("events: Ir\n"), None);
        let text = "\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
600,000 (60.00%)  ???:hyper::proto::h1::dispatch::Dispatcher::poll_loop [/x/airlock]
  2,500 ( 0.25%)  ./malloc/malloc.c:malloc [/usr/lib/libc.so.6]
";
        let rows = parse_annotate(text);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].0, 600_000);
        assert!(rows[0].1.starts_with("???:hyper::proto"));
        assert_eq!(
            rows[1],
            (
                2_500,
                "./malloc/malloc.c:malloc [/usr/lib/libc.so.6]".to_owned()
            )
        );
        assert_eq!(short(&rows[1].1), "malloc");
        assert_eq!(
            short("/x/src/h1/dispatch.rs:hyper::proto::h1::Dispatcher<T>::poll [/a]"),
            "hyper::proto::h1::Dispatcher<T>::poll"
        );
        assert_eq!(short("???:__rust_try"), "__rust_try");
    }
}
