//! Transparent interception end to end, for real (root, eBPF or
//! nftables): the daemon attaches its programs to (or installs its nft
//! table for) a test-only agents' parent cgroup, and real clients started
//! with `airlock run --agent NAME -- CMD` — with no proxy variables at all
//! — reach a loopback HTTPS upstream through the gateway, with the
//! credential injected and the agent identified by its cgroup: curl,
//! Python requests, Node's fetch, `git ls-remote`. Each scenario runs in
//! both modes (the nftables fallback forced with `--transparent
//! nftables`).
//!
//! Every test uses its own cgroups (`airlock-test-<random>.slice`, the
//! gateway's `airlock-test-<random>-gw`), its own pin directory
//! (`/sys/fs/bpf/airlock-test-<random>`), its own nft table
//! (`inet airlock_test_<random>`) and intercepts only its own upstream's
//! ports, so it neither sees nor disturbs anything else on the machine.
//! [`Isolation`] removes all of it (pins, links, the table, cgroups and
//! the processes in them) however the test ends.
//!
//! Without root, without an eBPF object in the build (eBPF tests) or
//! without `nft` (nftables tests), the tests say so and pass without
//! checking anything.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use airlock::intercept::bpf;
use airlock::intercept::cgroup::Cgroup2;
use support::cgroups::remove_cgroup_tree;
use support::git_http::GitServer;
use support::upstream::{Upstream, UpstreamOpts};
use support::{Daemon, Output, run};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The redirect mechanism a test forces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ebpf,
    Nftables,
}

impl Mode {
    /// `--transparent` / `AIRLOCK_TRANSPARENT`.
    fn name(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Nftables => "nftables",
        }
    }

    /// How `airlock status` names the running mode.
    fn status_prefix(self) -> &'static str {
        match self {
            Mode::Ebpf => "transparent (eBPF",
            Mode::Nftables => "transparent (nftables",
        }
    }
}

/// Why the tests of `mode` cannot run here, if they cannot.
fn skip_reason(mode: Mode) -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root");
    }
    if Cgroup2::find().is_err() {
        return Some("no cgroup v2");
    }
    match mode {
        Mode::Ebpf if airlock::ebpf::object().is_none() => {
            Some("this build has no eBPF object (cargo xtask build-ebpf)")
        }
        Mode::Nftables if Command::new("nft").arg("--version").output().is_err() => {
            Some("no nft command (cargo xtask setup installs nftables)")
        }
        _ => None,
    }
}

macro_rules! require {
    ($mode:expr) => {
        if let Some(why) = skip_reason($mode) {
            eprintln!(
                "SKIPPED: transparent interception tests ({}) need root and it: {why}",
                $mode.name()
            );
            return;
        }
    };
}

/// The test's own cgroups and pin directory, removed on drop: pins first
/// (detaching the programs), then every process left in the cgroups,
/// then the cgroups, deepest first.
struct Isolation {
    mode: Mode,
    cg: Cgroup2,
    parent: String,
    gateway: String,
    pin_dir: PathBuf,
    nft_table: String,
}

impl Isolation {
    fn new(mode: Mode) -> Isolation {
        let id = support::random_hex(4);
        Isolation {
            mode,
            cg: Cgroup2::find().expect("cgroup v2"),
            parent: format!("airlock-test-{id}.slice"),
            gateway: format!("airlock-test-{id}-gw"),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/airlock-test-{id}")),
            nft_table: format!("airlock_test_{id}"),
        }
    }

    fn parent_dir(&self) -> PathBuf {
        self.cg.path(&self.parent)
    }

    fn gateway_dir(&self) -> PathBuf {
        self.cg.path(&self.gateway)
    }

    /// An agent cgroup path (relative, as `airlock agent add --cgroup` takes it).
    fn agent_cgroup(&self, name: &str) -> String {
        format!("{}/agent-{name}", self.parent)
    }

    /// The daemon's environment for this isolation.
    fn env(&self, ports: &[u16]) -> Vec<(&'static str, String)> {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        vec![
            ("AIRLOCK_TRANSPARENT", self.mode.name().into()),
            ("AIRLOCK_TRANSPARENT_PORT", "0".into()),
            ("AIRLOCK_INTERCEPT_PORTS", ports.join(",")),
            ("AIRLOCK_AGENTS_CGROUP", self.parent.clone()),
            ("AIRLOCK_GATEWAY_CGROUP", self.gateway.clone()),
            ("AIRLOCK_BPF_PIN_DIR", self.pin_dir.display().to_string()),
            ("AIRLOCK_NFT_TABLE", self.nft_table.clone()),
        ]
    }

    /// How many nft tables have this test's name (0 or 1; never more).
    fn nft_tables(&self) -> usize {
        let out = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("nft list tables");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim() == format!("table inet {}", self.nft_table))
            .count()
    }

    /// The test's nft table as `nft list table` prints it.
    fn nft_ruleset(&self) -> String {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.nft_table])
            .output()
            .expect("nft list table");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whatever redirects this test's agents is in place, exactly once,
    /// and nothing of the other mode.
    fn assert_installed(&self) {
        match self.mode {
            Mode::Ebpf => {
                let attached = self.attached();
                assert_eq!(attached.len(), 5, "{attached:?}");
                assert_eq!(self.nft_tables(), 0);
            }
            Mode::Nftables => {
                assert_eq!(self.nft_tables(), 1);
                let rules = self.nft_ruleset();
                assert_eq!(rules.matches("redirect to").count(), 1, "{rules}");
                assert_eq!(rules.matches(" drop").count(), 1, "{rules}");
                assert!(self.attached().is_empty());
            }
        }
    }

    /// Nothing of this test redirects anything any more.
    fn assert_released(&self) {
        assert!(self.attached().is_empty());
        assert!(!self.pin_dir.exists());
        assert_eq!(self.nft_tables(), 0);
    }

    /// The programs attached to the agents' parent cgroup.
    fn attached(&self) -> Vec<(&'static str, String)> {
        bpf::list_agent_side(&self.parent_dir()).expect("listing the parent's programs")
    }

    fn getsockopt_programs(&self) -> Vec<String> {
        bpf::program_names(
            &bpf::attached_program_ids(&self.gateway_dir(), bpf::attach_type::GETSOCKOPT)
                .expect("listing the gateway cgroup's programs"),
        )
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        if let Err(e) = bpf::release(&self.pin_dir) {
            eprintln!("warning: releasing {}: {e}", self.pin_dir.display());
        }
        if let Err(e) = airlock::intercept::nft::remove(&self.nft_table) {
            eprintln!("warning: removing nft table {}: {e}", self.nft_table);
        }
        remove_cgroup_tree(&self.parent_dir());
        remove_cgroup_tree(&self.gateway_dir());
    }
}

/// A daemon intercepting for `iso` on `up`'s ports.
fn start_daemon(iso: &Isolation, up: &Upstream, extra_ports: &[u16]) -> Daemon {
    let mut ports = vec![up.port()];
    ports.extend(up.addr_v6().map(|a| a.port()));
    ports.extend_from_slice(extra_ports);
    start_daemon_for(iso, up.ca_pem_path(), &ports)
}

/// A daemon intercepting for `iso` on `ports`, trusting `upstream_ca`.
fn start_daemon_for(iso: &Isolation, upstream_ca: &Path, ports: &[u16]) -> Daemon {
    let mut builder = Daemon::builder()
        .env("AIRLOCK_UPSTREAM_CA", upstream_ca.display().to_string())
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8,::1/128");
    for (k, v) in iso.env(ports) {
        builder = builder.env(k, v);
    }
    builder.start()
}

/// Adds agent `name` and waits (bounded) until the daemon has made its
/// cgroup: the daemon creates it when its snapshot reloads, a moment after
/// `agent add` returns, and a test that writes a pid into it before then
/// finds no such directory.
fn add_agent(daemon: &Daemon, iso: &Isolation, name: &str) {
    daemon.cli_ok(&["agent", "add", name, "--cgroup", &iso.agent_cgroup(name)]);
    let dir = iso.cg.path(&iso.agent_cgroup(name));
    let made = support::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        dir.join("cgroup.procs").exists().then_some(())
    });
    assert!(
        made.is_some(),
        "the daemon did not create {} within 10 s\n{}",
        dir.display(),
        daemon.log()
    );
}

fn add_secret(daemon: &Daemon, name: &str, host: &str, value: &str, agent: &str) {
    daemon
        .cli_stdin(
            &[
                "secret",
                "add",
                name,
                "--host",
                host,
                "--header",
                "Authorization",
            ],
            value,
        )
        .ok();
    daemon.cli_ok(&["agent", "grant", agent, name]);
}

/// `airlock run --agent AGENT --user nobody -- ARGS...` against `daemon`.
/// As `nobody` rather than the agent's own user (the default, which
/// tests/run_user.rs covers): these tests share agent names, and an
/// agent's own user outlives the test.
fn agent_run(daemon: &Daemon, agent: &str, args: &[&str]) -> Output {
    let mut cmd = daemon.command();
    cmd.args(["run", "--agent", agent, "--user", "nobody", "--"])
        .args(args);
    run(&mut cmd, None, CLIENT_TIMEOUT)
}

/// curl with no proxy and the name resolved to `ip`.
fn curl_args(up_host: &str, port: u16, ip: &str, path: &str) -> Vec<String> {
    vec![
        "curl".into(),
        "-sS".into(),
        "--noproxy".into(),
        "*".into(),
        "-m".into(),
        "20".into(),
        "--resolve".into(),
        format!("{up_host}:{port}:{ip}"),
        format!("https://{up_host}:{port}{path}"),
    ]
}

fn audit_json(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon
        .cli_ok(&["audit", "--json", "--limit", "1000"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for an audit record matching `pred`.
fn wait_audit(daemon: &Daemon, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..50 {
        if let Some(e) = audit_json(daemon).into_iter().find(|e| pred(e)) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no matching audit record; audit:\n{}",
        daemon.cli_ok(&["audit", "--json", "--limit", "1000"])
    );
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

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

#[test]
fn ebpf_unknown_cgroups_under_the_parent_are_refused_and_audited() {
    unknown_cgroups_are_refused(Mode::Ebpf);
}

#[test]
fn nftables_unknown_cgroups_under_the_parent_are_refused_and_audited() {
    unknown_cgroups_are_refused(Mode::Nftables);
}

fn unknown_cgroups_are_refused(mode: Mode) {
    require!(mode);
    let iso = Isolation::new(mode);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    let stranger = iso.parent_dir().join("stranger");
    fs::create_dir_all(&stranger).unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} --cacert {}",
        stranger.display(),
        curl_args(up.host(), up.port(), "127.0.0.1", "/echo/stranger")
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        up.ca_pem_path().display()
    );
    let out = run(
        Command::new("bash").args(["-c", &script]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(!out.success(), "{out:#?}");
    assert!(up.requests_to("/echo/stranger").is_empty());
    let rec = wait_audit(&daemon, |e| e["decision"] == "unknown_agent");
    assert!(rec["agent"].is_null(), "{rec:#}");
    assert!(
        rec["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not an agent's cgroup")),
        "{rec:#}"
    );
}

#[test]
fn without_ebpf_auto_falls_back_to_nftables_and_ebpf_mode_refuses_to_start() {
    require!(Mode::Ebpf);
    require!(Mode::Nftables);
    let iso = Isolation::new(Mode::Nftables);
    let up = Upstream::start(UpstreamOpts::https());
    // A pin directory on no BPF file system: eBPF cannot be set up.
    let not_bpffs = format!("/tmp/airlock-test-not-bpffs-{}", support::random_hex(4));
    let mut env: Vec<(&str, String)> = iso.env(&[up.port()]);
    env.retain(|(k, _)| !matches!(*k, "AIRLOCK_TRANSPARENT" | "AIRLOCK_BPF_PIN_DIR"));
    env.push(("AIRLOCK_BPF_PIN_DIR", not_bpffs.clone()));
    let dir = support::temp_data_dir();
    let mut refused: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    refused.push(("AIRLOCK_TRANSPARENT", "ebpf"));
    let out = support::serve_expect_exit(dir.path(), &refused);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("transparent interception is required")
            && out.stderr.contains("no BPF file system"),
        "{out:#?}"
    );
    assert_eq!(iso.nft_tables(), 0, "ebpf mode must not fall back");

    let mut builder = Daemon::builder()
        .env("AIRLOCK_TRANSPARENT", "auto")
        .env(
            "AIRLOCK_UPSTREAM_CA",
            up.ca_pem_path().display().to_string(),
        )
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8");
    for (k, v) in &env {
        builder = builder.env(k, v.clone());
    }
    let daemon = builder.start();
    let status = daemon.status_json();
    let mode = status["mode"].as_str().unwrap_or_default();
    assert!(
        mode.starts_with(&format!(
            "transparent (nftables, table inet {}",
            iso.nft_table
        )) && mode.contains("because eBPF interception could not start")
            && mode.contains("no BPF file system"),
        "{status:#}"
    );
    assert!(daemon.log().contains("falling back to nftables"));
    assert!(!Path::new(&not_bpffs).exists());
    iso.assert_installed();

    // The fallback intercepts for real.
    add_agent(&daemon, &iso, "bot");
    let value = format!("sk-fallback-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("{}:{}", up.host(), up.port()),
        &value,
        "bot",
    );
    let out = agent_run(
        &daemon,
        "bot",
        &as_strs(&curl_args(
            up.host(),
            up.port(),
            "127.0.0.1",
            "/echo/fallback",
        )),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/fallback");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
}

#[test]
fn ebpf_git_ls_remote_gets_the_refs_with_the_injected_token() {
    git_ls_remote(Mode::Ebpf);
}

#[test]
fn nftables_git_ls_remote_gets_the_refs_with_the_injected_token() {
    git_ls_remote(Mode::Nftables);
}

/// `git ls-remote https://...` inside the agent's cgroup, no proxy and no
/// credential configured, against a smart-HTTP server that answers 401
/// without the token: the gateway injects it and the refs come back.
fn git_ls_remote(mode: Mode) {
    require!(mode);
    let iso = Isolation::new(mode);
    let token = format!("ghp-test-{}", support::random_hex(12));
    let server = GitServer::start(&token);
    let daemon = start_daemon_for(&iso, server.ca_pem_path(), &[server.port()]);
    add_agent(&daemon, &iso, "coder");
    let host = "api.test.local";
    add_secret(
        &daemon,
        "git",
        &format!("{host}:{}", server.port()),
        &token,
        "coder",
    );
    let url = format!("https://{host}:{}/repo.git", server.port());
    let resolve = format!("http.curloptResolve={host}:{}:127.0.0.1", server.port());
    let git = |agent_args: &[&str]| {
        let mut cmd = daemon.command();
        // The clean environment passes only what --env names.
        cmd.args(["run", "--agent", "coder", "--user", "nobody"])
            .args([
                "--env",
                "GIT_TERMINAL_PROMPT",
                "--env",
                "GIT_CONFIG_NOSYSTEM",
            ])
            .args(["--env", "GIT_CONFIG_GLOBAL", "--"])
            .args(agent_args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        run(&mut cmd, None, CLIENT_TIMEOUT)
    };
    let out = git(&["git", "-c", &resolve, "ls-remote", &url]);
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    assert!(
        out.stdout
            .contains(&format!("{}\trefs/heads/main", server.head())),
        "{out:#?}"
    );
    let seen = server.requests();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.authorized), "{seen:#?}");
    let rec = wait_audit(&daemon, |e| {
        e["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/repo.git/"))
    });
    assert_eq!(rec["agent"], "coder", "{rec:#}");
    assert_eq!(rec["secrets"][0], "git", "{rec:#}");

    // The same client outside any agent cgroup, trusting the server's CA:
    // no credential, so the server refuses it.
    let direct = run(
        Command::new("git")
            .args(["-c", &resolve, "ls-remote", &url])
            .env("GIT_SSL_CAINFO", server.ca_pem_path())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null"),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(!direct.success(), "{direct:#?}");
    assert!(
        server.requests().iter().any(|r| !r.authorized),
        "the direct request did not reach the server"
    );
}

#[test]
fn agent_rm_removes_the_cgroup_airlock_created_but_not_a_given_one() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    // Created by Airlock: the default `PARENT/agent-NAME`.
    daemon.cli_ok(&["agent", "add", "made"]);
    let made = iso.cg.path(&iso.agent_cgroup("made"));
    // Given with --cgroup: managed by someone else.
    let given_rel = format!("{}/managed-given", iso.parent);
    let given = iso.cg.path(&given_rel);
    fs::create_dir_all(&given).unwrap();
    daemon.cli_ok(&["agent", "add", "given", "--cgroup", &given_rel]);
    let wait = |p: &Path, exists: bool| {
        for _ in 0..50 {
            if p.exists() == exists {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    assert!(wait(&made, true), "{} was not created", made.display());

    daemon.cli_ok(&["agent", "rm", "made"]);
    daemon.cli_ok(&["agent", "rm", "given"]);
    assert!(!made.exists(), "{} survived agent rm", made.display());
    assert!(
        given.exists(),
        "the --cgroup {} was removed",
        given.display()
    );
    assert!(daemon.log().contains("removed the agent's cgroup"));

    // #15 item 8: a process left in the cgroup Airlock made is killed by
    // `agent rm` (it was kept, with a warning, before), so re-adding the
    // name cannot hand it the new agent's identity.
    daemon.cli_ok(&["agent", "add", "busy"]);
    let busy = iso.cg.path(&iso.agent_cgroup("busy"));
    assert!(wait(&busy, true));
    let old = Sleeper::start_in(&busy);
    daemon.cli_ok(&["agent", "rm", "busy"]);
    assert!(
        support::process::wait_for_exit(old.pid(), Duration::from_secs(5)),
        "the removed agent's process survived agent rm"
    );
    assert!(!busy.exists(), "{} survived agent rm", busy.display());
    assert!(daemon.log().contains("killing the processes in it"));
    daemon.cli_ok(&["agent", "add", "busy"]);
    let value = format!("sk-readded-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("{}:{}", up.host(), up.port()),
        &value,
        "busy",
    );
    let out = agent_run(
        &daemon,
        "busy",
        &as_strs(&curl_args(
            up.host(),
            up.port(),
            "127.0.0.1",
            "/echo/readded",
        )),
    );
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/readded");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );

    // A --cgroup one is not Airlock's to kill: removing its agent is
    // refused while processes are in it, and --force leaves them running.
    let kept_rel = format!("{}/managed-kept", iso.parent);
    let kept = iso.cg.path(&kept_rel);
    fs::create_dir_all(&kept).unwrap();
    daemon.cli_ok(&["agent", "add", "kept", "--cgroup", &kept_rel]);
    let survivor = Sleeper::start_in(&kept);
    let out = daemon.cli(&["agent", "rm", "kept"]);
    out.fails_with(&["still has processes", "--force"]);
    assert!(daemon.cli_ok(&["agent", "list"]).contains("kept"));
    daemon.cli_ok(&["agent", "rm", "kept", "--force"]);
    assert!(support::process::pid_alive(survivor.pid()));
    assert!(kept.exists());
    assert!(!daemon.cli_ok(&["agent", "list"]).contains("kept"));
}

/// A process in the cgroup at `dir`, killed on drop.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start_in(dir: &Path) -> Sleeper {
        let child = Command::new("sleep").arg("600").spawn().expect("sleep");
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("joining the cgroup");
        Sleeper(child)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid")
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// #15 item 8, where `agent rm` could not kill (a host that missed the
/// removal, a kill that failed): the cgroup Airlock made is marked with
/// the agent's id, which is new on every `agent add`, so processes in a
/// cgroup marked for another (removed) agent are not the agent that now
/// has its name: refused as an unknown cgroup. `agent rm` then kills them.
#[test]
fn survivors_in_a_cgroup_marked_for_a_removed_agent_are_not_the_new_agent() {
    require!(Mode::Ebpf);
    let iso = Isolation::new(Mode::Ebpf);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    daemon.cli_ok(&["agent", "add", "ghost"]);
    let dir = iso.cg.path(&iso.agent_cgroup("ghost"));
    let mark = |dir: &Path| airlock::intercept::cgroup::owner_mark(dir).ok().flatten();
    // Marked by the daemon as it makes it (not waited for in vain: an
    // older daemon never marks, and the check below then fails).
    let _ = support::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        mark(&dir)
    });
    let value = format!("sk-ghost-{}", support::random_hex(12));
    let authority = format!("{}:{}", up.host(), up.port());
    // A survivor, and the mark of the agent it ran as before "ghost" was
    // removed and added again on a host that missed the removal.
    let survivor = Sleeper::start_in(&dir);
    airlock::intercept::cgroup::set_owner_mark(&dir, "0a1b2c3d-removed-agent").unwrap();
    // A configuration change: the agent map is rebuilt.
    add_secret(&daemon, "up", &authority, &value, "ghost");
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} --cacert {}",
        dir.display(),
        curl_args(up.host(), up.port(), "127.0.0.1", "/echo/ghost")
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" "),
        daemon.cli_ok(&["ca", "path"]).trim()
    );
    let out = run(
        Command::new("bash").args(["-c", &script]),
        None,
        CLIENT_TIMEOUT,
    );
    assert!(!out.success(), "{out:#?}");
    assert!(up.requests_to("/echo/ghost").is_empty());
    let rec = wait_audit(&daemon, |e| e["decision"] == "unknown_agent");
    assert!(rec["agent"].is_null(), "{rec:#}");
    assert!(
        daemon.log().contains("processes left by a removed agent"),
        "{}",
        daemon.log()
    );
    daemon.cli_ok(&["agent", "rm", "ghost"]);
    assert!(support::process::wait_for_exit(
        survivor.pid(),
        Duration::from_secs(5)
    ));
}

/// Issue #8, exfiltration matrix: an agent run as an unprivileged user
/// cannot leave the agents' tree or make cgroups of its own: `mkdir` in
/// its cgroup, writing its pid into the parent's, the root's or the
/// gateway's `cgroup.procs`, and the same from a new user namespace (where
/// it is "root") all fail with EACCES or EPERM. Afterwards it is still in
/// its cgroup, and its HTTPS is still intercepted and audited as the agent.
#[test]
fn an_unprivileged_agent_cannot_leave_its_cgroup() {
    let Some(mode) = [Mode::Ebpf, Mode::Nftables]
        .into_iter()
        .find(|m| skip_reason(*m).is_none())
    else {
        require!(Mode::Nftables);
        return;
    };
    let iso = Isolation::new(mode);
    let up = Upstream::start(UpstreamOpts::https());
    let daemon = start_daemon(&iso, &up, &[]);
    // Made by Airlock (the daemon), as for any agent without --cgroup.
    daemon.cli_ok(&["agent", "add", "bot"]);
    let value = format!("sk-escape-{}", support::random_hex(12));
    add_secret(
        &daemon,
        "up",
        &format!("{}:{}", up.host(), up.port()),
        &value,
        "bot",
    );
    let agent_dir = iso.cg.path(&iso.agent_cgroup("bot"));
    let targets = [
        ("mkdir", agent_dir.join("escape")),
        ("mkdir", iso.parent_dir().join("escape")),
        ("move", iso.parent_dir().join("cgroup.procs")),
        ("move", iso.cg.mount.join("cgroup.procs")),
        ("move", iso.gateway_dir().join("cgroup.procs")),
    ];
    // One line per attempt: the errno's name, or "ok" if it worked.
    let attempts: String = targets
        .iter()
        .map(|(op, path)| format!("    ({op:?}, {:?}),\n", path.display().to_string()))
        .collect();
    let py = format!(
        "import errno, os\n\
         for op, path in [\n{attempts}]:\n\
         \x20   try:\n\
         \x20       if op == 'mkdir':\n\
         \x20           os.mkdir(path)\n\
         \x20       else:\n\
         \x20           with open(path, 'w') as f:\n\
         \x20               f.write(str(os.getpid()))\n\
         \x20       print(op, path, 'ok')\n\
         \x20   except OSError as e:\n\
         \x20       print(op, path, errno.errorcode.get(e.errno, e.errno))\n\
         v2 = [l for l in open('/proc/self/cgroup').read().splitlines() if l.startswith('0::')]\n\
         print('cgroup', v2[0])\n"
    );
    let mut cmd = daemon.command();
    cmd.args([
        "run", "--agent", "bot", "--user", "nobody", "--", "python3", "-c", &py,
    ]);
    let out = run(&mut cmd, None, CLIENT_TIMEOUT);
    assert!(out.success(), "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), targets.len() + 1, "{out:#?}");
    for line in &lines[..targets.len()] {
        assert!(
            line.ends_with(" EACCES") || line.ends_with(" EPERM"),
            "an unprivileged agent could do this: {line}\n{out:#?}"
        );
    }
    let rel = iso.agent_cgroup("bot");
    assert!(
        lines[targets.len()].ends_with(&format!("/{rel}")),
        "the agent left its cgroup: {out:#?}"
    );
    for (_, path) in &targets[..2] {
        assert!(!path.exists(), "{} was created", path.display());
    }

    // "root" in a user namespace of its own is no one on the host's
    // cgroup files either.
    if Command::new("unshare").arg("--version").output().is_ok() {
        let script = format!(
            "echo $$ > {} && echo moved; grep ^0:: /proc/self/cgroup",
            iso.parent_dir().join("cgroup.procs").display()
        );
        let mut cmd = daemon.command();
        cmd.args([
            "run", "--agent", "bot", "--user", "nobody", "--", "unshare", "-Ur", "sh", "-c",
            &script,
        ]);
        let out = run(&mut cmd, None, CLIENT_TIMEOUT);
        assert!(!out.stdout.contains("moved"), "{out:#?}");
        assert!(
            out.stderr.contains("Permission denied") || out.stderr.contains("unshare:"),
            "{out:#?}"
        );
        assert!(
            out.stdout.is_empty() || out.stdout.trim_end().ends_with(&format!("/{rel}")),
            "{out:#?}"
        );
    }

    // Still the agent: intercepted, credential injected, audited as bot.
    let mut args = vec!["--user", "nobody", "--"];
    let curl = curl_args(up.host(), up.port(), "127.0.0.1", "/echo/after-escape");
    args.extend(as_strs(&curl));
    let mut cmd = daemon.command();
    cmd.args(["run", "--agent", "bot"]).args(&args);
    let out = run(&mut cmd, None, CLIENT_TIMEOUT);
    assert!(out.success(), "{out:#?}\n{}", daemon.log());
    let seen = up.requests_to("/echo/after-escape");
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
    let rec = wait_audit(&daemon, |e| e["path"] == "/echo/after-escape");
    assert_eq!(rec["agent"], "bot", "{rec:#}");
}

// ------------------------------------------------- stale records (#15, item 7)

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
