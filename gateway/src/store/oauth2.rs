//! The tokens of OAuth2 secrets: one row per secret, sealed.
//!
//! The secret's own row holds what the operator configured (the client
//! secret among it); this one holds what the provider hands out: the
//! refresh token (replaced whenever the provider rotates it) and the
//! current access token with its expiry, so a restarted daemon, or another
//! daemon on the same database, uses the token already fetched instead of
//! asking again. Changing it sends no change notification: a refresh is
//! not a configuration change, and no snapshot holds these rows.
//!
//! Single flight across daemons: whoever refreshes first takes the row
//! with `SELECT ... FOR UPDATE` ([`Store::lock_tokens`]), and holds it
//! across the token request (bounded by the token client's timeouts). A
//! second daemon blocks on the row, then reads the token the first one
//! stored and uses it. Providers that rotate refresh tokens invalidate the
//! old one when it is used, so two daemons refreshing with the same token
//! would leave one of them with a revoked grant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::vault::Sealed;

const TOKENS_AAD_LABEL: &[u8] = b"airlock:oauth2-tokens:v1\0";

/// The associated data of a token row: the secret's own (which binds its
/// id, name, host, path, token URL, client id, scopes and grant) under
/// another label, so the row opens only beside the secret it belongs to
/// and the two ciphertexts cannot be swapped.
pub fn tokens_aad(secret_aad: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TOKENS_AAD_LABEL);
    h.update(secret_aad);
    h.finalize().into()
}

/// What the provider's grant is worth now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Tokens can be had.
    Ok,
    /// The provider refused the grant (`invalid_grant`, `invalid_client`):
    /// no token request is made until the operator replaces it.
    NeedsReconnection,
}

impl TokenStatus {
    fn column(self) -> &'static str {
        match self {
            TokenStatus::Ok => "ok",
            TokenStatus::NeedsReconnection => "needs_reconnection",
        }
    }

    fn from_column(s: &str) -> Self {
        match s {
            "ok" => TokenStatus::Ok,
            // The table's CHECK allows nothing else; fail closed anyway.
            _ => TokenStatus::NeedsReconnection,
        }
    }
}

/// A first token row, written with its secret.
#[derive(Debug)]
pub struct NewTokens {
    pub sealed: Sealed,
    pub access_expires_at: Option<DateTime<Utc>>,
    /// `Some`: the row starts as needing reconnection, with this detail (a
    /// grant the dashboard's Connect has yet to obtain).
    pub not_connected: Option<String>,
}

/// A token row as read under its lock.
#[derive(Debug)]
pub struct TokenRow {
    pub sealed: Sealed,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub status: TokenStatus,
    pub status_detail: Option<String>,
}

/// A token row's state as listings show it (never a token).
#[derive(Debug, Clone)]
pub struct TokenState {
    pub status: TokenStatus,
    pub status_detail: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refreshes: i64,
    pub refreshed_at: Option<DateTime<Utc>>,
}

pub(super) async fn insert_tokens(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    secret_id: Uuid,
    tokens: &NewTokens,
    key_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO oauth2_tokens (secret_id, ciphertext, nonce, key_id, access_expires_at,
                                    refreshes, refreshed_at, status, status_detail)
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 = 0 THEN NULL ELSE now() END,
                 CASE WHEN $7::text IS NULL THEN 'ok' ELSE 'needs_reconnection' END, $7)
         ON CONFLICT (secret_id) DO UPDATE
            SET ciphertext = $2, nonce = $3, key_id = $4, access_expires_at = $5,
                status = EXCLUDED.status, status_detail = $7,
                refreshes = oauth2_tokens.refreshes + $6,
                refreshed_at = COALESCE(EXCLUDED.refreshed_at, oauth2_tokens.refreshed_at),
                updated_at = now()",
    )
    .bind(secret_id)
    .bind(&tokens.sealed.ciphertext)
    .bind(tokens.sealed.nonce.as_slice())
    .bind(key_id)
    .bind(tokens.access_expires_at)
    // A row not yet connected made no token request.
    .bind(i64::from(tokens.not_connected.is_none()))
    .bind(tokens.not_connected.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A secret's token row, locked until this is dropped or finished: the
/// single flight across daemons (see the module doc).
pub struct TokenLock {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    secret_id: Uuid,
    /// `None`: the secret has no token row (it was removed meanwhile).
    pub row: Option<TokenRow>,
}

impl Store {
    /// Takes the token row of `secret_id` (waiting for another daemon's
    /// refresh to finish) and reads it as it is after that refresh.
    pub async fn lock_tokens(&self, secret_id: Uuid) -> Result<TokenLock, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT ciphertext, nonce, access_expires_at, status, status_detail
             FROM oauth2_tokens WHERE secret_id = $1 FOR UPDATE",
        )
        .bind(secret_id)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match row {
            None => None,
            Some(r) => Some(TokenRow {
                sealed: Sealed::from_parts(r.try_get("nonce")?, r.try_get("ciphertext")?).map_err(
                    |e| StoreError::Corrupt {
                        table: "oauth2_tokens",
                        id: secret_id.to_string(),
                        reason: e.to_string(),
                    },
                )?,
                access_expires_at: r.try_get("access_expires_at")?,
                status: TokenStatus::from_column(r.try_get("status")?),
                status_detail: r.try_get("status_detail")?,
            }),
        };
        Ok(TokenLock { tx, secret_id, row })
    }

    /// The token state of every OAuth2 secret, by secret id.
    pub async fn token_states(&self) -> Result<HashMap<Uuid, TokenState>, StoreError> {
        let rows = sqlx::query(
            "SELECT secret_id, status, status_detail, access_expires_at, refreshes, refreshed_at
             FROM oauth2_tokens",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("secret_id")?,
                    TokenState {
                        status: TokenStatus::from_column(r.try_get("status")?),
                        status_detail: r.try_get("status_detail")?,
                        access_expires_at: r.try_get("access_expires_at")?,
                        refreshes: r.try_get("refreshes")?,
                        refreshed_at: r.try_get("refreshed_at")?,
                    },
                ))
            })
            .collect()
    }

    /// Replaces a secret's tokens (a `secret rotate` of an OAuth2 secret):
    /// the new grant, status ok again.
    pub async fn replace_tokens(
        &self,
        secret_id: Uuid,
        tokens: &NewTokens,
        key_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_tokens(&mut tx, secret_id, tokens, key_id).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// The dashboard's Connect obtained a grant's tokens: they replace the
    /// row (status ok again), and the secret's version goes up in the
    /// same transaction, which tells every daemon (the change
    /// notification) to forget what it cached for the old grant, a
    /// "needs reconnection" among it.
    pub async fn connect_tokens(
        &self,
        secret_id: Uuid,
        secret: &str,
        tokens: &NewTokens,
        key_id: &str,
        detail: &str,
    ) -> Result<i32, StoreError> {
        let mut tx = self.pool().begin().await?;
        let version: Option<i32> = sqlx::query_scalar(
            "UPDATE secrets SET version = version + 1, updated_at = now()
              WHERE id = $1 RETURNING version",
        )
        .bind(secret_id)
        .fetch_optional(&mut *tx)
        .await?;
        let version = version.ok_or_else(|| StoreError::NotFound {
            what: format!("secret {secret}"),
        })?;
        insert_tokens(&mut tx, secret_id, tokens, key_id).await?;
        super::commit_change(
            tx,
            super::Change {
                agent: None,
                action: "secret.oauth2.connected",
                detail: &format!("secret={secret} version={version} {detail}"),
                what: "secrets",
            },
        )
        .await?;
        Ok(version)
    }
}

impl TokenLock {
    /// Stores what a token request returned and releases the row. The
    /// rotated refresh token is durable once this returns, before the new
    /// access token is used.
    pub async fn store_refreshed(
        mut self,
        sealed: &Sealed,
        key_id: &str,
        access_expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE oauth2_tokens
                SET ciphertext = $2, nonce = $3, key_id = $4, access_expires_at = $5,
                    refreshes = refreshes + 1, refreshed_at = now(), updated_at = now()
              WHERE secret_id = $1",
        )
        .bind(self.secret_id)
        .bind(&sealed.ciphertext)
        .bind(sealed.nonce.as_slice())
        .bind(key_id)
        .bind(access_expires_at)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Marks the secret as needing reconnection, with an audit record, and
    /// releases the row. `detail` names the provider's error code, never a
    /// token.
    pub async fn mark_needs_reconnection(
        mut self,
        secret: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE oauth2_tokens
                SET status = 'needs_reconnection', status_detail = $2, access_expires_at = NULL,
                    updated_at = now()
              WHERE secret_id = $1",
        )
        .bind(self.secret_id)
        .bind(detail)
        .execute(&mut *self.tx)
        .await?;
        super::audit::record_admin(
            &mut self.tx,
            None,
            "secret.oauth2.needs_reconnection",
            &format!("secret={secret} {detail}"),
        )
        .await?;
        self.tx.commit().await?;
        Ok(())
    }

    /// Releases the row unchanged.
    pub async fn release(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        self.column()
    }
}
