//! The daemon killed with containers running: their next connection fails;
//! restarted, they work again without being restarted, as do a container
//! started while it was down and a container that restarts.

use std::process::Command;

use crate::common::*;
use crate::support::docker::{Container, docker};

#[test]
fn host_network_containers_survive_a_daemon_kill() {
    daemon_kill_and_restart(Network::Host);
}

/// Passes once the daemon reaches agents' network namespaces (netns).
#[test]
fn bridge_network_containers_survive_a_daemon_kill() {
    daemon_kill_and_restart(Network::Bridge);
}

fn curl(c: &Container, url: &str) -> Command {
    c.exec(&["curl", "-sS", "-m", "10", url])
}

fn daemon_kill_and_restart(net: Network) {
    let test = format!("{} network containers and a daemon kill", net.name());
    let Some(mut env) = setup(&test) else { return };
    require_network!(env, net, test);
    let n = net.name();
    let first = env.agent_container(net);
    eventually("curl before the kill", || {
        run_cmd(&mut curl(&first, &env.url(&format!("/echo/{n}/before"))))
    });
    env.assert_injected(&format!("/echo/{n}/before"));
    // The flags, for a container started while the daemon is down.
    let flags: Vec<String> = env
        .daemon
        .cli_ok(&["docker", "flags", "--agent", AGENT])
        .lines()
        .map(str::to_owned)
        .collect();

    env.daemon.kill9();
    let out = run_cmd(&mut curl(&first, &env.url(&format!("/echo/{n}/down"))));
    assert!(!out.success(), "connected with the daemon down: {out:#?}");
    assert!(env.up.requests_to(&format!("/echo/{n}/down")).is_empty());

    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--network".into(), n.into()];
    args.extend(flags);
    args.extend([
        env.add_host(),
        env.image.clone(),
        "sleep".into(),
        "600".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = Container {
        id: docker(&args).expect("docker run while the daemon is down"),
    };

    env.daemon.restart();
    for (c, name) in [(&first, "first"), (&second, "second")] {
        let path = format!("/echo/{n}/after/{name}");
        eventually(
            &format!("curl in the {name} container after the restart"),
            || run_cmd(&mut curl(c, &env.url(&path))),
        );
        env.assert_injected(&path);
    }

    docker(&["restart", "-t", "1", &first.id]).expect("docker restart");
    let path = format!("/echo/{n}/restarted");
    eventually("curl in the restarted container", || {
        run_cmd(&mut curl(&first, &env.url(&path)))
    });
    env.assert_injected(&path);
}
