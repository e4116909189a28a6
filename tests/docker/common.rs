//! What the container tests share: a test environment (isolation, upstream,
//! daemon, Docker, image, one agent with a key for the upstream), the two
//! network modes, and running clients in containers.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use crate::support;
use crate::support::docker::{self as dk, Container, Dockerd};
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, Output, run};

pub(crate) const AGENT: &str = "box";

/// How the container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// `--network host`: the host's namespace.
    Host,
    /// Docker's default bridge: a namespace of its own.
    Bridge,
}

impl Network {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Network::Host => "host",
            Network::Bridge => "bridge",
        }
    }
}

/// The cgroup v1 directories runc makes for the test's agents' parent on
/// a hybrid host, removed on drop.
pub(crate) struct V1Dirs(String);

impl Drop for V1Dirs {
    fn drop(&mut self) {
        dk::remove_v1_dirs(&self.0);
    }
}

/// One test's world. Fields drop in order: the daemon first, Docker last.
pub(crate) struct Env {
    pub(crate) daemon: Daemon,
    pub(crate) up: Upstream,
    pub(crate) value: String,
    pub(crate) image: String,
    pub(crate) iso: Isolation,
    _v1: V1Dirs,
    _dockerd: Arc<Dockerd>,
}

/// The environment, or `None` (having said SKIPPED) where Docker or eBPF
/// cannot run.
pub(crate) fn setup(test: &str) -> Option<Env> {
    if let Some(why) = skip_reason(Mode::Ebpf) {
        eprintln!("SKIPPED: {test}: needs root and eBPF: {why}");
        return None;
    }
    let dockerd = match Dockerd::ensure() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: {test}: Docker cannot run here: {why}");
            return None;
        }
    };
    let image = dk::client_image().unwrap_or_else(|e| panic!("building the client image: {e}"));
    let iso = Isolation::new(Mode::Ebpf);
    let v1 = V1Dirs(iso.parent.clone());
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, AGENT);
    let value = format!("sk-docker-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("{}:{}", up.host(), up.port()),
        &value,
        AGENT,
    );
    Some(Env {
        daemon,
        up,
        value,
        image,
        iso,
        _v1: v1,
        _dockerd: dockerd,
    })
}

/// Whether the daemon says it reaches agents' own network namespaces
/// (the netns work, issue 17 item 1); until it does, bridge tests skip.
pub(crate) fn reaches_namespaces(daemon: &Daemon) -> bool {
    let status = daemon.status_json();
    status
        .to_string()
        .to_ascii_lowercase()
        .contains("namespace")
}

/// Returns from the test, saying why, when `$net` cannot be tested here.
macro_rules! require_network {
    ($env:expr, $net:expr, $test:expr) => {
        if $net == $crate::common::Network::Bridge
            && !$crate::common::reaches_namespaces(&$env.daemon)
        {
            eprintln!(
                "SKIPPED: {}: the daemon does not report reaching agents' network namespaces \
                 (airlock status), so bridge-networked containers are not intercepted yet",
                $test
            );
            return;
        }
    };
}

impl Env {
    pub(crate) fn add_host(&self) -> String {
        format!("--add-host={}:127.0.0.1", self.up.host())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.up.url(path)
    }

    /// `airlock docker run --agent AGENT --rm --network NET ... IMAGE ARGS`.
    pub(crate) fn agent_run(&self, net: Network, args: &[&str]) -> Output {
        let mut cmd = self.daemon.command();
        cmd.args([
            "docker",
            "run",
            "--agent",
            AGENT,
            "--rm",
            "--network",
            net.name(),
        ])
        .arg(self.add_host())
        .arg(&self.image)
        .args(args);
        run(&mut cmd, None, CLIENT_TIMEOUT)
    }

    /// A long-running container of agent AGENT (`sleep`), removed on drop.
    pub(crate) fn agent_container(&self, net: Network) -> Container {
        let mut cmd = self.daemon.command();
        cmd.args([
            "docker",
            "run",
            "--agent",
            AGENT,
            "-d",
            "--network",
            net.name(),
        ])
        .arg(self.add_host())
        .args([&self.image, "sleep", "600"]);
        let out = run(&mut cmd, None, CLIENT_TIMEOUT);
        assert!(out.success(), "{out:#?}");
        Container {
            id: out.stdout.trim().to_owned(),
        }
    }

    /// The upstream saw exactly one request to `path`, carrying the key,
    /// and its audit row names the agent.
    #[track_caller]
    pub(crate) fn assert_injected(&self, path: &str) {
        let seen = self.up.requests_to(path);
        assert_eq!(seen.len(), 1, "{path}: {seen:#?}\n{}", self.daemon.log());
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {}", self.value).as_str()),
            "{path}"
        );
        let rec = wait_audit(&self.daemon, |e| e["path"] == path);
        assert_eq!(rec["agent"], AGENT, "{rec:#}");
    }
}

/// The clients every container test runs.
pub(crate) const CLIENTS: [&str; 3] = ["curl", "wget", "python"];

/// Client `name` (of [`CLIENTS`]) fetching `url`: no CA option, no proxy
/// option; Python's urllib with its default context.
pub(crate) fn client_args(name: &str, url: &str) -> Vec<String> {
    let args: &[&str] = match name {
        "curl" => &["curl", "-sS", "-m", "20"],
        "wget" => &["wget", "-q", "-T", "20", "-O", "-"],
        "python" => &[
            "python3",
            "-c",
            "import sys, urllib.request; \
             print(urllib.request.urlopen(sys.argv[1], timeout=20).status)",
        ],
        other => panic!("no client {other}"),
    };
    args.iter()
        .map(|a| (*a).to_owned())
        .chain([url.to_owned()])
        .collect()
}

/// Runs `cmd`, bounded.
pub(crate) fn run_cmd(cmd: &mut std::process::Command) -> Output {
    run(cmd, None, CLIENT_TIMEOUT)
}

/// Polls (bounded) until `f` succeeds.
pub(crate) fn eventually(what: &str, mut f: impl FnMut() -> Output) -> Output {
    let mut last = None;
    for _ in 0..50 {
        let out = f();
        if out.success() {
            return out;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} never succeeded: {last:#?}");
}
