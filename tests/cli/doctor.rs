//! `airlock doctor`: before a daemon (a fresh host's view), beside one
//! (its ports are its own), and each kind of fault a newcomer hits: a
//! port taken by another program, a database that does not answer, a key
//! file others can read. A `fail` line is a non-zero exit.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

fn doctor(data_dir: &Path, env: &[(&str, &str)]) -> (Output, Value) {
    let mut cmd = hermetic_command(data_dir);
    cmd.args(["doctor", "--json"]).envs(env.iter().copied());
    let out = run(&mut cmd, None, Duration::from_secs(60));
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {out:#?}"));
    (out, report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn failed(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[test]
fn a_fresh_host_passes_and_names_what_it_found() {
    let dir = temp_data_dir();
    let data = dir.path().join("new");
    let (out, report) = doctor(&data, &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(failed(&report).is_empty(), "{report:#}");
    assert_eq!(report["daemon_running"], false);
    for name in [
        "kernel",
        "cgroup2",
        "interception",
        "database",
        "proxy port",
        "data dir",
        "ca",
    ] {
        let c = check(&report, name);
        assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
    }
    assert!(
        check(&report, "data dir")["detail"]
            .as_str()
            .unwrap()
            .contains("first start")
    );
    if nix::unistd::geteuid().is_root() && airlock::ebpf::object().is_some() {
        // The verifier really ran: a broken program would be a `fail`.
        let ebpf = check(&report, "ebpf");
        assert_eq!(ebpf["status"], "ok", "{ebpf}");
        assert!(
            ebpf["detail"]
                .as_str()
                .unwrap()
                .contains("verifier accepts")
        );
    }
    // Nothing was created: doctor only looks.
    assert!(!data.exists());

    // The same as lines.
    let mut cmd = hermetic_command(&data);
    cmd.arg("doctor");
    let text = run(&mut cmd, None, Duration::from_secs(60));
    text.ok();
    assert!(
        text.stdout.lines().any(|l| l.starts_with("ok    kernel")),
        "{}",
        text.stdout
    );
}

#[test]
fn a_port_taken_by_another_program_fails_and_names_it() {
    let dir = temp_data_dir();
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap().to_string();
    let (out, report) = doctor(dir.path(), &[("AIRLOCK_PROXY_LISTEN", &addr)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(failed(&report), ["proxy port"], "{report:#}");
    let c = check(&report, "proxy port");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.contains(&addr), "{detail}");
    assert!(
        detail.contains(&format!("pid {}", std::process::id())),
        "{detail}"
    );
    assert!(c["fix"].as_str().unwrap().contains("--proxy-listen"), "{c}");
    assert!(out.stderr.contains("1 check failed"), "{out:#?}");
}

#[test]
fn an_unreachable_database_fails_without_its_password() {
    let dir = temp_data_dir();
    let url = "postgres://airlock:doctor-pw-7f3a@127.0.0.1:1/airlock";
    let (out, report) = doctor(dir.path(), &[("DATABASE_URL", url)]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(failed(&report), ["database"], "{report:#}");
    let detail = check(&report, "database")["detail"].as_str().unwrap();
    assert!(detail.contains("127.0.0.1:1"), "{detail}");
    assert!(!out.all().contains("doctor-pw-7f3a"), "{out:#?}");
}

#[test]
fn beside_a_running_daemon_its_ports_are_its_own_and_open_keys_fail() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let d = Daemon::builder()
        .env("AIRLOCK_PROXY_LISTEN", port.as_str())
        .start();
    let env = [("AIRLOCK_PROXY_LISTEN", port.as_str())];
    let (out, report) = doctor(d.data_dir(), &env);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(report["daemon_running"], true);
    let c = check(&report, "proxy port");
    assert_eq!(c["status"], "ok", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("the daemon (pid"),
        "{c}"
    );
    let ca = check(&report, "ca");
    assert!(ca["detail"].as_str().unwrap().contains("SHA-256"), "{ca}");

    // The CA's key, readable by others, is a `fail` with the command that
    // mends it.
    let key = d.data_dir().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, report) = doctor(d.data_dir(), &env);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(failed(&report), ["key files"], "{report:#}");
    let fix = check_failed(&report, "key files");
    assert_eq!(fix, format!("chmod 600 {}", key.display()));
}

/// The fix of the failed check `name`.
fn check_failed(report: &Value, name: &str) -> String {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name && c["status"] == "fail")
        .and_then(|c| c["fix"].as_str())
        .unwrap_or_else(|| panic!("no failed {name:?} with a fix in {report:#}"))
        .to_owned()
}
