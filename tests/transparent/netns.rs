//! Agents in network namespaces of their own (what a container is): the
//! daemon opens the transparent listener inside each (docs/containers.md),
//! refuses connects from a namespace it has not reached yet, and keeps
//! each namespace's connections apart from the others'. eBPF only: the
//! nftables fallback redirects in the host's namespace alone.
//!
//! Namespaces are made with `ip netns add` ([`IpNetns`], deleted on drop)
//! or `unshare -n`; processes enter them with `nsenter --net` after
//! joining the agent's cgroup (`ip netns exec` remounts `/sys`, which hides
//! the cgroup2 mount from the script).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support;
use crate::support::upstream::{Upstream, UpstreamOpts};
use crate::support::{Daemon, Output, run};

/// The bound on the first-connection delay of a new namespace (its
/// measured value is printed and written in docs/containers.md).
const FIRST_CONNECTION_BOUND: Duration = Duration::from_secs(3);

/// A namespace made with `ip netns add`, deleted on drop.
struct IpNetns {
    name: String,
}

impl IpNetns {
    /// A new namespace; its loopback up when `lo_up`.
    fn new(lo_up: bool) -> IpNetns {
        let name = format!("airlock-test-{}", support::random_hex(4));
        let out = run(
            Command::new("ip").args(["netns", "add", &name]),
            None,
            CLIENT_TIMEOUT,
        );
        assert!(out.success(), "ip netns add: {out:#?}");
        let ns = IpNetns { name };
        if lo_up {
            let out = run(
                Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]),
                None,
                CLIENT_TIMEOUT,
            );
            assert!(out.success(), "ip link set lo up: {out:#?}");
        }
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for IpNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `argv`, run in the cgroup at `cgroup` and, with `ns`, in that
/// namespace (a path for `nsenter --net`).
fn command_in(cgroup: &Path, ns: Option<&str>, argv: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    let enter = if ns.is_some() {
        "exec nsenter --net=\"$1\" \"${@:2}\""
    } else {
        "exec \"${@:2}\""
    };
    cmd.args([
        "-c",
        // The moment the process is an agent's, for the clients' timing.
        &format!("echo $$ > \"$0/cgroup.procs\" && export AIRLOCK_T0=$EPOCHREALTIME && {enter}"),
        &cgroup.display().to_string(),
        ns.unwrap_or("-"),
    ])
    .args(argv);
    cmd
}

fn run_in(cgroup: &Path, ns: Option<&str>, argv: &[&str]) -> Output {
    run(&mut command_in(cgroup, ns, argv), None, CLIENT_TIMEOUT)
}

/// A long-lived process in `cgroup` and `ns` (what keeps a container's
/// namespace an agent's), killed on drop.
struct Resident(Child);

impl Resident {
    fn start(cgroup: &Path, ns: Option<&str>) -> Resident {
        let child = command_in(cgroup, ns, &["sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        Resident(child)
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Python HTTPS client: connects to `127.0.0.1:PORT` (from `source_port`
/// if given), retrying refused connects for up to `retry_s` seconds, then
/// asks `path` trusting Airlock's CA. Prints `STATUS MS FIRST_ERROR`: the
/// time from the process joining the agent's cgroup ([`command_in`]) until
/// the connect succeeded, and what refused the first attempt (`-` if none
/// did).
fn client_py(
    up: &Upstream,
    ca: &str,
    path: &str,
    retry_s: u32,
    source_port: Option<u16>,
) -> String {
    let bind = source_port
        .map(|p| {
            format!(
                "\x20       s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 \x20       s.bind(('127.0.0.1', {p}))\n"
            )
        })
        .unwrap_or_default();
    format!(
        "import os, socket, ssl, sys, time\n\
         t0 = float(os.environ.get('AIRLOCK_T0') or time.time())\n\
         errs = []\n\
         while True:\n\
         \x20   try:\n\
         \x20       s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         \x20       s.settimeout(10)\n\
         {bind}\
         \x20       s.connect(('127.0.0.1', {port}))\n\
         \x20       break\n\
         \x20   except OSError as e:\n\
         \x20       s.close()\n\
         \x20       errs.append(type(e).__name__)\n\
         \x20       if time.time() - t0 > {retry_s}:\n\
         \x20           print('never', errs[0]); sys.exit(1)\n\
         \x20       time.sleep(0.002)\n\
         ms = (time.time() - t0) * 1000\n\
         t = ssl.create_default_context(cafile='{ca}').wrap_socket(s, server_hostname='{host}')\n\
         t.sendall(b'GET {path} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\nConnection: close\\r\\n\\r\\n')\n\
         print(t.recv(100).split(b' ')[1].decode(), round(ms, 1), errs[0] if errs else '-')\n",
        port = up.port(),
        host = up.host(),
    )
}

/// `(status, ms, first error)` from [`client_py`]'s line.
fn parse_client(out: &Output) -> (String, f64, String) {
    let mut it = out.stdout.split_whitespace();
    let status = it.next().unwrap_or_default().to_owned();
    let ms = it.next().and_then(|m| m.parse().ok()).unwrap_or(f64::NAN);
    let first = it.next().unwrap_or_default().to_owned();
    (status, ms, first)
}

struct Setup {
    iso: Isolation,
    up: Upstream,
    daemon: Daemon,
    ca: String,
}

/// An eBPF daemon with agents `agents`, each granted its own key for the
/// upstream (`sk-<agent>-...`, returned in the same order).
fn setup(agents: &[&str]) -> (Setup, Vec<String>) {
    setup_in(Mode::Ebpf, agents)
}

fn setup_in(mode: Mode, agents: &[&str]) -> (Setup, Vec<String>) {
    let iso = Isolation::new(mode);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    let authority = format!("{}:{}", up.host(), up.port());
    let mut keys = Vec::new();
    for agent in agents {
        add_agent(&daemon, &iso, agent);
        let key = format!("sk-{agent}-{}", support::random_hex(8));
        add_secret(&daemon, &format!("up-{agent}"), &authority, &key, agent);
        keys.push(key);
    }
    let ca = daemon.cli_ok(&["ca", "path"]).trim().to_owned();
    (
        Setup {
            iso,
            up,
            daemon,
            ca,
        },
        keys,
    )
}

impl Setup {
    fn agent_dir(&self, agent: &str) -> PathBuf {
        self.iso.cg.path(&self.iso.agent_cgroup(agent))
    }

    /// The request to `path` reached the upstream once, with `key`, and
    /// its audit record names `agent`.
    fn assert_served_as(&self, path: &str, key: &str, agent: &str) {
        let seen = self.up.requests_to(path);
        assert_eq!(seen.len(), 1, "{path}: {seen:#?}");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {key}").as_str()),
            "{path}"
        );
        let rec = wait_audit(&self.daemon, |e| e["path"] == path);
        assert_eq!(rec["agent"], agent, "{rec:#}");
    }

    fn wait_log(&self, needle: &str, within: Duration) {
        let found = support::wait_until(within, Duration::from_millis(50), || {
            self.daemon.log().contains(needle).then_some(())
        });
        assert!(
            found.is_some(),
            "no {needle:?} in the log within {within:?}:\n{}",
            self.daemon.log()
        );
    }
}

/// A process in an agent's cgroup inside an `ip netns` namespace: its
/// HTTPS (curl and Python) is intercepted, the key injected, the audit
/// names the agent; the first connection of a fresh namespace's first
/// process is measured and bounded. A namespace whose loopback is down is
/// named in a warning; a namespace no agent uses any more is released.
#[test]
fn ebpf_an_agent_in_its_own_network_namespace_is_intercepted() {
    require!(Mode::Ebpf);
    let (s, keys) = setup(&["bot"]);
    let dir = s.agent_dir("bot");

    // The first process of a fresh namespace: how long until it connects.
    let ns = IpNetns::new(true);
    let started = Instant::now();
    let out = run_in(
        &dir,
        Some(&ns.path()),
        &[
            "python3",
            "-c",
            &client_py(&s.up, &s.ca, "/echo/first", 10, None),
        ],
    );
    let wall = started.elapsed();
    let (status, ms, first) = parse_client(&out);
    assert_eq!(status, "200", "{out:#?}\n{}", s.daemon.log());
    let log = s.daemon.log();
    let reached = log
        .lines()
        .find(|l| l.contains("serving agents in network namespace") && l.contains(&ns.name))
        .unwrap_or_default();
    println!(
        "first-connection delay of a new network namespace: {ms} ms from the first process \
         joining the agent's cgroup to its connect succeeding (first attempt: {first}; to the \
         response {} ms); the daemon: {reached}",
        wall.as_millis()
    );
    assert!(
        ms < FIRST_CONNECTION_BOUND.as_millis() as f64,
        "{ms} ms to the first connection"
    );
    assert!(
        first == "-" || first == "PermissionError",
        "refused only by the kernel program, if at all: {first}"
    );
    s.assert_served_as("/echo/first", &keys[0], "bot");
    assert!(
        s.daemon
            .log()
            .contains("serving agents in network namespace")
    );

    // curl, a real client, in the same namespace.
    let url = format!("https://{}:{}/echo/curl", s.up.host(), s.up.port());
    let resolve = format!("{}:{}:127.0.0.1", s.up.host(), s.up.port());
    let out = run_in(
        &dir,
        Some(&ns.path()),
        &[
            "curl",
            "-sS",
            "-m",
            "20",
            "--cacert",
            &s.ca,
            "--resolve",
            &resolve,
            &url,
        ],
    );
    assert!(out.success(), "{out:#?}\n{}", s.daemon.log());
    s.assert_served_as("/echo/curl", &keys[0], "bot");

    // Loopback down: a warning that names the namespace; nothing served.
    let down = IpNetns::new(false);
    let _resident = Resident::start(&dir, Some(&down.path()));
    s.wait_log(&down.name, Duration::from_secs(5));
    let log = s.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains(&down.name))
        .unwrap_or_default();
    assert!(line.contains("its loopback interface is down"), "{line}");

    // No process in `ns` any more (the clients exited): released.
    s.wait_log(
        "no agent in network namespace any more: released",
        Duration::from_secs(10),
    );
}

/// Two namespaces, two agents, at once, with the very same 4-tuple
/// (`127.0.0.1:SOURCE → 127.0.0.1:LISTENER` in each): each connection is
/// its own agent's, never the other's (the netns cookie in the tuple key).
#[test]
fn ebpf_two_namespaces_with_the_same_tuple_keep_their_own_agents() {
    require!(Mode::Ebpf);
    let (s, keys) = setup(&["alpha", "beta"]);
    let (ns_a, ns_b) = (IpNetns::new(true), IpNetns::new(true));
    let source_port = 40_000 + (std::process::id() % 20_000) as u16;
    let spawn = |agent: &str, ns: &IpNetns, path: &str| {
        command_in(
            &s.agent_dir(agent),
            Some(&ns.path()),
            &[
                "python3",
                "-c",
                &client_py(&s.up, &s.ca, path, 10, Some(source_port)),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client")
    };
    for round in 0..3 {
        let (pa, pb) = (
            format!("/echo/alpha-{round}"),
            format!("/echo/beta-{round}"),
        );
        let a = spawn("alpha", &ns_a, &pa);
        let b = spawn("beta", &ns_b, &pb);
        for (child, path) in [(a, &pa), (b, &pb)] {
            let out = child.wait_with_output().expect("client");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.starts_with("200"),
                "{path}: {stdout} {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                s.daemon.log()
            );
        }
        s.assert_served_as(&pa, &keys[0], "alpha");
        s.assert_served_as(&pb, &keys[1], "beta");
    }
}

/// An agent that makes itself a new namespace (`unshare -n`): its first
/// connect is refused by the kernel program (EPERM, the upstream sees
/// nothing; with its loopback down it cannot be reached at all), and once
/// it brings loopback up the daemon reaches it and its connections work,
/// as the agent.
#[test]
fn ebpf_a_namespace_never_seen_is_refused_until_reached() {
    require!(Mode::Ebpf);
    let (s, keys) = setup(&["bot"]);
    // Populated already: the unshare below makes no cgroup event, only
    // the periodic scan can find it.
    let _resident = Resident::start(&s.agent_dir("bot"), None);
    let first = client_py(&s.up, &s.ca, "/echo/unreached", 0, None);
    let then = client_py(&s.up, &s.ca, "/echo/reached", 10, None);
    let out = run_in(
        &s.agent_dir("bot"),
        None,
        &[
            "unshare",
            "-n",
            "sh",
            "-c",
            "python3 -c \"$0\"; ip link set lo up && exec python3 -c \"$1\"",
            &first,
            &then,
        ],
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:#?}\n{}", s.daemon.log());
    assert_eq!(lines[0], "never PermissionError", "{out:#?}");
    assert!(s.up.requests_to("/echo/unreached").is_empty());
    assert!(lines[1].starts_with("200 "), "{out:#?}\n{}", s.daemon.log());
    println!(
        "unshare -n: reached after {} ms",
        lines[1].split(' ').nth(1).unwrap_or("?")
    );
    s.assert_served_as("/echo/reached", &keys[0], "bot");
}

/// kill -9 with a namespace served: the next connection from it fails
/// (nothing listens there, nothing goes out); restarted, the daemon
/// reaches the same namespace again and the same resident agent's
/// connections work, nothing restarted on the agent's side.
#[test]
fn ebpf_a_killed_daemon_fails_closed_in_a_namespace_and_a_restart_reaches_it_again() {
    require!(Mode::Ebpf);
    let (mut s, keys) = setup(&["bot"]);
    let ns = IpNetns::new(true);
    let dir = s.agent_dir("bot");
    let _resident = Resident::start(&dir, Some(&ns.path()));
    let client = |s: &Setup, path: &str, retry_s: u32| {
        run_in(
            &dir,
            Some(&ns.path()),
            &[
                "python3",
                "-c",
                &client_py(&s.up, &s.ca, path, retry_s, None),
            ],
        )
    };
    let out = client(&s, "/echo/before", 10);
    assert!(
        out.stdout.starts_with("200"),
        "{out:#?}\n{}",
        s.daemon.log()
    );

    s.daemon.kill9();
    let before = s.up.requests().len();
    let out = client(&s, "/echo/down", 0);
    assert_eq!(
        out.stdout.trim(),
        "never ConnectionRefusedError",
        "{out:#?}"
    );
    assert_eq!(
        s.up.requests().len(),
        before,
        "went out while the daemon was down"
    );

    s.daemon.restart();
    let out = client(&s, "/echo/again", 10);
    assert!(
        out.stdout.starts_with("200"),
        "{out:#?}\n{}",
        s.daemon.log()
    );
    println!(
        "after a restart, reached again within {} ms of the client's start",
        parse_client(&out).1
    );
    s.assert_served_as("/echo/again", &keys[0], "bot");
}

/// The nftables fallback cannot see other namespaces' traffic: an agent
/// process in a namespace of its own is named in a warning saying it is
/// not intercepted (and nothing is opened there).
#[test]
fn nftables_an_agent_in_its_own_network_namespace_is_warned_about() {
    require!(Mode::Nftables);
    let (s, _) = setup_in(Mode::Nftables, &["bot"]);
    let ns = IpNetns::new(true);
    let _resident = Resident::start(&s.agent_dir("bot"), Some(&ns.path()));
    s.wait_log(&ns.name, Duration::from_secs(5));
    let log = s.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains(&ns.name))
        .unwrap_or_default();
    assert!(line.contains("NOT intercepted"), "{line}");
    assert!(
        !log.contains("serving agents in network namespace"),
        "{log}"
    );
}
