//! Resident memory per idle connection: `bench/py/hold_idle.py` opens
//! COUNT TLS connections by a route, sends one request on each (answered
//! 200, so the key was injected), and holds them; the proxy's RSS is
//! sampled before and while they are held. Measured on the fresh gateway,
//! before the load runs have grown its heap.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::procs;
use super::report::Point;
use super::route::{Route, Watched};

/// How long a holder may take to open all its connections.
const OPEN_WITHIN: Duration = Duration::from_secs(240);

/// A running `hold_idle.py`; closing its stdin (on drop) lets it close
/// its connections and exit, and it is killed if it does not.
struct Holder {
    child: Child,
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = procs::wait_or_kill(&mut self.child, Duration::from_secs(30));
    }
}

fn rss(proxy: Watched) -> Result<u64> {
    if proxy.tree {
        Ok(procs::tree_rss_kib(proxy.pid))
    } else {
        procs::rss_kib(proxy.pid).context("cannot read the proxy's RSS")
    }
}

/// Starts a holder of `count` connections through `route` and waits until
/// all are open and answered.
fn hold(python: &Path, root: &Path, route: &Route, port: u16, count: u32) -> Result<Holder> {
    let mut c = route.command(python);
    c.arg(root.join("bench/py/hold_idle.py"))
        .args(route.py_args(port))
        .args(["--count", &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start `{}`", procs::shown(&c)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut holder = Holder { child };
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
    if held == Some(count) {
        return Ok(holder);
    }
    drop(holder.child.stdin.take());
    let _ = procs::wait_or_kill(&mut holder.child, Duration::from_secs(10));
    let mut err = String::new();
    let _ = BufReader::new(stderr).read_to_string(&mut err);
    bail!(
        "`{}` did not hold {count} connections within {}s ({:?}): {}",
        procs::shown(&c),
        OPEN_WITHIN.as_secs(),
        ready.trim(),
        err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    )
}

/// For each `(route, count)` in turn, the proxy's RSS growth per
/// connection while `count` more connections are held through it. The
/// earlier holders stay open meanwhile: memory a closed connection gave
/// back to the allocator would otherwise be reused by the next route and
/// hide its cost. Routes must share one proxy process.
pub fn measure(
    python: &Path,
    root: &Path,
    routes: &[(&Route, u32)],
    port: u16,
) -> Result<Vec<Point>> {
    let mut holders = Vec::new();
    let mut points = Vec::new();
    for (route, count) in routes {
        let proxy = route
            .proxy
            .context("idle memory needs a proxy process to sample")?;
        let before = rss(proxy)?;
        holders.push(hold(python, root, route, port, *count)?);
        // Let the gateway settle (per-request buffers go after the answer).
        thread::sleep(Duration::from_secs(2));
        let during = rss(proxy)?;
        let per_conn = during.saturating_sub(before) as f64 / f64::from(*count);
        eprintln!(
            "bench: idle {count} connections via {}: {per_conn:.1} KiB each (RSS {before} → {during} KiB)",
            route.name
        );
        points.push(Point {
            measure: "idle-rss-per-conn".into(),
            route: route.name.into(),
            value: per_conn,
            unit: "KiB".into(),
            direct: None,
            detail: format!(
                "proxy RSS {before} → {during} KiB with {count} more TLS connections held idle \
                 after one request each{}",
                if holders.len() > 1 {
                    " (the previous route's still held)"
                } else {
                    ""
                }
            ),
        });
    }
    drop(holders);
    Ok(points)
}
