//! Secrets: metadata in the clear, the value sealed by the vault.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{Change, Loaded, Store, StoreError, commit_change};
use crate::model::{Injection, SecretName};
use crate::policy::{HostPattern, PathGlob};
use crate::vault::Sealed;

/// A secret as stored. `sealed` opens only with the secret's id as
/// associated data (see [`SecretRecord::aad`]).
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub id: Uuid,
    pub name: SecretName,
    pub host: HostPattern,
    pub path: PathGlob,
    pub injection: Injection,
    pub sealed: Sealed,
    pub key_id: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SecretRecord {
    /// The associated data a secret's value is sealed with: its id.
    pub fn aad(id: &Uuid) -> [u8; 16] {
        *id.as_bytes()
    }
}

/// What it takes to create a secret; the caller seals the value with
/// `SecretRecord::aad(&id)`.
#[derive(Debug)]
pub struct NewSecret<'a> {
    pub id: Uuid,
    pub name: &'a SecretName,
    pub host: &'a HostPattern,
    pub path: &'a PathGlob,
    pub injection: &'a Injection,
    pub sealed: &'a Sealed,
    pub key_id: &'a str,
}

/// The stored columns of an injection: kind, target, header template.
fn injection_columns(injection: &Injection) -> (&'static str, String, Option<&str>) {
    match injection {
        Injection::Header { name, template } => ("header", name.clone(), Some(template)),
        Injection::Query { param } => ("query", param.clone(), None),
        Injection::AwsSigv4 { region, service } => {
            ("aws_sigv4", format!("{region}/{service}"), None)
        }
    }
}

fn injection_from_columns(
    kind: &str,
    target: String,
    template: Option<String>,
) -> Result<Injection, String> {
    let injection = match (kind, template) {
        ("header", Some(template)) => Injection::Header {
            name: target,
            template,
        },
        ("query", None) => Injection::Query { param: target },
        ("aws_sigv4", None) => Injection::aws_from_spec(&target).map_err(|e| e.to_string())?,
        (kind, _) => return Err(format!("unknown injection kind {kind:?}")),
    };
    injection.validate().map_err(|e| e.to_string())?;
    Ok(injection)
}

const SELECT_SECRETS: &str = "
    SELECT id, name, host_pattern, path_glob, injection_kind, injection_target,
           header_template, ciphertext, nonce, key_id, version, created_at, updated_at
    FROM secrets";

fn secret_from_row(row: &PgRow) -> Result<SecretRecord, StoreError> {
    let id: Uuid = row.try_get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "secrets",
        id: id.to_string(),
        reason,
    };
    let name = SecretName::try_from(row.try_get::<String, _>("name")?)
        .map_err(|e| corrupt(e.to_string()))?;
    let host =
        HostPattern::parse(row.try_get("host_pattern")?).map_err(|e| corrupt(e.to_string()))?;
    let path = PathGlob::parse(row.try_get("path_glob")?).map_err(|e| corrupt(e.to_string()))?;
    let injection = injection_from_columns(
        row.try_get("injection_kind")?,
        row.try_get("injection_target")?,
        row.try_get("header_template")?,
    )
    .map_err(corrupt)?;
    let sealed = Sealed::from_parts(row.try_get("nonce")?, row.try_get("ciphertext")?)
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(SecretRecord {
        id,
        name,
        host,
        path,
        injection,
        sealed,
        key_id: row.try_get("key_id")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn list_secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        self.load_secrets().await?.strict()
    }

    /// Every row that can be read, and the errors of those that cannot.
    pub async fn load_secrets(&self) -> Result<Loaded<SecretRecord>, StoreError> {
        let sql = format!("{SELECT_SECRETS} ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        Loaded::collect(rows.iter().map(secret_from_row))
    }

    pub async fn get_secret(&self, name: &SecretName) -> Result<SecretRecord, StoreError> {
        let sql = format!("{SELECT_SECRETS} WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("secret {name}"),
            })?;
        secret_from_row(&row)
    }

    pub async fn insert_secret(&self, new: NewSecret<'_>) -> Result<(), StoreError> {
        let (kind, target, template) = injection_columns(new.injection);
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO secrets (id, name, host_pattern, path_glob, injection_kind,
                                  injection_target, header_template, ciphertext, nonce, key_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new.id)
        .bind(new.name.as_str())
        .bind(new.host.to_string())
        .bind(new.path.as_str())
        .bind(kind)
        .bind(&target)
        .bind(template)
        .bind(&new.sealed.ciphertext)
        .bind(new.sealed.nonce.as_slice())
        .bind(new.key_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_as(e, || format!("secret {}", new.name)))?;
        commit_change(
            tx,
            Change {
                agent: None,
                action: "secret.add",
                detail: &format!(
                    "secret={} host={} path={} inject={}",
                    new.name,
                    new.host,
                    new.path,
                    new.injection.describe()
                ),
                what: "secrets",
            },
        )
        .await?;
        Ok(())
    }

    /// Replaces a secret's value, keeping its name, id and grants. `seal`
    /// is given the secret's id (the associated data) and returns the new
    /// sealed value and key id. Returns the new version.
    pub async fn rotate_secret<F, E>(&self, name: &SecretName, seal: F) -> Result<i32, E>
    where
        F: FnOnce(&Uuid) -> Result<(Sealed, String), E>,
        E: From<StoreError>,
    {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let id: Uuid = sqlx::query_scalar("SELECT id FROM secrets WHERE name = $1 FOR UPDATE")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("secret {name}"),
            })?;
        let (sealed, key_id) = seal(&id)?;
        let version: i32 = sqlx::query_scalar(
            "UPDATE secrets SET ciphertext = $2, nonce = $3, key_id = $4,
                    version = version + 1, updated_at = now()
             WHERE id = $1 RETURNING version",
        )
        .bind(id)
        .bind(&sealed.ciphertext)
        .bind(sealed.nonce.as_slice())
        .bind(&key_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        commit_change(
            tx,
            Change {
                agent: None,
                action: "secret.rotate",
                detail: &format!("secret={name} version={version}"),
                what: "secrets",
            },
        )
        .await?;
        Ok(version)
    }

    pub async fn delete_secret(&self, name: &SecretName) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound {
                what: format!("secret {name}"),
            });
        }
        commit_change(
            tx,
            Change {
                agent: None,
                action: "secret.rm",
                detail: &format!("secret={name}"),
                what: "secrets",
            },
        )
        .await?;
        Ok(())
    }
}

pub(super) async fn secret_id(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    name: &SecretName,
) -> Result<Uuid, StoreError> {
    sqlx::query_scalar("SELECT id FROM secrets WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("secret {name}"),
        })
}
