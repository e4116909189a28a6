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
/// [`upstream::mint_names`]).
pub const NAMES: usize = 8;
/// Cached-leaf and direct handshakes timed (more: cheaper, noisier).
const REPEATS: usize = 24;

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
    let mut cached = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..REPEATS {
        cached.push(expect_ok(
            handshake(through_gateway(gw, HOST, up.port))?,
            "cached leaf",
        )?);
        plain.push(expect_ok(handshake(direct(up))?, "direct")?);
    }
    let mut fresh = Vec::new();
    for name in upstream::mint_names(NAMES) {
        fresh.push(expect_ok(
            handshake(through_gateway(gw, &name, up.port))?,
            "first mint",
        )?);
    }
    let (cached, plain, fresh) = (median(cached), median(plain), median(fresh));
    eprintln!(
        "bench: handshake direct {plain:.0} µs, via gateway cached leaf {cached:.0} µs, new name {fresh:.0} µs"
    );
    Ok(vec![
        Point {
            measure: "new-connection-cached-leaf".into(),
            route: "airlock-explicit".into(),
            value: cached,
            unit: "µs".into(),
            direct: Some(plain),
            detail: format!(
                "curl: TCP connected → TLS done (with CONNECT through the proxy), median of {REPEATS}"
            ),
        },
        Point {
            measure: "first-mint".into(),
            route: "airlock-explicit".into(),
            value: fresh - cached,
            unit: "µs".into(),
            direct: None,
            detail: format!(
                "handshake for a name never seen less one with a cached leaf, median of {NAMES} names"
            ),
        },
    ])
}
