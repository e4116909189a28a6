//! Resident memory per idle connection: `bench/py/hold_idle.py` opens
//! COUNT TLS connections by a route, sends one request on each (answered
//! 200, so the key was injected), and holds them; the proxy's RSS is
//! sampled before and while they are held.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::procs;
use super::report::Point;
use super::route::Route;
use crate::cmd;

/// How long the holder may take to open all its connections.
const OPEN_WITHIN: Duration = Duration::from_secs(180);

/// Holds `count` connections through `route` to `port`; returns the
/// proxy's RSS growth per connection in KiB.
pub fn measure(python: &Path, root: &Path, route: &Route, port: u16, count: u32) -> Result<Point> {
    let proxy = route
        .proxy
        .context("idle memory needs a proxy process to sample")?;
    let rss = || {
        if proxy.tree {
            Some(procs::tree_rss_kib(proxy.pid))
        } else {
            procs::rss_kib(proxy.pid)
        }
    };
    let before = rss().context("cannot read the proxy's RSS")?;
    let mut c = route.command(python);
    c.arg(root.join("bench/py/hold_idle.py"))
        .args(route.py_args(port))
        .args(["--count", &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", cmd::display(&c)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(OPEN_WITHIN).unwrap_or_default();
    let held = ready
        .strip_prefix("ready ")
        .and_then(|n| n.trim().parse::<u32>().ok());
    let outcome = match held {
        Some(n) if n == count => {
            // Let the gateway settle (buffers shrink after the request).
            thread::sleep(Duration::from_secs(2));
            let during = rss().context("cannot read the proxy's RSS")?;
            Ok(during.saturating_sub(before) as f64 / f64::from(count))
        }
        _ => Err(()),
    };
    // Closing its stdin lets it close the connections and exit.
    drop(child.stdin.take());
    let _ = procs::wait_or_kill(&mut child, Duration::from_secs(30));
    let stderr = child
        .stderr
        .take()
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    let per_conn = match outcome {
        Ok(v) => v,
        Err(()) => bail!(
            "`{}` did not hold {count} connections within {}s ({:?}): {}",
            cmd::display(&c),
            OPEN_WITHIN.as_secs(),
            ready.trim(),
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ),
    };
    eprintln!(
        "bench: idle {count} connections via {}: {per_conn:.1} KiB each (RSS {before} KiB before)",
        route.name
    );
    Ok(Point {
        measure: "idle-rss-per-conn".into(),
        route: route.name.into(),
        value: per_conn,
        unit: "KiB".into(),
        direct: None,
        detail: format!(
            "proxy RSS growth with {count} TLS connections held idle after one request each"
        ),
    })
}
