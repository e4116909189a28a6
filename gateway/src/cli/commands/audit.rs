//! `airlock audit [--follow]` and `airlock audit verify`: the trail, and
//! whether its hash chain is intact.

use anyhow::{Context, Result, bail};
use chrono::SecondsFormat;

use super::next_poll;
use crate::cli::args::{AuditArgs, AuditCommand};
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::service::types::{AuditEvent, AuditQuery};
use airlock::store::verify::ChainReport;

pub async fn run(client: &AdminClient, args: AuditArgs) -> Result<()> {
    if let Some(AuditCommand::Verify { json }) = args.command {
        return verify(client, json).await;
    }
    let mut q = AuditQuery {
        agent: args.agent,
        since: args.since,
        after_id: None,
        limit: args.limit,
    };
    loop {
        let path = format!(
            "/api/v1/audit?{}",
            serde_urlencoded::to_string(&q).context("encoding the query")?
        );
        let events: Vec<AuditEvent> = client.get(&path).await?;
        for e in &events {
            print_event(e, args.json)?;
        }
        if !args.follow {
            return Ok(());
        }
        if let Some(last) = events.last() {
            q.after_id = Some(last.id);
        } else if q.after_id.is_none() {
            // Nothing yet: follow from the newest event, whatever it will be.
            q.after_id = Some(0);
        }
        q.since = None;
        if next_poll().await.is_break() {
            return Ok(());
        }
    }
}

/// `airlock audit verify`: a broken chain is an error (exit status 1).
async fn verify(client: &AdminClient, json: bool) -> Result<()> {
    let r: ChainReport = client.get("/api/v1/audit/verify").await?;
    if json {
        output::json(&r)?;
    }
    match &r.broken {
        None => {
            if !json {
                let before = if r.unchained > 0 {
                    format!(" ({} older rows from before the chain)", r.unchained)
                } else {
                    String::new()
                };
                println!(
                    "audit trail intact: {} rows verified{before}; head {}",
                    r.verified, r.head
                );
            }
            Ok(())
        }
        Some(b) => {
            let at = b.row.map_or("at the end of the trail".to_owned(), |id| {
                format!("at row {id}")
            });
            bail!(
                "audit trail broken {at}: {} ({} rows before it verified)",
                b.reason,
                r.verified
            )
        }
    }
}

/// One event per line: JSON, or columns for a person.
fn print_event(e: &AuditEvent, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let at = e.at.to_rfc3339_opts(SecondsFormat::Millis, true);
    if e.kind == "admin" {
        println!(
            "{at}  admin    {}  {}",
            e.decision,
            e.detail.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let secrets = if e.secrets.is_empty() {
        String::new()
    } else {
        format!("  secrets={}", e.secrets.join(","))
    };
    println!(
        "{at}  request  {}  {} {}{}  {} {}{secrets}",
        output::or_dash(e.agent.as_deref()),
        output::or_dash(e.method.as_deref()),
        output::or_dash(e.host.as_deref()),
        e.path.as_deref().unwrap_or(""),
        output::or_dash(e.status),
        e.decision,
    );
    Ok(())
}
