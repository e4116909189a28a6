//! The dashboard's credentials: the single administrator's password
//! (argon2id) and the bearer tokens scripts use for `/api/v1` over TCP
//! (256 random bits, stored as SHA-256 like agent tokens; see
//! [`crate::token`] for why a fast hash is right for those).
//!
//! Argon2 is deliberately slow, so hashing and verifying run on the
//! blocking pool, never on the async workers that serve requests.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use zeroize::Zeroizing;

use super::types::SecretValue;
use super::{Service, ServiceError};
use crate::store::StoreError;
use crate::token::{Token, TokenHash};

/// Shortest password `set-password` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest: argon2 copes, but nobody types more and it bounds the work.
const MAX_PASSWORD_LEN: usize = 1024;
/// Length of a generated password, in URL-safe base64 characters.
const GENERATED_PASSWORD_BYTES: usize = 18;

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiTokenView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The answer to creating an API token: the only time it is shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiTokenCreated {
    pub token: ApiTokenView,
    pub secret: SecretValue,
}

/// Body of `PUT /api/v1/admin/password` (admin socket only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: SecretValue,
}

/// Body of `POST /api/v1/admin/tokens` (admin socket only).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    pub name: String,
}

fn hash_password(password: &str) -> Result<String, ServiceError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing the password failed: {e}")))
}

fn check_token_name(name: &str) -> Result<(), ServiceError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid {
            field: "name",
            message: "a token name is 1-63 characters of a-z, 0-9, '-' and '_'".into(),
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("a background task failed: {e}")))
}

impl Service {
    /// Sets (or replaces) the administrator's password.
    pub async fn set_admin_password(&self, req: SetPassword) -> Result<(), ServiceError> {
        let len = req.password.expose().chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
            return Err(ServiceError::Invalid {
                field: "password",
                message: format!(
                    "the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"
                ),
            });
        }
        let hash = blocking(move || hash_password(req.password.expose())).await??;
        let mut tx = self.store.pool().begin().await.map_err(StoreError::from)?;
        sqlx::query(
            "INSERT INTO admin_password (id, password_hash) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET password_hash = $1, updated_at = now()",
        )
        .bind(&hash)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        record_admin(
            &mut tx,
            "admin.password",
            "the dashboard password was changed",
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// At first start there is no password: make one, store its hash and
    /// return it so the daemon can print it once. `None` when one exists
    /// (or another daemon on the same database won the race).
    pub async fn ensure_admin_password(&self) -> Result<Option<SecretValue>, ServiceError> {
        if self.admin_password_hash().await?.is_some() {
            return Ok(None);
        }
        let mut bytes = Zeroizing::new([0u8; GENERATED_PASSWORD_BYTES]);
        rand::rng().fill_bytes(bytes.as_mut_slice());
        use base64::Engine;
        let password = SecretValue::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()),
        );
        let for_hash = password.clone();
        let hash = blocking(move || hash_password(for_hash.expose())).await??;
        let inserted = sqlx::query(
            "INSERT INTO admin_password (id, password_hash) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&hash)
        .execute(self.store.pool())
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        Ok((inserted == 1).then_some(password))
    }

    async fn admin_password_hash(&self) -> Result<Option<String>, ServiceError> {
        Ok(
            sqlx::query_scalar("SELECT password_hash FROM admin_password WHERE id = 1")
                .fetch_optional(self.store.pool())
                .await
                .map_err(StoreError::from)?,
        )
    }

    /// Does `password` match the administrator's? False when none is set.
    pub async fn verify_admin_password(&self, password: SecretValue) -> Result<bool, ServiceError> {
        let Some(stored) = self.admin_password_hash().await? else {
            return Ok(false);
        };
        blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
    }

    pub async fn create_api_token(
        &self,
        req: CreateApiToken,
    ) -> Result<ApiTokenCreated, ServiceError> {
        check_token_name(&req.name)?;
        let token = Token::generate();
        let mut tx = self.store.pool().begin().await.map_err(StoreError::from)?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING RETURNING created_at",
        )
        .bind(&req.name)
        .bind(token.hash().0.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(row) = row else {
            return Err(ServiceError::Conflict(format!(
                "API token {} already exists: choose another name, or remove it first",
                req.name
            )));
        };
        let created_at: DateTime<Utc> = row.try_get("created_at").map_err(StoreError::from)?;
        record_admin(&mut tx, "api_token.create", &format!("token={}", req.name)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ApiTokenCreated {
            token: ApiTokenView {
                name: req.name,
                created_at,
                last_used_at: None,
            },
            secret: SecretValue::new(token.expose().to_owned()),
        })
    }

    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenView>, ServiceError> {
        let rows =
            sqlx::query("SELECT name, created_at, last_used_at FROM api_tokens ORDER BY name")
                .fetch_all(self.store.pool())
                .await
                .map_err(StoreError::from)?;
        rows.iter()
            .map(|r| {
                Ok(ApiTokenView {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| StoreError::from(e).into())
    }

    pub async fn delete_api_token(&self, name: &str) -> Result<(), ServiceError> {
        check_token_name(name)?;
        let mut tx = self.store.pool().begin().await.map_err(StoreError::from)?;
        let deleted = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .rows_affected();
        if deleted == 0 {
            return Err(ServiceError::NotFound(format!(
                "API token {name} does not exist"
            )));
        }
        record_admin(&mut tx, "api_token.rm", &format!("token={name}")).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// An `admin` audit row for a dashboard login attempt (OpenID Connect),
    /// which changes nothing else in the database.
    pub async fn audit_login(&self, action: &str, detail: &str) -> Result<(), ServiceError> {
        let mut tx = self.store.pool().begin().await.map_err(StoreError::from)?;
        record_admin(&mut tx, action, detail).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The name of the API token `presented`, if it is one. Marks it used.
    pub async fn verify_api_token(&self, presented: &str) -> Result<Option<String>, ServiceError> {
        let hash = TokenHash::of(presented);
        Ok(sqlx::query_scalar(
            "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = $1 RETURNING name",
        )
        .bind(hash.0.as_slice())
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::from)?)
    }
}

/// An `admin` audit row in the writing transaction, chained like every
/// other row (the store's one writer of admin rows).
pub(super) async fn record_admin(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    action: &str,
    detail: &str,
) -> Result<(), ServiceError> {
    crate::store::audit::record_admin(tx, None, action, detail).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
    }

    #[test]
    fn token_names_are_checked() {
        assert!(check_token_name("ci-bot_1").is_ok());
        for bad in ["", "Bad", "a b", &"x".repeat(64)] {
            assert!(check_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
