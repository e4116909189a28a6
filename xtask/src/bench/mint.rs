//! What a new connection costs before its first request: the TLS handshake
//! with the gateway for a name whose leaf is cached, against the handshake
//! with nginx directly, and the first-mint cost of a name never seen (the
//! same handshake less the cached one). Timed by curl (`time_appconnect` −
//! `time_connect`: for a proxy that is CONNECT plus the tunnelled TLS
//! handshake), one fresh process per connection.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::gateway::Gateway;
use super::procs;
use super::report::{Point, median};
use super::route::Route;
use super::upstream::{self, Upstream};

/// Fresh names minted, each once; the gateway resolves them (see
/// [`upstream::mint_names`]). Each is timed right beside a cached-leaf
/// and a direct handshake, and the medians of the differences are
/// reported: the machine's load drifts less within a triple than across
/// the whole series.
pub const NAMES: usize = 48;

/// (HTTP status, handshake seconds) of one curl.
fn handshake(mut c: Command) -> Result<(String, f64)> {
    c.args([
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "20",
        "-w",
        "%{http_code} %{time_connect} %{time_appconnect}",
    ]);
    let out = procs::output_within(&mut c, Duration::from_secs(30))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = text.split_whitespace().collect();
    let (Some(code), Some(connect), Some(app)) = (f.first(), f.get(1), f.get(2)) else {
        bail!("`{}` printed {text:?}", procs::shown(&c));
    };
    let connect: f64 = connect.parse().context("time_connect")?;
    let app: f64 = app.parse().context("time_appconnect")?;
    Ok(((*code).to_owned(), app - connect))
}

fn through_gateway(gw: &Gateway, name: &str, port: u16) -> Command {
    let mut c = Command::new("curl");
    c.arg("--proxy")
        .arg(format!(
            "http://{}:{}@{}",
            super::gateway::AGENT,
            gw.token,
            gw.proxy_addr
        ))
        .arg("--cacert")
        .arg(&gw.ca_cert)
        .arg(format!("https://{name}:{port}{}", upstream::ECHO_PATH));
    c
}

/// curl for the echo path by `route` (the name it is given: cached leaf).
fn by_route(route: &Route, up: &Upstream) -> Command {
    let mut c = route.command("curl");
    c.args(route.curl_args(up.port, upstream::ECHO_PATH));
    c
}

/// Handshake times with a cached leaf by the explicit and transparent
/// routes, beside direct's, and the first-mint cost (explicit).
pub fn measure(
    gw: &Gateway,
    up: &Upstream,
    direct: &Route,
    airlock: [&Route; 2],
) -> Result<Vec<Point>> {
    let expect_ok = |(code, secs): (String, f64), what: &str| -> Result<f64> {
        if code != "200" {
            bail!("{what}: status {code}, expected 200");
        }
        Ok(secs * 1e6)
    };
    let mut plain_all = Vec::new();
    let mut added: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut mint = Vec::new();
    for name in upstream::mint_names(NAMES) {
        let plain = expect_ok(handshake(by_route(direct, up))?, "direct")?;
        let mut cached = [0.0; 2];
        for (i, route) in airlock.iter().enumerate() {
            cached[i] = expect_ok(handshake(by_route(route, up))?, route.name)?;
            added[i].push(cached[i] - plain);
        }
        let fresh = expect_ok(
            handshake(through_gateway(gw, &name, up.port))?,
            "first mint",
        )?;
        mint.push(fresh - cached[0]);
        plain_all.push(plain);
    }
    let plain = median(plain_all);
    let fresh = median(mint);
    let mut points = Vec::new();
    for (route, added) in airlock.iter().zip(added) {
        let added = median(added);
        eprintln!(
            "bench: handshake direct {plain:.0} µs; {} with a cached leaf {added:+.0} µs",
            route.name
        );
        points.push(Point {
            measure: "new-connection-cached-leaf".into(),
            route: route.name.into(),
            value: plain + added,
            unit: "µs".into(),
            direct: Some(plain),
            detail: format!(
                "curl: TCP connected → TLS done (through a proxy: CONNECT too); direct median \
                 of {NAMES}, added = median of {NAMES} side-by-side differences"
            ),
        });
    }
    eprintln!("bench: first mint {fresh:+.0} µs");
    points.push(Point {
        measure: "first-mint".into(),
        route: "airlock-explicit".into(),
        value: fresh,
        unit: "µs".into(),
        direct: None,
        detail: format!(
            "handshake for a name never seen less the cached-leaf one just before it, \
             median of {NAMES} names"
        ),
    });
    Ok(points)
}
