//! `agent rm` removes the cgroup Airlock made, not one it was given.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::support;
use crate::support::upstream::{Upstream, UpstreamOpts};

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
