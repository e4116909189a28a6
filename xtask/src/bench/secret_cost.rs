//! What the kind of secret costs the gateway per request, through the
//! explicit proxy, with the same keep-alive load for each variant:
//!
//! - `static`: the static header secret on the benchmark path, whose small
//!   JSON answer holds no key (the body is scanned, nothing replaced);
//! - `echoed`: nginx's `/echo-auth`, whose body is the injected
//!   `Authorization` value itself, scanned and replaced by the placeholder
//!   on every request (issue #18, item 5);
//! - `oauth2`: an OAuth2 secret (client credentials) on a host of its own,
//!   its access token cached (fetched once at `secret add`, a day's
//!   lifetime), so what is measured is the cached path: the look-up of
//!   the secret's token and its injection (issue #18, item 1).
//!
//! The variants alternate, `ROUNDS` of each (medians), in the same run as
//! everything else.

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

/// One variant: the point's name, the host and path it loads, and what it
/// is in words.
struct Variant {
    measure: &'static str,
    host: &'static str,
    path: &'static str,
    what: &'static str,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        measure: "cpu-per-req-static-secret",
        host: upstream::HOST,
        path: upstream::BENCH_PATH,
        what: "static header secret, answer without the key (body scanned)",
    },
    Variant {
        measure: "cpu-per-req-key-echoed",
        host: upstream::HOST,
        path: upstream::ECHO_PATH,
        what: "the same secret echoed in the body, replaced by its placeholder",
    },
    Variant {
        measure: "cpu-per-req-oauth2-cached",
        host: upstream::OAUTH2_HOST,
        path: upstream::OAUTH2_PATH,
        what: "an OAuth2 secret (client credentials), its access token cached",
    },
];

pub fn measure(oha: &std::path::Path, up: &Upstream, explicit: &Route) -> Result<Vec<Point>> {
    let routes: Vec<Route> = VARIANTS
        .iter()
        .map(|v| explicit.with_host(v.host))
        .collect();
    let mut per_variant: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..ROUNDS {
        let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let run = load::Run {
                oha,
                route: &routes[i],
                port: up.port,
                mode: Mode::KeepAlive,
                connections: CONNECTIONS,
                duration: DURATION,
            };
            let path = VARIANTS[i].path;
            let figures = sample(up, &routes[i], || run.go_at(path))
                .with_context(|| format!("secret cost, {}", VARIANTS[i].measure))?;
            per_variant[i].push(
                figures
                    .gateway_cpu_us_per_req
                    .context("the gateway's CPU time could not be read")?,
            );
        }
    }
    let medians: Vec<f64> = per_variant.into_iter().map(median).collect();
    let baseline = medians[0];
    Ok(VARIANTS
        .iter()
        .zip(&medians)
        .map(|(v, &value)| {
            let ratio = value / baseline;
            eprintln!(
                "bench: gateway CPU per request, {}: {value:.1} µs ({ratio:.2}× the static \
                 secret)",
                v.what
            );
            Point {
                measure: v.measure.into(),
                route: explicit.name.into(),
                value,
                unit: "µs".into(),
                direct: None,
                detail: format!(
                    "gateway CPU per request, {}; keep-alive c={CONNECTIONS}, median of {ROUNDS} \
                     {}s runs alternating; {ratio:.2}× the static secret",
                    v.what,
                    DURATION.as_secs()
                ),
            }
        })
        .collect())
}
