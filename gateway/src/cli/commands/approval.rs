//! `airlock approvals [--follow]`, `airlock approve ID`, `airlock deny ID`:
//! the requests a rule holds for a person's decision.

use std::collections::HashSet;

use anyhow::Result;

use super::{next_poll, parse_id};
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::service::types::ApprovalView;

/// What a person decided about a held request.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    /// The last segment of the API path that records it.
    fn verb(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
        }
    }
}

/// Lists the waiting requests (`--all`: also decided ones); `--follow`
/// keeps printing new ones until Ctrl-C.
pub async fn list(client: &AdminClient, follow: bool, all: bool, json: bool) -> Result<()> {
    let path = format!("/api/v1/approvals?all={all}");
    let mut shown = HashSet::new();
    loop {
        let list: Vec<ApprovalView> = client.get(&path).await?;
        let new: Vec<&ApprovalView> = list.iter().filter(|a| !shown.contains(&a.id)).collect();
        if json {
            for a in &new {
                println!("{}", serde_json::to_string(a)?);
            }
        } else if !follow || !new.is_empty() {
            if shown.is_empty() && new.is_empty() {
                println!("no requests are waiting for approval");
            }
            let rows: Vec<Vec<String>> = new
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.agent.clone(),
                        match &a.detail {
                            Some(d) => format!("{} {}{} {d}", a.method, a.host, a.path),
                            None => format!("{} {}{}", a.method, a.host, a.path),
                        },
                        a.status.to_string(),
                        output::time(&a.requested_at),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                output::table(&["ID", "AGENT", "REQUEST", "STATUS", "REQUESTED"], &rows);
            }
        }
        shown.extend(new.iter().map(|a| a.id));
        if !follow || next_poll().await.is_break() {
            return Ok(());
        }
    }
}

/// Records `verdict` for the held request `id`.
pub async fn decide(client: &AdminClient, id: &str, verdict: Verdict) -> Result<()> {
    let id = parse_id(id, "approval", "airlock approvals")?;
    let a: ApprovalView = client
        .post(&format!("/api/v1/approvals/{id}/{}", verdict.verb()), &())
        .await?;
    println!(
        "{} approval {}: {} {}{} by {}",
        a.status, a.id, a.method, a.host, a.path, a.agent
    );
    Ok(())
}
