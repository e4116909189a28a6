//! `airlock status`: is the daemon running, on which database, with what
//! configuration, and is its audit trail keeping up.

use anyhow::Result;

use crate::cli::output;
use airlock::admin::client::{AdminClient, ClientError};
use airlock::service::types::Status;

/// The daemon's status; `run`, `stop` and `ca path` read it too.
pub async fn fetch(client: &AdminClient) -> Result<Status, ClientError> {
    client.get("/api/v1/status").await
}

pub async fn show(client: &AdminClient, json: bool) -> Result<()> {
    let s = fetch(client).await?;
    if json {
        return output::json(&s);
    }
    println!("airlock {} is running (pid {})", s.version, s.pid);
    println!("  since       {}", output::time(&s.started_at));
    println!("  data dir    {}", s.data_dir);
    println!("  mode        {}", s.mode);
    for l in &s.listeners {
        println!("  listening   {l}");
    }
    let pid = s
        .database
        .postgres_pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    println!(
        "  database    {} ({}){pid}",
        s.database.target, s.database.kind
    );
    println!("  master key  {}", s.key_id);
    println!("  CA          {}", s.ca_cert);
    if let Some(addr) = &s.dashboard_addr {
        println!("  dashboard   http://{addr}/");
    }
    let password_file = airlock::dashboard::first_password::path(std::path::Path::new(&s.data_dir));
    if password_file.exists() {
        println!(
            "  password    the first-start dashboard password is in {} (root only); \
             replace it with `airlock admin set-password`",
            password_file.display()
        );
    }
    println!(
        "  config      {} agents, {} secrets, {} rules (generation {})",
        s.snapshot.agents, s.snapshot.secrets, s.snapshot.rules, s.snapshot.generation
    );
    if let Some(d) = &s.defaults {
        let own: Vec<String> = d
            .agents
            .iter()
            .map(|a| format!("{} {}", a.agent, a.default))
            .collect();
        let own = match own.is_empty() {
            true => String::new(),
            false => format!("; agents' own: {}", own.join(", ")),
        };
        println!("  default     {}{own}", super::default::global(d));
    }
    let events = s
        .audit_events
        .map_or("? (database unreachable)".to_owned(), |n| n.to_string());
    println!("  audit       {events} events");
    let a = &s.audit;
    if a.spool_bytes > 0 {
        println!(
            "  audit spool {} bytes waiting for the database ({} records spooled since start)",
            a.spool_bytes, a.spooled
        );
    }
    if a.dropped > 0 {
        println!("  AUDIT LOST  {} records could not be stored", a.dropped);
    }
    if a.stalled {
        println!(
            "  AUDIT STALLED records can be stored neither in the database nor in the spool{}",
            if a.required {
                ": new requests are refused (503)"
            } else {
                ""
            }
        );
    }
    for problem in &s.snapshot.corrupt {
        println!("  NOT IN EFFECT: {problem}");
    }
    Ok(())
}
