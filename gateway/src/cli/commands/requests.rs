//! `airlock requests [--all] [--json]`, `airlock requests allow ID`,
//! `airlock requests dismiss ID`: what agents were refused by a default
//! of deny, and the operator's answer (docs/policy.md, "Access requests").

use anyhow::Result;

use super::parse_id;
use crate::cli::args::{RequestsArgs, RequestsCommand};
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::service::access_requests::{AccessRequest, allowed, asks_for};

pub async fn run(client: &AdminClient, args: RequestsArgs) -> Result<()> {
    match args.command {
        None => list(client, args.all, args.json).await,
        Some(RequestsCommand::Allow { id }) => {
            let r = decide(client, &id, "allow").await?;
            println!("allowed access request {}: {}", r.id, allowed(&r));
            Ok(())
        }
        Some(RequestsCommand::Dismiss { id }) => {
            let r = decide(client, &id, "dismiss").await?;
            println!(
                "dismissed access request {}: agent {} {} {}{} (no longer listed)",
                r.id, r.agent, r.method, r.host, r.path_pattern
            );
            Ok(())
        }
    }
}

async fn list(client: &AdminClient, all: bool, json: bool) -> Result<()> {
    let list: Vec<AccessRequest> = client.get(&format!("/api/v1/requests?all={all}")).await?;
    if json {
        return output::json(&list);
    }
    if list.is_empty() {
        println!(
            "no {}access requests: an agent refused by a default of deny leaves one here",
            if all { "" } else { "open " }
        );
        return Ok(());
    }
    let mut header = vec![
        "ID", "AGENT", "METHOD", "HOST", "PATH", "COUNT", "FIRST", "LAST", "ASKS FOR",
    ];
    if all {
        header.push("STATUS");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let mut row = vec![
                r.id.to_string(),
                r.agent.clone(),
                r.method.clone(),
                r.host.clone(),
                r.path_pattern.clone(),
                r.count.to_string(),
                output::time(&r.first_seen),
                output::time(&r.last_seen),
                asks_for(r),
            ];
            if all {
                row.push(r.status.to_string());
            }
            row
        })
        .collect();
    output::table(&header, &rows);
    Ok(())
}

/// Posts `verb` (allow or dismiss) for request `id`.
async fn decide(client: &AdminClient, id: &str, verb: &str) -> Result<AccessRequest> {
    let id = parse_id(id, "access request", "airlock requests")?;
    Ok(client
        .post(&format!("/api/v1/requests/{id}/{verb}"), &())
        .await?)
}
