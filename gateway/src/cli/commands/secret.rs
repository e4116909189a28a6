//! `airlock secret ...`: the vault. Values go in (from standard input) and
//! never come out.

use anyhow::{Result, bail};

use super::segment;
use crate::cli::args::SecretCommand;
use crate::cli::{output, value};
use airlock::admin::client::AdminClient;
use airlock::model::Injection;
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
            value,
        } => {
            let injection = match (header, query, aws_sigv4) {
                (Some(spec), None, None) => Injection::header_from_spec(&spec)?,
                (None, Some(param), None) => Injection::Query { param },
                (None, None, Some(spec)) => Injection::aws_from_spec(&spec)?,
                _ => bail!("give exactly one of --header, --query or --aws-sigv4"),
            };
            let value = value::read(&value, &name)?;
            let view: SecretView = client
                .post(
                    "/api/v1/secrets",
                    &AddSecret {
                        name,
                        host,
                        path,
                        injection,
                        value,
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
        SecretCommand::Rotate { name, value } => {
            let value = value::read(&value, &name)?;
            let view: SecretView = client
                .post(
                    &format!("/api/v1/secrets/{}/rotate", segment(&name)),
                    &RotateSecret { value },
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
                    ]
                })
                .collect();
            output::table(
                &["NAME", "HOST", "PATH", "INJECTION", "VERSION", "UPDATED"],
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
