//! Bad input and faults of `airlock docker`: each a clear message and a
//! non-zero exit, with nothing started. Needs no Docker: the checks come
//! before it is asked, or are about its absence.

use crate::common::AGENT;
use crate::harness::*;
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

#[test]
fn docker_commands_refuse_what_would_not_be_intercepted() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, AGENT);

    let out = daemon.cli(&["docker", "run", "--agent", "nope", "img", "true"]);
    out.fails_with(&["there is no agent \"nope\"", "airlock agent add nope"]);
    let out = daemon.cli(&["docker", "flags", "--agent", "nope"]);
    out.fails_with(&["there is no agent \"nope\""]);

    let out = daemon.cli(&[
        "docker",
        "run",
        "--agent",
        AGENT,
        "--cgroup-parent=/elsewhere",
        "img",
        "true",
    ]);
    out.fails_with(&["--cgroup-parent is set by airlock docker"]);

    // Docker not installed.
    let out = daemon.cli(&[
        "docker",
        "flags",
        "--agent",
        AGENT,
        "--docker",
        "/nonexistent/docker",
    ]);
    out.fails_with(&["docker command was not found", "install docker"]);

    // Docker installed, its daemon down (or nowhere to be found).
    if std::process::Command::new("docker")
        .arg("--version")
        .output()
        .is_ok()
    {
        let mut cmd = daemon.command();
        cmd.args(["docker", "run", "--agent", AGENT, "img", "true"])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
        let out = run(&mut cmd, None, CLIENT_TIMEOUT);
        out.fails_with(&["docker daemon does not answer", "start it"]);
    }
    // Nothing of it broke the daemon.
    assert!(
        daemon.status_json()["mode"]
            .as_str()
            .unwrap_or_default()
            .starts_with("transparent (eBPF")
    );
}

#[test]
fn nftables_interception_refuses_containers() {
    require!(Mode::Nftables);
    let iso = Isolation::new(Mode::Nftables);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, AGENT);
    let out = daemon.cli(&["docker", "flags", "--agent", AGENT]);
    out.fails_with(&["nftables", "cannot reach containers", "--transparent ebpf"]);
}
