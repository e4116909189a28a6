//! The container route: the same clients as the transparent route, run
//! inside a Docker container of the bench agent (`airlock docker run
//! --agent bot --network host`), so the load, the injection check and the
//! ratios to direct are the same code; and the first-connection delay of a
//! new container.
//!
//! Docker and the client image come from tests/support/docker.rs (shared
//! with the container tests): the running Docker daemon, or one started
//! without iptables or forwarding changes and stopped at the end; an image
//! `docker import`ed from host files. The client binaries that are not in
//! the image (oha) and the CA file are bind-mounted at their host paths, so
//! the route's arguments are the host's. Docker unable to run here: the
//! route is left out, with a note saying why.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::gateway::{AGENT, Gateway};
use super::procs;
use super::report::Point;
use super::route::{Reach, Route};
use super::upstream::{self, HOST};

#[path = "../../../tests/support/docker.rs"]
#[allow(dead_code)]
mod support;

pub const ROUTE: &str = "airlock-container";

/// New containers timed for the first-connection delay.
const FIRST_CONNECTIONS: usize = 5;

/// Docker, held for the run, and the image.
pub struct Docker {
    _dockerd: Arc<support::Dockerd>,
    image: String,
}

/// Docker and the image, or why the container route is left out. The
/// cgroup v1 directories runc makes for the agents' parent `agents` are
/// removed at the end (the unified ones are the isolation's).
pub fn start(oha: &Path, agents: &str) -> std::result::Result<Docker, String> {
    let dockerd = support::Dockerd::ensure()?;
    let agents = agents.to_owned();
    procs::on_cleanup(move || support::remove_v1_dirs(&agents));
    let image = support::client_image_for(&[oha.to_owned()])?;
    Ok(Docker {
        _dockerd: dockerd,
        image,
    })
}

impl Docker {
    /// `airlock docker run --agent bot --rm --network host` with `mounts`
    /// at their own paths, then the image: a route's wrapper.
    fn wrapper(&self, gw: &Gateway, mounts: &[&Path]) -> Vec<OsString> {
        let mut w: Vec<OsString> = vec![
            gw.binary.clone().into_os_string(),
            "--data-dir".into(),
            gw.data_dir.clone().into_os_string(),
            "docker".into(),
            "run".into(),
            "--agent".into(),
            AGENT.into(),
            "--rm".into(),
            "--network".into(),
            "host".into(),
        ];
        for m in mounts {
            w.push(
                format!(
                    "--mount=type=bind,source={p},target={p},readonly",
                    p = m.display()
                )
                .into(),
            );
        }
        w.push(self.image.clone().into());
        w
    }

    /// The route: a client in a new container of the agent per run.
    pub fn route(&self, gw: &Gateway, oha: &Path) -> Route {
        let mut r = gw.transparent_route();
        r.name = ROUTE;
        r.reach = Reach::Agent {
            wrapper: self.wrapper(gw, &[oha, &gw.ca_cert]),
        };
        r
    }

    /// From a new container's first process to its first answered request
    /// (the key injected: the bench path answers 401 without it), in a
    /// Python loop that retries every 5 ms; the median of a few containers.
    /// Beside it, the same from a new host agent process (`airlock run`).
    pub fn first_connection(&self, gw: &Gateway, port: u16) -> Result<Vec<Point>> {
        let url = format!("https://{HOST}:{port}{}", upstream::BENCH_PATH);
        let ca = gw.ca_cert.display().to_string();
        let in_container = median_first_connection(&self.wrapper(gw, &[&gw.ca_cert]), &url, &ca)?;
        let Reach::Agent { wrapper } = gw.transparent_route().reach else {
            bail!("the transparent route is not an agent route");
        };
        let on_host = median_first_connection(&wrapper, &url, &ca)?;
        eprintln!(
            "bench: first connection of a new container {in_container:.0} µs, of a new host agent \
             process {on_host:.0} µs"
        );
        Ok(vec![Point {
            measure: "first-connection".into(),
            route: ROUTE.into(),
            value: in_container,
            unit: "µs".into(),
            direct: Some(on_host),
            detail: format!(
                "a new container's first process (host network) → its first answered request \
                 (TLS, key injected), retried every 5 ms; median of {FIRST_CONNECTIONS}; \
                 \"direct\" here is the same from a new `airlock run` process on the host"
            ),
        }])
    }
}

/// Python's time from its start to the first answered request, retrying
/// every 5 ms; the name dials 127.0.0.1 (as `--resolve` does for curl).
const FIRST_CONNECTION_PY: &str = "import socket, ssl, sys, time, urllib.request
t = time.monotonic()
dial = socket.create_connection
socket.create_connection = lambda a, *k, **kw: dial(('127.0.0.1', a[1]), *k, **kw)
ctx = ssl.create_default_context(cafile=sys.argv[2])
while True:
    try:
        urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5).read()
        break
    except Exception:
        if time.monotonic() - t > 20:
            raise
        time.sleep(0.005)
print((time.monotonic() - t) * 1e6)
";

/// The median over [`FIRST_CONNECTIONS`] new processes run by `wrapper`.
fn median_first_connection(wrapper: &[OsString], url: &str, ca: &str) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..FIRST_CONNECTIONS {
        let mut c = Command::new(&wrapper[0]);
        c.args(&wrapper[1..])
            .args(["python3", "-c", FIRST_CONNECTION_PY, url, ca]);
        let out = procs::output_within(&mut c, Duration::from_secs(60))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                procs::shown(&c),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        v.push(
            text.trim()
                .parse::<f64>()
                .with_context(|| format!("the first-connection script printed {text:?}"))?,
        );
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Why the container route is left out, as a results note.
pub fn skipped_note(why: &str) -> String {
    format!("{ROUTE}: not measured, Docker cannot run here: {why}")
}
