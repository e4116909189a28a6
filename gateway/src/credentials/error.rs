//! Why a credential could not be had. None of these carries a token, a
//! client secret, a private key or a provider's response body: only the
//! secret's name, the provider's error code and what the operator must do.

use super::jwt::KeyError;
use crate::model::GrantType;

/// What went wrong at the token endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint did not answer within {0}s")]
    Timeout(u64),
    /// The provider refused the grant or the client for good
    /// (`invalid_grant`, `invalid_client`, `unauthorized_client`):
    /// retrying cannot help.
    #[error("the provider refused the grant ({code}, HTTP {status})")]
    Refused { code: String, status: u16 },
    /// Any other error answer (`invalid_request`, `invalid_scope`, a 5xx
    /// page): may pass.
    #[error("the token endpoint answered HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Failed { status: u16, code: Option<String> },
    #[error("the token endpoint's answer is not a usable token response: {0}")]
    Malformed(String),
    /// A signed-JWT grant's stored key cannot sign (checked at `secret
    /// add`, so only a key changed outside Airlock gets here).
    #[error("its private key cannot sign the assertion: {0}")]
    Key(KeyError),
}

impl EndpointError {
    /// A refusal that only the operator can end: the secret is marked as
    /// needing reconnection.
    pub fn is_refusal(&self) -> bool {
        matches!(self, EndpointError::Refused { .. })
    }
}

/// Why a request's OAuth2 or signed-JWT secret has no access token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "{} secret {secret} needs reconnection: {detail}. {}",
        grant.label(),
        reconnect_hint(*grant, secret)
    )]
    NeedsReconnection {
        secret: String,
        detail: String,
        grant: GrantType,
    },
    #[error(
        "secret {secret} has no access token: {reason}; requests that need it fail until the \
         token endpoint answers (retried after {retry_secs}s)"
    )]
    Endpoint {
        secret: String,
        reason: EndpointError,
        retry_secs: u64,
    },
    #[error("secret {secret} cannot be used: {reason}")]
    Internal { secret: String, reason: String },
}

/// What the operator does about a refused grant, by grant.
fn reconnect_hint(grant: GrantType, secret: &str) -> String {
    match grant {
        GrantType::RefreshToken | GrantType::ClientCredentials => format!(
            "The operator must give it a new grant: `airlock secret rotate {secret} \
             --refresh-token-stdin` (client secret, then a new refresh token, on standard \
             input), or `--client-credentials` with a valid client secret"
        ),
        GrantType::GithubApp => format!(
            "GitHub refused the app's signed JWT or does not know the installation: check the \
             app id, the installation id and that the key is one of the app's current keys, \
             then `airlock secret rotate {secret} --private-key-file KEY.pem`"
        ),
        GrantType::JwtBearer => format!(
            "The token endpoint refused the service account's signed assertion (key deleted or \
             disabled, account disabled, or this host's clock is off): fix that, then `airlock \
             secret rotate {secret} --google-service-account-file KEY.json`"
        ),
    }
}

impl CredentialError {
    pub fn secret(&self) -> &str {
        match self {
            CredentialError::NeedsReconnection { secret, .. }
            | CredentialError::Endpoint { secret, .. }
            | CredentialError::Internal { secret, .. } => secret,
        }
    }

    pub fn needs_reconnection(&self) -> bool {
        matches!(self, CredentialError::NeedsReconnection { .. })
    }
}
