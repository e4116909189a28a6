//! `airlock rule ...`: allow, block, hold for approval, or rate-limit
//! requests.

use anyhow::{Result, bail};

use super::parse_id;
use crate::cli::args::{RuleBodyArgs, RuleCommand};
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::policy::{BodyCondition, BodySpec, Rate, RuleAction};
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
            body,
            json,
        } => {
            let action = match (allow, block, rate, approve) {
                (true, false, None, false) => RuleAction::Allow,
                (false, true, None, false) => RuleAction::Block,
                (false, false, None, true) => RuleAction::Approve,
                (false, false, Some(rate), false) => RuleAction::Rate(Rate::parse(&rate)?),
                _ => bail!("give exactly one of --allow, --block, --rate N/PERIOD or --approve"),
            };
            let body = body_spec(*body)?;
            let rule: RuleView = client
                .post(
                    "/api/v1/rules",
                    &AddRule {
                        host,
                        path,
                        method,
                        agent,
                        action,
                        body,
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
            // The BODY column only when a rule has a body condition: the
            // usual listing stays as it was.
            let with_body = rules.iter().any(|r| r.body.is_some());
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    let mut row = vec![
                        r.id.to_string(),
                        r.host.clone(),
                        r.path.clone(),
                        r.method.clone().unwrap_or_else(|| "*".into()),
                        r.agent.clone().unwrap_or_else(|| "*".into()),
                        r.action.to_string(),
                    ];
                    if with_body {
                        row.push(body_text(r).unwrap_or_else(|| "-".to_owned()));
                    }
                    row
                })
                .collect();
            let mut head = vec!["ID", "HOST", "PATH", "METHOD", "AGENT", "ACTION"];
            if with_body {
                head.push("BODY");
            }
            output::table(&head, &rows);
        }
        RuleCommand::Rm { id } => {
            let id = parse_id(&id, "rule", "airlock rule list")?;
            client.delete(&format!("/api/v1/rules/{id}")).await?;
            println!("removed rule {id}");
        }
    }
    Ok(())
}

/// The body condition the flags give, checked here first so a bad glob
/// or pointer is one line before anything is sent; `None` without flags.
fn body_spec(args: RuleBodyArgs) -> Result<Option<BodySpec>> {
    let spec = BodySpec {
        mcp_method: args.mcp_method,
        mcp_tool: args.mcp_tool,
        mcp_args: args.mcp_args,
        graphql_operation: args.graphql,
        graphql_field: args.graphql_field,
        body_limit: args.body_limit.as_deref().map(parse_size).transpose()?,
        on_unreadable: args.on_unreadable,
    };
    if spec == BodySpec::default() {
        return Ok(None);
    }
    BodyCondition::parse(&spec)?;
    Ok(Some(spec))
}

/// `65536`, `64KiB`, `1MiB`.
fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let (digits, mult) = if let Some(n) = t.strip_suffix("KiB") {
        (n, 1024)
    } else if let Some(n) = t.strip_suffix("MiB") {
        (n, 1024 * 1024)
    } else {
        (t, 1)
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            anyhow::anyhow!("--body-limit {text:?} must be a size in bytes: N, NKiB or NMiB")
        })
}

/// The rule's body condition in words, if it has one.
fn body_text(r: &RuleView) -> Option<String> {
    let spec = r.body.as_ref()?;
    Some(BodyCondition::parse(spec).map_or_else(|e| e.to_string(), |b| b.to_string()))
}

/// One line saying what the rule matches and does.
fn describe(r: &RuleView) -> String {
    let body = body_text(r).map(|b| format!(" if {b}")).unwrap_or_default();
    format!(
        "{} {}{}{body} for {} → {}",
        r.method.as_deref().unwrap_or("*"),
        r.host,
        r.path,
        r.agent
            .as_deref()
            .map_or("every agent".to_owned(), |a| format!("agent {a}")),
        r.action
    )
}
