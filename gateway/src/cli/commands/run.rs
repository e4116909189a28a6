//! `airlock run --agent NAME -- CMD`: look the agent up, then become its
//! command.

use std::path::Path;

use anyhow::{Result, bail};

use super::{agent, status};
use crate::cli::args::RunArgs;
use airlock::admin::client::AdminClient;
use airlock::intercept::agent_user::RunAs;
use airlock::intercept::run::RunSpec;

/// Returns only on failure: on success the process is the agent's command.
pub async fn run(client: &AdminClient, args: RunArgs) -> Result<()> {
    let agents = agent::list(client).await?;
    let Some(agent) = agents.iter().find(|a| a.name == args.agent) else {
        bail!(
            "there is no agent {:?} (add it with: airlock agent add {})",
            args.agent,
            args.agent
        );
    };
    let status = status::fetch(client).await?;
    let run_as = match (&args.user, args.as_invoking_user) {
        (Some(user), _) => RunAs::User(user),
        (None, true) => RunAs::InvokingUser,
        (None, false) => RunAs::AgentUser,
    };
    let spec = RunSpec {
        agent: &agent.name,
        cgroup: &agent.cgroup,
        ca_cert: Path::new(&status.ca_cert),
        data_dir: Path::new(&status.data_dir),
        run_as,
        env: &args.env,
        cwd: args.cwd.as_deref(),
        command: &args.command,
    };
    Err(airlock::intercept::run::exec(&spec).into())
}
