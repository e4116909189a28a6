//! An unprivileged agent cannot leave its cgroup (issue #8).

use std::process::Command;

use crate::harness::*;
use crate::support;
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

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
