//! Secrets: metadata in the clear, the value sealed by the vault.
//!
//! # What a sealed value is bound to
//!
//! A value is sealed (AES-256-GCM) with associated data that binds it to
//! everything that says where it may be sent: the row's id, the secret's
//! name, host pattern, path glob and injection (see [`aad`]). A database
//! writer without the master key who points a row at another host, path,
//! header or query parameter (or renames it, or copies a ciphertext onto
//! another row) gets a row that no longer opens: the gateway refuses every
//! request that would use it (fail closed, logged, never injected).
//!
//! Rows written before this binding (`seal_format` 1) were sealed with the
//! id alone. [`Store::upgrade_secret_seals`] re-seals them under the bound
//! data once, at start-up, before any request is served; after that only
//! the bound data opens a row: the request path refuses a format-1 row
//! outright ([`OpenError::NotUpgraded`]) and never tries the id alone.
//! Why this is safe: a writer who flips a re-sealed row back to format 1
//! gains nothing: the upgrade opens format-1 rows with the id alone, which
//! fails for a value sealed with the bound data, so the row is reported
//! (error in the log) and stays unusable; it cannot be re-blessed with a
//! new host. What remains is a ciphertext from before the upgrade (an old
//! backup of this row) written back with format 1 and another host: the
//! next start would re-seal it for that host. Rotating a secret after the
//! upgrade retires its old ciphertext for good (a restored copy then
//! carries the old value, which the operator has replaced).
//!
//! Rotation re-seals under the row's current binding; any future edit of
//! a secret's host, path or injection must re-seal likewise.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::{Change, Loaded, Store, StoreError, commit_change};
use crate::model::{GrantType, Injection, InjectionError, OAuth2Grant, SecretName};
use crate::policy::{HostPattern, PathGlob};
use crate::vault::{Plaintext, Sealed, Vault};

/// A secret as stored. `sealed` opens only with [`SecretRecord::aad`].
#[derive(Debug, Clone)]
pub struct SecretRecord {
    /// Where the value may go, and the associated data that binds it
    /// there; read through [`SecretRecord::name`] and its siblings.
    pub binding: Binding,
    /// The value, opened only at injection time ([`SecretRecord::open`]).
    pub sealed: Sealed,
    /// Which associated data `sealed` was made with.
    pub seal_format: SealFormat,
    /// The master key it was sealed under, so a key change is visible.
    pub key_id: String,
    /// Bumped by each rotation, for listings and the audit of changes.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `seal_format` column: which associated data a row is sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealFormat {
    /// 1: the row id only, as before the binding. Opened only by the
    /// start-up upgrade.
    IdOnly,
    /// 2: the id, name, host pattern, path glob and injection ([`aad`]).
    Bound,
}

impl SealFormat {
    fn column(self) -> i16 {
        match self {
            SealFormat::IdOnly => 1,
            SealFormat::Bound => 2,
        }
    }

    fn from_column(v: i16) -> Result<Self, ColumnError> {
        match v {
            1 => Ok(SealFormat::IdOnly),
            2 => Ok(SealFormat::Bound),
            other => Err(ColumnError::SealFormat(other)),
        }
    }
}

/// Why a row's columns make no secret; the row is then reported as
/// corrupt ([`StoreError::Corrupt`]) with this as the reason.
#[derive(Debug, thiserror::Error)]
enum ColumnError {
    #[error("unknown seal_format {0}")]
    SealFormat(i16),
    #[error("unknown injection kind {0:?}")]
    InjectionKind(String),
    #[error(transparent)]
    Injection(#[from] InjectionError),
    #[error("oauth2_grant is not the grant's JSON: {0}")]
    Grant(String),
}

/// Why a secret's value cannot be had. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "it is still sealed in the old format bound to its id only, and the upgrade at start-up \
         could not re-seal it (see the daemon's log)"
    )]
    NotUpgraded,
    #[error(
        "its value does not open with its stored name, host, path and injection: the row was \
         changed outside Airlock or sealed under another master key. Check it with `airlock \
         secret list`; if it is right, `airlock secret rotate` it, otherwise `airlock secret rm` it"
    )]
    Mismatch,
}

/// Length of the associated data of a bound seal.
pub const AAD_LEN: usize = 32;
const AAD_LABEL: &[u8] = b"airlock:secret:v2\0";

/// The associated data a secret's value is sealed with: SHA-256 over a
/// label, the id and every field that says where the value may go, each
/// followed by its length (so no two different rows share it). Fields are
/// hashed as the gateway parsed them, so an equivalent spelling in the
/// database (`API.x.com` for `api.x.com`) still opens.
pub fn aad(
    id: &Uuid,
    name: &SecretName,
    host: &HostPattern,
    path: &PathGlob,
    injection: &Injection,
) -> [u8; AAD_LEN] {
    use std::fmt::Write as _;
    struct Field<'h>(&'h mut Sha256, u64);
    impl std::fmt::Write for Field<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.update(s.as_bytes());
            self.1 += s.len() as u64;
            Ok(())
        }
    }
    let mut h = Sha256::new();
    h.update(AAD_LABEL);
    h.update(id.as_bytes());
    // An OAuth2 secret's token URL, client id, scopes and grant are bound
    // too: a row pointed at another token endpoint would hand it the
    // client secret and the refresh token.
    let grant_json;
    let (kind, a, b) = match injection {
        Injection::Header { name, template } => ("header", name.as_str(), template.as_str()),
        Injection::Query { param } => ("query", param.as_str(), ""),
        Injection::AwsSigv4 { region, service } => ("aws_sigv4", region.as_str(), service.as_str()),
        Injection::OAuth2(grant) => {
            grant_json = grant_column(grant);
            ("oauth2", grant.token_url.as_str(), grant_json.as_str())
        }
        Injection::Path { template } => ("path", template.as_str(), ""),
        Injection::Basic { template } => ("basic", template.as_str(), ""),
        Injection::Body => ("body", "", ""),
    };
    let fields: [&dyn std::fmt::Display; 6] = [name, host, &path.as_str(), &kind, &a, &b];
    for field in fields {
        let mut w = Field(&mut h, 0);
        // Writing into a hasher cannot fail.
        let _ = write!(w, "{field}");
        let len = w.1;
        h.update(len.to_be_bytes());
    }
    h.finalize().into()
}

/// What a secret's value is sealed to: the row's id and every field that
/// says where the value may go, with their associated data ([`aad`])
/// computed once, here. Opening a value is on every injected request, and
/// hashing these fields was a tenth of a request's instructions.
///
/// The fields are private and set only by [`Binding::new`], so the stored
/// associated data is always that of the fields beside it: a record whose
/// host is changed is a new `Binding`, hashed anew. (A hash filled in
/// lazily on first use would go stale if the record changed after it.)
#[derive(Debug, Clone)]
pub struct Binding {
    /// The row's key, bound into the seal so a ciphertext cannot move rows.
    id: Uuid,
    /// What grants, placeholders (`airlock:NAME`) and the audit name.
    name: SecretName,
    /// The only hosts the value may be sent to.
    host: HostPattern,
    /// The paths the value may be sent to (for every reading of the path).
    path: PathGlob,
    /// Where in the request the value goes.
    injection: Injection,
    /// [`aad`] of the fields above.
    aad: [u8; AAD_LEN],
}

impl Binding {
    pub fn new(
        id: Uuid,
        name: SecretName,
        host: HostPattern,
        path: PathGlob,
        injection: Injection,
    ) -> Self {
        let aad = aad(&id, &name, &host, &path, &injection);
        Binding {
            id,
            name,
            host,
            path,
            injection,
            aad,
        }
    }
}

impl SecretRecord {
    /// The row's key.
    pub fn id(&self) -> Uuid {
        self.binding.id
    }

    pub fn name(&self) -> &SecretName {
        &self.binding.name
    }

    pub fn host(&self) -> &HostPattern {
        &self.binding.host
    }

    pub fn path(&self) -> &PathGlob {
        &self.binding.path
    }

    pub fn injection(&self) -> &Injection {
        &self.binding.injection
    }

    /// The associated data this row's value must be sealed with.
    pub fn aad(&self) -> [u8; AAD_LEN] {
        self.binding.aad
    }

    /// Opens the value, only with the bound associated data.
    pub fn open(&self, vault: &Vault) -> Result<Plaintext, OpenError> {
        match self.seal_format {
            SealFormat::IdOnly => Err(OpenError::NotUpgraded),
            SealFormat::Bound => vault
                .open(&self.aad(), &self.sealed)
                .map_err(|_| OpenError::Mismatch),
        }
    }
}

/// What it takes to create a secret; the caller seals the value with
/// [`aad`] over the same fields.
#[derive(Debug)]
pub struct NewSecret<'a> {
    pub id: Uuid,
    pub name: &'a SecretName,
    pub host: &'a HostPattern,
    pub path: &'a PathGlob,
    pub injection: &'a Injection,
    pub sealed: &'a Sealed,
    pub key_id: &'a str,
    /// An OAuth2 secret's first tokens, written in the same transaction.
    pub oauth2_tokens: Option<&'a super::oauth2::NewTokens>,
}

/// A rotation's new value, sealed under the row's associated data, and,
/// for an OAuth2 secret, its new first tokens.
#[derive(Debug)]
pub struct Rotated {
    pub sealed: Sealed,
    pub key_id: String,
    pub oauth2_tokens: Option<super::oauth2::NewTokens>,
}

/// The stored columns of an injection: kind, target, header template,
/// OAuth2 grant (JSON).
fn injection_columns(
    injection: &Injection,
) -> (&'static str, String, Option<&str>, Option<String>) {
    match injection {
        Injection::Header { name, template } => ("header", name.clone(), Some(template), None),
        Injection::Query { param } => ("query", param.clone(), None, None),
        Injection::AwsSigv4 { region, service } => {
            ("aws_sigv4", format!("{region}/{service}"), None, None)
        }
        Injection::OAuth2(grant) => (
            "oauth2",
            grant.token_url.clone(),
            None,
            Some(grant_column(grant)),
        ),
        Injection::Path { template } => ("path", template.clone(), None, None),
        Injection::Basic { template } => ("basic", template.clone(), None, None),
        Injection::Body => ("body", String::new(), None, None),
    }
}

/// The `oauth2_grant` column: everything of the grant but its URL.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantColumn {
    client_id: String,
    scopes: Vec<String>,
    grant: GrantType,
    // Absent from the JSON when unset, so rows written before signed-JWT
    // grants keep their associated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    // Likewise absent unless set (the dashboard's Connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    authorize_params: BTreeMap<String, String>,
}

fn grant_column(grant: &OAuth2Grant) -> String {
    let column = GrantColumn {
        client_id: grant.client_id.clone(),
        scopes: grant.scopes.clone(),
        grant: grant.grant,
        key_id: grant.key_id.clone(),
        authorize_url: grant.authorize_url.clone(),
        authorize_params: grant.authorize_params.clone(),
    };
    // Strings, a list of strings and a unit enum always serialize.
    serde_json::to_string(&column).unwrap_or_default()
}

fn injection_from_columns(
    kind: &str,
    target: String,
    template: Option<String>,
    oauth2: Option<String>,
) -> Result<Injection, ColumnError> {
    let injection = match (kind, template, oauth2) {
        ("header", Some(template), None) => Injection::Header {
            name: target,
            template,
        },
        ("query", None, None) => Injection::Query { param: target },
        ("aws_sigv4", None, None) => Injection::aws_from_spec(&target)?,
        ("path", None, None) => Injection::Path { template: target },
        ("basic", None, None) => Injection::Basic { template: target },
        ("body", None, None) => Injection::Body,
        ("oauth2", None, Some(json)) => {
            let c: GrantColumn =
                serde_json::from_str(&json).map_err(|e| ColumnError::Grant(e.to_string()))?;
            Injection::OAuth2(OAuth2Grant {
                token_url: target,
                client_id: c.client_id,
                scopes: c.scopes,
                grant: c.grant,
                key_id: c.key_id,
                authorize_url: c.authorize_url,
                authorize_params: c.authorize_params,
            })
        }
        (kind, _, _) => return Err(ColumnError::InjectionKind(kind.to_owned())),
    };
    injection.validate()?;
    Ok(injection)
}

const SELECT_SECRETS: &str = "
    SELECT id, name, host_pattern, path_glob, injection_kind, injection_target,
           header_template, oauth2_grant, ciphertext, nonce, seal_format, key_id, version, created_at,
           updated_at
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
        row.try_get("oauth2_grant")?,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    let sealed = Sealed::from_parts(row.try_get("nonce")?, row.try_get("ciphertext")?)
        .map_err(|e| corrupt(e.to_string()))?;
    let seal_format =
        SealFormat::from_column(row.try_get("seal_format")?).map_err(|e| corrupt(e.to_string()))?;
    Ok(SecretRecord {
        binding: Binding::new(id, name, host, path, injection),
        sealed,
        seal_format,
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
        let (kind, target, template, oauth2) = injection_columns(new.injection);
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO secrets (id, name, host_pattern, path_glob, injection_kind,
                                  injection_target, header_template, ciphertext, nonce, key_id,
                                  seal_format, oauth2_grant)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(SealFormat::Bound.column())
        .bind(oauth2)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_as(e, || format!("secret {}", new.name)))?;
        if let Some(tokens) = new.oauth2_tokens {
            super::oauth2::insert_tokens(&mut tx, new.id, tokens, new.key_id).await?;
        }
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
    /// is given the associated data of the row as it is now (see [`aad`])
    /// and returns the new sealed value and key id. Returns the new version.
    pub async fn rotate_secret<F, E>(&self, name: &SecretName, seal: F) -> Result<i32, E>
    where
        F: FnOnce(&[u8]) -> Result<Rotated, E>,
        E: From<StoreError>,
    {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let sql = format!("{SELECT_SECRETS} WHERE name = $1 FOR UPDATE");
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("secret {name}"),
            })?;
        let current = secret_from_row(&row)?;
        let Rotated {
            sealed,
            key_id,
            oauth2_tokens,
        } = seal(&current.aad())?;
        if let Some(tokens) = &oauth2_tokens {
            super::oauth2::insert_tokens(&mut tx, current.id(), tokens, &key_id).await?;
        }
        let version: i32 = sqlx::query_scalar(
            "UPDATE secrets SET ciphertext = $2, nonce = $3, key_id = $4, seal_format = $5,
                    version = version + 1, updated_at = now()
             WHERE id = $1 RETURNING version",
        )
        .bind(current.id())
        .bind(&sealed.ciphertext)
        .bind(sealed.nonce.as_slice())
        .bind(&key_id)
        .bind(SealFormat::Bound.column())
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

    /// Re-seals every row still sealed with its id only under its bound
    /// associated data (see the module doc). Runs at start-up, before
    /// anything is served. A row that does not open with its id alone
    /// (tampered with, or a re-sealed row flipped back to the old format)
    /// is reported in the log and left as it is: unusable. Returns the
    /// names re-sealed.
    pub async fn upgrade_secret_seals(&self, vault: &Vault) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let sql = format!("{SELECT_SECRETS} WHERE seal_format = $1 ORDER BY name FOR UPDATE");
        let rows = sqlx::query(&sql)
            .bind(SealFormat::IdOnly.column())
            .fetch_all(&mut *tx)
            .await?;
        let mut resealed = Vec::new();
        for row in &rows {
            let secret = match secret_from_row(row) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "a secret row cannot be read, so it cannot be re-sealed");
                    continue;
                }
            };
            let Ok(plain) = vault.open(secret.id().as_bytes(), &secret.sealed) else {
                tracing::error!(
                    secret = %secret.name(),
                    "secret {} is marked as sealed in the old format but does not open as one: \
                     the row was changed outside Airlock. It stays unusable; check it with \
                     `airlock secret list` and rotate or remove it",
                    secret.name()
                );
                continue;
            };
            let sealed =
                vault
                    .seal(&secret.aad(), plain.expose())
                    .map_err(|e| StoreError::Corrupt {
                        table: "secrets",
                        id: secret.id().to_string(),
                        reason: e.to_string(),
                    })?;
            sqlx::query(
                "UPDATE secrets SET ciphertext = $2, nonce = $3, key_id = $4, seal_format = $5
                 WHERE id = $1",
            )
            .bind(secret.id())
            .bind(&sealed.ciphertext)
            .bind(sealed.nonce.as_slice())
            .bind(vault.key_id())
            .bind(SealFormat::Bound.column())
            .execute(&mut *tx)
            .await?;
            resealed.push(secret.name().to_string());
        }
        if resealed.is_empty() {
            tx.commit().await?;
            return Ok(resealed);
        }
        commit_change(
            tx,
            Change {
                agent: None,
                action: "secret.reseal",
                detail: &format!(
                    "re-sealed bound to host, path and injection: {}",
                    resealed.join(", ")
                ),
                what: "secrets",
            },
        )
        .await?;
        tracing::info!(
            secrets = %resealed.join(", "),
            "secrets re-sealed with their host, path and injection bound in"
        );
        Ok(resealed)
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
