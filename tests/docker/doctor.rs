//! `airlock doctor` beside a real Docker daemon: its `docker` line names
//! the daemon's cgroup driver and says containers can be agents.

use std::time::Duration;

use crate::support::daemon::{hermetic_command, temp_data_dir};
use crate::support::docker::{Dockerd, docker};
use crate::support::run;

#[test]
fn doctor_names_dockers_cgroup_driver() {
    let dockerd = match Dockerd::ensure() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: Docker cannot run here: {why}");
            return;
        }
    };
    let driver = docker(&["info", "--format", "{{.CgroupDriver}}"]).expect("docker info");
    let dir = temp_data_dir();
    let mut cmd = hermetic_command(&dir.path().join("new"));
    cmd.args(["doctor", "--json"]);
    let out = run(&mut cmd, None, Duration::from_secs(120));
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {out:#?}"));
    let check = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "docker")
        .unwrap_or_else(|| panic!("no docker check in {report:#}"))
        .clone();
    assert_eq!(check["status"], "ok", "{check}");
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{driver} driver")),
        "{driver}: {check}"
    );
    drop(dockerd);
}
