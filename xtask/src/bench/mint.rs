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
use super::upstream::{self, HOST, Upstream};
use crate::cmd;

/// Fresh names minted, each once; the gateway resolves them (see
/// [`upstream::mint_names`]). Each is timed right beside a cached-leaf
/// and a direct handshake, and the medians of the differences are
/// reported: the machine's load drifts less within a triple than across
/// the whole series.
pub const NAMES: usize = 32;

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
        bail!("`{}` printed {text:?}", cmd::display(&c));
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

fn direct(up: &Upstream) -> Command {
    let mut c = Command::new("curl");
    c.arg("--resolve")
        .arg(format!("{HOST}:{p}:127.0.0.1", p = up.port))
        .arg("--cacert")
        .arg(&up.ca_pem)
        .arg(format!("https://{HOST}:{}{}", up.port, upstream::ECHO_PATH));
    c
}

pub fn measure(gw: &Gateway, up: &Upstream) -> Result<Vec<Point>> {
    let expect_ok = |(code, secs): (String, f64), what: &str| -> Result<f64> {
        if code != "200" {
            bail!("{what}: status {code}, expected 200");
        }
        Ok(secs * 1e6)
    };
    let (mut added, mut mint) = (Vec::new(), Vec::new());
    let (mut cached_all, mut plain_all) = (Vec::new(), Vec::new());
    for name in upstream::mint_names(NAMES) {
        let plain = expect_ok(handshake(direct(up))?, "direct")?;
        let cached = expect_ok(
            handshake(through_gateway(gw, HOST, up.port))?,
            "cached leaf",
        )?;
        let fresh = expect_ok(
            handshake(through_gateway(gw, &name, up.port))?,
            "first mint",
        )?;
        added.push(cached - plain);
        mint.push(fresh - cached);
        cached_all.push(cached);
        plain_all.push(plain);
    }
    let (cached, plain) = (median(cached_all), median(plain_all));
    let (added, fresh) = (median(added), median(mint));
    eprintln!(
        "bench: handshake direct {plain:.0} µs, via gateway cached leaf {cached:.0} µs \
         ({added:+.0} µs in pairs), first mint {fresh:+.0} µs"
    );
    Ok(vec![
        Point {
            measure: "new-connection-cached-leaf".into(),
            route: "airlock-explicit".into(),
            value: plain + added,
            unit: "µs".into(),
            direct: Some(plain),
            detail: format!(
                "curl: TCP connected → TLS done (with CONNECT through the proxy); direct median \
                 of {NAMES}, added = median of {NAMES} side-by-side differences"
            ),
        },
        Point {
            measure: "first-mint".into(),
            route: "airlock-explicit".into(),
            value: fresh,
            unit: "µs".into(),
            direct: None,
            detail: format!(
                "handshake for a name never seen less the cached-leaf one just before it, \
                 median of {NAMES} names"
            ),
        },
    ])
}
