//! Stale records (#15, item 7): a record left in the 4-tuple map lends
//! no identity.

use std::process::Command;

use crate::harness::*;
use crate::support;
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, run};

/// The transparent listener's IPv4 port, from `airlock status`.
fn transparent_port(daemon: &Daemon) -> u16 {
    let status = daemon.status_json();
    status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str()?.strip_prefix("transparent proxy on 127.0.0.1:"))
        .find_map(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no transparent listener on 127.0.0.1: {status:#}"))
}

/// A Python client that connects (from `bind_port` if given, with
/// SO_REUSEADDR) to `connect` and asks `https://{up.host()}:{up.port()}{path}`,
/// trusting Airlock's CA: prints the status code, or `refused NAME` when
/// the gateway closes the connection instead.
fn https_client_py(
    bind_port: Option<u16>,
    connect: (&str, u16),
    ca: &str,
    up: &Upstream,
    path: &str,
) -> String {
    let bind = bind_port
        .map(|p| {
            format!(
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('127.0.0.1', {p}))\n"
            )
        })
        .unwrap_or_default();
    format!(
        "import socket, ssl\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         s.settimeout(20)\n\
         {bind}\
         s.connect(('{ip}', {port}))\n\
         ctx = ssl.create_default_context(cafile='{ca}')\n\
         try:\n\
         \x20   t = ctx.wrap_socket(s, server_hostname='{host}')\n\
         \x20   t.sendall(b'GET {path} HTTP/1.1\\r\\nHost: {host}:{up_port}\\r\\nConnection: close\\r\\n\\r\\n')\n\
         \x20   print(t.recv(100).split(b' ')[1].decode())\n\
         except (OSError, ssl.SSLError) as e:\n\
         \x20   print('refused', type(e).__name__)\n",
        ip = connect.0,
        port = connect.1,
        host = up.host(),
        up_port = up.port(),
    )
}

/// The scenario of #15 item 7: an agent's connection sits in the
/// gateway's backlog (the daemon is stopped, so it is never accepted),
/// the daemon is killed and restarted, and someone outside every agent
/// cgroup connects to the transparent listener from the same source port.
/// The record the agent's connection left in the (pinned, adopted) 4-tuple
/// map must not make that connection the agent: it is refused and
/// audited, the upstream sees nothing, and the restart says it flushed
/// the record.
#[test]
fn ebpf_a_record_left_in_the_backlog_lends_no_identity_after_a_restart() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let mut daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-stale-{}", support::random_hex(12));
    let authority = format!("{}:{}", up.host(), up.port());
    add_secret(&daemon, "up", &authority, &value, "bot");
    // The agent works, so a refusal below is the check, not the set-up.
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(up.host(), up.port(), "127.0.0.1", "/echo/fresh")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    assert_eq!(up.requests_to("/echo/fresh").len(), 1);
    let listener = transparent_port(&daemon);
    let ca = daemon.cli_ok(&["ca", "path"]).trim().to_owned();

    // Accept held: the kernel still completes the handshake into the
    // backlog, so the agent's connection is established and recorded.
    let pid = nix::unistd::Pid::from_raw(daemon.pid().expect("the daemon runs"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let agent_dir = iso.cg.path(&iso.agent_cgroup("bot"));
    let py = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {}), timeout=30)\n\
         print(s.getsockname()[1], flush=True)\n\
         try:\n\
         \x20   s.recv(1)\n\
         except OSError:\n\
         \x20   pass\n",
        up.port()
    );
    let mut agent = Command::new("bash")
        .args([
            "-c",
            &format!(
                "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
                agent_dir.display()
            ),
            &py,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the agent's client");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(agent.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the agent's source port");
    let source_port: u16 = line.trim().parse().unwrap_or_else(|_| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
        panic!("the agent did not connect: {line:?}")
    });

    // kill -9 with the connection still in the backlog: it is reset,
    // never accepted, and its record stays in the pinned map.
    daemon.kill9();
    let agent_pid = i32::try_from(agent.id()).expect("pid");
    assert!(
        support::process::wait_for_exit(agent_pid, CLIENT_TIMEOUT),
        "the agent's connection outlived the daemon"
    );
    let _ = agent.wait();
    daemon.set_env("AIRLOCK_TRANSPARENT_PORT", listener.to_string());
    daemon.restart();
    assert_eq!(transparent_port(&daemon), listener);

    // Outside every agent cgroup, the same 4-tuple.
    let py = https_client_py(
        Some(source_port),
        ("127.0.0.1", listener),
        &ca,
        &up,
        "/echo/stale",
    );
    let out = run(
        Command::new("python3").args(["-c", &py]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(
        out.stdout.starts_with("refused"),
        "a connection from outside the agent's cgroup was served: {out:#?}\n{}",
        daemon.log()
    );
    assert!(
        up.requests_to("/echo/stale").is_empty(),
        "the upstream got a request as the agent: {:#?}",
        up.requests_to("/echo/stale")
    );
    let peer = format!("127.0.0.1:{source_port}");
    let rec = wait_audit(&daemon, |e| {
        e["decision"] == "unknown_connection"
            && e["detail"].as_str().is_some_and(|d| d.contains(&peer))
    });
    assert!(rec["agent"].is_null(), "{rec:#}");
    assert!(
        daemon
            .log()
            .contains("removed connection records an earlier daemon left unaccepted"),
        "the restart flushed nothing: the scenario made no stale record\n{}",
        daemon.log()
    );

    // And the agent still works after all that.
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(up.host(), up.port(), "127.0.0.1", "/echo/after")),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/after");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
}

/// The third check of item 7 on its own, with a fresh record: a socket
/// made in agent `a`'s cgroup by a process that then moved into agent
/// `b`'s before connecting is recorded as `b`'s (the connecting task's
/// cgroup) but belongs to `a`'s cgroup. The gateway compares the record
/// with the socket's own cgroup (sock_diag) and refuses it, so `b`'s
/// secret is not injected.
#[test]
fn ebpf_a_record_and_a_socket_of_different_agents_are_refused() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    add_agent(&daemon, &iso, "a");
    add_agent(&daemon, &iso, "b");
    let value = format!("sk-crossed-{}", support::random_hex(12));
    let authority = format!("{}:{}", up.host(), up.port());
    add_secret(&daemon, "up", &authority, &value, "b");
    let ca = daemon.cli_ok(&["ca", "path"]).trim().to_owned();
    let (a_dir, b_dir) = (
        iso.cg.path(&iso.agent_cgroup("a")),
        iso.cg.path(&iso.agent_cgroup("b")),
    );
    let client = |path: &str, hop: bool| {
        // The socket is made in a's cgroup; with `hop` the process then
        // joins b's before it connects.
        let hop = if hop {
            format!(
                "open('{}/cgroup.procs', 'w').write(str(os.getpid()))\n",
                b_dir.display()
            )
        } else {
            String::new()
        };
        let py = https_client_py(None, ("127.0.0.1", up.port()), &ca, &up, path).replacen(
            "s.settimeout(20)\n",
            &format!("s.settimeout(20)\nimport os\n{hop}"),
            1,
        );
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
            a_dir.display()
        );
        run(
            Command::new("bash").args(["-c", &script, &py]),
            None,
            CLIENT_TIMEOUT,
        )
    };
    // Without the hop: a, who has no grant for this host, gets through
    // without a credential (the path works, identity is a's).
    let out = client("/echo/as-a", false);
    assert_eq!(out.stdout.trim(), "200", "{out:#?}\n{}", daemon.log());
    assert_eq!(
        up.requests_to("/echo/as-a")[0].header("authorization"),
        None
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/as-a");
    assert_eq!(rec["agent"], "a", "{rec:#}");

    let out = client("/echo/crossed", true);
    assert!(
        out.stdout.starts_with("refused"),
        "a's socket was served as b: {out:#?}\n{}",
        daemon.log()
    );
    assert!(up.requests_to("/echo/crossed").is_empty());
    let rec = wait_audit(&daemon, |e| {
        e["decision"] == "unknown_connection"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("carries agent b's record"))
    });
    assert!(rec["agent"].is_null(), "{rec:#}");
}
