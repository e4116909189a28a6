//! `airlock run` gives the agent a user of its own, not the operator's
//! identity (issue #15, item 6), for real: as root, against a real daemon,
//! with a real operator account that is a member of `adm` and `docker`
//! (both groups created if the machine lacks them) running `airlock run`
//! the way sudo does (`SUDO_UID`, `SUDO_GID`, `SUDO_USER` and the
//! operator's session variables in the environment).
//!
//! Everything a test makes is its own and removed however it ends: the
//! operator account and the groups it created ([`Operator`]), the agents'
//! users (`airlock-agent-ru<random>`) and cgroups (a test-only agents'
//! parent, `airlock-test-<random>.slice`) and whatever runs in them
//! ([`Fixture`]). The tests that create the operator run one at a time
//! (they share the `docker` group).
//!
//! Without root or cgroup v2 they say so and pass without checking.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use airlock::intercept::agent_user;
use airlock::intercept::cgroup::Cgroup2;
use nix::unistd::{Group, User};
use support::cgroups::remove_cgroup_tree;
use support::gw::Gw;
use support::upstream::UpstreamOpts;
use support::{Output, run};

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() || Cgroup2::find().is_err() {
            eprintln!("SKIPPED: airlock run user tests need root and cgroup v2");
            return;
        }
    };
}

/// Runs a host administration command (useradd, groupadd, ...), failing
/// the test if it fails.
#[track_caller]
fn admin(program: &str, args: &[&str]) {
    let out = run(Command::new(program).args(args), None, RUN_TIMEOUT);
    assert!(out.success(), "{program} {args:?}: {out:#?}");
}

/// Runs a clean-up command; a failure is only reported.
fn cleanup(program: &str, args: &[&str]) {
    if let Ok(out) = Command::new(program).args(args).output()
        && !out.status.success()
    {
        eprintln!(
            "warning: {program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// The tests that create the operator (and maybe `docker`) run one at a
/// time: one test's clean-up must not remove a group another still uses.
static HOST_ACCOUNTS: Mutex<()> = Mutex::new(());

/// A throw-away operator account, a member of `adm` and `docker`.
struct Operator {
    user: User,
    adm: u32,
    docker: u32,
    /// Groups this guard created, removed after the user.
    created_groups: Vec<&'static str>,
    _serial: MutexGuard<'static, ()>,
}

impl Operator {
    fn create() -> Operator {
        let serial = HOST_ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let mut created_groups = Vec::new();
        for group in ["adm", "docker"] {
            if Group::from_name(group).ok().flatten().is_none() {
                admin("groupadd", &["--system", group]);
                created_groups.push(group);
            }
        }
        let gid = |name| {
            Group::from_name(name)
                .ok()
                .flatten()
                .expect("the group exists")
                .gid
                .as_raw()
        };
        let name = format!("alt-op-{}", support::random_hex(4));
        admin(
            "useradd",
            &[
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "--groups",
                "adm,docker",
                &name,
            ],
        );
        let user = User::from_name(&name)
            .ok()
            .flatten()
            .expect("the operator exists");
        Operator {
            user,
            adm: gid("adm"),
            docker: gid("docker"),
            created_groups,
            _serial: serial,
        }
    }

    fn uid(&self) -> u32 {
        self.user.uid.as_raw()
    }

    /// What sudo puts in the environment of `sudo airlock run ...`, plus
    /// the operator's session: bus, runtime dir, ssh agent, a token.
    fn sudo_env(&self, runtime_dir: &str) -> Vec<(String, String)> {
        [
            ("SUDO_UID", self.uid().to_string()),
            ("SUDO_GID", self.user.gid.as_raw().to_string()),
            ("SUDO_USER", self.user.name.clone()),
            ("SUDO_COMMAND", "/usr/local/bin/airlock run".into()),
            ("XDG_RUNTIME_DIR", runtime_dir.into()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={runtime_dir}/bus"),
            ),
            ("SSH_AUTH_SOCK", "/tmp/ssh-operator/agent.1".into()),
            ("OPERATOR_TOKEN", "op-token-must-not-reach-the-agent".into()),
            ("LANG", "C.UTF-8".into()),
            ("TERM", "xterm-256color".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        cleanup("userdel", &[&self.user.name]);
        if Group::from_name(&self.user.name).ok().flatten().is_some() {
            cleanup("groupdel", &[&self.user.name]);
        }
        for group in &self.created_groups {
            cleanup("groupdel", &[group]);
        }
    }
}

/// A daemon with an upstream (the gateway tests' fixture), its agents in
/// a test-only parent cgroup, and the agents' own users, all removed on
/// drop (the cgroups first, killing what runs in them, then the users).
struct Fixture {
    gw: Gw,
    parent: PathBuf,
    agents: Vec<String>,
    children: Vec<Child>,
}

impl Fixture {
    fn start() -> Fixture {
        let slice = format!("airlock-test-{}.slice", support::random_hex(4));
        let gw = Gw::start_with(
            UpstreamOpts::default(),
            &[("AIRLOCK_AGENTS_CGROUP", &slice)],
        );
        Fixture {
            parent: Cgroup2::find().expect("cgroup v2").path(&slice),
            gw,
            agents: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds an agent with a fresh name, granted the upstream's secret;
    /// returns its name and proxy token.
    fn add_agent(&mut self) -> (String, String) {
        let name = format!("ru{}", support::random_hex(4));
        let token = self
            .gw
            .daemon
            .cli_ok(&["agent", "add", &name, "--grant", "up"])
            .trim()
            .to_owned();
        self.agents.push(name.clone());
        (name, token)
    }

    /// `airlock run ARGS` with `env` added to the CLI's environment.
    fn airlock_run(&self, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = self.gw.daemon.command();
        cmd.arg("run").args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, args: &[&str], env: &[(String, String)]) -> Output {
        run(&mut self.airlock_run(args, env), None, RUN_TIMEOUT)
    }

    /// The agent's cgroup, relative to the cgroup2 mount.
    fn agent_cgroup(&self, agent: &str) -> String {
        let agents: serde_json::Value =
            serde_json::from_str(&self.gw.daemon.cli_ok(&["agent", "list", "--json"]))
                .expect("agent list --json");
        agents
            .as_array()
            .and_then(|a| a.iter().find(|a| a["name"] == agent))
            .and_then(|a| a["cgroup"].as_str())
            .expect("the agent's cgroup")
            .to_owned()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_cgroup_tree(&self.parent);
        for agent in &self.agents {
            let user = agent_user::user_name(agent);
            if User::from_name(&user).ok().flatten().is_some() {
                cleanup("userdel", &[&user]);
            }
            if Group::from_name(&user).ok().flatten().is_some() {
                cleanup("groupdel", &[&user]);
            }
        }
    }
}

/// A Python probe the agent runs: prints one JSON object of what it is.
const PROBE: &str = r#"
import json, os
status = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)
cgroup = [l for l in open('/proc/self/cgroup').read().splitlines() if l.startswith('0::')][0][3:]
try:
    with open(os.path.join(os.environ['HOME'], 'written'), 'w') as f:
        f.write('x')
    home = 'writable'
except OSError as e:
    home = str(e)
print(json.dumps({
    'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(),
    'groups': sorted(os.getgroups()),
    'no_new_privs': status['NoNewPrivs'].strip(),
    'cgroup': cgroup, 'cwd': os.getcwd(), 'home': home,
    'env': dict(os.environ),
}))
"#;

fn probe(out: &Output) -> serde_json::Value {
    assert!(out.success(), "{out:#?}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
}

#[test]
fn an_agent_run_by_a_member_of_adm_and_docker_has_neither_group() {
    require_root!();
    let op = Operator::create();
    let mut fx = Fixture::start();
    let (agent, _) = fx.add_agent();
    let env = op.sudo_env(&format!("/run/user/{}", op.uid()));
    let out = fx.run(&["--agent", &agent, "--", "python3", "-c", PROBE], &env);
    let seen = probe(&out);

    let groups: Vec<u32> = serde_json::from_value(seen["groups"].clone()).unwrap();
    assert!(
        !groups.contains(&op.adm) && !groups.contains(&op.docker),
        "the agent has the operator's groups (adm {}, docker {}): {seen:#}",
        op.adm,
        op.docker
    );
    let own = User::from_name(&agent_user::user_name(&agent))
        .unwrap()
        .expect("the agent's own user was created");
    assert_eq!(
        own.gecos.to_str().unwrap(),
        format!("Airlock agent {agent}")
    );
    assert_eq!(own.shell, PathBuf::from("/usr/sbin/nologin"));
    assert_eq!(seen["uid"], own.uid.as_raw(), "{seen:#}");
    assert_eq!(seen["euid"], own.uid.as_raw(), "{seen:#}");
    assert_ne!(seen["uid"], op.uid());
    assert_eq!(seen["gid"], own.gid.as_raw());
    assert_eq!(groups, vec![own.gid.as_raw()], "only its own group");
    assert_eq!(seen["no_new_privs"], "1", "{seen:#}");
    assert_eq!(
        seen["cgroup"].as_str().unwrap().trim_matches('/'),
        fx.agent_cgroup(&agent),
        "{seen:#}"
    );
    assert_eq!(seen["cwd"], "/", "the invoker's working directory");

    // A home of its own that it may write, private to it.
    let home = fx.gw.daemon.data_dir().join("agent-home").join(&agent);
    assert_eq!(seen["home"], "writable", "{seen:#}");
    let meta = fs::metadata(&home).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), own.uid.as_raw());

    // The environment is built, not inherited.
    let env_seen: BTreeSet<String> = seen["env"].as_object().unwrap().keys().cloned().collect();
    let mut expected: BTreeSet<String> =
        ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    expected.extend(
        airlock::intercept::run::CA_VARIABLES
            .iter()
            .map(|s| (*s).to_owned()),
    );
    assert_eq!(env_seen, expected, "{seen:#}");
    assert_eq!(seen["env"]["HOME"], home.display().to_string());
    assert_eq!(seen["env"]["USER"], own.name);
    assert_eq!(seen["env"]["LANG"], "C.UTF-8");
    let bundle = fx.gw.daemon.data_dir().join("agent-ca-bundle.pem");
    assert_eq!(seen["env"]["SSL_CERT_FILE"], bundle.display().to_string());

    // A second run reuses the user (created once, idempotently).
    let again = probe(&fx.run(&["--agent", &agent, "--", "python3", "-c", PROBE], &env));
    assert_eq!(again["uid"], seen["uid"]);
}

/// The operator's runtime directory (`/run/user/UID` on a systemd host)
/// with its session bus socket, as pam_systemd makes them: 0700, the
/// operator's. This machine may run no user manager, so the test makes
/// the equivalent in a temporary directory.
struct RuntimeDir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    _bus: std::os::unix::net::UnixListener,
}

impl RuntimeDir {
    fn for_user(op: &Operator) -> RuntimeDir {
        let tmp = tempfile::Builder::new()
            .prefix("airlock-test-rt-")
            .tempdir_in("/tmp")
            .unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join(op.uid().to_string());
        fs::create_dir(&dir).unwrap();
        let bus = std::os::unix::net::UnixListener::bind(dir.join("bus")).unwrap();
        let (uid, gid) = (Some(op.uid()), Some(op.user.gid.as_raw()));
        std::os::unix::fs::chown(dir.join("bus"), uid, gid).unwrap();
        std::os::unix::fs::chown(&dir, uid, gid).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        RuntimeDir {
            _tmp: tmp,
            dir,
            _bus: bus,
        }
    }
}

#[test]
fn an_agent_cannot_reach_the_operators_session_or_leave_its_cgroup() {
    require_root!();
    let op = Operator::create();
    let rt = RuntimeDir::for_user(&op);
    let mut fx = Fixture::start();
    let (agent, _) = fx.add_agent();
    let (other, _) = fx.add_agent();
    let env = op.sudo_env(&rt.dir.display().to_string());
    // The other agent's cgroup exists once it has run.
    fx.run(&["--agent", &other, "--", "true"], &env).ok();

    // The operator as a process, for control: it can reach its own bus.
    let mut control = Command::new("python3");
    control
        .args([
            "-c",
            "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
        ])
        .arg(rt.dir.join("bus"))
        .uid(op.uid())
        .gid(op.user.gid.as_raw());
    run(&mut control, None, RUN_TIMEOUT).ok();

    let cg = Cgroup2::find().unwrap();
    let mine = cg.of_pid(std::process::id()).unwrap();
    let targets = [
        cg.path("").join("cgroup.procs"),
        fx.parent.join("cgroup.procs"),
        cg.path(&fx.agent_cgroup(&other)).join("cgroup.procs"),
        cg.path(&mine).join("cgroup.procs"),
    ];
    let targets: Vec<String> = targets
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    let script = format!(
        r#"
import errno, os, socket, subprocess
def attempt(label, f):
    try:
        f()
        print(label, 'ok')
    except OSError as e:
        print(label, errno.errorcode.get(e.errno, e.errno))
def join(path):
    with open(path, 'w') as f:
        f.write(str(os.getpid()))
attempt('bus', lambda: socket.socket(socket.AF_UNIX).connect({bus:?}))
attempt('runtime-dir', lambda: os.listdir({dir:?}))
for path in [{targets}]:
    attempt('join ' + path, lambda: join(path))
attempt('mkdir', lambda: os.mkdir({parent:?} + '/escape'))
try:
    r = subprocess.run(['systemd-run', '--user', '--scope', 'true'], capture_output=True, timeout=10)
    print('systemd-run', r.returncode)
except FileNotFoundError:
    print('systemd-run', 'absent')
except subprocess.TimeoutExpired:
    print('systemd-run', 'hung')
print('cgroup', [l for l in open('/proc/self/cgroup').read().splitlines() if l.startswith('0::')][0][3:])
"#,
        bus = rt.dir.join("bus").display().to_string(),
        dir = rt.dir.display().to_string(),
        targets = targets.join(", "),
        parent = fx.parent.display().to_string(),
    );
    let out = fx.run(&["--agent", &agent, "--", "python3", "-c", &script], &env);
    assert!(out.success(), "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let denied = |l: &&str| l.ends_with(" EACCES") || l.ends_with(" EPERM");
    let bus = lines.iter().find(|l| l.starts_with("bus ")).unwrap();
    assert!(
        denied(bus),
        "the agent reached the operator's session bus: {out:#?}"
    );
    for line in lines.iter().filter(|l| {
        l.starts_with("runtime-dir") || l.starts_with("join ") || l.starts_with("mkdir")
    }) {
        assert!(denied(line), "the agent could: {line}\n{out:#?}");
    }
    let systemd_run = lines
        .iter()
        .find(|l| l.starts_with("systemd-run "))
        .unwrap();
    assert_ne!(*systemd_run, "systemd-run 0", "{out:#?}");
    let cgroup = lines
        .iter()
        .find_map(|l| l.strip_prefix("cgroup "))
        .unwrap();
    assert_eq!(
        cgroup.trim_matches('/'),
        fx.agent_cgroup(&agent),
        "{out:#?}"
    );
    assert!(!fx.parent.join("escape").exists());
}

#[test]
fn an_agent_cannot_read_another_agents_or_the_operators_environment() {
    require_root!();
    let op = Operator::create();
    let mut fx = Fixture::start();
    let (first, _) = fx.add_agent();
    let (second, _) = fx.add_agent();
    let env = op.sudo_env(&format!("/run/user/{}", op.uid()));
    let mark = format!("mark-{}", support::random_hex(8));

    // The operator's own session process, holding a token.
    let operator = Command::new("sleep")
        .arg("60")
        .env("OPERATOR_SECRET", &mark)
        .uid(op.uid())
        .gid(op.user.gid.as_raw())
        .spawn()
        .unwrap();
    let operator_pid = operator.id();
    fx.children.push(operator);
    // The first agent (exec keeps the pid): its environment holds what
    // `airlock run` gave it (the same flags on the old code and the new).
    let agent = fx
        .airlock_run(&["--agent", &first, "--", "sleep", "60"], &env)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent_pid = agent.id();
    fx.children.push(agent);
    let environ = |pid: u32| fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let started = support::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        fs::read(format!("/proc/{agent_pid}/cmdline"))
            .is_ok_and(|c| c == b"sleep\x0060\x00")
            .then_some(())
    });
    assert!(started.is_some(), "the first agent never started");
    // Root can read both: there is something to be read.
    assert!(!environ(agent_pid).is_empty());
    assert!(String::from_utf8_lossy(&environ(operator_pid)).contains(&mark));

    for pid in [agent_pid, operator_pid] {
        let path = format!("/proc/{pid}/environ");
        let out = fx.run(&["--agent", &second, "--", "cat", &path], &env);
        assert!(
            out.stdout.is_empty() && !out.all().contains(&mark),
            "agent {second} read {path}: {out:#?}"
        );
        assert!(out.stderr.contains("Permission denied"), "{out:#?}");
    }
}

#[test]
fn as_invoking_user_keeps_the_operators_identity_and_says_so() {
    require_root!();
    let op = Operator::create();
    let mut fx = Fixture::start();
    let (agent, _) = fx.add_agent();
    let env = op.sudo_env(&format!("/run/user/{}", op.uid()));
    let out = fx.run(
        &[
            "--agent",
            &agent,
            "--as-invoking-user",
            "--",
            "python3",
            "-c",
            PROBE,
        ],
        &env,
    );
    let seen = probe(&out);
    assert_eq!(seen["uid"], op.uid());
    let groups: Vec<u32> = serde_json::from_value(seen["groups"].clone()).unwrap();
    assert!(
        groups.contains(&op.adm) && groups.contains(&op.docker),
        "{seen:#}"
    );
    assert_eq!(seen["no_new_privs"], "1");
    assert!(seen["env"].get("SSH_AUTH_SOCK").is_none(), "{seen:#}");
    assert!(seen["env"].get("OPERATOR_TOKEN").is_none(), "{seen:#}");
    for needle in [
        "warning",
        "--as-invoking-user",
        "adm",
        "docker",
        "outside its cgroup",
        "environments",
    ] {
        assert!(out.stderr.contains(needle), "no {needle:?} in: {out:#?}");
    }
    assert!(
        User::from_name(&agent_user::user_name(&agent))
            .unwrap()
            .is_none(),
        "no agent user is created when it is not used"
    );
}

#[test]
fn bad_run_users_are_refused_before_anything_runs() {
    require_root!();
    let mut fx = Fixture::start();
    let (agent, _) = fx.add_agent();
    let marker = fx.gw.daemon.data_dir().join("ran");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    let nobody_invoked: Vec<(String, String)> = vec![("SUDO_UID".into(), "65534".into())];
    // (flags, extra environment, what standard error must say)
    type Case<'a> = (&'a [&'a str], &'a [(String, String)], &'a [&'a str]);
    let cases: [Case<'_>; 10] = [
        (
            &["--user", "no-such-user-xyz"],
            &[],
            &["there is no user \"no-such-user-xyz\""],
        ),
        (&["--user", "root"], &[], &["is root", "never runs as root"]),
        (&["--user", "0"], &[], &["is root"]),
        (
            &["--user", "nobody", "--as-invoking-user"],
            &[],
            &["cannot be used with"],
        ),
        (&["--as-invoking-user"], &[], &["the invoking user is root"]),
        (
            &["--user", "nobody"],
            &nobody_invoked,
            &["--as-invoking-user if you mean"],
        ),
        (&["--user", "airlock"], &[], &["embedded PostgreSQL"]),
        (&["--env", "1BAD=x"], &[], &["is not a variable name"]),
        (
            &["--env", "AIRLOCK_TEST_UNSET_XYZ"],
            &[],
            &["--env AIRLOCK_TEST_UNSET_XYZ"],
        ),
        (
            &["--user", "nobody", "--cwd", "/root"],
            &[],
            &["cannot enter the working directory /root"],
        ),
    ];
    for (flags, env, needles) in cases {
        let mut args = vec!["--agent", agent.as_str()];
        args.extend(flags);
        args.extend(touch);
        // One line on standard error, exit status 1 (clap's refusals too).
        fx.run(&args, env).fails_with(needles);
        assert!(!marker.exists(), "{flags:?}: the command ran");
    }
    // Another agent's own user is not a --user.
    let (other, _) = fx.add_agent();
    fx.run(&["--agent", &other, "--", "true"], &[]).ok();
    let other_user = agent_user::user_name(&other);
    let out = fx.run(
        &["--agent", &agent, "--user", &other_user, "--", "true"],
        &[],
    );
    assert!(
        out.stderr.contains(&format!("is agent {other}'s own user")),
        "{out:#?}"
    );
    // An unknown agent gets no user.
    let out = fx.run(&["--agent", "no-such-agent", "--", "true"], &[]);
    assert!(out.stderr.contains("there is no agent"), "{out:#?}");
    assert!(
        User::from_name(&agent_user::user_name("no-such-agent"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_agents_user_reaches_an_upstream_through_airlock_trusting_its_ca() {
    require_root!();
    let mut fx = Fixture::start();
    let (agent, token) = fx.add_agent();
    let proxy = format!("http://{agent}:{token}@{}", fx.gw.proxy);
    let url = format!("https://{}/echo/agent-user", fx.gw.host());
    let out = fx.run(
        &[
            "--agent",
            &agent,
            "--env",
            "HTTPS_PROXY",
            "--",
            "curl",
            "-sS",
            "-m",
            "20",
            &url,
        ],
        &[("HTTPS_PROXY".into(), proxy)],
    );
    assert!(out.success(), "{out:#?}");
    let seen = fx.gw.up.requests_to("/echo/agent-user");
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {}", fx.gw.value).as_str())
    );
}
