//! What scrubbing response bodies costs (issue #18, item 5): the gateway's
//! CPU per request through the explicit proxy for the benchmark path,
//! whose small JSON answer holds no key (the body is scanned, nothing
//! replaced), against nginx's `/echo-auth`, whose body is the injected
//! `Authorization` value itself (scanned and replaced by the placeholder
//! on every request). Both inject the same static header secret; the
//! runs alternate, `ROUNDS` of each, in the same run as everything else.

use std::time::Duration;

use anyhow::{Context, Result};

use super::load::{self, Mode};
use super::report::{Point, median};
use super::route::Route;
use super::runs::sample;
use super::upstream::{self, Upstream};

const ROUNDS: usize = 3;
const CONNECTIONS: u32 = 16;
const DURATION: Duration = Duration::from_secs(3);

pub fn measure(oha: &std::path::Path, up: &Upstream, explicit: &Route) -> Result<Vec<Point>> {
    let mut per_path: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let paths = [upstream::BENCH_PATH, upstream::ECHO_PATH];
    for round in 0..ROUNDS {
        let mut order = [0, 1];
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let run = load::Run {
                oha,
                route: explicit,
                port: up.port,
                mode: Mode::KeepAlive,
                connections: CONNECTIONS,
                duration: DURATION,
            };
            let figures = sample(up, explicit, || run.go_at(paths[i]))
                .with_context(|| format!("scrub cost, {}", paths[i]))?;
            per_path[i].push(
                figures
                    .gateway_cpu_us_per_req
                    .context("the gateway's CPU time could not be read")?,
            );
        }
    }
    let [quiet, echo] = per_path.map(median);
    let ratio = echo / quiet;
    eprintln!(
        "bench: gateway CPU per request, key not echoed {quiet:.1} µs, echoed and scrubbed \
         {echo:.1} µs ({ratio:.2}×)"
    );
    let how = |what: &str| {
        format!(
            "gateway CPU per request, {what}; keep-alive c={CONNECTIONS}, median of {ROUNDS} \
             {}s runs alternating; echoed / not echoed = {ratio:.2}×",
            DURATION.as_secs()
        )
    };
    Ok(vec![
        Point {
            measure: "cpu-per-req-static-secret".into(),
            route: explicit.name.into(),
            value: quiet,
            unit: "µs".into(),
            direct: None,
            detail: how("static header secret, answer without the key (body scanned)"),
        },
        Point {
            measure: "cpu-per-req-key-echoed".into(),
            route: explicit.name.into(),
            value: echo,
            unit: "µs".into(),
            direct: None,
            detail: how("the same secret echoed in the body, replaced by its placeholder"),
        },
    ])
}
