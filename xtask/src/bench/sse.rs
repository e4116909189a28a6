//! Server-sent events: an event-stream upstream (`bench/py/sse.py serve`,
//! TLS with the upstream's certificate, 401 without the key) and the time
//! from sending a request to reading its first event, per route
//! (`bench/py/sse.py measure`, one keep-alive connection, many requests).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::procs;
use super::report::Point;
use super::route::Route;
use super::upstream::{self, Upstream};

/// Requests per route; each waits for the upstream's second event.
const REQUESTS: u32 = 200;
/// The delay between the two events: a proxy that buffered the stream
/// would show it in the first event's time.
const DELAY_MS: u32 = 5;

pub struct SseServer {
    pub port: u16,
}

pub fn start(python: &Path, root: &Path, dir: &Path, up: &Upstream) -> Result<SseServer> {
    let port = upstream::free_port()?;
    let mut command = Command::new(python);
    command
        .arg(root.join("bench/py/sse.py"))
        .args(["serve", "--port"])
        .arg(port.to_string())
        .arg("--cert")
        .arg(&up.cert)
        .arg("--key")
        .arg(&up.key)
        .args(["--expect-auth", upstream::EXPECTED_AUTH])
        .args(["--delay-ms", &DELAY_MS.to_string()]);
    procs::start(
        "sse server",
        &mut command,
        &dir.join("sse-server.log"),
        libc::SIGTERM,
        procs::ORDER_UPSTREAM,
    )?;
    upstream::wait_listening(port, Duration::from_secs(20))
        .context("the SSE server did not listen; see sse-server.log")?;
    Ok(SseServer { port })
}

/// Median time to the first event through `route`, in µs.
fn first_event_us(python: &Path, root: &Path, route: &Route, port: u16) -> Result<f64> {
    let mut c = route.command(python);
    c.arg(root.join("bench/py/sse.py"))
        .arg("measure")
        .args(route.py_args(port))
        .args(["--count", &REQUESTS.to_string()]);
    let out = procs::output_within(&mut c, Duration::from_secs(120))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{}` failed: {}",
            procs::shown(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("`{}` printed no JSON", procs::shown(&c)))?;
    v["first_event_p50_us"]
        .as_f64()
        .context("no first_event_p50_us")
}

/// The first-event time of each route next to direct's.
pub fn measure(
    python: &Path,
    root: &Path,
    server: &SseServer,
    direct: &Route,
    routes: &[&Route],
) -> Result<Vec<Point>> {
    let base = first_event_us(python, root, direct, server.port).context("SSE direct")?;
    let mut points = Vec::new();
    for route in routes {
        let v = first_event_us(python, root, route, server.port)
            .with_context(|| format!("SSE through {}", route.name))?;
        eprintln!(
            "bench: SSE first event {:>20} {v:>7.0} µs (direct {base:.0} µs)",
            route.name
        );
        points.push(Point {
            measure: "sse-first-event".into(),
            route: route.name.into(),
            value: v,
            unit: "µs".into(),
            direct: Some(base),
            detail: format!(
                "request sent → first event read, median of {REQUESTS} on one connection"
            ),
        });
    }
    Ok(points)
}
