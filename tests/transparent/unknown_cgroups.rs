//! A connection from a cgroup that is no agent's (or no longer this
//! agent's) is refused and audited.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::support;
use crate::support::run;
use crate::support::upstream::{Upstream, UpstreamOpts};

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
    // Exactly one row: the gateway's refusal (the kernel let the connect
    // through to it and reports nothing of its own).
    let rows = settled_audit(&daemon, 1, |e| e["decision"] == "unknown_agent");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let rec = &rows[0];
    assert!(rec["agent"].is_null(), "{rec:#}");
    assert!(
        rec["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not an agent's cgroup")),
        "{rec:#}"
    );
    let all: Vec<_> = audit_json(&daemon)
        .into_iter()
        .filter(|e| e["kind"] == "request")
        .collect();
    assert_eq!(all.len(), 1, "nothing else is audited: {all:#?}");
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
