//! `airlock agent ...`: agents, their proxy tokens and the secrets they
//! are granted.

use anyhow::Result;

use super::segment;
use crate::cli::args::AgentCommand;
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::service::types::{AddAgent, AgentCreated, AgentView, GrantResult};

pub async fn run(client: &AdminClient, cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Add {
            name,
            grants,
            cgroup,
            json,
        } => {
            let created: AgentCreated = client
                .post(
                    "/api/v1/agents",
                    &AddAgent {
                        name,
                        grants,
                        cgroup,
                    },
                )
                .await?;
            if json {
                return output::json(&created);
            }
            let grants = if created.agent.grants.is_empty() {
                "no secrets".to_owned()
            } else {
                created.agent.grants.join(", ")
            };
            eprintln!(
                "added agent {} (cgroup {}; granted {grants})\n\
                 its proxy token is below; it is shown only this once:",
                created.agent.name, created.agent.cgroup
            );
            println!("{}", created.token.expose());
        }
        AgentCommand::Grant { agent, secret } => {
            let r: GrantResult = client.put(&grant_path(&agent, &secret)).await?;
            if r.added {
                println!("granted {secret} to {agent}");
            } else {
                println!("{agent} already had {secret}");
            }
        }
        AgentCommand::Revoke { agent, secret } => {
            client.delete(&grant_path(&agent, &secret)).await?;
            println!("revoked {secret} from {agent}");
        }
        AgentCommand::List { json } => {
            let agents: Vec<AgentView> = list(client).await?;
            if json {
                return output::json(&agents);
            }
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.cgroup.clone(),
                        if a.grants.is_empty() {
                            "-".into()
                        } else {
                            a.grants.join(",")
                        },
                        output::time(&a.created_at),
                    ]
                })
                .collect();
            output::table(&["NAME", "CGROUP", "GRANTS", "CREATED"], &rows);
        }
        AgentCommand::Rm { name, force } => {
            let query = if force { "?force=true" } else { "" };
            client
                .delete(&format!("/api/v1/agents/{}{query}", segment(&name)))
                .await?;
            println!("removed agent {name}");
        }
    }
    Ok(())
}

/// Every agent; `airlock run` looks its agent up here too.
pub async fn list(client: &AdminClient) -> Result<Vec<AgentView>> {
    Ok(client.get("/api/v1/agents").await?)
}

/// The one grant of `secret` to `agent`, which `grant` puts and `revoke`
/// deletes.
fn grant_path(agent: &str, secret: &str) -> String {
    format!(
        "/api/v1/agents/{}/grants/{}",
        segment(agent),
        segment(secret)
    )
}
