//! `airlock docker run --agent NAME ARGS...` and `airlock docker flags
//! --agent NAME [--compose]`: a Docker container as an agent (see
//! `airlock::intercept::docker` and docs/docker.md).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{agent, status};
use crate::cli::args::DockerCommand;
use airlock::admin::client::AdminClient;
use airlock::intercept::cgroup::Cgroup2;
use airlock::intercept::docker::{self, Driver, Flags};
use airlock::intercept::trust_view::{self, TrustFiles};

pub async fn run(client: &AdminClient, cmd: DockerCommand) -> Result<()> {
    match cmd {
        DockerCommand::Run {
            agent,
            docker,
            args,
        } => {
            docker::check_args(&args)?;
            let flags = flags(client, &agent, &docker).await?;
            let err = Command::new(&docker)
                .arg("run")
                .args(flags.args())
                .args(&args)
                .exec();
            Err(err).with_context(|| format!("cannot run {}", docker.display()))
        }
        DockerCommand::Flags {
            agent,
            docker,
            compose,
        } => {
            let flags = flags(client, &agent, &docker).await?;
            if compose {
                print!("{}", flags.compose());
            } else {
                for a in flags.args() {
                    println!("{a}");
                }
            }
            Ok(())
        }
    }
}

/// Checks everything a container needs to be the agent, in the order a
/// user can fix it (the agent, the daemon's mode, Docker), then makes the
/// agent's cgroup and refreshes the trust files.
async fn flags(client: &AdminClient, name: &str, docker_bin: &Path) -> Result<Flags> {
    let agents = agent::list(client).await?;
    let Some(agent) = agents.iter().find(|a| a.name == name) else {
        bail!("there is no agent {name:?} (add it with: airlock agent add {name})");
    };
    let status = status::fetch(client).await?;
    docker::check_mode(&status.mode)?;
    let info = docker::info(docker_bin)?;
    let cg = Cgroup2::find().context("finding the cgroup2 mount")?;
    let parent = docker::cgroup_parent(&info, &cg, &agent.name, &agent.cgroup)?;
    if info.driver == Driver::Cgroupfs {
        // With systemd, the slice is systemd's to make.
        docker::ensure_cgroup(&cg, &agent.name, &agent.cgroup)?;
    }
    let files = trust_files(Path::new(&status.data_dir), Path::new(&status.ca_cert))?;
    Ok(Flags::new(parent, &files))
}

/// The trust files, refreshed when this user may (root); else the ones the
/// daemon wrote at start.
fn trust_files(data_dir: &Path, ca_cert: &Path) -> Result<TrustFiles> {
    match trust_view::refresh(data_dir, ca_cert) {
        Ok(files) => Ok(files),
        Err(e) => {
            let files = TrustFiles::in_dir(data_dir);
            if files.bundle.is_file() && files.java.is_file() {
                Ok(files)
            } else {
                Err(e).context(
                    "the trust files for the container are missing and cannot be written \
                     (run as root, e.g. with sudo)",
                )
            }
        }
    }
}
