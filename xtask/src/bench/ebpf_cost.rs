//! The eBPF programs' cost per `connect()`, from the kernel's own counters:
//! with `kernel.bpf_stats_enabled` on (for this measurement only; the old
//! value is restored after it, and at cleanup if it fails), each program
//! attached to the benchmark's agents' cgroup reports `run_time_ns` and
//! `run_cnt` (read with `bpftool`). `bench/py/connects.py` makes the calls
//! from three places: outside any agent cgroup, and inside the agent's
//! cgroup to a port that is not intercepted and to one that is.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::gateway::Gateway;
use super::procs;
use super::report::Point;
use super::route::Route;

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const BPFTOOL: &str = "/usr/sbin/bpftool";
/// Calls per case: enough for a stable mean, few enough that the gateway's
/// transparent listener (which accepts the intercepted ones) barely notices.
const CALLS: u32 = 2000;

/// Run time and count per program name, summed over the programs attached
/// to `cgroup`.
fn counters(cgroup: &Path) -> Result<BTreeMap<String, (u64, u64)>> {
    let json = |c: &mut Command| -> Result<Value> {
        let out = procs::output_within(c, Duration::from_secs(20))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                procs::shown(c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("`{}` printed no JSON", procs::shown(c)))
    };
    let attached = json(
        Command::new(BPFTOOL)
            .args(["-j", "cgroup", "show"])
            .arg(cgroup),
    )?;
    let mut out = BTreeMap::new();
    for prog in attached.as_array().into_iter().flatten() {
        let Some(id) = prog["id"].as_u64() else {
            continue;
        };
        let info = json(Command::new(BPFTOOL).args(["-j", "prog", "show", "id", &id.to_string()]))?;
        let name = info["name"].as_str().unwrap_or("?").to_owned();
        let entry = out.entry(name).or_insert((0, 0));
        entry.0 += info["run_time_ns"].as_u64().unwrap_or(0);
        entry.1 += info["run_cnt"].as_u64().unwrap_or(0);
    }
    if out.is_empty() {
        bail!("no eBPF program is attached to {}", cgroup.display());
    }
    Ok(out)
}

/// Turns the kernel's per-program statistics on until dropped (or until
/// cleanup, if the run fails first), restoring the value found.
struct StatsOn {
    old: String,
}

impl StatsOn {
    fn enable() -> Result<StatsOn> {
        let old = fs::read_to_string(SYSCTL)
            .with_context(|| format!("cannot read {SYSCTL}"))?
            .trim()
            .to_owned();
        let restore = old.clone();
        procs::on_cleanup(move || {
            let _ = fs::write(SYSCTL, &restore);
        });
        fs::write(SYSCTL, "1").with_context(|| format!("cannot enable {SYSCTL}"))?;
        Ok(StatsOn { old })
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        if let Err(e) = fs::write(SYSCTL, &self.old) {
            eprintln!("bench: warning: restoring {SYSCTL} to {}: {e}", self.old);
        }
    }
}

/// A listener nobody intercepts, outside the agents' cgroups (so the
/// accepting side runs none of the programs), accepting until dropped.
struct Sink {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Sink {
    fn start() -> Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Ok(Sink { port, stop })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn measure(
    python: &Path,
    root: &Path,
    gw: &Gateway,
    direct: &Route,
    transparent: &Route,
    intercepted_port: u16,
) -> Result<Vec<Point>> {
    let cgroup = gw.isolation.agents_dir();
    let sink = Sink::start()?;
    let _stats = StatsOn::enable()?;
    let cases: [(&str, &Route, u16, &str); 3] = [
        (
            "outside-agent-cgroups",
            direct,
            intercepted_port,
            "a process outside agent cgroups, to an intercepted port",
        ),
        (
            "agent-port-not-intercepted",
            transparent,
            sink.port,
            "an agent, to a port that is not intercepted",
        ),
        (
            "agent-port-intercepted",
            transparent,
            intercepted_port,
            "an agent, to an intercepted port (redirected to the gateway)",
        ),
    ];
    let mut points = Vec::new();
    for (name, route, port, what) in cases {
        let before = counters(&cgroup)?;
        let mut c = route.command(python);
        c.arg(root.join("bench/py/connects.py")).args([
            "--port",
            &port.to_string(),
            "--count",
            &CALLS.to_string(),
        ]);
        let out = procs::output_within(&mut c, Duration::from_secs(120))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                procs::shown(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let after = counters(&cgroup)?;
        let mut total_ns = 0u64;
        let mut per_prog = Vec::new();
        for (prog, (ns1, n1)) in &after {
            let (ns0, n0) = before.get(prog).copied().unwrap_or((0, 0));
            let (ns, n) = (ns1.saturating_sub(ns0), n1.saturating_sub(n0));
            total_ns += ns;
            if n > 0 {
                per_prog.push(format!(
                    "{prog}: {:.1} runs × {:.0} ns",
                    n as f64 / f64::from(CALLS),
                    ns as f64 / n as f64
                ));
            }
        }
        let per_call = total_ns as f64 / f64::from(CALLS);
        eprintln!(
            "bench: eBPF per connect(), {name}: {per_call:.0} ns [{}]",
            per_prog.join(", ")
        );
        points.push(Point {
            measure: "ebpf-ns-per-connect".into(),
            route: name.into(),
            value: per_call,
            unit: "ns".into(),
            direct: None,
            detail: format!(
                "{what}; {CALLS} calls; {}",
                if per_prog.is_empty() {
                    "no program ran".to_owned()
                } else {
                    per_prog.join(", ")
                }
            ),
        });
    }
    Ok(points)
}
