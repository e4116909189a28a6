//! `cargo xtask bench`: HTTPS through Airlock (explicit proxy, and
//! transparent eBPF interception from a host process and from a Docker
//! container, all injecting the key), mitmproxy and
//! squid (each injecting the same header), against the same requests sent
//! directly to the same local upstream, in the same run.
//!
//! It installs what it needs (`oha` with cargo; Debian's `nginx-light`,
//! `squid-openssl` and `bpftool`; a virtual environment under `target/`
//! with mitmproxy and matplotlib from PyPI), builds the eBPF object and the
//! daemon in release, starts nginx, an SSE server, `airlock serve` and the
//! peers on fresh temporary directories, checks that every route delivers
//! the key, then measures:
//!
//! - keep-alive HTTP/1.1 at each `--connections`, new connections (TLS per
//!   request) and HTTP/2 multiplexed, each route `--rounds` times
//!   alternating ([`runs`], [`load`]);
//! - handshake cost with a cached leaf and the first mint ([`mint`]);
//! - SSE time to first event ([`sse`]);
//! - the gateway's RSS per idle connection ([`idle`]);
//! - the eBPF programs' cost per `connect()` ([`ebpf_cost`]);
//! - the gateway's CPU per request by kind of secret: a static one, the
//!   same echoed by the upstream (its response body scrubbed), and an
//!   OAuth2 secret with a cached token ([`secret_cost`]);
//! - how long a rule change takes to reach the hot path ([`rule_reach`]);
//! - a new container's first connection ([`container`], whose route runs
//!   the same oha loads from inside a container of the agent, when Docker
//!   can run).
//!
//! Routes are [`route::Route`]s (one per peer module); the targets table is
//! [`targets`]. It writes `bench/results/<UTC>.json` (and `latest.json`) and the chart
//! `bench/results/<UTC>.png` (and `latest.png`). Everything it started is
//! stopped by PID, and its cgroups, pins and sysctl undone, at the end, on
//! error and on Ctrl-C.

// The soak and the profile (`cargo xtask soak|profile`) reuse the harness's
// gateway, load generator, process tracking and upstream.
mod container;
mod ebpf_cost;
pub(crate) mod gateway;
mod idle;
mod intercept;
pub(crate) mod load;
mod mint;
mod mitmproxy;
mod nginx_peer;
pub(crate) mod procs;
pub(crate) mod report;
pub(crate) mod route;
mod rule_reach;
mod runs;
mod secret_cost;
mod squid;
mod sse;
mod targets;
pub(crate) mod tools;
pub(crate) mod upstream;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cmd;
use gateway::Gateway;
use load::Mode;
use report::{Point, Results, Settings};
use route::Route;
use upstream::Upstream;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds each measured run lasts.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    duration: f64,
    /// Times each scenario is measured (alternating); the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent keep-alive connections to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    connections: Vec<u32>,
    /// Connections for the new-connection runs (a TLS handshake per request).
    #[arg(long, default_value_t = 16, value_name = "N")]
    new_connections: u32,
    /// HTTP/2 runs: connections × streams in flight on each.
    #[arg(long, default_value = "4x16", value_name = "CxP")]
    http2: String,
    /// Idle connections held for the memory figure.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    idle: u32,
    /// Leave out mitmproxy and squid.
    #[arg(long)]
    no_peers: bool,
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

/// `CxP` of `--http2`.
fn parse_http2(text: &str) -> Result<(u32, u32)> {
    let parsed = text
        .split_once('x')
        .and_then(|(c, p)| Some((c.trim().parse().ok()?, p.trim().parse().ok()?)));
    match parsed {
        Some((c, p)) if c > 0 && p > 0 => Ok((c, p)),
        _ => bail!("--http2 takes CONNECTIONSxSTREAMS, e.g. 4x16; got {text:?}"),
    }
}

/// What the tools and the build gave.
struct Tools {
    oha: PathBuf,
    /// The venv's interpreter: mitmproxy, the SSE server, the charts.
    python: PathBuf,
    /// The interpreter for the clients that run through `airlock run` as
    /// the agent's own user, who cannot enter root's venv or pyenv; they
    /// need only the standard library. See [`tools::agent_python`].
    agent_python: PathBuf,
    airlock: PathBuf,
    root: PathBuf,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let (Some(old), Some(new)) = (&args.compare, &args.current) {
        println!(
            "{}",
            report::compare(&report::load(new)?, &report::load(old)?)
        );
        return Ok(());
    }
    if args.rounds == 0
        || args.connections.is_empty()
        || args.connections.contains(&0)
        || args.duration < 0.5
        || args.new_connections == 0
    {
        bail!("need --rounds ≥ 1, connection counts ≥ 1 and --duration ≥ 0.5");
    }
    parse_http2(&args.http2)?;
    // Read it first: a typo should not cost a whole run.
    let old = args.compare.as_deref().map(report::load).transpose()?;

    let wall = Instant::now();
    procs::install_signal_handler()?;
    let _cleanup = procs::CleanupGuard;
    raise_nofile();

    let root = cmd::workspace_root()?;
    let oha = crate::timed("bench: oha", tools::ensure_oha)?;
    crate::timed("bench: Debian packages", tools::ensure_packages)?;
    let python = crate::timed("bench: Python venv", tools::ensure_venv)?;
    let airlock = tools::release_airlock(args.airlock.as_deref(), "bench")?;
    let agent_python = tools::agent_python(&python);
    let tools = Tools {
        oha,
        python,
        agent_python,
        airlock,
        root,
    };

    let (timestamp, file_stamp) = report::utc_now();
    let dir =
        std::env::temp_dir().join(format!("airlock-bench-{file_stamp}-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    eprintln!("bench: working in {}", dir.display());

    let outcome = measure(args, &tools, &dir, timestamp, &file_stamp);
    procs::cleanup();
    match &outcome {
        Ok(_) if !args.keep => {
            let _ = fs::remove_dir_all(&dir);
        }
        _ => eprintln!("bench: logs and configs kept in {}", dir.display()),
    }
    let results = outcome?;

    println!("\n{}", report::table(&results));
    println!("{}", targets::table(&results));
    for note in &results.notes {
        println!("note: {note}");
    }
    if let Some(old) = old {
        println!("\n{}", report::compare(&results, &old));
    }
    eprintln!(
        "bench: whole run (tools, build, measurement) took {:.0}s",
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Raises our open-file limit to its hard limit: the children (the
/// daemon, nginx, the idle-connection holder) inherit it. The daemon does
/// not raise its own.
#[allow(unsafe_code)]
fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Every route measured: direct first, then Airlock's, then the peers.
struct Routes {
    all: Vec<Route>,
}

impl Routes {
    fn direct(&self) -> &Route {
        &self.all[0]
    }

    fn named(&self, name: &str) -> Option<&Route> {
        self.all.iter().find(|r| r.name == name)
    }
}

fn measure(
    args: &BenchArgs,
    tools: &Tools,
    dir: &Path,
    timestamp: String,
    file_stamp: &str,
) -> Result<Results> {
    let loadavg = fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let (root, python) = (&tools.root, &tools.python);
    let up = upstream::start(dir)?;
    eprintln!("bench: nginx on 127.0.0.1:{} (pid {})", up.port, up.pid);
    let sse_server = sse::start(python, root, dir, &up)?;
    let gw = gateway::start(
        &tools.airlock,
        dir,
        &up.ca_pem,
        &[up.port, sse_server.port],
        gateway::Interception::Ebpf,
    )?;
    eprintln!(
        "bench: airlock proxy on {} (pid {}, postgres pid {}), intercepting ports {} and {} for {}",
        gw.proxy_addr,
        gw.pid,
        gw.postgres_pid.map_or("?".into(), |p| p.to_string()),
        up.port,
        sse_server.port,
        gw.isolation.agents
    );
    let mut all = vec![
        Route::direct(up.ca_pem.clone()),
        gw.explicit_route(),
        gw.transparent_route(),
    ];
    let mut early_notes = Vec::new();
    let docker = match container::start(&tools.oha, &gw.isolation.agents) {
        Ok(d) => {
            all.push(d.route(&gw, &tools.oha));
            Some(d)
        }
        Err(why) => {
            let note = container::skipped_note(&why);
            eprintln!("bench: {note}");
            early_notes.push(note);
            None
        }
    };
    // The floor for this work: cheap to run, so in every run.
    all.push(nginx_peer::start(dir, &up)?);
    if !args.no_peers {
        all.push(mitmproxy::start(python, root, dir, &up)?);
        all.push(squid::start(dir, &up)?);
    }
    let routes = Routes { all };
    verify_injection(&routes, &up)?;
    let mut points = Vec::new();
    if args.idle > 0 {
        let explicit = routes
            .named("airlock-explicit")
            .context("no explicit route")?;
        let transparent = routes
            .named("airlock-transparent")
            .context("no transparent route")?;
        // Half as many transparent ones, held beside the explicit ones: the
        // gateway's open-file limit is the host's 20,000.
        points = idle::measure(
            &tools.agent_python,
            root,
            &[(explicit, args.idle), (transparent, args.idle.div_ceil(2))],
            up.port,
        )?;
    }

    let duration = Duration::from_secs_f64(args.duration);
    // Warm up: leaves, upstream pools, caches, page faults. At most 16
    // connections: mitmproxy answers nothing within 2 s to 256 new ones.
    let max_conns = args.connections.iter().copied().max().unwrap_or(1).min(16);
    for route in &routes.all {
        eprintln!("bench: warm-up {}", route.name);
        load::Run {
            oha: &tools.oha,
            route,
            port: up.port,
            mode: Mode::KeepAlive,
            connections: max_conns,
            duration: Duration::from_secs(2),
        }
        .go()
        .with_context(|| format!("warm-up of {}", route.name))?;
    }

    // Let the warm-up's audit records land before counting.
    thread::sleep(Duration::from_secs(1));
    let audit_before = gw.status()?["audit_events"].as_i64().unwrap_or(0);
    let (h2_conns, h2_parallel) = parse_http2(&args.http2)?;
    let mut loads: Vec<(Mode, u32)> = args
        .connections
        .iter()
        .map(|&c| (Mode::KeepAlive, c))
        .collect();
    loads.push((Mode::NewConnections, args.new_connections));
    loads.push((
        Mode::Http2 {
            parallel: h2_parallel,
        },
        h2_conns,
    ));
    let started = Instant::now();
    let mut scenarios = Vec::new();
    let mut notes = early_notes;
    let mut warm_up_requests = 0;
    for (mode, conns) in loads {
        // squid speaks no HTTP/2 to its clients.
        let runnable: Vec<&Route> = routes
            .all
            .iter()
            .filter(|r| !(matches!(mode, Mode::Http2 { .. }) && r.name == "squid"))
            .collect();
        let (done, missing, warm) = runs::run_load(
            &tools.oha,
            args.rounds,
            &up,
            &runnable,
            mode,
            conns,
            duration,
        )?;
        scenarios.extend(done);
        notes.extend(missing);
        warm_up_requests += warm;
    }
    eprintln!(
        "bench: oha runs took {:.0}s",
        started.elapsed().as_secs_f64()
    );
    scenarios.sort_by_key(|s| {
        (
            s.kind != "keepalive",
            s.kind.clone(),
            s.connections,
            routes.all.iter().position(|r| r.name == s.name),
        )
    });
    report::compare_to_direct(&mut scenarios);

    // The audit writer batches every 50 ms; give it a moment.
    thread::sleep(Duration::from_secs(2));
    let proxied_requests: u64 = scenarios
        .iter()
        .filter(|s| s.name.starts_with("airlock"))
        .map(|s| s.median.requests)
        .sum();
    if let Ok(status) = gw.status() {
        let written = status["audit_events"].as_i64().unwrap_or(0) - audit_before;
        notes.push(format!(
            "audit rows written during the oha runs: {written} for {} requests answered \
             through Airlock ({proxied_requests} measured, {warm_up_requests} in the warm-ups \
             before each load; oha's deadline-aborted requests may add a few)",
            proxied_requests + warm_up_requests
        ));
    }

    points.extend(measure_points(tools, &gw, &up, &sse_server, &routes)?);
    if let Some(d) = &docker {
        points.extend(d.first_connection(&gw, up.port)?);
    }

    notes.push(format!("load average at start: {loadavg}"));
    notes.push(format!(
        "load average at end: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    notes.push(format!("airlock binary: {}", tools.airlock.display()));
    notes.push(
        "CPU placement: not pinned; oha, the proxy, nginx and PostgreSQL share the machine's cores, \
         so read ratios to direct, not absolutes"
            .to_owned(),
    );

    let results = Results {
        schema: report::SCHEMA,
        timestamp,
        git: tools::git_describe(root),
        machine: tools::machine(loadavg),
        versions: tools::versions(&tools.oha, &tools.airlock, python),
        settings: Settings {
            duration_s: args.duration,
            rounds: args.rounds,
            connections: args.connections.clone(),
            http_version: "1.1 (keepalive, new-connections), 2 (http2)".to_owned(),
            new_connections: args.new_connections,
            http2: args.http2.clone(),
            idle: args.idle,
        },
        scenarios,
        points,
        notes,
    };
    let out_dir = root.join("bench").join("results");
    fs::create_dir_all(&out_dir)?;
    let json = serde_json::to_string_pretty(&results)? + "\n";
    let path = out_dir.join(format!("{file_stamp}.json"));
    fs::write(&path, &json)?;
    fs::write(out_dir.join("latest.json"), &json)?;
    eprintln!("bench: results in {}", path.display());
    chart(python, root, &path, &out_dir, file_stamp)?;
    Ok(results)
}

/// The PNG of the results, and a copy as `latest.png`.
fn chart(python: &Path, root: &Path, json: &Path, out_dir: &Path, stamp: &str) -> Result<()> {
    let png = out_dir.join(format!("{stamp}.png"));
    cmd::run(
        Command::new(python)
            .arg(root.join("bench/py/chart.py"))
            .arg(json)
            .arg(&png),
    )?;
    fs::copy(&png, out_dir.join("latest.png"))?;
    eprintln!("bench: chart in {}", png.display());
    Ok(())
}

/// The figures that are not oha runs.
fn measure_points(
    tools: &Tools,
    gw: &Gateway,
    up: &Upstream,
    sse_server: &sse::SseServer,
    routes: &Routes,
) -> Result<Vec<Point>> {
    let root = &tools.root;
    let transparent = routes
        .named("airlock-transparent")
        .context("no transparent route")?;
    let explicit = routes
        .named("airlock-explicit")
        .context("no explicit route")?;
    let cgroup_only = gw.cgroup_only_route();
    let mut points = mint::measure(gw, up, routes.direct(), [explicit, &cgroup_only])?;
    // The SSE client is the host's Python environment, not the image's.
    let proxied: Vec<&Route> = routes
        .all
        .iter()
        .filter(|r| !r.is_direct() && r.name != container::ROUTE && r.name != nginx_peer::ROUTE)
        .collect();
    points.extend(sse::measure(
        &tools.agent_python,
        root,
        sse_server,
        routes.direct(),
        &proxied,
    )?);
    points.extend(ebpf_cost::measure(
        &tools.agent_python,
        root,
        gw,
        routes.direct(),
        transparent,
        up.port,
    )?);
    points.extend(secret_cost::measure(&tools.oha, up, explicit)?);
    points.extend(rule_reach::measure(
        &tools.agent_python,
        root,
        gw,
        explicit,
        up.port,
    )?);
    Ok(points)
}

/// Once per route, with curl: nginx receives exactly the key (sent by the
/// client directly, injected by every proxy), and refuses the benchmark
/// path without it. Airlock hands nginx's echo of the key back to the
/// client as the secret's placeholder (its response scrubbing): seeing
/// that proves the key was injected and did not come back.
fn verify_injection(routes: &Routes, up: &Upstream) -> Result<()> {
    for route in &routes.all {
        let mut c = route.command("curl");
        c.args(route.curl_args(up.port, upstream::ECHO_PATH));
        let out = procs::output_within(&mut c, Duration::from_secs(30))?;
        let seen = String::from_utf8_lossy(&out.stdout);
        let expected = if route.name.starts_with("airlock") {
            upstream::SCRUBBED_AUTH
        } else {
            upstream::EXPECTED_AUTH
        };
        if !out.status.success() || seen.trim() != expected {
            bail!(
                "via {}, the echo of nginx's Authorization was {seen:?}, expected {expected:?} (`{}`: {}; {})",
                route.name,
                procs::shown(&c),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
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
        "bench: verified: nginx receives {:?} by every route ({}), 401 without it",
        upstream::EXPECTED_AUTH,
        routes
            .all
            .iter()
            .map(|r| r.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_http2;

    #[test]
    fn http2_load_is_connections_by_streams() {
        assert_eq!(parse_http2("4x16").unwrap(), (4, 16));
        for bad in ["4", "0x16", "4x0", "x", "4x-1", "ax2"] {
            assert!(parse_http2(bad).is_err(), "{bad}");
        }
    }
}
