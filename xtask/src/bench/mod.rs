//! `cargo xtask bench`: keep-alive HTTPS requests through Airlock's
//! explicit proxy with header injection, against the same requests sent
//! directly to the same local upstream, in the same run.
//!
//! It installs what it needs (`oha`, Debian's `nginx-light`), builds the
//! daemon in release, starts nginx and `airlock serve` on fresh temporary
//! directories, checks that the injected key reaches nginx, runs each
//! scenario `--rounds` times alternating, and writes
//! `bench/results/<UTC>.json` and `bench/results/latest.json`. Everything it
//! started is stopped by PID at the end, on error and on Ctrl-C.

// The soak and the profile (`cargo xtask soak|profile`) reuse the harness's pieces.
pub(crate) mod gateway;
pub(crate) mod load;
pub(crate) mod procs;
pub(crate) mod report;
pub(crate) mod tools;
pub(crate) mod upstream;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd;
use gateway::Gateway;
use load::{Measured, Route};
use report::{Figures, Results, Scenario, Settings};
use upstream::Upstream;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    duration: f64,
    /// Times each scenario is measured (alternating); the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent connections to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    connections: Vec<u32>,
    /// Print each figure's ratio to this earlier results file.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// With --compare: compare this results file instead of running.
    #[arg(long, value_name = "FILE", requires = "compare")]
    current: Option<PathBuf>,
    /// Keep the temporary directory (configs, logs) after the run.
    #[arg(long)]
    keep: bool,
    /// Measure this `airlock` binary instead of building the workspace's.
    #[arg(long, value_name = "PATH")]
    airlock: Option<PathBuf>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let (Some(old), Some(new)) = (&args.compare, &args.current) {
        println!(
            "{}",
            report::compare(&report::load(new)?, &report::load(old)?)
        );
        return Ok(());
    }
    if args.rounds == 0 || args.connections.is_empty() || args.duration < 0.5 {
        bail!("need --rounds ≥ 1, at least one --connections and --duration ≥ 0.5");
    }
    // Read it first: a typo should not cost a whole run.
    let old = args.compare.as_deref().map(report::load).transpose()?;

    procs::install_signal_handler()?;
    let _cleanup = procs::CleanupGuard;

    let root = cmd::workspace_root()?;
    let oha = crate::timed("bench: oha", tools::ensure_oha)?;
    crate::timed("bench: nginx", tools::ensure_nginx)?;
    let airlock = match &args.airlock {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("no {}", path.display()))?,
        None => {
            crate::timed("bench: build airlock (release)", || {
                crate::host::build_airlock(true)
            })?;
            tools::target_dir()?.join("release").join("airlock")
        }
    };

    let (timestamp, file_stamp) = report::utc_now();
    let dir =
        std::env::temp_dir().join(format!("airlock-bench-{file_stamp}-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    eprintln!("bench: working in {}", dir.display());

    let outcome = measure(args, &oha, &airlock, &dir, &root, timestamp, &file_stamp);
    procs::cleanup();
    match &outcome {
        Ok(_) if !args.keep => {
            let _ = fs::remove_dir_all(&dir);
        }
        _ => eprintln!("bench: logs and configs kept in {}", dir.display()),
    }
    let results = outcome?;

    println!("\n{}", report::table(&results));
    for note in &results.notes {
        println!("note: {note}");
    }
    if let Some(old) = old {
        println!("\n{}", report::compare(&results, &old));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    args: &BenchArgs,
    oha: &PathBuf,
    airlock: &Path,
    dir: &Path,
    root: &Path,
    timestamp: String,
    file_stamp: &str,
) -> Result<Results> {
    let loadavg = fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let up = upstream::start(dir)?;
    eprintln!("bench: nginx on 127.0.0.1:{} (pid {})", up.port, up.pid);
    let gw = gateway::start(airlock, dir, &up.ca_pem, up.port)?;
    eprintln!(
        "bench: airlock proxy on {} (pid {}, postgres pid {})",
        gw.proxy_addr,
        gw.pid,
        gw.postgres_pid.map_or("?".into(), |p| p.to_string())
    );
    verify_injection(&gw, &up)?;

    let direct = Route::Direct {
        authorization: upstream::EXPECTED_AUTH.to_owned(),
        connect_to: format!(
            "{host}:{port}:127.0.0.1:{port}",
            host = upstream::HOST,
            port = up.port
        ),
    };
    let proxied = Route::Proxy {
        addr: gw.proxy_addr.clone(),
        proxy_authorization: gw.proxy_authorization(),
    };
    // The same URL both ways; the direct runs reach it with --connect-to.
    let url = format!(
        "https://{}:{}{}",
        upstream::HOST,
        up.port,
        upstream::BENCH_PATH
    );
    let duration = Duration::from_secs_f64(args.duration);
    let max_conns = args.connections.iter().copied().max().unwrap_or(1);
    let routes: [(&str, &Route, &str, &PathBuf); 2] = [
        ("direct", &direct, &url, &up.ca_pem),
        ("airlock-explicit", &proxied, &url, &gw.ca_cert),
    ];

    // Warm up: the leaf certificate, the upstream pool, caches, page faults.
    for (name, route, url, ca) in routes {
        eprintln!("bench: warm-up {name}");
        load::Run {
            oha,
            url,
            cacert: ca,
            route,
            connections: max_conns,
            duration: Duration::from_secs(2),
        }
        .go()
        .with_context(|| format!("warm-up of {name}"))?;
    }

    // Let the warm-up's audit records land before counting.
    thread::sleep(Duration::from_secs(1));
    let audit_before = gw.status()?["audit_events"].as_i64().unwrap_or(0);
    let mut runs: BTreeMap<(usize, u32), Vec<Figures>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..args.rounds {
        for &conns in &args.connections {
            // Alternate which goes first, so drift in the machine's load
            // does not always favour the same side.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let (name, route, url, ca) = routes[i];
                let figures = sample(&gw, &up, || {
                    load::Run {
                        oha,
                        url,
                        cacert: ca,
                        route,
                        connections: conns,
                        duration,
                    }
                    .go()
                })
                .with_context(|| format!("{name} at {conns} connections"))?;
                eprintln!(
                    "bench: round {}/{} {name:>16} c={conns:<3} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  gateway {} µs/req",
                    round + 1,
                    args.rounds,
                    figures.rps,
                    figures.p50_us,
                    figures.p99_us,
                    figures
                        .gateway_cpu_us_per_req
                        .map_or("–".into(), |v| format!("{v:.1}")),
                );
                runs.entry((i, conns)).or_default().push(figures);
            }
        }
    }
    eprintln!("bench: measured in {:.0}s", started.elapsed().as_secs_f64());

    let mut scenarios: Vec<Scenario> = runs
        .into_iter()
        .map(|((i, conns), runs)| Scenario {
            name: routes[i].0.to_owned(),
            connections: conns,
            median: report::median_of(&runs),
            runs,
            vs_direct: None,
        })
        .collect();
    scenarios.sort_by_key(|s| (s.connections, s.name != "direct"));
    report::compare_to_direct(&mut scenarios);

    // The audit writer batches every 50 ms; give it a moment.
    thread::sleep(Duration::from_secs(2));
    let mut notes = Vec::new();
    let proxied_requests: u64 = scenarios
        .iter()
        .filter(|s| s.name != "direct")
        .map(|s| s.median.requests)
        .sum();
    if let Ok(status) = gw.status() {
        let written = status["audit_events"].as_i64().unwrap_or(0) - audit_before;
        notes.push(format!(
            "audit rows written during the measured runs: {written} for {proxied_requests} \
             proxied requests answered (oha's deadline-aborted requests may add a few)"
        ));
    }
    notes.push(format!("load average at start: {loadavg}"));
    notes.push(format!(
        "load average at end: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    notes.push(format!("airlock binary: {}", airlock.display()));

    let results = Results {
        schema: report::SCHEMA,
        timestamp,
        git: tools::git_describe(root),
        machine: tools::machine(loadavg),
        versions: tools::versions(oha, airlock),
        settings: Settings {
            duration_s: args.duration,
            rounds: args.rounds,
            connections: args.connections.clone(),
            http_version: "1.1".to_owned(),
        },
        scenarios,
        notes,
    };
    let out_dir = root.join("bench").join("results");
    fs::create_dir_all(&out_dir)?;
    let json = serde_json::to_string_pretty(&results)? + "\n";
    let path = out_dir.join(format!("{file_stamp}.json"));
    fs::write(&path, &json)?;
    fs::write(out_dir.join("latest.json"), &json)?;
    eprintln!("bench: results in {}", path.display());
    Ok(results)
}

/// Runs `go` and attributes the CPU time the gateway, its PostgreSQL,
/// nginx and oha used meanwhile to the requests it answered.
fn sample(gw: &Gateway, up: &Upstream, go: impl FnOnce() -> Result<Measured>) -> Result<Figures> {
    let hz = procs::clock_ticks();
    let gw0 = procs::cpu_ticks(gw.pid);
    let pg0 = gw.postgres_pid.map(procs::tree_ticks);
    let ng0 = procs::tree_ticks(up.pid);
    let cl0 = procs::children_cpu_seconds();
    let m = go()?;
    let gw1 = procs::cpu_ticks(gw.pid);
    let pg1 = gw.postgres_pid.map(procs::tree_ticks);
    let ng1 = procs::tree_ticks(up.pid);
    let cl1 = procs::children_cpu_seconds();
    let per_req = |ticks: u64| ticks as f64 / hz * 1e6 / m.ok as f64;
    Ok(Figures {
        requests: m.ok,
        rps: m.rps,
        p50_us: m.p50_us,
        p99_us: m.p99_us,
        p999_us: m.p999_us,
        gateway_cpu_us_per_req: Some(per_req(gw1.saturating_sub(gw0))),
        postgres_cpu_us_per_req: pg0.zip(pg1).map(|(a, b)| per_req(b.saturating_sub(a))),
        upstream_cpu_us_per_req: per_req(ng1.saturating_sub(ng0)),
        client_cpu_us_per_req: (cl1 - cl0) * 1e6 / m.ok as f64,
    })
}

/// Once, with curl: the key the gateway injects is what nginx receives,
/// and nginx refuses the benchmark path without it.
fn verify_injection(gw: &Gateway, up: &Upstream) -> Result<()> {
    let echo = format!(
        "https://{}:{}{}",
        upstream::HOST,
        up.port,
        upstream::ECHO_PATH
    );
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--proxy"])
        .arg(format!("http://bot:{}@{}", gw.token, gw.proxy_addr))
        .arg("--cacert")
        .arg(&gw.ca_cert)
        .arg(&echo);
    let seen = cmd::probe(&mut c).unwrap_or_default();
    if seen.trim() != upstream::EXPECTED_AUTH {
        bail!(
            "through the gateway, nginx received Authorization {seen:?}, expected {:?}",
            upstream::EXPECTED_AUTH
        );
    }
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg("--cacert")
    .arg(&up.ca_pem)
    .arg(format!(
        "https://127.0.0.1:{}{}",
        up.port,
        upstream::BENCH_PATH
    ));
    let code = cmd::probe(&mut c).unwrap_or_default();
    if code.trim() != "401" {
        bail!("nginx answered {code:?} without the key, expected 401");
    }
    eprintln!(
        "bench: verified: nginx receives {:?} through the gateway, 401 without it",
        upstream::EXPECTED_AUTH
    );
    Ok(())
}
