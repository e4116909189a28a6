//! The oha runs of one load: every route `--rounds` times, alternating,
//! with the CPU time of each process sampled around each run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::load::{self, Measured, Mode};
use super::procs;
use super::report::{self, Figures, Scenario};
use super::route::Route;
use super::upstream::Upstream;

/// Every route `--rounds` times at one load, alternating the order. A
/// peer that answers nothing in a run is left out of this load, with a
/// note saying so; Airlock and direct must answer.
pub fn run_load(
    oha: &Path,
    rounds: u32,
    up: &Upstream,
    routes: &[&Route],
    mode: Mode,
    conns: u32,
    duration: Duration,
) -> Result<(Vec<Scenario>, Vec<String>, u64)> {
    let mut runs: BTreeMap<usize, Vec<Figures>> = BTreeMap::new();
    let mut gave_up: BTreeMap<usize, String> = BTreeMap::new();
    // A short warm-up at this very load first: 256 connections need 256
    // upstream connections in Airlock's pool, which the start's warm-up at
    // 16 did not make. A peer's failure here shows again in its runs.
    let mut warm_up_airlock = 0;
    for route in routes {
        let warm = load::Run {
            oha,
            route,
            port: up.port,
            mode,
            connections: conns,
            duration: Duration::from_secs(1),
        }
        .go();
        match warm {
            Ok(m) if route.name.starts_with("airlock") => warm_up_airlock += m.ok,
            Ok(_) => {}
            Err(_) if route.is_peer() => {}
            Err(e) => {
                return Err(e.context(format!(
                    "warm-up of {} {} at {conns} connections",
                    route.name,
                    mode.kind()
                )));
            }
        }
    }
    for round in 0..rounds {
        // Alternate which goes first, so drift in the machine's load does
        // not always favour the same side.
        let mut order: Vec<usize> = (0..routes.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let route = routes[i];
            if gave_up.contains_key(&i) {
                continue;
            }
            let figures = sample(up, route, || {
                load::Run {
                    oha,
                    route,
                    port: up.port,
                    mode,
                    connections: conns,
                    duration,
                }
                .go()
            });
            let figures = match figures {
                Err(e) if e.is::<load::NothingAnswered>() && route.is_peer() => {
                    let note = format!(
                        "{} answered no request within {:.0} s at {conns} connections ({}); left out",
                        route.name,
                        duration.as_secs_f64(),
                        mode.kind()
                    );
                    eprintln!("bench: {note}");
                    gave_up.insert(i, note);
                    continue;
                }
                other => other.with_context(|| {
                    format!("{} {} at {conns} connections", route.name, mode.kind())
                })?,
            };
            eprintln!(
                "bench: round {}/{} {:>15} {:>19} c={conns:<3} {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  proxy {} µs/req",
                round + 1,
                rounds,
                mode.kind(),
                route.name,
                figures.rps,
                figures.p50_us,
                figures.p99_us,
                figures
                    .gateway_cpu_us_per_req
                    .map_or("–".into(), |v| format!("{v:.1}")),
            );
            runs.entry(i).or_default().push(figures);
        }
    }
    for i in gave_up.keys() {
        runs.remove(i);
    }
    let scenarios = runs
        .into_iter()
        .map(|(i, runs)| Scenario {
            name: routes[i].name.to_owned(),
            kind: mode.kind().to_owned(),
            connections: conns,
            median: report::median_of(&runs),
            runs,
            vs_direct: None,
        })
        .collect();
    Ok((scenarios, gave_up.into_values().collect(), warm_up_airlock))
}

/// Runs `go` and attributes the CPU time the route's proxy (and the
/// gateway's PostgreSQL), nginx and oha used meanwhile to the requests it
/// answered.
pub(super) fn sample(
    up: &Upstream,
    route: &Route,
    go: impl FnOnce() -> Result<Measured>,
) -> Result<Figures> {
    let hz = procs::clock_ticks();
    let proxy_ticks = || {
        route.proxy.map(|w| {
            if w.tree {
                procs::tree_ticks(w.pid)
            } else {
                procs::cpu_ticks(w.pid)
            }
        })
    };
    let px0 = proxy_ticks();
    let pg0 = route.store_pid.map(procs::tree_ticks);
    let ng0 = procs::tree_ticks(up.pid);
    let cl0 = procs::children_cpu_seconds();
    let m = go()?;
    let px1 = proxy_ticks();
    let pg1 = route.store_pid.map(procs::tree_ticks);
    let ng1 = procs::tree_ticks(up.pid);
    let cl1 = procs::children_cpu_seconds();
    let per_req = |ticks: u64| ticks as f64 / hz * 1e6 / m.ok as f64;
    Ok(Figures {
        requests: m.ok,
        rps: m.rps,
        p50_us: m.p50_us,
        p99_us: m.p99_us,
        p999_us: m.p999_us,
        gateway_cpu_us_per_req: px0.zip(px1).map(|(a, b)| per_req(b.saturating_sub(a))),
        postgres_cpu_us_per_req: pg0.zip(pg1).map(|(a, b)| per_req(b.saturating_sub(a))),
        upstream_cpu_us_per_req: per_req(ng1.saturating_sub(ng0)),
        client_cpu_us_per_req: (cl1 - cl0) * 1e6 / m.ok as f64,
    })
}
