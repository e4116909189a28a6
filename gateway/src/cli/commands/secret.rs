//! `airlock secret ...`: the vault. Values go in (from standard input) and
//! never come out.

use anyhow::{Result, bail};

use super::segment;
use crate::cli::args::{OAuth2Args, SecretCommand};
use crate::cli::{output, value};
use airlock::admin::client::AdminClient;
use airlock::model::{GrantType, Injection, OAuth2Grant};
use airlock::service::types::{AddSecret, RotateSecret, SecretView};

pub async fn run(client: &AdminClient, cmd: SecretCommand) -> Result<()> {
    match cmd {
        SecretCommand::Add {
            name,
            host,
            path,
            header,
            query,
            aws_sigv4,
            path_template,
            basic,
            body,
            oauth2,
            value,
        } => {
            let placed = match (path_template, basic, body) {
                (Some(template), None, false) => Some(Injection::Path { template }),
                (None, Some(template), false) => Some(Injection::Basic { template }),
                (None, None, true) => Some(Injection::Body),
                (None, None, false) => None,
                _ => bail!("give only one of --path-template, --basic or --body"),
            };
            let injection = match (header, query, aws_sigv4, &oauth2.oauth2_token_url, placed) {
                (Some(spec), None, None, None, None) => Injection::header_from_spec(&spec)?,
                (None, Some(param), None, None, None) => Injection::Query { param },
                (None, None, Some(spec), None, None) => Injection::aws_from_spec(&spec)?,
                (None, None, None, Some(_), None) => oauth2_injection(&oauth2)?,
                (None, None, None, None, Some(placed)) => placed,
                _ => bail!(
                    "give exactly one of --header, --query, --aws-sigv4, --oauth2-token-url, \
                     --path-template, --basic or --body"
                ),
            };
            // Refused before the value is read: nothing is asked or written.
            injection.validate()?;
            let (value, refresh_token) = if oauth2.oauth2_token_url.is_some() {
                value::read_oauth2(
                    &value,
                    &name,
                    oauth2.client_secret_file.as_deref(),
                    oauth2.refresh_token_stdin,
                )?
            } else {
                (value::read(&value, &name)?, None)
            };
            let view: SecretView = client
                .post(
                    "/api/v1/secrets",
                    &AddSecret {
                        name,
                        host,
                        path,
                        injection,
                        value,
                        refresh_token,
                    },
                )
                .await?;
            println!(
                "added secret {} for {}{} ({})",
                view.name,
                view.host,
                view.path,
                view.injection.describe()
            );
        }
        SecretCommand::Rotate {
            name,
            refresh_token_stdin,
            client_secret_file,
            value,
        } => {
            let (value, refresh_token) = if refresh_token_stdin || client_secret_file.is_some() {
                value::read_oauth2(
                    &value,
                    &name,
                    client_secret_file.as_deref(),
                    refresh_token_stdin,
                )?
            } else {
                (value::read(&value, &name)?, None)
            };
            let view: SecretView = client
                .post(
                    &format!("/api/v1/secrets/{}/rotate", segment(&name)),
                    &RotateSecret {
                        value,
                        refresh_token,
                    },
                )
                .await?;
            println!(
                "rotated secret {} (now version {})",
                view.name, view.version
            );
        }
        SecretCommand::List { json } => {
            let secrets: Vec<SecretView> = client.get("/api/v1/secrets").await?;
            if json {
                return output::json(&secrets);
            }
            let rows: Vec<Vec<String>> = secrets
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.host.clone(),
                        s.path.clone(),
                        s.injection.describe(),
                        s.version.to_string(),
                        output::time(&s.updated_at),
                        s.oauth2
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), |o| o.status.clone()),
                    ]
                })
                .collect();
            output::table(
                &[
                    "NAME",
                    "HOST",
                    "PATH",
                    "INJECTION",
                    "VERSION",
                    "UPDATED",
                    "STATUS",
                ],
                &rows,
            );
        }
        SecretCommand::Rm { name } => {
            client
                .delete(&format!("/api/v1/secrets/{}", segment(&name)))
                .await?;
            println!("removed secret {name}");
        }
    }
    Ok(())
}

/// The OAuth2 injection the flags describe (checked again by the daemon).
fn oauth2_injection(args: &OAuth2Args) -> Result<Injection> {
    let (Some(token_url), Some(client_id)) = (&args.oauth2_token_url, &args.client_id) else {
        bail!("--oauth2-token-url needs --client-id");
    };
    let grant = match (args.refresh_token_stdin, args.client_credentials) {
        (true, false) => GrantType::RefreshToken,
        (false, true) => GrantType::ClientCredentials,
        _ => bail!(
            "an OAuth2 secret needs exactly one of --refresh-token-stdin or --client-credentials"
        ),
    };
    let injection = Injection::OAuth2(OAuth2Grant {
        token_url: token_url.clone(),
        client_id: client_id.clone(),
        scopes: args.scopes.clone(),
        grant,
    });
    injection.validate()?;
    Ok(injection)
}
