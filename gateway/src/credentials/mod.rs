//! Credentials the gateway obtains rather than holds: OAuth2 access
//! tokens (issue #18, item 1) and the tokens that signed-JWT grants mint
//! (item 3: GitHub App installation tokens, Google service accounts),
//! renewed before they expire and after an upstream's 401, single-flight
//! in a process ([`refresh::Entry`]) and across daemons sharing a
//! database ([`crate::store::oauth2`]). Every grant shares this path; only
//! the token request differs ([`TokenClient::request`]).
//!
//! - [`oauth2`]: the token endpoint client (RFC 6749 grants, RFC 7523).
//! - [`github`]: GitHub's installation token exchange.
//! - [`jwt`]: the signed assertions and the private-key checks.
//! - [`service_account`]: a Google service account's JSON key file.
//! - [`token`]: what a token endpoint hands out, checked.
//! - [`presets`]: the OAuth2 providers the dashboard's Connect knows.
//! - [`refresh`]: a secret's cached token and its single flight.
//! - [`error`]: what agents and operators are told.
//!
//! The request path calls [`Credentials::access_token`]: a cached token
//! costs a hash-map look-up and a read lock; only a renewal touches the
//! database (the row lock that makes it single-flight across daemons) and
//! the network. docs/credentials.md has the rules.

pub mod error;
pub mod github;
pub mod jwt;
pub mod oauth2;
pub mod presets;
pub mod refresh;
pub mod service_account;
pub mod token;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::model::{GrantType, Injection, OAuth2Grant};
use crate::store::Store;
use crate::store::oauth2::{NewTokens, TokenStatus, tokens_aad};
use crate::store::secrets::SecretRecord;
use crate::vault::{Sealed, Vault};
pub use error::{CredentialError, EndpointError};
pub use oauth2::{AuthorizationCode, TokenClient};
pub use refresh::AccessToken;
use refresh::{Cached, Entry, Peek};
pub use token::TokenResponse;

/// After a failed token request, requests fail at once for this long
/// before one tries again: a token endpoint that is down is not asked
/// once per request.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a renewal waits for another daemon's renewal of the same
/// secret (the row lock) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// How long a connected token that states no lifetime and has no refresh
/// token is used before the secret asks to be connected again (GitHub
/// revokes an OAuth App token unused for a year).
pub const UNTIL_REVOKED: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a token row holds, sealed.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Default)]
pub struct TokenSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The access token's lifetime as granted, for the renewal skew.
    #[serde(default)]
    pub lifetime_secs: u64,
}

impl TokenSet {
    /// The set after a token response: a rotated refresh token replaces
    /// the old one, otherwise the old one stays.
    pub fn after(resp: &TokenResponse, previous_refresh: Option<&str>) -> Self {
        TokenSet {
            refresh_token: resp
                .refresh_token
                .as_deref()
                .map(|t| t.to_string())
                .or_else(|| previous_refresh.map(str::to_owned)),
            access_token: Some(resp.access_token.to_string()),
            lifetime_secs: resp.lifetime.as_secs(),
        }
    }

    /// Seals the set for the token row of the secret whose associated
    /// data is `secret_aad`.
    pub fn seal(&self, vault: &Vault, secret_aad: &[u8]) -> Result<Sealed, CredentialError> {
        let json = Zeroizing::new(serde_json::to_vec(self).map_err(|e| internal("", e))?);
        vault
            .seal(&tokens_aad(secret_aad), &json)
            .map_err(|e| internal("", e))
    }

    fn open(vault: &Vault, secret: &SecretRecord, sealed: &Sealed) -> Result<Self, String> {
        let plain = vault
            .open(&tokens_aad(&secret.aad()), sealed)
            .map_err(|_| {
                "its sealed tokens do not open with its stored configuration (changed outside \
                 Airlock, or another master key): rotate it"
                    .to_owned()
            })?;
        serde_json::from_slice(plain.expose())
            .map_err(|_| "its sealed tokens are not readable: rotate it".to_owned())
    }

    /// The first token row of a new (or rotated) secret.
    pub fn into_new_tokens(
        self,
        vault: &Vault,
        secret_aad: &[u8],
        now: DateTime<Utc>,
    ) -> Result<NewTokens, CredentialError> {
        let access_expires_at = self
            .access_token
            .as_ref()
            .map(|_| now + secs(self.lifetime_secs));
        Ok(NewTokens {
            sealed: self.seal(vault, secret_aad)?,
            access_expires_at,
            not_connected: None,
        })
    }

    /// The token row of a grant that the dashboard's Connect has yet to
    /// obtain: empty, and needing reconnection until then, so requests
    /// fail at once with a message that says what to do.
    pub fn not_connected(
        vault: &Vault,
        secret_aad: &[u8],
        secret: &str,
    ) -> Result<NewTokens, CredentialError> {
        Ok(NewTokens {
            sealed: TokenSet::default().seal(vault, secret_aad)?,
            access_expires_at: None,
            not_connected: Some(format!(
                "not connected yet: press Connect beside {secret} on the dashboard's Secrets page"
            )),
        })
    }

    /// The set the dashboard's Connect obtained. A token with neither a
    /// stated lifetime nor a refresh token (GitHub OAuth Apps) lives until
    /// it is revoked: it is kept for [`UNTIL_REVOKED`] or until the
    /// upstream refuses it, after which the secret needs reconnection.
    /// A token that expires but comes without a refresh token could not
    /// be renewed, and is refused.
    pub fn connected(resp: &TokenResponse) -> Result<Self, &'static str> {
        let mut set = TokenSet::after(resp, None);
        if set.refresh_token.is_none() {
            if resp.lifetime_stated {
                return Err(
                    "the provider issued an access token that expires, but no refresh token to \
                     renew it: ask for offline access (Google: the preset's access_type=offline; \
                     Microsoft: the offline_access scope) and connect again",
                );
            }
            set.lifetime_secs = UNTIL_REVOKED.as_secs();
        }
        Ok(set)
    }
}

fn secs(s: u64) -> ChronoDuration {
    ChronoDuration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// Marks the secret as needing reconnection (status, audit) under its row
/// lock, and the error its requests get: only the operator can help now.
async fn needs_reconnection(
    lock: crate::store::oauth2::TokenLock,
    name: &str,
    grant: &OAuth2Grant,
    detail: String,
) -> CredentialError {
    if let Err(e) = lock.mark_needs_reconnection(name, &detail).await {
        tracing::error!(secret = %name, error = %e, "cannot record that the secret needs reconnection");
    }
    CredentialError::NeedsReconnection {
        secret: name.to_owned(),
        detail,
        grant: grant.grant,
    }
}

fn internal(secret: &str, e: impl std::fmt::Display) -> CredentialError {
    CredentialError::Internal {
        secret: secret.to_owned(),
        reason: e.to_string(),
    }
}

/// The tokens of every OAuth2 secret this daemon has used.
pub struct Credentials {
    vault: Arc<Vault>,
    /// Where tokens are persisted and locked; `None` in a gateway without
    /// a database (the in-process tests), where OAuth2 secrets fail.
    store: Option<Store>,
    client: TokenClient,
    /// By secret id and version: a rotation (a new version) starts afresh.
    entries: std::sync::Mutex<HashMap<(Uuid, i32), Arc<Entry>>>,
    /// How the token requests ended, for `/metrics`.
    outcomes: TokenOutcomes,
}

/// Token requests by how they ended: a token, the provider's refusal of
/// the grant (the secret needs reconnection), or a failure to be retried
/// (the endpoint unreachable, a 5xx, an answer that is not a token).
#[derive(Debug, Default)]
pub struct TokenOutcomes {
    pub ok: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
}

impl Credentials {
    pub fn new(vault: Arc<Vault>, store: Option<Store>, client: TokenClient) -> Self {
        Credentials {
            vault,
            store,
            client,
            entries: std::sync::Mutex::new(HashMap::new()),
            outcomes: TokenOutcomes::default(),
        }
    }

    /// How this daemon's token requests ended so far.
    pub fn token_outcomes(&self) -> &TokenOutcomes {
        &self.outcomes
    }

    /// One token request, counted: every request the daemon sends (a
    /// renewal here, or the first token when a secret is added) goes
    /// through this.
    pub async fn token_request(
        &self,
        grant: &OAuth2Grant,
        client_secret: &str,
        refresh_token: Option<&str>,
    ) -> Result<TokenResponse, EndpointError> {
        let answer = self
            .client
            .request(grant, client_secret, refresh_token)
            .await;
        self.count(answer)
    }

    /// The dashboard's Connect: an authorization code exchanged for the
    /// grant's first tokens, counted like every token request.
    pub async fn exchange_code(
        &self,
        grant: &OAuth2Grant,
        client_secret: &str,
        code: &AuthorizationCode<'_>,
    ) -> Result<TokenResponse, EndpointError> {
        let answer = self.client.exchange_code(grant, client_secret, code).await;
        self.count(answer)
    }

    fn count(
        &self,
        answer: Result<TokenResponse, EndpointError>,
    ) -> Result<TokenResponse, EndpointError> {
        let outcome = match &answer {
            Ok(_) => &self.outcomes.ok,
            Err(reason) if reason.is_refusal() => &self.outcomes.refused,
            Err(_) => &self.outcomes.failed,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        answer
    }

    fn entry(&self, secret: &SecretRecord) -> Arc<Entry> {
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(Entry::default());
        };
        let key = (secret.id(), secret.version);
        if let Some(e) = entries.get(&key) {
            return e.clone();
        }
        // An older version's entry is of no more use.
        entries.retain(|(id, _), _| *id != secret.id());
        entries.entry(key).or_default().clone()
    }

    /// The access token for `secret`, renewed first when it is due.
    pub async fn access_token(
        &self,
        secret: &SecretRecord,
    ) -> Result<AccessToken, CredentialError> {
        let Injection::OAuth2(grant) = secret.injection() else {
            return Err(internal(
                secret.name().as_str(),
                "it is not an OAuth2 secret",
            ));
        };
        let entry = self.entry(secret);
        let _flight = match entry.peek(Utc::now()) {
            Peek::Fresh(token) => return Ok(token),
            Peek::Failed(e) => return Err(e),
            // Due but valid: whoever gets the flight renews, the rest go on.
            Peek::Renew(Some(current)) => match entry.flight.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(current),
            },
            Peek::Renew(None) => entry.flight.lock().await,
        };
        // Someone else may have renewed while this task waited.
        let usable = match entry.peek(Utc::now()) {
            Peek::Fresh(token) => return Ok(token),
            Peek::Failed(e) => return Err(e),
            Peek::Renew(usable) => usable,
        };
        match self.renew(secret, grant, &entry).await {
            Ok(cached) => {
                let token = cached.token.clone();
                entry.renewed(cached);
                Ok(token)
            }
            Err(e) if e.needs_reconnection() => {
                entry.failed(e.clone(), None);
                Err(e)
            }
            Err(e) => {
                let until = Utc::now() + secs(RETRY_AFTER.as_secs());
                entry.failed(e.clone(), Some(until));
                // A token inside its skew still works for a while.
                usable.ok_or(e)
            }
        }
    }

    /// The upstream answered 401 to `token`: it is not used again, and the
    /// next request renews.
    pub fn rejected(&self, secret: &SecretRecord, token: &AccessToken) {
        tracing::info!(secret = %secret.name(), "the upstream refused the access token (401); it will be renewed");
        self.entry(secret).reject(token);
    }

    /// Renews under the secret's row lock: a token another daemon stored
    /// meanwhile is used as it is; otherwise one token request, whose
    /// result (a rotated refresh token first of all) is stored before it
    /// is used.
    async fn renew(
        &self,
        secret: &SecretRecord,
        grant: &OAuth2Grant,
        entry: &Entry,
    ) -> Result<Cached, CredentialError> {
        let name = secret.name().as_str();
        let store = self.store.as_ref().ok_or_else(|| {
            internal(
                name,
                "OAuth2 secrets need the database, and this gateway has none",
            )
        })?;
        let lock = tokio::time::timeout(LOCK_WAIT, store.lock_tokens(secret.id()))
            .await
            .map_err(|_| {
                internal(
                    name,
                    format!(
                        "another daemon has been renewing its token for over {}s",
                        LOCK_WAIT.as_secs()
                    ),
                )
            })?
            .map_err(|e| internal(name, e))?;
        let Some(row) = &lock.row else {
            return Err(internal(
                name,
                "it has no token row: remove it and add it again",
            ));
        };
        if row.status == TokenStatus::NeedsReconnection {
            let detail = row.status_detail.clone().unwrap_or_default();
            let _ = lock.release().await;
            return Err(CredentialError::NeedsReconnection {
                secret: name.to_owned(),
                detail,
                grant: grant.grant,
            });
        }
        let stored = match TokenSet::open(&self.vault, secret, &row.sealed) {
            Ok(set) => set,
            Err(reason) => {
                let _ = lock.release().await;
                return Err(internal(name, reason));
            }
        };
        let now = Utc::now();
        if let (Some(access), Some(expires)) = (&stored.access_token, row.access_expires_at) {
            let cached = Cached::new(
                AccessToken::new(Zeroizing::new(access.clone())),
                expires,
                stored.lifetime_secs,
            );
            if now < cached.refresh_at && !entry.is_rejected(access) {
                lock.release().await.map_err(|e| internal(name, e))?;
                return Ok(cached);
            }
        }
        // A connected grant whose provider issued no refresh token (GitHub
        // OAuth Apps: tokens that live until revoked) cannot be renewed:
        // its token was refused or has expired, and only the operator can
        // connect it again.
        if grant.grant == GrantType::RefreshToken && stored.refresh_token.is_none() {
            let detail = "the provider issued no refresh token, and its access token was refused \
                          or has expired: connect the secret again";
            return Err(needs_reconnection(lock, name, grant, detail.to_owned()).await);
        }
        // The client secret, or a signed-JWT grant's private key (PEM).
        let client_secret = secret.open(&self.vault).map_err(|e| internal(name, e))?;
        let client_secret = std::str::from_utf8(client_secret.expose())
            .map_err(|_| internal(name, "its stored value is not UTF-8 text"))?;
        let answer = self
            .token_request(grant, client_secret, stored.refresh_token.as_deref())
            .await;
        let resp = match answer {
            Ok(resp) => resp,
            Err(reason) if reason.is_refusal() => {
                let detail = reason.to_string();
                tracing::warn!(secret = %name, grant = grant.grant.as_str(), reason = %detail, "the provider refused the grant; the secret needs reconnection");
                return Err(needs_reconnection(lock, name, grant, detail).await);
            }
            Err(reason) => {
                tracing::warn!(secret = %name, grant = grant.grant.as_str(), reason = %reason, "token request failed");
                let _ = lock.release().await;
                return Err(CredentialError::Endpoint {
                    secret: name.to_owned(),
                    reason,
                    retry_secs: RETRY_AFTER.as_secs(),
                });
            }
        };
        let set = TokenSet::after(&resp, stored.refresh_token.as_deref());
        let sealed = set.seal(&self.vault, &secret.aad())?;
        let expires = now + secs(set.lifetime_secs);
        // Durable before use: a rotated refresh token lost here would
        // leave the secret with a revoked one.
        if let Err(e) = lock
            .store_refreshed(&sealed, self.vault.key_id(), expires)
            .await
        {
            tracing::error!(secret = %name, error = %e, "cannot store the renewed OAuth2 tokens; if the provider rotated the refresh token, the secret needs reconnection");
            return Err(internal(
                name,
                format!("its renewed tokens cannot be stored: {e}"),
            ));
        }
        tracing::debug!(secret = %name, lifetime = set.lifetime_secs, "OAuth2 access token renewed");
        Ok(Cached::new(
            AccessToken::new(resp.access_token),
            expires,
            set.lifetime_secs,
        ))
    }
}
