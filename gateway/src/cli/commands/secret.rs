//! `airlock secret ...`: the vault. Values go in (from standard input) and
//! never come out.

use std::path::Path;

use anyhow::{Result, bail};

use super::segment;
use crate::cli::args::{JwtArgs, OAuth2Args, SecretCommand, ValueInput};
use crate::cli::{output, value};
use airlock::admin::client::AdminClient;
use airlock::credentials::{presets, service_account};
use airlock::model::{GrantType, Injection, OAuth2Grant};
use airlock::service::types::{AddSecret, RotateSecret, SecretValue, SecretView};

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
            jwt,
            value,
        } => {
            let simple = simple_injection(header, query, aws_sigv4, path_template, basic, body)?;
            let (injection, value, refresh_token) =
                what_to_add(&name, simple, &oauth2, &jwt, &value)?;
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
            private_key_file,
            google_service_account_file,
            refresh_token_stdin,
            client_secret_file,
            value,
        } => {
            let (value, refresh_token) = if let Some(path) = &private_key_file {
                (value::read_file(path, "the private key")?, None)
            } else if let Some(path) = &google_service_account_file {
                (read_service_account(path, Vec::new())?.1, None)
            } else if refresh_token_stdin || client_secret_file.is_some() {
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

/// The injection and the values that the flags of `secret add` describe,
/// read from files or standard input.
/// The injection of a secret whose value is the key itself (a header,
/// a query parameter, SigV4, a path, Basic or body placement), if one of
/// those flags was given; clap's group allows at most one.
fn simple_injection(
    header: Option<String>,
    query: Option<String>,
    aws_sigv4: Option<String>,
    path_template: Option<String>,
    basic: Option<String>,
    body: bool,
) -> Result<Option<Injection>> {
    Ok(
        match (header, query, aws_sigv4, path_template, basic, body) {
            (Some(spec), None, None, None, None, false) => {
                Some(Injection::header_from_spec(&spec)?)
            }
            (None, Some(param), None, None, None, false) => Some(Injection::Query { param }),
            (None, None, Some(spec), None, None, false) => Some(Injection::aws_from_spec(&spec)?),
            (None, None, None, Some(template), None, false) => Some(Injection::Path { template }),
            (None, None, None, None, Some(template), false) => Some(Injection::Basic { template }),
            (None, None, None, None, None, true) => Some(Injection::Body),
            (None, None, None, None, None, false) => None,
            _ => bail!(
                "give only one of --header, --query, --aws-sigv4, --path-template, --basic or --body"
            ),
        },
    )
}

fn what_to_add(
    name: &str,
    simple: Option<Injection>,
    oauth2: &OAuth2Args,
    jwt: &JwtArgs,
    value: &ValueInput,
) -> Result<(Injection, SecretValue, Option<SecretValue>)> {
    let signed = jwt.github_app_id.is_some() || jwt.google_service_account_file.is_some();
    if !oauth2.scopes.is_empty() && !oauth2.is_set() && !signed {
        bail!("--scope needs --oauth2-token-url or --google-service-account-file");
    }
    if jwt.github_app_id.is_some() && !oauth2.scopes.is_empty() {
        bail!("a GitHub App takes no --scope: its tokens have the installation's permissions");
    }
    if jwt.google_service_account_file.is_some() && oauth2.scopes.is_empty() {
        bail!(
            "a Google service account needs at least one --scope, e.g. --scope \
             https://www.googleapis.com/auth/cloud-platform"
        );
    }
    Ok(if jwt.github_app_id.is_some() {
        let injection = github_app_injection(jwt)?;
        let key = match &jwt.private_key_file {
            Some(path) => value::read_file(path, "the private key")?,
            None => value::read_pem(value, name)?,
        };
        (injection, key, None)
    } else if let Some(path) = &jwt.google_service_account_file {
        let (grant, key) = read_service_account(path, oauth2.scopes.clone())?;
        (Injection::OAuth2(grant), key, None)
    } else {
        let injection = match (simple, oauth2.is_set()) {
            (Some(injection), false) => injection,
            (None, true) => oauth2_injection(oauth2)?,
            _ => bail!(
                "give exactly one of --header, --query, --aws-sigv4, --path-template, --basic, \
                 --body, --oauth2-token-url, --github-app-id or --google-service-account-file"
            ),
        };
        // Refused before the value is read: nothing is asked or written.
        injection.validate()?;
        let (value, refresh_token) = if oauth2.is_set() {
            value::read_oauth2(
                value,
                name,
                oauth2.client_secret_file.as_deref(),
                oauth2.refresh_token_stdin,
            )?
        } else {
            (value::read(value, name)?, None)
        };
        (injection, value, refresh_token)
    })
}

/// The OAuth2 injection the flags describe (checked again by the daemon):
/// from a preset, or from the URLs given.
fn oauth2_injection(args: &OAuth2Args) -> Result<Injection> {
    let Some(client_id) = &args.client_id else {
        bail!("an OAuth2 secret needs --client-id");
    };
    let grant = match (
        args.refresh_token_stdin,
        args.client_credentials,
        args.connect,
    ) {
        (true, false, false) | (false, false, true) => GrantType::RefreshToken,
        (false, true, false) => GrantType::ClientCredentials,
        _ => bail!(
            "an OAuth2 secret needs exactly one of --refresh-token-stdin, --connect or \
             --client-credentials"
        ),
    };
    let mut grant = match (&args.preset, &args.oauth2_token_url) {
        (Some(id), None) => presets::find(id)?.grant(client_id.clone(), &args.scopes)?,
        (None, Some(token_url)) => OAuth2Grant {
            authorize_url: args.oauth2_authorize_url.clone(),
            ..OAuth2Grant::new(
                grant,
                token_url.clone(),
                client_id.clone(),
                args.scopes.clone(),
            )
        },
        _ => bail!("give one of --oauth2-token-url or --preset"),
    };
    for pair in &args.authorize_params {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--authorize-param {pair:?} must be NAME=VALUE, e.g. access_type=offline");
        };
        grant
            .authorize_params
            .insert(name.to_owned(), value.to_owned());
    }
    if args.connect && grant.authorize_url.is_none() {
        bail!(
            "--connect needs the provider's authorization endpoint: give --oauth2-authorize-url \
             or --preset"
        );
    }
    let injection = Injection::OAuth2(grant);
    injection.validate()?;
    Ok(injection)
}

/// The GitHub App injection the flags describe (checked again by the
/// daemon): its installation token URL under --github-api-url.
fn github_app_injection(args: &JwtArgs) -> Result<Injection> {
    let (Some(app_id), Some(installation)) = (&args.github_app_id, &args.github_installation_id)
    else {
        bail!("--github-app-id needs --github-installation-id");
    };
    if installation.is_empty() || !installation.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "--github-installation-id must be the installation's number (in the URL of the \
             app's installation settings, or GET /app/installations)"
        );
    }
    let injection = Injection::OAuth2(OAuth2Grant::new(
        GrantType::GithubApp,
        OAuth2Grant::github_token_url(&args.github_api_url, installation),
        app_id.clone(),
        Vec::new(),
    ));
    injection.validate()?;
    Ok(injection)
}

/// A service account's grant and private key, from its JSON key file;
/// refused in one line that quotes none of the file.
fn read_service_account(path: &Path, scopes: Vec<String>) -> Result<(OAuth2Grant, SecretValue)> {
    let raw = value::read_file_bytes(path, "the service-account key file")?;
    let mut account = service_account::parse(&raw, scopes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a usable service-account key file: {e}. Nothing was stored",
            path.display()
        )
    })?;
    let key = SecretValue::new(std::mem::take(&mut *account.private_key));
    Ok((account.grant, key))
}
