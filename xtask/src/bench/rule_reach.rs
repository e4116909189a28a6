//! How long a rule change takes to reach the hot path (issue 21: "rule
//! changes still reach the hot path within 100 ms"): `bench/py/rule_reach.py`
//! adds a block rule with the real CLI, then asks for its path over one
//! kept-alive connection through the explicit proxy until the gateway
//! refuses it, and removes the rule; [`ROUNDS`] times. What is measured
//! starts when `airlock rule add` has returned (the change is committed)
//! and ends with the first 403: PostgreSQL's notification, the snapshot's
//! reload from the database and its atomic swap. The poll's own resolution
//! is one request on the connection (well under a millisecond here).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::gateway::Gateway;
use super::procs;
use super::report::{Point, median};
use super::route::Route;

const ROUNDS: u32 = 20;

pub fn measure(
    python: &Path,
    root: &Path,
    gw: &Gateway,
    explicit: &Route,
    port: u16,
) -> Result<Vec<Point>> {
    let mut c = explicit.command(python);
    c.arg(root.join("bench/py/rule_reach.py"))
        .args(explicit.py_args(port))
        .arg("--airlock")
        .arg(&gw.binary)
        .arg("--data-dir")
        .arg(&gw.data_dir)
        .args(["--rounds", &ROUNDS.to_string()]);
    let out = procs::output_within(&mut c, Duration::from_secs(300))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            procs::shown(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`{}` printed no JSON", procs::shown(&c)))?;
    let list = |key: &str| -> Result<Vec<f64>> {
        v[key]
            .as_array()
            .with_context(|| format!("rule_reach.py printed no {key}"))
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
    };
    let reach = list("reach_ms")?;
    let cli = list("cli_ms")?;
    // A round whose first request was already refused measured one
    // request's time, an upper bound of the reach itself.
    let at_once = list("polls")?.iter().filter(|&&n| n <= 1.0).count();
    let max = reach.iter().copied().fold(0.0, f64::max);
    let p50 = median(reach);
    let cli_p50 = median(cli);
    eprintln!(
        "bench: a rule change reaches the hot path in {p50:.1} ms (median of {ROUNDS}, max \
         {max:.1} ms; the first request after the CLI was already refused in {at_once}) after \
         `airlock rule add` returns ({cli_p50:.0} ms)"
    );
    let detail = |what: &str| {
        format!(
            "{what} of {ROUNDS}: `airlock rule add --block` returned → first request refused, \
             one kept-alive connection polling (refused at the first request in {at_once} \
             rounds: then an upper bound); the CLI itself took {cli_p50:.0} ms (median)"
        )
    };
    Ok(vec![
        Point {
            measure: "rule-reach-p50".into(),
            route: explicit.name.into(),
            value: p50,
            unit: "ms".into(),
            direct: None,
            detail: detail("median"),
        },
        Point {
            measure: "rule-reach-max".into(),
            route: explicit.name.into(),
            value: max,
            unit: "ms".into(),
            direct: None,
            detail: detail("slowest"),
        },
    ])
}
