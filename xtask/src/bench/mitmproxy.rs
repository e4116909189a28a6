//! mitmproxy as a peer: `mitmdump` from the benchmark's virtual environment
//! (PyPI, pinned in [`super::tools`]) as an explicit proxy, with the addon
//! `bench/py/inject_addon.py` setting the same `Authorization` header
//! Airlock injects, trusting the upstream's CA.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::procs;
use super::route::{Reach, Route, Watched};
use super::upstream::{self, Upstream};

/// Starts `mitmdump` on a free loopback port; returns its route. It makes
/// its CA in its own `confdir` on first start.
pub fn start(python: &Path, root: &Path, dir: &Path, up: &Upstream) -> Result<Route> {
    let confdir = dir.join("mitmproxy");
    fs::create_dir_all(&confdir)?;
    let port = upstream::free_port()?;
    let mitmdump = python.with_file_name("mitmdump");
    let mut command = Command::new(&mitmdump);
    command
        .args(["--listen-host", "127.0.0.1", "--listen-port"])
        .arg(port.to_string())
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        .arg("--set")
        .arg(format!(
            "ssl_verify_upstream_trusted_ca={}",
            up.ca_pem.display()
        ))
        // No flow printing and no flow storage: the proxying is measured.
        .args(["--set", "flow_detail=0", "--set", "termlog_verbosity=warn"])
        .arg("-s")
        .arg(root.join("bench/py/inject_addon.py"))
        .env("BENCH_AUTHORIZATION", upstream::EXPECTED_AUTH);
    let pid = procs::start(
        "mitmproxy",
        &mut command,
        &dir.join("mitmproxy.log"),
        libc::SIGTERM,
        procs::ORDER_PEER,
    )?;
    upstream::wait_listening(port, Duration::from_secs(60)).with_context(|| {
        format!(
            "mitmproxy did not listen; see {}",
            dir.join("mitmproxy.log").display()
        )
    })?;
    let ca = confdir.join("mitmproxy-ca-cert.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ca.is_file() {
        if Instant::now() > deadline {
            bail!("mitmproxy made no CA at {}", ca.display());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Ok(Route {
        name: "mitmproxy",
        reach: Reach::Proxy {
            addr: format!("127.0.0.1:{port}"),
            proxy_authorization: None,
        },
        cacert: ca,
        // mitmproxy resolves with the system resolver, which does not know
        // the benchmark's name; the upstream's certificate holds the IP.
        host: "127.0.0.1",
        proxy: Some(Watched { pid, tree: false }),
        store_pid: None,
    })
}
