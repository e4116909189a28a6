//! `cargo xtask soak [--requests N]`: a long run of keep-alive HTTPS
//! requests through the explicit proxy with the key injected (oha bounded
//! by `-n N` and by a time limit), while the daemon's resident memory
//! (`VmRSS`) and open file descriptors are sampled every second. It fails
//! if, after warm-up, memory grows by more than a margin or descriptors
//! grow at all (beyond the load's own connections), if any request is
//! not answered 200 (nginx refuses requests without the key), or if the
//! run overruns its time limit.
//!
//! The pieces are the benchmark's (`xtask/src/bench/`): nginx upstream,
//! oha, the release daemon, the process tracking that stops all of them by
//! PID however the run ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::bench::load;
use crate::bench::{gateway, procs, tools, upstream};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Requests to send through the gateway.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Fail if the requests take longer than this.
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    time_limit: u64,
    /// Seconds of the run that count as warm-up (caches, pools, allocator
    /// arenas filling up) before memory must stay flat.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    warm_up: u64,
    /// How much resident memory may grow after warm-up.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    rss_margin: u64,
    /// Keep the temporary directory (configs, logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Soak this `airlock` binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    airlock: Option<PathBuf>,
}

/// Descriptors the daemon may open after warm-up without leaking: its
/// database pool and the upstream pool open connections lazily, up to
/// their bounds.
const FD_SLACK: usize = 8;

/// One sample of the daemon.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
}

pub fn run(args: &SoakArgs) -> Result<()> {
    if args.requests == 0 || args.connections == 0 || args.time_limit == 0 {
        bail!("need --requests, --connections and --time-limit ≥ 1");
    }
    procs::install_signal_handler()?;
    let _cleanup = procs::CleanupGuard;
    let oha = crate::timed("soak: oha", tools::ensure_oha)?;
    crate::timed("soak: packages", tools::ensure_packages)?;
    let airlock = tools::release_airlock(args.airlock.as_deref(), "soak")?;
    let dir = std::env::temp_dir().join(format!("airlock-soak-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    eprintln!("soak: working in {}", dir.display());
    let outcome = soak(args, &oha, &airlock, &dir);
    procs::cleanup();
    match &outcome {
        Ok(()) if !args.keep => {
            let _ = fs::remove_dir_all(&dir);
        }
        _ => eprintln!("soak: logs and configs kept in {}", dir.display()),
    }
    outcome
}

fn soak(args: &SoakArgs, oha: &PathBuf, airlock: &Path, dir: &Path) -> Result<()> {
    let up = upstream::start(dir)?;
    let gw = gateway::start(
        airlock,
        dir,
        &up.ca_pem,
        &[up.port],
        gateway::Interception::Off,
    )?;
    eprintln!(
        "soak: nginx on 127.0.0.1:{} (pid {}), airlock proxy on {} (pid {})",
        up.port, up.pid, gw.proxy_addr, gw.pid
    );
    let route = gw.explicit_route();
    let run = load::Run {
        oha,
        route: &route,
        port: up.port,
        mode: load::Mode::KeepAlive,
        connections: args.connections,
        duration: Duration::from_secs(args.time_limit),
    };
    let idle_fds = fd_count(gw.pid);
    let mut command = run.counted_command(args.requests);
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    eprintln!(
        "soak: {} requests over {} connections (limit {} s)",
        args.requests, args.connections, args.time_limit
    );
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start `{}`", crate::cmd::display(&command)))?;
    procs::track("oha", child.id(), libc::SIGKILL, procs::ORDER_GATEWAY);
    let stdout = child.stdout.take().context("oha's standard output")?;
    let (tx, rx) = mpsc::channel();
    // Read oha's JSON as it comes, so a full pipe never stalls it.
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut out);
        let _ = tx.send(());
        out
    });

    let started = Instant::now();
    let limit = Duration::from_secs(args.time_limit);
    let mut samples = Vec::new();
    let mut next = started;
    let finished = loop {
        if let Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) =
            rx.recv_timeout(next.saturating_duration_since(Instant::now()))
        {
            break true;
        }
        if started.elapsed() > limit {
            break false;
        }
        samples.push(Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(gw.pid),
            fds: fd_count(gw.pid),
        });
        if samples.len() % 10 == 0 {
            let s = samples[samples.len() - 1];
            eprintln!(
                "soak: {:>4.0}s  RSS {:>7} KiB  fds {:>5}",
                s.at.as_secs_f64(),
                s.rss_kib,
                s.fds
            );
        }
        next += Duration::from_secs(1);
    };
    let elapsed = started.elapsed();
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "{} requests were not done within {} s (raise --time-limit, or fewer --requests)",
            args.requests,
            args.time_limit
        );
    }
    let status = child.wait()?;
    let out = reader.join().map_err(|_| anyhow::anyhow!("oha's reader"))?;
    if !status.success() {
        bail!("oha failed ({status})");
    }
    let json: serde_json::Value = serde_json::from_slice(&out).context("oha printed no JSON")?;
    let measured = load::parse(&json).context("in oha's results")?;
    if measured.ok != args.requests {
        bail!(
            "{} of {} requests were answered 200",
            measured.ok,
            args.requests
        );
    }
    // The load's connections closed: the daemon's descriptors settle.
    let settled_deadline = Instant::now() + Duration::from_secs(15);
    let during = samples.last().map_or(0, |s| s.fds);
    let mut settled = fd_count(gw.pid);
    while settled + args.connections as usize > during && Instant::now() < settled_deadline {
        thread::sleep(Duration::from_millis(250));
        settled = fd_count(gw.pid);
    }
    let rss_after = rss_kib(gw.pid);
    let verdict = judge(&samples, args, idle_fds, settled);
    println!(
        "\nsoak: {} requests in {:.0} s ({:.0} req/s), p50 {:.0} µs, p99 {:.0} µs",
        measured.ok,
        elapsed.as_secs_f64(),
        measured.ok as f64 / elapsed.as_secs_f64(),
        measured.p50_us,
        measured.p99_us
    );
    println!("{}", verdict.summary);
    println!("soak: RSS {rss_after} KiB once the load had stopped");
    if verdict.failures.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        bail!("soak failed: {}", verdict.failures.join("; "))
    }
}

struct Verdict {
    summary: String,
    failures: Vec<String>,
}

/// Memory and descriptors after warm-up, against the end of warm-up.
fn judge(samples: &[Sample], args: &SoakArgs, idle_fds: usize, settled_fds: usize) -> Verdict {
    let warm_up = Duration::from_secs(args.warm_up);
    let mut failures = Vec::new();
    let base = samples.iter().rev().find(|s| s.at <= warm_up).copied();
    let after: Vec<Sample> = samples.iter().filter(|s| s.at > warm_up).copied().collect();
    let (Some(base), Some(last)) = (base, after.last().copied()) else {
        return Verdict {
            summary: format!(
                "soak: {} samples: too short a run to judge after a {} s warm-up",
                samples.len(),
                args.warm_up
            ),
            failures: vec!["the run ended before or right after warm-up: more --requests".into()],
        };
    };
    let max_rss = after.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let max_fds = after.iter().map(|s| s.fds).max().unwrap_or(0);
    let mut rss: Vec<u64> = after.iter().map(|s| s.rss_kib).collect();
    rss.sort_unstable();
    let median_rss = rss[rss.len() / 2];
    let margin = args.rss_margin * 1024;
    if max_rss > base.rss_kib + margin {
        failures.push(format!(
            "resident memory grew from {} KiB at the end of warm-up to {max_rss} KiB (margin {} MiB)",
            base.rss_kib, args.rss_margin
        ));
    }
    // While the load runs the same connections stay open: a rise beyond
    // the pools' lazily opened connections is a leak.
    if max_fds > base.fds + FD_SLACK {
        failures.push(format!(
            "open descriptors grew from {} at the end of warm-up to {max_fds}",
            base.fds
        ));
    }
    // Afterwards the load's own connections are gone: fewer than while it
    // ran (the pools keep what they opened, up to their bounds).
    if settled_fds > base.fds {
        failures.push(format!(
            "{settled_fds} descriptors open after the run, {} while it ran",
            base.fds
        ));
    }
    let summary = format!(
        "soak: {} samples, 1 per second; after the {} s warm-up: RSS {} KiB at its end, then \
         median {median_rss}, max {max_rss}, last {} KiB (+{} KiB); fds {} at its end, max \
         {max_fds}, last {}; fds idle before {idle_fds}, after {settled_fds}",
        samples.len(),
        args.warm_up,
        base.rss_kib,
        last.rss_kib,
        last.rss_kib.saturating_sub(base.rss_kib),
        base.fds,
        last.fds
    );
    Verdict { summary, failures }
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SoakArgs {
        SoakArgs {
            requests: 1,
            connections: 4,
            time_limit: 1,
            warm_up: 2,
            rss_margin: 1,
            keep: false,
            airlock: None,
        }
    }

    fn samples(rss: &[u64], fds: &[usize]) -> Vec<Sample> {
        rss.iter()
            .zip(fds)
            .enumerate()
            .map(|(i, (&rss_kib, &fds))| Sample {
                at: Duration::from_secs(i as u64 + 1),
                rss_kib,
                fds,
            })
            .collect()
    }

    #[test]
    fn flat_memory_and_descriptors_pass() {
        let s = samples(
            &[9000, 10_000, 10_200, 10_100, 10_300],
            &[30, 40, 40, 40, 40],
        );
        let v = judge(&s, &args(), 20, 36);
        assert!(v.failures.is_empty(), "{:?}", v.failures);
    }

    #[test]
    fn growth_after_warm_up_fails() {
        let s = samples(&[9000, 10_000, 10_500, 11_200], &[30, 40, 49, 40]);
        let v = judge(&s, &args(), 20, 41);
        assert_eq!(v.failures.len(), 3, "{:?}", v.failures);
        assert!(v.failures[0].contains("resident memory"));
        assert!(v.failures[1].contains("descriptors grew"));
        assert!(v.failures[2].contains("after the run"));
    }

    #[test]
    fn too_short_a_run_is_not_judged_a_pass() {
        let v = judge(&samples(&[1], &[1]), &args(), 1, 1);
        assert!(!v.failures.is_empty());
    }
}
