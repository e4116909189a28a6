//! Clients in a container of agent `box`, with no CA in the image and no
//! proxy variables, reach the upstream through the gateway with the key
//! injected; a container outside the agents' parent is untouched.

use std::process::Command;

use crate::common::*;
use crate::harness::audit_json;
use crate::support::docker::{Container, docker};

#[test]
fn host_network_container_clients_are_the_agent() {
    clients_are_the_agent(Network::Host);
}

/// Passes once the daemon reaches agents' network namespaces (netns).
#[test]
fn bridge_network_container_clients_are_the_agent() {
    clients_are_the_agent(Network::Bridge);
}

fn clients_are_the_agent(net: Network) {
    let test = format!("{} network container clients", net.name());
    let Some(env) = setup(&test) else { return };
    require_network!(env, net, test);

    // The image trusts nothing: it has no CA certificates of its own.
    let out = run_cmd(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        &env.image,
        "sh",
        "-c",
        "ls /etc/ssl /etc/pki /usr/lib/ssl 2>&1; exit 0",
    ]));
    assert!(
        !out.stdout.contains(".crt") && !out.stdout.contains(".pem"),
        "{out:#?}"
    );

    // Inside: the trust bundle over the store paths, CA variables, no
    // proxy variables.
    let out = env.agent_run(net, &["env"]);
    assert!(out.success(), "{out:#?}");
    assert!(
        out.stdout
            .contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{out:#?}"
    );
    assert!(
        !out.stdout.to_ascii_lowercase().contains("proxy"),
        "{out:#?}"
    );

    for name in CLIENTS {
        let args = client_args(name, &env.url(&format!("/echo/{}/{name}", net.name())));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.agent_run(net, &args);
        assert!(out.success(), "{name}: {out:#?}\n{}", env.daemon.log());
        env.assert_injected(&format!("/echo/{}/{name}", net.name()));
    }

    // The container's processes are below the agent's cgroup.
    let c = env.agent_container(net);
    let pid = c.pid().expect("container pid");
    let cgroup = env.iso.cg.of_pid(pid).expect("container cgroup");
    let agent_cgroup = env.iso.agent_cgroup(AGENT);
    assert!(
        airlock::intercept::cgroup::is_under(&cgroup, &agent_cgroup),
        "{cgroup} is not below {agent_cgroup}"
    );
    drop(c);

    outside_is_untouched(&env, net);
}

/// A container under Docker's own cgroup, not the agents' parent: not an
/// agent, so its connection is not intercepted.
fn outside_is_untouched(env: &Env, net: Network) {
    let path = format!("/echo/{}/outside", net.name());
    let id = docker(&[
        "run",
        "-d",
        "--network",
        net.name(),
        &env.add_host(),
        &env.image,
        "sleep",
        "600",
    ])
    .expect("docker run");
    let c = Container { id };
    let pid = c.pid().expect("container pid");
    let cgroup = env.iso.cg.of_pid(pid).expect("container cgroup");
    assert!(!airlock::intercept::cgroup::is_under(
        &cgroup,
        &env.iso.parent
    ));
    // -k: the upstream's own certificate, which only a direct connection
    // meets.
    let out = run_cmd(&mut c.exec(&["curl", "-sS", "-k", "-m", "10", &env.url(&path)]));
    let seen = env.up.requests_to(&path);
    match net {
        // The host's namespace: straight to the upstream, without the key.
        Network::Host => {
            assert!(out.success(), "{out:#?}");
            assert_eq!(seen.len(), 1, "{seen:#?}");
            assert_eq!(seen[0].header("authorization"), None);
        }
        // Its own loopback, where nothing listens.
        Network::Bridge => {
            assert!(!out.success(), "{out:#?}");
            assert!(seen.is_empty(), "{seen:#?}");
        }
    }
    assert!(
        !audit_json(&env.daemon)
            .iter()
            .any(|e| e["path"] == path.as_str()),
        "an outside container's request was audited"
    );
}
