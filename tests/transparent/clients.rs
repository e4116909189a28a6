//! Real clients (curl, Python, Node) in an agent's cgroup, with no proxy
//! settings, reach the upstream through the gateway with the credential
//! injected.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::support;
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

#[test]
fn ebpf_agents_are_intercepted_by_cgroup_with_no_proxy_settings() {
    clients_are_intercepted_by_cgroup(Mode::Ebpf);
}

#[test]
fn nftables_agents_are_intercepted_by_cgroup_with_no_proxy_settings() {
    clients_are_intercepted_by_cgroup(Mode::Nftables);
}

fn clients_are_intercepted_by_cgroup(mode: Mode) {
    require!(mode);
    let iso = Isolation::new(mode);
    let up = Upstream::start(UpstreamOpts::https().with_ipv6());
    // 443 too, for the UDP check (only this test's cgroups are affected).
    let mut daemon = start_daemon(&iso, &up, &[443]);
    let status = daemon.status_json();
    let status_mode = status["mode"].as_str().unwrap_or_default().to_owned();
    assert!(status_mode.starts_with(mode.status_prefix()), "{status:#}");
    assert!(daemon.log().contains(mode.status_prefix()));

    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-transparent-{}", support::random_hex(12));
    let host = up.host().to_owned();
    add_secret(
        &daemon,
        "up",
        &format!("{host}:{}", up.port()),
        &value,
        "bot",
    );
    let v6_port = up.addr_v6().expect("ipv6 upstream").port();
    add_secret(&daemon, "up6", &format!("{host}:{v6_port}"), &value, "bot");

    // 1. curl inside the agent's cgroup, no proxy variables: intercepted,
    //    credential injected, identity from the cgroup.
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(&host, up.port(), "127.0.0.1", "/echo/v4")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/v4");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/v4");
    assert_eq!(rec["agent"], "bot", "{rec:#}");
    assert_eq!(rec["secrets"][0], "up", "{rec:#}");

    // 1b. As an unprivileged user (--user): privileges dropped, the CA
    //     bundle readable, still intercepted.
    let mut args = vec!["--user", "nobody", "--"];
    let curl = curl_args(&host, up.port(), "127.0.0.1", "/echo/nobody");
    args.extend(as_strs(&curl));
    let mut cmd = daemon.command();
    cmd.args(["run", "--agent", "bot"]).args(&args);
    let out = run(&mut cmd, None, CLIENT_TIMEOUT);
    assert!(out.success(), "{out:#?}");
    assert_eq!(up.requests_to("/echo/nobody").len(), 1);
    let out = agent_run(&daemon, "bot", &["id", "-u"]);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert_eq!(out.stdout.trim(), nobody.to_string(), "{out:#?}");
    let out = agent_run(&daemon, "bot", &["sh", "-c", "exit 7"]);
    assert_eq!(out.code, 7, "the exit status passes through");

    // 2. The same upstream from outside any agent cgroup: direct, untouched.
    let direct = run(
        Command::new("curl").args(
            curl_args(&host, up.port(), "127.0.0.1", "/echo/direct")
                .iter()
                .skip(1)
                .chain(&[
                    "--cacert".to_owned(),
                    up.ca_pem_path().display().to_string(),
                ]),
        ),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(direct.success(), "{direct:#?}");
    let seen = up.requests_to("/echo/direct");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), None, "{seen:#?}");

    // 3. A child process, in a sub-cgroup below the agent's: still the
    //    agent. (Root makes it: an agent's cgroup is not delegated to its
    //    unprivileged user, so `airlock run` cannot.)
    let sub = iso.cg.path(&iso.agent_cgroup("bot")).join("worker");
    let script = format!(
        "mkdir -p {sub} && echo $$ > {sub}/cgroup.procs && exec {curl}",
        sub = sub.display(),
        curl = curl_args(&host, up.port(), "127.0.0.1", "/echo/child")
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let bundle = daemon.data_dir().join(airlock::intercept::run::BUNDLE_FILE);
    let out = run(
        Command::new("bash")
            .args(["-c", &script])
            .env("CURL_CA_BUNDLE", &bundle),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(out.success(), "{out:#?}");
    let seen = up.requests_to("/echo/child");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/child");
    assert_eq!(rec["agent"], "bot");

    // 4. IPv6: ::1.
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(&host, v6_port, "[::1]", "/echo/v6")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/v6");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].peer.is_ipv6(), "{seen:#?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/v6");
    assert_eq!(rec["agent"], "bot", "IPv6 is audited as the agent: {rec:#}");

    // 4b. An IPv6 socket to an IPv4-mapped address (what Happy-Eyeballs
    //     clients do) is no way around: intercepted like IPv4.
    let py = format!(
        "import os, socket, ssl\n\
         ctx = ssl.create_default_context(cafile=os.environ['SSL_CERT_FILE'])\n\
         s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n\
         s.connect(('::ffff:127.0.0.1', {port}))\n\
         t = ctx.wrap_socket(s, server_hostname='{host}')\n\
         t.sendall(b'GET /echo/mapped HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nConnection: close\\r\\n\\r\\n')\n\
         print(t.recv(100).split(b' ')[1].decode())",
        port = up.port(),
    );
    let out = agent_run(&daemon, "bot", &["python3", "-c", &py]);
    assert!(out.success() && out.stdout.trim() == "200", "{out:#?}");
    let seen = up.requests_to("/echo/mapped");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );

    // 4c. No SNI (curl sends none for an IP literal): the original
    //     destination decides; the secret for that IP applies, and the
    //     upstream is verified for the IP.
    let ip_host = format!("127.0.0.1:{}", up.port());
    add_secret(&daemon, "by-ip", &ip_host, &value, "bot");
    let out = agent_run(
        &daemon,
        "bot",
        &[
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "-m",
            "20",
            &format!("https://{ip_host}/echo/nosni"),
        ],
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/nosni");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/nosni");
    assert_eq!(rec["host"], ip_host.as_str(), "{rec:#}");
    assert_eq!(rec["agent"], "bot", "{rec:#}");

    // 5. UDP to an intercepted port (QUIC) is refused, inside the cgroup only.
    let udp = |port: u16| {
        format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.sendto(b'x',('127.0.0.1',{port}))\nprint('sent')"
        )
    };
    let out = agent_run(&daemon, "bot", &["python3", "-c", &udp(443)]);
    assert!(!out.success(), "{out:#?}");
    assert!(out.stderr.contains("Operation not permitted"), "{out:#?}");
    let out = run(
        Command::new("python3").args(["-c", &udp(443)]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(out.success(), "outside the cgroup UDP/443 works: {out:#?}");

    // 6. Python requests and Node's fetch, trusting the bundle `airlock
    //    run` sets up; `localhost` (also in the upstream certificate),
    //    IPv4 forced.
    add_secret(
        &daemon,
        "loc",
        &format!("localhost:{}", up.port()),
        &value,
        "bot",
    );
    let py = format!(
        "import socket, requests, urllib3.util.connection as c\n\
         c.allowed_gai_family = lambda: socket.AF_INET\n\
         r = requests.get('https://localhost:{}/echo/python', timeout=20)\n\
         print(r.status_code)",
        up.port()
    );
    let out = agent_run(&daemon, "bot", &["python3", "-c", &py]);
    assert!(out.success() && out.stdout.trim() == "200", "{out:#?}");
    let js = format!(
        "fetch('https://localhost:{}/echo/node').then(r => console.log(r.status)).catch(e => {{ console.error(e); process.exit(1) }})",
        up.port()
    );
    let out = agent_run(
        &daemon,
        "bot",
        &["node", "--dns-result-order=ipv4first", "-e", &js],
    );
    assert!(out.success() && out.stdout.trim() == "200", "{out:#?}");
    for path in ["/echo/python", "/echo/node"] {
        let seen = up.requests_to(path);
        assert_eq!(seen.len(), 1, "{path}");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {value}").as_str()),
            "{path}"
        );
    }

    // 7. One program per attach point and one getsockopt on the gateway,
    //    or one table with one redirect and one drop.
    iso.assert_installed();
    if mode == Mode::Ebpf {
        assert_eq!(iso.getsockopt_programs(), vec!["airlock_getopt"]);
    }

    // 8. kill -9 in the middle of a response stream: the stream ends (it
    //    was the gateway's connection; nothing reconnects around it), the
    //    agent's next connection fails (no bypass); restart: works again,
    //    the pinned programs adopted, not duplicated.
    let mut stream = daemon.command();
    stream
        .args(["run", "--agent", "bot", "--user", "nobody", "--"])
        .args(curl_args(
            &host,
            up.port(),
            "127.0.0.1",
            "/sse?n=100&interval_ms=100",
        ))
        .arg("-N")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let stream = stream.spawn().expect("starting the streaming client");
    let streaming = support::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (!up.requests_to("/sse").is_empty()).then_some(())
    });
    assert!(streaming.is_some(), "the stream never started");
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill9();
    let client_pid = i32::try_from(stream.id()).expect("pid");
    assert!(
        support::process::wait_for_exit(client_pid, CLIENT_TIMEOUT),
        "the agent's stream outlived the gateway"
    );
    let cut = stream.wait_with_output().expect("the streaming client");
    let events = String::from_utf8_lossy(&cut.stdout)
        .matches("data: ")
        .count();
    assert!(
        !cut.status.success() && (1..100).contains(&events),
        "the stream should end early with an error: {events} events, {cut:?}"
    );
    assert_eq!(
        up.requests_to("/sse").len(),
        1,
        "no second request around it"
    );
    let before = up.requests().len();
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(&host, up.port(), "127.0.0.1", "/echo/down")),
    );
    // `airlock run` itself needs the daemon (admin API); go around it.
    assert!(!out.success());
    let agent_dir = iso.cg.path(&iso.agent_cgroup("bot"));
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {}",
        agent_dir.display(),
        curl_args(&host, up.port(), "127.0.0.1", "/echo/down")
            .iter()
            .chain(&["-k".to_owned()])
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = run(
        Command::new("bash").args(["-c", &script]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(
        !out.success(),
        "went out while the daemon was down: {out:#?}"
    );
    assert!(out.stderr.contains("Couldn't connect"), "{out:#?}");
    assert_eq!(
        up.requests().len(),
        before,
        "the upstream was reached directly"
    );
    // The pinned programs or the table stayed.
    iso.assert_installed();

    daemon.restart();
    let status_mode = daemon.status_json()["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        status_mode.starts_with(mode.status_prefix()),
        "{status_mode}"
    );
    if mode == Mode::Ebpf {
        assert!(status_mode.contains("adopted"), "{status_mode}");
    }
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(&host, up.port(), "127.0.0.1", "/echo/again")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    assert_eq!(up.requests_to("/echo/again").len(), 1);
    // Not duplicated by the restart.
    iso.assert_installed();
    if mode == Mode::Ebpf {
        assert_eq!(iso.getsockopt_programs(), vec!["airlock_getopt"]);
    }

    // 9. `airlock stop --release` removes interception: agents then go
    //    out directly (no credential).
    let out = daemon.cli(&["stop", "--release"]);
    assert!(out.success(), "{out:#?}");
    assert!(
        out.stdout.contains("released transparent interception"),
        "{out:#?}"
    );
    iso.assert_released();
    let out = run(
        Command::new("bash").args(["-c", &script]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(out.success(), "{out:#?}");
    let seen = up.requests_to("/echo/down");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), None);
}
