//! What every transparent test shares: the mode it forces and whether it
//! can run here, its [`Isolation`] (own cgroups, pins, nft table), the
//! daemon it starts, and the clients it runs inside an agent's cgroup.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use airlock::intercept::bpf;
use airlock::intercept::cgroup::Cgroup2;

use crate::support;
use crate::support::cgroups::remove_cgroup_tree;
use crate::support::daemon::DaemonBuilder;
use crate::support::upstream::Upstream;
use crate::support::{Daemon, Output, run};

pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The redirect mechanism a test forces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Ebpf,
    Nftables,
}

impl Mode {
    /// `--transparent` / `AIRLOCK_TRANSPARENT`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Ebpf => "ebpf",
            Mode::Nftables => "nftables",
        }
    }

    /// How `airlock status` names the running mode.
    pub(crate) fn status_prefix(self) -> &'static str {
        match self {
            Mode::Ebpf => "transparent (eBPF",
            Mode::Nftables => "transparent (nftables",
        }
    }
}

/// Why the tests of `mode` cannot run here, if they cannot.
pub(crate) fn skip_reason(mode: Mode) -> Option<&'static str> {
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

/// Returns from the test, saying why, when `mode` cannot run here.
macro_rules! require {
    ($mode:expr) => {
        if let Some(why) = $crate::harness::skip_reason($mode) {
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
pub(crate) struct Isolation {
    pub(crate) mode: Mode,
    pub(crate) cg: Cgroup2,
    pub(crate) parent: String,
    pub(crate) gateway: String,
    pub(crate) pin_dir: PathBuf,
    pub(crate) nft_table: String,
}

impl Isolation {
    pub(crate) fn new(mode: Mode) -> Isolation {
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

    pub(crate) fn parent_dir(&self) -> PathBuf {
        self.cg.path(&self.parent)
    }

    pub(crate) fn gateway_dir(&self) -> PathBuf {
        self.cg.path(&self.gateway)
    }

    /// An agent cgroup path (relative, as `airlock agent add --cgroup` takes it).
    pub(crate) fn agent_cgroup(&self, name: &str) -> String {
        format!("{}/agent-{name}", self.parent)
    }

    /// The daemon's environment for this isolation.
    pub(crate) fn env(&self, ports: &[u16]) -> Vec<(&'static str, String)> {
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
    pub(crate) fn nft_tables(&self) -> usize {
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
    pub(crate) fn nft_ruleset(&self) -> String {
        let out = Command::new("nft")
            .args(["list", "table", "inet", &self.nft_table])
            .output()
            .expect("nft list table");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whatever redirects this test's agents is in place, exactly once,
    /// and nothing of the other mode.
    pub(crate) fn assert_installed(&self) {
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
    pub(crate) fn assert_released(&self) {
        assert!(self.attached().is_empty());
        assert!(!self.pin_dir.exists());
        assert_eq!(self.nft_tables(), 0);
    }

    /// The programs attached to the agents' parent cgroup.
    pub(crate) fn attached(&self) -> Vec<(&'static str, String)> {
        bpf::list_agent_side(&self.parent_dir()).expect("listing the parent's programs")
    }

    /// Each of this test's programs as the kernel holds it: its name,
    /// its instructions once the verifier removed dead code (the log
    /// lines of levels not enabled), and the instructions it verified.
    pub(crate) fn program_sizes(&self) -> Vec<(String, u32, u32)> {
        let mut ids = Vec::new();
        for (ty, _) in bpf::AGENT_ATTACH_TYPES {
            ids.extend(bpf::attached_program_ids(&self.parent_dir(), ty).expect("listing"));
        }
        ids.extend(
            bpf::attached_program_ids(&self.gateway_dir(), bpf::attach_type::GETSOCKOPT)
                .expect("listing"),
        );
        let mut sizes: Vec<(String, u32, u32)> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter(|p| ids.contains(&p.id()))
            .map(|p| {
                (
                    p.name_as_str().unwrap_or("?").to_owned(),
                    p.size_translated().unwrap_or(0) / 8,
                    p.verified_instruction_count().unwrap_or(0),
                )
            })
            .collect();
        sizes.sort();
        sizes
    }

    pub(crate) fn getsockopt_programs(&self) -> Vec<String> {
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
pub(crate) fn start_daemon(iso: &Isolation, up: &Upstream, extra_ports: &[u16]) -> Daemon {
    let mut ports = vec![up.port()];
    ports.extend(up.addr_v6().map(|a| a.port()));
    ports.extend_from_slice(extra_ports);
    start_daemon_for(iso, up.ca_pem_path(), &ports)
}

/// A daemon intercepting for `iso` on `ports`, trusting `upstream_ca`.
pub(crate) fn start_daemon_for(iso: &Isolation, upstream_ca: &Path, ports: &[u16]) -> Daemon {
    daemon_builder(iso, upstream_ca, ports).start()
}

/// How [`start_daemon_for`] starts its daemon, for a test that adds to it.
pub(crate) fn daemon_builder(iso: &Isolation, upstream_ca: &Path, ports: &[u16]) -> DaemonBuilder {
    let mut builder = Daemon::builder()
        .env("AIRLOCK_UPSTREAM_CA", upstream_ca.display().to_string())
        .env("AIRLOCK_ALLOW_UPSTREAMS", "127.0.0.0/8,::1/128");
    for (k, v) in iso.env(ports) {
        builder = builder.env(k, v);
    }
    builder
}

/// Adds agent `name` and waits (bounded) until the daemon has made its
/// cgroup: the daemon creates it when its snapshot reloads, a moment after
/// `agent add` returns, and a test that writes a pid into it before then
/// finds no such directory.
pub(crate) fn add_agent(daemon: &Daemon, iso: &Isolation, name: &str) {
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

pub(crate) fn add_secret(daemon: &Daemon, name: &str, host: &str, value: &str, agent: &str) {
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
pub(crate) fn agent_run(daemon: &Daemon, agent: &str, args: &[&str]) -> Output {
    run(
        &mut agent_command(daemon, agent, args),
        None,
        CLIENT_TIMEOUT,
    )
}

/// The command [`agent_run`] runs, for a test that starts it and goes on.
pub(crate) fn agent_command(daemon: &Daemon, agent: &str, args: &[&str]) -> Command {
    let mut cmd = daemon.command();
    cmd.args(["run", "--agent", agent, "--user", "nobody", "--"])
        .args(args);
    cmd
}

/// curl with no proxy and the name resolved to `ip`.
pub(crate) fn curl_args(up_host: &str, port: u16, ip: &str, path: &str) -> Vec<String> {
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

pub(crate) fn audit_json(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon
        .cli_ok(&["audit", "--json", "--limit", "1000"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (bounded) for an audit record matching `pred`.
pub(crate) fn wait_audit(
    daemon: &Daemon,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
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

/// The audit records matching `pred` once there are `n` of them (a
/// bounded wait) and a pause has passed in which more could have come:
/// the caller checks there are still exactly `n`.
pub(crate) fn settled_audit(
    daemon: &Daemon,
    n: usize,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let matching = || -> Vec<serde_json::Value> {
        audit_json(daemon).into_iter().filter(|e| pred(e)).collect()
    };
    let _ = support::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        (matching().len() >= n).then_some(())
    });
    // The writer batches for 50 ms and the kernel's ring is read as it
    // fills: a second row, if one were coming, is there by now.
    std::thread::sleep(Duration::from_millis(1500));
    matching()
}

pub(crate) fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A process in the cgroup at `dir`, killed on drop.
pub(crate) struct Sleeper(std::process::Child);

impl Sleeper {
    pub(crate) fn start_in(dir: &Path) -> Sleeper {
        let child = Command::new("sleep").arg("600").spawn().expect("sleep");
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("joining the cgroup");
        Sleeper(child)
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid")
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
