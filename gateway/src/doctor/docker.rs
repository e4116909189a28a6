//! Docker, when it is here: which cgroup driver its daemon uses, and
//! whether a container started with `airlock docker run --agent NAME`
//! would land in the agent's cgroup (docs/docker.md).
//!
//! Docker is optional, so its absence is `ok`; a daemon that does not
//! answer, a driver Airlock does not handle, or a cgroup layout where runc
//! would miss the agent's cgroup are `warn`: `serve` runs, only containers
//! as agents would not (and `airlock docker run` refuses them with the same
//! words).

use std::path::Path;

use super::Check;
use crate::intercept::cgroup::Cgroup2;
use crate::intercept::docker::{self, DockerError, Driver};

const NAME: &str = "docker";

/// The check, with `docker` looked up on `PATH`.
pub(super) fn check() -> Check {
    check_with(Path::new("docker"))
}

fn check_with(docker_bin: &Path) -> Check {
    let info = match docker::info(docker_bin) {
        Ok(info) => info,
        Err(DockerError::NotInstalled(_)) => {
            return Check::ok(
                NAME,
                "Docker is not installed: nothing to check (containers as agents need it, \
                 see docs/docker.md)",
            );
        }
        Err(e @ DockerError::DaemonDown(_)) => {
            return Check::warn(
                NAME,
                e.to_string(),
                "start the Docker daemon to run containers as agents",
            );
        }
        Err(e) => {
            return Check::warn(NAME, e.to_string(), "see docs/docker.md");
        }
    };
    let version = &info.cgroup_version;
    match info.driver {
        Driver::Cgroupfs => {
            let Ok(cg) = Cgroup2::find() else {
                return Check::warn(
                    NAME,
                    format!("cgroupfs driver, cgroup v{version}, but no cgroup2 mount"),
                    "mount cgroup v2 (see `cgroup2`)",
                );
            };
            // The same judgement `airlock docker run` makes, for an agent
            // cgroup under the default parent.
            match docker::cgroup_parent(&info, &cg, "doctor", "airlock.slice/doctor") {
                Ok(_) => Check::ok(
                    NAME,
                    format!(
                        "cgroupfs driver, cgroup v{version}: `airlock docker run --agent NAME` \
                         puts a container in the agent's cgroup"
                    ),
                ),
                Err(e) => Check::warn(NAME, e.to_string(), "see docs/docker.md"),
            }
        }
        Driver::Systemd => Check::ok(
            NAME,
            format!(
                "systemd driver, cgroup v{version}: containers can run as agents whose cgroup \
                 is a slice path (airlock.slice/airlock-NAME.slice); `airlock docker run` \
                 names the fix for any other"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn no_docker_is_fine_and_says_so() {
        let c = check_with(Path::new("/nonexistent/docker"));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("not installed"), "{c:?}");
    }

    #[test]
    fn a_docker_that_cannot_answer_is_a_warning() {
        // `false` stands for a client whose daemon is down: it exits 1.
        let c = check_with(Path::new("/bin/false"));
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.detail.contains("does not answer"), "{c:?}");
    }
}
