//! The dashboard's Connect, as the service sees it: which grant a secret
//! connects to ([`Service::connect_target`]), and storing the tokens an
//! authorization code was exchanged for ([`Service::connect_secret`]).
//! The browser's side (PKCE, state, the redirect and the callback) is in
//! `dashboard::connect`.

use chrono::Utc;
use uuid::Uuid;

use super::types::SecretView;
use super::{Service, ServiceError};
use crate::credentials::{AuthorizationCode, EndpointError, TokenSet};
use crate::model::{Injection, OAuth2Grant, SecretName};

/// What starting a Connect needs: the grant (its authorization URL,
/// client id, scopes, extra parameters) and which secret row it is for.
#[derive(Debug, Clone)]
pub struct ConnectTarget {
    pub secret: SecretName,
    /// A callback for a secret deleted and added again under the same
    /// name meanwhile is refused.
    pub secret_id: Uuid,
    pub grant: OAuth2Grant,
}

impl Service {
    /// The grant secret `name` connects to; refused for a secret that is
    /// not a refresh-token grant with an authorization URL.
    pub async fn connect_target(&self, name: &str) -> Result<ConnectTarget, ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let record = self.store.get_secret(&name).await?;
        match record.injection() {
            Injection::OAuth2(grant) if grant.connectable() => Ok(ConnectTarget {
                secret: name,
                secret_id: record.id(),
                grant: grant.clone(),
            }),
            _ => Err(ServiceError::invalid(
                "name",
                format!(
                    "secret {name} cannot be connected: only an OAuth2 refresh-token secret with \
                     an authorization URL can (add it with --connect and --preset or \
                     --oauth2-authorize-url)"
                ),
            )),
        }
    }

    /// Exchanges the authorization code for `target`'s tokens and stores
    /// them sealed: the secret is connected (again), every daemon's cache
    /// of it renewed. Nothing is stored when the exchange fails.
    pub async fn connect_secret(
        &self,
        target: &ConnectTarget,
        code: &AuthorizationCode<'_>,
    ) -> Result<SecretView, ServiceError> {
        let name = &target.secret;
        let record = self.store.get_secret(name).await?;
        let grant = match record.injection() {
            Injection::OAuth2(grant)
                if record.id() == target.secret_id && *grant == target.grant =>
            {
                grant
            }
            _ => {
                return Err(ServiceError::Conflict(format!(
                    "secret {name} changed while it was being connected: connect it again"
                )));
            }
        };
        let client_secret = record
            .open(&self.vault)
            .map_err(|e| ServiceError::Internal(format!("secret {name}: {e}")))?;
        let client_secret = std::str::from_utf8(client_secret.expose()).map_err(|_| {
            ServiceError::Internal(format!(
                "secret {name}: its client secret is not UTF-8 text"
            ))
        })?;
        let resp = self
            .credentials
            .exchange_code(grant, client_secret, code)
            .await
            .map_err(|e| exchange_error(grant, &e))?;
        let set =
            TokenSet::connected(&resp).map_err(|why| ServiceError::invalid("connect", why))?;
        let detail = if set.refresh_token.is_some() {
            "with a refresh token"
        } else {
            "without a refresh token (the provider's tokens live until revoked)"
        };
        let tokens = set
            .into_new_tokens(&self.vault, &record.aad(), Utc::now())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store
            .connect_tokens(
                record.id(),
                name.as_str(),
                &tokens,
                self.vault.key_id(),
                detail,
            )
            .await?;
        self.refresh().await;
        self.secret_view(name).await
    }
}

/// What the operator is told when the provider would not exchange the
/// code: what was wrong and what to do; never a token or secret.
fn exchange_error(grant: &OAuth2Grant, e: &EndpointError) -> ServiceError {
    let url = &grant.token_url;
    ServiceError::invalid(
        "connect",
        match e {
            EndpointError::Unreachable(_) | EndpointError::Timeout(_) => format!(
                "the token endpoint {url} could not be reached ({e}): check that this host can \
             reach it and trusts its certificate (AIRLOCK_UPSTREAM_CA)"
            ),
            EndpointError::Refused { code, .. } if code == "invalid_client" => format!(
                "the provider refused the client ({e}): check the client id and the client secret \
             (rotate the secret to replace it)"
            ),
            EndpointError::Refused { .. } => format!(
                "the provider refused the authorization code ({e}): it expired or was already \
             used, or the redirect URI registered at the provider differs: connect again"
            ),
            _ => format!("the token endpoint {url} did not issue tokens: {e}"),
        },
    )
}
