//! `airlock default [allow|deny|inherit] [--agent A] [--grants allow|ignore]`:
//! what happens to a request no allow rule covers. Without a word, shows
//! the defaults in effect.

use anyhow::{Result, bail};

use crate::cli::args::DefaultArgs;
use crate::cli::output;
use airlock::admin::client::AdminClient;
use airlock::service::defaults::{DefaultsView, INHERIT, SetDefault};

pub async fn run(client: &AdminClient, args: DefaultArgs) -> Result<()> {
    let Some(action) = args.action else {
        let view: DefaultsView = client.get("/api/v1/defaults").await?;
        if args.json {
            return output::json(&view);
        }
        for line in lines(&view) {
            println!("{line}");
        }
        return Ok(());
    };
    // Checked here too, so that a typo gets one line before any request.
    if !matches!(action.as_str(), "allow" | "deny" | INHERIT) {
        bail!(
            "default {action:?} is not allow or deny (or, with --agent, {INHERIT} to follow the \
             global default)"
        );
    }
    let grants_allow = match args.grants.as_deref() {
        None => None,
        Some("allow") => Some(true),
        Some("ignore") => Some(false),
        Some(other) => bail!(
            "--grants {other:?} is not allow (a granted secret lets a request out under deny) \
             or ignore (only allow rules do)"
        ),
    };
    let view: DefaultsView = client
        .put_json(
            "/api/v1/defaults",
            &SetDefault {
                action: action.clone(),
                agent: args.agent.clone(),
                grants_allow,
            },
        )
        .await?;
    if args.json {
        return output::json(&view);
    }
    match &args.agent {
        None => println!("global default: {}", global(&view)),
        Some(agent) if action == INHERIT => println!(
            "agent {agent} follows the global default: {}",
            global(&view)
        ),
        Some(agent) => println!("agent {agent}: default {action}"),
    }
    Ok(())
}

/// The global default and what grants do, in words.
pub fn global(view: &DefaultsView) -> String {
    let grants = if view.grants_allow {
        "under deny a granted secret also lets its requests out"
    } else {
        "under deny only allow rules let requests out"
    };
    format!("{} ({grants})", view.global)
}

/// The listing `airlock default` prints (and `airlock status` sums up).
fn lines(view: &DefaultsView) -> Vec<String> {
    let mut out = vec![format!("global default: {}", global(view))];
    out.extend(
        view.agents
            .iter()
            .map(|a| format!("agent {}: default {}", a.agent, a.default)),
    );
    out
}
