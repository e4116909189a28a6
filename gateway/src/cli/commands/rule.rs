//! `airlock rule ...`: allow, block, hold for approval, or rate-limit
//! requests.

use anyhow::{Result, bail};

use super::parse_id;
use crate::cli::args::RuleCommand;
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::policy::{Rate, RuleAction};
use airlock::service::types::{AddRule, RuleView};

pub async fn run(client: &AdminClient, cmd: RuleCommand) -> Result<()> {
    match cmd {
        RuleCommand::Add {
            host,
            path,
            method,
            agent,
            allow,
            block,
            rate,
            approve,
            json,
        } => {
            let action = match (allow, block, rate, approve) {
                (true, false, None, false) => RuleAction::Allow,
                (false, true, None, false) => RuleAction::Block,
                (false, false, None, true) => RuleAction::Approve,
                (false, false, Some(rate), false) => RuleAction::Rate(Rate::parse(&rate)?),
                _ => bail!("give exactly one of --allow, --block, --rate N/PERIOD or --approve"),
            };
            let rule: RuleView = client
                .post(
                    "/api/v1/rules",
                    &AddRule {
                        host,
                        path,
                        method,
                        agent,
                        action,
                    },
                )
                .await?;
            if json {
                return output::json(&rule);
            }
            println!("added rule {}: {}", rule.id, describe(&rule));
        }
        RuleCommand::List { json } => {
            let rules: Vec<RuleView> = client.get("/api/v1/rules").await?;
            if json {
                return output::json(&rules);
            }
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.host.clone(),
                        r.path.clone(),
                        r.method.clone().unwrap_or_else(|| "*".into()),
                        r.agent.clone().unwrap_or_else(|| "*".into()),
                        r.action.to_string(),
                    ]
                })
                .collect();
            output::table(&["ID", "HOST", "PATH", "METHOD", "AGENT", "ACTION"], &rows);
        }
        RuleCommand::Rm { id } => {
            let id = parse_id(&id, "rule", "airlock rule list")?;
            client.delete(&format!("/api/v1/rules/{id}")).await?;
            println!("removed rule {id}");
        }
    }
    Ok(())
}

/// One line saying what the rule matches and does.
fn describe(r: &RuleView) -> String {
    format!(
        "{} {}{} for {} → {}",
        r.method.as_deref().unwrap_or("*"),
        r.host,
        r.path,
        r.agent
            .as_deref()
            .map_or("every agent".to_owned(), |a| format!("agent {a}")),
        r.action
    )
}
