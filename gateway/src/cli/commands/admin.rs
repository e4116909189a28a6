//! `airlock admin ...`: the dashboard's credentials, over the admin socket
//! only (see `airlock::admin`).

use anyhow::Result;

use super::{data_dir, segment};
use crate::cli::args::{AdminCommand, TokenCommand, ValueInput};
use crate::cli::{output, value};
use airlock::admin::client::AdminClient;
use airlock::dashboard::first_password;
use airlock::service::credentials::{ApiTokenCreated, ApiTokenView, CreateApiToken, SetPassword};

pub async fn run(client: &AdminClient, cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::SetPassword => set_password(client).await,
        AdminCommand::Token(TokenCommand::Create { name }) => {
            let created: ApiTokenCreated = client
                .post("/api/v1/admin/tokens", &CreateApiToken { name })
                .await?;
            eprintln!(
                "API token {} created; it is shown only now. Send it as \
                 `Authorization: Bearer TOKEN` to the dashboard's /api/v1.",
                created.token.name
            );
            println!("{}", created.secret.expose());
            Ok(())
        }
        AdminCommand::Token(TokenCommand::List { json }) => {
            let tokens: Vec<ApiTokenView> = client.get("/api/v1/admin/tokens").await?;
            if json {
                return output::json(&tokens);
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        output::time(&t.created_at),
                        output::or_dash(t.last_used_at.as_ref().map(output::time)),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["NAME", "CREATED", "LAST USED"], &rows);
            Ok(())
        }
        AdminCommand::Token(TokenCommand::Rm { name }) => {
            client
                .delete(&format!("/api/v1/admin/tokens/{}", segment(&name)))
                .await?;
            eprintln!("API token {name} removed");
            Ok(())
        }
    }
}

/// Sets the password (from standard input or a prompt) and removes the
/// first-start password's file, which no longer works.
async fn set_password(client: &AdminClient) -> Result<()> {
    let input = ValueInput {
        value: None,
        value_stdin: false,
    };
    let password = value::read(&input, "the dashboard password")?;
    let _: () = client
        .put_json("/api/v1/admin/password", &SetPassword { password })
        .await?;
    eprintln!("dashboard password set");
    let data_dir = data_dir(client);
    if first_password::remove(data_dir)? {
        eprintln!(
            "removed {} (the first-start password)",
            first_password::path(data_dir).display()
        );
    }
    Ok(())
}
